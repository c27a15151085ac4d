"""No cost or memory that grows with what a writer has done: an acknowledgement touches what it
acknowledges (plus amortised compaction), whatever came before it; a writer's latency record and
its runs stay bounded by the in-flight window. Counted in operations and sizes, never timed."""

from __future__ import annotations

import asyncio
import random

import pytest

from pravega_wire import commands as C
from pravega_wire.client import writer as W
from pravega_wire.client._common import RetryPolicy
from pravega_wire.client.writer import EventWriterConfig, LatencyHistogram, SegmentWriter

from client_fakes import FakeCluster, FakePool, settle

SEG = "scope/stream/0"


class _CountingList(list):
    """A run's payload list that counts every element it hands out or moves."""

    touched = 0

    def __iter__(self):
        for item in list.__iter__(self):
            _CountingList.touched += 1
            yield item

    def __getitem__(self, index):
        result = list.__getitem__(self, index)
        _CountingList.touched += len(result) if isinstance(index, slice) else 1
        return result

    def __delitem__(self, index):
        if isinstance(index, slice):  # what stays is moved to the front
            _CountingList.touched += len(self) - len(range(*index.indices(len(self))))
        list.__delitem__(self, index)


@pytest.fixture
def counting_runs(monkeypatch):
    """Every run the writer opens keeps its payloads (and send times) in a _CountingList."""
    original = W._Run.__init__

    def init(self, first, payload, sent_at):
        original(self, first, payload, sent_at)
        self.payloads = _CountingList(self.payloads)
        if self.sent is not None:
            self.sent = _CountingList(self.sent)

    monkeypatch.setattr(W._Run, "__init__", init)
    _CountingList.touched = 0
    return _CountingList


async def _manual_writer(record: bool = False) -> tuple[SegmentWriter, object]:
    cluster = FakeCluster(stores=1)
    cluster.create(SEG)
    pool = FakePool(cluster)
    config = EventWriterConfig(retry=RetryPolicy(initial_delay=0), record_latency=record)
    writer = await SegmentWriter.open(pool, cluster.endpoints[0], SEG, config=config)
    store = cluster.store()
    store.ack_mode = "manual"
    return writer, store


def _ack(writer: SegmentWriter, number: int) -> None:
    writer._data_appended(C.DataAppended(writer.request_id, writer.writer_id, number,
                                         writer.acked_events, -1))


@pytest.mark.asyncio
@pytest.mark.parametrize("record", [False, True])
async def test_acknowledging_a_long_burst_piece_by_piece_is_linear(counting_runs, record):
    # A fresh writer, one burst of N events, then N/step acknowledgements. Summing the acked
    # payloads from the run's start on every acknowledgement (the old quadratic step) touches
    # about N * N / (2 * step) elements; linear bookkeeping touches a small multiple of N.
    n, step = 20_000, 7
    writer, _store = await _manual_writer(record)
    for i in range(n):
        writer.write_nowait(b"event %d" % i)
    await settle()
    before = counting_runs.touched
    for number in range(step, n + step, step):
        _ack(writer, min(number, n))
    assert writer.acked_events == n and writer.unacknowledged == 0
    assert writer.inflight_bytes == 0
    touched = counting_runs.touched - before
    assert touched <= 4 * n, f"{touched} element operations to acknowledge {n} events"
    if record:
        assert writer.latency.count == n
    await writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("record", [False, True])
async def test_a_steady_writer_holds_its_window_not_its_history(record):
    # Write in rounds, acknowledging all but the last `window` events each time: the run's
    # lists (payloads, send times) stay within twice the window plus the compaction threshold,
    # and the latency record does not grow, however many rounds go by.
    writer, _store = await _manual_writer(record)
    window, per_round = 300, 1_000
    sizes = len(writer.latency.counts)
    for _ in range(60):
        for i in range(per_round):
            writer.write_nowait(b"x" * 20)
        _ack(writer, writer.last_event_number - window)
        (run,) = writer._inflight
        assert writer.unacknowledged == window
        assert len(run.payloads) <= 2 * window + W._COMPACT_AT + per_round
        if record:
            assert len(run.sent) == len(run.payloads)
    assert writer.acked_events == 60 * per_round - window
    assert len(writer.latency.counts) == sizes
    if record:
        assert writer.latency.count == writer.acked_events
    await writer.close(flush=False)


def test_latency_histogram_counts_runs_as_it_counts_events():
    # add_sent (a binary search per bucket spanned) must give the same buckets as adding each
    # event's latency on its own.
    rnd = random.Random(12)
    for _ in range(200):
        now = 100.0
        sent = sorted(now - rnd.choice([1e-7, 1e-6, 3e-5, 1e-3, 0.2, 5.0, 2e3]) * rnd.random()
                      for _ in range(rnd.randrange(1, 300)))
        start = rnd.randrange(len(sent))
        stop = rnd.randrange(start, len(sent) + 1)
        bulk, single = LatencyHistogram(), LatencyHistogram()
        bulk.add_sent(now, sent, start, stop)
        for t in sent[start:stop]:
            single.add(now - t)
        assert bulk.counts == single.counts and bulk.count == single.count == stop - start


def test_latency_histogram_percentiles_are_within_a_bucket():
    histogram = LatencyHistogram()
    values = [i * 1e-5 for i in range(1, 10_001)]  # 10 µs .. 100 ms, uniform
    for v in values:
        histogram.add(v)
    assert histogram.count == len(values)
    for q in (0.01, 0.5, 0.9, 0.99):
        exact = values[int(q * len(values))]
        assert exact <= histogram.percentile(q) <= exact * 2 ** (1 / 8) * 1.0001
    other = LatencyHistogram()
    other.add(5.0, 3)
    histogram.merge(other)
    assert histogram.count == len(values) + 3 and histogram.percentile(1.0) >= 5.0
    assert LatencyHistogram().percentile(0.5) == 0.0
    assert len(histogram.values(limit=100)) == 100


@pytest.mark.asyncio
async def test_a_writer_waiting_for_room_closes_its_block_first():
    # Waiting for acknowledgements while the events waited for sit in an open append block
    # would wait for the batch timer: write() closes the block (a KeepAlive) before it waits.
    cluster = FakeCluster(stores=1)
    cluster.create(SEG)
    pool = FakePool(cluster)
    writer = await SegmentWriter.open(pool, cluster.endpoints[0], SEG,
                                      config=EventWriterConfig(max_inflight_bytes=300))
    store = cluster.store()
    store.ack_mode = "manual"
    for i in range(3):
        await writer.write(b"x" * 100)  # 324 bytes in flight after the third
    keepalives = sum(type(cmd) is C.KeepAlive for _flow, cmd in store.log)
    waiting = asyncio.ensure_future(writer.write(b"y"))
    await settle()
    assert not waiting.done()
    assert sum(type(cmd) is C.KeepAlive for _flow, cmd in store.log) == keepalives + 1
    store.ack_mode = "each"
    store.send_acks()
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(writer.flush(), 5)
    assert cluster.events(SEG) == [b"x" * 100] * 3 + [b"y"]
    await writer.close()


@pytest.mark.asyncio
async def test_fresh_writers_leave_no_state_in_the_pool():
    # A writer per burst, hundreds of them through one pooled connection: once each is closed
    # its flow, its append session and its batch-size tracker are gone (the tracker map held
    # one tracker per flow ever opened, up to 10,000, until idle expiry).
    from pravega_wire.pool import ConnectionPool
    from pravega_wire.server import EmbeddedCluster

    async with EmbeddedCluster(stores=1, controller=False) as cluster:
        endpoint = cluster.store_endpoints[0]
        await cluster.create_segment(SEG)
        async with ConnectionPool() as pool:
            for i in range(200):
                async with SegmentWriter(pool, endpoint, SEG) as writer:
                    for _ in range(5):
                        writer.write_nowait(b"event")
                assert writer.acked_events == 5
            connections = [entry.conn for entries in pool._endpoints.values()
                           for entry in entries]
            assert connections
            for connection in connections:
                encoder = connection._encoder
                assert connection._flows == {}
                assert encoder.session_count == 0
                assert len(encoder.trackers) == 0
