#!/usr/bin/env bash
# Reruns the built test suite (or the tests matching FILTER) N times and says, per failing
# test, in how many of the N runs it failed and its first message: a test that fails one
# run in three shows up here, where a single green run hides it.
#
#   scripts/repeat-tests.sh N [FILTER]
#
# Needs a build (`swift build && swift build --build-tests`, as scripts/test.sh does) and
# the container runtimes (scripts/start-runtimes.sh). Run as root, like the suite itself.
# Each run's log and xUnit report stay in .build/repeat/<stamp>/run-<i>.*; the summary is
# printed and written to .build/repeat/<stamp>/summary.txt. A run that takes longer than
# REPEAT_TESTS_TIMEOUT seconds (default 3600) is killed and counted as failed. Exits 1
# when any run failed (a test failed, the run crashed or hung, or it ran no test).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-}
filter=${2:-}
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/repeat-tests.sh N [FILTER]   (N: how many runs, 1 or more)" >&2
    exit 2
fi
if [ ! -x .build/debug/infrasight ]; then
    echo "repeat-tests: no build in .build/debug (run: swift build && swift build --build-tests)" >&2
    exit 2
fi

out=.build/repeat/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
args=(--skip-build)
[ -n "$filter" ] && args+=(--filter "$filter")

for i in $(seq "$runs"); do
    start=$(date +%s)
    set +e
    timeout --kill-after=60 "${REPEAT_TESTS_TIMEOUT:-3600}" swift test "${args[@]}" --xunit-output "$out/run-$i.xml" > "$out/run-$i.log" 2>&1
    status=$?
    set -e
    end=$(date +%s)
    echo "$i $status $((end - start))" >> "$out/runs.txt"
    echo "repeat-tests: run $i of $runs: exit $status after $((end - start)) s ($out/run-$i.log)"
done

python3 - "$out" "$runs" <<'EOF' | tee "$out/summary.txt"
import glob, os, re, sys
import xml.etree.ElementTree as ET

out, runs = sys.argv[1], int(sys.argv[2])
failed = {}   # test -> [runs it failed in]
first = {}    # test -> first message
totals = []
for line in open(os.path.join(out, "runs.txt")):
    i, status, seconds = line.split()
    i = int(i)
    cases = fails = 0
    # swift test writes the XCTest report at the path given and Swift Testing's beside it.
    reports = [os.path.join(out, f"run-{i}.xml"), os.path.join(out, f"run-{i}-swift-testing.xml")]
    for path in filter(os.path.exists, reports):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            print(f"run {i}: {path} is not a complete report ({e})")
            continue
        for case in root.iter("testcase"):
            cases += 1
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is None:
                continue
            fails += 1
            name = f"{case.get('classname', '')}.{case.get('name', '')}".strip(".")
            failed.setdefault(name, []).append(i)
            if name not in first:
                text = (problem.get("message") or problem.text or "").strip().replace("\n", " ")
                first[name] = text[:400]
    # A run that crashed, hung (exit 124/137: killed by timeout), ran no test, or exited
    # non-zero with no failing test in its report: its log's last lines say why.
    if cases == 0 or (int(status) != 0 and fails == 0):
        log = open(os.path.join(out, f"run-{i}.log"), errors="replace").read().splitlines()
        name = f"(run {i}: exit {status}, {cases} tests reported, none failed)" if cases else f"(run {i}: exit {status}, no test reported)"
        failed.setdefault(name, []).append(i)
        first[name] = " | ".join(log[-5:])[:400]
    totals.append((i, int(status), int(seconds), cases, fails))

for i, status, seconds, cases, fails in totals:
    print(f"run {i}: exit {status}, {seconds} s, {cases} tests, {fails} failed")
if not failed:
    print(f"every test passed in {runs} of {runs} runs")
else:
    print(f"failing tests ({len(failed)}), in how many of {runs} runs, with the first message:")
    for name in sorted(failed, key=lambda n: (-len(failed[n]), n)):
        print(f"  {len(failed[name])}/{runs}  {name} (runs {', '.join(map(str, failed[name]))})")
        print(f"        {first[name]}")
EOF
# The summary's verdict is the exit status.
grep -q "^every test passed in " "$out/summary.txt"
