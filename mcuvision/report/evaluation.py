"""Scores of one model's predictions on labelled images: top-k, per-class P/R/F1, confusion, and
two models paired on the same images; intervals and tests come from mcuvision/report/stats.py (Wilson
score interval, exact McNemar test).

Functions take arrays, not files, so the evaluate stage and the tests share them as they are.
`predicted`/`labels` are class indices; `probs` is (N, classes).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mcuvision.report.stats import mcnemar_exact, wilson_interval


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    if not len(labels):
        return float("nan")
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def per_class(predicted: np.ndarray, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class; a class never predicted has precision 0.

    `predicted`, `labels`: int class indices, shape (N,). One row per class, in `classes` order:
    precision, recall, f1 (fractions), support (int, images of that class), and recall_low /
    recall_high, the 95% Wilson interval of the recall over its support (stats.wilson_interval;
    NaN for a class with no image in the split)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(len(classes)), zero_division=0)
    found = np.diag(confusion(predicted, labels, classes))
    low, high = zip(*(wilson_interval(k, n) for k, n in zip(found, support))) if len(classes) else ((), ())
    return pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1,
                         "support": support.astype(int), "recall_low": low, "recall_high": high})


def scores(probs: np.ndarray, labels: np.ndarray, classes: list[str], top_k: int) -> dict:
    """Top-1 with its 95% Wilson interval, top-k for 10+ classes (as ImageNet-style cards do), macro P/R/F1.

    `probs`: float (N, classes); `labels`: int (N,). Keys: top1, top1_low, top1_high (fractions; the
    interval from stats.wilson_interval over the N images), n (int, images scored), top{k},
    macro_precision, macro_recall, macro_f1. N == 0 gives NaN figures."""
    predicted = probs.argmax(axis=1)
    table = per_class(predicted, labels, classes)
    low, high = wilson_interval(int(np.sum(predicted == labels)), len(labels))
    out = {"top1": top_k_accuracy(probs, labels, 1), "top1_low": low, "top1_high": high, "n": int(len(labels))}
    if len(classes) >= 10:
        out[f"top{top_k}"] = top_k_accuracy(probs, labels, top_k)
    # Macro over the classes present in this split, so an absent class does not count as a zero.
    present = table[table["support"] > 0]
    out.update({f"macro_{m}": float(present[m].mean()) if len(present) else float("nan")
                for m in ("precision", "recall", "f1")})
    return out


def paired(reference: np.ndarray, other: np.ndarray, labels: np.ndarray) -> dict:
    """Two formats' top-1 predictions on the same images, in the same order: how often they agree
    and whether their accuracies differ beyond chance.

    `reference`, `other`, `labels`: int class indices, shape (N,). Returns {"agreement" (fraction of
    images where both predict the same class), "agreement_low", "agreement_high" (its 95% Wilson
    interval), "mcnemar": {"b", "c", "p_value"}} with b, c and the exact McNemar p-value from
    stats.mcnemar_exact (b: the reference right and the other wrong). Raises ValueError on shapes
    that differ."""
    reference, other, labels = np.asarray(reference), np.asarray(other), np.asarray(labels)
    if not reference.shape == other.shape == labels.shape:
        raise ValueError(f"expected three (N,) arrays, got {reference.shape}, {other.shape}, {labels.shape}")
    same = int(np.sum(reference == other))
    low, high = wilson_interval(same, len(labels))
    return {"agreement": same / len(labels) if len(labels) else float("nan"), "agreement_low": low,
            "agreement_high": high, "mcnemar": mcnemar_exact(reference == labels, other == labels)}


def confusion_rows(predicted: np.ndarray, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per image, class names: the shape DVC's `confusion` plot template reads."""
    names = np.asarray(classes, dtype=object)
    return pd.DataFrame({"actual": names[labels], "predicted": names[predicted]})


def confusion(predicted: np.ndarray, labels: np.ndarray, classes: list[str]) -> np.ndarray:
    return confusion_matrix(labels, predicted, labels=np.arange(len(classes)))


def plot_confusion(matrix: np.ndarray, classes: list[str], title: str, path) -> None:
    """PNG for people who do not use DVC; counts are written in the cells up to 20 classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    size = min(4 + 0.45 * n, 40)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set(title=title, xlabel="predicted", ylabel="actual", xticks=range(n), yticks=range(n))
    ax.set_xticklabels(classes, rotation=90, fontsize=8 if n > 20 else 10)
    ax.set_yticklabels(classes, fontsize=8 if n > 20 else 10)
    if n <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > threshold else "black", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
