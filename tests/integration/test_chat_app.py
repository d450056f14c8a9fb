"""`accord chat` against a real server: Textual's Pilot drives the app (typing, Enter, commands)
while another account talks to it through the client library; one test runs the real command
in tmux, as a person would, and reads the screen.

Waiting here is only for work other threads and processes finish (the app's worker, the
server): bounded polls, never the wall clock standing in for time.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.chat.app import ChatApp
from accord.client.client import AccordClient
from accord_testing import PASS, TEST_KDF_COST, eventually, start_link

POLL_ROUNDS = 600  # of 0.1 s pauses: a bound for the app's worker and the server, not a timing


def _screen_text(app: ChatApp) -> str:
    from textual.widgets import Label, RichLog, Static

    log = app.query_one("#messages", RichLog)
    lines = ["".join(seg.text for seg in strip) for strip in log.lines]
    banner = str(app.query_one("#banner", Static).render())
    status = str(app.query_one("#status", Label).render())
    return "\n".join([banner, *lines, status])


async def _enter(pilot: Any, line: str) -> None:
    """`line` pasted into the focused input (as a terminal's bracketed paste delivers it), then
    Enter: key by key, a long path costs a screen update per character."""
    from textual import events

    pilot.app.focused.post_message(events.Paste(line))
    await pilot.pause()
    await pilot.press("enter")


async def _until(pilot: Any, check: Callable[[], Any], what: str) -> Any:
    for _ in range(POLL_ROUNDS):
        value = check()
        if value:
            return value
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def people(
    sqlite_server: Any, tmp_path: Any, unique: Callable[[str], str], module_clock: Any
) -> Iterator[Any]:
    """alice, and bob whose device the app runs (on the server's clock, which tests move)."""
    alice, bob = (
        AccordClient.create_account(
            tmp_path / name,
            sqlite_server.url,
            unique(name),
            PASS,
            kdf_cost=TEST_KDF_COST,
            clock=module_clock,
            insecure_dev=True,
        )
        for name in ("alice", "bob")
    )
    try:
        yield alice, bob
    finally:
        alice.close()  # bob is closed by the app


def _received(client: AccordClient) -> list[str]:
    return [m.text for m in client.receive().messages]


def test_typing_sends_and_messages_arrive_live(people: Any) -> None:
    alice, bob = people
    app = ChatApp(bob, to=alice.account_name)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(*"hello alice", "enter")
            got = eventually(lambda: _received(alice), "alice receiving bob's message")
            assert got == ["hello alice"]
            alice.send(bob.account_name, "hi bob\x1b]0;owned\x07\nfake line")
            text = await _until(
                pilot, lambda: "hi bob" in _screen_text(app) and _screen_text(app), "live"
            )
            # Shown as plain text, controls made visible: one line, no escape sequence.
            assert "hi bob^[]0;owned^G\u23cefake line" in text
            assert "[1]" in text and "[2]" in text

    asyncio.run(scenario())


def test_groups_reports_and_the_device_change_banner(
    people: Any, sqlite_server: Any, tmp_path: Any
) -> None:
    alice, bob = people
    app = ChatApp(bob, to=alice.account_name)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            # A group: created from the input line, written to, read by alice.
            await _enter(pilot, f"/group create trip-{bob.account_name} {alice.account_name}")
            await _until(
                pilot,
                lambda: app.open_key == ("group", f"trip-{bob.account_name}"),
                "the new group's conversation opening",
            )
            await pilot.press(*"dinner?", "enter")
            got = eventually(lambda: [m for m in alice.receive().messages], "group message")
            assert got[0].text == "dinner?" and got[0].group == f"trip-{bob.account_name}"

            # A report from the conversation with alice: the report id is shown.
            await _enter(pilot, f"/to {alice.account_name}")
            alice.send(bob.account_name, "abuse")
            await _until(pilot, lambda: "abuse" in _screen_text(app), "alice's message")
            await pilot.press(*"/report 1 harassment", "enter")
            text = await _until(
                pilot, lambda: "report id" in _screen_text(app) and _screen_text(app), "report"
            )
            assert "reported: report id" in text

            # alice links a new device: bob's next message stops, and the banner says why.
            phone, code = start_link(
                tmp_path / "alice-phone", sqlite_server.url, alice.account_name
            )
            try:
                alice.approve_device(code)
                phone.receive()
                await pilot.press(*"still there?", "enter")
                text = await _until(
                    pilot,
                    lambda: "safety code" in _screen_text(app) and _screen_text(app),
                    "the device-change banner",
                )
                assert f"{alice.account_name}'s devices changed" in text
                await pilot.press(*"still there?", "enter")  # told once: now it goes
                got = eventually(lambda: _received(phone), "the new device receiving")
                assert got == ["still there?"]
            finally:
                phone.close()

    asyncio.run(scenario())


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


class _Terminal:
    """`accord chat` in a tmux session of its own, 80x24: typed into and read like a screen."""

    def __init__(self, name: str, home: Path, peer: str, env: dict[str, str]) -> None:
        self.session = f"accord-chat-{name}-{os.getpid()}"
        command = shlex.join(
            ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "accord"]
            + ["--home", str(home), "chat", "--to", peer]
        )
        _tmux("new-session", "-d", "-s", self.session, "-x", "80", "-y", "24", command)

    def screen(self) -> str:
        return _tmux("capture-pane", "-p", "-t", self.session)

    def type(self, text: str) -> None:
        _tmux("send-keys", "-t", self.session, text, "Enter")

    def running(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.session]).returncode == 0

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="scripts/install-terminal.sh installs tmux"
)
def test_two_people_chat_live_from_two_terminals(
    sqlite_server: Any, unique: Callable[[str], str], module_clock: Any, cli: Any
) -> None:
    a, b = unique("alice"), unique("bob")
    env = {"ACCORD_PASSPHRASE": PASS, **module_clock.env}
    for name in (a, b):
        cli(name).run("account", "create", name, "--server", sqlite_server.url)
    alice = _Terminal("a", cli(a).home, b, env)
    bob = _Terminal("b", cli(b).home, a, env)
    try:
        for t in (alice, bob):  # the input line, and the footer with the keys
            eventually(
                lambda t=t: "Message, or /help" in t.screen() and "Quit" in t.screen(),
                "the app drawing",
            )
        alice.type("hello from alice")
        eventually(lambda: "hello from alice" in bob.screen(), "bob's screen showing it")
        bob.type("hi alice, seen live")
        eventually(lambda: "hi alice, seen live" in alice.screen(), "alice's screen showing it")
        screen = alice.screen()
        assert screen.index("hello from alice") < screen.index("hi alice, seen live")  # order
        # Ctrl+S and Ctrl+O reach the app in a real terminal (no XON/XOFF flow control).
        _tmux("send-keys", "-t", bob.session, "C-s")
        eventually(lambda: "no received attachments" in bob.screen(), "Ctrl+S answering")
        _tmux("send-keys", "-t", bob.session, "C-o")
        eventually(lambda: "Send a file to" in bob.screen(), "the file picker")
        _tmux("send-keys", "-t", bob.session, "Escape")
        eventually(lambda: "Send a file to" not in bob.screen(), "Escape closing it")
        _tmux("send-keys", "-t", bob.session, "C-q")
        eventually(lambda: not bob.running(), "the app quitting on Ctrl+Q")
    finally:
        alice.kill()
        bob.kill()


def test_attachments_and_devices(people: Any, sqlite_server: Any, tmp_path: Any) -> None:
    """A file sent with /attach arrives and a received one is saved with /save; a new device is
    approved with /approve and listed by /devices."""
    alice, bob = people
    photo = tmp_path / "photo.bin"
    photo.write_bytes(os.urandom(5000))
    back = tmp_path / "back.bin"
    back.write_bytes(os.urandom(3000))
    app = ChatApp(bob, to=alice.account_name)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await _enter(pilot, f"/attach {photo} here it is")
            got = eventually(lambda: alice.receive().messages, "alice receiving the file")
            assert got[0].text == "here it is" and got[0].attachments[0].size == 5000
            alice.send(bob.account_name, "and one back", [back])
            await _until(pilot, lambda: "back.bin" in _screen_text(app), "the attachment")
            await _enter(pilot, f"/save 2 {tmp_path / 'saved'}")
            await _until(pilot, lambda: "saved 1 file" in _screen_text(app), "the save")
            saved = list((tmp_path / "saved").iterdir())
            assert len(saved) == 1 and saved[0].read_bytes() == back.read_bytes()
            laptop, code = start_link(tmp_path / "bob-laptop", sqlite_server.url, bob.account_name)
            try:
                await _enter(pilot, f"/approve {code}")
                await _until(pilot, lambda: "approved" in _screen_text(app), "the approval")
                await pilot.press(*"/devices", "enter")
                text = await _until(
                    pilot, lambda: "devices:" in _screen_text(app) and _screen_text(app), "list"
                )
                assert laptop.device_id in text and "(this)" in text
            finally:
                laptop.close()

    asyncio.run(scenario())


def test_the_browser_chat_refuses_addresses_other_than_loopback(
    sqlite_server: Any, unique: Callable[[str], str], cli: Any
) -> None:
    """The app is unlocked, so `--web` serves it on loopback only. That it serves there, and a
    message arriving on the page, is tests/browser/test_chat_web.py (a real browser)."""
    bob = cli("bob")
    bob.run("account", "create", unique("bob"), "--server", sqlite_server.url)
    for host in ("0.0.0.0", "192.0.2.7", "example.org"):  # noqa: S104
        refused = bob.run("chat", "--web", "--host", host, check=False)
        assert refused.returncode == 2 and "loopback" in refused.stderr


def test_own_account_and_trust_and_safety_banners(
    people: Any, sqlite_server: Any, tmp_path: Any, module_clock: Any
) -> None:
    """While the app runs: a device added to bob's account from another of his devices, and a
    warning from trust and safety after alice's report, both reach the banner (the app looks
    again once its clock, the server's too, passes the next minute)."""
    import httpx

    alice, bob = people
    laptop, code = start_link(tmp_path / "bob-laptop", sqlite_server.url, bob.account_name)
    bob.approve_device(code)
    laptop.receive()
    bob.send(alice.account_name, "something abusive")
    (abusive,) = alice.receive().messages
    report_id = alice.report(abusive.id, reason="abuse")
    app = ChatApp(bob, to=alice.account_name)
    tablet = None

    async def scenario() -> None:
        nonlocal tablet
        async with app.run_test(size=(80, 24)) as pilot:
            tablet, link = start_link(tmp_path / "bob-tablet", sqlite_server.url, bob.account_name)
            laptop.approve_device(link)  # not from the device the app runs on
            with httpx.Client(
                base_url=sqlite_server.url,
                headers={"Authorization": f"Bearer {sqlite_server.admin_token()}"},
            ) as op:
                op.post(f"/v1/review/reports/{report_id}/actions", json={"action": "warn"})
            module_clock.advance(61)
            text = await _until(
                pilot,
                lambda: (
                    "trust and safety" in _screen_text(app)
                    and "new device" in _screen_text(app)
                    and _screen_text(app)
                ),
                "both banners",
            )
            assert f"a new device {tablet.device_id} was added to your account" in text

    try:
        asyncio.run(scenario())
    finally:
        for c in (laptop, tablet):  # alice is closed by the fixture, bob by the app
            if c is not None:
                c.close()


HOSTILE_FILE_NAME = "[red]evil[/red]\x1b[2J../../run.sh"
HOSTILE_TEXT = "[bold red]urgent[/] [link=https://evil.example]click[/link]"


def test_send_a_file_from_the_picker_and_save_a_hostile_one(people: Any, tmp_path: Path) -> None:
    """Ctrl+O: a folder tree (a file name that looks like markup shows as written); Tab to the
    message line, Enter there goes back to the tree (it sends nothing), Enter on the file sends
    both. alice plays a modified client that names
    its attachment freely and writes Rich markup: the screen shows both as written, controls
    made visible. Ctrl+S lists the attachment with where it is kept and saves a copy under a
    safe name in the folder, and a second save never replaces the first."""
    from textual.widgets import Input, OptionList, Static

    from accord.chat.files import FileTree, SaveFileScreen, SendFileScreen

    alice, bob = people
    folder = tmp_path / "files"
    folder.mkdir()
    notes = folder / "[bold]notes[on red].txt"
    notes.write_bytes(os.urandom(2000))
    app = ChatApp(bob, to=alice.account_name, folder=folder)
    honest_upload = alice._attachments.upload

    def renamed(paths: Any) -> Any:  # a client that sends whatever name it likes
        return [ref.model_copy(update={"name": HOSTILE_FILE_NAME}) for ref in honest_upload(paths)]

    alice._attachments.upload = renamed
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(1500))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("ctrl+o")
            tree = await _until(
                pilot,
                lambda: (
                    isinstance(app.screen, SendFileScreen)
                    and app.screen.query_one(FileTree).root.children
                    and app.screen.query_one(FileTree)
                ),
                "the folder tree",
            )
            assert [str(n.label) for n in tree.root.children] == [notes.name]
            await pilot.press("tab", *"from the picker", "enter", "down", "enter")
            got = eventually(lambda: alice.receive().messages, "alice receiving the file")
            assert got[0].text == "from the picker"
            assert got[0].attachments[0].name == "_bold_notes_on red_.txt"
            assert got[0].attachments[0].size == 2000

            alice.send(bob.account_name, HOSTILE_TEXT, [payload])
            text = await _until(
                pilot, lambda: "urgent" in _screen_text(app) and _screen_text(app), "the message"
            )
            for part in HOSTILE_TEXT.split():  # markup shown as written, not applied
                assert part in text
            assert "attachment [red]evil[/red]^[[2J../../run.sh (1500 bytes)" in text

            for expected in ("run.sh", "run (2).sh"):
                await pilot.press("ctrl+s")
                screen = await _until(
                    pilot,
                    lambda: isinstance(app.screen, SaveFileScreen) and app.screen,
                    "the save dialog",
                )
                option = screen.query_one(OptionList).get_option_at_index(0)
                assert "[red]evil[/red]^[[2J../../run.sh (1500 bytes)" in str(option.prompt)
                kept = str(screen.query_one("#kept", Static).render())
                assert str(bob.home) in kept  # where the decrypted file is kept
                assert screen.query_one("#save-to", Input).value == str(folder / "run.sh")
                await pilot.press("enter", "enter")
                await _until(
                    pilot, lambda: f"to {folder / expected}" in _screen_text(app), "the save"
                )
                assert (folder / expected).read_bytes() == payload.read_bytes()
            assert sorted(p.name for p in folder.iterdir()) == sorted(
                [notes.name, "run.sh", "run (2).sh"]
            )

    asyncio.run(scenario())


def test_the_lawful_access_disclosure_notice(
    sqlite_server: Any, tmp_path: Path, unique: Callable[[str], str], module_clock: Any
) -> None:
    """A real warrant on dana's account, its window closed by the clock, then disclosed by the
    server (as the lawful-access tests cause it): the notice reaches the app's banner, with the
    case and who approved it."""
    from lawful_access_world import Authorities, account, warrant_row

    auth = Authorities.make(tmp_path / "authorities", module_clock)
    auth.publish(sqlite_server)
    auth.register(sqlite_server)
    dana = account(tmp_path, sqlite_server, unique("dana"))
    start = auth.now()
    signed = auth.warrant(dana.account_name, start=start, end=start + 600, disclose_after_s=0)
    wid = auth.submit(sqlite_server, signed).warrant_id
    app = ChatApp(dana)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            auth.wait_until(start + 600)
            # The server's housekeeping discloses on its next round; the app looks again once
            # its clock passes the next minute.
            eventually(
                lambda: warrant_row(sqlite_server, wid).disclosure_index is not None,
                "the server disclosing the warrant",
            )
            module_clock.advance(61)
            text = await _until(
                pilot,
                lambda: "lawful-access disclosure" in _screen_text(app) and _screen_text(app),
                "the disclosure notice",
            )
            assert "CASE-77" in text and "judge" in text

    asyncio.run(scenario())
