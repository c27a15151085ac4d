#!/usr/bin/env bash
# The project's jobs, each doing its own set-up on a fresh machine (Python 3.11 with venv and gcc;
# everything else comes from PyPI):
#
#   bash tasks.sh demo [options]   the main job: the pooling demo against an embedded cluster
#   bash tasks.sh test             the whole test suite: compiled codec (built strictly), then pure
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
        echo "usage: bash tasks.sh demo|test|bench|serve [options]" >&2
        exit 2
        ;;
esac
