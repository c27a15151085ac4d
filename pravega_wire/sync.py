"""A blocking facade over the asyncio clients, for programs without an event loop.

The asynchronous objects live on one event loop that runs in a daemon thread of its own (started
on first use, shared by every blocking object of the process). Each blocking class has the name
of the asynchronous class it stands for and the same constructor, ``open`` class method, methods
and attributes; every method call runs on the loop thread and blocks the calling thread until
the result is ready (a coroutine's, or an awaitable's the method returned: ``write_acked``
returns once the event is acknowledged). The typed errors are the asynchronous clients' own
(:class:`~pravega_wire.errors.NoSuchSegmentError`, :class:`~pravega_wire.errors.TimeoutError`,
...), raised in the calling thread.

Any number of threads may call in; the calls are serialized on the loop, so a writer shared by
threads keeps each thread's events in that thread's order. A blocking call from the loop thread
itself (a callback of an asynchronous object) would deadlock and raises RuntimeError instead.

::

    from pravega_wire import sync

    with sync.ConnectionPool() as pool, sync.ControllerClient("tcp://127.0.0.1:9090") as ctl:
        ctl.create_scope("scope")
        ctl.create_stream("scope", "stream", 1)
        with sync.StreamWriter.open(pool, ctl, "scope", "stream") as writer:
            writer.write(b"event", "routing key")
            writer.flush()
        for reader in sync.stream_readers(pool, ctl, "scope", "stream"):
            with reader:
                print(bytes(reader.read_event(timeout=1.0)))   # b"event"

:func:`shutdown` stops the loop thread (blocking objects still open fail with
:class:`~pravega_wire.errors.ConnectionClosedError`); the next blocking object starts a new one.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import CancelledError, Future
from typing import Any, Callable, ClassVar, Dict, Optional, TypeVar

from .client import raw as _raw
from .client import reader as _reader
from .client import stream as _stream
from .client import writer as _writer
from .client.controller import ControllerClient as _AsyncControllerClient
from .errors import ConnectionClosedError
from .pool import ConnectionPool as _AsyncConnectionPool

__all__ = ["ConnectionPool", "ControllerClient", "SegmentWriter", "SegmentReader",
           "StreamWriter", "RawClient", "MetadataClient", "ConditionalWriter",
           "stream_readers", "EventLoopThread", "shutdown"]

T = TypeVar("T")


class EventLoopThread:
    """An asyncio event loop running in a daemon thread. :meth:`call` runs a function on it and
    blocks the calling thread for the result."""

    def __init__(self, name: str = "pravega-wire-sync"):
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(
                    asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the loop (awaited when it gives an awaitable); its result,
        or its exception, in the calling thread."""
        if self.in_loop_thread():
            raise RuntimeError("a blocking pravega_wire.sync call from its own event loop "
                               "thread would deadlock; use the asynchronous object there")

        async def run() -> Any:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        with self._lock:  # (close() schedules the loop's stop after this call's task)
            if self._closed:
                raise ConnectionClosedError("the pravega_wire.sync event loop is shut down")
            future: Future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return future.result()
        except CancelledError:
            if self._closed:  # shut down under the call: its task was cancelled
                raise ConnectionClosedError(
                    "the pravega_wire.sync event loop was shut down during the call") from None
            raise

    def close(self) -> None:
        """Stop the loop (cancelling what still runs on it) and wait for the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
        if not self.in_loop_thread():
            self._thread.join()


_runner: Optional[EventLoopThread] = None
_runner_lock = threading.Lock()


def _loop_thread() -> EventLoopThread:
    global _runner
    with _runner_lock:
        if _runner is None or _runner.closed:
            _runner = EventLoopThread()
        return _runner


def shutdown() -> None:
    """Stop the shared event loop thread, if it runs (blocking objects still open fail with
    ConnectionClosedError from then on)."""
    global _runner
    with _runner_lock:
        runner, _runner = _runner, None
    if runner is not None:
        runner.close()


# ---- the facade --------------------------------------------------------------------------------

_WRAPPERS: Dict[type, "type[_Blocking]"] = {}  # asynchronous class -> its blocking class


def _unwrap(value: Any) -> Any:
    if isinstance(value, _Blocking):
        return value._target
    return value


def _wrap(runner: EventLoopThread, value: Any) -> Any:
    """Blocking objects for asynchronous ones among a call's results (lists and tuples too)."""
    wrapper = _WRAPPERS.get(type(value))
    if wrapper is not None:
        return wrapper._adopt(runner, value)
    if type(value) in (list, tuple):
        return type(value)(_wrap(runner, item) for item in value)
    return value


class _Blocking:
    """A blocking stand-in for an object living on the loop thread (an instance of ``_async``):
    each method call runs there and blocks; attributes are read there."""

    _async: ClassVar[type]
    _runner: EventLoopThread
    _target: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _WRAPPERS[cls._async] = cls

    def __init__(self, *args: Any, **kwargs: Any):
        runner = _loop_thread()
        target = runner.call(self._async, *map(_unwrap, args),
                             **{k: _unwrap(v) for k, v in kwargs.items()})
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_target", target)

    @classmethod
    def _adopt(cls: type[T], runner: EventLoopThread, target: Any) -> T:
        self = object.__new__(cls)
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_target", target)
        return self

    @classmethod
    def open(cls: type[T], *args: Any, **kwargs: Any) -> T:
        """The asynchronous class's ``open`` (connected, or its typed error), blocking."""
        runner = _loop_thread()
        target = runner.call(cls._async.open, *map(_unwrap, args),  # type: ignore[attr-defined]
                             **{k: _unwrap(v) for k, v in kwargs.items()})
        return cls._adopt(runner, target)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_runner", "_target"):  # (not set: no recursion)
            raise AttributeError(name)
        runner, target = self._runner, self._target
        value = runner.call(getattr, target, name)
        if not callable(value) or isinstance(value, type):
            return _wrap(runner, value)

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return _wrap(runner, runner.call(value, *map(_unwrap, args),
                                             **{k: _unwrap(v) for k, v in kwargs.items()}))

        blocking.__name__ = name
        blocking.__doc__ = getattr(value, "__doc__", None)
        return blocking

    def __setattr__(self, name: str, value: Any) -> None:
        self._runner.call(setattr, self._target, name, _unwrap(value))

    def __dir__(self) -> list:
        return sorted(set(super().__dir__()) | set(dir(self._target)))

    def close(self, *args: Any, **kwargs: Any) -> None:
        """Close the asynchronous object (a no-op once the loop thread is shut down)."""
        if not self._runner.closed:
            self._runner.call(self._target.close, *args, **kwargs)

    def __enter__(self: T) -> T:
        enter = getattr(self._target, "__aenter__", None)  # type: ignore[attr-defined]
        if enter is not None:
            self._runner.call(enter)  # type: ignore[attr-defined]
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """As leaving ``async with`` (a writer flushes unless an exception is leaving)."""
        if self._runner.closed:
            return
        leave = getattr(self._target, "__aexit__", None)
        if leave is None:
            self.close()
        else:
            self._runner.call(leave, exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<blocking {self._target!r}>"


class ConnectionPool(_Blocking):
    """Blocking :class:`pravega_wire.pool.ConnectionPool`."""

    _async = _AsyncConnectionPool


class ControllerClient(_Blocking):
    """Blocking :class:`pravega_wire.client.controller.ControllerClient`."""

    _async = _AsyncControllerClient


class SegmentWriter(_Blocking):
    """Blocking :class:`pravega_wire.client.SegmentWriter`. ``close()`` flushes first, as
    leaving ``async with`` does without an error."""

    _async = _writer.SegmentWriter


class SegmentReader(_Blocking):
    """Blocking :class:`pravega_wire.client.SegmentReader`."""

    _async = _reader.SegmentReader


class StreamWriter(_Blocking):
    """Blocking :class:`pravega_wire.client.StreamWriter`; its ``writers`` are blocking
    :class:`SegmentWriter` objects."""

    _async = _stream.StreamWriter


class RawClient(_Blocking):
    """Blocking :class:`pravega_wire.client.RawClient`."""

    _async = _raw.RawClient


class MetadataClient(_Blocking):
    """Blocking :class:`pravega_wire.client.MetadataClient`."""

    _async = _raw.MetadataClient


class ConditionalWriter(_Blocking):
    """Blocking :class:`pravega_wire.client.ConditionalWriter`."""

    _async = _raw.ConditionalWriter


def stream_readers(pool: ConnectionPool, controller: ControllerClient, scope: str, stream: str,
                   **kwargs: Any) -> list:
    """Blocking :func:`pravega_wire.client.stream_readers`: one blocking
    :class:`SegmentReader` per segment at the head of the stream."""
    runner = _loop_thread()
    return _wrap(runner, runner.call(_stream.stream_readers, _unwrap(pool),
                                     _unwrap(controller), scope, stream, **kwargs))
