#!/usr/bin/env bash
# Builds kube-apiserver (from the k8s.io/kubernetes Go module, staging modules replaced by their
# v0.x.y twins) and etcd (from go.etcd.io/etcd/server/v3) into $CACHE/bin, keyed by version; with `cluster`, also
# the rest of a one-node cluster from the same release: kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy and kubectl, and Helm. Idempotent: a second run with the binaries present returns at once.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
HELM_VERSION=${HELM_VERSION:-v4.3.2}
CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
BIN=$CACHE/bin
APISERVER=$BIN/kube-apiserver-$K8S_VERSION
ETCD=$BIN/etcd-$ETCD_VERSION
mkdir -p "$BIN"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# A module that requires k8s.io/kubernetes at the release, with the given commands' packages imported.
kubernetes_module() { # dir name command...
  local work=$1 name=$2; shift 2
  rm -rf "$work"; mkdir -p "$work"; cd "$work"
  staging_version="v0.${K8S_VERSION#v1.}"
  proxy=$(go env GOPROXY | cut -d, -f1)
  # Every k8s.io module the kubernetes go.mod pins at v0.0.0 is a staging module.
  staging=$(curl -fsS "$proxy/k8s.io/kubernetes/@v/$K8S_VERSION.mod" |
    sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z0-9.-]*\) v0\.0\.0$/\1/p' | sort -u)
  [ -n "$staging" ] || { echo "no staging modules found in k8s.io/kubernetes@$K8S_VERSION go.mod" >&2; exit 1; }
  {
    echo "module palisade.local/$name"
    echo "go 1.26.0"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    for m in $staging; do echo "replace $m => $m $staging_version"; done
  } > go.mod
  {
    printf 'package main\n\nimport (\n'
    for command in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s/app"\n' "$command"; done
    printf ')\n\nfunc main() {}\n'
  } > tools.go
  go mod tidy >/dev/null
}

build_command() { # command
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
    -o "$BIN/$1-$K8S_VERSION.tmp" "k8s.io/kubernetes/cmd/$1"
  mv "$BIN/$1-$K8S_VERSION.tmp" "$BIN/$1-$K8S_VERSION"
}

if [ ! -x "$APISERVER" ]; then
  kubernetes_module "$CACHE/build/apiserver-$K8S_VERSION" apiserver kube-apiserver
  build_command kube-apiserver
fi

if [ "${1:-}" = cluster ]; then
  # kubectl has no app package of its own in k8s.io/kubernetes; the module resolves its staging twin.
  node_commands="kubelet kube-controller-manager kube-scheduler kube-proxy"
  missing=""
  for command in $node_commands kubectl; do [ -x "$BIN/$command-$K8S_VERSION" ] || missing="$missing $command"; done
  if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    kubernetes_module "$CACHE/build/cluster-$K8S_VERSION" cluster $node_commands
    for command in $missing; do build_command "$command"; done
  fi
  # Helm, for the chart (deploy/helm/palisade) the cluster tier renders and installs.
  if [ ! -x "$BIN/helm-$HELM_VERSION" ]; then
    GOBIN="$CACHE/build/helm-$HELM_VERSION" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
    mv "$CACHE/build/helm-$HELM_VERSION/helm" "$BIN/helm-$HELM_VERSION"
  fi
fi

if [ ! -x "$ETCD" ]; then
  work=$CACHE/build/etcd-$ETCD_VERSION
  rm -rf "$work"; mkdir -p "$work"; cd "$work"
  printf 'module palisade.local/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$ETCD.tmp" .
  mv "$ETCD.tmp" "$ETCD"
fi
echo "$APISERVER"
echo "$ETCD"
