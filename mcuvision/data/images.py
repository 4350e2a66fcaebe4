"""Per-file facts for the manifest: checksum, decodability, size, mode, format, bytes, EXIF
orientation and two perceptual hashes.

Decodability has one judge, the decoder training, evaluation, calibration and predict use:
TensorFlow's `tf.io.decode_image(..., channels=3, expand_animations=False)`
(mcuvision.data.input_pipeline.decode). Pillow decodes files TensorFlow refuses (a JPEG without its end
marker, a PNG or GIF cut short), so Pillow only reads each header (size, mode, format, a
decompression-bomb guard) in parallel processes, and TensorFlow decodes every file in a
parallel tf.data map.

EXIF orientation (tag 0x0112, values 1-8) is read here and applied by mcuvision.data.input_pipeline.decode, so
train, evaluate, quantize's calibration and predict see a photo as a phone gallery shows it;
width and height are those of the image as shown.

Perceptual hashes (imagehash: 64-bit dHash and pHash of the greyscale image) find re-encoded,
resized and lightly edited copies (mcuvision.data.splits.near_duplicate_pairs). An image under
MIN_HASH_SIDE pixels a side gets none: the dHash compares an 8-row grid, and a hash of fewer pixels
(one, for a 1x1 image) matches unrelated images. A JPEG is decoded
at the smallest DCT scale (1/2 to 1/8) that keeps 64 pixels a side (Pillow's draft mode): the
hashes look at 9x8 and 32x32 pixels.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

import imagehash
from PIL import ExifTags, Image
from tqdm import tqdm

from mcuvision.native_log import held_stderr

# What the training pipeline's tf.io.decode_image reads; anything else must not enter the manifest.
# MPO: PIL's name for the multi-picture JPEGs many phones write; TensorFlow decodes their first image.
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP")
MIN_HASH_SIDE = 8  # pixels; smaller images are left out of the near-duplicate search
# TensorFlow wraps an op's message in where it ran: "{{function_node ...}} <message> [Op:DecodeImage] name: ".
_TF_NOISE = re.compile(r"\{\{[^}]*\}\}|\[Op:\w+\]( name: \S*)?")
# EXIF orientations 5-8 turn the stored image by a quarter turn: shown width and height swap.
QUARTER_TURNS = (5, 6, 7, 8)


def exif_orientation(image: Image.Image) -> int:
    """EXIF Orientation of an open image, 1 (as stored) to 8; 1 when absent or out of range."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block is no reason to refuse the pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def perceptual_hashes(image: Image.Image) -> tuple[str, str]:
    """(dHash, pHash) of an open image as 16-hex-digit strings (64 bits each), from its greyscale
    at a reduced DCT scale for a JPEG; orientation is not applied (a rotated copy is not a near-duplicate
    for this check)."""
    if image.format in ("JPEG", "MPO"):
        image.draft("L", (64, 64))  # DCT scaling: a fraction of a full decode
    grey = image.convert("L")
    return str(imagehash.dhash(grey)), str(imagehash.phash(grey))


def inspect_file(path: str) -> dict:
    """{sha256, bytes, width, height (as shown), mode, format, orientation, dhash, phash, decodes,
    error} of one file, from Pillow; `decodes` is False (with `error`) when Pillow cannot identify
    the file or it cannot be read; the hashes are "" when Pillow cannot decode its pixels
    (TensorFlow still judges it) or the image is under MIN_HASH_SIDE pixels a side."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:  # made unreadable since it was listed: a finding that names it, not a crash
        return {"sha256": "", "bytes": 0, "width": 0, "height": 0, "mode": "", "format": "", "orientation": 1,
                "dhash": "", "phash": "", "decodes": False, "error": f"unreadable: {error.strerror}"}
    facts = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "width": 0, "height": 0,
             "mode": "", "format": "", "orientation": 1, "dhash": "", "phash": "", "decodes": False,
             "error": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # The bytes already read for the checksum: each file is read from disk once here.
            with Image.open(io.BytesIO(data)) as image:
                orientation = exif_orientation(image)
                turned = orientation in QUARTER_TURNS
                facts.update(width=image.height if turned else image.width,
                             height=image.width if turned else image.height, mode=image.mode,
                             format=image.format or "", orientation=orientation)
                facts["decodes"] = True
                try:
                    if min(image.size) >= MIN_HASH_SIDE:
                        facts["dhash"], facts["phash"] = perceptual_hashes(image)
                except Exception:  # a truncated file: no hashes; its decodability is TensorFlow's call
                    pass
    except Exception as error:  # PIL raises many types for bad files; each is a finding, not a crash
        facts["error"] = f"{type(error).__name__}: {error}"
    return facts


def tensorflow_refusals(paths: list[str]) -> dict[str, str]:
    """{path: TensorFlow's error} for each file that tf.io.decode_image, as the input pipeline
    calls it, cannot decode; {} when all decode. Decodes in a parallel tf.data map (CPU only)."""
    if not paths:
        return {}
    import tensorflow as tf  # here: the Pillow pass and --help need no TensorFlow

    def decodes(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return path, tf.shape(image)  # the shape depends on the decode, so it is not pruned away

    refused = {}
    with held_stderr() as decoder_lines, tf.device("/CPU:0"):
        # os.fsencode: a file name that is not valid UTF-8 reaches TensorFlow as its bytes on disk.
        ds = (tf.data.Dataset.from_tensor_slices([os.fsencode(p) for p in paths])
              .map(decodes, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
              .ignore_errors()  # a failed element is dropped: the refused files are the ones missing
              .batch(256))  # per-element iteration in Python costs more than the decode itself
        decoded = {os.fsdecode(p) for batch, _ in ds.as_numpy_iterator() for p in batch}
        for path in (p for p in paths if p not in decoded):  # few: decode again, one by one, for the message
            try:
                tf.io.decode_image(tf.io.read_file(os.fsencode(path)), channels=3, expand_animations=False)
                refused[path] = "TensorFlow failed to decode it in a batch"
            except Exception as error:  # TF raises several types; the message is what the user needs
                message = getattr(error, "message", str(error)).split("\n")[0]
                refused[path] = "TensorFlow: " + _TF_NOISE.sub("", message).strip()
    if not refused:  # the decoder's lines explain a refusal, named with its file; otherwise they are shown
        decoder_lines.release()
    return refused


def inspect_files(paths: Iterable[Path], workers: int | None = None, progress: bool = True) -> list[dict]:
    """inspect_file() of every path, in order, with `decodes` and `error` set by TensorFlow's
    decoder for files Pillow identified (tensorflow_refusals)."""
    paths = [str(p) for p in paths]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < 64:
        facts = [inspect_file(p) for p in tqdm(paths, desc="validate", unit="img", disable=not progress)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(inspect_file, paths, chunksize=64)  # submitted at once, run meanwhile:
            import tensorflow  # noqa: F401  (seconds of import overlap the workers' header reads)
            facts = list(tqdm(results, total=len(paths), desc="validate", unit="img", disable=not progress))
    # Only files whose header Pillow read (within its decompression-bomb limit) reach TensorFlow.
    refused = tensorflow_refusals([p for p, f in zip(paths, facts) if f["decodes"]])
    for path, f in zip(paths, facts):
        if path in refused:
            f.update(decodes=False, error=refused[path])
    return facts
