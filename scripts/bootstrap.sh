#!/usr/bin/env bash
# Set up everything `make demo` and `make test` need on a fresh Debian machine:
# the Debian packages (when running as root and they are missing), then a
# virtualenv in .venv with this package installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

# swaks needs the perl TLS and SASL modules for --tls and --auth (only Recommends).
# postfix, dovecot-imapd, neomutt, sq: the real mail software the recipient-side tests
# run against; chromium-driver: the headless browser tests; xmlsec1, poppler-utils:
# independent verifiers of XML evidence and PDF signatures; wrk: the HTTP benchmarks;
# golang-go + golang-golang-x-mod-dev: Go's sumdb/tlog, an independent tiles verifier.
# fonts-noto-cjk: the CJK and Hangul glyphs of the notary's signed PDF certificate.
debs=(gnupg clamav clamav-daemon swaks libnet-ssleay-perl libio-socket-ssl-perl
      libauthen-sasl-perl openssl chromium chromium-driver fonts-dejavu-core fonts-noto-cjk
      postfix dovecot-imapd neomutt sq xmlsec1 poppler-utils wrk
      golang-go golang-golang-x-mod-dev)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm build the web pages' script (docs/web.md); a machine that has them
# from elsewhere (e.g. NodeSource, which bundles npm) keeps its own.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        # Postfix unconfigured: the tests write their own main.cf on loopback ports.
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        # clamav-daemon's own service is not used: tests start a private clamd.
    else
        echo "bootstrap: missing Debian packages (${missing[*]}); run as root or install them" >&2
        exit 1
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# The web pages' script, from the npm lockfile (docs/web.md): npm ci, then esbuild.
# --ignore-scripts: esbuild's binary comes as an optional dependency; nothing else runs.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
npm run --silent build
touch .venv/.installed
