"""The symmetries of a galaxy stamp: rotations by multiples of 90 degrees and mirror images.

A galaxy's morphology, its Hα map and its image in another survey do not depend on
how it lies on the sky, and a stamp centred on the galaxy keeps its centre under
these 8 transformations (the dihedral group of the square), so they augment
training data without resampling pixels. Tensors are (N, C, H, W) with H = W.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of the batch rotated by a random multiple of 90 degrees and flipped at random.

    All channels of an image share its transformation: to transform images and
    their targets or weights alike, concatenate them along the channels first.
    """
    n = x.shape[0]
    rot = torch.randint(0, 4, (n,), generator=generator, device=x.device)
    flip = torch.randint(0, 2, (n,), generator=generator, device=x.device).bool()
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    out = x.clone()
    for k in (1, 2, 3):
        sel = rot == k
        if sel.any():
            out[sel] = torch.rot90(x[sel], k, dims=(-2, -1))
    return out


def dihedral_views(x: torch.Tensor) -> Iterator[torch.Tensor]:
    """The 8 rotations by multiples of 90 degrees and their mirror images of a batch of images."""
    for flip in (False, True):
        y = x.flip(-1) if flip else x
        for k in range(4):
            yield torch.rot90(y, k, dims=(-2, -1))
