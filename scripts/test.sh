#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds in Release and runs every ctest test (CUDA
# tests skip where there is no GPU), then does the same in a separate AddressSanitizer +
# UndefinedBehaviorSanitizer build (skip that part with --no-sanitize).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=1
[ "${1:-}" = "--no-sanitize" ] && sanitize=0
jobs=$(nproc)
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure -j "$jobs")
if [ "$sanitize" = 1 ]; then
  BUILD_DIR=build-asan scripts/build.sh -DMAMBACPP_SANITIZE=address,undefined -DMAMBACPP_CUDA=OFF -DMAMBACPP_BENCH=OFF
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j "$jobs")
fi
