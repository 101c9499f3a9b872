"""Passphrase-protected keys end to end: the CLI with real gpg, a real agent and a real pty.

Alice and Bob (tests/fixtures/smtp.py ``correspondents``) get passphrases on
their keys (``gpg --passwd`` through loopback). Their agents keep no cache
(``default-cache-ttl 0``, tests/fixtures/gpg.py), so every secret-key
operation really needs the passphrase: a test that passes with one is not
helped by an earlier step. The prompt is driven in a pseudo-terminal that is
the controlling terminal of the ``certmail`` process, as a person's is.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import CERTMAIL, one_line_error, run

ALICE_PW = "alice's long passphrase"
BOB_PW = "bob's long passphrase"
NOT_FOR_YOU = "not encrypted to any of your keys"
PROMPT = b"passphrase for "


def _prompts(out: bytes) -> int:
    """How many passphrase prompts the terminal showed (lines that start with one)."""
    return sum(1 for line in out.split(b"\n") if line.lstrip(b"\r").startswith(PROMPT))


def _protect(who: Any, passphrase: str) -> None:
    """Give ``who``'s secret key a passphrase (gpg --passwd, loopback, the phrase on a pipe)."""
    fpr = who.keyring.key_for(who.email).fingerprint
    rfd, wfd = os.pipe()
    os.write(wfd, passphrase.encode() + b"\n")
    os.close(wfd)
    try:
        p = subprocess.run(
            ["gpg", "--homedir", str(who.keyring.gnupghome), "--batch", "--no-tty",
             "--status-fd", "2", "--pinentry-mode", "loopback", "--passphrase-fd", str(rfd),
             "--passwd", fpr],
            capture_output=True, pass_fds=(rfd,), check=False,
        )  # fmt: skip
    finally:
        os.close(rfd)
    assert b"SUCCESS keyedit.passwd" in p.stderr, p.stderr
    _kill_agent(who)


def _kill_agent(who: Any) -> None:
    subprocess.run(["gpgconf", "--homedir", str(who.keyring.gnupghome), "--kill", "gpg-agent"],
                   capture_output=True, check=False)  # fmt: skip


@pytest.fixture
def protected(correspondents: Any, tmp_path: Path) -> Any:
    """``correspondents`` whose keys have passphrases; ``c.pw(who, text)`` writes a file."""
    c = correspondents
    _protect(c.alice, ALICE_PW)
    _protect(c.bob, BOB_PW)

    def pw(name: str, text: str) -> str:
        f = tmp_path / name
        f.write_text(text + "\n")
        f.chmod(0o600)
        return str(f)

    c.pw = pw
    return c


def _sent(c: Any, tmp_path: Path, *args: str, notarize: bool = False) -> Path:
    """Alice sends Bob a message (with her passphrase file); the delivered file."""
    p = run(c.alice, "send", "--to", c.bob.email, "--subject", "Contract",
            *([] if notarize else ["--no-notarize"]), *args, stdin=b"Please sign.\n",
            CERTMAIL_PASSPHRASE_FILE=c.pw("alice-pw", ALICE_PW))  # fmt: skip
    assert p.returncode == 0, p.stderr
    eml = tmp_path / "in.eml"
    eml.write_bytes(c.sink.messages[-1].data)
    return eml


# ------------------------------------------------------------------ off a terminal


def test_send_and_open_with_passphrase_files(protected: Any, tmp_path: Path) -> None:
    c = protected
    # Without any source (no terminal): one clear error, not gpg's "No pinentry".
    p = run(c.alice, "send", "--to", c.bob.email, "--subject", "x", "--no-notarize",
            stdin=b"x")  # fmt: skip
    assert p.returncode == 1
    line = one_line_error(p)
    assert "needs its passphrase" in line and "pinentry" not in p.stderr.lower()
    assert "CERTMAIL_PASSPHRASE_FILE" in p.stderr and c.sink.messages == []

    eml = _sent(c, tmp_path)
    ok = run(c.bob, "open", str(eml), "--json", CERTMAIL_PASSPHRASE_FILE=c.pw("bob", BOB_PW))
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["body"] == "Please sign.\n" and out["signer"] == c.alice.email

    # A wrong passphrase is said as such (exit 1), never "not encrypted to you".
    bad = run(c.bob, "open", str(eml), CERTMAIL_PASSPHRASE_FILE=c.pw("bad", "not it"))
    assert bad.returncode == 1 and bad.stdout == ""
    line = one_line_error(bad)
    assert "wrong passphrase" in line and "CERTMAIL_PASSPHRASE_FILE" in line
    assert NOT_FOR_YOU not in bad.stderr and "gpg:" not in bad.stderr
    # No passphrase at all: its own message.
    none = run(c.bob, "open", str(eml))
    assert none.returncode == 1 and "needs its passphrase" in one_line_error(none)
    assert NOT_FOR_YOU not in none.stderr


def test_not_encrypted_to_you_stays_exit_3(protected: Any, tmp_path: Path) -> None:
    c = protected
    eml = _sent(c, tmp_path)
    # Bob's home holds Bob's key only: a message for Alice alone is not for him.
    c.settings(c.alice, smtp_url=c.sink.url)
    p = run(c.alice, "send", "--to", c.alice.email, "--subject", "note to self",
            "--no-notarize", stdin=b"mine\n",
            CERTMAIL_PASSPHRASE_FILE=c.pw("alice-pw", ALICE_PW))  # fmt: skip
    assert p.returncode == 0, p.stderr
    mine = tmp_path / "mine.eml"
    mine.write_bytes(c.sink.messages[-1].data)
    other = run(c.bob, "open", str(mine), CERTMAIL_PASSPHRASE_FILE=c.pw("bob", BOB_PW))
    assert other.returncode == 3 and NOT_FOR_YOU in one_line_error(other)
    assert eml.exists()


def test_passphrase_fd_global_option_and_per_command(protected: Any, tmp_path: Path) -> None:
    c = protected
    eml = _sent(c, tmp_path, "--attach", str(_big(tmp_path)))  # streams through the pipeline
    rfd, wfd = os.pipe()
    os.write(wfd, BOB_PW.encode() + b"\n")
    os.close(wfd)
    try:
        p = subprocess.run([*CERTMAIL, "--passphrase-fd", str(rfd), "open", str(eml), "--json",
                            "--save-dir", str(tmp_path / "saved")],
                           env=c.bob.env(), capture_output=True, pass_fds=(rfd,), timeout=120,
                           check=False)  # fmt: skip
    finally:
        os.close(rfd)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["body"] == "Please sign.\n"
    assert (tmp_path / "saved" / "big.bin").read_bytes() == _big(tmp_path).read_bytes()
    # A descriptor that is not open: a clear error.
    p = run(c.bob, "--passphrase-fd", "97", "open", str(eml))
    assert p.returncode == 1 and "--passphrase-fd 97" in one_line_error(p)


def test_encrypt_only_send_unlocks_before_streaming(protected: Any, tmp_path: Path) -> None:
    c = protected
    # Unsigned: the pipeline's re-verification decrypts with Alice's key, unlocked first.
    p = run(c.alice, "send", "--to", c.bob.email, "--subject", "x", "--no-notarize", "--no-sign",
            "--json", stdin=b"x",
            CERTMAIL_PASSPHRASE_FILE=c.pw("bad", "not it"))  # fmt: skip
    assert p.returncode == 1 and "wrong passphrase" in one_line_error(p)
    assert c.sink.messages == []
    p = run(c.alice, "send", "--to", c.bob.email, "--subject", "x", "--no-notarize", "--no-sign",
            stdin=b"x", CERTMAIL_PASSPHRASE_FILE=c.pw("alice-pw", ALICE_PW))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert len(c.sink.messages) == 1


def test_agent_cache_just_works(protected: Any, tmp_path: Path) -> None:
    """A key the agent has unlocked needs no passphrase source at all."""
    c = protected
    eml = _sent(c, tmp_path)
    home = c.bob.keyring.gnupghome
    conf = home / "gpg-agent.conf"
    conf.write_text(conf.read_text().replace("default-cache-ttl 0", "default-cache-ttl 600")
                    .replace("max-cache-ttl 0", "max-cache-ttl 600"))  # fmt: skip
    _kill_agent(c.bob)
    assert run(c.bob, "open", str(eml)).returncode == 1  # not unlocked yet
    # Unlock it in the agent, as `gpg --sign` on a terminal would.
    rfd, wfd = os.pipe()
    os.write(wfd, BOB_PW.encode() + b"\n")
    os.close(wfd)
    try:
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                        "--passphrase-fd", str(rfd), "--decrypt", "--output", "/dev/null"],
                       input=_ciphertext(eml), pass_fds=(rfd,), capture_output=True,
                       check=True)  # fmt: skip
    finally:
        os.close(rfd)
    p = run(c.bob, "open", str(eml))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "Please sign.\n"


def test_keys_trust_wrong_passphrase_file_says_so(protected: Any, tmp_path: Path,
                                                   keyring_factory: Any) -> None:  # fmt: skip
    c = protected
    carol, fpr = keyring_factory("carol@example.com", "Carol")
    run(c.bob, "keys", "import", "-", stdin=carol.export_public(fpr).encode())
    bad = run(c.bob, "keys", "trust", fpr, CERTMAIL_PASSPHRASE_FILE=c.pw("bad", "not it"))
    assert bad.returncode == 1
    assert "wrong passphrase" in one_line_error(bad)
    assert "gpg" not in bad.stderr.lower() and "Bad passphrase" not in bad.stderr
    rfd, wfd = os.pipe()
    os.write(wfd, BOB_PW.encode() + b"\n")
    os.close(wfd)
    try:  # the per-command option
        p = subprocess.run([*CERTMAIL, "keys", "trust", fpr, "--passphrase-fd", str(rfd)],
                           env=c.bob.env(), capture_output=True, text=True, pass_fds=(rfd,),
                           timeout=120, check=False)  # fmt: skip
    finally:
        os.close(rfd)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == fpr


def _big(tmp_path: Path) -> Path:
    f = tmp_path / "big.bin"
    if not f.exists():
        f.write_bytes(os.urandom(3 << 20))
    return f


def _ciphertext(eml: Path) -> bytes:
    data = eml.read_bytes()
    start = data.index(b"-----BEGIN PGP MESSAGE-----")
    end = data.index(b"-----END PGP MESSAGE-----") + len(b"-----END PGP MESSAGE-----")
    return data[start:end].replace(b"\r\n", b"\n") + b"\n"


# ------------------------------------------------------------------ on a terminal


def _in_pty(args: list[str], env: dict[str, str], answers: list[str],
            timeout: float = 180) -> tuple[int, bytes]:  # fmt: skip
    """Run ``certmail ARGS`` with a new pty as its controlling terminal; answer each
    passphrase prompt with the next of ``answers``. (exit status, all it wrote)."""
    master, slave = os.openpty()

    def controlling_tty() -> None:  # in the child, after setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([*CERTMAIL, *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True,
                            preexec_fn=controlling_tty)  # fmt: skip
    os.close(slave)
    out = b""
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every process on the slave side has gone
                    break
                if not chunk:
                    break
                out += chunk
                if _prompts(out) > answered and out.endswith(b": "):
                    os.write(master, answers[answered].encode() + b"\r")
                    answered += 1
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"certmail did not finish: {out!r}")
        return proc.wait(timeout=30), out
    finally:
        os.close(master)


def test_prompt_in_a_pty_wrong_then_right(protected: Any, tmp_path: Path) -> None:
    c = protected
    eml = _sent(c, tmp_path)
    code, out = _in_pty(["open", str(eml)], c.bob.env(), ["wrong guess", BOB_PW])
    text = out.decode("utf-8", "replace")
    assert code == 0, text
    assert _prompts(out) == 2  # gpg really refused the first one
    assert "wrong passphrase (try 2 of 3)" in text
    assert "Please sign." in text
    assert BOB_PW not in text and "wrong guess" not in text  # no echo
    # The agent kept nothing: off the terminal, the key is locked again.
    again = run(c.bob, "open", str(eml))
    assert again.returncode == 1 and "needs its passphrase" in one_line_error(again)


def test_prompt_in_a_pty_three_wrong_is_a_clean_error(protected: Any, tmp_path: Path) -> None:
    c = protected
    eml = _sent(c, tmp_path)
    code, out = _in_pty(["open", str(eml)], c.bob.env(), ["one", "two", "three", BOB_PW])
    text = out.decode("utf-8", "replace")
    assert code == 1, text
    assert _prompts(out) == 3
    errors = [ln for ln in text.splitlines() if ln.startswith("certmail: error:")]
    assert len(errors) == 1 and "wrong passphrase" in errors[0] and "3 tries" in errors[0]
    assert "certmail: hint: check your passphrase" in text
    assert "Traceback" not in text and NOT_FOR_YOU not in text and "Please sign." not in text


def test_prompt_in_a_pty_for_send_and_trust(protected: Any, tmp_path: Path,
                                             keyring_factory: Any) -> None:  # fmt: skip
    c = protected
    body = tmp_path / "body.txt"
    body.write_text("Signed at the terminal.\n")
    code, out = _in_pty(["send", "--to", c.bob.email, "--subject", "tty", "--no-notarize",
                         "--body-file", str(body)], c.alice.env(), ["nope", ALICE_PW])  # fmt: skip
    assert code == 0, out.decode("utf-8", "replace")
    assert _prompts(out) == 2 and len(c.sink.messages) == 1
    carol, fpr = keyring_factory("carol@example.com", "Carol")
    run(c.bob, "keys", "import", "-", stdin=carol.export_public(fpr).encode())
    code, out = _in_pty(["keys", "trust", fpr, "--yes"], c.bob.env(), ["nope", BOB_PW])
    text = out.decode("utf-8", "replace")
    assert code == 0, text
    assert "wrong passphrase (try 2 of 3)" in text and "gpg:" not in text
    assert c.bob.keyring.key_for(fpr).validity == "full"


def test_open_ack_signs_with_the_same_passphrase(protected: Any, notary_server: Any,
                                                  tmp_path: Path) -> None:  # fmt: skip
    from tests.fixtures.cli import use_notary

    c = protected
    use_notary(c, c.alice, notary_server)
    eml = _sent(c, tmp_path, notarize=True)
    p = run(c.bob, "open", str(eml), "--ack", "--json",
            CERTMAIL_PASSPHRASE_FILE=c.pw("bob", BOB_PW))  # fmt: skip
    assert p.returncode == 0, p.stderr
    ack = json.loads(p.stdout)["ack"]
    assert ack["fingerprint"] == c.bob.keyring.key_for(c.bob.email).fingerprint
    # On a terminal: one prompt for both the decryption and the acknowledgement.
    code, out = _in_pty(["open", str(eml), "--ack", "--no-mdn"], c.bob.env(), [BOB_PW])
    assert code == 0, out.decode("utf-8", "replace")
    assert _prompts(out) == 1


def test_the_library_takes_the_way_of_asking_from_its_caller(tmp_path: Path) -> None:
    """certmail.passphrase never prompts: without a descriptor or a file it returns the
    caller's ``fallback`` (the CLI passes its terminal prompt), else nothing."""
    import certmail.passphrase as lib
    from certmail.passphrase import FdSource, FileSource, passphrase_source
    from tests.fixtures.smtp import make_settings

    def ask(request: Any) -> str:
        return "from the caller"

    settings = make_settings(tmp_path)
    assert passphrase_source(settings) is None
    assert passphrase_source(settings, fallback=ask) is ask
    assert isinstance(passphrase_source(settings, fd=7, fallback=ask), FdSource)
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    import dataclasses

    with_file = dataclasses.replace(settings, passphrase_file=pw)
    assert isinstance(passphrase_source(with_file, fallback=ask), FileSource)
    source = Path(lib.__file__).read_text()
    assert "getpass" not in source and "/dev/tty" not in source
