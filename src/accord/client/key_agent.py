"""The store-key agent: a small process that holds one home's unlocked store key in memory and
hands it to commands of the same user, as ssh-agent and gpg-agent do (docs/key-agent.md).

It listens on a Unix socket inside the home (`agent/socket`: directory 0700, socket 0600) and
answers a connection only when the peer's credentials (SO_PEERCRED) carry its own uid. It exits
when no command asked for the key for its idle timeout, when told to stop, and when its home
is gone. The key reaches it on a pipe from the command that started it and is never written to
disk: it is kept in one page locked into memory where the system allows (mlock), left out of
core dumps (MADV_DONTDUMP), and the process is made non-dumpable (PR_SET_DUMPABLE 0), which also
keeps other processes of the same uid without CAP_SYS_PTRACE from attaching a debugger to it.

The exchange is one line each way:
  request  `key` | `status` | `stop`                       (at most MAX_REQUEST_BYTES)
  reply    `ok <base64 key>` | `ok <idle seconds left>` | `ok` | `no <reason>`
"""

from __future__ import annotations

import math
import mmap
import os
import select
import socket
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from accord.clock import Clock
from accord.errors import ConfigurationError, InvalidInput
from accord.primitives.encoding import b64decode, b64encode
from accord.primitives.storage_crypto import ROOT_KEY_BYTES, StoreKey

if TYPE_CHECKING:
    import ctypes

AGENT_DIR = "agent"
SOCKET_NAME = "socket"
DEFAULT_IDLE_TIMEOUT_S = 15 * 60
MAX_IDLE_TIMEOUT_S = 7 * 24 * 3600
MAX_REQUEST_BYTES = 16
MAX_REPLY_BYTES = 128
IO_TIMEOUT_S = 2.0
"""How long either side waits for the other's line before giving up on the connection."""
POLL_S = 1.0
"""How often an idle agent looks at its clock and its home."""
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes with its terminating NUL

_UCRED = struct.Struct("3i")  # pid, uid, gid
_PR_SET_DUMPABLE = 4


class AgentRequest(StrEnum):
    KEY = "key"
    STATUS = "status"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class AgentReply:
    """An agent's answer: `ok` with an optional value, or a refusal with its reason."""

    ok: bool
    value: str = ""

    def encode(self) -> bytes:
        words = ["ok" if self.ok else "no", *([self.value] if self.value else [])]
        return (" ".join(words) + "\n").encode("ascii")


def parse_agent_request(data: bytes) -> AgentRequest:
    """A request line as a client sent it. Raises `InvalidInput`."""
    if len(data) > MAX_REQUEST_BYTES:
        raise InvalidInput("agent request too long")
    try:
        return AgentRequest(data.removesuffix(b"\n").decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("not an agent request") from None


def parse_agent_reply(data: bytes) -> AgentReply:
    """A reply line as the agent sent it. Raises `InvalidInput`."""
    if len(data) > MAX_REPLY_BYTES or not data.endswith(b"\n"):
        raise InvalidInput("malformed agent reply")
    try:
        text = data[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidInput("malformed agent reply") from None
    status, _, value = text.partition(" ")
    if status not in ("ok", "no") or not value.isprintable() or " " in value:
        raise InvalidInput("malformed agent reply")
    return AgentReply(ok=status == "ok", value=value)


def parse_store_key(reply: AgentReply) -> StoreKey:
    """The store key an `ok` reply to `key` carries. Raises `InvalidInput`."""
    if not reply.ok:
        raise InvalidInput("the agent has no key")
    return StoreKey(b64decode(reply.value, max_bytes=ROOT_KEY_BYTES))


def socket_path(home: Path) -> Path:
    return home / AGENT_DIR / SOCKET_NAME


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


def _read_line(conn: socket.socket, limit: int) -> bytes:
    """Bytes up to and including the first line break, at most `limit + 1` of them."""
    data = b""
    while not data.endswith(b"\n") and len(data) <= limit:
        chunk = conn.recv(limit + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return data


def ask_agent(home: Path, request: AgentRequest) -> AgentReply | None:
    """The agent's reply for `home`; None when no agent of this user answers there."""
    path = socket_path(home)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(IO_TIMEOUT_S)
            conn.connect(os.fspath(path))
            if peer_uid(conn) != os.getuid():
                return None  # not our agent: someone else's process behind our path
            conn.sendall(f"{request.value}\n".encode("ascii"))
            return parse_agent_reply(_read_line(conn, MAX_REPLY_BYTES))
    except (OSError, InvalidInput):
        return None


def agent_store_key(home: Path) -> StoreKey | None:
    """The store key the agent of `home` holds; None without a running agent (no socket, a
    stale one, an expired agent)."""
    if not socket_path(home).exists():  # the common case, without a connection attempt
        return None
    reply = ask_agent(home, AgentRequest.KEY)
    if reply is None or not reply.ok:
        return None
    try:
        return parse_store_key(reply)
    except InvalidInput:
        return None


class LockedSecret:
    """Bytes kept in one anonymous page, locked into memory when the system allows it and left
    out of core dumps; wiped on `wipe`."""

    def __init__(self, value: bytes) -> None:
        self._length = len(value)
        self._page = mmap.mmap(-1, mmap.PAGESIZE)
        self.locked = _lock_pages(self._page)
        if hasattr(mmap, "MADV_DONTDUMP"):
            self._page.madvise(mmap.MADV_DONTDUMP)
        self._page[: self._length] = value

    def value(self) -> bytes:
        return self._page[: self._length]

    def wipe(self) -> None:
        self._page[: self._length] = bytes(self._length)
        self._page.close()


def _libc() -> ctypes.CDLL | None:
    import ctypes.util  # only the agent process locks memory: commands do not load ctypes

    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def _lock_pages(page: mmap.mmap) -> bool:
    """mlock the page; False where the system refuses (RLIMIT_MEMLOCK, no libc)."""
    import ctypes

    libc = _libc()
    if libc is None:
        return False
    buffer = ctypes.c_char.from_buffer(page)
    try:
        return bool(libc.mlock(ctypes.addressof(buffer), ctypes.c_size_t(len(page))) == 0)
    finally:
        del buffer  # a live export would keep the page from closing


def make_undumpable() -> bool:
    """PR_SET_DUMPABLE 0: no core dump, no ptrace attach by same-uid processes (Linux)."""
    libc = _libc()
    return libc is not None and libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def check_idle_timeout(seconds: int) -> int:
    if not 1 <= seconds <= MAX_IDLE_TIMEOUT_S:
        raise InvalidInput("the agent's timeout is between 1s and 7d")
    return seconds


class KeyAgent:
    """The agent's side: a listening socket and the key, served until idle, stopped or orphaned.

    `owner_uid` is the only uid whose connections are answered (the running user's).
    """

    def __init__(
        self,
        home: Path,
        key: StoreKey,
        *,
        idle_timeout_s: int,
        clock: Clock,
        owner_uid: int | None = None,
    ) -> None:
        self.home = home
        self.idle_timeout_s = check_idle_timeout(idle_timeout_s)
        self.clock = clock
        self.owner_uid = os.getuid() if owner_uid is None else owner_uid
        self._secret = LockedSecret(key.value)
        self._last_used = clock.time()
        self._listener = self._bind()
        self._stopped = False

    @property
    def memory_locked(self) -> bool:
        return self._secret.locked

    def _bind(self) -> socket.socket:
        path = socket_path(self.home)
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            raise ConfigurationError(f"the home's path is too long for the agent's socket: {path}")
        path.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path.parent, 0o700)
        path.unlink(missing_ok=True)  # a stale socket of an agent that was killed
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is made 0600 from the start
        try:
            listener.bind(os.fspath(path))
        finally:
            os.umask(old_umask)
        listener.listen(8)
        self._socket_inode = path.stat().st_ino
        return listener

    def idle_left_s(self) -> float:
        return self.idle_timeout_s - (self.clock.time() - self._last_used)

    def done(self) -> bool:
        """Expired, stopped, or its socket is no longer its own: removed (with the home), or
        replaced by a later agent's (which answers from then on)."""
        if self._stopped or self.idle_left_s() <= 0:
            return True
        try:
            return socket_path(self.home).lstat().st_ino != self._socket_inode
        except OSError:
            return True

    def serve(self) -> None:
        """Answer connections until the agent is done; then wipe the key and remove the socket."""
        try:
            while not self.done():
                self.answer_next(POLL_S)
        finally:
            self.close()

    def answer_next(self, timeout_s: float) -> bool:
        """Answer one connection if one comes within `timeout_s`; whether one came."""
        ready, _, _ = select.select([self._listener], [], [], timeout_s)
        if not ready:
            return False
        conn, _ = self._listener.accept()
        with conn:
            self._answer(conn)
        return True

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT_S)
        try:
            if peer_uid(conn) != self.owner_uid:
                return  # not a word to another user's process
            request = parse_agent_request(_read_line(conn, MAX_REQUEST_BYTES))
            conn.sendall(self.reply(request).encode())
        except (OSError, InvalidInput):
            return

    def reply(self, request: AgentRequest) -> AgentReply:
        if self.idle_left_s() <= 0:
            self._stopped = True
            return AgentReply(ok=False, value="expired")
        if request is AgentRequest.STOP:
            self._stopped = True
            return AgentReply(ok=True)
        if request is AgentRequest.STATUS:
            return AgentReply(ok=True, value=str(math.ceil(self.idle_left_s())))
        self._last_used = self.clock.time()
        return AgentReply(ok=True, value=b64encode(self._secret.value()))

    def close(self) -> None:
        self._secret.wipe()
        self._listener.close()
        path = socket_path(self.home)
        try:
            if path.lstat().st_ino == self._socket_inode:  # not a later agent's socket
                path.unlink()
        except OSError:
            pass
