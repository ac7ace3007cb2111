#!/usr/bin/env bash
# Bring up a Sigil mesh in kind: cluster, image, the chosen overlay, the demo, and one call allowed, one denied.
#
#   deploy/kind/up.sh [single|ha] [proxy|envoy]
#
# single (default) or ha picks the overlay; proxy (default) puts `sigil-enforcer proxy` in front of the demo's
# backend, envoy puts Envoy there instead (SDS from the agent, Sigil policy through ext_authz; namespace demo-envoy).
# SIGIL_KIND_CLUSTER names the cluster (default "sigil").
#
# Needs docker, kind and kubectl on PATH. deploy/kind/down.sh removes everything.
set -euo pipefail

overlay="${1:-single}"
variant="${2:-proxy}"
cluster="${SIGIL_KIND_CLUSTER:-sigil}"
image="sigil:dev"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

case "$overlay" in
  single|ha) ;;
  *) fail "unknown overlay '$overlay' (choose single or ha)" ;;
esac
case "$variant" in
  proxy) demo="demo"; enforcer="proxy" ;;
  envoy) demo="demo-envoy"; enforcer="ext-authz" ;;
  *) fail "unknown demo variant '$variant' (choose proxy or envoy)" ;;
esac
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not on PATH"
done

say "kind cluster '$cluster'"
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "already exists; reusing it"
else
  kind create cluster --name "$cluster" --config "$here/kind-config.yaml" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null

say "image $image"
docker build -f "$root/deploy/Dockerfile" -t "$image" "$root"
kind load docker-image "$image" --name "$cluster"

say "policy CRDs"
kubectl apply -k "$root/deploy/crds"
kubectl wait --for=condition=Established --timeout=60s \
  crd/authorizationpolicies.authz.sigil.dev crd/clusterauthorizationpolicies.authz.sigil.dev

if [ "$overlay" = ha ]; then
  say "secrets for the ha overlay (created once, never printed)"
  kubectl create namespace sigil-system --dry-run=client -o yaml | kubectl apply -f -
  if ! kubectl -n sigil-system get secret sigil-kek >/dev/null 2>&1; then
    kek="$(head -c 32 /dev/urandom | base64)"
    kubectl -n sigil-system create secret generic sigil-kek --from-literal=kek="$kek" >/dev/null
  fi
  if ! kubectl -n sigil-system get secret sigil-postgres >/dev/null 2>&1; then
    password="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    kubectl -n sigil-system create secret generic sigil-postgres \
      --from-literal=password="$password" \
      --from-literal=url="postgresql+asyncpg://sigil:${password}@sigil-postgres.sigil-system.svc:5432/sigil" >/dev/null
  fi
fi

say "Sigil ($overlay overlay)"
kubectl apply -k "$root/deploy/kustomize/overlays/$overlay"
if [ "$overlay" = ha ]; then
  kubectl -n sigil-system rollout status statefulset/sigil-postgres --timeout=180s
fi
kubectl -n sigil-system rollout status deployment/sigil-server --timeout=180s
kubectl -n sigil-system rollout status daemonset/sigil-agent --timeout=180s

say "demo workloads ($variant)"
kubectl apply -k "$here/$demo"
for deployment in backend frontend intruder; do
  kubectl -n "$demo" rollout status "deployment/$deployment" --timeout=180s
done

call() {
  kubectl -n "$demo" exec "deployment/$1" -c client -- python -c '
import sys, urllib.request
try:
    print(urllib.request.urlopen("http://127.0.0.1:8080/", timeout=10).read().decode().strip())
except OSError as err:
    print(f"refused: {err}")
    sys.exit(1)
'
}

say "frontend -> backend (the policy allows frontend)"
call frontend || fail "the allowed call did not go through"
say "intruder -> backend (no policy allows intruder)"
if call intruder; then
  fail "the intruder got through"
fi
say "done: one call allowed, one denied. Decisions: kubectl -n $demo logs deployment/backend -c $enforcer"
