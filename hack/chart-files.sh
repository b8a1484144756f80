#!/usr/bin/env bash
# Generates the files the Helm chart (config/charts/keycap) renders from, so the chart never
# drifts from the code: the CRDs and the webhook configuration as controller-gen wrote them to
# config/, the admission policy that limits what the data plane may write, and one ClusterRole per Deployment of the chart from the +kubebuilder:rbac markers of
# that component alone. Run by `make manifests`; `make verify` fails when they are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CONTROLLER_GEN:=bin/controller-gen}"
files=config/charts/keycap/files

rm -rf "$files/crds" "$files/rbac" "$files/admission"
mkdir -p "$files/crds" "$files/rbac" "$files/admission"
cp config/crd/bases/*.yaml "$files/crds/"
cp config/webhook/manifests.yaml "$files/webhook.yaml"
cp config/admission/data_plane_status.yaml "$files/admission/"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for c in controller:./controllers/... webhook:./webhook/... authz:./internal/authz/...; do
  name=${c%%:*}
  "$CONTROLLER_GEN" rbac:roleName=keycap-"$name" paths="${c#*:}" output:rbac:artifacts:config="$tmp/$name"
  cp "$tmp/$name/role.yaml" "$files/rbac/$name.yaml"
done
