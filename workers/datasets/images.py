"""Image-classification ingest: a ZIP of class folders → uint8 image tensors plus an info dict.

Pure Python + numpy + Pillow + zipfile (no Django, no torch).

Input layout
    cat/001.png, dog/x.jpg, ...            one folder per class (the folder name is the class)
    pets/cat/001.png, pets/dog/x.jpg       the same under one common top folder (stripped)
    train/cat/..., val/cat/...             a provided split (also `valid/` or `validation/`, any
                                           case); the classes are the union and must match
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
    least two images puts round(n × val_fraction), clamped to 1..n-1, images into validation).
    With them: the provided split (info["val_fraction"] is None, info["split"] == "provided").
    Rows are ordered by class, then entry name.

Output (written to `<out_dir>.partial`, renamed into place; on any failure it is removed)
    X_train.npy X_val.npy   uint8 [N, C, H, W]         y_train.npy y_val.npy   int64 [N]
    previews/<class_index>_<k>.png   up to PREVIEWS_PER_CLASS 64 px thumbnails per class
    info.json
Memory stays bounded whatever the archive's size: once the number of readable images is known
the pixel arrays are preallocated on disk (np.lib.format.open_memmap writes the .npy header and
sizes the file, posix_fallocate reserves the blocks so a full disk fails up front) and each
decoded image is written to its row with os.pwrite (no mapping: the cache never counts as this
process's memory). Every entry is streamed from the archive with zf.open(); nothing is extracted
to disk. What grows with the archive is per entry (zipfile's directory, ~1 KiB an entry) and one
entry's bytes at a time (at most max_entry_bytes).

Hostile archives (each an IngestError naming the entry; the whole archive is rejected)
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

import errno
import json
import numbers
import os
import re
import shutil
import stat
import struct
import time
import warnings
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from workers.datasets.common import MAX_CLASSES, IngestError

ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".webp"})
ARCHIVE_EXTENSIONS = frozenset({
    ".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz", ".tbz2", ".xz", ".txz", ".zst", ".tzst",
    ".7z", ".rar", ".lz", ".lzma", ".z", ".cab", ".jar",
})
JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})
JUNK_DIRS = frozenset({"__macosx"})
TRAIN_DIRS = frozenset({"train"})
VAL_DIRS = frozenset({"val", "valid", "validation"})
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
SUPPORTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})

# Zip-bomb caps (each overridable by the keyword argument of the same name in lower case).
MAX_ENTRIES = 200_000
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_ENTRY_BYTES = 64 * 1024**2
MAX_RATIO = 100
RATIO_MIN_BYTES = 1024**2
CENTRAL_DIRECTORY_BYTES_PER_ENTRY = 1024  # a central directory larger than max_entries × this is refused

DEFAULT_MAX_SIZE = 224
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 512
SKIP_MAX_COUNT = 50
SKIP_MAX_FRACTION = 0.01
PREVIEWS_PER_CLASS = 8
PREVIEW_PX = 64
IGNORED_LIST_MAX = 100
PROGRESS_EVERY = 0.5  # seconds between progress callbacks
READ_CHUNK = 1 << 20
NAMED_IN_ERRORS = 3

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


@dataclass(slots=True)
class _Entry:
    info: zipfile.ZipInfo
    name: str
    cls: str = ""
    split: str | None = None  # "train" / "val" for a provided split
    ci: int = -1  # class index
    size: tuple[int, int] | None = None  # from the header pass
    gray: bool = True
    ok: bool = True  # readable in the header pass
    val: bool = False  # destination: X_val (else X_train) ...
    row: int = -1  # ... at this row


class _Budget:
    """Uncompressed bytes produced so far in one pass, against the total cap."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def add(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise IngestError(f"the images in the ZIP expand to more than {_size(self.limit)}; "
                              f"that is the limit (zip bomb?)")


class _CountedStream:
    """A read/seek/tell view of one archive entry that counts the bytes it actually produces
    (the furthest offset reached) and stops at the per-entry, ratio and total caps. Errors of the
    archive itself (bad CRC, corrupt deflate data) become IngestError: the ZIP is damaged."""

    def __init__(self, raw, entry: _Entry, budget: _Budget, limits: dict):
        self.raw = raw
        self.entry = entry
        self.budget = budget
        self.limits = limits
        self.pos = 0
        self.high = 0

    def _reached(self, pos: int) -> None:
        self.pos = pos
        if pos <= self.high:
            return
        self.budget.add(pos - self.high)
        self.high = pos
        name = self.entry.name
        if pos > self.limits["max_entry_bytes"]:
            raise IngestError(f"entry {name!r} expands to more than {_size(self.limits['max_entry_bytes'])}; "
                              f"that is the limit per file (zip bomb?)")
        packed = max(1, self.entry.info.compress_size)
        if pos > self.limits["ratio_min_bytes"] and pos > self.limits["max_ratio"] * packed:
            raise IngestError(f"entry {name!r} expands more than {self.limits['max_ratio']}:1 "
                              f"({_size(packed)} compressed); refusing it (zip bomb?)")

    def _damaged(self, exc: Exception) -> IngestError:
        return IngestError(f"the ZIP is damaged: entry {self.entry.name!r} cannot be decompressed ({exc})")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(READ_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        try:
            data = self.raw.read(n)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise self._damaged(exc) from None
        self._reached(self.pos + len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            pos = self.raw.seek(offset, whence)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise self._damaged(exc) from None
        self._reached(pos)
        return pos

    def tell(self) -> int:
        return self.pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


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


# -- the archive: directory checks -----------------------------------------------------------


def _central_directory_stats(f) -> tuple[int, int] | None:
    """(entries, central directory bytes) from the end-of-central-directory record (and its
    zip64 form), read before zipfile parses the whole directory into memory. None when no
    record is found (zipfile then says what is wrong)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    tail_len = min(size, 22 + 65535 + 20)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(b"PK\x05\x06")
    # The record ends the file (after its comment): a signature inside the comment does not.
    while i >= 0 and not (len(tail) - i >= 22 and i + 22 + struct.unpack("<H", tail[i + 20 : i + 22])[0] == len(tail)):
        i = tail.rfind(b"PK\x05\x06", 0, i)
    if i < 0:
        return None
    entries, cd_size = struct.unpack("<HI", tail[i + 10 : i + 16])
    if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and i >= 20 and tail[i - 20 : i - 16] == b"PK\x06\x07":
        (offset,) = struct.unpack("<Q", tail[i - 12 : i - 4])
        if offset < size:
            f.seek(offset)
            rec = f.read(56)
            if len(rec) == 56 and rec[:4] == b"PK\x06\x06":
                entries, cd_size = struct.unpack("<QQ", rec[32:48])
    return entries, cd_size


def _open_zip(f, limits: dict) -> zipfile.ZipFile:
    stats = _central_directory_stats(f)
    if stats is not None:
        entries, cd_size = stats
        if entries > limits["max_entries"]:
            raise IngestError(f"the ZIP has {entries} entries; at most {limits['max_entries']} are allowed")
        if cd_size > limits["max_entries"] * CENTRAL_DIRECTORY_BYTES_PER_ENTRY:
            raise IngestError(f"the ZIP's directory is {_size(cd_size)}, too large for at most "
                              f"{limits['max_entries']} entries")
    f.seek(0)
    try:
        return zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error,
            NotImplementedError) as exc:
        raise IngestError(f"not a valid ZIP archive ({exc})") from None
    except OSError as exc:
        raise IngestError(f"not a valid ZIP archive ({exc.strerror or exc})") from None


def _name_parts(name: str) -> list[str]:
    """Validated path components of an entry name (zip slip: the whole archive is refused)."""
    if not name:
        raise IngestError("the ZIP has an entry with an empty name")
    if _CONTROL.search(name):
        raise IngestError(f"entry {name!r}: control characters in the name; refusing the archive")
    if "\\" in name:
        raise IngestError(f"entry {name!r}: backslashes in the name are not allowed; refusing the archive "
                          f"(re-create the ZIP with a standard tool)")
    if name.startswith("/"):
        raise IngestError(f"entry {name!r}: absolute paths are not allowed; refusing the archive")
    if _DRIVE.match(name):
        raise IngestError(f"entry {name!r}: drive letters are not allowed; refusing the archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise IngestError(f"entry {name!r}: '..' in the path is not allowed; refusing the archive")
    if not parts:
        raise IngestError(f"entry {name!r}: not a usable name")
    return parts


def _is_junk(parts: list[str]) -> bool:
    return (any(p.startswith(".") or p.lower() in JUNK_DIRS for p in parts)
            or parts[-1].lower() in JUNK_FILES)


def _check_overlaps(infos: list[zipfile.ZipInfo], start_dir: int | None) -> None:
    """Each entry's local header and data must end before the next entry starts: entries that
    share bytes (the overlapping-entry zip bomb) are refused."""
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for a, b in zip(ordered, ordered[1:]):
        if b.header_offset < a.header_offset + 30 + a.compress_size:
            raise IngestError(f"entries {a.filename!r} and {b.filename!r} overlap in the archive; "
                              f"refusing it (zip bomb?)")
    last = ordered[-1]
    if start_dir is not None and last.header_offset + 30 + last.compress_size > start_dir:
        raise IngestError(f"entry {last.filename!r} overlaps the ZIP's directory; refusing the archive")


def _scan(zf: zipfile.ZipFile, limits: dict):
    """Check every entry (the whole archive is refused on the first bad one); returns the image
    candidates with their path components, and the other non-junk entries as (components, is_dir)."""
    infos = zf.infolist()
    if len(infos) > limits["max_entries"]:
        raise IngestError(f"the ZIP has {len(infos)} entries; at most {limits['max_entries']} are allowed")
    if not infos:
        raise IngestError("the ZIP archive is empty")
    seen: set[str] = set()
    images: list[tuple[_Entry, list[str]]] = []
    others: list[tuple[list[str], bool]] = []  # (parts, is_dir) of non-image, non-junk entries
    for info in infos:
        name = info.filename
        parts = _name_parts(info.orig_filename)  # the raw name: zipfile cuts it at a NUL byte
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise IngestError(f"entry {name!r} is a symbolic link; links are not allowed, refusing the archive")
        kind = stat.S_IFMT(mode)
        is_dir = info.is_dir() or kind == stat.S_IFDIR
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise IngestError(f"entry {name!r} is not a regular file (device, pipe or socket); refusing the archive")
        key = "/".join(parts)
        if key in seen:
            raise IngestError(f"entry {name!r} appears more than once in the ZIP; refusing it")
        seen.add(key)
        if info.flag_bits & 0x1:
            raise IngestError(f"entry {name!r} is encrypted; upload a ZIP without a password")
        if is_dir or _is_junk(parts):
            if is_dir and not _is_junk(parts):
                others.append((parts, True))
            continue
        ext = os.path.splitext(parts[-1])[1].lower()
        if ext in ARCHIVE_EXTENSIONS:
            raise IngestError(f"entry {name!r} is an archive inside the archive; nested archives are not "
                              f"supported (put the images themselves in the ZIP)")
        if ext in IMAGE_EXTENSIONS:
            if info.compress_type not in SUPPORTED_COMPRESSION:
                raise IngestError(f"entry {name!r} uses an unsupported compression method "
                                  f"({info.compress_type}); re-create the ZIP with standard (deflate) compression")
            images.append((_Entry(info, name), parts))
        else:
            others.append((parts, False))
    _check_overlaps(infos, getattr(zf, "start_dir", None))

    # Declared sizes: a fast refusal before anything is decompressed.
    total = 0
    for entry, _ in images:
        info = entry.info
        if info.file_size > limits["max_entry_bytes"]:
            raise IngestError(f"entry {entry.name!r} is {_size(info.file_size)} uncompressed; at most "
                              f"{_size(limits['max_entry_bytes'])} per file")
        packed = max(1, info.compress_size)
        if info.file_size > limits["ratio_min_bytes"] and info.file_size > limits["max_ratio"] * packed:
            raise IngestError(f"entry {entry.name!r} expands {info.file_size // packed}:1 ({_size(packed)} → "
                              f"{_size(info.file_size)}); files above {_size(limits['ratio_min_bytes'])} may "
                              f"expand at most {limits['max_ratio']}:1 (zip bomb?)")
        total += info.file_size
    if total > limits["max_total_bytes"]:
        raise IngestError(f"the images in the ZIP add up to {_size(total)} uncompressed; at most "
                          f"{_size(limits['max_total_bytes'])}")
    return images, others


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
    depth = 0
    while all(len(p) - depth >= 3 for p in paths) and len({p[depth] for p in paths}) == 1:
        depth += 1
    prefix = paths[0][:depth]
    tops = {p[depth] for p in paths}
    lowered = {t.lower() for t in tops}
    provided = bool(lowered & TRAIN_DIRS) and bool(lowered & VAL_DIRS)
    if provided:
        extra = sorted(t for t in tops if t.lower() not in TRAIN_DIRS | VAL_DIRS)
        if extra:
            raise IngestError(f"found train/ and val/ folders, but also {extra[0]!r} next to them; "
                              f"put every class folder inside train/ and val/")
        vals = {t for t in tops if t.lower() in VAL_DIRS}
        if len(vals) > 1 or len({t for t in tops if t.lower() in TRAIN_DIRS}) > 1:
            raise IngestError(f"more than one training or validation folder: {', '.join(sorted(tops))}")
    level = depth + 1 if provided else depth
    if len(tops) == 1 and not provided:
        # One folder holding both class folders and loose images: the loose ones are misplaced
        # (rather than this being a single class named after the wrapper).
        loose = [e for e, p in images if len(p) - depth == 2]
        if 0 < len(loose) < len(images):
            folder = "/".join([*prefix, next(iter(tops))])
            raise IngestError(f"image {loose[0].name!r} is directly in {folder}/; images must be inside "
                              f"class folders (like {folder}/cat/001.png)")

    for entry, p in images:
        if len(p) - level < 2:
            where = f"{'/'.join(p[:level])}/" if level else "the top level of the ZIP"
            raise IngestError(f"image {entry.name!r} is directly in {where}; images must be inside class "
                              f"folders (like {'/'.join(p[:level] + ['cat', '001.png'])})")
        entry.cls = p[level]
        if provided:
            entry.split = "train" if p[depth].lower() in TRAIN_DIRS else "val"

    classes = sorted({e.cls for e, _ in images})
    # Class folders without a single image candidate (empty, or only other files).
    folders: dict[str, str | None] = {}
    for p, is_dir in others:
        # A directory entry at class level or below, or a file inside a class folder.
        if p[:depth] != prefix or len(p) - level < (1 if is_dir else 2):
            continue
        if provided and p[depth].lower() not in TRAIN_DIRS | VAL_DIRS:
            continue
        if is_dir:
            folders.setdefault(p[level], None)
        elif folders.get(p[level]) is None:
            folders[p[level]] = "/".join(p)  # an example file is more telling than "empty"
    for folder in sorted(set(folders) - set(classes)):
        example = folders[folder]
        found = f" (it holds other files, e.g. {example!r})" if example else " (it is empty)"
        raise IngestError(f"class folder {folder!r} contains no PNG, JPEG, BMP or WebP images{found}")
    if len(classes) < 2:
        raise IngestError(f"only one class folder ({classes[0]!r}); need at least two classes, one folder each")
    if len(classes) > MAX_CLASSES:
        raise IngestError(f"{len(classes)} class folders; at most {MAX_CLASSES} classes are supported")
    if provided:
        _check_provided_classes([e for e, _ in images])
    return [e for e, _ in images], classes, ("provided" if provided else "seeded"), ignored


def _check_provided_classes(entries: list[_Entry]) -> None:
    train = {e.cls for e in entries if e.split == "train"}
    val = {e.cls for e in entries if e.split == "val"}
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
    budget = _Budget(limits["max_total_bytes"])
    for entry in entries:
        try:
            with zf.open(entry.info) as raw:
                with _open_image(_CountedStream(raw, entry, budget, limits)) as im:
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


def _read_entry(zf: zipfile.ZipFile, entry: _Entry, budget: _Budget, limits: dict) -> bytes:
    try:
        with zf.open(entry.info) as raw:
            return _CountedStream(raw, entry, budget, limits).read()
    except zipfile.BadZipFile as exc:
        raise IngestError(f"the ZIP is damaged: entry {entry.name!r} ({exc})") from None


# -- output -------------------------------------------------------------------------------------


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


def _seeded_split(entries: list[_Entry], n_classes: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean 'is validation' per entry, stratified per class."""
    rng = np.random.default_rng(seed)
    cls = np.asarray([e.ci for e in entries], dtype=np.int64)
    is_val = np.zeros(len(entries), dtype=bool)
    for c in range(n_classes):
        idx = np.flatnonzero(cls == c)
        n = len(idx)
        if n < 2:
            continue
        k = min(n - 1, max(1, round(n * val_fraction)))
        is_val[idx[rng.permutation(n)[:k]]] = True
    return is_val


# -- the entry point ----------------------------------------------------------------------------


def ingest_image_zip(
    source: Path,
    out_dir: Path,
    *,
    image_size: int | None = None,
    channels: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_entries: int = MAX_ENTRIES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_entry_bytes: int = MAX_ENTRY_BYTES,
    max_ratio: float = MAX_RATIO,
    ratio_min_bytes: int = RATIO_MIN_BYTES,
) -> dict:
    """Validate the ZIP `source` and write the cache into `out_dir` (which must not exist).
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
    if not 0.0 < val_fraction < 1.0:
        raise IngestError("the validation fraction must be between 0 and 1")
    limits = {"max_entries": max_entries, "max_total_bytes": max_total_bytes, "max_entry_bytes": max_entry_bytes,
              "max_ratio": max_ratio, "ratio_min_bytes": ratio_min_bytes}

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    files: dict[str, _RowFile] = {}
    try:
        with open(source, "rb") as f, _open_zip(f, limits) as zf, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            info = _ingest(zf, tmp, files, limits, image_size=image_size, channels=channels,
                           val_fraction=val_fraction, seed=seed, progress=progress)
        for rf in files.values():
            rf.close()
        os.replace(tmp, out_dir)
    except BaseException:
        for rf in files.values():
            if rf.fd >= 0:
                os.close(rf.fd)
                rf.fd = -1
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def _ingest(zf, tmp: Path, files: dict, limits: dict, *, image_size, channels, val_fraction, seed,
            progress) -> dict:
    candidates, others = _scan(zf, limits)
    entries, classes, split_kind, ignored = _layout(candidates, others)
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

    if channels is None:
        channels = "L" if all(e.gray for e in entries) else "RGB"
    if image_size is None:
        counts = Counter(max(e.size) for e in entries)
        common = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        image_size = max(MIN_IMAGE_SIZE, min(DEFAULT_MAX_SIZE, common))
    C = 1 if channels == "L" else 3

    if split_kind == "provided":
        is_val = np.asarray([e.split == "val" for e in entries], dtype=bool)
    else:
        is_val = _seeded_split(entries, len(classes), val_fraction, seed)
    n_val = int(is_val.sum())
    n_train = len(entries) - n_val
    if n_val == 0 or n_train == 0:
        raise IngestError(f"only {len(entries)} readable images: too few to split into training and validation "
                          f"(need at least two images in a class)")
    rows = np.empty(len(entries), dtype=np.int64)
    rows[~is_val] = np.arange(n_train)
    rows[is_val] = np.arange(n_val)
    for e, v, r in zip(entries, is_val.tolist(), rows.tolist()):
        e.val, e.row = v, r
    y = {"train": np.asarray([e.ci for e in entries if not e.val], dtype=np.int64),
         "val": np.asarray([e.ci for e in entries if e.val], dtype=np.int64)}
    keep = {"train": np.ones(n_train, dtype=bool), "val": np.ones(n_val, dtype=bool)}

    tmp.mkdir(parents=True)
    shape = (C, image_size, image_size)
    files["train"] = _RowFile(tmp / "X_train.npy", n_train, shape)
    files["val"] = _RowFile(tmp / "X_val.npy", n_val, shape)
    formats: Counter = Counter()

    # Pass 2: decode every image straight into its row.
    budget = _Budget(limits["max_total_bytes"])
    for entry in sorted(entries, key=lambda e: e.info.header_offset):
        split = "val" if entry.val else "train"
        data = _read_entry(zf, entry, budget, limits)
        try:
            with _open_image(BytesIO(data)) as im:
                fmt = im.format
                row = _convert(im, channels, image_size)
            files[split].write(entry.row, row)
            formats[fmt] += 1
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb(entry, exc) from None
        except OSError as exc:
            if exc.errno is not None:  # the disk, not the image (ENOSPC, EIO)
                raise
            _unreadable(entry, exc, keep[split], skipped, n_candidates)
        except Exception as exc:  # any decoder failure on user data: the image is unreadable
            _unreadable(entry, exc, keep[split], skipped, n_candidates)
        del data
        prog.step()

    for split in ("train", "val"):
        if not keep[split].all():
            files[split] = files[split].compact(keep[split])
            y[split] = y[split][keep[split]]
    counts = np.bincount(np.concatenate([y["train"], y["val"]]), minlength=len(classes))
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

    np.save(tmp / "y_train.npy", y["train"], allow_pickle=False)
    np.save(tmp / "y_val.npy", y["val"], allow_pickle=False)
    previews = _previews(tmp, classes, [(files["train"], y["train"]), (files["val"], y["val"])])
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
        "num_rows": int(len(y["train"]) + len(y["val"])),
        "num_train": int(len(y["train"])),
        "num_val": int(len(y["val"])),
        "val_fraction": val_fraction if split_kind == "seeded" else None,
        "split": split_kind,
        "split_seed": seed if split_kind == "seeded" else None,
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


def _unreadable(entry: _Entry, exc: Exception, keep: np.ndarray, skipped: list[dict], n_candidates: int) -> None:
    keep[entry.row] = False
    skipped.append({"file": entry.name, "reason": _unreadable_reason(exc)})
    _check_skipped(skipped, n_candidates)


def _check_classes_present(ok: list[_Entry], classes: list[str], split_kind: str) -> None:
    present = Counter(e.cls for e in ok)
    for name in classes:
        if not present[name]:
            raise IngestError(f"class folder {name!r} has no readable images")
    if split_kind == "provided":
        _check_provided_classes(ok)
