"""benchmarks/levers.py: one split for every run, seeds paired with the baseline's, the lever table's
figures computed from the runs' per-image results."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from datasets import image_tree

sys.path.insert(0, str(ROOT / "benchmarks"))
import levers


def run_rows(lever: str, seeds_correct: dict[int, str], mode: str = "full") -> list[dict]:
    return [{"lever": lever, "seed": seed, "mode": mode, "top1": c.count("1") / len(c), "correct": c,
             "train_wall_s": 60.0} for seed, c in seeds_correct.items()]


def test_summary_pairs_seeds_and_pools_the_discordant_images():
    table = pd.DataFrame(run_rows("base", {127: "1100", 128: "1010"}) + run_rows("lever", {127: "1111", 128: "0111"})
                         + run_rows("unpaired", {130: "1111"}))
    rows = levers.summary(table).set_index("lever")
    assert rows.loc["base", "top1_mean"] == 50.0 and pd.isna(rows.loc["base", "p_value"])
    assert rows.loc["lever", "top1_mean"] == 87.5 and rows.loc["lever", "top1_sd"] == pytest.approx(17.68, abs=0.01)
    assert rows.loc["lever", "delta_points"] == 37.5
    # seed 127: base right & lever wrong on none, the reverse on 2; seed 128: b=1 (image 0), c=2
    assert (rows.loc["lever", "b"], rows.loc["lever", "c"]) == (1, 4)
    assert 0.3 < rows.loc["lever", "p_value"] < 0.4  # binomtest(1, 5): 0.375
    assert pd.isna(rows.loc["unpaired", "p_value"])  # no seed in common with the baseline


def test_modes_have_their_own_baseline():
    table = pd.DataFrame(run_rows("a", {127: "10"}, "screen 64x64") + run_rows("b", {127: "11"}, "screen 64x64")
                         + run_rows("b", {127: "01"}) + run_rows("a", {127: "00"}))
    rows = levers.summary(table)
    full = rows[rows["mode"] == "full"].set_index("lever")
    assert full.loc["a", "delta_points"] == -50.0 and pd.isna(full.loc["b", "delta_points"])


@pytest.mark.parametrize("text, parsed", [("baseline=", ("baseline", [])),
                                          ("ls=train.label_smoothing=0.2,train.dropout=0.3",
                                           ("ls", ["train.label_smoothing=0.2", "train.dropout=0.3"]))])
def test_lever_arguments(text, parsed):
    assert levers.parse_lever(text) == parsed


@pytest.mark.slow
def test_a_screening_sweep_trains_each_lever_on_the_same_split_and_resumes(tmp_path):
    images = image_tree(tmp_path / "images", {"cat": 12, "dog": 12}, seed=1)
    out = tmp_path / "runs.csv"
    command = [sys.executable, str(ROOT / "benchmarks" / "levers.py"), "--images", str(images), "--screen",
               "--set", "train.epochs=1", "--set", "train.warmup_epochs=0", "--set", "train.batch_size=8",
               "--set", "dataset.checks.min_side=16", "--set", "model.depth=0.1",
               "--lever", "baseline=", "--lever", "no smoothing=train.label_smoothing=0.0", "--seeds", "1",
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [(r["lever"], r["seed"], r["mode"]) for r in rows] == [("baseline", "127", "screen 64x64"),
                                                                 ("no smoothing", "127", "screen 64x64")]
    assert rows[0]["images"] == rows[1]["images"] and len(rows[0]["correct"]) == int(rows[0]["images"]) > 0
    assert "| screen 64x64 | no smoothing | 1 |" in done.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "seed 127 ..." not in again.stdout and len(list(csv.DictReader(out.open()))) == 2


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("levers*.md")) or [None])
def test_the_committed_lever_page_is_the_render_of_its_csv(page):
    if page is None:
        pytest.skip("no lever page committed yet")
    text = page.read_text(encoding="utf-8")
    source = text.split("rendered by benchmarks/levers.py --render from ")[1].split(":")[0]
    assert text == levers.render(Path(source)), f"run: python benchmarks/levers.py --summary {source} --render {page}"
