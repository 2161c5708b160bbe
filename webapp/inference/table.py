"""What the try form of a table model offers besides its fields: a few validation rows to fill
it in from (with their truth), and each column's typical range, read back from the dataset's
cache (standardised float features, one-hot categories) with the model's own statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models_zoo.contracts import raw_columns

EXAMPLE_ROWS = 5
RANGE_SAMPLE = 20_000  # training rows the percentiles are taken over (the first ones: cheap)


def _layout(info: dict) -> list[tuple[str, list[int], list[str] | None, int | None]]:
    """Per raw column: (name, its feature indices, its categories or None, its indicator's index)."""
    names = list(info["feature_names"])
    categorical = info.get("categorical") or {}
    indicators = {c: spec.get("indicator") for c, spec in ((info.get("missing") or {}).get("columns") or {}).items()}
    out = []
    for column in raw_columns(info):
        cats = categorical.get(column)
        idx = [names.index(f"{column}={v}") for v in cats] if cats else [names.index(column)]
        ind = indicators.get(column)
        out.append((column, idx, cats, names.index(ind) if ind in names else None))
    return out


def _raw(X: np.ndarray, info: dict) -> np.ndarray:
    norm = info["normalization"]
    return X.astype(np.float64) * np.asarray(norm["std"], dtype=np.float64) + np.asarray(norm["mean"], dtype=np.float64)


def _cell(row: np.ndarray, idx: list[int], cats: list[str] | None, ind: int | None) -> str:
    if ind is not None and row[ind] > 0.5:
        return ""  # the ingest imputed this cell: an empty field imputes it again
    if cats:
        return cats[int(np.argmax(row[idx]))]
    return f"{row[idx[0]]:.6g}"


def table_hints(dataset_dir: Path | None, info: dict) -> dict:
    """{"rows": [{"values": {column: text}, "truth": text}], "ranges": {column: text}}; empty
    when the dataset's cache is gone (the model still predicts; the hints need the data)."""
    if dataset_dir is None:
        return {"rows": [], "ranges": {}}
    try:
        X_val = np.load(dataset_dir / "X_val.npy", mmap_mode="r", allow_pickle=False)
        X_train = np.load(dataset_dir / "X_train.npy", mmap_mode="r", allow_pickle=False)
        y_val = np.load(dataset_dir / "y_val.npy", mmap_mode="r", allow_pickle=False)
        layout = _layout(info)
        width = len(info["feature_names"])
        if X_val.ndim != 2 or X_val.shape[1] != width or X_train.shape[1] != width:
            return {"rows": [], "ranges": {}}
    except (OSError, ValueError, KeyError):
        return {"rows": [], "ranges": {}}
    classes = info.get("classes") or []
    rows = []
    val = _raw(np.asarray(X_val[:EXAMPLE_ROWS]), info)
    for i, row in enumerate(val):
        truth = y_val[i]
        if info.get("task") == "classification":
            truth = classes[int(truth)] if int(truth) < len(classes) else str(int(truth))
        else:
            norm = info.get("target_normalization") or {"mean": 0.0, "std": 1.0}
            truth = f"{float(truth) * norm['std'] + norm['mean']:.6g}"
        rows.append({"values": {c: _cell(row, idx, cats, ind) for c, idx, cats, ind in layout}, "truth": str(truth)})
    train = _raw(np.asarray(X_train[:RANGE_SAMPLE]), info)
    ranges = {}
    for column, idx, cats, ind in layout:
        if cats:
            ranges[column] = "one of " + ", ".join(cats[:12]) + (" …" if len(cats) > 12 else "")
            continue
        values = train[:, idx[0]]
        if ind is not None:
            values = values[train[:, ind] < 0.5]
        if values.size:
            lo, mid, hi = np.percentile(values, [5, 50, 95])
            ranges[column] = f"typically {lo:.4g} to {hi:.4g} (median {mid:.4g})"
    return {"rows": rows, "ranges": ranges}
