"""Sealed delivery, the user's side (docs/sealed.md): the letter handed over only against a
signature.

- :mod:`certmail.sealed.box`: the content key K = K_r ⊕ K_n and the sealed content
  (AES-256-GCM), the two parts a sealed message carries; pure.
- :mod:`certmail.sealed.sending`: ``send --sealed``: seal the inner MIME, register K_n.
- :mod:`certmail.sealed.opening`: ``open`` of a sealed message: ask, acknowledge, fetch
  K_n, decrypt; or refuse.
"""
