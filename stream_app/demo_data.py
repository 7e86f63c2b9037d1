"""A small, seeded synthetic shop for the demo: items in genres, users with tastes."""

from __future__ import annotations

import random
from typing import Any

GENRES: dict[str, tuple[list[str], list[str]]] = {
    "Horror": (
        ["Haunted", "Cursed", "Silent", "Bleeding", "Hollow"],
        ["Cellar", "Asylum", "Woods"],
    ),
    "Comedy": (
        ["Awkward", "Lucky", "Clumsy", "Cheerful", "Wacky"],
        ["Wedding", "Roommates", "Holiday"],
    ),
    "Sci-Fi": (
        ["Quantum", "Orbital", "Synthetic", "Stellar", "Cyber"],
        ["Frontier", "Colony", "Android"],
    ),
    "Romance": (["Sweet", "Paris", "Summer", "Secret", "Forever"], ["Letters", "Promise", "Kiss"]),
    "Documentary": (
        ["Deep", "Hidden", "Wild", "Ancient", "Modern"],
        ["Oceans", "Cities", "Empires"],
    ),
    "Animation": (["Little", "Brave", "Magic", "Tiny", "Happy"], ["Dragon", "Robot", "Penguin"]),
}
EVENT_MIX = [
    ("view", 0.55),
    ("click", 0.2),
    ("add_to_cart", 0.08),
    ("purchase", 0.07),
    ("like", 0.05),
    ("share", 0.02),
    ("skip", 0.03),
]


def demo_catalog() -> list[dict[str, Any]]:
    items = []
    for genre, (adjectives, nouns) in GENRES.items():
        for adjective in adjectives:
            for noun in nouns:
                items.append(
                    {
                        "item_id": f"{genre[:3].lower()}-{adjective.lower()}-{noun.lower()}",
                        "title": f"The {adjective} {noun}",
                        "description": f"A {genre.lower()} title.",
                        "categories": [genre],
                    }
                )
    return items


def demo_events(
    n_users: int = 60, events_per_user: int = 40, seed: int = 7, start_ts: float = 1.7e9
) -> list[dict[str, Any]]:
    """Each user mostly (85%) acts within one or two favourite genres; time-ordered."""
    rng = random.Random(seed)
    catalog = demo_catalog()
    by_genre: dict[str, list[str]] = {}
    for item in catalog:
        by_genre.setdefault(item["categories"][0], []).append(item["item_id"])
    genres = list(by_genre)
    kinds, weights = zip(*EVENT_MIX, strict=True)
    events = []
    for u in range(n_users):
        favourites = rng.sample(genres, k=rng.choice((1, 2)))
        ts = start_ts + rng.uniform(0, 3600)
        for n in range(events_per_user):
            genre = rng.choice(favourites) if rng.random() < 0.85 else rng.choice(genres)
            ts += rng.expovariate(1 / 90.0)
            events.append(
                {
                    "event_id": f"demo-{u}-{n}",
                    "user_id": f"user-{u}",
                    "item_id": rng.choice(by_genre[genre]),
                    "event_type": rng.choices(kinds, weights)[0],
                    "timestamp": round(ts, 3),
                    "context": {"device": rng.choice(["web", "ios", "android"])},
                }
            )
    events.sort(key=lambda e: e["timestamp"])
    return events
