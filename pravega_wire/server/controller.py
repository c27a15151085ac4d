"""An embedded Pravega controller: the controller's gRPC service (CONTROLLER.md) over an
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
:func:`verify_token`. Without auth every delegation token is ``""``.

gRPC is an optional dependency: this module imports it only when a controller is started, so the
token helpers work without it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal, Protocol, TypeVar

from pravega_wire.server.placement import DEFAULT_CONTAINER_COUNT, store_index_of

__all__ = [
    "DEFAULT_CONTAINER_COUNT", "DEFAULT_TOKEN_TTL", "MAX_SEGMENTS_PER_STREAM", "SegmentAdmin",
    "EmbeddedController", "key_ranges", "segment_name", "verify_token", "main",
]

_LOG = logging.getLogger(__name__)

#: Lifetime in seconds of the delegation tokens the controller issues (Pravega's default).
DEFAULT_TOKEN_TTL = 600

#: Most segments one ``createStream`` or scale may create (an emulator limit, not Pravega's).
MAX_SEGMENTS_PER_STREAM = 10_000

#: Scope and stream names: Pravega's user names (letters, digits, ``.`` and ``-``), optionally
#: behind the ``_`` prefix of internal names, at most 255 characters.
_NAME_RE = re.compile(r"_?[A-Za-z0-9.\-]{1,254}")

_JWT_HEADER = {"alg": "HS256", "typ": "JWT"}

#: Characters escaped in a token body so that its base64 is the same in the standard and the
#: URL-safe alphabet (only ``>``, ``?`` and ``~`` can produce ``+``/``/`` or ``-``/``_`` from
#: ASCII JSON). The Rust client decodes the body with the *standard* alphabet.
_JSON_BASE64_SAFE = str.maketrans({">": "\\u003e", "?": "\\u003f", "~": "\\u007e"})

TokenCheck = Literal["ok", "expired", "invalid"]


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


# ---- names, ids, key ranges ------------------------------------------------------------------

def segment_name(scope: str, stream: str, segment_id: int) -> str:
    """The qualified name of a segment, ``<scope>/<stream>/<number>.#epoch.<epoch>``, from its
    64-bit id ``(epoch << 32) | number`` (CONTROLLER.md §4.2; the epoch is always written)."""
    return f"{scope}/{stream}/{segment_id & 0xFFFFFFFF}.#epoch.{segment_id >> 32}"


def key_ranges(count: int) -> list[tuple[float, float]]:
    """The routing-key ranges of a new stream with ``count`` segments: segment ``i`` covers
    ``[i/count, (i+1)/count)``, each bound one division (never ``i * (1/count)``) and the last
    upper bound exactly 1.0, as the Rust client requires (CONTROLLER.md §4.3)."""
    if count < 1:
        raise ValueError("a stream needs at least one segment")
    bounds = [i / count for i in range(count)] + [1.0]
    return [(bounds[i], bounds[i + 1]) for i in range(count)]


def _published_host(host: str) -> str:
    """A host as the Rust client can parse and resolve it (CONTROLLER.md §4.4): ``localhost``
    becomes ``127.0.0.1``; an IPv6 literal is bracketed with upper-case hex."""
    if host == "localhost":
        return "127.0.0.1"
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return f"[{bare.upper()}]" if ":" in bare else host


# ---- delegation tokens -----------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    """Strict base64url decoding of an unpadded JWT part (``binascii.Error`` if malformed)."""
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)


def _token_body(claims: Mapping[str, Any]) -> bytes:
    """JSON of ``claims`` whose base64 is alphabet-neutral and needs no padding."""
    text = json.dumps(claims, separators=(",", ":"), ensure_ascii=True).translate(
        _JSON_BASE64_SAFE)
    return (text + " " * (-len(text) % 3)).encode("ascii")


def _issue_token(key: bytes, scope: str, stream: str, ttl: float, now: float) -> str:
    issued = int(now)
    claims = {"sub": f"{scope}/{stream}", "aud": "segmentstore", "scope": scope,
              "stream": stream, "iat": issued, "exp": issued + max(1, int(ttl))}
    signing_input = _b64url(_token_body(_JWT_HEADER)) + "." + _b64url(_token_body(claims))
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def verify_token(token: str, key: bytes, now: float | None = None, *,
                 segment: str | None = None) -> TokenCheck:
    """Check a delegation token issued by an :class:`EmbeddedController` holding ``key``.

    Returns ``"ok"``, ``"expired"`` (well formed and correctly signed, but ``exp`` is not after
    ``now``, default the current time), or ``"invalid"`` (anything else: not three base64url
    parts, a bad signature, a body that is not a JSON object with an integer ``exp``). With
    ``segment``, a token also counts as invalid unless it was issued for that segment's stream
    (the segment's name starts with ``<scope>/<stream>/``; transaction, transient and table
    segments of the stream included).

    A segment store maps ``"invalid"`` to AuthTokenCheckFailed with TOKEN_CHECK_FAILED and
    ``"expired"`` to TOKEN_EXPIRED; it should accept ``""`` only when auth is off.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return "invalid"
    header, body, signature = parts
    try:
        expected = hmac.new(key, f"{header}.{body}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url_decode(signature)):
            return "invalid"
        claims = json.loads(_b64url_decode(body))
        header_claims = json.loads(_b64url_decode(header))
    except (UnicodeError, binascii.Error, ValueError):
        return "invalid"
    if not isinstance(claims, dict) or not isinstance(header_claims, dict):
        return "invalid"
    expiry = claims.get("exp")
    if header_claims.get("alg") != "HS256" or type(expiry) is not int:
        return "invalid"
    if segment is not None:
        scope, stream = claims.get("scope"), claims.get("stream")
        if (not isinstance(scope, str) or not isinstance(stream, str)
                or not segment.startswith(f"{scope}/{stream}/")):
            return "invalid"
    return "ok" if expiry > (time.time() if now is None else now) else "expired"


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
    CONTROLLER.md pitfall 4)."""

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
    ``list_page_size`` is the page size of ``listScopes``/``listStreamsInScope``.

    Use ``async with EmbeddedController(...) as controller:`` or ``await start()`` /
    ``await stop()``; after starting, :attr:`port` and :attr:`uri` tell where it listens.
    Besides the RPCs it offers :meth:`scale_stream` and :meth:`truncate_stream`, which the
    Python clients do not call over gRPC but tests use to create successors and truncated heads.
    """

    def __init__(self, store_endpoints: Sequence[tuple[str, int]], *, host: str = "127.0.0.1",
                 port: int = 0, segment_admin: SegmentAdmin | None = None, auth: bool = False,
                 container_count: int = DEFAULT_CONTAINER_COUNT,
                 credentials: Mapping[str, str] | None = None, token_key: bytes | None = None,
                 token_ttl: float = DEFAULT_TOKEN_TTL, tls: tuple[bytes, bytes] | None = None,
                 list_page_size: int = 1000):
        if not store_endpoints:
            raise ValueError("the controller needs at least one segment store endpoint")
        if container_count <= 0 or list_page_size <= 0 or token_ttl <= 0:
            raise ValueError("container_count, list_page_size and token_ttl must be positive")
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
        self._scopes: set[str] = set()
        self._streams: dict[tuple[str, str], _Stream] = {}
        #: Next unused segment number per stream name, kept across delete and re-create.
        self._next_number: dict[tuple[str, str], int] = {}
        self._mutex: asyncio.Lock | None = None
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

    async def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving (RPCs in progress get ``grace`` seconds to finish)."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

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
            if any(scope == request.scope for scope, _ in self._streams):
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
        page and the same token, so that a client's listing terminates (CONTROLLER.md §4.7)."""
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
                head={s.segment_id: 0 for s in segments})
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
        pb = self._pb
        scope = request.scope.scope
        if scope not in self._scopes:
            return pb.StreamsInScopeResponse(
                continuationToken=pb.ContinuationToken(token=request.continuationToken.token),
                status=pb.StreamsInScopeResponse.SCOPE_NOT_FOUND)
        page, token = self._page((st for sc, st in self._streams if sc == scope),
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
        """The head of the stream (the timestamp is ignored, like Pravega's controller): the
        epoch-0 segments at offset 0, or the last truncation cut."""
        pb = self._pb
        info = request.streamInfo
        record = self._existing_stream(info)
        locations = [pb.SegmentsAtTime.SegmentLocation(
            segmentId=self._segment_id_message(info.scope, info.stream, segment_id),
            offset=offset)
            for segment_id, offset in sorted(
                record.head.items(), key=lambda item: record.segments[item[0]].min_key)]
        token = self.issue_token(info.scope, info.stream) if self._wants_token(info) else ""
        return pb.SegmentsAtTime(segments=locations, delegationToken=token)

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

    # ---- operations outside the gRPC subset --------------------------------------------------

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
            if not cut or any(i not in record.segments or record.segments[i].deleted or o < 0
                              for i, o in cut.items()):
                raise ValueError(f"{dict(cut)} is not a cut of live segments, offsets >= 0")
            members = sorted((record.segments[i] for i in cut), key=lambda s: s.min_key)
            _check_tiling([(s.min_key, s.max_key) for s in members], 0.0, 1.0)
            before: set[int] = set()
            pending = [p for i in cut for p in record.segments[i].predecessors]
            while pending:
                segment_id = pending.pop()
                if segment_id not in before:
                    before.add(segment_id)
                    pending.extend(record.segments[segment_id].predecessors)
            doomed = [i for i in sorted(before) if not record.segments[i].deleted]
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
