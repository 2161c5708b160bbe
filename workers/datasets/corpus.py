"""Language-modelling corpus ingest: a UTF-8 plain-text file → token-id streams (pure Python +
numpy, no Django, no torch).

Input
    UTF-8 text (a byte-order mark is dropped; CRLF line ends become LF). Anything else is refused
    with the place it fails: a UTF-16/UTF-32 byte-order mark is named as such; an invalid UTF-8
    sequence is reported with its byte value, line, column and byte offset; NUL bytes (binary
    files) likewise. The file is read in READ_CHUNK pieces, twice (count, then encode): memory
    does not grow with the file.

Tokens
    level "char": one token per Unicode character; the vocabulary is every character of the
    file, in code-point order (vocab.json; at most MAX_CHAR_VOCAB, so ids fit uint16).
    level "byte": one token per UTF-8 byte, ids 0..255, no vocab.json (vocab_size 256).

Split
    The last val_fraction of the tokens is the validation stream (contiguous: a random cut
    through running text would leak context across the split).

Output (written to `<out_dir>.partial`, renamed into place; on any failure it is removed)
    train.npy val.npy   uint16 (char) / uint8 (byte) token ids     vocab.json (char)   info.json
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from workers.datasets.common import IngestError, atomic_dir, check_val_fraction

READ_CHUNK = 1 << 20
MAX_CHAR_VOCAB = 65_535
MIN_TOKENS = 100
PREVIEW_CHARS = 2_000
TOP_TOKENS = 30
BOMS = ((b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"), (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
        (b"\xff\xfe", "UTF-16 (little-endian)"), (b"\xfe\xff", "UTF-16 (big-endian)"))


def _guess(raw: bytes) -> str:
    """A hint about what the bytes around a decoding error may be."""
    try:
        raw.decode("cp1252")
        return " (it may be Windows-1252 / Latin-1)"
    except UnicodeDecodeError:
        return ""


def _text_chunks(path: Path) -> Iterator[str]:
    """The file's text, decoded and normalised (no BOM, LF line ends), in pieces."""
    offset = 0  # file offset of the first byte of `pending`
    newlines = 0  # line breaks before `pending`
    line_start = 0  # file offset where the current line starts
    pending = b""
    carry_cr = False
    first = True
    with open(path, "rb") as f:
        while True:
            block = f.read(READ_CHUNK)
            at_eof = not block
            data = pending + block
            if first:
                for bom, name in BOMS:
                    if data.startswith(bom):
                        raise IngestError(f"the file is {name} (it starts with that byte-order mark), not UTF-8; "
                                          f"save it as UTF-8")
                if data.startswith(b"\xef\xbb\xbf"):
                    data = data[3:]
                    offset = 3
                    line_start = 3
                first = False
            if not data:
                break
            nul = data.find(b"\x00")
            part = data if nul < 0 else data[:nul]
            try:
                text = part.decode("utf-8")
                usable = len(part)
            except UnicodeDecodeError as exc:
                if nul < 0 and exc.reason == "unexpected end of data" and exc.end == len(data) and not at_eof:
                    usable = exc.start  # a character cut by the block boundary: finish it next time
                    text = data[:usable].decode("utf-8")
                else:
                    bad = exc.start
                    before = data[:bad]
                    line = newlines + before.count(b"\n") + 1
                    last_nl = before.rfind(b"\n")
                    col_start = offset + last_nl + 1 if last_nl >= 0 else line_start
                    raise IngestError(
                        f"not valid UTF-8: byte 0x{data[bad]:02x} at line {line}, column "
                        f"{offset + bad - col_start + 1} (byte offset {offset + bad}) cannot be decoded as "
                        f"UTF-8{_guess(data[max(0, bad - 20) : bad + 20])}; save the file as UTF-8"
                    ) from None
            if nul >= 0:
                line = newlines + data[:nul].count(b"\n") + 1
                raise IngestError(f"line {line} (byte offset {offset + nul}): contains a NUL byte; "
                                  f"this looks like a binary file, not text")
            consumed = data[:usable]
            newlines += consumed.count(b"\n")
            last_nl = consumed.rfind(b"\n")
            if last_nl >= 0:
                line_start = offset + last_nl + 1
            offset += usable
            pending = data[usable:]
            if carry_cr:
                text = "\r" + text
                carry_cr = False
            if text.endswith("\r") and not at_eof:
                text, carry_cr = text[:-1], True
            text = text.replace("\r\n", "\n")
            if text:
                yield text
            if at_eof:
                break
        if carry_cr:
            yield "\r"


class _NpyWriter:
    """A 1-D .npy of known length, written sequentially (bounded memory)."""

    def __init__(self, path: Path, n: int, dtype):
        self.f = open(path, "wb")
        self.dtype = np.dtype(dtype)
        np.lib.format.write_array_header_1_0(
            self.f, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (n,)})
        self.n, self.written = n, 0

    def write(self, arr: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(arr, dtype=self.dtype).tobytes())
        self.written += len(arr)

    def close(self) -> None:
        self.f.close()
        if self.written != self.n:
            raise RuntimeError(f"wrote {self.written} tokens, expected {self.n}")


def ingest_corpus(source: Path, out_dir: Path, *, level: str = "char", val_fraction: float = 0.1) -> dict:
    """Validate `source` and write the cache into `out_dir` (which must not exist). Returns info."""
    source = Path(source)
    if level not in ("char", "byte"):
        raise IngestError(f"level must be 'char' or 'byte', not {level!r}")
    val_fraction = check_val_fraction(val_fraction)
    if source.stat().st_size == 0:
        raise IngestError("the file is empty")

    # Pass 1: validate, count, collect the alphabet.
    n_chars = n_bytes = n_lines = 0
    alphabet: set[str] = set()
    preview = ""
    only_space = True
    last = ""
    for text in _text_chunks(source):
        last = text[-1]
        n_chars += len(text)
        n_bytes += len(text.encode("utf-8"))
        n_lines += text.count("\n")
        if level == "char":
            alphabet.update(text)
        if len(preview) < PREVIEW_CHARS:
            preview += text[: PREVIEW_CHARS - len(preview)]
        if only_space and text.strip():
            only_space = False
    if n_chars == 0 or only_space:
        raise IngestError("the file holds no text (only whitespace)")
    total = n_chars if level == "char" else n_bytes
    if total < MIN_TOKENS:
        raise IngestError(f"the text is too short for language modelling: {total} "
                          f"{'characters' if level == 'char' else 'bytes'}; need at least {MIN_TOKENS}")
    if level == "char":
        if len(alphabet) > MAX_CHAR_VOCAB:
            raise IngestError(f"{len(alphabet)} distinct characters; at most {MAX_CHAR_VOCAB} at character level "
                              f"(use byte level)")
        vocab = sorted(alphabet)
        code_points = np.asarray([ord(c) for c in vocab], dtype=np.uint32)
        dtype = np.uint16
    else:
        vocab = None
        dtype = np.uint8
    vocab_size = len(vocab) if vocab is not None else 256
    n_val = max(1, round(total * val_fraction))
    n_train = total - n_val
    if n_train < 1:
        raise IngestError("too little text to split into training and validation")

    counts = np.zeros(vocab_size, dtype=np.int64)
    with atomic_dir(out_dir) as tmp:
        train = _NpyWriter(tmp / "train.npy", n_train, dtype)
        val = _NpyWriter(tmp / "val.npy", n_val, dtype)
        try:
            done = 0
            for text in _text_chunks(source):  # pass 2: encode
                if vocab is not None:
                    cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
                    ids = np.searchsorted(code_points, cps)
                else:
                    ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
                counts += np.bincount(ids, minlength=vocab_size)
                cut = max(0, min(len(ids), n_train - done))
                if cut:
                    train.write(ids[:cut])
                if cut < len(ids):
                    val.write(ids[cut:])
                done += len(ids)
        finally:
            train.f.close()
            val.f.close()
        train.close()
        val.close()
        if vocab is not None:
            (tmp / "vocab.json").write_text(json.dumps(vocab))
        top = np.argsort(-counts, kind="stable")[:TOP_TOKENS]
        info = {
            "kind": "corpus",
            "task": "lm",
            "level": level,
            "vocab_size": vocab_size,
            "num_outputs": vocab_size,
            "input_shape": [],  # token ids of any length up to the model's block size
            "tokenizer": {"type": level, "encoding": "utf-8", "newlines": "LF"},
            "num_rows": n_chars,
            "num_chars": n_chars,
            "num_bytes": n_bytes,
            "num_lines": n_lines + (last != "\n"),
            "num_tokens": total,
            "num_train_tokens": n_train,
            "num_val_tokens": n_val,
            "val_fraction": val_fraction,
            "split": "tail",
            "token_counts": {_token_name(int(i), vocab): int(counts[i]) for i in top if counts[i]},
            "preview": {"text": preview},
        }
        (tmp / "info.json").write_text(json.dumps(info))
    return info


def _token_name(i: int, vocab: list[str] | None) -> str:
    if vocab is None and not (32 <= i < 127 or i in (9, 10, 13)):
        return f"0x{i:02x}"
    c = chr(i) if vocab is None else vocab[i]
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "space"}.get(c, c)
