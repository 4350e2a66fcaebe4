"""End to end through the real DVC CLI, in a fresh git clone of the project."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
TINY = ["dataset=synthetic", "dataset.source.images_per_class=12", "dataset.source.image_size=48",
        "model.res=32", "train.epochs=2", "train.batch_size=8", "train.warmup_epochs=0",
        "quantize.calibration_images=16"]


def sh(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    # Stage commands call `python`: it must be this environment's.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The working tree as a user would clone it: tracked and new files, nothing ignored."""
    dest = tmp_path_factory.mktemp("clone") / "project"
    files = sh("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    # A tiny configuration keeps the whole pipeline to seconds; it is what `dvc repro` runs below.
    tiny = sh(sys.executable, "-m", "mcuvision.compose", *TINY, "--output", "params.yaml", cwd=dest)
    assert tiny.returncode == 0
    sh("git", "init", "-q", cwd=dest)
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A", cwd=dest)
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "clone", cwd=dest)
    return dest


def test_repro_then_noop(clone):
    sh("dvc", "repro", cwd=clone)
    assert json.loads((clone / "metrics" / "validate.json").read_text())["images"] == 48
    assert json.loads((clone / "metrics" / "train.json").read_text())["epochs_run"] == 2
    assert (clone / "models" / "float.keras").is_file()
    quantized = json.loads((clone / "metrics" / "quantize.json").read_text())
    assert quantized["int8_tflite"]["input"]["dtype"] == "uint8"
    assert (clone / "artifacts" / "st_efficientnetlcv1_32_tfs_int8.tflite").is_file()
    assert (clone / "artifacts" / "SHA256SUMS").is_file()
    start = time.perf_counter()
    again = sh("dvc", "repro", cwd=clone)
    elapsed = time.perf_counter() - start
    assert "Data and pipelines are up to date" in again.stdout
    status = sh("dvc", "status", "--json", cwd=clone)
    assert json.loads(status.stdout) == {}
    print(f"no-op dvc repro: {elapsed:.2f} s")


def test_exp_run_switches_dataset(clone):
    overrides = [arg for o in TINY if not o.startswith("dataset.source.images_per_class") for arg in ("-S", o)]
    sh("dvc", "exp", "run", "-n", "more-images", *overrides, "-S", "dataset.source.images_per_class=16", cwd=clone)
    shown = json.dumps(json.loads(sh("dvc", "exp", "show", "--json", cwd=clone).stdout))
    assert '"more-images"' in shown and "best_val_accuracy" in shown
    metrics = json.loads((clone / "metrics" / "validate.json").read_text())
    assert metrics["classes"] == 4 and metrics["images"] == 64
    # The experiment recomposed params.yaml from conf/ with the overrides.
    assert "images_per_class: 16" in (clone / "params.yaml").read_text()


def test_failed_stage_does_not_update_lock(clone):
    lock, params = (clone / "dvc.lock").read_text(), (clone / "params.yaml").read_text()
    try:
        bad = sh("dvc", "exp", "run", "-S", "dataset=folder", "-S", "dataset.source.path=missing_dir",
                 cwd=clone, check=False)
        assert bad.returncode != 0
        assert (clone / "dvc.lock").read_text() == lock
    finally:  # `exp run -S` rewrote params.yaml in the workspace before failing
        (clone / "params.yaml").write_text(params)


def would_run(clone: Path, section: str, key: str, value) -> list[str]:
    """Stages `dvc repro --dry` would run after one params.yaml change (then undone)."""
    import re

    import yaml

    params_file = clone / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params[section][key] = value
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        dry = sh("dvc", "repro", "--dry", cwd=clone).stdout
    finally:
        params_file.write_text(original)
    return re.findall(r"Running stage '([\w-]+)'", dry)


def test_quantize_change_never_retrains(clone):
    sh("dvc", "repro", cwd=clone)
    # --dry lists the stages whose own deps changed; stages after them re-run when their inputs do.
    ran = would_run(clone, "quantize", "calibration_images", 8)
    assert ran[0] == "quantize" and set(ran) <= {"quantize", "export", "profile_on_board"}


def test_resolution_change_never_reingests(clone):
    sh("dvc", "repro", cwd=clone)
    ran = would_run(clone, "model", "res", 64)
    assert ran[0] == "train" and not {"ingest", "validate"} & set(ran)


def test_board_change_reruns_only_the_profile(clone):
    sh("dvc", "repro", cwd=clone)
    assert would_run(clone, "board", "clock_mhz", 480) == ["profile_on_board"]
    assert (clone / "reports" / "profile.md").is_file()
