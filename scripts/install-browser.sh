#!/usr/bin/env bash
# Install the Chromium that the browser tests (tests/browser/) drive through Playwright.
#
# Playwright's own browser download is not used: the tests launch Debian's Chromium at
# /usr/bin/chromium. This installs it when it is missing and does nothing otherwise.
#
# Usage: scripts/install-browser.sh   (as root, or as a user who may use sudo)
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q -q
$SUDO apt-get install -y -q -q --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
