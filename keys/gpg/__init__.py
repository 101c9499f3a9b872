"""OpenPGP through GnuPG: the keyring and what reads gpg's output.

- :mod:`keys.gpg.keyring`: :class:`Keyring`, one GNUPGHOME and its operations
  (over :mod:`keys.gpg.base`: running gpg, choosing and unlocking keys, and
  :mod:`keys.gpg.streaming`: the start/finish operations of the pipelines);
- :mod:`keys.gpg.colons`: the colon key listing (:class:`KeyInfo`);
- :mod:`keys.gpg.status`: ``[GNUPG:]`` status lines (:class:`SignatureInfo`);
- :mod:`keys.gpg.process`: streaming gpg processes (:class:`GpgProcess`);
- :mod:`keys.gpg.passphrase`: a locked secret key (:class:`PassphraseError`,
  the :data:`Ask` protocol a keyring uses to get a passphrase);
- :mod:`keys.gpg.home`: the GNUPGHOME layout and configuration.

Import the public names from here (``from keys.gpg import Keyring``).
"""

from __future__ import annotations

from keys.gpg.colons import (
    PK_ALGO,
    TRUSTED_VALIDITY,
    VALIDITY,
    KeyInfo,
    email_of,
    normalize_fingerprint,
)
from keys.gpg.home import GPG_AGENT_CONF, GPG_CONF
from keys.gpg.keyring import BUFFER_SIZE, Keyring
from keys.gpg.passphrase import (
    MAX_TRIES,
    Ask,
    BadPassphraseError,
    PassphraseError,
    PassphraseRequest,
    PassphraseRequiredError,
)
from keys.gpg.process import GPG_BINARY, GpgProcess
from keys.gpg.status import (
    IMPORT_HINT,
    INVALID_REASON,
    MICALG,
    SIG_STATUS,
    SIG_VALIDITY,
    SignatureInfo,
)

__all__ = [
    "BUFFER_SIZE",
    "GPG_AGENT_CONF",
    "GPG_BINARY",
    "GPG_CONF",
    "IMPORT_HINT",
    "INVALID_REASON",
    "MAX_TRIES",
    "MICALG",
    "PK_ALGO",
    "SIG_STATUS",
    "SIG_VALIDITY",
    "TRUSTED_VALIDITY",
    "VALIDITY",
    "Ask",
    "BadPassphraseError",
    "GpgProcess",
    "KeyInfo",
    "Keyring",
    "PassphraseError",
    "PassphraseRequest",
    "PassphraseRequiredError",
    "SignatureInfo",
    "email_of",
    "normalize_fingerprint",
]
