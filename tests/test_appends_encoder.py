"""The client CommandEncoder beyond the Java streams: the encoder rejections of
tests/data/malformed.json, state left untouched by every rejection, the session lifecycle
(cap, close_session), frame-size limits, input types, and the adaptive block size. Every test
runs against both twins."""

from __future__ import annotations

import array
import struct
import uuid

import pytest
from conftest import TWINS, load_twin
from vectors import MALFORMED

from pravega_wire import ConnectionClosedError, InvalidMessageError
from pravega_wire import commands as C
from pravega_wire.codec import FrameDecoder, encode
from pravega_wire.commands import MAX_WIRECOMMAND_SIZE

W1 = uuid.UUID("01234567-89ab-cdef-fedc-ba9876543210")
W2 = uuid.UUID("7d6a1f3e-2b4c-4e8f-9a0b-1c2d3e4f5a6b")
SEG1, SEG2 = "scope/stream/0", "scope/stream/1"
RID1, RID2 = (1 << 32), (2 << 32)


@pytest.fixture(params=TWINS)
def twin(request):
    return load_twin("_appends", request.param)


def event(payload: bytes) -> bytes:
    return struct.pack(">ii", 0, len(payload)) + payload


def encoder(twin, block_size=1024, **kwargs):
    enc = twin.CommandEncoder(lambda flow_id: block_size, **kwargs)
    enc.write_command(C.SetupAppend(RID1, W1, SEG1, ""))
    enc.write_command(C.SetupAppend(RID2, W2, SEG2, ""))
    enc.data_to_send()
    return enc


def decode_all(twin, stream: bytes, setups=((RID1, W1, SEG1), (RID2, W2, SEG2))) -> list:
    """The Appends a segment store rebuilds from ``stream`` (after the given SetupAppends)."""
    frames = FrameDecoder(server=True)
    decoder = twin.AppendDecoder()
    for rid, writer, segment in setups:
        decoder.process(C.SetupAppend(rid, writer, segment, ""))
    out = []
    for cmd in frames.feed(stream):
        out.extend(x for x in decoder.process(cmd) if type(x) is twin.Append)
    assert frames.buffered == 0
    return out


# --------------------------------------------------------------------------------------------
# encoder_rejections (the client CommandEncoder's)

REJECTIONS = {m["name"]: m for m in MALFORMED["encoder_rejections"]}


def test_every_client_rejection_is_covered():
    assert {n for n in REJECTIONS if n.startswith("client_")} == {
        "client_append_without_setup", "client_append_out_of_order",
        "client_append_zero_events", "client_append_conditional", "client_hello_mid_block"}


def _append(twin, ev, data=None, count=1, expected=None, writer=W1, segment=SEG1, rid=RID1):
    return twin.Append(segment, writer, ev, count, event(b"x") if data is None else data,
                       expected, rid)


def test_client_append_without_setup(twin):
    enc = twin.CommandEncoder(lambda f: 0)
    with pytest.raises(InvalidMessageError) as info:
        enc.append(_append(twin, 1))
    assert str(info.value) == REJECTIONS["client_append_without_setup"]["exception"]["message"]
    with pytest.raises(InvalidMessageError, match="without setting up"):
        enc.append_event(SEG1, W1, 1, b"x", RID1)


def test_client_append_out_of_order(twin):
    enc = encoder(twin)
    enc.append(_append(twin, 5))
    with pytest.raises(InvalidMessageError) as info:
        enc.append(_append(twin, 5))
    assert str(info.value) == REJECTIONS["client_append_out_of_order"]["exception"]["message"]
    with pytest.raises(InvalidMessageError, match="out of order. Received: 4 following: 5"):
        enc.append_event(SEG1, W1, 4, b"x", RID1)


@pytest.mark.parametrize("count", [0, -1])
def test_client_append_zero_events(twin, count):
    enc = encoder(twin)
    with pytest.raises(InvalidMessageError) as info:
        enc.append(_append(twin, 1, count=count))
    expected = REJECTIONS["client_append_zero_events"]["exception"]["message"]
    assert str(info.value) == expected.replace(": 0 ", f": {count} ")


def test_client_append_conditional(twin):
    enc = encoder(twin)
    with pytest.raises(twin.ConditionalAppendError) as info:
        enc.append(_append(twin, 1, expected=0))
    assert isinstance(info.value, ValueError)
    assert str(info.value) == REJECTIONS["client_append_conditional"]["exception"]["message"]


def test_client_hello_mid_block(twin):
    enc = encoder(twin)
    enc.write_command(C.Hello(17, 5))  # fine while no block is open
    assert enc.data_to_send() == bytes.fromhex("ffffff81000000080000001100000005")
    enc.append(_append(twin, 1))
    with pytest.raises(twin.EncoderStateError):
        enc.write_command(C.Hello(17, 5))
    assert enc.block_open


def _ops(twin):
    """A script that leaves a block open and another writer queued."""
    return [
        lambda e: e.append_event(SEG1, W1, 1, b"a" * 30, RID1),
        lambda e: e.append_event(SEG2, W2, 1, b"b" * 20, RID2),
        lambda e: e.append(_append(twin, 2, event(b"c" * 10))),
    ]


BAD_OPS = {
    "no setup": lambda t, e: e.append_event("other", W1, 9, b"x", RID1),
    "out of order": lambda t, e: e.append_event(SEG1, W1, 2, b"x", RID1),
    "zero events": lambda t, e: e.append(_append(t, 9, count=0)),
    "conditional": lambda t, e: e.append(_append(t, 9, expected=5)),
    "hello": lambda t, e: e.write_command(C.Hello(17, 5)),
    "too big": lambda t, e: e.append(_append(t, 9, bytes(t.MAX_APPEND_SIZE + 1))),
    "bad data": lambda t, e: e.append(_append(t, 9, "text")),
    "bad payload": lambda t, e: e.append_event(SEG1, W1, 9, 42, RID1),
    "bad event number": lambda t, e: e.append_event(SEG1, W1, "9", b"x", RID1),
    "event number range": lambda t, e: e.append_event(SEG1, W1, 2 ** 63, b"x", RID1),
    "bad request id": lambda t, e: e.append_event(SEG1, W1, 9, b"x", 2 ** 64),
    "bool count": lambda t, e: e.append(_append(t, 9, count=True)),
    "count range": lambda t, e: e.append(_append(t, 9, count=2 ** 31)),
    "not an append": lambda t, e: e.append((SEG1, W1, 9, 1, b"x", None, RID1)),
    "unframed command": lambda t, e: e.write_command(C.AppendBlockEnd(W1, 0, b"", 1, 1, 1)),
    "not a command": lambda t, e: e.write_command(b"\x00\x00\x00\x64\x00\x00\x00\x00"),
    "unencodable": lambda t, e: e.write_command(C.SetupAppend(RID1, W1, "s" * 70000, "")),
    "bad writer type": lambda t, e: e.write_command(C.SetupAppend(RID1, "w", SEG1, "")),
}


@pytest.mark.parametrize("name", sorted(BAD_OPS))
def test_rejections_change_nothing(twin, name):
    """After any rejected call the encoder continues exactly as if it had not been made."""
    bad, ref = encoder(twin), encoder(twin)
    for op in _ops(twin):
        op(bad)
        op(ref)
    assert bad.buffered == ref.buffered > 0
    with pytest.raises((InvalidMessageError, twin.EncoderStateError,
                        twin.ConditionalAppendError)):
        BAD_OPS[name](twin, bad)
    assert bad.data_to_send() == ref.data_to_send() == b""
    for e in (bad, ref):
        e.append_event(SEG1, W1, 3, b"d" * 5, RID1)
        e.write_command(C.KeepAlive())
    assert bad.data_to_send() == ref.data_to_send()
    assert bad.buffered == ref.buffered == 0


def test_unframed_commands_are_refused(twin):
    enc = encoder(twin)
    for cmd in (C.AppendBlock(W1, b""), C.AppendBlockEnd(W1, 0, b"", 1, 1, 1),
                C.PartialEvent(b"x"), C.Event(b"x")):
        with pytest.raises(InvalidMessageError, match="append framing"):
            enc.write_command(cmd)
    enc.write_command(C.Padding(3))  # tolerated at top level
    assert enc.data_to_send() == bytes.fromhex("ffffffff00000003000000")


# --------------------------------------------------------------------------------------------
# Output and state


def test_open_block_is_held_back_and_drained_once(twin):
    enc = encoder(twin)
    enc.append_event(SEG1, W1, 1, b"a" * 10, RID1)
    assert enc.block_open and enc.buffered == 8 + 16 + 18 and enc.pending == 0
    assert enc.data_to_send() == b""
    enc.write_command(C.KeepAlive())
    assert enc.pending > 0 and enc.buffered == 0 and not enc.block_open
    out = enc.data_to_send()
    assert type(out) is bytes and out.endswith(bytes.fromhex("0000006400000000"))
    assert enc.data_to_send() == b"" and enc.pending == 0


def test_drain_while_a_new_block_is_open(twin):
    """Released bytes come out; the open block's bytes stay for later."""
    enc = encoder(twin, block_size=100)
    for ev in range(1, 7):  # the 6th 18-byte record overflows the 100-byte block
        enc.append_event(SEG1, W1, ev, b"p" * 10, RID1)
    enc.append_event(SEG1, W1, 7, b"q" * 10, RID1)  # opens the next block
    first = enc.data_to_send()
    assert enc.buffered == 8 + 16 + 18
    enc.write_command(C.KeepAlive())
    second = enc.data_to_send()
    appends = decode_all(twin, first + second)
    assert [(a.event_number, a.event_count) for a in appends] == [(6, 6), (7, 1)]
    assert bytes(appends[1].data) == event(b"q" * 10)


def test_batch_timeout_flushes_queued_writers(twin):
    enc = encoder(twin)
    enc.append_event(SEG1, W1, 1, b"a", RID1)
    enc.append_event(SEG2, W2, 1, b"b", RID2)
    token = enc.batch_timeout(-1)
    assert enc.data_to_send() == b""  # progress since the last tick: nothing happens
    assert enc.batch_timeout(token) == token
    appends = decode_all(twin, enc.data_to_send())
    assert [(a.writer_id, bytes(a.data)) for a in appends] == [(W1, event(b"a")),
                                                               (W2, event(b"b"))]
    assert enc.batch_timeout(token) == token + 1  # the padded block completed
    assert enc.data_to_send() == b""


def test_payload_kinds(twin):
    """Any contiguous buffer is accepted and sent as its bytes."""
    enc = encoder(twin, block_size=0)
    ints = array.array("i", [1, 2, 3])
    enc.append_event(SEG1, W1, 1, memoryview(b"view"), RID1)
    enc.append_event(SEG1, W1, 2, bytearray(b"array"), RID1)
    enc.append_event(SEG1, W1, 3, ints, RID1)
    enc.append(_append(twin, 4, memoryview(ints)))
    datas = [bytes(a.data) for a in decode_all(twin, enc.data_to_send())]
    assert datas == [event(b"view"), event(b"array"), event(ints.tobytes()), ints.tobytes()]
    with pytest.raises(InvalidMessageError, match="contiguous"):
        enc.append_event(SEG1, W1, 5, memoryview(b"abcdef")[::2], RID1)


def test_queued_data_is_copied_when_mutable(twin):
    enc = encoder(twin)
    enc.append_event(SEG1, W1, 1, b"a", RID1)  # W1 owns the block
    data = bytearray(b"original")
    enc.append_event(SEG2, W2, 1, data, RID2)  # queued
    whole = bytearray(event(b"second"))
    enc.append(_append(twin, 2, whole, writer=W2, segment=SEG2, rid=RID2))
    data[:] = b"CHANGED!"
    whole[:] = bytes(len(whole))
    enc.write_command(C.KeepAlive())
    appends = decode_all(twin, enc.data_to_send())
    assert bytes(appends[1].data) == event(b"original") + event(b"second")


# --------------------------------------------------------------------------------------------
# Sessions


def test_session_cap_closes_the_encoder(twin):
    enc = twin.CommandEncoder(lambda f: 1024, max_sessions=2)
    enc.write_command(C.SetupAppend(RID1, W1, SEG1, ""))
    enc.write_command(C.SetupAppend(RID2, W2, SEG2, ""))
    enc.write_command(C.SetupAppend(RID1, W1, SEG1, ""))  # replacing one does not count
    enc.append_event(SEG1, W1, 1, b"a", RID1)
    with pytest.raises(ConnectionClosedError, match="memory limit"):
        enc.write_command(C.SetupAppend(3 << 32, uuid.uuid4(), "third", ""))
    assert enc.closed
    # what was written before, the open block included, was released
    setups = 2 * len(encode(C.SetupAppend(RID1, W1, SEG1, ""))) + len(
        encode(C.SetupAppend(RID2, W2, SEG2, "")))
    appends = decode_all(twin, enc.data_to_send()[setups:])
    assert [bytes(a.data) for a in appends] == [event(b"a")]
    for call in (lambda: enc.append_event(SEG1, W1, 2, b"b", RID1),
                 lambda: enc.write_command(C.KeepAlive()), lambda: enc.batch_timeout(-1),
                 lambda: enc.close_session(SEG1, W1)):
        with pytest.raises(ConnectionClosedError):
            call()
    assert enc.data_to_send() == b""


def test_close_session_forgets_the_writer(twin):
    enc = encoder(twin, block_size=0)
    enc.append_event(SEG1, W1, 1, b"a", RID1)
    assert enc.session_count == 2
    assert enc.close_session(SEG1, W1) is True
    assert enc.close_session(SEG1, W1) is False
    assert enc.session_count == 1
    with pytest.raises(InvalidMessageError, match="without setting up"):
        enc.append_event(SEG1, W1, 2, b"b", RID1)
    enc.write_command(C.SetupAppend(RID1, W1, SEG1, ""))  # a new session numbers afresh
    enc.append_event(SEG1, W1, 1, b"c", RID1)
    assert enc.session_count == 2


def test_closing_the_block_owner_loses_nothing(twin):
    enc = encoder(twin)
    enc.append_event(SEG1, W1, 1, b"a" * 5, RID1)
    enc.append_event(SEG1, W1, 2, b"b" * 5, RID1)
    enc.append_event(SEG2, W2, 1, b"c" * 5, RID2)
    assert enc.close_session(SEG1, W1) and enc.close_session(SEG2, W2)
    assert enc.session_count == 0 and enc.block_open
    enc.write_command(C.KeepAlive())
    appends = decode_all(twin, enc.data_to_send())
    assert [(a.writer_id, a.event_number, a.event_count, bytes(a.data)) for a in appends] == [
        (W1, 2, 2, event(b"a" * 5) + event(b"b" * 5)), (W2, 1, 1, event(b"c" * 5))]


# --------------------------------------------------------------------------------------------
# Frame-size limits: nothing ever exceeds the segment store's whole-frame limit


def frames_within_limit(stream: bytes) -> int:
    pos = count = 0
    while pos < len(stream):
        length = struct.unpack_from(">i", stream, pos + 4)[0]
        assert 8 + length <= MAX_WIRECOMMAND_SIZE
        pos += 8 + length
        count += 1
    assert pos == len(stream)
    return count


def test_largest_append_split_across_a_block(twin):
    enc = encoder(twin)
    big = bytes(range(256)) * (twin.MAX_APPEND_SIZE // 256) + b"\x07" * (twin.MAX_APPEND_SIZE % 256)
    assert len(big) == twin.MAX_APPEND_SIZE
    enc.append(_append(twin, 1, event(b"head")))  # opens a 1024-byte block
    enc.append(_append(twin, 2, big))  # split: 1012 bytes in the block, the rest in the end
    stream = enc.data_to_send()
    frames_within_limit(stream)
    [a] = decode_all(twin, stream)
    assert bytes(a.data) == event(b"head") + big


def test_largest_append_as_its_own_block(twin):
    enc = encoder(twin, block_size=0)
    enc.append(_append(twin, 1, bytes(twin.MAX_APPEND_SIZE)))
    stream = enc.data_to_send()
    assert frames_within_limit(stream) == 2
    with pytest.raises(InvalidMessageError, match="exceeds"):
        enc.append_event(SEG1, W1, 2, bytes(twin.MAX_APPEND_SIZE - 7), RID1)


def test_queued_writer_flushed_before_it_would_overflow_a_frame(twin):
    enc = encoder(twin, block_size=1 << 20)
    enc.append_event(SEG1, W1, 1, b"a", RID1)  # W1 owns a 1 MiB block
    enc.append(_append(twin, 1, bytes(1_000_000), writer=W2, segment=SEG2, rid=RID2))
    assert enc.data_to_send() == b""  # queued: 1 000 000 bytes is under the 1 MiB flush mark
    enc.append(_append(twin, 2, b"\x01" * 16_000_000, writer=W2, segment=SEG2, rid=RID2))
    enc.write_command(C.KeepAlive())
    stream = enc.data_to_send()
    frames_within_limit(stream)
    appends = decode_all(twin, stream)
    assert [(a.writer_id, a.event_number, a.event_count, len(a.data)) for a in appends] == [
        (W1, 1, 1, 9), (W2, 1, 1, 1_000_000), (W2, 2, 1, 16_000_000)]


@pytest.mark.parametrize("size, declared", [(2 ** 40, 16 + MAX_WIRECOMMAND_SIZE - 32 + 8),
                                             (-5, 16 + 9)])
def test_block_size_is_clamped(twin, size, declared):
    enc = encoder(twin, block_size=size)
    enc.append_event(SEG1, W1, 1, b"a", RID1)
    enc.write_command(C.KeepAlive())
    stream = enc.data_to_send()
    assert struct.unpack_from(">ii", stream, 0) == (3, declared)
    frames_within_limit(stream)


def test_block_size_callable_must_return_an_int(twin):
    enc = twin.CommandEncoder(lambda flow_id: "big")
    enc.write_command(C.SetupAppend(RID1, W1, SEG1, ""))
    with pytest.raises(TypeError, match="must return an int"):
        enc.append_event(SEG1, W1, 1, b"a", RID1)
    with pytest.raises(TypeError):
        twin.CommandEncoder(block_size="big")


def test_block_size_callable_gets_the_flow(twin):
    seen = []
    enc = twin.CommandEncoder(lambda flow_id: seen.append(flow_id) or 0)
    enc.write_command(C.SetupAppend((7 << 32) | 3, W1, SEG1, ""))
    enc.append_event(SEG1, W1, 1, b"a", (7 << 32) | 3)
    enc.append_event(SEG1, W1, 2, b"a", -(1 << 32))
    assert seen == [7, -1]


def test_event_count_never_overflows_a_block(twin):
    enc = encoder(twin, block_size=1 << 20)
    top = 2 ** 31 - 1
    enc.append(_append(twin, top, event(b"a"), count=top))
    enc.append(_append(twin, top + 1, event(b"b"), count=1))  # would make numEvents overflow
    enc.write_command(C.KeepAlive())
    appends = decode_all(twin, enc.data_to_send())
    assert [(a.event_number, a.event_count) for a in appends] == [(top, top), (top + 1, 1)]


# --------------------------------------------------------------------------------------------
# Adaptive block size (block_size=None)


class FakeClock:
    def __init__(self, step=1_000_000):
        self.now = 0
        self.step = step

    def __call__(self):
        self.now += self.step
        return self.now


def test_adaptive_block_size_follows_the_flow_tracker(twin):
    clock = FakeClock()
    enc = twin.CommandEncoder(clock=clock)
    assert enc.trackers is not None
    enc.write_command(C.SetupAppend(RID1, W1, SEG1, ""))
    enc.data_to_send()
    enc.append_event(SEG1, W1, 1, b"x" * 100, RID1)  # one append in flight: no batching
    assert not enc.block_open and len(enc.trackers) == 1
    tracker = enc.trackers.get(RID1 >> 32)
    assert tracker.get_append_block_size() == 0
    enc.data_to_send()
    enc.append_event(SEG1, W1, 2, b"x" * 100, RID1)  # two in flight: batching starts
    size = tracker.get_append_block_size()
    assert size > 108 and enc.block_open
    assert enc.data_to_send() == b""
    enc.write_command(C.KeepAlive())
    stream = enc.data_to_send()
    assert struct.unpack_from(">ii", stream, 0) == (3, 16 + size + 8)
    assert enc.record_ack(RID1 | 5, 2) == 0  # flow = high 32 bits, sequence ignored
    assert tracker.get_append_block_size() == 0
    assert enc.record_ack(RID2, 1) is None  # a flow that never appended here
    assert twin.CommandEncoder(lambda f: 0).record_ack(RID1, 1) is None


def test_adaptive_trackers_are_per_flow(twin):
    enc = twin.CommandEncoder(clock=FakeClock())
    enc.write_command(C.SetupAppend(RID1, W1, SEG1, ""))
    enc.write_command(C.SetupAppend(RID2, W2, SEG2, ""))
    for ev in range(1, 4):
        enc.append_event(SEG1, W1, ev, b"a", RID1)
    enc.append_event(SEG2, W2, 1, b"b", RID2)
    t1, t2 = enc.trackers.get(1), enc.trackers.get(2)
    assert t1 is not t2
    assert t2.get_append_block_size() == 0 < t1.get_append_block_size()


def test_trackers_only_with_adaptive_sizing(twin):
    assert twin.CommandEncoder(lambda f: 0).trackers is None
    trackers = twin.FlowBatchSizeTrackers(FakeClock())
    assert twin.CommandEncoder(trackers=trackers).trackers is trackers
    with pytest.raises(TypeError):
        twin.CommandEncoder(lambda f: 0, trackers=trackers)


@pytest.mark.parametrize("block", list(range(1, 33)) + [100, 1000])
def test_every_split_point(twin, block):
    """Blocks of every small size split events at every offset, inside the 8-byte Event header
    included; append_event and append give the same bytes, and the server rebuilds the data."""
    by_event, by_append = (twin.CommandEncoder(lambda flow_id: block) for _ in range(2))
    sent = []
    for enc in (by_event, by_append):
        enc.write_command(C.SetupAppend(RID1, W1, SEG1, ""))
    for ev in range(1, 40):
        payload = bytes([ev]) * (ev % 11)
        by_event.append_event(SEG1, W1, ev, payload, RID1)
        by_append.append(_append(twin, ev, event(payload)))
        sent.append(event(payload))
    for enc in (by_event, by_append):
        enc.write_command(C.KeepAlive())
    stream = by_event.data_to_send()
    assert stream == by_append.data_to_send()
    appends = decode_all(twin, stream[len(encode(C.SetupAppend(RID1, W1, SEG1, ""))):],
                         setups=((RID1, W1, SEG1),))
    assert b"".join(bytes(a.data) for a in appends) == b"".join(sent)
    assert sum(a.event_count for a in appends) == 39 and appends[-1].event_number == 39


def test_one_segment_per_writer_id(twin):
    """The server maps a writer id to one segment per connection: a second segment for a live
    writer id is refused (Java would misroute the first segment's appends)."""
    enc = encoder(twin)
    enc.append_event(SEG1, W1, 1, b"a", RID1)
    with pytest.raises(InvalidMessageError, match="already set up for segment"):
        enc.write_command(C.SetupAppend(RID1, W1, "another/segment/0", ""))
    assert enc.block_open and enc.session_count == 2  # nothing changed
    enc.write_command(C.SetupAppend(RID1, W1, SEG1, ""))  # the same segment again is fine
    assert enc.close_session(SEG1, W1)
    enc.write_command(C.SetupAppend(RID1, W1, "another/segment/0", ""))
    enc.append_event("another/segment/0", W1, 1, b"b", RID1)
    assert enc.session_count == 2


@pytest.mark.parametrize("drain_every_step", [True, False])
@pytest.mark.parametrize("block", [0, 5000, 9000, 1 << 20])
def test_large_payloads_match_the_reference(twin, block, drain_every_step):
    """Large immutable payloads (which the compiled twin sends by reference instead of copying)
    give the reference twin's bytes, whatever the splits, queues and drains."""
    reference = load_twin("_appends", "pure")
    script = [(SEG1, W1, RID1, 5000), (SEG2, W2, RID2, 4096), (SEG1, W1, RID1, 10),
              (SEG1, W1, RID1, 7000), (SEG2, W2, RID2, 20000), (SEG1, W1, RID1, 4095),
              (SEG1, W1, RID1, 300_000), (SEG2, W2, RID2, 4100)]
    outputs = []
    for impl in (twin, reference):
        enc = encoder(impl, block_size=block)
        out, sizes = [], []
        numbers = {W1: 0, W2: 0}
        for step, (segment, writer, rid, size) in enumerate(script):
            numbers[writer] += 1
            payload = bytes([step]) * size
            if step in (3, 6):  # released bytes, then a new block, before the next drain
                enc.write_command(C.KeepAlive())
            if step % 2:
                enc.append_event(segment, writer, numbers[writer], payload, rid)
            else:
                enc.append(impl.Append(segment, writer, numbers[writer], 1, event(payload),
                                       None, rid))
            if step == 5:
                enc.batch_timeout(enc.batch_timeout(-1))
            sizes.append((enc.buffered, enc.pending))
            if drain_every_step:
                out.append(enc.data_to_send())
        enc.write_command(C.KeepAlive())
        out.append(enc.data_to_send())
        outputs.append((out, sizes))
    assert outputs[0] == outputs[1]
    appends = decode_all(twin, b"".join(outputs[0][0]))
    assert sum(len(a.data) for a in appends) == sum(8 + size for *_rest, size in script)
