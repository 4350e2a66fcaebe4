"""The programs' stderr carries the project's own lines and TensorFlow's real errors, not the native
log lines that TF_CPP_MIN_LOG_LEVEL does not reach (mcuvision/native_log.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from mcuvision.native_log import held_stderr, keep

PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
INFO = "I0000 00:00:1796406570.803179    2325 port.cc:153] oneDNN custom operations are on."
WARNING = "W1204 17:46:35.123456   77 cpu_feature_guard.cc:210] some warning"
ERROR = "E0000 00:00:1796406570.803179    2325 kernel.cc:42] a real failure: out of memory"
HARMLESS = "E0000 00:00:1796406570.80    2325 mkl_util.h:91] oneDNN supports DT_UINT8 only on platforms with AVX-512."

# A program of the project's kind, `python -m noisy.program` (its package imports mcuvision first, as
# stages/ does): writes as native code does (straight to file descriptor 2), then as Python does,
# then dies without any cleanup.
PROGRAM = f'''
import os, sys
for line in {[PREAMBLE, INFO, WARNING, ERROR, HARMLESS]!r}:
    os.write(2, (line + "\\n").encode())
print("stage failed: one sentence", file=sys.stderr, flush=True)
os.write(2, b"last words before a crash\\n")
os.abort()
'''


@pytest.mark.parametrize("level, shown", [
    ("2", [ERROR, "stage failed: one sentence", "last words before a crash"]),
    ("0", [PREAMBLE, INFO, WARNING, ERROR, HARMLESS, "stage failed: one sentence", "last words before a crash"]),
])
def test_a_program_shows_only_lines_at_its_log_level_even_when_it_crashes(tmp_path, level, shown):
    (tmp_path / "noisy").mkdir()
    (tmp_path / "noisy" / "__init__.py").write_text("import mcuvision  # noqa: F401\n")
    (tmp_path / "noisy" / "program.py").write_text(PROGRAM)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{ROOT}", "TF_CPP_MIN_LOG_LEVEL": level}
    done = subprocess.run([sys.executable, "-m", "noisy.program"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode < 0, done  # the abort
    assert done.stderr.splitlines() == shown


def test_a_library_import_leaves_stderr_alone(tmp_path):
    """Imported from someone's script (not `python -m`), the package filters nothing."""
    script = tmp_path / "theirs.py"
    script.write_text(f"import os, mcuvision\nos.write(2, b{INFO!r} + b'\\n')\n")
    done = subprocess.run([sys.executable, str(script)], env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
                          capture_output=True, text=True, timeout=120)
    assert done.stderr.splitlines() == [INFO]


@pytest.mark.parametrize("line, level, kept", [
    (INFO, 1, False), (INFO, 0, True), (WARNING, 1, True), (WARNING, 2, False), (ERROR, 2, True),
    (ERROR, 3, False), ("F1204 17:46:35.1  7 x.cc:1] fatal", 3, True), (HARMLESS, 2, False),
    (PREAMBLE + "\n", 1, False), ("Epoch 3/100 - loss: 0.4\r", 3, True), ("I0000 is how I name my cat", 2, True),
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n", 1, False), ("INFO:root:python's own", 2, True),
    ("fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, output_inference_type: FLOAT32\n", 1, False),
    ("fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, output_inference_type: FLOAT32\n", 0, True),
    ("fully_quantize my photos", 2, True),
])
def test_which_lines_are_kept(line, level, kept):
    assert keep(line.encode(), level) is kept


def test_held_stderr_keeps_native_writes_until_released(capfd):
    import os
    with held_stderr() as held:
        os.write(2, b"Input file read error\n")  # as libjpeg writes it: straight to file descriptor 2
    assert capfd.readouterr().err == ""
    assert held.text == b"Input file read error\n"
    held.release()
    assert capfd.readouterr().err == "Input file read error\n"


def test_held_stderr_releases_what_it_held_when_the_block_fails(capfd):
    import os
    with pytest.raises(RuntimeError), held_stderr():
        os.write(2, b"the native reason\n")
        raise RuntimeError("the decode failed")
    assert capfd.readouterr().err == "the native reason\n"
