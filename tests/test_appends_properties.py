"""Property tests of the append path: random scripts of several writers (setups, single and
multi-event appends including empty events, zero-length appends, other commands, batch
timeouts, closed and re-opened sessions, block sizes from 0 to 1 MiB or adaptive) go through
the CommandEncoder; the segment store's pipeline (FrameDecoder(server=True), which rejects any
frame over the limit → AppendDecoder) then yields, per writer and in order, exactly the data,
event numbers and counts appended. Both twins, and the twins agree byte for byte."""

from __future__ import annotations

import struct
import uuid

import pytest
from conftest import TWINS, load_twin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pravega_wire import commands as C
from pravega_wire.codec import FrameDecoder

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])

WRITERS = [(uuid.UUID(int=0xA1 << 64 | 1), "scope/a/0", 1 << 32),
           (uuid.UUID(int=0xB2 << 64 | 2), "scope/b/0", 2 << 32),
           (uuid.UUID(int=0xC3 << 64 | 3), "scope/c/0", (1 << 32) | 7)]  # shares flow 1

EVENT_SIZES = st.lists(st.one_of(st.integers(0, 16), st.integers(0, 300), st.integers(1000, 6000)),
                       min_size=1, max_size=4)


@st.composite
def _op(draw):
    """One script step; mostly appends."""
    roll = draw(st.integers(0, 99))
    if roll < 62:
        return ("append", draw(st.integers(0, 2)), draw(EVENT_SIZES), draw(st.booleans()))
    if roll < 65:  # a zero-length append: the writer's ordering barrier
        return ("empty", draw(st.integers(0, 2)))
    if roll < 73:
        return ("command", draw(st.sampled_from(["keepalive", "read", "padding"])))
    if roll < 82:
        return ("timeout", draw(st.integers(1, 2)))
    if roll < 87:
        return ("setup", draw(st.integers(0, 2)))
    if roll < 92:
        return ("close", draw(st.integers(0, 2)))
    return ("drain", 0)


OPS = st.lists(_op(), min_size=5, max_size=60)
BLOCK_SIZES = st.one_of(st.none(), st.lists(
    st.one_of(st.integers(0, 64), st.integers(0, 400), st.integers(0, 1 << 20)),
    min_size=3, max_size=3))


class Clock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        self.now += 3_000_000
        return self.now


def event(payload: bytes) -> bytes:
    return struct.pack(">ii", 0, len(payload)) + payload


def run_script(twin, ops, block_sizes, seed: int):
    """Run ``ops``; returns (per-step outputs, per-writer list of (event_number, count, data))."""
    if block_sizes is None:
        enc = twin.CommandEncoder(clock=Clock())
    else:
        enc = twin.CommandEncoder(lambda flow_id: block_sizes[flow_id % 3])
    sent = {w: [] for w, _s, _r in WRITERS}
    numbers = {w: 0 for w, _s, _r in WRITERS}
    live = set()
    token = -1
    outputs = []
    counter = seed

    def setup(i):
        w, seg, rid = WRITERS[i]
        enc.write_command(C.SetupAppend(rid, w, seg, ""))
        live.add(i)

    for op in ops:
        kind = op[0]
        if kind == "append":
            _k, i, sizes, one_by_one = op
            w, seg, rid = WRITERS[i]
            if i not in live:
                setup(i)
            payloads = []
            for size in sizes:
                counter += 1
                payloads.append(bytes((counter + j) & 0xFF for j in range(size)))
            if one_by_one:
                for p in payloads:
                    numbers[w] += 1
                    enc.append_event(seg, w, numbers[w], p, rid)
                    sent[w].append((numbers[w], 1, event(p)))
            else:
                numbers[w] += len(payloads)
                data = b"".join(event(p) for p in payloads)
                enc.append(twin.Append(seg, w, numbers[w], len(payloads), data, None, rid))
                sent[w].append((numbers[w], len(payloads), data))
        elif kind == "empty":
            w, seg, rid = WRITERS[op[1]]
            if op[1] not in live:
                setup(op[1])
            numbers[w] += 1
            enc.append(twin.Append(seg, w, numbers[w], 1, b"", None, rid))
            sent[w].append((numbers[w], 1, b""))
        elif kind == "command":
            cmd = {"keepalive": C.KeepAlive(), "padding": C.Padding(5),
                   "read": C.ReadSegment("scope/a/0", 10, 100, "", 9 << 32)}[op[1]]
            enc.write_command(cmd)
        elif kind == "timeout":
            for _ in range(op[1]):
                token = enc.batch_timeout(token)
        elif kind == "setup":
            setup(op[1])
        elif kind == "close":
            w, seg, _rid = WRITERS[op[1]]
            assert enc.close_session(seg, w) == (op[1] in live)
            live.discard(op[1])
        outputs.append((enc.data_to_send(), enc.buffered))
    enc.write_command(C.KeepAlive())
    outputs.append((enc.data_to_send(), enc.buffered))
    assert enc.buffered == 0 and not enc.block_open
    return outputs, sent


def server_side(twin, stream: bytes, chunk: int):
    frames = FrameDecoder(server=True)  # rejects any frame over the server's limit
    decoder = twin.AppendDecoder()
    got = {}
    for start in range(0, len(stream), chunk):
        for cmd in frames.feed(stream[start:start + chunk]):
            for item in decoder.process(cmd):
                if type(item) is twin.Append:
                    got.setdefault(item.writer_id, []).append(item)
    assert frames.buffered == 0 and not decoder.in_block
    return got


def check_partition(decoded, sent, request_id):
    """The decoded appends of one writer are its client appends, grouped contiguously."""
    pos = 0
    for a in decoded:
        count, data = 0, b""
        while count < a.event_count:
            number, n, d = sent[pos]
            count += n
            data += d
            pos += 1
        assert count == a.event_count
        assert a.event_number == sent[pos - 1][0]
        assert bytes(a.data) == data
        assert a.request_id == request_id and a.expected_length is None
    assert pos == len(sent)


@pytest.fixture(params=TWINS)
def twin(request):
    return load_twin("_appends", request.param)


@SETTINGS
@given(ops=OPS, block_sizes=BLOCK_SIZES, seed=st.integers(0, 255),
       chunk=st.sampled_from([1, 7, 4096, 1 << 30]))
def test_everything_appended_arrives_in_order(twin, ops, block_sizes, seed, chunk):
    outputs, sent = run_script(twin, ops, block_sizes, seed)
    stream = b"".join(out for out, _buffered in outputs)
    if chunk == 1 and len(stream) > 20_000:
        chunk = 4093  # byte by byte is slow: only for short streams
    got = server_side(twin, stream, chunk)
    for w, _seg, rid in WRITERS:
        check_partition(got.get(w, []), sent[w], rid)


@SETTINGS
@given(ops=OPS, block_sizes=BLOCK_SIZES, seed=st.integers(0, 255))
def test_twins_agree(ops, block_sizes, seed):
    pure, compiled = load_twin("_appends", "pure"), load_twin("_appends", "compiled")
    assert run_script(pure, ops, block_sizes, seed) == run_script(compiled, ops, block_sizes, seed)
