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
    sh("git", "init", "-q", cwd=dest)
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A", cwd=dest)
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "clone", cwd=dest)
    return dest


def test_repro_then_noop(clone):
    sh("dvc", "repro", cwd=clone)
    assert json.loads((clone / "metrics" / "validate.json").read_text())["images"] == 300
    start = time.perf_counter()
    again = sh("dvc", "repro", cwd=clone)
    elapsed = time.perf_counter() - start
    assert "Data and pipelines are up to date" in again.stdout
    status = sh("dvc", "status", "--json", cwd=clone)
    assert json.loads(status.stdout) == {}
    print(f"no-op dvc repro: {elapsed:.2f} s")


def test_exp_run_switches_dataset(clone):
    sh("dvc", "exp", "run", "-n", "synthetic", "-S", "dataset=synthetic", cwd=clone)
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=clone).stdout)
    text = json.dumps(shown)
    assert '"synthetic"' in text
    metrics = json.loads((clone / "metrics" / "validate.json").read_text())
    assert metrics["classes"] == 4 and metrics["images"] == 160
    # The experiment recomposed params.yaml from conf/ with the override.
    assert "name: synthetic" in (clone / "params.yaml").read_text()


def test_failed_stage_does_not_update_lock(clone):
    lock = (clone / "dvc.lock").read_text()
    bad = sh("dvc", "exp", "run", "-S", "dataset=folder", "-S", "dataset.source.path=missing_dir", cwd=clone, check=False)
    assert bad.returncode != 0
    assert (clone / "dvc.lock").read_text() == lock
