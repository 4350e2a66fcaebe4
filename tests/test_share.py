"""mcuvision.share outside the end-to-end pipeline (which checks a real restore on a second clone)."""
from __future__ import annotations

import subprocess
import sys

from mcuvision.share import main, run_records


def test_run_records_reads_the_run_cache_layout(tmp_path):
    for key, value in (("ab12", "v1"), ("ab12", "v2"), ("cd34", "v1")):
        (tmp_path / key[:2] / key).mkdir(parents=True, exist_ok=True)
        (tmp_path / key[:2] / key / value).write_text("cmd: x\n")
    (tmp_path / "ef" / "ef56").mkdir(parents=True)  # a key with no record yet
    assert run_records(tmp_path) == [("ab12", "v1"), ("ab12", "v2"), ("cd34", "v1")]
    assert run_records(tmp_path / "missing") == []


def test_no_remote_is_a_clear_error(tmp_path, monkeypatch, capsys):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    assert "no remote specified" in capsys.readouterr().err
