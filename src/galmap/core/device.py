"""Where the PyTorch code runs: ``cuda`` when present, else the CPU."""

from __future__ import annotations

import torch


def pick_device(name: str | None = "auto") -> torch.device:
    """The device ``name`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``...); ``"auto"`` or None: ``cuda`` when available.

    Asking for ``cuda`` on a machine without it is an error that says so, not a crash later.
    """
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was requested but no CUDA device is available (use 'auto' or 'cpu')")
    return device
