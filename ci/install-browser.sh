#!/usr/bin/env bash
# Install what tests/test_report_browser.py needs to render report.html in a
# real browser: Debian's Chromium (plus fonts, for readable screenshots) and
# the Playwright driver library. Playwright drives the system Chromium; its
# own browser download (`playwright install`) is never used.
#
# Idempotent and quick when everything is there. Usage: bash ci/install-browser.sh
set -euo pipefail

PYTHON="${PYTHON:-python}"
CHROMIUM="${LABELQA_CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-browser: $CHROMIUM is missing and apt-get is not available;" \
             "install Chromium and point LABELQA_CHROMIUM at it" >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "install-browser: installing chromium with apt-get" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-liberation fonts-dejavu-core >/dev/null
fi
"$CHROMIUM" --version >&2 2>/dev/null || true  # the Debian wrapper may warn on stderr

if ! "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    echo "install-browser: installing the playwright driver library" >&2
    "$PYTHON" -m pip install -q "playwright>=1.40"
fi
"$PYTHON" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))" >&2
