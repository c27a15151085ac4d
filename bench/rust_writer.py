"""Drive the Rust-based ``pravega`` client (``import pravega_client``) as one event writer, for
``bench/test_bench_clients.py``.

The wheel holds the GIL during its blocking calls, so it runs in a process of its own (this
script) while the benchmark keeps the event loop of ours. Protocol, one line each way:

* arguments: ``CONTROLLER_URI SCOPE STREAM EVENT_SIZE MAX_INFLIGHT`` (the scope and its
  one-segment stream are created here; ``MAX_INFLIGHT`` is the writer's
  ``max_inflight_events``, 0 meaning one event in flight, the wheel's default);
* it prints ``ready`` once the writer has written and flushed one event;
* each ``write N`` line on stdin writes N events of ``EVENT_SIZE`` bytes, flushes, and answers
  with ``done SECONDS`` (the time of those writes and the flush, measured here);
* EOF on stdin (or ``quit``) ends it. Any failure is printed as ``error ...`` and exits 1.

Run by hand: ``python bench/rust_writer.py tcp://127.0.0.1:9090 bench rust 100 1000``.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("error usage: rust_writer.py CONTROLLER_URI SCOPE STREAM EVENT_SIZE MAX_INFLIGHT",
              flush=True)
        return 2
    uri, scope, stream = argv[0], argv[1], argv[2]
    size, inflight = int(argv[3]), int(argv[4])
    try:
        import pravega_client
        manager = pravega_client.StreamManager(uri)
        manager.create_scope(scope)
        manager.create_stream(scope, stream, 1)
        writer = manager.create_writer(scope, stream, inflight)
        event = b"r" * size
        writer.write_event_bytes(event)
        writer.flush()
    except Exception as exc:  # noqa: BLE001 - reported to the benchmark, which fails
        print(f"error {exc!r}", flush=True)
        return 1
    print("ready", flush=True)
    write = writer.write_event_bytes
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] != "write" or len(words) != 2:
            print(f"error unknown command {line.strip()!r}", flush=True)
            return 1
        count = int(words[1])
        try:
            start = time.perf_counter()
            for _ in range(count):
                write(event)
            writer.flush()
            elapsed = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001
            print(f"error {exc!r}", flush=True)
            return 1
        print(f"done {elapsed:.9f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
