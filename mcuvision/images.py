"""Per-file facts for the manifest: checksum, decodability, size, mode, format, bytes.

Decoding is the expensive part (every file is fully decoded, since a truncated JPEG opens
fine and only fails on load), so files are inspected in parallel processes.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

from PIL import Image
from tqdm import tqdm

# What the training pipeline's tf.io.decode_image reads; anything else must not enter the manifest.
# MPO: PIL's name for the multi-picture JPEGs many phones write; TensorFlow decodes their first image.
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF")


def inspect_file(path: str) -> dict:
    data = Path(path).read_bytes()
    facts = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "width": 0, "height": 0,
             "mode": "", "format": "", "decodes": False, "error": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # The bytes already read for the checksum: each file is read from disk once.
            with Image.open(io.BytesIO(data)) as image:
                facts.update(width=image.width, height=image.height, mode=image.mode,
                             format=image.format or "")
                image.load()  # full decode: truncated or corrupt data fails here, not at open
        facts["decodes"] = True
    except Exception as error:  # PIL raises many types for bad files; each is a finding, not a crash
        facts["error"] = f"{type(error).__name__}: {error}"
    return facts


def inspect_files(paths: Iterable[Path], workers: int | None = None, progress: bool = True) -> list[dict]:
    paths = [str(p) for p in paths]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < 64:
        return [inspect_file(p) for p in tqdm(paths, desc="validate", unit="img", disable=not progress)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(inspect_file, paths, chunksize=32)
        return list(tqdm(results, total=len(paths), desc="validate", unit="img", disable=not progress))
