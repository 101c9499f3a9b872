"""The pieces that keep large messages out of memory: the staged DATA reader, the byte
budget, the chunked dot-stuffing and the spool's size query (issue 10 item 5)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from notary.relay.budget import ByteBudget
from notary.relay.incoming import CANNOT_STORE, TOO_LONG, TOO_MUCH, Receiver, receive
from notary.relay.smtp_client import stuffed_chunks
from notary.storage import QueueWrite, SpoolItem, Storage
from tests.notary.storage_backends import BACKENDS, open_backend


async def _read(wire: bytes, directory: Path, limit: int | None = None) -> Receiver:
    reader = asyncio.StreamReader(limit=1001)
    reader.feed_data(wire)
    reader.feed_eof()
    r = Receiver(directory, limit)
    await receive(reader, r)
    assert await reader.read() == b"QUIT\r\n"  # nothing read beyond the final dot
    return r


def test_receiver_unstuffs_hashes_and_keeps_the_head(tmp_path: Path) -> None:
    body = b"From: a@a.test\r\n\r\n" + b"..dot\r\n" + b"x" * 998 + b"\r\n" + b".\r\n"[:0]
    wire = body + b".\r\nQUIT\r\n"
    r = asyncio.run(_read(wire, tmp_path))
    got = r.finish()
    exact = body.replace(b"\r\n..", b"\r\n.")
    assert got.path is None  # small: it never left memory
    assert got.read() == exact and got.size == len(exact)
    assert got.sha256 == hashlib.sha256(exact).hexdigest()
    assert got.head == exact and got.bare is None and not got.nul
    got.remove()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("line", "bare", "nul"),
    [(b"a\nb\r\n", "LF", False), (b"a\rb\r\n", "CR", False), (b"a\0b\r\n", None, True)],
)
def test_receiver_notes_bare_line_endings_and_nul(
    tmp_path: Path, line: bytes, bare: str | None, nul: bool
) -> None:
    got = asyncio.run(_read(b"h: v\r\n\r\n" + line + b".\r\nQUIT\r\n", tmp_path)).finish()
    assert (got.bare, got.nul) == (bare, nul)


def test_receiver_reads_to_the_real_end_of_data(tmp_path: Path) -> None:
    # "<LF>.<LF>" ends nothing: what follows it is data, not a command.
    smuggled = b"h: v\r\n\r\nhi\n.\nMAIL FROM:<x>\r\nRCPT TO:<y>\r\n"
    got = asyncio.run(_read(smuggled + b".\r\nQUIT\r\n", tmp_path)).finish()
    assert got.bare == "LF" and got.read() == smuggled


def test_receiver_stages_a_large_message_on_disk(tmp_path: Path) -> None:
    body = b"h: v\r\n\r\n" + (b"." + b"q" * 70 + b"\r\n") * 20_000  # 1.4 MB, dots stuffed
    r = asyncio.run(_read(body + b".\r\nQUIT\r\n", tmp_path))
    got = r.finish()
    exact = body.replace(b"\r\n.", b"\r\n")
    assert got.path is not None and got.path.parent == tmp_path and got.data is None
    assert got.read() == exact and got.sha256 == hashlib.sha256(exact).hexdigest()
    assert got.head == exact[: len(got.head)] and len(got.head) == 256 * 1024 + 4
    got.remove()
    assert list(tmp_path.iterdir()) == []


def test_receiver_over_the_limit_or_an_overlong_line(tmp_path: Path) -> None:
    r = asyncio.run(_read(b"h: v\r\n\r\n" + b"y" * 500 + b"\r\n.\r\nQUIT\r\n", tmp_path, 100))
    assert r.refusal() == TOO_MUCH
    r.discard()
    r = asyncio.run(_read(b"h: v\r\n\r\n" + b"y" * 5000 + b"\r\n.\r\nQUIT\r\n", tmp_path))
    assert r.refusal() == TOO_LONG
    r.discard()
    assert list(tmp_path.iterdir()) == []


def test_budget_lets_small_through_and_large_one_at_a_time() -> None:
    async def main() -> list[str]:
        budget = ByteBudget(100, small=10)
        order: list[str] = []

        async def job(name: str, n: int, hold: float) -> None:
            async with budget.hold(n):
                order.append(f"+{name}")
                await asyncio.sleep(hold)
                order.append(f"-{name}")

        await asyncio.gather(
            job("a", 80, 0.05), job("b", 80, 0.0), job("small", 5, 0.0), job("huge", 500, 0.0)
        )
        assert budget.held == 0
        return order

    order = asyncio.run(main())
    assert order.index("-a") < order.index("+b") < order.index("-b") < order.index("+huge")
    assert order.index("+small") < order.index("-a")  # small ones never wait


def test_stuffed_chunks_match_whole_message_stuffing() -> None:
    msg = b"".join(b".%d line\r\n" % i if i % 3 == 0 else b"x%d\r\n" % i for i in range(5000))
    whole = msg.replace(b"\r\n.", b"\r\n..")
    whole = b"." + whole if msg.startswith(b".") else whole
    for chunk in (7, 64, 1000, 1 << 20):
        assert b"".join(stuffed_chunks(msg, chunk)) == whole
    long_line = b"a" * 50 + b".b\r\n.c\r\n"  # a chunk boundary inside a line, before a dot
    assert b"".join(stuffed_chunks(long_line, 50)) == b"a" * 50 + b".b\r\n..c\r\n"


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from open_backend(request.param, tmp_path)


def test_spooled_size_without_reading(storage: Storage) -> None:
    t0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    item = SpoolItem("ab" * 32, "<1@x>", 1, "a@x.test", ("b@x.test",), b"z" * 1234, t0, "n", 0)
    (sid,) = storage.queue_write(QueueWrite(spool=[item]))
    assert storage.spooled_size(sid) == 1234
    assert storage.spooled_size(sid + 999) is None


def test_receiver_on_a_full_disk_reads_to_the_end_then_451(tmp_path: Path) -> None:
    # /dev/full answers every write with ENOSPC, as a full disk would.
    async def main() -> Receiver:
        reader = asyncio.StreamReader(limit=1001)
        reader.feed_data(b"h: v\r\n\r\n" + (b"z" * 900 + b"\r\n") * 1300 + b".\r\nQUIT\r\n")
        reader.feed_eof()
        r = Receiver(tmp_path, None)
        r._file = open("/dev/full", "wb", buffering=0)
        await receive(reader, r)
        assert r.write_failed  # already while the data streamed in (over 1 MiB)
        assert await reader.read() == b"QUIT\r\n"  # the data was not taken as commands
        return r

    r = asyncio.run(main())
    assert r.refusal() == CANNOT_STORE
    r.discard()
