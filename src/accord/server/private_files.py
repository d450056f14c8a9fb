"""The server's data directory is private to the server's user: directories 0700, files 0600.

`accord server` sets its umask to 0o077 at start, so what it creates is private whatever umask
it was started with; `secure_data_dir` tightens what an earlier run (or an operator) left
looser, and says so in the log.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("accord.server")

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_OTHERS_BITS = 0o077


def secure_data_dir(data_dir: Path) -> int:
    """Create `data_dir` (0700) or tighten it and everything under it; return how many paths
    had to be tightened. Symbolic links are left alone (their targets are not ours to change)."""
    data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    tightened = _tighten(data_dir, PRIVATE_DIR_MODE)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            tightened += _tighten(Path(root, name), PRIVATE_DIR_MODE)
        for name in files:
            tightened += _tighten(Path(root, name), PRIVATE_FILE_MODE)
    if tightened:
        log.warning(
            "data directory %s: %d paths were readable by others; made them private "
            "(directories 0700, files 0600)",
            data_dir,
            tightened,
        )
    return tightened


def _tighten(path: Path, mode: int) -> int:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & _OTHERS_BITS:
        return 0
    os.chmod(path, mode)
    return 1
