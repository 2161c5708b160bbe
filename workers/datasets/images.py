"""Image-classification ingest: a ZIP of class folders → uint8 image tensors plus an info dict.

Pure Python + numpy + Pillow + zipfile (no Django, no torch).

Input layout
    cat/001.png, dog/x.jpg, ...            one folder per class (the folder name is the class)
    pets/cat/001.png, pets/dog/x.jpg       the same under one common top folder (stripped)
    train/cat/..., val/cat/...             a provided split (also `valid/` or `validation/`, any
                                           case); the classes are the union and must match
    train/..., val/..., test/cat/...       with a test split: its classes must be training classes
Subfolders inside a class folder belong to that class. Images directly at the top level (not in a
class folder) are an error; a class folder with no usable images is an error.

What counts as an image
    Entries whose extension is .png .jpg .jpeg .jpe .jfif .bmp .dib or .webp are image candidates;
    the format is then decided by content, with `Image.open(f, formats=ALLOWED_FORMATS)`
    (PNG, JPEG, BMP, WebP only). A candidate whose content is not one of those formats, or that
    fails to decode, is "unreadable". Other files (.txt, .csv, .gif, .tiff, no extension, ...) are
    ignored and listed in info["ignored"] (the first IGNORED_LIST_MAX names; info["ignored_count"]
    has the total). `__MACOSX/`, dotfiles/dot-folders, `Thumbs.db` and `desktop.ini` are dropped
    silently. Nested archives (.zip, .tar, .gz, .7z, .rar, ...) reject the whole upload.

Unreadable images
    Skipped and listed in info["skipped"] ({"file", "reason"}) while they are few: at most
    SKIP_MAX_COUNT (50) and at most SKIP_MAX_FRACTION (1 %) of the image candidates. More than
    that rejects the upload, naming the first few. Decompression bombs (Pillow's
    MAX_IMAGE_PIXELS, whose warning is turned into an error) reject the upload rather than being
    skipped: they are hostile, not merely damaged.

Conversion
    channels: "L" (1 channel) when every image has a grayscale mode (1, L, LA, I, I;16, F),
    otherwise "RGB" (3 channels); `channels=` overrides. Images with transparency (RGBA, LA, P or
    L/RGB with a transparency key) are composited on white first. 16-bit images are scaled to
    8 bits. JPEG/WebP EXIF orientation is applied.
    Resize policy: SQUASH. Every image is resized to image_size × image_size with
    `Image.resize(..., BICUBIC)` without cropping: nothing is cut off, the aspect ratio is not
    kept (the choice of Keras' image_dataset_from_directory). The default image_size is the most
    common max(width, height) among the images, capped to DEFAULT_MAX_SIZE (224), at least 8.

Split
    Without train/ and val/ folders: a seeded split stratified per class (each class with at
    least two images puts round(n × val_fraction), clamped to 1..n-1, images into validation;
    with `test_fraction`, the test images are drawn first the same way).
    With them: the provided split (info["val_fraction"] is None, info["split"] == "provided"),
    with a test split when there is a test/ folder beside them.
    Rows are ordered by class, then entry name.

Output (written to `<out_dir>.partial`, renamed into place; on any failure it is removed)
    X_train.npy X_val.npy   uint8 [N, C, H, W]         y_train.npy y_val.npy   int64 [N]
    X_test.npy y_test.npy   the same, when there is a test split
    previews/<class_index>_<k>.png   up to PREVIEWS_PER_CLASS 64 px thumbnails per class
    info.json
Memory stays bounded whatever the archive's size: once the number of readable images is known
the pixel arrays are preallocated on disk (np.lib.format.open_memmap writes the .npy header and
sizes the file, posix_fallocate reserves the blocks so a full disk fails up front) and each
decoded image is written to its row with os.pwrite (no mapping: the cache never counts as this
process's memory). Every entry is streamed from the archive with zf.open(); nothing is extracted
to disk. What grows with the archive is per entry (zipfile's directory, ~1 KiB an entry) and one
entry's bytes at a time (at most max_entry_bytes).

Hostile archives (each an IngestError naming the entry; the whole archive is rejected; the checks
live in workers.datasets.archive, shared with model ZIPs)
    absolute names, drive letters, backslashes, `..` components, control characters;
    symlinks and other non-regular entries (external_attr >> 16); encrypted entries;
    duplicate names and overlapping entries (two entries sharing bytes of the archive);
    more than `max_entries` entries (checked from the end-of-central-directory record before
    the directory is parsed, and again after); entries above `max_entry_bytes` uncompressed,
    image entries above `ratio_min_bytes` that expand more than `max_ratio`:1, and more than
    `max_total_bytes` uncompressed in all: checked against the declared sizes first, then while
    streaming (the bytes actually produced are counted, since headers can lie). Only the image
    candidates are ever decompressed, so the size and ratio rules apply to them; each of the two
    passes (header probe, then decode) may decompress at most `max_total_bytes`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import numbers
import os
import time
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models_zoo.archive import (
    Budget,
    CountedStream,
    Member,
    check_declared_size,
    check_declared_total,
    check_entry_count,
    check_overlaps,
    iter_members,
    open_zip,
    read_entry,
    size_text,
)
from models_zoo.kinds import IMAGE_SIZE_RANGE
from workers.datasets.common import (
    MAX_CLASSES,
    IngestError,
    atomic_dir,
    check_fractions,
    split_info,
    stratified_val_mask,
)

ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".webp"})
ARCHIVE_EXTENSIONS = frozenset({
    ".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz", ".tbz2", ".xz", ".txz", ".zst", ".tzst",
    ".7z", ".rar", ".lz", ".lzma", ".z", ".cab", ".jar",
})
TRAIN_DIRS = frozenset({"train"})
VAL_DIRS = frozenset({"val", "valid", "validation"})
TEST_DIRS = frozenset({"test"})
SPLIT_DIRS = TRAIN_DIRS | VAL_DIRS | TEST_DIRS
PARTS = ("train", "val", "test")
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
SUPPORTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})

# Zip-bomb caps (each overridable by the keyword argument of the same name in lower case).
MAX_ENTRIES = 200_000
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_ENTRY_BYTES = 64 * 1024**2
MAX_RATIO = 100
RATIO_MIN_BYTES = 1024**2

DEFAULT_MAX_SIZE = 224
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = IMAGE_SIZE_RANGE  # one definition, models_zoo.kinds
SKIP_MAX_COUNT = 50
SKIP_MAX_FRACTION = 0.01
PREVIEWS_PER_CLASS = 8
PREVIEW_PX = 64
IGNORED_LIST_MAX = 100
PROGRESS_EVERY = 0.5  # seconds between progress callbacks
NAMED_IN_ERRORS = 3


@dataclass(slots=True)
class _Entry(Member):
    """An image candidate (archive.Member: info, name) and what the ingest learns about it."""

    cls: str = ""
    split: str | None = None  # "train" / "val" / "test" for a provided split
    ci: int = -1  # class index
    size: tuple[int, int] | None = None  # from the header pass
    gray: bool = True
    ok: bool = True  # readable in the header pass
    dest: str = "train"  # destination: X_train, X_val or X_test ...
    row: int = -1  # ... at this row


class _Progress:
    def __init__(self, callback: Callable[[int, int], None] | None, total: int):
        self.callback = callback
        self.total = total
        self.done = 0
        self.last = time.monotonic()
        if callback:
            callback(0, total)

    def step(self) -> None:
        self.done += 1
        if self.callback:
            now = time.monotonic()
            if now - self.last >= PROGRESS_EVERY:
                self.last = now
                self.callback(self.done, self.total)

    def finish(self) -> None:
        if self.callback:
            self.callback(self.total, self.total)


# -- the archive: entries (archive.py's checks, then the image candidates) ----------------


def _scan(zf: zipfile.ZipFile, limits: dict):
    """Check every entry (the whole archive is refused on the first bad one); returns the image
    candidates with their path components, and the other non-junk entries as (components, is_dir)."""
    infos = zf.infolist()
    check_entry_count(infos, limits)
    images: list[tuple[_Entry, list[str]]] = []
    others: list[tuple[list[str], bool]] = []  # (parts, is_dir) of non-image, non-junk entries
    for info, parts, is_dir in iter_members(infos):
        if is_dir:
            others.append((parts, True))
        elif _is_image_candidate(info, parts):
            images.append((_Entry(info, info.filename), parts))
        else:
            others.append((parts, False))
    check_overlaps(infos, getattr(zf, "start_dir", None))

    # Declared sizes: a fast refusal before anything is decompressed.
    total = packed = 0
    for entry, _ in images:
        check_declared_size(entry.info, entry.name, limits)
        total += entry.info.file_size
        packed += entry.info.compress_size
    check_declared_total(total, limits, "the images in the ZIP", packed=packed)
    return images, others


def _is_image_candidate(info: zipfile.ZipInfo, parts: list[str]) -> bool:
    """By extension; refuses nested archives and image entries zipfile cannot decompress."""
    name = info.filename
    ext = os.path.splitext(parts[-1])[1].lower()
    if ext in ARCHIVE_EXTENSIONS:
        raise IngestError(f"entry {name!r} is an archive inside the archive; nested archives are not "
                          f"supported (put the images themselves in the ZIP)")
    if ext not in IMAGE_EXTENSIONS:
        return False
    if info.compress_type not in SUPPORTED_COMPRESSION:
        raise IngestError(f"entry {name!r} uses an unsupported compression method "
                          f"({info.compress_type}); re-create the ZIP with standard (deflate) compression")
    return True


# -- the archive: layout -----------------------------------------------------------------------


def _layout(images: list[tuple[_Entry, list[str]]], others: list[tuple[list[str], bool]]):
    """Assign each image its class (and provided split). Returns (entries, classes, split kind,
    ignored names)."""
    ignored = ["/".join(p) for p, is_dir in others if not is_dir]
    if not images:
        hint = f" (found {len(ignored)} other files, e.g. {ignored[0]!r})" if ignored else ""
        raise IngestError(f"the ZIP contains no images: expected PNG, JPEG, BMP or WebP files inside class "
                          f"folders, like cat/001.png{hint}")
    paths = [p for _, p in images]
    depth = _wrapper_depth(paths)
    prefix = paths[0][:depth]
    tops = {p[depth] for p in paths}
    provided = _is_provided_split(tops)
    level = depth + 1 if provided else depth
    if len(tops) == 1 and not provided:
        _check_no_loose_images(images, depth, [*prefix, next(iter(tops))])
    _assign_classes(images, depth, level, provided)
    classes = sorted({e.cls for e, _ in images})
    _check_folders_without_images(others, classes, prefix, level, provided)
    if len(classes) < 2:
        raise IngestError(f"only one class folder ({classes[0]!r}); need at least two classes, one folder each")
    if len(classes) > MAX_CLASSES:
        raise IngestError(f"{len(classes)} class folders; at most {MAX_CLASSES} classes are supported")
    if provided:
        _check_provided_classes([e for e, _ in images])
    return [e for e, _ in images], classes, ("provided" if provided else "seeded"), ignored


def _wrapper_depth(paths: list[list[str]]) -> int:
    """How many top folders every image shares (wrappers like pets/ around the class folders),
    keeping at least a class folder and a file name below them."""
    depth = 0
    while all(len(p) - depth >= 3 for p in paths) and len({p[depth] for p in paths}) == 1:
        depth += 1
    return depth


def _is_provided_split(tops: set[str]) -> bool:
    """Whether the folders under the wrappers are train/ and val/ (and maybe test/), refusing
    anything beside them."""
    lowered = {t.lower() for t in tops}
    if lowered & TRAIN_DIRS and lowered & TEST_DIRS and not lowered & VAL_DIRS:
        raise IngestError("found train/ and test/ folders but no val/ folder: every epoch is evaluated on "
                          "the validation images; add val/ (with the same class folders as train/)")
    if not (lowered & TRAIN_DIRS and lowered & VAL_DIRS):
        return False
    extra = sorted(t for t in tops if t.lower() not in SPLIT_DIRS)
    if extra:
        raise IngestError(f"found train/ and val/ folders, but also {extra[0]!r} next to them; "
                          f"put every class folder inside train/, val/ (and test/)")
    for dirs in (TRAIN_DIRS, VAL_DIRS, TEST_DIRS):
        if len({t for t in tops if t.lower() in dirs}) > 1:
            raise IngestError(f"more than one training, validation or test folder: {', '.join(sorted(tops))}")
    return True


def _check_no_loose_images(images: list[tuple[_Entry, list[str]]], depth: int, folder_parts: list[str]) -> None:
    """One folder holding both class folders and loose images: the loose ones are misplaced
    (rather than this being a single class named after the wrapper)."""
    loose = [e for e, p in images if len(p) - depth == 2]
    if 0 < len(loose) < len(images):
        folder = "/".join(folder_parts)
        raise IngestError(f"image {loose[0].name!r} is directly in {folder}/; images must be inside "
                          f"class folders (like {folder}/cat/001.png)")


def _assign_classes(images: list[tuple[_Entry, list[str]]], depth: int, level: int, provided: bool) -> None:
    for entry, p in images:
        if len(p) - level < 2:
            where = f"{'/'.join(p[:level])}/" if level else "the top level of the ZIP"
            raise IngestError(f"image {entry.name!r} is directly in {where}; images must be inside class "
                              f"folders (like {'/'.join(p[:level] + ['cat', '001.png'])})")
        entry.cls = p[level]
        if provided:
            top = p[depth].lower()
            entry.split = "train" if top in TRAIN_DIRS else "val" if top in VAL_DIRS else "test"


def _check_folders_without_images(others: list[tuple[list[str], bool]], classes: list[str], prefix: list[str],
                                  level: int, provided: bool) -> None:
    """Class folders without a single image candidate (empty, or only other files)."""
    depth = len(prefix)
    folders: dict[str, str | None] = {}
    for p, is_dir in others:
        # A directory entry at class level or below, or a file inside a class folder.
        if p[:depth] != prefix or len(p) - level < (1 if is_dir else 2):
            continue
        if provided and p[depth].lower() not in SPLIT_DIRS:
            continue
        if is_dir:
            folders.setdefault(p[level], None)
        elif folders.get(p[level]) is None:
            folders[p[level]] = "/".join(p)  # an example file is more telling than "empty"
    for folder in sorted(set(folders) - set(classes)):
        example = folders[folder]
        found = f" (it holds other files, e.g. {example!r})" if example else " (it is empty)"
        raise IngestError(f"class folder {folder!r} contains no PNG, JPEG, BMP or WebP images{found}")


def _check_provided_classes(entries: list[_Entry]) -> None:
    train = {e.cls for e in entries if e.split == "train"}
    val = {e.cls for e in entries if e.split == "val"}
    test = {e.cls for e in entries if e.split == "test"}
    if test - train:
        raise IngestError(f"class {sorted(test - train)[0]!r} has images in test/ but none in train/; "
                          f"every test class needs training images")
    if train != val:
        missing = sorted(train - val)
        if missing:
            raise IngestError(f"class {missing[0]!r} has images in train/ but none in val/; "
                              f"train/ and val/ must hold the same class folders")
        missing = sorted(val - train)
        raise IngestError(f"class {missing[0]!r} has images in val/ but none in train/; "
                          f"train/ and val/ must hold the same class folders")


# -- images -------------------------------------------------------------------------------------


def _open_image(fp) -> Image.Image:
    """Image.open restricted to the allowed formats (the caller turns bomb warnings into errors)."""
    return Image.open(fp, formats=ALLOWED_FORMATS)


def _unreadable_reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not a PNG, JPEG, BMP or WebP image (by its content)"
    text = str(exc).strip() or type(exc).__name__
    return f"cannot be decoded: {text[:200]}"


def _bomb(entry: _Entry, exc: Exception) -> IngestError:
    return IngestError(f"image {entry.name!r} is too large to decode safely ({exc}); refusing the archive "
                       f"(decompression bomb?)")


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    """16-bit (I;16*, or I holding values above 255) → 8-bit by dropping the low byte; F is clipped."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        a = a >> 8
    elif im.mode == "I":
        a = np.clip(a, 0, 65535)
        if a.max(initial=0) > 255:
            a = a >> 8
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _convert(im: Image.Image, channels: str, side: int) -> np.ndarray:
    """Decode, flatten transparency on white, convert to `channels`, squash to side×side;
    returns a uint8 array [C, side, side]."""
    if im.format == "JPEG":
        im.draft(channels, (side, side))  # decode at a reduced scale when much larger (fast)
    if im.format in ("JPEG", "WEBP"):
        ImageOps.exif_transpose(im, in_place=True)
    im.load()
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        im = _to_8bit_gray(im)
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        im = white.convert("RGB")
    if im.mode not in ("L", "RGB"):
        im = im.convert("L" if im.mode == "1" else "RGB")
    if im.mode != channels:
        im = im.convert(channels)
    if im.size != (side, side):
        im = im.resize((side, side), Image.Resampling.BICUBIC)
    a = np.asarray(im)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _skip_limit(n_candidates: int) -> float:
    return min(SKIP_MAX_COUNT, SKIP_MAX_FRACTION * n_candidates)


def _check_skipped(skipped: list[dict], n_candidates: int) -> None:
    if len(skipped) > _skip_limit(n_candidates):
        named = "; ".join(f"{s['file']!r}: {s['reason']}" for s in skipped[:NAMED_IN_ERRORS])
        raise IngestError(f"too many unreadable images: {len(skipped)} of {n_candidates} so far, and at most "
                          f"{SKIP_MAX_COUNT} and at most {SKIP_MAX_FRACTION:.0%} of them may be skipped: {named}")


def _probe(zf: zipfile.ZipFile, entries: list[_Entry], limits: dict, skipped: list[dict],
           progress: _Progress) -> None:
    """Pass 1: headers only (size, mode) of every candidate; marks the unreadable ones."""
    budget = Budget(limits["max_total_bytes"], "the images in the ZIP")
    for entry in entries:
        try:
            with zf.open(entry.info) as raw:
                with _open_image(CountedStream(raw, entry, budget, limits)) as im:
                    entry.size = im.size
                    entry.gray = im.mode in GRAY_MODES
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb(entry, exc) from None
        except IngestError:
            raise
        except zipfile.BadZipFile as exc:
            raise IngestError(f"the ZIP is damaged: entry {entry.name!r} ({exc})") from None
        except Exception as exc:  # any decoder failure on user data: the image is unreadable
            entry.ok = False
            skipped.append({"file": entry.name, "reason": _unreadable_reason(exc)})
            _check_skipped(skipped, len(entries))
        progress.step()



def _check_cache_size(planned: int, limits: dict, image_size: int) -> None:
    """The cache's size is known before a byte of it is written (N × C × H × W): refuse it when
    it passes what the owner may still store (`max_cache_bytes`, from their quota)."""
    budget = limits.get("max_cache_bytes")
    if budget is not None and planned > budget:
        raise IngestError(f"at {image_size}×{image_size} pixels the images need a {size_text(planned)} cache, "
                          f"more than the {size_text(max(0, budget))} left in your storage quota; choose a "
                          f"smaller image size or free some space")


class _RowFile:
    """A preallocated uint8 .npy array [n, C, H, W] written one row at a time with pwrite.

    np.lib.format.open_memmap writes the header and sizes the file, posix_fallocate reserves the
    blocks (a full disk fails here, not later), then rows go in through a plain file descriptor:
    no mapping, so the written pages are page cache, not this process's memory."""

    def __init__(self, path: Path, n: int, row_shape: tuple[int, ...]):
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *row_shape))
        self.offset = arr.offset
        del arr
        self.path = path
        self.n = n
        self.row_shape = row_shape
        self.row_bytes = int(np.prod(row_shape))
        self.fd = os.open(path, os.O_RDWR)
        if hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(self.fd, 0, self.offset + n * self.row_bytes)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self.close()
                    raise
                # EINVAL/EOPNOTSUPP: the filesystem cannot reserve space; write as we go.

    def write(self, i: int, row: np.ndarray) -> None:
        data = np.ascontiguousarray(row, dtype=np.uint8).tobytes()
        assert len(data) == self.row_bytes
        os.pwrite(self.fd, data, self.offset + i * self.row_bytes)

    def read(self, start: int, stop: int) -> np.ndarray:
        size = (stop - start) * self.row_bytes
        data = os.pread(self.fd, size, self.offset + start * self.row_bytes)
        if len(data) != size:
            raise OSError(f"short read from {self.path}")
        return np.frombuffer(data, dtype=np.uint8).reshape(stop - start, *self.row_shape)

    def blocks(self):
        """(start, rows) over the whole array, about 8 MiB at a time."""
        step = max(1, (8 * 1024**2) // self.row_bytes)
        for i in range(0, self.n, step):
            yield i, self.read(i, min(self.n, i + step))

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1

    def compact(self, keep: np.ndarray) -> _RowFile:
        """The rows to keep, in a fresh file that replaces this one (failed decodes leave holes)."""
        tmp_path = self.path.with_name(self.path.stem + ".compact.npy")
        out = _RowFile(tmp_path, int(keep.sum()), self.row_shape)
        j = 0
        for i, rows in self.blocks():
            kept = rows[keep[i : i + len(rows)]]
            if len(kept):
                os.pwrite(out.fd, kept.tobytes(), out.offset + j * self.row_bytes)
                j += len(kept)
        self.close()
        os.replace(tmp_path, self.path)
        out.path = self.path
        return out


def _normalization(X: _RowFile) -> dict:
    """Per-channel mean and std (0..1 scale) of the training rows, from exact integer sums."""
    channels = X.row_shape[0]
    s1 = np.zeros(channels, dtype=np.uint64)
    s2 = np.zeros(channels, dtype=np.uint64)
    for _, rows in X.blocks():
        for c in range(channels):
            plane = rows[:, c]
            s1[c] += plane.sum(dtype=np.uint64)
            s2[c] += np.square(plane, dtype=np.uint16).sum(dtype=np.uint64)  # 255² fits in 16 bits
    n = max(1, X.n * X.row_bytes // channels)
    mean = s1.astype(np.float64) / n / 255.0
    std = np.sqrt(np.maximum(s2.astype(np.float64) / n / 255.0**2 - mean**2, 0.0))
    std[std < 1e-6] = 1.0
    return {"mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in std]}


def _previews(tmp: Path, classes: list[str], splits: list[tuple[_RowFile, np.ndarray]]) -> dict:
    """Up to PREVIEWS_PER_CLASS thumbnails per class of what the model sees, named
    <class index>_<k>.png (never the user's names)."""
    folder = tmp / "previews"
    folder.mkdir()
    out: dict[str, list[str]] = {}
    for c, name in enumerate(classes):
        files: list[str] = []
        for X, y in splits:
            for row in np.flatnonzero(y == c)[: PREVIEWS_PER_CLASS - len(files)]:
                a = X.read(int(row), int(row) + 1)[0]
                im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
                upscale = im.width < PREVIEW_PX
                im = im.resize((PREVIEW_PX, PREVIEW_PX),
                               Image.Resampling.NEAREST if upscale else Image.Resampling.BICUBIC)
                fname = f"{c}_{len(files)}.png"
                im.save(folder / fname, format="PNG")
                files.append(fname)
        out[name] = files
    return out


# -- the entry point ----------------------------------------------------------------------------


def ingest_image_zip(
    source: Path,
    out_dir: Path,
    *,
    image_size: int | None = None,
    channels: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    test_fraction: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    max_entries: int = MAX_ENTRIES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_entry_bytes: int = MAX_ENTRY_BYTES,
    max_ratio: float = MAX_RATIO,
    ratio_min_bytes: int = RATIO_MIN_BYTES,
    max_cache_bytes: int | None = None,
    processes: int | None = None,
) -> dict:
    """Validate the ZIP `source` and write the cache into `out_dir` (which must not exist).
    `processes`: how many processes decode the images (default: the CPUs this process may use,
    at most MAX_PROCESSES; 1 decodes in this process; small archives always do).
    Returns the info dict (also written as info.json). `progress(done, total)` is called at the
    start, at most every PROGRESS_EVERY seconds, and at the end (done counts images per pass:
    total is twice the number of images when the header pass runs); if it raises, the ingest
    stops and leaves nothing behind. The max_* / ratio_min_bytes arguments lower or raise the
    zip-bomb caps (module constants of the same name in upper case)."""
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
                or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
            raise IngestError(f"image size must be a whole number of pixels from {MIN_IMAGE_SIZE} to "
                              f"{MAX_IMAGE_SIZE}, not {image_size!r}")
        image_size = int(image_size)
    if channels not in (None, "L", "RGB"):
        raise IngestError(f"channels must be 'L' (grayscale) or 'RGB', not {channels!r}")
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    limits = {"max_entries": max_entries, "max_total_bytes": max_total_bytes, "max_entry_bytes": max_entry_bytes,
              "max_ratio": max_ratio, "ratio_min_bytes": ratio_min_bytes, "max_cache_bytes": max_cache_bytes}

    files: dict[str, _RowFile] = {}
    try:
        with atomic_dir(out_dir) as tmp:
            with open(source, "rb") as f, open_zip(f, limits) as zf, warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                info = _ingest(zf, tmp, files, limits, image_size=image_size, channels=channels,
                               fractions=(val_fraction, test_fraction), seed=seed, progress=progress,
                               processes=processes)
            for rf in files.values():
                rf.close()  # fsync before the rename publishes the cache
    except BaseException:
        for rf in files.values():  # atomic_dir removed the files; their descriptors stay open until here
            if rf.fd >= 0:
                os.close(rf.fd)
                rf.fd = -1
        raise
    return info


def _ingest(zf, tmp: Path, files: dict, limits: dict, *, image_size, channels, fractions, seed,
            progress, processes=None) -> dict:
    candidates, others = _scan(zf, limits)
    entries, classes, split_kind, ignored = _layout(candidates, others)
    if split_kind == "provided" and fractions[1]:
        raise IngestError("the test fraction is for the seeded split; this archive's train/ and val/ folders "
                          "decide the split (add a test/ folder for test images)")
    del candidates, others
    class_index = {c: i for i, c in enumerate(classes)}
    n_candidates = len(entries)
    for e in entries:
        e.ci = class_index[e.cls]
    # Output order: by class, then name. Reading order: the archive's (sequential I/O).
    entries.sort(key=lambda e: (e.ci, e.name))
    skipped: list[dict] = []

    need_probe = image_size is None or channels is None
    prog = _Progress(progress, n_candidates * (2 if need_probe else 1))
    if need_probe:
        _probe(zf, sorted(entries, key=lambda e: e.info.header_offset), limits, skipped, prog)
        entries = [e for e in entries if e.ok]
        _check_classes_present(entries, classes, split_kind)
    channels, image_size = _output_format(entries, channels, image_size)
    C = 1 if channels == "L" else 3
    sizes = _assign_rows(entries, split_kind, fractions, seed)
    parts = [part for part in PARTS if sizes[part]]  # test only when there is one
    y = {part: np.asarray([e.ci for e in entries if e.dest == part], dtype=np.int64) for part in parts}
    keep = {part: np.ones(sizes[part], dtype=bool) for part in parts}

    shape = (C, image_size, image_size)
    _check_cache_size(sum(sizes.values()) * C * image_size * image_size, limits, image_size)
    for part in parts:
        files[part] = _RowFile(tmp / f"X_{part}.npy", sizes[part], shape)
    formats = _decode_all(zf, entries, files, keep, skipped, limits, channels, image_size, prog, n_candidates,
                          processes)
    for part in parts:
        if not keep[part].all():
            files[part] = files[part].compact(keep[part])
            y[part] = y[part][keep[part]]
    counts = _check_readable(y, classes, split_kind)

    for part in parts:
        np.save(tmp / f"y_{part}.npy", y[part], allow_pickle=False)
    previews = _previews(tmp, classes, [(files[part], y[part]) for part in parts])
    info = {
        "kind": "image",
        "task": "classification",
        "classes": classes,
        "num_classes": len(classes),
        "num_outputs": len(classes),
        "class_counts": {c: int(k) for c, k in zip(classes, counts)},
        "input_shape": [C, image_size, image_size],
        "image_size": image_size,
        "channels": channels,
        "resize": "squash",
        "num_rows": int(sum(len(v) for v in y.values())),
        **split_info(split_kind, tuple(len(y.get(part, ())) for part in PARTS), val_fraction=fractions[0],
                     test_fraction=fractions[1], seed=seed),
        "normalization": _normalization(files["train"]),
        "formats": dict(sorted(formats.items())),
        "skipped": skipped,
        "ignored": ignored[:IGNORED_LIST_MAX],
        "ignored_count": len(ignored),
        "previews": previews,
    }
    (tmp / "info.json").write_text(json.dumps(info))
    prog.finish()
    return info


def _output_format(entries: list[_Entry], channels: str | None, image_size: int | None) -> tuple[str, int]:
    """The channels and side asked for, else what the header pass found: grayscale when every
    image is, and the most common max(width, height) capped to DEFAULT_MAX_SIZE."""
    if channels is None:
        channels = "L" if all(e.gray for e in entries) else "RGB"
    if image_size is None:
        counts = Counter(max(e.size) for e in entries)
        common = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        image_size = max(MIN_IMAGE_SIZE, min(DEFAULT_MAX_SIZE, common))
    return channels, image_size


def _assign_rows(entries: list[_Entry], split_kind: str, fractions: tuple[float, float], seed: int) -> dict:
    """Each entry's destination (e.dest) and row in it (e.row): the provided split, or common's
    seeded stratified one (the test images drawn first, then validation from the rest). Returns
    the number of images per part."""
    if split_kind == "provided":
        code = np.asarray([PARTS.index(e.split) for e in entries], dtype=np.int64)
    else:
        val_fraction, test_fraction = fractions
        y = np.asarray([e.ci for e in entries], dtype=np.int64)
        code = np.zeros(len(entries), dtype=np.int64)
        if test_fraction:
            code[stratified_val_mask(y, test_fraction, seed)] = 2
        rest = np.flatnonzero(code == 0)
        code[rest[stratified_val_mask(y[rest], val_fraction / (1.0 - test_fraction), seed)]] = 1
    sizes = {part: int((code == k).sum()) for k, part in enumerate(PARTS)}
    if sizes["val"] == 0 or sizes["train"] == 0:
        what = "training, validation and test" if sizes["test"] else "training and validation"
        raise IngestError(f"only {len(entries)} readable images: too few to split into {what} "
                          f"(need at least two images in a class)")
    rows = np.empty(len(entries), dtype=np.int64)
    for k, part in enumerate(PARTS):
        rows[code == k] = np.arange(sizes[part])
    for e, k, r in zip(entries, code.tolist(), rows.tolist()):
        e.dest, e.row = PARTS[k], r
    return sizes


# Pass 2 over a process pool: the main process reads the archive in order (every size, ratio and
# total check stays there, streaming), worker processes decode chunks of images and send back
# their uint8 rows, and the main process writes them in submission order, so the cache, the
# skipped list and every error are the same whatever the number of processes.
PARALLEL_MIN_IMAGES = 512  # below this a pool's start-up costs more than it saves
CHUNK_IMAGES = 64  # images per task: one round trip per chunk, not per image
MAX_PROCESSES = 8


def decode_processes(requested: int | None = None) -> int:
    """Processes for decoding: `requested` (≥ 1), else the CPUs this process may run on, at most
    MAX_PROCESSES."""
    if requested:
        return max(1, int(requested))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_PROCESSES, cpus))


def _decode(data: bytes, channels: str, image_size: int) -> tuple:
    """One image's bytes → ("ok", format, row) | ("bomb", message) | ("os", errno, text) |
    ("bad", exception): what happened, as data, so that a worker process can send it back."""
    try:
        with _open_image(BytesIO(data)) as im:
            fmt = im.format
            return "ok", fmt, _convert(im, channels, image_size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return "bomb", str(exc)
    except OSError as exc:
        if exc.errno is not None:  # the machine, not the image (ENOMEM, EIO)
            return "os", exc.errno, str(exc)
        return "bad", exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure on user data: the image is unreadable
        return "bad", exc


def _decode_chunk(datas: list[bytes], channels: str, image_size: int) -> list[tuple]:
    results = []
    for d in datas:
        r = _decode(d, channels, image_size)
        if r[0] == "bad":  # exceptions travel as their type name and text (any may not pickle)
            r = ("bad", _unreadable_reason(r[1]))
        results.append(r)
    return results


def _init_decoder(max_pixels) -> None:
    """A decoding process: the parent's bomb limit, its warning an error, one thread."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@contextlib.contextmanager
def _children_allowed():
    """Celery's prefork pool runs tasks in daemonic processes, and multiprocessing refuses to
    start children from one (they could outlive it). The decoding pool is shut down before this
    block ends, on every path, so the flag is lifted for the block's length only (and the flags
    are restored as they were)."""
    import multiprocessing

    from multiprocessing.process import AuthenticationString

    config = multiprocessing.current_process()._config  # noqa: SLF001 - the flags Process.start reads
    saved = dict(config)
    config["daemon"] = False
    # billiard (Celery's fork of multiprocessing) leaves its own AuthenticationString here, which
    # refuses to be pickled by the standard library's spawning code: the same key, stdlib's type.
    if config.get("authkey") is not None and not isinstance(config["authkey"], AuthenticationString):
        config["authkey"] = AuthenticationString(bytes(config["authkey"]))
    try:
        yield
    finally:
        config.clear()
        config.update(saved)


def _decode_all(zf, entries: list[_Entry], files: dict, keep: dict, skipped: list[dict], limits: dict,
                channels: str, image_size: int, prog: _Progress, n_candidates: int,
                processes: int | None = None) -> Counter:
    """Pass 2: decode every image straight into its row; marks unreadable ones in `keep`.
    Returns the count of each format decoded."""
    formats: Counter = Counter()
    budget = Budget(limits["max_total_bytes"], "the images in the ZIP")
    order = sorted(entries, key=lambda e: e.info.header_offset)

    def record(entry: _Entry, result: tuple) -> None:
        split = entry.dest
        if result[0] == "ok":
            files[split].write(entry.row, result[2])
            formats[result[1]] += 1
        elif result[0] == "bomb":
            raise _bomb(entry, result[1])
        elif result[0] == "os":
            raise OSError(result[1], result[2])
        else:
            reason = result[1] if isinstance(result[1], str) else _unreadable_reason(result[1])
            keep[split][entry.row] = False
            skipped.append({"file": entry.name, "reason": reason})
            _check_skipped(skipped, n_candidates)
        prog.step()

    n = decode_processes(processes)
    if n == 1 or len(order) < PARALLEL_MIN_IMAGES:
        for entry in order:
            record(entry, _decode(read_entry(zf, entry, budget, limits), channels, image_size))
        return formats

    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: children start from a clean server process, not a fork of this one (a Celery
    # worker with threads and open database connections).
    context = multiprocessing.get_context("forkserver")
    pending: deque = deque()
    with _children_allowed(), ProcessPoolExecutor(n, mp_context=context, initializer=_init_decoder,
                                                  initargs=(Image.MAX_IMAGE_PIXELS,)) as pool:
        try:
            for start in range(0, len(order), CHUNK_IMAGES):
                chunk = order[start : start + CHUNK_IMAGES]
                datas = [read_entry(zf, e, budget, limits) for e in chunk]
                pending.append((chunk, pool.submit(_decode_chunk, datas, channels, image_size)))
                del datas
                while len(pending) > 2 * n:  # bounded: at most ~2 chunks per process in flight
                    done, future = pending.popleft()
                    for entry, result in zip(done, future.result()):
                        record(entry, result)
            while pending:
                done, future = pending.popleft()
                for entry, result in zip(done, future.result()):
                    record(entry, result)
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise
    return formats


def _check_readable(y: dict, classes: list[str], split_kind: str) -> np.ndarray:
    """After the decode pass: every class (in each provided split) still has images, and both
    splits are non-empty. Returns the images per class."""
    counts = np.bincount(np.concatenate(list(y.values())), minlength=len(classes))
    for c, name in enumerate(classes):
        if counts[c] == 0:
            raise IngestError(f"class folder {name!r} has no readable images")
    if split_kind == "provided":
        for split in ("train", "val"):
            present = set(np.unique(y[split]).tolist())
            for c, name in enumerate(classes):
                if c not in present:
                    raise IngestError(f"class {name!r} has no readable images in {split}/; "
                                      f"train/ and val/ must hold the same class folders")
    if len(y["train"]) == 0 or len(y["val"]) == 0:
        raise IngestError("too few readable images to split into training and validation")
    return counts


def _check_classes_present(ok: list[_Entry], classes: list[str], split_kind: str) -> None:
    present = Counter(e.cls for e in ok)
    for name in classes:
        if not present[name]:
            raise IngestError(f"class folder {name!r} has no readable images")
    if split_kind == "provided":
        _check_provided_classes(ok)
