"""The ``pravega-wire`` command.

``pravega-wire demo [options]`` is the main job (see :mod:`pravega_wire.demo`).

One function per subcommand: ``_add_<name>`` declares its arguments, ``_<name>`` runs it.

``pravega-wire serve --stores N [--controller-port P] [--data-dir D] [--auth]`` runs an embedded
cluster until SIGINT or SIGTERM. On start-up it prints, one per line and flushed::

    controller: tcp://127.0.0.1:9090
    store: tcp://127.0.0.1:40321
    store: tcp://127.0.0.1:40322

(``controller: none`` when the controller is disabled or grpcio is missing.) Logs go to stderr.
A port already in use (the controller's, or a store's) is refused with a one-line error and exit
status 1.

``pravega-wire --version`` prints the version and the codec in use (compiled or pure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


# ---- serve ------------------------------------------------------------------------------------

def _add_serve(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="run an embedded Pravega cluster (segment stores and controller)",
        description="Run embedded Pravega-compatible segment stores and a controller on "
                    "loopback until interrupted. Prints the controller URI and one line per "
                    "store endpoint on start-up.")
    _serve_arguments(parser)
    parser.set_defaults(handler=_serve)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stores", type=_positive_int, default=1, metavar="N",
                        help="number of segment stores (default 1)")
    parser.add_argument("--controller-port", type=_port, default=9090, metavar="P",
                        help="controller gRPC port (default 9090; 0: any free port)")
    parser.add_argument("--store-port", type=_port, default=0, metavar="BASE",
                        help="store i listens on BASE+i (default 0: any free ports)")
    parser.add_argument("--data-dir", default=None, metavar="D",
                        help="keep segments on disk under D (default: in memory)")
    parser.add_argument("--auth", action="store_true",
                        help="require authentication and check delegation tokens")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--no-controller", action="store_true",
                        help="run the segment stores only")
    parser.add_argument("--read-wait", type=_positive_float, default=None, metavar="S",
                        help="how long a read at the tail of a segment is held before an "
                             "empty answer (seconds; default 60, the real store's read timeout)")
    parser.add_argument("--faults", type=_fault_plans, default=None, metavar="JSON",
                        help="fault plans: a JSON object {store index: [rule, ...]} "
                             "(see pravega_wire.server.faults), or @FILE holding one")
    parser.add_argument("--stats-file", default=None, metavar="PATH",
                        help="on exit, write each store's command counts there as JSON")
    parser.add_argument("--log-level", default="WARNING",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if not args.no_controller and args.controller_port:
            _check_port_free(args.host, args.controller_port, "--controller-port")
        asyncio.run(_run_cluster(args))
    except OSError as exc:
        print(f"pravega-wire serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_port_free(host: str, port: int, option: str) -> None:
    """Raise OSError unless ``host:port`` can be bound. gRPC binds with SO_REUSEPORT, so without
    this a controller could share a port another server listens on (the embedded controller
    refuses that too, but only after gRPC has logged its own error)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            probe.bind(address)
        except OSError as exc:
            raise OSError(f"{option} {port}: cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}") from None


async def _run_cluster(args: argparse.Namespace) -> None:
    from .server.cluster import EmbeddedCluster
    from .server.segmentstore import DEFAULT_READ_WAIT

    plans = args.faults or {}
    if any(index >= args.stores for index in plans):
        raise SystemExit("pravega-wire serve: --faults names a store that does not exist")
    store_ports = None
    if args.store_port:
        store_ports = [args.store_port + i for i in range(args.stores)]
    cluster = EmbeddedCluster(
        args.stores, data_dir=args.data_dir, auth=args.auth, controller=not args.no_controller,
        host=args.host, controller_port=args.controller_port, store_ports=store_ports,
        faults=plans, read_wait=args.read_wait or DEFAULT_READ_WAIT)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        async with cluster:
            lines = [f"controller: {cluster.controller_uri or 'none'}"]
            lines += [f"store: {store.uri}" for store in cluster.stores]
            print("\n".join(lines), flush=True)
            await stopping.wait()
    finally:
        if args.stats_file:
            stats = {str(store.index): dict(store.stats) for store in cluster.stores}
            with open(args.stats_file, "w", encoding="utf-8") as f:
                json.dump(stats, f)


def _fault_plans(text: str) -> dict[int, Any]:
    from .server.faults import FaultPlan

    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object {store index: [rule, ...]}")
        return {int(index): FaultPlan.from_json(rules) for index, rules in data.items()}
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"bad fault plans: {exc}") from None


def _number(kind: type, text: str, what: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}, not {text!r}") from None


def _positive_int(text: str) -> int:
    value = int(_number(int, text, "expected a whole number of at least 1"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = _number(float, text, "expected a positive number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _port(text: str) -> int:
    what = "expected a port number (0-65535)"
    value = int(_number(int, text, what))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{what}, not {value}")
    return value


# ---- demo -------------------------------------------------------------------------------------

def _add_demo(subparsers: Any) -> None:
    from . import demo
    parser = subparsers.add_parser(
        "demo", help="writers and readers through one connection pool (the main job)",
        description=demo.__doc__.strip().splitlines()[0] + " Starts an embedded cluster, "
                    "writes and reads a stream of many segments through one pool, verifies "
                    "every event and reports throughput, latency and sockets.")
    demo.add_arguments(parser)
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from . import demo
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return demo.run(args)


# ---- entry point ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    from . import IMPLEMENTATION, __version__

    parser = argparse.ArgumentParser(
        prog="pravega-wire",
        description="Pravega's segment-store wire protocol in Python: tools.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__} ({IMPLEMENTATION} codec, "
                                f"Python {sys.version.split()[0]})")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(subparsers)
    _add_serve(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pravega-wire`` command with ``argv`` (default: the process arguments);
    returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"pravega-wire {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
