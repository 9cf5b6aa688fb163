#!/usr/bin/env bash
# Regenerate p2pd/proto/*_pb2.py from proto/*.proto with grpcio-tools' protoc.
# The generated modules are checked in; tests/unit/test_proto_generated.py fails
# when they drift from the sources. Usage: scripts/gen_proto.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${1:-p2pd/proto}"
mkdir -p "$OUT"
"$PY" -m grpc_tools.protoc -Iproto --python_out="$OUT" proto/*.proto
