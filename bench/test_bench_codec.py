"""Codec benchmarks: the compiled twin against the pure one, side by side in one run.

Every case is parametrized over ``["compiled", "pure"]`` and grouped by operation, so the report
lists both twins of a case together; a ``struct`` baseline shows what plain Python packing
costs. Batched operations record their per-item figure in ``extra_info``. Run with::

    python -m pytest bench/test_bench_codec.py --benchmark-only -q -p no:cacheprovider

Quote medians (the machine is shared and noisy).
"""

from __future__ import annotations

import importlib
import struct
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.codec import pure_requested

TWINS = ["compiled", "pure"]
# Rounds of at least 100 µs: a sub-microsecond operation is then timed over hundreds of calls,
# not once per timer read (whose own cost, ~100 ns here, would otherwise be in the median).
pytestmark = pytest.mark.benchmark(min_time=100e-6, warmup=True)
WRITER = uuid.UUID("3f1c2a9e-5b7d-4e21-9a0c-7d6e5f4b3a21")
SEGMENT = "examples/stream-1/0.#epoch.0"
SIZES = {"100B": 100, "32KiB": 32 * 1024, "1MiB": 1024 * 1024}


@pytest.fixture(params=TWINS)
def codec(request):
    """The codec twin under test; the compiled one must load unless pure mode was asked for."""
    if request.param == "pure":
        return importlib.import_module("pravega_wire._codec_py")
    if pure_requested():
        pytest.skip("PRAVEGA_WIRE_NO_EXTENSIONS is set")
    return importlib.import_module("pravega_wire._codec")


def _payload(size: int) -> bytes:
    return bytes(i & 0xFF for i in range(size))


def _commands():
    """(case name, command) for every encode/decode case."""
    cases = [
        ("DataAppended", C.DataAppended(request_id=(7 << 32) | 42, writer_id=WRITER,
                                        event_number=1_000_000, previous_event_number=999_999,
                                        current_segment_write_offset=123_456_789)),
        ("SetupAppend", C.SetupAppend(request_id=(7 << 32) | 1, writer_id=WRITER,
                                      segment=SEGMENT, delegation_token="")),
        ("ReadSegment", C.ReadSegment(segment=SEGMENT, offset=1 << 30, suggested_length=1 << 20,
                                      delegation_token="", request_id=(7 << 32) | 9)),
    ]
    for label, size in SIZES.items():
        cases.append((f"AppendBlockEnd-{label}", C.AppendBlockEnd(
            writer_id=WRITER, size_of_whole_events=size, data=_payload(size), num_events=1,
            last_event_number=77, request_id=(7 << 32) | 3)))
        cases.append((f"SegmentRead-{label}", C.SegmentRead(
            segment=SEGMENT, offset=1 << 30, at_tail=False, end_of_segment=False,
            data=_payload(size), request_id=(7 << 32) | 9)))
    # The append path's usual AppendBlockEnd: the events went in the AppendBlock, none left over.
    cases.append(("AppendBlockEnd-empty", C.AppendBlockEnd(
        writer_id=WRITER, size_of_whole_events=100, data=b"", num_events=1, last_event_number=77,
        request_id=(7 << 32) | 3)))
    return cases


COMMANDS = _commands()
CASE_IDS = [name for name, _ in COMMANDS]


@pytest.mark.parametrize("case", COMMANDS, ids=CASE_IDS)
def test_encode(benchmark, codec, case):
    name, cmd = case
    benchmark.group = f"encode {name}"
    frame = benchmark(codec.encode, cmd)
    assert codec.decode(frame) == cmd


PAYLOAD_CASES = [(f"{kind}-{label}", dict(COMMANDS)[f"{kind}-{label}"])
                 for kind in ("SegmentRead", "AppendBlockEnd") for label in SIZES]


@pytest.mark.parametrize("case", PAYLOAD_CASES, ids=[name for name, _ in PAYLOAD_CASES])
def test_encode_parts(benchmark, codec, case):
    """The frame as buffers: payloads of at least VIEW_THRESHOLD bytes are passed on, uncopied
    (compare with the ``encode`` group of the same case, which builds one bytes object)."""
    name, cmd = case
    benchmark.group = f"encode_parts {name}"
    parts = benchmark(codec.encode_parts, cmd)
    assert b"".join(parts) == codec.encode(cmd)
    assert any(part is cmd.data for part in parts) == (len(cmd.data) >= codec.VIEW_THRESHOLD)


@pytest.mark.parametrize("case", COMMANDS, ids=CASE_IDS)
def test_decode(benchmark, codec, case):
    name, cmd = case
    benchmark.group = f"decode {name}"
    frame = codec.encode(cmd)
    assert benchmark(codec.decode, frame) == cmd


def test_decode_segment_read_1mib_and_copy(benchmark, codec):
    """What a reader pays to own the bytes: decode (payload as a view) plus one copy."""
    cmd = dict(COMMANDS)["SegmentRead-1MiB"]
    frame = codec.encode(cmd)
    benchmark.group = "decode SegmentRead-1MiB + copy"
    assert benchmark(lambda: bytes(codec.decode(frame).data)) == cmd.data


def test_feed_data_appended_replies(benchmark, codec):
    """A 64 KiB chunk of DataAppended replies through ``FrameDecoder.feed``: the client's read
    loop. ``extra_info['ns_per_reply']`` is the median divided by the replies in the chunk."""
    reply = codec.encode(dict(COMMANDS)["DataAppended"])
    count = (64 * 1024) // len(reply)
    chunk = reply * count
    decoder = codec.FrameDecoder()
    benchmark.group = "feed 64KiB of DataAppended"
    out = benchmark(decoder.feed, chunk)
    assert len(out) == count and decoder.buffered == 0
    benchmark.extra_info["replies_per_chunk"] = count
    if benchmark.stats is not None:  # None under --benchmark-disable (a smoke run)
        benchmark.extra_info["ns_per_reply"] = round(benchmark.stats.stats.median / count * 1e9, 1)


def test_feed_segment_reads_split(benchmark, codec):
    """1 MiB SegmentRead replies arriving in 64 KiB socket reads (assembled, then viewed)."""
    frame = codec.encode(dict(COMMANDS)["SegmentRead-1MiB"])
    pieces = [frame[i:i + 65536] for i in range(0, len(frame), 65536)]
    decoder = codec.FrameDecoder()
    benchmark.group = "feed SegmentRead-1MiB in 64KiB reads"

    def run():
        out = []
        for piece in pieces:
            out += decoder.feed(piece)
        return out

    (read,) = benchmark(run)
    assert read.data == dict(COMMANDS)["SegmentRead-1MiB"].data


def test_encode_event(benchmark, codec):
    data = _payload(100)
    benchmark.group = "encode_event 100B"
    assert benchmark(codec.encode_event, data) == struct.pack(">ii", 0, 100) + data


def test_encode_utf(benchmark, codec):
    benchmark.group = "encode_utf segment name"
    expected = struct.pack(">H", len(SEGMENT)) + SEGMENT.encode()
    assert benchmark(codec.encode_utf, SEGMENT) == expected


def test_pack_request_id(benchmark, codec):
    benchmark.group = "pack_request_id"
    assert benchmark(codec.pack_request_id, 7, 42) == (7 << 32) | 42


def test_unpack_request_id(benchmark, codec):
    benchmark.group = "unpack_request_id"
    assert benchmark(codec.unpack_request_id, (7 << 32) | 42) == (7, 42)


# --------------------------------------------------------------------------------------------
# Baselines: what plain Python costs for the same bytes

_HEADER36 = struct.Struct(">ii16siii")  # type, length, writer id, three ints: 36 bytes


def test_baseline_struct_header_and_payload(benchmark):
    """``struct.pack`` of a 36-byte header + a 100 B payload."""
    payload = _payload(100)
    writer = WRITER.bytes
    benchmark.group = "baseline struct 36B header + 100B"
    frame = benchmark(lambda: _HEADER36.pack(4, 128, writer, 100, 1, 77) + payload)
    assert len(frame) == 136


def test_baseline_struct_data_appended(benchmark):
    """The DataAppended frame packed by ``struct`` alone (no validation, no command object)."""
    layout = struct.Struct(">ii16sqqqq")
    cmd = dict(COMMANDS)["DataAppended"]
    writer = cmd.writer_id.bytes
    benchmark.group = "encode DataAppended"
    frame = benchmark(lambda: layout.pack(7, 48, writer, cmd.event_number,
                                          cmd.previous_event_number, cmd.request_id,
                                          cmd.current_segment_write_offset))
    assert frame == importlib.import_module("pravega_wire._codec_py").encode(cmd)
