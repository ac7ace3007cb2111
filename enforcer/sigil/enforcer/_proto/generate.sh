#!/bin/sh
# Regenerate policy_pb2.py and policy_pb2.pyi from policy.proto (run from anywhere; commit the output).
# The include root is enforcer/, so the descriptor is registered as sigil/enforcer/_proto/policy.proto.
# No gRPC stubs: the agent and the enforcer route /sigil.policy.v1.PolicyService/WatchPolicies by hand (grpclib).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
python=${PYTHON:-"$root/../.venv/bin/python"}
"$python" -m grpc_tools.protoc \
    --proto_path="$root" \
    --python_out="$root" \
    --pyi_out="$root" \
    "$here/policy.proto"
