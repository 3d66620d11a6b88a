#!/usr/bin/env bash
# Builds the container images offline, from Debian packages and this repository alone
# (no registry is pulled from):
#   infrasight:VERSION         the agent (and `run`/`server` with --clickhouse-url): the
#                              release binary, the first-party plugins, the Swift runtime
#                              libraries it links, and the Debian libraries they need
#   infrasight-server:VERSION  the same plus embedded ClickHouse (the pinned chdb-core
#                              library and libpython3.11, whose symbols it needs); runs as
#                              uid 65532, not root
# and saves each with `docker save` into OUT (default .build/images/), archives that
# `ctr -n k8s.io images import FILE` loads into containerd (Kubernetes nodes).
#
#   scripts/build-images.sh [--out DIR] [--skip-build] [--scratch-path DIR]
#
# Needs root, a running dockerd (`dockerd &`), mmdebstrap (scripts/setup.sh installs it)
# and Debian's package mirror. The base is Debian bookworm, minbase variant, without
# documentation; file times are the last commit's (SOURCE_DATE_EPOCH), so the same
# commit and the same Debian packages give the same file tree. Debian's point releases
# do change package versions: each image lists its packages in
# /usr/lib/infrasight/debian-packages.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.build/images
build=1
scratch=.build
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        --scratch-path) scratch="$2"; shift 2 ;;
        *) echo "build-images: unknown option $1 (use --out DIR, --skip-build, --scratch-path DIR)" >&2; exit 64 ;;
    esac
done
fail() { echo "build-images: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (mmdebstrap builds the root file systems)"
command -v mmdebstrap >/dev/null || fail "mmdebstrap is missing: apt-get install -y mmdebstrap (or scripts/setup.sh --deps)"
docker=/usr/bin/docker; [ -x $docker ] || docker=$(command -v docker) || fail "docker is missing: apt-get install -y docker.io"
$docker info >/dev/null 2>&1 || fail "dockerd is not running: start it (dockerd &) and retry"

version=$(sed -n 's/^let infrasightVersion = "\(.*\)"$/\1/p' Sources/infrasight/PipelineOptions.swift)
[ -n "$version" ] || fail "cannot read the version from Sources/infrasight/PipelineOptions.swift"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
suite=bookworm
swift_lib="$(dirname "$(readlink -f "$(command -v swift)")")/../lib/swift/linux"

if [ $build = 1 ]; then
    swift build -c release --scratch-path "$scratch"
fi
bin=$scratch/release
[ -x $bin/infrasight ] || fail "no release build at $bin/infrasight (run without --skip-build)"
plugins=$(ls $bin/libinfrasight-*.so)
if [ ! -f .chdb/chdb/_chdb.abi3.so ]; then scripts/setup.sh --deps >/dev/null; fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One root file system per image: Debian's minbase with the libraries the binaries link.
rootfs() { # DIR PACKAGES...
    local dir=$1; shift
    local packages; packages=$(IFS=,; echo "$*")
    mmdebstrap --quiet --variant=minbase --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/* "$1"/etc/machine-id' \
        "$suite" "$dir" >/dev/null
}

# The program, its plugins, the Swift runtime libraries it links (and nothing else of
# the toolchain), registered with the dynamic loader.
install_infrasight() { # DIR
    local dir=$1
    # Symbol tables stripped (the dynamic symbols that loading needs stay): the release
    # binary is ~100 MB with them.
    install -D -m 0755 $bin/infrasight "$dir/usr/bin/infrasight"
    install -d -m 0755 "$dir/usr/lib/infrasight/plugins" "$dir/usr/lib/swift/linux" "$dir/etc/infrasight"
    for p in $plugins; do install -m 0755 "$p" "$dir/usr/lib/infrasight/plugins/"; done
    strip --strip-unneeded "$dir/usr/bin/infrasight" "$dir"/usr/lib/infrasight/plugins/*.so
    for lib in $( (ldd $bin/infrasight; for p in $plugins; do ldd "$p"; done) | awk '{print $3}' | grep "^$swift_lib\|^/opt/swift" | sort -u); do
        install -m 0644 "$lib" "$dir/usr/lib/swift/linux/"
    done
    echo /usr/lib/swift/linux > "$dir/etc/ld.so.conf.d/swift.conf"
    chroot "$dir" /sbin/ldconfig
    chroot "$dir" dpkg-query -W -f='${Package} ${Version}\n' > "$dir/usr/lib/infrasight/debian-packages.txt"
    # Every binary resolves all its libraries inside the image.
    for f in /usr/bin/infrasight $(cd "$dir" && ls usr/lib/infrasight/plugins/*.so | sed 's|^|/|'); do
        if chroot "$dir" /usr/bin/ldd "$f" | grep -q "not found"; then
            chroot "$dir" /usr/bin/ldd "$f" | grep "not found" >&2
            fail "$f misses libraries in the image"
        fi
    done
}

# A file tree into an image, with fixed times and owners.
import_image() { # DIR NAME CHANGES...
    local dir=$1 name=$2; shift 2
    local changes=()
    for c in "$@"; do changes+=(--change "$c"); done
    tar -C "$dir" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --numeric-owner --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -c . |
        $docker import "${changes[@]}" --message "infrasight $version" - "$name:$version" >/dev/null
    $docker save -o "$out/$name-$version.tar" "$name:$version"
}

echo "build-images: infrasight:$version (Debian $suite)"
agent=$work/agent
rootfs "$agent" libbpf1 libelf1 zlib1g libcurl4 libstdc++6 ca-certificates
install_infrasight "$agent"
import_image "$agent" infrasight \
    'ENTRYPOINT ["/usr/bin/infrasight"]' 'CMD ["agent"]' 'ENV NODE_NAME=' \
    "LABEL org.opencontainers.image.title=infrasight org.opencontainers.image.version=$version"

echo "build-images: infrasight-server:$version (Debian $suite, embedded ClickHouse $(cat .chdb/VERSION))"
server=$work/server
rootfs "$server" libbpf1 libelf1 zlib1g libcurl4 libstdc++6 ca-certificates libpython3.11
install_infrasight "$server"
install -d -m 0755 "$server/usr/lib/infrasight/chdb" "$server/usr/lib/infrasight/chdb_core.libs"
install -m 0644 .chdb/chdb/_chdb.abi3.so "$server/usr/lib/infrasight/chdb/"
install -m 0644 .chdb/chdb_core.libs/* "$server/usr/lib/infrasight/chdb_core.libs/"
# The server's own user: it needs no privilege, only its data directory.
echo 'infrasight:x:65532:65532:infrasight server:/var/lib/infrasight:/usr/sbin/nologin' >> "$server/etc/passwd"
echo 'infrasight:x:65532:' >> "$server/etc/group"
install -d -m 0700 -o 65532 -g 65532 "$server/var/lib/infrasight"
import_image "$server" infrasight-server \
    'ENTRYPOINT ["/usr/bin/infrasight"]' 'CMD ["server", "--data-dir", "/var/lib/infrasight"]' 'USER 65532:65532' \
    'WORKDIR /var/lib/infrasight' \
    "LABEL org.opencontainers.image.title=infrasight-server org.opencontainers.image.version=$version"

for name in infrasight infrasight-server; do
    size=$($docker image inspect -f '{{.Size}}' "$name:$version")
    archive=$(stat -c %s "$out/$name-$version.tar")
    printf 'build-images: %-28s %4d MB (archive %s, %d MB)\n' "$name:$version" $((size / 1000000)) "$out/$name-$version.tar" $((archive / 1000000))
done
