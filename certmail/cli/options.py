"""The click options several commands share: for the trust roots they check against,
``--vkey`` (the notary's verifier key file), ``--tsa-root`` (its TSA's root, PEM) and
``--anchor-root`` (an outside TSA's root, PEM, repeatable). One declaration each, so
their names, types and help read the same in ``proof verify``, ``proof verifier-page``
and ``receipt verify``; and ``--sealed``/``--seal-expires`` of ``send`` and ``campaign create``.

Missing files are reported by the commands (exit 6, as everywhere), not by Click
(exit 2): the paths are not required to exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "PATH",
    "SEAL_EXPIRES_DEFAULT",
    "anchor_root_option",
    "dir_option",
    "sealed_options",
    "tsa_root_option",
    "vkey_option",
]

F = TypeVar("F", bound=Callable[..., Any])


def dir_option(envvar: str, whose: str) -> Callable[[F], F]:
    """``--dir``: a service's directory (a notary's, a witness's), also from ``envvar``."""
    return click.option(
        "--dir",
        "directory",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        envvar=envvar,
        help=f"The {whose} directory (env {envvar}).",
    )


#: A file path, not checked for existence (the commands report a missing file).
PATH = click.Path(dir_okay=False, path_type=Path)

VKEY_HELP = "The notary's verifier key (notary.vkey), from a source you trust."
TSA_ROOT_HELP = "The TSA's root certificate(s), PEM, from a source you trust."
ANCHOR_ROOT_HELP = (
    "An outside TSA's root (PEM), repeatable: the bundle's outside time-stamps over "
    "checkpoints must chain to one of them (docs/anchors.md)."
)


def vkey_option(help: str = VKEY_HELP, required: bool = False) -> Callable[[F], F]:
    """``--vkey FILE``, passed as ``vkey_file``."""
    return click.option("--vkey", "vkey_file", type=PATH, required=required, help=help)


def tsa_root_option(help: str = TSA_ROOT_HELP) -> Callable[[F], F]:
    """``--tsa-root PEM``, passed as ``tsa_root``."""
    return click.option("--tsa-root", "tsa_root", type=PATH, help=help)


def anchor_root_option(help: str = ANCHOR_ROOT_HELP) -> Callable[[F], F]:
    """``--anchor-root PEM``, repeatable, passed as ``anchor_roots``."""
    return click.option("--anchor-root", "anchor_roots", multiple=True, type=PATH, help=help)


#: How long the notary keeps a sealed or pickup message's key share, by default.
SEAL_EXPIRES_DEFAULT = 14 * 86400


def sealed_options(what: str, expires_help: str) -> Callable[[F], F]:
    """``--sealed`` and ``--seal-expires SECONDS`` (``send`` and ``campaign create``):
    ``what`` is the thing sealed ("the content", "each message")."""

    def decorate(f: F) -> F:
        f = click.option(
            "--seal-expires",
            type=click.IntRange(1, 366 * 86400),
            default=SEAL_EXPIRES_DEFAULT,
            show_default=True,
            metavar="SECONDS",
            help=expires_help,
        )(f)
        return click.option(
            "--sealed",
            is_flag=True,
            help=f"Seal {what}: the recipient reads it only once their signed "
            "acknowledgement is logged by the notary (docs/sealed.md).",
        )(f)

    return decorate
