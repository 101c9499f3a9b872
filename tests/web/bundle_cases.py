"""Every tampered bundle tests/certmail/test_bundle.py builds, as a list of cases, over the
same ``world`` fixture (a real notary, two bundles): the shared input of the tests that
compare the browser's verifier with ``certmail proof verify``.

The helpers are the ones test_bundle.py uses (tests/fixtures/bundle_world.py: ``flip``,
``zip_members``, ``resign``, ``with_zip_feature``), so a new tampering there is one line here.
"""

from __future__ import annotations

import random
import re
import struct
from dataclasses import dataclass

from certmail.bundle import MAX_MEMBER_SIZE, read_members, write_members
from tests.fixtures.bundle_world import (
    HOSTILE_NAMES,
    MESSAGE,
    World,
    flip,
    mallory_forgery,
    with_zip_feature,
    zip_members,
)

#: The members the Python verifier regenerates and compares, which the page cannot
#: (docs/web.md): tampering with one of them only is caught by the CLI, not the page.
DOCUMENTS = ("certificate.html", "certificate.pdf", "VERIFY.txt")


def browser_cannot(name: str) -> bool:
    """A member only the CLI checks: the documents, and (bundle format 2) the OpenPGP keys
    under keys/, which need GnuPG."""
    return name in DOCUMENTS or name.startswith("keys/")


@dataclass(frozen=True)
class Case:
    """One bundle to verify: a name for messages, its bytes, whether to pass the trusted
    notary key and TSA root, and whether only a document member differs."""

    name: str
    bundle: bytes
    trusted: bool
    documents_only: bool = False


def flipped_cases(world: World, *, random_flips: int = 60) -> list[Case]:
    """test_every_file_many_positions (40 spread positions of every file, trusted on every
    other one) and a seeded sample of test_any_flipped_byte_anywhere_is_caught."""
    files = read_members(world.bundle)
    out = []
    for name, content in files.items():
        n = len(content)
        positions = sorted({0, n - 1, *range(0, n, max(1, n // 40))})
        for i, pos in enumerate(positions):
            out.append(
                Case(
                    f"{name}@{pos}",
                    flip(files, name, pos, 0x01 << (i % 8)),
                    i % 2 == 0,
                    browser_cannot(name),
                )
            )
    rng = random.Random(13)
    names = sorted(files)
    for _ in range(random_flips):
        name = rng.choice(names)
        pos = rng.randrange(len(files[name]))
        out.append(
            Case(
                f"{name}@{pos}^random",
                flip(files, name, pos, rng.randrange(1, 256)),
                rng.random() < 0.5,
                browser_cannot(name),
            )
        )
    return out


def structural_cases(world: World) -> list[Case]:
    """Evidence swapped between bundles, checkpoints by another key, hostile names,
    duplicates, bombs, garbage and zip features (the rest of test_bundle.py)."""
    a, b = read_members(world.bundle), read_members(world.other)
    out = []
    stem = "evidence/01-SubmissionAcceptance"
    for ext in (".json", ".tlog-proof", ".tsr"):
        out.append(Case(f"swapped {ext}", write_members({**a, stem + ext: b[stem + ext]}), True))
    mixed = {k: v for k, v in a.items() if not k.startswith("evidence/")}
    mixed.update({k: v for k, v in b.items() if k.startswith("evidence/")})
    out.append(Case("other evidence set", write_members(mixed), True))
    out.append(
        Case(
            "swapped certificate.html",
            write_members({**a, "certificate.html": b["certificate.html"]}),
            True,
            documents_only=True,
        )
    )
    _, bundle = mallory_forgery(world)
    out.append(Case("mallory's consistent forgery", bundle, True))
    key = "evidence/02-SubmissionAcceptance.json"
    one = {**a, key: read_members(bundle)[key]}
    out.append(Case("one checkpoint by mallory, trusted", write_members(one), True))
    out.append(Case("one checkpoint by mallory, untrusted", write_members(one), False))
    for name in HOSTILE_NAMES:
        out.append(Case(f"hostile name {name!r}", zip_members([*a.items(), (name, b"x")]), True))
    out += _container_cases(world, a)
    return out


def _container_cases(world: World, files: dict[str, bytes]) -> list[Case]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dup = zip_members([*files.items(), ("message.eml", MESSAGE)])
    bomb_files = {**files, "VERIFY.txt": b"\0" * (MAX_MEMBER_SIZE + 1)}
    bomb = write_members(bomb_files)
    lying = bytearray(bomb)
    for m in re.finditer(rb"PK\x01\x02", bytes(lying)):
        (usize,) = struct.unpack_from("<I", lying, m.start() + 24)
        if usize == MAX_MEMBER_SIZE + 1:
            struct.pack_into("<I", lying, m.start() + 24, 10)
    out = [
        Case("duplicate message.eml", dup, True),
        Case("zip bomb", bomb, True),
        Case("size understated", bytes(lying), True),
        Case("empty file", b"", True),
        Case("not a zip", b"not a zip", True),
        Case("empty zip", b"PK\x05\x06" + b"\0" * 18, True),
        Case(
            "no tsa-chain.pem",
            write_members({k: v for k, v in files.items() if k != "tsa-chain.pem"}),
            True,
        ),
        Case(
            "evidence gap",
            write_members({k: v for k, v in files.items() if not k.startswith("evidence/01-")}),
            True,
        ),
    ]
    for feature in ("comment", "extra", "prefix", "bzip2"):
        out.append(Case(f"zip {feature}", with_zip_feature(world.bundle, feature), True))
    return out


def all_tampered(world: World) -> list[Case]:
    """Every tampered bundle: the flips, then the structural cases."""
    return flipped_cases(world) + structural_cases(world)
