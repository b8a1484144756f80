#!/usr/bin/env bash
# Builds Caddy (forward_auth) and Traefik (forwardAuth) from the Go module proxy, pinned, into a
# cache outside the repo. `make test` does not use it: its Caddy is Debian's package
# (hack/install-test-deps.sh, seconds instead of a cold build measured at 15 min wall / 4m40s CPU
# on 2 shared cores), and Traefik has no Debian package and builds too slowly for every run:
# v3.7.13 cannot be built from the module proxy reachable here (its go.mod replaces
# github.com/traefik/traefik/dynamic/ext with a local directory, and 15 of its DNS-provider
# dependencies' versions are refused by the proxy); v3.6.12 resolves, but compiling it (every DNS
# provider SDK of its ACME client) had not finished after 50 minutes on 2 shared cores. Then
#   KEYCAP_TRAEFIK=$(hack/build-test-proxies.sh traefik)/traefik go test ./internal/e2e/authz -run Traefik
#
# Each is built through a small wrapper module that requires the proxy's module at its pinned
# version and copies the replace directives of the proxy's own go.mod (Traefik has some, so
# `go install traefik@version` would refuse). Idempotent: with both binaries present it does
# nothing. Prints the directory holding the binaries as its last line.
#
# Usage: hack/build-test-proxies.sh [caddy|traefik ...]   (default: both)
set -euo pipefail

CADDY_VERSION="${CADDY_VERSION:-v2.11.9}"
TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
CACHE_ROOT="${KEYCAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keycap}"
BIN_DIR="$CACHE_ROOT/proxies-caddy-$CADDY_VERSION-traefik-$TRAEFIK_VERSION"

START=$SECONDS
log() { echo "build-test-proxies: [$(elapsed)] $*" >&2; }
elapsed() { local s=$((SECONDS - START)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

want=("$@")
((${#want[@]})) || want=(caddy traefik)
missing=()
find_missing() {
  missing=()
  for p in "${want[@]}"; do
    [[ -x "$BIN_DIR/$p" ]] || missing+=("$p")
  done
  ((${#missing[@]}))
}
if ! find_missing; then
  echo "$BIN_DIR"
  exit 0
fi

mkdir -p "$BIN_DIR"
# Several test binaries may run this at once: one builds, the others wait and find the binaries.
if command -v flock >/dev/null; then
  exec 9>"$CACHE_ROOT/proxies.lock"
  if ! flock -n 9; then
    log "another build of the proxies is running (lock $CACHE_ROOT/proxies.lock); waiting for it"
    flock 9
  fi
  if ! find_missing; then
    echo "$BIN_DIR"
    exit 0
  fi
fi
WORK="$(mktemp -d "$CACHE_ROOT/proxies.XXXXXX")"
trap 'rm -rf "$WORK" "$BIN_DIR"/.*.tmp.$$' EXIT
export GOFLAGS="-mod=mod" GOWORK=off CGO_ENABLED=0

# build NAME MODULE VERSION PACKAGE [LDFLAGS]: a wrapper module requiring MODULE@VERSION with the
# module's own replace directives, and `go build PACKAGE` into $BIN_DIR/NAME.
build() {
  local name=$1 module=$2 version=$3 pkg=$4 ldflags=${5:-}
  local t0=$SECONDS
  log "building $name $version from the Go module proxy"
  mkdir -p "$WORK/$name" && cd "$WORK/$name"
  go mod init "keycap.local/$name" >/dev/null 2>&1
  local gomod
  gomod="$(go mod download -json "$module@$version" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')"
  echo "require $module $version" >> go.mod
  # Replace directives with a module path and version on the right (local-path ones cannot apply).
  go mod edit -json "$gomod" | awk '
    /"Replace": \[/ { inrep = 1 }
    inrep && /"Old": \{/ { side = "old" }
    inrep && /"New": \{/ { side = "new" }
    inrep && /"Path":/ { gsub(/[",]/, "", $2); path[side] = $2 }
    inrep && /"Version":/ { gsub(/[",]/, "", $2); ver[side] = $2 }
    inrep && /^\t\t\}/ {
      if (ver["new"] != "") { o = path["old"]; if (ver["old"] != "") o = o "@" ver["old"]; print o "=" path["new"] "@" ver["new"] }
      path["old"] = path["new"] = ver["old"] = ver["new"] = ""
    }' | while read -r r; do go mod edit -replace="$r"; done
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" > tools.go
  go mod tidy >/dev/null 2>&1 || go mod tidy
  go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN_DIR/.$name.tmp.$$" "$pkg"
  mv "$BIN_DIR/.$name.tmp.$$" "$BIN_DIR/$name"
  log "$name $version built in $((SECONDS - t0))s"
}

for p in "${missing[@]}"; do
  case $p in
  caddy) build caddy github.com/caddyserver/caddy/v2 "$CADDY_VERSION" github.com/caddyserver/caddy/v2/cmd/caddy ;;
  traefik) build traefik github.com/traefik/traefik/v3 "$TRAEFIK_VERSION" github.com/traefik/traefik/v3/cmd/traefik \
    "-X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" ;;
  *) log "unknown proxy $p (caddy, traefik)"; exit 2 ;;
  esac
done

log "proxies ready in $BIN_DIR"
echo "$BIN_DIR"
