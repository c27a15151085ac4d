"""Fresh objects at growing sizes: what a user gets, not what a warm benchmark loop gets.

The server (one segment store and the controller) runs in a child process
(:class:`~pravega_wire.server.ChildCluster`), so that client and server each get a core. One
:class:`~pravega_wire.pool.ConnectionPool` on one event loop serves every case; it is warm (a
writer has written through it before the first case), the writers and readers are not.

* **Fresh writer**, bursts of 10 k, 100 k, 1 M and 10 M events of 100 B: each round opens a NEW
  pooled :class:`SegmentWriter` on a new segment, writes the burst with ``write_nowait`` in
  slices of ``SLICE`` events with one ``await write()`` between slices (which waits while more
  than ``max_inflight_bytes`` are unacknowledged: what bounds memory, as a program producing
  events for ever must; a burst up to ``SLICE`` is written all at once), flushes and closes it.
  ``write_nowait`` alone never waits, so everything it writes is in flight until acknowledged. The
  segment is truncated behind the writer every ``TRUNCATE_EVERY`` bytes, so that the store's
  memory stays bounded (10 M events are 1.08 GB of Event records). ``1M-at-once`` writes a
  million events without yielding, as in issue 12. The warm writer does the same rounds with
  one writer reused. ``extra_info`` holds events/s, the client's and the server's CPU time
  per event, and for the 1 M and 10 M bursts the peak RSS growth of the client in the round
  (``VmHWM`` reset before it) and the RSS growth of the server, per million events: memory
  that does not grow with the burst gives ten times less per million at 10 M than at 1 M.
* **Fresh reader**: a segment of N events (written untimed, in 1 MiB batches) read from start
  to end by a NEW :class:`SegmentReader` with ``read_event``; **fresh reader, batched** does
  the same with ``read_events()`` (every buffered event per call).
* **StreamWriter** over a 64-segment stream, 1,000,000 events per round with 1, 1,000 and
  1,000,000 distinct routing keys (a new StreamWriter each round; segments truncated between
  rounds).
* **Ratios** (one case, from the medians above): the largest burst's events/s over the
  smallest's, fresh writer and fresh reader (a flat cost per event gives 1.0), and the
  StreamWriter with 1 M keys over 1 key.
* **The demo** (``pravega-wire demo --json --quiet`` with its defaults, in a subprocess): the
  events/s it reports written and read, integrity checked.

Run: ``python -m pytest bench/test_bench_fresh.py --benchmark-only -q -p no:cacheprovider``
(``--benchmark-json=FILE`` keeps ``extra_info``). The machine is shared: quote medians and the
ratios of one run; CPU time per event is the steadier figure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

import pytest

from test_bench_clients import _Env as _ClientsEnv
from test_bench_clients import _read_events, _server_cpu

from pravega_wire.client import SegmentWriter
from pravega_wire.client.stream import StreamWriter

EVENT = b"e" * 100
RECORD = len(EVENT) + 8
SLICE = 100_000
TRUNCATE_EVERY = 64 * 1024 * 1024
#: Burst sizes and rounds of each (the largest takes seconds a round).
BURSTS = {"10k": (10_000, 15), "100k": (100_000, 7), "1M": (1_000_000, 3),
          "10M": (10_000_000, 1)}
STREAM_SEGMENTS = 64
STREAM_EVENTS = 1_000_000
STREAM_ROUNDS = 3
KEYS = {"1": 1, "1000": 1_000, "1000000": 1_000_000}
DEMO_TIMEOUT = 600

#: Median events/s of each case, for the ratios.
MEDIANS: dict[str, float] = {}


class _Env(_ClientsEnv):
    """``bench/test_bench_clients.py``'s child cluster, loop, pool and metadata client, plus a
    controller client for the StreamWriter cases."""

    def __init__(self) -> None:
        super().__init__()
        self.controller = None

    def new_segment(self) -> str:  # type: ignore[override]
        return super().new_segment("fresh")

    def delete(self, segment: str) -> None:
        self.run(self.meta.delete(segment))

    def close(self) -> None:
        try:
            if self.controller is not None:
                self.run(self.controller.close())
        finally:
            super().close()


@pytest.fixture(scope="module")
def env():
    environment = _Env()
    try:
        segment = environment.new_segment()  # warm the pool (its connection), not the writers
        environment.run(_burst(environment, segment, 100_000))
        environment.delete(segment)
        yield environment
    finally:
        environment.close()


# ---- measuring ------------------------------------------------------------------------------


def _status_kb(field: str, pid: str = "self") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Rounds:
    """Wraps a round: client and server CPU seconds, and the memory figures of the last one."""

    def __init__(self, env: _Env, fn):
        self.env, self.fn = env, fn
        self.client: list[float] = []
        self.server: list[float] = []
        self.memory: dict[str, float] = {}

    def __call__(self, *args):
        pid = self.env.cluster.process.pid
        peak_reset = _reset_peak_rss()
        rss0, server_rss0 = _status_kb("VmRSS"), _status_kb("VmRSS", str(pid))
        client, server = time.process_time(), _server_cpu(pid)
        try:
            return self.fn(*args)
        finally:
            self.client.append(time.process_time() - client)
            self.server.append(_server_cpu(pid) - server)
            self.memory = {"client_rss_kb": rss0,
                           "client_peak_growth_kb": (_status_kb("VmHWM") - rss0
                                                     if peak_reset else float("nan")),
                           "server_rss_growth_kb": _status_kb("VmRSS", str(pid)) - server_rss0}


def _record(benchmark, name: str, events: int, rounds: _Rounds, memory: bool = False) -> None:
    if benchmark.stats is None:  # --benchmark-disable: the body ran once, as a plain test
        return
    median = benchmark.stats.stats.median
    MEDIANS[name] = events / median
    timed = len(benchmark.stats.stats.data)
    info = {"events_per_round": events, "events_per_s": round(events / median),
            "MB_per_s": round(events * len(EVENT) / median / 1e6, 1)}
    for side, spent in (("client", rounds.client[-timed:]), ("server", rounds.server[-timed:])):
        info[f"{side}_cpu_ns_per_event"] = round(statistics.mean(spent) / events * 1e9, 1)
        info[f"{side}_cpu_share"] = round(statistics.mean(spent) / median, 2)
    if memory:
        millions = events / 1e6
        info["client_peak_rss_growth_MB_per_M_events"] = round(
            rounds.memory["client_peak_growth_kb"] / 1024 / millions, 2)
        info["server_rss_growth_MB_per_M_events"] = round(
            rounds.memory["server_rss_growth_kb"] / 1024 / millions, 2)
    benchmark.extra_info.update(info)


# ---- writers --------------------------------------------------------------------------------


async def _burst(env: _Env, segment: str, events: int, writer: SegmentWriter | None = None,
                 slice_size: int = SLICE) -> SegmentWriter:
    """Write ``events`` events (a new writer unless one is given), flush; the writer."""
    fresh = writer is None
    if writer is None:
        writer = await SegmentWriter.open(env.pool, env.endpoint, segment)
    write = writer.write_nowait
    truncations = []
    truncated = max(writer.segment_length, 0)
    left = events
    while left:
        n = min(slice_size, left)
        for _ in range(n):
            write(EVENT)
        left -= n
        if left:  # one awaited write a slice: backpressure (max_inflight_bytes, 16 MiB)
            await writer.write(EVENT)
            left -= 1
            if writer.segment_length - truncated >= TRUNCATE_EVERY:
                truncated = writer.segment_length
                truncations.append(asyncio.ensure_future(env.meta.truncate(segment, truncated)))
    await writer.flush()
    if fresh:
        await writer.close()
    await asyncio.gather(*truncations)
    return writer


@pytest.mark.parametrize("size", BURSTS)
def test_fresh_writer(benchmark, env, size):
    benchmark.group = "fresh writer per burst, 100 B events"
    events, rounds = BURSTS[size]
    segments: list[str] = []

    def setup():
        segments.append(env.new_segment())
        return (segments[-1],), {}

    measured = _Rounds(env, lambda segment: env.run(_burst(env, segment, events)))
    try:
        benchmark.pedantic(measured, setup=setup, rounds=rounds)
        _record(benchmark, f"fresh_writer_{size}", events, measured,
                memory=size in ("1M", "10M"))
    finally:
        for segment in segments:
            env.delete(segment)


def test_fresh_writer_1M_at_once(benchmark, env):
    """Issue 12's case: a new writer, a million ``write_nowait`` without yielding, flush."""
    benchmark.group = "fresh writer per burst, 100 B events"
    events = 1_000_000
    segments: list[str] = []

    def setup():
        segments.append(env.new_segment())
        return (segments[-1],), {}

    measured = _Rounds(env, lambda segment: env.run(
        _burst(env, segment, events, slice_size=events)))
    try:
        benchmark.pedantic(measured, setup=setup, rounds=3)
        _record(benchmark, "fresh_writer_1M_at_once", events, measured, memory=True)
    finally:
        for segment in segments:
            env.delete(segment)


@pytest.mark.parametrize("size", BURSTS)
def test_warm_writer(benchmark, env, size):
    """The same bursts through one writer reused from round to round (one warm-up round)."""
    benchmark.group = "warm writer, 100 B events"
    events, rounds = BURSTS[size]
    segment = env.new_segment()
    writer = env.run(SegmentWriter.open(env.pool, env.endpoint, segment))

    def truncate():
        if writer.segment_length > 0:
            env.run(env.meta.truncate(segment, writer.segment_length))

    measured = _Rounds(env, lambda: env.run(_burst(env, segment, events, writer)))
    try:
        benchmark.pedantic(measured, setup=truncate, rounds=rounds,
                           warmup_rounds=1 if events <= 1_000_000 else 0)
        assert writer.acked_events == writer.last_event_number
        _record(benchmark, f"warm_writer_{size}", events, measured,
                memory=size in ("1M", "10M"))
    finally:
        env.run(writer.close())
        env.delete(segment)


# ---- readers --------------------------------------------------------------------------------


async def _fill(env: _Env, segment: str, events: int) -> int:
    per_batch = (1024 * 1024) // RECORD
    batch = [EVENT] * per_batch
    async with SegmentWriter(env.pool, env.endpoint, segment) as writer:
        left = events
        while left:
            n = min(per_batch, left)
            writer.write_batch_nowait(batch if n == per_batch else batch[:n])
            left -= n
            if writer.inflight_bytes > 16 * 1024 * 1024:
                await writer.flush()
        await writer.flush()
        return writer.segment_length


def _reader_case(benchmark, env, size: str, batched: bool) -> None:
    """A NEW reader reads a segment of ``size`` events from start to end."""
    benchmark.group = f"fresh reader, {'read_events' if batched else 'read_event'} of 100 B events"
    events, rounds = BURSTS[size]
    segment = env.new_segment()
    try:
        length = env.run(_fill(env, segment, events))
        assert length == events * RECORD
        measured = _Rounds(env, lambda: env.run(_read_events(env, segment, length, batched)))
        assert benchmark.pedantic(measured, rounds=rounds) == events
        _record(benchmark, f"fresh_reader_{'batched_' if batched else ''}{size}", events,
                measured, memory=size == "10M")
    finally:
        env.delete(segment)


@pytest.mark.parametrize("size", BURSTS)
def test_fresh_reader(benchmark, env, size):
    _reader_case(benchmark, env, size, batched=False)


@pytest.mark.parametrize("size", BURSTS)
def test_fresh_reader_batched(benchmark, env, size):
    _reader_case(benchmark, env, size, batched=True)


# ---- the stream writer ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream(env):
    from pravega_wire.client.controller import ControllerClient
    env.controller = ControllerClient(env.cluster.controller_uri)
    name = f"fresh{os.getpid()}"
    env.run(env.controller.create_scope("bench"))
    env.run(env.controller.create_stream("bench", name, STREAM_SEGMENTS))
    return name, env.run(env.controller.get_current_segments("bench", name))


async def _stream_round(env: _Env, name: str, segments, keys: list[str]) -> StreamWriter:
    writer = StreamWriter(env.pool, env.controller, "bench", name, segments)
    write = writer.write_nowait
    k = len(keys)
    i = 0
    while i < STREAM_EVENTS:
        stop = min(i + SLICE, STREAM_EVENTS)
        if k == 1:
            key = keys[0]
            for _ in range(stop - i):
                write(EVENT, key)
        else:
            for key in itertools.islice(itertools.cycle(keys), i % k, i % k + stop - i):
                write(EVENT, key)
        i = stop
        await asyncio.sleep(0)
    await writer.close()
    return writer


@pytest.mark.parametrize("keys", KEYS)
def test_stream_writer(benchmark, env, stream, keys):
    benchmark.group = f"StreamWriter, {STREAM_SEGMENTS} segments, {STREAM_EVENTS:,} events"
    name, segments = stream
    routing_keys = [f"routing-key-{i}" for i in range(KEYS[keys])]
    done: list[StreamWriter] = []

    def truncate():
        async def go():
            for writer in done:
                await asyncio.gather(*(env.meta.truncate(w.segment, w.segment_length)
                                       for w in writer.writers if w.segment_length > 0))
        env.run(go())
        done.clear()

    def one_round():
        done.append(env.run(_stream_round(env, name, segments, routing_keys)))

    measured = _Rounds(env, one_round)
    benchmark.pedantic(measured, setup=truncate, rounds=STREAM_ROUNDS)
    truncate()
    _record(benchmark, f"stream_writer_{keys}_keys", STREAM_EVENTS, measured)


# ---- ratios and the demo --------------------------------------------------------------------


def test_ratios(benchmark):
    """Flat cost per event gives 1.0: the largest size's events/s over the smallest's."""
    benchmark.group = "ratios (from the medians above)"
    benchmark.pedantic(lambda: None, rounds=1)
    pairs = {"fresh_writer_10M_over_10k": ("fresh_writer_10M", "fresh_writer_10k"),
             "fresh_reader_10M_over_10k": ("fresh_reader_10M", "fresh_reader_10k"),
             "warm_writer_10M_over_10k": ("warm_writer_10M", "warm_writer_10k"),
             "stream_writer_1M_keys_over_1_key": ("stream_writer_1000000_keys",
                                                  "stream_writer_1_keys"),
             "fresh_over_warm_writer_1M": ("fresh_writer_1M", "warm_writer_1M")}
    for name, (top, bottom) in pairs.items():
        if top in MEDIANS and bottom in MEDIANS:
            benchmark.extra_info[name] = round(MEDIANS[top] / MEDIANS[bottom], 3)


def test_demo(benchmark):
    """``pravega-wire demo`` with its default settings, as a user runs it (its own cluster)."""
    benchmark.group = "the demo, default settings"
    results = []

    def run():
        process = subprocess.run([sys.executable, "-m", "pravega_wire.cli", "demo", "--json",
                                  "--quiet"], capture_output=True, text=True,
                                 timeout=DEMO_TIMEOUT)
        assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
        results.append(json.loads(process.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=1)
    report = results[-1]
    assert report["integrity_ok"]
    benchmark.extra_info.update({key: report[key] for key in (
        "write_events_per_s", "read_events_per_s", "events_written", "events_read",
        "ack_latency_ms_p50", "ack_latency_ms_p99", "client_sockets_opened")})
