"""The writer keeps consecutive single events as runs: random chaos over the run-based in-flight
bookkeeping (long runs, partial acks, compaction, reconnect resends, failure) against the fakes,
with the invariants checked at every step."""
import asyncio
import random
import pytest
from pravega_wire import commands as C
from pravega_wire.appends import Append
from pravega_wire.client._common import RetryPolicy
from pravega_wire.client.writer import EventWriterConfig, SegmentWriter, _COMPACT_AT, _Run
from pravega_wire.errors import SegmentSealedError
from client_fakes import FakeCluster, FakeLocator, FakePool, settle

SEG = "scope/stream/0"

def check(writer, written):
    un = writer._unacknowledged_events()
    assert un == written[writer.acked_events:], (len(un), writer.acked_events, len(written))
    assert writer.unacknowledged == len(un) == writer.last_event_number - writer.acked_events
    assert writer.inflight_bytes == sum(8 + len(p) for p in un)
    for e in writer._inflight:
        if type(e) is _Run:
            assert len(e) > 0 and e.start <= len(e.payloads)

async def chaos(seed, n=6000):
    rng = random.Random(seed)
    cluster = FakeCluster(stores=2); cluster.create(SEG)
    locator = FakeLocator(cluster)
    pool = FakePool(cluster, fast_path=rng.random() < 0.7)
    cfg = EventWriterConfig(retry=RetryPolicy(initial_delay=0, attempts=1000),
                            enable_connection_pooling=rng.random() < 0.5)
    writer = await SegmentWriter.open(pool, locator, SEG, config=cfg)
    payloads = [f"{seed}:{i}".encode() * rng.randint(1, 4) for i in range(n)]
    written, futures, i = [], [], 0
    compactions = 0
    while i < len(payloads):
        roll = rng.random()
        burst = rng.randint(1, 700) if roll < 0.9 else 1
        if roll < 0.9:
            for p in payloads[i:i + burst]:
                writer.write_nowait(p); written.append(p)
            i += burst
        elif roll < 0.95:
            futures.append(writer.write_acked(payloads[i])); written.append(payloads[i]); i += 1
        else:
            k = rng.randint(2, 4)
            writer.write_batch_nowait(payloads[i:i + k]); written.extend(payloads[i:i + k]); i += k
        check(writer, written)
        owner = cluster.stores[cluster.owner_of(SEG)]
        action = rng.random()
        if action < 0.05:
            flows = pool.open_flows()
            if flows:
                flow = flows[-1]
                if rng.random() < 0.5:
                    for store in cluster.stores.values():
                        store.held = [(f, c) for f, c in store.held if f is not flow]
                flow.drop()
        elif action < 0.15:
            owner.ack_mode = "manual" if owner.ack_mode == "each" else "each"
        elif action < 0.30:
            owner.send_acks()
        elif action < 0.34:
            owner.hold(Append, times=rng.randint(1, 50))
        elif action < 0.40:
            for store in cluster.stores.values():
                store.clear_rules(); store.release()
        elif action < 0.42:
            cluster.move(SEG, rng.randrange(2))
        before = [(e.start) for e in writer._inflight if type(e) is _Run]
        if rng.random() < 0.5:
            await settle(rng.randint(1, 5))
        check(writer, written)
    for store in cluster.stores.values():
        store.clear_rules(); store.release(); store.ack_mode = "each"; store.send_acks()
    await writer.flush()
    await asyncio.gather(*futures)
    check(writer, written)
    assert cluster.events(SEG) == payloads
    assert writer.acked_events == len(payloads) and writer.unacknowledged == 0
    assert writer.inflight_bytes == 0
    for store in cluster.stores.values():
        assert store.violations == []
    await writer.close()

@pytest.mark.asyncio
@pytest.mark.parametrize("compact_at", [None, 1, 4])
@pytest.mark.parametrize("seed", range(15))
async def test_chaos_long_runs(seed, compact_at, monkeypatch):
    import pravega_wire.client.writer as W
    if compact_at:
        monkeypatch.setattr(W, "_COMPACT_AT", compact_at)
    dels = [0]
    orig = W.SegmentWriter._ack_through
    await chaos(seed)

@pytest.mark.asyncio
async def test_compaction_and_failure_carries_exactly_the_unacknowledged():
    cluster = FakeCluster(stores=1); cluster.create(SEG)
    pool = FakePool(cluster)
    writer = await SegmentWriter.open(pool, cluster.endpoints[0], SEG,
                                      config=EventWriterConfig(retry=RetryPolicy(initial_delay=0)))
    store = cluster.store(); store.ack_mode = "manual"
    written = [b"p%d" % i for i in range(5000)]
    for p in written: writer.write_nowait(p)
    await settle()
    (run,) = writer._inflight
    # ack in steps; compaction must happen (start reset to 0 once >= _COMPACT_AT and half)
    seen_compaction = False
    for k in (10, 1500, 2600, 2601, 4000):
        writer._data_appended(C.DataAppended(writer.request_id, writer.writer_id, k, writer.acked_events, -1))
        check(writer, written)
        if run.start == 0 and writer.acked_events > 0: seen_compaction = True
    assert seen_compaction
    # more events join the same run after a partial ack
    for p in (b"x1", b"x2"): writer.write_nowait(p); written.append(p)
    assert writer._inflight[0] is run and len(writer._inflight) == 1
    check(writer, written)
    cluster.seal(SEG)
    writer.write_nowait(b"late"); written.append(b"late")
    await settle(5)
    assert isinstance(writer.failure, SegmentSealedError)
    assert writer.failure.unacknowledged == written[4000:]
    await writer.close()

@pytest.mark.asyncio
async def test_full_ack_of_open_run_then_new_run():
    cluster = FakeCluster(stores=1); cluster.create(SEG)
    pool = FakePool(cluster)
    writer = await SegmentWriter.open(pool, cluster.endpoints[0], SEG)
    for i in range(3):
        for j in range(2000): writer.write_nowait(b"%d-%d" % (i, j))
        await writer.flush()
        assert not writer._inflight and writer._run_payloads is None and writer.inflight_bytes == 0
    assert len(cluster.events(SEG)) == 6000
    await writer.close()
