"""The shared training loop: metrics read once per epoch, the per-batch switch, bf16 off on the CPU."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from galmap.latent.vae import ConvVAE, make_step
from galmap.nn.training import TrainSettings, _EpochMeans, split_batches, train

# columns of the history that are measured (wall time), not computed
TIMING = ["seconds", "images_per_s"]


def _run(sync: bool, bf16: bool = False, epochs: int = 3):
    """A tiny VAE trained on random images (batches of 7 from 40: the last one is short)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 3, 16, 16, generator=g)
    w = torch.rand(40, 3, 16, 16, generator=g)
    split = np.array(["train"] * 33 + ["val"] * 7)
    torch.manual_seed(0)
    model = ConvVAE(3, 16, 4, [8, 16])
    settings = TrainSettings(
        max_epochs=epochs, patience=epochs, learning_rate=3e-3, seed=5, sync_every_batch=sync, bf16=bf16
    )
    state, history = train(
        model,
        make_step(1.0, 1),
        split_batches(split, "train", 7, 5, True, x, w),
        lambda: split_batches(split, "val", 7, 5, False, x, w)(0),
        settings,
        progress=False,
    )
    return state, history


def test_per_epoch_numbers_are_bit_identical_with_and_without_the_per_batch_sync():
    """Both paths add float64(metric) * batch size in batch order, on the device or on the host: the same
    IEEE operations, so every per-epoch number is equal bit for bit (not merely within float32 rounding)."""
    state_a, hist_a = _run(sync=False)
    state_b, hist_b = _run(sync=True)
    assert len(hist_a) == 3 and {"train_loss", "train_chi2_nu", "train_kl", "val_loss"} <= set(hist_a)
    pd.testing.assert_frame_equal(hist_a.drop(columns=TIMING), hist_b.drop(columns=TIMING), check_exact=True)
    for name, a in state_a.items():
        assert torch.equal(a, state_b[name]), name


def test_the_default_path_reads_the_metrics_once_per_epoch(monkeypatch):
    """No ``.item()`` or ``float(tensor)`` per batch by default; one per metric and batch with the switch.

    Counted where the training loop calls them (Adam reads its step counts, CPU tensors even on CUDA, by ``item``).
    """
    calls = {"item": 0, "float": 0}
    item, to_float = torch.Tensor.item, torch.Tensor.__float__

    def counted_item(self):
        calls["item"] += sys._getframe(1).f_globals["__name__"] == "galmap.nn.training"
        return item(self)

    def counted_float(self):
        calls["float"] += sys._getframe(1).f_globals["__name__"] == "galmap.nn.training"
        return to_float(self)

    monkeypatch.setattr(torch.Tensor, "item", counted_item)
    monkeypatch.setattr(torch.Tensor, "__float__", counted_float)
    _run(sync=False, epochs=2)
    assert calls == {"item": 0, "float": 0}
    _run(sync=True, epochs=2)
    batches = 2 * (5 + 1)  # per epoch: 5 training batches of 33 galaxies, 1 validation batch of 7
    assert calls == {"item": 3 * batches, "float": 0}  # loss, chi2_nu, kl


def test_epoch_means_are_weighted_by_batch_size_as_before():
    """The means equal the old loop's: the sum of float(metric) * batch size over the batches, divided by the count."""
    values = [torch.tensor(v, dtype=torch.float32) for v in (0.1, 0.7, 1e-3, 123.456)]
    sizes = [7, 7, 7, 3]
    old = sum(float(v) * n for v, n in zip(values, sizes, strict=True)) / sum(sizes)
    for sync in (False, True):
        means = _EpochMeans(sync)
        for v, n in zip(values, sizes, strict=True):
            means.add({"loss": v}, n)
        assert means.means() == {"loss": old}
    assert _EpochMeans(False).means() == {}


def test_bf16_is_off_on_the_cpu(caplog):
    """bf16 asks for autocast on CUDA only: on the CPU the numbers are those of float32, and the log says so."""
    with caplog.at_level(logging.INFO, logger="galmap"):
        _, hist_bf16 = _run(sync=False, bf16=True, epochs=1)
    _, hist = _run(sync=False, epochs=1)
    pd.testing.assert_frame_equal(hist_bf16.drop(columns=TIMING), hist.drop(columns=TIMING), check_exact=True)
    assert "bf16 autocast is for CUDA" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_trains_on_cuda():
    torch.manual_seed(0)
    model = ConvVAE(3, 16, 4, [8, 16]).cuda()
    x, w = torch.randn(16, 3, 16, 16, device="cuda"), torch.ones(16, 3, 16, 16, device="cuda")
    split = np.array(["train"] * 12 + ["val"] * 4)
    settings = TrainSettings(max_epochs=2, patience=2, learning_rate=3e-3, seed=5, bf16=True)
    _, history = train(
        model,
        make_step(1.0, 1),
        split_batches(split, "train", 4, 5, True, x, w),
        lambda: split_batches(split, "val", 4, 5, False, x, w)(0),
        settings,
        progress=False,
    )
    assert np.isfinite(history["train_loss"]).all()
