"""An IMAP mailbox (RFC 3501 / RFC 9051) through imapclient, over verified TLS only.

The mailbox is opened with EXAMINE (read-only: nothing can be deleted,
moved or flagged) unless ``--mark-read`` asked to set ``\\Seen``. Ids are
``UIDVALIDITY.UID`` (RFC 3501 §2.3.1.1: a UID names a message only together with
the mailbox's UIDVALIDITY): an id listed before the mailbox was recreated or
renumbered is refused, never taken for the message that now has its UID. A
message is copied in chunks (``BODY.PEEK[]<offset.length>``) to a
temporary file, never held whole; its size (``RFC822.SIZE``) and header
(``BODY.PEEK[HEADER]``) are fetched first and must be those of what arrived,
so a message that changes between FETCHes is refused. Every command is
bounded (:mod:`.guard`).
"""

from __future__ import annotations

import imaplib
import ssl
from pathlib import Path
from typing import Any

from imapclient.exceptions import IMAPClientError, LoginError, ProtocolError

from keys.errors import Error, MalformedError, NotFoundError, TemporaryError, VerificationError

from ..mailfile import MAX_OPEN_SIZE
from .guard import GuardedIMAPClient, Limits
from .imapurl import ImapUrl
from .source import Item
from .spool import Spool

__all__ = ["CHUNK", "ImapSource"]

CHUNK = 1 << 20
_CA_HINT = "for a private CA: add ?ca=FILE to the URL or set CERTMAIL_IMAP_CA=FILE"


class ImapSource:
    """One mailbox on an IMAP server, logged in."""

    kind = "IMAP"

    def __init__(
        self, url: ImapUrl, password: str, *, writable: bool = False, limits: Limits | None = None
    ) -> None:
        self.url = url
        self.limits = limits or Limits()
        self._c = _guarded(lambda: _connect(url, self.limits), url)
        try:
            _guarded(lambda: self._c.login(url.user, password), url)
            selected = _guarded(
                lambda: self._c.select_folder(url.mailbox, readonly=not writable), url
            )
            self.uidvalidity = _uidvalidity(selected, url)
        except BaseException:
            self.close()
            raise

    def items(self, *, unread: bool = False) -> list[Item]:
        def run() -> list[Item]:
            uids = self._c.search(["UNSEEN"] if unread else ["ALL"])
            out: list[Item] = []
            for i in range(0, len(uids), 500):
                got = self._c.fetch(uids[i : i + 500], ["FLAGS", "RFC822.SIZE"])
                for uid in uids[i : i + 500]:
                    d = got.get(uid)
                    if d is None:
                        continue
                    seen = b"\\Seen" in tuple(d.get(b"FLAGS", ()))
                    size = _int(d.get(b"RFC822.SIZE"))
                    out.append(Item(f"{self.uidvalidity}.{uid}", not seen, size))
            return out

        items: list[Item] = _guarded(run, self.url)
        return items

    def copy(self, msg_id: str, dest: Path) -> Path:
        uid = self._uid(msg_id)
        size, header = _guarded(lambda: self._head(uid), self.url)
        if size > MAX_OPEN_SIZE:
            raise MalformedError(f"message {uid} is larger than {MAX_OPEN_SIZE >> 20} MB")
        out = Spool(dest)
        try:
            first = _guarded(lambda: self._stream(uid, out), self.url)
        finally:
            out.close()
        if out.size != size or not first.startswith(header[: len(first)]):
            dest.unlink(missing_ok=True)
            raise MalformedError(
                f"the IMAP server sent message {uid} changed between FETCHes"
                f" (RFC822.SIZE {size:,} bytes, {out.size:,} arrived,"
                f" header {'the same' if first.startswith(header[: len(first)]) else 'different'})"
                "; nothing was kept"
            )
        return dest

    def _uid(self, msg_id: str) -> int:
        """The UID an id names, once its UIDVALIDITY is the mailbox's."""
        validity, dot, uid = msg_id.partition(".")
        if not (dot and _number(validity) and _number(uid)):
            raise NotFoundError(
                f"{msg_id[:40]!r} is not an IMAP message id (UIDVALIDITY.UID)",
                hint="certmail inbox list (the id column)",
            )
        if int(validity) != self.uidvalidity:
            raise NotFoundError(
                f"message id {msg_id} is out of date: {self.url.mailbox} was recreated or"
                f" renumbered since it was listed (UIDVALIDITY {validity}, now"
                f" {self.uidvalidity}), and UID {uid} may name another message now;"
                " nothing was opened",
                hint="certmail inbox list (for the current ids)",
            )
        return int(uid)

    def _head(self, uid: int) -> tuple[int, bytes]:
        got = self._c.fetch([uid], ["RFC822.SIZE", "BODY.PEEK[HEADER]"]).get(uid)
        if got is None:
            raise NotFoundError(f"no message with UID {uid} in {self.url.mailbox}")
        header = got.get(b"BODY[HEADER]")
        size = _int(got.get(b"RFC822.SIZE"))
        if not isinstance(header, bytes) or size is None:
            raise MalformedError(f"the IMAP server sent no size or header for UID {uid}")
        return size, header

    def _stream(self, uid: int, out: Spool) -> bytes:
        """Copy the message in chunks; return its first chunk (the header is in it)."""
        first = b""
        offset = 0
        while True:
            key = f"BODY[]<{offset}>".encode()
            got = self._c.fetch([uid], [f"BODY.PEEK[]<{offset}.{CHUNK}>"]).get(uid)
            data = got.get(key) if got else None
            if data is None and got is not None:
                data = got.get(b"BODY[]")  # a server may drop the origin when it is 0
            if not isinstance(data, bytes):
                if got is None:
                    raise MalformedError(f"message {uid} went away while it was read")
                data = b""
            if len(data) > CHUNK:
                raise MalformedError(f"the IMAP server sent more than the {CHUNK:,} bytes asked")
            if offset == 0:
                first = data
            out.write(data)
            offset += len(data)
            if len(data) < CHUNK:
                return first

    def mark_read(self, msg_id: str) -> None:
        uid = self._uid(msg_id)
        _guarded(lambda: self._c.add_flags([uid], [b"\\Seen"]), self.url)

    def close(self) -> None:
        try:
            self._c.logout()
        except Exception:  # already gone: nothing left to close cleanly
            try:
                self._c.shutdown()
            except Exception:  # noqa: S110 (the socket is closed either way)
                pass


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) else None


def _number(text: str) -> bool:
    """A non-zero 32-bit unsigned number (RFC 3501 nz-number), written without leading 0."""
    return text.isascii() and text.isdigit() and text[0] != "0" and int(text) < 1 << 32


def _uidvalidity(selected: Any, url: ImapUrl) -> int:
    """The mailbox's UIDVALIDITY, from the SELECT/EXAMINE answer (required: RFC 3501)."""
    v = selected.get(b"UIDVALIDITY") if isinstance(selected, dict) else None
    if not isinstance(v, int) or not 0 < v < 1 << 32:
        raise MalformedError(
            f"the IMAP server {url.host}:{url.port} gave {url.mailbox} no valid UIDVALIDITY"
        )
    return v


def _context(url: ImapUrl) -> ssl.SSLContext:
    """The server certificate is verified (system store, or the private CA file)."""
    try:
        ctx = ssl.create_default_context(cafile=str(url.ca) if url.ca else None)
    except (OSError, ssl.SSLError) as e:
        raise Error(f"cannot read the CA file {url.ca}: {e}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _connect(url: ImapUrl, limits: Limits) -> GuardedIMAPClient:
    ctx = _context(url)
    c = GuardedIMAPClient(
        url.host,
        limits=limits,
        port=url.port,
        ssl=url.tls == "implicit",
        ssl_context=ctx,
        timeout=limits.seconds,
    )
    if url.tls == "starttls":
        if b"STARTTLS" not in c.capabilities():
            c.shutdown()
            raise Error(
                f"{url.host}:{url.port} offers no STARTTLS: certmail does not log in"
                " over a connection that is not encrypted",
                hint="use imaps://... (implicit TLS, port 993)",
            )
        c.starttls(ctx)
    return c


def _guarded(fn: Any, url: ImapUrl) -> Any:
    """Run an IMAP step; what can go wrong becomes one clear certmail error."""
    where = f"{url.host}:{url.port}"
    try:
        return fn()
    except Error:
        raise
    except ssl.SSLCertVerificationError as e:
        raise VerificationError(
            f"the IMAP server {where} presented a certificate that does not verify"
            f" ({e.verify_message})",
            hint=_CA_HINT,
        ) from None
    except GuardedIMAPClient.AbortError as e:
        raise MalformedError(f"the IMAP server {where} misbehaved: {e}") from None
    except LoginError:
        raise Error(
            f"the IMAP server {where} refused the login of {url.user}",
            hint="check the password (CERTMAIL_IMAP_PASSWORD_FILE) and the user in the URL",
        ) from None
    except (imaplib.IMAP4.error, ProtocolError, IMAPClientError, ValueError) as e:
        text = str(e)
        raise MalformedError(f"the IMAP server {where} answered: {text[:200]}") from None
    except TimeoutError:
        raise TemporaryError(f"the IMAP server {where} did not answer in time") from None
    except (ssl.SSLError, OSError) as e:
        raise TemporaryError(
            f"cannot talk to the IMAP server {where}: {e}",
            hint="check the host and port in the URL (imaps: 993, imap with STARTTLS: 143)",
        ) from None
