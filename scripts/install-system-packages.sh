#!/usr/bin/env bash
# Debian packages the project uses, installed when apt-get is available (as root):
#   dataset-fashion-mnist  the Fashion-MNIST IDX files (the quickstart's data)
#   chromium               a real browser that opens the HTML reports in tests
#   postgresql             a real database for the multi-machine sweep test
#   texlive-latex-base, texlive-latex-recommended
#                          pdflatex with booktabs and longtable: the hand-in report's LaTeX is compiled in a test
#                          (installed without recommends: about 20 s, not the gigabytes of fonts they pull in)
#   poppler-utils          pdftotext: the test of the PDF report reads its text
set -euo pipefail
want=(dataset-fashion-mnist chromium postgresql)
lean=(texlive-latex-base texlive-latex-recommended poppler-utils)  # without their recommended packages
command -v apt-get >/dev/null || { echo "no apt-get: install ${want[*]} ${lean[*]} by other means"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "not root: skipping apt-get install of ${want[*]} ${lean[*]}"; exit 0; }
missing=() missing_lean=()
for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
for p in "${lean[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing_lean+=("$p"); done
[ ${#missing[@]} -eq 0 ] && [ ${#missing_lean[@]} -eq 0 ] && exit 0
apt-get update -qq
[ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
[ ${#missing_lean[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${missing_lean[@]}" >/dev/null
