"""Write the seed corpora of the fuzz harnesses, drawn from ``tests/data`` (Java-made frames and
client streams).

    python fuzz/seeds.py HARNESS DIR     # HARNESS: decode, frame_decoder, append_decoder
    python fuzz/seeds.py all DIR         # DIR/decode, DIR/frame_decoder, DIR/append_decoder
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Dict, List

from common import encoder_streams, vector_frames, write_corpus


def decode_seeds() -> List[bytes]:
    """Every Java-made frame, valid or not."""
    return list(vector_frames())


def frame_decoder_seeds() -> List[bytes]:
    """Frames and client streams behind a 2-byte control prefix (decoder side, chunk kind, cut
    seed), each as a client reader and as a server reader, plus every vector frame in one
    stream."""
    frames = list(vector_frames())
    streams = frames + list(encoder_streams()) + [b"".join(frames)]
    seeds = []
    for stream in streams:
        seeds.append(b"\x00\x00" + stream)
        seeds.append(b"\x07\x2a" + stream)
    return seeds


def append_decoder_seeds() -> List[bytes]:
    """The Java encoder's client streams (stream mode), and a few generator-mode inputs."""
    seeds = [b"\x00" + stream for stream in encoder_streams()]
    seeds += [b"\x01" + bytes(range(256)), b"\x01" + bytes(range(255, -1, -1)),
              b"\x01" + b"\x00\x01\x02\x03" * 64]
    return seeds


HARNESSES: Dict[str, Callable[[], List[bytes]]] = {
    "decode": decode_seeds,
    "frame_decoder": frame_decoder_seeds,
    "append_decoder": append_decoder_seeds,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("harness", choices=sorted(HARNESSES) + ["all"])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    names = sorted(HARNESSES) if args.harness == "all" else [args.harness]
    for name in names:
        target = args.directory / name if args.harness == "all" else args.directory
        count = write_corpus(target, HARNESSES[name]())
        print(f"{name}: {count} seeds in {target}")


if __name__ == "__main__":
    main()
