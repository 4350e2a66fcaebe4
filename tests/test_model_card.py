"""The model card's like-for-like section: ST's best-validation figure and the held-out one, labelled."""
from __future__ import annotations

from mcuvision.model_card import BEST_VAL_LABEL, like_for_like

TRAIN = {"best_val_accuracy": 0.8812, "best_epoch": 91, "epochs_run": 100, "val_images": 557}


def evaluate(split: str) -> dict:
    return {"split": split, "images": 419, "float_keras": {"top1": 0.8512}, "int8_tflite": {"top1": 0.8496}}


def test_held_out_and_best_val_are_separate_labelled_rows():
    text = "\n".join(like_for_like({"resolution": [128, 128]}, TRAIN, evaluate("test")))
    best = next(line for line in text.splitlines() if BEST_VAL_LABEL in line)
    assert "88.12" in best and "87.19" in best and "epoch 91 of 100" in best
    held = next(line for line in text.splitlines() if line.startswith("| Held-out test top-1"))
    assert "85.12 / 84.96" in held and "419 images" in held and "87.19" not in held


def test_without_a_test_split_the_card_says_it_is_not_held_out():
    text = "\n".join(like_for_like({"resolution": [224, 224]}, TRAIN, evaluate("val")))
    assert "Held-out" not in text.split("|", 1)[1]
    row = next(line for line in text.splitlines() if "not held out" in line)
    assert "90.19 / 89.92" in row


def test_other_resolutions_show_no_seed_figure():
    text = "\n".join(like_for_like({"resolution": [96, 96]}, TRAIN, evaluate("test")))
    assert "87.19" not in text and "90.19" not in text and "128 and 224 only" in text
