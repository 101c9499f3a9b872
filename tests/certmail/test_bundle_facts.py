"""Facts.evolve is dataclasses.replace: the same object for any change, the same errors."""

from __future__ import annotations

import dataclasses

import pytest

from certmail.bundle.documents.facts import EventFact, Facts, MimeLayout


def _facts() -> Facts:
    event = EventFact(1, "SubmissionAcceptance", "t", 0, None, (), 1, "00", (), "01-x", None)
    return Facts(
        "ab",
        "<m@x>",
        3,
        "a@x",
        ("b@x",),
        "hi",
        "vk",
        (event,),
        (),
        (),
        (),
        MimeLayout("signed", (0, 1)),
    )


def test_every_field_is_an_init_argument_and_held() -> None:
    """What evolve relies on: no init=False field, no InitVar, no __post_init__, and an
    instance's __dict__ is exactly its fields."""
    fields = dataclasses.fields(Facts)
    assert all(f.init for f in fields) and not hasattr(Facts, "__post_init__")
    assert list(vars(_facts())) == [f.name for f in fields]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"renderer": 1},
        {"subject": None},
        {"subject": "s", "protected_subject": True},
        {"blind": ("c@x",), "mdns": ()},
    ],
)
def test_evolve_is_replace(changes: dict[str, object]) -> None:
    facts = _facts()
    got = facts.evolve(**changes)
    assert got == dataclasses.replace(facts, **changes) and got is not facts
    assert facts == _facts()  # unchanged


def test_evolve_refuses_what_replace_refuses() -> None:
    with pytest.raises(TypeError):
        _facts().evolve(no_such_field=1)
    with pytest.raises(TypeError):
        dataclasses.replace(_facts(), no_such_field=1)
