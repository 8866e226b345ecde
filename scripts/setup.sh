#!/usr/bin/env bash
# Installs the Debian packages mambacpp needs to build and test, skipping those already present.
# Idempotent; uses sudo when not run as root.
set -euo pipefail

packages=(build-essential cmake pkg-config libopenblas-dev nlohmann-json3-dev libcli11-dev libfmt-dev
          libgtest-dev libutf8proc-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
