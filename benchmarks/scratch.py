"""Scratch copies of the project for the benchmarks: a checkout, its params and data, its stages.

The benchmarks run the real stage commands of dvc.yaml in a copy (of the working tree, or of a
git revision), each in a fresh process as `dvc repro` runs them, so nothing in the user's
workspace changes and tracing, decoding and caching are all counted.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", ".dvc", ".cache", "data", "models", "artifacts", "dvclive",
                                     "reports", "metrics", "__pycache__", ".pytest_cache")


def cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo (None where absent or unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), for the figures' captions."""
    return cpuinfo("model name") or platform.processor() or "unknown CPU"


def _environment(cwd: Path) -> dict:
    # python and the stages' `python` are this interpreter's; the copy's own code comes first.
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(cwd),
            "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def python(args: list[str], cwd: Path) -> str:
    """Run `python ARGS` in `cwd`; its output, or exit with the tail of it when it fails."""
    done = subprocess.run([PYTHON, *args], cwd=cwd, env=_environment(cwd), capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"python {' '.join(args)} failed in {cwd}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def stage(name: str, cwd: Path) -> str:
    """Run stage `name`'s command as dvc.yaml gives it, in `cwd`; its output (exit on failure)."""
    cmd = yaml.safe_load((cwd / "dvc.yaml").read_text(encoding="utf-8"))["stages"][name]["cmd"]
    done = subprocess.run(cmd, shell=True, cwd=cwd, env=_environment(cwd), capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"stage {name} failed in {cwd}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def folder_dataset(images: Path, overrides: list[str], project: Path) -> list[str]:
    """Hydra overrides that make `images` (class folders) the dataset, split by ST's rule with no
    test share (ST's protocol) unless `overrides` set the rule or the test share themselves (a
    revision of `project` older than the split rule has only ST's rule)."""
    dataset = ["dataset=folder", f"dataset.source.path={images}",
               f"dataset.num_classes={sum(p.is_dir() for p in images.iterdir())}",
               "dataset.checks.min_images_per_class=5"]
    has_rule = "rule:" in (project / "conf/dataset/folder.yaml").read_text(encoding="utf-8")
    for key, value in (("dataset.split.test_fraction", "0"), ("dataset.split.rule", "st")):
        if (has_rule or key != "dataset.split.rule") and not any(o.startswith(f"{key}=") for o in overrides):
            dataset.append(f"{key}={value}")
    return dataset


def prepare(source: Path | str, scratch: Path, overrides: list[str], images: Path) -> Path:
    """`scratch`: a copy of the working tree (`source` a Path) or of git revision `source`, its
    params.yaml composed with `overrides` on `images`, and ingest and validate run."""
    if isinstance(source, Path):
        shutil.copytree(source, scratch, ignore=COPY_IGNORE)
    else:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(scratch)], check=True)
        subprocess.run(["git", "-C", str(scratch), "checkout", "--quiet", source], check=True)
    python(["-m", "mcuvision.compose", *folder_dataset(images, overrides, scratch), *overrides], scratch)
    stage("ingest", scratch)
    stage("validate", scratch)
    return scratch
