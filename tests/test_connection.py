"""The asyncio connection (pravega_wire.connection) against scripted servers: the Hello
handshake, dispatch by flow, KeepAlive and the read timeout, write coalescing and flow control,
the batch timer, and how every failure reaches each flow exactly once. Every test that puts
bytes on the wire runs with both codec twins (the ``wire`` fixture)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.connection import (REPLY_TYPES, ConnectionConfig, FlowConnection,
                                     open_connection)
from pravega_wire.errors import (ConnectionClosedError, ConnectionFailedError,
                                 IncompatibleVersionError, InvalidMessageError)
from pravega_wire.flow import pack_request_id
from client_fakes import settle
from test_connection_support import (HELLO, Recorder, ScriptedServer, wait_until,  # noqa: F401
                                     wire)

def rid(flow_id: int, seq: int = 0) -> int:
    return pack_request_id(flow_id, seq)


async def connect(server, wire, **config):
    return await open_connection(server.endpoint, ConnectionConfig(**config), codec=wire)


async def round_trip(conn, server, flow: FlowConnection, rec: Recorder) -> None:
    """Send a request on ``flow`` and wait for its reply: every byte the server sent before it
    has then been processed by the client."""
    before = len(rec.of_type(C.SegmentAttribute))
    flow.send(C.GetSegmentAttribute(rid(flow.flow_id, 99), "s", uuid.UUID(int=1), ""))
    await wait_until(lambda: len(rec.of_type(C.SegmentAttribute)) > before, what="a reply")


# -- handshake ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_hello_is_the_first_frame_and_the_server_version_is_recorded(wire):
    async with ScriptedServer(wire, hello=C.Hello(15, 5)) as server:
        conn = await connect(server, wire)
        try:
            assert server.connections[0].received[0] == C.Hello(17, 5)
            assert conn.is_open
            assert conn.server_version == 15
            assert conn.negotiated_version == 15
            assert conn.server_hello == C.Hello(15, 5)
        finally:
            conn.close()
            await conn.wait_closed()


@pytest.mark.asyncio
async def test_a_server_that_says_hello_first_is_fine(wire):
    async with ScriptedServer(wire, hello=C.Hello(16, 5), hello_first=True) as server:
        conn = await connect(server, wire, connect_timeout=2)
        assert conn.server_version == 16
        # The client is open once it has the server's Hello, which came first: its own Hello
        # may still be on the way (Python 3.13's loop runs the server's read later).
        await wait_until(lambda: server.connections[0].received, what="the client's Hello")
        assert server.connections[0].received == [C.Hello(17, 5)]
        conn.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("hello", [C.Hello(4, 1), C.Hello(30, 18)], ids=["too-old", "too-new"])
async def test_an_incompatible_server_is_a_typed_error_and_a_closed_connection(wire, hello):
    async with ScriptedServer(wire, hello=hello) as server:
        with pytest.raises(IncompatibleVersionError, match="wire versions"):
            await connect(server, wire)
        await wait_until(lambda: server.connections[0].closed, what="the server to see a close")


@pytest.mark.parametrize("high, low, compatible", [
    (17, 5, True), (5, 5, True), (17, 17, True), (99, 17, True), (99, 5, True),
    (4, 1, False), (99, 18, False), (30, 20, False),
])
def test_the_one_hello_check_its_edges(high, low, compatible):
    """commands.hello_mismatch is the Hello check of the connection, the request client and
    the embedded store: incompatible when the peer's lowest version is above 17 or its highest
    below 5 (docs/protocol.md §1.3)."""
    mismatch = C.hello_mismatch(C.Hello(high, low))
    if compatible:
        assert mismatch is None
    else:
        assert mismatch == (f"speaks wire versions {low}..{high}; this side speaks 5..17")


@pytest.mark.asyncio
async def test_a_server_that_never_says_hello_fails_the_connect_within_its_timeout(wire):
    async with ScriptedServer(wire, hello=None) as server:
        with pytest.raises(ConnectionFailedError, match="no Hello"):
            await connect(server, wire, connect_timeout=0.2)
        await wait_until(lambda: server.connections[0].closed, what="the socket to close")


@pytest.mark.asyncio
async def test_a_refused_connect_is_a_connection_failed_error(wire):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionFailedError) as info:
        await open_connection(("127.0.0.1", port), codec=wire)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.asyncio
async def test_a_server_that_closes_during_the_handshake_fails_the_connect(wire):
    async with ScriptedServer(wire, hello=None) as server:
        task = asyncio.ensure_future(connect(server, wire))
        await wait_until(lambda: server.connections and server.connections[0].received)
        server.connections[0].transport.close()
        with pytest.raises(ConnectionFailedError, match="closed the connection"):
            await task


# -- dispatch ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_replies_go_to_their_flow_and_hello_to_every_flow_including_late_ones(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        a, b = Recorder("a"), Recorder("b")
        fa, fb = conn.add_flow(5, a), conn.add_flow(9, b)
        assert a.replies == [HELLO] and b.replies == [HELLO]  # replayed on open
        fa.send(C.GetStreamSegmentInfo(rid(5, 1), "seg-a", ""))
        fb.send(C.GetStreamSegmentInfo(rid(9, 1), "seg-b", ""))
        await wait_until(lambda: len(a.replies) == 2 and len(b.replies) == 2)
        assert a.replies[1].segment_name == "seg-a" and a.replies[1].request_id == rid(5, 1)
        assert b.replies[1].segment_name == "seg-b" and b.replies[1].request_id == rid(9, 1)

        sconn = server.connections[0]
        sconn.send(C.KeepAlive(), C.Hello(16, 5))  # KeepAlive: to no flow; Hello: to all
        await wait_until(lambda: len(a.replies) == 3 and len(b.replies) == 3)
        assert a.replies[2] == C.Hello(16, 5) == b.replies[2]
        assert conn.server_version == 16
        late = Recorder("late")
        conn.add_flow(11, late)
        assert late.replies == [C.Hello(16, 5)]
        await round_trip(conn, server, fa, a)
        assert not any(type(r) is C.KeepAlive for r in a.replies + b.replies + late.replies)
        assert conn.replies_dropped == 0
        conn.close()


@pytest.mark.asyncio
async def test_a_reply_for_an_unknown_flow_is_counted_logged_and_dropped(wire, caplog):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        rec = Recorder()
        flow = conn.add_flow(5, rec)
        with caplog.at_level(logging.INFO, logger="pravega_wire.connection"):
            server.connections[0].send(C.SegmentAttribute(rid(77, 1), 1),
                                       C.SegmentAttribute(-1, 2))
            await round_trip(conn, server, flow, rec)
        assert conn.replies_dropped == 2
        assert [r.value for r in rec.of_type(C.SegmentAttribute)] == [99]
        assert "flow 77" in caplog.text
        assert conn.is_open and not rec.lost
        conn.close()


@pytest.mark.asyncio
async def test_a_listener_that_raises_fails_only_its_own_flow(wire):
    class Exploding(Recorder):
        def reply_received(self, reply):
            super().reply_received(reply)
            if type(reply) is C.SegmentAttribute:
                raise RuntimeError("boom")

    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        bad, good = Exploding("bad"), Recorder("good")
        fbad, fgood = conn.add_flow(3, bad), conn.add_flow(4, good)
        server.connections[0].send(C.SegmentAttribute(rid(3, 1), 1),
                                   C.SegmentAttribute(rid(4, 1), 2),
                                   C.SegmentAttribute(rid(3, 2), 3))
        await wait_until(lambda: len(good.replies) == 2)
        assert len(bad.lost) == 1
        assert isinstance(bad.lost[0], ConnectionFailedError)
        assert isinstance(bad.lost[0].__cause__, RuntimeError)
        assert [r.value for r in bad.of_type(C.SegmentAttribute)] == [1]  # nothing after
        assert fbad.is_closed and fbad.error is bad.lost[0]
        with pytest.raises(ConnectionFailedError, match="listener raised"):
            fbad.send(C.KeepAlive())
        assert conn.replies_dropped == 1  # the reply after the failure found no flow
        assert conn.is_open and not good.lost
        await round_trip(conn, server, fgood, good)
        conn.close()


@pytest.mark.asyncio
async def test_a_listener_raising_on_the_replayed_hello_does_not_open_the_flow(wire):
    class NoHello(Recorder):
        def reply_received(self, reply):
            raise RuntimeError("no thanks")

    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        with pytest.raises(ConnectionFailedError, match="Hello"):
            conn.add_flow(5, NoHello())
        assert conn.flow_count == 0 and conn.is_open
        conn.add_flow(5, Recorder())  # the id is free again
        conn.close()


@pytest.mark.asyncio
async def test_flows_disabled_connection_routes_everything_to_its_single_flow(wire):
    async with ScriptedServer(wire) as server:
        conn = await open_connection(server.endpoint, codec=wire, flows_enabled=False)
        rec = Recorder()
        flow = conn.add_flow(123, rec)
        assert flow.flow_id == 0
        with pytest.raises(ValueError, match="flows disabled"):
            conn.add_flow(124, Recorder())
        server.connections[0].send(C.SegmentAttribute(rid(7, 1), 1), C.SegmentAttribute(-1, 2),
                                   C.SegmentAttribute(rid(0, 5), 3))
        await wait_until(lambda: len(rec.replies) == 4)
        assert [r.value for r in rec.of_type(C.SegmentAttribute)] == [1, 2, 3]
        assert conn.replies_dropped == 0
        flow.close()  # closes the connection
        assert conn.is_closed and not rec.lost
        await wait_until(lambda: server.connections[0].closed, what="the socket to close")


@pytest.mark.asyncio
async def test_add_flow_checks_its_arguments(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        for bad in (0, -1, 2 ** 31, "7", 1.0, True):
            with pytest.raises(ValueError):
                conn.add_flow(bad, Recorder())
        with pytest.raises(TypeError, match="reply_received"):
            conn.add_flow(1, object())
        conn.add_flow(1, Recorder())
        with pytest.raises(ValueError, match="already open"):
            conn.add_flow(1, Recorder())
        conn.close()
        with pytest.raises(ConnectionFailedError, match="closed"):
            conn.add_flow(2, Recorder())


@pytest.mark.asyncio
async def test_closing_a_flow_sends_nothing_and_keeps_the_connection(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        a, b = Recorder("a"), Recorder("b")
        fa, fb = conn.add_flow(1, a), conn.add_flow(2, b)
        fa.close()
        fa.close()  # idempotent
        assert fa.is_closed and fa.connection is None and not a.lost
        with pytest.raises(ConnectionClosedError):
            fa.send(C.KeepAlive())
        server.connections[0].send(C.SegmentAttribute(rid(1, 1), 1))
        await round_trip(conn, server, fb, b)
        assert conn.replies_dropped == 1 and len(a.replies) == 1  # just the Hello
        assert [type(c) for c in server.connections[0].received] == [
            C.Hello, C.GetSegmentAttribute]
        assert conn.is_open
        conn.close()


@pytest.mark.asyncio
async def test_a_command_that_cannot_be_encoded_raises_before_anything_is_sent(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        rec = Recorder()
        flow = conn.add_flow(1, rec)
        with pytest.raises(InvalidMessageError):
            flow.send(C.GetStreamSegmentInfo(rid(1, 1), "x" * 70000, ""))
        with pytest.raises(InvalidMessageError):
            flow.send("not a command")
        await round_trip(conn, server, flow, rec)
        assert [type(c) for c in server.connections[0].received] == [
            C.Hello, C.GetSegmentAttribute]
        conn.close()


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_malformed_bytes_deliver_what_came_before_then_fail_every_flow_once(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        a, b = Recorder("a"), Recorder("b")
        fa, fb = conn.add_flow(1, a), conn.add_flow(2, b)
        garbage = struct.pack(">ii", 99, 0)  # type 99 is not assigned
        server.connections[0].send_raw(wire.encode(C.SegmentAttribute(rid(1, 1), 1)) + garbage
                                       + wire.encode(C.SegmentAttribute(rid(2, 1), 2)))
        await wait_until(lambda: a.lost and b.lost)
        await settle()
        assert [r.value for r in a.of_type(C.SegmentAttribute)] == [1]
        assert b.of_type(C.SegmentAttribute) == []
        for rec in (a, b):
            assert len(rec.lost) == 1
            assert isinstance(rec.lost[0], ConnectionFailedError)
            assert isinstance(rec.lost[0].__cause__, InvalidMessageError)
        assert conn.is_closed and isinstance(conn.close_reason.__cause__, InvalidMessageError)
        for flow in (fa, fb):
            with pytest.raises(ConnectionFailedError, match="malformed"):
                flow.send(C.KeepAlive())
        await wait_until(lambda: server.connections[0].closed, what="the socket to close")


@pytest.mark.asyncio
async def test_a_frame_that_is_not_a_reply_closes_the_connection(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        rec = Recorder()
        conn.add_flow(1, rec)
        server.connections[0].send(C.SetupAppend(rid(1), uuid.UUID(int=5), "s", ""),
                                   C.SegmentAttribute(rid(1, 1), 1))
        await wait_until(lambda: rec.lost)
        await settle()
        assert len(rec.lost) == 1 and "not a reply" in str(rec.lost[0])
        assert isinstance(rec.lost[0].__cause__, InvalidMessageError)
        assert rec.of_type(C.SegmentAttribute) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["eof", "reset"])
async def test_a_lost_connection_tells_each_flow_exactly_once_and_nothing_after(wire, how):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        recs = [Recorder(str(i)) for i in range(5)]
        flows = [conn.add_flow(i + 1, r) for i, r in enumerate(recs)]
        sconn = server.connections[0]
        sconn.send(*(C.SegmentAttribute(rid(i + 1, 1), i) for i in range(5)))
        if how == "eof":
            sconn.transport.close()
        else:
            sconn.drop()
        await wait_until(lambda: all(r.lost for r in recs))
        await settle()
        for i, rec in enumerate(recs):
            assert len(rec.lost) == 1 and isinstance(rec.lost[0], ConnectionFailedError)
            assert not isinstance(rec.lost[0], ConnectionClosedError)
            assert len(rec.of_type(C.SegmentAttribute)) <= 1
        assert all(f.is_closed for f in flows) and conn.is_closed and conn.flow_count == 0


@pytest.mark.asyncio
async def test_closing_the_connection_inside_a_callback_stops_delivery(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)

        class Closer(Recorder):
            def reply_received(self, reply):
                super().reply_received(reply)
                if type(reply) is C.SegmentAttribute:
                    conn.close()

        closer, other = Closer("closer"), Recorder("other")
        conn.add_flow(1, closer)
        conn.add_flow(2, other)
        server.connections[0].send(C.SegmentAttribute(rid(1, 1), 1),
                                   C.SegmentAttribute(rid(2, 1), 2))
        await wait_until(lambda: other.lost)
        await settle()
        assert other.of_type(C.SegmentAttribute) == []
        assert len(closer.lost) == len(other.lost) == 1
        assert isinstance(other.lost[0], ConnectionClosedError)


# -- liveness ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_read_timeout_detects_a_half_open_server(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire, keepalive_interval=0.05, read_timeout=0.3)
        rec = Recorder()
        conn.add_flow(1, rec)
        server.connections[0].stall()  # no more reads, no more KeepAlive echoes
        await wait_until(lambda: rec.lost, what="the read timeout")
        assert isinstance(rec.lost[0], ConnectionFailedError)
        assert "read timeout" in str(rec.lost[0])
        assert conn.is_closed


@pytest.mark.asyncio
async def test_an_idle_healthy_connection_exchanges_keepalives_and_outlives_the_read_timeout(
        wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire, keepalive_interval=0.1, read_timeout=0.6)
        rec = Recorder()
        conn.add_flow(1, rec)
        sconn = server.connections[0]
        # A KeepAlive goes out only after a whole silent interval, and the echo makes the next
        # interval busy: at most one every two intervals, so 8 of them span > 2 read timeouts.
        await wait_until(lambda: len(sconn.of_type(C.KeepAlive)) >= 8, what="8 KeepAlives")
        assert conn.is_open and not rec.lost
        assert not any(type(r) is C.KeepAlive for r in rec.replies)
        conn.close()


@pytest.mark.asyncio
async def test_no_keepalive_is_sent_while_replies_keep_arriving(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire, keepalive_interval=0.15, read_timeout=None)

        class PingPong(Recorder):
            running = True

            def reply_received(self, reply):
                super().reply_received(reply)
                if self.running and type(reply) is C.SegmentAttribute:
                    flow.send(C.GetSegmentAttribute(reply.request_id, "s", uuid.UUID(int=1), ""))

        rec = PingPong()
        flow = conn.add_flow(1, rec)
        for i in range(8):
            flow.send(C.GetSegmentAttribute(rid(1, i), "s", uuid.UUID(int=1), ""))
        loop = asyncio.get_running_loop()
        stop = loop.time() + 5 * 0.15  # the first check is at 2 intervals: 4 checks pass
        await wait_until(lambda: loop.time() > stop)
        sconn = server.connections[0]
        assert sconn.of_type(C.KeepAlive) == []
        assert len(rec.of_type(C.SegmentAttribute)) > 20
        rec.running = False
        await wait_until(lambda: sconn.of_type(C.KeepAlive), what="a KeepAlive once idle")
        conn.close()


# -- writing -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_commands_sent_in_one_loop_iteration_leave_in_one_write(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        rec = Recorder()
        flow = conn.add_flow(1, rec)
        transport = conn._transport
        writes = []
        real_write = transport.write
        transport.write = lambda data: (writes.append(len(data)), real_write(data))
        for i in range(100):
            flow.send(C.GetSegmentAttribute(rid(1, i), "seg", uuid.UUID(int=i), ""))
        assert writes == []  # nothing leaves before the loop runs
        await wait_until(lambda: len(rec.of_type(C.SegmentAttribute)) == 100)
        assert len(writes) == 1
        assert writes[0] == sum(len(wire.encode(C.GetSegmentAttribute(
            rid(1, i), "seg", uuid.UUID(int=i), ""))) for i in range(100))
        conn.close()


@pytest.mark.asyncio
async def test_what_listeners_send_in_answer_to_a_batch_leaves_right_after_it(wire):
    """Answers leave at the end of the batch of replies that caused them (so the server works
    on them while the client reads its other connections); a send to another connection from
    a listener still waits for the end of the loop iteration."""
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        other = await connect(server, wire)
        writes = {conn: [], other: []}
        for c in (conn, other):
            real_write = c._transport.write
            c._transport.write = lambda data, c=c, real=real_write: (
                writes[c].append(bytes(data)), real(data))
        other_flow = other.add_flow(2, Recorder())
        answers = [C.GetSegmentAttribute(rid(1, 100 + i), "s", uuid.UUID(int=i), "")
                   for i in range(3)]

        class Answerer(Recorder):
            def reply_received(self, reply):
                super().reply_received(reply)
                if type(reply) is C.SegmentAttribute:
                    flow.send(answers[reply.value])
                    other_flow.send(C.GetSegmentAttribute(rid(2, reply.value), "s",
                                                          uuid.UUID(int=9), ""))

        flow = conn.add_flow(1, Answerer())
        batch = b"".join(wire.encode(C.SegmentAttribute(rid(1, i), i)) for i in range(3))
        conn.data_received(batch)  # as the transport would deliver it
        assert writes[conn] == [b"".join(wire.encode(a) for a in answers)]
        assert writes[other] == []
        await settle(2)
        assert len(writes[other]) == 1 and len(writes[conn]) == 1
        conn.close()
        other.close()


@pytest.mark.asyncio
async def test_a_server_that_does_not_read_bounds_memory_through_drain(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        rec = Recorder()
        flow = conn.add_flow(1, rec)
        big = C.GetStreamSegmentInfo(rid(1, 1), "n" * 60000, "")
        frame_size = len(wire.encode(big))
        total = 500  # 30 MB: far more than the socket buffers hold
        sent = 0
        returned_while_paused = 0  # drains that let the sender on while writing was paused

        async def sender():
            nonlocal sent, returned_while_paused
            for _ in range(total):
                flow.send(big)
                sent += 1
                await flow.drain()
                # Nothing else writes: once drain returns, writing was resumed (the buffer fell
                # below its low-water mark, which needs the server to read).
                returned_while_paused += conn.writing_paused

        sconn = server.connections[0]
        sconn.stall()
        task = asyncio.ensure_future(sender())
        try:
            await wait_until(lambda: conn.writing_paused and sent > 0, what="backpressure")
            assert not task.done() and sent < total
            assert conn._transport.get_write_buffer_size() < 64 * 1024 + 2 * frame_size
            sconn.unstall()
            await asyncio.wait_for(task, 30)
            await wait_until(lambda: len(sconn.of_type(C.GetStreamSegmentInfo)) == total,
                             timeout=30)
            assert all(c == big for c in sconn.of_type(C.GetStreamSegmentInfo))
            assert returned_while_paused == 0  # the sender stayed blocked while it was paused
        finally:
            task.cancel()
            conn.close()


@pytest.mark.asyncio
async def test_pending_drains_fail_when_the_connection_is_lost(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        flow = conn.add_flow(1, Recorder())
        big = C.GetStreamSegmentInfo(rid(1, 1), "n" * 60000, "")
        sconn = server.connections[0]
        sconn.stall()

        async def sender():
            for _ in range(1000):
                flow.send(big)
                await flow.drain()

        task = asyncio.ensure_future(sender())
        await wait_until(lambda: conn.writing_paused, what="backpressure")
        sconn.drop()
        with pytest.raises(ConnectionFailedError):
            await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_the_batch_timer_flushes_an_open_append_block(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire, append_block_size=lambda flow_id: 1_000_000)
        rec = Recorder()
        flow = conn.add_flow(1, rec)
        writer = uuid.uuid4()
        flow.send(C.SetupAppend(rid(1), writer, "scope/stream/0", ""))
        flow.append_event("scope/stream/0", writer, 1, b"event-1", rid(1))
        assert conn._encoder.block_open  # a 1 MB block is open and held back
        await wait_until(lambda: rec.of_type(C.DataAppended), what="the padded block's ack")
        assert rec.of_type(C.DataAppended)[0].event_number == 1
        sconn = server.connections[0]
        assert [type(c) for c in sconn.received] == [C.Hello, C.SetupAppend, C.AppendBlock,
                                                     C.AppendBlockEnd]
        assert not conn._encoder.block_open
        conn.close()


@pytest.mark.asyncio
async def test_any_other_command_closes_the_open_block_first(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire, append_block_size=lambda flow_id: 1_000_000)
        writer_rec, reader_rec = Recorder("writer"), Recorder("reader")
        wflow, rflow = conn.add_flow(1, writer_rec), conn.add_flow(2, reader_rec)
        writer = uuid.uuid4()
        wflow.send(C.SetupAppend(rid(1), writer, "s/t/0", ""))
        from pravega_wire.appends import Append
        wflow.append(Append("s/t/0", writer, 1, 1, b"x" * 100, None, rid(1)))
        wflow.append(Append("s/t/0", writer, 2, 1, b"y" * 100, None, rid(1)))
        rflow.send(C.ReadSegment("s/t/1", 0, 1000, "", rid(2)))
        await wait_until(lambda: reader_rec.of_type(C.SegmentRead)
                         and writer_rec.of_type(C.DataAppended))
        sconn = server.connections[0]
        assert [type(c) for c in sconn.received] == [C.Hello, C.SetupAppend, C.AppendBlock,
                                                     C.AppendBlockEnd, C.ReadSegment]
        assert writer_rec.of_type(C.DataAppended)[0].event_number == 2
        conn.close()


@pytest.mark.asyncio
async def test_data_appended_feeds_the_batch_tracker_before_it_is_dispatched(wire):
    order = []

    class SpyEncoder:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def record_ack(self, request_id, event_number):
            order.append(("ack", request_id, event_number))
            return self._inner.record_ack(request_id, event_number)

    class Rec(Recorder):
        def reply_received(self, reply):
            super().reply_received(reply)
            if type(reply) is C.DataAppended:
                order.append(("reply", reply.request_id, reply.event_number))

    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        conn._encoder = SpyEncoder(conn._encoder)
        rec = Rec()
        flow = conn.add_flow(6, rec)
        writer = uuid.uuid4()
        flow.send(C.SetupAppend(rid(6), writer, "s/t/0", ""))
        flow.append_event("s/t/0", writer, 1, b"e1", rid(6))
        await wait_until(lambda: rec.of_type(C.DataAppended))
        assert order == [("ack", rid(6), 1), ("reply", rid(6), 1)]
        conn.close()


@pytest.mark.asyncio
async def test_closing_a_writer_flow_releases_its_append_sessions(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        rec = Recorder()
        flow = conn.add_flow(1, rec)
        for i in range(3):
            flow.send(C.SetupAppend(rid(1), uuid.UUID(int=i), f"s/t/{i}", ""))
        flow.send(C.SetupAppend(rid(1), uuid.UUID(int=0), "s/t/0", ""))  # a repeated setup
        assert conn._encoder.session_count == 3
        other = conn.add_flow(2, Recorder())
        other.send(C.SetupAppend(rid(2), uuid.UUID(int=9), "s/t/9", ""))
        flow.close()
        assert conn._encoder.session_count == 1
        conn.close()


# -- configuration -----------------------------------------------------------------------------


def test_connection_config_rejects_bad_values():
    with pytest.raises(ValueError, match="two keep-alive"):
        ConnectionConfig(read_timeout=10, keepalive_interval=5)
    for name in ("connect_timeout", "keepalive_interval"):
        for bad in (0, -1, float("nan"), float("inf")):
            with pytest.raises(ValueError):
                ConnectionConfig(**{name: bad})
        with pytest.raises(TypeError):
            ConnectionConfig(**{name: "5"})
    with pytest.raises(TypeError):
        ConnectionConfig(tls="yes")
    with pytest.raises(TypeError):
        ConnectionConfig(ssl_context=object())
    with pytest.raises(TypeError):
        ConnectionConfig(append_block_size=1000)
    assert ConnectionConfig(read_timeout=None).read_timeout is None
    defaults = ConnectionConfig()
    assert (defaults.connect_timeout, defaults.read_timeout, defaults.keepalive_interval) == (
        5.0, 180.0, 10.0)


@pytest.mark.asyncio
async def test_open_connection_checks_the_endpoint():
    for bad in ("localhost:12345", ("localhost",), (1, 2), ("", 1)):
        with pytest.raises(TypeError):
            await open_connection(bad)
    for bad in (("localhost", 0), ("localhost", 65536), ("localhost", "80")):
        with pytest.raises(ValueError):
            await open_connection(bad)


def test_every_reply_type_is_routed_and_no_request_is():
    requests = {C.SetupAppend, C.AppendBlock, C.AppendBlockEnd, C.ConditionalAppend,
                C.ConditionalBlockEnd, C.ReadSegment, C.GetStreamSegmentInfo, C.CreateSegment,
                C.SealSegment, C.DeleteSegment, C.UpdateSegmentPolicy, C.GetSegmentAttribute,
                C.UpdateSegmentAttribute, C.TruncateSegment, C.CreateTransientSegment,
                C.LocateOffset, C.MergeSegments, C.MergeSegmentsBatch, C.GetTableSegmentInfo,
                C.CreateTableSegment, C.DeleteTableSegment, C.UpdateTableEntries,
                C.RemoveTableKeys, C.ReadTable, C.ReadTableKeys, C.ReadTableEntries,
                C.ReadTableEntriesDelta, C.FlushToStorage, C.ListStorageChunks}
    special = {C.Hello, C.KeepAlive, C.Padding, C.PartialEvent, C.Event}
    everything = set(C.COMMAND_TYPES.values())
    assert REPLY_TYPES == everything - requests - special
    assert all(cls.request_id is not C.Command.request_id for cls in REPLY_TYPES)


@pytest.mark.asyncio
async def test_too_many_append_sessions_drop_the_connection(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        rec, other = Recorder("writer"), Recorder("other")
        flow = conn.add_flow(1, rec)
        conn.add_flow(2, other)
        for i in range(2000):  # Java's cap: 2000 sessions set up on one connection
            flow.send(C.SetupAppend(rid(1), uuid.UUID(int=i), f"s/t/{i}", ""))
        with pytest.raises(ConnectionFailedError, match="append sessions"):
            flow.send(C.SetupAppend(rid(1), uuid.UUID(int=2000), "s/t/2000", ""))
        assert conn.is_closed
        assert len(rec.lost) == 1 and len(other.lost) == 1
        assert isinstance(other.lost[0].__cause__, ConnectionClosedError)


@pytest.mark.asyncio
async def test_drain_returns_at_once_with_room_and_raises_on_a_dead_flow(wire):
    async with ScriptedServer(wire) as server:
        conn = await connect(server, wire)
        flow = conn.add_flow(1, Recorder())
        flow.send(C.KeepAlive())
        await flow.drain()
        flow.close()
        with pytest.raises(ConnectionClosedError):
            await flow.drain()
        conn.close()
