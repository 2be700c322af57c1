"""The image-to-image jobs: super-resolution and Hα training and evaluation.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from galmap.core.failures import FailureLog
from galmap.core.io import read_table, training_checkpoint, write_table

log = logging.getLogger("galmap")


def superres_train_file(
    kind: str,
    params: Mapping[str, Any],
    seed: int,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    history_path: str,
    sersic_path: str | None = None,
    threads: int = 1,
) -> None:
    """Train the super-resolution diffusion model or its regression baseline (``kind``) on paired shards.

    ``sersic_path``: the source survey's Sérsic fits (the structure stage's table), read
    when ``superres.sersic_base`` asks for the Sérsic base.
    """
    import torch

    from galmap.core.device import pick_device
    from galmap.images2images.superres import load_pairs, train_model
    from galmap.nn.training import derived_seed, save_model

    torch.set_num_threads(max(1, threads))
    stream = {"diffusion": 1, "regression": 2}[kind]
    sersic = read_table(sersic_path) if sersic_path else None
    data = load_pairs(source_paths, target_paths, params, seed, sersic=sersic)
    device = pick_device(params["device"])
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = train_model(kind, data, params, derived_seed(seed, 70, stream), device, checkpoint)
        save_model(model_path, model, meta | {"target_softening": data.target_softening})
        write_table(history_path, history)
    log.info(
        "superres %s: %d training galaxies, %.1f images/s, final loss %.4g",
        kind, meta["n_train"], meta["train_images_per_s"], history["train_loss"].iloc[-1],
    )  # fmt: skip


def superres_evaluate_file(
    params: Mapping[str, Any],
    seed: int,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    diffusion_path: str,
    regression_path: str,
    metrics_path: str,
    re_path: str,
    examples_path: str,
    failures_path: str,
    sersic_path: str | None = None,
    threads: int = 1,
) -> None:
    """Evaluate the diffusion model and its baselines on the held-out galaxies (metrics, Re table, examples)."""
    import numpy as np
    import torch

    from galmap.core.device import pick_device
    from galmap.images2images.superres import evaluate, load_pairs
    from galmap.nn.image2image import write_examples
    from galmap.nn.training import derived_seed, load_model
    from galmap.nn.unet import UNet

    torch.set_num_threads(max(1, threads))
    device = pick_device(params["device"])
    diffusion, dmeta = load_model(diffusion_path, UNet, device)
    regression, rmeta = load_model(regression_path, UNet, device)
    failures = FailureLog("superres")
    keys = ("data_scale", "residual_scale", "base_band_weights")
    if any(not np.allclose(dmeta.get(k) or 0.0, rmeta.get(k) or 0.0, rtol=1e-6) for k in keys):
        raise ValueError("superres: the diffusion and regression models were trained on different data scales")
    sersic = read_table(sersic_path) if sersic_path else None
    scales = {k: dmeta.get(k) for k in keys}
    data = load_pairs(source_paths, target_paths, params, seed, failures, sersic, scales)
    rates = {"diffusion": dmeta["train_images_per_s"], "regression": rmeta["train_images_per_s"]}
    metrics, table, examples = evaluate(data, diffusion, regression, params, derived_seed(seed, 70, 3), failures, rates)
    write_table(metrics_path, metrics)
    write_table(re_path, table)
    write_examples(
        examples_path,
        examples,
        {"target_pixscale_arcsec": data.target_pixscale, "source_pixscale_arcsec": data.source_pixscale},
    )
    failures.write(failures_path)
    log.info("superres metrics:\n%s", metrics.to_string(index=False))


def superres_structure_file(
    params: Mapping[str, Any],
    seed: int,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    diffusion_path: str,
    regression_path: str,
    structure_path: str,
    galaxies_path: str,
    calibration_path: str,
    sersic_path: str | None = None,
    truth_path: str | None = None,
    mock_config: Mapping[str, Any] | None = None,
    threads: int = 1,
    split: str = "test",
) -> None:
    """The structure table, per-galaxy measures and calibration of the super-resolved images
    (:mod:`galmap.images2images.superres_structure`); ``truth_path`` and ``mock_config`` (``seed``,
    ``surveys``) only on the mock."""
    import torch

    from galmap.core.device import pick_device
    from galmap.images2images.superres import load_pairs
    from galmap.images2images.superres_structure import evaluate_structure
    from galmap.nn.training import derived_seed, load_model
    from galmap.nn.unet import UNet

    torch.set_num_threads(max(1, threads))
    device = pick_device(params["device"])
    diffusion, dmeta = load_model(diffusion_path, UNet, device)
    regression, _ = load_model(regression_path, UNet, device)
    sersic = read_table(sersic_path) if sersic_path else None
    scales = {k: dmeta.get(k) for k in ("data_scale", "residual_scale", "base_band_weights")}
    data = load_pairs(source_paths, target_paths, params, seed, None, sersic, scales)
    truth = read_table(truth_path) if truth_path else None
    table, galaxies, calibration = evaluate_structure(
        data, diffusion, regression, params, derived_seed(seed, 70, 4), truth, mock_config, split
    )
    write_table(structure_path, table)
    write_table(galaxies_path, galaxies)
    write_table(calibration_path, calibration)
    log.info(
        "superres structure (%s):\n%s\n%s", split, table.to_string(index=False), calibration.to_string(index=False)
    )


def superres_apply_file(
    cutout: str,
    params: Mapping[str, Any],
    structure_params: Mapping[str, Any],
    preprocess: Mapping[str, Any],
    seed: int,
    diffusion_path: str,
    regression_path: str,
    source_ref_path: str,
    target_ref_path: str,
    table_path: str,
    figure_path: str,
    calibration_path: str | None = None,
    threads: int = 1,
) -> None:
    """Run the trained models on a real FITS cutout (``superres.apply``: its ``source_hdus`` and ``target_hdus``);
    write the measures of each version (:data:`galmap.images2images.superres_apply.APPLY_COLUMNS`) and a figure."""
    import tempfile
    from pathlib import Path

    import torch

    from galmap.core.io import read_shard
    from galmap.images2images.superres_apply import apply_figure, apply_models, cutout_shards
    from galmap.nn.training import load_model
    from galmap.nn.unet import UNet

    torch.set_num_threads(max(1, threads))
    diffusion, dmeta = load_model(diffusion_path, UNet, "cpu")
    regression, _ = load_model(regression_path, UNet, "cpu")
    spec = params["apply"]
    src_ref, tgt_ref = read_shard(source_ref_path), read_shard(target_ref_path)
    source, target = cutout_shards(cutout, spec["source_hdus"], spec["target_hdus"], src_ref, tgt_ref, preprocess, seed)
    p = dict(params)
    if calibration_path:
        cal = read_table(calibration_path).set_index("metric")["value"]
        p["spread_scale"] = float(cal.get("spread_scale", 1.0))
    with tempfile.TemporaryDirectory() as work:
        table, images = apply_models(source, target, diffusion, regression, dmeta, p, structure_params, seed, work)
    write_table(table_path, table)
    apply_figure(images, table, figure_path, f"{Path(cutout).name}: {'+'.join(spec['source_hdus'])} -> "
                 f"{'+'.join(spec['target_hdus'])}")  # fmt: skip
    log.info("superres apply %s:\n%s", cutout, table.to_string(index=False))


def halpha_train_file(
    params: Mapping[str, Any],
    seed: int,
    input_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    history_path: str,
    threads: int = 1,
    kind: str = "regression",
) -> None:
    """Train the u,g,r,i,z -> Hα U-Net (``kind="regression"``) or the diffusion model (``"diffusion"``)."""
    import torch

    from galmap.core.device import pick_device
    from galmap.images2images.halpha import load_pairs, train_diffusion, train_model
    from galmap.nn.training import derived_seed, save_model

    trainers = {"regression": (train_model, 80), "diffusion": (train_diffusion, 81)}
    if kind not in trainers:
        raise ValueError(f"unknown Hα model {kind!r} ({', '.join(trainers)})")
    trainer, stream = trainers[kind]
    torch.set_num_threads(max(1, threads))
    data = load_pairs(input_paths, target_paths, params, seed)
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = trainer(
            data, params, derived_seed(seed, stream), pick_device(params["device"]), checkpoint
        )
        save_model(model_path, model, meta | {"softening": data.softening})
        write_table(history_path, history)
    log.info("halpha %s: %d training galaxies, %.1f images/s", kind, meta["n_train"], meta["train_images_per_s"])


def halpha_evaluate_file(
    params: Mapping[str, Any],
    seed: int,
    input_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    truth_path: str | None,
    metrics_path: str,
    predictions_path: str,
    examples_path: str | None,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Evaluate the Hα model on the held-out galaxies: metrics, per-galaxy predictions and (U-Net) examples.

    A diffusion model (its metadata's ``kind``) is scored on its draws
    (:func:`galmap.images2images.halpha.evaluate_draws`) and writes no examples (``examples_path`` None).
    """
    import torch

    from galmap.core.device import pick_device
    from galmap.images2images.halpha import evaluate, evaluate_draws, load_pairs
    from galmap.nn.image2image import write_examples
    from galmap.nn.training import derived_seed, load_model
    from galmap.nn.unet import UNet

    torch.set_num_threads(max(1, threads))
    model, meta = load_model(model_path, UNet, pick_device(params["device"]))
    failures = FailureLog("halpha")
    data = load_pairs(input_paths, target_paths, params, seed, failures)
    truth = read_table(truth_path) if truth_path else None
    if meta.get("kind") == "diffusion":
        metrics, table = evaluate_draws(data, model, meta, params, truth, failures, derived_seed(seed, 82))
        write_table(metrics_path, metrics)
        write_table(predictions_path, table)
        failures.write(failures_path)
        log.info("halpha diffusion metrics:\n%s", metrics.to_string(index=False))
        return
    metrics, table, examples = evaluate(data, model, params, truth, failures, float(meta["train_images_per_s"]))
    write_table(metrics_path, metrics)
    write_table(predictions_path, table)
    write_examples(
        examples_path, examples, {"pixscale_arcsec": data.pixscale, "aperture_arcsec": float(params["aperture_arcsec"])}
    )
    failures.write(failures_path)
    log.info("halpha metrics:\n%s", metrics.to_string(index=False))
