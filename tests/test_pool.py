"""The PDP-36 connection pool (pravega_wire.pool) against scripted servers: Java's selection
rules (docs/protocol.md §7.3), the cap under bursts, pruning, idle close, dedicated
connections, flow ids, 1,000 concurrent flows with replies in random order, closing, and
100,000 flows opened and closed without growth. Runs with both codec twins."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import socket
import tracemalloc
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire import flow as flow_module
from pravega_wire.errors import ConnectionClosedError, ConnectionFailedError
from pravega_wire.flow import MAX_FLOW_ID, pack_request_id
from pravega_wire.pool import ClientConfig, ConnectionPool
from test_connection_support import (HELLO, Recorder, ScriptedServer, wait_until,  # noqa: F401
                                     wire)


def pool_for(wire, **config) -> ConnectionPool:
    return ConnectionPool(ClientConfig(**config), codec=wire)


async def round_trip(flow, rec: Recorder) -> None:
    before = len(rec.of_type(C.SegmentAttribute))
    flow.send(C.GetSegmentAttribute(pack_request_id(flow.flow_id, 1), "s", uuid.UUID(int=1), ""))
    await wait_until(lambda: len(rec.of_type(C.SegmentAttribute)) > before, what="a reply")


def flows_per_connection(pool: ConnectionPool, endpoint) -> list:
    return [c.flows for c in pool.stats().endpoints.get(endpoint, ())]


# -- selection -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_selection_follows_javas_example_with_two_connections(wire):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=2) as pool:
        ep = server.endpoint
        f1 = await pool.open_flow(ep, Recorder())
        f2 = await pool.open_flow(ep, Recorder())  # A is busy and the list is not full: new B
        f3 = await pool.open_flow(ep, Recorder())  # tie 1-1: the oldest, A
        f4 = await pool.open_flow(ep, Recorder())  # B
        a, b = f1.connection, f2.connection
        assert a is not b
        assert f3.connection is a and f4.connection is b
        assert len(server.connections) == 2
        assert flows_per_connection(pool, ep) == [2, 2]


@pytest.mark.asyncio
async def test_with_one_connection_allowed_every_flow_shares_one_socket(wire):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=1) as pool:
        flows = [await pool.open_flow(server.endpoint, Recorder()) for _ in range(5)]
        assert len({f.connection for f in flows}) == 1
        assert len(server.connections) == 1


@pytest.mark.asyncio
async def test_a_connection_without_flows_is_reused_before_a_new_one_is_opened(wire):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=3) as pool:
        ep = server.endpoint
        f1 = await pool.open_flow(ep, Recorder())
        a = f1.connection
        f1.close()
        f2 = await pool.open_flow(ep, Recorder())
        assert f2.connection is a and len(server.connections) == 1
        f3 = await pool.open_flow(ep, Recorder())  # A has a flow: open B
        b = f3.connection
        assert b is not a
        f3.close()  # B has none now: it wins over A (1 flow) and is reused
        f4 = await pool.open_flow(ep, Recorder())
        assert f4.connection is b and len(server.connections) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("cap", [1, 3, 10])
async def test_bursts_of_concurrent_calls_never_exceed_the_cap(wire, cap):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=cap) as pool:
        ep = server.endpoint
        first = await asyncio.gather(*(pool.open_flow(ep, Recorder()) for _ in range(100)))
        # All first calls share the connection being opened (it counts as having no flows).
        assert len({f.connection for f in first}) == 1 and len(server.connections) == 1
        for _ in range(3):
            await asyncio.gather(*(pool.open_flow(ep, Recorder()) for _ in range(100)))
            assert len(server.connections) <= cap
            assert len(pool.stats().endpoints[ep]) <= cap
        assert sum(flows_per_connection(pool, ep)) == 400
        assert len(server.connections) == cap


@pytest.mark.asyncio
async def test_endpoints_are_keyed_by_the_literal_host(wire):
    async with ScriptedServer(wire) as server, pool_for(wire) as pool:
        port = server.endpoint[1]
        f1 = await pool.open_flow(("127.0.0.1", port), Recorder())
        f2 = await pool.open_flow(("localhost", port), Recorder())
        assert f1.connection is not f2.connection
        assert set(pool.stats().endpoints) == {("127.0.0.1", port), ("localhost", port)}


# -- pruning, failures, idle -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_connection_the_server_dropped_is_pruned_and_replaced(wire):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=1) as pool:
        ep = server.endpoint
        recs = [Recorder() for _ in range(3)]
        flows = [await pool.open_flow(ep, r) for r in recs]
        server.connections[0].drop()
        await wait_until(lambda: all(r.lost for r in recs))
        assert all(len(r.lost) == 1 for r in recs) and all(f.is_closed for f in flows)
        assert pool.stats().endpoints == {}
        rec = Recorder()
        flow = await pool.open_flow(ep, rec)
        assert len(server.connections) == 2
        await round_trip(flow, rec)
        stats = pool.stats()
        assert (stats.connections_opened, stats.connections_closed) == (2, 1)


@pytest.mark.asyncio
async def test_a_failed_connect_fails_every_waiter_and_is_pruned(wire):
    async with ScriptedServer(wire, hello=None) as server, pool_for(
            wire, connect_timeout=0.2) as pool:
        ep = server.endpoint
        results = await asyncio.gather(*(pool.open_flow(ep, Recorder()) for _ in range(5)),
                                       return_exceptions=True)
        assert all(type(r) is ConnectionFailedError for r in results), results
        assert len({id(r) for r in results}) == 5  # one exception object per waiter
        assert len(server.connections) == 1
        stats = pool.stats()
        assert stats.endpoints == {} and stats.connect_failures == 1
        server.hello = HELLO  # the next call tries again
        rec = Recorder()
        flow = await pool.open_flow(ep, rec)
        await round_trip(flow, rec)
        assert len(server.connections) == 2


@pytest.mark.asyncio
async def test_an_unreachable_endpoint_is_a_connection_failed_error(wire):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with pool_for(wire) as pool:
        with pytest.raises(ConnectionFailedError):
            await pool.open_flow(("127.0.0.1", port), Recorder())
        with pytest.raises(ConnectionFailedError):
            await pool.open_dedicated_flow(("127.0.0.1", port), Recorder())
        assert pool.stats().connect_failures == 2


@pytest.mark.asyncio
async def test_a_waiter_that_gives_up_leaves_no_flow_behind(wire):
    async with ScriptedServer(wire, hello=None) as server, pool_for(wire) as pool:
        ep = server.endpoint
        quitter = asyncio.ensure_future(pool.open_flow(ep, Recorder()))
        stayer = asyncio.ensure_future(pool.open_flow(ep, Recorder()))
        await wait_until(lambda: server.connections and server.connections[0].received)
        assert pool.stats().endpoints[ep][0].state == "connecting"
        quitter.cancel()
        server.connections[0].send(HELLO)
        flow = await stayer
        assert flow.connection.flow_count == 1
        assert quitter.cancelled()


@pytest.mark.asyncio
async def test_idle_connections_are_closed_busy_ones_are_not(wire):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=2, idle_timeout=0.1) as pool:
        ep = server.endpoint
        rec = Recorder()
        keep = await pool.open_flow(ep, rec)
        gone = await pool.open_flow(ep, Recorder())
        a, b = keep.connection, gone.connection
        assert a is not b
        gone.close()
        await wait_until(lambda: b.is_closed, what="the idle connection to close")
        assert a.is_open and flows_per_connection(pool, ep) == [1]
        await wait_until(lambda: sum(c.closed for c in server.connections) == 1)
        await round_trip(keep, rec)
        # A flow opened again before the timeout keeps the connection.
        keep.close()
        again = await pool.open_flow(ep, rec)
        assert again.connection is a
        loop = asyncio.get_running_loop()
        later = loop.time() + 0.4
        await wait_until(lambda: loop.time() > later)
        assert a.is_open
        stats = pool.stats()
        assert (stats.connections_opened, stats.connections_closed) == (2, 1)


# -- flows ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_hello_reaches_flows_that_wait_and_flows_that_open_later(wire):
    async with ScriptedServer(wire, hello=C.Hello(12, 5)) as server, pool_for(
            wire, max_connections_per_segment_store=1) as pool:
        early = await asyncio.gather(*(pool.open_flow(server.endpoint, Recorder())
                                       for _ in range(3)))
        late_rec = Recorder()
        late = await pool.open_flow(server.endpoint, late_rec)
        assert late.connection is early[0].connection
        for flow in early + [late]:
            assert flow.listener.replies == [C.Hello(12, 5)]
        assert pool.stats().endpoints[server.endpoint][0].server_version == 12


@pytest.mark.asyncio
async def test_1000_concurrent_flows_on_4_connections_get_their_own_replies_in_random_order(
        wire):
    requests_per_flow = 5

    class Checker(Recorder):
        def reply_received(self, reply):
            super().reply_received(reply)
            if type(reply) is C.StreamSegmentInfo:
                fid, seq = reply.request_id >> 32, reply.request_id & 0xFFFFFFFF
                assert fid == self.flow.flow_id, "misrouted"
                assert reply.segment_name == f"seg-{fid}-{seq}", "wrong reply"

    async with ScriptedServer(wire, random_order=True, seed=7) as server, pool_for(
            wire, max_connections_per_segment_store=4) as pool:
        recs, flows = [], []
        for _ in range(1000):  # one after the other: the least busy connection each time
            rec = Checker()
            rec.flow = await pool.open_flow(server.endpoint, rec)
            recs.append(rec)
            flows.append(rec.flow)
        assert flows_per_connection(pool, server.endpoint) == [250] * 4
        for seq in range(1, requests_per_flow + 1):
            for flow in flows:
                fid = flow.flow_id
                flow.send(C.GetStreamSegmentInfo(pack_request_id(fid, seq), f"seg-{fid}-{seq}"))
        total = 1000 * requests_per_flow
        await wait_until(lambda: sum(len(r.of_type(C.StreamSegmentInfo)) for r in recs) == total,
                         timeout=60, what="every reply")
        for rec in recs:
            replies = rec.of_type(C.StreamSegmentInfo)
            assert sorted(r.request_id & 0xFFFFFFFF for r in replies) == [1, 2, 3, 4, 5]
            assert not rec.lost
        # The server really answered out of order.
        arrival = [r.request_id & 0xFFFFFFFF for r in recs[0].of_type(C.StreamSegmentInfo)]
        any_shuffled = any([r.request_id & 0xFFFFFFFF for r in rec.of_type(C.StreamSegmentInfo)]
                           != [1, 2, 3, 4, 5] for rec in recs)
        assert any_shuffled, arrival
        assert pool.stats().replies_dropped == 0


@pytest.mark.asyncio
async def test_a_lost_connection_tells_each_of_its_flows_once_and_spares_the_others(wire):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=2) as pool:
        recs = [Recorder(str(i)) for i in range(10)]
        flows = [await pool.open_flow(server.endpoint, r) for r in recs]
        victim = flows[0].connection
        server.connections[0].drop()
        hit = [r for r, f in zip(recs, flows) if f.connection is None]
        await wait_until(lambda: sum(len(r.lost) for r in recs) == 5)
        await asyncio.sleep(0.01)
        assert victim.is_closed
        for rec, flow in zip(recs, flows):
            if rec.lost:
                assert len(rec.lost) == 1 and isinstance(rec.lost[0], ConnectionFailedError)
                assert flow.is_closed
            else:
                await round_trip(flow, rec)
        assert len([r for r in recs if r.lost]) == 5, hit


@pytest.mark.asyncio
async def test_a_dedicated_flow_has_its_own_socket_outside_the_cap_and_closes_with_it(wire):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=1) as pool:
        ep = server.endpoint
        pooled_rec, rec = Recorder("pooled"), Recorder("dedicated")
        pooled = await pool.open_flow(ep, pooled_rec)
        flow = await pool.open_dedicated_flow(ep, rec)
        assert flow.flow_id == 0 and flow.connection is not pooled.connection
        assert not flow.connection.flows_enabled
        assert len(server.connections) == 2
        stats = pool.stats()
        assert stats.dedicated == {ep: 1} and flows_per_connection(pool, ep) == [1]
        assert stats.open_connections == 2
        sconn = server.connections[1]
        sconn.send(C.SegmentAttribute(pack_request_id(55, 1), 1), C.SegmentAttribute(-1, 2))
        await wait_until(lambda: len(rec.of_type(C.SegmentAttribute)) == 2)
        flow.close()
        await wait_until(lambda: sconn.closed, what="the dedicated socket to close")
        assert pool.stats().dedicated == {}
        await round_trip(pooled, pooled_rec)
        assert not pooled_rec.lost and not rec.lost


# -- flow ids ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_flow_ids_wrap_to_1_never_0_and_skip_ids_open_on_the_connection(wire,
                                                                              monkeypatch):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=1) as pool:
        ep = server.endpoint
        await pool.open_flow(ep, Recorder(), flow_id=1)
        monkeypatch.setattr(flow_module, "_counter", itertools.count(MAX_FLOW_ID - 2))
        ids = [(await pool.open_flow(ep, Recorder())).flow_id for _ in range(3)]
        assert ids == [MAX_FLOW_ID - 1, MAX_FLOW_ID, 2]  # 1 is open on this connection


@pytest.mark.asyncio
async def test_allocated_flow_ids_are_distinct_and_a_duplicate_explicit_id_is_refused(wire):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=1) as pool:
        ep = server.endpoint
        flows = [await pool.open_flow(ep, Recorder()) for _ in range(200)]
        ids = [f.flow_id for f in flows]
        assert len(set(ids)) == 200 and all(1 <= i <= MAX_FLOW_ID for i in ids)
        with pytest.raises(ValueError, match="already open"):
            await pool.open_flow(ep, Recorder(), flow_id=ids[0])
        flows[0].close()
        again = await pool.open_flow(ep, Recorder(), flow_id=ids[0])  # a reconnect reuses it
        assert again.flow_id == ids[0]


@pytest.mark.asyncio
async def test_open_flow_checks_its_arguments(wire):
    async with ScriptedServer(wire) as server, pool_for(wire) as pool:
        with pytest.raises(TypeError):
            await pool.open_flow("127.0.0.1:1", Recorder())
        with pytest.raises(TypeError, match="reply_received"):
            await pool.open_flow(server.endpoint, object())
        for bad in (0, -3, 2 ** 31, "5"):
            with pytest.raises(ValueError):
                await pool.open_flow(server.endpoint, Recorder(), flow_id=bad)
        assert server.connections == []


def test_client_config_defaults_and_checks():
    config = ClientConfig()
    assert config.max_connections_per_segment_store == 10
    assert config.idle_timeout == 60.0 and config.connect_timeout == 5.0
    for bad in (0, -1):
        with pytest.raises(ValueError):
            ClientConfig(max_connections_per_segment_store=bad)
    with pytest.raises(TypeError):
        ClientConfig(max_connections_per_segment_store=2.0)
    with pytest.raises(ValueError):
        ClientConfig(idle_timeout=0)
    assert ClientConfig(idle_timeout=None).idle_timeout is None
    with pytest.raises(TypeError):
        ConnectionPool(config={"max_connections_per_segment_store": 3})


# -- closing -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_closing_the_pool_fails_everything_pending_and_closes_every_socket(wire):
    async with ScriptedServer(wire) as server, ScriptedServer(wire, hello=None) as mute:
        pool = pool_for(wire)
        recs = [Recorder() for _ in range(4)]
        for rec in recs:
            await pool.open_flow(server.endpoint, rec)
        dedicated_rec = Recorder()
        await pool.open_dedicated_flow(server.endpoint, dedicated_rec)
        waiting = [asyncio.ensure_future(pool.open_flow(mute.endpoint, Recorder()))
                   for _ in range(3)]
        waiting_dedicated = asyncio.ensure_future(pool.open_dedicated_flow(mute.endpoint,
                                                                           Recorder()))
        await wait_until(lambda: len(mute.connections) == 2
                         and all(c.received for c in mute.connections))
        await pool.close()
        for task in waiting + [waiting_dedicated]:
            with pytest.raises(ConnectionClosedError):
                await task
        for rec in recs + [dedicated_rec]:
            assert len(rec.lost) == 1 and isinstance(rec.lost[0], ConnectionClosedError)
        await wait_until(lambda: all(c.closed for c in server.connections + mute.connections),
                         what="every socket to close")
        with pytest.raises(ConnectionClosedError):
            await pool.open_flow(server.endpoint, Recorder())
        with pytest.raises(ConnectionClosedError):
            await pool.open_dedicated_flow(server.endpoint, Recorder())
        stats = pool.stats()
        assert stats.endpoints == {} and stats.dedicated == {} and stats.open_connections == 0
        await pool.close()  # idempotent


# -- scale ---------------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.asyncio
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count sockets")
async def test_100000_flows_opened_and_closed_leave_no_sockets_or_memory_behind(wire):
    async with ScriptedServer(wire) as server, pool_for(
            wire, max_connections_per_segment_store=4) as pool:
        ep = server.endpoint
        window = []  # keep 50 flows open at any time: spread over the 4 connections

        async def churn(n):
            for i in range(n):
                window.append(await pool.open_flow(ep, Recorder()))
                if len(window) > 50:
                    window.pop(0).close()

        await churn(2000)  # warm up: connections open, allocator caches filled
        gc.collect()
        fds = _open_fds()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            await churn(100_000)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
        assert growth < 64 * 1024, growth
        assert _open_fds() == fds
        assert len(server.connections) == 4
        stats = pool.stats()
        assert stats.open_flows == 50 and stats.connections_opened == 4
        rec = Recorder()
        await round_trip(await pool.open_flow(ep, rec), rec)


def test_a_pool_belongs_to_the_loop_that_first_used_it():
    pool = ConnectionPool()

    async def use():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(ConnectionFailedError):
            await pool.open_flow(("127.0.0.1", port), Recorder())

    asyncio.run(use())
    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(use())
