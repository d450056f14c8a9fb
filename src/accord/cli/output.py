"""Writing to standard output so that what was written is known to have been taken.

`receive` marks a message as shown once its lines are out. Into a pipe, a successful write only
means the bytes sit in the pipe's buffer: `accord receive | head -n 1` would have all three
messages written before `head` exits with one. So after each write into a pipe this waits until
the reader has taken every byte (or has gone away, which raises BrokenPipeError): what the
reader never read stays unshown.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat
import struct
import sys
import termios
from typing import TextIO

PIPE_DRAIN_POLL_MS = 20


def write_lines(lines: list[str], stream: TextIO | None = None) -> None:
    """Write `lines` and flush; into a pipe, return only once the reader took them."""
    out = stream if stream is not None else sys.stdout
    out.write("".join(f"{line}\n" for line in lines))
    out.flush()
    fd = _pipe_fd(out)
    if fd is not None:
        _wait_until_read(fd)


def _pipe_fd(stream: TextIO) -> int | None:
    try:
        fd = stream.fileno()
        return fd if stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (OSError, ValueError, AttributeError):  # no descriptor behind it (a test's buffer)
        return None


def _unread_bytes(fd: int) -> int:
    raw = fcntl.ioctl(fd, termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", raw)[0])


def _wait_until_read(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR (the reader closed its end) is always reported
    while _unread_bytes(fd) > 0:
        events = poller.poll(PIPE_DRAIN_POLL_MS)
        gone = any(event & (select.POLLERR | select.POLLHUP) for _fd, event in events)
        if gone and _unread_bytes(fd) > 0:  # it left without reading them
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
