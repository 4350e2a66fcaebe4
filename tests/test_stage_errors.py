"""One convention for errors: a user's mistake (a PipelineError) is one line on stderr and exit status 2
in every stage; any other exception is a bug and reaches the interpreter with its traceback."""
from __future__ import annotations

import ast
import builtins
import importlib
import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, stage_command, stage_env
from mcuvision.errors import USER_ERROR, PipelineError

STAGES = ["ingest", "validate", "train", "quantize", "export", "profile_on_board", "evaluate", "model_card"]
# Exceptions that are no user's mistake: download.py's signal to retry an attempt cut short.
OUTSIDE = {"_Incomplete"}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with params.yaml and, for evaluate's main (it reads the class names before run),
    metrics/train.json; every other pipeline input is missing."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "train.json").write_text(json.dumps({"classes": ["a", "b"]}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def call_main(name: str, monkeypatch, error: BaseException):
    """Run stage `name`'s main() with its dvc.yaml arguments, its run() replaced by one raising `error`."""
    module = importlib.import_module(f"stages.{name}")
    monkeypatch.setattr(sys, "argv", [name, *stage_command(name)[3:]])

    def failing_run(*args, **kwargs):
        raise error

    monkeypatch.setattr(module, "run", failing_run)
    module.main()


@pytest.mark.parametrize("name", STAGES)
def test_a_users_mistake_is_one_line_and_exit_status_2(name, project, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exited:
        call_main(name, monkeypatch, PipelineError("data/raw/SOURCE.json: no such file or folder"))
    assert exited.value.code == USER_ERROR == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"{name} failed: data/raw/SOURCE.json: no such file or folder"]


@pytest.mark.parametrize("name", STAGES)
def test_a_bug_keeps_its_traceback(name, project, monkeypatch):
    with pytest.raises(KeyError, match="a typo in the code"):
        call_main(name, monkeypatch, KeyError("a typo in the code"))


def test_ingest_does_not_swallow_a_value_error_from_a_bug(project, monkeypatch):
    from stages import ingest

    def bring(*args, **kwargs):
        raise ValueError("a bug, not the user's mistake")

    monkeypatch.setattr(ingest, "bring", bring)
    monkeypatch.setattr(sys, "argv", ["ingest", "--out", str(project / "raw")])
    with pytest.raises(ValueError, match="a bug"):
        ingest.main()


@pytest.mark.parametrize("onednn", ["default", "1"])
def test_export_names_a_missing_input_in_one_line(project, onednn):
    """The stage as DVC runs it, in a project where quantize has not run: no traceback, and none of
    the lines TensorFlow logs past TF_CPP_MIN_LOG_LEVEL where oneDNN's optimisations are on (forced
    with TF_ENABLE_ONEDNN_OPTS=1, so that every CPU checks it)."""
    env = stage_env() if onednn == "default" else stage_env(TF_ENABLE_ONEDNN_OPTS=onednn)
    done = subprocess.run(stage_command("export"), cwd=project, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("export failed: models/float.keras") and "dvc repro" in lines[0], lines[0]


def exception_bases() -> dict[str, list[str]]:
    """{class name: its base names} of every class defined in mcuvision/ and stages/ (read with ast)."""
    classes = {}
    for path in [*ROOT.glob("mcuvision/**/*.py"), *ROOT.glob("stages/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = [b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                                      if isinstance(b, (ast.Name, ast.Attribute))]
    return classes


def test_every_error_class_is_a_pipeline_error():
    classes = exception_bases()

    def is_exception(name: str) -> bool:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, BaseException):
            return True
        return any(is_exception(base) for base in classes.get(name, []))

    def under_pipeline_error(name: str) -> bool:
        return name == "PipelineError" or any(under_pipeline_error(b) for b in classes.get(name, []))

    errors = {name for name in classes if name != "PipelineError" and is_exception(name)}
    assert len(errors) >= 15, sorted(errors)  # the scan sees them all (a broken scan would pass vacuously)
    assert sorted(e for e in errors - OUTSIDE if not under_pipeline_error(e)) == []
