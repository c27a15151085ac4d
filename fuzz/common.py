"""What the fuzz harnesses share: loading both twins (the pure ones instrumented for coverage),
comparing their results, and the seed inputs drawn from ``tests/data``.

The compiled twins are C extensions built without sanitizer coverage (that needs clang and
``-fsanitize=fuzzer-no-link``), so coverage guidance comes from the pure twins' bytecode, which
atheris instruments: both twins implement the same decisions, so inputs that reach new branches
of the reference are the ones worth trying on the compiled code. Each input is run through both
and any difference, or any exception other than ``InvalidMessageError``, is a finding.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
if str(ROOT) not in sys.path:  # run from a clean clone without installing the package
    sys.path.insert(0, str(ROOT))

#: Seeds longer than this are cut (libFuzzer mutates small inputs best; a cut stream still ends
#: in a partial frame, which is a case worth having).
MAX_SEED = 64 * 1024


def load_twins(name: str) -> Tuple[Any, Any]:
    """``(pure, compiled)``: ``pravega_wire.<name>_py`` and ``pravega_wire.<name>``, the pure one
    instrumented for coverage when atheris is importable."""
    try:
        import atheris
    except ImportError:  # replaying without atheris: plain imports
        pure = importlib.import_module(f"pravega_wire.{name}_py")
    else:
        with atheris.instrument_imports(include=["pravega_wire"]):
            pure = importlib.import_module(f"pravega_wire.{name}_py")
    compiled = importlib.import_module(f"pravega_wire.{name}")
    if getattr(compiled, "IMPLEMENTATION", None) != "compiled":
        raise ImportError(f"pravega_wire.{name} is not the compiled twin")
    return pure, compiled


class Disagreement(AssertionError):
    """The twins gave different results for the same input."""


def canon(value: Any) -> Any:
    """A comparable form of a decoder's output: records as (class name, fields), every
    bytes-like value as ``bytes``, booleans tagged so that ``True`` and ``1`` differ."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return (type(value).__name__,) + tuple(canon(v) for v in value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ("bytes", bytes(value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, list):
        return ["list"] + [canon(v) for v in value]
    if isinstance(value, tuple):
        return tuple(canon(v) for v in value)
    if value is None or isinstance(value, (int, str)):
        return (type(value).__name__, value)
    return (type(value).__module__, type(value).__name__, repr(value))


def outcome(invalid: type, fn: Callable[..., Any], *args: Any) -> Tuple[str, Any]:
    """``("ok", canon(result))`` or ``("invalid", (offset, canon(decoded)))`` when ``fn`` raises
    ``invalid`` (InvalidMessageError); any other exception propagates: it is a crash."""
    try:
        return ("ok", canon(fn(*args)))
    except invalid as e:
        return ("invalid", (e.offset, canon(getattr(e, "decoded", None))))


def same(what: str, data: bytes, pure: Any, compiled: Any) -> None:
    """Raise :class:`Disagreement` unless the two outcomes are equal."""
    if pure != compiled:
        raise Disagreement(f"{what}: the twins disagree on input {data.hex()}\n"
                           f"  pure:     {pure!r}\n  compiled: {compiled!r}")


# ---- seeds ------------------------------------------------------------------------------------

def _json(name: str) -> Any:
    with open(DATA / name, encoding="utf-8") as f:
        return json.load(f)


def vector_frames() -> Iterator[bytes]:
    """Every whole frame in the Java vectors: commands, old layouts, lenient decodes, and the
    malformed inputs."""
    vectors = _json("vectors.json")
    for key in ("vectors", "old_version_vectors", "lenient_decode"):
        for v in vectors[key]:
            yield bytes.fromhex(v["wire_hex"])
    for m in _json("malformed.json")["malformed"]:
        yield bytes.fromhex(m["bytes_hex"])


def encoder_streams() -> Iterator[bytes]:
    """The client streams of ``encoder_streams.json`` (whole, or their first :data:`MAX_SEED`
    bytes for the big ones)."""
    for scenario in _json("encoder_streams.json")["scenarios"]:
        if "stream_hex" in scenario:
            yield bytes.fromhex(scenario["stream_hex"])[:MAX_SEED]
        else:
            with open(DATA / scenario["stream_file"], "rb") as f:
                yield f.read(MAX_SEED)


def write_corpus(directory: os.PathLike, seeds: List[bytes]) -> int:
    """Write ``seeds`` (deduplicated) as files ``seed-<n>`` in ``directory``; returns how many."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    unique = list(dict.fromkeys(seeds))
    for i, seed in enumerate(unique):
        (path / f"seed-{i:04d}").write_bytes(seed)
    return len(unique)


def fuzz_main(check: Callable[[bytes], None]) -> None:
    """Run ``check`` on every input libFuzzer makes (its options come from the command line): the
    entry point of each harness."""
    import atheris

    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
