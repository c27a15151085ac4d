"""Segment clients on pooled flows, and the controller client.

- :class:`SegmentWriter` / :class:`EventWriterConfig`: acknowledged, reconnecting writes to a
  segment; :class:`StreamWriter` routes events to a stream's segments by routing key.
- :class:`SegmentReader` / :class:`EndOfSegment`: prefetching, long-polling reads;
  :func:`stream_readers` opens one per segment at a stream's head.
- :class:`RawClient` (request/response), :class:`MetadataClient`, :class:`ConditionalWriter`.
- :class:`~pravega_wire.client.controller.ControllerClient` (needs the ``grpc`` extra) lives in
  :mod:`pravega_wire.client.controller`, imported on demand; key-value tables
  (:class:`~pravega_wire.client.kvt.KeyValueTableManager`, ``KeyValueTable``) in
  :mod:`pravega_wire.client.kvt`.
"""

from ._common import CachingTokenProvider, RetryPolicy, StaticLocator
from .raw import ConditionalWriter, MetadataClient, RawClient, SegmentInfo
from .reader import EndOfSegment, SegmentReader
from .stream import StreamWriter, stream_readers
from .writer import EventWriterConfig, SegmentWriter

__all__ = ["SegmentWriter", "EventWriterConfig", "StreamWriter", "SegmentReader", "EndOfSegment",
           "stream_readers", "RawClient", "MetadataClient", "ConditionalWriter", "SegmentInfo",
           "RetryPolicy", "StaticLocator", "CachingTokenProvider"]
