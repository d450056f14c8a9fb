"""What other people wrote, made safe to print on a terminal (see
`accord.client.terminal_text`, shared with the chat app)."""

from __future__ import annotations

from accord.client.terminal_text import LINE_BREAK_MARK, json_line, printable

__all__ = ["LINE_BREAK_MARK", "json_line", "printable"]
