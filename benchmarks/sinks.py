"""A minimal loopback SMTP sink for the benchmarks: it accepts everything and keeps
only each message's DATA size and when each recipient's message arrived, so the
numbers measure certmail, not a Python SMTP server. It reads DATA in large chunks
(``bench_send``, ``bench_export``, ``bench_campaign``: some 5 ms of CPU for a 6.7 MB
message, where aiosmtpd's line-by-line reader takes 0.2-0.4 s, as much as the relay
it is meant to measure, on the same two cores), or, with a ``pause``, slowly
(``bench_relay_slow_reader``: a recipient server that sleeps after each read of
``read_size`` bytes). It does not parse or check the message, and it takes the
first final dot in a read as the end (no client pipelines past it here)."""

from __future__ import annotations

import io
import socket
import threading
import time


class LoopbackSink:
    """An SMTP server on 127.0.0.1 (a free port), one thread per connection."""

    def __init__(self, *, read_size: int = 1 << 20, pause: float = 0.0) -> None:
        self.read_size, self.pause = read_size, pause
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.got: list[int] = []  # the DATA size of each message taken
        #: When (time.time()) each recipient's first message arrived (its final dot read).
        self.arrived: dict[str, float] = {}
        threading.Thread(target=self._serve, daemon=True).start()

    def stop(self) -> None:
        """Take no more connections (those open end with their clients)."""
        self.sock.close()

    @property
    def messages(self) -> int:
        return len(self.got)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # stopped
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _data(self, f: io.BufferedReader) -> int | None:
        """DATA up to the final dot: its size (None: the client went away)."""
        size, tail = 0, b""
        while True:
            chunk = f.read1(self.read_size)
            if not chunk:
                return None
            size += len(chunk)
            if self.pause:
                time.sleep(self.pause)
            data = tail + chunk
            if b"\r\n.\r\n" in data[-(len(chunk) + 5) :]:
                return size
            tail = data[-5:]

    def _client(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = conn.makefile("rb")
        conn.sendall(b"220 sink ESMTP\r\n")
        rcpts: list[str] = []
        try:
            while line := f.readline():
                cmd = line[:4].upper()
                if cmd == b"RCPT":
                    rcpts.append(line.split(b"<", 1)[-1].split(b">", 1)[0].decode())
                if cmd in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-sink\r\n250-SIZE 0\r\n250 8BITMIME\r\n")
                elif cmd == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    size = self._data(f)
                    if size is None:
                        return
                    self.got.append(size)
                    now = time.time()
                    for r in rcpts:
                        self.arrived.setdefault(r, now)
                    rcpts = []
                    conn.sendall(b"250 ok\r\n")
                elif cmd in (b"MAIL", b"RSET"):
                    rcpts = []
                    conn.sendall(b"250 ok\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")
        finally:
            conn.close()
