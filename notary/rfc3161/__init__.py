"""RFC 3161 time-stamp tokens: the TSA's responder and the token verifier.

Implements the Time-Stamp Protocol of RFC 3161 (§2.4 request and response)
with the ESS signing-certificate attribute of RFC 5816 (SigningCertificateV2,
ESSCertIDv2 with hashAlgorithm omitted for SHA-256) inside a CMS SignedData
(RFC 5652). Pure format code: no server imports, so clients verify with it.

Modules, each with one job:

- :mod:`~notary.rfc3161.der`: the DER writer and strict reader;
- :mod:`~notary.rfc3161.oids`: object identifiers and the default policy;
- :mod:`~notary.rfc3161.query`: TimeStampReq parsing and rejections;
- :mod:`~notary.rfc3161.template`: the token layout the TSA issues, written
  and read back (the one template for issuing and for the fast check);
- :mod:`~notary.rfc3161.tsa`: :class:`TimeStampAuthority`;
- :mod:`~notary.rfc3161.info`: :class:`TokenInfo`, what a verified token says;
- :mod:`~notary.rfc3161.chain`: the TSA certificate and its path to a root;
- :mod:`~notary.rfc3161.reference`: the full verifier (asn1crypto);
- :mod:`~notary.rfc3161.verify`: :func:`verify_token`, template first.

Import the public names from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from notary.rfc3161.info import TokenInfo
from notary.rfc3161.oids import DEFAULT_POLICY_OID
from notary.rfc3161.verify import verify_token

if TYPE_CHECKING:
    from notary.rfc3161.query import (
        ADD_INFO_NOT_AVAILABLE,
        BAD_ALG,
        BAD_DATA_FORMAT,
        BAD_REQUEST,
        GRANTED,
        MAX_NONCE_BYTES,
        MAX_QUERY_BYTES,
        REJECTION,
        SYSTEM_FAILURE,
        TIME_NOT_AVAILABLE,
        UNACCEPTED_EXTENSION,
        UNACCEPTED_POLICY,
        rejection,
    )
    from notary.rfc3161.tsa import TimeStampAuthority, TimeStampError

#: The public names. The one list: those not imported above are imported on first use
#: by :func:`__getattr__`, the responder's from notary/rfc3161/tsa.py, the others (the
#: TimeStampReq reader's) from notary/rfc3161/query.py.
__all__ = [
    "ADD_INFO_NOT_AVAILABLE",
    "BAD_ALG",
    "BAD_DATA_FORMAT",
    "BAD_REQUEST",
    "DEFAULT_POLICY_OID",
    "GRANTED",
    "MAX_NONCE_BYTES",
    "MAX_QUERY_BYTES",
    "REJECTION",
    "SYSTEM_FAILURE",
    "TIME_NOT_AVAILABLE",
    "UNACCEPTED_EXTENSION",
    "UNACCEPTED_POLICY",
    "TimeStampAuthority",
    "TimeStampError",
    "TokenInfo",
    "rejection",
    "verify_token",
]
_RESPONDER = frozenset({"TimeStampAuthority", "TimeStampError"})


def __getattr__(name: str) -> Any:
    """The responder's and the request reader's names, imported on first use (a
    verifier needs none of them: ``certmail proof verify`` starts without them)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = "tsa" if name in _RESPONDER else "query"
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
