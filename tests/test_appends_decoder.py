"""The server-side AppendDecoder: the malformed inputs of tests/data/malformed.json through the
segment store's pipeline (FrameDecoder(server=True) → AppendDecoder), and its rules one by one
(docs/protocol.md §4.6). Every test runs against both twins."""

from __future__ import annotations

import struct
import uuid

import pytest
from conftest import TWINS, load_twin
from vectors import MALFORMED, VECTORS, command

from pravega_wire import InvalidMessageError
from pravega_wire import commands as C
from pravega_wire.appends import Append
from pravega_wire.codec import FrameDecoder, encode

CLASS_OF_KIND = {kind: v["class"] for kind, v in VECTORS["schema"].items()}
W1 = uuid.UUID("01234567-89ab-cdef-fedc-ba9876543210")
W2 = uuid.UUID("7d6a1f3e-2b4c-4e8f-9a0b-1c2d3e4f5a6b")


@pytest.fixture(params=TWINS)
def twin(request):
    return load_twin("_appends", request.param)


def pipeline(twin, data: bytes):
    """What the segment store's inbound pipeline makes of ``data``: (outputs, error or None)."""
    frames = FrameDecoder(server=True)
    decoder = twin.AppendDecoder()
    out = []
    frame_error = None
    try:
        cmds = frames.feed(data)
    except InvalidMessageError as e:
        cmds, frame_error = e.decoded, e
    for cmd in cmds:
        try:
            out.extend(decoder.process(cmd))
        except InvalidMessageError as e:
            return out, e
    return out, frame_error


def same_item(got, item) -> bool:
    if item["kind"] != "Append":
        return got == command(CLASS_OF_KIND[item["kind"]], item["fields"])
    return (type(got) is Append and got.segment == item["segment"]
            and got.writer_id == uuid.UUID(item["writerId"])
            and got.event_number == item["eventNumber"]
            and got.event_count == item["eventCount"]
            and bytes(got.data).hex() == item["data_hex"]
            and got.expected_length == item["expectedLength"]
            and got.request_id == item["flowId"])


ACCEPTED_BY_CLIENT = [m for m in MALFORMED["malformed"]
                      if isinstance(m["client_reader"], str)
                      and m["client_reader"].startswith("ACCEPTED")]


def test_the_append_decoder_cases_are_there():
    rejected = [m for m in ACCEPTED_BY_CLIENT if m["server_pipeline"]["result"] == "EXCEPTION"]
    assert len(rejected) == 15
    assert len(ACCEPTED_BY_CLIENT) - len(rejected) == 1  # empty input


@pytest.mark.parametrize("case", MALFORMED["malformed"],
                         ids=[m["name"] for m in MALFORMED["malformed"]])
def test_malformed_server_pipeline(twin, case):
    """Every malformed input: the pipeline fails where Java's does (the AppendDecoder cases are
    the ones Java's client reader accepts), after emitting what Java emitted."""
    out, error = pipeline(twin, bytes.fromhex(case["bytes_hex"]))
    expected = case["server_pipeline"]
    if expected["result"] == "EXCEPTION":
        assert isinstance(error, InvalidMessageError), "accepted what Java rejects"
    else:
        assert error is None
    before = expected["outputs_before_error"]
    assert len(out) == len(before)
    for got, item in zip(out, before):
        assert same_item(got, item), (got, item)


JAVA_MESSAGES = {
    "block_end_wrong_writer": "Writer ID mismatch",
    "append_block_without_setup": "referenced before SetupAppend",
    "block_end_without_setup": "referenced before SetupAppend",
    "setup_inside_block": "Unexpected SetupAppend following an append block",
    "padding_inside_block": "Unexpected Padding following an append block",
    "block_end_zero_events": "Invalid number of events in block. numEvents : 0",
    "block_end_size_too_big": "Invalid SizeOfWholeEvents in block : 14, Append block data "
                              "bytes : 13",
    "block_end_size_negative": "Invalid SizeOfWholeEvents in block : -1",
    "event_number_backwards": "Last event number went backwards, Segment last Event number : 5 , "
                              "Append block End Event number : 4",
    "block_remainder_not_partial_or_padding": "Found KeepAlive at end of append block but was "
                                              "expecting a partialEvent or padding.",
    "block_remainder_event": "Found Event at end of append block",
    "padding_then_data_in_block_end": "Unexpected data in BlockEnd",
    "conditional_append_backwards": "Last event number went backwards",
    "conditional_append_without_setup": "referenced before SetupAppend",
    "conditional_block_end_without_setup": "referenced before SetupAppend",
}


@pytest.mark.parametrize("case", [m for m in ACCEPTED_BY_CLIENT
                                  if m["server_pipeline"]["result"] == "EXCEPTION"],
                         ids=lambda m: m["name"])
def test_append_decoder_messages(twin, case):
    """The AppendDecoder's own rejections say what is wrong, in Java's words."""
    _out, error = pipeline(twin, bytes.fromhex(case["bytes_hex"]))
    assert JAVA_MESSAGES[case["name"]] in str(error)


# --------------------------------------------------------------------------------------------
# The rules one by one


def setup(writer=W1, segment="segA", rid=1):
    return C.SetupAppend(rid, writer, segment, "")


def block(writer, data):
    return C.AppendBlock(writer, data)


def end(writer, whole, data=b"", num_events=1, last=1, rid=1):
    return C.AppendBlockEnd(writer, whole, data, num_events, last, rid)


def event(payload: bytes) -> bytes:
    return struct.pack(">ii", 0, len(payload)) + payload


def partial(data: bytes) -> bytes:
    return struct.pack(">ii", -2, len(data)) + data


def padding(n: int) -> bytes:
    return struct.pack(">ii", -1, n) + bytes(n)


def test_setup_passes_through_and_records_the_writer(twin):
    d = twin.AppendDecoder()
    cmd = setup()
    assert d.process(cmd) == [cmd]
    assert d.segment_of(W1) == "segA"
    assert d.last_event_number(W1) == 0
    assert d.segment_of(W2) is None and d.last_event_number(W2) is None
    assert d.writer_count == 1


def test_other_commands_pass_through(twin):
    d = twin.AppendDecoder()
    for cmd in (C.KeepAlive(), C.Hello(17, 5), C.ReadSegment("s", 0, 10, "", 7),
                C.GetStreamSegmentInfo(3, "s", "")):
        assert d.process(cmd) == [cmd]


def test_top_level_padding_is_ignored(twin):
    d = twin.AppendDecoder()
    assert d.process(C.Padding(12)) == []


def test_block_end_without_block_carries_its_own_data(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    data = event(b"hello")
    [a] = d.process(end(W1, 999, data, num_events=1, last=3, rid=77))
    assert a == Append("segA", W1, 3, 1, data, None, 77)
    assert d.last_event_number(W1) == 3


def test_block_with_partial_event(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    whole = event(b"a" * 10) + event(b"b" * 5)
    record = event(b"c" * 20)
    assert d.process(block(W1, whole + partial(record[:3]))) == []
    assert d.in_block
    [a] = d.process(end(W1, len(whole), record[3:], num_events=3, last=3))
    assert not d.in_block
    assert bytes(a.data) == whole + record
    assert (a.event_number, a.event_count, a.expected_length) == (3, 3, None)


def test_block_with_padding(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    whole = event(b"x" * 7)
    d.process(block(W1, whole + padding(30)))
    [a] = d.process(end(W1, len(whole)))
    assert bytes(a.data) == whole


def test_bytes_after_the_trailing_sub_frame_are_ignored(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    whole = event(b"x")
    d.process(block(W1, whole + partial(b"yz") + b"junk"))
    [a] = d.process(end(W1, len(whole), b"w"))
    assert bytes(a.data) == whole + b"yzw"


def test_exactly_filled_block(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    data = event(b"q" * 9)
    d.process(block(W1, data))
    [a] = d.process(end(W1, len(data)))
    assert bytes(a.data) == data


def test_large_block_data_is_not_copied(twin):
    """A block that ends exactly (or with Padding) yields a view of the block, not a copy."""
    d = twin.AppendDecoder()
    d.process(setup())
    data = event(b"z" * 10000)
    frames = FrameDecoder(server=True)
    [blk, blk_end] = frames.feed(encode(block(W1, data + padding(16))) + encode(end(W1, len(data))))
    d.process(blk)
    [a] = d.process(blk_end)
    assert isinstance(a.data, memoryview)
    assert bytes(a.data) == data


def test_equal_event_numbers_are_allowed(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    d.process(end(W1, 0, b"a", last=5))
    [a] = d.process(end(W1, 0, b"b", last=5))
    assert a.event_number == 5


def test_first_event_number_must_not_be_negative(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    with pytest.raises(InvalidMessageError, match="went backwards"):
        d.process(end(W1, 0, b"a", last=-1))


def test_repeated_setup_resets_the_event_number(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    d.process(end(W1, 0, b"a", last=9))
    d.process(setup(segment="segB"))
    assert d.segment_of(W1) == "segB"
    assert d.last_event_number(W1) == 0
    [a] = d.process(end(W1, 0, b"a", last=1))
    assert a.segment == "segB"


def test_conditional_append_and_block_end(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    [a] = d.process(C.ConditionalAppend(W1, 4, 100, C.Event(b"abc"), 9))
    assert a == Append("segA", W1, 4, 1, event(b"abc"), 100, 9)
    [b] = d.process(C.ConditionalBlockEnd(W1, 4, 103, b"raw", 10))
    assert b == Append("segA", W1, 4, 1, b"raw", 103, 10)
    with pytest.raises(InvalidMessageError, match="went backwards"):
        d.process(C.ConditionalBlockEnd(W1, 3, 106, b"raw", 11))


@pytest.mark.parametrize("tail, message", [
    (b"\x00" * 7, "not enough for a PartialEvent or Padding header"),
    (struct.pack(">ii", -2, -1), "negative length"),
    (struct.pack(">ii", -2, 9) + b"abc", "announces 9 bytes but only 3 remain"),
    (struct.pack(">ii", 6, 0), "Found unknown wire command 6 at end of append block"),
    (struct.pack(">ii", 1, 0), "Found SetupAppend at end of append block"),
])
def test_bad_block_trailers(twin, tail, message):
    d = twin.AppendDecoder()
    d.process(setup())
    whole = event(b"ok")
    d.process(block(W1, whole + tail))
    with pytest.raises(InvalidMessageError, match=message):
        d.process(end(W1, len(whole)))


def test_end_data_without_a_partial_event_is_rejected(twin):
    """Java's store would silently drop these bytes; we refuse them instead."""
    d = twin.AppendDecoder()
    d.process(setup())
    whole = event(b"ok")
    d.process(block(W1, whole))
    with pytest.raises(InvalidMessageError, match="no PartialEvent"):
        d.process(end(W1, len(whole), b"lost"))


def test_two_blocks_in_a_row_are_rejected(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    d.process(block(W1, b""))
    with pytest.raises(InvalidMessageError, match="Unexpected AppendBlock following"):
        d.process(block(W1, b""))


@pytest.mark.parametrize("cmd", [C.PartialEvent(b"x"), C.Event(b"x"), "not a command"])
def test_non_top_level_commands_are_rejected(twin, cmd):
    with pytest.raises(InvalidMessageError, match="not a command a client may send"):
        twin.AppendDecoder().process(cmd)


def test_decoder_is_unusable_after_an_error(twin):
    d = twin.AppendDecoder()
    with pytest.raises(InvalidMessageError):
        d.process(block(W1, b""))
    with pytest.raises(InvalidMessageError, match="failed earlier"):
        d.process(C.KeepAlive())
    assert not d.in_block


def test_forget_writer(twin):
    d = twin.AppendDecoder()
    d.process(setup())
    assert d.forget_writer(W1) is True
    assert d.forget_writer(W1) is False
    assert d.writer_count == 0
    with pytest.raises(InvalidMessageError, match="before SetupAppend"):
        d.process(end(W1, 0, b"a"))


def test_writer_mismatch_names_both_writers(twin):
    d = twin.AppendDecoder()
    d.process(setup(W1))
    d.process(setup(W2, "segB", 2))
    d.process(block(W1, event(b"a")))
    with pytest.raises(InvalidMessageError) as info:
        d.process(end(W2, 9))
    assert str(W1) in str(info.value) and str(W2) in str(info.value)
