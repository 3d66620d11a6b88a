#!/usr/bin/env bash
# The test command: installs the test dependencies, builds every product (the tests run
# the real `infrasight` binary and plugin libraries on the real kernel), runs all tests.
# Run as root: the kernel tests load BPF programs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps
swift build
swift build --build-tests
swift test --skip-build 2>&1 | tee .build/test.log
