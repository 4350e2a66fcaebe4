"""model_card: render reports/model_card.md from the numbers the other stages wrote.

It runs last and only reads JSON, so it costs well under a second: a board change re-runs
profile_on_board and this render, an evaluate change re-runs evaluate and this render, and
neither re-runs a model. (Writing the card inside evaluate would make every board change
re-run the whole evaluation, since the card shows board figures.)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mcuvision.atomic import write_text
from mcuvision.model_card import render


def run(metadata: Path, validate: Path, quantize: Path, profile: Path, evaluate: Path, train: Path, out: Path) -> str:
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in (metadata, validate, quantize, profile, evaluate, train)]
    text = render(*docs)
    write_text(out, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description="Render the model card from the pipeline's metrics.")
    for name in ("metadata", "validate", "quantize", "profile", "evaluate", "train", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args()
    try:
        run(args.metadata, args.validate, args.quantize, args.profile, args.evaluate, args.train, args.out)
    except (OSError, KeyError, json.JSONDecodeError) as error:
        sys.exit(f"model_card failed: an input is missing or incomplete ({error!r}); run `dvc repro` first")
    print(f"model_card: wrote {args.out}")


if __name__ == "__main__":
    main()
