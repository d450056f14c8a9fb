"""Make the chat app's screenshots in docs/images (SVG, as Textual saves them).

Starts a server on SQLite in a temporary directory, lets alice and bob talk (alice sends photos),
shows the dialogs that save a received file (Ctrl+S) and pick one to send (Ctrl+O), then has
alice link a new device so that bob's next message shows the device-change banner; the app runs
under Textual's Pilot at 80x24.

    .venv/bin/python scripts/chat_screenshots.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from accord.chat.app import ChatApp
from accord.client.client import AccordClient
from accord.primitives.storage_crypto import KdfCost
from accord.server.process import ServerProcess

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
PASS = "screenshot passphrase"
COST = KdfCost(time_cost=1, memory_kib=8 * 1024)


async def _wait(pilot: object, check: object) -> None:
    for _ in range(300):
        if check():  # type: ignore[operator]
            return
        await pilot.pause(0.1)  # type: ignore[attr-defined]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "server") as server:
        root = Path(tmp)
        alice = AccordClient.create_account(
            root / "a", server.url, "alice", PASS, kdf_cost=COST, insecure_dev=True
        )
        bob = AccordClient.create_account(
            root / "b", server.url, "bob", PASS, kdf_cost=COST, insecure_dev=True
        )
        carol = AccordClient.create_account(
            root / "c", server.url, "carol", PASS, kdf_cost=COST, insecure_dev=True
        )
        alice.send("bob", "Hi Bob! Photos from the trip are coming.")
        carol.send("bob", "Are we still on for Friday?")
        bob.receive()
        pictures = root / "Pictures"
        pictures.mkdir()
        for name in ("beach.jpg", "dinner.jpg", "tickets.pdf"):
            (pictures / name).write_bytes(bytes(range(256)) * 40)
        (pictures / "2025 trip").mkdir()
        app = ChatApp(bob, to="alice", folder=pictures)

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press(*"Thanks Alice, can't wait", "enter")
                await _wait(pilot, lambda: "can't wait" in str(app.query_one("#messages").lines))
                alice.receive()
                alice.send("bob", "Sending them tonight")
                await pilot.pause(2)
                app.save_screenshot("chat-conversation.svg", path=str(OUT))
                alice.send("bob", "The first two", [pictures / "beach.jpg", pictures / "dinner.jpg"])
                await _wait(pilot, lambda: "dinner.jpg" in str(app.query_one("#messages").lines))
                await pilot.press("ctrl+s")
                await pilot.pause(1)
                app.save_screenshot("chat-save-file.svg", path=str(OUT))
                await pilot.press("escape", "ctrl+o")
                await pilot.pause(1)
                await pilot.press("down", "down")
                app.save_screenshot("chat-send-file.svg", path=str(OUT))
                await pilot.press("escape")
                phone, code = AccordClient.start_link(
                    root / "a2", server.url, "alice", PASS, kdf_cost=COST, insecure_dev=True
                )
                alice.approve_device(code)
                phone.receive()
                await pilot.press(*"Great!", "enter")
                await _wait(pilot, lambda: app.notices)
                await pilot.pause(0.5)
                app.save_screenshot("chat-device-change.svg", path=str(OUT))
                phone.close()

        asyncio.run(scenario())
        alice.close()
        carol.close()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
