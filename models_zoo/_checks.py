"""Small torch-free checks shared by the family modules' `check()` and `validate_for()`."""

from __future__ import annotations

from models_zoo.kinds import KINDS, kind_of

# How messages name each kind ("does not accept text classification datasets"): the registry's noun.
KIND_NAMES = {name: kind.noun for name, kind in KINDS.items()}


def kind_error(info: dict, kinds: tuple[str, ...], label: str) -> dict[str, str]:
    """{"architecture": message} when the dataset's kind is not one of `kinds`."""
    kind = kind_of(info)
    if kind in kinds:
        return {}
    accepted = ", ".join(KIND_NAMES.get(k, k) for k in kinds)
    return {"architecture": f"{label} does not accept {KIND_NAMES.get(kind, kind)} datasets (it takes: {accepted})"}


def heads_error(heads: int, width: int) -> dict[str, str]:
    if width % heads == 0:
        return {}
    good = [h for h in range(1, min(width, 64) + 1) if width % h == 0]
    return {"heads": f"must divide the width ({width}); {width} has divisors {', '.join(map(str, good[:8]))}"}


def odd_kernel_error(kernel_size: int) -> dict[str, str]:
    if kernel_size % 2 == 1:
        return {}
    return {"kernel_size": "must be odd (the padding keeps the length/size unchanged only for odd kernels)"}

