"""The web page tests' fixtures: ``world`` (a real notary and its bundles,
tests/fixtures/bundle_world.py, as tests/certmail/test_bundle.py uses it) and
``browser`` (Debian's headless Chromium)."""

from tests.fixtures.bundle_world import world  # noqa: F401
from tests.web.browser import browser  # noqa: F401
