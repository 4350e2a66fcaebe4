"""Faults: a stage killed at any point leaves no output that DVC or the next stage would take as
valid, and running it again recovers (train resumes from its backup).

The slow tests SIGKILL real `python -m stages.<name>` processes, started with the commands of
dvc.yaml in a folder laid out like the repository (params.yaml composed from conf/).
Interrupted downloads are covered in test_download.py (a .part left by a cut connection is
resumed with a Range request; a server ignoring Range restarts from zero); the two
corruptions it leaves out are here.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import stage_command, stage_env
from http_server import serve_directory
from mcuvision.compose import compose
from mcuvision.data import download
from mcuvision.data.download import ChecksumError, cache_path, fetch

# Small enough that a train process spends its time tracing the model, not training it.
TINY = ["dataset=synthetic", "model.res=32", "model.depth=0.1", "train.batch_size=8", "train.warmup_epochs=0",
        "train.precise_bn_images=16", "train.early_stopping_patience=10", "quantize.calibration_images=8"]
CLASSES, PER_CLASS, VAL_PER_CLASS = 3, 12, 4


def make_project(folder: Path, *overrides: str) -> Path:
    """params.yaml, data/raw and data/manifest.csv, as the validate stage would leave them."""
    from mcuvision.data.synthetic import make_dataset

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(compose([*TINY, *overrides]), encoding="utf-8")
    make_dataset(folder / "data" / "raw", CLASSES, PER_CLASS, 40, seed=5)
    rows = [{"path": f"class_{c:03d}/{n:04d}.jpg", "label": f"class_{c:03d}", "class_index": c,
             "split": "val" if n >= PER_CLASS - VAL_PER_CLASS else "train"}
            for c in range(CLASSES) for n in range(PER_CLASS)]
    pd.DataFrame(rows).to_csv(folder / "data" / "manifest.csv", index=False)
    return folder


def run_stage(name: str, folder: Path, command: list[str] | None = None) -> str:
    result = subprocess.run(command or stage_command(name), cwd=folder, env=stage_env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def kill_when(name: str, folder: Path, line: str) -> str:
    """Start the stage, SIGKILL it as soon as it prints a line starting with `line`; its output so far."""
    process = subprocess.Popen(stage_command(name), cwd=folder, env=stage_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for out in process.stdout:
            seen.append(out)
            if out.startswith(line):
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.stdout.close()
        process.wait(timeout=60)
    output = "".join(seen)
    assert process.returncode == -signal.SIGKILL, f"{name} was not killed mid-way ({process.returncode}):\n{output}"
    return output


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# -- atomic outputs -------------------------------------------------------------------------------

def test_kill_mid_write_leaves_the_previous_file_whole(tmp_path):
    """What every stage output goes through (mcuvision.atomic): a process killed in the middle
    of writing leaves the old file as it was, never a half-written one under the final name."""
    final = tmp_path / "out" / "metrics.json"
    final.parent.mkdir()
    final.write_text('{"old": true}\n')
    script = textwrap.dedent(f"""
        import os, signal
        from mcuvision.atomic import atomic_path
        with atomic_path({str(final)!r}) as tmp:
            with open(tmp, "w") as f:
                f.write('{{"new": ')
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", script], env=stage_env(), capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads(final.read_text()) == {"old": True}
    leftovers = [p.name for p in final.parent.iterdir() if p != final]
    assert all(name.startswith(".metrics.") and ".tmp" in name for name in leftovers), leftovers


# -- the train backup, on a toy model (fast) ------------------------------------------------------

def toy_model(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.05), "categorical_crossentropy", metrics=["accuracy"])
    return model


def toy_data():
    rng = np.random.RandomState(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = np.eye(2, dtype="float32")[(x[:, 0] > 0).astype(int)]
    return x, y


def toy_callbacks(scores: list[float]):
    """A fixed 'score' per epoch that EarlyStopping watches, so that the best epoch is known."""
    import keras

    class Score(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = scores[epoch]

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights, self.at_begin, self.replayed = {}, None, []

        def on_train_begin(self, logs=None):
            self.at_begin = (self.model.get_weights(), int(self.model.optimizer.iterations.numpy()))

        def on_epoch_end(self, epoch, logs=None):
            self.weights[epoch] = self.model.get_weights()

    class Replayed(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append((epoch, dict(logs)))

    stopping = keras.callbacks.EarlyStopping(monitor="score", mode="max", patience=10, restore_best_weights=True)
    return Score(), stopping, Record(), Replayed()


class Killed(Exception):
    pass


def stop_after(epochs: int):
    import keras

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs:
                raise Killed(f"after epoch {epochs}")
    return Stop()


def toy_fit(folder: Path, scores: list[float], seed: int, epochs: int, stop: int | None = None):
    from mcuvision.model.training import EpochBackup

    x, y = toy_data()
    score, stopping, record, replayed = toy_callbacks(scores)
    backup = EpochBackup(folder, stateful=[stopping], replay=[replayed])
    model = toy_model(seed)
    extra = [stop_after(stop)] if stop else []
    history = None
    try:
        history = model.fit(x, y, validation_data=(x[:16], y[:16]), epochs=epochs, batch_size=16, shuffle=False,
                            verbose=0, callbacks=[score, stopping, backup, record, replayed, *extra])
    except Killed:
        pass
    return model, history, stopping, backup, record, replayed


def test_resume_restores_weights_optimizer_early_stopping_and_logs(tmp_path):
    folder = tmp_path / "backup"
    scores = [0.5, 0.9, 0.6, 0.65, 0.7]  # best: the 2nd epoch, which only the first run saw
    _, _, stopping1, backup1, record1, _ = toy_fit(folder, scores, seed=0, epochs=5, stop=3)
    assert [p.name for p in folder.iterdir()] == ["epoch-0003"], "one whole state: the previous one is removed"
    # What a kill in the middle of writing the next state leaves: a partial temporary folder.
    partial = folder / ".epoch-0004.x1y2.tmp"
    partial.mkdir()
    (partial / "state.npz").write_bytes(b"PK\x03\x04" + b"\0" * 100)

    model, history, stopping, backup, record, replayed = toy_fit(folder, scores, seed=1, epochs=5)
    weights, iterations = record.at_begin
    assert all(np.array_equal(a, b) for a, b in zip(weights, record1.weights[2])), "epoch 3's weights"
    assert iterations == 3 * 3, "and its optimizer state (3 epochs of 3 steps)"
    assert history.epoch == [3, 4], "training goes on with the 4th epoch"
    assert [epoch for epoch, _ in replayed.seen] == [0, 1, 2, 3, 4], "earlier epochs replayed to the plots"
    assert [logs for _, logs in replayed.seen[:3]] == backup1.logs
    assert [logs["score"] for logs in backup.logs] == scores
    assert not folder.exists(), "the backup goes once training has finished"
    # EarlyStopping still knows the 2nd epoch is the best (a fresh one would take the 5th) and
    # restores its weights, which the resumed run never computed.
    assert stopping.best_epoch == 1 and stopping.best == 0.9 and stopping.wait == 3
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), record1.weights[1]))


def test_killed_after_its_last_epoch_the_rerun_restores_the_best_weights(tmp_path):
    folder = tmp_path / "backup"
    scores = [0.2, 0.9, 0.4, 0.3]  # best: the 2nd epoch, which only the first run saw
    _, _, _, _, record1, _ = toy_fit(folder, scores, seed=0, epochs=4, stop=4)
    model, history, stopping, backup, _, _ = toy_fit(folder, scores, seed=1, epochs=4)
    assert history.epoch == [], "nothing left to train"
    assert stopping.best_epoch == 1 and stopping.wait == 2
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), record1.weights[1])), \
        "the model is the best epoch's, not the last one's"
    assert len(backup.logs) == 4


def test_a_backup_in_keras_format_still_resumes(tmp_path):
    """Backups written before state.npz hold Keras' save_weights files: a run killed then resumes."""
    folder = tmp_path / "backup"
    scores = [0.5, 0.9, 0.6, 0.65, 0.7]
    model1, _, stopping1, backup1, record1, _ = toy_fit(folder, scores, seed=0, epochs=5, stop=3)
    latest = backup1.latest()
    model1.save_weights(latest / "state.weights.h5")
    best = toy_model(0)
    best.set_weights(stopping1.best_weights)
    best.save_weights(latest / "best.weights.h5")
    for name in ("state.npz", "best.npz"):
        (latest / name).unlink()

    model, history, stopping, _, record, _ = toy_fit(folder, scores, seed=1, epochs=5)
    weights, iterations = record.at_begin
    assert all(np.array_equal(a, b) for a, b in zip(weights, record1.weights[2])), "epoch 3's weights"
    assert iterations == 3 * 3 and history.epoch == [3, 4]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), record1.weights[1])), "the best epoch's"


def test_a_backup_of_another_model_stops_with_its_file_named(tmp_path):
    from mcuvision.errors import PipelineError
    from mcuvision.model.training import save_arrays

    folder = tmp_path / "backup"
    scores = [0.5, 0.9, 0.6, 0.65, 0.7]
    _, _, _, backup1, _, _ = toy_fit(folder, scores, seed=0, epochs=5, stop=3)
    state = backup1.latest() / "state.npz"
    save_arrays(state, [np.zeros((3, 3), np.float32)])
    with pytest.raises(PipelineError, match=r"state\.npz holds 1 arrays that do not fit") as error:
        toy_fit(folder, scores, seed=1, epochs=5)
    assert str(folder) in str(error.value), "says which folder to delete"
    assert state.is_file(), "and deletes nothing itself"


# -- real stage processes, killed (slow) ----------------------------------------------------------

# Runs the train stage, but SIGKILLs the process halfway through writing its first backup: a
# kill at the worst instant, which a kill from outside only hits by luck.
KILL_MID_BACKUP = """
import os, runpy, signal, sys
from mcuvision.model import training
original = training.save_arrays
def save_arrays(path, arrays):
    original(path, arrays)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
training.save_arrays = save_arrays
sys.argv = ["stages.train", *sys.argv[1:]]
runpy.run_module("stages.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_killed_train_leaves_no_model_and_resumes(tmp_path):
    project = make_project(tmp_path / "p", "train.epochs=4")
    outputs = [project / "models" / "float.keras", project / "metrics" / "train.json"]

    # 1. SIGKILL from outside as soon as the 3rd epoch starts: 2 epochs are backed up.
    first = kill_when("train", project, "Epoch 3/4")
    assert "Epoch 2/4" in first
    assert not any(p.exists() for p in outputs)
    assert files_under(project / "models") == [], "nor anything half-written beside it"
    plotted = (project / "dvclive" / "train" / "plots" / "metrics" / "eval" / "accuracy.tsv").read_text()
    assert len(plotted.splitlines()) == 3, plotted  # header + 2 epochs

    # 2. Resumed, then killed halfway through writing the backup of epoch 3.
    args = stage_command("train")[3:]  # after `python -m stages.train`
    killed = subprocess.run([sys.executable, "-c", KILL_MID_BACKUP, *args], cwd=project, env=stage_env(),
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert "resumed after epoch 2" in killed.stdout, killed.stdout
    assert not any(p.exists() for p in outputs)

    # 3. A plain re-run resumes from epoch 2 again (the half-written backup is never read) and finishes.
    log = run_stage("train", project)
    assert "resumed after epoch 2" in log, log
    metrics = json.loads(outputs[1].read_text())
    assert metrics["epochs_run"] == 4 and metrics["epochs_this_run"] == 2, metrics
    plots = pd.read_csv(project / "dvclive" / "train" / "plots" / "metrics" / "eval" / "accuracy.tsv", sep="\t")
    assert plots["step"].tolist() == [0, 1, 2, 3], "the plots hold every epoch, the killed run's included"
    assert "\n".join(plotted.splitlines()[1:]) in (project / "dvclive" / "train" / "plots" / "metrics" / "eval"
                                                   / "accuracy.tsv").read_text()
    assert metrics["best_val_accuracy"] == plots["accuracy"].max()
    assert not files_under(project / ".cache" / "train"), "the backup is removed once training has finished"
    assert files_under(project / "models") == ["float.keras"]

    import keras

    import mcuvision.model.architecture  # noqa: F401  (registers the model's custom layer for loading)

    assert keras.models.load_model(outputs[0]).output_shape == (None, CLASSES)


@pytest.mark.slow
def test_killed_quantize_leaves_no_output_and_reruns(tmp_path):
    import keras

    from mcuvision.config.model import ModelConfig
    from mcuvision.model.architecture import build_model
    from mcuvision.model.training import save_model

    # The per-layer error report (TensorFlow Lite's debugger) is left off: it runs after the models are
    # written, and costs a third of the stage.
    project = make_project(tmp_path / "p", "quantize.layer_error_images=0")
    # Any weights do for quantizing: an untrained model saves a training run.
    config = ModelConfig.from_params(yaml.safe_load((project / "params.yaml").read_text()))
    keras.utils.set_random_seed(0)
    model = build_model(CLASSES, config.res, dropout=0.2, width=config.width, depth=config.depth,
                        expansion=config.expansion, se_ratio=config.se_ratio, drop_connect=config.drop_connect)
    save_model(model, project / "models" / "float.keras")
    command = stage_command("quantize")
    outputs = [project / command[command.index(flag) + 1] for flag in ("--tflite", "--onnx", "--qdq", "--metrics")]

    kill_when("quantize", project, "quantize: int8 TFLite done")
    assert not any(p.exists() for p in outputs)
    assert files_under(project / "models") == ["float.keras"], "no partial or temporary file"
    assert files_under(project / "metrics") == []

    run_stage("quantize", project)
    assert all(p.is_file() and p.stat().st_size > 0 for p in outputs)
    quantized = json.loads(outputs[-1].read_text())
    assert quantized["int8_tflite"]["file_bytes"] == outputs[0].stat().st_size
    assert not [name for name in files_under(project / "models") if name.startswith(".")]


# -- downloads: what test_download.py does not cover ----------------------------------------------

PAYLOAD = bytes(range(256)) * 400


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_BACKOFF_S", 0.0)
    site = tmp_path / "site"
    site.mkdir()
    (site / "data.bin").write_bytes(PAYLOAD)
    return site


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_corrupted_cached_copy_is_downloaded_again(tmp_path, served):
    cache = tmp_path / "cache"
    with serve_directory(served) as server:
        url = f"{server.url}/data.bin"
        path, _ = fetch(url, sha(PAYLOAD), cache, progress=False)
        damaged = bytearray(path.read_bytes())
        damaged[1000] ^= 0xFF  # e.g. a disk error, or a copy changed by hand
        path.write_bytes(bytes(damaged))
        again, digest = fetch(url, sha(PAYLOAD), cache, progress=False)
    assert again == path and digest == sha(PAYLOAD) and path.read_bytes() == PAYLOAD
    assert len(server.requests) == 2, "the damaged copy was detected and fetched again"


def test_corrupted_partial_download_is_dropped_then_restarted(tmp_path, served):
    cache = tmp_path / "cache"
    with serve_directory(served) as server:
        url = f"{server.url}/data.bin"
        part = Path(f"{cache_path(url, cache)}.part")
        cache.mkdir()
        part.write_bytes(b"junk" * 1000)  # not a prefix of the file: resuming it cannot give the file
        with pytest.raises(ChecksumError):
            fetch(url, sha(PAYLOAD), cache, progress=False)
        assert not part.exists() and list(cache.iterdir()) == [], "the bad bytes are not kept"
        path, digest = fetch(url, sha(PAYLOAD), cache, progress=False)
    assert digest == sha(PAYLOAD) and path.read_bytes() == PAYLOAD
    assert [r.range for r in server.requests] == ["bytes=4000-", None], "resumed once, then from zero"
