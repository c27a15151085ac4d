"""The pool against the embedded segment store (pravega_wire.server): writers (pooled and
dedicated, adaptive batching) and a reader sharing connections, every event acknowledged and
read back; a store that stops tells every flow once. Both codec twins."""

from __future__ import annotations

import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.codec import encode_event
from pravega_wire.errors import ConnectionFailedError
from pravega_wire.flow import pack_request_id
from pravega_wire.pool import ClientConfig, ConnectionPool
from pravega_wire.server import segmentstore
from test_connection_support import Recorder, wait_until, wire  # noqa: F401


EVENTS = 2000


@pytest.mark.asyncio
@pytest.mark.parametrize("dedicated", [False, True], ids=["pooled", "dedicated"])
async def test_writers_and_a_reader_share_the_pool_and_nothing_is_lost(wire, dedicated):
    async with segmentstore.SegmentStore() as store, ConnectionPool(
            ClientConfig(max_connections_per_segment_store=2), codec=wire) as pool:
        segments = ["scope/stream/0.#epoch.0", "scope/stream/1.#epoch.0"]
        for name in segments:
            store.create_segment(name)
        writers = []
        for name in segments:
            rec = Recorder(name)
            if dedicated:
                flow = await pool.open_dedicated_flow(store.endpoint, rec)
                request_id = pack_request_id(77, 0)  # any id: the connection is the flow's
            else:
                flow = await pool.open_flow(store.endpoint, rec)
                request_id = pack_request_id(flow.flow_id, 0)
            writer_id = uuid.uuid4()
            flow.send(C.SetupAppend(request_id, writer_id, name, ""))
            writers.append((name, rec, flow, writer_id, request_id))
        for name, rec, flow, writer_id, request_id in writers:
            await wait_until(lambda: rec.of_type(C.AppendSetup), what="AppendSetup")
            assert rec.of_type(C.AppendSetup)[0].last_event_number == C.NULL_ATTRIBUTE_VALUE
        payloads = [f"event {i} ".encode() * (1 + i % 7) for i in range(EVENTS)]
        for i, payload in enumerate(payloads):
            for name, rec, flow, writer_id, request_id in writers:
                flow.append_event(name, writer_id, i + 1, payload, request_id)
            if i % 200 == 199:
                await flow.drain()
        for name, rec, flow, writer_id, request_id in writers:
            await wait_until(lambda: rec.of_type(C.DataAppended)
                             and rec.of_type(C.DataAppended)[-1].event_number == EVENTS,
                             timeout=30, what="every acknowledgement")
            acks = [a.event_number for a in rec.of_type(C.DataAppended)]
            assert acks == sorted(acks) and not rec.lost

        expected = b"".join(encode_event(p) for p in payloads)
        reader = Recorder("reader")
        rflow = await pool.open_flow(store.endpoint, reader)
        read_id = pack_request_id(rflow.flow_id, 0)
        for name in segments:
            data = b""
            while len(data) < len(expected):
                before = len(reader.of_type(C.SegmentRead))
                rflow.send(C.ReadSegment(name, len(data), 1 << 20, "", read_id))
                await wait_until(lambda: len(reader.of_type(C.SegmentRead)) > before,
                                 what="SegmentRead")
                reply = reader.of_type(C.SegmentRead)[-1]
                assert reply.segment == name and reply.offset == len(data)
                data += bytes(reply.data)
            assert data == expected
        stats = pool.stats()
        assert stats.replies_dropped == 0
        if dedicated:
            assert stats.dedicated == {store.endpoint: 2}


@pytest.mark.asyncio
async def test_a_store_that_stops_tells_every_flow_once(wire):
    async with ConnectionPool(ClientConfig(max_connections_per_segment_store=3),
                              codec=wire) as pool:
        store = segmentstore.SegmentStore()
        await store.start()
        recs = [Recorder(str(i)) for i in range(9)]
        for rec in recs:
            await pool.open_flow(store.endpoint, rec)
        dedicated = Recorder("dedicated")
        await pool.open_dedicated_flow(store.endpoint, dedicated)
        await store.stop(abort=True)
        await wait_until(lambda: all(r.lost for r in recs + [dedicated]))
        for rec in recs + [dedicated]:
            assert len(rec.lost) == 1 and isinstance(rec.lost[0], ConnectionFailedError)
        stats = pool.stats()
        assert stats.open_connections == 0 and stats.connections_closed == 4
