"""A short coverage-guided fuzzing run of each harness in ``fuzz/`` (atheris), as CI runs it:
each harness starts from the seed corpus drawn from ``tests/data`` and runs for
``FUZZ_SECONDS`` seconds (default 8) or ``FUZZ_RUNS`` inputs, whichever comes first, in a child
process; any crash or twin disagreement fails the test with the input that caused it.

Long runs: ``python fuzz/<harness>.py -max_total_time=3600 CORPUS`` (see RELIABILITY.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pravega_wire.codec import pure_requested

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "fuzz"
SECONDS = int(os.environ.get("FUZZ_SECONDS", "8"))
RUNS = int(os.environ.get("FUZZ_RUNS", "2000000"))
HARNESSES = ("decode", "frame_decoder", "append_decoder")


def _atheris_missing() -> str:
    try:
        import atheris  # noqa: F401
    except ImportError as e:
        return f"atheris is not installed ({e}); CI installs it for this test"
    return ""


@pytest.fixture(scope="module", autouse=True)
def _requirements():
    reason = _atheris_missing()
    if reason:
        print(f"\nskipping the fuzz run: {reason}")
        pytest.skip(reason)
    if pure_requested():
        pytest.skip("PRAVEGA_WIRE_NO_EXTENSIONS is set: the compiled twins are not in use")


@pytest.mark.parametrize("harness", HARNESSES)
def test_a_short_fuzz_run_finds_no_crash_and_no_disagreement(harness, tmp_path):
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, str(FUZZ / "seeds.py"), harness, str(corpus)], check=True,
                   capture_output=True, timeout=120)
    assert any(corpus.iterdir())
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    run = subprocess.run(
        [sys.executable, str(FUZZ / f"fuzz_{harness}.py"), f"-max_total_time={SECONDS}",
         f"-runs={RUNS}", "-max_len=65536", "-rss_limit_mb=2048", "-print_final_stats=1",
         f"-artifact_prefix={artifacts}/", str(corpus)],
        capture_output=True, text=True, timeout=SECONDS * 10 + 120, env=env, cwd=tmp_path)
    log = run.stderr + run.stdout
    crashes = sorted(artifacts.iterdir())
    detail = "\n".join(f"{c.name}: {c.read_bytes().hex()}" for c in crashes)
    assert run.returncode == 0 and not crashes, f"{log[-6000:]}\n{detail}"
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    assert executed is not None, log[-3000:]
    print(f"\nfuzz {harness}: {executed.group(1)} executions in {SECONDS} s")
    assert int(executed.group(1)) > 1000  # it really ran: seeds and mutations
