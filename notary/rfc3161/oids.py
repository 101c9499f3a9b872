"""The object identifiers and digest sizes of RFC 3161 tokens (RFC 3161, RFC 5652, RFC 5816)."""

from __future__ import annotations

#: The TSA policy under which tokens are issued (RFC 3161 §2.1 item 5). The
#: arc 1.3.6.1.4.1.32473 is IANA's enterprise number reserved for documentation
#: (RFC 5612); ".3161.1" below it names "certmail's default TSA policy". An
#: operator with its own enterprise number should configure its own OID.
DEFAULT_POLICY_OID = "1.3.6.1.4.1.32473.3161.1"

#: Message-imprint digests the TSA accepts (RFC 5754 OIDs) and their sizes.
HASH_OIDS = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
HASH_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}

SIGNED_DATA = "1.2.840.113549.1.7.2"  # RFC 5652 §5.1
TST_INFO = "1.2.840.113549.1.9.16.1.4"  # RFC 3161 §2.4.2 id-ct-TSTInfo
CONTENT_TYPE = "1.2.840.113549.1.9.3"  # RFC 5652 §11.1
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"  # RFC 5652 §11.2
SIGNING_CERT = "1.2.840.113549.1.9.16.2.12"  # RFC 2634 §5.4 (ESSCertID, SHA-1)
SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"  # RFC 5035 §3 (ESSCertIDv2)
ECDSA_SHA256 = "1.2.840.10045.4.3.2"  # RFC 5758 §3.2
