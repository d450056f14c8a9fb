"""Acceptance of the messaging foundation over the real CLI and a real server process."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from accord.client.log_trust import INSECURE_DEV_WARNING

ATTACHMENT_BYTES = 10 * 1000 * 1000 + 17


def _messages(proc) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _windows(data: bytes, count: int = 64, width: int = 32) -> list[bytes]:
    step = max(1, (len(data) - width) // count)
    return [data[i : i + width] for i in range(0, len(data) - width, step)][:count]


def _server_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_direct_and_group_messages_with_large_attachments(server, cli, tmp_path, unique):  # type: ignore[no-untyped-def]
    a, b, c_ = unique("alice"), unique("bob"), unique("carol")
    alice, bob, carol = cli("alice"), cli("bob"), cli("carol")
    for c, name in ((alice, a), (bob, b), (carol, c_)):
        c.run("account", "create", name, "--server", server.url)

    big = tmp_path / "scan.pdf"
    big_bytes = os.urandom(ATTACHMENT_BYTES)
    big.write_bytes(big_bytes)
    secret_text = "the meeting point is the old lighthouse"

    mid = alice.run("send", b, secret_text, "--attach", str(big)).stdout.strip()
    got = _messages(bob.run("receive", "--json"))
    assert [m["id"] for m in got] == [mid]
    m = got[0]
    assert m["from"] == a and m["group"] is None and m["text"] == secret_text
    assert set(m) == {"id", "from", "group", "text", "sent_at", "attachments"}
    (att,) = m["attachments"]
    assert att["name"] == "scan.pdf" and att["size"] == ATTACHMENT_BYTES
    assert att["sha256"] == hashlib.sha256(big_bytes).hexdigest()
    assert Path(att["path"]).read_bytes() == big_bytes
    assert Path(att["path"]).is_relative_to(bob.home)

    reply = "see you there at nine"
    bob.run("send", a, reply)
    assert [x["text"] for x in _messages(alice.run("receive", "--json"))] == [reply]

    alice.run("group", "create", "crew", "--members", f"{b},{c_}")
    group_text = "bring the second map"
    second = tmp_path / "map.bin"
    second_bytes = os.urandom(ATTACHMENT_BYTES)
    second.write_bytes(second_bytes)
    alice.run("send", "--group", "crew", group_text, "--attach", str(second))
    for member in (bob, carol):
        (g,) = _messages(member.run("receive", "--json"))
        assert g["group"] == "crew" and g["from"] == a and g["text"] == group_text
        assert Path(g["attachments"][0]["path"]).read_bytes() == second_bytes
    carol.run("send", "--group", "crew", "carol's reply in the group")
    assert [x["text"] for x in _messages(bob.run("receive", "--json"))] == [
        "carol's reply in the group"
    ]

    # Nothing the server wrote contains the plaintexts or any piece of the attachments.
    needles = [secret_text.encode(), reply.encode(), group_text.encode()]
    needles += _windows(big_bytes) + _windows(second_bytes)
    if server.db_url is None:
        files = _server_files(server.data_dir)
        assert any(p.name == "accord.db" for p in files)
        assert sum(1 for p in files if "blobs" in p.parts) >= 2
    else:
        files = _server_files(server.data_dir)
        files.append(_dump_postgres(server.db_url, tmp_path))
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"plaintext found in {path.name}"


def _dump_postgres(url: str, tmp_path: Path) -> Path:
    """Every row of every table, as text and raw bytes, in one file to search."""
    import psycopg

    out = tmp_path / "pg-dump.bin"
    with psycopg.connect(url) as conn, out.open("wb") as f:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        assert tables
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    f.write(value if isinstance(value, bytes) else str(value).encode())
                    f.write(b"\n")
    return out


@pytest.mark.slow
def test_offline_delivery_survives_sigkill(server, cli, unique):  # type: ignore[no-untyped-def]
    alice, bob = cli("alice"), cli("bob")
    alice.run("account", "create", unique("alice"), "--server", server.url)
    bob.run("account", "create", unique("bob"), "--server", server.url)
    alice.run("group", "create", "pair", "--members", unique("bob"))
    sent = [alice.run("send", unique("bob"), f"offline {i}").stdout.strip() for i in range(5)]
    sent.append(alice.run("send", "--group", "pair", "offline group").stdout.strip())

    server.kill()  # right after the sends were acknowledged
    server.start()

    got = _messages(bob.run("receive", "--json"))
    assert [m["id"] for m in got] == sent
    assert [m["text"] for m in got] == [f"offline {i}" for i in range(5)] + ["offline group"]
    assert _messages(bob.run("receive", "--json")) == []  # delivered once


@pytest.mark.slow
def test_second_device_sees_both_directions(server, cli, unique):  # type: ignore[no-untyped-def]
    a, b = unique("alice"), unique("bob")
    alice, phone, laptop = cli("alice"), cli("bob-phone"), cli("bob-laptop")
    alice.run("account", "create", a, "--server", server.url)
    phone.run("account", "create", b, "--server", server.url)
    code = laptop.run("device", "link", b, "--server", server.url).stdout.strip()
    waiting = laptop.run("receive", check=False)
    assert waiting.returncode != 0 and "waiting for approval" in waiting.stderr
    phone.run("device", "approve", code)
    assert laptop.run("receive", "--json").stdout == ""

    alice.run("send", b, "to both of bob's devices")
    for device in (phone, laptop):
        assert [m["text"] for m in _messages(device.run("receive", "--json"))] == [
            "to both of bob's devices"
        ]
    phone.run("send", a, "sent from the phone")
    (mine,) = _messages(laptop.run("receive", "--json"))
    assert mine["from"] == b and mine["text"] == "sent from the phone"
    assert [m["text"] for m in _messages(alice.run("receive", "--json"))] == ["sent from the phone"]


def test_bad_link_code_is_refused(server, cli, unique):  # type: ignore[no-untyped-def]
    phone, laptop = cli("phone"), cli("laptop")
    phone.run("account", "create", unique("bob"), "--server", server.url)
    code = laptop.run("device", "link", unique("bob"), "--server", server.url).stdout.strip()
    request_id, fingerprint = code.split("-")
    forged = f"{request_id}-{'A' * len(fingerprint)}"
    proc = phone.run("device", "approve", forged, check=False)
    assert proc.returncode == 1 and "verification_failed" in proc.stderr
    proc = phone.run("device", "approve", "not-a-code", check=False)
    assert proc.returncode == 2 and proc.problems.count("\n") == 1


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the reader's check
def test_a_message_cannot_write_to_the_readers_terminal(server, cli, tmp_path, unique):  # type: ignore[no-untyped-def]
    """A newline must not fake a line from someone else; escape sequences (window title, clear
    screen), C1 controls and bidirectional overrides are shown, not obeyed; the same for
    attachment names, and in `--json` output (escaped there) of `receive` and `history`."""
    a, b = unique("alice"), unique("bob")
    alice, bob = cli("alice"), cli("bob")
    alice.run("account", "create", a, "--server", server.url)
    bob.run("account", "create", b, "--server", server.url)
    forged = f"hi\n[1733400000000] {a}-boss: wire the money\x1b]0;pwned\x07\x1b[2J\u202e\x9b2J"
    odd = tmp_path / "scan\x1b[31m\u202egnp\x9b.pdf"
    odd.write_bytes(b"%PDF-1.4 not really")
    alice.run("send", b, forged, "--attach", str(odd))
    out = bob.run("receive").stdout
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[") and lines[1].startswith("    attachment")
    assert f"{a}: hi\u23ce[1733400000000] {a}-boss: wire the money" in lines[0]
    assert "^[]0;pwned^G^[[2J<U+202E><U+009B>2J" in lines[0]
    assert "attachment scan" in lines[1]  # the client saves it under a tamed name, shown as such
    raw = "\x1b\x07\u202e\x9b\r"
    assert not any(c in out for c in raw)

    alice.run("send", b, forged, "--attach", str(odd))
    for shown in (bob.run("receive", "--json").stdout, bob.run("history", "--json").stdout):
        assert not any(c in shown for c in raw) and "\\u009b" in shown and "\\u202e" in shown
        rows = [json.loads(line) for line in shown.splitlines()]
        assert rows and all(r["text"] == forged for r in rows)
        assert all(r["attachments"][0]["name"].startswith("scan") for r in rows)


def _pair(server, cli, unique):  # type: ignore[no-untyped-def]
    a, b = unique("alice"), unique("bob")
    alice, bob = cli("alice"), cli("bob")
    alice.run("account", "create", a, "--server", server.url)
    bob.run("account", "create", b, "--server", server.url)
    return a, b, alice, bob


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the reader's store
def test_receive_into_a_closed_pipe_loses_nothing(server, cli, module_clock, unique):  # type: ignore[no-untyped-def]
    """`accord receive | head -n 1` with three queued shows one; the next receive the others."""
    a, b, alice, bob = _pair(server, cli, unique)
    for i in range(3):
        alice.run("send", b, f"queued {i}")
    env = {**os.environ, **bob.env, **module_clock.env}
    receive = subprocess.Popen(
        [sys.executable, "-m", "accord", "--home", str(bob.home), "receive"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert receive.stdout is not None
    head = subprocess.run(["head", "-n", "1"], stdin=receive.stdout, capture_output=True, text=True)
    receive.stdout.close()
    _out, err = receive.communicate(timeout=120)
    dev_mode_line = INSECURE_DEV_WARNING.encode() + b"\n"  # this home is in insecure dev mode
    assert receive.returncode == 1 and err == dev_mode_line  # click's quiet exit on a closed pipe
    assert head.stdout.endswith(f"{a}: queued 0\n") and head.stdout.count("\n") == 1
    rest = bob.run("receive").stdout.splitlines()
    assert [line.rsplit(": ", 1)[1] for line in rest] == ["queued 1", "queued 2"]
    assert bob.run("receive").stdout == ""


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the reader's store
def test_interrupted_receive_shows_the_rest_next_time(server, cli, monkeypatch, unique):  # type: ignore[no-untyped-def]
    """Ctrl-C after two messages were printed: the next receive prints the other four, each
    message once across both runs."""
    import accord.cli.messaging

    a, b, alice, bob = _pair(server, cli, unique)
    sent = [alice.run("send", b, f"burst {i}").stdout.strip() for i in range(6)]
    real_write = accord.cli.messaging.write_lines
    written = []

    def interrupted_after_two(lines: list[str]) -> None:
        if len(written) == 2:
            raise KeyboardInterrupt
        real_write(lines)
        written.append(lines)

    monkeypatch.setattr(accord.cli.messaging, "write_lines", interrupted_after_two)
    first = bob.run("receive", "--json", check=False)
    assert first.returncode == 130
    monkeypatch.undo()
    second = bob.run("receive", "--json")
    shown = [m["id"] for m in _messages(first) + _messages(second)]
    assert shown == sent
    assert bob.run("receive", "--json").stdout == ""


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the reader's store
def test_history_shows_the_conversation(server, cli, tmp_path, unique):  # type: ignore[no-untyped-def]
    a, b, alice, bob = _pair(server, cli, unique)
    carol = cli("carol")
    c = unique("carol")
    carol.run("account", "create", c, "--server", server.url)
    note = tmp_path / "note.txt"
    note.write_text("see attached")
    alice.run("send", b, "first from alice", "--attach", str(note))
    carol.run("send", b, "from carol, another conversation")
    alice.run("group", "create", "team", "--members", b)
    alice.run("send", "--group", "team", "to the team")
    bob.run("receive")
    bob.run("send", a, "bob's reply")
    assert bob.run("receive").stdout == ""  # history is not shown again by receive

    lines = bob.run("history", a).stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(f"{a}: first from alice")
    assert lines[1].startswith("    attachment note.txt (12 bytes) -> ")
    assert lines[2].endswith(f"{b} to {a}: bob's reply")
    assert bob.run("history", a, "--limit", "1").stdout.splitlines() == [lines[2]]

    rows = _messages(bob.run("history", a, "--json"))
    assert [(r["direction"], r["from"], r["to"], r["text"]) for r in rows] == [
        ("in", a, b, "first from alice"),
        ("out", b, a, "bob's reply"),
    ]
    (group_row,) = _messages(bob.run("history", "--group", "team", "--json"))
    assert (group_row["from"], group_row["group"], group_row["text"]) == (a, "team", "to the team")
    assert len(_messages(bob.run("history", "--json"))) == 4
    assert [r["text"] for r in _messages(alice.run("history", b, "--json"))] == ["first from alice"]
    refused = bob.run("history", a, "--group", "team", check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the reader's disk
def test_two_attachments_with_one_name_are_both_kept(server, cli, tmp_path, unique):  # type: ignore[no-untyped-def]
    a, b, alice, bob = _pair(server, cli, unique)
    files = []
    for folder, body in (("first", b"the first notes"), ("second", b"the second notes")):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "notes.txt")
        files[-1].write_bytes(body)
    alice.run("send", b, "two of one name", "--attach", str(files[0]), "--attach", str(files[1]))
    alice.run("send", b, "and again", "--attach", str(files[0]))
    got = [att for m in _messages(bob.run("receive", "--json")) for att in m["attachments"]]
    assert [att["name"] for att in got] == ["notes.txt"] * 3
    paths = [Path(att["path"]) for att in got]
    assert len(set(paths)) == 3 and paths[1].name == "notes (2).txt"
    assert [p.read_bytes() for p in paths] == [f.read_bytes() for f in (*files, files[0])]


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the reader's disk
def test_received_files_are_private(server, cli, tmp_path, unique):  # type: ignore[no-untyped-def]
    """A home made 0755 before accord used it, and a permissive umask: what is received is
    still the user's alone (files 0600, their folders 0700)."""
    a, b = unique("alice"), unique("bob")
    alice, bob = cli("alice"), cli("bob")
    bob.home.mkdir(mode=0o755)
    bob.home.chmod(0o755)
    alice.run("account", "create", a, "--server", server.url)
    bob.run("account", "create", b, "--server", server.url)
    secret = tmp_path / "payslip.txt"
    secret.write_text("salary")
    alice.run("send", b, "private", "--attach", str(secret))
    previous = os.umask(0o022)
    try:
        (m,) = _messages(bob.run("receive", "--json"))
    finally:
        os.umask(previous)
    path = Path(m["attachments"][0]["path"])
    assert path.read_text() == "salary"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((bob.home / "attachments").stat().st_mode) == 0o700


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # checks made before any request
def test_short_passphrase_is_refused_at_account_creation(server, cli, unique):  # type: ignore[no-untyped-def]
    alice = cli("alice")
    alice.env["ACCORD_PASSPHRASE"] = "7 chars"
    refused = alice.run("account", "create", unique("alice"), "--server", server.url, check=False)
    assert refused.returncode == 2
    assert refused.stderr == "invalid_input: a passphrase has at least 8 characters\n"
    alice.env["ACCORD_PASSPHRASE"] = "8 chars!"
    alice.run("account", "create", unique("alice"), "--server", server.url)


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the sender's command line
def test_send_dash_reads_the_message_from_stdin(server, cli, unique):  # type: ignore[no-untyped-def]
    a, b, alice, bob = _pair(server, cli, unique)
    alice.run("send", b, "-", input="first line\nsecond line\n")
    (m,) = _messages(bob.run("receive", "--json"))
    assert m["text"] == "first line\nsecond line"
    too_long = alice.run("send", b, "-", input="x" * 65537, check=False)
    assert too_long.returncode == 2
    assert too_long.stderr == "invalid_input: a message has at most 65536 characters\n"
    assert bob.run("receive", "--json").stdout == ""


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the clients compute the code
def test_contact_verify_shows_the_same_code_on_both_sides(server, cli, unique):  # type: ignore[no-untyped-def]
    a, b, alice, bob = _pair(server, cli, unique)

    def code(out: str, name: str) -> str:
        [line] = [x for x in out.splitlines() if x.startswith(f"safety code with {name}: ")]
        return line.split(": ", 1)[1]

    shown_a = alice.run("contact", "verify", b).stdout
    shown_b = bob.run("contact", "verify", a).stdout
    assert code(shown_a, b) == code(shown_b, a)
    assert re.fullmatch(r"\d{5}( \d{5}){5}", code(shown_a, b))
    assert f"not verified: compare this code with {b} in person" in shown_a
    confirmed = alice.run("contact", "verify", b, "--confirm").stdout
    assert code(confirmed, b) == code(shown_a, b) and f"{b} is verified" in confirmed
    assert f"{b} is verified" in alice.run("contact", "verify", b).stdout  # kept
    assert "not verified" in bob.run("contact", "verify", a).stdout  # one side's choice

    unknown = alice.run("contact", "verify", unique("nobody"), check=False)
    assert unknown.returncode == 1, unknown.stderr
    assert unknown.problems.startswith("not_found: ") and unknown.problems.count("\n") == 1
    bad = alice.run("contact", "verify", "Not-A-Name", check=False)
    assert bad.returncode == 2, bad.stderr
    assert bad.problems == "invalid_input: not an account name\n"


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # checks made before any request
def test_bad_names_are_one_line_not_a_traceback(server, cli, unique):  # type: ignore[no-untyped-def]
    alice = cli("alice")
    alice.run("account", "create", unique("alice"), "--server", server.url)
    for args in (("send", "Bob", "hi"), ("group", "create", "Big", "--members", "x")):
        refused = alice.run(*args, check=False)
        assert refused.returncode == 2, refused.stderr
        assert refused.problems.count("\n") == 1 and "Traceback" not in refused.stderr
        assert "names are 1-64 characters" in refused.stderr


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the admin's device checks
def test_a_group_change_that_changes_nothing_is_refused(server, cli, unique):  # type: ignore[no-untyped-def]
    """Removing a non-member (or a name no account has) and adding a member are refused with
    one line, and publish no new group version."""
    a, b, alice, _bob = _pair(server, cli, unique)
    team, dave, zed = unique("team"), unique("dave"), unique("zed")
    cli("dave").run("account", "create", dave, "--server", server.url)
    alice.run("group", "create", team, "--members", b)
    for change, name, answer in (
        ("remove", dave, f"not_a_member: not a member of {team}: {dave}"),
        ("remove", zed, f"not_a_member: not a member of {team}: {zed}"),
        ("add", b, f"already_a_member: already a member of {team}: {b}"),
    ):
        refused = alice.run("group", change, team, name, check=False)
        assert refused.returncode == 2 and refused.problems == answer + "\n"
    added = alice.run("group", "add", team, dave).stdout
    assert added == f"group {team} version 2: {a}, {b}, {dave}\n"


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # one server answer, any database
def test_a_used_or_unknown_link_code_says_so(server, cli, unique):  # type: ignore[no-untyped-def]
    phone, laptop = cli("phone"), cli("laptop")
    phone.run("account", "create", unique("bob"), "--server", server.url)
    code = laptop.run("device", "link", unique("bob"), "--server", server.url).stdout.strip()
    phone.run("device", "approve", code)
    answer = "link_code_not_found: this link code is unknown, already used or expired\n"
    for used_or_unknown in (code, "A" * 16 + "-" + "B" * 16):
        refused = phone.run("device", "approve", used_or_unknown, check=False)
        assert refused.returncode == 1 and refused.problems == answer


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # decided on the member's device
def test_a_group_you_were_removed_from_says_so(server, cli, unique):  # type: ignore[no-untyped-def]
    a, b, alice, bob = _pair(server, cli, unique)
    team = unique("team")
    alice.run("group", "create", team, "--members", b)
    bob.run("send", "--group", team, "still here")
    assert [m["text"] for m in _messages(alice.run("receive", "--json"))] == ["still here"]
    alice.run("group", "remove", team, b)
    answer = f"no_longer_a_member: you are no longer a member of {team}\n"
    for args in (("send", "--group", team, "am I?"), ("group", "add", team, unique("x"))):
        refused = bob.run(*args, check=False)
        assert refused.returncode == 1 and refused.problems == answer


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # decided on the member's device
def test_an_unknown_group_says_so(server, cli, unique):  # type: ignore[no-untyped-def]
    """A group that does not exist and another people's group get the same answer."""
    a, b, alice, bob = _pair(server, cli, unique)
    theirs, nowhere = unique("theirs"), unique("nowhere")
    alice.run("group", "create", theirs, "--members", a)
    for team in (theirs, nowhere):
        refused = bob.run("send", "--group", team, "hello?", check=False)
        assert refused.returncode == 1
        assert refused.problems == f"group_not_found: no group {team} that you belong to\n"


def test_the_server_comes_from_accord_server_and_the_log_origin_is_the_operators(  # type: ignore[no-untyped-def]
    tmp_path, module_clock, cli, unique
):
    """Operators name their log (`--log-origin`, so a witness shared with other logs tells them
    apart); people set ACCORD_SERVER once instead of `--server` on every command."""
    import httpx

    from accord.server.process import ServerProcess
    from accord.server.settings import ServerSettings
    from accord.server.translog import DEFAULT_LOG_ORIGIN

    # The default lives in the settings model (flags, ACCORD_* variables and --config FILE).
    assert ServerSettings.model_fields["log_origin"].default == DEFAULT_LOG_ORIGIN
    proc = ServerProcess(
        tmp_path / "server",
        extra_args=["--log-origin", "chat.example.org/log"],
        env=module_clock.env,
    ).start()
    try:
        assert httpx.get(f"{proc.url}/v1/log/info").json()["origin"] == "chat.example.org/log"
        alice = cli("alice")
        alice.env["ACCORD_SERVER"] = proc.url
        name = unique("alice")
        alice.run("account", "create", name)
        checkpoint = alice.run("log", "checkpoint").stdout
        assert checkpoint.startswith("chat.example.org/log\n")
        missing = cli("bob").run("log", "checkpoint", check=False)
        assert missing.returncode == 2 and "--server" in missing.stderr
    finally:
        proc.stop()
