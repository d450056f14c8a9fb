#!/usr/bin/env bash
# Install tmux, which the chat app's terminal test (tests/integration/test_chat_app.py) uses to
# run `accord chat` as a person would: tmux runs it, send-keys types, capture-pane reads.
# Does nothing when tmux is already there.
#
# Usage: scripts/install-terminal.sh   (as root, or as a user who may use sudo)
set -euo pipefail

if command -v tmux >/dev/null 2>&1; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q -q
$SUDO apt-get install -y -q -q --no-install-recommends tmux >/dev/null
tmux -V
