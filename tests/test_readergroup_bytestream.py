"""Byte streams (client/bytestream.py): raw bytes written to a one-segment stream and read back
as a file: seek, available, truncate, the tail offset, the end of a sealed stream."""

from __future__ import annotations

import asyncio

import pytest


from pravega_wire.client import RetryPolicy  # noqa: E402
from pravega_wire.client.bytestream import ByteStreamReader, ByteStreamWriter  # noqa: E402
from pravega_wire.client.controller import ControllerClient  # noqa: E402
from pravega_wire.pool import ClientConfig, ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402
from pravega_wire.errors import RetriesExhaustedError, SegmentTruncatedError  # noqa: E402
from test_readergroup import env  # noqa: E402,F401

pytestmark = pytest.mark.asyncio


async def read_exactly(reader: ByteStreamReader, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = await reader.read(n - len(out), timeout=10)
        assert chunk, "end of stream before the bytes expected"
        out += chunk
    return out


async def test_bytes_written_are_read_back_as_written(env):
    ctl, pool, _ = env
    await ctl.create_stream("sc", "file", 1)
    blob = bytes(range(256)) * 4000  # ~1 MB, written in uneven pieces
    async with ByteStreamWriter(pool, ctl, "sc", "file", max_outstanding=64 * 1024) as out:
        position = 0
        for size in (1, 7, 65536, 3, 300_000, 1000):
            await out.write(blob[position:position + size])
            position += size
        await out.write(blob[position:])
        await out.flush()
        assert out.acked_offset == len(blob) == await out.fetch_tail_offset()
    async with ByteStreamReader(pool, ctl, "sc", "file") as src:
        assert await read_exactly(src, len(blob)) == blob  # no headers: the bytes themselves
        assert src.tell() == len(blob)
        src.seek(1000)
        assert await read_exactly(src, 10) == blob[1000:1010]
        assert src.available() >= 0
        src.seek(0)
        assert await read_exactly(src, 4) == blob[:4]


async def test_truncation_and_the_end_of_a_sealed_stream(env):
    ctl, pool, _ = env
    await ctl.create_stream("sc", "file", 1)
    async with ByteStreamWriter(pool, ctl, "sc", "file") as out:
        await out.write(b"0123456789")
        await out.flush()
        await out.truncate_data_before(4)
    with pytest.raises(SegmentTruncatedError):
        async with ByteStreamReader(pool, ctl, "sc", "file") as src:
            await src.read(10, timeout=10)
    await ctl.seal_stream("sc", "file")
    async with ByteStreamReader(pool, ctl, "sc", "file", offset=4) as src:
        assert await read_exactly(src, 6) == b"456789"
        assert await src.read(10, timeout=10) == b""


async def test_a_byte_stream_has_one_segment(env):
    ctl, pool, _ = env
    await ctl.create_stream("sc", "wide", 2)
    with pytest.raises(ValueError):
        async with ByteStreamWriter(pool, ctl, "sc", "wide"):
            pass



async def test_the_writer_reconnects_after_drops_and_loses_or_repeats_nothing():
    """Connections dropped before and after appends are applied: the writer reconnects, sends
    again what the store did not keep, and the segment holds every byte once, in order."""
    async with EmbeddedCluster(1) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        await ctl.create_stream("sc", "drops", 1)
        plan = cluster.faults(0)
        plan.drop_before_append(nth=20, every=70, times=None)
        plan.drop_after_append(nth=45, every=70, times=None)
        pieces = [bytes([i % 251]) * (1 + i % 300) for i in range(400)]
        blob = b"".join(pieces)
        fast = RetryPolicy(initial_delay=0.005, multiplier=2, max_delay=0.2, attempts=30)
        async with ByteStreamWriter(pool, ctl, "sc", "drops", retry=fast) as out:
            for i, piece in enumerate(pieces):
                await out.write(piece)
                if i % 37 == 0:
                    await out.flush()  # acknowledgements (and drops) interleave with writes
            await out.flush()
            assert out.connections > 1
        plan.clear()
        async with ByteStreamWriter(pool, ctl, "sc", "drops") as out:
            assert await out.fetch_tail_offset() == len(blob)  # nothing stored twice
        async with ByteStreamReader(pool, ctl, "sc", "drops") as src:
            assert await read_exactly(src, len(blob)) == blob


async def test_a_writer_that_cannot_make_progress_fails_every_write_once():
    """Every connection is dropped before its first append: the reconnects make no progress, so
    the retries run out and each unacknowledged write fails with RetriesExhaustedError."""
    async with EmbeddedCluster(1) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        await ctl.create_stream("sc", "dead", 1)
        cluster.faults(0).drop_before_append(nth=1, every=1, times=None)
        quick = RetryPolicy(initial_delay=0.001, multiplier=2, max_delay=0.01, attempts=4)
        out = ByteStreamWriter(pool, ctl, "sc", "dead", retry=quick)
        await out.write(b"lost")
        await out.write(b"too")
        futures = [future for _, _, future in out._pending]
        with pytest.raises(RetriesExhaustedError):
            await asyncio.wait_for(out.flush(), 30)
        assert all(isinstance(f.exception(), RetriesExhaustedError) for f in futures)
        assert out.connections >= 1
        with pytest.raises(RetriesExhaustedError):
            await out.write(b"after")
        await out.close()


async def test_wrong_host_and_an_expired_token_make_the_writer_reconnect():
    async with EmbeddedCluster(1) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        await ctl.create_stream("sc", "moves", 1)
        segment = (await ctl.get_current_segments("sc", "moves"))[0].name
        plan = cluster.faults(0)
        rules = [
            plan.fail_segment(segment, "wrong_host", commands={"SetupAppend"}, nth=2, times=1),
            plan.fail_segment(segment, "token_expired", commands={"SetupAppend"}, nth=4,
                              times=1),
            plan.drop_after_append(nth=5, every=10, times=3)]
        fast = RetryPolicy(initial_delay=0.005, multiplier=2, max_delay=0.2, attempts=30)
        out = ByteStreamWriter(pool, ctl, "sc", "moves", retry=fast)
        asked: list[bool] = []
        fetch = out._tokens

        async def tokens(name, expired):
            asked.append(expired)
            return await fetch(name, expired)
        out._tokens = tokens
        pieces = [b"%03d|" % i for i in range(60)]
        async with out:
            for i, piece in enumerate(pieces):
                await out.write(piece)
                if i % 3 == 0:
                    await out.flush()  # appends one by one, so the faults meet them
            await out.flush()
        assert out.connections >= 3
        assert [rule.fired for rule in rules] == [1, 1, 3]
        assert True in asked  # the expired token was replaced
        async with ByteStreamReader(pool, ctl, "sc", "moves") as src:
            assert await read_exactly(src, len(b"".join(pieces))) == b"".join(pieces)
