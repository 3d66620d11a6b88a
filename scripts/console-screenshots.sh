#!/usr/bin/env bash
# Takes the console screenshots README shows (docs/images/console-*.png): traces this host
# with `infrasight run --ui-listen` while a small demo workload runs (a web server and its
# clients, a sensitive read, a setuid chmod, failed opens, and a labelled container when
# dockerd and the tests' image are there), then photographs each page in headless Chromium
# (infrasight-bench screenshots). As root, after a build of infrasight and infrasight-bench.
# BIN picks the binary (default .build/release/infrasight).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-.build/release/infrasight}
plugins=$(dirname "$bin")
out=docs/images
port=${PORT:-8765}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" run --data-dir "$work/data" --plugin-dir "$plugins" --ui-listen 127.0.0.1:$port --duration 600 2>"$work/run.log" &
for _ in $(seq 60); do grep -q "console on" "$work/run.log" && break; sleep 1; done
grep -q "console on" "$work/run.log" || { cat "$work/run.log" >&2; exit 1; }

python3 -m http.server 8766 --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
touch "$work/tool"
demo() {
    local i=$1
    curl -s -o /dev/null http://127.0.0.1:8766/ || true
    curl -s -m 1 -o /dev/null http://127.0.0.1:9/ || true
    sh -c "cat /etc/shadow > /dev/null; ls /nonexistent-$i 2>/dev/null; chmod 4755 $work/tool" || true
    if docker image inspect local/infrasight-test:2 >/dev/null 2>&1; then
        docker run --rm -l app=demo -l team=audit local/infrasight-test:2 sh -c 'cat /etc/motd > /dev/null; sleep 1' >/dev/null || true
    fi
}
for i in $(seq 20); do demo "$i"; sleep 1; done
# It goes on while the pages are photographed, so the overview has live rates to show.
(for i in $(seq 21 400); do demo "$i"; sleep 1; done) &
sleep 3

base=http://127.0.0.1:$port/
# The console always wants its token: generated at first start in the data directory.
token=$(head -n1 "$work/data/console-token")
auth=(-H "Authorization: Bearer $token")
range="range=15m"
# The process explorer with the last curl picked, its tree and timeline open.
sel=$(curl -s "${auth[@]}" "${base}api/query/recent_execs?from=$(( $(date +%s) - 900 ))&to=$(( $(date +%s) + 5 ))&search=curl&limit=1" |
    python3 -c 'import json,sys,urllib.parse; r=json.load(sys.stdin)["data"][0]; print(urllib.parse.quote("|".join(str(r[k]) for k in ("node", "pid", "start_time_ns"))))')
sql=$(python3 -c 'import urllib.parse; print(urllib.parse.quote("SELECT comm, count() AS opens, uniqExact(filename) AS files FROM audit.tracing_events WHERE event_type = '"'"'open'"'"' GROUP BY comm ORDER BY opens DESC LIMIT 10"))')
# In real time, over WebDriver (the live rates are counters' changes over real seconds).
"$(dirname "$bin")/infrasight-bench" screenshots --url "${base}?token=$token" --out "$out" \
    "overview=#/overview?$range" "processes=#/processes?$range&q=curl&sel=$sel" "files=#/files?$range" \
    "network=#/network?$range" "containers=#/containers?$range" "security=#/security?$range" "sql=#/sql?$range&sql=$sql"
