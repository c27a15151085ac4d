"""StreamManager: scopes and streams as Pravega's Java ``StreamManager`` administers them, over
the controller (gRPC) and, for stream cuts at the tail, the segment stores.

::

    async with StreamManager("tcp://127.0.0.1:9090") as manager:
        await manager.create_scope("sc")
        await manager.create_stream("sc", "st", StreamConfiguration(
            ScalingPolicy.by_event_rate(100, 2, 3), RetentionPolicy.by_time(86_400_000),
            tags=("orders",)))
        info = await manager.stream_info("sc", "st")     # configuration, head and tail cuts
        await manager.truncate_stream(info.tail)         # drop everything written so far

Needs the ``grpc`` extra (grpcio and protobuf). Failures are the controller client's typed
errors (:class:`~pravega_wire.client.controller.ControllerError` and its subclasses) and the
segment clients' (:mod:`pravega_wire.errors`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..pool import ClientConfig, ConnectionPool
from .controller import (
    ControllerClient, ControllerError, RetentionPolicy, ScalingPolicy, SegmentWithRange,
    StreamConfiguration, StreamCut, segment_name,
)
from .raw import MetadataClient
from .stream import segment_token_provider

__all__ = ["StreamManager", "StreamInfo", "StreamConfiguration", "ScalingPolicy",
           "RetentionPolicy", "StreamCut"]


def controller_client(controller: str | ControllerClient,
                      options: dict[str, Any]) -> tuple[ControllerClient, bool]:
    """The ControllerClient for ``controller`` (a URI, opened with ``options``, or a client)
    and whether the caller opened it (and so closes it)."""
    if isinstance(controller, ControllerClient):
        if options:
            raise TypeError("controller options go with a URI, not a ControllerClient")
        return controller, False
    return ControllerClient(controller, **options), True


@dataclasses.dataclass(frozen=True)
class StreamInfo:
    """What :meth:`StreamManager.stream_info` reports: the configuration, where the stream
    starts (``head``: its first readable position) and ends (``tail``: the current end of its
    last segments), and whether it is sealed."""

    scope: str
    stream: str
    config: StreamConfiguration
    head: StreamCut
    tail: StreamCut
    sealed: bool


class StreamManager:
    """An asyncio administration client for the Pravega cluster whose controller is at
    ``controller`` (a URI, with the :class:`ControllerClient` keyword ``options``, or a
    ControllerClient that stays the caller's to close). ``pool`` carries the segment-store
    requests (stream cuts at the tail); by default the manager opens its own.

    Use ``async with StreamManager(...) as manager:`` or call :meth:`close`.
    """

    def __init__(self, controller: str | ControllerClient, *,
                 pool: ConnectionPool | None = None, **options: Any):
        self.controller, self._owns_controller = controller_client(controller, options)
        self._pool, self._owns_pool = pool, pool is None
        self._metadata: MetadataClient | None = None

    async def __aenter__(self) -> StreamManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release what the manager opened (its pool and controller channel)."""
        metadata, self._metadata = self._metadata, None
        if metadata is not None:
            await metadata.close()
        if self._owns_pool and self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._owns_controller:
            await self.controller.close()

    def _segment_metadata(self) -> MetadataClient:
        if self._metadata is None:
            if self._pool is None:
                self._pool = ConnectionPool(ClientConfig())
            self._metadata = MetadataClient(self._pool, self.controller,
                                            token_provider=segment_token_provider(
                                                self.controller))
        return self._metadata

    # ---- scopes ------------------------------------------------------------------------------

    async def create_scope(self, scope: str) -> bool:
        """True if created, False if it existed."""
        return await self.controller.create_scope(scope)

    async def delete_scope(self, scope: str, *, recursive: bool = False) -> bool:
        """Delete a scope: an empty one (a scope with streams raises ControllerError with
        status ``SCOPE_NOT_EMPTY``), or with ``recursive`` one with all its streams, which are
        sealed and deleted first. True if the scope existed."""
        if not recursive:
            return await self.controller.delete_scope(scope)
        existed = await self.controller.scope_exists(scope)
        await self.controller.delete_scope_recursive(scope)
        return existed

    async def list_scopes(self) -> list[str]:
        return await self.controller.list_scopes()

    async def scope_exists(self, scope: str) -> bool:
        return await self.controller.scope_exists(scope)

    # ---- streams -----------------------------------------------------------------------------

    async def create_stream(self, scope: str, stream: str,
                            config: StreamConfiguration | None = None) -> bool:
        """Create a stream (one fixed segment, no retention limit, without ``config``): True if
        created, False if it existed."""
        return await self.controller.create_stream(
            scope, stream, config=config or StreamConfiguration())

    async def update_stream(self, scope: str, stream: str, config: StreamConfiguration) -> None:
        """Replace the stream's configuration: policies and tags."""
        await self.controller.update_stream(scope, stream, config)

    async def get_stream_configuration(self, scope: str, stream: str) -> StreamConfiguration:
        return await self.controller.get_stream_configuration(scope, stream)

    async def get_stream_tags(self, scope: str, stream: str) -> tuple[str, ...]:
        return (await self.controller.get_stream_configuration(scope, stream)).tags

    async def seal_stream(self, scope: str, stream: str) -> None:
        """No more writes; readers reach the end of its last segments."""
        await self.controller.seal_stream(scope, stream)

    async def delete_stream(self, scope: str, stream: str) -> bool:
        """Delete a sealed stream: True if it existed."""
        return await self.controller.delete_stream(scope, stream)

    async def list_streams(self, scope: str, *, tag: str | None = None) -> list[str]:
        """The scope's streams (those tagged ``tag`` when given)."""
        return await self.controller.list_streams(scope, tag=tag)

    async def stream_exists(self, scope: str, stream: str) -> bool:
        return await self.controller.stream_exists(scope, stream)

    async def scale_stream(self, scope: str, stream: str, sealed: Sequence[int],
                           new_ranges: Sequence[tuple[float, float]]) -> list[SegmentWithRange]:
        """Replace active segments ``sealed`` (ids) by new segments over ``new_ranges`` (which
        must tile their key range exactly); returns the new segments once the scale is done."""
        return await self.controller.scale_stream(scope, stream, sealed, new_ranges)

    async def truncate_stream(self, cut: StreamCut) -> None:
        """Delete the stream's data before ``cut``; readers from the head start there."""
        await self.controller.truncate_stream(cut.scope, cut.stream, cut.positions)

    # ---- stream cuts -------------------------------------------------------------------------

    async def head_stream_cut(self, scope: str, stream: str) -> StreamCut:
        """The first readable position of the stream (its truncation point)."""
        head = await self.controller.get_segments_at_head(scope, stream)
        return StreamCut(scope, stream, {h.segment_id: h.offset for h in head})

    async def _last_segments(self, scope: str, stream: str) -> tuple[list[int], bool]:
        """The segments that end the stream, and whether it is sealed."""
        current = await self.controller.get_current_segments(scope, stream)
        if current:
            return [s.segment_id for s in current], False
        # Sealed: follow the successors from the head to the segments nothing follows.
        pending = [h.segment_id for h in await self.controller.get_segments_at_head(scope, stream)]
        last, seen = set(), set()
        while pending:
            segment_id = pending.pop()
            if segment_id in seen:
                continue
            seen.add(segment_id)
            successors = await self.controller.get_successors(scope, stream, segment_id)
            if successors:
                pending.extend(s.segment.segment_id for s in successors)
            else:
                last.add(segment_id)
        return sorted(last), True

    async def tail_stream_cut(self, scope: str, stream: str) -> StreamCut:
        """The current end of the stream: the length of each of its last segments."""
        return (await self._tail(scope, stream))[0]

    async def _tail(self, scope: str, stream: str) -> tuple[StreamCut, bool]:
        segments, sealed = await self._last_segments(scope, stream)
        metadata = self._segment_metadata()
        positions = {}
        for segment_id in segments:
            info = await metadata.get_info(segment_name(scope, stream, segment_id))
            if not info.exists:
                raise ControllerError(f"segment {info.segment} of {scope}/{stream} is missing "
                                      "from its store", "SEGMENT_MISSING")
            positions[segment_id] = info.length
        return StreamCut(scope, stream, positions), sealed

    async def stream_info(self, scope: str, stream: str) -> StreamInfo:
        """Configuration, head and tail stream cuts, and whether the stream is sealed."""
        config = await self.controller.get_stream_configuration(scope, stream)
        head = await self.head_stream_cut(scope, stream)
        tail, sealed = await self._tail(scope, stream)
        return StreamInfo(scope, stream, config, head, tail, sealed)
