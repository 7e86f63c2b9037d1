"""The catalog as the ranker sees it: item ids, display text and a feature matrix.

Rows are assigned on first sight, whether an item arrives from the catalog or
only from an event (then it has no content vector until its catalog entry comes).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from models.text_encoder import TextEncoder


@dataclass(frozen=True)
class ItemText:
    item_id: str
    title: str
    categories: tuple[str, ...] = ()
    description: str | None = None

    def render(self) -> str:
        """The text BERT sees: title, genres, then description."""
        parts = [self.title]
        if self.categories:
            parts.append("Genres: " + ", ".join(self.categories))
        if self.description:
            parts.append(self.description)
        return ". ".join(parts)


class ItemFeaturizer:
    """Content vector = text embedding ⊕ hashed one-hot of categories, unit length.

    Categories get their own block because they are explicit structured signal
    that a sentence embedding blurs; ``category_weight`` is their share of the
    cosine similarity between two items that both have text and categories.
    """

    def __init__(
        self,
        encoder: TextEncoder | None,
        category_dims: int = 64,
        category_weight: float = 0.5,
    ) -> None:
        self.encoder = encoder
        self.category_dims = category_dims
        self.category_weight = category_weight

    @property
    def dim(self) -> int:
        return (self.encoder.dim if self.encoder else 0) + self.category_dims

    @property
    def name(self) -> str:
        return self.encoder.name if self.encoder else "categories-only"

    @property
    def text_dim(self) -> int:
        return self.encoder.dim if self.encoder else 0

    def new_index(self) -> ItemIndex:
        return ItemIndex(self.dim, text_dim=self.text_dim)

    def featurize(self, items: Sequence[ItemText]) -> np.ndarray:
        cats = np.zeros((len(items), self.category_dims), dtype=np.float32)
        for row, item in enumerate(items):
            for category in item.categories:
                cats[row, zlib.crc32(category.lower().encode()) % self.category_dims] = 1.0
        cats /= np.maximum(np.linalg.norm(cats, axis=1, keepdims=True), 1e-12)
        if self.encoder is None:
            return cats
        text = self.encoder.encode([item.render() for item in items])
        has_cats = cats.any(axis=1, keepdims=True)
        w_cat = np.where(has_cats, self.category_weight, 0.0).astype(np.float32)
        return np.hstack([text * np.sqrt(1.0 - w_cat), cats * np.sqrt(w_cat)]).astype(np.float32)


class ItemIndex:
    """Item ids ↔ rows, display metadata and the ``[n_items, dim]`` feature matrix."""

    def __init__(self, dim: int, initial_capacity: int = 1024, text_dim: int = 0) -> None:
        self.dim = dim
        self.text_dim = text_dim  # leading columns that hold the text embedding
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self.titles: list[str | None] = []
        self.categories: list[tuple[str, ...]] = []
        self._features = np.zeros((initial_capacity, dim), dtype=np.float32)
        self._has_content = np.zeros(initial_capacity, dtype=bool)
        self.retired: set[int] = set()  # rows deleted from the catalog: never recommended
        self.id_only = 0  # rows known from events only (no content yet)
        # Sums over all rows, kept up to date on upsert: each user's mean and spread of a
        # content score over all items follow from them (models.fusion.LinearScores).
        self._feature_sum = np.zeros(dim)
        self._feature_gram = np.zeros((dim, dim))
        self.content_version = 0  # bumped when stored feature rows change (caches key on it)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.row_of

    @property
    def features(self) -> np.ndarray:
        """``[n_items, dim]`` view; rows of items without content are zero."""
        return self._features[: len(self.ids)]

    @property
    def has_content(self) -> np.ndarray:
        return self._has_content[: len(self.ids)]

    def feature_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``[dim]`` and covariance ``[dim, dim]`` of the feature rows (float64)."""
        n = max(len(self.ids), 1)
        mean = self._feature_sum / n
        return mean, self._feature_gram / n - np.outer(mean, mean)

    def _grow(self, needed: int) -> None:
        capacity = self._features.shape[0]
        if needed <= capacity:
            return
        new_capacity = max(needed, capacity * 2)
        features = np.zeros((new_capacity, self.dim), dtype=np.float32)
        features[:capacity] = self._features
        has_content = np.zeros(new_capacity, dtype=bool)
        has_content[:capacity] = self._has_content
        self._features, self._has_content = features, has_content

    def ensure(self, item_id: str) -> int:
        """Row of ``item_id``, adding an id-only row if it is new."""
        row = self.row_of.get(item_id)
        if row is None:
            row = len(self.ids)
            self._grow(row + 1)
            self.ids.append(item_id)
            self.row_of[item_id] = row
            self.titles.append(None)
            self.categories.append(())
            self.id_only += 1
        return row

    def upsert(self, items: Iterable[ItemText], vectors: np.ndarray) -> list[int]:
        """Set text and content vectors of ``items`` (new or updated)."""
        items = list(items)
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        rows = [self.ensure(item.item_id) for item in items]
        changed = np.unique(np.array(rows, dtype=np.int64))
        before = self._features[changed].astype(np.float64)
        for item, vector, row in zip(items, vectors, rows, strict=True):
            if not self._has_content[row]:
                self.id_only -= 1
            self.retired.discard(row)
            self.titles[row] = item.title
            self.categories[row] = tuple(item.categories)
            self._features[row] = vector
            self._has_content[row] = True
        after = self._features[changed].astype(np.float64)
        self._feature_sum += after.sum(axis=0) - before.sum(axis=0)
        self._feature_gram += after.T @ after - before.T @ before
        self.content_version += 1
        return rows

    def retire(self, item_id: str) -> None:
        """The catalog deleted this item (a tombstone): keep its row, stop recommending it."""
        row = self.row_of.get(item_id)
        if row is not None:
            self.retired.add(row)

    def label(self, row: int) -> str:
        """Human-readable name of an item for reasons and logs."""
        title = self.titles[row]
        return f"'{title}'" if title else f"item {self.ids[row]}"
