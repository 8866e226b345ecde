#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the main job on its built-in default: the paper's
# induction-heads experiment sized for a CPU (a few minutes on 2 cores): the 2-layer, d_model 64 model trained
# on 32-token sequences, then scored at every length from 2^6 to 2^20 tokens in constant memory, printed as a
# table. Extra arguments are passed to `mambacpp task induction-heads` (e.g. --steps 2000 --train-length 256).
# `scripts/demo.sh generate [options]` instead generates from the small checkpoint committed under
# tests/golden (random weights: the text is not meaningful, the point is the complete path from checkpoint and
# tokenizer to streamed text and speed figures).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
if [[ "${1:-}" == "generate" ]]; then
  shift
  exec build/mambacpp generate -m tests/golden/models/untied -p "First Citizen:" -n 64 --seed 1 "$@"
fi
exec build/mambacpp task induction-heads "$@"
