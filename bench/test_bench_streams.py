"""Stream writer benchmarks: writing to a stream by routing key, and transactions, against the
embedded cluster (one segment store and the controller in a child process,
:class:`~pravega_wire.server.ChildCluster`, set up as for the client benchmarks) on loopback.

* **Stream writers**, 100 B events under ``KEYS`` routing keys on a 4-segment stream, ``await
  write`` for each, then a flush (every event acknowledged): :class:`EventStreamWriter`
  (client/events.py: follows scales, keeps each unacknowledged event's key) against the fixed
  :class:`~pravega_wire.client.StreamWriter` (client/stream.py), the same events per round.
* **Transactions**: one transaction of ``TXN_EVENTS`` events per round (begin, write, commit:
  the merge included), and ``SMALL_TXNS`` transactions of ``SMALL_EVENTS`` events each
  (transactions/s: bound by the controller's round trips).
* **A scale under way**: ``SCALE_EVENTS`` events written, the stream split under the writer,
  the flush (the writer learns of the seal, asks for the successors and writes the
  unacknowledged events again).
* **Scaling once a second**: :class:`EventStreamWriter` writing ``SCALING_EVENTS`` events
  while the stream is scaled once a second (split in two, merged back, again and again),
  next to the same writes on a stream nobody scales; rounds interleaved, events/s of each and
  their ratio in ``extra_info``.

Run: ``.venv/bin/python -m pytest bench/test_bench_streams.py --benchmark-only -q
-p no:cacheprovider --benchmark-columns=median,mean,stddev,rounds``; rates are in
``extra_info``. Quote medians; the machine is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time

import pytest


from pravega_wire.client import StreamWriter  # noqa: E402
from pravega_wire.client.controller import ControllerClient  # noqa: E402
from pravega_wire.client.events import EventStreamWriter  # noqa: E402
from pravega_wire.client.transactions import TransactionalEventStreamWriter  # noqa: E402
from test_bench_clients import _Env as _ClientsEnv  # noqa: E402

EVENT = b"e" * 100
KEYS = [f"key-{i}" for i in range(64)]
STREAM_EVENTS = 20_000
TXN_EVENTS = 20_000
SMALL_TXNS = 100
SMALL_EVENTS = 10
SCALE_EVENTS = 5_000
SCALING_EVENTS = 400_000
ROUNDS = 5


class _Env(_ClientsEnv):
    """The client benchmarks' cluster, loop and pool, plus a controller client and fresh
    streams on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.ctl = self.run(self._controller())
        self.run(self.ctl.create_scope("bench"))
        self._streams = itertools.count()

    async def _controller(self) -> ControllerClient:
        return ControllerClient(self.cluster.controller_uri)

    def new_stream(self, segments: int) -> str:
        name = f"s{next(self._streams)}"
        self.run(self.ctl.create_stream("bench", name, segments))
        return name

    def close(self) -> None:
        try:
            self.run(self.ctl.close())
        finally:
            super().close()


@pytest.fixture(scope="module")
def env():
    environment = _Env()
    try:
        yield environment
    finally:
        environment.close()


def _record(benchmark, events: int, **extra: float) -> None:
    if benchmark.stats is None:  # --benchmark-disable: the body ran once, as a plain test
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update({"events_per_round": events, "median_s": median,
                                 "events_per_s": round(events / median), **extra})


async def _keyed(writer, events: int) -> None:
    write = writer.write
    for i in range(events):
        await write(EVENT, KEYS[i % len(KEYS)])
    await writer.flush()


def _open_writer(env: _Env, kind: str):
    stream = env.new_stream(4)

    async def open_writer():
        if kind == "EventStreamWriter":
            return await EventStreamWriter(env.pool, env.ctl, "bench", stream).__aenter__()
        return await StreamWriter.open(env.pool, env.ctl, "bench", stream)

    return env.run(open_writer())


@pytest.mark.parametrize("kind", ["EventStreamWriter", "StreamWriter"])
def test_stream_writers(benchmark, env, kind):
    benchmark.group = f"stream writer, 4 segments, {STREAM_EVENTS} keyed 100 B events per round"
    writer = _open_writer(env, kind)
    try:
        benchmark.pedantic(lambda: env.run(_keyed(writer, STREAM_EVENTS)), rounds=ROUNDS,
                           warmup_rounds=1)
        _record(benchmark, STREAM_EVENTS)
    finally:
        env.run(writer.close())


def test_event_writer_over_stream_writer_interleaved(benchmark, env):
    """Rounds of the two writers alternate (same load on the machine); ``extra_info`` holds
    each one's median events/s and EventStreamWriter/StreamWriter."""
    benchmark.group = "ratios (interleaved rounds)"
    writers = {kind: _open_writer(env, kind) for kind in ("EventStreamWriter", "StreamWriter")}
    times: dict[str, list[float]] = {kind: [] for kind in writers}

    def alternate():
        for _ in range(3 * ROUNDS):
            for kind, writer in writers.items():
                start = time.perf_counter()
                env.run(_keyed(writer, STREAM_EVENTS))
                times[kind].append(time.perf_counter() - start)

    try:
        for writer in writers.values():  # warm up both
            env.run(_keyed(writer, STREAM_EVENTS))
        benchmark.pedantic(alternate, rounds=1)
        rates = {kind: STREAM_EVENTS / statistics.median(t) for kind, t in times.items()}
        benchmark.extra_info.update(
            event_writer_events_per_s=round(rates["EventStreamWriter"]),
            stream_writer_events_per_s=round(rates["StreamWriter"]),
            event_writer_over_stream_writer=round(
                rates["EventStreamWriter"] / rates["StreamWriter"], 3))
    finally:
        for writer in writers.values():
            env.run(writer.close())


def test_one_big_transaction(benchmark, env):
    benchmark.group = f"transactions, {TXN_EVENTS} keyed 100 B events in one, committed"
    stream = env.new_stream(4)
    writer = TransactionalEventStreamWriter(env.pool, env.ctl, "bench", stream)

    async def one() -> None:
        txn = await writer.begin()
        for i in range(TXN_EVENTS):
            await txn.write(EVENT, KEYS[i % len(KEYS)])
        await txn.commit()

    try:
        benchmark.pedantic(lambda: env.run(one()), rounds=ROUNDS, warmup_rounds=1)
        _record(benchmark, TXN_EVENTS)
    finally:
        env.run(writer.close())


def test_small_transactions(benchmark, env):
    benchmark.group = f"transactions, {SMALL_TXNS} of {SMALL_EVENTS} events each, committed"
    stream = env.new_stream(4)
    writer = TransactionalEventStreamWriter(env.pool, env.ctl, "bench", stream)

    async def many() -> None:
        for _ in range(SMALL_TXNS):
            txn = await writer.begin()
            for i in range(SMALL_EVENTS):
                await txn.write(EVENT, KEYS[i])
            await txn.commit()

    try:
        benchmark.pedantic(lambda: env.run(many()), rounds=ROUNDS, warmup_rounds=1)
        _record(benchmark, SMALL_TXNS * SMALL_EVENTS)
        if benchmark.stats is not None:
            benchmark.extra_info["transactions_per_s"] = round(
                SMALL_TXNS / benchmark.stats.stats.median)
    finally:
        env.run(writer.close())


def test_a_scale_under_the_writer(benchmark, env):
    """Per round: a fresh 1-segment stream; ``SCALE_EVENTS`` written (not flushed), the stream
    split in two, then the flush that hands the unacknowledged events to the successors."""
    benchmark.group = f"a scale under the writer, {SCALE_EVENTS} events in flight"
    state: dict = {}

    def setup():
        stream = env.new_stream(1)

        async def prepare():
            writer = await EventStreamWriter(env.pool, env.ctl, "bench", stream).__aenter__()
            state.update(stream=stream, writer=writer)
        env.run(prepare())

    async def scale_and_flush() -> None:
        writer = state["writer"]
        for i in range(SCALE_EVENTS):
            await writer.write(EVENT, KEYS[i % len(KEYS)])
        await env.ctl.scale_stream("bench", state["stream"], [0], [(0.0, 0.5), (0.5, 1.0)])
        await writer.flush()
        await writer.close()
        assert writer.segments_sealed == 1

    benchmark.pedantic(lambda: env.run(scale_and_flush()), setup=setup, rounds=ROUNDS)
    _record(benchmark, SCALE_EVENTS)


async def _scale_every_second(ctl, stream: str, stop: asyncio.Event) -> int:
    """Scale ``stream`` once a second until ``stop``: split its one segment in two, merge the
    two back, and so on. Returns the scales made."""
    scales = 0
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)  # the load: one scale per second
        if stop.is_set():
            break
        active = [s.segment_id for s in await ctl.get_current_segments("bench", stream)]
        ranges = [(0.0, 0.5), (0.5, 1.0)] if len(active) == 1 else [(0.0, 1.0)]
        await ctl.scale_stream("bench", stream, active, ranges)
        scales += 1
    return scales


def test_event_writer_with_a_scale_every_second_next_to_none(benchmark, env):
    """Rounds alternate between a stream scaled once a second under the writer and one never
    scaled (both start with one segment); ``extra_info`` holds each one's median events/s,
    their ratio, and the scales made per round."""
    benchmark.group = f"EventStreamWriter, {SCALING_EVENTS} keyed 100 B events, scaling"
    streams = {"scaled": env.new_stream(1), "unscaled": env.new_stream(1)}
    writers = {kind: env.run(EventStreamWriter(env.pool, env.ctl, "bench", name).__aenter__())
               for kind, name in streams.items()}
    times: dict[str, list[float]] = {kind: [] for kind in writers}
    scales: list[int] = []

    async def scaled_round() -> None:
        stop = asyncio.Event()
        scaler = asyncio.ensure_future(_scale_every_second(env.ctl, streams["scaled"], stop))
        try:
            await _keyed(writers["scaled"], SCALING_EVENTS)
        finally:
            stop.set()
            scales.append(await scaler)

    def alternate():
        for _ in range(3):
            for kind in ("scaled", "unscaled"):
                start = time.perf_counter()
                env.run(scaled_round() if kind == "scaled"
                        else _keyed(writers["unscaled"], SCALING_EVENTS))
                times[kind].append(time.perf_counter() - start)

    try:
        env.run(_keyed(writers["unscaled"], SCALING_EVENTS // 10))  # warm up
        benchmark.pedantic(alternate, rounds=1)
        rates = {kind: SCALING_EVENTS / statistics.median(t) for kind, t in times.items()}
        benchmark.extra_info.update(
            scaled_events_per_s=round(rates["scaled"]),
            unscaled_events_per_s=round(rates["unscaled"]),
            scaled_over_unscaled=round(rates["scaled"] / rates["unscaled"], 3),
            scales_per_round=statistics.median(scales))
    finally:
        for writer in writers.values():
            env.run(writer.close())
