"""What other people wrote, made safe to print on a terminal.

A message's text, an attachment's name and a notice come from a sender (or from the server).
Printed raw, a line break lets a sender fake a line from someone else, and escape sequences can
retitle the window, clear the screen or move the cursor. As `less` and Signal Desktop do, such
characters are shown visibly instead, so that one message always prints as one line and no
byte a sender chose drives the terminal:
- line breaks (LF, CR LF, U+2028, U+2029, NEL) as "⏎";
- other C0 controls and DEL in caret notation (ESC as ``^[``, BEL as ``^G``, CR as ``^M``);
- C1 controls, and the Unicode bidirectional marks, embeddings, overrides and isolates (which
  reorder what follows them on screen), as ``<U+XXXX>``.
Everything else, any script and emoji included, prints as written.

`--json` output goes to a program, but often through a terminal on its way (a pipe to `less`, a
log shown with `cat`): `json_line` escapes the same characters as JSON `\\uXXXX` escapes.
"""

from __future__ import annotations

import json

LINE_BREAK_MARK = "\u23ce"
_LINE_BREAKS = {"\n", "\u2028", "\u2029", "\u0085"}
_BIDI_CONTROLS = {
    "\u061c",  # arabic letter mark
    "\u200e",  # left-to-right mark
    "\u200f",  # right-to-left mark
    *(chr(c) for c in range(0x202A, 0x202F)),  # embeddings and overrides
    *(chr(c) for c in range(0x2066, 0x206A)),  # isolates
}


def _visible(ch: str) -> str:
    if ch in _LINE_BREAKS:
        return LINE_BREAK_MARK
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"<U+{code:04X}>"


def _needs_mark(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or ch in _LINE_BREAKS or ch in _BIDI_CONTROLS


def printable(text: str) -> str:
    """`text` with every control character shown visibly: one line, no terminal commands."""
    if not any(_needs_mark(ch) for ch in text):
        return text
    return "".join(_visible(ch) if _needs_mark(ch) else ch for ch in text.replace("\r\n", "\n"))


def json_line(value: object) -> str:
    """`value` as one line of JSON in which every character `printable` would mark is a
    `\\uXXXX` escape (JSON itself leaves C1 controls, DEL and bidirectional marks raw)."""
    line = json.dumps(value, ensure_ascii=False)
    if not any(_needs_mark(ch) for ch in line):
        return line
    # Such characters can only be inside JSON strings, where an escape means the same.
    return "".join(f"\\u{ord(ch):04x}" if _needs_mark(ch) else ch for ch in line)
