"""BatchClient: the segments of a stream between two stream cuts, each a range that any
process can read on its own, in parallel with the others (Java's ``BatchClient``:
``getSegments`` and ``readSegment``). No ordering across segments is kept: a batch reader
wants throughput, not the order of a routing key across scales.

::

    batch = BatchClient(pool, controller)
    for segment_range in await batch.segments("sc", "st", start_cut, end_cut):
        async for event in batch.read_segment(segment_range):
            handle(event)
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from ._common import RetryPolicy
from .controller import StreamCut, _SegmentNaming
from .raw import MetadataClient
from .reader import EndOfSegment, SegmentReader
from .stream import segment_token_provider

__all__ = ["BatchClient", "SegmentRange"]


@dataclasses.dataclass(frozen=True)
class SegmentRange(_SegmentNaming):
    """The bytes ``[start_offset, end_offset)`` of one segment (``name`` is its qualified
    name)."""

    scope: str
    stream: str
    segment_id: int
    start_offset: int
    end_offset: int


class BatchClient:
    """Lists and reads the segment ranges of a stream. ``controller`` is a
    :class:`~pravega_wire.client.controller.ControllerClient` (it names the segments and locates
    them and issues the delegation tokens, one cached per stream); ``pool`` carries the
    reads. :meth:`close` releases the metadata connections."""

    def __init__(self, pool: Any, controller: Any, *, retry: RetryPolicy = RetryPolicy()):
        self._pool = pool
        self._controller = controller
        self._retry = retry
        self._tokens = segment_token_provider(controller)
        self._metadata = MetadataClient(pool, controller, retry=retry,
                                        token_provider=self._tokens)

    async def __aenter__(self) -> BatchClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._metadata.close()

    async def segments(self, scope: str, stream: str, start: StreamCut | None = None,
                       end: StreamCut | None = None) -> list[SegmentRange]:
        """Every segment from ``start`` (None: the stream's head) to ``end`` (None: the
        current end of the stream), each with the range to read: from the start cut's offset
        (or the segment's first readable byte) to the end cut's offset (or the segment's
        current length). Empty ranges are left out."""
        for cut in (start, end):
            if cut is not None and (cut.scope, cut.stream) != (scope, stream):
                raise ValueError(f"stream cut of {cut.scope}/{cut.stream}, not {scope}/{stream}")
        starts = dict(start.positions) if start is not None else {}
        ends = dict(end.positions) if end is not None else {}
        ids = await self._controller.get_segments_between(scope, stream, starts or None,
                                                          ends or None)
        out = []
        for segment_id in ids:
            probe = SegmentRange(scope, stream, segment_id, 0, 0)
            info = await self._metadata.get_info(probe.name)
            if not info.exists:
                continue
            low = max(starts.get(segment_id, 0), info.start_offset)
            high = ends.get(segment_id, info.length)
            if high > low:
                out.append(SegmentRange(scope, stream, segment_id, low, high))
        return out

    async def read_segment(self, segment_range: SegmentRange, *,
                           timeout: float | None = None) -> AsyncIterator[bytes]:
        """The events of ``segment_range`` in order (``timeout`` bounds the wait for each)."""
        async with SegmentReader(self._pool, self._controller, segment_range.name,
                                 offset=segment_range.start_offset,
                                 end_offset=segment_range.end_offset, retry=self._retry,
                                 token_provider=self._tokens) as reader:
            while True:
                try:
                    event = await reader.read_event(timeout=timeout)
                except EndOfSegment:
                    return
                yield bytes(event)
