"""Retention: each round (``EmbeddedController.enforce_retention``) records a stream cut at the
tail of a stream with a retention policy and truncates the stream at the latest recorded cut
that keeps at least the policy's limit, by size or by time, deleting the segments before it as
truncateStream does. Time is an injected clock and each round an explicit call."""

from __future__ import annotations

import pytest
import pytest_asyncio


from pravega_wire.client.controller import (  # noqa: E402
    ControllerClient, RetentionPolicy, ScalingPolicy, StreamConfiguration,
)
from pravega_wire.client.events import EventStreamWriter  # noqa: E402
from pravega_wire.pool import ClientConfig, ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402
from test_controller_autoscale import Clock  # noqa: E402
from test_controller_streams import E1, stored  # noqa: E402

EVENT = b"x" * 92  # 100 bytes a stored event with its 8-byte header


@pytest_asyncio.fixture
async def env():
    clock = Clock()
    async with EmbeddedCluster(2, clock=clock, policy_interval=None) as cluster, \
            ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        yield cluster, ctl, pool, clock


async def write(writer, count):
    for i in range(count):
        await writer.write(EVENT, routing_key=f"k{i}")
    await writer.flush()


async def head(ctl):
    return {s.segment_id: s.offset for s in await ctl.get_segments_at_head("sc", "st")}


def lengths(cluster, *names):
    return [stored(cluster, n).write_offset for n in names]


@pytest.mark.asyncio
async def test_retention_by_size_keeps_at_least_the_limit_across_a_scale(env):
    cluster, ctl, pool, clock = env
    await ctl.create_stream("sc", "st", config=StreamConfiguration(
        ScalingPolicy.fixed(1), RetentionPolicy.by_size(1500)))
    controller = cluster.controller
    async with EventStreamWriter(pool, ctl, "sc", "st") as writer:
        await write(writer, 10)                                     # 1000 bytes
        assert await controller.enforce_retention() == []           # cut A at 1000
        await ctl.scale_stream("sc", "st", [0], [(0.0, 0.5), (0.5, 1.0)])
        await write(writer, 10)                                     # 2000
        assert await controller.enforce_retention() == []           # cut B; 1000 after A
        assert await head(ctl) == {0: 0}
        await write(writer, 10)                                     # 3000
        # Cut C: 2000 bytes after A, 1000 after B: truncated at A, the last keeping 1500.
        assert await controller.enforce_retention() == [("sc", "st", {0: 1000})]
        assert await head(ctl) == {0: 1000}
        assert stored(cluster, "sc/st/0.#epoch.0").start_offset == 1000
        cut_c = dict(zip((E1 | 1, E1 | 2), lengths(cluster, "sc/st/1.#epoch.1",
                                                       "sc/st/2.#epoch.1")))
        assert sum(cut_c.values()) == 2000
        await write(writer, 20)                                     # 5000
        # Cut D: 3000 bytes after B, 2000 after C: truncated at C, segment 0 deleted.
        assert await controller.enforce_retention() == [("sc", "st", cut_c)]
        assert stored(cluster, "sc/st/0.#epoch.0") is None
        assert await head(ctl) == cut_c


@pytest.mark.asyncio
async def test_retention_by_time_truncates_at_the_cut_older_than_the_limit(env):
    cluster, ctl, pool, clock = env
    await ctl.create_stream("sc", "st", config=StreamConfiguration(
        ScalingPolicy.fixed(1), RetentionPolicy.by_time(5_000)))
    await ctl.create_stream("sc", "kept", 1)  # no retention policy: never truncated
    controller = cluster.controller
    async with EventStreamWriter(pool, ctl, "sc", "st") as writer, \
            EventStreamWriter(pool, ctl, "sc", "kept") as other:
        await write(writer, 5)
        await write(other, 5)
        assert await controller.enforce_retention() == []          # cut at 500, t=0
        clock.now += 3
        await write(writer, 5)
        assert await controller.enforce_retention() == []          # cut at 1000, t=3: 3 s old
        clock.now += 3
        await write(writer, 5)
        # t=6: the first cut is 6 s old, the second only 3 s.
        assert await controller.enforce_retention() == [("sc", "st", {0: 500})]
        clock.now += 1
        assert await controller.enforce_retention() == []           # nothing new is 5 s old
        clock.now += 2
        assert await controller.enforce_retention() == [("sc", "st", {0: 1000})]
    assert await head(ctl) == {0: 1000}
    assert stored(cluster, "sc/st/0.#epoch.0").start_offset == 1000
    assert stored(cluster, "sc/kept/0.#epoch.0").start_offset == 0
