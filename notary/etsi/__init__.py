"""ETSI EN 319 522 evidence: the notary's log events as signed XML (docs/etsi.md).

- :mod:`~notary.etsi.mapping`: certmail events -> ETSI EN 319 522-2 events;
- :mod:`~notary.etsi.xml`: the EN 319 522-3 evidence element, written and read back;
- :mod:`~notary.etsi.sign`: XAdES-B-T signing (signxml + the notary's TSA) and verifying;
- :mod:`~notary.etsi.api`: ``GET /v1/messages/{sha256}/evidence?format=etsi`` and
  ``GET /v1/evidence/chain``.

Everything but ``api`` is pure format code, so clients verify with it.
"""
