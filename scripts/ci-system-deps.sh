#!/usr/bin/env bash
# System packages the tests need: Debian's Chromium, driven by Playwright for the status page test
# (Playwright's own browser download is never used). Idempotent: does nothing once Chromium is there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
