"""What each kind of behaviour event means to the interest models."""

from __future__ import annotations

# Order is the wire-independent code stored in user state; append, never reorder.
EVENT_TYPES: tuple[str, ...] = (
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "rating",
    "like",
    "share",
    "skip",
)
EVENT_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}

# Not a behaviour: "forget this user". It travels on the events topic, keyed by the user, so
# it is ordered with the user's events and reaches the worker that holds their state. It has
# no item, weight or code in user state, and the models never see it.
USER_DELETION = "delete_user"
CONTROL_EVENT_TYPES: tuple[str, ...] = (USER_DELETION,)

# Strength of interest each action signals; a skip is evidence against.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.5,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "rating": 2.0,  # scaled by the rating value, see event_weight()
    "like": 3.0,
    "share": 4.0,
    "skip": -1.0,
}

PAST_TENSE = {
    "view": "viewed",
    "click": "clicked",
    "add_to_cart": "added to cart",
    "purchase": "purchased",
    "rating": "rated",
    "like": "liked",
    "share": "shared",
    "skip": "skipped",
}


def event_weight(
    event_type: str, value: float | None, weights: dict[str, float] = DEFAULT_EVENT_WEIGHTS
) -> float:
    """Interest weight of one event. Ratings on a 1–5 scale map to 0.5×–1.5× the base."""
    base = weights[event_type]
    if event_type == "rating" and value is not None:
        return base * (0.5 + 0.25 * (min(max(value, 1.0), 5.0) - 1.0))
    return base
