"""The VAE, its data feed, training loop and image metrics, on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galmap.core.io import write_shard
from galmap.latent.vae import ConvVAE, encode, loader, make_step, train_vae
from galmap.nn.imagemetrics import masked_errors, ssim
from galmap.nn.inputs import ShardStream, assign_split, network_inputs, shard_inputs
from galmap.nn.training import TrainSettings, load_model, save_model, seeded_generator, train
from galmap.preprocess.stamps import preprocess_shard


@pytest.fixture(scope="module")
def vae_params(test_config) -> dict:
    return dict(test_config["vae"]) | {"device": "cpu", "max_epochs": 3}


@pytest.fixture(scope="module")
def shard_paths(rendered, test_config, tmp_path_factory) -> list[str]:
    """The test population's DECaLS images, preprocessed, in two shard files."""
    shard = preprocess_shard(rendered["decals"], test_config["preprocess"])
    root = tmp_path_factory.mktemp("images")
    paths = []
    for k, rows in enumerate((slice(0, 12), slice(12, 24))):
        part = type(shard)(shard.images[rows], shard.ivar[rows], shard.ids[rows], shard.attrs, {})
        paths.append(str(root / f"shard-{k:04d}.h5"))
        write_shard(paths[-1], part)
    return paths


def test_shapes_and_round_trip():
    """Encoder/decoder shapes, including a stamp size that is not a multiple of 2**depth."""
    for size in (48, 28):
        model = ConvVAE(3, size, 5, [8, 16, 16])
        x = torch.randn(4, 3, size, size)
        xhat, mu, logvar = model(x, seeded_generator(0))
        assert xhat.shape == x.shape and mu.shape == (4, 5) and logvar.shape == (4, 5)
        assert model.decode(mu).shape == x.shape


def test_residual_blocks_keep_shapes_and_are_stored():
    model = ConvVAE(3, 48, 5, [8, 16, 16], res_blocks=2)
    x = torch.randn(2, 3, 48, 48)
    xhat, mu, _ = model(x, seeded_generator(0))
    assert xhat.shape == x.shape and mu.shape == (2, 5)
    again = ConvVAE(**model.config())
    again.load_state_dict(model.state_dict())
    assert model.config()["res_blocks"] == 2
    assert sum(p.numel() for p in again.parameters()) > sum(
        p.numel() for p in ConvVAE(3, 48, 5, [8, 16, 16]).parameters()
    )


def test_free_bits_and_augmentation_act_on_training_steps_only():
    """Free bits raise the training loss of a collapsed posterior; augmentation is seeded; validation is plain."""
    torch.manual_seed(0)
    model = ConvVAE(3, 16, 4, [8, 8])
    x = torch.randn(6, 3, 16, 16)
    w = torch.rand(6, 3, 16, 16)
    plain, options = make_step(1.0, 0), make_step(1.0, 0, free_bits=2.0, augment=True)
    with torch.no_grad():
        val_plain = plain(model, (x, w), 1, seeded_generator(1), False)["loss"]
        val_opt = options(model, (x, w), 1, seeded_generator(1), False)["loss"]
        assert float(val_plain) == float(val_opt)
        # the same generator gives the same augmented batch and latent draws
        a = options(model, (x, w), 1, seeded_generator(2), True)["loss"]
        b = options(model, (x, w), 1, seeded_generator(2), True)["loss"]
        assert float(a) == float(b)
        # an untrained encoder's KL per latent is far below 2 nats: free bits count 2 nats for each
        fb = make_step(1.0, 0, free_bits=2.0)(model, (x, w), 1, seeded_generator(3), True)
        no = plain(model, (x, w), 1, seeded_generator(3), True)
        assert float(fb["kl"]) < 4 * 2.0
        assert float(fb["loss"]) > float(no["loss"])
    # augmentation moves the pixels: a lopsided image gives a different loss under another draw
    x2 = torch.zeros(1, 3, 16, 16)
    x2[..., :4, :4] = 3.0
    step = make_step(0.0, 0, augment=True)
    with torch.no_grad():
        losses = {
            round(float(step(model, (x2, torch.ones_like(x2)), 0, seeded_generator(s), True)["loss"]), 6)
            for s in range(8)
        }
    assert len(losses) > 1


def test_network_inputs_mask_nan_and_zero_ivar():
    """A NaN pixel or one with ivar <= 0 gets x = 0 and weight 0; weights follow the asinh derivative."""
    images = np.ones((1, 2, 4, 4), np.float32)
    ivar = np.full_like(images, 4.0)
    images[0, 0, 1, 1] = np.nan
    ivar[0, 1, 2, 2] = 0.0
    x, w = network_inputs(images, ivar, [2.0, 2.0])
    assert np.isfinite(x).all() and x[0, 0, 1, 1] == 0 and w[0, 0, 1, 1] == 0 and w[0, 1, 2, 2] == 0
    # sigma = 0.5 in image units -> on the asinh scale sigma / sqrt(s^2 + image^2)
    assert w[0, 0, 0, 0] == pytest.approx((4.0 + 1.0) * 4.0)
    assert x[0, 0, 0, 0] == pytest.approx(np.arcsinh(0.5))


def test_nan_pixel_does_not_reach_the_loss(rendered, test_config):
    """A NaN in a stamp leaves the loss finite and equal to the loss with that pixel masked."""
    shard = preprocess_shard(rendered["decals"], test_config["preprocess"])
    images, ivar = shard.images[:4].copy(), shard.ivar[:4].copy()
    soft = shard.attrs["norm_softening"]
    x0, w0 = network_inputs(images, ivar, soft)
    images[1, 0, 10, 10] = np.nan
    x1, w1 = network_inputs(images, ivar, soft)
    model = ConvVAE(3, images.shape[-1], 4, [8, 16])
    step = make_step(1.0, 0)
    with torch.no_grad():
        out1 = step(model, (torch.from_numpy(x1), torch.from_numpy(w1)), 1, seeded_generator(3), False)
        w0[1, 0, 10, 10] = 0.0
        x0[1, 0, 10, 10] = 0.0
        out0 = step(model, (torch.from_numpy(x0), torch.from_numpy(w0)), 1, seeded_generator(3), False)
    assert torch.isfinite(out1["loss"])
    assert float(out1["loss"]) == pytest.approx(float(out0["loss"]), rel=1e-6)


def test_splits_are_stable_and_sized():
    ids = [f"g{i}" for i in range(4000)]
    split = assign_split(ids, 1, 0.1, 0.2)
    assert abs((split == "test").mean() - 0.2) < 0.03 and abs((split == "val").mean() - 0.1) < 0.03
    # a galaxy's split depends only on (seed, id)
    assert list(assign_split(ids[100:110], 1, 0.1, 0.2)) == list(split[100:110])
    assert list(assign_split(ids, 2, 0.1, 0.2)) != list(split)


def test_stream_covers_each_galaxy_once_per_epoch(shard_paths, vae_params):
    """Cached and streamed (tiny cache) feeds yield the same galaxies, once each per epoch."""
    load = loader(vae_params, 7)
    n_train = sum(int((load(p).split == "train").sum()) for p in shard_paths)
    for cache_mb in (100.0, 0.01):
        stream = ShardStream(shard_paths, load, "train", 5, seed=3, cache_mb=cache_mb)
        for epoch in (0, 1):
            rows = torch.cat([x.flatten(1) for x, _ in stream.epoch(epoch)])
            assert len(rows) == n_train
            assert len(torch.unique(rows[:, :50], dim=0)) == n_train


def test_ssim_properties():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 3, 32, 32, generator=g)
    valid = torch.ones_like(ref, dtype=torch.bool)
    assert torch.allclose(ssim(ref, ref, valid), torch.ones(2, 3))
    noisy = ref + 0.5 * torch.randn(ref.shape, generator=g)
    s = ssim(ref, noisy, valid)
    assert (s < 0.95).all() and (s > 0).all()
    # a masked blemish in the reference does not count
    blem = ref.clone()
    blem[:, :, 10:14, 10:14] = 50.0
    mask = valid.clone()
    mask[:, :, 10:14, 10:14] = False
    assert torch.allclose(ssim(blem, ref, mask), torch.ones(2, 3))
    errs = masked_errors(ref, ref + 1.0, torch.ones_like(ref))
    assert torch.allclose(errs["mse"], torch.ones(2)) and torch.allclose(errs["chi2_nu"], torch.ones(2))


def test_ssim_matches_scikit_image():
    """With no mask, our SSIM is scikit-image's Gaussian-window SSIM (sigma 1.5, radius 5, valid windows)."""
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    ref = torch.randn(2, 3, 29, 40, generator=g, dtype=torch.float64)
    img = ref + 0.5 * torch.randn(ref.shape, generator=g, dtype=torch.float64)
    ours = ssim(ref, img, torch.ones_like(ref, dtype=torch.bool)).numpy()
    theirs = [
        [
            structural_similarity(
                r.numpy(),
                i.numpy(),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=float(r.max() - r.min()),
            )
            for r, i in zip(rg, ig, strict=True)
        ]
        for rg, ig in zip(ref, img, strict=True)
    ]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_training_lowers_the_loss_and_is_deterministic(shard_paths, vae_params):
    model_a, hist_a, _ = train_vae(shard_paths, vae_params, 4, seed=11, progress=False)
    assert hist_a["train_loss"].iloc[-1] < hist_a["train_loss"].iloc[0]
    assert np.isfinite(hist_a["val_loss"]).all()
    model_b, hist_b, _ = train_vae(shard_paths, vae_params, 4, seed=11, progress=False)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    model_c, _, _ = train_vae(shard_paths, vae_params, 4, seed=12, progress=False)
    assert not torch.equal(model_a.to_latent.weight, model_c.to_latent.weight)


def test_reloaded_checkpoint_gives_the_same_latents(shard_paths, vae_params, tmp_path):
    model, _, meta = train_vae(shard_paths, vae_params, 4, seed=5, progress=False)
    save_model(tmp_path / "model.pt", model, meta)
    again, meta2 = load_model(tmp_path / "model.pt", ConvVAE)
    assert meta2["bands"] == ["g", "r", "z"]
    data = loader(vae_params, 5)(shard_paths[0])
    a = encode(model.eval(), data)
    b = encode(again, data)
    cols = [c for c in a.columns if c.startswith(("mu_", "logvar_"))]
    np.testing.assert_array_equal(a[cols].to_numpy(), b[cols].to_numpy())
    assert a["ssim"].between(-1, 1).all() and (a["chi2_nu"] > 0).all()


def test_a_killed_training_resumes_to_the_same_weights(shard_paths, vae_params, tmp_path):
    """Interrupt after two epochs, rerun with the checkpoint: identical to an uninterrupted run."""
    load = loader(vae_params, 9)
    stream = ShardStream(shard_paths, load, "train", 6, seed=9)
    val = ShardStream(shard_paths, load, "val", 6, seed=9, shuffle=False)
    settings = TrainSettings(max_epochs=4, patience=10, learning_rate=3e-3, seed=9)
    # the configured free bits and augmentation (their random draws must resume too)
    step = make_step(1.0, 1, float(vae_params.get("free_bits", 0.0)), bool(vae_params.get("augment", False)))

    def fresh() -> ConvVAE:
        torch.manual_seed(0)
        return ConvVAE(3, 48, 3, [8, 16], int(vae_params.get("res_blocks", 0)))

    full, hist = train(fresh(), step, stream.epoch, lambda: val.epoch(0), settings, progress=False)

    class Killed(Exception):
        pass

    def dying(model, batch, epoch, gen, training):
        if epoch == 2:
            raise Killed
        return step(model, batch, epoch, gen, training)

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(Killed):
        train(fresh(), dying, stream.epoch, lambda: val.epoch(0), settings, ckpt, "fp", progress=False)
    assert ckpt.exists()
    resumed, hist2 = train(fresh(), step, stream.epoch, lambda: val.epoch(0), settings, ckpt, "fp", progress=False)
    for name, a in full.items():
        assert torch.equal(a, resumed[name]), name
    assert list(hist2["epoch"]) == list(hist["epoch"])


def test_shard_inputs_reject_raw_shards(rendered):
    with pytest.raises(ValueError, match="norm_softening"):
        shard_inputs(rendered["decals"], 1, 0.1, 0.1, 0.0)


def test_device_choice():
    from galmap.core.device import pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device(None) == pick_device("auto")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            pick_device("cuda")


def test_a_stamp_without_data_is_encoded_flagged_and_listed(shard_paths, vae_params, tmp_path, test_config):
    """A galaxy with no valid pixel keeps its row (NaN metrics) and is named in the VAE's failures."""
    import pandas as pd

    from galmap.core.io import read_shard
    from galmap.latent.jobs import encode_file

    model, _, meta = train_vae(shard_paths, vae_params, 3, seed=2, progress=False)
    save_model(tmp_path / "model.pt", model, meta)
    shard = read_shard(shard_paths[0])
    shard.ivar[2] = 0.0
    bad = tmp_path / "bad.h5"
    write_shard(bad, shard)
    encode_file(vae_params, 2, str(tmp_path / "model.pt"), str(bad), str(tmp_path / "lat.parquet"),
                str(tmp_path / "fail.csv"))  # fmt: skip
    table = pd.read_parquet(tmp_path / "lat.parquet")
    fails = pd.read_csv(tmp_path / "fail.csv")
    assert list(table["id"]) == list(shard.ids)
    assert table.loc[2, "n_pix"] == 0 and np.isnan(table.loc[2, "ssim"]) and np.isnan(table.loc[2, "chi2_nu"])
    assert list(fails["id"]) == [shard.ids[2]] and "no unmasked pixel" in fails.loc[0, "reason"]
    assert fails.loc[0, "stage"] == "vae"
