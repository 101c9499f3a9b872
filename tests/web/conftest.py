"""The web page tests' fixtures: ``world`` (a real notary and its bundles,
tests/fixtures/bundle_world.py, as tests/certmail/test_bundle.py uses it), ``browser``
(Debian's headless Chromium) and ``app_world`` (tests/web/app_world.py: a notary with
two accounts' messages, for the sender's view) and ``page`` (the self-contained
verify page, as `certmail proof verifier-page` writes it)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.bundle_world import world  # noqa: F401
from tests.web.app_world import app_world  # noqa: F401
from tests.web.browser import browser  # noqa: F401

CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The self-contained page, as `certmail proof verifier-page` writes it."""
    path = tmp_path_factory.mktemp("page") / "verify.html"
    p = subprocess.run(
        [*CERTMAIL, "proof", "verifier-page", "-o", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    return path
