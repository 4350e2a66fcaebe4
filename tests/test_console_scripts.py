"""Each user command names itself in its usage line as the user typed it: `mcuvision-predict --help`
says "usage: mcuvision-predict", `python -m mcuvision.runtime.predict --help` says "usage: python -m
mcuvision.runtime.predict", so the line shown is always a command that works."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_the_installed_scripts_are_pyprojects():
    installed = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")
                 if e.dist is not None and e.dist.name == "mcuvision"}
    assert installed == SCRIPTS, "reinstall: .venv/bin/python -m pip install -e . --no-deps"


@pytest.fixture(scope="module")
def helps() -> dict[str, tuple[str, str]]:
    """(console script's --help, `python -m`'s --help) for every script, all started at once."""
    running = {}
    for name, target in SCRIPTS.items():
        module = target.split(":")[0]
        running[name] = [subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)
                         for command in ([str(BIN / name), "--help"], [sys.executable, "-m", module, "--help"])]
    done = {}
    for name, processes in running.items():
        outputs = [p.communicate(timeout=300)[0] for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        done[name] = tuple(outputs)
    return done


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_help_names_the_script(helps, name):
    usage = next(line for line in helps[name][0].splitlines() if line.startswith("usage:"))
    assert usage.split()[1] == name, usage


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_module_help_names_python_dash_m(helps, name):
    usage = next(line for line in helps[name][1].splitlines() if line.startswith("usage:"))
    assert usage.startswith(f"usage: python -m {SCRIPTS[name].split(':')[0]} "), usage
