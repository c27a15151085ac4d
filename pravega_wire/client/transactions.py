"""TransactionalEventStreamWriter: events written to a stream all at once or not at all, as
Java's ``TransactionalEventStreamWriter`` writes them.

:meth:`TransactionalEventStreamWriter.begin` asks the controller for a transaction: one
transaction segment (``<segment>#transaction.<id hex>``) beside each segment of the stream's
current epoch. :meth:`Transaction.write` routes each event by routing key, as a stream writer
does, to the transaction segment of the segment that holds the key; readers of the stream see
none of it until :meth:`Transaction.commit` (every event stored first, then the controller
merges the transaction segments into the stream's segments); :meth:`Transaction.abort` drops it
all. While a transaction is open the writer pings it (``pingTransaction``) every
``ping_interval`` seconds, so that the controller does not abort it when its lease runs out;
a transaction the controller ended anyway (a lost lease) fails its next write or commit with
:class:`TxnFailedError`.

A transaction stays writable and committable when the stream scales while it is open: its
transaction segments belong to the epoch it began in, and the controller commits it into that
epoch's key ranges after the stream's current events (Pravega's rolling transactions), so each
key's events are read in the order of the plain writes and the commits.

::

    async with TransactionalEventStreamWriter(pool, controller, "scope", "stream") as writer:
        txn = await writer.begin()
        await txn.write(b"debit", routing_key="account-7")
        await txn.write(b"credit", routing_key="account-9")
        await txn.commit()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from ..errors import PravegaWireError
from ..naming import txn_epoch
from .controller import ControllerError, SegmentWithRange
from .controller import Transaction as TransactionInfo
from .events import KeyRouter, writer_options
from .stream import _token_provider
from .writer import EventWriterConfig, SegmentWriter

__all__ = ["TransactionalEventStreamWriter", "Transaction", "TxnFailedError",
           "DEFAULT_LEASE_MS"]

log = logging.getLogger(__name__)

#: The lease a transaction is created with unless the writer is told otherwise (milliseconds).
DEFAULT_LEASE_MS = 30_000


class TxnFailedError(PravegaWireError):
    """The transaction cannot be written to or committed: it is no longer open (committed,
    aborted, or aborted by the controller when its lease ran out), or one of its segment
    writers failed. ``status`` is the transaction's state as last known (``"ABORTED"``, ...)."""

    def __init__(self, message: str, status: str = "UNKNOWN"):
        super().__init__(message)
        self.status = status


class Transaction:
    """An open transaction of a :class:`TransactionalEventStreamWriter` (or one found again
    with :meth:`TransactionalEventStreamWriter.get_txn`)."""

    def __init__(self, owner: TransactionalEventStreamWriter, info: TransactionInfo):
        self._owner = owner
        self.info = info
        self._router = KeyRouter(info.segments)
        self._names = info.segment_names
        self._writers: dict[int, SegmentWriter] = {}
        #: ``"OPEN"`` until this handle commits or aborts it, or learns it ended.
        self.status = "OPEN"

    @property
    def txn_id(self) -> uuid.UUID:
        return self.info.txn_id

    @property
    def segments(self) -> tuple[SegmentWithRange, ...]:
        """The stream's segments the transaction writes beside."""
        return self.info.segments

    def _check_open(self) -> None:
        if self.status != "OPEN":
            raise TxnFailedError(f"transaction {self.txn_id} is {self.status}", self.status)

    async def write(self, event: Any, routing_key: str | None = None) -> SegmentWithRange:
        """Write one event (bytes-like, at most 8 MiB) into the transaction; returns the
        segment whose transaction segment it went to."""
        self._check_open()
        segment = self._router.segment_for(routing_key)
        try:
            writer = self._writers.get(segment.segment_id)
            if writer is None:
                writer = await self._open_writer(segment.segment_id)
            await writer.write(event)
        except PravegaWireError as exc:
            raise TxnFailedError(f"transaction {self.txn_id}: {exc}", self.status) from exc
        return segment

    async def _open_writer(self, segment_id: int) -> SegmentWriter:
        """A connected writer for the transaction segment beside ``segment_id``. (Connected
        before its first event, so that a flush soon after finds it ready and closes its
        append block at once, rather than when the block's timer ends it.)"""
        writer = await SegmentWriter.open(self._owner._pool, self._owner._controller,
                                          self._names[segment_id], **self._owner._options)
        current = self._writers.setdefault(segment_id, writer)
        if current is not writer:  # a concurrent write opened one first
            await writer.close(flush=False)
        self._check_open()
        return current

    async def flush(self) -> None:
        """Wait until every event written so far is stored in the transaction segments."""
        self._check_open()
        results = await asyncio.gather(*(w.flush() for w in self._writers.values()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, PravegaWireError):
                    raise TxnFailedError(f"transaction {self.txn_id}: {result}",
                                         self.status) from result
                raise result

    async def commit(self, *, timestamp: int = 0) -> None:
        """Store every event written, then ask the controller to commit: the events join the
        stream, each segment's in the order written. (A real controller merges in the
        background: :meth:`check_status` says when it is ``COMMITTED``.) Raises TxnFailedError
        when the transaction is not open any more or the controller refuses."""
        await self.flush()
        await self._finish("commit", timestamp=timestamp)

    async def abort(self) -> None:
        """Drop the transaction: none of its events reach the stream."""
        self._check_open()
        await self._finish("abort")

    async def _finish(self, action: str, **options: Any) -> None:
        info, controller = self.info, self._owner._controller
        self._owner._forget(self)
        await self._release()
        try:
            if action == "commit":
                await controller.commit_transaction(info.scope, info.stream, info.txn_id,
                                                    writer_id=self._owner.writer_id,
                                                    **options)
            else:
                await controller.abort_transaction(info.scope, info.stream, info.txn_id)
        except ControllerError as exc:
            self.status = await self._known_status()
            raise TxnFailedError(f"{action} of transaction {info.txn_id} refused: {exc}",
                                 self.status) from exc
        self.status = "COMMITTED" if action == "commit" else "ABORTED"

    async def _known_status(self) -> str:
        with contextlib.suppress(PravegaWireError):
            return await self.check_status()
        return "UNKNOWN"

    async def check_status(self) -> str:
        """The controller's view: ``"OPEN"``, ``"COMMITTING"``, ``"COMMITTED"``,
        ``"ABORTING"``, ``"ABORTED"`` or ``"UNKNOWN"``."""
        info = self.info
        return await self._owner._controller.check_transaction_state(info.scope, info.stream,
                                                                     info.txn_id)

    def _lost(self, status: str) -> None:
        """The controller ended the transaction (a ping said ``status``)."""
        if self.status == "OPEN":
            self.status = status

    async def _release(self) -> None:
        writers, self._writers = list(self._writers.values()), {}
        await asyncio.gather(*(w.close(flush=False) for w in writers), return_exceptions=True)

    def __repr__(self) -> str:
        return f"<Transaction {self.txn_id} on {self.info.scope}/{self.info.stream} {self.status}>"


class TransactionalEventStreamWriter:
    """Opens transactions on stream ``scope/stream`` and keeps them open.

    ``controller`` is a :class:`~pravega_wire.client.controller.ControllerClient`; transactions
    get a ``lease_ms`` lease and are pinged every ``ping_interval`` seconds (default: a third of
    the lease) while open. ``config`` goes to every segment writer; with ``auth`` they share one
    cached delegation token. ``writer_id`` names this writer to the controller on commit. Use
    ``async with`` or :meth:`close` (which stops pinging; open transactions then run out of
    lease unless another writer commits or aborts them).
    """

    def __init__(self, pool: Any, controller: Any, scope: str, stream: str, *,
                 lease_ms: int = DEFAULT_LEASE_MS, ping_interval: float | None = None,
                 config: EventWriterConfig = EventWriterConfig(), auth: bool = False,
                 writer_id: str = ""):
        if lease_ms <= 0:
            raise ValueError(f"lease_ms must be positive, not {lease_ms}")
        self._pool = pool
        self._controller = controller
        self.scope = scope
        self.stream = stream
        self.lease_ms = lease_ms
        self.ping_interval = lease_ms / 3000 if ping_interval is None else ping_interval
        if not 0 < self.ping_interval:
            raise ValueError(f"ping_interval must be positive, not {ping_interval}")
        self.config = config
        self.writer_id = writer_id or uuid.uuid4().hex
        self._options = writer_options(
            config, _token_provider(controller, scope, stream) if auth else None)
        self._open: dict[uuid.UUID, Transaction] = {}
        self._pinger: asyncio.Task[None] | None = None
        #: Pings sent so far (all transactions).
        self.pings = 0

    async def __aenter__(self) -> TransactionalEventStreamWriter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def begin(self) -> Transaction:
        """Open a transaction on the stream's current segments."""
        info = await self._controller.create_transaction(self.scope, self.stream, self.lease_ms)
        return self._track(Transaction(self, info))

    async def get_txn(self, txn_id: uuid.UUID) -> Transaction:
        """A handle on transaction ``txn_id`` (opened by this or another writer): an open one
        can be written to, committed or aborted, and is pinged from now on; a finished one only
        reports its :attr:`~Transaction.status`."""
        scope, stream = self.scope, self.stream
        status = await self._controller.check_transaction_state(scope, stream, txn_id)
        segments: tuple[SegmentWithRange, ...] = ()
        if status == "OPEN":
            segments = tuple(await self._controller.get_epoch_segments(scope, stream,
                                                                       txn_epoch(txn_id)))
        txn = Transaction(self, TransactionInfo(scope, stream, txn_id, segments))
        if status != "OPEN":
            txn.status = status
            return txn
        return self._track(txn)

    def _track(self, txn: Transaction) -> Transaction:
        self._open[txn.txn_id] = txn
        if self._pinger is None or self._pinger.done():
            self._pinger = asyncio.get_running_loop().create_task(self._ping_forever())
        return txn

    def _forget(self, txn: Transaction) -> None:
        self._open.pop(txn.txn_id, None)

    async def _ping_forever(self) -> None:
        """Renew the lease of every open transaction every ``ping_interval`` seconds (a
        periodic timer, as Java's ``Pinger``); stop pinging one the controller has ended."""
        controller = self._controller
        while self._open:
            await asyncio.sleep(self.ping_interval)
            for txn in list(self._open.values()):
                try:
                    status = await controller.ping_transaction(self.scope, self.stream,
                                                               txn.txn_id, self.lease_ms)
                except PravegaWireError as exc:  # the next ping tries again
                    log.warning("ping of transaction %s failed: %r", txn.txn_id, exc)
                    continue
                self.pings += 1
                if status != "OK" and self._open.get(txn.txn_id) is txn:
                    log.warning("transaction %s is %s: no longer pinged", txn.txn_id, status)
                    txn._lost(status)
                    self._forget(txn)
                    await txn._release()

    async def close(self) -> None:
        """Stop pinging and release the open transactions' segment writers (the transactions
        stay open on the controller until their lease runs out)."""
        pinger, self._pinger = self._pinger, None
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        open_transactions, self._open = list(self._open.values()), {}
        for txn in open_transactions:
            await txn._release()
