"""The append path against the byte streams Pravega's own Java CommandEncoder produced
(tests/data/encoder_streams.json and streams/*.bin), and the server-side AppendDecoder against
what Java's segment-store pipeline rebuilt from them. Every test runs against both twins."""

from __future__ import annotations

import hashlib
import struct
import uuid

import pytest
from conftest import TWINS, load_twin
from vectors import DATA, STREAMS, VECTORS, command

import pravega_wire
from pravega_wire import appends
from pravega_wire.codec import FrameDecoder, pure_requested

SCENARIOS = STREAMS["scenarios"]
SCENARIO_IDS = [s["name"] for s in SCENARIOS]
WRITER_INDEX = {"A": 1, "B": 2, "C": 3}
CLASS_OF_KIND = {kind: v["class"] for kind, v in VECTORS["schema"].items()}
PER_WRITER_ONLY = {"three_writers_flush_order"}  # Java's HashMap order; we keep queue order


@pytest.fixture(params=TWINS)
def twin(request):
    """The append-path twin under test: ``pravega_wire._appends_py`` or ``._appends``."""
    return load_twin("_appends", request.param)


def test_compiled_append_path_loaded():
    """Outside pure mode the compiled append path must be the one in use."""
    if pure_requested():
        assert appends.IMPLEMENTATION == "pure"
    else:
        assert appends.IMPLEMENTATION == "compiled", (
            "the compiled append path did not load; build it or set PRAVEGA_WIRE_NO_EXTENSIONS=1")
    assert appends.CommandEncoder is appends.impl.CommandEncoder


def test_twins_share_the_record_and_errors(twin):
    assert twin.Append is appends.Append
    assert twin.EncoderStateError is appends.EncoderStateError
    assert twin.ConditionalAppendError is appends.ConditionalAppendError
    assert issubclass(twin.EncoderStateError, pravega_wire.PravegaWireError)
    assert issubclass(twin.ConditionalAppendError, pravega_wire.PravegaWireError)


# --------------------------------------------------------------------------------------------
# Replaying a script


def payload(writer: str, event_number: int, size: int) -> bytes:
    """The scenarios' payload rule."""
    base = WRITER_INDEX[writer] * 67 + event_number * 13
    return bytes((base + j) & 0xFF for j in range(size))


def event_record(data: bytes) -> bytes:
    return struct.pack(">ii", 0, len(data)) + data


def expected_emitted(step) -> tuple:
    """(length, sha256 hex, hex or None) of what a step should emit."""
    if "emitted_hex" in step:
        raw = bytes.fromhex(step["emitted_hex"])
        return len(raw), hashlib.sha256(raw).hexdigest(), raw
    return step["emitted_len"], step["emitted_sha256"], None


def appends_of(step):
    """The (writer, segment, writer id, event number, event count, data, request id) of each
    append a script step performs."""
    writer, segment = step["writer"], step["segment"]
    writer_id, rid = uuid.UUID(step["writerId"]), step["flowId"]
    if step["op"] == "append":
        assert len(step["payload_sizes"]) == step["eventCount"]
        # Every event of a (multi-event) append follows the rule with the append's number.
        data = b"".join(event_record(payload(writer, step["eventNumber"], size))
                        for size in step["payload_sizes"])
        assert len(data) == step["data_len"]
        yield writer, segment, writer_id, step["eventNumber"], step["eventCount"], data, rid
    else:
        for ev in range(step["first_eventNumber"], step["first_eventNumber"] + step["count"]):
            data = event_record(payload(writer, ev, step["payload_size"]))
            yield writer, segment, writer_id, ev, 1, data, rid


def test_payload_rule_reproduces_the_listed_payloads():
    checked = 0
    for scenario in SCENARIOS:
        for step in scenario["script"]:
            if step["op"] != "append":
                continue
            for size, listed in zip(step["payload_sizes"], step["payloads"]):
                if listed.startswith("<"):  # "<N bytes by payload_rule>"
                    assert listed == f"<{size} bytes by payload_rule>"
                    continue
                assert payload(step["writer"], step["eventNumber"], size).hex() == listed
                checked += 1
    assert checked > 30


def run_step(encoder, twin, step, via_event: bool):
    op = step["op"]
    if op == "write_command":
        encoder.write_command(command(CLASS_OF_KIND[step["type"]], step["fields"]))
        return None
    if op == "batch_timeout":
        return encoder.batch_timeout(step["token"])
    for _w, segment, writer_id, ev, count, data, rid in appends_of(step):
        if via_event and count == 1:
            encoder.append_event(segment, writer_id, ev, data[8:], rid)
        else:
            encoder.append(twin.Append(segment, writer_id, ev, count, data, None, rid))
    return None


def replay(twin, scenario, via_event):
    """Run the script, checking each step; returns the whole stream and per-step lengths."""
    block = scenario["block_size"]
    encoder = twin.CommandEncoder(lambda flow_id: block)
    stream = bytearray()
    per_writer = scenario["name"] in PER_WRITER_ONLY
    for i, step in enumerate(scenario["script"]):
        returned = run_step(encoder, twin, step, via_event)
        if step["op"] == "batch_timeout":
            assert returned == step["returned"], f"step {i}"
        out = encoder.data_to_send()
        assert type(out) is bytes
        length, digest, raw = expected_emitted(step)
        assert len(out) == length, f"step {i} ({step['op']})"
        if not per_writer:
            if raw is not None:
                assert out.hex() == raw.hex(), f"step {i} ({step['op']})"
            assert hashlib.sha256(out).hexdigest() == digest, f"step {i}"
        assert encoder.buffered == step["buffered_after"], f"step {i}"
        stream += out
    assert encoder.data_to_send() == b""
    assert encoder.buffered == scenario["unflushed_in_encoder_at_end"]
    return bytes(stream)


def frames_by_writer(stream: bytes) -> dict:
    """Top-level frames grouped by the writer id they carry (None: no writer id), in order. An
    AppendBlock frame covers its block's contents."""
    groups = {}
    pos = 0
    while pos < len(stream):
        type_code, length = struct.unpack_from(">ii", stream, pos)
        frame = stream[pos:pos + 8 + length]
        if type_code == 1:  # SetupAppend: requestId, then writerId
            key = frame[16:32]
        elif type_code in (3, 4):  # AppendBlock, AppendBlockEnd
            key = frame[8:24]
        else:
            key = None
        groups.setdefault(key, []).append(frame.hex())
        pos += 8 + length
    assert pos == len(stream)
    return groups


@pytest.mark.parametrize("via_event", [False, True], ids=["append", "append_event"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_scenario_stream(twin, scenario, via_event):
    stream = replay(twin, scenario, via_event)
    expected = (DATA / scenario["stream_file"]).read_bytes()
    assert len(stream) == scenario["stream_len"] == len(expected)
    assert hashlib.sha256(expected).hexdigest() == scenario["stream_sha256"]
    if scenario["name"] in PER_WRITER_ONLY:
        assert frames_by_writer(stream) == frames_by_writer(expected)
        assert stream != expected  # Java's HashMap order differs from the queue order here
    else:
        assert stream == expected


# --------------------------------------------------------------------------------------------
# The server side: the Java-made stream through FrameDecoder(server=True) + AppendDecoder


def expected_server_item(twin, item):
    if item["kind"] != "Append":
        return command(CLASS_OF_KIND[item["kind"]], item["fields"])
    return item


def assert_append_matches(append, item):
    assert type(append) is appends.Append
    assert append.segment == item["segment"]
    assert append.writer_id == uuid.UUID(item["writerId"])
    assert append.event_number == item["eventNumber"]
    assert append.event_count == item["eventCount"]
    assert append.expected_length == item["expectedLength"]
    assert append.request_id == item["flowId"]
    data = bytes(append.data)
    assert len(data) == item["data_len"]
    if "data_hex" in item:
        assert data.hex() == item["data_hex"]
    else:
        assert data.startswith(bytes.fromhex(item["data_head_hex"]))
        assert hashlib.sha256(data).hexdigest() == item["data_sha256"]


def server_decode(twin, stream: bytes, chunk: int) -> list:
    frames = FrameDecoder(server=True)
    decoder = twin.AppendDecoder()
    out = []
    for start in range(0, len(stream), chunk):
        for cmd in frames.feed(stream[start:start + chunk]):
            out.extend(decoder.process(cmd))
    assert frames.buffered == 0
    assert not decoder.in_block
    return out


def item_writer(item):
    if item["kind"] == "Append":
        return item["writerId"]
    return item["fields"].get("writerId")


@pytest.mark.parametrize("chunk", [1 << 30, 4093], ids=["whole", "chunks"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_scenario_server_decoded(twin, scenario, chunk):
    assert scenario["server_decode_error"] is None
    stream = (DATA / scenario["stream_file"]).read_bytes()
    decoded = server_decode(twin, stream, chunk)
    expected = scenario["server_decoded"]
    assert len(decoded) == len(expected)
    for got, item in zip(decoded, expected):
        if item["kind"] == "Append":
            assert_append_matches(got, item)
        else:
            assert got == expected_server_item(twin, item)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_our_stream_decodes_to_javas_appends(twin, scenario):
    """Our own stream, through our decoder, rebuilds what Java rebuilt from Java's stream (per
    writer, in order, where the flush order legitimately differs)."""
    stream = replay(twin, scenario, via_event=True)
    decoded = server_decode(twin, stream, 1 << 30)
    expected = scenario["server_decoded"]
    by_writer_got, by_writer_expected = {}, {}
    for got in decoded:
        key = str(got.writer_id) if type(got) is appends.Append else str(
            getattr(got, "writer_id", None))
        by_writer_got.setdefault(key, []).append(got)
    for item in expected:
        by_writer_expected.setdefault(str(item_writer(item)), []).append(item)
    assert by_writer_got.keys() == by_writer_expected.keys()
    for key, items in by_writer_expected.items():
        assert len(by_writer_got[key]) == len(items)
        for got, item in zip(by_writer_got[key], items):
            if item["kind"] == "Append":
                assert_append_matches(got, item)
            else:
                assert got == expected_server_item(twin, item)
