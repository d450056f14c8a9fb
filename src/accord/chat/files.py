"""The chat app's file dialogs: pick a file to send (Ctrl+O) and save a received attachment
(Ctrl+S). Both are keyboard-only modals; Escape closes them without doing anything.

Names on screen are never markup: a file name in a folder (where a sender's file may have been
saved) and a sender's attachment name are shown as plain text with control characters made
visible, as messages are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text, TextType
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from accord.client.attachments import safe_name
from accord.client.received import ReceivedAttachment
from accord.client.terminal_text import printable

DIALOG_CSS = """
SendFileScreen, SaveFileScreen { align: center middle; }
SendFileScreen > Vertical, SaveFileScreen > Vertical {
    width: 90%; max-width: 100; height: 90%; max-height: 30;
    border: round $primary; background: $surface; padding: 0 1;
}
.hint { color: $text-muted; }
#files, #attachments { height: 1fr; }
"""


class FileTree(DirectoryTree):
    """A DirectoryTree whose labels are plain text (Textual's would read a name as markup)."""

    def process_label(self, label: TextType) -> Text:
        return super().process_label(Text(printable(label)) if isinstance(label, str) else label)


@dataclass(frozen=True)
class FileToSend:
    path: Path
    text: str


class SendFileScreen(ModalScreen[FileToSend | None]):
    """A folder tree: arrows move, Enter on a folder opens it, Enter on a file sends it with
    the optional message typed in the line below (Tab moves there and back)."""

    CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, folder: Path, to: str) -> None:
        super().__init__()
        self.folder = folder
        self.to = to

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(f"Send a file to {printable(self.to)}"))
            yield Label("Enter on a file sends it; Tab: add a message; Esc cancels", classes="hint")
            yield FileTree(self.folder, id="files")
            yield Input(placeholder="Message with the file (optional)", id="caption")

    def on_mount(self) -> None:
        self.query_one("#files", FileTree).focus()

    @on(DirectoryTree.FileSelected)
    def _chosen(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(FileToSend(event.path, self.query_one("#caption", Input).value.strip()))

    @on(Input.Submitted)
    def _back_to_the_files(self, event: Input.Submitted) -> None:
        event.stop()  # the app's own input line handles the submissions that reach it
        self.query_one("#files", FileTree).focus()


@dataclass(frozen=True)
class Received:
    """A received attachment and the message it came with (its number in the conversation)."""

    number: int
    sender: str
    attachment: ReceivedAttachment


@dataclass(frozen=True)
class SaveRequest:
    attachment: ReceivedAttachment
    dest: Path


class SaveFileScreen(ModalScreen[SaveRequest | None]):
    """The open conversation's received attachments, newest first: where each is kept, and a
    path to save a copy to (the folder the app was started in, under the attachment's name;
    editable). Enter on an attachment moves to the path; Enter there saves."""

    CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, received: list[Received], folder: Path) -> None:
        super().__init__()
        self.received = received
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Save an attachment", id="save-title")
            yield Label(
                "Enter chooses, then Enter saves to the path below; Esc cancels", classes="hint"
            )
            yield OptionList(*(Option(_describe(r)) for r in self.received), id="attachments")
            yield Static("", id="kept")
            yield Input(id="save-to")

    def on_mount(self) -> None:
        self.query_one("#attachments", OptionList).focus()
        self._show(0)

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show(event.option_index)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self._show(event.option_index)
        self.query_one("#save-to", Input).focus()

    def _show(self, index: int) -> None:
        attachment = self.received[index].attachment
        kept = Text("kept on this device at: ", style="dim")
        kept.append(printable(attachment.path))
        self.query_one("#kept", Static).update(kept)
        self.query_one("#save-to", Input).value = str(self.folder / safe_name(attachment.name))

    @on(Input.Submitted)
    def _save(self, event: Input.Submitted) -> None:
        event.stop()
        index = self.query_one("#attachments", OptionList).highlighted or 0
        dest = Path(event.value.strip() or str(self.folder)).expanduser()
        self.dismiss(SaveRequest(self.received[index].attachment, dest))


def _describe(r: Received) -> Text:
    line = Text(f"[{r.number}] ", style="dim")
    line.append(printable(r.attachment.name), style="bold")
    line.append(f" ({r.attachment.size} bytes) from {printable(r.sender)}")
    return line
