"""Writers over the controller on the embedded cluster: the EventStreamWriter, which follows a
stream through its scales (client/events.py), and the TransactionalEventStreamWriter
(client/transactions.py)."""

from __future__ import annotations

import asyncio
import struct

import pytest
import pytest_asyncio


from pravega_wire.client import SegmentReader  # noqa: E402
from pravega_wire.client.controller import (  # noqa: E402
    ControllerClient, SegmentWithRange, hash_routing_key,
)
from pravega_wire.client.events import EventStreamWriter, KeyRouter, StreamSealedError  # noqa: E402
from pravega_wire.client.reader import EndOfSegment  # noqa: E402
from pravega_wire.client.transactions import (  # noqa: E402
    TransactionalEventStreamWriter, TxnFailedError,
)
from pravega_wire.pool import ClientConfig, ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402
from test_controller_streams import E1, stored  # noqa: E402

E2 = 2 << 32
KEYS = 24  # key-0 .. key-23 hash into every range the tests scale to


@pytest_asyncio.fixture
async def env():
    async with EmbeddedCluster(2) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        yield cluster, ctl, pool


def event(key: int, sequence: int) -> bytes:
    return struct.pack(">II", key, sequence) + b"." * (key % 7)


async def read_sealed(pool, ctl, segment: str) -> list[bytes]:
    """Every event of a sealed segment, to its end."""
    out = []
    async with SegmentReader(pool, ctl, segment) as reader:
        while True:
            try:
                out.append(bytes(await reader.read_event(timeout=10)))
            except EndOfSegment:
                return out


async def per_key(pool, ctl, scope: str, stream: str) -> dict[int, list[int]]:
    """The sequence numbers of each key's events, reading every segment of the sealed stream
    in epoch order (a key's events move to a successor only after its predecessor's)."""
    ids = await ctl.get_segments_between(scope, stream)
    got: dict[int, list[int]] = {}
    for segment_id in sorted(ids, key=lambda i: (i >> 32, i & 0xFFFFFFFF)):
        name = f"{scope}/{stream}/{segment_id & 0xFFFFFFFF}.#epoch.{segment_id >> 32}"
        for data in await read_sealed(pool, ctl, name):
            key, sequence = struct.unpack(">II", data[:8])
            got.setdefault(key, []).append(sequence)
    return got


# ---- routing ---------------------------------------------------------------------------------

def test_a_router_hands_a_sealed_range_to_the_overlapping_successors():
    def seg(i, low, high):
        return SegmentWithRange("s", "t", i, low, high)

    router = KeyRouter([seg(0, 0.0, 0.5), seg(1, 0.5, 1.0)])
    keys = [f"k{i}" for i in range(200)]

    def owner(key):
        return router.segment_for(key).segment_id

    assert {owner(k) for k in keys} == {0, 1}
    assert all(owner(k) == (0 if hash_routing_key(k) <= 0.5 else 1) for k in keys)
    router.replace(0, [seg(E1 | 2, 0.0, 0.25), seg(E1 | 3, 0.25, 0.5)])
    # A merge of segment 1 with one half of 0: only segment 1's range moves to it for now.
    router.replace(1, [seg(E2 | 4, 0.25, 1.0)])
    for k in keys:
        position = hash_routing_key(k)
        expected = E1 | 2 if position <= 0.25 else E1 | 3 if position <= 0.5 else E2 | 4
        assert owner(k) == expected, (k, position)
    assert [s.segment_id for s in router.segments] == [E1 | 2, E1 | 3, E2 | 4]
    router.replace(E1 | 3, [seg(E2 | 4, 0.25, 1.0)])
    assert {owner(k) for k in keys} == {E1 | 2, E2 | 4}
    assert [s.segment_id for s in router.segments] == [E1 | 2, E2 | 4]


# ---- EventStreamWriter -----------------------------------------------------------------------

@pytest.mark.asyncio
async def test_the_writer_follows_a_split_and_a_merge_in_order_per_key(env):
    """Each batch is written after a scale the writer has not heard of: its events go to
    sealed segments first, come back unacknowledged and are written again to the successors,
    before any later event, so every key's events are stored once and in order."""
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 2)
    sent = {k: 0 for k in range(KEYS)}

    async def batch(writer, count):
        for i in range(count):
            key = i % KEYS
            await writer.write(event(key, sent[key]), routing_key=f"key-{key}")
            sent[key] += 1

    async with EventStreamWriter(pool, ctl, "sc", "st") as writer:
        await batch(writer, 240)
        await writer.flush()
        assert [s.segment_id for s in writer.segments] == [0, 1]
        await ctl.scale_stream("sc", "st", [0], [(0.0, 0.25), (0.25, 0.5)])
        await batch(writer, 240)
        await writer.flush()
        assert writer.segments_sealed == 1
        assert [s.segment_id for s in writer.segments] == [E1 | 2, E1 | 3, 1]
        await ctl.scale_stream("sc", "st", [E1 | 2, E1 | 3, 1], [(0.0, 1.0)])
        await batch(writer, 240)
        await writer.flush()
        assert writer.segments_sealed == 4
        assert [s.segment_id for s in writer.segments] == [E2 | 4]
    await ctl.seal_stream("sc", "st")
    got = await per_key(pool, ctl, "sc", "st")
    assert got == {k: list(range(sent[k])) for k in range(KEYS)}

    # Each batch reached only the segments current when it was written: sequence numbers
    # 0-9 are the first batch's, 10-19 the second's, 20-29 the third's.
    def sequences(events):
        return {struct.unpack(">II", data[:8])[1] // 10 for data in events}

    assert sequences(await read_sealed(pool, ctl, "sc/st/0.#epoch.0")) == {0}
    assert sequences(await read_sealed(pool, ctl, "sc/st/1.#epoch.0")) == {0, 1}
    for half in ("sc/st/2.#epoch.1", "sc/st/3.#epoch.1"):
        assert sequences(await read_sealed(pool, ctl, half)) == {1}
    merged = await read_sealed(pool, ctl, "sc/st/4.#epoch.2")
    assert len(merged) == 240 and sequences(merged) == {2}


@pytest.mark.asyncio
async def test_a_sealed_stream_fails_the_writer_with_the_events_not_stored(env):
    _, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    writer = EventStreamWriter(pool, ctl, "sc", "st")
    async with writer:
        await writer.write(b"stored", routing_key="k")
        await writer.flush()
        await ctl.seal_stream("sc", "st")
        lost = []
        with pytest.raises(StreamSealedError) as sealed:
            for i in range(5):  # a write that learns of the seal raises at once
                lost.append(b"lost-%d" % i)
                await writer.write(lost[-1], routing_key="k")
            await writer.flush()
        assert sealed.value.unacknowledged == lost  # each refused event, once, in order
        with pytest.raises(StreamSealedError) as again:
            await writer.write(b"later")
        assert again.value.unacknowledged == [b"later"]
    assert await read_sealed(pool, ctl, "sc/st/0.#epoch.0") == [b"stored"]
    with pytest.raises(StreamSealedError):
        async with EventStreamWriter(pool, ctl, "sc", "st"):
            pass


@pytest.mark.asyncio
async def test_scales_the_writer_missed_and_a_seal_behind_them(env):
    """Two scales the writer has not heard of: its events travel from the first segment
    through the successors of each scale; then the stream is sealed behind a third scale, and
    the flush reports exactly the events that found no segment."""
    _, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    sent = {k: 0 for k in range(KEYS)}
    async with EventStreamWriter(pool, ctl, "sc", "st") as writer:
        await ctl.scale_stream("sc", "st", [0], [(0.0, 0.5), (0.5, 1.0)])        # 1, 2
        await ctl.scale_stream("sc", "st", [E1 | 1], [(0.0, 0.3), (0.3, 0.5)])   # 3, 4
        for i in range(96):
            key = i % KEYS
            await writer.write(event(key, sent[key]), routing_key=f"key-{key}")
            sent[key] += 1
        await writer.flush()
        assert [s.segment_id for s in writer.segments] == [E2 | 3, E2 | 4, E1 | 2]
        assert writer.segments_sealed == 2
        await ctl.scale_stream("sc", "st", [E2 | 3, E2 | 4, E1 | 2], [(0.0, 1.0)])  # 5
        await ctl.seal_stream("sc", "st")
        attempted = []
        with pytest.raises(StreamSealedError) as sealed:
            for i in range(48):  # a write that learns of the seal raises at once
                attempted.append(event(i % KEYS, 100 + i // KEYS))
                await writer.write(attempted[-1], routing_key=f"key-{i % KEYS}")
            await writer.flush()
        assert sorted(sealed.value.unacknowledged) == sorted(attempted)
    assert await per_key(pool, ctl, "sc", "st") == {k: list(range(sent[k])) for k in range(KEYS)}


@pytest.mark.asyncio
async def test_concurrent_writes_during_a_scale_lose_and_repeat_nothing(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    sent = {k: 0 for k in range(KEYS)}

    under_way = asyncio.Event()

    async def produce(writer, key, count):
        for _ in range(count):
            await writer.write(event(key, sent[key]), routing_key=f"key-{key}")
            sent[key] += 1
            if sent[key] == 50:
                under_way.set()

    async with EventStreamWriter(pool, ctl, "sc", "st") as writer:
        producers = [asyncio.create_task(produce(writer, k, 200)) for k in range(KEYS)]
        await asyncio.wait_for(under_way.wait(), 30)  # scale while the producers write
        await cluster.controller.scale_stream("sc", "st", [0], [(0.0, 0.5), (0.5, 1.0)])
        await asyncio.wait_for(asyncio.gather(*producers), 30)
        await writer.flush()
        assert writer.segments_sealed == 1
    await ctl.seal_stream("sc", "st")
    assert await per_key(pool, ctl, "sc", "st") == {k: list(range(200)) for k in range(KEYS)}


# ---- TransactionalEventStreamWriter ----------------------------------------------------------

@pytest.mark.asyncio
async def test_transactions_commit_atomically_and_abort_without_a_trace(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 3)
    async with TransactionalEventStreamWriter(pool, ctl, "sc", "st") as writer:
        kept, dropped = await writer.begin(), await writer.begin()
        for i in range(30):
            await kept.write(event(i % 5, i // 5), routing_key=f"key-{i % 5}")
            await dropped.write(b"dropped", routing_key=f"key-{i % 5}")
        await kept.flush()
        segments = await ctl.get_current_segments("sc", "st")
        assert all(stored(cluster, s.name).length == 0 for s in segments)  # nothing visible
        await dropped.abort()
        assert dropped.status == "ABORTED"
        await kept.commit(timestamp=99)
        assert kept.status == "COMMITTED"
        assert await kept.check_status() == "COMMITTED"
        with pytest.raises(TxnFailedError) as closed:
            await kept.write(b"late")
        assert closed.value.status == "COMMITTED"
        assert all(stored(cluster, name) is None
                   for txn in (kept, dropped) for name in txn.info.segment_names.values())
    await ctl.seal_stream("sc", "st")
    assert await per_key(pool, ctl, "sc", "st") == {k: list(range(6)) for k in range(5)}
    assert await ctl.list_completed_transactions("sc", "st") == {
        kept.txn_id: "COMMITTED", dropped.txn_id: "ABORTED"}


@pytest.mark.asyncio
async def test_an_open_transaction_is_kept_alive_and_found_again_by_id(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 2)
    async with TransactionalEventStreamWriter(pool, ctl, "sc", "st", lease_ms=300,
                                              ping_interval=0.05) as writer:
        txn = await writer.begin()
        await txn.write(b"first", routing_key="a")
        # Pinged every 50 ms, the transaction outlives many 300 ms leases.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                cluster.controller.transaction_finished("sc", "st", txn.txn_id), 1.5)
        assert writer.pings >= 3
        assert await txn.check_status() == "OPEN"

        async with TransactionalEventStreamWriter(pool, ctl, "sc", "st") as other:
            found = await other.get_txn(txn.txn_id)
            assert [s.segment_id for s in found.segments] == [0, 1]
            await found.write(b"second", routing_key="a")
            await txn.flush()
            await found.commit()
            done = await other.get_txn(txn.txn_id)
            assert done.status == "COMMITTED"
            with pytest.raises(TxnFailedError):
                await done.write(b"no")
    await ctl.seal_stream("sc", "st")
    events = [e for s in (0, 1) for e in await read_sealed(pool, ctl, f"sc/st/{s}.#epoch.0")]
    assert events == [b"first", b"second"]


@pytest.mark.asyncio
async def test_a_transaction_whose_lease_ran_out_fails(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    writer = TransactionalEventStreamWriter(pool, ctl, "sc", "st", lease_ms=100,
                                            ping_interval=3600)  # pings too late
    async with writer:
        txn = await writer.begin()
        await txn.write(b"x")
        await txn.flush()
        assert await asyncio.wait_for(
            cluster.controller.transaction_finished("sc", "st", txn.txn_id), 10) == "ABORTED"
        with pytest.raises(TxnFailedError) as failed:
            await txn.commit()
        assert failed.value.status == "ABORTED"
    await ctl.seal_stream("sc", "st")
    assert await read_sealed(pool, ctl, "sc/st/0.#epoch.0") == []


@pytest.mark.asyncio
async def test_with_auth_both_writers_use_the_controllers_delegation_tokens():
    async with EmbeddedCluster(2, auth=True) as cluster, \
            ControllerClient(cluster.controller_uri, auth=("admin", "pw")) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        await ctl.create_stream("sc", "st", 2)
        async with EventStreamWriter(pool, ctl, "sc", "st", auth=True) as writer, \
                TransactionalEventStreamWriter(pool, ctl, "sc", "st", auth=True) as txns:
            await writer.write(event(0, 0), routing_key="key-0")
            await writer.flush()
            await ctl.scale_stream("sc", "st", [0, 1], [(0.0, 1.0)])
            await writer.write(event(0, 1), routing_key="key-0")
            await writer.flush()
            txn = await txns.begin()
            await txn.write(event(0, 2), routing_key="key-0")
            await txn.commit()
        await ctl.seal_stream("sc", "st")
        token = cluster.issue_token("sc", "st")

        async def tokens(segment: str, expired: bool) -> str:
            return token

        got = []
        for name in ("sc/st/0.#epoch.0", "sc/st/1.#epoch.0", "sc/st/2.#epoch.1"):
            async with SegmentReader(pool, ctl, name, token_provider=tokens) as reader:
                while True:
                    try:
                        got.append(struct.unpack(">II", bytes(
                            await reader.read_event(timeout=10))[:8]))
                    except EndOfSegment:
                        break
        assert got == [(0, 0), (0, 1), (0, 2)]
