"""Scores of one model's predictions on labelled images: top-k, per-class P/R/F1, confusion.

Functions take arrays, not files, so the evaluate stage and the tests share them as they are.
`predicted`/`labels` are class indices; `probs` is (N, classes).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    if not len(labels):
        return float("nan")
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def per_class(predicted: np.ndarray, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class; a class never predicted has precision 0."""
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(len(classes)), zero_division=0)
    return pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1,
                         "support": support.astype(int)})


def scores(probs: np.ndarray, labels: np.ndarray, classes: list[str], top_k: int) -> dict:
    """Top-1 (and top-k for 10+ classes, as ImageNet-style cards do) and macro P/R/F1."""
    predicted = probs.argmax(axis=1)
    table = per_class(predicted, labels, classes)
    out = {"top1": top_k_accuracy(probs, labels, 1)}
    if len(classes) >= 10:
        out[f"top{top_k}"] = top_k_accuracy(probs, labels, top_k)
    # Macro over the classes present in this split, so an absent class does not count as a zero.
    present = table[table["support"] > 0]
    out.update({f"macro_{m}": float(present[m].mean()) if len(present) else float("nan")
                for m in ("precision", "recall", "f1")})
    return out


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
