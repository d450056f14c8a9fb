"""`accord chat --web` in a real browser: the real command serves bob's chat on loopback,
Chromium opens it, alice sends bob a message from her own client, and it appears on the page.

textual-serve draws the terminal with xterm.js on a canvas (WebGL), so the page has no text to
query. The test reads xterm.js' own screen buffer instead: what the terminal parsed from the
app's output and draws. The page keeps its terminal in a closure; a script the test adds before
the page's own runs catches the object when textual-serve stores it (`this.terminal = ...`),
and nothing else about the page changes. If the message never reaches the buffer, the test
fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from accord.client.client import AccordClient
from accord.server.process import free_port
from accord_testing import PASS, TEST_KDF_COST, eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    if (value && value.buffer && !window.__accordTerminal) window.__accordTerminal = value;
    Object.defineProperty(this, "terminal", {
      value, writable: true, configurable: true, enumerable: true,
    });
  },
});
"""
"""Runs before the page's scripts: keeps the xterm.js Terminal textual-serve creates."""

READ_SCREEN = """() => {
  const term = window.__accordTerminal;
  if (!term) return "";
  const buffer = term.buffer.active;
  const rows = [];
  for (let y = 0; y < term.rows; y++) {
    const line = buffer.getLine(buffer.viewportY + y);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
}"""
"""The terminal's visible rows as text, from xterm.js' buffer (its public API)."""


@pytest.fixture
def web_chat(
    sqlite_server: Any, unique: Callable[[str], str], module_clock: Any, cli: Any
) -> Iterator[tuple[str, str, str]]:
    """bob's `accord chat --web --to alice` on a free loopback port; yields the page's address
    and both names."""
    import httpx

    alice_name, bob_name = unique("alice"), unique("bob")
    bob = cli("bob")
    bob.run("account", "create", bob_name, "--server", sqlite_server.url)
    port = free_port()
    command = [sys.executable, "-m", "accord", "--home", str(bob.home), "chat"]
    proc = subprocess.Popen(
        [*command, "--to", alice_name, "--web", "--port", str(port)],
        env={**os.environ, "ACCORD_PASSPHRASE": PASS, **module_clock.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"

    def answering() -> bool:
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        eventually(answering, "the browser chat answering")
        yield url, alice_name, bob_name
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_message_arrives_on_the_browser_page(
    web_chat: tuple[str, str, str], page: Any, sqlite_server: Any, tmp_path: Any, module_clock: Any
) -> None:
    url, alice_name, bob_name = web_chat
    page.add_init_script(CATCH_TERMINAL)
    page.goto(url)

    def screen() -> str:
        return str(page.evaluate(READ_SCREEN))

    drawn = eventually(
        lambda: "Message, or /help" in screen() and screen(), "the app drawn in the page"
    )
    assert alice_name in drawn  # opened straight into the conversation with alice
    alice = AccordClient.create_account(
        tmp_path / "alice",
        sqlite_server.url,
        alice_name,
        PASS,
        kdf_cost=TEST_KDF_COST,
        clock=module_clock,
        insecure_dev=True,
    )
    try:
        alice.send(bob_name, "hello from alice's phone")
        text = eventually(
            lambda: "hello from alice's phone" in screen() and screen(), "the message on the page"
        )
        assert f"{alice_name}: hello from alice's phone" in text
    finally:
        alice.close()
