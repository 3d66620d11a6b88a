#!/usr/bin/env bash
# Runs every benchmark (decode + encode, sink efficiency, per-syscall overhead against the
# floor, the sustained-rate sweep through agent → server → embedded ClickHouse) on a
# release build and prints one JSON summary on stdout. As root (BPF). Takes ~5 minutes
# after the build; figures and how to read them: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps >&2
swift build -c release >&2
exec .build/release/infrasight-bench all "$@"
