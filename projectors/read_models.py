"""Kept for imports: the projection now lives in projectors/projection.py (pure folds) and
projectors/store.py (MongoDB/Redis writes); see projectors/README.md."""
from projectors.projection import PoisonMessage, validate  # noqa: F401
from projectors.store import READ_MODEL_COLLECTIONS, Store  # noqa: F401
