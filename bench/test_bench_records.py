"""Benchmarks of building a command record: the compiled constructors (``pravega_wire._records``:
the class's own vectorcall, or its ``__new__`` for a subclass) side by side with the generated
Python ``__new__`` that pure mode uses, on the same calls in one run.

The pure side is a subclass of the command whose ``__new__`` is the function pure mode would
install (``commands._python_new``): a class call then costs exactly what it costs in pure mode.
Each timed call builds ``CALLS`` records; ``extra_info`` holds nanoseconds per record.

Run: ``/tmp/venv/bin/python -m pytest bench/test_bench_records.py -p no:cacheprovider
--benchmark-columns=median,mean,stddev,rounds``
"""

from __future__ import annotations

import uuid

import pytest

from pravega_wire import commands as C

CALLS = 10_000
ATTRIBUTE = uuid.UUID(int=0x1234)
WRITER = uuid.UUID(int=0x5678)


def _pure(cls):
    """A subclass of ``cls`` constructed as in pure mode."""
    pure = type(f"Pure{cls.__name__}", (cls,), {"__slots__": ()})
    pure.__new__ = C._python_new(cls, cls._fields, cls.__dict__.get("_defaults", {}))
    return pure


def _classes(which: str, cls):
    if which == "pure":
        return _pure(cls)
    if C.CONSTRUCTION != "compiled":
        pytest.skip("the compiled record constructors are not in use")
    return cls


CASES = {
    # the pool benchmark's request, as its listener builds it
    "GetSegmentAttribute-positional": (
        C.GetSegmentAttribute,
        lambda cls: [cls(i, "s", ATTRIBUTE, "") for i in range(CALLS)]),
    "GetSegmentAttribute-default": (
        C.GetSegmentAttribute,
        lambda cls: [cls(i, "s", ATTRIBUTE) for i in range(CALLS)]),
    "SetupAppend-keywords": (
        C.SetupAppend,
        lambda cls: [cls(request_id=i, writer_id=WRITER, segment="s") for i in range(CALLS)]),
    "SegmentRead-6-fields": (
        C.SegmentRead,
        lambda cls: [cls("s", i, False, False, b"", i) for i in range(CALLS)]),
}


@pytest.mark.parametrize("which", ["pure", "compiled"])
@pytest.mark.parametrize("case", CASES)
def test_build_records(benchmark, case, which):
    cls, build = CASES[case]
    target = _classes(which, cls)
    benchmark.group = f"build {case} (x{CALLS})"
    made = benchmark(build, target)
    assert len(made) == CALLS and tuple(made[-1]) == tuple(build(cls)[-1])
    benchmark.extra_info["ns_per_record"] = benchmark.stats.stats.median / CALLS * 1e9
