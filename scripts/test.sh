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
# containerd and dockerd (container tests), then the images the deployment tests run (a
# release build, Debian's base from its mirror), which dockerd builds and saves.
scripts/start-runtimes.sh
scripts/build-images.sh
swift test --skip-build 2>&1 | tee .build/test.log
# The kernel matrix: Debian's 5.10, 6.1 and 6.12 kernels under QEMU, each running the
# release build over a workload of every plugin's calls (docs/kernels.md).
scripts/kernel-matrix.sh
# Artifacts the tests keep: the console's pages as headless Chromium showed them.
echo "test artifacts: $(pwd)/.build/test-artifacts ($(ls .build/test-artifacts/console 2>/dev/null | tr '\n' ' '))"
