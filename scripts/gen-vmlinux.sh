#!/usr/bin/env bash
# Regenerates bpf/vmlinux/vmlinux.h, the CO-RE type header, from this kernel's BTF.
# CO-RE relocations make the compiled objects portable to other kernels with BTF, so the
# header only needs regenerating to use kernel types it does not have yet.
set -euo pipefail
cd "$(dirname "$0")/.."
bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux/vmlinux.h
echo "wrote bpf/vmlinux/vmlinux.h from $(uname -r)"
