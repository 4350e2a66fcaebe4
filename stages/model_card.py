"""model_card: render reports/model_card.md from the numbers the other stages wrote.

It runs last and only reads JSON, so it costs well under a second: a board change re-runs
profile_on_board and this render, an evaluate change re-runs evaluate and this render, and
neither re-runs a model. (Writing the card inside evaluate would make every board change
re-run the whole evaluation, since the card shows board figures.)

It also writes metrics/headline.json (mcuvision/headline.py), the one file dvc.yaml declares as DVC
metrics: the figures `dvc exp show` and `dvc metrics diff` compare experiments by, read from the same
documents as the card.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mcuvision.atomic import write_json, write_text
from mcuvision.headline import headline
from mcuvision.model_card import render


def run(metadata: Path, validate: Path, quantize: Path, profile: Path, evaluate: Path, train: Path, out: Path,
        throughput: Path | None = None, headline_out: Path | None = None) -> str:
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in (metadata, validate, quantize, profile, evaluate, train)]
    speed = json.loads(throughput.read_text(encoding="utf-8")) if throughput else None
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
        run(args.metadata, args.validate, args.quantize, args.profile, args.evaluate, args.train, args.out,
            args.throughput, args.headline)
    except (OSError, KeyError, json.JSONDecodeError) as error:
        sys.exit(f"model_card failed: an input is missing or incomplete ({error!r}); run `dvc repro` first")
    print(f"model_card: wrote {args.out}")


if __name__ == "__main__":
    main()
