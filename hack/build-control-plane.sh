#!/usr/bin/env bash
# Builds the real Kubernetes control plane that envtest and `make run` use — kube-apiserver,
# kube-controller-manager, etcd and kubectl — from the Go module proxy alone, into a cache outside
# the repo.
#
# There is no container engine and no download site on the machines keycap is developed on, so the
# binaries are compiled from their Go modules:
#   - kube-apiserver, kube-controller-manager and kubectl come from k8s.io/kubernetes, which cannot
#     be `go install`ed directly because its go.mod replaces every k8s.io staging module with a
#     local path. A small wrapper module requires k8s.io/kubernetes and replaces each staging module
#     with its published v0.X.Y.
#   - etcd comes from a wrapper main calling go.etcd.io/etcd/server/v3/etcdmain.Main.
#
# Idempotent: a second run with the binaries present does nothing, and a cache missing some of
# them (one made before kube-controller-manager was added) gets only those built. Prints the
# directory holding the binaries (the value for KUBEBUILDER_ASSETS) as its last line.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${KEYCAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keycap}"
BIN_DIR="$CACHE_ROOT/control-plane-$KUBE_VERSION-etcd-$ETCD_VERSION"
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"

# How often a long step reports that it is still running (seconds).
PROGRESS_INTERVAL="${PROGRESS_INTERVAL:-30}"
# The builder's last progress line, for callers waiting on the lock.
PROGRESS_FILE="$CACHE_ROOT/build.progress"
building=""

START=$SECONDS
log() {
  echo "build-control-plane: [$(elapsed)] $*" >&2
  if [[ -n $building ]]; then echo "[$(elapsed)] $*" > "$PROGRESS_FILE"; fi
}
elapsed() { local s=$((SECONDS - START)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# A cold build takes many minutes with nothing to print; a ticker says what is being built and for
# how long, so neither the builder nor a second caller waiting on the lock looks hung. The waiter's
# ticker repeats the builder's last progress line (which binaries, how long in).
ticker_pid=""
# The tickers close the lock's descriptor (fd 9): a killed ticker's last sleep outlives it, and must
# not hold the lock after this script ends.
start_ticker() {
  stop_ticker
  ( exec 9>&-; while sleep "$PROGRESS_INTERVAL"; do log "still $1"; done ) &
  ticker_pid=$!
}
start_wait_ticker() {
  stop_ticker
  ( exec 9>&-; while sleep "$PROGRESS_INTERVAL"; do
      log "still waiting for the other build of the control plane (it is at: $(cat "$PROGRESS_FILE" 2>/dev/null || echo "starting"))"
    done ) &
  ticker_pid=$!
}
stop_ticker() { if [[ -n $ticker_pid ]]; then kill "$ticker_pid" 2>/dev/null || true; wait "$ticker_pid" 2>/dev/null || true; ticker_pid=""; fi; }

# The binaries built from k8s.io/kubernetes; only the missing ones are compiled.
KUBE_CMDS=(kube-apiserver kube-controller-manager kubectl)
missing_kube=()
find_missing() {
  missing_kube=()
  for cmd in "${KUBE_CMDS[@]}"; do
    [[ -x "$BIN_DIR/$cmd" ]] || missing_kube+=("$cmd")
  done
  [[ ${#missing_kube[@]} -gt 0 || ! -x "$BIN_DIR/etcd" ]]
}

if ! find_missing; then
  echo "$BIN_DIR"
  exit 0
fi

mkdir -p "$BIN_DIR"
# Several test binaries may run this at once: one builds, the others wait for it and then find
# the binaries present.
if command -v flock >/dev/null; then
  exec 9>"$CACHE_ROOT/build.lock"
  if ! flock -n 9; then
    log "another build of the control plane is running (lock $CACHE_ROOT/build.lock); waiting for it"
    start_wait_ticker
    flock 9
    stop_ticker
  fi
  if ! find_missing; then
    echo "$BIN_DIR"
    exit 0
  fi
fi
WORK="$(mktemp -d "$CACHE_ROOT/build.XXXXXX")"
building=1
trap 'stop_ticker; rm -rf "$WORK" "$BIN_DIR"/.*.tmp.$$ "$PROGRESS_FILE"' EXIT
export GOFLAGS="-mod=mod" GOWORK=off CGO_ENABLED=0

# ---- kube-apiserver, kube-controller-manager, kubectl ------------------------------------------
if [[ ${#missing_kube[@]} -gt 0 ]]; then
  log "building ${missing_kube[*]} $KUBE_VERSION from the Go module proxy (cold: about 20 CPU-minutes, 30 min or more on 2 busy cores)"
  mkdir -p "$WORK/k8s" && cd "$WORK/k8s"
  go mod init keycap.local/control-plane >/dev/null 2>&1
  kube_mod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')"
  {
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo "replace ("
    # Every `k8s.io/x => ./staging/src/k8s.io/x` line of k8s.io/kubernetes becomes `k8s.io/x => k8s.io/x v0.Y.Z`.
    sed -n 's#^\s*\(k8s.io/[A-Za-z0-9._-]*\) => ./staging/src/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$kube_mod"
    echo ")"
  } >> go.mod
  {
    echo '//go:build tools'
    echo
    echo 'package tools'
    echo
    echo 'import ('
    for cmd in "${missing_kube[@]}"; do
      echo "	_ \"k8s.io/kubernetes/cmd/$cmd\""
    done
    echo ')'
  } > tools.go
  log "resolving modules"
  go mod tidy >/dev/null 2>&1 || go mod tidy
  major="${KUBE_VERSION#v}"; major="${major%%.*}"
  minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  # One go build for all of them: the packages they share compile once and the links run in
  # parallel (go build -o DIR/ writes one binary per main package).
  pkgs=()
  for cmd in "${missing_kube[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  log "compiling ${missing_kube[*]}"
  start_ticker "compiling ${missing_kube[*]}"
  mkdir -p "$WORK/out"
  go build -trimpath -ldflags "$ldflags" -o "$WORK/out/" "${pkgs[@]}"
  stop_ticker
  for cmd in "${missing_kube[@]}"; do
    mv "$WORK/out/$cmd" "$BIN_DIR/.$cmd.tmp.$$"
    mv "$BIN_DIR/.$cmd.tmp.$$" "$BIN_DIR/$cmd"
  done
fi

# ---- etcd ---------------------------------------------------------------------------------------
if [[ ! -x "$BIN_DIR/etcd" ]]; then
  log "building etcd $ETCD_VERSION from the Go module proxy"
  mkdir -p "$WORK/etcd" && cd "$WORK/etcd"
  go mod init keycap.local/etcd >/dev/null 2>&1
  cat > main.go <<'GO'
// Command etcd is etcd's own server main, built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
  go mod tidy >/dev/null 2>&1 || go mod tidy
  start_ticker "compiling etcd"
  go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=keycap" -o "$BIN_DIR/.etcd.tmp.$$" .
  stop_ticker
  mv "$BIN_DIR/.etcd.tmp.$$" "$BIN_DIR/etcd"
fi

log "control plane ready in $BIN_DIR"
echo "$BIN_DIR"
