#!/usr/bin/env bash
# Set up the environment if needed, then serve the app on the embedded model at http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python app.py "$@"
