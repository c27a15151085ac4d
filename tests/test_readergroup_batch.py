"""BatchClient (client/batch.py): the segment ranges between two stream cuts, across a scale,
read in parallel."""

from __future__ import annotations

import asyncio
import struct

import pytest


from pravega_wire.client.batch import BatchClient  # noqa: E402
from pravega_wire.client.controller import StreamCut  # noqa: E402
from pravega_wire.client.manager import StreamManager  # noqa: E402
from test_readergroup import KEYS, decode, env, event, write  # noqa: E402,F401

pytestmark = pytest.mark.asyncio


async def test_the_ranges_between_two_cuts_hold_exactly_the_events_between_them(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 2)
    await write(pool, ctl, "st", range(KEYS), range(5))
    async with StreamManager(ctl, pool=pool) as manager:
        middle = await manager.tail_stream_cut("sc", "st")
        await write(pool, ctl, "st", range(KEYS), range(5, 10))
        await ctl.scale_stream("sc", "st", [0], [(0.0, 0.25), (0.25, 0.5)])
        await write(pool, ctl, "st", range(KEYS), range(10, 15))
        end = await manager.tail_stream_cut("sc", "st")
    await write(pool, ctl, "st", range(KEYS), range(15, 20))  # after the end cut
    async with BatchClient(pool, ctl) as batch:
        ranges = await batch.segments("sc", "st", middle, end)
        assert sorted(r.segment_id for r in ranges) == [0, 1, 2 | (1 << 32), 3 | (1 << 32)]
        assert {r.segment_id: r.start_offset for r in ranges}[1] == middle.positions[1]

        async def read(segment_range):
            return [decode(e) async for e in batch.read_segment(segment_range, timeout=10)]

        parts = await asyncio.gather(*(read(r) for r in ranges))
        got = sorted(e for part in parts for e in part)
        assert got == sorted((k, s) for k in range(KEYS) for s in range(5, 15))
        everything = await batch.segments("sc", "st")
        total = sum(len(p) for p in await asyncio.gather(*(read(r) for r in everything)))
        assert total == KEYS * 20
        with pytest.raises(ValueError):
            await batch.segments("sc", "other", middle)
