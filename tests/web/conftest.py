"""The web page tests' fixtures: ``world`` (a real notary and its bundles,
tests/fixtures/bundle_world.py, as tests/certmail/test_bundle.py uses it), ``browser``
(Debian's headless Chromium) and ``app_world`` (tests/web/app_world.py: a notary with
two accounts' messages, for the sender's view)."""

from tests.fixtures.bundle_world import world  # noqa: F401
from tests.web.app_world import app_world  # noqa: F401
from tests.web.browser import browser  # noqa: F401
