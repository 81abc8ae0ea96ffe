"""The ``Interactions`` container: who interacted with what, when, how much."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from turborec.data.vocab import Vocabulary
from turborec.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class ItemFeatures:
    """Categorical item features as token lists (e.g. genres) plus optional titles.

    ``tokens`` is a CSR-style pair: ``offsets`` (n_items + 1) into ``values``
    (indices into ``vocab``). Multi-valued features pool in the item tower.
    """

    offsets: np.ndarray
    values: np.ndarray
    vocab: Vocabulary
    titles: tuple[str, ...] | None = None

    @property
    def n_items(self) -> int:
        return len(self.offsets) - 1

    def padded(self, max_len: int | None = None) -> np.ndarray:
        """[n_items, L] int64 token matrix, -1 = padding."""
        lengths = np.diff(self.offsets)
        width = int(lengths.max(initial=0)) if max_len is None else max_len
        width = max(width, 1)
        out = np.full((self.n_items, width), -1, dtype=np.int64)
        kept = np.minimum(lengths, width)
        rows = np.repeat(np.arange(self.n_items), kept)
        cols = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
        out[rows, cols] = self.values[np.asarray(self.offsets[:-1])[rows] + cols]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "offsets": self.offsets.tolist(),
            "values": self.values.tolist(),
            "vocab": self.vocab.to_json(),
            "titles": list(self.titles) if self.titles is not None else None,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ItemFeatures:
        titles = obj.get("titles")
        return cls(
            offsets=np.asarray(obj["offsets"], dtype=np.int64),
            values=np.asarray(obj["values"], dtype=np.int64),
            vocab=Vocabulary.from_json(obj["vocab"]),
            titles=tuple(titles) if titles is not None else None,
        )

    @classmethod
    def from_token_lists(
        cls, lists: Sequence[Sequence[str]], titles: Sequence[str] | None = None
    ) -> ItemFeatures:
        vocab = Vocabulary.from_values(sorted({t for toks in lists for t in toks}), name="feature")
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(t) for t in lists])
        values = np.fromiter((vocab.index(t) for toks in lists for t in toks), dtype=np.int64, count=int(offsets[-1]))
        return cls(offsets, values, vocab, tuple(titles) if titles is not None else None)

    def subset(self, item_index: np.ndarray) -> ItemFeatures:
        """Features for the items ``item_index`` (new item order)."""
        idx = np.asarray(item_index, dtype=np.int64)
        starts = np.asarray(self.offsets, dtype=np.int64)
        lengths = starts[idx + 1] - starts[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths)
        # position p of the new values reads old value starts[item] + (p - offsets[item])
        source = np.repeat(starts[idx] - offsets[:-1], lengths) + np.arange(int(offsets[-1]))
        values = np.asarray(self.values, dtype=np.int64)[source]
        titles = tuple(self.titles[i] for i in idx.tolist()) if self.titles is not None else None
        return ItemFeatures(offsets, values, self.vocab, titles)


@dataclass(frozen=True, eq=False)
class Interactions:
    """User-item events with dense indices and the vocabularies that map them back.

    ``user`` and ``item`` are int32 arrays of indices into ``users`` / ``items``.
    ``rating``, ``timestamp`` (int64 seconds) and ``weight`` are optional arrays
    of the same length. Item features are indexed by item index.
    """

    user: np.ndarray
    item: np.ndarray
    users: Vocabulary
    items: Vocabulary
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    weight: np.ndarray | None = None
    item_features: ItemFeatures | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.user)
        if len(self.item) != n:
            raise DataError(f"user and item arrays differ in length ({n} vs {len(self.item)})")
        for name in ("rating", "timestamp", "weight"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise DataError(f"{name} has {len(arr)} values for {n} interactions")
        if n:
            if int(self.user.min()) < 0 or int(self.user.max()) >= len(self.users):
                raise DataError("user index out of vocabulary range")
            if int(self.item.min()) < 0 or int(self.item.max()) >= len(self.items):
                raise DataError("item index out of vocabulary range")
        if self.item_features is not None and self.item_features.n_items != len(self.items):
            raise DataError("item_features does not cover every item")

    # ------------------------------------------------------------- DataFrames
    @classmethod
    def from_pandas(
        cls,
        df: pd.DataFrame,
        user: str = "user_id",
        item: str = "item_id",
        rating: str | None = "rating",
        timestamp: str | None = "timestamp",
    ) -> Interactions:
        """Events from a pandas DataFrame, one row per event.

        ``rating`` and ``timestamp`` are read when the frame has those columns (None ignores
        them); datetime timestamps become epoch seconds. Bad rows raise DataError naming the row.
        """
        from turborec.data.loaders import frame_to_interactions

        return frame_to_interactions(df, user=user, item=item, rating=rating, timestamp=timestamp)

    @classmethod
    def from_polars(
        cls,
        df: Any,
        user: str = "user_id",
        item: str = "item_id",
        rating: str | None = "rating",
        timestamp: str | None = "timestamp",
    ) -> Interactions:
        """Events from a polars DataFrame (converted through pandas; same columns as :meth:`from_pandas`)."""
        to_pandas = getattr(df, "to_pandas", None)
        if to_pandas is None or type(df).__module__.split(".")[0] != "polars":
            raise DataError(f"expected a polars DataFrame, got {type(df).__name__}")
        return cls.from_pandas(to_pandas(), user=user, item=item, rating=rating, timestamp=timestamp)

    @classmethod
    def from_frame(cls, df: Any, **columns: str | None) -> Interactions:
        """A pandas or polars DataFrame; ``columns`` as in :meth:`from_pandas`."""
        if type(df).__module__.split(".")[0] == "polars":
            return cls.from_polars(df, **columns)  # type: ignore[arg-type]
        return cls.from_pandas(df, **columns)  # type: ignore[arg-type]

    def to_pandas(self) -> pd.DataFrame:
        """One row per event with the external ids: user_id, item_id[, rating][, timestamp][, weight]."""
        import pandas as pd

        cols: dict[str, Any] = {
            "user_id": self.users.decode(self.user),
            "item_id": self.items.decode(self.item),
        }
        for name in ("rating", "timestamp", "weight"):
            arr = getattr(self, name)
            if arr is not None:
                cols[name] = np.asarray(arr)
        return pd.DataFrame(cols)

    # ------------------------------------------------------------------ shape
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        extras = [n for n in ("rating", "timestamp", "weight") if getattr(self, n) is not None]
        return (
            f"Interactions({len(self)} events, {self.n_users} users, {self.n_items} items"
            + (f", with {', '.join(extras)}" if extras else "")
            + ")"
        )

    # ------------------------------------------------------------ derivations
    def to_csr(self, values: str | None = None) -> sp.csr_matrix:
        """users x items sparse matrix; duplicates summed; ``values`` = None (1s), 'rating' or 'weight'."""
        if values is None:
            data = np.ones(len(self), dtype=np.float32)
        else:
            arr = getattr(self, values)
            if arr is None:
                raise DataError(f"interactions have no {values}")
            data = np.asarray(arr, dtype=np.float32)
        m = sp.csr_matrix(
            (data, (self.user.astype(np.int64), self.item.astype(np.int64))),
            shape=(self.n_users, self.n_items),
        )
        m.sum_duplicates()
        return m

    def select(self, mask_or_index: np.ndarray) -> Interactions:
        """Subset of events, same vocabularies (so indices stay comparable)."""
        sel = np.asarray(mask_or_index)

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[sel]

        return replace(
            self,
            user=self.user[sel],
            item=self.item[sel],
            rating=pick(self.rating),
            timestamp=pick(self.timestamp),
            weight=pick(self.weight),
        )

    def item_popularity(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items).astype(np.int64)

    def time_order(self) -> np.ndarray:
        """Indices ordering events by (user, timestamp), stable: ties keep array order."""
        if self.timestamp is None:
            return np.argsort(self.user, kind="stable")
        if len(self) and int(self.timestamp.max()) - int(self.timestamp.min()) < 2**32:
            # both keys packed in one int64: a single stable sort, several times faster than lexsort
            key = (self.user.astype(np.int64) << 32) | (self.timestamp - self.timestamp.min())
            return np.argsort(key, kind="stable")
        return np.lexsort((self.timestamp, self.user))

    def sorted_by_time(self) -> Interactions:
        """Events ordered by (user, timestamp) stable; by user alone when there are no timestamps."""
        return self.select(self.time_order())

    def user_histories(self, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-user item sequences in time order as CSR (offsets[n_users+1], items).

        With ``max_len`` only each user's most recent ``max_len`` items are kept.
        """
        s = self.sorted_by_time()
        counts = np.bincount(s.user, minlength=self.n_users)
        offsets = np.zeros(self.n_users + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(counts)
        items = s.item.astype(np.int64)
        if max_len is None:
            return offsets, items
        keep_from = np.maximum(offsets[1:] - max_len, offsets[:-1])
        new_counts = offsets[1:] - keep_from
        pos = np.arange(len(items))
        user_of = np.repeat(np.arange(self.n_users), counts)
        mask = pos >= keep_from[user_of]
        new_offsets = np.zeros_like(offsets)
        new_offsets[1:] = np.cumsum(new_counts)
        return new_offsets, items[mask]

    def with_vocabularies(self, users: Vocabulary, items: Vocabulary) -> Interactions:
        """Re-index onto other vocabularies; events with unknown ids are dropped."""
        u = users.encode(self.users.decode(self.user), unknown="minus1")
        i = items.encode(self.items.decode(self.item), unknown="minus1")
        keep = (u >= 0) & (i >= 0)
        base = self.select(keep)
        feats = None
        if self.item_features is not None:
            old = self.items.encode(items.ids, unknown="minus1")
            if (old >= 0).all():
                feats = self.item_features.subset(old)
        return replace(
            base,
            user=u[keep].astype(np.int32),
            item=i[keep].astype(np.int32),
            users=users,
            items=items,
            item_features=feats,
        )
