#!/usr/bin/env bash
# Builds bench/cuda/scan_bench with nvcc alone (the CUDA toolkit and fmt's headers; none of the CMake build's
# other dependencies) and runs it. Usage: bench/cuda/run_scan_bench.sh [-I<fmt include dir>] [L ...]
# Environment: ARCH (default 90), OUT_DIR (default build-scan-bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
extra=()
if [[ "${1:-}" == -I* ]]; then extra+=("$1"); shift; fi
out="${OUT_DIR:-build-scan-bench}"
mkdir -p "$out"
cuda_home="$(dirname "$(dirname "$(command -v nvcc)")")"
# check.cpp uses fmt, which must be compiled by the host compiler itself rather than through nvcc.
g++ -std=c++20 -O2 -Isrc "${extra[@]}" -I"$cuda_home/include" -DFMT_HEADER_ONLY -c src/core/cuda/check.cpp \
  -o "$out/check.o"
nvcc -std=c++20 -O3 -lineinfo -gencode=arch=compute_${ARCH:-90},code=sm_${ARCH:-90} -Isrc \
  bench/cuda/scan_bench.cu src/ops/cuda/scan_kernel.cu "$out/check.o" -lcublasLt -o "$out/scan_bench"
"$out/scan_bench" "$@"
