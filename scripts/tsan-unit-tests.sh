#!/usr/bin/env bash
# The unit suite under ThreadSanitizer: a build of its own (.build/tsan, so the normal
# build stays as it is), then `swift test --filter UnitTests`. Any data race TSan reports
# fails the run (TSAN_OPTIONS halt_on_error). The integration suite is not run under TSan:
# its tests drive the real binaries, which this build does not instrument beyond the
# test process, and a sanitized debug build of the whole suite does not fit CI's time.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=.build/tsan
swift build --scratch-path "$scratch" --sanitize=thread
swift build --scratch-path "$scratch" --sanitize=thread --build-tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
    swift test --scratch-path "$scratch" --sanitize=thread --skip-build --filter UnitTests 2>&1 | tee .build/tsan-unit-tests.log
