"""Deterministic train / val / test assignment and cross-split duplicate removal.

Two rules (`dataset.split.rule`):
- `stratified` (default): per class, sorted file list shuffled with one numpy
  RandomState(seed) (classes in sorted order), then cut by the fractions, so every class with
  at least 3 images has one in train, val and test (2 images: train and val).
- `st`, ST's rule (stm32ai-modelzoo): per class, sorted file list; classes concatenated; one
  shuffle with numpy.random.RandomState(seed); the first part is train, the rest validation.
  A held-out test share is cut from the end, so with test_fraction 0 the split is exactly ST's.
  A rare class can end up with no val or no test image: validate warns, naming it.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

SPLIT_ORDER = ("train", "val", "test")
RULES = ("stratified", "st")


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


def class_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) image counts for a class of `n` images: each share rounded, then at
    least 1 in train, 1 in val when n >= 2, 1 in test when n >= 3 and test_fraction > 0."""
    low_val = 1 if n >= 2 else 0
    low_test = 1 if test_fraction > 0 and n >= 3 else 0
    n_val = max(math.floor(n * val_fraction + 0.5), low_val)
    n_test = max(math.floor(n * test_fraction + 0.5), low_test) if test_fraction > 0 else 0
    while n - n_val - n_test < 1:  # train keeps at least one image; the larger share gives first
        if n_test > low_test and n_test >= n_val:
            n_test -= 1
        elif n_val > low_val:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def stratified_split(rows: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """Split names for `rows` (columns label, path), indexed like `rows`, cut per class (class_counts)."""
    rng = np.random.RandomState(seed)
    names = pd.Series(index=rows.index, dtype=object)
    ordered = rows.sort_values(["label", "path"], kind="stable")
    for _, group in ordered.groupby("label", sort=True):
        index = np.array(group.index)
        rng.shuffle(index)
        n_train, n_val, _ = class_counts(len(index), val_fraction, test_fraction)
        names[index[:n_train]] = "train"
        names[index[n_train:n_train + n_val]] = "val"
        names[index[n_train + n_val:]] = "test"
    return names


def assign_splits(rows: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
                  rule: str = "stratified") -> pd.Series:
    """Rows with a `source_split` of 'test' keep it (the dataset's own split); the rest follow
    `rule` (RULES). Returns a Series of split names indexed like `rows`; raises ValueError for
    an unknown rule."""
    if rule not in RULES:
        raise ValueError(f"split rule {rule!r} is not one of {', '.join(RULES)}")
    fixed = rows["source_split"] == "test"
    split = pd.Series("test", index=rows.index, dtype=object)
    free = rows[~fixed]
    if len(free):
        # A dataset with its own test set only needs validation carved from its train part.
        test_share = 0.0 if fixed.any() else test_fraction
        cut = st_split if rule == "st" else stratified_split
        split[free.index] = cut(free, val_fraction, test_share, seed)
    return split


def missing_splits(rows: pd.DataFrame, classes: list[str], splits: list[str] | None = None) -> dict[str, list[str]]:
    """{class: the splits of `splits` (default: those the data has) where it has no image};
    classes lacking none left out."""
    present = [s for s in SPLIT_ORDER if (rows["split"] == s).any()] if splits is None else list(splits)
    table = pd.crosstab(rows["label"], rows["split"]).reindex(index=classes, columns=present, fill_value=0)
    return {c: [s for s in present if table.loc[c, s] == 0] for c in classes
            if (table.loc[c] == 0).any()}


def drop_cross_split_duplicates(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep each identical image (same sha256) in one split only: train before val before test,
    so evaluation never sees a training image. Returns (kept, dropped)."""
    rank = rows["split"].map({name: i for i, name in enumerate(SPLIT_ORDER)})
    first_split = rank.groupby(rows["sha256"]).transform("min")
    keep = rank == first_split
    return rows[keep], rows[~keep]


def _bits(hex_hashes: pd.Series) -> np.ndarray:
    return np.array([int(h, 16) for h in hex_hashes], dtype=np.uint64)


def _candidate_pairs(bits: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j, of every pair of 64-bit hashes that may differ in at most `max_distance` bits:
    cut into max_distance + 1 bands, two such hashes agree exactly on at least one band
    (pigeonhole; Manku et al., "Detecting near-duplicates for web crawling", WWW 2007), so only
    pairs sharing a band value are candidates. A superset: distances are checked afterwards."""
    bands = max_distance + 1
    found_i, found_j = [], []
    for band in range(bands):
        low, high = 64 * band // bands, 64 * (band + 1) // bands
        key = (bits >> np.uint64(low)) & np.uint64((1 << (high - low)) - 1)
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
            members = np.sort(order[start:start + size])
            a, b = np.triu_indices(size, 1)
            found_i.append(members[a])
            found_j.append(members[b])
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = np.unique(np.stack([np.concatenate(found_i), np.concatenate(found_j)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def near_duplicate_pairs(rows: pd.DataFrame, max_distance: int) -> pd.DataFrame:
    """Pairs of rows (index labels `a`, `b`, a before b) whose 64-bit dHashes differ in at most
    `max_distance` bits and whose pHashes differ in at most twice that; rows without hashes
    ("") are left out. Returns columns a, b, dhash_distance, phash_distance.

    The pHash confirmation keeps textureless look-alikes apart: on the project's synthetic
    stripes, 18 of 28,680 pairs are within 4 dHash bits and none within 8 pHash bits, while the
    re-saved, resized and recoloured copies found in 2,791 flower photos pass both. Candidates
    come from exact matches on bands of the dHash (_candidate_pairs), not from all n^2 pairs.
    """
    hashed = rows[(rows["dhash"] != "") & (rows["phash"] != "")]
    index, dhash, phash = np.array(hashed.index), _bits(hashed["dhash"]), _bits(hashed["phash"])
    i, j = _candidate_pairs(dhash, max_distance)
    d_dist = np.bitwise_count(dhash[i] ^ dhash[j]).astype(int)
    p_dist = np.bitwise_count(phash[i] ^ phash[j]).astype(int)
    keep = (d_dist <= max_distance) & (p_dist <= 2 * max_distance)
    return pd.DataFrame({"a": index[i[keep]], "b": index[j[keep]],
                         "dhash_distance": d_dist[keep], "phash_distance": p_dist[keep]})


def gather_near_duplicates(rows: pd.DataFrame, pairs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each group of near-duplicates (pairs joined transitively) goes to the first split any of
    its images is in (train, then val, then test), so evaluation never scores a copy of a training
    image; nothing is dropped. Returns (new split per row, indexed like `rows`; boolean Series of
    the rows that moved)."""
    parent = {label: label for label in rows.index}

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(pairs["a"], pairs["b"]):
        parent[root(a)] = root(b)
    group = pd.Series([root(label) for label in rows.index], index=rows.index)
    rank = rows["split"].map({name: i for i, name in enumerate(SPLIT_ORDER)})
    first = rank.groupby(group).transform("min")
    split = first.map(dict(enumerate(SPLIT_ORDER)))
    return split, split != rows["split"]
