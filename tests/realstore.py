"""Replays the transcripts recorded from Pravega's real segment store against any store.

The transcripts (``tests/data/realstore/public.json``) were recorded from Pravega's own segment
store (``PravegaConnectionListener`` over an in-memory ``StreamSegmentStore``, Pravega commit
3142a01): for each scenario, the exact frames a client sent, every frame the store answered (with
the fields that vary from run to run listed as ``variable``), how long each answer took
(``after_s``: seconds since the last send on that connection), where the store stayed silent
(``silent_for_s``) and where it closed the connection (``closed``). They are the ground truth for
the embedded store and for the clients' assumptions.

:func:`replay` sends a scenario's recorded bytes to a store and compares what comes back:

* frames: the same count, types and fields (all but the ``variable`` ones), in order;
* held replies (recorded ``after_s`` of a second or more, e.g. a read held at the tail of a
  segment): "held at least" — the reply must not come before ``0.8 * min(after_s, hold_cap)``;
  one recorded later than ``hold_cap`` is not awaited, and the rest of that connection's
  transcript is not compared;
* other replies may take up to ``reply_timeout``;
* silences: nothing more within ``min(silent_for_s, silence_cap)``;
* closes: a recorded close must happen within ``closed_after_s + close_grace``; a close the real
  store did not make is a mismatch.

Segment names carry the scope token ``scope-00``; every replay substitutes a fresh token of the
same length, so scenarios can run concurrently on one store and again on the same store.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pravega_wire

TRANSCRIPTS = Path(__file__).parent / "data" / "realstore" / "public.json"
#: The scope token the recordings were normalised to.
CANONICAL_TOKEN = b"scope-00"
#: A recorded ``after_s`` at or above this marks a reply the real store held.
HELD = 1.0
_HEADER = 8


def load_scenarios(path: Path = TRANSCRIPTS) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)["scenarios"]


def as_recorded(value: Any) -> Any:
    """A decoded field in the transcripts' JSON form (bytes as hex, UUIDs as strings, nested
    records as objects with ``_type``)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "_fields"):
        out = {"_type": type(value).__name__}
        out.update((name, as_recorded(getattr(value, name))) for name in value._fields)
        return out
    if isinstance(value, (list, tuple)):
        return [as_recorded(v) for v in value]
    return value


@dataclass(frozen=True)
class Timing:
    """How long a replay waits (seconds); see the module docstring."""

    hold_cap: float = 2.5
    #: Not below the recorded silences that precede another connection's request answering a
    #: held read (``read_at_tail_then_append``: 2.01 s), or that answer comes early.
    silence_cap: float = 2.5
    reply_timeout: float = 5.0
    close_grace: float = 3.0


class _Peer:
    """One recorded connection: the bytes it sends, the frames it receives (decoded with the
    codec twin in use), and when the store closed it."""

    def __init__(self, token: bytes):
        self.token = token
        self.frames: list[tuple[float, str, dict[str, Any]]] = []
        self.closed_at: Optional[float] = None
        self.last_send = time.monotonic()
        self._arrived = asyncio.Event()

    async def open(self, host: str, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self._pump_task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = await self.reader.read(1 << 20)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= _HEADER:
                    length = int.from_bytes(buf[4:8], "big", signed=True)
                    if length < 0 or len(buf) < _HEADER + length:
                        break
                    frame = bytes(buf[:_HEADER + length]).replace(self.token, CANONICAL_TOKEN)
                    del buf[:_HEADER + length]
                    try:
                        cmd = pravega_wire.decode(frame)
                        kind = type(cmd).__name__
                        fields = {f: as_recorded(getattr(cmd, f)) for f in cmd._fields}
                    except pravega_wire.InvalidMessageError as exc:
                        kind, fields = "<undecodable>", {"error": str(exc)}
                    self.frames.append((time.monotonic(), kind, fields))
                    self._arrived.set()
        except OSError:
            pass
        finally:
            self.closed_at = time.monotonic()
            self._arrived.set()

    async def next_frame(self, deadline: float) -> Optional[tuple[float, str, dict[str, Any]]]:
        """The next frame, or None at ``deadline`` or once the store closed the connection."""
        while not self.frames:
            remaining = deadline - time.monotonic()
            if self.closed_at is not None or remaining <= 0:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return self.frames.pop(0)

    def send(self, frame: bytes) -> None:
        self.writer.write(frame.replace(CANONICAL_TOKEN, self.token))
        self.last_send = time.monotonic()

    def close(self) -> None:
        self._pump_task.cancel()
        self.writer.close()


def _brief(value: Any, limit: int = 120) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


async def replay(scenario: dict[str, Any], host: str, port: int,
                 timing: Timing = Timing()) -> list[str]:
    """Replay one scenario against the store at ``host:port``; the mismatches (empty if it
    answered as the real store did)."""
    token = ("r" + secrets.token_hex(4)[:7]).encode()
    assert len(token) == len(CANONICAL_TOKEN)
    peers = {name: _Peer(token) for name in scenario["connections"]}
    problems: list[str] = []
    try:
        for peer in peers.values():
            await peer.open(host, port)
        for i, step in enumerate(scenario["steps"]):
            peer = peers[step["conn"]]
            where = f"step {i} ({step['conn']})"
            if "send" in step:
                if "send_failed" in step or peer.closed_at is not None:
                    if "send_failed" not in step:
                        problems.append(f"{where}: cannot send {step['send']['type']}: "
                                        "this store closed the connection")
                    continue
                peer.send(bytes.fromhex(step["send"]["wire_hex"]))
                try:
                    await peer.writer.drain()
                except OSError as exc:
                    problems.append(f"{where}: sending {step['send']['type']} failed: {exc}")
                continue
            if step.get("client_shutdown_write"):
                peer.writer.write_eof()
                peer.last_send = time.monotonic()
                continue
            problems.extend(await _expect(peer, step, where, timing))
    finally:
        for peer in peers.values():
            if hasattr(peer, "writer"):
                peer.close()
    return problems


async def _expect(peer: _Peer, step: dict[str, Any], where: str, timing: Timing) -> list[str]:
    problems: list[str] = []
    base = peer.last_send
    started = time.monotonic()
    for expected in step["expect"]:
        recorded_after = expected.get("after_s") or 0
        if recorded_after >= HELD:
            hold = min(recorded_after, timing.hold_cap)
            frame = await peer.next_frame(base + 0.8 * hold)
            if frame is not None and frame[0] - base < 0.8 * hold:
                problems.append(f"{where}: {frame[1]} came after {frame[0] - base:.2f} s; "
                                f"the real store held it {recorded_after} s")
            elif frame is None and peer.closed_at is not None:
                problems.append(f"{where}: this store closed the connection while the real "
                                f"store held {expected['type']}")
                return problems
            elif frame is None and recorded_after > timing.hold_cap:
                # held at least as long as checked; the rest of this connection is not compared
                peer.frames.clear()
                return problems
            if frame is None:
                frame = await peer.next_frame(base + recorded_after + timing.reply_timeout)
        else:
            frame = await peer.next_frame(max(time.monotonic(), base) + timing.reply_timeout)
        if frame is None:
            got = "the connection closed" if peer.closed_at is not None else "no reply"
            problems.append(f"{where}: expected {expected['type']} "
                            f"{_brief(expected['fields'])}; got {got}")
            return problems
        _, kind, fields = frame
        if kind != expected["type"]:
            problems.append(f"{where}: expected {expected['type']} {_brief(expected['fields'])}; "
                            f"got {kind} {_brief(fields)}")
            continue
        variable = set(expected.get("variable", ()))
        differ = [f"{name}={_brief(fields.get(name), 80)} (real: {_brief(value, 80)})"
                  for name, value in expected["fields"].items()
                  if name not in variable and fields.get(name) != value]
        if differ:
            problems.append(f"{where}: {kind} differs: " + "; ".join(differ))
    if step.get("closed"):
        if peer.closed_at is None:
            deadline = max(time.monotonic(), base + (step.get("closed_after_s") or 0))
            frame = await peer.next_frame(deadline + timing.close_grace)
            if frame is not None:
                problems.append(f"{where}: unexpected {frame[1]} {_brief(frame[2])} "
                                "(the real store closed the connection)")
            elif peer.closed_at is None:
                problems.append(f"{where}: the real store closed the connection here; this "
                                "store kept it open")
        return problems
    silence = min(step.get("silent_for_s") or 0, timing.silence_cap)
    if silence > 0:
        frame = await peer.next_frame(time.monotonic() + silence)
    else:
        frame = peer.frames.pop(0) if peer.frames else None
    if frame is not None:
        problems.append(f"{where}: unexpected {frame[1]} {_brief(frame[2])} (the real store "
                        f"sent nothing for {step.get('silent_for_s')} s)")
        peer.frames.clear()
    elif peer.closed_at is not None and peer.closed_at >= started - 0.05:
        problems.append(f"{where}: this store closed the connection (the real store kept it "
                        "open)")
    return problems
