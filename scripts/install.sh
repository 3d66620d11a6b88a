#!/usr/bin/env bash
# Installs a release build of InfraSight on this host (standalone hosts; docs/deploy.md):
#   /usr/bin/infrasight                         the program
#   /usr/lib/infrasight/plugins/                 the first-party plugins (libinfrasight-*.so)
#   /usr/lib/infrasight/chdb/, chdb_core.libs/   embedded ClickHouse, from .chdb/ when present
#   /etc/infrasight/infrasight.yaml              a default config, only if there is none
#   /usr/lib/systemd/system/infrasight-{run,agent,server}.service
#   /usr/share/doc/infrasight/                   README.md and deploy.md
# Everything is root's and not writable by group or others: the program refuses plugin
# files and directories (and a config, and the chdb library) that are.
#
#   scripts/setup.sh && scripts/install.sh            # build, then install into /
#   scripts/install.sh --build-dir .build/debug       # another build
#   DESTDIR=/tmp/root scripts/install.sh --bundle-swift-runtime
#                                                      # into a staging root (an image)
#   --no-units, --no-chdb                              # leave those out
#
# --bundle-swift-runtime copies the Swift runtime libraries the program links into
# /usr/lib/infrasight/swift and points the program's RUNPATH there (patchelf), for a
# host or image without the Swift toolchain. Without it the program finds them where
# it was built (/opt/swift/...).
set -euo pipefail
cd "$(dirname "$0")/.."

build=.build/release
bundle=false
units=true
chdb=true
while [ $# -gt 0 ]; do
    case "$1" in
        --build-dir) build="${2:?--build-dir needs a directory}"; shift 2 ;;
        --bundle-swift-runtime) bundle=true; shift ;;
        --no-units) units=false; shift ;;
        --no-chdb) chdb=false; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
done
root="${DESTDIR:-}"
root="${root%/}"

die() { echo "install: $*" >&2; exit 1; }
[ -x "$build/infrasight" ] || die "no $build/infrasight: build it first (scripts/setup.sh runs swift build -c release)"
plugins=("$build"/libinfrasight-*.so)
[ -e "${plugins[0]}" ] || die "no plugins (libinfrasight-*.so) in $build"
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root to install into / (or set DESTDIR to a staging directory)"
fi
# Owned by root when we can say so (a non-root staging install keeps the caller's).
own=()
[ "$(id -u)" -eq 0 ] && own=(-o root -g root)
umask 022

dir() { install -d -m 0755 "${own[@]}" "$root$1"; }
file() { install -m "$1" "${own[@]}" "$2" "$root$3"; }

dir /usr/bin
dir /usr/lib/infrasight
dir /usr/lib/infrasight/plugins
dir /etc/infrasight
dir /usr/share/doc/infrasight

file 0755 "$build/infrasight" /usr/bin/infrasight
for p in "${plugins[@]}"; do
    file 0644 "$p" "/usr/lib/infrasight/plugins/$(basename "$p")"
done

if $bundle; then
    command -v patchelf >/dev/null || die "--bundle-swift-runtime needs patchelf (apt-get install patchelf)"
    dir /usr/lib/infrasight/swift
    # Every library the program finds through its RUNPATH (the toolchain's runtime), not
    # the system's, which come from Debian packages.
    IFS=: read -ra rpath <<<"$(patchelf --print-rpath "$build/infrasight")"
    ldd "$build/infrasight" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | while read -r lib; do
        for r in "${rpath[@]}"; do
            if [ "$r" != '$ORIGIN' ] && [ "$(readlink -f "$(dirname "$lib")")" = "$(readlink -f "$r")" ]; then
                file 0644 "$lib" "/usr/lib/infrasight/swift/$(basename "$lib")"
            fi
        done
    done
    # Relative to the program, so a staging root works as it will once copied.
    patchelf --set-rpath '$ORIGIN/../lib/infrasight/swift' "$root/usr/bin/infrasight"
fi

# libbpf1 libelf1 zlib1g libcurl4 libstdc++6 come from Debian packages.
missing=$(ldd "$root/usr/bin/infrasight" | awk '/not found/ { print $1 }' | tr '\n' ' ')
[ -z "$missing" ] || echo "install: warning: libraries not found for /usr/bin/infrasight: $missing(apt-get install libbpf1 libelf1 zlib1g libcurl4; without the Swift toolchain, --bundle-swift-runtime)" >&2

# Embedded ClickHouse: the chdb-core library keeps its own dependencies in
# ../chdb_core.libs (its RPATH), so that layout is kept. It also needs libpython3.11.
if $chdb && [ -f .chdb/chdb/_chdb.abi3.so ]; then
    dir /usr/lib/infrasight/chdb
    dir /usr/lib/infrasight/chdb_core.libs
    file 0644 .chdb/chdb/_chdb.abi3.so /usr/lib/infrasight/chdb/_chdb.abi3.so
    for lib in .chdb/chdb_core.libs/*.so*; do
        file 0644 "$lib" "/usr/lib/infrasight/chdb_core.libs/$(basename "$lib")"
    done
    [ -f .chdb/VERSION ] && file 0644 .chdb/VERSION /usr/lib/infrasight/chdb/VERSION
elif $chdb; then
    echo "install: note: no .chdb/ here, so no embedded ClickHouse (scripts/setup.sh --deps installs it); run and server then need --clickhouse-url" >&2
fi

if [ -e "$root/etc/infrasight/infrasight.yaml" ]; then
    echo "install: keeping the existing /etc/infrasight/infrasight.yaml" >&2
else
    file 0644 deploy/infrasight.yaml /etc/infrasight/infrasight.yaml
fi

if $units; then
    dir /usr/lib/systemd
    dir /usr/lib/systemd/system
    for u in deploy/systemd/*.service; do
        file 0644 "$u" "/usr/lib/systemd/system/$(basename "$u")"
    done
    if [ -z "$root" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
fi
file 0644 README.md /usr/share/doc/infrasight/README.md
file 0644 docs/deploy.md /usr/share/doc/infrasight/deploy.md

echo "install: installed into ${root:-/}: /usr/bin/infrasight and ${#plugins[@]} plugins in /usr/lib/infrasight/plugins$($units && echo ", systemd units in /usr/lib/systemd/system")"
if [ -z "$root" ]; then
    echo "install: next: edit /etc/infrasight/infrasight.yaml, then systemctl enable --now infrasight-run (or infrasight-agent, infrasight-server)"
fi
