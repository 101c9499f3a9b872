"""The recipients' keys of a campaign: each row's encryption key looked up once (a few
gpg runs at a time), or its S/MIME certificate; with ``--locate-keys`` the keys missing
from the keyring looked up as ``certmail keys locate`` does. ``create`` checks with
these, and each run of ``send`` again."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from keys.errors import Error

from .recipients import Problem, Row

if TYPE_CHECKING:
    from ..api import Certmail
    from ..locate import Located

__all__ = ["LOCATE_THREADS", "key_checks", "locate_missing", "with_located"]


def key_checks(
    cm: Certmail,
    rows: list[Row],
    pickup_if_no_key: bool = False,
    *,
    smime: bool = False,
    sealed: bool = False,
) -> tuple[dict[str, str], list[Problem], list[str]]:
    """Each recipient's encryption key, looked up once (several gpg runs at a time); with
    ``pickup_if_no_key`` a recipient without one is listed for pickup, not a problem.

    ``smime``: each recipient's S/MIME certificate instead (its SHA-256 fingerprint),
    checked as ``send --smime`` checks it (:func:`smime_checks`, pickup too); with
    ``sealed`` too their OpenPGP key, which the acknowledgement that releases the content
    needs."""
    if smime:
        from .smime_checks import smime_checks

        return smime_checks(cm, rows, sealed=sealed, pickup_if_no_key=pickup_if_no_key)
    keyring = cm.keyring

    def lookup(r: Row) -> tuple[Row, str | Error]:
        try:
            return r, keyring.encryption_key(r.email)
        except Error as e:
            return r, e

    keys: dict[str, str] = {}
    problems = []
    pickup: list[str] = []
    if rows:  # the listing, once: not one parse of the whole keyring in each thread
        keyring.list_keys()
    with ThreadPoolExecutor(4) as pool:
        for r, got in pool.map(lookup, rows):
            if isinstance(got, Error) and pickup_if_no_key:
                pickup.append(r.email.lower())
            elif isinstance(got, Error):
                way = got.hint if isinstance(got.hint, str) and "keys trust" in got.hint else None
                problems.append(
                    Problem(
                        r.line,
                        f"no usable key for {r.email}: {got.message}",
                        f"{way or 'certmail keys import FILE (then keys trust)'}, "
                        "or --pickup-if-no-key to send them a pickup link",
                    )
                )
            else:
                keys[r.email.lower()] = got
    return keys, problems, pickup


#: Recipients looked up at a time by :func:`locate_missing` (network-bound, each
#: bounded to 15 s by the lookup itself).
LOCATE_THREADS = 4


def locate_missing(cm: Certmail, rows: list[Row]) -> dict[str, Located | Error]:
    """``keys locate``'s lookup (docs/keys.md "Finding keys": WKD, the keyserver when
    one is configured, Autocrypt) for each of ``rows`` the keyring has no key for at
    all, a few at a time; ``email -> what it found`` (imported **untrusted**, its
    source recorded in ``HOME/peers.db``, exactly as ``certmail keys locate`` does) or
    the lookup's error."""
    from ..locate import locate, missing

    keyring, home = cm.keyring, cm.settings.home
    addrs = missing(keyring, [r.email for r in rows])

    def one(addr: str) -> tuple[str, Located | Error]:
        try:
            return addr, locate(keyring, home, addr)
        except Error as e:
            return addr, e

    with ThreadPoolExecutor(LOCATE_THREADS) as pool:
        return {a.lower(): got for a, got in pool.map(one, addrs)}


def with_located(
    cm: Certmail, rows: list[Row], pickup_if_no_key: bool
) -> tuple[dict[str, str], list[Problem], list[str], list[dict[str, Any]]]:
    """:func:`key_checks`, after looking up the keys missing from the keyring: a key
    found and imported is used when it is usable (valid, trusted); one found but not
    trusted is named in the problem (or the ``located`` list) with the way to trust it."""
    keys, problems, pickup = key_checks(cm, rows, pickup_if_no_key)
    without = [r for r in rows if r.email.lower() not in keys]
    found = locate_missing(cm, without) if without else {}
    located = {a: f for a, f in found.items() if not isinstance(f, Error)}
    lines = {r.line: r.email.lower() for r in without}
    problems = [looked_up(p, found.get(lines.get(p.line, ""))) for p in problems]
    if not located:
        return keys, problems, pickup, []
    again = {r.line for r in without if r.email.lower() in located}
    k2, p2, pick2 = key_checks(cm, [r for r in without if r.line in again], pickup_if_no_key)
    keys.update(k2)
    by_addr = {r.line: r.email.lower() for r in without}
    problems = [p for p in problems if p.line not in again]
    for p in p2:
        f = located[by_addr[p.line]]
        problems.append(
            Problem(
                p.line,
                f"no usable key for {f.addr}: found {', '.join(f.fingerprints)} in "
                f"{f.describe()}; imported, not trusted",
                f"check the fingerprint with {f.addr}, then certmail keys trust {f.addr} "
                "(or --pickup-if-no-key to send them a pickup link)",
            )
        )
    pickup = sorted({*(a for a in pickup if a not in located), *pick2})
    listed = [{**f.to_json(), "used": a in k2} for a, f in sorted(located.items())]
    return keys, problems, pickup, listed


def looked_up(p: Problem, got: Located | Error | None) -> Problem:
    """A row without a key, with what the lookup answered (none found, a refusal, a
    network error) when one was made."""
    if not isinstance(got, Error):
        return p
    return Problem(p.line, f"{p.message} (looked up: {got.message})", p.hint)
