"""The EventStreamWriter's state stays bounded by the stream's current segments however many
scales it followed (client/events.py): its KeyRouter joins the pieces of a segment's key range
again, and it keeps a segment writer only for segments it routes to."""

from __future__ import annotations

import asyncio
import struct

import pytest

from pravega_wire.client.controller import SegmentWithRange
from pravega_wire.client.events import EventStreamWriter, KeyRouter
from test_controller_writers import env, read_sealed  # noqa: F401 - env is a fixture

KEYS = [f"key-{i}" for i in range(24)]

# Split points that differ from scale to scale: without joining, every split at a new point
# leaves the previous merge's pieces behind, and the routes grow with the history.
SPLITS = [0.5, 0.3, 0.7, 0.45, 0.2, 0.85, 0.6, 0.35, 0.75, 0.55]


def test_a_router_keeps_one_route_per_segment_after_many_splits_and_merges():
    def seg(i, low, high):
        return SegmentWithRange("s", "t", i, low, high)

    router = KeyRouter([seg(0, 0.0, 1.0)])
    keys = [f"k{i}" for i in range(500)]
    current, next_id = [seg(0, 0.0, 1.0)], 1
    for split in SPLITS * 3:
        # split the one segment at ``split``, then merge the halves back into one
        (whole,) = current
        low, high = seg(next_id, 0.0, split), seg(next_id + 1, split, 1.0)
        router.replace(whole.segment_id, [low, high])
        assert router.route_count == 2
        assert [s.segment_id for s in router.segments] == [next_id, next_id + 1]
        merged = seg(next_id + 2, 0.0, 1.0)
        router.replace(low.segment_id, [merged])
        router.replace(high.segment_id, [merged])
        assert router.route_count == 1
        assert {router.segment_for(k).segment_id for k in keys} == {merged.segment_id}
        current, next_id = [merged], next_id + 3


def test_joining_keeps_routes_of_different_segments_apart():
    def seg(i, low, high):
        return SegmentWithRange("s", "t", i, low, high)

    router = KeyRouter([seg(0, 0.0, 0.5), seg(1, 0.5, 1.0)])
    router.replace(0, [seg(2, 0.0, 0.25), seg(3, 0.25, 0.5)])
    router.replace(2, [seg(4, 0.0, 0.5)])   # 2 and 3 merged into 4 ...
    assert router.route_count == 3           # ... 3 is still routed (not yet found sealed)
    assert [s.segment_id for s in router.segments] == [4, 3, 1]
    router.replace(3, [seg(4, 0.0, 0.5)])
    assert router.route_count == 2           # 4 (0-0.5) and 1 (0.5-1)
    assert [s.segment_id for s in router.segments] == [4, 1]


@pytest.mark.asyncio
async def test_the_writers_routes_and_lanes_stay_bounded_as_scales_accumulate(env):
    """Split at a different point each time, merge back, write through each: after 20 scales
    the writer routes to one segment with one route and one segment writer, and every event
    was stored once."""
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    written = 0
    async with EventStreamWriter(pool, ctl, "sc", "st") as writer:
        for split in SPLITS:
            for ranges in ([(0.0, split), (split, 1.0)], [(0.0, 1.0)]):
                active = [s.segment_id for s in await ctl.get_current_segments("sc", "st")]
                await ctl.scale_stream("sc", "st", active, ranges)
                for key in KEYS:
                    await writer.write(struct.pack(">I", written), routing_key=key)
                    written += 1
                await writer.flush()
                current = await ctl.get_current_segments("sc", "st")
                assert [s.segment_id for s in writer.segments] == \
                    [s.segment_id for s in current]
                assert writer._router.route_count == len(current)
                assert len(writer._lanes) <= len(current)
        assert writer.segments_sealed == 3 * len(SPLITS)
    await ctl.seal_stream("sc", "st")
    stored = []
    for segment_id in await ctl.get_segments_between("sc", "st"):
        name = f"sc/st/{segment_id & 0xFFFFFFFF}.#epoch.{segment_id >> 32}"
        stored += [struct.unpack(">I", data)[0] for data in await read_sealed(pool, ctl, name)]
    assert sorted(stored) == list(range(written))


@pytest.mark.asyncio
async def test_a_flush_while_connecting_does_not_wait_for_the_batch_timer(env, monkeypatch):
    """Events written to a writer still connecting (as re-routed events are, to a successor's
    new writer) are resent once SetupAppend is answered; a flush waiting for them closes the
    append block then instead of leaving them to the batch timer (an hour here, so the flush
    could not finish without it)."""
    import pravega_wire.connection as connection
    from pravega_wire.client.writer import SegmentWriter

    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    (segment,) = await ctl.get_current_segments("sc", "st")
    monkeypatch.setattr(connection, "BATCH_INTERVAL", 3600.0)
    ready = await SegmentWriter.open(pool, ctl, segment.name)
    for _ in range(2000):  # acknowledged appends: the flow's batch-size tracker opens blocks
        ready.write_nowait(b"r" * 100)
    await asyncio.wait_for(ready.flush(), 30)
    connecting = SegmentWriter(pool, ctl, segment.name)
    for _ in range(2000):
        connecting.write_nowait(b"c" * 100)
    assert connecting.state != "ready"
    await asyncio.wait_for(connecting.flush(), 30)
    assert connecting.acked_events == 2000
    await connecting.close()
    await ready.close()
