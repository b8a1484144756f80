#!/usr/bin/env bash
# Shows the refusals of keycap's admission webhook with the manifests of config/samples/invalid/,
# each in a namespace of its own that is deleted afterwards, so nothing is left behind:
#
#   hack/try-invalid-sample.sh config/samples/invalid/plaintext-key.yaml
#   hack/try-invalid-sample.sh config/samples/invalid/*.yaml
#
# A file's last document is the refused one; the documents before it create what the rule is about
# (a parent ApiKey, a credential with the same digest), and a "# status-patch:" header line is the
# status keycap would have written (licence activations), applied to the status subresource before
# the refused document. Uses kubectl from PATH (or $KUBECTL) with your kubeconfig, as the README's
# walk-through sets them. Exit status: 0 when every file was refused, 1 when one was admitted.
set -euo pipefail

KUBECTL="${KUBECTL:-kubectl}"
# How long the webhook may take to see the objects a file created before its refused document.
SEE_TIMEOUT="${SEE_TIMEOUT:-30}"

if [[ $# -eq 0 ]]; then
  echo "usage: $0 config/samples/invalid/FILE.yaml..." >&2
  exit 2
fi

ns=""
work="$(mktemp -d)"
cleanup() {
  if [[ -n $ns ]]; then
    "$KUBECTL" delete namespace "$ns" --wait=true --timeout=2m >/dev/null || echo "warning: namespace $ns is not deleted yet" >&2
    ns=""
  fi
}
trap 'cleanup; rm -rf "$work"' EXIT

status=0
for file in "$@"; do
  ns="$("$KUBECTL" create -o jsonpath='{.metadata.name}' -f - <<'NS'
apiVersion: v1
kind: Namespace
metadata:
  generateName: keycap-invalid-sample-
NS
)"
  echo "== $file (namespace $ns)"
  sed -n 's/^# \(rule\|refused\|reason\): /\1: /p' "$file"

  refused="$work/refused.yaml"
  last="$(grep -n '^---$' "$file" | tail -n 1 | cut -d: -f1 || true)"
  if [[ -n $last ]]; then
    head -n "$((last - 1))" "$file" | "$KUBECTL" apply -n "$ns" -f - >/dev/null
    tail -n "+$((last + 1))" "$file" > "$refused"
  else
    cp "$file" "$refused"
  fi
  patch="$(sed -n 's/^# status-patch: //p' "$file")"
  if [[ -n $patch ]]; then
    # After the operator's first reconcile, whose status write could otherwise race this one.
    "$KUBECTL" wait -n "$ns" "${patch%% *}" --for=condition=Ready --timeout=60s >/dev/null
    "$KUBECTL" patch -n "$ns" "${patch%% *}" --subresource=status --type=merge -p "${patch#* }" >/dev/null
  fi

  # The webhook reads other objects through its cache, which sees new ones within a moment: wait
  # until a server-side dry run (which changes nothing) is refused, then apply for real.
  for ((i = 0; i < SEE_TIMEOUT; i++)); do
    if ! "$KUBECTL" apply -n "$ns" --dry-run=server -f "$refused" >/dev/null 2>&1; then
      break
    fi
    sleep 1
  done
  if out="$("$KUBECTL" apply -n "$ns" -f "$refused" 2>&1)"; then
    echo "ADMITTED, though the rule says it must be refused:"
    echo "$out"
    status=1
  else
    echo "$out"
  fi
  cleanup
  echo
done
exit "$status"
