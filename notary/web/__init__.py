"""The notary's web pages (DESIGN §4.9, docs/web.md): the in-browser proof verifier.

Pure rendering, no server imports: :func:`verify_page` fills
``templates/verify.html`` either for serving (script and style from
``/web/static/``, the CSP sent as a header by :mod:`notary.web.routes`) or as
one self-contained file (script and style inlined, a CSP ``<meta>`` with their
hashes) for ``certmail proof verifier-page``. The script, ``static/verify.js``,
is built from ``src/`` by ``npm run build`` (esbuild) before the package is
installed; nothing here needs Node at run time.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import dataclass
from importlib import resources
from string import Template

from keys.errors import Error

__all__ = [
    "APP_CSP",
    "STATIC_TYPES",
    "Trust",
    "WebAssetsMissing",
    "page_csp",
    "security_headers",
    "static_asset",
    "verify_page",
]

#: The static assets served under /web/static/, with their media types.
STATIC_TYPES = {
    "base.css": "text/css; charset=utf-8",  # every page's, linked before its own
    "verify.js": "text/javascript; charset=utf-8",
    "verify.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "pickup.js": "text/javascript; charset=utf-8",  # the pickup page (notary/pickup_api.py)
    "pickup.css": "text/css; charset=utf-8",
}

#: The verify page's stylesheets, in order: the base every page links first, then its own
#: (the self-contained page inlines them as its one style, the served page links them:
#: same-origin, so ``style-src 'self'`` holds). The templates of the log page, ``/app``
#: (base, verify, app.css) and the pickup page (base, pickup.css) link theirs.
VERIFY_STYLES = ("base.css", "verify.css")

#: The CSP of the served pages: nothing but this origin's script and style, no
#: connections, no frames, no forms, no plugins.
SERVED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

#: The CSP of the sender's view (``/app``): as :data:`SERVED_CSP`, but its script may
#: poll this origin and its forms post to it.
APP_CSP = SERVED_CSP.replace("connect-src 'none'", "connect-src 'self'").replace(
    "form-action 'none'", "form-action 'self'"
)


class WebAssetsMissing(Error):
    """The built page assets are not installed (``npm ci && npm run build`` was not run)."""

    exit_code = 1


@dataclass(frozen=True)
class Trust:
    """The trust roots a page starts with: the notary's vkey text and TSA root PEM
    (either may be empty: the user pastes them), and where they come from."""

    vkey: str = ""
    tsa_root: str = ""
    source: str = ""


def static_asset(name: str) -> bytes:
    """The bytes of a built static asset (``verify.js``, ``verify.css``)."""
    if name not in STATIC_TYPES:
        raise KeyError(name)
    try:
        return resources.files(__package__).joinpath("static", name).read_bytes()
    except FileNotFoundError:
        raise WebAssetsMissing(
            f"the web page asset {name} is not built",
            hint="run `npm ci && npm run build` in the source tree (make setup does it)",
        ) from None


def _template() -> Template:
    text = resources.files(__package__).joinpath("templates", "verify.html").read_text("utf-8")
    return Template(text)


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _trust_json(trust: Trust) -> str:
    obj = {"vkey": trust.vkey.strip(), "tsa_root": trust.tsa_root.strip(), "source": trust.source}
    # inside <script type="application/json">: no "<" can end the element
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_csp(script: str, style: str) -> str:
    """The CSP of a self-contained page: only its one inline script and style."""
    return (
        f"default-src 'none'; script-src {_sha256_source(script)}; "
        f"style-src {_sha256_source(style)}; img-src 'self'; connect-src 'none'; "
        "form-action 'none'; base-uri 'none'"
    )


def verify_page(trust: Trust, *, self_contained: bool, static_prefix: str = "/web/static") -> str:
    """The verify page's HTML: served (assets under ``static_prefix``) or self-contained."""
    source = html.escape(trust.source or _default_source(trust))
    values = {"trust_json": _trust_json(trust), "trust_source": source}
    if self_contained:
        script = static_asset("verify.js").decode("utf-8").replace("</script", "<\\/script")
        style = "".join(static_asset(n).decode("utf-8") for n in VERIFY_STYLES)
        style = style.replace("</style", "<\\/style")
        script = "\n" + script + "\n"
        style = "\n" + style + "\n"
        values["csp_meta"] = (
            f'<meta http-equiv="Content-Security-Policy" content="{page_csp(script, style)}">\n'
        )
        values["style"] = f"<style>{style}</style>"
        values["script"] = f'<script type="module">{script}</script>'
    else:
        values["csp_meta"] = ""
        values["style"] = "".join(
            f'<link rel="stylesheet" href="{static_prefix}/{n}">' for n in VERIFY_STYLES
        )
        values["script"] = f'<script type="module" src="{static_prefix}/verify.js"></script>'
    return _template().substitute(values)


def _default_source(trust: Trust) -> str:
    if trust.vkey or trust.tsa_root:
        return (
            "The trust roots below were filled in by whoever made this page; "
            "compare their fingerprints with the notary operator's."
        )
    return (
        "No trust roots are filled in: paste the notary's verifier key and TSA root, "
        "or the page uses the bundle's own and says so."
    )


def security_headers(csp: str = SERVED_CSP) -> dict[str, str]:
    """The headers every page sends."""
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
        "Cache-Control": "no-cache",
    }
