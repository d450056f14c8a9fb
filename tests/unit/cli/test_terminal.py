"""A sender's bytes never drive the reader's terminal (accord.cli.terminal)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from accord.cli.terminal import LINE_BREAK_MARK, json_line, printable


def test_plain_text_and_any_script_print_as_written() -> None:
    for text in ("hello", "café ☕ 你好 مرحبا", "tab-free text with spaces", ""):
        assert printable(text) == text


def test_a_line_break_cannot_fake_a_line_from_someone_else() -> None:
    forged = "see you\n[1733400000000] bob: send me the code"
    shown = printable(forged)
    assert "\n" not in shown and shown.count(LINE_BREAK_MARK) == 1
    for brk in ("\r\n", "\u2028", "\u2029", "\u0085"):
        assert printable(f"a{brk}b") == f"a{LINE_BREAK_MARK}b"


def test_escape_sequences_are_shown_not_obeyed() -> None:
    title = "\x1b]0;you have been hacked\x07"
    clear = "\x1b[2J\x1b[H"
    assert printable(title) == "^[]0;you have been hacked^G"
    assert printable(clear) == "^[[2J^[[H"
    assert printable("\r overwrite") == "^M overwrite"
    assert printable("\x7f\x00") == "^?^@"
    assert printable("\x9b31m") == "<U+009B>31m"  # C1 control sequence introducer


def test_bidirectional_overrides_cannot_reorder_what_follows() -> None:
    assert printable("invoice_\u202egnp.exe") == "invoice_<U+202E>gnp.exe"
    assert printable("\u2066x\u2069") == "<U+2066>x<U+2069>"


@given(st.text())
def test_nothing_printed_controls_the_terminal(text: str) -> None:
    shown = printable(text)
    assert "\n" not in shown and "\r" not in shown
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in shown)


@given(st.dictionaries(st.text(), st.text() | st.lists(st.text())))
def test_json_output_escapes_what_printable_marks_and_reads_back_the_same(value: object) -> None:
    line = json_line(value)
    assert json.loads(line) == value
    assert printable(line) == line  # nothing in it that printable would have to mark


def test_json_output_keeps_other_scripts_as_written() -> None:
    assert json_line({"text": "café 你好\u202e\x9b"}) == '{"text": "café 你好\\u202e\\u009b"}'


def test_accord_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    from click.testing import CliRunner

    from accord.cli.main import cli

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output == f"accord {version('accord')}\n"
