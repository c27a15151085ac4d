"""Fuzz the streaming ``FrameDecoder``: the compiled twin against the pure one (the oracle).

Input layout: byte 0 picks the decoder (bit 0: ``server=True``) and the kind of chunks fed (bits
1-2: ``bytes``, ``bytearray``, ``memoryview`` of bytes, a mix); byte 1 seeds the cut points; the
rest is the stream. So a seed is ``b"\\x00\\x00" + stream`` and mutations of the stream keep
their meaning.

Checked for every input:

- chunk by chunk, both twins return equal commands, or both raise ``InvalidMessageError`` with
  the same ``offset`` and ``decoded``; both report the same ``buffered`` after each call; after
  an error, both refuse the next call with ``InvalidMessageError``;
- cutting does not matter: the commands of all chunks together (and the error, if any) are
  those of the whole stream fed at once.

    python fuzz/fuzz_frame_decoder.py [libFuzzer options] [corpus dirs]
    python fuzz/seeds.py frame_decoder CORPUS_DIR
"""

from __future__ import annotations

import random

from common import Disagreement, canon, fuzz_main, load_twins, same

pure, compiled = load_twins("_codec")
from pravega_wire.errors import InvalidMessageError  # noqa: E402


def _cuts(stream: bytes, seed: int) -> list:
    """Deterministic cut points: mostly small pieces (headers split anywhere), some large."""
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(stream):
        roll = rng.random()
        n = rng.randint(1, 9) if roll < 0.5 else rng.randint(10, 300) if roll < 0.85 else \
            rng.randint(301, 20000)
        pieces.append(stream[pos:pos + n])
        pos += n
    return pieces


def _as_kind(piece: bytes, kind: int, i: int):
    if kind == 3:
        kind = i % 3
    if kind == 1:
        return bytearray(piece)
    if kind == 2:
        return memoryview(piece)
    return piece


def _feed(decoder, chunk):
    try:
        return ("ok", canon(decoder.feed(chunk)))
    except InvalidMessageError as e:
        return ("invalid", (e.offset, canon(e.decoded)))


def check(data: bytes) -> None:
    """Run one input through both twins; raise on a crash or a disagreement."""
    if len(data) < 2:
        return
    server = bool(data[0] & 1)
    kind = (data[0] >> 1) & 3
    stream = data[2:]
    decoders = pure.FrameDecoder(server=server), compiled.FrameDecoder(server=server)
    total: list = ["list"]
    error = None
    for i, piece in enumerate(_cuts(stream, data[1])):
        results = [_feed(d, _as_kind(piece, kind, i)) for d in decoders]
        same(f"FrameDecoder(server={server}).feed, chunk {i}", data, *results)
        p = results[0]
        if p[0] == "invalid":
            total.extend(p[1][1][1:])
            error = p[1][0]
            for d in decoders:
                try:
                    d.feed(b"\x00" * 8)
                except InvalidMessageError:
                    continue
                raise Disagreement(f"{type(d).__module__}.FrameDecoder accepted data after an "
                                   f"error on input {data.hex()}")
            break
        total.extend(p[1][1:])
        if decoders[0].buffered != decoders[1].buffered:
            raise Disagreement(f"buffered differs after chunk {i} of {data.hex()}: "
                               f"{decoders[0].buffered} != {decoders[1].buffered}")
    one_shot = pure.FrameDecoder(server=server)
    whole = _feed(one_shot, stream)
    expected = ("invalid", (error, total)) if error is not None else ("ok", total)
    if whole != expected:
        raise Disagreement(f"cut points change the result for {data.hex()}:\n"
                           f"  whole: {whole!r}\n  cut:   {expected!r}")
    if error is None and one_shot.buffered != decoders[0].buffered:
        raise Disagreement(f"cut points change what is buffered for {data.hex()}: "
                           f"{one_shot.buffered} != {decoders[0].buffered}")


if __name__ == "__main__":
    fuzz_main(check)
