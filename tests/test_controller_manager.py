"""StreamManager (pravega_wire.client.manager) against the embedded cluster: scopes and streams
with policies and tags, update, seal, delete, list, scale, truncation at a StreamCut, head and
tail stream cuts and stream info; with auth, its segment-store requests carry cached
delegation tokens."""

from __future__ import annotations

import pytest


from pravega_wire.client import stream_readers  # noqa: E402
from pravega_wire.client.controller import (  # noqa: E402
    ControllerClient, ControllerError, RetentionPolicy, ScalingPolicy, StreamConfiguration,
    StreamNotFoundError,
)
from pravega_wire.client.manager import StreamCut, StreamManager  # noqa: E402
from pravega_wire.pool import ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402
from test_controller_streams import E1, read_events, stored, write_events  # noqa: E402

E2 = 2 << 32
EVENT = 8 + 2  # an event of two bytes, with its 8-byte header


@pytest.mark.asyncio
async def test_stream_manager_administers_scopes_and_streams():
    async with EmbeddedCluster(2) as cluster, StreamManager(cluster.controller_uri) as manager, \
            ControllerClient(cluster.controller_uri) as ctl, ConnectionPool() as pool:
        assert await manager.create_scope("sc")
        assert await manager.scope_exists("sc")
        config = StreamConfiguration(ScalingPolicy.fixed(2), RetentionPolicy.by_size(1 << 20),
                                     ("t1",))
        assert await manager.create_stream("sc", "st", config)
        assert not await manager.create_stream("sc", "st", config)
        assert await manager.create_stream("sc", "plain")
        assert await manager.get_stream_configuration("sc", "plain") == StreamConfiguration()
        assert await manager.get_stream_tags("sc", "st") == ("t1",)
        assert await manager.list_streams("sc") == ["plain", "st"]
        assert await manager.list_streams("sc", tag="t1") == ["st"]
        await manager.update_stream("sc", "plain", StreamConfiguration(tags=("t1", "t2")))
        assert await manager.list_streams("sc", tag="t1") == ["plain", "st"]

        await write_events(pool, ctl, "sc/st/0.#epoch.0", [b"a0", b"a1"])
        await write_events(pool, ctl, "sc/st/1.#epoch.0", [b"b0"])
        info = await manager.stream_info("sc", "st")
        assert info.config == config and not info.sealed
        assert info.head == StreamCut("sc", "st", {0: 0, 1: 0})
        assert info.tail == StreamCut("sc", "st", {0: 2 * EVENT, 1: EVENT})

        new = await manager.scale_stream("sc", "st", [0, 1], [(0.0, 1.0)])
        assert [s.segment_id for s in new] == [E1 | 2]
        await write_events(pool, ctl, new[0].name, [b"c0"])
        await manager.truncate_stream(info.tail)  # everything written before the scale
        assert await manager.head_stream_cut("sc", "st") == info.tail
        assert stored(cluster, "sc/st/0.#epoch.0") is not None  # in the cut: truncated, kept
        assert (await manager.tail_stream_cut("sc", "st")).positions == {E1 | 2: EVENT}

        await manager.seal_stream("sc", "st")
        sealed = await manager.stream_info("sc", "st")
        assert sealed.sealed and sealed.tail.positions == {E1 | 2: EVENT}
        with pytest.raises(ControllerError) as not_empty:
            await manager.delete_scope("sc")
        assert not_empty.value.status == "SCOPE_NOT_EMPTY"
        assert await manager.delete_stream("sc", "st")
        assert not await manager.stream_exists("sc", "st")
        assert not await manager.delete_stream("sc", "st")
        assert await manager.delete_scope("sc", recursive=True)
        assert not await manager.scope_exists("sc")
        assert not await manager.delete_scope("sc", recursive=True)
        assert await manager.list_scopes() == []
        assert stored(cluster, "sc/plain/0.#epoch.0") is None


@pytest.mark.asyncio
async def test_readers_from_the_head_start_at_the_truncation_cut():
    """Truncating at a stream cut taken between writes: the old data is gone from the stores
    and readers from the head (stream_readers) read exactly what was written after the cut."""
    async with EmbeddedCluster(2) as cluster, StreamManager(cluster.controller_uri) as manager, \
            ConnectionPool() as pool:
        ctl = manager.controller
        await manager.create_scope("sc")
        await manager.create_stream("sc", "st", StreamConfiguration(ScalingPolicy.fixed(2)))
        for segment in ("sc/st/0.#epoch.0", "sc/st/1.#epoch.0"):
            await write_events(pool, ctl, segment, [b"o1", b"o2"])
        cut = await manager.tail_stream_cut("sc", "st")
        assert cut.positions == {0: 2 * EVENT, 1: 2 * EVENT}
        await write_events(pool, ctl, "sc/st/1.#epoch.0", [b"n1"])
        await manager.scale_stream("sc", "st", [0], [(0.0, 0.25), (0.25, 0.5)])
        await write_events(pool, ctl, "sc/st/3.#epoch.1", [b"n2"])
        await manager.truncate_stream(cut)

        assert stored(cluster, "sc/st/0.#epoch.0").start_offset == 2 * EVENT
        readers = await stream_readers(pool, ctl, "sc", "st")
        assert [(r.segment, r.offset) for r in readers] == \
            [("sc/st/0.#epoch.0", 2 * EVENT), ("sc/st/1.#epoch.0", 2 * EVENT)]
        for reader in readers:
            await reader.close()
        assert await read_events(pool, ctl, "sc/st/1.#epoch.0", 1, offset=2 * EVENT) == [b"n1"]
        assert await read_events(pool, ctl, "sc/st/3.#epoch.1", 1) == [b"n2"]

        # A cut must be a stream cut of the stream: one that misses part of the key space is
        # refused and truncates nothing.
        with pytest.raises(ControllerError) as refused:
            await manager.truncate_stream(StreamCut("sc", "st", {E1 | 3: 0}))
        assert refused.value.status == "INVALID_ARGUMENT"
        assert await manager.head_stream_cut("sc", "st") == cut
        with pytest.raises(StreamNotFoundError):
            await manager.truncate_stream(StreamCut("sc", "nope", {0: 0}))


@pytest.mark.asyncio
async def test_the_tail_of_a_sealed_stream_follows_the_successors_to_its_last_segments():
    """A sealed stream has no current segments: its tail is found by following successors
    from its head, through a split of one segment and a merge of others, to the segments
    that nothing follows."""
    async with EmbeddedCluster(2) as cluster, StreamManager(cluster.controller_uri) as manager, \
            ConnectionPool() as pool:
        ctl = manager.controller
        await manager.create_scope("sc")
        await manager.create_stream("sc", "st", StreamConfiguration(ScalingPolicy.fixed(3)))
        await manager.scale_stream("sc", "st", [0], [(0.0, 1 / 6), (1 / 6, 1 / 3)])  # 3, 4
        await manager.scale_stream("sc", "st", [E1 | 4, 1], [(1 / 6, 2 / 3)])        # 5
        await write_events(pool, ctl, "sc/st/2.#epoch.0", [b"x0", b"x1", b"x2"])
        await write_events(pool, ctl, "sc/st/5.#epoch.2", [b"y0"])
        await manager.seal_stream("sc", "st")
        assert await ctl.get_current_segments("sc", "st") == []
        info = await manager.stream_info("sc", "st")
        assert info.sealed
        assert info.head.positions == {0: 0, 1: 0, 2: 0}
        assert info.tail.positions == {E1 | 3: 0, E2 | 5: EVENT, 2: 3 * EVENT}


@pytest.mark.asyncio
async def test_a_manager_shares_a_given_controller_client_and_pool():
    async with EmbeddedCluster(1) as cluster, \
            ControllerClient(cluster.controller_uri) as ctl, ConnectionPool() as pool:
        with pytest.raises(TypeError):
            StreamManager(ctl, timeout=3)
        async with StreamManager(ctl, pool=pool) as manager:
            await manager.create_scope("sc")
            await manager.create_stream("sc", "st")
            assert (await manager.tail_stream_cut("sc", "st")).positions == {0: 0}
        # Closing the manager closed neither: both still work.
        assert await ctl.list_streams("sc") == ["st"]
        await write_events(pool, ctl, "sc/st/0.#epoch.0", [b"ok"])
        assert await read_events(pool, ctl, "sc/st/0.#epoch.0", 1) == [b"ok"]


@pytest.mark.asyncio
async def test_with_auth_the_manager_caches_one_delegation_token_per_stream():
    async with EmbeddedCluster(2, auth=True) as cluster:
        fetched: list[tuple[str, str]] = []

        class CountingController(ControllerClient):
            async def get_delegation_token(self, scope: str, stream: str) -> str:
                fetched.append((scope, stream))
                return await super().get_delegation_token(scope, stream)

        async with CountingController(cluster.controller_uri, auth=("admin", "pw")) as ctl, \
                StreamManager(ctl) as manager:
            await manager.create_scope("sc")
            for stream in ("a", "b"):
                await manager.create_stream("sc", stream,
                                            StreamConfiguration(ScalingPolicy.fixed(4)))
            for _ in range(3):
                for stream in ("a", "b"):
                    info = await manager.stream_info("sc", stream)
                    assert info.tail.positions == {i: 0 for i in range(4)}
        assert sorted(fetched) == [("sc", "a"), ("sc", "b")]  # not one per segment request
