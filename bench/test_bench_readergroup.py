"""Reader-group benchmarks (client/readergroup.py) against the embedded cluster (one segment
store and the controller in a child process, :class:`~pravega_wire.server.ChildCluster`) on
loopback.

* **Group read throughput**: a 16-segment stream holding ``EVENTS`` 100 B events under 64
  routing keys; per round a fresh reader group and 1, 4 or 16 readers (on one event loop, as
  the readers of one process share it) read every event. Events/s and MB/s (payload bytes).
* **Time to rebalance after a reader dies**: two readers share 16 segments; one stops reading
  and is declared offline (:meth:`ReaderGroup.reader_offline`, as the liveness timeout would);
  the round is the time until the survivor owns all 16 (bounded by the group refresh time,
  ``REFRESH`` s, plus the state's round trips).

Run: ``.venv/bin/python -m pytest bench/test_bench_readergroup.py --benchmark-only -q
-p no:cacheprovider --benchmark-columns=median,mean,stddev,rounds``; rates are in
``extra_info``. Quote medians; the machine is shared.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest


from pravega_wire.client.controller import ControllerClient  # noqa: E402
from pravega_wire.client.events import EventStreamWriter  # noqa: E402
from pravega_wire.client.readergroup import ReaderGroupConfig, ReaderGroupManager  # noqa: E402
from pravega_wire.pool import ConnectionPool  # noqa: E402
from pravega_wire.server import ChildCluster  # noqa: E402

EVENT = b"e" * 100
KEYS = [f"key-{i}" for i in range(64)]
EVENTS = 20_000
SEGMENTS = 16
REFRESH = 0.1
ROUNDS = 3


class _Env:
    def __init__(self) -> None:
        self.cluster = ChildCluster(stores=1)
        self.cluster.start()
        self.loop = asyncio.new_event_loop()
        self.pool = self.run(self._open_pool())
        self.ctl = self.run(self._open_controller())
        self.groups = ReaderGroupManager("bench", self.ctl, pool=self.pool)
        self.run(self.ctl.create_scope("bench"))
        self.run(self.ctl.create_stream("bench", "st", SEGMENTS))
        self.run(self._fill())
        self._names = itertools.count()

    async def _open_pool(self) -> ConnectionPool:
        return ConnectionPool()

    async def _open_controller(self) -> ControllerClient:
        return ControllerClient(self.cluster.controller_uri)

    async def _fill(self) -> None:
        async with EventStreamWriter(self.pool, self.ctl, "bench", "st") as writer:
            for i in range(EVENTS):
                await writer.write(EVENT, KEYS[i % len(KEYS)])

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def new_group(self):
        name = f"g{next(self._names)}"
        await self.groups.create_reader_group(name, ReaderGroupConfig(
            ["bench/st"], group_refresh_time=REFRESH))
        return await self.groups.get_reader_group(name)

    def close(self) -> None:
        try:
            self.run(self.groups.close())
            self.run(self.ctl.close())
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


async def _read_all(env: _Env, readers: int) -> None:
    group = await env.new_group()
    members = [await group.create_reader(f"r{i}") for i in range(readers)]
    done = asyncio.Event()
    count = 0

    async def run(reader) -> None:
        nonlocal count
        while not done.is_set():
            read = await reader.read_next_event(timeout=0.05)
            if read.event is not None:
                count += 1
                if count >= EVENTS:
                    done.set()

    tasks = [asyncio.ensure_future(run(r)) for r in members]
    try:
        await asyncio.wait_for(done.wait(), 120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for reader in members:
            await reader.close()
    assert count >= EVENTS


@pytest.mark.parametrize("readers", [1, 4, 16])
def test_group_read_throughput(benchmark, env, readers):
    benchmark.group = f"reader group, {SEGMENTS} segments, {EVENTS} 100 B events per round"
    benchmark.pedantic(lambda: env.run(_read_all(env, readers)), rounds=ROUNDS, warmup_rounds=0)
    if benchmark.stats is not None:
        median = benchmark.stats.stats.median
        benchmark.extra_info.update({
            "readers": readers, "events_per_s": round(EVENTS / median),
            "MB_per_s": round(EVENTS * len(EVENT) / median / 1e6, 2)})


def test_time_to_rebalance_after_a_reader_dies(benchmark, env):
    benchmark.group = f"rebalance: 16 segments taken over (group refresh {REFRESH} s)"
    state: dict = {}

    def setup():
        async def prepare():
            group = await env.new_group()
            dead, survivor = (await group.create_reader("dead"),
                              await group.create_reader("survivor"))
            while len(dead.segments) + len(survivor.segments) < SEGMENTS or \
                    len(survivor.segments) < SEGMENTS // 2:
                await asyncio.gather(dead.read_next_event(timeout=REFRESH),
                                     survivor.read_next_event(timeout=REFRESH))
            state.update(group=group, dead=dead, survivor=survivor)
        env.run(prepare())

    async def take_over():
        await state["group"].reader_offline("dead")
        survivor = state["survivor"]
        while len(survivor.segments) < SEGMENTS:
            await survivor.read_next_event(timeout=REFRESH)
        await survivor.close()
        await state["dead"]._release_all()

    benchmark.pedantic(lambda: env.run(take_over()), setup=setup, rounds=ROUNDS)
