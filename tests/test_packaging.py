"""`python -m build` gives a working sdist (the .pyx sources, no generated .c, no .so) and a
wheel with the compiled extensions, or a pure wheel that says so when
PRAVEGA_WIRE_NO_EXTENSIONS is set."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from pravega_wire.codec import pure_requested

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("build", reason="the 'build' package (test extra) is needed")


def _build(args, cwd, out, env=None):
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", *args, "-o", str(out)],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    _build(["--sdist"], ROOT, out)
    (path,) = out.glob("*.tar.gz")
    return path


def test_sdist_has_sources_not_generated_code(sdist):
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("pravega_wire/_codec.pyx") for n in names)
    assert any(n.endswith("pravega_wire/_appends.pyx") for n in names)
    assert any(n.endswith("pravega_wire/_records.pyx") for n in names)
    assert any(n.endswith("pravega_wire/_flowcore.pyx") for n in names)
    assert any(n.endswith("pravega_wire/_hash.pyx") for n in names)
    assert any(n.endswith("tests/data/vectors.json") for n in names)
    assert not [n for n in names if n.endswith((".c", ".so"))]


def test_wheel_from_sdist(sdist, tmp_path):
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path)
    (source,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    env = dict(os.environ)
    out = tmp_path / "wheel"
    log = _build(["--wheel"], source, out, env=env)
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as whl:
        compiled = [n for n in whl.namelist() if n.endswith(".so")]
    if pure_requested():
        assert compiled == []
        assert "installing the pure-Python codec" in log
    else:
        assert sorted(Path(n).name.split(".")[0] for n in compiled) == [
            "_appends", "_codec", "_flowcore", "_hash", "_records"]
