"""Client benchmarks: segment writers and readers against the embedded server on loopback, and
the Rust-based ``pravega`` client against the same server in the same run.

The server (one segment store and the controller) runs in a child process
(:class:`~pravega_wire.server.ChildCluster`), so that client and server each get a core; the
Rust client runs in a child process of its own (``bench/rust_writer.py``: the wheel holds the
GIL while it writes). Our clients share one :class:`~pravega_wire.pool.ConnectionPool` on one
event loop, as an application's would.

* **One writer**, 100 B events, acknowledged events/s: a round writes ``WRITER_EVENTS`` events
  and flushes (so every one is acknowledged), with ``write_nowait``, ``await write`` (with
  backpressure) and ``write_batch_nowait`` (batches of ``BATCH`` events), pooled and dedicated.
  The writer is warm (its adaptive block size has settled; one warm-up round). One event in
  flight (``await write_acked`` each) gives the latency-bound rate.
* **One reader**, a pre-filled segment of 100 B events (``READ_BYTES``) read from start to end
  by a fresh reader each round, with 1 MiB reads: ``read_event`` (events/s and MB/s) and raw
  ``read(1 MiB)`` (MB/s).
* **100 writers** on 100 segments, each a task writing ``HUNDRED_EVENTS`` events in chunks of
  ``CHUNK`` (yielding to the loop between chunks) and then flushing: pooled (the pool's 10
  connections) against dedicated (100 connections), the same total events per round. The
  interleaved case alternates pooled and dedicated rounds so both see the same machine load
  and records the pooled/dedicated ratio of medians.
* **The Rust client**: one writer, 100 B events, with ``max_inflight_events`` 0 (its default:
  one event in flight) and 1000. The interleaved case alternates rounds of ours
  (``write_nowait``, pooled; and one event in flight) with rounds of each Rust configuration
  and records ours/Rust.

Segments are truncated between rounds (untimed) so that the store's memory stays bounded.
Besides the rates, ``extra_info`` holds the CPU time per event of the client (this process)
and of the server (its process, from ``/proc``): on a shared machine the wall time is not all
ours, the CPU time is, and it says which side limits a case.

Run: ``/tmp/venv/bin/python -m pytest bench/test_bench_clients.py --benchmark-only -q
-p no:cacheprovider --benchmark-columns=median,mean,stddev,rounds`` (``extra_info`` holds the
rates; add ``--benchmark-json=FILE`` to keep them). Quote medians; the machine is shared.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import selectors
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pravega_wire.client import (EndOfSegment, EventWriterConfig, MetadataClient,
                                 SegmentReader, SegmentWriter)
from pravega_wire.pool import ConnectionPool
from pravega_wire.server import ChildCluster

EVENT = b"e" * 100
WRITER_EVENTS = 100_000
BATCH = 100
ONE_IN_FLIGHT_EVENTS = 2_000
READ_BYTES = 64 * 1024 * 1024
READ_SIZE = 1024 * 1024
WRITERS = 100
HUNDRED_EVENTS = 1_000  # per writer and round: 100,000 in all
CHUNK = 100
RUST_EVENTS = {0: 2_000, 1000: 100_000}  # per round, by max_inflight_events
ROUNDS = 7
#: Bound on every wait for the Rust helper (seconds).
WAIT = 60.0

RUST_WRITER = Path(__file__).with_name("rust_writer.py")
_names = itertools.count()


class _Env:
    """The child cluster, our event loop, pool and a metadata client; shared by the module."""

    def __init__(self) -> None:
        self.cluster = ChildCluster(1).start()
        self.endpoint = self.cluster.store_endpoints[0]
        self.loop = asyncio.new_event_loop()
        self.pool = ConnectionPool()
        self.meta = MetadataClient(self.pool, self.endpoint)

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def new_segment(self, kind: str) -> str:
        name = f"bench/{kind}-{os.getpid()}-{next(_names)}/0.#epoch.0"
        self.run(self.meta.create(name))
        return name

    def writer(self, segment: str, pooled: bool = True) -> SegmentWriter:
        config = EventWriterConfig(enable_connection_pooling=pooled)
        return self.run(SegmentWriter.open(self.pool, self.endpoint, segment, config=config))

    def truncate(self, writers) -> None:
        """Drop what the writers wrote so far (the store frees it)."""
        async def go():
            await asyncio.gather(*(self.meta.truncate(w.segment, w.segment_length)
                                   for w in writers if w.segment_length > 0))
        self.run(go())

    def discard(self, writers) -> None:
        async def go():
            for w in writers:
                await w.close()
            await asyncio.gather(*(self.meta.delete(w.segment) for w in writers))
        self.run(go())

    def close(self) -> None:
        try:
            self.run(self.meta.close())
            self.run(self.pool.close())
        finally:
            self.loop.close()
            self.cluster.stop()


@pytest.fixture(scope="module")
def env():
    environment = _Env()
    try:
        yield environment
    finally:
        environment.close()


def _server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the server process has used so far (0 off Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Cpu:
    """Wraps a round: the CPU time this process (the client) and the server's process spent
    in it, whatever else the machine is doing (wall time on a shared machine is not ours)."""

    def __init__(self, env: _Env, fn):
        self.pid, self.fn = env.cluster.process.pid, fn
        self.client: list[float] = []
        self.server: list[float] = []

    def __call__(self, *args):
        client, server = time.process_time(), _server_cpu(self.pid)
        try:
            return self.fn(*args)
        finally:
            self.client.append(time.process_time() - client)
            self.server.append(_server_cpu(self.pid) - server)


def _record(benchmark, events: int, payload_bytes: int, cpu: _Cpu | None = None) -> None:
    """events/s and MB/s (payload bytes) of the median round in ``extra_info``; with ``cpu``,
    the client's and the server's mean CPU time per event (ns) over the timed rounds, and each
    one's share of the median round's wall time (a side near 1.0 is the limit; both well
    below 1.0: latency-bound). The server's CPU is counted in clock ticks (10 ms), so its
    figures are coarse."""
    if benchmark.stats is None:  # --benchmark-disable: the body ran once, as a plain test
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update({
        "events_per_round": events, "median_s": median,
        "events_per_s": round(events / median),
        "MB_per_s": round(payload_bytes / median / 1e6, 1)})
    if cpu is not None:
        timed = len(benchmark.stats.stats.data)
        for side, spent in (("client", cpu.client[-timed:]), ("server", cpu.server[-timed:])):
            mean = statistics.mean(spent)
            benchmark.extra_info[f"{side}_cpu_ns_per_event"] = round(mean / events * 1e9, 1)
            benchmark.extra_info[f"{side}_cpu_share"] = round(mean / median, 2)


# ---- one writer -----------------------------------------------------------------------------


async def _write_nowait(writer: SegmentWriter, events: int) -> None:
    write = writer.write_nowait
    for _ in range(events):
        write(EVENT)
    await writer.flush()


async def _write(writer: SegmentWriter, events: int) -> None:
    write = writer.write
    for _ in range(events):
        await write(EVENT)
    await writer.flush()


_BATCH_EVENTS = [EVENT] * BATCH


async def _write_batch_nowait(writer: SegmentWriter, events: int) -> None:
    write = writer.write_batch_nowait
    for _ in range(events // BATCH):
        write(_BATCH_EVENTS)
    await writer.flush()


async def _write_acked_one_at_a_time(writer: SegmentWriter, events: int) -> None:
    write = writer.write_acked
    for _ in range(events):
        await write(EVENT)


MODES = {"write_nowait": _write_nowait, "write": _write,
         "write_batch_nowait": _write_batch_nowait}


@pytest.mark.parametrize("pooling", ["pooled", "dedicated"])
@pytest.mark.parametrize("mode", MODES)
def test_one_writer(benchmark, env, mode, pooling):
    benchmark.group = f"one writer, 100 B events, {WRITER_EVENTS} acknowledged per round"
    writer = env.writer(env.new_segment("writer"), pooled=pooling == "pooled")
    write = MODES[mode]
    cpu = _Cpu(env, lambda: env.run(write(writer, WRITER_EVENTS)))
    try:
        benchmark.pedantic(cpu, setup=lambda: env.truncate([writer]), rounds=ROUNDS,
                           warmup_rounds=1)
        assert writer.acked_events == writer.last_event_number == len(cpu.client) * WRITER_EVENTS
        assert writer.connections == 1
        _record(benchmark, WRITER_EVENTS, WRITER_EVENTS * len(EVENT), cpu)
    finally:
        env.discard([writer])


def test_one_writer_one_event_in_flight(benchmark, env):
    """Latency-bound: each event is acknowledged before the next is written."""
    benchmark.group = "one writer, one event in flight"
    writer = env.writer(env.new_segment("latency"))
    cpu = _Cpu(env, lambda: env.run(_write_acked_one_at_a_time(writer, ONE_IN_FLIGHT_EVENTS)))
    try:
        benchmark.pedantic(cpu, rounds=ROUNDS, warmup_rounds=1)
        assert writer.acked_events == len(cpu.client) * ONE_IN_FLIGHT_EVENTS
        _record(benchmark, ONE_IN_FLIGHT_EVENTS, ONE_IN_FLIGHT_EVENTS * len(EVENT), cpu)
    finally:
        env.discard([writer])


# ---- one reader -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled_segment(env):
    """A segment of 100 B events, ``READ_BYTES`` long (rounded down to whole events)."""
    writer = env.writer(env.new_segment("read"))
    per_batch = READ_SIZE // (len(EVENT) + 8)
    batches = READ_BYTES // (per_batch * (len(EVENT) + 8))

    async def fill():
        for _ in range(batches):
            writer.write_batch_nowait([EVENT] * per_batch)
            await writer.flush()

    try:
        env.run(fill())
        yield writer.segment, writer.segment_length, per_batch * batches
    finally:
        env.discard([writer])


async def _read_events(env: _Env, segment: str, length: int, batched: bool = False) -> int:
    """Events read from ``segment`` up to ``length``: one ``read_event()`` per event, or with
    ``batched`` one ``read_events()`` per batch of buffered events."""
    events = 0
    async with SegmentReader(env.pool, env.endpoint, segment, end_offset=length) as reader:
        try:
            if batched:
                read_batch = reader.read_events
                while True:
                    events += len(await read_batch())
            read = reader.read_event
            while True:
                await read()
                events += 1
        except EndOfSegment:
            return events


async def _read_raw(env: _Env, segment: str, length: int) -> int:
    got = 0
    async with SegmentReader(env.pool, env.endpoint, segment, end_offset=length) as reader:
        read = reader.read
        try:
            while True:
                got += len(await read(READ_SIZE))
        except EndOfSegment:
            return got


@pytest.mark.parametrize("api", ["read_event", "read"])
def test_one_reader(benchmark, env, filled_segment, api):
    benchmark.group = f"one reader, {READ_BYTES >> 20} MiB of 100 B events, 1 MiB reads"
    segment, length, events = filled_segment
    if api == "read_event":
        cpu = _Cpu(env, lambda: env.run(_read_events(env, segment, length)))
        assert benchmark.pedantic(cpu, rounds=ROUNDS, warmup_rounds=1) == events
    else:
        cpu = _Cpu(env, lambda: env.run(_read_raw(env, segment, length)))
        assert benchmark.pedantic(cpu, rounds=3 * ROUNDS, warmup_rounds=1) == length
    _record(benchmark, events, length, cpu)


# ---- 100 writers ----------------------------------------------------------------------------


async def _hundred_round(writers) -> None:
    async def one(writer: SegmentWriter) -> None:
        write = writer.write_nowait
        for _ in range(HUNDRED_EVENTS // CHUNK):
            for _ in range(CHUNK):
                write(EVENT)
            await asyncio.sleep(0)
        await writer.flush()

    await asyncio.gather(*(one(w) for w in writers))


def _hundred_writers(env: _Env, pooled: bool):
    kind = "pooled" if pooled else "dedicated"
    return [env.writer(env.new_segment(kind), pooled=pooled) for _ in range(WRITERS)]


@pytest.mark.parametrize("pooling", ["pooled", "dedicated"])
def test_hundred_writers(benchmark, env, pooling):
    benchmark.group = f"{WRITERS} writers, {WRITERS * HUNDRED_EVENTS} events per round"
    writers = _hundred_writers(env, pooling == "pooled")
    cpu = _Cpu(env, lambda: env.run(_hundred_round(writers)))
    try:
        benchmark.pedantic(cpu, setup=lambda: env.truncate(writers), rounds=ROUNDS,
                           warmup_rounds=1)
        assert all(w.acked_events == len(cpu.client) * HUNDRED_EVENTS for w in writers)
        _record(benchmark, WRITERS * HUNDRED_EVENTS, WRITERS * HUNDRED_EVENTS * len(EVENT), cpu)
        stats = env.pool.stats()
        benchmark.extra_info["pooled_connections"] = sum(
            len(c) for c in stats.endpoints.values())
        benchmark.extra_info["dedicated_connections"] = sum(stats.dedicated.values())
    finally:
        env.discard(writers)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_hundred_writers_pooled_over_dedicated_interleaved(benchmark, env):
    """Pooled and dedicated rounds alternate (same load on the machine); ``extra_info`` holds
    each side's median events/s and pooled/dedicated."""
    benchmark.group = "ratios (interleaved rounds)"
    pooled, dedicated = _hundred_writers(env, True), _hundred_writers(env, False)
    times = {"pooled": [], "dedicated": []}

    def alternate():
        for _ in range(ROUNDS):
            for name, writers in (("pooled", pooled), ("dedicated", dedicated)):
                env.truncate(writers)
                times[name].append(_timed(lambda: env.run(_hundred_round(writers))))

    try:
        env.run(_hundred_round(pooled))  # warm up both
        env.run(_hundred_round(dedicated))
        benchmark.pedantic(alternate, rounds=1)
        total = WRITERS * HUNDRED_EVENTS
        rates = {name: total / statistics.median(t) for name, t in times.items()}
        benchmark.extra_info.update(
            pooled_events_per_s=round(rates["pooled"]),
            dedicated_events_per_s=round(rates["dedicated"]),
            pooled_over_dedicated=round(rates["pooled"] / rates["dedicated"], 3))
        assert all(w.acked_events == (ROUNDS + 1) * HUNDRED_EVENTS for w in pooled + dedicated)
    finally:
        env.discard(pooled + dedicated)


# ---- the Rust client ------------------------------------------------------------------------


class _RustWriter:
    """``bench/rust_writer.py`` in its own process: one Rust writer on a one-segment stream."""

    def __init__(self, env: _Env, max_inflight: int):
        stream = f"rust{max_inflight}x{os.getpid()}x{next(_names)}"
        self.process = subprocess.Popen(
            [sys.executable, str(RUST_WRITER), env.cluster.controller_uri, "benchrust", stream,
             str(len(EVENT)), str(max_inflight)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        line = self._line()
        if line != "ready":
            self.close()
            raise RuntimeError(f"the Rust writer did not start: {line!r}")

    def _line(self) -> str:
        if not self._selector.select(WAIT):
            raise RuntimeError(f"no answer from the Rust writer within {WAIT} s")
        return self.process.stdout.readline().strip()

    def write(self, events: int) -> float:
        """Write ``events`` events and flush; the seconds that took, as measured there."""
        self.process.stdin.write(f"write {events}\n")
        self.process.stdin.flush()
        line = self._line()
        if not line.startswith("done "):
            raise RuntimeError(f"the Rust writer failed: {line!r}")
        return float(line.split()[1])

    def close(self) -> None:
        self._selector.close()
        try:
            self.process.stdin.close()
            self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def rust_writers(env):
    pytest.importorskip("pravega_client", reason="the Rust-based pravega client is not installed")
    if env.cluster.controller_uri is None:
        pytest.skip("the Rust client needs the embedded controller (grpcio)")
    writers = {}
    try:
        for inflight in RUST_EVENTS:
            writers[inflight] = _RustWriter(env, inflight)
        yield writers
    finally:
        for writer in writers.values():
            writer.close()


@pytest.mark.parametrize("max_inflight", RUST_EVENTS)
def test_rust_writer(benchmark, env, rust_writers, max_inflight):
    """The Rust client's writer (timed here around the child's round, pipe included)."""
    benchmark.group = "Rust client, one writer, 100 B events"
    events = RUST_EVENTS[max_inflight]
    writer = rust_writers[max_inflight]
    benchmark.pedantic(writer.write, args=(events,), rounds=ROUNDS, warmup_rounds=1)
    _record(benchmark, events, events * len(EVENT))


def test_ours_over_rust_interleaved(benchmark, env, rust_writers):
    """Rounds alternate: ours with ``write_nowait`` (pooled), ours with one event in flight
    (``await write_acked`` each), and each Rust configuration. ``extra_info`` holds the median
    events/s of each, ours (many in flight) over each Rust configuration, and one-in-flight
    over one-in-flight (Rust's default)."""
    benchmark.group = "ratios (interleaved rounds)"
    ours, ours_one = env.writer(env.new_segment("ours")), env.writer(env.new_segment("ours1"))
    times = {"ours": [], "ours_one": [], **{inflight: [] for inflight in rust_writers}}

    def alternate():
        for _ in range(ROUNDS):
            env.truncate([ours])
            times["ours"].append(_timed(lambda: env.run(_write_nowait(ours, WRITER_EVENTS))))
            times["ours_one"].append(_timed(lambda: env.run(
                _write_acked_one_at_a_time(ours_one, ONE_IN_FLIGHT_EVENTS))))
            for inflight, writer in rust_writers.items():
                times[inflight].append(writer.write(RUST_EVENTS[inflight]))

    try:
        env.run(_write_nowait(ours, WRITER_EVENTS))  # warm up
        benchmark.pedantic(alternate, rounds=1)
        ours_rate = WRITER_EVENTS / statistics.median(times["ours"])
        one_rate = ONE_IN_FLIGHT_EVENTS / statistics.median(times["ours_one"])
        benchmark.extra_info["ours_events_per_s"] = round(ours_rate)
        benchmark.extra_info["ours_one_in_flight_events_per_s"] = round(one_rate)
        for inflight in rust_writers:
            rate = RUST_EVENTS[inflight] / statistics.median(times[inflight])
            benchmark.extra_info[f"rust_max_inflight_{inflight}_events_per_s"] = round(rate)
            benchmark.extra_info[f"ours_over_rust_max_inflight_{inflight}"] = round(
                ours_rate / rate, 2)
            if inflight == 0:
                benchmark.extra_info["ours_one_in_flight_over_rust_max_inflight_0"] = round(
                    one_rate / rate, 2)
        assert ours.acked_events == (ROUNDS + 1) * WRITER_EVENTS
        assert ours_one.acked_events == ROUNDS * ONE_IN_FLIGHT_EVENTS
    finally:
        env.discard([ours, ours_one])
