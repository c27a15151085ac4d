"""Transactions across scales: a transaction begun before a scale is committed after it as
Pravega's controller commits it, by a rolling transaction (server/controller.py
``_roll_transaction``): its epoch's segments are duplicated into a new epoch, the transaction
merged into them, and the active segments duplicated into the epoch after."""

from __future__ import annotations

import asyncio
import struct

import pytest


from pravega_wire.client.controller import ControllerError  # noqa: E402
from pravega_wire.client.events import EventStreamWriter  # noqa: E402
from pravega_wire.client.transactions import (  # noqa: E402
    TransactionalEventStreamWriter, TxnFailedError,
)
from pravega_wire.naming import txn_epoch  # noqa: E402
from test_controller_streams import E1, stored  # noqa: E402
from test_controller_writers import (  # noqa: E402,F401 (env: the fixture)
    KEYS, env, event, per_key, read_sealed,
)

E2, E3 = 2 << 32, 3 << 32


@pytest.mark.asyncio
async def test_a_commit_after_a_split_rolls_the_transaction_into_two_new_epochs(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    async with TransactionalEventStreamWriter(pool, ctl, "sc", "st") as writer:
        txn = await writer.begin()
        await txn.write(b"in-txn", routing_key="a")
        await txn.flush()
        await ctl.scale_stream("sc", "st", [0], [(0.0, 0.5), (0.5, 1.0)])  # epoch 1: 1, 2
        await txn.commit()
        assert txn.status == "COMMITTED"
    assert await ctl.check_transaction_state("sc", "st", txn.txn_id) == "COMMITTED"
    assert all(stored(cluster, n) is None for n in txn.info.segment_names.values())
    # Epoch 2 duplicates epoch 0 (segment 0) and holds the transaction; epoch 3 duplicates the
    # active epoch 1 and is current.
    assert [(s.segment_id, s.min_key, s.max_key)
            for s in await ctl.get_epoch_segments("sc", "st", 2)] == [(E2 | 0, 0.0, 1.0)]
    current = await ctl.get_current_segments("sc", "st")
    assert [(s.segment_id, s.min_key, s.max_key) for s in current] == [
        (E3 | 1, 0.0, 0.5), (E3 | 2, 0.5, 1.0)]
    assert [(s.segment.segment_id, s.predecessors)
            for s in await ctl.get_successors("sc", "st", E1 | 1)] == [(E2 | 0, (E1 | 1, E1 | 2))]
    assert [(s.segment.segment_id, s.predecessors)
            for s in await ctl.get_successors("sc", "st", E2 | 0)] == [
        (E3 | 1, (E2 | 0,)), (E3 | 2, (E2 | 0,))]
    assert await read_sealed(pool, ctl, "sc/st/0.#epoch.2") == [b"in-txn"]
    assert stored(cluster, "sc/st/1.#epoch.1").sealed
    # The stream goes on: a transaction of the new epoch commits in place.
    later = await ctl.create_transaction("sc", "st", lease_ms=60_000)
    assert txn_epoch(later.txn_id) == 3
    await ctl.commit_transaction("sc", "st", later.txn_id)


@pytest.mark.asyncio
async def test_transactions_interleaved_with_plain_writes_and_scales_keep_per_key_order(env):
    """Plain events and transactions on the same keys, scales between them: every committed
    event is read once, each key's in the order its plain writes and its transactions'
    commits happened (a transaction's events join the stream when it commits); aborted and
    timed-out transactions leave nothing."""
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 2)
    sent = {k: 0 for k in range(KEYS)}

    order = {k: [] for k in range(KEYS)}  # each key's sequence numbers in stream order

    def next_events():
        batch = []
        for key in range(KEYS):
            batch.append((key, event(key, sent[key])))
            sent[key] += 1
        return batch

    async def plain(writer):
        for key, data in next_events():
            await writer.write(data, routing_key=f"key-{key}")
            order[key].append(struct.unpack(">II", data[:8])[1])
        await writer.flush()

    async def transactional(txn):
        """Write one event per key into ``txn``; returns what it will add to the stream."""
        batch = next_events()
        for key, data in batch:
            await txn.write(data, routing_key=f"key-{key}")
        await txn.flush()
        return batch

    async def commit(txn, batch):
        await txn.commit()
        for key, data in batch:
            order[key].append(struct.unpack(">II", data[:8])[1])

    async with EventStreamWriter(pool, ctl, "sc", "st") as writer, \
            TransactionalEventStreamWriter(pool, ctl, "sc", "st") as txns, \
            TransactionalEventStreamWriter(pool, ctl, "sc", "st", lease_ms=200,
                                           ping_interval=3600) as unpinged:
        await plain(writer)
        first = await txns.begin()             # epoch 0
        dropped = await txns.begin()
        expiring = await unpinged.begin()
        first_events = await transactional(first)
        for _ in range(3):
            await dropped.write(b"dropped", routing_key="key-1")
            await expiring.write(b"expired", routing_key="key-2")
        await ctl.scale_stream("sc", "st", [0], [(0.0, 0.25), (0.25, 0.5)])  # epoch 1
        await plain(writer)
        second = await txns.begin()            # epoch 1
        await commit(first, first_events)      # rolls: epochs 2 and 3
        second_events = await transactional(second)
        await plain(writer)
        await dropped.abort()
        current = [s.segment_id for s in await ctl.get_current_segments("sc", "st")]
        await ctl.scale_stream("sc", "st", current, [(0.0, 1.0)])  # merge all: epoch 4
        await plain(writer)
        await commit(second, second_events)    # rolls: epochs 5 and 6
        await plain(writer)
        assert await asyncio.wait_for(
            cluster.controller.transaction_finished("sc", "st", expiring.txn_id), 10) \
            == "ABORTED"
        with pytest.raises(TxnFailedError):
            await expiring.commit()
    assert await ctl.list_completed_transactions("sc", "st") == {
        first.txn_id: "COMMITTED", second.txn_id: "COMMITTED", dropped.txn_id: "ABORTED",
        expiring.txn_id: "ABORTED"}
    assert [s.segment_id >> 32 for s in await ctl.get_current_segments("sc", "st")] == [6]
    await ctl.seal_stream("sc", "st")
    got = await per_key(pool, ctl, "sc", "st")
    assert got == order
    assert all(sorted(got[k]) == list(range(sent[k])) for k in range(KEYS))  # each once


@pytest.mark.asyncio
async def test_a_failed_rolling_commit_can_be_repeated(env, monkeypatch):
    """A store failing half-way leaves the transaction OPEN and the stream's metadata as it
    was; committing again completes it, every step being idempotent."""
    cluster, ctl, pool = env
    controller = cluster.controller
    await ctl.create_stream("sc", "st", 1)
    txn = await ctl.create_transaction("sc", "st", lease_ms=60_000)
    await ctl.scale_stream("sc", "st", [0], [(0.0, 1.0)])
    real_seal = cluster.seal_segment
    failed = asyncio.Event()

    async def failing_seal(name):
        if name == "sc/st/1.#epoch.1" and not failed.is_set():
            failed.set()
            raise OSError("store down")
        await real_seal(name)

    monkeypatch.setattr(controller.segment_admin, "seal_segment", failing_seal)
    with pytest.raises(ControllerError) as refused:
        await ctl.commit_transaction("sc", "st", txn.txn_id)
    assert refused.value.status == "FAILURE"
    assert await ctl.check_transaction_state("sc", "st", txn.txn_id) == "OPEN"
    assert [s.segment_id for s in await ctl.get_current_segments("sc", "st")] == [E1 | 1]
    await ctl.commit_transaction("sc", "st", txn.txn_id)
    assert [s.segment_id for s in await ctl.get_current_segments("sc", "st")] == [E3 | 1]
    assert await ctl.check_transaction_state("sc", "st", txn.txn_id) == "COMMITTED"
