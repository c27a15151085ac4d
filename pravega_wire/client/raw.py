"""Request/response over a pooled flow (Pravega's ``RawClient``, docs/protocol.md §8), and the
clients built on it: segment metadata and the conditional writer (§9.2).

Requests that make Pravega's segment store close the whole connection are never sent on a
shared (pooled) one, since every other flow on it would lose its pending reply:

- FlushToStorage and ListStorageChunks are admin-port commands: refused locally with
  :class:`~pravega_wire.errors.AdminCommandError`.
- A ReadSegment past the end of a sealed segment: a ReadSegment sent through a RawClient is
  preceded by a GetStreamSegmentInfo on the same flow, and one past the end of a sealed segment
  raises :class:`~pravega_wire.errors.BadOffsetError` instead of being sent.
- A table command for a stream segment: the store cannot be asked what type a segment is
  without the risk, so the first table command for a segment goes on a dedicated connection
  of its own; a table reply there marks the segment as a table segment (a bounded cache per
  client, forgotten on NoSuchSegment) and later table commands for it share the pooled
  connection; a close without a reply there is
  :class:`~pravega_wire.errors.WrongSegmentTypeError`.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from typing import Any, Callable, Dict, Optional, Tuple, Type, Union

from .. import commands as C
from ..errors import (ServerError, AdminCommandError, AuthenticationError, BadOffsetError,
                      ConnectionClosedError, ConnectionFailedError, IncompatibleVersionError,
                      NoSuchSegmentError, PravegaWireError, SegmentSealedError,
                      SegmentTruncatedError, TimeoutError, TokenExpiredError, WrongHostError,
                      WrongSegmentTypeError)
from ..flow import Flow
from ._common import (RetryPolicy, SegmentLocator, TokenProvider, _endpoint, as_locator,
                      event_bytes, no_token, open_flow)

__all__ = ["RawClient", "MetadataClient", "ConditionalWriter", "SegmentInfo", "ServerError",
           "DEFAULT_REQUEST_TIMEOUT"]

#: Bound, in seconds, on every request/reply exchange (and on opening the flow).
DEFAULT_REQUEST_TIMEOUT = 30.0

_ASYNC_TIMEOUTS = (asyncio.TimeoutError, TimeoutError)

#: Commands only a store's admin port serves; the data port closes the connection on them.
_ADMIN_COMMANDS = (C.FlushToStorage, C.ListStorageChunks)
#: Table commands: on a stream segment the store closes the connection without a reply.
_TABLE_COMMANDS = (C.CreateTableSegment, C.DeleteTableSegment, C.UpdateTableEntries,
                   C.RemoveTableKeys, C.ReadTable, C.ReadTableKeys, C.ReadTableEntries,
                   C.ReadTableEntriesDelta, C.GetTableSegmentInfo)
#: Replies that only a table segment gives to a table command (and that leave it existing).
_TABLE_REPLIES = (C.SegmentCreated, C.TableSegmentInfo,
                  C.TableEntriesUpdated, C.TableKeysRemoved, C.TableRead, C.TableKeysRead,
                  C.TableEntriesRead, C.TableEntriesDeltaRead, C.TableSegmentNotEmpty,
                  C.TableKeyDoesNotExist, C.TableKeyBadVersion)
#: Table segments a RawClient remembers (least recently used forgotten first).
TABLE_SEGMENT_CACHE = 1024


def _table_segment(command: Any) -> str:
    return command.segment_name if type(command) is C.GetTableSegmentInfo else command.segment


class _DedicatedExchange:
    """The listener of a dedicated connection carrying one request: its reply, or the close."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future):
        self.future = future

    def reply_received(self, reply: Any) -> None:
        if type(reply) not in (C.Hello, C.KeepAlive) and not self.future.done():
            self.future.set_result(reply)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if not self.future.done():
            self.future.set_exception(exc or ConnectionFailedError("connection closed"))


class RawClient:
    """Sends requests on one pooled flow and matches each reply to its request by request id.

    ``await request(CommandClass, **fields)`` fills in a fresh ``request_id`` and returns the
    reply: the success reply *or* a failure reply such as NoSuchSegment (the caller checks).
    WrongHost (:class:`~pravega_wire.errors.WrongHostError`), ErrorMessage
    (:class:`ServerError`), an incompatible Hello, a failure reply that matches no request and
    a lost connection close the client: every pending request fails with that error, and so
    does every later one. Every request is bounded by ``timeout`` (TimeoutError; the client
    stays open). :meth:`close` fails what is pending with ConnectionClosedError.

    Commands that would make the store close the shared connection are not sent on it (see the
    module's documentation): FlushToStorage / ListStorageChunks raise AdminCommandError, and
    the first table command for a segment goes on a dedicated connection (WrongSegmentTypeError
    if the store closes it without a reply).
    """

    def __init__(self, pool: Any, endpoint: Tuple[str, int], *,
                 timeout: float = DEFAULT_REQUEST_TIMEOUT):
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
                0 < timeout < float("inf")):
            raise ValueError(f"timeout must be a positive number, not {timeout!r}")
        self._pool = pool
        self.endpoint = _endpoint(endpoint)
        self.timeout = timeout
        self._sequence: Optional[Flow] = None  # the flow id and its request sequence
        self._flow: Any = None
        self._pending: Dict[int, asyncio.Future] = {}
        self._closed: Optional[BaseException] = None
        self._connecting: Optional[asyncio.Task] = None
        self._tables: "collections.OrderedDict[str, None]" = collections.OrderedDict()
        #: ``min(17, server's high version)`` once the server's Hello arrived.
        self.server_version: Optional[int] = None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def flow_id(self) -> Optional[int]:
        """The flow's id once connected."""
        return None if self._sequence is None else self._sequence.flow_id

    async def _connection(self) -> Any:
        if self._closed is not None:
            raise self._closed
        if self._flow is not None:
            return self._flow
        task = self._connecting
        if task is None:
            task = self._connecting = asyncio.ensure_future(self._open())
        await asyncio.wait((task,))  # a close() meanwhile ends it without cancelling us
        if self._closed is not None:
            raise self._closed
        return self._flow

    async def _open(self) -> None:
        try:
            flow = await asyncio.wait_for(open_flow(self._pool.open_flow(self.endpoint, self)),
                                          self.timeout)
        except asyncio.CancelledError:
            self._close(ConnectionClosedError(f"the client for {self.endpoint} was closed"))
            raise
        except _ASYNC_TIMEOUTS:
            self._close(ConnectionFailedError(
                f"no connection to {self.endpoint} within {self.timeout} s"))
            return
        except ConnectionFailedError as e:
            self._close(e)
            return
        except Exception as e:  # noqa: BLE001 - e.g. a pool that is closed or misused
            error = ConnectionFailedError(f"cannot reach {self.endpoint}: {e!r}")
            error.__cause__ = e
            self._close(error)
            return
        if self._closed is not None:  # the flow's Hello was incompatible, or close() raced
            flow.close()
            return
        self._flow = flow
        self._sequence = Flow(flow.flow_id)

    async def request(self, command_class: Type[Any], /, *, timeout: Optional[float] = None,
                      **fields: Any) -> Any:
        """Send ``command_class(request_id=<next>, **fields)`` and return its reply."""
        return await self.send_request(lambda rid: command_class(request_id=rid, **fields),
                                       timeout=timeout)

    async def send_request(self, make: Callable[[int], Any], *,
                           timeout: Optional[float] = None) -> Any:
        """Like :meth:`request` for a command built by ``make(request_id)`` (for commands
        whose request id is not a keyword of the usual name or position)."""
        flow = await self._connection()
        request_id = self._sequence.next_request_id()
        command = make(request_id)
        kind = type(command)
        if kind in _ADMIN_COMMANDS:
            raise AdminCommandError(f"{kind.__name__} is served by a segment store's admin port "
                                    f"only; on {self.endpoint} it would close the connection")
        bound = self.timeout if timeout is None else timeout
        if kind is C.ReadSegment:
            await self._check_read(flow, command, bound)
        if kind in _TABLE_COMMANDS:
            segment = _table_segment(command)
            if segment in self._tables:
                self._tables.move_to_end(segment)
            else:
                return await self._table_probe(segment, command, bound)
        reply = await self._exchange(flow, request_id, command, bound)
        if kind in _TABLE_COMMANDS and type(reply) in (C.NoSuchSegment, C.SegmentDeleted):
            self._tables.pop(_table_segment(command), None)  # gone: its name may come back
        return reply

    async def _exchange(self, flow: Any, request_id: int, command: Any, bound: float) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            flow.send(command)
        except ConnectionFailedError as e:
            self._pending.pop(request_id, None)
            self._close(e)
            raise
        except BaseException:
            self._pending.pop(request_id, None)
            raise
        try:
            return await asyncio.wait_for(future, bound)
        except _ASYNC_TIMEOUTS:
            raise TimeoutError(f"no reply to {type(command).__name__} from {self.endpoint} "
                               f"within {bound} s") from None
        finally:
            self._pending.pop(request_id, None)

    async def _check_read(self, flow: Any, read: Any, bound: float) -> None:
        """Raise BadOffsetError if ``read`` lies past the end of a sealed segment (the store
        would close the connection); any other answer lets the read go."""
        request_id = self._sequence.next_request_id()
        info = await self._exchange(flow, request_id, C.GetStreamSegmentInfo(
            request_id, read.segment, read.delegation_token), bound)
        if (type(info) is C.StreamSegmentInfo and info.is_sealed
                and read.offset > info.write_offset):
            raise BadOffsetError(f"cannot read {read.segment} at {read.offset}: past the end "
                                 f"({info.write_offset}) of the sealed segment",
                                 start_offset=info.start_offset, offset=read.offset)

    async def _table_probe(self, segment: str, command: Any, bound: float) -> Any:
        """Send a table command for a segment not known to be a table segment on a dedicated
        connection: a table reply marks the segment; a close without reply is
        WrongSegmentTypeError."""
        future = asyncio.get_running_loop().create_future()
        name = type(command).__name__
        try:
            flow = await asyncio.wait_for(open_flow(self._pool.open_dedicated_flow(
                self.endpoint, _DedicatedExchange(future))), bound)
        except _ASYNC_TIMEOUTS:
            raise ConnectionFailedError(f"no connection to {self.endpoint} within {bound} s "
                                        f"for {name}") from None
        try:
            flow.send(command)
            reply = await asyncio.wait_for(future, bound)
        except _ASYNC_TIMEOUTS:
            raise TimeoutError(f"no reply to {name} from {self.endpoint} within {bound} s"
                               ) from None
        except ConnectionClosedError:
            raise
        except ConnectionFailedError as e:
            raise WrongSegmentTypeError(
                f"{self.endpoint} closed the connection on {name} for {segment} without a "
                f"reply: it is not a table segment (or the request is malformed)") from e
        finally:
            flow.close()
        if type(reply) is C.Hello:  # pragma: no cover - filtered by the listener
            return reply
        if isinstance(reply, _TABLE_REPLIES):
            self._tables[segment] = None
            while len(self._tables) > TABLE_SEGMENT_CACHE:
                self._tables.popitem(last=False)
        return reply

    # ---- the flow's listener ----------------------------------------------------------------

    def reply_received(self, reply: Any) -> None:
        t = type(reply)
        if t is C.Hello:
            mismatch = C.hello_mismatch(reply)
            if mismatch is not None:
                self._close(IncompatibleVersionError(f"{self.endpoint} {mismatch}"))
            else:
                self.server_version = min(C.WIRE_VERSION, reply.high_version)
            return
        if t is C.WrongHost:
            self._close(WrongHostError(f"{reply.segment} is not on {self.endpoint}"))
            return
        if t is C.ErrorMessage:
            self._close(ServerError(
                f"{self.endpoint} failed a request on {reply.segment}: {reply.message}",
                segment=reply.segment, error_code=reply.error_code))
            return
        future = self._pending.pop(reply.request_id, None)
        if future is not None:
            if not future.done():
                future.set_result(reply)
        elif reply.is_failure:
            self._close(ConnectionFailedError(
                f"{self.endpoint} sent a failure reply that matches no request: {reply!r}"))

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._flow = None  # dead: nothing to close
        if isinstance(exc, ConnectionFailedError):
            error: BaseException = exc
        else:
            error = ConnectionFailedError(f"connection to {self.endpoint} lost: {exc!r}")
            error.__cause__ = exc
        self._close(error)

    def _close(self, error: BaseException) -> None:
        if self._closed is None:
            self._closed = error
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        flow, self._flow = self._flow, None
        if flow is not None:
            flow.close()

    async def close(self) -> None:
        """Fail pending requests with ConnectionClosedError and release the flow (the pooled
        connection stays open). Idempotent."""
        self._close(ConnectionClosedError(f"the client for {self.endpoint} was closed"))
        task = self._connecting
        if task is not None and not task.done():
            task.cancel()

    def __repr__(self) -> str:
        state = "closed" if self._closed is not None else (
            "open" if self._flow is not None else "new")
        return f"<RawClient {self.endpoint} {state} pending={len(self._pending)}>"


class SegmentInfo:
    """What GetStreamSegmentInfo says about a segment (:meth:`missing`: a segment that does not
    exist)."""

    __slots__ = ("segment", "exists", "sealed", "deleted", "last_modified", "length",
                 "start_offset")

    @classmethod
    def missing(cls, segment: str) -> "SegmentInfo":
        """A segment that does not exist (or was deleted: Pravega's store answers both with
        NoSuchSegment): ``exists=False``, length and start 0."""
        return cls(C.StreamSegmentInfo(-1, segment, False, False, False, 0, 0, 0))

    def __init__(self, reply: Any):
        self.segment: str = reply.segment_name
        self.exists: bool = reply.exists
        self.sealed: bool = reply.is_sealed
        self.deleted: bool = reply.is_deleted
        self.last_modified: int = reply.last_modified
        self.length: int = reply.write_offset
        self.start_offset: int = reply.start_offset

    def __repr__(self) -> str:
        return (f"SegmentInfo({self.segment!r}, exists={self.exists}, sealed={self.sealed}, "
                f"start={self.start_offset}, length={self.length})")


def _retryable(e: BaseException) -> bool:
    """Connection trouble worth another attempt on a fresh connection: not a deliberate close
    (of this client or of the pool) and not an incompatible server."""
    if isinstance(e, (ConnectionClosedError, IncompatibleVersionError)):
        return False
    return isinstance(e, (ConnectionFailedError, WrongHostError, TimeoutError, TokenExpiredError))


def _reply_error(segment: str, reply: Any) -> PravegaWireError:
    """The typed error for a reply that is not the one a request expects."""
    t = type(reply)
    if t is C.NoSuchSegment:
        return NoSuchSegmentError(f"segment {segment} does not exist")
    if t is C.SegmentIsSealed:
        return SegmentSealedError(f"segment {segment} is sealed")
    if t is C.SegmentIsTruncated:
        return SegmentTruncatedError(f"segment {segment} is truncated at {reply.start_offset}",
                                     start_offset=reply.start_offset)
    if t is C.AuthTokenCheckFailed:
        if reply.error_code == C.AuthTokenCheckFailed.TOKEN_EXPIRED:
            return TokenExpiredError(f"the delegation token for {segment} expired")
        return AuthenticationError(f"the segment store rejected the token for {segment} "
                                   f"(code {reply.error_code})")
    if t is C.OperationUnsupported:
        return ServerError(f"the segment store does not support {reply.operation_name}",
                           segment=segment)
    return ConnectionFailedError(f"unexpected reply for {segment}: {reply!r}")


class _SegmentClientBase:
    """A RawClient per store, re-created (and the endpoint re-resolved) after failures."""

    def __init__(self, pool: Any, where: Any, *, token_provider: TokenProvider = no_token,
                 retry: RetryPolicy = RetryPolicy(), timeout: float = DEFAULT_REQUEST_TIMEOUT):
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {retry!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
                0 < timeout < float("inf")):
            raise ValueError(f"timeout must be a positive number, not {timeout!r}")
        self._pool = pool
        self._locator: SegmentLocator = as_locator(where)
        self._tokens = token_provider
        self._retry = retry
        self._timeout = timeout
        self._clients: Dict[Tuple[str, int], RawClient] = {}
        self._closed = False

    async def _client(self, segment: str) -> RawClient:
        endpoint = _endpoint(await self._locator.get_endpoint(segment))
        if self._closed:
            raise ConnectionClosedError(f"{type(self).__name__} is closed")
        client = self._clients.get(endpoint)
        if client is None or client.closed:
            client = RawClient(self._pool, endpoint, timeout=self._timeout)
            self._clients[endpoint] = client
        return client

    async def _call(self, segment: str, command_class: Type[Any],
                    expected: Union[Type[Any], Tuple[Type[Any], ...]], /,
                    **fields: Any) -> Any:
        """Send ``command_class`` (with a token) and return the reply if it is one of
        ``expected``; connection trouble, WrongHost and expired tokens are retried with the
        policy's backoff on a fresh connection; any other reply is a typed error."""
        expired = False

        async def attempt() -> Any:
            nonlocal expired
            token = await self._tokens(segment, expired)
            expired = False
            client = await self._client(segment)
            try:
                reply = await client.request(command_class, delegation_token=token, **fields)
            except (WrongHostError, ConnectionFailedError):
                self._locator.invalidate(segment)
                raise
            if isinstance(reply, expected):
                return reply
            error = _reply_error(segment, reply)
            if isinstance(error, TokenExpiredError):
                expired = True
            raise error

        return await self._retry.run(attempt, retry_on=_retryable,
                                     what=f"{command_class.__name__} on {segment}")

    async def close(self) -> None:
        """Close every RawClient (pending requests fail with ConnectionClosedError); later
        calls fail with ConnectionClosedError. Idempotent."""
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


class MetadataClient(_SegmentClientBase):
    """Segment metadata: info, attributes (with compare-and-set), create, seal, truncate,
    delete (docs/protocol.md §8). Connection trouble, WrongHost and expired tokens are retried with
    backoff on a fresh connection (RetriesExhaustedError when the policy gives up); other
    failure replies raise at once as typed errors (NoSuchSegmentError, SegmentSealedError,
    SegmentTruncatedError, AuthenticationError, ServerError)."""

    async def get_info(self, segment: str) -> SegmentInfo:
        """The segment's length, start offset and state (``exists=False`` for a missing or
        deleted segment: Pravega's store answers NoSuchSegment, :meth:`SegmentInfo.missing`)."""
        reply = await self._call(segment, C.GetStreamSegmentInfo,
                                 (C.StreamSegmentInfo, C.NoSuchSegment), segment_name=segment)
        if type(reply) is C.NoSuchSegment:
            return SegmentInfo.missing(segment)
        return SegmentInfo(reply)

    async def get_attribute(self, segment: str, attribute_id: uuid.UUID) -> int:
        """The attribute's value, or ``NULL_ATTRIBUTE_VALUE`` (Long.MIN_VALUE) when unset."""
        reply = await self._call(segment, C.GetSegmentAttribute, C.SegmentAttribute,
                                 segment_name=segment, attribute_id=attribute_id)
        return reply.value

    async def compare_and_set_attribute(self, segment: str, attribute_id: uuid.UUID,
                                        expected: int, new: int) -> bool:
        """Set the attribute to ``new`` if it is ``expected`` now (``NULL_ATTRIBUTE_VALUE``:
        unset); False if it was not."""
        reply = await self._call(segment, C.UpdateSegmentAttribute, C.SegmentAttributeUpdated,
                                 segment_name=segment, attribute_id=attribute_id,
                                 new_value=new, expected_value=expected)
        return reply.success

    async def create(self, segment: str, *, target_rate: int = 0,
                     scale_type: int = C.NO_SCALE) -> bool:
        """Create the segment; False if it already exists."""
        reply = await self._call(segment, C.CreateSegment,
                                 (C.SegmentCreated, C.SegmentAlreadyExists),
                                 segment=segment, target_rate=target_rate, scale_type=scale_type)
        return type(reply) is C.SegmentCreated

    async def seal(self, segment: str) -> None:
        """Seal the segment; sealing a sealed segment succeeds."""
        try:
            await self._call(segment, C.SealSegment, C.SegmentSealed, segment=segment)
        except SegmentSealedError:
            return

    async def truncate(self, segment: str, offset: int) -> None:
        """Truncate at ``offset``; a segment already truncated at or past it counts as done
        (the store answers SegmentIsTruncated and changes nothing). An ``offset`` beyond the
        segment's length raises :class:`~pravega_wire.errors.BadOffsetError` (its
        ``start_offset`` and ``offset``): the store answers that with SegmentIsTruncated too,
        and leaves the segment unchanged. A sealed segment can be truncated."""
        reply = await self._call(segment, C.TruncateSegment,
                                 (C.SegmentTruncated, C.SegmentIsTruncated), segment=segment,
                                 truncation_offset=offset)
        if type(reply) is C.SegmentIsTruncated and offset > reply.start_offset:
            raise BadOffsetError(f"cannot truncate {segment} at {offset}: beyond its length "
                                 f"(it starts at {reply.start_offset})",
                                 start_offset=reply.start_offset, offset=offset)

    async def delete(self, segment: str) -> bool:
        """Delete the segment; False if it did not exist."""
        try:
            await self._call(segment, C.DeleteSegment, C.SegmentDeleted, segment=segment)
        except NoSuchSegmentError:
            return False
        return True


class ConditionalWriter(_SegmentClientBase):
    """Appends that succeed only at an expected segment length (docs/protocol.md §9.2).

    ``await write(data, expected_offset)`` is True when the event was appended at that offset
    (as an Event record: 8-byte header + data), False when the segment had another length (the
    ConditionalCheckFailed reply; the connection is kept). Connection trouble, WrongHost,
    InvalidEventNumber and expired tokens are retried with backoff; a retried write that the
    store already applied is recognised by its event number in AppendSetup and not written
    twice. Writes are serialised.
    """

    def __init__(self, pool: Any, where: Any, segment: str, *,
                 writer_id: Optional[uuid.UUID] = None, **kwargs: Any):
        super().__init__(pool, where, **kwargs)
        self.segment = segment
        self.writer_id = writer_id or uuid.uuid4()
        self._event_number = 0
        self._set_up_on: Optional[RawClient] = None  # the client SetupAppend succeeded on
        self._lock = asyncio.Lock()

    async def write(self, data: Any, expected_offset: int) -> bool:
        """Append ``data`` (bytes-like, at most 8 MiB) if the segment is ``expected_offset``
        bytes long now: True if it was, False if not. Raises NoSuchSegmentError,
        SegmentSealedError, AuthenticationError, ServerError, or RetriesExhaustedError."""
        event = C.Event(event_bytes(data))
        if type(expected_offset) is not int or expected_offset < 0:
            raise ValueError(f"expected_offset must be an int >= 0, not {expected_offset!r}")
        async with self._lock:
            self._event_number += 1
            number = self._event_number
            expired = False

            async def attempt() -> Any:
                nonlocal expired
                token = await self._tokens(self.segment, expired)
                expired = False
                client = await self._client(self.segment)
                try:
                    if client is not self._set_up_on:
                        self._set_up_on = None
                        setup = await client.request(C.SetupAppend, writer_id=self.writer_id,
                                                     segment=self.segment,
                                                     delegation_token=token)
                        if type(setup) is not C.AppendSetup:
                            raise await self._failed(client, setup)
                        self._set_up_on = client
                        if setup.last_event_number >= number:
                            return True  # a retry of a write the store already applied
                    reply = await client.send_request(lambda rid: C.ConditionalAppend(
                        self.writer_id, number, expected_offset, event, rid))
                except (WrongHostError, ConnectionFailedError, TimeoutError):
                    self._set_up_on = None
                    self._locator.invalidate(self.segment)
                    raise
                if type(reply) is C.DataAppended:
                    return True
                if type(reply) is C.ConditionalCheckFailed:
                    return False
                raise await self._failed(client, reply)

            def retryable(e: BaseException) -> bool:
                if isinstance(e, TokenExpiredError):
                    nonlocal expired
                    expired = True
                return _retryable(e)

            return await self._retry.run(attempt, retry_on=retryable,
                                         what=f"conditional append to {self.segment}")

    async def _failed(self, client: RawClient, reply: Any) -> PravegaWireError:
        """Any reply but success or check-failed: drop the connection (a fresh one starts a
        fresh writer session); the error to raise (retried if it is connection trouble)."""
        self._set_up_on = None
        await client.close()
        if type(reply) is C.InvalidEventNumber:
            self._locator.invalidate(self.segment)
            return ConnectionFailedError(f"conditional append to {self.segment}: {reply!r}")
        return _reply_error(self.segment, reply)
