"""Read data sets into event and catalog payloads, and replay them into Kafka.

Formats: RecBole atomic files (``.inter`` with an ``.item`` beside it) and
JSON-lines of BehaviorEvent / CatalogItem objects (told apart by ``event_type``).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm


def _atomic_rows(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a RecBole atomic file keyed by bare field name (``user_id:token`` → ``user_id``)."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [name.split(":", 1)[0] for name in next(reader)]
        for row in reader:
            if row:
                yield dict(zip(header, row, strict=False))


def read_atomic_inter(path: Path) -> list[dict[str, Any]]:
    """Interactions as events, in timestamp order (ties in file order).

    Each row becomes a ``rating`` event when it has a rating, else a ``view``;
    the event id is derived from the file and line so replays deduplicate.
    """
    events = []
    for line_no, row in enumerate(_atomic_rows(path)):
        rating = row.get("rating")
        event: dict[str, Any] = {
            "event_id": f"{path.stem}:{line_no}",
            "user_id": row["user_id"],
            "item_id": row["item_id"],
            "event_type": "rating" if rating else "view",
            "timestamp": float(row["timestamp"]),
        }
        if rating:
            event["value"] = float(rating)
        events.append(event)
    events.sort(key=lambda e: e["timestamp"])  # sort is stable: ties keep file order
    return events


def read_atomic_item(path: Path) -> list[dict[str, Any]]:
    items = []
    for row in _atomic_rows(path):
        title = row.get("movie_title") or row.get("title") or row.get("item_name") or ""
        categories = (row.get("class") or row.get("genre") or row.get("categories") or "").split()
        item: dict[str, Any] = {
            "item_id": row["item_id"],
            "title": title or f"item {row['item_id']}",
            "categories": categories,
        }
        year = row.get("release_year")
        if year:
            item["attributes"] = {"release_year": year}
        items.append(item)
    return items


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events, catalog items) from a JSON-lines file; lines are kept verbatim."""
    events, items = [], []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            doc = json.loads(line)
            (events if isinstance(doc, dict) and "event_type" in doc else items).append(doc)
    return events, items


def load_dataset(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events, catalog) from an ``.inter`` (+ sibling ``.item``), ``.item`` or ``.jsonl`` file."""
    path = Path(path)
    if path.suffix == ".inter":
        item_path = path.with_suffix(".item")
        catalog = read_atomic_item(item_path) if item_path.exists() else []
        return read_atomic_inter(path), catalog
    if path.suffix == ".item":
        return [], read_atomic_item(path)
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path)
    raise ValueError(f"unsupported data file {path}: expected .inter, .item or .jsonl")


def replay(
    producer: Any,
    topic: str,
    records: list[dict[str, Any]],
    key_field: str,
    rate: float | None = None,
    progress: bool = True,
    desc: str = "",
    stop: Any = None,
) -> int:
    """Send ``records`` keyed by ``key_field``, at most ``rate`` per second. Returns count sent.

    ``stop`` (a threading.Event) ends the replay early.
    """
    started = time.monotonic()
    sent = 0
    for record in tqdm(records, desc=desc or topic, unit="msg", disable=not progress):
        if stop is not None and stop.is_set():
            break
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        producer.send(topic, key=str(record.get(key_field, "")), value=record)
        sent += 1
    producer.flush()
    return sent
