#!/usr/bin/env bash
# The kernel matrix (issue #23): boots Debian's 5.10, 6.1 and 6.12 kernels under QEMU
# (TCG; nested KVM hangs on these machines) and, in each, runs every first-party plugin
# against a workload of known system calls, then checks the tracer's rows exactly.
#
#   scripts/kernel-matrix.sh [--kernels 6.1,6.12,5.10] [--bin DIR] [--keep] [--timeout SECONDS]
#
#   --kernels LIST     the kernel series to boot, comma-separated (default 6.1,6.12,5.10)
#   --bin DIR          the build holding `infrasight` and its plugin .so files
#                      (default .build/release of this repository; scripts/setup.sh or
#                      `swift build -c release` makes it)
#   --keep             keep the work files (extracted kernel packages, the traced rows)
#   --timeout SECONDS  a guest that has not powered off by then fails its kernel
#                      (default 1800)
#
# Run as root, after the build (CI runs it after the test suite). What it does:
#  1. installs what it needs when it is missing (qemu-system-x86 busybox-static cpio kmod
#     xz-utils jq gcc; scripts/setup.sh --deps installs them too);
#  2. fetches the newest linux-image-5.10.* (bullseye), 6.1.* (bookworm) and 6.12.*
#     (bookworm-backports) amd64 packages through a private apt list that uses the
#     system's own Debian mirror (or $KM_MIRROR); the system's apt sources and state are
#     not touched. Keeps each kernel, its 9p/virtio modules and their load order under
#     .build/kernels/SERIES/ and reuses them later (delete it to fetch a newer kernel);
#  3. builds an initramfs per kernel: static busybox, those modules, an /init that
#     mounts the host's root read-only over 9p, switches root into it (a chroot in
#     which process 1 sees the host's root, as on a real host) and runs the guest part
#     of this script;
#  4. boots each kernel (console log: .build/kernel-matrix/SERIES/console.log); the guest
#     runs `infrasight doctor --json` and `infrasight trace` around the workload
#     (scripts/kernel-matrix-workload.c) and hands its files back through a second,
#     writable 9p share (.build/kernel-matrix/SERIES/share/);
#  5. checks on the host what each plugin recorded, prints the table kernel x plugin and
#     writes it with every check's detail to .build/kernel-matrix/matrix.md.
#
# Expectations: on 6.1 and 6.12 every plugin runs and every check is exact, except that a
# tracepoint the kernel lacks (sys_enter_fchmodat2 before 6.6) must be named in the
# tracer's warning: its items are "not on this kernel". On 5.10 every plugin must be
# refused with the feature and kernel it needs (`plugin NAME: needs ... (Linux X.Y+);
# this kernel is 5.10`). `infrasight doctor --json` must agree. Exits 1 when any
# expectation fails.
#
# The guest sees the host's file system read-only, with tmpfs over /tmp, /run and
# /var/tmp: the repository and --bin must not live under those.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
kernels=6.1,6.12,5.10
bin=$repo/.build/release
keep=0
guest_timeout=1800
while [ $# -gt 0 ]; do
    case "$1" in
        --kernels) kernels=${2:?--kernels needs a list}; shift 2 ;;
        --bin) bin=${2:?--bin needs a directory}; shift 2 ;;
        --keep) keep=1; shift ;;
        --timeout) guest_timeout=${2:?--timeout needs seconds}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "kernel-matrix: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
done

say() { echo "kernel-matrix: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, depmod's tree, mknod, QEMU and the guest's tracer)"
[[ $guest_timeout =~ ^[0-9]+$ ]] || die "--timeout wants seconds, not $guest_timeout"
bin=$(cd "$bin" 2>/dev/null && pwd) || die "--bin: no such directory"
[ -x "$bin/infrasight" ] || die "no infrasight binary in $bin: build it first (swift build -c release) or pass --bin DIR"
for p in tracing network ptrace mmap mount resource; do
    [ -f "$bin/libinfrasight-$p.so" ] || die "no plugin $p in $bin (libinfrasight-$p.so)"
done
# The guest covers /tmp, /run and /var/tmp with tmpfs; the repository or the build may
# live there (a CI clone in /tmp): those directories are shown through again.
reshow=""
for d in "$repo" "$bin"; do
    case "$d" in *[[:space:]]*) die "$d has white space in its path, which the guest's kernel command line cannot carry" ;; esac
    case "$d/" in /tmp/* | /run/* | /var/tmp/* | /var/lib/infrasight/*) reshow=${reshow:+$reshow,}$d ;; esac
done

out=$repo/.build/kernel-matrix
cache=$repo/.build/kernels
mkdir -p "$out" "$cache"
plugins=(tracing network ptrace mmap mount resource)

# Workload sizes: TCG runs 10-50x slower than the host; these keep a kernel's guest run
# to a few minutes while every count stays exact.
opens=2000 execs=50 chmods=20 connects=20

# ---------------------------------------------------------------------------------------
# 1. Packages

need_packages() {
    "$repo/scripts/install-packages.sh" kernel-matrix qemu-system-x86 busybox-static cpio kmod xz-utils jq gcc libc6-dev debian-archive-keyring
    ! ldd /bin/busybox >/dev/null 2>&1 || die "/bin/busybox is not static (install busybox-static)"
}

# ---------------------------------------------------------------------------------------
# 2. Kernels from Debian's archive, through a private apt list

aptdir=$cache/apt
apt_opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
    -o Acquire::Check-Valid-Until=false -o Acquire::Retries=3 -o APT::Sandbox::User=root)

# The Debian mirror the system's own sources use (deb822 .sources or one-line .list),
# KM_MIRROR if set, else deb.debian.org.
mirror_uri() {
    if [ -n "${KM_MIRROR:-}" ]; then echo "$KM_MIRROR"; return; fi
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^[ \t]*#/ || index($i, ":") == 0) continue
                    key = tolower(substr($i, 1, index($i, ":") - 1)); val = substr($i, index($i, ":") + 1)
                    gsub(/^[ \t]+|[ \t]+$/, "", val)
                    if (key == "types") types = val; else if (key == "uris") uris = val
                    else if (key == "suites") suites = val; else if (key == "enabled") enabled = tolower(val)
                }
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && suites !~ /security/ && uris ~ /^https?:\/\/.*debian/) {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($i ~ /^https?:\/\/.*debian/ && $(i + 1) !~ /security/) { print $i; exit }
            }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    echo http://deb.debian.org/debian
}

apt_ready=0
apt_update() {
    [ $apt_ready = 1 ] && return
    local mirror signed=""
    mirror=$(mirror_uri)
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
    printf "deb ${signed}%s %s main\n" "$mirror" bullseye "$mirror" bookworm "$mirror" bookworm-backports > "$aptdir/sources.list"
    say "apt-get update (private list, mirror $mirror: bullseye, bookworm, bookworm-backports)"
    apt-get "${apt_opts[@]}" update -qq >"$aptdir/update.log" 2>&1 || { cat "$aptdir/update.log" >&2; die "apt-get update failed"; }
    apt_ready=1
}

# The candidate version of a real (not purely virtual) package, or nothing.
candidate() {
    apt-cache "${apt_opts[@]}" show --no-all-versions "$1" 2>/dev/null | awk '/^Version: / { print $2; exit }'
}

# The package that carries the newest kernel of series $1 (5.10, 6.1, 6.12): the newest
# linux-image-SERIES.*-amd64, its -unsigned twin when that exists (the plain name may be
# a signed package or a metapackage; -unsigned is always the kernel itself).
select_package() {
    local series=$1 re names n v best="" bestv=""
    re="^linux-image-${series//./\\.}[.-][0-9][0-9a-z.+~-]*[0-9]-amd64(-unsigned)?$"
    names=$(apt-cache "${apt_opts[@]}" pkgnames linux-image- | grep -E "$re" | sed 's/-unsigned$//' | sort -u) || true
    for n in $names; do
        v=$(candidate "$n-unsigned"); [ -n "$v" ] || v=$(candidate "$n"); [ -n "$v" ] || continue
        if [ -z "$bestv" ] || dpkg --compare-versions "$v" gt "$bestv"; then best=$n bestv=$v; fi
    done
    [ -n "$best" ] || return 1
    if [ -n "$(candidate "$best-unsigned")" ]; then echo "$best-unsigned"; else echo "$best"; fi
}

# The modules 9p needs, with every dependency first (from modules.dep), as paths under
# lib/modules/KREL; modules built into the kernel are left out.
resolve_modules() {
    local moddir=$1; shift
    local -A seen=()
    local order=()
    visit() {
        local path=$1 d
        [ -n "${seen[$path]:-}" ] && return
        seen[$path]=1
        for d in $(awk -v p="$path:" '$1 == p { $1 = ""; print; exit }' "$moddir/modules.dep"); do visit "$d"; done
        order+=("$path")
    }
    local name path
    for name in "$@"; do
        path=$(awk -F: -v n="$name" '{ b = $1; sub(/.*\//, "", b); sub(/\.ko(\.xz|\.gz|\.zst)?$/, "", b); gsub(/-/, "_", b); if (b == n) { print $1; exit } }' "$moddir/modules.dep")
        if [ -z "$path" ]; then
            grep -q "/$name.ko\$" "$moddir/modules.builtin" 2>/dev/null && continue
            die "module $name: neither in modules.dep nor built in ($moddir)"
        fi
        visit "$path"
    done
    printf '%s\n' "${order[@]}"
}

cache_format=1
# Fetches kernel series $1 into $cache/$1 unless it is there: vmlinuz, modules/*.ko
# (decompressed: busybox's insmod reads plain .ko), modules/load.order, kernel.env.
fetch_kernel() {
    local series=$1 dir=$cache/$1
    if [ -f "$dir/kernel.env" ] && grep -qx "format=$cache_format" "$dir/kernel.env"; then return; fi
    apt_update
    local pkg tmp deb krel moddir m base
    pkg=$(select_package "$series") || die "no linux-image-$series.*-amd64 package in bullseye, bookworm or bookworm-backports ($(mirror_uri))"
    say "fetching $pkg ($(candidate "$pkg"))"
    rm -rf "$dir"; mkdir -p "$dir/modules"
    tmp=$dir/pkg; mkdir -p "$tmp"
    (cd "$tmp" && apt-get "${apt_opts[@]}" download -qq "$pkg" >/dev/null) || die "apt-get download $pkg failed"
    deb=$(ls "$tmp"/*.deb)
    dpkg -x "$deb" "$tmp/root"
    ls "$tmp"/root/boot/vmlinuz-* >/dev/null 2>&1 || die "$pkg carries no /boot/vmlinuz (a metapackage?)"
    krel=$(ls "$tmp/root/lib/modules")
    moddir=$tmp/root/lib/modules/$krel
    depmod -b "$tmp/root" "$krel"
    cp "$tmp"/root/boot/vmlinuz-* "$dir/vmlinuz"
    cp "$tmp"/root/boot/config-* "$dir/config"
    : > "$dir/modules/load.order"
    for m in $(resolve_modules "$moddir" 9p 9pnet_virtio virtio_pci); do
        base=$(basename "$m"); base=${base%%.ko*}
        case "$m" in
            *.ko.xz) xz -dc "$moddir/$m" > "$dir/modules/$base.ko" ;;
            *.ko.gz) gzip -dc "$moddir/$m" > "$dir/modules/$base.ko" ;;
            *.ko.zst) zstd -qdc "$moddir/$m" > "$dir/modules/$base.ko" ;;
            *) cp "$moddir/$m" "$dir/modules/$base.ko" ;;
        esac
        echo "$base" >> "$dir/modules/load.order"
    done
    printf 'format=%s\npackage=%s\nversion=%s\nkrel=%s\n' "$cache_format" "$pkg" "$(dpkg-deb -f "$deb" Version)" "$krel" > "$dir/kernel.env"
    if [ $keep = 1 ]; then mv "$tmp/root" "$dir/root"; fi
    rm -rf "$tmp"
    say "kernel $series: $krel, modules $(tr '\n' ' ' < "$dir/modules/load.order")"
}

kernel_field() { sed -n "s/^$2=//p" "$cache/$1/kernel.env"; }

# ---------------------------------------------------------------------------------------
# 3. The initramfs: busybox, the 9p modules, /init

write_init() {
    cat <<'INIT'
#!/bin/busybox sh
# /init of the kernel matrix's initramfs (scripts/kernel-matrix.sh): the host's root over
# 9p (read-only) on /mnt, a writable share for the results, then switch_root into it (so
# that process 1 sees the host's root, as on a real host) to run the guest part; its exit
# code on the console, and power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
token=none script="" share="" keep=""
for w in $(cat /proc/cmdline); do
    case "$w" in
        km.token=*) token=${w#km.token=} ;;
        km.script=*) script=${w#km.script=} ;;
        km.share=*) share=${w#km.share=} ;;
        km.keep=*) keep=${w#km.keep=} ;;
    esac
done
mark() { echo "@@KM:$token:$*@@"; }
fail() { mark "INIT-FAIL:$*"; sync; poweroff -f; sleep 10; }
while read -r m; do insmod "/lib/km/$m.ko" || fail "insmod $m"; done < /lib/km/load.order
opts=trans=virtio,version=9p2000.L,msize=512000
n=0
until mount -t 9p -o "$opts,ro" hostroot /mnt 2>/dev/null; do
    n=$((n + 1)); [ $n -lt 20 ] || fail "mount of the host root over 9p"; sleep 0.5
done
for d in proc sys dev; do mount --bind /$d /mnt/$d || fail "bind /$d"; done
# Host directories under what the tmpfs mounts below cover (km.keep): held aside first,
# shown again at their own paths after.
i=0
for p in $(echo "$keep" | tr , ' '); do
    mkdir -p /keep/$i && mount --bind "/mnt$p" /keep/$i || fail "hold $p"; i=$((i + 1))
done
# Writable: /tmp, /run, /var/tmp and the default data directory.
for d in /tmp:1777 /run:0755 /var/tmp:1777 /var/lib/infrasight:0700; do
    [ -d "/mnt${d%:*}" ] && { mount -t tmpfs -o "mode=${d#*:}" tmpfs "/mnt${d%:*}" || fail "tmpfs on ${d%:*}"; }
done
i=0
for p in $(echo "$keep" | tr , ' '); do
    mkdir -p "/mnt$p" && mount --move /keep/$i "/mnt$p" || fail "show $p again"; i=$((i + 1))
done
mkdir -p /mnt/dev/shm && mount -t tmpfs tmpfs /mnt/dev/shm
mount -t tracefs nodev /mnt/sys/kernel/tracing || fail "tracefs"
mount -t bpf bpf /mnt/sys/fs/bpf || fail "bpffs"
mount -t cgroup2 cgroup2 /mnt/sys/fs/cgroup || fail "cgroup2"
mount -t 9p -o "$opts" kmshare "/mnt$share" || fail "mount of the result share on $share"
ip link set lo up || fail "loopback"
# Process 1 after switch_root: busybox from the tmpfs on /run, which runs the guest part,
# prints its exit code and powers off.
mkdir -p /mnt/run/km && cp /bin/busybox /mnt/run/km/busybox || fail "busybox on /run"
cat > /mnt/run/km/stage2 <<'STAGE2'
token=$1 script=$2 share=$3
/run/km/busybox env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    /bin/sh "$script" "$token" "$share"
rc=$?
/run/km/busybox sync
/run/km/busybox umount "$share"
echo "@@KM:$token:EXIT:$rc@@"
/run/km/busybox poweroff -f
/run/km/busybox sleep 10
STAGE2
mark "INIT-READY:$(cat /proc/uptime)"
exec switch_root /mnt /run/km/busybox sh /run/km/stage2 "$token" "$script" "$share"
fail "switch_root"
INIT
}

# The initramfs of series $1, rebuilt when /init, the modules or busybox change.
initramfs() {
    local series=$1 dir=$cache/$1 sum img stage
    sum=$( { write_init; cat "$dir/modules/load.order"; sha256sum /bin/busybox "$dir"/modules/*.ko; } | sha256sum | cut -c1-16)
    img=$dir/initrd-$sum.img
    if [ ! -f "$img" ]; then
        stage=$(mktemp -d "$dir/stage.XXXXXX")
        mkdir -p "$stage"/{bin,dev,proc,sys,mnt,tmp,lib/km}
        cp /bin/busybox "$stage/bin/busybox"
        mknod "$stage/dev/console" c 5 1
        mknod "$stage/dev/null" c 1 3
        cp "$dir"/modules/*.ko "$dir/modules/load.order" "$stage/lib/km/"
        write_init > "$stage/init"; chmod 755 "$stage/init"
        rm -f "$dir"/initrd-*.img
        (cd "$stage" && find . -print0 | cpio -0 -o -H newc --quiet) | gzip -1 > "$img.tmp"
        mv "$img.tmp" "$img"
        rm -rf "$stage"
    fi
    echo "$img"
}

# ---------------------------------------------------------------------------------------
# The workload and the guest part

workload=$out/bin/km-workload
build_workload() {
    local src=$repo/scripts/kernel-matrix-workload.c sum
    sum=$(sha256sum "$src" | cut -c1-64)
    if [ ! -x "$workload" ] || [ "$(cat "$out/bin/workload.sha256" 2>/dev/null)" != "$sum" ]; then
        mkdir -p "$out/bin"
        cc -O1 -Wall -o "$workload.tmp" "$src" || die "cannot compile $src"
        mv "$workload.tmp" "$workload"
        echo "$sum" > "$out/bin/workload.sha256"
    fi
}

# Runs inside the guest, chrooted into the host's root: `guest.sh TOKEN SHARE`, with
# SHARE/params.env from the host. Everything it finds goes to SHARE (the host reads it)
# and, for the log, between markers on the console.
write_guest() {
    cat <<'GUEST'
#!/bin/sh
# The guest part of scripts/kernel-matrix.sh (written by it; runs in the QEMU guest).
set -u
token=$1 share=$2
. "$share/params.env"
mark() { echo "@@KM:$token:$*@@"; }
section() { mark "BEGIN:$1"; cat "$2" 2>/dev/null; echo; mark "END:$1"; }
cd /tmp || exit 1
mark "KERNEL:$(uname -r)"

# The tracepoints the plugins attach to: which of them this kernel has.
while read -r plugin tp; do
    if [ -d "/sys/kernel/tracing/events/$tp" ]; then echo "$plugin $tp yes"; else echo "$plugin $tp no"; fi
done < "$share/tracepoints.in" > "$share/tracepoints.txt"
mark "TRACEPOINTS-ABSENT:$(awk '$3 == "no" { printf "%s ", $2 }' "$share/tracepoints.txt")"

# infrasight doctor --json
t0=$(date +%s)
timeout -k 5 "$DOCTOR_TIMEOUT" "$BIN/infrasight" doctor --json > "$share/doctor.json" 2> "$share/doctor.err"
echo $? > "$share/doctor.rc"
section doctor "$share/doctor.json"
section doctor-stderr "$share/doctor.err"
mark "DOCTOR-EXIT:$(cat "$share/doctor.rc") after $(($(date +%s) - t0)) s"

# infrasight trace around the workload
printf 'plugins:\n  options:\n    resource:\n      interval_seconds: 1\n' > /tmp/km.yaml
t0=$(date +%s)
"$BIN/infrasight" trace --plugins "$PLUGINS" --config /tmp/km.yaml --format json --duration "$TRACE_DURATION" \
    > "$share/trace.json" 2> "$share/trace.err" &
tpid=$!
started=0
while [ $(($(date +%s) - t0)) -lt "$START_TIMEOUT" ]; do
    if grep -q 'infrasight: note: started: ' "$share/trace.err"; then started=1; break; fi
    kill -0 $tpid 2>/dev/null || break
    sleep 1
done
mark "TRACE-STARTED:$started after $(($(date +%s) - t0)) s"
if [ $started = 1 ]; then
    mkdir -p /tmp/km-work
    t1=$(date +%s)
    timeout -k 5 "$WORKLOAD_TIMEOUT" "$WORKLOAD" "$MARKER" /tmp/km-work $OPENS $EXECS $CHMODS $CONNECTS \
        > "$share/workload.out" 2> "$share/workload.err"
    echo $? > "$share/workload.rc"
    mark "WORKLOAD-EXIT:$(cat "$share/workload.rc") after $(($(date +%s) - t1)) s"
    sleep 3 # the dispatcher drains quiet rings every 100 ms; TCG is slow
fi
kill -INT $tpid 2>/dev/null
(sleep "$STOP_TIMEOUT"; kill -KILL $tpid 2>/dev/null) &
watchdog=$!
wait $tpid
echo $? > "$share/trace.rc"
kill $watchdog 2>/dev/null
section trace-stderr "$share/trace.err"
section workload "$share/workload.out"
section workload-stderr "$share/workload.err"
mark "TRACE-EXIT:$(cat "$share/trace.rc") rows $(wc -l < "$share/trace.json") after $(($(date +%s) - t0)) s"
GUEST
}

# "plugin category/name" for every tracepoint program of every plugin, from its BPF
# source: SEC("tracepoint/...") as written, and those of macros that build
# SEC("tracepoint/PREFIX" #arg) from their argument (EXIT_HANDLER(openat), ...).
list_tracepoints() {
    local p
    for p in "${plugins[@]}"; do
        awk -v p="$p" '
            /^[ \t]*#[ \t]*define[ \t]+[A-Za-z_0-9]+\(/ { m = $0; sub(/^[ \t]*#[ \t]*define[ \t]+/, "", m); sub(/\(.*/, "", m); inmacro = 1 }
            inmacro {
                if (match($0, /SEC\("tracepoint\/[^"]*" *#/)) { pre = substr($0, RSTART + 16, RLENGTH - 16); sub(/" *#$/, "", pre); prefix[m] = pre }
                if ($0 !~ /\\$/) inmacro = 0
                next
            }
            match($0, /SEC\("tracepoint\/[^"]*"\)/) { print p, substr($0, RSTART + 16, RLENGTH - 18); next }
            match($0, /^[A-Za-z_0-9]+\(/) {
                name = substr($0, 1, RLENGTH - 1)
                if (name in prefix) { arg = substr($0, RLENGTH + 1); sub(/[,)].*/, "", arg); gsub(/[ \t]/, "", arg); print p, prefix[name] arg }
            }
        ' "$repo/Plugins/$p/$p.bpf.c"
    done
}

# ---------------------------------------------------------------------------------------
# 4. Boot

# A QEMU still running when this script ends (interrupted, killed by CI) is stopped.
qemu_pid=""
trap 'if [ -n "$qemu_pid" ]; then kill -TERM "$qemu_pid" 2>/dev/null || true; fi' EXIT
trap 'exit 130' INT TERM

# Boots series $1; sets guest_status (ok | timeout | no-exit | init-fail: WHY) and
# guest_seconds.
boot() {
    local series=$1 dir=$out/$1 img token start rc last_mark
    img=$(initramfs "$series")
    rm -rf "$dir"; mkdir -p "$dir/share"
    token=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    marker=km$token
    cat > "$dir/share/params.env" <<EOF
BIN='$bin'
WORKLOAD='$workload'
PLUGINS='$(IFS=,; echo "${plugins[*]}")'
MARKER='$marker'
OPENS=$opens EXECS=$execs CHMODS=$chmods CONNECTS=$connects
DOCTOR_TIMEOUT=240 START_TIMEOUT=300 WORKLOAD_TIMEOUT=400 STOP_TIMEOUT=180 TRACE_DURATION=1000
EOF
    list_tracepoints > "$dir/share/tracepoints.in"
    write_guest > "$out/guest.sh"
    say "booting $series ($(kernel_field "$series" krel)) under QEMU (TCG); console: ${dir#"$repo"/}/console.log"
    start=$(date +%s)
    rc=0
    timeout -k 10 "$guest_timeout" qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -smp 2 -m 4096 \
        -kernel "$cache/$series/vmlinuz" -initrd "$img" \
        -append "console=ttyS0 rdinit=/init quiet panic=-1 km.token=$token km.script=$out/guest.sh km.share=$dir/share${reshow:+ km.keep=$reshow}" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$dir/share,mount_tag=kmshare,security_model=none,multidevs=remap" \
        -nic none -nographic -no-reboot </dev/null >"$dir/console.log" 2>&1 &
    qemu_pid=$!
    wait $qemu_pid || rc=$?
    qemu_pid=""
    guest_seconds=$(($(date +%s) - start))
    tr -d '\r' < "$dir/console.log" > "$dir/console.txt"
    guest_token=$token
    local exit_line init_fail
    exit_line=$(grep -o "@@KM:$token:EXIT:[0-9]*@@" "$dir/console.txt" | tail -1 || true)
    init_fail=$(grep -o "@@KM:$token:INIT-FAIL:.*@@" "$dir/console.txt" | head -1 || true)
    last_mark=$(grep -o "@@KM:$token:[^@]*@@" "$dir/console.txt" | tail -1 | sed "s/^@@KM:$token://; s/@@\$//" || true)
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        guest_status="guest timed out after ${guest_timeout} s (last step: ${last_mark:-none}; console: ${dir#"$repo"/}/console.log)"
    elif [ -n "$init_fail" ]; then
        init_fail=${init_fail#"@@KM:$token:INIT-FAIL:"}
        guest_status="guest init failed: ${init_fail%@@}"
    elif [ -z "$exit_line" ]; then
        guest_status="guest ended without its exit line (QEMU exit $rc; kernel panic? see ${dir#"$repo"/}/console.log)"
    else
        guest_status=ok
    fi
    if [ "$guest_status" = ok ]; then say "$series: guest done in ${guest_seconds} s"; else say "$series: FAIL: $guest_status"; fi
}

# Text between the guest's BEGIN:NAME and END:NAME markers in series $1's console.
console_section() {
    awk -v b="@@KM:$guest_token:BEGIN:$2@@" -v e="@@KM:$guest_token:END:$2@@" \
        'index($0, e) { on = 0 } on { print } index($0, b) { on = 1 }' "$out/$1/console.txt"
}

# ---------------------------------------------------------------------------------------
# 5. Checks

declare -A cell   # "series/plugin" -> exact | not on this kernel: ... | refused: ... | FAIL: ...
declare -A fails  # "series/plugin" -> failures, "; "-separated
declare -A absent # "series/plugin" -> tracepoints the kernel lacks (named in a warning)
declare -A wall   # series -> guest seconds
details=()        # every check, for matrix.md

note() { details+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"$4"); } # series plugin status text
bad() { fails[$1/$2]+="${fails[$1/$2]:+; }$3"; note "$1" "$2" FAIL "$3"; }
good() { note "$1" "$2" ok "$3"; }

# Compares a measured value with the wanted one.
expect() { # series plugin what got want
    if [ "$4" == "$5" ]; then good "$1" "$2" "$3: $4"; else bad "$1" "$2" "$3: got $4, want $5"; fi
}
expect_ge() { # series plugin what got minimum
    if [ "$4" -ge "$5" ] 2>/dev/null; then good "$1" "$2" "$3: $4 (>= $5)"; else bad "$1" "$2" "$3: got $4, want >= $5"; fi
}

# jq FILTER over the workload's rows (its own and its children's), with its facts as
# variables; more jq options may come before FILTER.
q() { jq -s "${jq_vars[@]}" "$@" "$mine"; }

# The value of KEY in the workload's output.
w() { sed -n "s/^$1=//p" "$share/workload.out" | head -1; }

# Whether series $1 lacks tracepoint $2 (as the guest's tracefs says).
lacks() { awk -v t="$2" '$2 == t && $3 == "no" { f = 1 } END { exit !f }' "$share/tracepoints.txt"; }

# Items of plugin $2 that need tracepoints $3...: "not on this kernel" when the kernel
# lacks one of them (the tracer must have named it), else run check $4.
item() { # series plugin "tp1 tp2" label check-function
    local series=$1 plugin=$2 tp lacking=""
    for tp in $3; do lacks "$series" "$tp" && lacking+="${lacking:+, }${tp#*/}"; done
    if [ -n "$lacking" ]; then
        note "$series" "$plugin" "not on this kernel" "$4: $lacking"
        return
    fi
    "$5" "$series" "$plugin"
}

check_tracing_execs() {
    local s=$1 p=$2
    expect "$s" "$p" "execve rows of /bin/true with the marker argv, exit 0, ppid = workload, comm true" \
        "$(q '[.[] | select(.table == "tracing_events" and .event_type == "execve" and .syscall == "execve" and .filename == "/bin/true"
               and .ppid == $w and .return_code == 0 and .comm == "true" and (.argv | startswith("/bin/true " + $m + "-exec-")))] | length')" "$execs"
    expect "$s" "$p" "their argv, each exactly once" \
        "$(q '[.[] | select(.table == "tracing_events" and .event_type == "execve" and .ppid == $w and .filename == "/bin/true") | .argv] | sort
               == ([range(0; $execs) | "/bin/true \($m)-exec-\(.)"] | sort)')" true
    expect "$s" "$p" "execve of a missing program: pid, filename, -ENOENT" \
        "$(q '[.[] | select(.table == "tracing_events" and .event_type == "execve" and .pid == $badexec_pid and .filename == $badexec and .return_code == -2)] | length')" 1
}

check_tracing_opens() {
    local s=$1 p=$2
    expect "$s" "$p" "openat rows of the marked file (pid, filename, flags 0, fd >= 0)" \
        "$(q '[.[] | select(.table == "tracing_events" and .syscall == "openat" and .pid == $w and .filename == $f and .flags == 0 and .fd == -100 and .return_code >= 0)] | length')" "$opens"
    expect "$s" "$p" "all rows naming the marked file with syscall openat" \
        "$(q '[.[] | select(.table == "tracing_events" and .syscall == "openat" and .filename == $f)] | length')" "$opens"
    expect "$s" "$p" "creat: mode 0644, flags O_CREAT|O_WRONLY|O_TRUNC, fd returned" \
        "$(q '[.[] | select(.table == "tracing_events" and .event_type == "open" and .syscall == "creat" and .pid == $w and .filename == $f and .mode == 420 and .flags == 577 and .return_code == $creat)] | length')" 1
    expect "$s" "$p" "open(2): return code" \
        "$(q '[.[] | select(.table == "tracing_events" and .syscall == "open" and .pid == $w and .filename == $f and .return_code == $open_ret)] | length')" 1
    expect "$s" "$p" "openat2: return code" \
        "$(q '[.[] | select(.table == "tracing_events" and .syscall == "openat2" and .pid == $w and .filename == $f and .return_code == $openat2)] | length')" 1
    expect "$s" "$p" "openat of a missing file: -ENOENT" \
        "$(q '[.[] | select(.table == "tracing_events" and .syscall == "openat" and .pid == $w and .filename == $missing and .return_code == -2)] | length')" 1
    expect "$s" "$p" "the workload's rows: uid 0, user root, user_pid = pid, latency = exit - enter" \
        "$(q '[.[] | select(.table == "tracing_events" and .pid == $w) | select(.uid != 0 or .user != "root" or .user_pid != .pid
               or .monotonic_ts_exit_ns - .monotonic_ts_enter_ns != .latency_ns or .comm != "km-workload")] | length')" 0
}

check_chmod() { # series plugin syscall mode(decimal) label
    local s=$1 p=$2
    expect "$s" "$p" "$3: mode $5, filename, exit 0" \
        "$(q --arg sc "$3" --argjson mode "$4" '[.[] | select(.table == "tracing_events" and .event_type == "chmod" and .syscall == $sc and .pid == $w
               and .mode == $mode and .return_code == 0 and (if $sc == "fchmod" then .filename == "" and .fd == $fchmod_fd else .filename == $f end))] | length')" "$chmods"
}
check_tracing_chmod() { check_chmod "$1" "$2" chmod 384 0600; }
check_tracing_fchmodat() { check_chmod "$1" "$2" fchmodat 416 0640; }
check_tracing_fchmod() { check_chmod "$1" "$2" fchmod 420 0644; }
check_tracing_fchmodat2() { check_chmod "$1" "$2" fchmodat2 388 0604; }

check_network() {
    local s=$1 p=$2
    expect "$s" "$p" "connect rows to 127.0.0.1:port (AF_INET, tcp, source 127.0.0.1, exit 0)" \
        "$(q '[.[] | select(.table == "network_events" and .event_type == "connect" and .pid == $w and .dport == ($port | tostring)
               and .daddr_ipv4 == "127.0.0.1" and .saddr_ipv4 == "127.0.0.1" and .sa_family == "AF_INET" and .protocol == "tcp" and .return_code == 0)] | length')" "$connects"
    expect "$s" "$p" "their source ports = the client sockets' ports" \
        "$(q '[.[] | select(.table == "network_events" and .event_type == "connect" and .pid == $w and .dport == ($port | tostring)) | .sport] | sort == ($client_ports | sort)')" true
    local call
    for call in accept accept4; do
        expect "$s" "$p" "$call rows (peer = source, listener = destination, fd returned)" \
            "$(q --arg call "$call" '[.[] | select(.table == "network_events" and .event_type == $call and .pid == $w and .dport == ($port | tostring)
                   and .daddr_ipv4 == "127.0.0.1" and .saddr_ipv4 == "127.0.0.1" and .protocol == "tcp" and .return_code == $accept_fd)] | length')" "$(w "${call}_ok")"
    done
    expect "$s" "$p" "the accepted peers' ports = the client sockets' ports" \
        "$(q '[.[] | select(.table == "network_events" and (.event_type | startswith("accept")) and .pid == $w) | .sport] | sort == ($client_ports | sort)')" true
    expect "$s" "$p" "connect to a closed port: -ECONNREFUSED" \
        "$(q '[.[] | select(.table == "network_events" and .event_type == "connect" and .pid == $w and .dport == ($closed_port | tostring) and .return_code == -111)] | length')" 1
}

check_ptrace() {
    local s=$1 p=$2
    expect "$s" "$p" "the workload's ptrace rows" "$(q '[.[] | select(.table == "ptrace_events" and .pid == $w)] | length')" 3
    expect "$s" "$p" "PTRACE_ATTACH (16) of the child, exit 0" \
        "$(q '[.[] | select(.table == "ptrace_events" and .pid == $w and .request == 16 and .request_name == "PTRACE_ATTACH" and .target_pid == $tracee and .return_code == 0)] | length')" 1
    expect "$s" "$p" "request 0x7777: PTRACE_UNKNOWN_30583, -EIO" \
        "$(q '[.[] | select(.table == "ptrace_events" and .pid == $w and .request == 30583 and .request_name == "PTRACE_UNKNOWN_30583" and .target_pid == $tracee and .return_code == -5)] | length')" 1
    expect "$s" "$p" "PTRACE_DETACH (17), exit 0" \
        "$(q '[.[] | select(.table == "ptrace_events" and .pid == $w and .request == 17 and .request_name == "PTRACE_DETACH" and .target_pid == $tracee and .return_code == 0)] | length')" 1
}

check_mmap() {
    local s=$1 p=$2
    expect "$s" "$p" "mappings 1234567 bytes long" "$(q '[.[] | select(.table == "mmap_events" and .pid == $w and .len == 1234567)] | length')" 2
    expect "$s" "$p" "anonymous: address returned, prot RW, MAP_PRIVATE|MAP_ANONYMOUS, fd -1, offset 0" \
        "$(q '[.[] | select(.table == "mmap_events" and .pid == $w and .len == 1234567 and .return_code == $map_anon and .addr == 0
               and .prot == 3 and .flags == 34 and .fd == 18446744073709551615 and .off == 0 and .event_type == "mmap")] | length')" 1
    expect "$s" "$p" "file-backed: address returned, prot R, MAP_SHARED, its fd, offset 4096" \
        "$(q '[.[] | select(.table == "mmap_events" and .pid == $w and .len == 1234567 and .return_code == $map_file
               and .prot == 1 and .flags == 1 and .fd == $map_fd and .off == 4096)] | length')" 1
}

check_mount() {
    local s=$1 p=$2
    expect "$s" "$p" "the workload's mount rows" "$(q '[.[] | select(.table == "mount_events" and .pid == $w)] | length')" 3
    expect "$s" "$p" "mount: source, target, tmpfs, MS_NOSUID|MS_NODEV, exit 0" \
        "$(q '[.[] | select(.table == "mount_events" and .pid == $w and .event_type == "mount" and .dev_name == $mount_dev and .dir_name == $mnt
               and .type == "tmpfs" and .flags == 6 and .return_code == 0)] | length')" 1
    expect "$s" "$p" "umount2: target, MNT_DETACH, exit 0" \
        "$(q '[.[] | select(.table == "mount_events" and .pid == $w and .event_type == "umount" and .dir_name == $mnt and .dev_name == "" and .flags == 2 and .return_code == 0)] | length')" 1
    expect "$s" "$p" "mount on a missing directory: -ENOENT" \
        "$(q '[.[] | select(.table == "mount_events" and .pid == $w and .event_type == "mount" and .dir_name == $nomnt and .type == "tmpfs" and .return_code == -2)] | length')" 1
}

check_resource() {
    local s=$1 p=$2
    local rows='[.[] | select(.table == "resource_events" and .pid == $w)]'
    expect_ge "$s" "$p" "the workload's resource rows" "$(q "$rows | length")" 2
    expect "$s" "$p" "rows with isActive 0 (its exit)" "$(q "$rows | map(select(.isActive == 0)) | length")" 1
    expect "$s" "$p" "the last row is the inactive one" "$(q "$rows | last | .isActive")" 0
    expect "$s" "$p" "all its rows carry its comm" "$(q "$rows | map(select(.comm != \"km-workload\")) | length")" 0
    expect_ge "$s" "$p" "bytes_written (8 MiB written)" "$(q "$rows | map(.bytes_written) | add | floor")" $((8 << 20))
    expect_ge "$s" "$p" "cpu_ns (1.5 s of CPU burnt)" "$(q "$rows | map(.cpu_ns) | add | floor")" 1000000000
    expect_ge "$s" "$p" "vm_mmap_bytes (two 1234567-byte mappings)" "$(q "$rows | map(.vm_mmap_bytes) | add | floor")" 2469134
    expect_ge "$s" "$p" "user_faults" "$(q "$rows | map(.user_faults) | add | floor")" 1
}

# The tracer's summary line of plugin $2: no kernel drops, no decode errors, every
# received record a row.
check_summary() {
    local s=$1 p=$2 line
    line=$(grep "^infrasight: $p: received " "$share/trace.err" | head -1 || true)
    if [ -z "$line" ]; then bad "$s" "$p" "no summary line from the tracer"; return; fi
    local received drops errors rows
    received=$(sed -E 's/.*received ([0-9]+).*/\1/' <<<"$line")
    drops=$(sed -E 's/.*kernel drops ([0-9]+).*/\1/' <<<"$line")
    errors=$(sed -E 's/.*decode errors ([0-9]+).*/\1/' <<<"$line")
    rows=$(sed -E 's/.*rows ([0-9]+).*/\1/' <<<"$line")
    expect "$s" "$p" "summary: kernel drops" "$drops" 0
    expect "$s" "$p" "summary: decode errors" "$errors" 0
    expect "$s" "$p" "summary: rows = received" "$rows" "$received"
}

# Every tracepoint the kernel lacks must be named in the tracer's warning; a warning may
# not call an existing tracepoint missing.
check_missing_tracepoints() {
    local s=$1 p tp have
    while read -r p tp have; do
        if [ "$have" = no ]; then
            if grep -q "^infrasight: warning: plugin $p: .*${tp#*/}" "$share/trace.err"; then
                absent[$s/$p]+="${absent[$s/$p]:+, }${tp#*/}"
                note "$s" "$p" "not on this kernel" "tracepoint $tp (named in the tracer's warning)"
            else
                bad "$s" "$p" "tracepoint $tp is absent but no warning of the tracer names it"
            fi
        elif grep -q "^infrasight: warning: plugin $p: tracepoint $tp " "$share/trace.err"; then
            bad "$s" "$p" "the tracer warns $tp does not exist, but tracefs has it"
        fi
    done < "$share/tracepoints.txt"
}

# 6.1, 6.12: every plugin runs and records the workload exactly.
check_run() {
    local s=$1 p trace_rc started
    trace_rc=$(cat "$share/trace.rc" 2>/dev/null || echo none)
    started=$(grep -m1 '^infrasight: note: started: ' "$share/trace.err" | sed 's/^infrasight: note: started: //' || true)
    check_missing_tracepoints "$s"
    for p in "${plugins[@]}"; do
        if [ "$trace_rc" != 0 ]; then bad "$s" "$p" "trace exited with $trace_rc: $(grep -m1 -E "plugin $p|error" "$share/trace.err" || head -1 "$share/trace.err")"; fi
        if ! grep -qw "$p" <<<"$started"; then bad "$s" "$p" "did not start: $(grep -m1 "plugin $p" "$share/trace.err" || echo "no 'started' line")"; fi
    done
    if [ ! -s "$share/workload.out" ]; then
        for p in "${plugins[@]}"; do bad "$s" "$p" "the workload did not run"; done
        return
    fi
    local wrc; wrc=$(cat "$share/workload.rc")
    if [ "$wrc" = 124 ] || [ "$wrc" = 137 ]; then wrc="$wrc (timed out in the guest)"; fi
    [ "$wrc" = 0 ] || for p in "${plugins[@]}"; do bad "$s" "$p" "the workload exited $wrc: $(head -3 "$share/workload.err" | tr '\n' ' ')"; done

    mine=$out/$s/workload-rows.json
    local wp; wp=$(w pid)
    jq -c --argjson w "$wp" 'select(.pid == $w or .ppid == $w)' "$share/trace.json" > "$mine" || bad "$s" tracing "trace output is not JSON lines"
    jq_vars=(--argjson w "$wp" --arg m "$marker" --argjson execs "$execs"
        --arg f "$(w file)" --arg missing "$(w missing)" --arg badexec "$(w badexec)" --argjson badexec_pid "$(w badexec_pid)"
        --argjson creat "$(w creat)" --argjson open_ret "$(w open_ret)" --argjson openat2 "$(w openat2)" --argjson fchmod_fd "$(w fchmod_fd)"
        --argjson port "$(w port)" --argjson closed_port "$(w closed_port)" --argjson accept_fd "$(w accept_fd)"
        --argjson client_ports "$(w client_ports | jq -Rc 'split(",")')"
        --argjson tracee "$(w tracee)" --argjson map_anon "$(w map_anon)" --argjson map_file "$(w map_file)" --argjson map_fd "$(w map_fd)"
        --arg mount_dev "$(w mount_dev)" --arg mnt "$(w mnt)" --arg nomnt "$(w nomnt)")

    local e=syscalls/sys_enter_ x=syscalls/sys_exit_
    item "$s" tracing "${e}execve ${x}execve" execve check_tracing_execs
    item "$s" tracing "${e}openat ${x}openat ${e}creat ${x}creat ${e}open ${x}open ${e}openat2 ${x}openat2" open check_tracing_opens
    item "$s" tracing "${e}chmod ${x}chmod" chmod check_tracing_chmod
    item "$s" tracing "${e}fchmodat ${x}fchmodat" fchmodat check_tracing_fchmodat
    item "$s" tracing "${e}fchmod ${x}fchmod" fchmod check_tracing_fchmod
    item "$s" tracing "${e}fchmodat2 ${x}fchmodat2" fchmodat2 check_tracing_fchmodat2
    item "$s" network "${e}connect ${x}connect ${e}accept ${x}accept ${e}accept4 ${x}accept4" "connect, accept" check_network
    item "$s" ptrace "${e}ptrace ${x}ptrace" ptrace check_ptrace
    item "$s" mmap "${e}mmap ${x}mmap" mmap check_mmap
    item "$s" mount "${e}mount ${x}mount ${e}umount ${x}umount" "mount, umount" check_mount
    item "$s" resource "sched/sched_process_exit ${x}write ${e}mmap ${x}mmap exceptions/page_fault_user" resource check_resource
    for p in "${plugins[@]}"; do check_summary "$s" "$p"; done
}

# 5.10: every plugin refused, naming what it needs and from which kernel.
check_refused() {
    local s=$1 p line trace_rc said
    trace_rc=$(cat "$share/trace.rc" 2>/dev/null || echo none)
    for p in "${plugins[@]}"; do
        line=$(grep -m1 -E "plugin $p: needs .* \(Linux [0-9]+\.[0-9]+\+\); this kernel is ${s//./\\.}" "$share/trace.err" || true)
        if [ -n "$line" ]; then
            good "$s" "$p" "refused: ${line#*"plugin $p: "}"
            refusal[$s/$p]=${line#*"plugin $p: "}
        else
            said=$(grep "plugin $p: " "$share/trace.err" | grep -v "^infrasight: warning: plugin $p: tracepoint " | head -1 || true)
            [ -n "$said" ] || said="(its last line) $(grep . "$share/trace.err" | tail -1)"
            bad "$s" "$p" "no refusal naming what it needs (\"plugin $p: needs ... (Linux X.Y+); this kernel is $s\"); the tracer said: $(cut -c1-200 <<<"$said")"
        fi
        if [ "$trace_rc" = 0 ]; then bad "$s" "$p" "trace exited 0 with every plugin refused"; fi
    done
}
declare -A refusal

# `infrasight doctor --json` in the guest (its output and exit code in the result share;
# the console's copy, between the doctor markers, only when the share has none: kernel
# messages may interleave with the console): on a kernel where the plugins run, exit 0
# and every plugin "ok"; where they are refused, exit 1 and every plugin "refused" with
# what it misses.
check_doctor() {
    local s=$1 mode=$2 rc json
    if [ -s "$out/$s/share/doctor.rc" ]; then rc=$(cat "$out/$s/share/doctor.rc"); else
        rc=$(sed -n "s/.*@@KM:$guest_token:DOCTOR-EXIT:\([0-9]*\) .*/\1/p" "$out/$s/console.txt" | head -1)
    fi
    if [ -s "$out/$s/share/doctor.json" ]; then json=$(cat "$out/$s/share/doctor.json"); else json=$(console_section "$s" doctor); fi
    if [ "$(jq -s 'length == 1 and (.[0] | type == "object" and (.plugins | type == "array"))' 2>/dev/null <<<"$json")" != true ]; then
        bad "$s" doctor "no JSON report (exit ${rc:-none}): $(console_section "$s" doctor-stderr | head -1 | cut -c1-200)"
        return
    fi
    good "$s" doctor "kernel $(jq -r .kernel <<<"$json"); checks: $(jq -r '[.checks[]?.status] | group_by(.) | map("\(length) \(.[0])") | join(", ")' <<<"$json")$(
        jq -r '[.checks[]? | select(.status != "ok") | "\(.name) \(.status): \(.detail)"] | if length > 0 then " (" + join("; ") + ")" else "" end' <<<"$json")"
    local p status
    for p in "${plugins[@]}"; do
        status=$(jq -r --arg p "$p" '[.plugins[] | select(.name == $p)][0] | if . == null then "absent" else .status end' <<<"$json")
        if [ "$mode" = run ]; then
            expect "$s" doctor "plugin $p" "$status" ok
        else
            expect "$s" doctor "plugin $p" "$status" refused
            expect_ge "$s" doctor "plugin $p: features missing" "$(jq --arg p "$p" '[.plugins[] | select(.name == $p)][0].missing | length' <<<"$json")" 1
        fi
    done
    expect "$s" doctor "exit code" "$rc" "$([ "$mode" = run ] && echo 0 || echo 1)"
}

# Which kernels can run the plugins: task-local storage for tracing programs (which every
# plugin's enter/exit join uses) is 5.13+ (docs/kernels.md).
mode_of() {
    local major=${1%%.*} rest=${1#*.}
    local minor=${rest%%.*}
    if [ "$major" -lt 5 ] || { [ "$major" -eq 5 ] && [ "$minor" -lt 13 ]; }; then echo refused; else echo run; fi
}

check_kernel() {
    local s=$1 p mode
    share=$out/$s/share
    mode=$(mode_of "$s")
    if [ "$guest_status" != ok ]; then
        for p in "${plugins[@]}" doctor; do bad "$s" "$p" "$guest_status"; done
    else
        if [ "$mode" = run ]; then check_run "$s"; else check_refused "$s"; fi
        check_doctor "$s" "$mode"
    fi
    for p in "${plugins[@]}" doctor; do
        if [ -n "${fails[$s/$p]:-}" ]; then
            cell[$s/$p]="FAIL: ${fails[$s/$p]}"
        elif [ "$p" = doctor ]; then
            cell[$s/$p]=$([ "$mode" = run ] && echo "ok (exit 0, all ok)" || echo "refused (exit 1, all refused)")
        elif [ "$mode" = refused ]; then
            cell[$s/$p]="refused: ${refusal[$s/$p]}"
        elif [ -n "${absent[$s/$p]:-}" ]; then
            cell[$s/$p]="exact; not on this kernel: ${absent[$s/$p]}"
        else
            cell[$s/$p]=exact
        fi
    done
    if [ $keep = 0 ] && ! grep -q "^FAIL" <<<"$(for p in "${plugins[@]}" doctor; do echo "${cell[$s/$p]}"; done)"; then
        rm -f "$share/trace.json" "$out/$s/workload-rows.json"
    fi
}

# ---------------------------------------------------------------------------------------
# Main

t_all=$(date +%s)
need_packages
build_workload
IFS=, read -r -a series_list <<<"$kernels"
for s in "${series_list[@]}"; do
    [[ $s =~ ^[0-9]+\.[0-9]+$ ]] || die "--kernels: $s is not a kernel series like 6.1"
    fetch_kernel "$s"
done
for s in "${series_list[@]}"; do
    guest_status=""
    boot "$s"
    wall[$s]=$guest_seconds
    check_kernel "$s"
done
total=$(($(date +%s) - t_all))

# The table, on stdout and in matrix.md.
minutes() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }
{
    echo "# Kernel matrix"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), infrasight from \`$bin\`, total $(minutes $total) (m:ss)."
    echo
    printf '| kernel | %s | doctor | guest time |\n' "$(IFS='|'; echo "${plugins[*]}" | sed 's/|/ | /g')"
    printf '|---%.0s' "${plugins[@]}" x x x; echo '|'
    for s in "${series_list[@]}"; do
        printf '| %s (%s) ' "$s" "$(kernel_field "$s" krel)"
        for p in "${plugins[@]}" doctor; do printf '| %s ' "$(sed 's/|/\\|/g' <<<"${cell[$s/$p]}" | cut -c1-300)"; done
        printf '| %s |\n' "$(minutes "${wall[$s]}")"
    done
    echo
    echo "## Checks"
    echo
    echo "| kernel | plugin | result | check |"
    echo "|---|---|---|---|"
    for d in "${details[@]}"; do sed 's/|/\\|/g; s/\t/ | /g; s/^/| /; s/$/ |/' <<<"$d"; done
} > "$out/matrix.md"

failed=0
echo
for s in "${series_list[@]}"; do
    echo "$s ($(kernel_field "$s" package) $(kernel_field "$s" version)): guest $(minutes "${wall[$s]}")"
    for p in "${plugins[@]}" doctor; do
        printf '  %-9s %s\n' "$p" "${cell[$s/$p]}"
        case "${cell[$s/$p]}" in FAIL*) failed=1 ;; esac
    done
done
echo "total $(minutes $total) (m:ss); details: ${out#"$repo"/}/matrix.md"
exit $failed
