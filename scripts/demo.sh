#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the main job on its built-in default: generation
# from the small checkpoint committed under tests/golden (random weights: the text is not meaningful, the
# point is the complete path from checkpoint and tokenizer to streamed text and speed figures).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/mambacpp generate -m tests/golden/models/untied -p "First Citizen:" -n 64 --seed 1 "$@"
