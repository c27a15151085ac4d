"""An embedded Pravega controller: the controller's gRPC service (docs/controller.md) over an
in-memory state model, for tests and for the embedded cluster.

The controller owns the metadata (scopes, streams, their configurations, segments and key ranges)
and tells the segment stores, through a :class:`SegmentAdmin`, to create, seal, truncate and delete
the segments themselves. It answers ``getURI`` for *any* segment name by hashing the name to its
owning store with :func:`pravega_wire.server.placement.store_index_of`, exactly as the segment
stores decide ownership, so that both always agree.

Run it alone (for example beside the Rust client, which must not share a process with asyncio)::

    python -m pravega_wire.server.controller --port 0 --stores 127.0.0.1:6000

which prints the controller URI (``tcp://127.0.0.1:<port>``) on one line and serves until SIGINT or
SIGTERM.

Authentication (``auth=True``): every RPC must carry an ``authorization`` metadata header, either
``Basic base64(user:password)`` (any non-empty user when ``credentials`` is None, otherwise a pair
from ``credentials``) or ``Bearer <token>`` with a delegation token this controller issued and that
has not expired. Anything else is answered with UNAUTHENTICATED. Delegation tokens are HS256 JWTs
signed with :attr:`EmbeddedController.token_key`; segment stores check them with
:func:`~pravega_wire.server.tokens.verify_token` (:mod:`pravega_wire.server.tokens`, re-exported
here). Without auth every delegation token is ``""``.

This module imports gRPC only when a controller is started.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import functools
import hmac
import logging
import re
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any, Protocol, TypeVar

from pravega_wire.naming import (
    KVTABLE_SUFFIX, transaction_segment_name, txn_epoch, txn_id_bits, txn_id_from_bits,
)
from pravega_wire.server.placement import DEFAULT_CONTAINER_COUNT, store_index_of
from pravega_wire.server.tables import MAX_FIXED_KEY_LENGTH
# The token code lives in pravega_wire.server.tokens; these names stay importable from here.
from pravega_wire.server.tokens import (  # noqa: F401 - re-exported
    TokenCheck, _b64url, _b64url_decode, _token_body, issue_token as _issue_token, verify_token,
)

__all__ = [
    "DEFAULT_CONTAINER_COUNT", "DEFAULT_TOKEN_TTL", "MAX_SEGMENTS_PER_STREAM", "MAX_LEASE_MS",
    "DEFAULT_SCALE_WINDOW", "SegmentAdmin", "SegmentMeter",
    "EmbeddedController", "key_ranges", "segment_name", "verify_token", "main",
]

_LOG = logging.getLogger(__name__)

#: Lifetime in seconds of the delegation tokens the controller issues (Pravega's default).
DEFAULT_TOKEN_TTL = 600

#: Most segments one ``createStream`` or scale may create (an emulator limit, not Pravega's).
MAX_SEGMENTS_PER_STREAM = 10_000

#: Longest transaction lease, in milliseconds, by default (Pravega's controller default,
#: ``controller.transaction.lease.count.max``: 120 s).
MAX_LEASE_MS = 120_000

#: How long, in seconds, a segment's rate must stay beyond its stream's target before the
#: controller scales it, by default (an emulator default; Pravega's stores report after a few
#: minutes of sustained rate).
DEFAULT_SCALE_WINDOW = 10.0

#: Bytes in the KB of a ``kbytes_per_sec`` scaling policy (Pravega's ``byDataRate``).
_KB = 1024

#: Scope and stream names: Pravega's user names (letters, digits, ``.`` and ``-``), optionally
#: behind the ``_`` prefix of internal names, at most 255 characters.
_NAME_RE = re.compile(r"_?[A-Za-z0-9.\-]{1,254}")


class SegmentAdmin(Protocol):
    """How the controller makes the segment stores act on a stream's segments.

    Each call must complete only once the owning store has applied it (a sealed segment must
    answer reads with ``end_of_segment`` by the time ``seal_segment`` returns), and each must be
    idempotent: creating an existing segment, sealing a sealed one and deleting a missing one
    succeed, because the controller repeats an operation a client retries after a failure.
    Raising makes the RPC that caused the call answer ``FAILURE``.
    """

    async def create_segment(self, name: str) -> None:
        """Create the empty segment ``name`` on its owning store."""
        ...

    async def seal_segment(self, name: str) -> None:
        """Seal segment ``name``: no more appends; reads at its end report end of segment."""
        ...

    async def delete_segment(self, name: str) -> None:
        """Delete segment ``name`` and its data."""
        ...

    async def truncate_segment(self, name: str, offset: int) -> None:
        """Drop the data of segment ``name`` before ``offset``."""
        ...

    async def merge_segment(self, target: str, source: str) -> None:
        """Append all of segment ``source`` to segment ``target`` and delete ``source`` (a
        transaction commit). Merging a source that no longer exists (merged already) succeeds."""
        ...

    async def create_table_segment(self, name: str, key_length: int) -> None:
        """Create the empty table segment ``name`` whose keys all have ``key_length`` bytes (a
        key-value table's partition; deleted with :meth:`delete_segment`)."""
        ...


class SegmentMeter(Protocol):
    """What a segment admin may also report, for auto-scaling and retention (the embedded
    cluster does): a controller whose admin lacks these methods neither auto-scales nor
    enforces retention."""

    def segment_rates(self, name: str) -> tuple[float, float]:
        """``(events/s, bytes/s)`` appended to segment ``name`` lately, as its store measures
        them (exponentially weighted)."""
        ...

    def segment_length(self, name: str) -> int:
        """The length of segment ``name`` (truncated bytes included)."""
        ...


# ---- names, ids, key ranges ------------------------------------------------------------------

def segment_name(scope: str, stream: str, segment_id: int) -> str:
    """The qualified name of a segment, ``<scope>/<stream>/<number>.#epoch.<epoch>``, from its
    64-bit id ``(epoch << 32) | number`` (docs/controller.md §4.2; the epoch is always written)."""
    return f"{scope}/{stream}/{segment_id & 0xFFFFFFFF}.#epoch.{segment_id >> 32}"


def key_ranges(count: int) -> list[tuple[float, float]]:
    """The routing-key ranges of a new stream with ``count`` segments: segment ``i`` covers
    ``[i/count, (i+1)/count)``, each bound one division (never ``i * (1/count)``) and the last
    upper bound exactly 1.0, as the Rust client requires (docs/controller.md §4.3)."""
    if count < 1:
        raise ValueError("a stream needs at least one segment")
    bounds = [i / count for i in range(count)] + [1.0]
    return [(bounds[i], bounds[i + 1]) for i in range(count)]


def _published_host(host: str) -> str:
    """A host as the Rust client can parse and resolve it (docs/controller.md §4.4): ``localhost``
    becomes ``127.0.0.1``; an IPv6 literal is bracketed with upper-case hex."""
    if host == "localhost":
        return "127.0.0.1"
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return f"[{bare.upper()}]" if ":" in bare else host


# ---- state model -----------------------------------------------------------------------------

@dataclasses.dataclass
class _Segment:
    """One segment of a stream, from any epoch."""

    segment_id: int
    min_key: float
    max_key: float
    predecessors: tuple[int, ...] = ()
    #: Removed from the stores because a truncation cut lies after it.
    deleted: bool = False
    #: Its length once sealed (learnt from its store), for the size of stream cuts.
    length: int | None = None


@dataclasses.dataclass
class _Transaction:
    """A transaction: its id, the segments (ids) it has a transaction segment for, its state
    (a ``TxnState.State`` name) and its lease."""

    txn_id: uuid.UUID
    segments: list[int]
    state: str = "OPEN"
    #: ``loop.time()`` at which an unpinged transaction is aborted.
    deadline: float = 0.0
    timer: asyncio.TimerHandle | None = None
    #: Set once the transaction is COMMITTED or ABORTED.
    finished: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


@dataclasses.dataclass
class _Stream:
    """A stream's metadata. ``config`` is the ``StreamConfig`` message as last set."""

    config: Any
    segments: dict[int, _Segment]
    #: Ids of the current epoch's segments, in key order.
    active: list[int]
    #: Where reading from the head starts: segment id -> offset (the truncation cut).
    head: dict[int, int]
    epoch: int = 0
    sealed: bool = False
    #: Per epoch: when it began (unix milliseconds) and its segments' ids, in key order.
    epochs: list[tuple[int, list[int]]] = dataclasses.field(default_factory=list)
    transactions: dict[uuid.UUID, _Transaction] = dataclasses.field(default_factory=dict)
    #: Stream cuts retention recorded: ``(clock time, size of the stream up to the cut, cut)``,
    #: oldest first (Pravega's ``StreamCutRecord``\ s).
    retention_cuts: list[tuple[float, int, dict[int, int]]] = dataclasses.field(
        default_factory=list)
    #: Auto-scaling: per active segment id, whether its rate is ``"hot"`` or ``"cold"`` and
    #: since when (clock time).
    temperature: dict[int, tuple[str, float]] = dataclasses.field(default_factory=dict)


def _valid_name(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None


def _check_tiling(ranges: Sequence[tuple[float, float]], low: float, high: float) -> None:
    """Raise ValueError unless ``ranges`` (sorted) tile ``[low, high)`` exactly."""
    position = low
    for min_key, max_key in ranges:
        if min_key != position or not min_key < max_key:
            raise ValueError(f"key ranges must be contiguous and non-empty: {list(ranges)}")
        position = max_key
    if position != high:
        raise ValueError(f"key ranges must end at {high}: {list(ranges)}")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _check_cut(record: _Stream, cut: Mapping[int, int]) -> None:
    """Raise ValueError unless ``cut`` (segment id -> offset) is a stream cut of ``record``: live
    segments of the stream, offsets >= 0, key ranges tiling [0, 1) without overlap (Pravega's
    ``isStreamCutValid``)."""
    if not cut or any(i not in record.segments or record.segments[i].deleted or o < 0
                      for i, o in cut.items()):
        raise ValueError(f"{dict(cut)} is not a cut of live segments, offsets >= 0")
    members = sorted((record.segments[i] for i in cut), key=lambda s: s.min_key)
    _check_tiling([(s.min_key, s.max_key) for s in members], 0.0, 1.0)


def _ancestors(record: _Stream, ids: Iterable[int]) -> set[int]:
    """Every segment that (transitively) precedes one of ``ids``."""
    found: set[int] = set()
    pending = [p for i in ids for p in record.segments[i].predecessors]
    while pending:
        segment_id = pending.pop()
        if segment_id not in found:
            found.add(segment_id)
            pending.extend(record.segments[segment_id].predecessors)
    return found


def _duplicate_id(segment_id: int, epoch: int) -> int:
    """The id of segment ``segment_id``'s duplicate in ``epoch``: same number, new epoch."""
    return (epoch << 32) | (segment_id & 0xFFFFFFFF)


def _duplicates(originals: Iterable[_Segment], epoch: int,
                after: Sequence[_Segment]) -> list[_Segment]:
    """Copies of ``originals`` in ``epoch`` (same numbers and key ranges), in key order, each
    a successor of the segments of ``after`` whose key range it overlaps."""
    return sorted((_Segment(_duplicate_id(s.segment_id, epoch), s.min_key, s.max_key,
                            tuple(p.segment_id for p in after
                                  if p.min_key < s.max_key and s.min_key < p.max_key))
                   for s in originals), key=lambda s: s.min_key)


def _load_grpc() -> tuple[ModuleType, ModuleType, ModuleType]:
    """grpc and the generated modules, or an ImportError naming the extra to install."""
    try:
        import grpc
        from pravega_wire._proto import controller_pb2, controller_pb2_grpc
    except ImportError as exc:
        raise ImportError(
            "the embedded controller needs gRPC: install pravega-wire[grpc] "
            f"(grpcio and protobuf); import failed: {exc}") from exc
    return grpc, controller_pb2, controller_pb2_grpc


class _Abort(Exception):
    """Ends an RPC with gRPC status ``code`` (a ``grpc.StatusCode`` member name)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Any]])


def _rpc(method: _Handler) -> _Handler:
    """Wrap a servicer method: check authentication first, answer :class:`_Abort` with its
    status, and turn any unexpected exception into an explicit INTERNAL status (a raising
    servicer would answer UNKNOWN, which the Rust client retries for about a minute:
    docs/controller.md §4.1)."""

    @functools.wraps(method)
    async def wrapper(self: EmbeddedController, request: Any, context: Any) -> Any:
        grpc = self._grpc
        try:
            failure = self._authentication_failure(context.invocation_metadata())
            if failure is not None:
                raise _Abort("UNAUTHENTICATED", failure)
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except _Abort as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except Exception as exc:  # noqa: BLE001 (the point of this wrapper)
            _LOG.exception("controller RPC %s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL,
                                f"embedded controller error in {method.__name__}: {exc!r}")

    return wrapper  # type: ignore[return-value]


class EmbeddedController:
    """A Pravega controller serving gRPC on ``host:port`` for the segment stores at
    ``store_endpoints`` (``(host, port)`` pairs, index = store number in
    :func:`~pravega_wire.server.placement.store_index_of`).

    ``segment_admin`` (optional) is told to create, seal, truncate and delete segments on the
    stores; without it the controller keeps metadata only. ``auth`` turns authentication and
    delegation tokens on (see the module docstring); ``credentials`` restricts Basic
    authentication to those user/password pairs; ``token_key`` is the HMAC key for tokens
    (random by default) and ``token_ttl`` their lifetime in seconds. ``tls``, a pair of PEM
    bytes ``(certificate_chain, private_key)``, serves over TLS instead of plain h2c.
    ``list_page_size`` is the page size of ``listScopes``/``listStreamsInScope``;
    ``max_lease_ms`` the longest transaction lease ``createTransaction`` and
    ``pingTransaction`` accept.

    Stream policies (:meth:`auto_scale`, :meth:`enforce_retention`) run every
    ``policy_interval`` seconds when it is set, or when called. ``clock`` (``time.monotonic``
    by default) times them; ``scale_window`` is how long, in seconds of that clock, a segment's
    rate must stay beyond its target before it is split or merged.

    Use ``async with EmbeddedController(...) as controller:`` or ``await start()`` /
    ``await stop()``; after starting, :attr:`port` and :attr:`uri` tell where it listens.
    Besides the RPCs it offers :meth:`scale_stream` and :meth:`truncate_stream` (what the
    ``scale`` and ``truncateStream`` RPCs do) to call in process, and
    :meth:`transaction_finished` to wait for a transaction to end.
    """

    def __init__(self, store_endpoints: Sequence[tuple[str, int]], *, host: str = "127.0.0.1",
                 port: int = 0, segment_admin: SegmentAdmin | None = None, auth: bool = False,
                 container_count: int = DEFAULT_CONTAINER_COUNT,
                 credentials: Mapping[str, str] | None = None, token_key: bytes | None = None,
                 token_ttl: float = DEFAULT_TOKEN_TTL, tls: tuple[bytes, bytes] | None = None,
                 list_page_size: int = 1000, max_lease_ms: int = MAX_LEASE_MS,
                 clock: Callable[[], float] = time.monotonic,
                 scale_window: float = DEFAULT_SCALE_WINDOW,
                 policy_interval: float | None = None):
        if not store_endpoints:
            raise ValueError("the controller needs at least one segment store endpoint")
        if container_count <= 0 or list_page_size <= 0 or token_ttl <= 0 or max_lease_ms <= 0:
            raise ValueError("container_count, list_page_size, token_ttl and max_lease_ms must "
                             "be positive")
        self.store_endpoints = [(_published_host(h), int(p)) for h, p in store_endpoints]
        self.host = host
        self.port = port
        self.segment_admin = segment_admin
        self.auth = auth
        self.container_count = container_count
        self.credentials = dict(credentials) if credentials is not None else None
        self.token_key = token_key if token_key is not None else secrets.token_bytes(32)
        self.token_ttl = token_ttl
        self.tls = tls
        self.list_page_size = list_page_size
        self.max_lease_ms = max_lease_ms
        if scale_window < 0 or (policy_interval is not None and policy_interval <= 0):
            raise ValueError("scale_window must be >= 0 and policy_interval positive")
        self.clock = clock
        self.scale_window = scale_window
        self.policy_interval = policy_interval
        self._policies: asyncio.Task[None] | None = None
        #: Numbers the transactions (the low half of their ids), across all streams.
        self._txn_counter = 0
        self._scopes: set[str] = set()
        self._streams: dict[tuple[str, str], _Stream] = {}
        #: Key-value tables: (scope, name) -> their KeyValueTableConfig message.
        self._kvts: dict[tuple[str, str], Any] = {}

        #: Reader groups: (scope, name) -> their ReaderGroupConfiguration message.
        self._reader_groups: dict[tuple[str, str], Any] = {}
        #: Next unused segment number per stream name, kept across delete and re-create.
        self._next_number: dict[tuple[str, str], int] = {}
        self._mutex: asyncio.Lock | None = None
        #: Aborts of transactions whose lease ran out, in progress.
        self._expiries: set[asyncio.Task[None]] = set()
        self._server: Any = None
        self._grpc, self._pb, self._pb_grpc = _load_grpc()

    @property
    def _lock(self) -> asyncio.Lock:
        """Serializes metadata changes (created on first use, inside the running loop)."""
        if self._mutex is None:
            self._mutex = asyncio.Lock()
        return self._mutex

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def advertised_host(self) -> str:
        """The host clients should dial: the bound host, or 127.0.0.1 for a wildcard bind."""
        wildcard = self.host in ("", "0.0.0.0", "::", "[::]")
        return _published_host("127.0.0.1" if wildcard else self.host)

    @property
    def uri(self) -> str:
        """The controller URI clients connect to: ``tcp://host:port`` (``tls://`` with TLS)."""
        return f"{'tls' if self.tls else 'tcp'}://{self.advertised_host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; sets :attr:`port` when it was 0."""
        if self._server is not None:
            raise RuntimeError("the controller is already started")
        # gRPC binds with SO_REUSEPORT by default, so a second server on a port in use would
        # start and share it; a controller must own its port.
        server = self._grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self._pb_grpc.add_ControllerServiceServicer_to_server(self, server)
        address = f"{self.host}:{self.port}"
        try:
            if self.tls is None:
                bound = server.add_insecure_port(address)
            else:
                chain, key = self.tls
                bound = server.add_secure_port(
                    address, self._grpc.ssl_server_credentials([(key, chain)]))
        except RuntimeError:  # grpcio raises on a failed bind (older versions returned 0)
            bound = 0
        if bound == 0:
            raise OSError(f"the controller could not bind {address}")
        self.port = bound
        await server.start()
        self._server = server
        if self.policy_interval is not None:
            self._policies = asyncio.get_running_loop().create_task(self._apply_policies())

    async def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving (RPCs in progress get ``grace`` seconds to finish)."""
        server, self._server = self._server, None
        policies, self._policies = self._policies, None
        if policies is not None:
            policies.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await policies
        if server is not None:
            await server.stop(grace)
        for record in self._streams.values():  # no lease runs out on a stopped controller
            for txn in record.transactions.values():
                self._cancel_lease(txn)
        for task in list(self._expiries):
            task.cancel()

    async def __aenter__(self) -> EmbeddedController:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- tokens and authentication -----------------------------------------------------------

    def issue_token(self, scope: str, stream: str, ttl: float | None = None) -> str:
        """A delegation token for ``scope/stream`` valid for ``ttl`` seconds (default
        :attr:`token_ttl`): a JWT (HS256 with :attr:`token_key`) whose body holds ``sub``,
        ``aud``, ``scope``, ``stream``, ``iat`` and ``exp`` (unix seconds)."""
        return _issue_token(self.token_key, scope, stream,
                            self.token_ttl if ttl is None else ttl, time.time())

    def _delegation_token(self, scope: str, stream: str) -> str:
        return self.issue_token(scope, stream) if self.auth else ""

    def _authentication_failure(self, metadata: Iterable[tuple[str, Any]] | None) -> str | None:
        """Why the call's metadata does not authenticate it, or None if it does."""
        if not self.auth:
            return None
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if not isinstance(header, str):
            return "missing authorization header"
        method, _, value = header.strip().partition(" ")
        value = value.strip()
        if method.lower() == "bearer":
            check = verify_token(value, self.token_key)
            return None if check == "ok" else f"bearer token {check}"
        if method.lower() != "basic":
            return f"unsupported authorization method {method!r}"
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8") \
                .partition(":")
        except (binascii.Error, UnicodeError):
            return "malformed basic credentials"
        if not sep or not user:
            return "malformed basic credentials"
        if self.credentials is None:
            return None
        known = self.credentials.get(user)
        if known is None or not hmac.compare_digest(known.encode(), password.encode()):
            return "wrong user or password"
        return None

    # ---- helpers -----------------------------------------------------------------------------

    def _segment_id_message(self, scope: str, stream: str, segment_id: int) -> Any:
        pb = self._pb
        return pb.SegmentId(streamInfo=pb.StreamInfo(scope=scope, stream=stream),
                            segmentId=segment_id)

    def _segment_range_message(self, scope: str, stream: str, segment: _Segment) -> Any:
        return self._pb.SegmentRange(
            segmentId=self._segment_id_message(scope, stream, segment.segment_id),
            minKey=segment.min_key, maxKey=segment.max_key)

    def _existing_stream(self, info: Any) -> _Stream:
        """The stream of a ``StreamInfo``; the RPC fails with NOT_FOUND if there is none, as
        Pravega's controller does."""
        record = self._streams.get((info.scope, info.stream))
        if record is None:
            raise _Abort("NOT_FOUND", f"stream {info.scope}/{info.stream} does not exist")
        return record

    async def _on_stores(self, action: Callable[..., Awaitable[None]],
                         calls: Iterable[tuple[Any, ...]]) -> bool:
        """Run ``action(*args)`` for every ``args`` concurrently; False (logged) if any failed."""
        results = await asyncio.gather(*(action(*args) for args in calls),
                                       return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, Exception):
                raise failure
            _LOG.warning("segment store operation %s failed: %r",
                         getattr(action, "__name__", action), failure)
        return not failures

    # ---- RPCs: servers -----------------------------------------------------------------------

    @_rpc
    async def getURI(self, request: Any, context: Any) -> Any:
        """The store owning the segment: any name, known to this controller or not."""
        info = request.streamInfo
        name = segment_name(info.scope, info.stream, request.segmentId)
        host, port = self.store_endpoints[
            store_index_of(name, len(self.store_endpoints), self.container_count)]
        return self._pb.NodeUri(endpoint=host, port=port)

    @_rpc
    async def getControllerServerList(self, request: Any, context: Any) -> Any:
        """This controller, the only instance."""
        return self._pb.ServerResponse(
            nodeURI=[self._pb.NodeUri(endpoint=self.advertised_host, port=self.port)])

    # ---- RPCs: scopes ------------------------------------------------------------------------

    @_rpc
    async def createScope(self, request: Any, context: Any) -> Any:
        """SUCCESS, SCOPE_EXISTS or INVALID_SCOPE_NAME."""
        status = self._pb.CreateScopeStatus
        if not _valid_name(request.scope):
            return status(status=status.INVALID_SCOPE_NAME)
        async with self._lock:
            if request.scope in self._scopes:
                return status(status=status.SCOPE_EXISTS)
            self._scopes.add(request.scope)
        return status(status=status.SUCCESS)

    @_rpc
    async def deleteScope(self, request: Any, context: Any) -> Any:
        """SUCCESS, SCOPE_NOT_FOUND, or SCOPE_NOT_EMPTY while it holds streams."""
        status = self._pb.DeleteScopeStatus
        async with self._lock:
            if request.scope not in self._scopes:
                return status(status=status.SCOPE_NOT_FOUND)
            if any(scope == request.scope for scope, _ in (*self._streams, *self._kvts)):
                return status(status=status.SCOPE_NOT_EMPTY)
            self._scopes.discard(request.scope)
        return status(status=status.SUCCESS)

    @_rpc
    async def checkScopeExists(self, request: Any, context: Any) -> Any:
        """Whether the scope exists."""
        return self._pb.ExistsResponse(exists=request.scope in self._scopes)

    def _page(self, names: Iterable[str], token: str) -> tuple[list[str], str]:
        """One page of sorted ``names`` after continuation ``token`` (the last name handed
        out; ``""`` = from the start), and the token for the next page. Past the end: an empty
        page and the same token, so that a client's listing terminates (docs/controller.md §4.7)."""
        page = sorted(n for n in names if n > token)[:self.list_page_size]
        return page, (page[-1] if page else token)

    @_rpc
    async def listScopes(self, request: Any, context: Any) -> Any:
        """A page of scope names; an empty page ends the listing."""
        pb = self._pb
        page, token = self._page(self._scopes, request.continuationToken.token)
        return pb.ScopesResponse(scopes=page, continuationToken=pb.ContinuationToken(token=token))

    # ---- RPCs: streams -----------------------------------------------------------------------

    def _segment_count(self, config: Any) -> int | None:
        count = config.scalingPolicy.minNumSegments
        return count if 1 <= count <= MAX_SEGMENTS_PER_STREAM else None

    @_rpc
    async def createStream(self, request: Any, context: Any) -> Any:
        """Creates the stream and its ``minNumSegments`` epoch-0 segments on the stores:
        SUCCESS, STREAM_EXISTS, SCOPE_NOT_FOUND, INVALID_STREAM_NAME, or FAILURE if a store
        failed. A segment count outside 1..MAX_SEGMENTS_PER_STREAM is INVALID_ARGUMENT."""
        status = self._pb.CreateStreamStatus
        scope, stream = request.streamInfo.scope, request.streamInfo.stream
        if not _valid_name(stream):
            return status(status=status.INVALID_STREAM_NAME)
        count = self._segment_count(request)
        if count is None:
            raise _Abort("INVALID_ARGUMENT",
                         f"minNumSegments must be 1..{MAX_SEGMENTS_PER_STREAM}")
        async with self._lock:
            if scope not in self._scopes:
                return status(status=status.SCOPE_NOT_FOUND)
            if (scope, stream) in self._streams:
                return status(status=status.STREAM_EXISTS)
            first = self._next_number.get((scope, stream), 0)
            segments = [_Segment(first + i, low, high)
                        for i, (low, high) in enumerate(key_ranges(count))]
            if self.segment_admin is not None and not await self._on_stores(
                    self.segment_admin.create_segment,
                    [(segment_name(scope, stream, s.segment_id),) for s in segments]):
                return status(status=status.FAILURE)
            config = self._pb.StreamConfig()
            config.CopyFrom(request)
            self._next_number[(scope, stream)] = first + count
            self._streams[(scope, stream)] = _Stream(
                config=config, segments={s.segment_id: s for s in segments},
                active=[s.segment_id for s in segments],
                head={s.segment_id: 0 for s in segments},
                epochs=[(_now_ms(), [s.segment_id for s in segments])])
        return status(status=status.SUCCESS)

    @_rpc
    async def updateStream(self, request: Any, context: Any) -> Any:
        """Replaces the stored configuration (tags, policies). The segments are not rescaled.
        SUCCESS, SCOPE_NOT_FOUND, STREAM_NOT_FOUND or STREAM_SEALED."""
        status = self._pb.UpdateStreamStatus
        scope, stream = request.streamInfo.scope, request.streamInfo.stream
        async with self._lock:
            if scope not in self._scopes:
                return status(status=status.SCOPE_NOT_FOUND)
            record = self._streams.get((scope, stream))
            if record is None:
                return status(status=status.STREAM_NOT_FOUND)
            if record.sealed:
                return status(status=status.STREAM_SEALED)
            record.config.CopyFrom(request)
        return status(status=status.SUCCESS)

    @_rpc
    async def sealStream(self, request: Any, context: Any) -> Any:
        """Seals the active segments on the stores, then the stream (idempotent): SUCCESS,
        SCOPE_NOT_FOUND, STREAM_NOT_FOUND, or FAILURE if a store failed."""
        status = self._pb.UpdateStreamStatus
        scope, stream = request.scope, request.stream
        async with self._lock:
            if scope not in self._scopes:
                return status(status=status.SCOPE_NOT_FOUND)
            record = self._streams.get((scope, stream))
            if record is None:
                return status(status=status.STREAM_NOT_FOUND)
            if not record.sealed:
                for txn in list(record.transactions.values()):
                    if txn.state == "OPEN":
                        await self._abort(scope, stream, record, txn)
                if self.segment_admin is not None and not await self._on_stores(
                        self.segment_admin.seal_segment,
                        [(segment_name(scope, stream, i),) for i in record.active]):
                    return status(status=status.FAILURE)
                record.sealed = True
        return status(status=status.SUCCESS)

    @_rpc
    async def deleteStream(self, request: Any, context: Any) -> Any:
        """Deletes a sealed stream and its segments: SUCCESS, STREAM_NOT_FOUND,
        STREAM_NOT_SEALED, or FAILURE if a store failed."""
        status = self._pb.DeleteStreamStatus
        scope, stream = request.scope, request.stream
        async with self._lock:
            record = self._streams.get((scope, stream))
            if record is None:
                return status(status=status.STREAM_NOT_FOUND)
            if not record.sealed:
                return status(status=status.STREAM_NOT_SEALED)
            for txn in record.transactions.values():
                self._cancel_lease(txn)
            if self.segment_admin is not None and not await self._on_stores(
                    self.segment_admin.delete_segment,
                    [(segment_name(scope, stream, s.segment_id),)
                     for s in record.segments.values() if not s.deleted]):
                return status(status=status.FAILURE)
            del self._streams[(scope, stream)]
        return status(status=status.SUCCESS)

    @_rpc
    async def getStreamConfiguration(self, request: Any, context: Any) -> Any:
        """The configuration as last created or updated; NOT_FOUND for an unknown stream."""
        record = self._existing_stream(request)
        config = self._pb.StreamConfig()
        config.CopyFrom(record.config)
        return config

    @_rpc
    async def checkStreamExists(self, request: Any, context: Any) -> Any:
        """Whether the stream exists."""
        return self._pb.ExistsResponse(exists=(request.scope, request.stream) in self._streams)

    @_rpc
    async def listStreamsInScope(self, request: Any, context: Any) -> Any:
        """A page of the scope's streams (status SCOPE_NOT_FOUND with an empty page for a
        missing scope); an empty page ends the listing."""
        return self._streams_page(request, lambda record: True)

    def _streams_page(self, request: Any, wanted: Callable[[_Stream], bool]) -> Any:
        """The ``StreamsInScopeResponse`` for a listing ``request`` of the streams that are
        ``wanted`` (status SCOPE_NOT_FOUND with an empty page for a missing scope)."""
        pb = self._pb
        scope = request.scope.scope
        if scope not in self._scopes:
            return pb.StreamsInScopeResponse(
                continuationToken=pb.ContinuationToken(token=request.continuationToken.token),
                status=pb.StreamsInScopeResponse.SCOPE_NOT_FOUND)
        page, token = self._page(
            (st for (sc, st), record in self._streams.items() if sc == scope and wanted(record)),
            request.continuationToken.token)
        return pb.StreamsInScopeResponse(
            streams=[pb.StreamInfo(scope=scope, stream=name) for name in page],
            continuationToken=pb.ContinuationToken(token=token),
            status=pb.StreamsInScopeResponse.SUCCESS)

    # ---- RPCs: segments ----------------------------------------------------------------------

    def _wants_token(self, info: Any) -> bool:
        return self.auth and info.accessOperation != self._pb.StreamInfo.NONE

    @_rpc
    async def getCurrentSegments(self, request: Any, context: Any) -> Any:
        """The active segments with their key ranges; none once the stream is sealed."""
        record = self._existing_stream(request)
        ranges = [] if record.sealed else [
            self._segment_range_message(request.scope, request.stream, record.segments[i])
            for i in record.active]
        token = self.issue_token(request.scope, request.stream) \
            if self._wants_token(request) else ""
        return self._pb.SegmentRanges(segmentRanges=ranges, delegationToken=token)

    @_rpc
    async def getSegments(self, request: Any, context: Any) -> Any:
        """Where reading starts at ``timestamp`` (unix ms). 0, what the Rust client sends, and
        any time before the head's epochs give the head: the epoch-0 segments at offset 0, or
        the last truncation cut. A later time gives the segments of the epoch current then, at
        offset 0 (at the head's offset for a segment the head cuts). Pravega's own controller
        answers the head whatever the timestamp."""
        pb = self._pb
        info = request.streamInfo
        record = self._existing_stream(info)
        cut = self._cut_at(record, request.timestamp)
        locations = [pb.SegmentsAtTime.SegmentLocation(
            segmentId=self._segment_id_message(info.scope, info.stream, segment_id),
            offset=offset)
            for segment_id, offset in sorted(
                cut.items(), key=lambda item: record.segments[item[0]].min_key)]
        token = self.issue_token(info.scope, info.stream) if self._wants_token(info) else ""
        return pb.SegmentsAtTime(segments=locations, delegationToken=token)

    @staticmethod
    def _cut_at(record: _Stream, timestamp: int) -> dict[int, int]:
        """The stream cut :meth:`getSegments` answers for ``timestamp``."""
        if timestamp <= 0:
            return dict(record.head)
        current = [ids for began, ids in record.epochs if began <= timestamp]
        if not current:
            return dict(record.head)
        ids = current[-1]
        if any(record.segments[i].deleted for i in ids) or _ancestors(record, record.head) \
                & set(ids):
            return dict(record.head)  # that epoch lies before the truncation cut
        return {i: record.head.get(i, 0) for i in ids}

    @_rpc
    async def getSegmentsImmediatelyFollowing(self, request: Any, context: Any) -> Any:
        """The successors of a segment, each with all its predecessors; empty when nothing
        follows (the segment is active, or the stream was sealed without scaling it)."""
        pb = self._pb
        info = request.streamInfo
        record = self._existing_stream(info)
        if request.segmentId not in record.segments:
            raise _Abort("NOT_FOUND",
                         f"segment {request.segmentId} is not in {info.scope}/{info.stream}")
        entries = [pb.SuccessorResponse.SegmentEntry(
            segment=self._segment_range_message(info.scope, info.stream, successor),
            value=list(successor.predecessors))
            for successor in sorted(record.segments.values(), key=lambda s: s.min_key)
            if request.segmentId in successor.predecessors]
        token = self.issue_token(info.scope, info.stream) if self._wants_token(info) else ""
        return pb.SuccessorResponse(segments=entries, delegationToken=token)

    @_rpc
    async def isSegmentValid(self, request: Any, context: Any) -> Any:
        """True for an active segment of an open stream."""
        info = request.streamInfo
        record = self._streams.get((info.scope, info.stream))
        valid = record is not None and not record.sealed and request.segmentId in record.active
        return self._pb.SegmentValidityResponse(response=valid)

    @_rpc
    async def getDelegationToken(self, request: Any, context: Any) -> Any:
        """A token for the stream (any name, like ``<rg>_kvtable``); ``""`` when auth is off."""
        return self._pb.DelegationToken(
            delegationToken=self._delegation_token(request.scope, request.stream))

    # ---- RPCs: tags, recursive delete --------------------------------------------------------

    @_rpc
    async def listStreamsInScopeForTag(self, request: Any, context: Any) -> Any:
        """A page of the scope's streams carrying ``tag`` (SCOPE_NOT_FOUND with an empty page
        for a missing scope); an empty page ends the listing."""
        return self._streams_page(request, lambda record: request.tag in record.config.tags.tag)

    @_rpc
    async def deleteScopeRecursive(self, request: Any, context: Any) -> Any:
        """Seals and deletes every stream of the scope (aborting their open transactions) and
        deletes its key-value tables, then the scope: SUCCESS (also for a scope that does not
        exist, as Pravega answers), or FAILURE if a store failed (what was deleted stays
        deleted)."""
        status = self._pb.DeleteScopeStatus
        scope = request.scope
        async with self._lock:
            for key in sorted(k for k in self._streams if k[0] == scope):
                record = self._streams[key]
                for txn in list(record.transactions.values()):
                    if txn.state == "OPEN":
                        await self._abort(scope, key[1], record, txn)
                names = [segment_name(scope, key[1], s.segment_id)
                         for s in record.segments.values() if not s.deleted]
                if self.segment_admin is not None:
                    if not record.sealed and not await self._on_stores(
                            self.segment_admin.seal_segment,
                            [(segment_name(scope, key[1], i),) for i in record.active]):
                        return status(status=status.FAILURE)
                    record.sealed = True
                    if not await self._on_stores(self.segment_admin.delete_segment,
                                                 [(name,) for name in names]):
                        return status(status=status.FAILURE)
                del self._streams[key]
            for _scope, name in sorted(k for k in self._kvts if k[0] == scope):
                if not await self._delete_kvt(scope, name):
                    return status(status=status.FAILURE)
            self._scopes.discard(scope)
        return status(status=status.SUCCESS)

    # ---- RPCs: scaling, truncation, stream cuts ----------------------------------------------

    @_rpc
    async def scale(self, request: Any, context: Any) -> Any:
        """Seals ``sealedSegments`` and creates successors over ``newKeyRanges`` in a new epoch
        (:meth:`scale_stream`), before answering: STARTED with the new segments and the epoch
        the scale started from (what ``checkScale`` takes); PRECONDITION_FAILED when the
        segments are not active or the ranges do not tile theirs; FAILURE for a sealed stream or
        a store failure. NOT_FOUND for an unknown stream."""
        pb = self._pb
        response = pb.ScaleResponse
        info = request.streamInfo
        record = self._existing_stream(info)
        if record.sealed:
            return response(status=response.FAILURE)
        epoch = record.epoch  # what a refusal reports; a scale reports the epoch it left
        try:
            created = await self.scale_stream(
                info.scope, info.stream, list(request.sealedSegments),
                [(entry.start, entry.end) for entry in request.newKeyRanges])
        except ValueError as exc:
            _LOG.info("scale of %s/%s refused: %s", info.scope, info.stream, exc)
            return response(status=response.PRECONDITION_FAILED, epoch=epoch)
        except LookupError:
            raise _Abort("NOT_FOUND", f"stream {info.scope}/{info.stream} does not exist")
        except Exception as exc:  # noqa: BLE001 (a store failed: the RPC's status says so)
            _LOG.warning("scale of %s/%s failed: %r", info.scope, info.stream, exc)
            return response(status=response.FAILURE, epoch=epoch)
        return response(status=response.STARTED, epoch=(created[0] >> 32) - 1, segments=[
            self._segment_range_message(info.scope, info.stream, record.segments[i])
            for i in created])

    @_rpc
    async def checkScale(self, request: Any, context: Any) -> Any:
        """As Pravega's controller answers: SUCCESS once the stream has moved past ``epoch``,
        IN_PROGRESS for the current epoch (no scale from it has completed; scales complete
        before ``scale`` answers), INVALID_INPUT for an epoch the stream has not reached.
        NOT_FOUND for an unknown stream."""
        response = self._pb.ScaleStatusResponse
        record = self._existing_stream(request.streamInfo)
        if request.epoch > record.epoch or request.epoch < 0:
            return response(status=response.INVALID_INPUT)
        if request.epoch == record.epoch:
            return response(status=response.IN_PROGRESS)
        return response(status=response.SUCCESS)

    @_rpc
    async def truncateStream(self, request: Any, context: Any) -> Any:
        """Truncates the stream at the cut (:meth:`truncate_stream`): SUCCESS,
        SCOPE_NOT_FOUND, STREAM_NOT_FOUND, FAILURE if a store failed; INVALID_ARGUMENT for a
        cut that is not a stream cut of the stream."""
        status = self._pb.UpdateStreamStatus
        info = request.streamInfo
        if info.scope not in self._scopes:
            return status(status=status.SCOPE_NOT_FOUND)
        try:
            await self.truncate_stream(info.scope, info.stream, dict(request.cut))
        except LookupError:
            return status(status=status.STREAM_NOT_FOUND)
        except ValueError as exc:
            raise _Abort("INVALID_ARGUMENT", str(exc))
        except Exception as exc:  # noqa: BLE001 (a store failed: the status says so)
            _LOG.warning("truncation of %s/%s failed: %r", info.scope, info.stream, exc)
            return status(status=status.FAILURE)
        return status(status=status.SUCCESS)

    @_rpc
    async def isStreamCutValid(self, request: Any, context: Any) -> Any:
        """Whether the cut names live segments of the stream, offsets >= 0, whose key ranges
        tile [0, 1) without overlap. NOT_FOUND for an unknown stream."""
        record = self._existing_stream(request.streamInfo)
        try:
            _check_cut(record, dict(request.cut))
        except ValueError:
            return self._pb.StreamCutValidityResponse(response=False)
        return self._pb.StreamCutValidityResponse(response=True)

    @_rpc
    async def getSegmentsBetween(self, request: Any, context: Any) -> Any:
        """The segments from stream cut ``from`` (empty: the head) to stream cut ``to`` (empty:
        the current segments), both included, in id order. INVALID_ARGUMENT for an invalid cut
        or a ``from`` that lies after ``to``; NOT_FOUND for an unknown stream."""
        pb = self._pb
        info = request.streamInfo
        record = self._existing_stream(info)
        start = dict(getattr(request, "from")) or dict(record.head)
        end = dict(request.to) or {i: 0 for i in record.active}
        try:
            _check_cut(record, start)
            _check_cut(record, end)
        except ValueError as exc:
            raise _Abort("INVALID_ARGUMENT", str(exc))
        before_end = _ancestors(record, end) | set(end)
        if not set(start) <= before_end:
            raise _Abort("INVALID_ARGUMENT", f"stream cut {start} is not before {end}")
        between = set(start)
        pending = list(start)
        while pending:
            segment_id = pending.pop()
            for successor in record.segments.values():
                if segment_id in successor.predecessors and successor.segment_id in before_end \
                        and successor.segment_id not in between:
                    between.add(successor.segment_id)
                    pending.append(successor.segment_id)
        token = self.issue_token(info.scope, info.stream) if self._wants_token(info) else ""
        return pb.StreamCutRangeResponse(
            segments=[self._segment_id_message(info.scope, info.stream, i)
                      for i in sorted(between)],
            delegationToken=token)

    @_rpc
    async def getEpochSegments(self, request: Any, context: Any) -> Any:
        """The segments of epoch ``epoch`` with their key ranges; NOT_FOUND for an unknown
        stream or an epoch it has not reached."""
        info = request.streamInfo
        record = self._existing_stream(info)
        if not 0 <= request.epoch < len(record.epochs):
            raise _Abort("NOT_FOUND", f"epoch {request.epoch} of {info.scope}/{info.stream} "
                                      "does not exist")
        ranges = [self._segment_range_message(info.scope, info.stream, record.segments[i])
                  for i in record.epochs[request.epoch][1]]
        token = self.issue_token(info.scope, info.stream) if self._wants_token(info) else ""
        return self._pb.SegmentRanges(segmentRanges=ranges, delegationToken=token)

    # ---- RPCs: transactions ------------------------------------------------------------------

    def _transaction(self, info: Any, txn_id: Any) -> tuple[_Stream | None, _Transaction | None]:
        record = self._streams.get((info.scope, info.stream))
        if record is None:
            return None, None
        return record, record.transactions.get(txn_id_from_bits(txn_id.highBits, txn_id.lowBits))

    def _finishing(self, info: Any, txn_id: Any, outcome: str) -> tuple[Any, Any, Any]:
        """``(stream, transaction, None)`` for an open transaction that a commit or abort
        (``outcome``) may finish; otherwise the ``TxnStatus`` to answer in the third place:
        STREAM_NOT_FOUND, TRANSACTION_NOT_FOUND, SUCCESS when it already has that outcome,
        FAILURE when it is finished or finishing otherwise."""
        status = self._pb.TxnStatus
        record, txn = self._transaction(info, txn_id)
        if record is None:
            return None, None, status(status=status.STREAM_NOT_FOUND)
        if txn is None:
            return record, None, status(status=status.TRANSACTION_NOT_FOUND)
        if txn.state != "OPEN":
            return record, txn, status(status=status.SUCCESS if txn.state == outcome
                                       else status.FAILURE)
        return record, txn, None

    def _txn_segment_names(self, scope: str, stream: str, txn: _Transaction) -> list[str]:
        return [transaction_segment_name(segment_name(scope, stream, i), txn.txn_id)
                for i in txn.segments]

    def _arm_lease(self, scope: str, stream: str, txn: _Transaction, lease_ms: int) -> None:
        """(Re)start the lease: the transaction is aborted if not pinged within ``lease_ms``."""
        self._cancel_lease(txn)
        loop = asyncio.get_running_loop()
        txn.deadline = loop.time() + lease_ms / 1000
        txn.timer = loop.call_later(lease_ms / 1000, self._expire, scope, stream, txn)

    def _expire(self, scope: str, stream: str, txn: _Transaction) -> None:
        """The lease timer: abort the transaction in a task the controller keeps (the loop
        holds tasks weakly) until it is done."""
        txn.timer = None
        task = asyncio.get_running_loop().create_task(self._lease_expired(scope, stream, txn))
        self._expiries.add(task)
        task.add_done_callback(self._expiries.discard)

    @staticmethod
    def _cancel_lease(txn: _Transaction) -> None:
        if txn.timer is not None:
            txn.timer.cancel()
            txn.timer = None

    async def _lease_expired(self, scope: str, stream: str, txn: _Transaction) -> None:
        async with self._lock:
            record = self._streams.get((scope, stream))
            if record is None or record.transactions.get(txn.txn_id) is not txn \
                    or txn.state != "OPEN" or asyncio.get_running_loop().time() < txn.deadline:
                return
            _LOG.info("transaction %s on %s/%s timed out: aborting it", txn.txn_id, scope,
                      stream)
            try:
                await self._abort(scope, stream, record, txn)
            except Exception:  # noqa: BLE001 (nobody awaits a timer's task)
                _LOG.exception("aborting timed-out transaction %s failed", txn.txn_id)

    async def _abort(self, scope: str, stream: str, record: _Stream, txn: _Transaction) -> None:
        """Delete the transaction's segments and mark it ABORTED (under the lock)."""
        self._cancel_lease(txn)
        txn.state = "ABORTING"
        if self.segment_admin is not None:
            for name in self._txn_segment_names(scope, stream, txn):
                await self.segment_admin.delete_segment(name)
        txn.state = "ABORTED"
        txn.finished.set()

    async def transaction_finished(self, scope: str, stream: str, txn_id: uuid.UUID) -> str:
        """Wait until the transaction is COMMITTED or ABORTED (by a call or its lease) and
        return that state. Raises LookupError for an unknown stream or transaction."""
        record = self._streams.get((scope, stream))
        txn = record.transactions.get(txn_id) if record is not None else None
        if txn is None:
            raise LookupError(f"no transaction {txn_id} on {scope}/{stream}")
        await txn.finished.wait()
        return txn.state

    @_rpc
    async def createTransaction(self, request: Any, context: Any) -> Any:
        """Opens a transaction on the current epoch: one transaction segment per active segment
        (``<segment>#transaction.<id hex>``) is created on the stores, and the transaction is
        aborted unless pinged within ``lease`` milliseconds. The id's high 32 bits are the
        epoch. NOT_FOUND for an unknown stream, FAILED_PRECONDITION for a sealed one,
        INVALID_ARGUMENT for a lease outside 1..max_lease_ms, INTERNAL if a store failed."""
        pb = self._pb
        info = request.streamInfo
        if not 0 < request.lease <= self.max_lease_ms:
            raise _Abort("INVALID_ARGUMENT",
                         f"lease must be 1..{self.max_lease_ms} ms, not {request.lease}")
        async with self._lock:
            record = self._existing_stream(info)
            if record.sealed:
                raise _Abort("FAILED_PRECONDITION", f"stream {info.scope}/{info.stream} is sealed")
            self._txn_counter += 1
            txn_id = txn_id_from_bits(record.epoch << 32, self._txn_counter)
            txn = _Transaction(txn_id, list(record.active))
            if self.segment_admin is not None:
                for name in self._txn_segment_names(info.scope, info.stream, txn):
                    await self.segment_admin.create_segment(name)
            record.transactions[txn_id] = txn
            self._arm_lease(info.scope, info.stream, txn, request.lease)
        high, low = txn_id_bits(txn_id)
        token = self.issue_token(info.scope, info.stream) if self._wants_token(info) else ""
        return pb.CreateTxnResponse(
            txnId=pb.TxnId(highBits=high, lowBits=low), delegationToken=token,
            activeSegments=[self._segment_range_message(info.scope, info.stream,
                                                        record.segments[i])
                            for i in txn.segments])

    @_rpc
    async def commitTransaction(self, request: Any, context: Any) -> Any:
        """Merges each transaction segment into its segment, in key order, and answers once
        the transaction is COMMITTED: SUCCESS (also again for a committed one),
        STREAM_NOT_FOUND, TRANSACTION_NOT_FOUND; FAILURE for an aborted transaction, a sealed
        stream, or a store failure (the transaction stays OPEN, its lease running). A
        transaction whose epoch the stream has scaled past is rolled over into two new epochs
        (:meth:`_roll_transaction`), as Pravega's controller commits it."""
        status = self._pb.TxnStatus
        info = request.streamInfo
        async with self._lock:
            record, txn, answer = self._finishing(info, request.txnId, "COMMITTED")
            if answer is not None:
                return answer
            if record.sealed:
                return status(status=status.FAILURE)
            txn.state = "COMMITTING"
            try:
                if txn_epoch(txn.txn_id) == record.epoch:
                    await self._merge_transaction(info.scope, info.stream, txn, txn.segments)
                else:
                    await self._roll_transaction(info.scope, info.stream, record, txn)
            except Exception as exc:  # noqa: BLE001 (the status says so)
                _LOG.warning("commit of transaction %s failed: %r", txn.txn_id, exc)
                txn.state = "OPEN"
                return status(status=status.FAILURE)
            self._cancel_lease(txn)
            txn.state = "COMMITTED"
            txn.finished.set()
        return status(status=status.SUCCESS)

    async def _merge_transaction(self, scope: str, stream: str, txn: _Transaction,
                                 targets: Sequence[int]) -> None:
        """Merge the transaction's segment beside ``txn.segments[i]`` into segment
        ``targets[i]``, in key order."""
        if self.segment_admin is None:
            return
        for target, name in zip(targets, self._txn_segment_names(scope, stream, txn)):
            await self.segment_admin.merge_segment(segment_name(scope, stream, target), name)

    async def _roll_transaction(self, scope: str, stream: str, record: _Stream,
                                txn: _Transaction) -> None:
        """Commit a transaction of an epoch the stream has scaled past, as Pravega's
        ``CommitRequestHandler`` does with a *rolling transaction* (under the lock).

        With the stream at epoch ``A`` and the transaction begun in epoch ``T < A``: epoch
        ``A + 1`` duplicates epoch ``T``'s segments (same segment numbers and key ranges, the new
        epoch in their ids), successors of the active segments they overlap; the transaction
        segments are merged into them and they are sealed at once. Epoch ``A + 2`` duplicates
        the active segments, successors of the duplicates they overlap, and becomes current
        once the old active segments are sealed. A reader (or writer) that follows successors
        thus meets, for every key, the events written before the commit, then the
        transaction's, then those written after it. Every step is idempotent, so a commit
        that failed half-way can be repeated; the metadata changes only once all succeeded."""
        rolled_epoch = record.epoch + 1
        active = [record.segments[i] for i in record.active]
        rolled = _duplicates([record.segments[i] for i in txn.segments], rolled_epoch, active)
        current = _duplicates(active, rolled_epoch + 1, rolled)
        admin = self.segment_admin
        if admin is not None:
            for created in (*rolled, *current):
                await admin.create_segment(segment_name(scope, stream, created.segment_id))
        await self._merge_transaction(scope, stream, txn,
                                      [_duplicate_id(i, rolled_epoch) for i in txn.segments])
        if admin is not None:
            for sealed in (*rolled, *active):
                await admin.seal_segment(segment_name(scope, stream, sealed.segment_id))
        record.segments.update((s.segment_id, s) for s in (*rolled, *current))
        record.epoch = rolled_epoch + 1
        record.active = [s.segment_id for s in current]
        now = _now_ms()
        record.epochs.append((now, [s.segment_id for s in rolled]))
        record.epochs.append((now, list(record.active)))

    @_rpc
    async def abortTransaction(self, request: Any, context: Any) -> Any:
        """Deletes the transaction's segments: SUCCESS (also again for an aborted one),
        STREAM_NOT_FOUND, TRANSACTION_NOT_FOUND; FAILURE for a committed transaction or a store
        failure."""
        status = self._pb.TxnStatus
        info = request.streamInfo
        async with self._lock:
            record, txn, answer = self._finishing(info, request.txnId, "ABORTED")
            if answer is not None:
                return answer
            try:
                await self._abort(info.scope, info.stream, record, txn)
            except Exception as exc:  # noqa: BLE001 (the status says so)
                _LOG.warning("abort of transaction %s failed: %r", txn.txn_id, exc)
                return status(status=status.FAILURE)
        return status(status=status.SUCCESS)

    @_rpc
    async def pingTransaction(self, request: Any, context: Any) -> Any:
        """Renews an open transaction's lease to ``lease`` ms: OK, LEASE_TOO_LARGE (over
        max_lease_ms), COMMITTED / ABORTED for a finished transaction, UNKNOWN for an unknown
        stream or transaction."""
        status = self._pb.PingTxnStatus
        info = request.streamInfo
        async with self._lock:
            record, txn = self._transaction(info, request.txnId)
            if txn is None:
                return status(status=status.UNKNOWN)
            if txn.state in ("COMMITTING", "COMMITTED"):
                return status(status=status.COMMITTED)
            if txn.state in ("ABORTING", "ABORTED"):
                return status(status=status.ABORTED)
            if not 0 < request.lease <= self.max_lease_ms:
                return status(status=status.LEASE_TOO_LARGE)
            self._arm_lease(info.scope, info.stream, txn, request.lease)
        return status(status=status.OK)

    @_rpc
    async def checkTransactionState(self, request: Any, context: Any) -> Any:
        """OPEN, COMMITTING, COMMITTED, ABORTING or ABORTED; UNKNOWN for an unknown stream or
        transaction."""
        state = self._pb.TxnState
        _, txn = self._transaction(request.streamInfo, request.txnId)
        return state(state=state.State.Value(txn.state) if txn is not None else state.UNKNOWN)

    @_rpc
    async def listCompletedTransactions(self, request: Any, context: Any) -> Any:
        """The stream's committed and aborted transactions (all of them: the emulator keeps
        them for the stream's lifetime). NOT_FOUND for an unknown stream."""
        pb = self._pb
        record = self._existing_stream(request.streamInfo)
        entries = []
        for txn in record.transactions.values():
            if txn.state in ("COMMITTED", "ABORTED"):
                high, low = txn_id_bits(txn.txn_id)
                entries.append(pb.TxnResponse(txnId=pb.TxnId(highBits=high, lowBits=low),
                                              status=pb.TxnResponse.Status.Value(txn.state)))
        return pb.ListCompletedTxnResponse(response=entries)

    # ---- RPCs: key-value tables --------------------------------------------------------------
    # A table's partitions are table segments created at once with keys of the table's total
    # key length (Java's KVTableMetadataTasks); partition i covers [i/n, (i+1)/n) of the
    # key-hash range, numbered 0..n-1 in epoch 0 (key-value tables never scale).

    def _kvt_segment_names(self, scope: str, name: str, count: int) -> list[str]:
        return [segment_name(scope, name + KVTABLE_SUFFIX, i) for i in range(count)]

    @_rpc
    async def createKeyValueTable(self, request: Any, context: Any) -> Any:
        """Creates the table and its ``partitionCount`` table segments: SUCCESS, TABLE_EXISTS,
        SCOPE_NOT_FOUND, INVALID_TABLE_NAME, or FAILURE if a store failed. A partition count
        outside 1..MAX_SEGMENTS_PER_STREAM, a primary key length < 1, a secondary key length
        < 0 or keys longer than a fixed-key table segment allows are INVALID_ARGUMENT."""
        status = self._pb.CreateKeyValueTableStatus
        scope, name = request.scope, request.kvtName
        if not _valid_name(name) or name.startswith("_"):
            return status(status=status.INVALID_TABLE_NAME)
        count = request.partitionCount
        key_length = request.primaryKeyLength + request.secondaryKeyLength
        if not 1 <= count <= MAX_SEGMENTS_PER_STREAM or request.primaryKeyLength < 1 \
                or request.secondaryKeyLength < 0 or key_length > MAX_FIXED_KEY_LENGTH \
                or request.rolloverSizeBytes < 0:
            raise _Abort("INVALID_ARGUMENT",
                         f"invalid key-value table configuration: partitionCount {count} "
                         f"(1..{MAX_SEGMENTS_PER_STREAM}), primaryKeyLength "
                         f"{request.primaryKeyLength} (>= 1), secondaryKeyLength "
                         f"{request.secondaryKeyLength} (>= 0), total at most "
                         f"{MAX_FIXED_KEY_LENGTH}, rolloverSizeBytes "
                         f"{request.rolloverSizeBytes} (>= 0)")
        async with self._lock:
            if scope not in self._scopes:
                return status(status=status.SCOPE_NOT_FOUND)
            if (scope, name) in self._kvts:
                return status(status=status.TABLE_EXISTS)
            if self.segment_admin is not None and not await self._on_stores(
                    self.segment_admin.create_table_segment,
                    [(n, key_length) for n in self._kvt_segment_names(scope, name, count)]):
                return status(status=status.FAILURE)
            config = self._pb.KeyValueTableConfig()
            config.CopyFrom(request)
            self._kvts[(scope, name)] = config
        return status(status=status.SUCCESS)

    def _existing_kvt(self, info: Any) -> Any:
        config = self._kvts.get((info.scope, info.kvtName))
        if config is None:
            raise _Abort("NOT_FOUND",
                         f"key-value table {info.scope}/{info.kvtName} does not exist")
        return config

    @_rpc
    async def getCurrentSegmentsKeyValueTable(self, request: Any, context: Any) -> Any:
        """The table's partitions with their key-hash ranges (segment ids name the stream
        ``<table>``; their segments are ``<table>_kvtable``'s) and a delegation token for
        them; NOT_FOUND for an unknown table."""
        config = self._existing_kvt(request)
        scope, name = request.scope, request.kvtName
        ranges = [self._pb.SegmentRange(segmentId=self._segment_id_message(scope, name, i),
                                        minKey=low, maxKey=high)
                  for i, (low, high) in enumerate(key_ranges(config.partitionCount))]
        return self._pb.SegmentRanges(
            segmentRanges=ranges,
            delegationToken=self._delegation_token(scope, name + KVTABLE_SUFFIX))

    @_rpc
    async def listKeyValueTablesInScope(self, request: Any, context: Any) -> Any:
        """A page of the scope's tables (SCOPE_NOT_FOUND for a missing scope); an empty page
        ends the listing."""
        pb = self._pb
        response = pb.KVTablesInScopeResponse
        scope = request.scope.scope
        if scope not in self._scopes:
            return response(status=response.SCOPE_NOT_FOUND)
        page, token = self._page((name for s, name in self._kvts if s == scope),
                                 request.continuationToken.token)
        return response(kvtables=[pb.KeyValueTableInfo(scope=scope, kvtName=n) for n in page],
                        continuationToken=pb.ContinuationToken(token=token),
                        status=response.SUCCESS)

    @_rpc
    async def getKeyValueTableConfiguration(self, request: Any, context: Any) -> Any:
        """The configuration the table was created with, or TABLE_NOT_FOUND."""
        response = self._pb.KeyValueTableConfigResponse
        config = self._kvts.get((request.scope, request.kvtName))
        if config is None:
            return response(status=response.TABLE_NOT_FOUND)
        return response(config=config, status=response.SUCCESS)

    @_rpc
    async def deleteKeyValueTable(self, request: Any, context: Any) -> Any:
        """Deletes the table and its segments: SUCCESS, TABLE_NOT_FOUND, or FAILURE if a store
        failed."""
        status = self._pb.DeleteKVTableStatus
        scope, name = request.scope, request.kvtName
        async with self._lock:
            if (scope, name) not in self._kvts:
                return status(status=status.TABLE_NOT_FOUND)
            if not await self._delete_kvt(scope, name):
                return status(status=status.FAILURE)
        return status(status=status.SUCCESS)

    async def _delete_kvt(self, scope: str, name: str) -> bool:
        """Delete a table's segments, then the table (under the lock); False if a store
        failed (the table stays)."""
        config = self._kvts[(scope, name)]
        if self.segment_admin is not None and not await self._on_stores(
                self.segment_admin.delete_segment,
                [(n,) for n in self._kvt_segment_names(scope, name, config.partitionCount)]):
            return False
        del self._kvts[(scope, name)]
        return True

    # ---- RPCs: reader groups -----------------------------------------------------------------
    # The controller keeps a group's configuration, id and generation; the group's state (its
    # readers and their segments) is the clients' business, in the cluster's segments.

    @_rpc
    async def createReaderGroup(self, request: Any, context: Any) -> Any:
        """SUCCESS with the stored configuration (an existing group's, unchanged, as Java's
        controller answers), SCOPE_NOT_FOUND or INVALID_RG_NAME."""
        pb = self._pb
        status = pb.CreateReaderGroupResponse
        if not _valid_name(request.readerGroupName):
            return status(status=status.INVALID_RG_NAME)
        async with self._lock:
            if request.scope not in self._scopes:
                return status(status=status.SCOPE_NOT_FOUND)
            key = (request.scope, request.readerGroupName)
            if key not in self._reader_groups:
                config = pb.ReaderGroupConfiguration()
                config.CopyFrom(request)
                config.generation = 0
                config.readerGroupId = request.readerGroupId or str(uuid.uuid4())
                self._reader_groups[key] = config
            return status(status=status.SUCCESS, config=self._reader_groups[key])

    def _reader_group(self, info: Any) -> Any:
        """The group ``info`` names (its id too, when given), or None."""
        config = self._reader_groups.get((info.scope, info.readerGroup))
        if config is None or (info.readerGroupId and info.readerGroupId != config.readerGroupId):
            return None
        return config

    @_rpc
    async def getReaderGroupConfig(self, request: Any, context: Any) -> Any:
        """SUCCESS with the configuration, or RG_NOT_FOUND."""
        status = self._pb.ReaderGroupConfigResponse
        config = self._reader_group(request)
        if config is None:
            return status(status=status.RG_NOT_FOUND)
        return status(status=status.SUCCESS, config=config)

    @_rpc
    async def deleteReaderGroup(self, request: Any, context: Any) -> Any:
        """SUCCESS, or RG_NOT_FOUND (also for another id under that name)."""
        status = self._pb.DeleteReaderGroupStatus
        async with self._lock:
            if self._reader_group(request) is None:
                return status(status=status.RG_NOT_FOUND)
            del self._reader_groups[(request.scope, request.readerGroup)]
        return status(status=status.SUCCESS)

    @_rpc
    async def updateReaderGroup(self, request: Any, context: Any) -> Any:
        """Replace the configuration if the request's generation is the stored one: SUCCESS
        with the next generation; RG_NOT_FOUND; INVALID_CONFIG for another generation or id."""
        pb = self._pb
        status = pb.UpdateReaderGroupResponse
        async with self._lock:
            key = (request.scope, request.readerGroupName)
            current = self._reader_groups.get(key)
            if current is None:
                return status(status=status.RG_NOT_FOUND)
            if request.generation != current.generation or (
                    request.readerGroupId and request.readerGroupId != current.readerGroupId):
                return status(status=status.INVALID_CONFIG, generation=current.generation)
            config = pb.ReaderGroupConfiguration()
            config.CopyFrom(request)
            config.readerGroupId = current.readerGroupId
            config.generation = current.generation + 1
            self._reader_groups[key] = config
        return status(status=status.SUCCESS, generation=config.generation)

    # ---- in-process operations (the scale and truncateStream RPCs call them) ---------------

    async def scale_stream(self, scope: str, stream: str, sealed: Sequence[int],
                           new_ranges: Sequence[tuple[float, float]]) -> list[int]:
        """Replace the active segments ``sealed`` (ids) by new segments over ``new_ranges``,
        as Pravega's scale does: the new segments get the next unused numbers in a new epoch
        and are created on the stores before the old ones are sealed. The sealed segments must
        cover one contiguous key range and ``new_ranges`` must tile exactly that range.

        Returns the new segments' ids. Raises LookupError for an unknown stream, ValueError for
        a sealed stream or ranges that do not fit, and whatever the segment admin raises."""
        async with self._lock:
            record = self._streams.get((scope, stream))
            if record is None:
                raise LookupError(f"stream {scope}/{stream} does not exist")
            if record.sealed:
                raise ValueError(f"stream {scope}/{stream} is sealed")
            if not sealed or len(set(sealed)) != len(sealed) or \
                    not set(sealed) <= set(record.active):
                raise ValueError(f"{list(sealed)} are not distinct active segments")
            if not 1 <= len(new_ranges) <= MAX_SEGMENTS_PER_STREAM:
                raise ValueError("a scale needs 1..MAX_SEGMENTS_PER_STREAM new ranges")
            old = sorted((record.segments[i] for i in sealed), key=lambda s: s.min_key)
            low, high = old[0].min_key, old[-1].max_key
            _check_tiling([(s.min_key, s.max_key) for s in old], low, high)
            ranges = sorted((float(a), float(b)) for a, b in new_ranges)
            _check_tiling(ranges, low, high)
            epoch = record.epoch + 1
            first = self._next_number[(scope, stream)]
            created = [_Segment((epoch << 32) | (first + i), a, b,
                                tuple(s.segment_id for s in old
                                      if s.min_key < b and a < s.max_key))
                       for i, (a, b) in enumerate(ranges)]
            if self.segment_admin is not None:
                for action, targets in ((self.segment_admin.create_segment, created),
                                        (self.segment_admin.seal_segment, old)):
                    for target in targets:
                        await action(segment_name(scope, stream, target.segment_id))
            self._next_number[(scope, stream)] = first + len(created)
            record.epoch = epoch
            record.segments.update((s.segment_id, s) for s in created)
            kept = [record.segments[i] for i in record.active if i not in sealed]
            record.active = [s.segment_id for s in sorted(kept + created,
                                                          key=lambda s: s.min_key)]
            record.epochs.append((_now_ms(), list(record.active)))
            return [s.segment_id for s in created]

    async def truncate_stream(self, scope: str, stream: str, cut: Mapping[int, int]) -> None:
        """Truncate the stream at ``cut`` (segment id -> offset), a stream cut whose segments
        tile the key space: each cut segment is truncated at its offset on the stores, every
        segment before the cut is deleted, and ``getSegments`` then starts readers at the cut.

        Raises LookupError for an unknown stream, ValueError for a cut that is not a valid
        stream cut of this stream, and whatever the segment admin raises."""
        async with self._lock:
            record = self._streams.get((scope, stream))
            if record is None:
                raise LookupError(f"stream {scope}/{stream} does not exist")
            _check_cut(record, cut)
            doomed = [i for i in sorted(_ancestors(record, cut)) if not record.segments[i].deleted]
            meter = self._meter()
            if meter is not None:  # what retention needs to size stream cuts, kept
                for segment_id in doomed:
                    if record.segments[segment_id].length is None:
                        record.segments[segment_id].length = meter.segment_length(
                            segment_name(scope, stream, segment_id))
            if self.segment_admin is not None:
                for segment_id, offset in sorted(cut.items()):
                    await self.segment_admin.truncate_segment(
                        segment_name(scope, stream, segment_id), offset)
                for segment_id in doomed:
                    await self.segment_admin.delete_segment(
                        segment_name(scope, stream, segment_id))
            for segment_id in doomed:
                record.segments[segment_id].deleted = True
            record.head = dict(cut)


    # ---- stream policies: auto-scaling and retention -----------------------------------------

    async def _apply_policies(self) -> None:
        """Every ``policy_interval`` seconds: auto-scale, then enforce retention (a periodic
        timer, as Pravega's controller runs its auto-scale and retention workers)."""
        assert self.policy_interval is not None
        while True:
            await asyncio.sleep(self.policy_interval)
            try:
                await self.auto_scale()
                await self.enforce_retention()
            except Exception:  # noqa: BLE001 (the next round tries again)
                _LOG.exception("applying stream policies failed")

    def _meter(self) -> SegmentMeter | None:
        admin = self.segment_admin
        if hasattr(admin, "segment_rates") and hasattr(admin, "segment_length"):
            return admin  # type: ignore[return-value]
        return None

    async def auto_scale(self) -> list[tuple[str, str, list[int], list[int]]]:
        """One round of auto-scaling, as Pravega's controller scales on its segment stores'
        reports: for each open stream with a by-rate scaling policy, a segment whose measured
        rate (events/s, or KB/s) has stayed above ``targetRate`` for ``scale_window`` is split
        into ``scaleFactor`` equal key ranges; two neighbouring segments that have both stayed
        below it for the window, and together are still below it, are merged, unless the
        stream would have fewer than ``minNumSegments`` segments. Returns the scales made:
        ``(scope, stream, sealed ids, new ids)``."""
        meter = self._meter()
        if meter is None:
            return []
        done = []
        for (scope, stream), record in list(self._streams.items()):
            policy = record.config.scalingPolicy
            if record.sealed or policy.scaleType == policy.FIXED_NUM_SEGMENTS \
                    or policy.targetRate <= 0:
                continue
            scale = self._scale_due(scope, stream, record, meter)
            if scale is None:
                continue
            sealed, ranges = scale
            try:
                created = await self.scale_stream(scope, stream, sealed, ranges)
            except (LookupError, ValueError):
                continue  # the stream changed meanwhile: the next round looks again
            _LOG.info("auto-scaled %s/%s: %s -> %s", scope, stream, sealed, created)
            done.append((scope, stream, sealed, created))
        return done

    def _scale_due(self, scope: str, stream: str, record: _Stream, meter: SegmentMeter
                   ) -> tuple[list[int], list[tuple[float, float]]] | None:
        """Update the segments' temperatures; the split or merge due now, if any."""
        policy = record.config.scalingPolicy
        by_events = policy.scaleType == policy.BY_RATE_IN_EVENTS_PER_SEC
        now = self.clock()
        rates = {}
        for segment_id in record.active:
            events, nbytes = meter.segment_rates(segment_name(scope, stream, segment_id))
            rates[segment_id] = events if by_events else nbytes / _KB
            state = "hot" if rates[segment_id] > policy.targetRate else \
                "cold" if rates[segment_id] < policy.targetRate else "even"
            known = record.temperature.get(segment_id)
            if known is None or known[0] != state:
                record.temperature[segment_id] = (state, now)
        record.temperature = {i: record.temperature[i] for i in record.active}

        def lasted(segment_id: int, state: str) -> bool:
            known = record.temperature[segment_id]
            return known[0] == state and now - known[1] >= self.scale_window

        for segment_id in record.active:
            if lasted(segment_id, "hot") and policy.scaleFactor > 1:
                segment = record.segments[segment_id]
                low, high, parts = segment.min_key, segment.max_key, policy.scaleFactor
                bounds = [low + (high - low) * i / parts for i in range(parts)] + [high]
                return [segment_id], [(bounds[i], bounds[i + 1]) for i in range(parts)]
        if len(record.active) > max(1, policy.minNumSegments):
            for left, right in zip(record.active, record.active[1:]):
                if lasted(left, "cold") and lasted(right, "cold") \
                        and rates[left] + rates[right] < policy.targetRate:
                    return [left, right], [(record.segments[left].min_key,
                                            record.segments[right].max_key)]
        return None

    async def enforce_retention(self) -> list[tuple[str, str, dict[int, int]]]:
        """One round of retention, as Pravega's controller runs it: for each open stream with a
        retention policy, record a stream cut at the stream's tail (its time and the stream's
        size up to it), then truncate the stream at the latest recorded cut that keeps at
        least the limit: ``retentionParam`` bytes after it (by size), or a cut recorded at
        least ``retentionParam`` milliseconds ago (by time). Returns the truncations made:
        ``(scope, stream, cut)``."""
        meter = self._meter()
        if meter is None:
            return []
        done = []
        for (scope, stream), record in list(self._streams.items()):
            policy = record.config.retentionPolicy
            if record.sealed or policy.retentionType not in (policy.TIME, policy.SIZE) \
                    or policy.retentionParam <= 0:
                continue
            now = self.clock()
            tail = {i: meter.segment_length(segment_name(scope, stream, i))
                    for i in record.active}
            size = self._size_up_to(scope, stream, record, meter, tail)
            if not record.retention_cuts or record.retention_cuts[-1][2] != tail:
                record.retention_cuts.append((now, size, tail))  # nothing new: no new cut
            if policy.retentionType == policy.SIZE:
                eligible = [c for c in record.retention_cuts
                            if size - c[1] >= policy.retentionParam]
            else:
                eligible = [c for c in record.retention_cuts
                            if (now - c[0]) * 1000 >= policy.retentionParam]
            if not eligible:
                continue
            _, _, cut = eligible[-1]
            record.retention_cuts = record.retention_cuts[record.retention_cuts.index(
                eligible[-1]) + 1:]
            if cut == record.head:
                continue
            try:
                await self.truncate_stream(scope, stream, cut)
            except (LookupError, ValueError):
                continue
            done.append((scope, stream, cut))
        return done

    def _size_up_to(self, scope: str, stream: str, record: _Stream, meter: SegmentMeter,
                    cut: Mapping[int, int]) -> int:
        """The stream's bytes before ``cut``: every segment preceding it, whole, and the cut's
        offsets (sealed segments' lengths are learnt once and kept)."""
        size = sum(cut.values())
        for segment_id in _ancestors(record, cut):
            segment = record.segments[segment_id]
            if segment.length is None:
                segment.length = meter.segment_length(segment_name(scope, stream, segment_id))
            size += segment.length
        return size


# ---- command line ----------------------------------------------------------------------------

def _endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pravega_wire.server.controller",
        description="Serve an embedded Pravega controller (metadata only: no segment admin); "
                    "prints its URI, then serves until SIGINT/SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free one)")
    parser.add_argument("--stores", required=True, type=lambda s: [
        _endpoint(part) for part in s.split(",") if part.strip()],
        help="comma-separated host:port of the segment stores, in store-index order")
    parser.add_argument("--container-count", type=int, default=DEFAULT_CONTAINER_COUNT)
    parser.add_argument("--auth", action="store_true", help="require authentication")
    parser.add_argument("--credentials", action="append", default=None, metavar="USER:PASSWORD",
                        help="accepted Basic credentials (repeatable; default: any user)")
    parser.add_argument("--token-key", type=bytes.fromhex, default=None, metavar="HEX",
                        help="HMAC key for delegation tokens (default: random)")
    parser.add_argument("--token-ttl", type=float, default=DEFAULT_TOKEN_TTL)
    parser.add_argument("--list-page-size", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.credentials is not None:
        pairs = [c.partition(":") for c in args.credentials]
        if any(not sep or not user for user, sep, _ in pairs):
            parser.error("--credentials takes USER:PASSWORD")
        args.credentials = {user: password for user, _, password in pairs}
    return args


async def _serve(args: argparse.Namespace) -> None:
    controller = EmbeddedController(
        args.stores, host=args.host, port=args.port, auth=args.auth,
        container_count=args.container_count, credentials=args.credentials,
        token_key=args.token_key, token_ttl=args.token_ttl, list_page_size=args.list_page_size)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with controller:
        print(controller.uri, flush=True)
        await stopping.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
