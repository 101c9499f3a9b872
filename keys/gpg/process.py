"""gpg processes whose data flows through file descriptors, not Python buffers.

:class:`GpgProcess` runs one ``gpg`` with its stdin and stdout as pipes (or
given files), drains stderr (the ``[GNUPG:]`` status lines) and, when asked, a
small stdout on threads so the process never blocks, and passes a passphrase
through its own pipe (``--passphrase-fd``), never argv. :func:`widen_pipe`
gives the pipes a 1 MiB buffer on Linux.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from keys.errors import KeyMaterialError

__all__ = [
    "GPG_BINARY",
    "GpgProcess",
    "atomic_output",
    "base_command",
    "passphrase_pipe",
    "run_gpg",
    "secret_args",
    "widen_pipe",
]

GPG_BINARY = "gpg"

_F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity


def widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Give a pipe a 1 MiB buffer (Linux; the default 64 KiB makes gpg and Python
    take turns every 64 KiB: many context switches for a large message)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)


def base_command(home: Path) -> list[str]:
    """gpg on the GNUPGHOME ``home``, non-interactive, status lines on stderr."""
    return [GPG_BINARY, "--homedir", str(home), "--batch", "--no-tty", "--status-fd", "2"]


def passphrase_pipe(passphrase: str) -> int:
    """The read end of a pipe that holds ``passphrase`` and a newline, then EOF.

    gpg reads it with ``--passphrase-fd N`` (the fd is passed to the child with
    ``pass_fds``, at the same number). The number is never 0, 1 or 2, so it can
    not collide with the data on stdin and stdout, even in a process started
    with a standard stream closed. A passphrase is far smaller than a pipe's
    buffer: the write never blocks.
    """
    rfd, wfd = os.pipe()
    try:
        _write_all(wfd, passphrase.encode("utf-8") + b"\n")
    finally:
        os.close(wfd)
    if rfd < 3:
        high = fcntl.fcntl(rfd, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(rfd)
        rfd = high
    return rfd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def secret_args(passphrase: str | None, fd: int | None) -> list[str]:
    """How gpg gets the secret key: the passphrase from ``fd`` (loopback pinentry),
    or, with none, never a pinentry (the agent's cache or an unprotected key)."""
    if passphrase is None or fd is None:
        return ["--pinentry-mode", "error"]
    return ["--pinentry-mode", "loopback", "--passphrase-fd", str(fd)]


def run_gpg(
    home: Path,
    args: Sequence[str],
    *,
    stdin: bytes = b"",
    secret: bool = False,
    passphrase: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run gpg to completion with colon listings (small commands: listings, key
    management). With ``secret``, the passphrase (if any) goes through its own
    pipe with loopback pinentry; without one, gpg may not prompt."""
    cmd = [*base_command(home), "--with-colons", "--fixed-list-mode"]
    fd = passphrase_pipe(passphrase) if secret and passphrase is not None else None
    try:
        if secret:
            cmd += secret_args(passphrase, fd)
        cmd += list(args)
        return subprocess.run(
            cmd, input=stdin, capture_output=True, check=False, pass_fds=() if fd is None else (fd,)
        )
    finally:
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(dst: Path) -> Iterator[Path]:
    """A temporary file next to ``dst`` for gpg to write, renamed to ``dst`` only on success."""
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


class GpgProcess:
    """A gpg process whose data flows through file descriptors, not Python buffers.

    Started by :meth:`keys.gpg.Keyring.spawn`. ``stdin``/``stdout`` are pipes (or
    the files given); stderr, which carries the ``[GNUPG:]`` status lines, and a
    small stdout (``collect_stdout=True``) are drained by threads so the
    process never blocks on them. The passphrase goes through its own pipe
    (``--passphrase-fd``), never argv.
    """

    def __init__(self, cmd: list[str], *, stdin: int | IO[bytes] | None,
                 stdout: int | IO[bytes] | None, passphrase: str | None,
                 collect_stdout: bool) -> None:  # fmt: skip
        rfd = passphrase_pipe(passphrase) if passphrase is not None else -1
        if rfd >= 0:
            cmd = [cmd[0], *secret_args(passphrase, rfd), *cmd[1:]]
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                pass_fds=(rfd,) if rfd >= 0 else (),
            )
        except OSError as e:
            raise KeyMaterialError(f"cannot run gpg: {e}",
                                   hint="install GnuPG 2.2 or later") from e  # fmt: skip
        finally:
            if rfd >= 0:
                os.close(rfd)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                widen_pipe(pipe.fileno())
        self._stderr: list[bytes] = []
        self._stdout: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stderr, self._stderr), daemon=True)
        ]
        if collect_stdout:
            self._threads.append(
                threading.Thread(
                    target=self._drain, args=(self.proc.stdout, self._stdout), daemon=True
                )
            )
        for t in self._threads:
            t.start()

    @classmethod
    def start(
        cls,
        home: Path,
        args: Sequence[str],
        *,
        stdin: int | IO[bytes] | None = None,
        stdout: int | IO[bytes] | None = None,
        passphrase: str | None = None,
        secret: bool = False,
        collect_stdout: bool = False,
    ) -> GpgProcess:
        """gpg on ``home`` with ``args``. With ``secret`` and no passphrase, gpg may not
        prompt (``--pinentry-mode error``)."""
        cmd = [*base_command(home), "--yes"]
        if secret and passphrase is None:
            cmd += secret_args(None, None)
        return cls([*cmd, *args], stdin=stdin, stdout=stdout, passphrase=passphrase,
                   collect_stdout=collect_stdout)  # fmt: skip

    @staticmethod
    def _drain(f: IO[bytes] | None, into: list[bytes]) -> None:
        if f is None:
            return
        with f:
            while chunk := f.read(65536):
                into.append(chunk)

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.proc.stdout

    def wait(self) -> tuple[int, str, bytes]:
        """Exit status, stderr (status lines included) and collected stdout."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        code = self.proc.wait()
        for t in self._threads:
            t.join()
        return code, b"".join(self._stderr).decode("utf-8", "replace"), b"".join(self._stdout)

    def kill(self) -> None:
        """Stop the process (after a failure elsewhere in a pipeline)."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.wait()
