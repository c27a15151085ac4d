"""Large events through the EventStreamWriter, across a scale it has not heard of: the large
event's merge into the sealed segment fails, and the event is written again, whole, to the
successor that holds its routing key, in order with the key's other events."""

from __future__ import annotations

import struct

import pytest


from pravega_wire.client import EventWriterConfig, RetryPolicy  # noqa: E402
from pravega_wire.client.controller import ControllerClient  # noqa: E402
from pravega_wire.client.events import EventStreamWriter  # noqa: E402
from pravega_wire.pool import ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402
from test_controller_writers import per_key  # noqa: E402

pytestmark = pytest.mark.asyncio

MIB = 1024 * 1024
KEYS = 4
FAST_RETRY = RetryPolicy(initial_delay=0.005, multiplier=2, max_delay=0.2, attempts=30)


def event(key: int, sequence: int, size: int = 16) -> bytes:
    return struct.pack(">II", key, sequence) + bytes([key + 1]) * (size - 8)


async def test_a_large_event_follows_a_scale_in_order_per_key():
    async with EmbeddedCluster(2) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool() as pool:
        await ctl.create_scope("sc")
        await ctl.create_stream("sc", "big", 1)
        sent = {k: 0 for k in range(KEYS)}
        sizes = {}

        async def write(writer, key: int, size: int = 16) -> None:
            sizes[(key, sent[key])] = size
            await writer.write(event(key, sent[key], size), routing_key=f"key-{key}")
            sent[key] += 1

        config = EventWriterConfig(retry=FAST_RETRY)
        async with EventStreamWriter(pool, ctl, "sc", "big", config=config) as writer:
            for i in range(20):
                await write(writer, i % KEYS)
            await write(writer, 1, 9 * MIB)
            for i in range(20):
                await write(writer, i % KEYS)
            await writer.flush()
            await ctl.scale_stream("sc", "big", [0], [(0.0, 0.5), (0.5, 1.0)])
            await write(writer, 2, 12 * MIB)  # to the sealed segment: re-routed whole
            for i in range(20):
                await write(writer, i % KEYS)
            await writer.flush()
            assert writer.segments_sealed == 1
        await ctl.seal_stream("sc", "big")
        got = await per_key(pool, ctl, "sc", "big")
        assert got == {k: list(range(sent[k])) for k in range(KEYS)}
        transients = [n for store in cluster.stores for n in store.storage.names()
                      if "#transient." in n]
        assert transients == []
