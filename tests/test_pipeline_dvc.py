"""End to end through the real DVC CLI, in a fresh git clone of the project."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from mcuvision.report.stats import interval_text

pytestmark = pytest.mark.slow
EPOCHS = 8
# 8 epochs, not 2: at 2 the 64x64 model was at chance on the 8 test images for 2 of 5 runs (int8 top-1
# 0.25, seeds 1 and 2); at 8 it learns the synthetic classes on most splits, for ~10 s more per training.
TINY = ["dataset=synthetic", "dataset.source.images_per_class=12", "dataset.source.image_size=48",
        "model.res=32", f"train.epochs={EPOCHS}", "train.batch_size=8", "train.warmup_epochs=0",
        "quantize.calibration_images=16"]
# The int8 top-1 after the resolution change, on the 8 test images (2 per class of 4): chance is 0.25,
# and a model predicting one class gets exactly 0.25. Measured as that test leaves the project (64x64,
# 8 epochs, 8 calibration images): with the project's seed 127, whose split this test always uses,
# 1.0, 0.625 and 0.625 in 3 runs (training is not deterministic) and at least 0.5 in this test's own
# run; with other seeds' splits 1.0, 0.75, 0.875 and once 0.125 (seed 4). 3 of 8 is one image above
# chance and two below the lowest seen at seed 127; a model at chance passes it in 32% of runs
# (binomial n=8, p=0.25), a collapsed one never. 8 images allow no tighter bound that holds.
MIN_INT8_TOP1 = 0.375


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return sh("git", "-c", "user.email=t@t", "-c", "user.name=t", *args, cwd=repo)


def sh(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    # Stage commands call `python`: it must be this environment's.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The project as CI and a colleague get it: `git clone` of the committed HEAD, nothing else. A file
    the pipeline needs that was never committed fails these tests (commit before running them:
    uncommitted changes of the working tree are not what they run). The checkout is only read."""
    dest = tmp_path_factory.mktemp("clone") / "project"
    sh("git", "clone", "-q", "--no-hardlinks", str(ROOT), str(dest), cwd=dest.parent)
    # A tiny configuration keeps the whole pipeline to seconds; it is what `dvc repro` runs below.
    tiny = sh(sys.executable, "-m", "mcuvision.compose", *TINY, "--output", "params.yaml", cwd=dest)
    assert tiny.returncode == 0
    git(dest, "commit", "-qam", "tiny params")
    return dest


def test_repro_then_noop(clone):
    sh("dvc", "repro", cwd=clone)
    assert json.loads((clone / "metrics" / "validate.json").read_text())["images"] == 48
    assert json.loads((clone / "metrics" / "train.json").read_text())["epochs_run"] == EPOCHS
    assert (clone / "models" / "float.keras").is_file()
    quantized = json.loads((clone / "metrics" / "quantize.json").read_text())
    assert quantized["int8_tflite"]["input"]["dtype"] == "uint8"
    assert (clone / "artifacts" / "st_efficientnetlcv1_32_tfs_int8.tflite").is_file()
    # The int4/int8 search is off by default: its output folder holds only a record that says so.
    assert [p.name for p in (clone / "models" / "qdq_w4w8").iterdir()] == ["search.json"]
    assert json.loads((clone / "models" / "qdq_w4w8" / "search.json").read_text()) == {"enabled": False}
    assert "w4w8_qdq_onnx" not in quantized
    assert (clone / "artifacts" / "SHA256SUMS").is_file()
    evaluated = json.loads((clone / "metrics" / "evaluate.json").read_text())
    int8 = evaluated["int8_tflite"]
    assert evaluated["split"] == "test" and 0 <= int8["top1_low"] <= int8["top1"] <= int8["top1_high"] <= 1
    card = (clone / "reports" / "model_card.md").read_text()
    assert f"| {interval_text(int8['top1'], int8['top1_low'], int8['top1_high'], int8['n'])} |" in card
    assert "STM32H747I-DISCO" in card
    predictions = (clone / "reports" / "evaluate" / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + evaluated["images"] and predictions[0].startswith("path,label,float_keras_predicted")
    assert "images_per_s" not in json.dumps(evaluated)
    # `dvc exp show` leads with top-1 and has at most 30 metric columns (every stage's record gave 329):
    # DVC reads one metrics file, and its columns open the table right after the 5 fixed ones.
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=clone).stdout)[""]["data"]
    assert list(shown) == ["metrics/headline.json"]
    headline = leaf_paths(shown["metrics/headline.json"]["data"])
    header = next(csv.reader(io.StringIO(sh("dvc", "exp", "show", "--no-pager", "--csv", cwd=clone).stdout)))
    assert [c.split(":", 1)[-1] for c in header[5:5 + len(headline)]] == headline, header[:40]
    assert headline[0] == "float_keras.top1" and len(headline) <= 30
    print(f"dvc exp show: {len(headline)} metric columns of {len(header)}")
    assert f"{quantized['calibration_images']} calibration images" in card
    plots = json.loads(sh("dvc", "plots", "show", "--json", cwd=clone).stdout)
    assert "Confusion, int8 TFLite" in plots["data"], list(plots["data"])
    start = time.perf_counter()
    again = sh("dvc", "repro", cwd=clone)
    elapsed = time.perf_counter() - start
    assert "Data and pipelines are up to date" in again.stdout
    status = sh("dvc", "status", "--json", cwd=clone)
    assert json.loads(status.stdout) == {}
    print(f"no-op dvc repro: {elapsed:.2f} s")


def leaf_paths(document, prefix: str = "") -> list[str]:
    """Column names `dvc exp show` gives a metrics document: one per scalar, none for a list or null."""
    if isinstance(document, dict):
        return [p for k, v in document.items() for p in leaf_paths(v, f"{prefix}.{k}" if prefix else k)]
    return [] if document is None or isinstance(document, list) else [prefix]


def test_exp_run_switches_board(clone):
    # A config group switched through Hydra: `-S board=...` recomposes params.yaml from conf/. It is also
    # the board row of the invalidation table: only the profile and the card rerun.
    overrides = [arg for o in TINY for arg in ("-S", o)]
    run = sh("dvc", "exp", "run", "-n", "other-board", *overrides, "-S", "board=stm32f769i_disco", cwd=clone)
    assert stages_run(run.stdout) == ["profile_on_board", "model_card"], run.stdout
    shown = json.dumps(json.loads(sh("dvc", "exp", "show", "--json", cwd=clone).stdout))
    assert '"other-board"' in shown and "best_val_accuracy" in shown
    assert "name: stm32f769i_disco" in (clone / "params.yaml").read_text()
    assert "STM32F769I-DISCO" in (clone / "reports" / "model_card.md").read_text()


def test_failed_stage_does_not_update_lock(clone):
    lock, params = (clone / "dvc.lock").read_text(), (clone / "params.yaml").read_text()
    try:
        bad = sh("dvc", "exp", "run", "-S", "dataset=folder", "-S", "dataset.source.path=missing_dir",
                 cwd=clone, check=False)
        assert bad.returncode != 0
        assert (clone / "dvc.lock").read_text() == lock
    finally:  # `exp run -S` rewrote params.yaml in the workspace before failing
        (clone / "params.yaml").write_text(params)


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", output)


def repro_after_change(clone: Path, section: str, key: str, value) -> list[str]:
    """Stages a real `dvc repro` runs after one params.yaml change, from an up-to-date pipeline."""
    sh("dvc", "repro", cwd=clone)
    params_file = clone / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params[section][key] = value
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    return stages_run(sh("dvc", "repro", cwd=clone).stdout)


# The invalidation table of docs/reproducibility.md, row by row, each a real `dvc repro` but the dataset
# and quantize rows (state carries on); the board row is test_exp_run_switches_board's run.
AFTER_QUANTIZE = ["quantize", "export", "profile_on_board", "evaluate", "model_card"]


def test_evaluate_change_reruns_only_evaluate_and_the_card(clone):
    assert repro_after_change(clone, "evaluate", "batch_size", 5) == ["evaluate", "model_card"]


def test_guard_change_reruns_nothing(clone):
    # Guards are read by the pull-request report, not by any stage.
    assert repro_after_change(clone, "evaluate", "guards", {"max_int8_drop_points": 9.0, "max_w4w8_drop_points": 9.0,
                                                            "min_agreement_with_float": 0.1}) == []


def stages_a_dry_run_names(clone: Path, key: str, value) -> list[str]:
    """From an up-to-date pipeline, the stages `dvc repro --dry` names after setting the dotted `key` of
    params.yaml to `value`: those whose own params or deps changed. params.yaml is put back after."""
    sh("dvc", "repro", cwd=clone)
    params_file = clone / "params.yaml"
    before = params_file.read_text()
    params = yaml.safe_load(before)
    *path, name = key.split(".")
    section = params
    for part in path:
        section = section[part]
    section[name] = value
    try:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        return stages_run(sh("dvc", "repro", "--dry", cwd=clone).stdout)
    finally:
        params_file.write_text(before)


# Two rows by a dry run: a real one costs a whole pipeline (dataset) or a quantize and every stage after it,
# each about a fourth of this file's time. A dry run names the stages whose own params changed, without
# running them; that every stage after a rerun one follows is what the real rows show.
def test_dataset_change_reruns_from_ingest(clone):
    assert stages_a_dry_run_names(clone, "dataset.source.images_per_class", 16) == ["ingest"]


def test_quantize_change_reruns_quantize_first_and_never_train(clone):
    # export reads quantize's settings too
    assert stages_a_dry_run_names(clone, "quantize.calibration_images", 12) == ["quantize", "export"]


def check_the_resolution_run(clone: Path) -> None:
    """What the `model.res` 32 -> 64 run left: an int8 model above chance on every test image of the
    manifest, and every model downstream of train remade at 64x64."""
    evaluated = json.loads((clone / "metrics" / "evaluate.json").read_text())
    # TINY's 12 images a class of 4 classes: 8 test images.
    test_images = sum(1 for row in csv.DictReader(io.StringIO((clone / "data" / "manifest.csv").read_text()))
                      if row["split"] == "test")
    assert evaluated["images"] == test_images >= 8
    assert evaluated["int8_tflite"]["top1"] >= MIN_INT8_TOP1, evaluated["int8_tflite"]
    quantized = json.loads((clone / "metrics" / "quantize.json").read_text())
    assert quantized["int8_tflite"]["input"]["shape"] == [1, 64, 64, 3]
    assert "64x64" in (clone / "reports" / "model_card.md").read_text()


@pytest.mark.optional  # two more pipeline runs through DVC's queue workers: `make test-all`
def test_queued_sweep_runs(clone):
    sh("dvc", "repro", cwd=clone)
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "before the sweep")
    sh("dvc", "exp", "run", "--queue", "-S", "model.res=32,64", cwd=clone)
    sh("dvc", "queue", "start", "-j", "1", cwd=clone)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = sh("dvc", "queue", "status", cwd=clone).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(5)
    assert "Success" in status and "Failed" not in status, status
    rows = json.loads(sh("dvc", "exp", "show", "--json", cwd=clone).stdout)
    text = json.dumps(rows)
    # Both sweep points are listed with the evaluate metrics of their own run.
    assert text.count('"res": 32') >= 1 and text.count('"res": 64') >= 1 and "int8_tflite" in text


def test_remote_shares_outputs_and_run_cache(clone, tmp_path):
    """A local folder remote stands in for S3/GCS/SSH: same commands, same behaviour."""
    sh("dvc", "repro", cwd=clone)
    sh("dvc", "remote", "add", "-d", "-f", "shared", str(tmp_path / "remote"), cwd=clone)
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "pipeline state + remote")
    sh("dvc", "push", cwd=clone)  # the committed pipeline's outputs
    # One more run, shared through the run-cache only: its params are not committed. It is also the
    # `model.res` row of the invalidation table (train and every stage after it, never ingest or validate).
    assert repro_after_change(clone, "model", "res", 64) == ["train", *AFTER_QUANTIZE]
    check_the_resolution_run(clone)
    shared = sh(sys.executable, "-m", "mcuvision.share", cwd=clone).stdout
    assert re.search(r"share: \d+ run-cache records", shared), shared
    git(clone, "checkout", "--", ".")
    sh("dvc", "checkout", cwd=clone)

    other = tmp_path / "other"
    sh("git", "clone", "-q", str(clone), str(other), cwd=tmp_path)
    sh("dvc", "pull", cwd=other)
    assert json.loads(sh("dvc", "status", "--json", cwd=other).stdout) == {}
    assert stages_run(sh("dvc", "repro", cwd=other).stdout) == []
    # The run-cache: a colleague asking for the same training gets its outputs, and those of quantize
    # and export after it, without running them. Stages with reports kept in git (cache: false:
    # profile, evaluate, card) are never run-cached by DVC; they run again.
    sh("dvc", "pull", "--run-cache", cwd=other)
    params = yaml.safe_load((other / "params.yaml").read_text())
    params["model"]["res"] = 64
    (other / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh("dvc", "repro", "--pull", cwd=other).stdout
    for stage in ("train", "quantize", "export"):
        assert f"Stage '{stage}' is cached - skipping run" in out, out
    assert not {"ingest", "validate", "train", "quantize", "export"} & set(stages_run(out)), out
