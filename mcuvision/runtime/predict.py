"""predict: classify your own images with an exported model, outside the pipeline.

The pipeline ends with artifacts/: the model in every format plus labels.txt and metadata.json.
This command is what a user runs next, on photos of their own:

    python -m mcuvision.runtime.predict --model artifacts/st_efficientnetlcv1_128_tfs_int8.tflite photo.jpg more_photos/

It is not a DVC stage (nothing in dvc.yaml runs it); it lives in stages/ so that it is run the
same way as the rest of the project.

- Any exported format: int8 TFLite, float or QDQ ONNX, .keras (mcuvision.runtime.runners.load_predictor).
- Preprocessing is exactly the training pipeline's (mcuvision.data.input_pipeline.decode): TensorFlow decodes,
  resizes to the model's side with the model's interpolation, uint8 pixels in. A different
  resize method shifts the predictions, so the interpolation comes from --interpolation, else
  metadata.json beside the model, else the project default (nearest); stderr says which.
  As in training, EXIF orientation is not applied.
- Labels come from --labels, else labels.txt beside the model, else metadata.json's classes,
  else class indices; a label count other than the model's output size is an error.
- Arguments are image files and/or folders; folders are walked recursively in sorted order for
  the image suffixes of mcuvision.data.sources (hidden files and folders skipped).
- stdout: a table of the top-k labels per image, or with --json one JSON document:
  [{"path": ..., "predictions": [{"label": ..., "index": ..., "confidence": ...}, ...]}, ...]
  Progress and notes go to stderr, so stdout stays clean for pipes.

Images that cannot be read (not an image, truncated, a format TensorFlow does not decode) are
skipped: every other image still gets its result, then stderr names each skipped file with the
reason, one line each, and the exit status is 1. A folder of 1000 photos with one bad file gives
999 results and one clear error, not nothing. Problems with the command itself (a path that does
not exist, a file that is not a model, labels that do not fit the model) stop before any work,
with exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from mcuvision.cli import prog
from mcuvision.config.model import INTERPOLATIONS
from mcuvision.data.images import DECODABLE_FORMATS
from mcuvision.data.sources import IMAGE_SUFFIXES, is_junk
from mcuvision.errors import USER_ERROR, PipelineError
from mcuvision.native_log import held_stderr
from mcuvision.runtime.runners import Predictor, UnsupportedModel, load_predictor

# TensorFlow is imported only when images are decoded (so --help and argument errors are
# instant); mcuvision/__init__.py quiets its C++ info and warning lines, which would bury this
# command's own notes on stderr.

DEFAULT_INTERPOLATION = "nearest"  # conf/model default; what a model without metadata was most likely trained with
# What tf.io.decode_image reads, by PIL's format name: the validator's list, plus WebP, which this
# TensorFlow decodes but the training manifest does not take (its folder scan skips .webp).
TF_FORMATS = {*DECODABLE_FORMATS, "WEBP"}
LABELS_FILE, METADATA_FILE = "labels.txt", "metadata.json"


class PredictError(PipelineError, RuntimeError):
    """The command cannot run as given (bad path, not a model, labels that do not fit)."""


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    confidence: float


@dataclass(frozen=True)
class Result:
    path: str
    predictions: list[Prediction]


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Report:
    """Results for the images that could be read, failures for those that could not (input order)."""
    results: list[Result] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


@dataclass(frozen=True)
class Classifier:
    predictor: Predictor
    labels: list[str]
    interpolation: str

    @property
    def res(self) -> int:
        return self.predictor.res


def _stderr(message: str) -> None:
    print(f"predict: {message}", file=sys.stderr)


# --- inputs -------------------------------------------------------------------------------------

def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders walked recursively (sorted, image suffixes, hidden entries skipped).

    Every input is checked before anything is returned: a typo should fail in a second, not
    after the model has loaded. A file named twice (directly and inside a folder) runs once.
    """
    inputs = [Path(p) for p in inputs]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise PredictError(f"no such file or folder: {', '.join(missing)}")
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            # Hidden at any depth: .thumbnails/, .git/, and macOS "._photo.jpg" files that are not images.
            found += sorted(f for f in path.rglob("*")
                            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                            and not any(is_junk(Path(part)) for part in f.relative_to(path).parts))
        else:
            found.append(path)  # named explicitly: tried whatever its suffix, the check below decides
    seen, unique = set(), []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def check_image(path: Path) -> str | None:
    """Why `path` cannot be an input image, or None; PIL reads the header only (no full decode)."""
    try:
        with Image.open(path) as image:
            kind = image.format
            image.verify()
    except UnidentifiedImageError:
        return "not an image (its contents are no image format PIL knows)"
    except Exception as error:  # PIL raises many types on broken data; each is this one file's problem
        return f"cannot be read as an image ({type(error).__name__}: {error})"
    if kind not in TF_FORMATS:
        return f"{kind} image; only JPEG, PNG, BMP, GIF and WebP are read (convert it)"
    return None


def _tf_reason(error: Exception) -> str:
    """TensorFlow's message without its op and graph decoration."""
    text = str(error).split("}}")[-1]
    text = re.sub(r"\s*\[(\[\{\{node [^]]*\}\}\]|Op:[^]]*)\].*", "", text, flags=re.S).strip()
    return f"corrupt image data ({text or type(error).__name__})"


# --- model, interpolation, labels ---------------------------------------------------------------

def _metadata(model_path: Path) -> dict | None:
    path = model_path.parent / METADATA_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PredictError(f"{path} is not valid JSON ({error}); fix or remove it, "
                           "or give --interpolation and --labels") from error


def resolve_interpolation(model_path: Path, override: str | None) -> tuple[str, str]:
    """(interpolation, where it came from): --interpolation, metadata.json, or the default."""
    meta = _metadata(Path(model_path)) or {}
    trained = (meta.get("preprocessing") or {}).get("interpolation")
    if trained is None:
        # metadata.json from before `preprocessing.interpolation` existed still records the params.
        trained = ((meta.get("params") or {}).get("model") or {}).get("interpolation")
    if trained is not None and trained not in INTERPOLATIONS:
        raise PredictError(f"{METADATA_FILE} gives interpolation {trained!r}, "
                           f"expected one of {', '.join(INTERPOLATIONS)}")
    if override is not None:
        if override not in INTERPOLATIONS:
            raise PredictError(f"--interpolation {override!r}: expected one of {', '.join(INTERPOLATIONS)}")
        if trained is not None and trained != override:
            _stderr(f"warning: --interpolation {override} differs from the {trained} the model was "
                    f"trained with ({METADATA_FILE}); predictions will drift from the measured accuracy")
        return override, "--interpolation"
    if trained is not None:
        return trained, str(Path(model_path).parent / METADATA_FILE)
    return DEFAULT_INTERPOLATION, f"project default; no {METADATA_FILE} beside the model"


def resolve_labels(model_path: Path, labels_file: Path | None, num_classes: int) -> tuple[list[str], str]:
    """(labels, where they came from): --labels, labels.txt, metadata.json's classes, or indices."""
    model_path = Path(model_path)
    if labels_file is not None:
        labels_file = Path(labels_file)
        if not labels_file.is_file():
            raise PredictError(f"--labels {labels_file}: no such file")
        labels, source = _read_labels(labels_file), str(labels_file)
    elif (model_path.parent / LABELS_FILE).is_file():
        labels, source = _read_labels(model_path.parent / LABELS_FILE), str(model_path.parent / LABELS_FILE)
    elif (classes := (_metadata(model_path) or {}).get("classes")):
        labels, source = [str(c) for c in classes], str(model_path.parent / METADATA_FILE)
    else:
        return [str(i) for i in range(num_classes)], "class indices; no labels.txt or metadata.json beside the model"
    if len(labels) != num_classes:
        # Labels of another model would put the wrong name on every prediction: never guess.
        raise PredictError(f"{source} has {len(labels)} labels but the model has {num_classes} outputs; "
                           "give the labels.txt exported with this model (--labels)")
    return labels, source


def _read_labels(path: Path) -> list[str]:
    # One class per line, as export writes it; blank lines (a trailing newline, say) are not classes.
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_classifier(model_path: Path, batch: int = 32, interpolation: str | None = None,
                    labels_file: Path | None = None, log: Callable[[str], None] = _stderr) -> Classifier:
    model_path = Path(model_path)
    if not model_path.exists():
        raise PredictError(f"--model {model_path}: no such file")
    if model_path.is_dir():
        raise PredictError(f"--model {model_path} is a folder; give the model file (.tflite, .onnx or .keras)")
    # Settled before the model loads: a bad metadata.json or labels file is reported at once.
    interp, interp_source = resolve_interpolation(model_path, interpolation)
    try:
        predictor = load_predictor(model_path, batch)
    except UnsupportedModel as error:
        raise PredictError(str(error)) from error
    # One blank image tells the output size for every format alike.
    num_classes = int(predictor.predict(np.zeros((1, predictor.res, predictor.res, 3), np.uint8)).shape[-1])
    labels, labels_source = resolve_labels(model_path, labels_file, num_classes)
    log(f"model {model_path.name}: {predictor.res}x{predictor.res}, {num_classes} classes, {predictor.runtime}")
    log(f"interpolation {interp} ({interp_source}); labels from {labels_source}")
    return Classifier(predictor, labels, interp)


# --- prediction ---------------------------------------------------------------------------------

def top_predictions(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[Prediction]:
    """The k most likely classes, most likely first; ties go to the lower class index."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [Prediction(labels[i], int(i), float(probabilities[i])) for i in order]


def _decode_batch(paths: list[Path], res: int, interpolation: str) -> tuple[list[Path], np.ndarray, list[Failure]]:
    """Decode as one tf.data batch; if TensorFlow rejects a file PIL let through (a truncated
    JPEG opens fine), decode one by one to name it and keep the others."""
    import tensorflow as tf

    from mcuvision.data.input_pipeline import decode, decode_all, file_orientations

    orientations = file_orientations([str(p) for p in paths])  # EXIF, applied as in training
    good, images, failures = [], [], []
    with held_stderr() as decoder_lines:
        try:
            good, batch = paths, decode_all([str(p) for p in paths], res, interpolation, orientations)
        except tf.errors.OpError:
            for path, orientation in zip(paths, orientations):
                try:
                    images.append(decode(tf.constant(os.fsencode(path)), res, interpolation, orientation).numpy())
                    good.append(path)
                except tf.errors.OpError as error:
                    failures.append(Failure(str(path), _tf_reason(error)))
            batch = np.stack(images) if images else np.zeros((0, res, res, 3), np.uint8)
    if not failures:  # the decoder's lines explain a failure, named with its file; otherwise they are shown
        decoder_lines.release()
    return good, batch, failures


def classify(classifier: Classifier, paths: Sequence[Path], top_k: int = 3, batch: int = 32,
             progress: bool | None = None) -> Report:
    """Top-k predictions for each readable image of `paths`, decoded and run `batch` at a time
    (memory stays flat however many images). `progress`: None shows a bar for more than one batch."""
    from tqdm import tqdm

    if top_k < 1 or batch < 1:
        raise PredictError(f"top-k and batch must be at least 1 (got {top_k}, {batch})")
    k = min(top_k, len(classifier.labels))
    report = Report()
    show = len(paths) > batch if progress is None else progress
    with tqdm(total=len(paths), desc="predict", unit="img", disable=not show, file=sys.stderr) as bar:
        for start in range(0, len(paths), batch):
            chunk = list(paths[start:start + batch])
            readable = []
            for path in chunk:
                reason = check_image(path)
                if reason is None:
                    readable.append(path)
                else:
                    report.failures.append(Failure(str(path), reason))
            if readable:
                good, images, failures = _decode_batch(readable, classifier.res, classifier.interpolation)
                report.failures += failures
                for path, probs in zip(good, classifier.predictor.predict(images) if len(good) else []):
                    report.results.append(Result(str(path), top_predictions(probs, classifier.labels, k)))
            bar.update(len(chunk))
    order = {str(p): i for i, p in enumerate(paths)}
    report.failures.sort(key=lambda f: order[f.path])  # PIL and TF failures back in input order
    return report


def predict(model_path: Path, inputs: Iterable[str | Path], top_k: int = 3, batch: int = 32,
            interpolation: str | None = None, labels_file: Path | None = None,
            progress: bool | None = None, log: Callable[[str], None] = _stderr) -> Report:
    """The whole command as a function: find the images, load the model, classify."""
    inputs = list(inputs)
    paths = find_images(inputs)
    if not paths:
        raise PredictError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, inputs))}")
    classifier = load_classifier(Path(model_path), batch, interpolation, labels_file, log)
    if top_k > len(classifier.labels):
        log(f"top-k {top_k} capped at the model's {len(classifier.labels)} classes")
    return classify(classifier, paths, top_k, batch, progress)


# --- output -------------------------------------------------------------------------------------

def to_json(results: Sequence[Result]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)


def to_table(results: Sequence[Result]) -> str:
    """One row per image: path, then `label  confidence%` for each of the top k."""
    if not results:
        return ""
    k = max(len(r.predictions) for r in results)
    header = ["image"] + [f"top-{i + 1}" for i in range(k)]
    # Labels padded per column so the percentages line up under each other.
    label_width = [max(len(r.predictions[i].label) for r in results) for i in range(k)]
    rows = [[r.path] + [f"{p.label.ljust(label_width[i])} {p.confidence:6.1%}" for i, p in enumerate(r.predictions)]
            for r in results]
    widths = [max(len(row[c]) for row in [header] + rows if c < len(row)) for c in range(k + 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in [header] + rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog("mcuvision.runtime.predict"),
        description="Classify images with an exported model (.tflite, .onnx or .keras).",
        epilog="Exit status: 0 all images classified; 1 some images could not be read (the rest are "
               "still reported); 2 the command could not run (bad path, model or labels).")
    parser.add_argument("--model", type=Path, required=True, help="model file from artifacts/ (or models/)")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders (recursive)")
    parser.add_argument("--top-k", type=int, default=3, help="labels per image (default 3, capped at the class count)")
    parser.add_argument("--batch", type=int, default=32, help="images per inference batch (default 32)")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS,
                        help=f"resize method (default: {METADATA_FILE} beside the model, else {DEFAULT_INTERPOLATION})")
    parser.add_argument("--labels", type=Path, help=f"one class per line (default: {LABELS_FILE} beside the model)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch < 1:
        parser.error("--top-k and --batch must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = predict(args.model, args.inputs, args.top_k, args.batch, args.interpolation, args.labels)
    except PipelineError as error:
        _stderr(f"error: {error}")
        return USER_ERROR
    # A file name that is not valid UTF-8 is printed as its bytes on disk, as `ls` shows it (JSON escapes it).
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    print(to_json(report.results) if args.json else to_table(report.results))
    for failure in report.failures:
        _stderr(f"skipped {failure}")
    if report.failures:
        total = len(report.results) + len(report.failures)
        _stderr(f"error: {len(report.failures)} of {total} images could not be read (listed above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
