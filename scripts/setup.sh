#!/usr/bin/env bash
# Installs what InfraSight needs to build and run on Debian/Ubuntu, then builds it.
# Run as root (it uses apt-get). Idempotent.
#   scripts/setup.sh            # system packages + release build
#   scripts/setup.sh --deps     # system packages only
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v swift >/dev/null 2>&1; then
    echo "setup: Swift 6.1 or newer is required (https://www.swift.org/install/linux/); 'swift' is not on PATH" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (apt-get installs the build dependencies; tracing needs root too)" >&2
    exit 1
fi

packages=(
    libbpf-dev libelf-dev zlib1g-dev pkg-config   # the libbpf binding
    gcc libc6-dev                                 # C fixtures and workload helpers in tests
    bpftool                                       # regenerating bpf/vmlinux/vmlinux.h
    libpython3.11 python3-pip                     # embedded ClickHouse (chdb) needs libpython's symbols
    libcurl4 curl                                 # URLSession (the ClickHouse HTTP client) runs on libcurl; tests use curl
    clickhouse-server clickhouse-client           # tests against a real ClickHouse server (it is not started here)
    iproute2 dnsmasq-base strace                  # network tests: namespaces, a real DNS server; ptrace tests
    docker.io                                     # container enrichment tests (dockerd is started by the tests)
    containerd                                    # the deployment tests run the rendered pods under containerd
    podman                                        # container enrichment tests: podman's Docker-compatible API
    mmdebstrap binutils                           # scripts/build-images.sh: Debian base file systems, strip
    zookeeper                                     # ClickHouse cluster tests (ReplicatedMergeTree, ON CLUSTER); brings Java (default-jre), which runs it
    chromium chromium-driver fonts-dejavu-core    # console tests: headless Chromium over WebDriver, legible screenshots
    qemu-system-x86 busybox-static cpio kmod xz-utils jq debian-archive-keyring  # scripts/kernel-matrix.sh: Debian kernels booted under QEMU
)
scripts/install-packages.sh setup "${packages[@]}"


# Embedded ClickHouse: the pinned chdb-core wheel, unpacked into .chdb/ where the binary
# looks for it (INFRASIGHT_CHDB_LIBRARY or storage.chdb_library override).
CHDB_VERSION=26.9.0
if [ ! -f .chdb/chdb/_chdb.abi3.so ] || [ "$(cat .chdb/VERSION 2>/dev/null)" != "$CHDB_VERSION" ]; then
    echo "setup: installing chdb-core $CHDB_VERSION into .chdb/"
    rm -rf .chdb
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --no-deps --target .chdb "chdb-core==$CHDB_VERSION" 2>&1 | grep -v "Running pip as the 'root' user" || true
    test -f .chdb/chdb/_chdb.abi3.so || { echo "setup: chdb-core did not install" >&2; exit 1; }
    echo "$CHDB_VERSION" > .chdb/VERSION
fi

# The deployment checks: kubernetes-validate in .venv-k8s/, systemd-analyze, patchelf.
deploy/setup-tools.sh

[ "${1:-}" = "--deps" ] && exit 0
swift build -c release
echo "setup: built .build/release/infrasight"
