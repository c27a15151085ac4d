"""The blocking facade :mod:`pravega_wire.sync`, used from plain threads (no event loop in the
test): the asynchronous clients' names and typed errors, many threads sharing one writer, the
loop thread refusing a blocking call that would deadlock, and shutdown."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest


from pravega_wire import client as async_client  # noqa: E402
from pravega_wire import pool as async_pool  # noqa: E402
from pravega_wire import sync  # noqa: E402
from pravega_wire.client.controller import ControllerClient as AsyncControllerClient  # noqa: E402
from pravega_wire.errors import (ConnectionClosedError, ConnectionFailedError,  # noqa: E402
                                 NoSuchSegmentError, TimeoutError)
from pravega_wire.server.cluster import ChildCluster  # noqa: E402

THREADS = 4
PER_THREAD = 250


@pytest.fixture(scope="module")
def cluster():
    cluster = ChildCluster(2).start()
    try:
        yield cluster
    finally:
        cluster.stop()
        sync.shutdown()


@pytest.fixture
def pool():
    with sync.ConnectionPool(async_pool.ClientConfig(max_connections_per_segment_store=2)) as p:
        yield p


@pytest.fixture
def controller(cluster):
    with sync.ControllerClient(cluster.controller_uri) as c:
        yield c


def _stream(controller, segments=4):
    name = f"s{uuid.uuid4().hex[:12]}"
    controller.create_scope("sync")
    controller.create_stream("sync", name, segments)
    return name


def test_same_names_as_the_async_clients():
    pairs = [(sync.ConnectionPool, async_pool.ConnectionPool),
             (sync.ControllerClient, AsyncControllerClient),
             (sync.SegmentWriter, async_client.SegmentWriter),
             (sync.SegmentReader, async_client.SegmentReader),
             (sync.StreamWriter, async_client.StreamWriter),
             (sync.RawClient, async_client.RawClient),
             (sync.MetadataClient, async_client.MetadataClient),
             (sync.ConditionalWriter, async_client.ConditionalWriter)]
    for blocking, asynchronous in pairs:
        assert blocking.__name__ == asynchronous.__name__
        assert blocking._async is asynchronous
    assert sync.stream_readers.__name__ == async_client.stream_readers.__name__


def test_threads_share_a_stream_writer_and_read_everything_back(pool, controller):
    """Four plain threads write through one blocking StreamWriter; each thread's events keep
    their order per routing key; the blocking readers give every event back exactly once."""
    stream = _stream(controller)
    errors = []
    with sync.StreamWriter.open(pool, controller, "sync", stream) as writer:
        def produce(t: int) -> None:
            try:
                for i in range(PER_THREAD):
                    writer.write(b"%d:%d" % (t, i), f"key-{t}")
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive()
        assert errors == []
        writer.flush(timeout=30)
        segment_writers = writer.writers
        assert segment_writers and all(isinstance(w, sync.SegmentWriter) for w in
                                       segment_writers)
        assert sum(w.acked_events for w in segment_writers) == THREADS * PER_THREAD
        assert all(w.unacknowledged == 0 for w in segment_writers)

    seen: dict = {}
    readers = sync.stream_readers(pool, controller, "sync", stream)
    assert len(readers) == 4 and all(isinstance(r, sync.SegmentReader) for r in readers)
    for reader in readers:
        with reader:
            while True:
                try:
                    event = bytes(reader.read_event(timeout=0.3))
                except TimeoutError:
                    break
                t, i = (int(x) for x in event.split(b":"))
                seen.setdefault(t, []).append(i)
    assert {t: sorted(v) for t, v in seen.items()} == {
        t: list(range(PER_THREAD)) for t in range(THREADS)}
    assert all(v == sorted(v) for v in seen.values())  # in order per routing key


def test_segment_writer_and_reader_by_name(cluster, pool, controller):
    stream = _stream(controller, segments=1)
    (segment,) = controller.get_current_segments("sync", stream)
    writer = sync.SegmentWriter.open(pool, controller, segment.name)
    try:
        acked = writer.write_acked(b"acknowledged")  # blocks until acknowledged
        assert acked is None and writer.acked_events == 1
        for i in range(10):
            writer.write_nowait(b"event %d" % i)
        writer.flush(timeout=30)
        assert writer.acked_events == 11 and writer.segment_length > 0
    finally:
        writer.close()
    with sync.SegmentReader(pool, controller, segment.name) as reader:
        assert bytes(reader.read_event(timeout=5)) == b"acknowledged"
        assert [bytes(reader.read_event(timeout=5)) for _ in range(10)] == [
            b"event %d" % i for i in range(10)]
        with pytest.raises(TimeoutError):
            reader.read_event(timeout=0.2)
    with sync.MetadataClient(pool, controller) as metadata:
        info = metadata.get_info(segment.name)
        assert info.exists and info.length == writer.segment_length
        metadata.seal(segment.name)
        assert metadata.get_info(segment.name).sealed


def test_typed_errors_reach_the_calling_thread(cluster, pool, controller):
    missing = f"sync/nothing-{uuid.uuid4().hex[:8]}/0.#epoch.0"
    with pytest.raises(NoSuchSegmentError):
        sync.SegmentWriter.open(pool, controller, missing)
    with sync.ControllerClient("tcp://127.0.0.1:1", timeout=5) as unreachable:
        with pytest.raises(ConnectionFailedError):
            unreachable.create_scope("sync")
    with pytest.raises(ValueError):  # the async constructor's own check
        sync.ControllerClient("http://127.0.0.1:9090")


def test_a_blocking_call_from_the_loop_thread_is_refused(pool):
    result = {}
    runner = pool._runner

    def on_loop() -> None:
        try:
            pool.stats()
        except RuntimeError as exc:
            result["error"] = exc

    runner.call(on_loop)
    assert "deadlock" in str(result["error"])


def test_shutdown_fails_open_objects_and_a_new_object_starts_a_new_loop():
    pool = sync.ConnectionPool()
    first = pool._runner
    sync.shutdown()
    assert first.closed
    with pytest.raises(ConnectionClosedError):
        pool.stats()
    pool.close()  # a no-op once the loop is gone
    with sync.ConnectionPool() as again:
        assert again._runner is not first and not again._runner.closed
        assert again.stats().open_connections == 0


def _in_thread(fn):
    """Run ``fn`` in a plain thread; its outcomes (result or exception) and the thread."""
    outcome: list = []

    def target() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return outcome, thread


def test_closing_the_loop_under_a_blocked_call_raises_in_its_thread():
    runner = sync.EventLoopThread()
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    outcome, thread = _in_thread(lambda: runner.call(forever))
    assert started.wait(10)
    runner.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosedError)
    assert "during the call" in str(outcome[0])
    with pytest.raises(ConnectionClosedError, match="is shut down"):
        runner.call(forever)


def test_shutdown_fails_a_blocked_read(pool, controller):
    stream = _stream(controller, segments=1)
    (segment,) = controller.get_current_segments("sync", stream)
    reader = sync.SegmentReader(pool, controller, segment.name)
    outcome, thread = _in_thread(reader.read_event)  # nothing is written: waits for ever
    sync.shutdown()  # under the read, or before it reached the loop: the same typed error
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosedError)
