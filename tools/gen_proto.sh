#!/usr/bin/env bash
# Regenerates pravega_wire/_proto/controller_pb2.py, controller_pb2.pyi and controller_pb2_grpc.py
# from pravega_wire/_proto/controller.proto with grpcio-tools.
#
# Usage: tools/gen_proto.sh            (uses $PYTHON, default: python3)
# The generated modules check the protobuf / grpcio runtime versions at import: see the header of
# controller_pb2.py (ValidateProtobufRuntimeVersion) and GRPC_GENERATED_VERSION in the grpc module.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
out=pravega_wire/_proto

"$PYTHON" -m grpc_tools.protoc -I "$out" \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    "$out/controller.proto"

# protoc writes an absolute import of the sibling module; make it relative to the package.
sed -i 's/^import controller_pb2 as controller__pb2$/from . import controller_pb2 as controller__pb2/' \
    "$out/controller_pb2_grpc.py"
grep -q '^from \. import controller_pb2 as controller__pb2$' "$out/controller_pb2_grpc.py"
