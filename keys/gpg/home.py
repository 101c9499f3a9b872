"""A certmail GNUPGHOME: mode 0700, with certmail's gpg.conf and gpg-agent.conf.

The configuration keeps GnuPG off the network (no key auto-retrieval, local
key location only), uses the classic ``pgp`` trust model, prefers SHA-2
digests, and lets passphrases come through loopback pinentry with no agent
cache. Existing files are never overwritten.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["GPG_AGENT_CONF", "GPG_CONF", "launch_agent", "prepare_home"]

GPG_CONF = """\
# Written by certmail. Keys are never fetched from the network.
keyid-format long
trust-model pgp
auto-key-locate local
no-auto-key-retrieve
personal-digest-preferences SHA512 SHA384 SHA256
cert-digest-algo SHA512
default-preference-list SHA512 SHA384 SHA256 AES256 AES192 AES ZLIB BZIP2 ZIP Uncompressed
"""

GPG_AGENT_CONF = """\
# Written by certmail: no passphrase caching; passphrases come through loopback.
default-cache-ttl 0
max-cache-ttl 0
allow-loopback-pinentry
"""


def prepare_home(home: Path) -> None:
    """Create ``home`` (0700) and write the configuration files it lacks (0600)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    for name, text in (("gpg.conf", GPG_CONF), ("gpg-agent.conf", GPG_AGENT_CONF)):
        path = home / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)


def launch_agent(home: Path) -> None:
    """Start ``home``'s gpg-agent now (``gpgconf --launch``; a running one is kept).

    gpg autostarts its agent on first use; several gpg processes that all start it
    at once (forked workers) can race, and one that loses the race reports the secret
    key missing. Launching it first leaves them one agent to find. Best effort: a
    failure here shows up, with gpg's own message, at the first operation.
    """
    try:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--launch", "gpg-agent"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        pass
