"""The fault soak (``tests/soak.py``) in its CI size, and the TCP fault proxy it uses
(``pravega_wire.server.faultproxy``): every fault exact to the byte and reproducible with a seed.

CI size: ``SOAK_FAULTS`` faults (default 1,000) with seed ``SOAK_SEED`` (default 1). The long
runs are ``python tests/soak.py --faults N`` (RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.client.reader import SegmentReader
from pravega_wire.codec import encode
from pravega_wire.connection import ConnectionConfig, open_connection
from pravega_wire.errors import ConnectionFailedError, TimeoutError
from pravega_wire.pool import ClientConfig, ConnectionPool
from pravega_wire.server import EmbeddedCluster
from pravega_wire.server.faultproxy import BOTH, DOWNSTREAM, UPSTREAM, FaultProxy
from pravega_wire.server.tokens import issue_token

from client_fakes import until
from conftest import wait_until
from soak import FAULT_WEIGHTS, SoakConfig, _Soak, run_soak

SOAK_FAULTS = int(os.environ.get("SOAK_FAULTS", "1000"))
SOAK_SEED = int(os.environ.get("SOAK_SEED", "1"))
WAIT = 10.0

FRAMES = [encode(C.Hello(17, 5)), encode(C.KeepAlive()),
          encode(C.SetupAppend(1, uuid.UUID(int=7), "a/b/0", "")),
          encode(C.ReadSegment("a/b/0", 0, 1000, "", 5)), encode(C.KeepAlive())]
STREAM = b"".join(FRAMES)


class Peer(asyncio.Protocol):
    """One end of a connection: keeps what it receives and how the connection ended (None: a
    clean close; an exception: a reset)."""

    def __init__(self):
        self.data = bytearray()
        self.ended = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc) -> None:
        if not self.ended.done():
            self.ended.set_result(exc)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()

    async def outcome(self) -> tuple:
        """What it received until the connection ended, and whether it was reset."""
        exc = await asyncio.wait_for(self.ended, WAIT)
        return bytes(self.data), isinstance(exc, ConnectionResetError)


class Sink(Peer):
    """A server connection; the server's ``reply`` bytes are sent to each client at once."""

    def __init__(self, server: "Server"):
        super().__init__()
        self.server = server

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.server.connections.append(self)
        if self.server.reply:
            transport.write(self.server.reply)


class Server:
    def __init__(self, reply: bytes = b""):
        self.reply = reply
        self.connections: list = []
        self._server = None

    async def __aenter__(self) -> "Server":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Sink(self), "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._server.close()
        for conn in self.connections:
            conn.transport.abort()
        await self._server.wait_closed()

    @property
    def endpoint(self):
        return ("127.0.0.1", self._server.sockets[0].getsockname()[1])

    async def connection(self) -> Sink:
        await wait_for(lambda: self.connections)
        return self.connections[-1]


async def wait_for(predicate, timeout: float = WAIT) -> None:
    await wait_until(predicate, timeout)


async def client(proxy: FaultProxy) -> Peer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(Peer, *proxy.endpoint)
    return peer


# ---- the fault proxy ----------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_the_proxy_forwards_both_ways_byte_for_byte():
    reply = bytes(range(256)) * 300
    async with Server(reply) as server, FaultProxy(server.endpoint) as proxy:
        c = await client(proxy)
        c.write(STREAM * 50)
        sink = await server.connection()
        await wait_for(lambda: len(sink.data) == len(STREAM) * 50 and len(c.data) == len(reply))
        assert bytes(c.data) == reply and bytes(sink.data) == STREAM * 50
        assert proxy.stats["frames_up"] == 5 * 50
        assert proxy.stats["frames_down"] == 0  # the reply is not frames: forwarded verbatim
        c.close()
        assert await asyncio.wait_for(sink.ended, WAIT) is None  # a clean close goes through


@pytest.mark.asyncio
@pytest.mark.parametrize("direction", [UPSTREAM, DOWNSTREAM])
async def test_reset_before_a_frame_forwards_exactly_the_frames_before_it(direction):
    async with Server(STREAM if direction == DOWNSTREAM else b"") as server, \
            FaultProxy(server.endpoint) as proxy:
        proxy.reset_before_frame(direction=direction, commands={"ReadSegment"})
        c = await client(proxy)
        if direction == UPSTREAM:
            for byte in STREAM:  # headers split everywhere: the proxy must reassemble them
                c.write(bytes((byte,)))
                await asyncio.sleep(0.001)
        sink = await server.connection()
        receiver, sender = (sink, c) if direction == UPSTREAM else (c, sink)
        received, reset = await receiver.outcome()
        assert received == b"".join(FRAMES[:3]) and reset
        assert (await sender.outcome())[1]
        assert proxy.stats[f"reset_before_frame {direction} ReadSegment"] == 1
        assert proxy.connections == [] and proxy.armed == 0


@pytest.mark.asyncio
async def test_header_bytes_held_for_an_armed_fault_go_out_in_order_once_it_is_disarmed():
    async with Server() as server, FaultProxy(server.endpoint) as proxy:
        proxy.drop_frames(direction=UPSTREAM, commands={"ReadTable"})  # armed, never matches
        c = await client(proxy)
        c.write(STREAM[:3])  # part of a header: held until the frame is known
        sink = await server.connection()
        upstream = proxy.connections[0].upstream
        await wait_for(lambda: len(upstream._header) == 3)  # the proxy has the bytes...
        assert upstream.forwarded == 0 and sink.data == b""  # ...and holds them
        proxy.clear()
        c.write(STREAM[3:])
        await wait_for(lambda: len(sink.data) >= len(STREAM))
        assert bytes(sink.data) == STREAM and upstream.forwarded == len(STREAM)


@pytest.mark.asyncio
async def test_reset_in_a_frame_cuts_it_at_a_seeded_point():
    cuts = []
    for _ in range(2):
        async with Server() as server, FaultProxy(server.endpoint, seed=42) as proxy:
            proxy.reset_in_frame(direction=UPSTREAM, commands={"SetupAppend"})
            c = await client(proxy)
            c.write(STREAM)
            sink = await server.connection()
            received, reset = await sink.outcome()
            head = len(FRAMES[0]) + len(FRAMES[1])
            cut = len(received) - head
            assert reset and 1 <= cut < len(FRAMES[2])  # some of the frame, never all of it
            assert received == STREAM[:head] + FRAMES[2][:cut]
            cuts.append(cut)
    assert cuts[0] == cuts[1]  # the same seed cuts at the same byte


@pytest.mark.asyncio
async def test_reset_after_n_bytes_forwards_exactly_n_bytes():
    async with Server() as server, FaultProxy(server.endpoint) as proxy:
        c = await client(proxy)
        c.write(STREAM[:10])
        sink = await server.connection()
        await wait_for(lambda: len(sink.data) == 10)
        assert proxy.reset_after(25, direction=UPSTREAM) == 1
        c.write(STREAM[10:])
        assert await sink.outcome() == (STREAM[:35], True)
        assert proxy.stats["reset_after"] == 1


@pytest.mark.asyncio
async def test_dropped_frames_vanish_and_the_connection_stays():
    async with Server() as server, FaultProxy(server.endpoint) as proxy:
        proxy.drop_frames(direction=UPSTREAM, commands={"KeepAlive"}, times=None)
        c = await client(proxy)
        c.write(STREAM)
        sink = await server.connection()
        expected = FRAMES[0] + FRAMES[2] + FRAMES[3]
        await wait_for(lambda: len(sink.data) == len(expected))
        assert bytes(sink.data) == expected and not sink.ended.done()
        assert proxy.stats["dropped_frames"] == 2
        c.close()


@pytest.mark.asyncio
async def test_a_stall_holds_everything_on_open_sockets_until_resumed():
    async with Server(b"pong") as server, FaultProxy(server.endpoint) as proxy:
        proxy.stall()
        c = await client(proxy)  # a new connection is stalled too
        c.write(STREAM)
        sink = await server.connection()
        await asyncio.sleep(0.2)
        assert (c.data, sink.data) == (b"", b"")  # half-open: nothing passes,
        assert not c.ended.done() and not sink.ended.done()  # and nothing closes
        proxy.resume()
        await wait_for(lambda: c.data == b"pong" and bytes(sink.data) == STREAM)
        c.close()


@pytest.mark.asyncio
async def test_a_throttle_holds_bytes_back_until_lifted():
    payload = bytes(200_000)
    async with Server(payload) as server, FaultProxy(server.endpoint) as proxy:
        proxy.throttle(1000, direction=DOWNSTREAM)
        c = await client(proxy)
        await server.connection()
        await wait_for(lambda: c.data)
        await asyncio.sleep(0.05)
        assert 0 < len(c.data) < len(payload)  # at 1 kB/s, 200 kB take minutes
        proxy.unthrottle()
        await wait_for(lambda: len(c.data) == len(payload))
        assert bytes(c.data) == payload and proxy.stats["throttles"] == 1
        c.close()


@pytest.mark.asyncio
async def test_refused_connections_are_reset_at_once_then_accepted():
    async with Server(b"hi") as server, FaultProxy(server.endpoint) as proxy:
        proxy.refuse(times=2)
        for _ in range(2):
            assert await (await client(proxy)).outcome() == (b"", True)
        c = await client(proxy)
        await wait_for(lambda: c.data == b"hi")
        assert proxy.stats["refused"] == 2 and len(server.connections) == 1
        c.close()


@pytest.mark.asyncio
async def test_faults_can_target_one_connection_and_be_cleared():
    async with Server() as server, FaultProxy(server.endpoint) as proxy:
        c1, c2 = await client(proxy), await client(proxy)
        await wait_for(lambda: len(server.connections) == 2 and len(proxy.connections) == 2)
        proxy.reset_before_frame(direction=BOTH, connection=proxy.connections[0])
        proxy.reset_in_frame(commands={"Hello"}, times=None)
        proxy.clear()
        assert proxy.armed == 0
        for c in (c1, c2):
            c.write(STREAM)
        await wait_for(lambda: all(bytes(s.data) == STREAM for s in server.connections))
        assert proxy.reset() == 2
        for c in (c1, c2):
            assert (await c.outcome())[1]


@pytest.mark.asyncio
async def test_pending_counts_the_triggers_of_one_fault_that_have_not_fired():
    async with Server() as server, FaultProxy(server.endpoint) as proxy:
        proxy.reset_in_frame(direction=UPSTREAM)
        proxy.reset_in_frame(direction=UPSTREAM)
        proxy.reset_in_frame(direction=DOWNSTREAM)
        proxy.reset_before_frame(direction=UPSTREAM, commands={"AppendBlockEnd"})
        assert proxy.pending("reset_in_frame", direction=UPSTREAM) == 2
        assert proxy.pending("reset_in_frame", direction=DOWNSTREAM) == 1
        assert proxy.pending("reset_in_frame", direction=BOTH) == 0
        assert proxy.pending("reset_before_frame", direction=UPSTREAM) == 0  # any frame: no
        assert proxy.pending("reset_before_frame", direction=UPSTREAM,
                             commands=("AppendBlockEnd",)) == 1
        c = await client(proxy)
        c.write(FRAMES[0])  # the first upstream trigger cuts this frame
        assert (await c.outcome())[1]
        assert proxy.pending("reset_in_frame", direction=UPSTREAM) == 1
        assert proxy.armed == 3
        with pytest.raises(ValueError):
            proxy.pending("stall")


@pytest.mark.asyncio
async def test_the_soak_does_not_queue_frame_faults_that_no_frame_has_taken():
    """Found by the soak (a tail reader "stuck" for 10 reads about one run in eight): a frame
    fault fires on the next matching frame, so while no traffic passes a proxy (stalled, its
    store restarting, its clients backing off) the triggers the soak kept arming queued up
    (13 on one proxy), then cut the Hello of every reconnection attempt one after another:
    every connection to that store failed for seconds. Only one of a kind may be pending."""
    async with EmbeddedCluster(stores=2, controller=False) as cluster:
        soak = _Soak(SoakConfig(stores=2, faults=0, seed=3), cluster)
        for proxy in soak.proxies:
            await proxy.start()
        try:
            for _ in range(40):  # no client: nothing takes them
                for kind in ("reset_mid_frame", "reset_before_append", "reset_after_append"):
                    await soak._inject(kind)
            for proxy in soak.proxies:
                for action, direction, commands in (
                        ("reset_in_frame", UPSTREAM, None), ("reset_in_frame", DOWNSTREAM, None),
                        ("reset_before_frame", UPSTREAM, ("AppendBlockEnd",)),
                        ("reset_before_frame", DOWNSTREAM, ("DataAppended",))):
                    assert proxy.pending(action, direction=direction, commands=commands) <= 1
                # A client reconnecting loses at most the Hellos the two pending cuts take.
                config = ConnectionConfig(connect_timeout=WAIT)
                failures = 0
                while True:
                    try:
                        conn = await open_connection(proxy.endpoint, config)
                    except ConnectionFailedError:
                        failures += 1
                        assert failures <= 2, "reconnection attempts keep failing"
                        continue
                    conn.close()
                    await conn.wait_closed()
                    break
        finally:
            for proxy in soak.proxies:
                await proxy.stop()


def test_bad_fault_settings_are_refused():
    proxy = FaultProxy(("127.0.0.1", 1))
    with pytest.raises(ValueError):
        proxy.reset_in_frame(direction="sideways")
    with pytest.raises(ValueError):
        proxy.drop_frames(commands={"NoSuchCommand"})
    with pytest.raises(ValueError):
        proxy.reset_before_frame(probability=0)
    with pytest.raises(ValueError):
        proxy.reset_after(-1)
    with pytest.raises(ValueError):
        proxy.throttle(0)
    with pytest.raises(ValueError):
        SoakConfig(weights=(("earthquake", 1.0),))


# ---- the soak -----------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_soak_loses_nothing_duplicates_nothing_and_leaves_nothing_behind():
    report = await run_soak(SoakConfig(faults=SOAK_FAULTS, seed=SOAK_SEED))
    print("\n" + report.summary())
    assert report.faults_fired >= SOAK_FAULTS
    if SOAK_FAULTS >= 500:  # enough draws for every kind to come up
        assert set(report.faults) == set(FAULT_WEIGHTS), report.faults
    events = report.events
    assert events["acknowledged"] > 0 and events["read_by_tail_readers"] == events["stored"]
    assert (events["lost"], events["duplicated"], events["out_of_order"]) == (0, 0, 0)
    assert events["unaccounted"] == 0
    assert report.conditional["acknowledged"] > 0
    assert (report.conditional["lost"], report.conditional["duplicated"]) == (0, 0)
    assert report.untyped_errors == [] and report.hangs == [] and report.crashes == []
    assert report.violations == []
    assert report.leftovers == {"tasks": 0, "sockets": 0, "flows": 0}
    assert report.ok


# ---- found by the soak ---------------------------------------------------------------------------

class FakeClock:
    """The clock a store checks token expiry against (``SegmentStore.token_clock``), moved by
    the test instead of waiting; tokens issued on it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def token(self, cluster: EmbeddedCluster, ttl: float = 600) -> str:
        return issue_token(cluster.token_key, "expiry", "stream", ttl, self.now)


@pytest.mark.asyncio
async def test_a_reader_whose_token_expired_reads_on():
    """A ReadSegment refused for an expired token is answered (as Java's store does) with the
    read offset as request id, so the refusal is routed to another flow and dropped; the reader
    must not wait for ever: it reads the token's ``exp`` and asks for a fresh one instead of
    sending a read the store would refuse that way."""
    async with EmbeddedCluster(stores=1, auth=True) as cluster:
        segment = "expiry/stream/0.#epoch.0"
        await cluster.create_segment(segment)
        store = cluster.stores[0]
        store.storage.append(store.storage.get(segment), struct.pack(">ii", 0, 2) + b"hi")
        store.storage.commit()
        # Expired ten seconds ago, by the store's clock and the reader's (no waiting).
        stale = issue_token(cluster.token_key, "expiry", "stream", 1, time.time() - 10)

        async def tokens(segment: str, expired: bool) -> str:
            return cluster.issue_token("expiry", "stream") if expired else stale

        async with ConnectionPool(ClientConfig()) as pool:
            async with SegmentReader(pool, store.endpoint, segment, token_provider=tokens,
                                     reply_timeout=1.0) as reader:
                try:
                    assert bytes(await reader.read_event(timeout=5)) == b"hi"
                except TimeoutError:
                    pytest.fail("the reader never heard that its token expired")


@pytest.mark.asyncio
async def test_a_reader_asks_for_a_token_for_every_read():
    """As Java's reader does, a SegmentReader asks its token provider for every ReadSegment, so
    a token that expires on a live connection is not sent again (which would cost a whole
    reply_timeout: the store's refusal carries the read offset as request id)."""
    async with EmbeddedCluster(stores=1, auth=True) as cluster:
        segment = "expiry/stream/0.#epoch.0"
        await cluster.create_segment(segment)
        store = cluster.stores[0]
        event = struct.pack(">ii", 0, 2) + b"hi"

        def append() -> None:
            store.storage.append(store.storage.get(segment), event)
            store.storage.commit()

        clock = store.token_clock = FakeClock()

        async def tokens(segment: str, expired: bool) -> str:
            return clock.token(cluster, ttl=1)  # always a fresh one

        append()
        async with ConnectionPool(ClientConfig()) as pool:
            async with SegmentReader(pool, store.endpoint, segment, token_provider=tokens,
                                     reply_timeout=10.0) as reader:
                assert bytes(await reader.read_event(timeout=5)) == b"hi"
                # The reader's next read (sent with a token still valid) is held at the tail;
                # then the token the reader connected with expires (on the store's clock).
                await until(lambda: store.stats["ReadSegment"] == 2, "the next read held")
                clock.now += 2.1
                append()
                try:
                    assert bytes(await reader.read_event(timeout=3)) == b"hi"
                except TimeoutError:
                    pytest.fail("the reader sent the token it connected with, which had expired")
