"""An embedded Pravega cluster on loopback: several segment stores and, when gRPC is available,
the controller, for tests, benchmarks and demos.

In this process::

    async with EmbeddedCluster(stores=3) as cluster:
        cluster.controller_uri          # "tcp://127.0.0.1:<port>", or None without grpcio
        cluster.store_endpoints         # [("127.0.0.1", port), ...]
        cluster.faults(1).drop_after_append(nth=10)
        await cluster.restart_store(1)  # same port, same data directory

In a child process (the Rust-based ``pravega`` client holds the GIL, so it cannot share a
process with the server)::

    with EmbeddedCluster.in_child_process(stores=2, faults={0: plan}) as cluster:
        manager = pravega_client.StreamManager(cluster.controller_uri)

The child runs ``python -m pravega_wire.server`` (the ``serve`` command) and is always
terminated on exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .faults import FaultPlan
from .controller import DEFAULT_SCALE_WINDOW
from .placement import DEFAULT_CONTAINER_COUNT, store_index_of
from .rates import DEFAULT_HALF_LIFE, RateMeter
from .segmentstore import DEFAULT_READ_WAIT, SegmentStore
from .storage import TABLE, Storage

__all__ = ["EmbeddedCluster", "ChildCluster"]

_LOG = logging.getLogger("pravega_wire.server.cluster")


class EmbeddedCluster:
    """``stores`` segment stores on ``host`` and a controller for them.

    ``data_dir``: None keeps all segments in memory; a directory gives each store a durable
    storage in ``<data_dir>/store<i>``. ``auth`` turns on authentication at the controller and
    delegation-token checks at the stores. ``controller``: start the controller when grpcio is
    importable (``controller_uri`` is None otherwise, or when False). ``controller_port`` and
    ``store_ports`` choose ports (0: any free one). ``faults`` gives stores their initial
    :class:`FaultPlan` (by index). ``read_wait`` is how long the stores hold a read at a
    tail (the real store's one minute by default).

    Stream policies: the stores measure each segment's append rates (exponentially weighted,
    halving in weight every ``rate_half_life`` seconds) and every ``policy_interval`` seconds
    (None: only when :meth:`EmbeddedController.auto_scale` / ``enforce_retention`` are called)
    the controller auto-scales streams with a by-rate scaling policy (a rate beyond the target
    for ``scale_window`` seconds) and truncates streams with a retention policy. ``clock``
    (``time.monotonic`` by default) times both; tests inject their own.

    The cluster is the controller's segment admin: the controller creates, seals, truncates and
    deletes segments by calling the owning store in process.
    """

    def __init__(self, stores: int = 3, *, data_dir: str | os.PathLike[str] | None = None,
                 auth: bool = False, controller: bool = True, host: str = "127.0.0.1",
                 controller_port: int = 0, store_ports: Sequence[int] | None = None,
                 faults: Mapping[int, FaultPlan] | None = None,
                 read_wait: float = DEFAULT_READ_WAIT,
                 container_count: int = DEFAULT_CONTAINER_COUNT,
                 clock: Callable[[], float] = time.monotonic,
                 rate_half_life: float = DEFAULT_HALF_LIFE,
                 scale_window: float = DEFAULT_SCALE_WINDOW,
                 policy_interval: float | None = 1.0):
        if stores < 1:
            raise ValueError("a cluster needs at least one segment store")
        if store_ports is not None and len(store_ports) != stores:
            raise ValueError("store_ports needs one port per store")
        self.store_count = stores
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.auth = auth
        self.want_controller = controller
        self.host = host
        self.controller_port = controller_port
        self.container_count = container_count
        self.read_wait = read_wait
        self.clock = clock
        self.rate_half_life = rate_half_life
        self.scale_window = scale_window
        self.policy_interval = policy_interval
        self.token_key = secrets.token_bytes(32) if auth else None
        self._ports = list(store_ports) if store_ports is not None else [0] * stores
        self._faults = [FaultPlan() for _ in range(stores)]
        for index, plan in (faults or {}).items():
            self._faults[index] = plan
        self.stores: list[SegmentStore] = []
        self.controller: Any = None
        self._started = False

    # ---- lifecycle ----------------------------------------------------------------------------

    def _storage(self, index: int) -> Storage:
        if self.data_dir is None:
            return Storage()
        return Storage(self.data_dir / f"store{index}")

    def _store(self, index: int, storage: Storage) -> SegmentStore:
        return SegmentStore(storage, host=self.host, port=self._ports[index], index=index,
                            store_count=self.store_count, token_key=self.token_key,
                            read_wait=self.read_wait, faults=self._faults[index],
                            container_count=self.container_count,
                            rates=RateMeter(self.rate_half_life, self.clock))

    async def start(self) -> None:
        """Start the stores, then the controller (when wanted and grpcio is importable)."""
        if self._started:
            raise RuntimeError("the cluster is already started")
        self._started = True
        try:
            for index in range(self.store_count):
                store = self._store(index, self._storage(index))
                self.stores.append(store)
                await store.start()
                self._ports[index] = store.port
            if self.want_controller:
                await self._start_controller()
        except BaseException:
            await self.stop()
            raise

    async def _start_controller(self) -> None:
        from .controller import EmbeddedController
        try:
            controller = EmbeddedController(
                self.store_endpoints, host=self.host, port=self.controller_port,
                segment_admin=self, auth=self.auth, token_key=self.token_key,
                container_count=self.container_count, clock=self.clock,
                scale_window=self.scale_window,
                policy_interval=self.policy_interval)
        except ImportError as exc:
            _LOG.warning("running without a controller: %s", exc)
            return
        await controller.start()
        self.controller = controller

    async def stop(self) -> None:
        """Stop the controller and the stores (idempotent)."""
        controller, self.controller = self.controller, None
        if controller is not None:
            await controller.stop()
        for store in self.stores:
            await store.stop()
            store.storage.close()

    async def __aenter__(self) -> EmbeddedCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def restart_store(self, index: int, *, crash: bool = False) -> SegmentStore:
        """Stop store ``index`` and start it again on the same port.

        With a data directory the new store recovers its segments from disk; ``crash`` makes
        the stop abrupt (connections reset, changes not yet committed lost, as when a process
        dies). In memory the segments live on in the same :class:`Storage` object, as if the
        store process had durable storage behind it.
        """
        old = self.stores[index]
        await old.stop(abort=crash)
        if self.data_dir is not None:
            old.storage.close()
            storage = self._storage(index)
        else:
            storage = old.storage
        store = self._store(index, storage)
        await store.start()
        self.stores[index] = store
        return store

    # ---- what tests look at -------------------------------------------------------------------

    @property
    def store_endpoints(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every store, by index."""
        return [store.endpoint for store in self.stores]

    @property
    def controller_uri(self) -> str | None:
        return self.controller.uri if self.controller is not None else None

    def faults(self, index: int) -> FaultPlan:
        """The fault plan of store ``index`` (kept across restarts)."""
        return self._faults[index]

    def store_for(self, segment: str) -> SegmentStore:
        """The store that owns ``segment``."""
        return self.stores[store_index_of(segment, self.store_count, self.container_count)]

    def issue_token(self, scope: str, stream: str, ttl: float | None = None) -> str:
        """A delegation token for ``scope/stream`` (needs the controller)."""
        if self.controller is None:
            raise RuntimeError("delegation tokens come from the controller, which is not running")
        return self.controller.issue_token(scope, stream, ttl)

    # ---- SegmentAdmin (called by the controller) ----------------------------------------------

    async def create_segment(self, name: str) -> None:
        """Create segment ``name`` on its store (nothing if it exists)."""
        self.store_for(name).create_segment(name)

    async def seal_segment(self, name: str) -> None:
        """Seal segment ``name`` on its store (nothing if missing or sealed already)."""
        self.store_for(name).seal_segment(name)

    async def delete_segment(self, name: str) -> None:
        """Delete segment ``name`` from its store (nothing if missing)."""
        self.store_for(name).delete_segment(name)

    async def truncate_segment(self, name: str, offset: int) -> None:
        """Truncate segment ``name`` on its store at ``offset``."""
        self.store_for(name).truncate_segment(name, offset)

    async def create_table_segment(self, name: str, key_length: int) -> None:
        """Create table segment ``name`` with keys of ``key_length`` bytes on its store
        (nothing if it exists)."""
        self.store_for(name).create_segment(name, TABLE, key_length=key_length)

    async def merge_segment(self, target: str, source: str) -> None:
        """Merge segment ``source`` into ``target`` on their store (a transaction segment lives
        with its parent); nothing if ``source`` was merged already.

        A rolling transaction merges a transaction segment into the duplicate of its parent in
        a later epoch, which has a name of its own and may live on another store: then the
        source's data is appended to the target on the target's store and the source deleted,
        in one step of this process."""
        store, source_store = self.store_for(target), self.store_for(source)
        if source_store is store:
            store.merge_segment(target, source)
            return
        segment = store.storage.require(target)
        moved = source_store.storage.get(source)
        if moved is None:
            return
        data = b"".join(bytes(chunk) for chunk in moved.iter_data())
        if data:
            store.storage.append(segment, data)
            store.storage.commit()
        source_store.delete_segment(source)

    def segment_rates(self, name: str) -> tuple[float, float]:
        """``(events/s, bytes/s)`` appended to segment ``name`` lately, as its store measures
        them."""
        return self.store_for(name).rates.rates(name)

    def segment_length(self, name: str) -> int:
        """The length of segment ``name`` on its store; LookupError if it does not exist."""
        segment = self.store_for(name).storage.get(name)
        if segment is None:
            raise LookupError(f"segment {name} does not exist")
        return segment.write_offset

    # ---- child process ------------------------------------------------------------------------

    @staticmethod
    def in_child_process(stores: int = 3, **options: Any) -> ChildCluster:
        """A :class:`ChildCluster` with these settings (a context manager, sync or async)."""
        return ChildCluster(stores, **options)

    def __repr__(self) -> str:
        return (f"<EmbeddedCluster stores={self.store_endpoints} "
                f"controller={self.controller_uri}>")


class ChildCluster:
    """An embedded cluster in a child process (``python -m pravega_wire.server``).

    Use it as a context manager (``with`` or ``async with``): entering starts the child and waits
    (at most ``startup_timeout`` seconds) for the endpoints it prints; leaving stops it with
    SIGTERM (SIGKILL after ``stop_timeout`` seconds) and reads the command counts it writes on
    exit into :attr:`stats` (``{store index: {name: count}}``).

    ``faults`` maps store indexes to :class:`FaultPlan`\\ s (or their JSON lists of rules);
    ``controller`` False runs the stores alone; the other options are those of
    :class:`EmbeddedCluster`. ``env`` adds environment variables for the child.
    """

    def __init__(self, stores: int = 3, *, data_dir: str | os.PathLike[str] | None = None,
                 auth: bool = False, controller: bool = True, host: str = "127.0.0.1",
                 controller_port: int = 0,
                 faults: Mapping[int, FaultPlan | list[dict[str, Any]]] | None = None,
                 read_wait: float | None = None, startup_timeout: float = 30.0,
                 stop_timeout: float = 10.0, env: Mapping[str, str] | None = None):
        self.store_count = stores
        self.data_dir = data_dir
        self.auth = auth
        self.controller = controller
        self.host = host
        self.controller_port = controller_port
        self.faults = {int(i): (p.to_json() if isinstance(p, FaultPlan) else json.dumps(p))
                       for i, p in (faults or {}).items()}
        self.read_wait = read_wait
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.controller_uri: str | None = None
        self.store_endpoints: list[tuple[str, int]] = []
        self.stats: dict[int, dict[str, int]] = {}
        self._stats_dir: tempfile.TemporaryDirectory[str] | None = None

    def _argv(self, stats_file: str) -> list[str]:
        argv = [sys.executable, "-m", "pravega_wire.server", "--stores", str(self.store_count),
                "--host", self.host, "--controller-port", str(self.controller_port),
                "--stats-file", stats_file]
        if self.data_dir is not None:
            argv += ["--data-dir", os.fspath(self.data_dir)]
        if self.auth:
            argv.append("--auth")
        if not self.controller:
            argv.append("--no-controller")
        if self.read_wait is not None:
            argv += ["--read-wait", str(self.read_wait)]
        if self.faults:
            plans = {str(i): json.loads(text) for i, text in self.faults.items()}
            argv += ["--faults", json.dumps(plans)]
        return argv

    def start(self) -> ChildCluster:
        """Start the child and parse its endpoints; raises RuntimeError if it does not come
        up in time (the child is then stopped)."""
        if self.process is not None:
            raise RuntimeError("the child cluster is already started")
        self._stats_dir = tempfile.TemporaryDirectory(prefix="pravega-wire-stats-")
        stats_file = os.path.join(self._stats_dir.name, "stats.json")
        env = dict(os.environ)
        env.update(self.env)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.process = subprocess.Popen(self._argv(stats_file), stdout=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, env=env)
        try:
            self._read_endpoints()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_endpoints(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        lines: list[str] = []
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while len(lines) < 1 + self.store_count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"the child cluster did not start within "
                                       f"{self.startup_timeout} s (got {lines})")
                if not selector.select(remaining):
                    continue
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError(f"the child cluster exited (code {process.wait(5)}) "
                                       f"before printing its endpoints (got {lines})")
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    lines.append(line.decode().strip())
        controller, stores = lines[0], lines[1:]
        if not controller.startswith("controller: "):
            raise RuntimeError(f"unexpected output from the child cluster: {lines}")
        uri = controller.split(": ", 1)[1]
        self.controller_uri = None if uri == "none" else uri
        for line in stores:
            if not line.startswith("store: tcp://"):
                raise RuntimeError(f"unexpected output from the child cluster: {lines}")
            host, _, port = line[len("store: tcp://"):].rpartition(":")
            self.store_endpoints.append((host, int(port)))

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL) and collect its stats. Idempotent."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                _LOG.warning("child cluster %d ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait(self.stop_timeout)
        if process.stdout is not None:
            process.stdout.close()
        if self._stats_dir is not None:
            path = os.path.join(self._stats_dir.name, "stats.json")
            try:
                with open(path, encoding="utf-8") as f:
                    self.stats = {int(k): v for k, v in json.load(f).items()}
            except (OSError, ValueError):
                self.stats = {}
            self._stats_dir.cleanup()
            self._stats_dir = None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def __enter__(self) -> ChildCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> ChildCluster:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        pid = self.process.pid if self.process is not None else None
        return (f"<ChildCluster pid={pid} controller={self.controller_uri} "
                f"stores={self.store_endpoints}>")
