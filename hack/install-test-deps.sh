#!/usr/bin/env bash
# Installs the system packages keycap's tests run for real, when they are missing:
#   nginx    forward-auth proxy in the e2e tests (run as a plain binary with the test's own
#            config; the package's service is never started)
#   chromium headless browser the SSO tests drive with chromedp (always run with --headless,
#            a fresh profile and no network of its own)
#   caddy    forward_auth proxy in the e2e tests (Debian's 2.6, run as a plain binary with
#            config/samples/integrations/caddy/Caddyfile; the package's service is never started)
# Idempotent and quiet when everything is present. Needs root or sudo for apt-get.
set -euo pipefail

log() { echo "install-test-deps: $*" >&2; }

missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v caddy >/dev/null 2>&1 || [[ -x /usr/bin/caddy ]] || missing+=(caddy)
((${#missing[@]} == 0)) && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  log "missing ${missing[*]} and there is no apt-get; install them with your package manager"
  exit 1
fi
SUDO=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || { log "missing ${missing[*]}; run as root or install sudo"; exit 1; }
  SUDO=(sudo)
fi

log "installing ${missing[*]} with apt-get"
# Keep the packages' services from starting (Debian's policy-rc.d protocol): tests start nginx
# themselves on their own ports. Only a policy-rc.d this script created is removed again.
policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  own_policy=true
fi
cleanup() { if $own_policy; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Where systemd manages services, keep nginx from starting at boot as well.
if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  "${SUDO[@]}" systemctl disable --now nginx >/dev/null 2>&1 || true
fi
if [[ " ${missing[*]} " == *" caddy "* ]] && command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  "${SUDO[@]}" systemctl disable --now caddy >/dev/null 2>&1 || true
fi
log "installed ${missing[*]}"
