"""The model card's accuracy figures: intervals and paired tests, the small-sample warning, and the
like-for-like section (ST's best-validation figure and the held-out one, labelled)."""
from __future__ import annotations

from mcuvision.report.model_card import BEST_VAL_LABEL, SMALL_SPLIT_IMAGES, _accuracy, like_for_like
from mcuvision.report.stats import wilson_interval

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


# --- the accuracy section: intervals, paired tests, the small-sample warning -------------------

def scored(n: int, float_right: int, int8_right: int) -> dict:
    doc = {"split": "test", "images": n}
    for name, k in (("float_keras", float_right), ("int8_tflite", int8_right)):
        low, high = wilson_interval(k, n)
        doc[name] = {"top1": k / n, "top1_low": low, "top1_high": high, "n": n, "macro_f1": 0.5}
    low, high = wilson_interval(n - 5, n)
    doc["int8_tflite"].update(drop_points=100 * (int8_right - float_right) / n, agreement_with_float=(n - 5) / n,
                              agreement_with_float_low=low, agreement_with_float_high=high,
                              mcnemar_vs_float={"b": 5, "c": 0, "p_value": 0.0625})
    return doc


META = {"resolution": [128, 128], "num_classes": 5, "source": {"dataset": "flowers_mini"}}


def test_accuracy_cells_carry_the_interval_n_and_the_paired_test():
    text = "\n".join(_accuracy(META, scored(45, 18, 13)))
    float_row = next(line for line in text.splitlines() if line.startswith("| ST EfficientNet") and "| Float |" in line)
    assert "| 40.0 (27.0-54.5), n=45 |" in float_row  # Wilson for 18 of 45
    int8_row = next(line for line in text.splitlines() if "| Int8 |" in line)
    assert "| -11.11 |" in int8_row and "| p=0.0625 (b=5, c=0) |" in int8_row
    assert "Wilson score interval (Wilson 1927)" in text and "exact McNemar" in text


def test_a_small_test_split_is_called_what_it_is_before_any_figure():
    section = _accuracy(META, scored(45, 18, 13))
    first = next(line for line in section[1:] if line)
    assert first.startswith("**Only 45 test images: the 95% interval on top-1 is about ±14 points wide**")
    assert "not the model" in first
    big = "\n".join(_accuracy(META, scored(SMALL_SPLIT_IMAGES, 160, 158)))
    assert "Only " not in big and "not the model" not in big
