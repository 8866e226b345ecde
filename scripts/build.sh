#!/usr/bin/env bash
# Configures and builds mambacpp in Release into build/ (or the folder given as $BUILD_DIR), with any extra
# CMake arguments passed through. Incremental: a second run rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
