"""ingest: bring the configured dataset source to data/raw/ as class sub-folders + SOURCE.json.

Sources: the embedded sample, a local folder (optionally with a test folder), a URL archive
(downloaded once into a cache outside the pipeline, sha256-checked, extracted safely), or the
synthetic generator. data/raw/ is replaced in one rename at the end: a failure leaves the old one.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from mcuvision.atomic import atomic_dir, write_json
from mcuvision.config.base import load_params
from mcuvision.config.dataset import DatasetConfig
from mcuvision.data.archive import safe_extract
from mcuvision.data.download import fetch
from mcuvision.data.sources import RECORD, SourceError, from_extracted, from_folders, from_synthetic, skipped_line
from mcuvision.errors import PipelineError, fail


def download_cache() -> Path:
    """Archives live outside the pipeline outputs, so `dvc repro` after a change never re-downloads."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mcuvision" / "downloads"
    return Path(os.environ.get("MCUVISION_DOWNLOAD_CACHE", default))


def recorded_sha256(out: Path, url: str) -> str | None:
    """Trust on first use: a source without a published checksum is pinned to its first download."""
    record = out / RECORD
    if not record.is_file():
        return None
    previous = json.loads(record.read_text(encoding="utf-8"))
    return previous.get("sha256") if previous.get("url") == url else None


def bring(config: DatasetConfig, dest: Path, out: Path, cache: Path) -> dict:
    source = config.source
    if source.kind == "synthetic":
        return from_synthetic(config, dest)
    if source.kind in ("sample", "folder"):
        test_root = Path(source.test_path) if source.test_path else None
        return {"path": source.path, "test_path": source.test_path,
                **from_folders(Path(source.path), test_root, dest)}
    expected = source.sha256 or recorded_sha256(out, source.url)
    archive, digest = fetch(source.url, expected, cache)
    print(f"ingest: extracting {archive.name}", flush=True)
    with tempfile.TemporaryDirectory(prefix=".extract.", dir=out.parent) as scratch:
        extracted = Path(scratch) / "x"
        safe_extract(archive, extracted)
        record = from_extracted(extracted, source, dest)
    return {"url": source.url, "sha256": digest, "sha256_published": source.sha256 is not None, **record}


def run(config: DatasetConfig, *, out: Path, cache: Path | None = None) -> dict:
    cache = cache or download_cache()
    with atomic_dir(out) as tmp:
        record = {"dataset": config.name, "kind": config.source.kind, **bring(config, tmp, out, cache)}
        found = len(record["classes"])
        if found < 2:  # a one-class "classifier" would only fail later, in train, building the model
            raise SourceError(f"the source has {found} class folder{'s' if found != 1 else ''} "
                              f"({', '.join(record['classes']) or 'none'}): a classifier needs at least 2, "
                              "one sub-folder per class")
        if config.num_classes is not None and found != config.num_classes:
            raise SourceError(f"dataset.num_classes={config.num_classes} but the source has {found} "
                              f"classes: {', '.join(record['classes'])}")
        write_json(tmp / RECORD, record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description="Bring the configured dataset to class folders.")
    parser.add_argument("--out", type=Path, required=True, help="destination, e.g. data/raw")
    args = parser.parse_args()
    try:
        config = DatasetConfig.from_params(load_params())
        record = run(config, out=args.out)
    except PipelineError as error:
        fail("ingest", error)
    counts = record["counts"]
    total = sum(sum(c.values()) for c in counts.values()) if record["splits"] else sum(counts.values())
    print(f"ingest: {config.name}: {len(record['classes'])} classes, {total} files -> {args.out}/")
    print(skipped_line("ingest", record.get("skipped")))
    renamed = record.get("renamed") or []
    if renamed:
        names = "file name that is" if len(renamed) == 1 else "file names that are"
        print(f"ingest: {len(renamed)} {names} not valid UTF-8 written with those bytes as %XX: "
              f"{', '.join(renamed[:5])}{' ...' if len(renamed) > 5 else ''}")


if __name__ == "__main__":
    main()
