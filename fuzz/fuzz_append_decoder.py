"""Fuzz the segment store's ``AppendDecoder``: the compiled twin against the pure one (the oracle).

Byte 0 of the input picks the mode:

- even: the rest is a client byte stream (seeds: the Java encoder streams of ``tests/data``);
  the pure ``FrameDecoder(server=True)`` cuts it into commands (up to its first error), and both
  append decoders process them;
- odd: the rest drives a generator of append-path commands (SetupAppend, AppendBlock with
  PartialEvent / Padding / odd trailers, AppendBlockEnd, ConditionalAppend,
  ConditionalBlockEnd, Padding, stray PartialEvent / Event, pass-through commands) over three
  writers and two segments, with boundary numbers and every kind of bytes-like data: states a
  real stream rarely reaches.

After every command both twins must return equal lists (``Append`` records and pass-through
commands) or both raise ``InvalidMessageError``, and report the same state (``writer_count``,
``in_block``, ``segment_of`` and ``last_event_number`` of every writer); after an error both
must refuse the next command.

    python fuzz/fuzz_append_decoder.py [libFuzzer options] [corpus dirs]
    python fuzz/seeds.py append_decoder CORPUS_DIR
"""

from __future__ import annotations

import struct
import uuid

import atheris

from common import Disagreement, fuzz_main, load_twins, outcome, same

pure, compiled = load_twins("_appends")
from pravega_wire import _codec_py as codec  # noqa: E402
from pravega_wire import commands as C  # noqa: E402
from pravega_wire.errors import InvalidMessageError  # noqa: E402

WRITERS = [uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=0xFFFF << 64)]
SEGMENTS = ["scope/stream/0.#epoch.0", "scope/stream/1.#epoch.0"]
NUMBERS = [-2 ** 63, -2 ** 31 - 1, -1, 0, 1, 2, 3, 7, 2 ** 31 - 1, 2 ** 31, 2 ** 63 - 1]
SUB_TYPES = [C.PartialEvent.TYPE, C.Padding.TYPE, 0, 1, 3, 4, 100, 13, -127]
_HEADER = struct.Struct(">ii")
MAX_COMMANDS = 64


class _Generator:
    """Append-path commands drawn from a FuzzedDataProvider."""

    def __init__(self, data: bytes):
        self.fdp = atheris.FuzzedDataProvider(data)
        self.last_block = 0  # data length of the latest AppendBlock

    def number(self) -> int:
        fdp = self.fdp
        if fdp.ConsumeBool():
            return fdp.PickValueInList(NUMBERS)
        return fdp.ConsumeIntInRange(-2, 40)

    def writer(self):
        return self.fdp.PickValueInList(WRITERS)

    def blob(self, limit: int = 64):
        fdp = self.fdp
        raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, limit))
        kind = fdp.ConsumeIntInRange(0, 3)
        if kind == 1:
            return bytearray(raw)
        if kind == 2:
            return memoryview(raw)
        if kind == 3:  # a view into a bigger buffer, as a FrameDecoder hands out
            return memoryview(b"\xee" + raw + b"\xee")[1:1 + len(raw)]
        return raw

    def block_data(self):
        fdp = self.fdp
        whole = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 48))
        trailer = b""
        shape = fdp.ConsumeIntInRange(0, 3)
        if shape:  # a sub-frame after the whole events: sane, lying about its size, or cut short
            body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24))
            sub_type = fdp.PickValueInList(SUB_TYPES)
            length = len(body) if shape == 1 else fdp.ConsumeIntInRange(-3, 40)
            trailer = _HEADER.pack(sub_type, length) + body
            if shape == 3:
                trailer = trailer[:fdp.ConsumeIntInRange(0, len(trailer))]
        data = whole + trailer
        self.last_block = len(data)
        return data

    def command(self):
        fdp = self.fdp
        kind = fdp.ConsumeIntInRange(0, 12)
        if kind == 0:
            return C.SetupAppend(self.number(), self.writer(), fdp.PickValueInList(SEGMENTS),
                                 "")
        if kind in (1, 2):
            data = self.block_data()
            return C.AppendBlock(self.writer(), memoryview(data) if fdp.ConsumeBool() else data)
        if kind in (3, 4):
            whole = fdp.PickValueInList([0, self.last_block, self.last_block - 1, -1,
                                         fdp.ConsumeIntInRange(0, 64)])
            return C.AppendBlockEnd(self.writer(), whole, self.blob(), self.number(),
                                    self.number(), self.number())
        if kind == 5:
            return C.ConditionalAppend(self.writer(), self.number(), self.number(),
                                       C.Event(self.blob()), self.number())
        if kind == 6:
            return C.ConditionalBlockEnd(self.writer(), self.number(), self.number(), self.blob(),
                                         self.number())
        if kind == 7:
            return C.Padding(fdp.ConsumeIntInRange(0, 16))
        if kind == 8:
            return C.PartialEvent(self.blob())
        if kind == 9:
            return C.Event(self.blob())
        if kind == 10:
            return C.KeepAlive()
        if kind == 11:
            return C.ReadSegment(fdp.PickValueInList(SEGMENTS), self.number(), 100, "",
                                 self.number())
        return C.DataAppended(self.number(), self.writer(), self.number(), self.number(),
                              self.number())

    def commands(self):
        for _ in range(MAX_COMMANDS):
            if not self.fdp.remaining_bytes():
                return
            yield self.command()


def _stream_commands(stream: bytes) -> list:
    try:
        return codec.FrameDecoder(server=True).feed(stream)
    except InvalidMessageError as e:
        return e.decoded


def _state(decoder) -> tuple:
    return (decoder.writer_count, decoder.in_block,
            tuple((decoder.segment_of(w), decoder.last_event_number(w)) for w in WRITERS))


def check(data: bytes) -> None:
    """Run one input through both twins; raise on a crash or a disagreement."""
    if not data:
        return
    commands = _Generator(data[1:]).commands() if data[0] & 1 else _stream_commands(data[1:])
    decoders = pure.AppendDecoder(), compiled.AppendDecoder()
    for i, cmd in enumerate(commands):
        p = outcome(InvalidMessageError, decoders[0].process, cmd)
        c = outcome(InvalidMessageError, decoders[1].process, cmd)
        same(f"AppendDecoder.process, command {i} ({cmd!r})", data, p, c)
        states = [_state(d) for d in decoders]
        if states[0] != states[1]:
            raise Disagreement(f"state differs after command {i} of {data.hex()}: "
                               f"{states[0]!r} != {states[1]!r}")
        if p[0] == "invalid":
            for d in decoders:
                try:
                    d.process(C.KeepAlive())
                except InvalidMessageError:
                    continue
                raise Disagreement(f"{type(d).__module__}.AppendDecoder went on after an "
                                   f"error on input {data.hex()}")
            return


if __name__ == "__main__":
    fuzz_main(check)
