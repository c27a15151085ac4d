"""One reader of a reader group, in its own process (tests/test_readergroup_processes.py).

``python readergroup_worker.py CONTROLLER_URI SCOPE GROUP READER_ID`` joins the group and
prints, one line each, flushed: ``E <segment> <offset> <event hex>`` for every event,
``C <name>`` for every checkpoint marker and ``S <count>`` whenever the number of segments it
owns changes. When its stdin reaches end of file it closes the reader (going offline at its
position), prints ``X`` and exits.
"""

from __future__ import annotations

import asyncio
import sys
import threading

from pravega_wire.client.readergroup import ReaderGroupManager


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    sys.stdin.read()
    loop.call_soon_threadsafe(stop.set)


async def main(uri: str, scope: str, group_name: str, reader_id: str) -> None:
    stop = asyncio.Event()
    threading.Thread(target=_watch_stdin, args=(asyncio.get_running_loop(), stop),
                     daemon=True).start()
    out = sys.stdout
    async with ReaderGroupManager(scope, uri) as groups:
        group = await groups.get_reader_group(group_name)
        reader = await group.create_reader(reader_id)
        owned = -1
        while not stop.is_set():
            read = await reader.read_next_event(timeout=0.2)
            if read.is_checkpoint:
                out.write(f"C {read.checkpoint_name}\n")
            elif read.event is not None:
                out.write(f"E {read.segment} {read.offset} {bytes(read.event).hex()}\n")
            if len(reader.segments) != owned:
                owned = len(reader.segments)
                out.write(f"S {owned}\n")
            out.flush()
        await reader.close()
    out.write("X\n")
    out.flush()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
