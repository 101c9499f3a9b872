"""The certmail notary: its formats (Merkle log, checkpoints, receipts, RFC 3161)
and its service (HTTP API, SMTP relay, sequencer, storage)."""
