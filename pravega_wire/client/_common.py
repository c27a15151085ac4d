"""What the segment clients share: where a segment lives, delegation tokens (and
:class:`CachingTokenProvider`, which keeps a stream's token until it nears its expiry), retry
policies, and the listener each client hands the pool for one flow."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Any, Dict, Optional, Protocol, Tuple, Union

from ..errors import InvalidMessageError, RetriesExhaustedError

__all__ = ["SegmentLocator", "StaticLocator", "TokenProvider", "RetryPolicy", "as_locator",
           "Endpoint", "no_token", "CachingTokenProvider", "token_expiry",
           "DEFAULT_TOKEN_REFRESH", "MAX_EVENT_SIZE", "event_bytes", "FlowRelay", "open_flow",
           "Failures", "JITTER_MODES"]

#: ``(host, port)`` of a segment store.
Endpoint = Tuple[str, int]

#: Largest event payload (Java's ``Serializer.MAX_EVENT_SIZE``): 8 MiB.
MAX_EVENT_SIZE = 8 * 1024 * 1024


class SegmentLocator(Protocol):
    """Finds the segment store of a segment (a :class:`~pravega_wire.client.controller.
    ControllerClient` is one); ``invalidate`` drops a cached answer after WrongHost or a
    connection failure."""

    async def get_endpoint(self, segment: str) -> Endpoint: ...

    def invalidate(self, segment: str) -> None: ...


class StaticLocator:
    """Every segment lives at one endpoint, or where ``route(segment)`` says (no controller)."""

    def __init__(self, endpoint: Union[Endpoint, Callable[[str], Endpoint]]):
        if callable(endpoint):
            self._route = endpoint
        else:
            fixed = _endpoint(endpoint)
            self._route = lambda _segment: fixed

    async def get_endpoint(self, segment: str) -> Endpoint:
        return _endpoint(self._route(segment))

    def invalidate(self, segment: str) -> None:
        """Nothing is cached."""


def _endpoint(value: Any) -> Endpoint:
    try:
        host, port = value
    except (TypeError, ValueError):
        raise TypeError(f"an endpoint is a (host, port) pair, not {value!r}") from None
    if not isinstance(host, str) or type(port) is not int:
        raise TypeError(f"an endpoint is a (host: str, port: int) pair, not {value!r}")
    return host, port


def as_locator(where: Any) -> SegmentLocator:
    """A locator from a locator (anything with ``get_endpoint`` and ``invalidate``), a
    ``(host, port)`` endpoint or a ``segment -> endpoint`` function."""
    if hasattr(where, "get_endpoint") and hasattr(where, "invalidate"):
        return where
    return StaticLocator(where)


#: ``async (segment, expired: bool) -> token``; ``expired`` asks for a fresh token.
TokenProvider = Callable[[str, bool], Awaitable[str]]


async def no_token(segment: str, expired: bool) -> str:
    """The token provider of a cluster with auth off."""
    return ""


#: Seconds before a token's ``exp`` claim at which :class:`CachingTokenProvider` fetches a new
#: one (Java's ``JwtTokenProviderImpl.DEFAULT_REFRESH_THRESHOLD_SECONDS``).
DEFAULT_TOKEN_REFRESH = 5.0


def token_expiry(token: str) -> Optional[float]:
    """The ``exp`` claim (unix seconds) of the JWT ``token``, or None if ``token`` is not a JWT
    (three dot-separated parts whose middle one is a base64url, or base64, JSON object) or has
    no finite numeric ``exp``. The signature is not checked: only the segment store can."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    body = parts[1]
    try:
        raw = base64.b64decode((body + "=" * (-len(body) % 4)).encode("ascii"),
                               altchars=b"-_", validate=True)
        claims = json.loads(raw)
    except (ValueError, binascii.Error, RecursionError):  # UnicodeError is a ValueError
        return None
    if not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    try:
        exp = float(exp)
    except OverflowError:  # an int beyond any float: no usable expiry
        return None
    return exp if math.isfinite(exp) else None


def _stream_key(segment: str) -> str:
    """``scope/stream`` of a qualified segment name (``scope/stream/0.#epoch.0``, its
    transaction and transient segments too); a name with fewer parts is its own key."""
    parts = segment.split("/", 2)
    return f"{parts[0]}/{parts[1]}" if len(parts) == 3 else segment


class _Fetch:
    """A token fetch in progress and the number of callers waiting for it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: "asyncio.Future[str]"):
        self.task = task
        self.waiters = 0


class CachingTokenProvider:
    """A :data:`TokenProvider` that keeps the last token of each stream and asks ``fetch`` (a
    token provider that returns a new token on every call, e.g. one that asks the controller
    for a delegation token) only when it needs a new one, as Java's ``JwtTokenProviderImpl``
    does:

    - when it has no token for the stream yet;
    - when the token's JWT ``exp`` claim (read without checking the signature, see
      :func:`token_expiry`) is at most ``refresh_before`` seconds after ``clock()`` (unix
      seconds; default :func:`time.time`). A token that expires sooner than ``refresh_before``
      after it is issued is thus fetched for every call, as in Java;
    - when a caller passes ``expired=True`` (the segment store refused its token as expired):
      the cached token is dropped. A token that is not a JWT, or has no ``exp``, is kept until
      then; so is ``""`` (auth off).

    Tokens are per stream: ``key(segment)`` (default: ``scope/stream`` of the qualified segment
    name) says which segments share one. Concurrent callers that need a new token for one key
    share a single fetch, made with the segment and ``expired`` flag of the caller that started
    it; a caller that is cancelled stops waiting, and the fetch is cancelled only when no caller
    waits for it any more. A failed fetch raises its error to every caller waiting for it and
    caches nothing (the next call fetches again); a fetch that returns something other than a
    ``str`` is a ``TypeError``.

    One provider is meant for one event loop (a fetch runs as a task of the loop of the caller
    that started it).
    """

    def __init__(self, fetch: TokenProvider, *, refresh_before: float = DEFAULT_TOKEN_REFRESH,
                 key: Callable[[str], Hashable] = _stream_key,
                 clock: Callable[[], float] = time.time):
        if not callable(fetch):
            raise TypeError(f"fetch must be an async (segment, expired) -> token callable, "
                            f"not {fetch!r}")
        if isinstance(refresh_before, bool) or not isinstance(refresh_before, (int, float)):
            raise TypeError(f"refresh_before must be a number of seconds, not "
                            f"{refresh_before!r}")
        if not 0 <= refresh_before < float("inf"):
            raise ValueError(f"refresh_before must be finite and >= 0, not {refresh_before}")
        for name, value in (("key", key), ("clock", clock)):
            if not callable(value):
                raise TypeError(f"{name} must be callable, not {value!r}")
        self._fetch = fetch
        self.refresh_before = float(refresh_before)
        self._key = key
        self._clock = clock
        self._tokens: Dict[Hashable, Tuple[str, Optional[float]]] = {}  # key -> (token, exp)
        self._fetches: Dict[Hashable, _Fetch] = {}
        #: Number of fetches started (each is one call of ``fetch``).
        self.fetches = 0

    async def __call__(self, segment: str, expired: bool) -> str:
        """The token for ``segment``: the cached one while it is not near its expiry and
        ``expired`` is false, else a new one from ``fetch``."""
        if not expired:
            token = self.cached(segment)
            if token is not None:
                return token
        key = self._key(segment)
        if expired:
            self._tokens.pop(key, None)
        fetch = self._fetches.get(key)
        if fetch is None:
            fetch = self._start(key, segment, expired)
        fetch.waiters += 1
        try:
            return await asyncio.shield(fetch.task)
        finally:
            fetch.waiters -= 1
            if not fetch.waiters and not fetch.task.done():
                fetch.task.cancel()  # nobody waits for it any more

    def cached(self, segment: str) -> Optional[str]:
        """The token a call with ``expired=False`` would return at once (without a fetch), or
        None if that call would fetch. Synchronous: a reader uses it to send a read without
        waiting on the loop."""
        cached = self._tokens.get(self._key(segment))
        if cached is None:
            return None
        token, exp = cached
        if exp is None or self._clock() + self.refresh_before < exp:
            return token
        return None

    def invalidate(self, segment: Optional[str] = None) -> None:
        """Forget the cached token of ``segment``'s key (of every key if None): the next call
        fetches. A fetch in progress goes on, and its token is cached."""
        if segment is None:
            self._tokens.clear()
        else:
            self._tokens.pop(self._key(segment), None)

    def _start(self, key: Hashable, segment: str, expired: bool) -> _Fetch:
        self.fetches += 1
        fetch = self._fetches[key] = _Fetch(asyncio.ensure_future(self._run(segment, expired)))
        fetch.task.add_done_callback(lambda task: self._done(key, fetch))
        return fetch

    async def _run(self, segment: str, expired: bool) -> str:
        token = await self._fetch(segment, expired)
        if type(token) is not str:
            raise TypeError(f"the token fetch for {segment} returned {type(token).__name__}, "
                            "not str")
        return token

    def _done(self, key: Hashable, fetch: _Fetch) -> None:
        if self._fetches.get(key) is fetch:
            del self._fetches[key]
        task = fetch.task
        if task.cancelled() or task.exception() is not None:  # retrieved: never logged
            return
        token = task.result()
        self._tokens[key] = (token, token_expiry(token))

    def __repr__(self) -> str:
        return (f"<CachingTokenProvider keys={len(self._tokens)} fetches={self.fetches} "
                f"refresh_before={self.refresh_before}>")


def event_bytes(event: Any) -> bytes:
    """``event`` as immutable bytes, checked against :data:`MAX_EVENT_SIZE`.

    ``bytes`` pass through without a copy; a ``bytearray`` or ``memoryview`` is copied once (the
    writer keeps events until they are acknowledged and may resend them, so later changes to a
    caller's buffer must not change what is stored). Anything else is a ``TypeError``; an event
    over 8 MiB is an :class:`~pravega_wire.errors.InvalidMessageError`.
    """
    if type(event) is not bytes:
        if isinstance(event, (bytearray, memoryview)):
            event = bytes(event)  # a memoryview of any format: its raw bytes
        elif isinstance(event, bytes):
            event = bytes(event)
        else:
            raise TypeError(f"an event is bytes-like, not {type(event).__name__}")
    if len(event) > MAX_EVENT_SIZE:
        raise InvalidMessageError(
            f"event of {len(event)} bytes exceeds the {MAX_EVENT_SIZE}-byte limit")
    return event


#: The jitter modes of :class:`RetryPolicy`: ``"full"`` waits a uniform random time up to the
#: exponential delay, ``"equal"`` half the delay plus a uniform random time up to the other
#: half, ``None`` exactly the delay.
JITTER_MODES = (None, "full", "equal")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the *ceiling* before retry ``n`` is ``initial_delay``
    seconds times ``multiplier ** n``, at most ``max_delay`` (:meth:`delay`); the wait actually
    taken (:meth:`backoff`) is that ceiling jittered by ``jitter`` with ``random_source`` (a
    ``() -> float`` in ``[0, 1)``, default :func:`random.random`; inject a seeded one for
    deterministic waits). After ``attempts`` failed attempts the operation fails with
    :class:`~pravega_wire.errors.RetriesExhaustedError`.

    Java's writer uses 1 ms × 10 up to 20 s for 10 attempts, without jitter; the default here
    caps each wait at 5 s, so that the waits of a dead cluster add up to at most about 21 s
    instead of Java's ~61 s, and uses *equal* jitter: many clients that lost the same store do
    not come back in lockstep, and each still waits at least half its delay. Jitter only
    shortens a wait, so :meth:`worst_case_wait` (the sum of the ceilings) bounds every run.

    :meth:`run` is the retry loop every client uses (the writer's and reader's reconnects, the
    request/response and conditional clients).
    """

    initial_delay: float = 0.001
    multiplier: float = 10.0
    max_delay: float = 5.0
    attempts: int = 10
    jitter: Optional[str] = "equal"
    random_source: Callable[[], float] = dataclasses.field(
        default=random.random, compare=False, repr=False)

    def __post_init__(self):
        if type(self.attempts) is not int:
            raise TypeError(f"attempts must be an int, not {self.attempts!r}")
        for name in ("initial_delay", "multiplier", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, not {value!r}")
        if (self.attempts < 1 or not 0 <= self.initial_delay < float("inf")
                or not 1 <= self.multiplier < float("inf")
                or not 0 <= self.max_delay < float("inf")):
            raise ValueError(f"invalid retry policy: {self}")
        if self.jitter not in JITTER_MODES:
            raise ValueError(f"jitter must be one of {JITTER_MODES}, not {self.jitter!r}")
        if not callable(self.random_source):
            raise TypeError(f"random_source must be a () -> float callable, not "
                            f"{self.random_source!r}")

    def delay(self, retry: int) -> float:
        """The ceiling of the wait before retry number ``retry`` (0 for the first retry)."""
        if retry < 0:
            raise ValueError(f"retry number {retry} < 0")
        delay = self.initial_delay
        for _ in range(min(retry, 64)):  # past 64 steps the cap has long been reached
            delay *= self.multiplier
            if delay >= self.max_delay:
                break
        return min(delay, self.max_delay)

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry``: :meth:`delay` with the policy's jitter (a
        new random draw on each call)."""
        ceiling = self.delay(retry)
        if self.jitter is None or not ceiling:
            return ceiling
        fraction = self.random_source()
        if not 0 <= fraction <= 1:
            raise ValueError(f"random_source returned {fraction!r}, not a number in [0, 1]")
        if self.jitter == "full":
            return ceiling * fraction
        return ceiling / 2 + ceiling / 2 * fraction  # "equal"

    def delays(self) -> Iterator[float]:
        """The ceiling of the wait before each attempt (the first one too, as Java's writer
        waits)."""
        for attempt in range(self.attempts):
            yield self.delay(attempt)

    def worst_case_wait(self) -> float:
        """The sum of every backoff ceiling: the longest the policy sleeps before it gives up
        (attempt times come on top)."""
        return sum(self.delays())

    async def run(self, attempt: Callable[[], Awaitable[Any]], *,
                  retry_on: Callable[[BaseException], bool] = lambda e: True,
                  what: str = "operation", failures: Optional["Failures"] = None,
                  wait_first: bool = False) -> Any:
        """Call ``attempt`` until it succeeds, raises an error ``retry_on`` refuses (that error
        is raised), or the attempts run out (then RetriesExhaustedError from the last error).

        The first attempt is made at once, unless ``wait_first`` (Java's writer waits
        ``backoff(0)`` before its first connection attempt, ``backoff(n)`` before attempt
        ``n``); otherwise each retry waits :meth:`backoff` of the number of failures before it.
        ``failures`` counts the consecutive failures; pass one that outlives the call to count
        failures across calls (a reader counts a lost flow as a failure too, and resets the
        count on progress). ``retry_on`` is called with each failure before it counts, and may
        act on it (log it, drop a cached location)."""
        count = Failures() if failures is None else failures
        while True:
            if count.number >= self.attempts:
                last = count.last
                raise RetriesExhaustedError(
                    f"{what} failed {count.number} times: {last!r}") from last
            step = count.number if wait_first else count.number - 1
            if step >= 0:
                wait = self.backoff(step)
                if wait:
                    await asyncio.sleep(wait)
            try:
                return await attempt()
            except Exception as e:  # noqa: BLE001 - the policy decides
                if not retry_on(e):
                    raise
                count.failed(e)


class Failures:
    """The consecutive failures of one retried operation (see :meth:`RetryPolicy.run`): their
    number and the last error."""

    __slots__ = ("number", "last")

    def __init__(self) -> None:
        self.number = 0
        self.last: Optional[BaseException] = None

    def failed(self, error: BaseException) -> None:
        self.number += 1
        self.last = error

    def reset(self) -> None:
        """Progress was made: the next failure is the first again."""
        self.number = 0
        self.last = None

    def __repr__(self) -> str:
        return f"<Failures {self.number} last={self.last!r}>"


class FlowRelay:
    """The listener (a :class:`pravega_wire.connection.FlowListener`) a client hands the pool
    for one flow: it forwards the flow's replies and
    its loss to the client while that flow is the client's current one, and nothing once the
    client has let go of it (``active = False``), so that a late callback from an abandoned
    flow can never be taken for one of the current flow."""

    __slots__ = ("_on_reply", "_on_lost", "active")

    def __init__(self, on_reply: Callable[[Any], None],
                 on_lost: Callable[["FlowRelay", BaseException], None]):
        self._on_reply = on_reply
        self._on_lost = on_lost
        self.active = True

    def reply_received(self, reply: Any) -> None:
        if self.active:
            self._on_reply(reply)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.active:
            self._on_lost(self, exc)


#: Deprecated alias of :class:`FlowRelay` (its old name, which
#: :class:`pravega_wire.connection.FlowListener`, the protocol it implements, also has).
FlowListener = FlowRelay


async def open_flow(opening: Awaitable[Any]) -> Any:
    """Await a pool's ``open_flow(...)`` / ``open_dedicated_flow(...)``. If the caller is
    cancelled (a close, a timeout) before the flow is handed over, the flow the pool still
    produces is closed instead of leaking."""
    task = asyncio.ensure_future(opening)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_close_unclaimed)
        raise


def _close_unclaimed(task: "asyncio.Future[Any]") -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()
