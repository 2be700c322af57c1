"""Stamp symmetries for augmentation: the 8 rotations/flips, one per image, alike on every channel."""

from __future__ import annotations

import torch

from galmap.nn.augment import dihedral_views, random_dihedral
from galmap.nn.image2image import augment_pairs


def _stamps(n: int = 16, size: int = 9, channels: int = 2) -> torch.Tensor:
    """Images without any symmetry: each of the 8 transformations gives a different image."""
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(3))


def test_dihedral_views_are_the_eight_distinct_symmetries():
    x = _stamps(1)
    views = list(dihedral_views(x))
    assert len(views) == 8
    assert all(not torch.equal(a, b) for i, a in enumerate(views) for b in views[i + 1 :])
    # a group: a view of a view is again a view (here: rotating each by 90 degrees permutes them)
    rotated = [torch.rot90(v, 1, dims=(-2, -1)) for v in views]
    assert all(any(torch.equal(r, v) for v in views) for r in rotated)


def test_random_dihedral_draws_a_symmetry_per_image_from_the_generator():
    x = _stamps(64)
    out = random_dihedral(x, torch.Generator().manual_seed(5))
    chosen = []
    for i in range(len(x)):
        matches = [k for k, v in enumerate(dihedral_views(x[i : i + 1])) if torch.equal(v, out[i : i + 1])]
        assert len(matches) == 1  # every output image is exactly one of its input's 8 views
        chosen.append(matches[0])
    assert len(set(chosen)) == 8  # per image, not one draw for the batch (64 draws: each view appears)
    assert torch.equal(out, random_dihedral(x, torch.Generator().manual_seed(5)))  # seeded
    assert not torch.equal(out, random_dihedral(x, torch.Generator().manual_seed(6)))


def test_halpha_pairs_are_transformed_alike():
    """Broad bands, Hα map and weights of a galaxy share its transformation (else the U-Net learns noise)."""
    x = _stamps(32, channels=5)
    y = (x[:, :1] - 2 * x[:, 3:4]).clone()  # the 'map' is a pixelwise function of the bands
    w = x[:, 2:3].abs().clone()
    xa, ya, wa = augment_pairs(x, y, w, torch.Generator().manual_seed(1))
    assert xa.shape == x.shape and ya.shape == y.shape and wa.shape == w.shape
    assert torch.equal(ya, xa[:, :1] - 2 * xa[:, 3:4]) and torch.equal(wa, xa[:, 2:3].abs())
    assert not torch.equal(xa, x)
