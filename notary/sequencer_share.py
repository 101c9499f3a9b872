"""One sequencer per log for the workers of ``certmail notary serve --workers N``.

Every worker runs a :class:`SharedSequencer`. The worker that holds the
``flock`` on ``.sequencer.lock`` in the notary directory (taken with
:func:`notary.leader.run_as_leader`) *leads*: it runs the group commit of
:class:`~notary.sequencer.Sequencer` and listens on ``.sequencer.sock``
beside the lock. Every other worker *follows*: its :meth:`SharedSequencer.submit`
sends the submissions over that socket (frames of :mod:`notary.sequencer_wire`)
and gets back what the leader's sequencer gave, the receipts once the batch is
durable, or the batch's error. So the batches of all workers' requests are one
group commit, with one checkpoint signature and one fsync per batch.

Fail-over: when the leader dies the kernel drops its lock, and a follower takes
it within :data:`POLL` seconds, removes the dead leader's socket and listens
on a new one. A request a follower had sent to the dead leader fails with
:class:`~notary.errors.SequencerUnavailableError` (503 with ``Retry-After``):
its entry may or may not have been committed, so it is not sent again. A
request made while no worker leads waits up to :data:`HANDOVER_SECONDS` for
one. Two sequencers at once (a takeover racing a leader that is about to die)
are safe: each batch reads the tree and appends under the storage's sequencing
lock (``BEGIN IMMEDIATE``, ``pg_advisory_xact_lock``).

The leader also tells every follower the log's new size after each batch, so
:meth:`~notary.sequencer.Sequencer.on_commit` listeners hear of every commit
in every worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from keys.errors import MalformedError
from notary import sequencer_wire as wire
from notary.errors import SequencerError, SequencerUnavailableError
from notary.leader import run_as_leader
from notary.receipt import Receipt
from notary.sequencer import Sequencer, Submission

__all__ = ["HANDOVER_SECONDS", "LOCK_NAME", "POLL", "SOCKET_NAME", "SharedSequencer"]

log = logging.getLogger("certmail.notary.sequencer")

LOCK_NAME = ".sequencer.lock"
SOCKET_NAME = ".sequencer.sock"
#: How often a follower tries to take the lock.
POLL = 0.1
#: Longest wait of a batch for the workers that fed the last one (see ``_gather``).
LINGER = 0.005
#: How long a request waits for a worker to lead before it is answered 503.
HANDOVER_SECONDS = 5.0
#: Longest path ``AF_UNIX`` takes; a longer one is reached through ``/proc/self/fd``.
_SUN_PATH = 107
_Fut = asyncio.Future[list[Receipt]]


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    length, kind, request = wire.HEADER.unpack(await reader.readexactly(wire.HEADER.size))
    if length > wire.MAX_FRAME:
        raise MalformedError(f"a sequencer frame of {length} bytes is too large")
    return kind, request, await reader.readexactly(length)


class _Out:
    """A stream's writes of one loop turn, sent as one write."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.chunks: list[bytes] = []
        self.queued = 0  # the peer's submissions waiting for their batch (leader side)
        self.answered = False  # some were answered since the last batch started

    def send(self, data: bytes) -> None:
        if not self.chunks:
            asyncio.get_running_loop().call_soon(self._flush)
        self.chunks.append(data)

    def _flush(self) -> None:
        data, self.chunks = b"".join(self.chunks), []
        if not self.writer.is_closing():
            self.writer.write(data)


class _Link:
    """A follower's connection to the leader: requests by number, answers to futures."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        committed: Callable[[int], None],
        fatal: Callable[[SequencerError], None],
    ) -> None:
        self.writer, self.out = writer, _Out(writer)
        self.committed, self.fatal = committed, fatal
        self.waiting: dict[int, _Fut] = {}
        self.number = 0
        self.closed = False
        self.task = asyncio.create_task(self._read(reader), name="sequencer-link")

    def call(self, items: Sequence[Submission]) -> _Fut:
        self.number = self.number % 0xFFFFFFFF + 1
        fut: _Fut = asyncio.get_running_loop().create_future()
        self.waiting[self.number] = fut
        self.out.send(wire.frame(wire.SUBMIT, self.number, wire.encode_submissions(items)))
        return fut

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind, number, payload = await _read_frame(reader)
                if kind == wire.COMMITTED:
                    self.committed(wire.decode_committed(payload))
                    continue
                fut = self.waiting.pop(number, None)
                if fut is None or fut.done():
                    continue
                if kind == wire.RECEIPTS:
                    fut.set_result(wire.decode_receipts(payload))
                    continue
                exc, fatal = wire.decode_error(payload)
                if fatal and isinstance(exc, SequencerError):
                    self.fatal(exc)
                fut.set_exception(exc)
        except (OSError, EOFError, MalformedError, ValueError, KeyError, TypeError) as e:
            log.warning("the sequencing worker went away: %s", e or type(e).__name__)
        finally:
            self.close()

    def close(self) -> None:
        self.closed = True
        self.writer.close()
        waiting, self.waiting = self.waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(
                    SequencerUnavailableError(
                        "the sequencing worker stopped before answering",
                        hint="retry: the entry may or may not be in the log",
                    )
                )


class SharedSequencer(Sequencer):
    """A :class:`~notary.sequencer.Sequencer` that leads or follows; see the module."""

    def __init__(self, *args: Any, directory: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.directory = directory
        self.leading = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._peers: set[_Out] = set()
        self._link: _Link | None = None
        self._connecting = asyncio.Lock()
        self._dir_fd: int | None = None
        self._arrived = asyncio.Event()  # a peer queued a submission

    def _socket_path(self) -> str:
        path = str(self.directory / SOCKET_NAME)
        if len(path.encode()) <= _SUN_PATH:
            return path
        if self._dir_fd is None:
            self._dir_fd = os.open(self.directory, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._dir_fd}/{SOCKET_NAME}"

    async def start(self) -> None:
        """Try for the lead in a thread; follow until it is ours."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=run_as_leader,
            args=(self.directory / LOCK_NAME, self._quit, POLL, self._lead_step, "sequencer"),
            kwargs={"poll": POLL},
            name="sequencer-lead",
            daemon=True,
        )
        self._thread.start()

    def _lead_step(self) -> None:
        """Called in the lead thread while this worker holds the lock."""
        if not self.leading and self._loop is not None and not self._quit.is_set():
            asyncio.run_coroutine_threadsafe(self._lead(), self._loop).result(timeout=30)

    async def _lead(self) -> None:
        if self._task is None:
            await Sequencer.start(self)
        path = self._socket_path()
        if os.path.lexists(path):
            os.unlink(path)  # a dead leader's: we hold the lock now
        self._server = await asyncio.start_unix_server(self._serve_peer, path=path)
        os.chmod(path, 0o600)
        loop = asyncio.get_running_loop()

        def committed(size: int) -> None:  # in the committing thread
            loop.call_soon_threadsafe(self._broadcast, size)

        self.on_commit(committed)
        self.leading = True
        (self.directory / LOCK_NAME).write_text(f"{os.getpid()}\n")  # who leads, for people
        if self._link is not None:
            self._link.close()
        log.info("worker %d sequences the log", os.getpid())

    def _broadcast(self, size: int) -> None:
        data = wire.frame(wire.COMMITTED, 0, wire.encode_committed(size))
        for peer in self._peers:
            peer.send(data)

    async def _serve_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out = _Out(writer)
        self._peers.add(out)
        try:
            while True:
                kind, number, payload = await _read_frame(reader)
                if kind != wire.SUBMIT:
                    raise MalformedError(f"unexpected sequencer frame kind {kind}")
                try:
                    fut = self.enqueue(wire.decode_submissions(payload))
                except Exception as e:  # not running, malformed: answered like a batch error
                    out.send(wire.frame(wire.ERROR, number, wire.encode_error(e, fatal=False)))
                    continue
                out.queued += 1
                self._arrived.set()
                fut.add_done_callback(functools.partial(self._answer, out, number))
        except (OSError, EOFError, MalformedError) as e:
            if not isinstance(e, asyncio.IncompleteReadError) or e.partial:
                log.warning("a worker's sequencer link failed: %s", e)
        finally:
            self._peers.discard(out)
            writer.close()

    def _answer(self, out: _Out, number: int, fut: _Fut) -> None:
        out.queued -= 1
        out.answered = True
        if fut.cancelled():
            e: BaseException = SequencerError("the notary is shutting down")
        elif (exc := fut.exception()) is not None:
            e = exc
        else:
            out.send(wire.frame(wire.RECEIPTS, number, wire.encode_receipts(fut.result())))
            return
        fatal = self.fatal is not None
        out.send(wire.frame(wire.ERROR, number, wire.encode_error(e, fatal=fatal)))

    answer_before_gather = True  # _gather waits for the peers its answers reach

    async def _gather(self) -> None:
        """Wait up to :data:`LINGER` for the workers whose entries the last batch held
        and who have sent nothing since: their answers go through one more process, so
        without this their clients' next requests miss the batch and form one of their
        own, and group commit splits (batches of C/4 rather than C/2 for C clients)."""
        await asyncio.sleep(0)  # let the last batch's answers run (they mark the peers)
        late = [p for p in self._peers if p.answered and p.queued == 0]
        for p in self._peers:
            p.answered = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER
        while any(p.queued == 0 for p in late) and (left := deadline - loop.time()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    async def submit(self, items: Sequence[Submission]) -> list[Receipt]:
        """The receipts of ``items`` once committed, from this worker's sequencer if it
        leads, else from the leader's (waiting up to :data:`HANDOVER_SECONDS` for one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANDOVER_SECONDS
        while True:
            if self.leading:
                return await self.enqueue(items)
            if self.fatal is not None:
                raise self.fatal
            link = await self._connect()
            if link is not None:
                self.metrics.forward(len(items))
                return await link.call(items)
            if loop.time() > deadline or self._quit.is_set():
                raise SequencerUnavailableError(
                    "no worker sequences the log", hint="retry in a moment"
                )
            await asyncio.sleep(POLL / 2)

    async def _connect(self) -> _Link | None:
        async with self._connecting:
            if self._link is not None and not self._link.closed:
                return self._link
            if self.leading:
                return None
            try:
                reader, writer = await asyncio.open_unix_connection(self._socket_path())
            except OSError:
                return None  # no leader listens yet
            self._link = _Link(reader, writer, self._committed_to, self._remote_fatal)
            return self._link

    def _remote_fatal(self, e: SequencerError) -> None:
        self.fatal = e

    async def stop(self) -> None:
        """Stop listening and sequencing, fail what waits, then give the lock up."""
        self._quit.set()
        if self._server is not None:
            self._server.close()
            for peer in self._peers:  # their waiting requests are answered 503
                peer.writer.close()
            path = self._socket_path()
            if os.path.lexists(path):
                os.unlink(path)  # ours: the lock is still held
        if self._link is not None:
            self._link.close()
        await Sequencer.stop(self)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
