"""Shared fixtures: the project's own params, and small datasets made on the fly."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def base_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def params(base_params) -> dict:
    """A private copy of params.yaml, free to edit in a test."""
    return copy.deepcopy(base_params)


@pytest.fixture(autouse=True)
def at_project_root(monkeypatch):
    """Stages resolve conf/ and relative dataset paths from the project root, as DVC runs them."""
    monkeypatch.chdir(ROOT)
