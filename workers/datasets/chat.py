"""Instruction / chat ingest: JSON Lines of conversations → normalised conversation files (pure
Python, no Django, no torch).

Input
    UTF-8 JSON Lines, one conversation per line, in either form:
        {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}
        {"prompt": "...", "response": "..."}            (optional "system": "...")
    Every line is checked, and the first problem is reported with its line number: not JSON, not
    an object, neither form, a role that is not system / user / assistant, a content that is not
    a non-empty string, a system message after the first turn, no user message before the first
    assistant message, no assistant message at all. Blank lines are skipped.

Split
    Seeded shuffle of the conversations: the last val_fraction (at least one) is validation.

Output (written to `<out_dir>.partial`, renamed into place; on any failure it is removed)
    train.jsonl val.jsonl   one {"messages": [...]} per line, in the input's form normalised
    info.json               counts, roles, lengths, a preview of the first conversations
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from workers.datasets.common import IngestError, atomic_dir, check_val_fraction
from workers.datasets.tabular import _decoded_lines, human_size

ROLES = ("system", "user", "assistant")
MAX_LINE_BYTES = 1 << 20
MAX_CONVERSATIONS = 1_000_000
MIN_CONVERSATIONS = 2
PREVIEW_CONVERSATIONS = 5
PREVIEW_CHARS = 500
FORMAT_HELP = ('each line must be {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", '
               '"content": "..."}]} or {"prompt": "...", "response": "..."}')


def _text(value, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise IngestError(f"{where}: {what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise IngestError(f"{where}: {what} is empty")
    return value


def conversation(obj, where: str) -> list[dict]:
    """One line's conversation as a list of {"role", "content"}, or IngestError saying why not."""
    if not isinstance(obj, dict):
        raise IngestError(f"{where}: expected a JSON object, got {type(obj).__name__}; {FORMAT_HELP}")
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise IngestError(f"{where}: \"messages\" must be a non-empty list of {{\"role\", \"content\"}} objects")
        out = []
        for i, m in enumerate(messages, start=1):
            at = f"{where}, message {i}"
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise IngestError(f"{at}: expected an object with \"role\" and \"content\"")
            if m["role"] not in ROLES:
                raise IngestError(f"{at}: role {str(m['role'])[:40]!r} is not one of {', '.join(ROLES)}")
            out.append({"role": m["role"], "content": _text(m["content"], at, "the content")})
    elif "prompt" in obj and "response" in obj:
        out = [{"role": "system", "content": _text(obj["system"], where, '"system"')}] if obj.get("system") else []
        out += [{"role": "user", "content": _text(obj["prompt"], where, '"prompt"')},
                {"role": "assistant", "content": _text(obj["response"], where, '"response"')}]
    else:
        raise IngestError(f"{where}: neither \"messages\" nor \"prompt\" and \"response\"; {FORMAT_HELP}")
    roles = [m["role"] for m in out]
    if "system" in roles[1:]:
        raise IngestError(f"{where}: a system message may only come first")
    if "assistant" not in roles:
        raise IngestError(f"{where}: the conversation has no assistant message to learn from")
    if "user" not in roles[: roles.index("assistant")]:
        raise IngestError(f"{where}: the first assistant message must follow a user message")
    return out


def read_conversations(path: Path) -> list[list[dict]]:
    conversations = []
    if path.stat().st_size == 0:
        raise IngestError("the file is empty")
    for lineno, line in enumerate(_decoded_lines(path), start=1):
        if not line.strip():
            continue
        if lineno == 1 and line.lstrip("\ufeff").lstrip().startswith("["):
            raise IngestError("line 1: a JSON array; chat data is JSON Lines, one conversation object per line")
        if len(line) > MAX_LINE_BYTES:
            raise IngestError(f"line {lineno}: longer than {human_size(MAX_LINE_BYTES)}, the limit for one conversation")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(f"line {lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
        conversations.append(conversation(obj, f"line {lineno}"))
        if len(conversations) > MAX_CONVERSATIONS:
            raise IngestError(f"line {lineno}: more than {MAX_CONVERSATIONS} conversations")
    if len(conversations) < MIN_CONVERSATIONS:
        raise IngestError(f"{len(conversations)} conversation(s); at least {MIN_CONVERSATIONS} are needed "
                          "(training and validation)")
    return conversations


def ingest_chat(source: Path, out_dir: Path, *, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """Validate `source` and write the cache into `out_dir` (which must not exist). Returns info."""
    val_fraction = check_val_fraction(val_fraction)
    conversations = read_conversations(Path(source))
    n = len(conversations)
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    train_idx, val_idx = sorted(order[: n - n_val].tolist()), sorted(order[n - n_val:].tolist())
    roles = {r: sum(m["role"] == r for c in conversations for m in c) for r in ROLES}
    turns = np.array([sum(m["role"] == "assistant" for m in c) for c in conversations])
    chars = np.array([sum(len(m["content"]) for m in c) for c in conversations])
    info = {
        "kind": "chat",
        "task": "lm",
        "format": "jsonl",
        "num_rows": n,
        "num_train": len(train_idx),
        "num_val": len(val_idx),
        "val_fraction": val_fraction,
        "split_seed": seed,
        "messages": roles,
        "with_system": int(sum(c[0]["role"] == "system" for c in conversations)),
        "assistant_turns": {"min": int(turns.min()), "mean": round(float(turns.mean()), 2), "max": int(turns.max())},
        "length_chars": {"min": int(chars.min()), "mean": round(float(chars.mean()), 1), "max": int(chars.max())},
        "preview": {"conversations": [[{"role": m["role"], "content": m["content"][:PREVIEW_CHARS]} for m in c]
                                      for c in conversations[:PREVIEW_CONVERSATIONS]]},
    }
    with atomic_dir(out_dir) as tmp:
        for name, idx in (("train", train_idx), ("val", val_idx)):
            with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for i in idx:
                    f.write(json.dumps({"messages": conversations[i]}, ensure_ascii=False) + "\n")
        (tmp / "info.json").write_text(json.dumps(info))
    return info


__all__ = ["IngestError", "conversation", "ingest_chat", "read_conversations"]
