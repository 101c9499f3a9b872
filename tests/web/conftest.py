"""The web page tests' fixtures: ``world`` (a real notary and its bundles, the very fixture
of tests/certmail/test_bundle.py) and ``browser`` (Debian's headless Chromium)."""

from tests.certmail.test_bundle import world  # noqa: F401
from tests.web.browser import browser  # noqa: F401
