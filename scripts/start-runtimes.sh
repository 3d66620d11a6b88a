#!/usr/bin/env bash
# Starts the container runtimes the tests use, if they do not answer already: containerd
# on its default socket, then dockerd on that containerd. Idempotent; run as root.
#
# containerd first, on purpose: a machine restored from a snapshot keeps a stale
# /run/containerd/containerd.sock, and a dockerd started beside it dials that dead socket
# until it gives up ("failed to dial ... context deadline exceeded") instead of starting
# its own containerd. A live containerd on that path removes the question.
# Logs: /var/log/infrasight-tests/{containerd,dockerd}.log (printed when a start fails).
set -euo pipefail
logs=/var/log/infrasight-tests
mkdir -p "$logs"

# wait_for NAME LOG CMD...: up to 60 s for CMD to succeed, else the log's tail and exit 1.
wait_for() {
    local name=$1 log=$2; shift 2
    for _ in $(seq 240); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
    echo "start-runtimes: $name did not answer within 60 s; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
}

if ! /usr/bin/ctr version >/dev/null 2>&1; then
    nohup /usr/bin/containerd > "$logs/containerd.log" 2>&1 &
    wait_for containerd "$logs/containerd.log" /usr/bin/ctr version
fi
if ! /usr/bin/docker info >/dev/null 2>&1; then
    pgrep -x dockerd >/dev/null || rm -f /var/run/docker.pid   # left over from a snapshot
    nohup /usr/sbin/dockerd --containerd=/run/containerd/containerd.sock > "$logs/dockerd.log" 2>&1 &
    wait_for dockerd "$logs/dockerd.log" /usr/bin/docker info
fi
