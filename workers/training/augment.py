"""Augmentation of image training batches, done on the device the batch is already on.

Random crop with zero padding (zero is the mean colour once a batch is normalised), horizontal
flip, cutout and mixup, applied to training batches only: evaluation, samples and the test split
never pass through here. Every random draw comes from a generator on the batch's device seeded
from (seed, epoch), so a seed gives the same augmented batches and a resumed epoch redraws them
identically, and nothing is read back to the host per step (no syncs). Mixup's λ is drawn on the
host from its own seeded numpy generator: a host number, not a device read.

`plan_for()` turns the job's settings into a Plan. The automatic rule: colour images get a random
crop padded by an eighth of the side (4 px at 32 × 32; none below 16 px) and a horizontal flip;
grayscale images get none, since such sets are usually digits, letters or symbols, centred and
size-normalised, which shifts and mirrors change. Any other choice is the user's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models_zoo.kinds import kind_of


# The automatic rule crops colour images of at least this side: the padding, an eighth of the
# side, is then 2 px or more; a one-pixel shift of a tiny image moves an eighth of it. Grayscale
# sets are left alone by the automatic rule: digits, letters, symbols and scans are usually
# centred and size-normalised, and a mirror changes them (seen: scikit-learn's 8 × 8 digits,
# CNN, 20 epochs, seeds 0-2: 0.955-0.975 validation accuracy with 1-px crops, 0.978-0.983
# without; the LeNet preset on them at 32 × 32 fell from 0.97+ to 0.955 with 4-px crops).
AUTO_CROP_MIN_SIDE = 16


@dataclass(frozen=True)
class Plan:
    pad: int = 0  # random-crop padding in pixels; 0 = no crop
    flip: bool = False
    cutout: int = 0  # side of the square set to the mean colour; 0 = off
    mixup: float = 0.0  # Beta(α, α) for λ; 0 = off

    @property
    def active(self) -> bool:
        return bool(self.pad or self.flip or self.cutout or self.mixup)

    def describe(self) -> str:
        parts = [f"random crop (padding {self.pad} px)"] if self.pad else []
        parts += ["horizontal flip"] * self.flip
        parts += [f"cutout {self.cutout} px"] if self.cutout else []
        parts += [f"mixup α={self.mixup:g}"] if self.mixup else []
        return ", ".join(parts) or "none"


def plan_for(tc, info: dict) -> Plan:
    """The augmentation of a job's training batches (an empty Plan for anything but images)."""
    if kind_of(info) != "image":
        return Plan()
    channels, h, w = (int(v) for v in info["input_shape"][-3:])
    mode = tc.augment
    side = min(h, w)
    if mode == "auto":  # colour photos: crop and flip; grayscale (digits, letters, scans): none
        mode = "off" if channels != 3 else ("crop_flip" if side >= AUTO_CROP_MIN_SIDE else "flip")
    pad = (tc.crop_padding or max(1, round(side / 8))) if mode.startswith("crop") else 0
    return Plan(pad=min(pad, side), flip=mode in ("crop_flip", "flip"), cutout=min(tc.cutout, side),
                mixup=tc.mixup_alpha if info.get("task") == "classification" else 0.0)


class Augmenter:
    """Applies a Plan to normalised NCHW batches; call `start_epoch` before each epoch."""

    def __init__(self, plan: Plan, seed: int, device: torch.device, channels_last: bool = False):
        self.plan, self.seed, self.device = plan, seed, device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.g: torch.Generator | None = None
        self.host: np.random.Generator | None = None

    def start_epoch(self, epoch: int) -> None:
        self.g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + epoch + 17)
        self.host = np.random.default_rng([self.seed, epoch, 17])

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        """(augmented x, mix) where mix is None or (λ, permutation) for the mixup loss."""
        p, g = self.plan, self.g
        n, _, h, w = x.shape
        dev = x.device
        if p.pad:
            k = p.pad
            padded = F.pad(x, (k, k, k, k))  # zeros: the mean colour of normalised images
            dy = torch.randint(0, 2 * k + 1, (n, 1), generator=g, device=dev)
            dx = torch.randint(0, 2 * k + 1, (n, 1), generator=g, device=dev)
            rows = dy + torch.arange(h, device=dev)  # [n, h]
            cols = dx + torch.arange(w, device=dev)  # [n, w]
            batch = torch.arange(n, device=dev)[:, None, None]
            # One gather per batch: [n, h, w, c] picked from the padded NHWC view.
            x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if p.flip:
            flip = torch.rand(n, generator=g, device=dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if p.cutout:
            s = p.cutout
            cy = torch.randint(0, h, (n, 1), generator=g, device=dev) - s // 2
            cx = torch.randint(0, w, (n, 1), generator=g, device=dev) - s // 2
            ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
            in_rows = (ar_h >= cy) & (ar_h < cy + s)  # [n, h]
            in_cols = (ar_w >= cx) & (ar_w < cx + s)  # [n, w]
            x = x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)
        mix = None
        if p.mixup:
            lam = float(self.host.beta(p.mixup, p.mixup))
            perm = torch.randperm(n, generator=g, device=dev)
            x = x * lam + x[perm] * (1.0 - lam)
            mix = (lam, perm)
        return x.contiguous(memory_format=self.memory_format), mix
