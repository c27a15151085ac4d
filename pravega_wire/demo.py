"""``pravega-wire demo``: the project's main job.

Starts an embedded cluster (stores and a controller, in a child process so the client has a core
of its own) or uses ``--controller URI`` of a real Pravega cluster, creates a stream of N segments,
runs writers and readers through ONE connection pool with a progress display, checks that every
event read back is exactly what was written (each payload verified byte for byte, each routing
key's events in order, none lost, none duplicated), and reports throughput, acknowledgement
latency, and the sockets the pool opened against the sockets one connection per segment writer
and reader would have taken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from typing import Any, Optional

__all__ = ["add_arguments", "run", "run_demo", "DemoError"]

_HEADER = struct.Struct(">IIQ")  # writer index, key index, sequence number within the key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segments", type=int, default=64, help="segments in the stream (64)")
    parser.add_argument("--writers", type=int, default=8,
                        help="writers, each writing to every segment its keys hash to (8)")
    parser.add_argument("--readers", type=int, default=4,
                        help="readers, sharing the stream's segments between them (4)")
    parser.add_argument("--events", type=int, default=200_000, help="events in all (200000)")
    parser.add_argument("--event-size", type=int, default=100, help="bytes per event (100)")
    parser.add_argument("--keys", type=int, default=16, help="routing keys per writer (16)")
    parser.add_argument("--max-inflight", type=int, default=8192, metavar="BYTES",
                        help="unacknowledged bytes per segment writer before a write waits "
                             "(8192): bounds the queue, and so the acknowledgement latency")
    parser.add_argument("--stores", type=int, default=3, help="embedded segment stores (3)")
    parser.add_argument("--max-connections", type=int, default=4,
                        help="pooled connections per segment store (4)")
    pooling = parser.add_mutually_exclusive_group()
    pooling.add_argument("--pooling", dest="pooling", action="store_true", default=True,
                         help="writers share pooled connections (the default)")
    pooling.add_argument("--no-pooling", dest="pooling", action="store_false",
                         help="one dedicated connection per segment writer, as Java's default")
    parser.add_argument("--controller", metavar="URI",
                        help="use a real Pravega cluster's controller instead of an embedded one")
    parser.add_argument("--scope", default="demo", help="scope to create the stream in (demo)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the embedded cluster in this process (default: a child process)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the results instead of the report")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def run(args: argparse.Namespace) -> int:
    """Run the demo for parsed arguments; 0 if every event came back intact."""
    for name in ("segments", "writers", "readers", "events", "stores", "max_connections", "keys",
                 "max_inflight"):
        if getattr(args, name) < 1:
            print(f"pravega-wire demo: --{name.replace('_', '-')} must be at least 1",
                  file=sys.stderr)
            return 2
    if args.event_size < _HEADER.size:
        print(f"pravega-wire demo: --event-size must be at least {_HEADER.size}", file=sys.stderr)
        return 2
    from .errors import PravegaWireError

    try:
        result = asyncio.run(run_demo(args))
    except (DemoError, PravegaWireError) as exc:  # typed failures: one line, no traceback
        print(f"pravega-wire demo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_report(result, args.controller)
    return 0 if result["integrity_ok"] else 1


class DemoError(Exception):
    """Why the demo could not run: no controller client (grpcio missing), a malformed
    ``--controller`` URI, or an embedded cluster that did not start."""


def _controller_client(uri: str):
    """A controller client for ``uri``, or DemoError saying why there cannot be one."""
    try:
        from .client.controller import ControllerClient
        return ControllerClient(uri)
    except (ImportError, ValueError) as exc:
        raise DemoError(str(exc)) from None


def _payload(pattern: bytes, writer: int, key: int, seq: int, size: int) -> bytes:
    start = (writer * 131 + key * 17 + seq) % 251
    return _HEADER.pack(writer, key, seq) + pattern[start:start + size - _HEADER.size]


class _Tally:
    """Counters shared by the writers, readers and the progress display."""

    def __init__(self, total: int):
        self.total = total
        self.written = 0
        self.read = 0
        self.bytes_read = 0
        self.per_segment: dict = {}
        self.writers_done = False
        self.errors: list = []


async def run_demo(args: argparse.Namespace) -> dict:
    from .client.reader import EndOfSegment, SegmentReader
    from .client.stream import StreamWriter
    from .client.writer import EventWriterConfig
    from .errors import TimeoutError as WireTimeout
    from .pool import ClientConfig, ConnectionPool

    cluster: Any = None  # an EmbeddedCluster (in process) or a ChildCluster
    if args.controller:
        controller = _controller_client(args.controller)  # before anything starts
    else:
        _controller_client("tcp://127.0.0.1")  # grpcio is there, or say so before starting
        try:
            if args.in_process:
                from .server import EmbeddedCluster
                cluster = EmbeddedCluster(args.stores)
                await cluster.start()
            else:
                from .server.cluster import ChildCluster
                cluster = ChildCluster(args.stores)
                await asyncio.get_running_loop().run_in_executor(None, cluster.start)
        except (OSError, RuntimeError) as exc:
            raise DemoError(f"the embedded cluster did not start: {exc}") from None
        if cluster.controller_uri is None:
            raise DemoError("the embedded cluster has no controller")
        controller = _controller_client(cluster.controller_uri)
    try:
        async with controller:
            stream = f"pooling-{os.getpid()}-{int(time.time() * 1000) % 10 ** 8}"
            await controller.create_scope(args.scope)
            await controller.create_stream(args.scope, stream, args.segments)
            segments = await controller.get_current_segments(args.scope, stream)
            pool = ConnectionPool(ClientConfig(
                max_connections_per_segment_store=args.max_connections))
            try:
                return await _exercise(args, controller, pool, stream, segments, StreamWriter,
                                       EventWriterConfig, SegmentReader, EndOfSegment, WireTimeout)
            finally:
                await pool.close()
    finally:
        if cluster is not None:
            if hasattr(cluster, "in_child_process"):
                await cluster.stop()
            else:
                cluster.stop()


async def _exercise(args, controller, pool, stream, segments, StreamWriter, EventWriterConfig,
                    SegmentReader, EndOfSegment, WireTimeout) -> dict:
    from .client.writer import LatencyHistogram
    size = args.event_size
    pattern = bytes(range(256)) * ((size + 511) // 256 + 1)
    per_writer = [args.events // args.writers + (1 if w < args.events % args.writers else 0)
                  for w in range(args.writers)]
    tally = _Tally(args.events)
    config = EventWriterConfig(enable_connection_pooling=args.pooling, record_latency=True,
                               max_inflight_bytes=args.max_inflight)
    stream_writers = [StreamWriter(pool, controller, args.scope, stream, segments, config=config)
                      for _ in range(args.writers)]

    async def write(w: int) -> None:
        writer = stream_writers[w]
        keys = [f"writer-{w}-key-{k}" for k in range(args.keys)]
        counts = tally.per_segment
        for i in range(per_writer[w]):
            k = i % args.keys
            segment = await writer.write(_payload(pattern, w, k, i // args.keys, size), keys[k])
            counts[segment.segment_id] = counts.get(segment.segment_id, 0) + 1
            tally.written += 1
        await writer.flush()

    integrity = {"bad_payloads": 0, "out_of_order": 0, "duplicates_or_extra": 0}

    async def read_segment(segment) -> None:
        last: dict = {}
        done = 0
        async with SegmentReader(pool, controller, segment.name) as reader:
            while True:
                expected = tally.per_segment.get(segment.segment_id, 0)
                if tally.writers_done and done >= expected:
                    break
                try:
                    event = await reader.read_event(timeout=0.25)
                except (WireTimeout, EndOfSegment):
                    continue
                w, k, seq = _HEADER.unpack_from(event)
                if bytes(event) != _payload(pattern, w, k, seq, size):
                    integrity["bad_payloads"] += 1
                previous = last.get((w, k), -1)
                if seq <= previous:
                    integrity["out_of_order"] += 1
                last[(w, k)] = seq
                done += 1
                tally.read += 1
                tally.bytes_read += len(event)
            # Nothing may follow what was written.
            try:
                await reader.read_event(timeout=0.05)
                integrity["duplicates_or_extra"] += 1
            except (WireTimeout, EndOfSegment):
                pass

    groups = [segments[r::args.readers] for r in range(args.readers)]

    async def read_group(group) -> None:
        await asyncio.gather(*(read_segment(s) for s in group))

    progress = None if args.quiet else asyncio.ensure_future(_progress(tally, pool))
    started = time.perf_counter()
    readers = asyncio.ensure_future(asyncio.gather(*(read_group(g) for g in groups if g)))
    try:
        await asyncio.gather(*(write(w) for w in range(args.writers)))
        write_seconds = time.perf_counter() - started
        tally.writers_done = True
        await asyncio.wait_for(readers, timeout=max(60.0, 10 * write_seconds))
        read_seconds = time.perf_counter() - started
    finally:
        tally.writers_done = True
        if not readers.done():
            readers.cancel()
        for writer in stream_writers:
            await writer.close()
        if progress is not None:
            progress.cancel()
            print(file=sys.stderr)
    latency = LatencyHistogram()
    for sw in stream_writers:
        for w in sw.writers:
            latency.merge(w.latency)
    stats = pool.stats()
    used_segments = len(tally.per_segment)
    segment_writers = sum(len(sw.writers) for sw in stream_writers)
    ok = (tally.read == tally.written == args.events
          and not any(integrity.values()))
    return {
        "events_written": tally.written,
        "events_read": tally.read,
        "bytes_written": tally.written * size,
        "bytes_read": tally.bytes_read,
        "write_seconds": round(write_seconds, 3),
        "read_seconds": round(read_seconds, 3),
        "write_events_per_s": round(tally.written / write_seconds, 1),
        "write_mb_per_s": round(tally.written * size / write_seconds / 1e6, 3),
        "read_events_per_s": round(tally.read / read_seconds, 1),
        "read_mb_per_s": round(tally.bytes_read / read_seconds / 1e6, 3),
        "ack_latency_ms_p50": round(latency.percentile(0.50) * 1e3, 3),
        "ack_latency_ms_p99": round(latency.percentile(0.99) * 1e3, 3),
        "client_sockets_opened": stats.connections_opened,
        "sockets_one_per_segment": segment_writers + used_segments,
        "segment_writers": segment_writers,
        "segment_readers": len(segments),
        "segments": len(segments),
        "segments_written": used_segments,
        "stores": args.stores if not args.controller else None,
        "writers": args.writers,
        "readers": args.readers,
        "event_size": size,
        "pooling": args.pooling,
        "integrity_ok": ok,
        "integrity": integrity,
    }


async def _progress(tally: _Tally, pool) -> None:
    tty = sys.stderr.isatty()
    interval = 0.5 if tty else 2.0
    while True:
        await asyncio.sleep(interval)
        stats = pool.stats()
        line = (f"written {tally.written:>10,}/{tally.total:,}   read {tally.read:>10,}   "
                f"sockets open {stats.open_connections}")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr,
              flush=True)


def _print_report(r: dict, controller_uri: Optional[str] = None) -> None:
    where = (f"via the controller at {controller_uri}" if controller_uri
             else f"on {r['stores']} embedded stores")
    print(f"""
pravega-wire demo: {r['writers']} writers and {r['readers']} readers, {r['segments']} segments \
{where}, pooling {'on' if r['pooling'] else 'off'}

  events written      {r['events_written']:>12,}   ({r['bytes_written'] / 1e6:,.1f} MB)
  events read         {r['events_read']:>12,}   ({r['bytes_read'] / 1e6:,.1f} MB)
  write throughput    {r['write_events_per_s']:>12,.0f} events/s   {r['write_mb_per_s']:,.2f} MB/s
  read throughput     {r['read_events_per_s']:>12,.0f} events/s   {r['read_mb_per_s']:,.2f} MB/s
  ack latency         p50 {r['ack_latency_ms_p50']:.2f} ms   p99 {r['ack_latency_ms_p99']:.2f} ms
  sockets opened      {r['client_sockets_opened']:>12}   (one per segment writer and reader: \
{r['sockets_one_per_segment']})
  integrity           {'OK: every event read back once, intact, in order per key'
                        if r['integrity_ok'] else 'FAILED: ' + json.dumps(r['integrity'])}
""")
