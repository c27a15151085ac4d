"""Reader groups, BatchClient and byte streams against a cluster with auth on: every segment
request they make (the group's state table segment, the segment readers, info and truncate
requests, the byte stream's appends) carries a delegation token from the controller, one
cached token per stream."""

from __future__ import annotations

import collections

import pytest
import pytest_asyncio

from pravega_wire.client.batch import BatchClient
from pravega_wire.client.bytestream import ByteStreamReader, ByteStreamWriter
from pravega_wire.client.controller import ControllerClient
from pravega_wire.client.events import EventStreamWriter
from pravega_wire.client.readergroup import ReaderGroupConfig, ReaderGroupManager, _StateTable
from pravega_wire.errors import AuthenticationError
from pravega_wire.pool import ClientConfig, ConnectionPool
from pravega_wire.server import EmbeddedCluster

pytestmark = pytest.mark.asyncio

EVENTS = 60


class CountingController(ControllerClient):
    """Counts the delegation tokens fetched, by stream."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fetched: collections.Counter = collections.Counter()

    async def get_delegation_token(self, scope: str, stream: str) -> str:
        self.fetched[(scope, stream)] += 1
        return await super().get_delegation_token(scope, stream)


@pytest_asyncio.fixture
async def secured():
    """A cluster with auth on (two stores), a counting controller client with credentials
    and the scope ``sc``."""
    async with EmbeddedCluster(2, auth=True) as cluster, \
            CountingController(cluster.controller_uri, auth=("admin", "pw")) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        yield ctl, pool


async def test_a_reader_group_and_a_batch_client_read_a_secured_stream_end_to_end(secured):
    ctl, pool = secured
    await ctl.create_stream("sc", "orders", 3)
    sent = [f"event-{i}".encode() for i in range(EVENTS)]
    async with EventStreamWriter(pool, ctl, "sc", "orders", auth=True) as writer:
        for i, data in enumerate(sent):
            await writer.write(data, routing_key=f"key-{i % 7}")
    ctl.fetched.clear()

    async with ReaderGroupManager("sc", ctl, pool=pool) as groups:
        assert await groups.create_reader_group(
            "g", ReaderGroupConfig(["sc/orders"], group_refresh_time=0.05))
        group = await groups.get_reader_group("g")
        got = []
        async with await group.create_reader("r1") as reader:
            while len(got) < EVENTS:
                read = await reader.read_next_event(timeout=5)
                if read.event is not None:
                    got.append(bytes(read.event))
        assert sorted(got) == sorted(sent)
        assert await group.unread_bytes() == 0
        # one token per stream, fetched once and cached: the data and the group's state
        assert ctl.fetched == {("sc", "orders"): 1, ("sc", "_RGstateg"): 1}
        assert await groups.delete_reader_group("g")

    ctl.fetched.clear()
    async with BatchClient(pool, ctl) as batch:
        batched = []
        for segment_range in await batch.segments("sc", "orders"):
            async for data in batch.read_segment(segment_range, timeout=5):
                batched.append(data)
    assert sorted(batched) == sorted(sent)
    assert ctl.fetched == {("sc", "orders"): 1}


async def test_without_a_token_the_secured_store_refuses_the_group_state(secured):
    ctl, pool = secured
    table = _StateTable(pool, ctl)  # no token provider: what the groups used to send
    try:
        with pytest.raises(AuthenticationError):
            await table.create("sc/_RGstateg/0.#epoch.0")
    finally:
        await table.close()


async def test_a_byte_stream_writes_and_reads_on_a_secured_cluster(secured):
    ctl, pool = secured
    await ctl.create_stream("sc", "file", 1)
    blob = bytes(range(256)) * 100
    async with ByteStreamWriter(pool, ctl, "sc", "file") as out:
        await out.write(blob[:1000])
        await out.write(blob[1000:])
        await out.flush()
        assert await out.fetch_tail_offset() == len(blob)
        await out.truncate_data_before(10)
    async with ByteStreamReader(pool, ctl, "sc", "file", offset=10) as src:
        data = b""
        while len(data) < len(blob) - 10:
            data += await src.read(len(blob), timeout=5)
    assert data == blob[10:]
    assert set(ctl.fetched) == {("sc", "file")}
