"""What the segment clients share: where a segment lives, delegation tokens, retry policies, and
the listener each client hands the pool for one flow."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Optional, Protocol, Tuple, Union

from ..errors import InvalidMessageError, RetriesExhaustedError

__all__ = ["SegmentLocator", "StaticLocator", "TokenProvider", "RetryPolicy", "as_locator",
           "Endpoint", "no_token", "MAX_EVENT_SIZE", "event_bytes", "FlowListener", "open_flow"]

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


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``initial_delay`` seconds, times ``multiplier`` after each attempt,
    at most ``max_delay``; after ``attempts`` failed attempts the operation fails with
    :class:`~pravega_wire.errors.RetriesExhaustedError`.

    Java's writer uses 1 ms × 10 up to 20 s for 10 attempts; the default here caps each wait at
    5 s, so that the waits of a dead cluster add up to about 21 s instead of Java's ~61 s.
    :meth:`worst_case_wait` is that sum.
    """

    initial_delay: float = 0.001
    multiplier: float = 10.0
    max_delay: float = 5.0
    attempts: int = 10

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

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0 for the first retry)."""
        if retry < 0:
            raise ValueError(f"retry number {retry} < 0")
        delay = self.initial_delay
        for _ in range(min(retry, 64)):  # past 64 steps the cap has long been reached
            delay *= self.multiplier
            if delay >= self.max_delay:
                break
        return min(delay, self.max_delay)

    def delays(self) -> Iterator[float]:
        """The wait before each attempt (the first one too, as Java's writer does)."""
        for attempt in range(self.attempts):
            yield self.delay(attempt)

    def worst_case_wait(self) -> float:
        """The sum of every backoff wait: how long the policy sleeps before it gives up
        (attempt times come on top)."""
        return sum(self.delays())

    async def run(self, attempt: Callable[[], Awaitable[Any]], *,
                  retry_on: Callable[[BaseException], bool] = lambda e: True,
                  what: str = "operation") -> Any:
        """Call ``attempt`` until it succeeds, raises an error ``retry_on`` refuses, or the
        attempts run out (then RetriesExhaustedError from the last error). The first attempt is
        made at once; each retry waits :meth:`delay` first."""
        last: Optional[BaseException] = None
        for number in range(self.attempts):
            if number:
                await asyncio.sleep(self.delay(number - 1))
            try:
                return await attempt()
            except Exception as e:  # noqa: BLE001 - the policy decides
                if not retry_on(e):
                    raise
                last = e
        raise RetriesExhaustedError(f"{what} failed {self.attempts} times: {last!r}") from last


class FlowListener:
    """The listener a client hands the pool for one flow: it forwards the flow's replies and
    its loss to the client while that flow is the client's current one, and nothing once the
    client has let go of it (``active = False``), so that a late callback from an abandoned
    flow can never be taken for one of the current flow."""

    __slots__ = ("_on_reply", "_on_lost", "active")

    def __init__(self, on_reply: Callable[[Any], None],
                 on_lost: Callable[["FlowListener", BaseException], None]):
        self._on_reply = on_reply
        self._on_lost = on_lost
        self.active = True

    def reply_received(self, reply: Any) -> None:
        if self.active:
            self._on_reply(reply)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.active:
            self._on_lost(self, exc)


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
