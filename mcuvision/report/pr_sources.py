"""What the pull-request report reads: git (the repository, BASE's sha, files at BASE), DVC (`params
diff`, `metrics diff`, as its CLI prints them) and the workspace's records (JSON, YAML).

Every failure a person can fix is a ReportError that says what to do.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

from mcuvision.errors import PipelineError

PARAMS_FILE = "params.yaml"
EVALUATE_METRICS = "metrics/evaluate.json"
PROFILE_METRICS = "metrics/profile.json"
CONFUSION_DIR = "reports/evaluate/confusion"
PREDICTIONS = "reports/evaluate/predictions.csv"


class ReportError(PipelineError, RuntimeError):
    """The report cannot be made; the message says why, for a person."""


def _env() -> dict:
    # `dvc` is this environment's (a venv is not always activated, e.g. under `make` or CI);
    # analytics would try the network on every call.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True)
    except FileNotFoundError as error:
        raise ReportError(f"`{args[0]}` is not installed or not on PATH") from error


def repo_root(start: Path) -> Path:
    """The top of the git work tree holding `start`; it must also be a DVC project."""
    start = Path(start)
    if not start.is_dir():
        raise ReportError(f"{start} is not a directory")
    found = _run(["git", "rev-parse", "--show-toplevel"], start)
    if found.returncode != 0:
        raise ReportError(f"{start.resolve()} is not inside a git repository "
                          "(the report compares git revisions)")
    root = Path(found.stdout.strip())
    if not (root / ".dvc").is_dir():
        raise ReportError(f"{root} is a git repository but not a DVC project (no .dvc/): run `dvc init`")
    return root


def resolve_revision(root: Path, rev: str) -> str:
    """The commit sha BASE names, or a ReportError that says what to do."""
    found = _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root)
    if found.returncode != 0 or not found.stdout.strip():
        raise ReportError(f"unknown revision {rev!r}: not a branch, tag or commit here "
                          f"(for a remote branch, `git fetch origin` first and pass origin/<branch>)")
    return found.stdout.strip()


def workspace_label(root: Path) -> str:
    head = _run(["git", "rev-parse", "--short", "HEAD"], root).stdout.strip() or "no commit"
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], root).stdout.strip()
    return f"HEAD `{head}`" + (" with uncommitted changes" if dirty else "")


def git_show_bytes(root: Path, rev: str, path: str) -> bytes | None:
    """A file's bytes at `rev` (binary-safe), or None where it does not exist there."""
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True)
    return shown.stdout if shown.returncode == 0 else None


def git_show(root: Path, rev: str, path: str) -> str | None:
    """A file's text at `rev`, or None where it does not exist there."""
    data = git_show_bytes(root, rev, path)
    return data.decode("utf-8") if data is not None else None


def workspace_text(root: Path, path: str) -> str | None:
    """A file's text in the workspace, or None where it does not exist there."""
    file = root / path
    return file.read_text(encoding="utf-8") if file.is_file() else None


def dvc_diff(root: Path, kind: str, base: str, precision: int) -> str:
    """`dvc {params,metrics} diff BASE --md` as DVC prints it; "" when nothing changed."""
    args = ["dvc", kind, "diff", base, "--md"]
    if kind == "metrics":
        args += ["--precision", str(precision)]
    done = _run(args, root)
    if done.returncode != 0:
        raise ReportError(f"`{' '.join(args)}` failed: {(done.stderr or done.stdout).strip()}")
    return sorted_table(done.stdout) if table_rows(done.stdout) else ""


def table_rows(markdown: str) -> int:
    """Data rows of a Markdown table; DVC prints the header alone when nothing changed."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return max(len(lines) - 2, 0)


def sorted_table(markdown: str) -> str:
    """DVC's table with its rows in path, then name order.

    DVC lists files in a different order from one run to the next; a comment updated on each push
    should only change where the numbers do. DVC pads every row to the same widths, so sorting the
    lines sorts by the first column, then the second.
    """
    lines = [line for line in markdown.strip().splitlines() if line.startswith("|")]
    return "\n".join(lines[:2] + sorted(lines[2:]))


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_yaml(path: Path) -> dict | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def number(value) -> float | None:
    """`value` as a float when it is a measurement: not a bool (an int in Python), not a NaN (no images
    scored), not missing; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)
