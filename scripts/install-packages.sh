#!/usr/bin/env bash
# Installs with apt-get each of the Debian packages named that is not installed yet, and
# says which in one line on stderr, as WHO (the calling script's name). As root.
#   scripts/install-packages.sh WHO PACKAGE...
set -euo pipefail
who=$1; shift
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0
echo "$who: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
