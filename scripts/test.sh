#!/usr/bin/env bash
# The test command: installs the test dependencies, builds every product (the tests run
# the real `infrasight` binary and plugin libraries on the real kernel) and the container
# images, runs all tests.
# Run as root: the kernel tests load BPF programs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps
swift build
swift build --build-tests
# The container images the deployment tests run (a release build, Debian's base from its
# mirror); dockerd builds and saves them.
if ! /usr/bin/docker info >/dev/null 2>&1; then
    nohup /usr/sbin/dockerd > "$(mktemp)" 2>&1 &
    for _ in $(seq 60); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
scripts/build-images.sh
swift test --skip-build 2>&1 | tee .build/test.log
