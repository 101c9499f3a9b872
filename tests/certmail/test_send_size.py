"""Issue 10 item 11: big messages and the outbox.

A real notary relay (subprocess) advertising a small ``max_message_bytes``:
an attachment it cannot take is refused before it is scanned or encrypted,
with how much fits and ``--via smtp`` as the way out, and nothing is stored; a
compressible one that fits once compressed goes through. The sealed size per
attachment byte is measured for random and for text data. ``outbox list``
shows every copy the outbox keeps (refused ones too), ``outbox remove``
deletes one.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certmail.api import Certmail
from certmail.compose import NOT_SCANNED, Headers, ScanRecord, new_message_id, now_date
from certmail.msgsize import RATIO_UNCOMPRESSED, estimate, should_compress
from certmail.seal import seal
from tests.fixtures.cli import CERTMAIL, clean_env, one_line_error, run, send_args
from tests.fixtures.notary import free_port
from tests.fixtures.relay import start_relay

LIMIT = 400_000


@pytest.fixture
def small_relay(tmp_path: Path, correspondents: Any) -> Iterator[dict[str, str]]:
    """A notary relay taking messages of at most LIMIT bytes; Alice's environment for it."""
    relay = start_relay(
        tmp_path / "notary",
        correspondents,
        relay_retry_initial=0.2,
        relay_max_message_bytes=LIMIT,
    )
    yield relay.env
    relay.stop()


def _alice(c: Any, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [*CERTMAIL, *args],
        input=b"See attached.\n",
        capture_output=True,
        env=clean_env(c.alice.home, **env),
        check=False,
        timeout=180,
    )
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())


def _text(n: int) -> bytes:
    rng = random.Random(7)
    words = [
        "contract",
        "party",
        "hereby",
        "agreement",
        "shall",
        "clause",
        "notice",
        "payment",
        "delivery",
        "terms",
        "annex",
        "signed",
        "date",
        "witness",
    ]
    out = bytearray()
    while len(out) < n:
        out += (" ".join(rng.choice(words) for _ in range(11)) + "\n").encode()
    return bytes(out[:n])


def test_too_large_for_the_relay_is_refused_before_scanning(
    correspondents: Any, small_relay: dict[str, str], tmp_path: Path
) -> None:
    c = correspondents
    big = tmp_path / "scan.bin"
    big.write_bytes(os.urandom(LIMIT))
    # A configured clamd that does not answer would make the scan exit 5: the size
    # check comes first.
    p = _alice(
        c,
        {**small_relay, "CERTMAIL_CLAMD": f"tcp://127.0.0.1:{free_port()}"},
        "send",
        "--to",
        c.bob.email,
        "--subject",
        "Scan",
        "--attach",
        str(big),
    )
    assert p.returncode == 1, p.stderr
    err = one_line_error(p)
    assert "the notary relay takes at most 0.4 MB" in err
    assert "attachments of up to about 0.2 MB in total fit" in err
    assert "--via smtp" in p.stderr
    lst = _alice(c, small_relay, "outbox", "list", "--json")
    assert json.loads(lst.stdout) == {"messages": [], "acks": []}
    assert not any((c.alice.home / "outbox").iterdir())
    assert c.sink.messages == []


def test_a_compressible_attachment_fits_once_compressed(
    correspondents: Any, small_relay: dict[str, str], tmp_path: Path
) -> None:
    c = correspondents
    letter = tmp_path / "minutes.txt"
    letter.write_bytes(_text(LIMIT))  # 1.88x uncompressed: would not fit
    assert estimate(0, [letter], compress=False) > LIMIT
    p = _alice(
        c,
        small_relay,
        "send",
        "--to",
        c.bob.email,
        "--subject",
        "Minutes",
        "--attach",
        str(letter),
        "--json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["via"] == "relay" and out["size"] < LIMIT
    opened = tmp_path / "in"
    raw = tmp_path / "in.eml"
    raw.write_bytes(Path(out["path"]).read_bytes())
    o = run(c.bob, "open", str(raw), "--save-dir", str(opened), "--no-ack")
    assert o.returncode == 0, o.stderr
    assert (opened / "minutes.txt").read_bytes() == letter.read_bytes()


@pytest.mark.parametrize(("kind", "most"), [("random", 1.5), ("text", 0.5)])
def test_sealed_size_per_attachment_byte(
    correspondents: Any, tmp_path: Path, kind: str, most: float
) -> None:
    """Before: 1.88 for both (base64 inside, armor outside, no compression)."""
    c = correspondents
    n = 2_000_000
    f = tmp_path / f"{kind}.bin"
    f.write_bytes(os.urandom(n) if kind == "random" else _text(n))
    # Text compresses: always. Random data only when it would not fit otherwise
    # (compression costs CPU).
    assert should_compress(2, [f], None) is (kind == "text")
    assert should_compress(2, [f], 3_000_000)
    h = Headers(
        from_addr=c.alice.email,
        to=(c.bob.email,),
        cc=(),
        subject="Size",
        message_id=new_message_id("example.org"),
        date=now_date(),
        from_name="Alice",
    )
    with Certmail(c.alice.settings) as cm:
        plain = seal(cm.keyring, tmp_path / "w0", h, b"x\n", [(f, ScanRecord(NOT_SCANNED))])
        sealed = seal(
            cm.keyring, tmp_path / "w1", h, b"x\n", [(f, ScanRecord(NOT_SCANNED))], compress=True
        )
    before, ratio = plain.size / n, sealed.size / n
    print(f"{kind}: sealed/attachment {before:.3f} -> {ratio:.3f}")
    assert abs(before - RATIO_UNCOMPRESSED) < 0.05
    assert ratio < most
    assert sealed.size <= estimate(2, [f], compress=True)


def test_outbox_lists_refused_copies_and_removes_them(correspondents: Any) -> None:
    c = correspondents
    c.sink.fail("data", 554, "content rejected")
    p = run(
        c.alice, *send_args(c.bob.email, "Refused", "--via", "smtp", "--no-notarize"), stdin=b"x\n"
    )
    assert p.returncode == 1, p.stderr
    lst = json.loads(run(c.alice, "outbox", "list", "--json").stdout)
    (m,) = lst["messages"]
    assert m["status"] == "failed"
    copy = c.alice.home / "outbox" / f"{m['sha256']}.eml"
    assert copy.is_file()
    assert m["sha256"][:16] in run(c.alice, "outbox", "list").stdout

    p = run(c.alice, "outbox", "remove", m["sha256"][:12])
    assert p.returncode == 2 and "--yes" in p.stderr  # off a terminal: --yes is required
    assert copy.is_file()
    p = run(c.alice, "outbox", "remove", "0123456789abcdef", "--yes")
    assert p.returncode == 6, p.stderr
    p = run(c.alice, "outbox", "remove", m["sha256"][:12], "--yes")
    assert p.returncode == 0, p.stderr
    assert not copy.exists()
    assert json.loads(run(c.alice, "outbox", "list", "--json").stdout)["messages"] == []
    assert json.loads(run(c.alice, "outbox", "list", "--all", "--json").stdout)["messages"] == []

    # A copy stored but never recorded (a send killed inside the ledger's enqueue).
    stray = c.alice.home / "outbox" / f"{'cd' * 32}.eml"
    stray.write_bytes(b"x")
    lst = json.loads(run(c.alice, "outbox", "list", "--json").stdout)
    assert lst["orphans"] == [{"file": str(stray), "size": 1}]
    assert "orphan" in run(c.alice, "outbox", "list").stdout
    p = run(c.alice, "outbox", "remove", "cdcdcdcd", "--yes")
    assert p.returncode == 0, p.stderr
    assert not stray.exists()
    assert "orphans" not in json.loads(run(c.alice, "outbox", "list", "--json").stdout)
