"""The words for a certified message's states: one vocabulary for every view of them.

Each evidence event (ETSI EN 319 522 names, DESIGN §4.2) gives the recipients it is
about a state word. The sender's view (notary/web: the list, its state filter, a
message's timeline) shows the word; the receipt timeline (certmail/timeline.py,
``certmail receipts``) shows the event's step, the word followed by what it means
(docs/web.md, docs/relay.md). ``deferred`` and ``notarized`` are no event's: the relay
retries a recipient, or a message was sent directly and only its hash logged. The
relay's queue has its own states (:data:`DELIVERY_STATES`), which are not evidence.

Pure (no I/O, nothing of the sequencer, storage or HTTP): certmail imports it, as it
does notary's format modules (pyproject.toml's import contracts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ACCEPTED",
    "DEFERRED",
    "DELIVERY_STATES",
    "EVENT_STATES",
    "FILTER_STATES",
    "LIVE_DELIVERY_STATES",
    "MESSAGE_EVENTS",
    "NOTARIZED",
    "NOTARIZED_STEP",
    "STATE_WORDS",
    "State",
    "state_of_event",
    "step_of_event",
]


@dataclass(frozen=True)
class State:
    """What an event makes of a recipient: its ``word``; its ``rank`` (a later event
    replaces a recipient's state unless its rank is lower: an open never hides an
    acknowledgement; 4 concerns the whole message); the timeline's ``step``."""

    word: str
    rank: int
    step: str


ACCEPTED = "accepted"
#: The relay retries the recipient (its queue's state, not an event).
DEFERRED = "deferred"
#: A message sent directly: only its hash was notarized, the notary never saw its delivery.
NOTARIZED = "notarized"
NOTARIZED_STEP = "notarized (sent directly, not through the relay)"

#: Evidence event -> its state. Where the list and the timeline once differed (a virus,
#: an expired seal) the word is docs/web.md's and the step starts with it.
EVENT_STATES: Mapping[str, State] = {
    "SubmissionAcceptance": State(ACCEPTED, 0, ACCEPTED),
    "RelayToNonERDS": State("delivered", 1, "delivered"),
    "RelayToNonERDSFailure": State("failed", 1, "failed"),
    "ContentAccessTracking": State("opened", 2, "opened (tracking link: weak evidence)"),
    "ContentHandover": State("acknowledged", 3, "acknowledged"),
    "RejectionByRecipient": State(
        "refused", 3, "refused by the recipient (sealed: content not handed over)"
    ),
    "ContentHandoverFailure": State(
        "expired", 3, "expired (not acknowledged before the seal expired: content destroyed)"
    ),
    "VirusDetected": State("virus", 4, "virus (the message was refused)"),
    "SubmissionRejection": State("rejected", 4, "rejected"),
}
#: Events that concern a whole message, every recipient at once (and may be its first).
MESSAGE_EVENTS = ("SubmissionAcceptance", "VirusDetected", "SubmissionRejection")
#: The states the sender's view filters a recipient by.
FILTER_STATES = (
    ACCEPTED,
    DEFERRED,
    "delivered",
    "failed",
    "opened",
    "acknowledged",
    "refused",
    "expired",
)
#: Every state word a message's row may show.
STATE_WORDS = (*FILTER_STATES, "virus", "rejected", NOTARIZED)

#: The relay's queue, per recipient (notary.storage.DeliveryStatus.state): not evidence.
DELIVERY_STATES = ("held", "queued", "delivered", "failed")
#: The queue's states of a delivery still in flight.
LIVE_DELIVERY_STATES = ("held", "queued")


def state_of_event(event: str) -> str:
    """The state word ``event`` gives a recipient (``accepted`` for any other event)."""
    state = EVENT_STATES.get(event)
    return state.word if state is not None else ACCEPTED


def step_of_event(event: str) -> str:
    """The timeline's step for ``event`` (an unknown event: its name)."""
    state = EVENT_STATES.get(event)
    return state.step if state is not None else event
