"""Append-path benchmarks: the compiled twin against the pure one, side by side in one run.

* ``append_event`` + ``data_to_send`` per event (the Event header built in place, the block
  framed, the completed blocks drained), for 100 B and 10 KB events, with 1 MiB blocks and
  unbatched (block size 0); a ``struct.pack`` baseline of the same events in the same group.
* ``append(Append)`` with prebuilt Event records.
* ``AppendDecoder`` per block: a 1 MiB block ending in a PartialEvent (its data joined) or in
  Padding (its data a view), and a single-event block.

Each round handles many events; ``extra_info['ns_per_event']`` is the median divided by them.
Run with::

    python -m pytest bench/test_bench_appends.py --benchmark-only -q -p no:cacheprovider

Quote medians (the machine is shared and noisy).
"""

from __future__ import annotations

import importlib
import struct
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.codec import FrameDecoder, encode, pure_requested

TWINS = ["compiled", "pure"]
WRITER = uuid.UUID("3f1c2a9e-5b7d-4e21-9a0c-7d6e5f4b3a21")
SEGMENT = "examples/stream-1/0.#epoch.0"
RID = 7 << 32
MIB = 1024 * 1024
SIZES = {"100B": 100, "10KB": 10_000}
BLOCKS = {"1MiB": MIB, "unbatched": 0}
EVENTS_PER_ROUND = {"100B": 10_000, "10KB": 1_000}


@pytest.fixture(params=TWINS)
def twin(request):
    """The append-path twin; the compiled one must load unless pure mode was asked for."""
    if request.param == "pure":
        return importlib.import_module("pravega_wire._appends_py")
    if pure_requested():
        pytest.skip("PRAVEGA_WIRE_NO_EXTENSIONS is set")
    return importlib.import_module("pravega_wire._appends")


def _payload(size: int) -> bytes:
    return bytes(i & 0xFF for i in range(size))


def _per_event(benchmark, count: int) -> None:
    benchmark.extra_info["events_per_round"] = count
    if benchmark.stats is not None:  # None under --benchmark-disable (a smoke run)
        benchmark.extra_info["ns_per_event"] = round(benchmark.stats.stats.median / count * 1e9, 1)


def _encoder(twin, block: int):
    enc = twin.CommandEncoder(lambda flow_id: block)
    enc.write_command(C.SetupAppend(RID, WRITER, SEGMENT, ""))
    enc.data_to_send()
    return enc


@pytest.mark.parametrize("block", BLOCKS, ids=list(BLOCKS))
@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_append_event(benchmark, twin, size, block):
    """One event per call, its 8-byte Event header built in place, then a drain."""
    enc = _encoder(twin, BLOCKS[block])
    payload = _payload(SIZES[size])
    count = EVENTS_PER_ROUND[size]
    state = {"next": 1}

    def run():
        append_event, drain = enc.append_event, enc.data_to_send
        first = state["next"]
        for ev in range(first, first + count):
            append_event(SEGMENT, WRITER, ev, payload, RID)
            drain()
        state["next"] = first + count

    benchmark.group = f"append {size} events, block {block}"
    benchmark(run)
    _per_event(benchmark, count)
    enc.write_command(C.KeepAlive())
    assert enc.data_to_send().endswith(encode(C.KeepAlive()))


@pytest.mark.parametrize("block", BLOCKS, ids=list(BLOCKS))
@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_baseline_struct(benchmark, size, block):
    """Plain Python framing of the same events: ``struct.pack`` of a 36-byte header plus the
    payload, one bytes object per event (no blocks, no state, no checks)."""
    header = struct.Struct(">ii16siii")
    payload = _payload(SIZES[size])
    count = EVENTS_PER_ROUND[size]
    writer = WRITER.bytes
    n = len(payload)

    def run():
        pack = header.pack
        for ev in range(count):
            pack(3, 28 + n, writer, 0, n, ev) + payload
        return pack(3, 28 + n, writer, 0, n, count) + payload

    benchmark.group = f"append {size} events, block {block}"
    assert len(benchmark(run)) == 36 + n
    _per_event(benchmark, count)


def test_append_records(benchmark, twin):
    """``append(Append)`` of prebuilt 100 B Event records into 1 MiB blocks."""
    count = EVENTS_PER_ROUND["100B"]
    record = struct.pack(">ii", 0, 100) + _payload(100)
    appends = [twin.Append(SEGMENT, WRITER, ev, 1, record, None, RID) for ev in range(1, count + 1)]

    def setup():
        return (_encoder(twin, MIB),), {}

    def run(enc):
        append, drain = enc.append, enc.data_to_send
        for a in appends:
            append(a)
            drain()

    benchmark.group = "append(Append) 100B records, block 1MiB"
    benchmark.pedantic(run, setup=setup, rounds=30, warmup_rounds=2)
    _per_event(benchmark, count)


def _block_commands(kind: str):
    """(AppendBlock, AppendBlockEnd) as the server decodes them: a 1 MiB block of 100 B events
    completed by a PartialEvent ("partial") or closed with Padding after 9000 events
    ("padding"), or an unbatched single event ("single")."""
    enc = _encoder(importlib.import_module("pravega_wire._appends_py"),
                   0 if kind == "single" else MIB)
    payload = _payload(100)
    stream = b""
    ev = 0
    while not stream:
        ev += 1
        enc.append_event(SEGMENT, WRITER, ev, payload, RID)
        if kind == "padding" and ev == 9000:
            enc.write_command(C.KeepAlive())
        stream = enc.data_to_send()
    block, end = FrameDecoder(server=True).feed(stream)[:2]
    assert type(block) is C.AppendBlock and type(end) is C.AppendBlockEnd
    return block, end


@pytest.mark.parametrize("kind", ["partial", "padding", "single"])
def test_decode_block(benchmark, twin, kind):
    """``AppendDecoder.process`` of one AppendBlock and its AppendBlockEnd."""
    block, end = _block_commands(kind)
    decoder = twin.AppendDecoder()
    decoder.process(C.SetupAppend(RID, WRITER, SEGMENT, ""))

    def run():
        decoder.process(block)
        return decoder.process(end)

    benchmark.group = f"AppendDecoder one block ({kind})"
    (append,) = benchmark(run)  # the same block again: equal event numbers are allowed
    assert append.event_count == end.num_events
    benchmark.extra_info["block_bytes"] = len(encode(block)) + len(encode(end))
