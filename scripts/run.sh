#!/usr/bin/env bash
# Set up aif (idempotent) and run the main job: a shipped workflow on its embedded
# defaults. Any arguments replace the workflow: scripts/run.sh workflows/other.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$#" -eq 0 ]; then
    set -- workflows/hwa-training.yaml
fi
exec .venv/bin/aif run "$@"
