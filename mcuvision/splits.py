"""Deterministic train / val / test assignment and cross-split duplicate removal.

ST's rule (stm32ai-modelzoo): per class, sorted file list; classes concatenated; one shuffle
with numpy.random.RandomState(seed); the first part is train, the rest validation. A held-out
test share is cut from the end, so with test_fraction 0 the split is exactly ST's.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SPLIT_ORDER = ("train", "val", "test")


def st_split(rows: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """Split names for `rows` (columns label, path), indexed like `rows`."""
    ordered = rows.sort_values(["label", "path"], kind="stable")
    index = np.array(ordered.index)
    np.random.RandomState(seed).shuffle(index)
    n = len(index)
    train_end = int(n * (1.0 - val_fraction - test_fraction))
    val_end = n if test_fraction == 0 else train_end + int(round(n * val_fraction))
    names = np.empty(n, dtype=object)
    names[:train_end], names[train_end:val_end], names[val_end:] = "train", "val", "test"
    return pd.Series(names, index=index).reindex(rows.index)


def assign_splits(rows: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """Rows with a `source_split` of 'test' keep it (the dataset's own split); the rest follow ST's rule."""
    fixed = rows["source_split"] == "test"
    split = pd.Series("test", index=rows.index, dtype=object)
    free = rows[~fixed]
    if len(free):
        # A dataset with its own test set only needs validation carved from its train part.
        test_share = 0.0 if fixed.any() else test_fraction
        split[free.index] = st_split(free, val_fraction, test_share, seed)
    return split


def drop_cross_split_duplicates(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep each identical image (same sha256) in one split only: train before val before test,
    so evaluation never sees a training image. Returns (kept, dropped)."""
    rank = rows["split"].map({name: i for i, name in enumerate(SPLIT_ORDER)})
    first_split = rank.groupby(rows["sha256"]).transform("min")
    keep = rank == first_split
    return rows[keep], rows[~keep]
