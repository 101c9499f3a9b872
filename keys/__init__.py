"""certmail's key material: OpenPGP keyring, DKIM keys, notary keys (no network I/O)."""
