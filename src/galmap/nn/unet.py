"""A small U-Net for image-to-image networks (super-resolution, ugriz -> Hα, diffusion denoisers).

``UNet(in_channels, out_channels, channels)`` has one residual block per level
(two 3x3 convolutions, group normalisation, SiLU), a stride-2 convolution between
levels, nearest-neighbour upsampling + a 3x3 convolution on the way up, and skip
connections that concatenate the encoder's features. With ``time_embedding`` the
network also takes a diffusion time ``t`` in [0, 1] (sinusoidal features and a small
MLP, added to every block): the denoiser of :mod:`galmap.nn.diffusion`. Without it,
it is a plain regression network.

Any input size works: the input is zero-padded to a multiple of ``2**(levels - 1)``
pixels and the output is cropped back, so a 42-pixel SDSS stamp goes through a
three-level network unchanged in shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _groups(channels: int) -> int:
    """Group-norm groups: 8 when they divide ``channels``, else the largest divisor up to 8."""
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features (N, dim) of diffusion times ``t`` in [0, 1] (N,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    arg = 1000.0 * t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU, a residual path, and an optional time shift."""

    def __init__(self, c_in: int, c_out: int, t_dim: int = 0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.time = nn.Linear(t_dim, c_out) if t_dim else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time is not None and temb is not None:
            h = h + self.time(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """Image-to-image U-Net (see the module docstring).

    Parameters
    ----------
    in_channels : input planes (e.g. the noisy target plus the conditioning bands).
    out_channels : output planes.
    channels : features per level, e.g. ``[16, 32, 64]`` (three levels: /1, /2, /4 resolution).
    time_embedding : take a diffusion time ``t`` (a denoiser) or not (a regression network).
    """

    def __init__(
        self, in_channels: int, out_channels: int, channels: Sequence[int], time_embedding: bool = False
    ) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        if not chans:
            raise ValueError("UNet: channels must name at least one level")
        self.levels = len(chans)
        self.t_dim = 4 * chans[0] if time_embedding else 0
        if time_embedding:
            self.time_mlp = nn.Sequential(nn.Linear(chans[0], self.t_dim), nn.SiLU(), nn.Linear(self.t_dim, self.t_dim))
        self.stem = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock(c, c, self.t_dim) for c in chans)
        self.pool = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chans[:-1], chans[1:], strict=True)
        )
        self.mid = ResBlock(chans[-1], chans[-1], self.t_dim)
        self.up_conv = nn.ModuleList(nn.Conv2d(b, a, 3, padding=1) for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.up = nn.ModuleList(ResBlock(2 * a, a, self.t_dim) for a in chans[:-1])
        self.head = nn.Sequential(
            nn.GroupNorm(_groups(chans[0]), chans[0]), nn.SiLU(), nn.Conv2d(chans[0], out_channels, 1)
        )
        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": chans,
            "time_embedding": time_embedding,
        }

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Output (N, out_channels, H, W) of input (N, in_channels, H, W) and, for a denoiser, times ``t`` (N,)."""
        h0, w0 = x.shape[-2:]
        m = 2 ** (self.levels - 1)
        ph, pw = (-h0) % m, (-w0) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        temb = None
        if self.t_dim:
            if t is None:
                raise ValueError("UNet: this network is a denoiser and needs the diffusion time t")
            temb = self.time_mlp(time_features(t, self.config["channels"][0]))
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, temb)
            if i < self.levels - 1:
                skips.append(h)
                h = self.pool[i](h)
        h = self.mid(h, temb)
        for i in reversed(range(self.levels - 1)):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = self.up_conv[i](h)
            h = self.up[i](torch.cat([h, skips[i]], dim=1), temb)
        return self.head(h)[..., :h0, :w0]


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
