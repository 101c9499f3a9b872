"""docs/cli.md's exit-code table is the code's, and every code in it can be produced.

For each documented exit code, one real command (a subprocess of the CLI, with
real components) that exits with it. Also: the error shape of ``--verbose``,
``certmail`` with no command, missing files (exit 6), files that are no mail.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from certmail import errors
from tests.fixtures.clamd import EICAR
from tests.fixtures.cli import CERTMAIL, clean_env, cli, one_line_error
from tests.fixtures.notary import free_port

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def documented_codes() -> dict[int, str]:
    """The rows of the table under "## Exit codes" in docs/cli.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| (.+?) \|$", section, re.M)}


def test_the_documented_table_is_the_code_table() -> None:
    assert documented_codes().keys() == errors.EXIT_CODES.keys()
    for name in dir(errors):  # every error class exits with a documented code
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, errors.Error):
            assert obj.exit_code in errors.EXIT_CODES, name


def _plain_message(tmp: Path) -> Path:
    p = tmp / "plain.eml"
    p.write_bytes(b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n")
    return p


def _default_sigint() -> None:
    """In the child before exec: SIGINT's default action. An ignored SIGINT is inherited
    through exec (a runner started in the background, ``cmd &``, ignores it), and then
    Python installs no KeyboardInterrupt handler: certmail would read on forever."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _reading(pid: int, fifo: Path) -> bool:
    """Whether process ``pid`` holds ``fifo`` open (its read end: it is past Python's start)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == os.path.realpath(fifo):
                return True
        except FileNotFoundError:
            continue
    return False


def _interrupted(home: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``certmail send`` reading its body from a FIFO, interrupted with SIGINT (Ctrl-C).

    Bounded however loaded the machine is: SIGINT goes only once certmail holds the
    FIFO open for reading (so its KeyboardInterrupt handler is in place), and a
    certmail that does not exit after it is killed and the test fails with its stderr.
    """
    fifo = tmp / "body.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [*CERTMAIL, "send", "--to", "b@example.test", "--subject", "s", "--body-file", str(fifo)],
        env=clean_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    fd = -1
    try:
        deadline = time.monotonic() + 120
        while True:  # the FIFO opens for writing once certmail opens it for reading
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "certmail never read"
                time.sleep(0.05)
        while not _reading(proc.pid, fifo):  # its open() has returned: it is in read()
            assert proc.poll() is None and time.monotonic() < deadline, "certmail never read"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"certmail did not exit on SIGINT; stderr: {err!r}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _command_for(
    code: int, home: Path, tmp: Path, clamd: Callable[[], str]
) -> subprocess.CompletedProcess[str]:
    env = clean_env(home)
    if code == 0:
        return cli("--version", env=env)
    if code == 1:  # no identity configured
        return cli("send", "--to", "b@example.test", "--subject", "s", env=env, stdin="hi\n")
    if code == 2:
        return cli("send", "--no-such-option", env=env)
    if code == 3:  # a message without any signature
        return cli("verify", str(_plain_message(tmp)), env=env)
    if code == 4:
        bad = tmp / "eicar.com"
        bad.write_bytes(EICAR)
        env.update(
            CERTMAIL_EMAIL="a@example.test",
            CERTMAIL_CLAMD=clamd(),
            CERTMAIL_SMTP_URL="smtp://127.0.0.1:1",
        )
        return cli(
            "send",
            "--to",
            "b@example.test",
            "--subject",
            "s",
            "--attach",
            str(bad),
            "--no-notarize",
            env=env,
            stdin="hi\n",
        )
    if code == 5:  # the notary is unreachable
        env.update(
            CERTMAIL_NOTARY_URL=f"http://127.0.0.1:{free_port()}", CERTMAIL_NOTARY_TOKEN="t" * 32
        )
        return cli("notarize", str(_plain_message(tmp)), env=env)
    if code == 6:
        return cli("open", str(tmp / "no-such.eml"), env=env)
    if code == 7:  # would overwrite
        existing = tmp / "existing.zip"
        existing.write_bytes(b"keep me")
        return cli("proof", "export", "0" * 64, "-o", str(existing), env=env)
    if code == 130:
        return _interrupted(home, tmp)
    raise AssertionError(f"no command for documented exit code {code}")


@pytest.mark.parametrize("code", sorted(documented_codes()))
def test_each_documented_exit_code(
    code: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    p = _command_for(code, home, tmp_path, lambda: str(request.getfixturevalue("clamd_socket")))
    assert p.returncode == code, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    if code not in (0, 2):
        one_line_error(p)


def test_verbose_prints_the_cause_and_messages_name_no_exception_class(tmp_path: Path) -> None:
    env = clean_env(
        tmp_path / "home",
        CERTMAIL_NOTARY_URL=f"http://127.0.0.1:{free_port()}",
        CERTMAIL_NOTARY_TOKEN="t" * 32,
    )
    msg = str(_plain_message(tmp_path))
    plain = cli("notarize", msg, env=env)
    assert plain.returncode == 5
    line = one_line_error(plain)
    assert "connection refused" in line.lower()
    assert "Error" not in line  # no ConnectError, no exception class at all
    assert "certmail: detail:" not in plain.stderr
    for args, extra in (
        (("--verbose", "notarize", msg), {}),
        (("notarize", msg), {"CERTMAIL_VERBOSE": "1"}),
    ):
        p = cli(*args, env={**env, **extra})
        assert p.returncode == 5
        assert one_line_error(p) == line
        details = [ln for ln in p.stderr.splitlines() if ln.startswith("certmail: detail:")]
        assert details and "ConnectError" in details[-1], p.stderr


def test_no_command_prints_the_command_list(tmp_path: Path) -> None:
    p = cli(env=clean_env(tmp_path / "home"))
    assert p.returncode == 0, p.stderr
    for name in ("send", "open", "receipts", "proof", "notary", "outbox"):
        assert re.search(rf"^  {name}\s", p.stdout, re.M), p.stdout
    assert "error" not in p.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("proof", "verify", "B", "--vkey", "/nonexistent/notary.vkey"),
        ("receipt", "verify", "R", "--vkey", "/nonexistent/notary.vkey"),
        ("proof", "verify", "B", "--tsa-root", "/nonexistent/root.pem"),
        ("notarize", "/nonexistent/letter.txt"),
    ],
)
def test_missing_files_exit_6(args: tuple[str, ...], tmp_path: Path) -> None:
    bundle = tmp_path / "b.certmail-proof.zip"
    bundle.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: never reached
    receipt = tmp_path / "r.json"
    receipt.write_text("{}")
    args = tuple(str(bundle) if a == "B" else str(receipt) if a == "R" else a for a in args)
    p = cli(*args, env=clean_env(tmp_path / "home", CERTMAIL_NOTARY_URL="http://127.0.0.1:1"))
    assert p.returncode == 6, p.stderr
    assert "/nonexistent/" in one_line_error(p)


def test_open_says_when_a_file_is_a_zip_or_no_mail(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home")
    bundle = tmp_path / "sent.certmail-proof.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("message.eml", "From: a@example.test\r\n\r\nx\r\n")
    p = cli("open", str(bundle), env=env)
    assert p.returncode == 3
    assert "is a zip archive, not a mail message" in one_line_error(p)
    assert "certmail proof verify" in p.stderr
    for name, data in (
        ("letter.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
        ("notes.txt", b"just some text\nwith no header fields\n"),
    ):
        f = tmp_path / name
        f.write_bytes(data)
        for cmd in ("open", "verify"):
            p = cli(cmd, str(f), env=env)
            assert p.returncode == 3
            assert "is not a mail message" in one_line_error(p), p.stderr
