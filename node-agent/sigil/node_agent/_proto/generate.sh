#!/bin/sh
# Regenerate workload_pb2.py and workload_pb2.pyi from workload.proto (run from anywhere; commit the output).
# The include root is node-agent/, so the descriptor is registered as sigil/node_agent/_proto/workload.proto
# and never clashes with py-spiffe's spiffe/_proto/workload.proto.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
python=${PYTHON:-"$root/../.venv/bin/python"}
"$python" -m grpc_tools.protoc \
    --proto_path="$root" \
    --python_out="$root" \
    --pyi_out="$root" \
    "$here/workload.proto"
