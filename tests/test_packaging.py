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


def _build(args, cwd, out, env=None):
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", *args, "-o", str(out)],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _unpack(sdist, into):
    """The sdist's source directory, unpacked under ``into`` (with the "data" filter where the
    interpreter has it: Python 3.12+ warns without a filter, 3.14 filters by default)."""
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - interpreters before the filter backport
            tar.extractall(into)
    (source,) = [p for p in Path(into).iterdir() if p.is_dir()]
    return source


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
    source = _unpack(sdist, tmp_path)
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


def _wheel_from(source, out, env):
    log = _build(["--wheel"], source, out, env=env)
    (wheel,) = out.glob("*.whl")
    return wheel, log


@pytest.fixture(scope="module")
def wheel_names(sdist, tmp_path_factory):
    """The file names in a wheel built from the sdist, with its build log."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = _unpack(sdist, tmp)
    wheel, _ = _wheel_from(source, tmp / "out", dict(os.environ))
    with zipfile.ZipFile(wheel) as whl:
        metadata = next(whl.read(n).decode() for n in whl.namelist()
                        if n.endswith(".dist-info/METADATA"))
        return whl.namelist(), metadata


def test_the_wheel_holds_no_test_machinery(wheel_names):
    """The fault soak is test machinery (tests/soak.py), not part of the installed package;
    the store's token code is (pravega_wire/server/tokens.py)."""
    names, _ = wheel_names
    assert "pravega_wire/server/tokens.py" in names
    assert "pravega_wire/soak.py" not in names
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]


def test_wheel_is_typed_and_licensed(wheel_names):
    names, metadata = wheel_names
    assert "pravega_wire/py.typed" in names
    # Every compiled module has a stub, so a user's mypy sees its API, not "missing stubs".
    sources = sorted(Path(n).stem for n in names if n.endswith(".pyx"))
    assert {"_appends", "_codec", "_flowcore", "_hash", "_records"} <= set(sources)
    assert [m for m in sources if f"pravega_wire/{m}.pyi" not in names] == []
    licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert len(licenses) == 1
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Python: >=3.10" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(r.startswith("Requires-Dist: grpcio>=") and "extra" not in r for r in requires)
    assert any(r.startswith("Requires-Dist: protobuf>=") and "extra" not in r for r in requires)


def test_license_file_is_apache_2():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_failed_compile_ships_no_stale_extensions(sdist, tmp_path):
    """A tree with extensions left in build/ by an earlier run, then a compile that fails: the
    wheel is pure (the warning says so) and carries none of the old files."""
    import sysconfig

    source = _unpack(sdist, tmp_path)
    build_lib = source / "build" / f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
    stale_dir = build_lib / "pravega_wire"
    stale_dir.mkdir(parents=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for pyx in sorted((source / "pravega_wire").glob("*.pyx")):
        (stale_dir / f"{pyx.stem}{suffix}").write_bytes(b"stale extension from an earlier build")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PRAVEGA_WIRE_NO_EXTENSIONS", "PRAVEGA_WIRE_REQUIRE_EXTENSIONS")}
    env["CC"] = "false"  # every compile fails
    wheel, log = _wheel_from(source, tmp_path / "out", env)
    assert "installing the pure-Python codec" in log
    with zipfile.ZipFile(wheel) as whl:
        assert [n for n in whl.namelist() if n.endswith(".so")] == []
    assert list(stale_dir.glob("*.so")) == []


def test_failed_compile_is_fatal_when_extensions_are_required(sdist, tmp_path):
    source = _unpack(sdist, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PRAVEGA_WIRE_NO_EXTENSIONS"}
    env.update(CC="false", PRAVEGA_WIRE_REQUIRE_EXTENSIONS="1")
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel",
                             "-o", str(tmp_path / "out")],
                            cwd=source, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "building the compiled codec failed" in result.stdout + result.stderr
    assert not list((tmp_path / "out").glob("*.whl"))
