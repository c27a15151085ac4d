"""An asyncio client for Pravega's controller (gRPC), and the routing-key hash.

:class:`ControllerClient` speaks the controller subset of docs/controller.md to a real Pravega
controller or to :class:`pravega_wire.server.controller.EmbeddedController`: scope and stream
administration, the segments of a stream with their key ranges, segment-store endpoints (cached),
successors, the head of a stream, and delegation tokens; stream configurations (scaling and
retention policies, tags), scaling, truncation at stream cuts, epochs, and transactions.
Failures are typed: connection problems raise :class:`~pravega_wire.errors.ConnectionFailedError`,
a call that outlives its timeout
:class:`~pravega_wire.errors.TimeoutError`, a rejected login
:class:`~pravega_wire.errors.AuthenticationError`, an unknown scope or stream
:class:`ScopeNotFoundError` / :class:`StreamNotFoundError` (both :class:`LookupError`), and any
other refusal :class:`ControllerError`. The client does not retry; callers decide.

gRPC is an optional dependency (the ``pravega-wire[grpc]`` extra). This module imports it only
when a :class:`ControllerClient` is created, so the pure functions (:func:`segment_for_key`,
:func:`hash_routing_key`, :func:`murmur3_x64_128`, segment naming) work without it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from pravega_wire.errors import (
    AuthenticationError, ConnectionClosedError, ConnectionFailedError, PravegaWireError,
    TimeoutError,
)
from pravega_wire.naming import (
    primary_segment_name, transaction_segment_name, txn_id_bits, txn_id_from_bits,
)

__all__ = [
    "DEFAULT_TIMEOUT", "ROUTING_KEY_SEED", "ControllerError", "ScopeNotFoundError",
    "StreamNotFoundError", "InvalidNameError", "SegmentWithRange", "SegmentLocation", "Successor",
    "ScalingPolicy", "RetentionPolicy", "StreamConfiguration", "StreamCut", "Transaction",
    "ControllerClient", "transaction_segment_name", "segment_name", "parse_segment_name",
    "murmur3_x64_128", "hash_routing_key", "segment_for_key", "KeyValueTableConfiguration",
    "KeyValueTableNotFoundError", "ReaderGroupRecord",
]

#: Default bound, in seconds, on each controller call.
DEFAULT_TIMEOUT = 30.0

_SECURE_SCHEMES = frozenset({"tls", "ssl", "tcps", "pravegas"})
_PLAIN_SCHEMES = frozenset({"tcp", "pravega"})
_DEFAULT_CONTROLLER_PORT = 9090
_QUALIFIED_NUMBER = re.compile(r"(\d+)(?:\.#epoch\.(\d+))?")


# ---- errors ----------------------------------------------------------------------------------

class ControllerError(PravegaWireError):
    """The controller refused a request or failed to answer it. ``status`` names the reason:
    the controller's status value (``"SCOPE_NOT_EMPTY"``, ``"STREAM_NOT_SEALED"``,
    ``"FAILURE"``, ...) or the gRPC status code (``"INTERNAL"``, ``"UNIMPLEMENTED"``, ...)."""

    def __init__(self, message: str, status: str = "FAILURE"):
        super().__init__(message)
        self.status = status


class ScopeNotFoundError(ControllerError, LookupError):
    """The scope does not exist."""


class StreamNotFoundError(ControllerError, LookupError):
    """The stream (or a segment of it) does not exist."""


class KeyValueTableNotFoundError(StreamNotFoundError):
    """The key-value table does not exist."""


class InvalidNameError(ControllerError, ValueError):
    """The controller rejected a scope or stream name."""


# ---- segments --------------------------------------------------------------------------------

def segment_name(scope: str, stream: str, segment_id: int) -> str:
    """The qualified segment name ``<scope>/<stream>/<number>.#epoch.<epoch>`` of the 64-bit
    segment id ``(epoch << 32) | number`` (the epoch suffix is always written)."""
    return f"{scope}/{stream}/{segment_id & 0xFFFFFFFF}.#epoch.{segment_id >> 32}"


def parse_segment_name(name: str) -> tuple[str, str, int]:
    """``(scope, stream, segment_id)`` of a qualified segment name. A transaction or transient
    segment yields its parent segment; a name with two parts has the scope ``""``; a number
    without ``.#epoch.N`` is in epoch 0. Raises ValueError for anything else."""
    parts = primary_segment_name(name).split("/")
    if len(parts) == 2:
        parts.insert(0, "")
    match = _QUALIFIED_NUMBER.fullmatch(parts[-1]) if len(parts) == 3 else None
    if match is None or not parts[1]:
        raise ValueError(f"not a qualified segment name: {name!r}")
    number, epoch = int(match.group(1)), int(match.group(2) or 0)
    if number > 0x7FFFFFFF or epoch > 0x7FFFFFFF:
        raise ValueError(f"segment number or epoch out of range in {name!r}")
    return parts[0], parts[1], (epoch << 32) | number


class _SegmentNaming:
    """Derived views of ``segment_id`` for the segment records below."""

    scope: str
    stream: str
    segment_id: int

    @property
    def number(self) -> int:
        """The segment number (low 32 bits of the id)."""
        return self.segment_id & 0xFFFFFFFF

    @property
    def epoch(self) -> int:
        """The epoch the segment was created in (high 32 bits of the id)."""
        return self.segment_id >> 32

    @property
    def name(self) -> str:
        """The qualified segment name."""
        return segment_name(self.scope, self.stream, self.segment_id)


@dataclasses.dataclass(frozen=True)
class SegmentWithRange(_SegmentNaming):
    """A segment and its routing-key range ``[min_key, max_key)``."""

    scope: str
    stream: str
    segment_id: int
    min_key: float
    max_key: float


@dataclasses.dataclass(frozen=True)
class SegmentLocation(_SegmentNaming):
    """A segment and the offset at which reading it starts (the head of a stream)."""

    scope: str
    stream: str
    segment_id: int
    offset: int


@dataclasses.dataclass(frozen=True)
class Successor:
    """A segment that replaced a sealed one, with the ids of all the segments it replaced."""

    segment: SegmentWithRange
    predecessors: tuple[int, ...]


# ---- stream configuration, stream cuts, transactions ------------------------------------------

@dataclasses.dataclass(frozen=True)
class ScalingPolicy:
    """How many segments a stream has: ``kind`` is ``"fixed"`` (``min_segments`` segments
    always), ``"events_per_sec"`` or ``"kbytes_per_sec"`` (a segment splits into
    ``scale_factor`` when it exceeds ``target_rate``, never fewer than ``min_segments`` in all),
    as Java's ``ScalingPolicy.fixed`` / ``byEventRate`` / ``byDataRate``."""

    kind: str = "fixed"
    target_rate: int = 0
    scale_factor: int = 0
    min_segments: int = 1

    KINDS = ("fixed", "kbytes_per_sec", "events_per_sec")  # index = ScalingPolicyType value

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"scaling policy kind must be one of {self.KINDS}, not {self.kind!r}")
        if self.min_segments < 1:
            raise ValueError("a stream needs at least one segment")
        if self.kind != "fixed" and (self.target_rate <= 0 or self.scale_factor <= 0):
            raise ValueError("a rate-based policy needs a positive target rate and scale factor")

    @classmethod
    def fixed(cls, segments: int) -> ScalingPolicy:
        return cls("fixed", min_segments=segments)

    @classmethod
    def by_event_rate(cls, events_per_sec: int, scale_factor: int,
                      min_segments: int) -> ScalingPolicy:
        return cls("events_per_sec", events_per_sec, scale_factor, min_segments)

    @classmethod
    def by_data_rate(cls, kbytes_per_sec: int, scale_factor: int,
                     min_segments: int) -> ScalingPolicy:
        return cls("kbytes_per_sec", kbytes_per_sec, scale_factor, min_segments)


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    """How much of a stream is kept: ``kind`` ``"none"`` (everything), ``"time"`` (``limit``
    milliseconds, at most ``max_limit``) or ``"size"`` (``limit`` bytes, at most ``max_limit``),
    as Java's ``RetentionPolicy.byTime`` / ``bySize``."""

    kind: str = "none"
    limit: int = 0
    max_limit: int = (1 << 63) - 1

    KINDS = ("none", "time", "size")  # index = RetentionPolicyType value (UNKNOWN = none)

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"retention kind must be one of {self.KINDS}, not {self.kind!r}")
        if self.kind != "none" and not 0 < self.limit <= self.max_limit:
            raise ValueError("a retention limit must be positive and at most max_limit")

    @classmethod
    def by_time(cls, milliseconds: int, max_milliseconds: int = (1 << 63) - 1) -> RetentionPolicy:
        return cls("time", milliseconds, max_milliseconds)

    @classmethod
    def by_size(cls, size_bytes: int, max_bytes: int = (1 << 63) - 1) -> RetentionPolicy:
        return cls("size", size_bytes, max_bytes)


@dataclasses.dataclass(frozen=True)
class StreamConfiguration:
    """A stream's configuration (Java's ``StreamConfiguration``)."""

    scaling: ScalingPolicy = ScalingPolicy()
    retention: RetentionPolicy = RetentionPolicy()
    tags: tuple[str, ...] = ()
    timestamp_aggregation_timeout: int = 0
    rollover_size_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class KeyValueTableConfiguration:
    """A key-value table's configuration (Java's ``KeyValueTableConfiguration``): its number
    of partitions (table segments) and the fixed lengths of its primary and secondary keys."""

    partition_count: int
    primary_key_length: int
    secondary_key_length: int = 0
    rollover_size_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("partition_count", "primary_key_length", "secondary_key_length",
                     "rollover_size_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {value!r}")
        if self.partition_count < 1 or self.primary_key_length < 1:
            raise ValueError("partition_count and primary_key_length must be at least 1")
        if self.secondary_key_length < 0 or self.rollover_size_bytes < 0:
            raise ValueError("secondary_key_length and rollover_size_bytes must be >= 0")

    @property
    def total_key_length(self) -> int:
        """Bytes of a table segment key: the primary key then the secondary key."""
        return self.primary_key_length + self.secondary_key_length


@dataclasses.dataclass(frozen=True)
class StreamCut:
    """A position in a stream: for a set of segments that tile the key space, the offset in
    each (``positions``: segment id -> offset)."""

    scope: str
    stream: str
    positions: Mapping[int, int]


@dataclasses.dataclass(frozen=True)
class Transaction:
    """An open transaction: its id and the segments it writes to. Events for segment ``s``
    go to :attr:`segment_names`\\ ``[s.segment_id]`` (``<segment>#transaction.<id hex>``)."""

    scope: str
    stream: str
    txn_id: uuid.UUID
    segments: tuple[SegmentWithRange, ...]
    delegation_token: str = ""

    @property
    def segment_names(self) -> dict[int, str]:
        """Transaction segment name by segment id."""
        return {s.segment_id: transaction_segment_name(s.name, self.txn_id)
                for s in self.segments}


@dataclasses.dataclass(frozen=True)
class ReaderGroupRecord:
    """A reader group as the controller keeps it (Java's ``ReaderGroupConfig`` with its id and
    generation): times in milliseconds; ``start`` and ``end`` StreamCuts (an empty
    ``positions``: the stream's head, or no end)."""

    scope: str
    group: str
    group_refresh_time_ms: int = 3000
    automatic_checkpoint_interval_ms: int = 30000
    max_outstanding_checkpoints: int = 3
    retention_type: int = 0
    start: tuple[StreamCut, ...] = ()
    end: tuple[StreamCut, ...] = ()
    reader_group_id: str = ""
    generation: int = 0


# ---- routing-key hash ------------------------------------------------------------------------
# Compiled with a pure twin in pravega_wire.routing; exported here too, where it was first defined.

from pravega_wire.routing import (  # noqa: E402
    ROUTING_KEY_SEED, hash_routing_key, murmur3_x64_128, segment_for_key,
)


# ---- the client ------------------------------------------------------------------------------

def _load_grpc() -> tuple[ModuleType, ModuleType, ModuleType]:
    """grpc and the generated modules, or an ImportError naming the extra to install."""
    try:
        import grpc
        from pravega_wire._proto import controller_pb2, controller_pb2_grpc
    except ImportError as exc:
        raise ImportError(
            "the controller client needs gRPC: install pravega-wire[grpc] "
            f"(grpcio and protobuf); import failed: {exc}") from exc
    return grpc, controller_pb2, controller_pb2_grpc


def _parse_uri(uri: str) -> tuple[bool, str]:
    """``(secure, "host:port")`` of a controller URI ``[scheme://]host[:port][,more...]``.
    Only the first endpoint of a list is used, as the Rust client does."""
    scheme, sep, rest = uri.strip().partition("://")
    if not sep:
        scheme, rest = "", scheme
    scheme = scheme.lower()
    if scheme and scheme not in _SECURE_SCHEMES | _PLAIN_SCHEMES:
        raise ValueError(f"unsupported controller URI scheme {scheme!r} in {uri!r}")
    endpoint = rest.split(",", 1)[0].strip().rstrip("/")
    if endpoint.startswith("["):
        host, _, tail = endpoint.partition("]")
        host += "]"
        port_text = tail[1:] if tail.startswith(":") else tail
    else:
        host, _, port_text = endpoint.partition(":")
    if not host or host == "[]" or (port_text and not port_text.isdigit()):
        raise ValueError(f"not a controller URI: {uri!r}")
    port = int(port_text) if port_text else _DEFAULT_CONTROLLER_PORT
    return scheme in _SECURE_SCHEMES, f"{host}:{port}"


def _enum_name(enum_type: Any, value: int, unknown: str = "STATUS") -> str:
    """The name of ``value`` in the protobuf enum ``enum_type``, also for values this proto does
    not know (a newer controller): ``<unknown>_<value>``."""
    try:
        return str(enum_type.Name(value))
    except ValueError:
        return f"{unknown}_{value}"


def _status_name(message_type: Any, value: int) -> str:
    """The name of a status value of ``message_type.Status``."""
    return _enum_name(message_type.Status, value)


class ControllerClient:
    """An asyncio client of a Pravega controller at ``uri``: ``tcp://host:port`` or
    ``host:port`` (plain h2c), ``tls://``/``ssl://``/``tcps://``/``pravegas://`` (TLS; the
    server certificate is checked against ``ca_file``, PEM, or the system roots, and against
    ``tls_server_name`` when given instead of the host).

    ``auth`` authenticates every call: a ``(user, password)`` pair (Basic) or a token string
    (Bearer). ``timeout`` bounds each call in seconds. A malformed ``uri`` raises ValueError
    and an unreadable ``ca_file`` OSError, here. The channel is opened on first use;
    :meth:`close` (or ``async with``) releases it.
    """

    def __init__(self, uri: str, *, timeout: float = DEFAULT_TIMEOUT, ca_file: str | None = None,
                 tls_server_name: str | None = None,
                 auth: tuple[str, str] | str | None = None):
        self._grpc, self._pb, self._pb_grpc = _load_grpc()
        self.uri = uri
        self.timeout = timeout
        self._secure, self._target = _parse_uri(uri)
        self._ca_pem: bytes | None = None
        if ca_file is not None:
            with open(ca_file, "rb") as pem:
                self._ca_pem = pem.read()
        self._tls_server_name = tls_server_name
        if isinstance(auth, tuple):
            user, password = auth
            credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._metadata: tuple[tuple[str, str], ...] = (
                ("authorization", f"Basic {credentials}"),)
        elif isinstance(auth, str):
            self._metadata = (("authorization", f"Bearer {auth}"),)
        else:
            self._metadata = ()
        self._channel: Any = None
        self._stub: Any = None
        self._closed = False
        self._endpoints: dict[str, tuple[str, int]] = {}
        self._lookups: dict[str, asyncio.Future[tuple[str, int]]] = {}

    # ---- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> ControllerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls in progress and later calls fail with
        :class:`~pravega_wire.errors.ConnectionClosedError`."""
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        self._endpoints.clear()
        if channel is not None:
            await channel.close()

    def _service(self) -> Any:
        if self._closed:
            raise ConnectionClosedError("the controller client is closed")
        if self._stub is None:
            grpc = self._grpc
            if self._secure:
                options = [] if self._tls_server_name is None else [
                    ("grpc.ssl_target_name_override", self._tls_server_name)]
                credentials = grpc.ssl_channel_credentials(root_certificates=self._ca_pem)
                self._channel = grpc.aio.secure_channel(self._target, credentials, options)
            else:
                self._channel = grpc.aio.insecure_channel(self._target)
            self._stub = self._pb_grpc.ControllerServiceStub(self._channel)
        return self._stub

    async def _call(self, rpc: str, request: Any) -> Any:
        """One unary call, its failures mapped to pravega-wire's errors."""
        method = getattr(self._service(), rpc)
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata)
        except self._grpc.aio.AioRpcError as exc:
            raise self._error(rpc, exc) from exc

    def _error(self, rpc: str, exc: Any) -> PravegaWireError:
        code = self._grpc.StatusCode
        status, details = exc.code(), exc.details()
        message = f"controller {rpc} at {self.uri}: {status.name}: {details}"
        if status == code.UNAVAILABLE:
            return ConnectionFailedError(message)
        if status == code.DEADLINE_EXCEEDED:
            return TimeoutError(message)
        if status in (code.UNAUTHENTICATED, code.PERMISSION_DENIED):
            return AuthenticationError(message)
        if status == code.CANCELLED and self._closed:
            return ConnectionClosedError(message)
        if status == code.NOT_FOUND:
            return StreamNotFoundError(message, status.name)
        return ControllerError(message, status.name)

    def _stream_info(self, scope: str, stream: str) -> Any:
        return self._pb.StreamInfo(scope=scope, stream=stream)

    # ---- scopes ------------------------------------------------------------------------------

    async def create_scope(self, scope: str) -> bool:
        """Create a scope: True if created, False if it already existed."""
        status = self._pb.CreateScopeStatus
        reply = await self._call("createScope", self._pb.ScopeInfo(scope=scope))
        if reply.status == status.SUCCESS:
            return True
        if reply.status == status.SCOPE_EXISTS:
            return False
        if reply.status == status.INVALID_SCOPE_NAME:
            raise InvalidNameError(f"invalid scope name {scope!r}", "INVALID_SCOPE_NAME")
        raise ControllerError(f"createScope {scope!r} failed",
                              _status_name(status, reply.status))

    async def delete_scope(self, scope: str) -> bool:
        """Delete an empty scope: True if deleted, False if it did not exist; a scope that
        still holds streams raises ControllerError with status ``SCOPE_NOT_EMPTY``."""
        status = self._pb.DeleteScopeStatus
        reply = await self._call("deleteScope", self._pb.ScopeInfo(scope=scope))
        if reply.status == status.SUCCESS:
            return True
        if reply.status == status.SCOPE_NOT_FOUND:
            return False
        raise ControllerError(f"deleteScope {scope!r} failed",
                              _status_name(status, reply.status))

    async def scope_exists(self, scope: str) -> bool:
        """Whether the scope exists."""
        reply = await self._call("checkScopeExists", self._pb.ScopeInfo(scope=scope))
        return bool(reply.exists)

    async def list_scopes(self) -> list[str]:
        """Every scope name, following the controller's pagination to its end."""
        pb = self._pb
        return await self._paginate(
            "listScopes", lambda token: pb.ScopesRequest(
                continuationToken=pb.ContinuationToken(token=token)),
            lambda reply: list(reply.scopes))

    async def _paginate(self, rpc: str, request: Callable[[str], Any],
                        items: Callable[[Any], list[str]]) -> list[str]:
        """Call ``rpc`` with each continuation token until an empty page."""
        found: list[str] = []
        token = ""
        while True:
            reply = await self._call(rpc, request(token))
            page = items(reply)
            if not page:
                return found
            if (not reply.HasField("continuationToken")
                    or reply.continuationToken.token == token):
                raise ControllerError(f"{rpc}: a page without a new continuation token",
                                      "INVALID_RESPONSE")
            found.extend(page)
            token = reply.continuationToken.token

    # ---- streams -----------------------------------------------------------------------------

    async def create_stream(self, scope: str, stream: str, segments: int = 1, *,
                            tags: Sequence[str] = (),
                            config: StreamConfiguration | None = None) -> bool:
        """Create a stream with ``segments`` fixed segments (and optional ``tags``), no
        retention limit, or with ``config`` when given (then ``segments`` and ``tags`` are
        ignored): True if created, False if it already existed. Raises ScopeNotFoundError for a
        missing scope, InvalidNameError for a rejected name."""
        if config is None:
            config = StreamConfiguration(ScalingPolicy.fixed(segments), tags=tuple(tags))
        pb = self._pb
        status = pb.CreateStreamStatus
        reply = await self._call("createStream", self._config_message(scope, stream, config))
        if reply.status == status.SUCCESS:
            return True
        if reply.status == status.STREAM_EXISTS:
            return False
        if reply.status == status.SCOPE_NOT_FOUND:
            raise ScopeNotFoundError(f"scope {scope!r} does not exist", "SCOPE_NOT_FOUND")
        if reply.status == status.INVALID_STREAM_NAME:
            raise InvalidNameError(f"invalid stream name {stream!r}", "INVALID_STREAM_NAME")
        raise ControllerError(f"createStream {scope}/{stream} failed",
                              _status_name(status, reply.status))

    def _config_message(self, scope: str, stream: str, config: StreamConfiguration) -> Any:
        pb = self._pb
        scaling, retention = config.scaling, config.retention
        return pb.StreamConfig(
            streamInfo=self._stream_info(scope, stream),
            scalingPolicy=pb.ScalingPolicy(
                scaleType=ScalingPolicy.KINDS.index(scaling.kind),
                targetRate=scaling.target_rate, scaleFactor=scaling.scale_factor,
                minNumSegments=scaling.min_segments),
            retentionPolicy=pb.RetentionPolicy(
                retentionType=RetentionPolicy.KINDS.index(retention.kind),
                retentionParam=retention.limit, retentionMax=retention.max_limit),
            tags=pb.Tags(tag=list(config.tags)),
            timestampAggregationTimeout=config.timestamp_aggregation_timeout,
            rolloverSizeBytes=config.rollover_size_bytes)

    async def get_stream_configuration(self, scope: str, stream: str) -> StreamConfiguration:
        """The stream's configuration as last created or updated; StreamNotFoundError for a
        missing stream."""
        reply = await self._call("getStreamConfiguration", self._stream_info(scope, stream))
        scaling, retention = reply.scalingPolicy, reply.retentionPolicy

        def kind(kinds: tuple[str, ...], value: int, what: str) -> str:
            if not 0 <= value < len(kinds):
                raise ControllerError(f"unknown {what} type {value}", "INVALID_RESPONSE")
            return kinds[value]

        return StreamConfiguration(
            ScalingPolicy(kind(ScalingPolicy.KINDS, scaling.scaleType, "scaling policy"),
                          scaling.targetRate, scaling.scaleFactor,
                          max(1, scaling.minNumSegments)),
            RetentionPolicy(kind(RetentionPolicy.KINDS, retention.retentionType, "retention"),
                            retention.retentionParam,
                            retention.retentionMax or (1 << 63) - 1),
            tuple(reply.tags.tag), reply.timestampAggregationTimeout, reply.rolloverSizeBytes)

    def _raise_update_status(self, rpc: str, scope: str, stream: str, reply: Any) -> None:
        """Raise for an ``UpdateStreamStatus`` other than SUCCESS."""
        status = self._pb.UpdateStreamStatus
        if reply.status == status.SUCCESS:
            return
        if reply.status == status.SCOPE_NOT_FOUND:
            raise ScopeNotFoundError(f"scope {scope!r} does not exist", "SCOPE_NOT_FOUND")
        if reply.status == status.STREAM_NOT_FOUND:
            raise StreamNotFoundError(f"stream {scope}/{stream} does not exist",
                                      "STREAM_NOT_FOUND")
        raise ControllerError(f"{rpc} {scope}/{stream} failed",
                              _status_name(status, reply.status))

    async def update_stream(self, scope: str, stream: str, config: StreamConfiguration) -> None:
        """Replace the stream's configuration (policies, tags). A sealed stream raises
        ControllerError with status ``STREAM_SEALED``."""
        reply = await self._call("updateStream", self._config_message(scope, stream, config))
        self._raise_update_status("updateStream", scope, stream, reply)

    async def seal_stream(self, scope: str, stream: str) -> None:
        """Seal a stream (no more writes; readers reach its end). Sealing twice is fine."""
        reply = await self._call("sealStream", self._stream_info(scope, stream))
        self._raise_update_status("sealStream", scope, stream, reply)

    async def delete_stream(self, scope: str, stream: str) -> bool:
        """Delete a sealed stream: True if deleted, False if it did not exist; an unsealed
        stream raises ControllerError with status ``STREAM_NOT_SEALED``."""
        status = self._pb.DeleteStreamStatus
        reply = await self._call("deleteStream", self._stream_info(scope, stream))
        if reply.status == status.SUCCESS:
            return True
        if reply.status == status.STREAM_NOT_FOUND:
            return False
        raise ControllerError(f"deleteStream {scope}/{stream} failed",
                              _status_name(status, reply.status))

    async def stream_exists(self, scope: str, stream: str) -> bool:
        """Whether the stream exists."""
        reply = await self._call("checkStreamExists", self._stream_info(scope, stream))
        return bool(reply.exists)

    async def list_streams(self, scope: str, *, tag: str | None = None) -> list[str]:
        """Every stream name in ``scope`` (only those tagged ``tag`` when given), following
        the pagination to its end; raises ScopeNotFoundError for a missing scope."""
        pb = self._pb
        missing = pb.StreamsInScopeResponse.SCOPE_NOT_FOUND

        def names(reply: Any) -> list[str]:
            if reply.status == missing:
                raise ScopeNotFoundError(f"scope {scope!r} does not exist", "SCOPE_NOT_FOUND")
            return [info.stream for info in reply.streams]

        if tag is not None:
            return await self._paginate(
                "listStreamsInScopeForTag", lambda token: pb.StreamsInScopeWithTagRequest(
                    scope=pb.ScopeInfo(scope=scope), tag=tag,
                    continuationToken=pb.ContinuationToken(token=token)),
                names)
        return await self._paginate(
            "listStreamsInScope", lambda token: pb.StreamsInScopeRequest(
                scope=pb.ScopeInfo(scope=scope),
                continuationToken=pb.ContinuationToken(token=token)),
            names)

    async def delete_scope_recursive(self, scope: str) -> None:
        """Seal and delete every stream of ``scope``, then the scope (nothing if it does not
        exist)."""
        status = self._pb.DeleteScopeStatus
        reply = await self._call("deleteScopeRecursive", self._pb.ScopeInfo(scope=scope))
        if reply.status not in (status.SUCCESS, status.SCOPE_NOT_FOUND):
            raise ControllerError(f"deleteScopeRecursive {scope!r} failed",
                                  _status_name(status, reply.status))

    # ---- segments ----------------------------------------------------------------------------

    def _segment_with_range(self, scope: str, stream: str, message: Any) -> SegmentWithRange:
        return SegmentWithRange(scope, stream, message.segmentId.segmentId,
                                message.minKey, message.maxKey)

    async def get_current_segments(self, scope: str, stream: str) -> list[SegmentWithRange]:
        """The stream's active segments in key order; empty once the stream is sealed."""
        reply = await self._call("getCurrentSegments", self._stream_info(scope, stream))
        segments = [self._segment_with_range(scope, stream, r) for r in reply.segmentRanges]
        return sorted(segments, key=lambda segment: segment.min_key)

    async def get_segments_at_head(self, scope: str, stream: str) -> list[SegmentLocation]:
        """Where reading the stream from its head starts: one location per head segment."""
        return await self.get_segments_at_time(scope, stream, 0)

    async def get_successors(self, scope: str, stream: str, segment_id: int) -> list[Successor]:
        """The segments that replaced sealed segment ``segment_id``, each with all the segments
        it replaced; empty if nothing follows (the stream was sealed, or the segment is still
        active)."""
        request = self._pb.SegmentId(streamInfo=self._stream_info(scope, stream),
                                     segmentId=segment_id)
        reply = await self._call("getSegmentsImmediatelyFollowing", request)
        return [Successor(self._segment_with_range(scope, stream, entry.segment),
                          tuple(entry.value))
                for entry in reply.segments]

    async def get_segments_at_time(self, scope: str, stream: str,
                                   timestamp_ms: int) -> list[SegmentLocation]:
        """Where reading the stream from ``timestamp_ms`` (unix milliseconds) starts. Pravega's
        controller answers the head whatever the time; the embedded one answers the epoch
        current at that time."""
        request = self._pb.GetSegmentsRequest(streamInfo=self._stream_info(scope, stream),
                                              timestamp=timestamp_ms)
        reply = await self._call("getSegments", request)
        return [SegmentLocation(scope, stream, location.segmentId.segmentId, location.offset)
                for location in reply.segments]

    async def get_epoch_segments(self, scope: str, stream: str,
                                 epoch: int) -> list[SegmentWithRange]:
        """The segments of epoch ``epoch`` in key order; StreamNotFoundError for a missing
        stream or an epoch it has not reached."""
        request = self._pb.GetEpochSegmentsRequest(streamInfo=self._stream_info(scope, stream),
                                                   epoch=epoch)
        reply = await self._call("getEpochSegments", request)
        segments = [self._segment_with_range(scope, stream, r) for r in reply.segmentRanges]
        return sorted(segments, key=lambda segment: segment.min_key)

    async def get_segments_between(self, scope: str, stream: str,
                                   start: Mapping[int, int] | None = None,
                                   end: Mapping[int, int] | None = None) -> list[int]:
        """The ids of the segments from stream cut ``start`` (None: the head) to stream cut
        ``end`` (None: the current segments), both included, in id order."""
        pb = self._pb
        request = pb.StreamCutRange(streamInfo=self._stream_info(scope, stream),
                                    to=dict(end or {}))
        getattr(request, "from").update(dict(start or {}))
        reply = await self._call("getSegmentsBetween", request)
        return sorted(segment.segmentId for segment in reply.segments)

    def _stream_cut(self, scope: str, stream: str, cut: Mapping[int, int]) -> Any:
        return self._pb.StreamCut(streamInfo=self._stream_info(scope, stream), cut=dict(cut))

    async def is_stream_cut_valid(self, scope: str, stream: str,
                                  cut: Mapping[int, int]) -> bool:
        """Whether ``cut`` (segment id -> offset) is a stream cut of the stream."""
        reply = await self._call("isStreamCutValid", self._stream_cut(scope, stream, cut))
        return bool(reply.response)

    async def truncate_stream(self, scope: str, stream: str, cut: Mapping[int, int]) -> None:
        """Truncate the stream at ``cut`` (segment id -> offset): data before it is deleted
        and reading from the head starts there. An invalid cut raises ControllerError with
        status ``INVALID_ARGUMENT``."""
        reply = await self._call("truncateStream", self._stream_cut(scope, stream, cut))
        self._raise_update_status("truncateStream", scope, stream, reply)

    async def start_scale(self, scope: str, stream: str, sealed: Sequence[int],
                          new_ranges: Sequence[tuple[float, float]], *,
                          timestamp_ms: int = 0) -> tuple[list[SegmentWithRange], int]:
        """Ask for active segments ``sealed`` to be replaced by segments over ``new_ranges``
        (which must tile exactly the sealed segments' key range): the new segments and the
        epoch to give :meth:`check_scale`. Refused preconditions raise ControllerError with
        status ``PRECONDITION_FAILED``."""
        pb = self._pb
        request = pb.ScaleRequest(
            streamInfo=self._stream_info(scope, stream), sealedSegments=list(sealed),
            newKeyRanges=[pb.ScaleRequest.KeyRangeEntry(start=a, end=b) for a, b in new_ranges],
            scaleTimestamp=timestamp_ms)
        reply = await self._call("scale", request)
        if reply.status != pb.ScaleResponse.STARTED:
            name = _enum_name(pb.ScaleResponse.ScaleStreamStatus, reply.status)
            raise ControllerError(f"scale of {scope}/{stream} refused", name)
        segments = [self._segment_with_range(scope, stream, r) for r in reply.segments]
        return sorted(segments, key=lambda s: s.min_key), reply.epoch

    async def check_scale(self, scope: str, stream: str, epoch: int) -> bool:
        """Whether the scale started from ``epoch`` has completed (False while in progress);
        an epoch the stream never had raises ControllerError with status ``INVALID_INPUT``."""
        response = self._pb.ScaleStatusResponse
        reply = await self._call("checkScale", self._pb.ScaleStatusRequest(
            streamInfo=self._stream_info(scope, stream), epoch=epoch))
        if reply.status == response.SUCCESS:
            return True
        if reply.status == response.IN_PROGRESS:
            return False
        raise ControllerError(f"checkScale {scope}/{stream} epoch {epoch}",
                              _enum_name(response.ScaleStatus, reply.status))

    async def scale_stream(self, scope: str, stream: str, sealed: Sequence[int],
                           new_ranges: Sequence[tuple[float, float]], *,
                           poll_interval: float = 0.1) -> list[SegmentWithRange]:
        """:meth:`start_scale`, then :meth:`check_scale` every ``poll_interval`` seconds until
        the scale is done (a real controller scales in the background); the new segments."""
        segments, epoch = await self.start_scale(scope, stream, sealed, new_ranges)
        while not await self.check_scale(scope, stream, epoch):
            await asyncio.sleep(poll_interval)
        return segments

    # ---- transactions ------------------------------------------------------------------------

    def _txn_request(self, scope: str, stream: str, txn_id: uuid.UUID, **fields: Any) -> Any:
        high, low = txn_id_bits(txn_id)
        return self._pb.TxnRequest(streamInfo=self._stream_info(scope, stream),
                                   txnId=self._pb.TxnId(highBits=high, lowBits=low), **fields)

    async def create_transaction(self, scope: str, stream: str,
                                 lease_ms: int = 30_000) -> Transaction:
        """Open a transaction on the stream's current segments, aborted by the controller
        unless pinged (:meth:`ping_transaction`) within ``lease_ms``."""
        pb = self._pb
        reply = await self._call("createTransaction", pb.CreateTxnRequest(
            streamInfo=self._stream_info(scope, stream), lease=lease_ms))
        if not reply.HasField("txnId"):
            raise ControllerError("createTransaction: no transaction id", "INVALID_RESPONSE")
        segments = sorted((self._segment_with_range(scope, stream, r)
                           for r in reply.activeSegments), key=lambda s: s.min_key)
        return Transaction(scope, stream,
                           txn_id_from_bits(reply.txnId.highBits, reply.txnId.lowBits),
                           tuple(segments), reply.delegationToken)

    def _raise_txn_status(self, rpc: str, scope: str, stream: str, txn_id: uuid.UUID,
                          reply: Any) -> None:
        status = self._pb.TxnStatus
        if reply.status == status.SUCCESS:
            return
        if reply.status == status.STREAM_NOT_FOUND:
            raise StreamNotFoundError(f"stream {scope}/{stream} does not exist",
                                      "STREAM_NOT_FOUND")
        if reply.status == status.TRANSACTION_NOT_FOUND:
            raise ControllerError(f"{rpc}: no transaction {txn_id} on {scope}/{stream}",
                                  "TRANSACTION_NOT_FOUND")
        raise ControllerError(f"{rpc} of transaction {txn_id} on {scope}/{stream} failed",
                              _status_name(status, reply.status))

    async def commit_transaction(self, scope: str, stream: str, txn_id: uuid.UUID, *,
                                 writer_id: str = "", timestamp: int = 0) -> None:
        """Commit the transaction: its events join the stream (a real controller does it in
        the background: :meth:`check_transaction_state` says when it is ``COMMITTED``)."""
        reply = await self._call("commitTransaction", self._txn_request(
            scope, stream, txn_id, writerId=writer_id, timestamp=timestamp))
        self._raise_txn_status("commitTransaction", scope, stream, txn_id, reply)

    async def abort_transaction(self, scope: str, stream: str, txn_id: uuid.UUID) -> None:
        """Abort the transaction: its events are dropped."""
        reply = await self._call("abortTransaction",
                                 self._txn_request(scope, stream, txn_id))
        self._raise_txn_status("abortTransaction", scope, stream, txn_id, reply)

    async def ping_transaction(self, scope: str, stream: str, txn_id: uuid.UUID,
                               lease_ms: int) -> str:
        """Renew the transaction's lease: the controller's answer, ``"OK"``,
        ``"LEASE_TOO_LARGE"``, ``"COMMITTED"``, ``"ABORTED"``, ``"UNKNOWN"``, ..."""
        pb = self._pb
        high, low = txn_id_bits(txn_id)
        reply = await self._call("pingTransaction", pb.PingTxnRequest(
            streamInfo=self._stream_info(scope, stream),
            txnId=pb.TxnId(highBits=high, lowBits=low), lease=lease_ms))
        return _status_name(pb.PingTxnStatus, reply.status)

    async def check_transaction_state(self, scope: str, stream: str,
                                      txn_id: uuid.UUID) -> str:
        """``"OPEN"``, ``"COMMITTING"``, ``"COMMITTED"``, ``"ABORTING"``, ``"ABORTED"`` or
        ``"UNKNOWN"``."""
        state = self._pb.TxnState.State
        reply = await self._call("checkTransactionState",
                                 self._txn_request(scope, stream, txn_id))
        return _enum_name(state, reply.state, "STATE")

    async def list_completed_transactions(self, scope: str,
                                          stream: str) -> dict[uuid.UUID, str]:
        """The stream's completed transactions: id -> ``"COMMITTED"`` or ``"ABORTED"``."""
        pb = self._pb
        reply = await self._call("listCompletedTransactions", pb.ListCompletedTxnRequest(
            streamInfo=self._stream_info(scope, stream)))
        names = pb.TxnResponse.Status
        return {txn_id_from_bits(entry.txnId.highBits, entry.txnId.lowBits):
                _enum_name(names, entry.status)
                for entry in reply.response}

    # ---- reader groups -----------------------------------------------------------------------

    def _reader_group_message(self, record: ReaderGroupRecord) -> Any:
        pb = self._pb
        return pb.ReaderGroupConfiguration(
            scope=record.scope, readerGroupName=record.group,
            groupRefreshTimeMillis=record.group_refresh_time_ms,
            automaticCheckpointIntervalMillis=record.automatic_checkpoint_interval_ms,
            maxOutstandingCheckpointRequest=record.max_outstanding_checkpoints,
            retentionType=record.retention_type, generation=record.generation,
            readerGroupId=record.reader_group_id,
            startingStreamCuts=[self._stream_cut(c.scope, c.stream, c.positions)
                                for c in record.start],
            endingStreamCuts=[self._stream_cut(c.scope, c.stream, c.positions)
                              for c in record.end])

    @staticmethod
    def _reader_group_record(message: Any) -> ReaderGroupRecord:
        def cuts(items: Any) -> tuple[StreamCut, ...]:
            return tuple(StreamCut(c.streamInfo.scope, c.streamInfo.stream, dict(c.cut))
                         for c in items)
        return ReaderGroupRecord(
            message.scope, message.readerGroupName, message.groupRefreshTimeMillis,
            message.automaticCheckpointIntervalMillis, message.maxOutstandingCheckpointRequest,
            message.retentionType, cuts(message.startingStreamCuts),
            cuts(message.endingStreamCuts), message.readerGroupId, message.generation)

    async def create_reader_group(self, record: ReaderGroupRecord) -> ReaderGroupRecord:
        """Create the reader group (``createReaderGroup``), or find it: the stored record
        (an existing group's unchanged, with its id and generation). ScopeNotFoundError,
        InvalidNameError."""
        status = self._pb.CreateReaderGroupResponse
        reply = await self._call("createReaderGroup", self._reader_group_message(record))
        if reply.status == status.SUCCESS:
            return self._reader_group_record(reply.config)
        if reply.status == status.SCOPE_NOT_FOUND:
            raise ScopeNotFoundError(f"scope {record.scope!r} does not exist", "SCOPE_NOT_FOUND")
        if reply.status == status.INVALID_RG_NAME:
            raise InvalidNameError(f"invalid reader group name {record.group!r}",
                                   "INVALID_RG_NAME")
        raise ControllerError(f"createReaderGroup {record.scope}/{record.group} failed",
                              _status_name(status, reply.status))

    def _reader_group_info(self, scope: str, group: str, reader_group_id: str) -> Any:
        return self._pb.ReaderGroupInfo(scope=scope, readerGroup=group,
                                        readerGroupId=reader_group_id)

    async def get_reader_group_config(self, scope: str, group: str, *,
                                      reader_group_id: str = "") -> ReaderGroupRecord | None:
        """The group's record (``getReaderGroupConfig``); None if there is no such group."""
        status = self._pb.ReaderGroupConfigResponse
        reply = await self._call("getReaderGroupConfig",
                                 self._reader_group_info(scope, group, reader_group_id))
        if reply.status == status.RG_NOT_FOUND:
            return None
        if reply.status != status.SUCCESS:
            raise ControllerError(f"getReaderGroupConfig {scope}/{group} failed",
                                  _status_name(status, reply.status))
        return self._reader_group_record(reply.config)

    async def delete_reader_group(self, scope: str, group: str, *,
                                  reader_group_id: str = "") -> bool:
        """Delete the group (``deleteReaderGroup``): True if it existed."""
        status = self._pb.DeleteReaderGroupStatus
        reply = await self._call("deleteReaderGroup",
                                 self._reader_group_info(scope, group, reader_group_id))
        if reply.status == status.RG_NOT_FOUND:
            return False
        if reply.status != status.SUCCESS:
            raise ControllerError(f"deleteReaderGroup {scope}/{group} failed",
                                  _status_name(status, reply.status))
        return True

    async def update_reader_group(self, record: ReaderGroupRecord) -> int:
        """Replace the group's configuration (``updateReaderGroup``) if ``record.generation``
        is the stored one: the new generation. ControllerError with status RG_NOT_FOUND or
        INVALID_CONFIG (another generation) otherwise."""
        status = self._pb.UpdateReaderGroupResponse
        reply = await self._call("updateReaderGroup", self._reader_group_message(record))
        if reply.status != status.SUCCESS:
            raise ControllerError(f"updateReaderGroup {record.scope}/{record.group} failed",
                                  _status_name(status, reply.status))
        return int(reply.generation)

    async def get_delegation_token(self, scope: str, stream: str) -> str:
        """A delegation token for the stream's segments (``""`` when the controller has auth
        off)."""
        reply = await self._call("getDelegationToken", self._stream_info(scope, stream))
        return str(reply.delegationToken)

    # ---- key-value tables --------------------------------------------------------------------

    def _kvt_info(self, scope: str, name: str) -> Any:
        return self._pb.KeyValueTableInfo(scope=scope, kvtName=name)

    async def create_key_value_table(self, scope: str, name: str,
                                     config: KeyValueTableConfiguration) -> bool:
        """Create a key-value table and its partitions: True if created, False if it already
        existed. ScopeNotFoundError, InvalidNameError; a configuration the controller refuses
        is ControllerError ``INVALID_ARGUMENT``."""
        pb = self._pb
        status = pb.CreateKeyValueTableStatus
        reply = await self._call("createKeyValueTable", pb.KeyValueTableConfig(
            scope=scope, kvtName=name, partitionCount=config.partition_count,
            primaryKeyLength=config.primary_key_length,
            secondaryKeyLength=config.secondary_key_length,
            rolloverSizeBytes=config.rollover_size_bytes))
        if reply.status == status.SUCCESS:
            return True
        if reply.status == status.TABLE_EXISTS:
            return False
        if reply.status == status.SCOPE_NOT_FOUND:
            raise ScopeNotFoundError(f"scope {scope!r} does not exist", "SCOPE_NOT_FOUND")
        if reply.status == status.INVALID_TABLE_NAME:
            raise InvalidNameError(f"invalid key-value table name {name!r}",
                                   "INVALID_TABLE_NAME")
        raise ControllerError(f"createKeyValueTable {scope}/{name} failed",
                              _status_name(status, reply.status))

    async def get_key_value_table_segments(self, scope: str,
                                           name: str) -> list[SegmentWithRange]:
        """The table's partitions in key-hash order (``stream`` is the table's name; a
        partition's table segment is ``segment_name(scope, name + "_kvtable", id)``,
        :data:`pravega_wire.naming.KVTABLE_SUFFIX`).
        KeyValueTableNotFoundError for an unknown table."""
        try:
            reply = await self._call("getCurrentSegmentsKeyValueTable",
                                     self._kvt_info(scope, name))
        except StreamNotFoundError as exc:
            raise KeyValueTableNotFoundError(str(exc), exc.status) from exc
        segments = [self._segment_with_range(scope, name, r) for r in reply.segmentRanges]
        return sorted(segments, key=lambda segment: segment.min_key)

    async def get_key_value_table_configuration(self, scope: str,
                                                name: str) -> KeyValueTableConfiguration:
        """The table's configuration; KeyValueTableNotFoundError for an unknown table."""
        response = self._pb.KeyValueTableConfigResponse
        reply = await self._call("getKeyValueTableConfiguration", self._kvt_info(scope, name))
        if reply.status == response.TABLE_NOT_FOUND:
            raise KeyValueTableNotFoundError(f"key-value table {scope}/{name} does not exist",
                                             "TABLE_NOT_FOUND")
        if reply.status != response.SUCCESS:
            raise ControllerError(f"getKeyValueTableConfiguration {scope}/{name} failed",
                                  _status_name(response, reply.status))
        config = reply.config
        return KeyValueTableConfiguration(config.partitionCount, config.primaryKeyLength,
                                          config.secondaryKeyLength, config.rolloverSizeBytes)

    async def list_key_value_tables(self, scope: str) -> list[str]:
        """The names of the scope's key-value tables, following the controller's pagination;
        ScopeNotFoundError for a missing scope."""
        pb = self._pb
        response = pb.KVTablesInScopeResponse

        def names(reply: Any) -> list[str]:
            if reply.status == response.SCOPE_NOT_FOUND:
                raise ScopeNotFoundError(f"scope {scope!r} does not exist", "SCOPE_NOT_FOUND")
            if reply.status != response.SUCCESS:
                raise ControllerError(f"listKeyValueTablesInScope {scope!r} failed",
                                      _status_name(response, reply.status))
            return [info.kvtName for info in reply.kvtables]

        return await self._paginate(
            "listKeyValueTablesInScope", lambda token: pb.KVTablesInScopeRequest(
                scope=pb.ScopeInfo(scope=scope),
                continuationToken=pb.ContinuationToken(token=token)),
            names)

    async def delete_key_value_table(self, scope: str, name: str) -> bool:
        """Delete the table and its data: True if deleted, False if it did not exist."""
        status = self._pb.DeleteKVTableStatus
        reply = await self._call("deleteKeyValueTable", self._kvt_info(scope, name))
        if reply.status == status.SUCCESS:
            return True
        if reply.status == status.TABLE_NOT_FOUND:
            return False
        raise ControllerError(f"deleteKeyValueTable {scope}/{name} failed",
                              _status_name(status, reply.status))

    # ---- segment-store endpoints -------------------------------------------------------------

    async def get_endpoint(self, segment: str) -> tuple[str, int]:
        """``(host, port)`` of the segment store that owns the qualified segment name
        ``segment`` (an IPv6 host without brackets). Answers are cached until
        :meth:`invalidate`; concurrent lookups of one name share a single call. A transaction
        or transient segment lives with its parent segment (``getURI`` names the parent), so
        it shares the parent's answer."""
        segment = primary_segment_name(segment)
        cached = self._endpoints.get(segment)
        if cached is not None:
            return cached
        lookup = self._lookups.get(segment)
        if lookup is None:
            lookup = asyncio.ensure_future(self._lookup_endpoint(segment))
            self._lookups[segment] = lookup
            lookup.add_done_callback(lambda done: self._lookup_done(segment, done))
        return await asyncio.shield(lookup)

    def invalidate(self, segment: str) -> None:
        """Forget the cached endpoint of ``segment`` (after WrongHost or a connection failure);
        a lookup in progress for it is not cached either."""
        segment = primary_segment_name(segment)
        self._endpoints.pop(segment, None)
        self._lookups.pop(segment, None)

    async def _lookup_endpoint(self, segment: str) -> tuple[str, int]:
        scope, stream, segment_id = parse_segment_name(segment)
        request = self._pb.SegmentId(streamInfo=self._stream_info(scope, stream),
                                     segmentId=segment_id)
        reply = await self._call("getURI", request)
        host = reply.endpoint
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return host, reply.port

    def _lookup_done(self, segment: str, lookup: asyncio.Future[tuple[str, int]]) -> None:
        if self._lookups.get(segment) is lookup:
            del self._lookups[segment]
            if not lookup.cancelled() and lookup.exception() is None and not self._closed:
                self._endpoints[segment] = lookup.result()
        elif not lookup.cancelled():
            lookup.exception()  # retrieved: its waiters, if any, got it through shield()
