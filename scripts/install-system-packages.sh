#!/usr/bin/env bash
# Debian packages the project uses, installed when apt-get is available (as root):
#   dataset-fashion-mnist  the Fashion-MNIST IDX files (the quickstart's data)
#   chromium               a real browser that opens the HTML reports in tests
#   postgresql             a real database for the multi-machine sweep test
set -euo pipefail
want=(dataset-fashion-mnist chromium postgresql)
command -v apt-get >/dev/null || { echo "no apt-get: install ${want[*]} by other means"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "not root: skipping apt-get install of ${want[*]}"; exit 0; }
missing=()
for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
