#!/usr/bin/env bash
# Installs kustomize (built from its Go module with the machine's Go) into
# ~/.cache/kanol/bin once, then prints its path: `$(bash scripts/kustomize.sh) build DIR`.
# The tests of deploy/k8s (tests/deploy) call it.
set -euo pipefail

version=${KANOL_KUSTOMIZE_VERSION:-v5.8.1}
bin_dir=${KANOL_CACHE_DIR:-$HOME/.cache/kanol}/bin
binary=$bin_dir/kustomize

installed_version() {
    # `kustomize version` prints "v5.8.1".
    [ -x "$binary" ] && "$binary" version 2>/dev/null | sed -n 1p
}

if [ "$(installed_version || true)" != "$version" ]; then
    command -v go >/dev/null || { echo "kustomize.sh: Go is needed to build kustomize" >&2; exit 1; }
    mkdir -p "$bin_dir"
    echo "kustomize.sh: building sigs.k8s.io/kustomize/kustomize/v5@$version into $bin_dir" >&2
    GOBIN=$bin_dir go install "sigs.k8s.io/kustomize/kustomize/v5@$version" >&2
fi
echo "$binary"
