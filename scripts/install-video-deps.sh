#!/usr/bin/env bash
# Install what the optional video extra (accord[video], vPDQ hashing) needs, then the extra.
#
# vpdq is published as source only: pip compiles it against FFmpeg's development libraries,
# with cmake and pkg-config. This installs those Debian packages (and the ffmpeg binary, which
# the video tests use to make a small clip), then `pip install -e '.[video]'` into the venv.
#
# Usage: scripts/install-video-deps.sh [VENV]   (default .venv; run as root or with sudo)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"

PACKAGES=(
  cmake pkg-config g++ ffmpeg
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libswresample-dev libavdevice-dev libavfilter-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

"$VENV/bin/pip" install -q -e '.[video]'
"$VENV/bin/python" -c "import vpdq; print('vpdq', 'ok')"
