"""The notary's SMTP relay: registered delivery (docs/relay.md, DESIGN §3).

- :mod:`notary.relay.server`: the submission server (aiosmtpd handler):
  STARTTLS before AUTH, sender checks, DATA -> SubmissionAcceptance, spool, 250.
- :mod:`notary.relay.writer`: group commit of spool and queue changes.
- :mod:`notary.relay.worker`: the delivery worker (smarthost or MX, retries,
  RelayToNonERDS / RelayToNonERDSFailure evidence).
- :mod:`notary.relay.smtp_client`: the delivery client over aiosmtplib (RFC 5321,
  STARTTLS, SIZE, SMTPUTF8, 8BITMIME) that sends exact bytes and reports TLS details.
- :mod:`notary.relay.mx`: MX lookup (RFC 5321 §5.1, null MX per RFC 7505).
- :mod:`notary.relay.content`: header checks on submitted messages.
- :mod:`notary.relay.tls`: the relay's TLS certificate.
- :mod:`notary.relay.scanning`: the scanner Protocol the relay is given.
- :mod:`notary.relay.runtime`: everything above started on one event loop.
"""
