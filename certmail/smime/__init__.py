"""S/MIME 4.0 (RFC 8551) beside PGP/MIME: keys, opening and sealing (docs/smime.md).

- :mod:`.certs`: what certmail reads from an X.509 certificate (RFC 5280; the
  RFC 8550 rules for S/MIME: rfc822Name, key usage, extended key usage);
- :mod:`.store`: the user's S/MIME key and certificate and the correspondents'
  certificates under ``HOME/smime`` (0700; secrets 0600);
- :mod:`.openssl`: ``openssl cms`` / ``openssl verify`` through a subprocess,
  for the steps ``cryptography`` lacks (signature and chain verification,
  3DES and AuthEnvelopedData decryption);
- :mod:`.entities`: the S/MIME MIME entities (RFC 8551 §3), built and parsed;
- :mod:`.opening`: decrypting and verifying a received message's S/MIME layers;
- :mod:`.sealing`: signing and encrypting an outgoing message (the S/MIME sealer);
- :mod:`.checking`: ``certmail verify`` of S/MIME without decrypting.
"""
