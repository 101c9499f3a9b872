"""The campaign's input checks without any server: templates (logic-less) and the CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from certmail.campaign.recipients import read_rows
from certmail.campaign.templates import parse
from keys.errors import Error


def test_a_template_is_text_and_plain_column_names() -> None:
    t = parse("Dear {{ name }}, flat {{flat}}.\n", "body")
    assert t.fields == {"name", "flat"}
    assert t.render({"name": "Ann", "flat": "3", "email": "a@x.org"}) == "Dear Ann, flat 3.\n"


@pytest.mark.parametrize(
    "source",
    [
        "{% if name %}x{% endif %}",
        "{{ name | upper }}",
        "{{ name.__class__ }}",
        "{{ name() }}",
        "{{ name ~ flat }}",
        "{{ 7 * 7 }}",
        "{% for x in name %}{{ x }}{% endfor %}",
        "{{ name",
    ],
)
def test_logic_expressions_and_bad_syntax_are_refused(source: str) -> None:
    with pytest.raises(Error) as e:
        parse(source, "subject")
    assert "subject template" in e.value.message and e.value.hint


def test_a_missing_value_at_render_is_an_error_not_a_gap() -> None:
    with pytest.raises(Exception, match="name"):
        parse("{{ name }}", "body").render({})


def _csv(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "r.csv"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_rows_are_checked_with_their_line_numbers(tmp_path: Path) -> None:
    text = (
        "\ufeffemail,name\n"
        "a@example.org,Ann\n"
        '"b@example.org","Bob, Jr."\n'
        "not-an-address,X\n"
        "A@EXAMPLE.ORG,Again\n"
        "c@example.org\n"
        "\n"
        "d@example.org,Dee\x00\n"
    )
    columns, rows, problems = read_rows(_csv(tmp_path, text))
    assert columns == ["email", "name"]
    assert [(r.line, r.email, r.fields["name"]) for r in rows] == [
        (2, "a@example.org", "Ann"),
        (3, "b@example.org", "Bob, Jr."),
    ]
    got = {p.line: p.message for p in problems}
    assert got[4] == "not an email address: 'not-an-address'"
    assert got[5] == "duplicate address A@EXAMPLE.ORG (first on row 2)"
    assert got[6] == "1 fields where the header has 2"
    assert got[8] == "a field has a control character (NUL, ESC, ...)"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (b"", "is empty"),
        (b"name,addr\nx,y\n", "has no 'email' column"),
        (b"email,email\na@x.org,b@x.org\n", "unique"),
        (b"email\n", "has no recipients"),
        (b"email\n\xff@x.org\n", "is not UTF-8"),
    ],
)
def test_a_bad_file_is_one_clear_error(tmp_path: Path, text: bytes, want: str) -> None:
    with pytest.raises(Error, match=want):
        read_rows(_csv(tmp_path, text))


def test_small_campaigns_encode_base64_in_process() -> None:
    """A campaign whose attachments total under 4 MiB seals without GNU base64 processes
    (the worker's Sealer gets ``external_base64=False``); a larger one keeps them."""
    from certmail.campaign.worker import SMALL, external_base64

    assert not external_base64({"attachments": []})
    assert not external_base64({"attachments": [{"size": SMALL - 1}]})
    assert external_base64({"attachments": [{"size": SMALL // 2}, {"size": SMALL // 2}]})
