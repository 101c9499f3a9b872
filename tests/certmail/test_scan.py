"""certmail.scan against a real private clamd (tests/fixtures/clamd.py)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from certmail import scan
from certmail.scan import Scanner, ScanVerdict
from keys.errors import Error, NotFoundError, TemporaryError
from tests.fixtures.clamd import EICAR, start_clamd, stop_clamd


def test_version_names_engine(clamd_socket: str) -> None:
    assert Scanner(clamd_socket).version().startswith("ClamAV ")


def test_eicar_file_is_detected(clamd_socket: str, tmp_path: Path) -> None:
    f = tmp_path / "eicar.com"
    f.write_bytes(EICAR)
    verdict = Scanner(clamd_socket).scan_file(f)
    assert isinstance(verdict, ScanVerdict)
    assert not verdict.clean
    assert verdict.signature is not None and "Eicar-Test-Signature" in verdict.signature
    assert verdict.engine is not None and verdict.engine.startswith("ClamAV ")


def test_eicar_bytes_are_detected(clamd_socket: str) -> None:
    verdict = Scanner(clamd_socket).scan_bytes(b"hello " + EICAR + b" world")
    assert not verdict.clean and verdict.signature


def test_clean_file_is_clean(clamd_socket: str, tmp_path: Path) -> None:
    f = tmp_path / "letter.txt"
    f.write_bytes(b"Dear Sir or Madam,\n" * 1000)
    verdict = Scanner(clamd_socket).scan_file(f)
    assert verdict.clean and verdict.signature is None
    assert verdict.engine == Scanner(clamd_socket).version()


def test_empty_file_is_clean(clamd_socket: str, tmp_path: Path) -> None:
    f = tmp_path / "empty"
    f.write_bytes(b"")
    assert Scanner(clamd_socket).scan_file(f).clean


def test_eicar_after_many_chunks_is_detected(clamd_socket: str, tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    with open(f, "wb") as out:
        out.write(os.urandom(3 * scan.CHUNK_SIZE + 12345))
        out.write(EICAR)
    verdict = Scanner(clamd_socket).scan_file(f)
    assert not verdict.clean


def test_missing_file(clamd_socket: str, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        Scanner(clamd_socket).scan_file(tmp_path / "nope")


def test_clamd_not_running_is_temporary(tmp_path: Path) -> None:
    scanner = Scanner(f"unix://{tmp_path}/no-clamd.sock")
    with pytest.raises(TemporaryError) as e:
        scanner.scan_bytes(b"x")
    assert e.value.exit_code == 5 and e.value.hint
    # A socket that exists but nobody accepts on.
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()
    with pytest.raises(TemporaryError):
        Scanner(f"unix://{dead}").version()
    # Nothing listens on this TCP port once the socket is closed.
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    t.close()
    with pytest.raises(TemporaryError):
        Scanner(f"tcp://127.0.0.1:{port}", timeout=5).scan_bytes(b"x")


def test_stream_size_limit_is_a_clear_error() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="c", dir="/tmp"))
    proc, sock = start_clamd(workdir, stream_max="1M")
    try:
        scanner = Scanner(f"unix://{sock}")
        assert scanner.scan_bytes(b"small").clean
        with pytest.raises(Error) as e:
            scanner.scan_bytes(os.urandom(3 * 1024 * 1024))
        assert "larger than clamd accepts" in e.value.message
        assert "StreamMaxLength" in (e.value.hint or "")
        assert not isinstance(e.value, TemporaryError)
    finally:
        stop_clamd(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("address", ["", "http://x", "unix://", "tcp://:3310", "clamd.sock"])
def test_bad_address(address: str) -> None:
    with pytest.raises(Error):
        Scanner(address)


def test_addresses_parse() -> None:
    assert scan.parse_address("unix:///run/clamav/clamd.ctl")[1] == "/run/clamav/clamd.ctl"
    assert scan.parse_address("/run/clamav/clamd.ctl")[1] == "/run/clamav/clamd.ctl"
    assert scan.parse_address("tcp://127.0.0.1:3310")[1] == ("127.0.0.1", 3310)
    assert scan.parse_address("tcp://scanner.internal")[1] == ("scanner.internal", 3310)


def test_from_settings(clamd_socket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = Scanner.from_settings(clamd_socket)
    assert explicit is not None and explicit.address == clamd_socket
    monkeypatch.setattr(scan, "DEFAULT_SOCKETS", (tmp_path / "absent.ctl",))
    assert Scanner.from_settings(None) is None
    path = clamd_socket.removeprefix("unix://")
    monkeypatch.setattr(scan, "DEFAULT_SOCKETS", (tmp_path / "absent.ctl", Path(path)))
    found = Scanner.from_settings(None)
    assert found is not None and found.address == clamd_socket
    assert found.scan_bytes(EICAR).signature
