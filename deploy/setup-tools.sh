#!/usr/bin/env bash
# What the deployment checks need (Tests/IntegrationTests/ManifestTests.swift, and
# anyone validating the manifests by hand), installed idempotently:
#   - .venv-k8s/: kubernetes-validate and PyYAML, pinned (deploy/manifest-tools.txt)
#   - systemd-analyze (Debian package systemd; no running systemd is needed) and
#     patchelf (scripts/install.sh --bundle-swift-runtime)
#   - kubectl, with its built-in kustomize: not in Debian; it must already be installed
# Run as root from anywhere: deploy/setup-tools.sh
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v patchelf >/dev/null || missing+=(patchelf)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-tools: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=.venv-k8s
stamp="$venv/.requirements"
if ! cmp -s deploy/manifest-tools.txt "$stamp" 2>/dev/null || [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "setup-tools: installing kubernetes-validate into $venv/"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r deploy/manifest-tools.txt
    cp deploy/manifest-tools.txt "$stamp"
    echo '*' > "$venv/.gitignore"   # the venv keeps itself out of git
fi

# Not fatal: `scripts/setup.sh` is also how a user sets up the tracer itself, which needs
# no kubectl. The manifest tests fail, naming it, where it is missing.
if ! command -v kubectl >/dev/null; then
    echo "setup-tools: warning: kubectl (1.27 or newer, for 'kubectl kustomize') is not installed and is not a Debian package; the manifest tests need it: install it from the Kubernetes project's packages" >&2
fi
