"""Auto-scaling: the segment stores measure each segment's append rates
(pravega_wire/server/rates.py) and the controller splits a segment that stays above its
stream's target rate for the scale window, or merges cold neighbours
(``EmbeddedController.auto_scale``). Time is an injected clock and each round an explicit
call, so nothing here depends on how fast the machine is."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio


from pravega_wire.client.controller import (  # noqa: E402
    ControllerClient, ScalingPolicy, StreamConfiguration,
)
from pravega_wire.client.events import EventStreamWriter  # noqa: E402
from pravega_wire.pool import ClientConfig, ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402
from pravega_wire.server.rates import RateMeter  # noqa: E402
from test_controller_writers import KEYS, event, per_key  # noqa: E402

WINDOW = 2.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def env():
    clock = Clock()
    async with EmbeddedCluster(2, clock=clock, policy_interval=None, scale_window=WINDOW,
                               rate_half_life=1.0) as cluster, \
            ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        yield cluster, ctl, pool, clock


def test_the_rate_meter_weights_recent_appends_exponentially():
    clock = Clock()
    meter = RateMeter(half_life=1.0, clock=clock)
    assert meter.rates("s") == (0.0, 0.0)
    meter.record("s", 100, 1000)
    clock.now += 1
    assert meter.rates("s") == pytest.approx((50.0, 500.0))  # half the weight after 1 s
    clock.now += 1
    assert meter.rates("s") == pytest.approx((25.0, 250.0))  # nothing new: it halves
    assert meter.rates("s") == pytest.approx((25.0, 250.0))  # no time passed: unchanged
    meter.record("s", 300, 0)
    clock.now += 1
    assert meter.rates("s") == pytest.approx((162.5, 125.0))
    meter.forget("s")
    assert meter.rates("s") == (0.0, 0.0)
    with pytest.raises(ValueError):
        RateMeter(half_life=0)


class Load:
    """An EventStreamWriter writing every key in turn, numbering each key's events."""

    def __init__(self, writer: EventStreamWriter, size: int = 0):
        self.writer = writer
        self.sent = {k: 0 for k in range(KEYS)}
        self.padding = b"." * size

    async def write(self, count: int) -> None:
        for i in range(count):
            key = i % KEYS
            await self.writer.write(event(key, self.sent[key]) + self.padding,
                                    routing_key=f"key-{key}")
            self.sent[key] += 1
        await self.writer.flush()


async def tick(cluster, clock, load=None, events=0):
    """One second of ``events`` events, then one auto-scale round."""
    if load is not None:
        await load.write(events)
    clock.now += 1
    return await cluster.controller.auto_scale()


async def read_back_once_in_order(pool, ctl, sent):
    """Seal sc/st and check that each key's ``sent[key]`` events are all in it, once, in
    order."""
    await ctl.seal_stream("sc", "st")
    assert await per_key(pool, ctl, "sc", "st") == {k: list(range(n)) for k, n in sent.items()}


async def current(ctl):
    return [(s.segment_id, s.min_key, s.max_key)
            for s in await ctl.get_current_segments("sc", "st")]


@pytest.mark.asyncio
async def test_a_hot_segment_splits_after_the_window_and_cold_ones_merge_back(env):
    """Writers write all along: split by rate, merge by rate, split again; every event is
    read back once, in order per key."""
    cluster, ctl, pool, clock = env
    await ctl.create_stream("sc", "st", config=StreamConfiguration(
        ScalingPolicy.by_event_rate(50, 2, 1)))
    async with EventStreamWriter(pool, ctl, "sc", "st") as writer:
        load = Load(writer)
        # 240 events/s against a target of 50: hot from the first round, split once the
        # rate has stayed above the target for the window (two more rounds), not before.
        assert await tick(cluster, clock, load, 240) == []
        assert await tick(cluster, clock, load, 240) == []
        scaled = await tick(cluster, clock, load, 240)
        assert scaled == [("sc", "st", [0], [1 << 32 | 1, 1 << 32 | 2])]
        assert await current(ctl) == [(1 << 32 | 1, 0.0, 0.5), (1 << 32 | 2, 0.5, 1.0)]
        # A trickle: both halves are cold; merged once cold for the window.
        rounds = 0
        while len(await current(ctl)) == 2:
            await tick(cluster, clock, load, KEYS)
            rounds += 1
            assert rounds <= 8, "the cold halves were never merged"
        assert rounds >= WINDOW
        assert await current(ctl) == [(2 << 32 | 3, 0.0, 1.0)]
        # Hot again: split again.
        rounds = 0
        while len(await current(ctl)) == 1:
            await tick(cluster, clock, load, 480)
            rounds += 1
            assert rounds <= 8, "the hot segment was never split"
        assert [s[0] >> 32 for s in await current(ctl)] == [3, 3]
        await load.write(240)
    await read_back_once_in_order(pool, ctl, load.sent)


@pytest.mark.asyncio
async def test_by_data_rate_splits_into_scale_factor_pieces_and_keeps_min_segments(env):
    cluster, ctl, pool, clock = env
    await ctl.create_stream("sc", "st", config=StreamConfiguration(
        ScalingPolicy.by_data_rate(4, 3, 2)))  # 4 KB/s; split in 3; at least 2 segments
    assert len(await current(ctl)) == 2
    async with EventStreamWriter(pool, ctl, "sc", "st") as writer:
        load = Load(writer, size=200)  # ~210 bytes an event: ~12 KB/s a half at 120 events/s
        scales = []
        for _ in range(4):
            scales += await tick(cluster, clock, load, 120)
        assert scales and all(len(new) == 3 for _, _, _, new in scales)
        split = scales[0][2][0]
        assert [s[0] for s in await current(ctl)].count(split) == 0
        pieces = [s for s in await current(ctl) if s[0] in scales[0][3]]
        widths = {round(high - low, 9) for _, low, high in pieces}
        assert len(widths) == 1  # equal key ranges
        # Idle: neighbours merge while more than min_segments remain; never below it.
        for _ in range(40):
            await tick(cluster, clock)
        assert len(await current(ctl)) == 2
    await read_back_once_in_order(pool, ctl, load.sent)


@pytest.mark.asyncio
async def test_fixed_streams_and_short_bursts_are_not_scaled(env):
    cluster, ctl, pool, clock = env
    await ctl.create_stream("sc", "fixed", 1)
    await ctl.create_stream("sc", "st", config=StreamConfiguration(
        ScalingPolicy.by_event_rate(50, 2, 1)))
    async with EventStreamWriter(pool, ctl, "sc", "fixed") as fixed, \
            EventStreamWriter(pool, ctl, "sc", "st") as writer:
        hot_fixed, bursty = Load(fixed), Load(writer)
        for _ in range(6):
            await hot_fixed.write(480)
            # Hot for two rounds (the rate halves each quiet second), then cold: never hot
            # for the window.
            await tick(cluster, clock, bursty, 240)
            assert await tick(cluster, clock) == []
            assert await tick(cluster, clock) == []
            assert await tick(cluster, clock) == []
    assert [s.segment_id for s in await ctl.get_current_segments("sc", "fixed")] == [0]
    assert [s.segment_id for s in await ctl.get_current_segments("sc", "st")] == [0]


@pytest.mark.asyncio
async def test_writers_writing_through_manual_and_by_rate_scales_again_and_again(env):
    """Producers write all the time, concurrently, while the stream is split and merged by
    hand and by rate, round after round: every event is read back once, in order per key."""
    cluster, ctl, pool, clock = env
    await ctl.create_stream("sc", "st", config=StreamConfiguration(
        ScalingPolicy.by_event_rate(1, 2, 1)))
    sent = {k: 0 for k in range(KEYS)}
    progress = asyncio.Condition()
    stop = asyncio.Event()
    budget = 0  # events the producers may have written in all (bounds the events to read)

    async def produce(writer, key):
        while True:
            async with progress:
                await progress.wait_for(lambda: stop.is_set() or sum(sent.values()) < budget)
            if stop.is_set():
                return
            await writer.write(event(key, sent[key]), routing_key=f"key-{key}")
            sent[key] += 1
            async with progress:
                progress.notify_all()

    async def written(writer, count):
        """Wait until the producers have written ``count`` more events and they are stored;
        the producers may write 100 more meanwhile, so they are still writing during what
        the test does next."""
        nonlocal budget
        target = sum(sent.values()) + count
        budget = target + 100
        async with progress:
            progress.notify_all()
            await asyncio.wait_for(progress.wait_for(lambda: sum(sent.values()) >= target), 30)
        await writer.flush()

    manual = by_rate = 0
    async with EventStreamWriter(pool, ctl, "sc", "st") as writer:
        producers = [asyncio.create_task(produce(writer, k)) for k in range(KEYS)]
        try:
            for round_ in range(6):
                await written(writer, 200)
                active = [s.segment_id for s in await ctl.get_current_segments("sc", "st")]
                if round_ % 2 == 0:  # by hand: split the first segment in two ...
                    first = (await ctl.get_current_segments("sc", "st"))[0]
                    middle = (first.min_key + first.max_key) / 2
                    await ctl.scale_stream("sc", "st", [first.segment_id], [
                        (first.min_key, middle), (middle, first.max_key)])
                else:  # ... or merge everything back into one
                    await ctl.scale_stream("sc", "st", active, [(0.0, 1.0)])
                manual += 1
                # By rate: ~100 events/s keep some segment above 1 event/s, so one is split
                # once it has been hot for the window.
                for ticks in range(1, 7):
                    await written(writer, 100)
                    clock.now += 1
                    if await cluster.controller.auto_scale():
                        by_rate += 1
                        break
                assert ticks > WINDOW  # not before the window
        finally:
            stop.set()
            async with progress:
                progress.notify_all()
            await asyncio.gather(*producers)
        await writer.flush()
    assert manual == 6 and by_rate == 6
    await read_back_once_in_order(pool, ctl, sent)
