"""Safe reading of untrusted ZIP archives (no Django, no torch): one home for the checks that
image ingest (workers.datasets.images), model ZIPs (workers.hf.modelzip) and the web tier's
check of an uploaded model ZIP (webapp.hub.services, before it queues the extraction) rely on.
Standard library only: a contracts module.

Every check refuses the whole archive with an IngestError naming the entry:
    the entry count, read from the end-of-central-directory record before zipfile parses the
    directory (`open_zip`), and again after (`check_entry_count`);
    entry names: absolute paths, drive letters, backslashes, `..` components, control characters
    (`name_parts`: zip slip); symlinks and other non-regular entries, duplicate names, encrypted
    entries (`iter_members`); entries sharing bytes of the archive (`check_overlaps`);
    declared sizes per entry, per ratio and in total (`check_declared_size`, `check_declared_total`),
    then the bytes actually produced while streaming (`CountedStream` with a `Budget`: headers can lie).
`limits` is a dict with max_entries, max_entry_bytes, max_total_bytes, max_ratio, ratio_min_bytes;
each caller has its own defaults.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from models_zoo.contracts import IngestError

JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})
JUNK_DIRS = frozenset({"__macosx"})
CENTRAL_DIRECTORY_BYTES_PER_ENTRY = 1024  # a central directory larger than max_entries × this is refused
READ_CHUNK = 1 << 20

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def size_text(n: int) -> str:
    """A byte count in binary units, one decimal: 9.8 KiB, 4.0 GiB, 900 bytes."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


@dataclass(slots=True)
class Member:
    """One archive entry being read: its ZipInfo and the name messages use."""

    info: zipfile.ZipInfo
    name: str


class Budget:
    """Uncompressed bytes produced so far in one pass, against the total cap."""

    def __init__(self, limit: int, what: str = "the files in the ZIP"):
        self.limit = limit
        self.what = what  # how the message names what is being decompressed
        self.used = 0

    def add(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise IngestError(f"{self.what} expand to more than {size_text(self.limit)}; "
                              f"that is the limit (zip bomb?)")


class CountedStream:
    """A read/seek/tell view of one archive entry that counts the bytes it actually produces
    (the furthest offset reached) and stops at the per-entry, ratio and total caps. Errors of the
    archive itself (bad CRC, corrupt deflate data) become IngestError: the ZIP is damaged."""

    def __init__(self, raw, entry: Member, budget: Budget, limits: dict):
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
            raise IngestError(f"entry {name!r} expands to more than {size_text(self.limits['max_entry_bytes'])}; "
                              f"that is the limit per file (zip bomb?)")
        packed = max(1, self.entry.info.compress_size)
        if pos > self.limits["ratio_min_bytes"] and pos > self.limits["max_ratio"] * packed:
            raise IngestError(f"entry {name!r} expands more than {self.limits['max_ratio']}:1 "
                              f"({size_text(packed)} compressed); refusing it (zip bomb?)")

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


def central_directory_stats(f) -> tuple[int, int] | None:
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


def open_zip(f, limits: dict) -> zipfile.ZipFile:
    stats = central_directory_stats(f)
    if stats is not None:
        entries, cd_size = stats
        if entries > limits["max_entries"]:
            raise IngestError(f"the ZIP has {entries} entries; at most {limits['max_entries']} are allowed")
        if cd_size > limits["max_entries"] * CENTRAL_DIRECTORY_BYTES_PER_ENTRY:
            raise IngestError(f"the ZIP's directory is {size_text(cd_size)}, too large for at most "
                              f"{limits['max_entries']} entries")
    f.seek(0)
    try:
        return zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error,
            NotImplementedError) as exc:
        raise IngestError(f"not a valid ZIP archive ({exc})") from None
    except OSError as exc:
        raise IngestError(f"not a valid ZIP archive ({exc.strerror or exc})") from None


def name_parts(name: str) -> list[str]:
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


def is_junk(parts: list[str]) -> bool:
    return (any(p.startswith(".") or p.lower() in JUNK_DIRS for p in parts)
            or parts[-1].lower() in JUNK_FILES)


def check_overlaps(infos: list[zipfile.ZipInfo], start_dir: int | None) -> None:
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


def check_entry_count(infos: list[zipfile.ZipInfo], limits: dict) -> None:
    if len(infos) > limits["max_entries"]:
        raise IngestError(f"the ZIP has {len(infos)} entries; at most {limits['max_entries']} are allowed")
    if not infos:
        raise IngestError("the ZIP archive is empty")


def iter_members(infos: list[zipfile.ZipInfo]) -> Iterator[tuple[zipfile.ZipInfo, list[str], bool]]:
    """(info, path components, is a directory) of each entry that is not junk (dotfiles,
    __MACOSX/, Thumbs.db, desktop.ini), after the checks every entry must pass, junk included.
    A generator, so that a caller's own per-entry checks interleave with these in archive order
    (the first bad entry is the one reported)."""
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        parts = name_parts(info.orig_filename)  # the raw name: zipfile cuts it at a NUL byte
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
        if not is_junk(parts):
            yield info, parts, is_dir


def check_declared_size(info: zipfile.ZipInfo, name: str, limits: dict) -> None:
    """The entry's declared uncompressed size against the per-entry and ratio caps: a fast
    refusal before anything is decompressed (CountedStream still counts what really comes out)."""
    if info.file_size > limits["max_entry_bytes"]:
        raise IngestError(f"entry {name!r} is {size_text(info.file_size)} uncompressed; at most "
                          f"{size_text(limits['max_entry_bytes'])} per file")
    packed = max(1, info.compress_size)
    if info.file_size > limits["ratio_min_bytes"] and info.file_size > limits["max_ratio"] * packed:
        raise IngestError(f"entry {name!r} expands {info.file_size // packed}:1 ({size_text(packed)} → "
                          f"{size_text(info.file_size)}); files above {size_text(limits['ratio_min_bytes'])} may "
                          f"expand at most {limits['max_ratio']}:1 (zip bomb?)")


def check_declared_total(total: int, limits: dict, what: str = "the files in the ZIP", packed: int | None = None) -> None:
    """The archive as a whole: its total uncompressed size, and — given `packed`, the sum of
    the entries' compressed sizes — its total expansion ratio. Many small entries that each stay
    under the per-entry ratio rule (1,000 × 1 MiB of zeros) are refused here."""
    if total > limits["max_total_bytes"]:
        raise IngestError(f"{what} add up to {size_text(total)} uncompressed; at most "
                          f"{size_text(limits['max_total_bytes'])}")
    if packed is not None and total > limits["ratio_min_bytes"] and total > limits["max_ratio"] * max(1, packed):
        raise IngestError(f"{what} expand {total // max(1, packed)}:1 in all ({size_text(packed)} → "
                          f"{size_text(total)}); an archive may expand at most {limits['max_ratio']}:1 "
                          f"(zip bomb?)")


def read_entry(zf: zipfile.ZipFile, entry: Member, budget: Budget, limits: dict) -> bytes:
    """The whole entry, counted by CountedStream (one entry's bytes at a time are held)."""
    try:
        with zf.open(entry.info) as raw:
            return CountedStream(raw, entry, budget, limits).read()
    except zipfile.BadZipFile as exc:
        raise IngestError(f"the ZIP is damaged: entry {entry.name!r} ({exc})") from None


# -- output -------------------------------------------------------------------------------------


# --- Model ZIPs: a `save_pretrained` folder, zipped --------------------------------------------

MODEL_ZIP_LIMITS = {
    "max_entries": 10_000,
    "max_entry_bytes": 32 * 1024**3,
    "max_total_bytes": 64 * 1024**3,
    "max_ratio": 100,
    "ratio_min_bytes": 1024**2,
}
class ModelZipError(ValueError):
    """The ZIP is not an acceptable model; the message is for the user."""


def scan_model_zip(zf, limits: dict) -> tuple[list[tuple[Member, list[str]]], list[str]]:
    """The files of a model ZIP with their path components, and the folder inside it that holds
    config.json — from the central directory alone, nothing extracted. The web tier runs it on
    an upload before queueing the extraction (so a bad ZIP is refused in the request); the
    extraction runs it again on the same bytes. Raises ModelZipError."""
    try:
        infos = zf.infolist()
        check_entry_count(infos, limits)
        files = []
        declared = packed = 0
        for info, parts, is_dir in iter_members(infos):
            if is_dir:
                continue
            check_declared_size(info, info.filename, limits)
            declared += info.file_size
            packed += info.compress_size
            files.append((Member(info, info.filename), parts))
        check_declared_total(declared, limits, "the files in the ZIP", packed=packed)
        check_overlaps(infos, getattr(zf, "start_dir", None))
    except IngestError as exc:  # worded for the user already
        raise ModelZipError(str(exc)) from None
    if not files:
        raise ModelZipError("the ZIP holds no files")
    root = _model_root(files)
    inside = [parts[len(root):] for _, parts in files if parts[: len(root)] == root]
    if not any(len(rel) == 1 and rel[0].lower().endswith(".safetensors") for rel in inside):
        raise ModelZipError(NO_WEIGHTS)
    return files, root


NO_WEIGHTS = ("the ZIP has no safetensors weights (model.safetensors); save the model with "
              "save_pretrained(folder, safe_serialization=True) and zip that folder")


def check_model_zip(path, limits: dict | None = None) -> int:
    """`scan_model_zip` on a file: what the upload request checks; the files' declared
    uncompressed total (what extraction will write, for the quota). Raises ModelZipError."""
    limits = {**MODEL_ZIP_LIMITS, **(limits or {})}
    try:
        with open(path, "rb") as f, open_zip(f, limits) as zf:
            files, _root = scan_model_zip(zf, limits)
    except IngestError as exc:
        raise ModelZipError(str(exc)) from None
    return sum(member.info.file_size for member, _parts in files)


def _model_root(entries: list[tuple[Member, list[str]]]) -> list[str]:
    """The folder inside the ZIP that holds config.json: the top level or one folder down."""
    configs = sorted((parts[:-1] for _, parts in entries if parts[-1] == "config.json"), key=len)
    if not configs:
        raise ModelZipError("the ZIP has no config.json: zip the folder that save_pretrained wrote")
    root = configs[0]
    if len(root) > 1:
        raise ModelZipError("config.json must be at the top of the ZIP or in one folder at the top")
    return root
