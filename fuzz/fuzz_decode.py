"""Fuzz ``decode(frame)``: the compiled twin against the pure one (the oracle).

For every input, both twins must return equal commands or both raise ``InvalidMessageError``
at the same offset. When a frame decodes, three more things must hold, on both twins:
``FrameDecoder().feed(frame)`` gives the same single command; re-encoding it gives the same
bytes from both twins (or the same error); and those canonical bytes decode (alike on both
twins) to a command that encodes to the same bytes again. (A command need not survive the round
trip field for field: the deprecated ``prefixFilter`` is decoded but always written empty, as in
Java.)

    python fuzz/fuzz_decode.py [libFuzzer options] [corpus dirs]
    python fuzz/seeds.py decode CORPUS_DIR      # the seed corpus from tests/data

Any other exception is a crash (atheris prints it and saves the input).
"""

from __future__ import annotations

from common import Disagreement, canon, fuzz_main, load_twins, outcome, same

pure, compiled = load_twins("_codec")
from pravega_wire.errors import InvalidMessageError  # noqa: E402


def check(data: bytes) -> None:
    """Run one input through both twins; raise on a crash or a disagreement."""
    p = outcome(InvalidMessageError, pure.decode, data)
    c = outcome(InvalidMessageError, compiled.decode, data)
    same("decode", data, p, c)
    same("decode(memoryview)", data, p,
         outcome(InvalidMessageError, compiled.decode, memoryview(data)))
    if p[0] != "ok":
        return
    cmd = pure.decode(data)
    for twin in (pure, compiled):
        fed = twin.FrameDecoder().feed(data)
        if canon(fed) != ["list", p[1]]:
            raise Disagreement(f"{twin.__name__}.FrameDecoder().feed differs from decode on "
                               f"{data.hex()}: {fed!r}")
    encoded = outcome(InvalidMessageError, pure.encode, cmd)
    same("encode(decode(frame))", data, encoded, outcome(InvalidMessageError, compiled.encode, cmd))
    if encoded[0] == "ok":  # the canonical frame is a fixed point of decode + encode
        frame = pure.encode(cmd)
        again = outcome(InvalidMessageError, pure.decode, frame)
        same("decode(encode(decode(frame)))", data, again,
             outcome(InvalidMessageError, compiled.decode, frame))
        if again[0] != "ok" or compiled.encode(compiled.decode(frame)) != frame:
            raise Disagreement(f"the re-encoded frame of {data.hex()} is not stable: "
                               f"{frame.hex()} -> {again!r}")

if __name__ == "__main__":
    fuzz_main(check)
