#!/usr/bin/env bash
# Regenerates docs/live-page.png, the README's picture of the live page: the browser test of the page
# (real stt-server, headless Chromium with a WAV as its microphone) keeps its screenshot there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs
STT_SCREENSHOT_DIR="$PWD/docs" .venv/bin/python -m pytest -q -p no:cacheprovider \
  "tests/server/test_live_page.py::test_live_page_transcribes_the_browser_microphone"
echo "wrote docs/live-page.png"
