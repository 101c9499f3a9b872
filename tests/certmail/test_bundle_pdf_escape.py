"""certificate.pdf's line escaping: the lines escaped together (one pass over the joined
text) are exactly each line escaped on its own, control characters and all."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from certmail.bundle.documents import pdf

_TEXT = st.text(alphabet=st.sampled_from("a (\\)\x01\t\n\r\u2028\x85é—"), max_size=8)


@settings(max_examples=500, deadline=None)
@given(st.lists(_TEXT, max_size=6))
def test_escaped_lines_as_each_line(texts: list[str]) -> None:
    assert pdf._escaped_lines(texts) == [pdf._escaped(t) for t in texts]


def test_escapes() -> None:
    assert pdf._escaped_lines(["a(b)", "c\\d"]) == ["a\\(b\\)", "c\\\\d"]
    assert pdf._escaped_lines(["x\x01(", "y"]) == ["x?\\(", "y"]
