"""The fault soak: writers, readers and request/response clients over one connection pool against
an embedded cluster, while faults are injected at random; then every acknowledged event must be
read back exactly once, in order per writer, every failure must have been a typed error within
its bound, and no task, socket or flow may be left behind.

::

    python tests/soak.py --faults 1000 --seed 1          # what CI runs (tests/test_soak.py)
    python tests/soak.py --faults 20000 --producers 12   # a long run
    python tests/soak.py --help

It is test machinery, not part of the installed package: it lives beside the tests that run it
and needs the package installed (``pip install -e .``).

The cluster: ``stores`` segment stores with a data directory (so that a restarted store recovers
its segments) and delegation tokens on (see ``SoakConfig.token_ttl``), each
behind a :class:`~pravega_wire.server.faultproxy.FaultProxy`. Clients reach the stores only
through the proxies.

The workload, all on one :class:`~pravega_wire.pool.ConnectionPool`:

- *producers*: each owns a chain of segments (``soak/p<i>/<k>.#epoch.0``) and writes numbered
  events (``b"<i>:<seq>:"`` + filler) with :meth:`SegmentWriter.write_acked`. When its segment is
  sealed, the writer fails with SegmentSealedError carrying the unacknowledged events, which the
  producer writes again, first, to the next segment of its chain (as Pravega does with
  successors). Any other failure (retries exhausted...) ends that writer: its unacknowledged
  events count as failed (they may or may not be stored, never twice) and a new writer goes on.
- *tail readers*: one per producer, following its chain with :class:`SegmentReader` while it is
  written; what they read must be exactly what is finally stored.
- *requesters*: :class:`MetadataClient` (segment info, attribute compare-and-set) and a
  :class:`ConditionalWriter` appending numbered records to a segment of their own at the offsets
  they expect.

The faults, drawn at random (weights in :data:`FAULT_WEIGHTS`), count when they *fire*:

=====================  ========================================================================
reset_before_append    the connection reset before an append is applied (proxy: before an
                       AppendBlockEnd passes; store: drop_before_append)
reset_after_append     reset after an append is applied, before its ack (proxy: before a
                       DataAppended passes; store: drop_after_append)
reset_mid_frame        the proxy cuts a frame in either direction (random cut point) and resets
stall                  a half-open store: the proxy stops forwarding (0.1 to 1.5 s, past the
                       read timeout), or the store stalls new connections
slow_reads             the proxy throttles replies (2 to 50 KB/s) or the store delays reads
restart                a store is stopped (gracefully or as a crash) and restarted with its data
                       directory
wrong_host             a client's location cache goes stale (the segment "moves": WrongHost
                       from the store it asks) or the store answers WrongHost
seal                   a producer's segment is sealed under it
token_expired          the store answers a request with an expired-token failure
=====================  ========================================================================

Every client operation is awaited within its declared bound plus :data:`HANG_SLACK`; an
operation that outlives it is a *hang*. Every failure must be a
:class:`~pravega_wire.errors.PravegaWireError`. Any exception that reaches the event loop's
exception handler (a callback, a protocol or a task nobody awaited, client or server side) is
a *crash*.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from pravega_wire import commands as C
from pravega_wire.client._common import RetryPolicy
from pravega_wire.client.raw import ConditionalWriter, MetadataClient
from pravega_wire.client.reader import EndOfSegment, SegmentReader
from pravega_wire.client.writer import EventWriterConfig, SegmentWriter
from pravega_wire.errors import PravegaWireError, SegmentSealedError, TimeoutError
from pravega_wire.pool import ClientConfig, ConnectionPool
from pravega_wire.server.cluster import EmbeddedCluster
from pravega_wire.server.faultproxy import DOWNSTREAM, UPSTREAM, FaultProxy
from pravega_wire.server.placement import store_index_of

__all__ = ["SoakConfig", "SoakReport", "run_soak", "FAULT_WEIGHTS", "main"]

#: Relative frequency of each fault kind.
FAULT_WEIGHTS: Dict[str, float] = {
    "reset_before_append": 3.0,
    "reset_after_append": 3.0,
    "reset_mid_frame": 3.0,
    "stall": 1.0,
    "slow_reads": 1.0,
    "restart": 0.4,
    "wrong_host": 2.0,
    "seal": 0.4,
    "token_expired": 2.0,
}
#: Added to every operation's declared bound before it counts as a hang (seconds).
HANG_SLACK = 10.0
#: Bound on each phase of the wind-down (seconds).
SETTLE_TIMEOUT = 120.0

_SCOPE = "soak"


@dataclasses.dataclass(frozen=True)
class SoakConfig:
    """What a soak run does. ``faults``: how many faults must fire before the workload stops;
    ``max_duration`` caps the fault phase (seconds; the run then fails if fewer fired).
    ``mean_fault_interval``: mean pause between two faults (seconds). ``data_dir``: where the
    stores keep their data (a temporary directory by default)."""

    faults: int = 1000
    seed: int = 1
    stores: int = 3
    producers: int = 6
    requesters: int = 2
    mean_fault_interval: float = 0.025
    max_duration: float = 600.0
    max_event_size: int = 200
    write_burst: int = 8
    write_pause: float = 0.01
    max_pending_events: int = 400
    #: Lifetime of the delegation tokens (seconds). Long by default: a SegmentReader keeps the
    #: token it connected with, and the store's refusal of an expired one reaches no flow
    #: (docs/protocol.md §3.8), so each expiry on a live connection costs the reader a whole reply
    #: timeout; ``--token-ttl 5`` shows such readers as stuck. Expiries are injected instead.
    token_ttl: int = 3600
    weights: Tuple[Tuple[str, float], ...] = tuple(FAULT_WEIGHTS.items())
    data_dir: Optional[str] = None

    def __post_init__(self):
        unknown = {kind for kind, _ in self.weights} - set(FAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {list(FAULT_WEIGHTS)}")
        if self.faults < 0 or self.stores < 2 or self.producers < 1 or self.requesters < 0:
            raise ValueError("need faults >= 0, stores >= 2, producers >= 1, requesters >= 0")


# Client settings: short timeouts, so that faults are detected (and the run ends) quickly.
_CLIENT = ClientConfig(connect_timeout=0.5, read_timeout=1.0, keepalive_interval=0.3,
                       max_connections_per_segment_store=3, idle_timeout=5.0)
_RETRY = RetryPolicy(initial_delay=0.001, multiplier=10.0, max_delay=0.5, attempts=12)
_WRITER = EventWriterConfig(enable_connection_pooling=True, retry=_RETRY, setup_timeout=2.0,
                            ack_timeout=1.5, max_inflight_bytes=1 << 20)
_REQUEST_TIMEOUT = 2.0
_READ_TIMEOUT = 1.0
#: Bound on one unanswered ReadSegment before the reader reconnects (a store refuses a read
#: for an expired token with a reply no flow receives, docs/protocol.md §3.8).
_REPLY_TIMEOUT = 3.0
#: Reads in a row that time out while data is there before a reader counts as stuck (no fault
#: lasts this long: stalls and throttles end within 1.5 s, retries back off at most 0.5 s,
#: an unanswered read is given up after _REPLY_TIMEOUT).
_STUCK_READS = 10
#: Worst case of one request/response operation: every attempt times out, plus the backoff.
_REQUEST_BOUND = _RETRY.attempts * (_REQUEST_TIMEOUT + _CLIENT.connect_timeout) \
    + _RETRY.worst_case_wait()
_FLUSH_BOUND = 60.0
#: Worst case for a write to be acknowledged or failed: every connection attempt of the retry
#: policy takes its whole setup time, then the acknowledgement its whole timeout.
_ACK_BOUND = _RETRY.worst_case_wait() + _RETRY.attempts * _WRITER.setup_timeout \
    + 2 * _WRITER.ack_timeout


@dataclasses.dataclass
class SoakReport:
    """What a soak run found (see :attr:`ok`)."""

    config: SoakConfig
    faults: Dict[str, int]
    fault_details: Dict[str, int]
    events: Dict[str, int]
    conditional: Dict[str, int]
    attributes: Dict[str, int]
    operations: Dict[str, Dict[str, int]]
    untyped_errors: List[str]
    hangs: List[str]
    crashes: List[str]
    violations: List[str]
    leftovers: Dict[str, int]
    elapsed: float

    @property
    def faults_fired(self) -> int:
        return sum(self.faults.values())

    @property
    def ok(self) -> bool:
        """No event lost or duplicated, no contract broken, no untyped error, no hang, nothing
        left behind, and at least the faults asked for fired."""
        return (not self.violations and not self.untyped_errors and not self.hangs
                and not self.crashes and not any(self.leftovers.values())
                and self.faults_fired >= self.config.faults
                and self.events["lost"] == self.events["duplicated"] == 0
                and self.events["out_of_order"] == 0
                and self.conditional["lost"] == self.conditional["duplicated"] == 0)

    def to_json(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["config"] = dataclasses.asdict(self.config)
        data["faults_fired"] = self.faults_fired
        data["ok"] = self.ok
        return data

    def summary(self) -> str:
        lines = [f"soak: {'OK' if self.ok else 'FAILED'} in {self.elapsed:.1f} s, seed "
                 f"{self.config.seed}, {self.faults_fired} faults fired"]
        lines.append("  faults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())))
        lines.append("  events: " + ", ".join(f"{k} {v}" for k, v in self.events.items()))
        lines.append("  conditional appends: " + ", ".join(
            f"{k} {v}" for k, v in self.conditional.items()))
        lines.append("  attributes: " + ", ".join(f"{k} {v}" for k, v in self.attributes.items()))
        for op, outcomes in sorted(self.operations.items()):
            lines.append(f"  {op}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
        lines.append("  leftovers: " + ", ".join(f"{k} {v}" for k, v in self.leftovers.items()))
        for title, items in (("untyped errors", self.untyped_errors), ("hangs", self.hangs),
                             ("crashes", self.crashes), ("violations", self.violations)):
            lines.append(f"  {title}: {len(items)}")
            lines.extend(f"    {item}" for item in items[:20])
        return "\n".join(lines)


# ---- helpers ------------------------------------------------------------------------------------

def _client_sockets(ports: set) -> int:
    """Sockets of this process connected to one of ``ports`` (the stores' and proxies'): the
    clients' side of their connections (the servers' side has those ports as local ports)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[9] in inodes and remote_port in ports:
                count += 1
    return count


def _parse_event(payload: bytes) -> Tuple[int, int]:
    producer, seq, _ = bytes(payload).split(b":", 2)
    return int(producer), int(seq)


class _Locator:
    """Where segments live (the proxy of the owning store), with stale entries on demand: a
    "moved" segment is looked up at another store's proxy until the client invalidates it
    (which it must do on WrongHost), as a controller cache that went stale."""

    def __init__(self, soak: "_Soak"):
        self._soak = soak
        self._stale: Dict[str, Tuple[str, int]] = {}
        self.invalidations = 0

    def owner(self, segment: str) -> int:
        return store_index_of(segment, self._soak.config.stores)

    async def get_endpoint(self, segment: str) -> Tuple[str, int]:
        stale = self._stale.get(segment)
        if stale is not None:
            return stale
        return self._soak.proxies[self.owner(segment)].endpoint

    def invalidate(self, segment: str) -> None:
        self.invalidations += 1
        self._stale.pop(segment, None)

    def move(self, segment: str, rng: random.Random) -> None:
        others = [i for i in range(self._soak.config.stores) if i != self.owner(segment)]
        self._stale[segment] = self._soak.proxies[rng.choice(others)].endpoint

    def clear(self) -> None:
        self._stale.clear()


class _Tokens:
    """Delegation tokens per stream, as a client's token provider keeps them: cached, renewed
    ahead of their expiry (in the last third of their lifetime) and when a store said
    expired."""

    def __init__(self, cluster: EmbeddedCluster, ttl: int):
        self._cluster = cluster
        self._ttl = ttl
        self._tokens: Dict[str, Tuple[str, float]] = {}
        self.refreshed = 0
        self.renewed = 0

    async def __call__(self, segment: str, expired: bool) -> str:
        scope, stream = segment.split("/")[:2]
        key = f"{scope}/{stream}"
        cached = self._tokens.get(key)
        now = time.monotonic()
        if cached is not None and not expired and now < cached[1]:
            return cached[0]
        if expired:
            self.refreshed += 1
        elif cached is not None:
            self.renewed += 1
        token = self._cluster.issue_token(scope, stream, self._ttl)
        self._tokens[key] = (token, now + self._ttl * 2 / 3)
        return token


class _Outcomes:
    """Outcomes of client operations by kind: successes, typed errors by class, untyped errors
    and hangs."""

    def __init__(self):
        self.counts: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.untyped: List[str] = []
        self.hangs: List[str] = []

    def typed(self, op: str, error: BaseException) -> None:
        if isinstance(error, PravegaWireError):
            self.counts[op][type(error).__name__] += 1
        else:
            self.counts[op]["untyped " + type(error).__name__] += 1
            self.untyped.append(f"{op}: {error!r}")

    async def run(self, op: str, bound: float, awaitable: Awaitable[Any], *,
                  expected: Tuple[type, ...] = ()) -> Tuple[bool, Any]:
        """Await ``awaitable`` within ``bound`` + HANG_SLACK; ``(True, result)`` or ``(False,
        error)``. ``expected`` exceptions count as outcomes, not errors."""
        start = time.monotonic()
        limit = bound + HANG_SLACK
        try:
            result = await asyncio.wait_for(awaitable, limit)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is classified
            if isinstance(e, expected):
                self.counts[op][type(e).__name__] += 1
            elif (isinstance(e, asyncio.TimeoutError) and not isinstance(e, PravegaWireError)
                  and time.monotonic() - start >= limit * 0.99):
                self.hangs.append(f"{op}: still running after {time.monotonic() - start:.1f} s "
                                  f"(bound {bound} s)")
            else:
                self.typed(op, e)
            return False, e
        self.counts[op]["ok"] += 1
        return True, result


# ---- the workload -------------------------------------------------------------------------------

class _Producer:
    """Writes numbered events to a chain of segments."""

    def __init__(self, soak: "_Soak", index: int):
        self.soak = soak
        self.index = index
        self.chain: List[str] = [self._name(0)]
        self.chain_changed = asyncio.Event()
        self.rng = random.Random(soak.config.seed * 1000 + index)
        self.next_seq = 0
        self.acked: set = set()
        self.failed_seqs: set = set()
        self.pending: collections.deque = collections.deque()  # (seq, payload, future)
        self.writer: Optional[SegmentWriter] = None
        self.writers = 0
        self.rewritten = 0

    def _name(self, k: int) -> str:
        return f"{_SCOPE}/p{self.index}/{k}.#epoch.0"

    @property
    def segment(self) -> str:
        return self.chain[-1]

    def _payload(self, seq: int) -> bytes:
        filler = self.rng.randrange(self.soak.config.max_event_size)
        return b"%d:%d:" % (self.index, seq) + bytes([seq & 0xFF]) * filler

    def _open_writer(self) -> None:
        self.writer = SegmentWriter(self.soak.pool, self.soak.locator, self.segment,
                                    config=_WRITER, token_provider=self.soak.tokens)
        self.writers += 1

    async def run(self) -> None:
        await self.soak.create_segment(self.segment)
        self._open_writer()
        config = self.soak.config
        while not self.soak.stopping.is_set():
            if len(self.pending) < config.max_pending_events:
                for _ in range(config.write_burst):
                    self._submit(self.next_seq, self._payload(self.next_seq))
                    self.next_seq += 1
            await asyncio.sleep(config.write_pause)
            await self._settle(wait=False)
        await self._finish()

    def _submit(self, seq: int, payload: bytes) -> None:
        try:
            future = self.writer.write_acked(payload)
        except PravegaWireError as e:  # the writer has failed: not sent, handled by _settle
            future = asyncio.get_running_loop().create_future()
            future.set_exception(e)
            future.exception()
        self.pending.append((seq, payload, future))

    async def _settle(self, *, wait: bool) -> None:
        """Account for completed writes; after a writer failure, move on to a new writer."""
        pending = self.pending
        while pending:
            seq, payload, future = pending[0]
            if not future.done():
                if not wait:
                    return
                await asyncio.wait((future,), timeout=_ACK_BOUND + HANG_SLACK)
                if not future.done():  # a hang: recorded; give up on this event
                    self.soak.outcomes.hangs.append(
                        f"producer {self.index}: event {seq} neither acknowledged nor failed "
                        f"within {_ACK_BOUND + HANG_SLACK:.0f} s")
                    future.cancel()
                    pending.popleft()
                    self.failed_seqs.add(seq)
                    continue
            pending.popleft()
            error = future.exception()
            if error is None:
                self.acked.add(seq)
                self.soak.outcomes.counts["write_acked"]["ok"] += 1
                continue
            await self._writer_failed(error, [(seq, payload)])

    async def _writer_failed(self, error: BaseException, first: List[Tuple[int, bytes]]) -> None:
        """The current writer ended with ``error``: every pending write failed with it."""
        failed = first + [(s, p) for s, p, f in self.pending]
        for _, _, future in self.pending:
            if not future.done():
                future.cancel()
        self.pending.clear()
        writer = self.writer
        if writer is not None:
            await writer.close(flush=False)
        self.soak.outcomes.typed("writer", error)
        if isinstance(error, SegmentSealedError):
            unacknowledged = [bytes(p) for p in getattr(error, "unacknowledged", ())]
            sent = [p for s, p in failed]
            # The error lists what the writer had in flight; what failed after it (not sent)
            # comes on top, so it must be a prefix of what the producer lost.
            if unacknowledged != sent[:len(unacknowledged)]:
                self.soak.violations.append(
                    f"producer {self.index}: SegmentSealedError.unacknowledged does not match "
                    f"the writes in flight ({len(unacknowledged)} vs {len(sent)})")
            await self._next_segment()
            self._open_writer()
            for seq, payload in failed:  # again, first, in order, on the successor
                self.rewritten += 1
                self._submit(seq, payload)
            return
        for seq, _ in failed:
            self.failed_seqs.add(seq)
        self._open_writer()

    async def _next_segment(self) -> None:
        name = self._name(len(self.chain))
        await self.soak.create_segment(name)
        self.chain.append(name)
        self.chain_changed.set()

    async def _finish(self) -> None:
        """Flush and settle everything written."""
        while True:
            writer = self.writer
            if writer.failure is None and writer.state != "closed":
                await self.soak.outcomes.run("flush", _FLUSH_BOUND,
                                             writer.flush(timeout=_FLUSH_BOUND),
                                             expected=(PravegaWireError,))
            await self._settle(wait=True)
            if self.writer is writer and not self.pending:
                break
        await self.writer.close(flush=False)


class _TailReader:
    """Follows a producer's chain while it is written, keeping what it reads."""

    def __init__(self, soak: "_Soak", producer: _Producer):
        self.soak = soak
        self.producer = producer
        self.read: Dict[str, List[Tuple[int, int]]] = collections.defaultdict(list)

    def _open(self, segment: str, offset: int) -> SegmentReader:
        return SegmentReader(self.soak.pool, self.soak.locator, segment, offset=offset,
                             buffer_size=64 * 1024, token_provider=self.soak.tokens,
                             retry=_RETRY, reply_timeout=_REPLY_TIMEOUT)

    def _stuck(self, segment: str, offset: int) -> bool:
        """Data is stored past ``offset`` (looked up in the store itself, past every fault) and
        the reader has not returned any for _STUCK_READS reads: a hang, recorded."""
        stored = self.soak.cluster.store_for(segment).storage.get(segment)
        if stored is None or stored.write_offset <= offset:
            return False
        self.soak.outcomes.hangs.append(
            f"tail reader of {segment}: no event for {_STUCK_READS} reads of "
            f"{_READ_TIMEOUT} s at offset {offset} while {stored.write_offset - offset} bytes "
            "were stored after it (reader recreated)")
        return True

    async def run(self) -> None:
        soak, producer = self.soak, self.producer
        k = 0
        while True:
            segment = producer.chain[k]
            reader = self._open(segment, 0)
            idle = 0  # reads in a row that timed out
            try:
                while True:
                    final = soak.final_lengths.get(segment)
                    if final is not None and reader.offset >= final:
                        if k + 1 < len(producer.chain) or soak.finished.is_set():
                            break
                    ok, result = await soak.outcomes.run(
                        "read_event", _READ_TIMEOUT, reader.read_event(timeout=_READ_TIMEOUT),
                        expected=(EndOfSegment, TimeoutError))
                    if ok:
                        idle = 0
                        self.read[segment].append(_parse_event(result))
                    elif isinstance(result, EndOfSegment):
                        break
                    elif isinstance(result, TimeoutError):
                        idle += 1
                        if idle >= _STUCK_READS and self._stuck(segment, reader.offset):
                            idle = 0
                            offset = reader.offset
                            await reader.close()
                            reader = self._open(segment, offset)
                    else:  # failed for good: again, from where it was
                        offset = reader.offset
                        await reader.close()
                        reader = self._open(segment, offset)
            finally:
                await reader.close()
            if k + 1 >= len(producer.chain):
                if soak.finished.is_set():
                    return
                while k + 1 >= len(producer.chain) and not soak.finished.is_set():
                    producer.chain_changed.clear()
                    await _first(producer.chain_changed, soak.finished)
                if k + 1 >= len(producer.chain):
                    return
            k += 1


class _Requester:
    """Metadata requests and conditional appends over the pool."""

    def __init__(self, soak: "_Soak", index: int):
        self.soak = soak
        self.index = index
        self.rng = random.Random(soak.config.seed * 7919 + index)
        self.segment = f"{_SCOPE}/cond{index}/0.#epoch.0"
        options = dict(token_provider=soak.tokens, retry=_RETRY, timeout=_REQUEST_TIMEOUT)
        self.metadata = MetadataClient(soak.pool, soak.locator, **options)
        self.conditional = ConditionalWriter(soak.pool, soak.locator, self.segment, **options)
        self.attribute = uuid.UUID(int=0xA77 + index)
        self.cas_ok = 0
        self.cas_attempts = 0
        self.offset = 0
        self.next_record = 0
        self.acked: List[int] = []
        self.attempted: set = set()

    async def run(self) -> None:
        soak = self.soak
        await soak.create_segment(self.segment)
        value = C.NULL_ATTRIBUTE_VALUE
        outcomes = soak.outcomes
        while not soak.stopping.is_set():
            op = self.rng.choice(("info", "cas", "conditional", "conditional"))
            if op == "info":
                producer = self.rng.choice(soak.producers)
                ok, info = await outcomes.run("get_info", _REQUEST_BOUND,
                                              self.metadata.get_info(producer.segment))
                if ok and not info.exists:
                    soak.violations.append(f"get_info: {producer.segment} does not exist")
            elif op == "cas":
                self.cas_attempts += 1
                new = 1 if value == C.NULL_ATTRIBUTE_VALUE else value + 1
                ok, done = await outcomes.run("compare_and_set", _REQUEST_BOUND,
                                              self.metadata.compare_and_set_attribute(
                                                  self.segment, self.attribute, value, new))
                if ok and done:
                    self.cas_ok += 1
                    value = new
                else:
                    ok, current = await outcomes.run(
                        "get_attribute", _REQUEST_BOUND,
                        self.metadata.get_attribute(self.segment, self.attribute))
                    if ok:
                        value = current
            else:
                await self._conditional_append()
            await asyncio.sleep(0.005)

    async def _conditional_append(self) -> None:
        outcomes = self.soak.outcomes
        record = self.next_record
        data = b"c%d:%d:" % (self.index, record)
        self.attempted.add(record)
        ok, appended = await outcomes.run("conditional_append", _REQUEST_BOUND,
                                          self.conditional.write(data, self.offset))
        if ok and appended:
            self.acked.append(record)
            self.offset += 8 + len(data)
            self.next_record += 1
            return
        # Refused (another length) or failed: learn the length; a failed write may be stored.
        ok, info = await outcomes.run("get_info", _REQUEST_BOUND,
                                      self.metadata.get_info(self.segment))
        if ok:
            if info.length != self.offset:
                self.next_record += 1  # it was stored after all: never reuse its number
            self.offset = info.length

    async def close(self) -> None:
        await self.metadata.close()
        await self.conditional.close()


# ---- the run ------------------------------------------------------------------------------------

class _Soak:
    def __init__(self, config: SoakConfig, cluster: EmbeddedCluster):
        self.config = config
        self.cluster = cluster
        self.rng = random.Random(config.seed)
        self.proxies = [FaultProxy(endpoint, seed=config.seed * 31 + i)
                        for i, endpoint in enumerate(cluster.store_endpoints)]
        self.locator = _Locator(self)
        self.tokens = _Tokens(cluster, config.token_ttl)
        self.pool: ConnectionPool = None  # type: ignore[assignment]
        self.outcomes = _Outcomes()
        self.violations: List[str] = []
        self.stopping = asyncio.Event()
        self.finished = asyncio.Event()
        self.final_lengths: Dict[str, int] = {}
        self.admin = asyncio.Lock()
        self.producers: List[_Producer] = []
        self.fired: collections.Counter = collections.Counter()
        self.details: collections.Counter = collections.Counter()
        self._rules: List[Tuple[str, Any]] = []  # (kind, FaultRule) programmed on stores
        self._timed: set = set()  # tasks ending a stall or a throttle
        self.crashes: List[str] = []

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: Dict[str, Any]) -> None:
        """An exception nobody handled (in a callback, a protocol, a task nobody awaited), on
        either side: a crash."""
        exc = context.get("exception")
        self.crashes.append(f"{context.get('message')}: {exc!r}" if exc is not None
                            else str(context.get("message")))
        loop.default_exception_handler(context)

    # -- administration (in process, serialised with restarts) --------------------------------

    async def create_segment(self, name: str) -> None:
        async with self.admin:
            await self.cluster.create_segment(name)

    async def seal_segment(self, name: str) -> None:
        async with self.admin:
            await self.cluster.seal_segment(name)

    # -- faults ---------------------------------------------------------------------------------

    def _plan_rule(self, kind: str, rule: Any) -> None:
        self._rules.append((kind, rule))

    def _fired_so_far(self) -> int:
        rules = sum(rule.fired for _, rule in self._rules)
        proxies = sum(self._proxy_fired(p) for p in self.proxies)
        return sum(self.fired.values()) + rules + proxies

    @staticmethod
    def _proxy_fired(proxy: FaultProxy) -> int:
        stats = proxy.stats
        return stats["reset_before_frame"] + stats["reset_in_frame"] + stats["stalls"] \
            + stats["throttles"]

    def _random_segment(self) -> str:
        choices = [p.segment for p in self.producers]
        if self.config.requesters:
            choices.append(f"{_SCOPE}/cond{self.rng.randrange(self.config.requesters)}"
                           f"/0.#epoch.0")
        return self.rng.choice(choices)

    def _timed_fault(self, seconds: float, undo: Callable[[], None]) -> None:
        async def later():
            await asyncio.sleep(seconds)
            undo()
        task = asyncio.ensure_future(later())
        self._timed.add(task)
        task.add_done_callback(self._timed.discard)

    def _arm_frame_fault(self, kind: str, proxy: FaultProxy, action: str, direction: str,
                         commands: Optional[Tuple[str, ...]] = None) -> None:
        """Arm a frame fault on ``proxy`` unless the same one is still waiting there for its
        frame.

        A trigger fires on the next matching frame, whenever that passes. While none passes
        (the proxy stalled, the store restarting, every client backing off after earlier
        faults), triggers armed at the injection rate (about one per second per kind and
        proxy) queued up, 13 on one proxy, and then fired one after another on the only
        frames that came: the Hellos and first requests of the clients' reconnection
        attempts. Every connection to that store failed until the queue drained, and the
        queue fed itself (each failed attempt means another backoff without traffic):
        outages of several seconds made of faults that each stand for one cut frame, which a
        tail reader could not ride out within its _STUCK_READS bound (about one CI run in
        eight). Not arming draws another fault instead (only faults that fire count)."""
        if proxy.pending(action, direction=direction, commands=commands):
            self.details[f"{kind} not armed (the same one pending)"] += 1
            return
        getattr(proxy, action)(direction=direction, commands=commands)

    async def _inject(self, kind: str) -> None:
        rng = self.rng
        store = rng.randrange(self.config.stores)
        proxy = self.proxies[store]
        plan = self.cluster.faults(store)
        both = rng.random() < 0.5
        if kind == "reset_before_append":
            if both:
                self._arm_frame_fault(kind, proxy, "reset_before_frame", UPSTREAM,
                                      ("AppendBlockEnd",))
            else:
                self._plan_rule(kind, plan.drop_before_append())
        elif kind == "reset_after_append":
            if both:
                self._arm_frame_fault(kind, proxy, "reset_before_frame", DOWNSTREAM,
                                      ("DataAppended",))
            else:
                self._plan_rule(kind, plan.drop_after_append())
        elif kind == "reset_mid_frame":
            self._arm_frame_fault(kind, proxy, "reset_in_frame",
                                  rng.choice((UPSTREAM, DOWNSTREAM)))
        elif kind == "stall":
            if both:
                proxy.stall()
                self._timed_fault(rng.uniform(0.1, 1.5), proxy.resume)
            else:
                self._plan_rule(kind, plan.stall_connections())
        elif kind == "slow_reads":
            if both:
                proxy.throttle(rng.uniform(2_000, 50_000), direction=DOWNSTREAM)
                self._timed_fault(rng.uniform(0.2, 1.5),
                                  lambda: proxy.unthrottle(direction=DOWNSTREAM))
            else:
                self._plan_rule(kind, plan.delay_replies(rng.uniform(0.05, 0.8),
                                                         commands={"SegmentRead"}))
        elif kind == "restart":
            crash = rng.random() < 0.5
            async with self.admin:
                old = self.cluster.stores[store]
                for key, value in old.stats.items():
                    if key.startswith("> AuthTokenCheckFailed"):
                        self.details["store replies AuthTokenCheckFailed"] += value
                    elif key == "> WrongHost":
                        self.details["store replies WrongHost"] += value
                await self.cluster.restart_store(store, crash=crash)
            self.fired[kind] += 1
            self.details["restart crash" if crash else "restart graceful"] += 1
        elif kind == "wrong_host":
            segment = self._random_segment()
            if both:
                self.locator.move(segment, rng)
                self.fired[kind] += 1
                self.details["wrong_host stale location"] += 1
            else:
                owner = self.cluster.faults(self.locator.owner(segment))
                self._plan_rule(kind, owner.fail_segment(segment, "wrong_host", times=1))
        elif kind == "seal":
            producer = rng.choice(self.producers)
            await self.seal_segment(producer.segment)
            self.fired[kind] += 1
        elif kind == "token_expired":
            segment = self._random_segment()
            owner = self.cluster.faults(self.locator.owner(segment))
            self._plan_rule(kind, owner.fail_segment(segment, "token_expired", times=1))
        else:  # pragma: no cover - weights are checked in SoakConfig
            raise ValueError(kind)

    def _prune_rules(self) -> None:
        """Drop exhausted rules from the stores' plans (they are kept in ``_rules`` for the
        counts), so that matching stays cheap."""
        for index in range(self.config.stores):
            plan = self.cluster.faults(index)
            live = [rule for rule in plan.rules if not rule.exhausted]
            if len(live) != len(plan.rules):
                plan.clear()
                for rule in live:
                    plan.add(rule)

    async def _injector(self) -> None:
        config = self.config
        kinds = [kind for kind, weight in config.weights if weight > 0]
        weights = [weight for _, weight in config.weights if weight > 0]
        deadline = time.monotonic() + config.max_duration
        injected = 0
        while self._fired_so_far() < config.faults and time.monotonic() < deadline:
            await asyncio.sleep(self.rng.expovariate(1 / config.mean_fault_interval))
            if kinds:
                await self._inject(self.rng.choices(kinds, weights)[0])
                injected += 1
                if injected % 100 == 0:
                    self._prune_rules()
        self.details["faults armed"] = injected

    def _clear_faults(self) -> None:
        for proxy in self.proxies:
            proxy.clear()
        for index in range(self.config.stores):
            self.cluster.faults(index).clear()
        for task in list(self._timed):
            task.cancel()
        self.locator.clear()

    def _count_faults(self) -> Dict[str, int]:
        fired = collections.Counter(self.fired)
        for kind, rule in self._rules:
            fired[kind] += rule.fired
            if rule.fired:
                self.details[f"store {rule.action}"] += rule.fired
        for proxy in self.proxies:
            stats = proxy.stats
            for key, value in stats.items():
                parts = key.split(" ")
                if len(parts) == 3:
                    action, direction, command = parts
                    self.details[f"proxy {key}"] += value
                    if action == "reset_in_frame":
                        fired["reset_mid_frame"] += value
                    elif action == "reset_before_frame" and command == "AppendBlockEnd":
                        fired["reset_before_append"] += value
                    elif action == "reset_before_frame" and command == "DataAppended":
                        fired["reset_after_append"] += value
            fired["stall"] += stats["stalls"]
            fired["slow_reads"] += stats["throttles"]
            for key in ("connections", "refused", "reset", "bytes_up", "bytes_down"):
                self.details[f"proxy {key}"] += stats[key]
        for store in self.cluster.stores:
            self.details["store replies AuthTokenCheckFailed"] += store.stats[
                "> AuthTokenCheckFailed"]
            self.details["store replies WrongHost"] += store.stats["> WrongHost"]
        self.details["token refreshes after expired"] = self.tokens.refreshed
        self.details["token renewals before expiry"] = self.tokens.renewed
        self.details["location invalidations"] = self.locator.invalidations
        return dict(fired)

    # -- verification -----------------------------------------------------------------------------

    async def _read_back(self, pool: ConnectionPool, segments: List[str]
                         ) -> Dict[str, List[bytes]]:
        """Every segment's events, read directly from the stores (no proxy, no faults)."""
        cluster = self.cluster

        def where(segment: str):
            return cluster.store_endpoints[store_index_of(segment, self.config.stores)]

        contents: Dict[str, List[bytes]] = {}
        async with MetadataClient(pool, where, token_provider=self.tokens) as metadata:
            for segment in segments:
                info = await asyncio.wait_for(metadata.get_info(segment), _REQUEST_BOUND)
                self.final_lengths[segment] = info.length
                events: List[bytes] = []
                async with SegmentReader(pool, where, segment, end_offset=info.length,
                                         token_provider=self.tokens) as reader:
                    while True:
                        try:
                            events.append(bytes(await reader.read_event(timeout=30)))
                        except EndOfSegment:
                            break
                contents[segment] = events
        return contents

    def _check_events(self, contents: Dict[str, List[bytes]],
                      tails: List[_TailReader]) -> Dict[str, int]:
        stats = collections.Counter()
        for producer, tail in zip(self.producers, tails):
            seen: collections.Counter = collections.Counter()
            order: List[int] = []
            for segment in producer.chain:
                for payload in contents[segment]:
                    index, seq = _parse_event(payload)
                    if index != producer.index:
                        self.violations.append(f"{segment}: event of producer {index}")
                        continue
                    seen[seq] += 1
                    if seq in producer.acked:
                        order.append(seq)
                expected = [_parse_event(p) for p in contents[segment]]
                if tail.read[segment] != expected:
                    self.violations.append(
                        f"tail reader of {segment} read {len(tail.read[segment])} events that "
                        f"differ from the {len(expected)} stored")
                stats["read_by_tail_readers"] += len(tail.read[segment])
            duplicated = sum(1 for count in seen.values() if count > 1)
            lost = sum(1 for seq in producer.acked if not seen[seq])
            stats["written"] += producer.next_seq
            stats["acknowledged"] += len(producer.acked)
            stats["failed_typed"] += len(producer.failed_seqs)
            stats["failed_but_stored"] += sum(1 for seq in producer.failed_seqs if seen[seq])
            stats["stored"] += sum(seen.values())
            stats["rewritten_after_seal"] += producer.rewritten
            stats["lost"] += lost
            stats["duplicated"] += duplicated
            stats["out_of_order"] += sum(1 for a, b in zip(order, order[1:]) if a >= b)
            stats["segments"] += len(producer.chain)
            stats["writers"] += producer.writers
            stats["unaccounted"] += sum(1 for seq in range(producer.next_seq)
                                        if seq not in producer.acked
                                        and seq not in producer.failed_seqs)
            if lost or duplicated:
                self.violations.append(f"producer {producer.index}: {lost} acknowledged events "
                                       f"lost, {duplicated} duplicated")
        if stats["unaccounted"]:
            self.violations.append(f"{stats['unaccounted']} events neither acknowledged nor "
                                   "failed")
        keys = ("written", "acknowledged", "failed_typed", "failed_but_stored", "stored",
                "rewritten_after_seal", "read_by_tail_readers", "lost", "duplicated",
                "out_of_order", "segments", "writers", "unaccounted")
        return {key: stats[key] for key in keys}

    def _check_conditional(self, contents: Dict[str, List[bytes]],
                           requesters: List[_Requester]) -> Dict[str, int]:
        stats = collections.Counter()
        for requester in requesters:
            records = []
            for payload in contents[requester.segment]:
                index, number = _parse_event(payload[1:])
                records.append(number)
            seen = collections.Counter(records)
            stats["acknowledged"] += len(requester.acked)
            stats["stored"] += len(records)
            stats["lost"] += sum(1 for n in requester.acked if not seen[n])
            stats["duplicated"] += sum(1 for count in seen.values() if count > 1)
            stats["out_of_order"] += sum(1 for a, b in zip(records, records[1:]) if a >= b)
            stats["never_attempted_but_stored"] += sum(1 for n in seen
                                                       if n not in requester.attempted)
        for key in ("lost", "duplicated", "out_of_order", "never_attempted_but_stored"):
            if stats[key]:
                self.violations.append(f"conditional appends: {stats[key]} {key}")
        return dict(stats)

    def _check_attributes(self, requesters: List[_Requester]) -> Dict[str, int]:
        stats = collections.Counter()
        cluster = self.cluster
        for requester in requesters:
            store = cluster.store_for(requester.segment)
            segment = store.storage.get(requester.segment)
            value = segment.attribute(requester.attribute) if segment is not None else None
            stats["compare_and_set_ok"] += requester.cas_ok
            stats["compare_and_set_attempts"] += requester.cas_attempts
            final = 0 if value is None or value == C.NULL_ATTRIBUTE_VALUE else value
            if not requester.cas_ok <= final <= requester.cas_attempts:
                self.violations.append(
                    f"attribute of requester {requester.index} is {final}: not between its "
                    f"{requester.cas_ok} successful and {requester.cas_attempts} attempted "
                    "compare-and-sets")
        return dict(stats)

    # -- the whole run --------------------------------------------------------------------------

    async def run(self) -> SoakReport:
        start = time.monotonic()
        loop = asyncio.get_running_loop()
        previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_error)
        try:
            return await self._run(start)
        finally:
            loop.set_exception_handler(previous_handler)

    async def _run(self, start: float) -> SoakReport:
        loop = asyncio.get_running_loop()
        base_tasks = len(asyncio.all_tasks())
        for proxy in self.proxies:
            await proxy.start()
        ports = {port for _, port in self.cluster.store_endpoints}
        ports |= {proxy.port for proxy in self.proxies}
        self.pool = ConnectionPool(_CLIENT)
        self.producers = [_Producer(self, i) for i in range(self.config.producers)]
        tails = [_TailReader(self, p) for p in self.producers]
        requesters = [_Requester(self, i) for i in range(self.config.requesters)]
        work = [loop.create_task(p.run(), name=f"producer {p.index}") for p in self.producers]
        work += [loop.create_task(r.run(), name=f"requester {r.index}") for r in requesters]
        readers = [loop.create_task(t.run(), name=f"tail {t.producer.index}") for t in tails]
        try:
            await self._injector()
        finally:
            self._clear_faults()
            self.stopping.set()
        await _bounded(asyncio.gather(*work), "producers and requesters", self.violations)
        # Everything written is settled: read it back directly, then let the tail readers
        # catch up to the same lengths.
        segments = [s for p in self.producers for s in p.chain] + [r.segment for r in requesters]
        async with ConnectionPool(ClientConfig()) as direct:
            contents = await self._read_back(direct, segments)
            attributes = self._check_attributes(requesters)
        self.finished.set()
        await _bounded(asyncio.gather(*readers), "tail readers", self.violations)
        for requester in requesters:
            await requester.close()
        flows = self.pool.stats().open_flows
        await self.pool.close()
        for proxy in self.proxies:
            await proxy.stop()
        await asyncio.sleep(0)
        events = self._check_events(contents, tails)
        conditional = self._check_conditional(contents, requesters)
        leftovers = {"tasks": len(asyncio.all_tasks()) - base_tasks,
                     "sockets": _client_sockets(ports), "flows": flows}
        return SoakReport(
            config=self.config, faults=self._count_faults(), fault_details=dict(self.details),
            events=events, conditional=conditional, attributes=attributes,
            operations={op: dict(c) for op, c in self.outcomes.counts.items()},
            untyped_errors=self.outcomes.untyped, hangs=self.outcomes.hangs,
            crashes=self.crashes, violations=self.violations, leftovers=leftovers, elapsed=time.monotonic() - start)


async def _first(*events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _bounded(awaitable: Awaitable[Any], what: str, violations: List[str]) -> None:
    try:
        await asyncio.wait_for(awaitable, SETTLE_TIMEOUT)
    except asyncio.TimeoutError:
        violations.append(f"{what} did not finish within {SETTLE_TIMEOUT} s")


async def run_soak(config: SoakConfig = SoakConfig()) -> SoakReport:
    """Run one soak (see the module docstring) and report what it found."""
    data_dir = config.data_dir
    temporary = data_dir is None
    if temporary:
        data_dir = tempfile.mkdtemp(prefix="pravega-wire-soak-")
    try:
        cluster = EmbeddedCluster(config.stores, data_dir=data_dir, auth=True, read_wait=0.2)
        await cluster.start()
        try:
            if cluster.controller is None:
                raise RuntimeError("the soak needs the embedded controller (grpcio) for tokens")
            return await _Soak(config, cluster).run()
        finally:
            await cluster.stop()
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/soak.py",
                                     description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--faults", type=int, default=defaults.faults,
                        help="faults that must fire (%(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--stores", type=int, default=defaults.stores)
    parser.add_argument("--producers", type=int, default=defaults.producers)
    parser.add_argument("--requesters", type=int, default=defaults.requesters)
    parser.add_argument("--interval", type=float, default=defaults.mean_fault_interval,
                        help="mean seconds between faults (%(default)s)")
    parser.add_argument("--max-duration", type=float, default=defaults.max_duration)
    parser.add_argument("--only", default=None,
                        help="comma-separated fault kinds to inject (default: all)")
    parser.add_argument("--token-ttl", type=int, default=defaults.token_ttl,
                        help="delegation token lifetime in seconds (%(default)s)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    weights = tuple(FAULT_WEIGHTS.items())
    if args.only:
        chosen = args.only.split(",")
        weights = tuple((k, w) for k, w in FAULT_WEIGHTS.items() if k in chosen)
    config = SoakConfig(faults=args.faults, seed=args.seed, stores=args.stores,
                        producers=args.producers, requesters=args.requesters,
                        mean_fault_interval=args.interval, max_duration=args.max_duration,
                        weights=weights, token_ttl=args.token_ttl, data_dir=args.data_dir)
    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(run_soak(config))
    print(report.summary())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_json(), f, indent=2, default=str)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
