#!/usr/bin/env bash
# Remove the kind cluster deploy/kind/up.sh made (and with it everything Sigil put there).
set -euo pipefail
cluster="${SIGIL_KIND_CLUSTER:-sigil}"
command -v kind >/dev/null 2>&1 || { echo "error: kind is not on PATH" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind delete cluster --name "$cluster"
else
  echo "no kind cluster named '$cluster'"
fi
