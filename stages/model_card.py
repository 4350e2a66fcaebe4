"""model_card: render reports/model_card.md from the numbers the other stages wrote.

It runs last and only reads JSON, so it costs well under a second: a board change re-runs
profile_on_board and this render, an evaluate change re-runs evaluate and this render, and
neither re-runs a model. (Writing the card inside evaluate would make every board change
re-run the whole evaluation, since the card shows board figures.)

It also writes metrics/headline.json (mcuvision/report/headline.py), the one file dvc.yaml declares as DVC
metrics: the figures `dvc exp show` and `dvc metrics diff` compare experiments by, read from the same
documents as the card.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mcuvision.atomic import write_json, write_text
from mcuvision.errors import PipelineError, fail, require_inputs
from mcuvision.report.headline import headline
from mcuvision.report.model_card import render

REWRITE = "run `dvc repro` to rewrite it"


class RecordKeyError(PipelineError, KeyError):
    """A stage record without a key the card reads: written by another version of the pipeline, or
    edited by hand. Still a KeyError, for code that catches one."""

    __str__ = PipelineError.__str__  # the sentence, not KeyError's repr of it


class Record(dict):
    """A JSON object of the record at `path`: a key it lacks raises RecordKeyError naming the file."""

    def __init__(self, items: dict, path: Path):
        super().__init__(items)
        self.path = path

    def __missing__(self, key):
        raise RecordKeyError(f"{self.path} has no {key!r} (a record of another version of the pipeline, "
                             f"or edited by hand): {REWRITE}")


def read_json(path: Path) -> Record:
    """The JSON object in `path`, each object in it a Record; PipelineError naming the file when it is
    not JSON or not an object."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"), object_hook=lambda items: Record(items, path))
    except json.JSONDecodeError as error:  # a file cut short or edited by hand: named, not a traceback
        raise PipelineError(f"{path} is not valid JSON ({error}); {REWRITE}") from error
    if not isinstance(document, Record):
        raise PipelineError(f"{path} is not a JSON object but a {type(document).__name__}; {REWRITE}")
    return document


def run(*, metadata: Path, validate: Path, quantize: Path, profile: Path, evaluate: Path, train: Path, out: Path,
        throughput: Path | None = None, headline_out: Path | None = None) -> str:
    """Write the card to `out` (and the headline metrics to `headline_out`) and return the card's text.
    A missing record, one that is not a JSON object, or one without a key the card reads is a
    PipelineError naming the file (RecordKeyError for the key); nothing is written then."""
    require_inputs(metadata, validate, quantize, profile, evaluate, train, throughput)
    docs = [read_json(p) for p in (metadata, validate, quantize, profile, evaluate, train)]
    speed = read_json(throughput) if throughput else None
    text = render(*docs, throughput=speed)
    if headline_out:
        _, _, quantized, profiled, evaluated, trained = docs
        write_json(headline_out, headline(evaluated, profiled, quantized, trained))
    write_text(out, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description="Render the model card from the pipeline's metrics.")
    for name in ("metadata", "validate", "quantize", "profile", "evaluate", "train", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--throughput", type=Path, help="evaluate's throughput.json (images/s per format)")
    parser.add_argument("--headline", type=Path, help="write the headline metrics (metrics/headline.json) here")
    args = parser.parse_args()
    try:
        run(metadata=args.metadata, validate=args.validate, quantize=args.quantize, profile=args.profile,
            evaluate=args.evaluate, train=args.train, out=args.out, throughput=args.throughput,
            headline_out=args.headline)
    except PipelineError as error:
        fail("model_card", error)
    print(f"model_card: wrote {args.out}")


if __name__ == "__main__":
    main()
