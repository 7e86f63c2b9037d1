"""Learners and neural models. Never imports Faust; agents call into this package."""

from models.events import EVENT_TYPES, event_weight
from models.item_index import ItemFeaturizer, ItemIndex, ItemText
from models.popularity import DecayedPopularity
from models.profile import UserProfile
from models.recommender import Recommender, RecommenderConfig, ScoredItem
from models.text_encoder import (
    BertTextEncoder,
    HashingTextEncoder,
    build_text_encoder,
    packaged_minilm_path,
)

__all__ = [
    "EVENT_TYPES",
    "BertTextEncoder",
    "DecayedPopularity",
    "HashingTextEncoder",
    "ItemFeaturizer",
    "ItemIndex",
    "ItemText",
    "Recommender",
    "RecommenderConfig",
    "ScoredItem",
    "UserProfile",
    "build_text_encoder",
    "event_weight",
    "packaged_minilm_path",
]
