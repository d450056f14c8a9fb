"""`accord chat`: conversations, live messages and the safety notices people must see.

Left: conversations (direct and groups) with unread counts and the last message. Right: a
banner for safety notices (a contact's new devices with the code to compare, a device this
account did not add, reviewers' warnings, lawful-access disclosures), the open conversation's
messages (numbered, for `/save` and `/report`), and the input line, focused: typing and Enter
sends; a line starting with `/` is a command (`/help`). Everything a sender wrote is shown as
plain text with control characters made visible: no markup, no escape sequence from a message
reaches the screen.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Input, Label, ListItem, ListView, RichLog, Static

from accord.chat.files import (
    FileToSend,
    Received,
    SaveFileScreen,
    SaveRequest,
    SendFileScreen,
)
from accord.chat.worker import ClientWorker, Incoming
from accord.client.attachments import save_attachment
from accord.client.client import AccordClient
from accord.client.history import StoredMessage
from accord.client.received import ReceivedAttachment
from accord.client.terminal_text import printable

HELP = """\
Type a message and press Enter to send it to the open conversation. Commands:
  /to NAME                      open a direct conversation with NAME
  /group open NAME              open a group's conversation
  /group create NAME A B ...    create a group with members A, B ...
  /group add NAME MEMBER        add a member (admins)      /group remove NAME MEMBER
  /group leave NAME             leave a group
  /attach PATH [TEXT]           send a file, with an optional message (or Ctrl+O: pick it)
  /save N [DIR]                 save the attachments of message N into DIR (or Ctrl+S)
  /report N REASON [--context K]  report message N (and K earlier ones); shows the report id
  /verify [NAME] [--confirm]    the safety code to compare with NAME in person
  /devices                      this account's devices     /approve CODE   approve a new device
  /remove-device ID             remove a device from this account
Keys: Ctrl+N new chat, Ctrl+G new group, Ctrl+O send a file (a folder tree), Ctrl+S save a
received file, Ctrl+R report, Ctrl+D dismiss the banner, Tab moves between the list and the
input, Escape closes a dialog, Ctrl+P opens the command palette (themes), Ctrl+Q quits."""


@dataclass
class Conversation:
    key: tuple[str, str]  # ("to", account) or ("group", name)
    messages: list[StoredMessage] = field(default_factory=list)
    unread: int = 0

    @property
    def title(self) -> str:
        kind, name = self.key
        return f"#{name}" if kind == "group" else name


def conversation_key(stored: StoredMessage, me: str) -> tuple[str, str]:
    m = stored.message
    if m.group is not None:
        return ("group", m.group)
    if stored.outgoing or m.sender == me:
        return ("to", m.to or m.sender)
    return ("to", m.sender)


def message_line(number: int, stored: StoredMessage) -> Text:
    """One message as plain text: nothing in it is interpreted as markup or control."""
    m = stored.message
    when = datetime.fromtimestamp(m.sent_at / 1000, UTC).strftime("%H:%M")
    line = Text(f"[{number}] {when} ", style="dim")
    line.append(printable(m.sender), style="bold" if not stored.outgoing else "italic")
    line.append(": ")
    line.append(printable(m.text))
    for a in m.attachments:
        line.append(f"\n      attachment {printable(a.name)} ({a.size} bytes)", style="cyan")
    return line


class ChatApp(App[None]):
    """The chat app over one unlocked client (which the app closes when it quits)."""

    TITLE = "Accord"
    CSS = """
    #conversations { width: 28; border-right: solid $primary-background; }
    #banner { display: none; background: $warning 30%; color: $text; padding: 0 1; }
    #banner.shown { display: block; }
    #messages { height: 1fr; }
    #status { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit"),
        Binding("ctrl+n", "prefill('/to ')", "Chat"),
        Binding("ctrl+g", "prefill('/group create ')", "Group"),
        Binding("ctrl+o", "send_file", "Send"),
        Binding("ctrl+s", "save_file", "Save"),
        Binding("ctrl+r", "prefill('/report ')", "Report"),
        Binding("ctrl+d", "dismiss_banner", "Dismiss"),
        Binding("f1", "help", "Help"),
    ]

    def __init__(
        self,
        client: AccordClient,
        *,
        to: str | None = None,
        group: str | None = None,
        folder: Path | None = None,
    ) -> None:
        """`folder`: where the file dialogs start (the working directory by default)."""
        super().__init__()
        self.client = client
        self.folder = folder or Path.cwd()
        self.me = client.account_name
        self.conversations: dict[tuple[str, str], Conversation] = {}
        self.open_key: tuple[str, str] | None = (
            ("group", group) if group else ("to", to) if to else None
        )
        self.notices: list[str] = []
        self.worker = ClientWorker(client, self._deliver_from_worker)

    # --- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal():
            yield ListView(id="conversations")
            with Vertical():
                yield Static("", id="banner")
                yield RichLog(id="messages", wrap=True, markup=False, highlight=False)
                yield Label("", id="status")
                yield Input(placeholder="Message, or /help", id="input")
        yield Footer(show_command_palette=False)  # Ctrl+P still opens it (F1 says so)

    def on_mount(self) -> None:
        self.sub_title = f"{self.me} (device {self.client.device_id})"
        for stored in self.client.history():
            self._add(stored, unread=False)
        if self.open_key is not None:
            self.conversations.setdefault(self.open_key, Conversation(self.open_key))
        self._refresh_list()
        self._show_open()
        self.query_one("#input", Input).focus()
        self.worker.start()

    def on_unmount(self) -> None:
        self.worker.close()
        self.client.close()

    # --- from the worker --------------------------------------------------------------------

    def _deliver_from_worker(self, incoming: Incoming) -> None:
        self.call_from_thread(self._receive, incoming)

    def _receive(self, incoming: Incoming) -> None:
        for stored in incoming.messages:
            self._add(stored, unread=conversation_key(stored, self.me) != self.open_key)
        if incoming.notices:
            self._banner(incoming.notices)
        for reason in incoming.rejected:
            self._status(f"a message was dropped: {printable(reason)}")
        self._refresh_list()
        self._show_open()

    # --- conversations ------------------------------------------------------------------------

    def _add(self, stored: StoredMessage, *, unread: bool) -> None:
        key = conversation_key(stored, self.me)
        conv = self.conversations.setdefault(key, Conversation(key))
        if any(s.seq == stored.seq for s in conv.messages):
            return
        conv.messages.append(stored)
        if unread and not stored.outgoing:
            conv.unread += 1

    def _ordered(self) -> list[Conversation]:
        return sorted(
            self.conversations.values(),
            key=lambda c: c.messages[-1].seq if c.messages else 1 << 62,
            reverse=True,
        )

    def _refresh_list(self) -> None:
        view = self.query_one("#conversations", ListView)
        view.clear()
        for conv in self._ordered():
            last = printable(conv.messages[-1].message.text)[:20] if conv.messages else ""
            label = Text(conv.title, style="bold" if conv.key == self.open_key else "")
            if conv.unread:
                label.append(f" ({conv.unread})", style="bold $accent")
            label.append(f"\n{last}", style="dim")
            view.append(ListItem(Label(label), name=f"{conv.key[0]}:{conv.key[1]}"))

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        name = event.item.name or ""
        kind, _, value = name.partition(":")
        self._open((kind, value))
        self.query_one("#input", Input).focus()

    def _open(self, key: tuple[str, str]) -> None:
        self.open_key = key
        self.conversations.setdefault(key, Conversation(key))
        self._refresh_list()
        self._show_open()

    def _show_open(self) -> None:
        log = self.query_one("#messages", RichLog)
        log.clear()
        if self.open_key is None:
            log.write(Text("No conversation open: Ctrl+N starts one (/to NAME). F1 for help."))
            return
        conv = self.conversations[self.open_key]
        conv.unread = 0
        self.title = f"Accord: {conv.title}"
        for number, stored in enumerate(conv.messages, start=1):
            log.write(message_line(number, stored))

    def _open_messages(self) -> list[StoredMessage]:
        return [] if self.open_key is None else self.conversations[self.open_key].messages

    def _message(self, number: str) -> StoredMessage | None:
        if not number.isdigit():
            return None
        messages = self._open_messages()
        n = int(number)
        return messages[n - 1] if 1 <= n <= len(messages) else None

    # --- banner and status --------------------------------------------------------------------

    def _banner(self, notices: list[str]) -> None:
        self.notices = (self.notices + [printable(n) for n in notices])[-4:]
        banner = self.query_one("#banner", Static)
        banner.update(Text("\n".join(f"! {n}" for n in self.notices)))
        banner.add_class("shown")

    def action_dismiss_banner(self) -> None:
        self.notices = []
        self.query_one("#banner", Static).remove_class("shown")

    def _status(self, text: str) -> None:
        self.query_one("#status", Label).update(Text(text))

    def action_prefill(self, text: str) -> None:
        field_ = self.query_one("#input", Input)
        field_.value = text
        field_.cursor_position = len(text)
        field_.focus()

    def action_help(self) -> None:
        self.query_one("#messages", RichLog).write(Text(HELP, style="italic"))

    # --- files ------------------------------------------------------------------------------

    def action_send_file(self) -> None:
        if self.open_key is None:
            self._status("open a conversation first: /to NAME or /group open NAME")
            return

        def chosen(choice: FileToSend | None) -> None:
            if choice is not None:
                self._send(choice.text, [choice.path])

        title = self.conversations[self.open_key].title
        self.push_screen(SendFileScreen(self.folder, title), chosen)

    def action_save_file(self) -> None:
        received = [
            Received(number, stored.message.sender, a)
            for number, stored in enumerate(self._open_messages(), start=1)
            for a in stored.message.attachments
            if a.path
        ][::-1]
        if not received:
            self._status("no received attachments in this conversation")
            return
        self.push_screen(SaveFileScreen(received, self.folder), self._save)

    def _save(self, request: SaveRequest | None) -> None:
        if request is None:
            return
        saved = self._save_copies([(request.attachment, request.dest)])
        if saved:
            name = printable(request.attachment.name)
            self._status(f"saved {name} to {printable(str(saved[0]))}")

    def _save_copies(
        self, copies: list[tuple[ReceivedAttachment, Path]], *, make_folder: bool = False
    ) -> list[Path]:
        """Each attachment saved to its destination (none replaces a file), or [] and why."""
        try:
            if make_folder:
                for _, folder in copies:
                    folder.mkdir(parents=True, exist_ok=True)
            return [save_attachment(a, dest) for a, dest in copies]
        except OSError as exc:
            self._status(f"not saved: {printable(exc.strerror or type(exc).__name__)}")
            return []

    # --- input ------------------------------------------------------------------------------

    @on(Input.Submitted, "#input")
    def _submitted(self, event: Input.Submitted) -> None:
        line = event.value.strip()
        event.input.value = ""
        if not line:
            return
        if line.startswith("/"):
            self._command(line)
        else:
            self._send(line, [])

    def _send(self, text: str, files: list[Path]) -> None:
        key = self.open_key
        if key is None:
            self._status("open a conversation first: /to NAME or /group open NAME")
            return
        kind, name = key

        def job(client: AccordClient) -> list[StoredMessage]:
            if kind == "group":
                client.send_group(name, text, files)
                return client.history(group=name)
            client.send(name, text, files)
            return client.history(name=name)

        self._status("sending…")
        self._run(job, lambda history: self._sent(key, history))

    def _sent(self, key: tuple[str, str], history: list[StoredMessage]) -> None:
        for stored in history:
            self._add(stored, unread=False)
        self._status("sent")
        self._refresh_list()
        if key == self.open_key:
            self._show_open()

    def _run(self, job: Any, done: Any) -> None:
        """Run `job(client)` on the worker; `done(answer)` (or the error) back on the UI."""
        self.worker.submit(
            job,
            lambda answer: self.call_from_thread(done, answer),
            lambda error: self.call_from_thread(self._failed, error),
        )

    def _failed(self, error: str) -> None:
        self._status(f"error: {printable(error)}")
        if "contact_changed" in error:
            self._banner([error.split(": ", 1)[-1]])

    def _command(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError:
            self._status("unbalanced quotes")
            return
        command, args = words[0], words[1:]
        handler = _COMMANDS.get(command)
        if handler is None:
            self._status(f"unknown command {printable(command)}; F1 for help")
            return
        try:
            handler(self, args)
        except (IndexError, ValueError):
            self._status(f"usage: see F1 for {printable(command)}")

    def cmd_to(self, args: list[str]) -> None:
        self._open(("to", args[0]))

    def cmd_group(self, args: list[str]) -> None:
        action, name, rest = args[0], args[1], args[2:]
        if action == "open":
            self._open(("group", name))
            return
        if action == "create":
            job = lambda c: c.create_group(name, rest)  # noqa: E731
        elif action == "add":
            job = lambda c: c.change_members(name, add=rest)  # noqa: E731
        elif action == "remove":
            job = lambda c: c.change_members(name, remove=rest)  # noqa: E731
        elif action == "leave":
            job = lambda c: c.change_members(name, remove=[c.account_name])  # noqa: E731
        else:
            raise ValueError(action)

        def done(state: Any) -> None:
            members = ", ".join(state.members) if hasattr(state, "members") else ""
            self._status(f"group {name}: {members}")
            if action != "leave":
                self._open(("group", name))

        self._run(job, done)

    def cmd_attach(self, args: list[str]) -> None:
        self._send(" ".join(args[1:]), [Path(args[0]).expanduser()])

    def cmd_save(self, args: list[str]) -> None:
        stored = self._message(args[0])
        received = [a for a in stored.message.attachments if a.path] if stored else []
        if not received:
            self._status("no received attachments in that message")
            return
        target = Path(args[1]).expanduser() if len(args) > 1 else self.folder
        if self._save_copies([(a, target) for a in received], make_folder=True):
            self._status(f"saved {len(received)} file(s) in {printable(str(target))}")

    def cmd_report(self, args: list[str]) -> None:
        context = 0
        if "--context" in args:
            at = args.index("--context")
            context = int(args[at + 1])
            args = args[:at] + args[at + 2 :]
        stored = self._message(args[0])
        if stored is None or stored.outgoing:
            self._status("give the number of a message you received")
            return
        reason = " ".join(args[1:])
        message_id = stored.message.id
        self._run(
            lambda c: c.report(message_id, reason=reason, context=context),
            lambda report_id: self._status(f"reported: report id {report_id}"),
        )

    def cmd_verify(self, args: list[str]) -> None:
        confirm = "--confirm" in args
        names = [a for a in args if a != "--confirm"]
        name = names[0] if names else (self.open_key[1] if self.open_key else "")
        if not name or (self.open_key and self.open_key[0] == "group" and not names):
            self._status("give the contact's name: /verify NAME")
            return
        self._run(
            lambda c: c.verify_contact(name, confirm=confirm),
            lambda answer: self._status(
                f"safety code with {name}: {answer[0]}"
                + (" (verified)" if answer[1] else " (not verified: /verify NAME --confirm)")
            ),
        )

    def cmd_devices(self, _args: list[str]) -> None:
        def done(answer: Any) -> None:
            devices, notices = answer
            if notices:
                self._banner(notices)
            ids = [
                d.device_id + (" (this)" if d.device_id == self.client.device_id else "")
                for d in devices
            ]
            self._status("devices: " + ", ".join(ids))

        self._run(lambda c: c.devices(), done)

    def cmd_approve(self, args: list[str]) -> None:
        code = args[0]
        self._run(
            lambda c: c.approve_device(code),
            lambda keys: self._status(f"device {keys.device_id} approved"),
        )

    def cmd_remove_device(self, args: list[str]) -> None:
        device_id = args[0]
        self._run(
            lambda c: c.remove_device(device_id),
            lambda _: self._status(f"device {device_id} removed"),
        )

    def cmd_help(self, _args: list[str]) -> None:
        self.action_help()


_COMMANDS = {
    "/to": ChatApp.cmd_to,
    "/group": ChatApp.cmd_group,
    "/attach": ChatApp.cmd_attach,
    "/save": ChatApp.cmd_save,
    "/report": ChatApp.cmd_report,
    "/verify": ChatApp.cmd_verify,
    "/devices": ChatApp.cmd_devices,
    "/approve": ChatApp.cmd_approve,
    "/remove-device": ChatApp.cmd_remove_device,
    "/help": ChatApp.cmd_help,
}
