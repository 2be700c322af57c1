"""The paper's figures, drawn from the stages' output files.

Every figure is written as PDF and PNG (``<stem>.pdf``, ``<stem>.png``) in one style
(``galmap.mplstyle``, next to this module). Each ``*_figure`` function takes the
paths of the tables and images it plots; the Snakemake rules call them through
:func:`make_figure`. Images are shown with :func:`galmap.core.colour.composite`: Lupton et al.
(2004) colour composites with one asinh stretch for the three bands (g, r, z as blue,
green, red for DECaLS-like data; g, r, i for ugriz; one band: grey), softened at twice
the sky noise and each stamp's white at its 99.5th-percentile intensity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from galmap.core.colour import composite  # noqa: E402
from galmap.core.io import atomic_path, read_shard, read_table  # noqa: E402
from galmap.core.stats import robust_std  # noqa: E402
from galmap.structure.parameters import LOG_PARAMETERS  # noqa: E402

STYLE = Path(__file__).with_name("galmap.mplstyle")


def save(fig: plt.Figure, pdf_path: str | Path, png_path: str | Path) -> None:
    """Write ``fig`` as PDF and PNG atomically and close it.

    The PDF gets no creation date, so the same inputs give the same bytes (a rerun is identical).
    """
    for path in (pdf_path, png_path):
        fmt = Path(path).suffix[1:]
        with atomic_path(path, Path(path).suffix) as tmp:
            fig.savefig(tmp, format=fmt, metadata={"CreationDate": None} if fmt == "pdf" else None)
    plt.close(fig)


def _show(ax: plt.Axes, image: np.ndarray, bands: Sequence[str], sigma=None, title: str | None = None) -> None:
    disp = composite(image, bands, sigma)
    ax.imshow(disp, cmap="gray" if disp.ndim == 2 else None)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def survey_examples_figure(image_paths: Sequence[str], truth_path: str | None, n_galaxies: int = 5) -> plt.Figure:
    """The same galaxies in every survey (rows: galaxies of different types; columns: surveys)."""
    shards = [read_shard(p, datasets=()) for p in image_paths]
    ids = list(shards[0].ids)
    picks = list(range(min(n_galaxies, len(ids))))
    labels = {}
    if truth_path:
        truth = read_table(truth_path).set_index("id")
        normal = [i for i, g in enumerate(ids) if truth.loc[g, "anomaly"] == "none"] if "anomaly" in truth else []
        by_type: dict[str, int] = {}
        for i in normal or range(len(ids)):
            by_type.setdefault(str(truth.loc[ids[i], "type"]), i)
        picks = (list(by_type.values()) + [i for i in range(len(ids)) if i not in by_type.values()])[:n_galaxies]
        labels = {i: f"{truth.loc[ids[i], 'type']}, r={truth.loc[ids[i], 'mag_r']:.1f}" for i in picks}
    fig, axes = plt.subplots(len(picks), len(shards), figsize=(1.3 * len(shards), 1.3 * len(picks)), squeeze=False)
    for c, shard in enumerate(shards):
        a = shard.attrs
        fov = a["pixscale_arcsec"] * shard.images.shape[-1]
        for r, i in enumerate(picks):
            _show(axes[r, c], shard.images[i], shard.bands, a.get("sky_sigma"))
            if r == 0:
                axes[r, c].set_title(
                    f"{a['survey']} ({'+'.join(shard.bands)})\n{a['pixscale_arcsec']}″/px, {fov:.0f}″", fontsize=7
                )
            if c == 0:
                axes[r, c].set_ylabel(labels.get(i, ids[i]), fontsize=7)
    title = "The same mock galaxies in each survey" if truth_path else "Galaxies of the data, per survey"
    fig.suptitle(title, fontsize=9)
    return fig


def sersic_truth_figure(sersic_path: str, truth_path: str, band: str = "r") -> plt.Figure:
    """Fitted Sérsic n and Re against the truth for single-Sérsic galaxies, coloured by S/N."""
    fits = read_table(sersic_path)
    fits = fits[fits["band"] == band]
    truth = read_table(truth_path)
    m = fits.merge(truth, on="id")
    m = m[m["is_single_sersic"] & (m["flag"] == 0)]
    snr = (m["flux"] / m["flux_err"]).to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.3), layout="constrained")
    for ax, (fit, true, label) in zip(
        axes,
        [("n", "bulge_n", "Sérsic index n"), ("re_arcsec", "bulge_re_arcsec", "R$_e$ (arcsec, semi-major)")],
        strict=True,
    ):
        sc = ax.scatter(m[true], m[fit], c=np.log10(snr), s=8, cmap="viridis")
        lo, hi = float(np.nanmin(m[true])), float(np.nanmax(m[true]))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="1:1")
        ax.set_xlabel(f"true {label}")
        ax.set_ylabel(f"fitted {label}")
        med = np.nanmedian(np.abs(m[fit] / m[true] - 1))
        ax.set_title(f"median |fitted/true − 1| = {med:.3f}")
        ax.legend(loc="upper left")
    fig.colorbar(sc, ax=axes, label=f"log$_{{10}}$ S/N ({band})")
    fig.suptitle(f"Sérsic fits ({band} band) of {len(m)} isolated single-Sérsic galaxies against the truth", fontsize=9)
    return fig


def sersic_residuals_figure(
    sersic_path: str, images_path: str, truth_path: str | None, band: str = "r", n_show: int = 5
) -> plt.Figure:
    """Data, best-fitting PSF-convolved Sérsic model and residual (in sigma) for a few galaxies."""
    import torch

    from galmap.structure.sersic import SersicModel

    shard = read_shard(images_path, datasets=("psf_profile",))
    fits = read_table(sersic_path)
    fits = fits[(fits["band"] == band) & (fits["flag"] == 0)].set_index("id")
    types = read_table(truth_path).set_index("id")["type"] if truth_path else None
    b = shard.bands.index(band)
    picks, seen = [], set()
    for i, gid in enumerate(shard.ids):  # one galaxy per type first, then any
        kind = types.get(gid) if types is not None else None
        if gid in fits.index and kind not in seen:
            picks.append(i)
            seen.add(kind)
        if len(picks) == n_show:
            break
    model = SersicModel(shard.images.shape[2:], shard.extra["psf_profile"][b : b + 1], oversample=2)
    rows = fits.loc[[shard.ids[i] for i in picks]]
    scale = shard.attrs["pixscale_arcsec"]

    def col(name: str) -> torch.Tensor:
        return torch.as_tensor(rows[name].to_numpy(dtype=np.float32, copy=True))

    with torch.no_grad():
        images = model.render(
            col("x0_px"), col("y0_px"), col("n"), col("re_arcsec") / scale, col("q"),
            torch.deg2rad(col("pa_deg")), col("flux")[:, None], col("sky")[:, None],
        )[:, 0].numpy()  # fmt: skip
    fig, axes = plt.subplots(3, len(picks), figsize=(1.4 * len(picks), 4.4), squeeze=False, layout="constrained")
    for c, i in enumerate(picks):
        data, ivar = shard.images[i, b], shard.ivar[i, b]
        lo, hi = np.percentile(data, [1, 99.7])
        norm = matplotlib.colors.AsinhNorm(linear_width=max(hi / 20, 1e-6), vmin=lo, vmax=hi)
        gid = shard.ids[i]
        axes[0, c].imshow(data, cmap="gray_r", norm=norm)
        axes[0, c].set_title(f"{types.get(gid, '') if types is not None else gid}\nn={rows.loc[gid, 'n']:.1f}, "
                             f"R$_e$={rows.loc[gid, 're_arcsec']:.1f}″", fontsize=7)  # fmt: skip
        axes[1, c].imshow(images[c], cmap="gray_r", norm=norm)
        resid = np.where(ivar > 0, (data - images[c]) * np.sqrt(ivar), np.nan)
        im = axes[2, c].imshow(resid, cmap="RdBu_r", vmin=-5, vmax=5)
        for r in range(3):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    for r, label in enumerate(["data", "Sérsic model", "residual"]):
        axes[r, 0].set_ylabel(label)
    fig.colorbar(im, ax=axes[2, :], label="(data − model) / σ", shrink=0.8)
    fig.suptitle(f"PSF-convolved Sérsic fits ({band} band); masked neighbours blank in the residuals", fontsize=9)
    return fig


def morphometry_figure(morph_path: str, truth_path: str | None) -> plt.Figure:
    """statmorph's Gini–M20 and concentration–asymmetry planes, coloured by the true bulge fraction."""
    morph = read_table(morph_path)
    m = morph.merge(read_table(truth_path), on="id") if truth_path else morph
    m = m[m["flag"] <= 1]
    colour = m["bulge_frac"] if "bulge_frac" in m else None
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    sc = axes[0].scatter(m["m20"], m["gini"], c=colour, s=6, cmap="coolwarm", vmin=0, vmax=1)
    x = np.linspace(-3.0, -0.5, 10)
    axes[0].plot(x, -0.14 * x + 0.33, "k-", lw=1, label="merger line (Lotz+08)")
    axes[0].plot(x, 0.14 * x + 0.80, "k--", lw=1, label="E/S0–Sb line (Lotz+08)")
    axes[0].set_xlim(0, -3.0)
    axes[0].set_xlabel("M$_{20}$")
    axes[0].set_ylabel("Gini")
    axes[0].legend(loc="lower left")
    axes[1].scatter(m["asymmetry"], m["concentration"], c=colour, s=6, cmap="coolwarm", vmin=0, vmax=1)
    axes[1].axvline(0.35, color="k", ls="--", lw=1, label="A = 0.35 (mergers)")
    axes[1].set_xlabel("asymmetry A")
    axes[1].set_ylabel("concentration C")
    axes[1].legend(loc="lower right")
    if colour is not None:
        fig.colorbar(sc, ax=axes, label="true bulge fraction B/T")
    fig.suptitle(f"Non-parametric morphology of {len(m)} galaxies (statmorph)", fontsize=9)
    return fig


def _latent_axis(ax: plt.Axes, sizes: Sequence[int]) -> None:
    """A log axis labelled at the scanned latent sizes."""
    ax.set_xscale("log")
    ax.set_xticks(list(sizes))
    ax.set_xticklabels([str(k) for k in sizes])
    ax.minorticks_off()


def _vae_morphology_panels(fig: plt.Figure, grid: Any, scan: Any, probes_path: str | None, ncol: int) -> None:
    """The morphology-aware metrics (segment SSIM, against the noiseless galaxy; the m = 2 Fourier measures) and
    the latent probes over the image ceiling, against K."""
    ax = fig.add_subplot(grid[1, : ncol // 2])
    if "ssim_seg_median" in scan:
        ax.plot(scan["latent_dim"], scan["ssim_seg_median"], marker="o", label="SSIM segment (vs input)")
        ax.plot(scan["latent_dim"], scan["ssim_clean_median"], marker="s", label="SSIM segment (vs noiseless)")
        ax.plot(scan["latent_dim"], 1 - scan["res_m2_median"], marker="^", label="m=2 structure kept (1 - residual)")
        if "a2_ratio_spirals" in scan:
            ax.plot(scan["latent_dim"], scan["a2_ratio_spirals"], marker="v", label="A2 rec/input, spirals")
        ax.legend(fontsize=5)
    ax.set_xlabel("number of latents K")
    ax.set_ylabel("median (test)")
    _latent_axis(ax, scan["latent_dim"])
    ax2 = fig.add_subplot(grid[1, ncol // 2 :])
    if probes_path:
        probes = read_table(probes_path)
        for j, (q, t) in enumerate(probes.groupby("quantity", sort=False)):
            t = t.sort_values("latent_dim")
            ls = "-" if j < 7 else "--"  # the colour cycle has 7 colours
            ax2.plot(t["latent_dim"], t["latent_r2"] / t["image_r2"], marker="o", ls=ls, label=q)
        ax2.axhline(0.8, color="0.5", lw=0.6, ls="--")
        ax2.legend(fontsize=5, ncol=2)
        _latent_axis(ax2, sorted(probes["latent_dim"].unique()))
    ax2.set_xlabel("number of latents K")
    ax2.set_ylabel("latent probe / image ceiling")


def vae_figure(
    scan_path: str,
    model_path: str,
    images_path: str,
    latents_path: str,
    probes_path: str | None = None,
    n_show: int = 6,
) -> plt.Figure:
    """SSIM, MSE and MAE against the number of latents, the morphology metrics and probes, held-out reconstructions."""
    import torch

    from galmap.latent.vae import ConvVAE
    from galmap.nn.inputs import network_inputs
    from galmap.nn.training import load_model
    from galmap.preprocess.stamps import denormalise

    scan = read_table(scan_path)
    model, meta = load_model(model_path, ConvVAE)
    shard = read_shard(images_path, datasets=())
    lat = read_table(latents_path).set_index("id")
    test = [i for i, g in enumerate(shard.ids) if g in lat.index and lat.loc[g, "split"] == "test"][:n_show]
    soft = shard.attrs["norm_softening"]
    x, _ = network_inputs(shard.images[test], shard.ivar[test], soft, meta["sys_error"])
    with torch.no_grad():
        recon = model.decode(model.encode(torch.from_numpy(x))[0]).numpy()
    recon = denormalise(recon, soft)
    fig = plt.figure(figsize=(7, 7.6), layout="constrained")
    grid = fig.add_gridspec(4, max(len(test), 3), height_ratios=[1.5, 1.5, 1, 1])
    ax = fig.add_subplot(grid[0, : max(len(test), 3) // 2])
    ax.errorbar(scan["latent_dim"], scan["ssim_mean"], yerr=scan["ssim_std"] / np.sqrt(scan["n_test"]), marker="o")
    ax.set_xlabel("number of latents K")
    ax.set_ylabel("SSIM (held-out)")
    _latent_axis(ax, scan["latent_dim"])
    ax2 = fig.add_subplot(grid[0, max(len(test), 3) // 2 :])
    ax2.plot(scan["latent_dim"], scan["mse_mean"], marker="o", label="MSE")
    ax2.plot(scan["latent_dim"], scan["mae_mean"], marker="s", label="MAE")
    ax2.set_xlabel("number of latents K")
    ax2.set_ylabel("error (asinh scale)")
    _latent_axis(ax2, scan["latent_dim"])
    ax2.legend()
    _vae_morphology_panels(fig, grid, scan, probes_path, max(len(test), 3))
    sigma = shard.attrs.get("sky_sigma")
    for c, i in enumerate(test):
        gid = shard.ids[i]
        _show(fig.add_subplot(grid[2, c]), shard.images[i], shard.bands, sigma, str(gid))
        _show(
            fig.add_subplot(grid[3, c]),
            recon[c],
            shard.bands,
            sigma,
            f"K={model.latent_dim}, SSIM {lat.loc[gid, 'ssim']:.2f}",
        )
    fig.suptitle(
        f"VAE: reconstruction quality against the number of latents; reconstructions at K={model.latent_dim}",
        fontsize=9,
    )
    return fig


def outliers_figure(
    outliers_path: str, roc_path: str, image_paths: Sequence[str], truth_path: str | None, n_show: int = 8
) -> plt.Figure:
    """The most outlying galaxies (with their injected anomaly, if any) and the ROC curve."""
    out = read_table(outliers_path).sort_values("outlier_score", ascending=False)
    curve = read_table(roc_path)
    kinds = read_table(truth_path).set_index("id")["anomaly"] if truth_path else None
    shards = [read_shard(p, datasets=()) for p in image_paths]
    where = {g: (s, i) for s in shards for i, g in enumerate(s.ids)}
    top = [g for g in out["id"] if g in where][:n_show]
    fig = plt.figure(figsize=(7.5, 3.6), layout="constrained")
    grid = fig.add_gridspec(2, max(n_show // 2, 1) + 3)
    for k, gid in enumerate(top):
        s, i = where[gid]
        row = out.set_index("id").loc[gid]
        label = f"{row['outlier_score']:.1f}σ"
        if row.get("recon_band", "") not in ("", "all") and row["recon_sigma"] >= row["mahalanobis_sigma"]:
            label += f" ({row['recon_band']})"  # the band whose reconstruction chi2 is the worst
        label += f"\n{kinds.get(gid, 'none')}" if kinds is not None else ""
        _show(
            fig.add_subplot(grid[k // (n_show // 2), k % (n_show // 2)]),
            s.images[i],
            s.bands,
            s.attrs.get("sky_sigma"),
            label,
        )
    ax = fig.add_subplot(grid[:, n_show // 2 :])
    if len(curve):
        ax.plot(curve["fpr"], curve["tpr"], drawstyle="steps-post", label="max(latent, per-band reconstruction) score")
        ax.axvline(0.01, color="k", ls=":", lw=1, label="1% false positives")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1)
        ax.legend(loc="lower right")
    ax.set_xlabel("false-positive rate (normal galaxies)")
    ax.set_ylabel("recall of injected anomalies")
    fig.suptitle("Latent-space and reconstruction outliers", fontsize=9)
    return fig


def classify_figure(metrics_path: str, confusion_path: str) -> plt.Figure:
    """Test accuracy per question (random forest on latents vs CNN on images) and the confusion matrices."""
    metrics = read_table(metrics_path)
    conf = read_table(confusion_path)
    questions = list(dict.fromkeys(metrics["question"]))
    models = list(dict.fromkeys(metrics["model"]))
    nq = max(len(questions), 1)
    fig = plt.figure(figsize=(max(7.5, 1.0 * nq), 2.4 + 1.1 * len(models)), layout="constrained")
    grid = fig.add_gridspec(1 + len(models), nq, height_ratios=[1.8] + [1] * len(models))
    ax = fig.add_subplot(grid[0, :])
    width = 0.8 / max(len(models), 1)
    x = np.arange(nq)
    for k, model in enumerate(models):
        m = metrics[metrics["model"] == model].set_index("question").reindex(questions)
        ax.bar(x + (k - (len(models) - 1) / 2) * width, m["accuracy"], width, label=model)
    chance = metrics.drop_duplicates("question").set_index("question").reindex(questions)["chance_accuracy"]
    ax.scatter(x, chance, marker="_", s=300, color="k", zorder=3, label="most common class")
    n_test = metrics.drop_duplicates("question").set_index("question").reindex(questions)["n_test"]
    ax.set_xticks(x, [f"{q}\n(n={int(n)})" if np.isfinite(n) else q for q, n in zip(questions, n_test, strict=True)])
    ax.tick_params(axis="x", labelsize=6)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.legend(ncols=3, loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=6, frameon=False)
    for r, model in enumerate(models):
        for c, q in enumerate(questions):
            a = fig.add_subplot(grid[1 + r, c])
            sub = conf[(conf["question"] == q) & (conf["model"] == model)]
            names = list(dict.fromkeys(sub["true_class"]))
            if not names:
                a.set_axis_off()
                continue
            mat = sub.pivot_table(index="true_class", columns="pred_class", values="count", aggfunc="sum")
            mat = mat.reindex(index=names, columns=names).fillna(0).to_numpy(float)
            norm = mat / np.maximum(mat.sum(1, keepdims=True), 1)
            a.imshow(norm, vmin=0, vmax=1, cmap="Blues", origin="upper")
            a.set_xticks(range(len(names)), names, rotation=90, fontsize=4)
            a.set_yticks(range(len(names)), names, fontsize=4)
            if c == 0:
                a.set_ylabel(model, fontsize=6)
    fig.suptitle("Galaxy Zoo questions: random forest on the latents vs CNN on the images (test split)", fontsize=9)
    return fig


def flow_figure(closure_path: str, summary_path: str, gallery_path: str) -> plt.Figure:
    """Requested vs measured parameters of generated galaxies, and the one-parameter-at-a-time gallery."""
    closure = read_table(closure_path)
    summary = read_table(summary_path).set_index(["latent", "parameter"])
    gallery = read_shard(gallery_path)
    names = list(dict.fromkeys(closure["parameter"]))
    vary = [str(v) for v in gallery.attrs["vary"]]
    steps = int(gallery.attrs["steps"])
    ncol = 4
    nrow_s = int(np.ceil(len(names) / ncol))
    fig = plt.figure(figsize=(7.5, 1.9 * nrow_s + 1.2 * len(vary)), layout="constrained")
    outer = fig.add_gridspec(2, 1, height_ratios=[1.9 * nrow_s, 1.2 * max(len(vary), 1)])
    top = outer[0].subgridspec(nrow_s, ncol)
    latents = list(dict.fromkeys(closure["latent"]))
    for k, name in enumerate(names):
        ax = fig.add_subplot(top[k // ncol, k % ncol])
        g = closure[closure["parameter"] == name]
        title = []
        for latent in latents:
            gl = g[g["latent"] == latent]
            ax.scatter(gl["requested"], gl["measured"], s=3, alpha=0.5, label=f"{latent} latent")
            title.append(f"{summary.loc[(latent, name), 'spearman_r']:.2f}")
        finite = np.concatenate([g["requested"], g["measured"]])
        finite = finite[np.isfinite(finite)]
        if finite.size:
            lo, hi = np.percentile(finite, [1, 99])
            ax.plot([lo, hi], [lo, hi], "k:", lw=1)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
        ax.set_title(f"{name}: Spearman {' / '.join(title)}", fontsize=7)
        ax.set_xlabel("requested", fontsize=6)
        ax.set_ylabel("measured", fontsize=6)
        if k == 0:
            ax.legend(fontsize=5, markerscale=2)
        if name in LOG_PARAMETERS:
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    bottom = outer[1].subgridspec(max(len(vary), 1), steps)
    sigma = gallery.attrs.get("sky_sigma")
    req = gallery.extra["requested"]
    params = [str(p) for p in gallery.attrs["parameters"]]
    for i, name in enumerate(vary):
        j = params.index(name)
        for s in range(steps):
            k = i * steps + s
            ax = fig.add_subplot(bottom[i, s])
            _show(ax, gallery.images[k], gallery.bands, sigma, f"{name} = {req[k, j]:.3g}")
    fig.suptitle(
        "Parameters → images: closure of generated galaxies (top) and one parameter at a time (bottom)", fontsize=9
    )
    return fig


def domain_figure(metrics_path: str, source_path: str, target_path: str, n_show: int = 6) -> plt.Figure:
    """The same galaxies in the source and the (resampled) target survey, and test accuracy per method.

    The metrics shown are the first pair's of ``metrics.csv`` (``pair`` column), that of ``target_path``.
    """
    from galmap.domain.adaptation import METHODS, REFERENCE

    metrics = read_table(metrics_path)
    if "pair" in metrics.columns:
        metrics = metrics[metrics["pair"] == metrics["pair"].iloc[0]]
    source = read_shard(source_path)
    target = read_shard(target_path)
    row = {str(g): i for i, g in enumerate(target.ids)}
    flux = np.nansum(np.where(source.ivar > 0, source.images, 0), axis=(1, 2, 3))
    order = [i for i in np.argsort(-flux) if str(source.ids[i]) in row]
    show = [order[int(k)] for k in np.linspace(len(order) * 0.1, len(order) * 0.6, n_show)] if order else []
    fig = plt.figure(figsize=(7.5, 6.2), layout="constrained")
    grid = fig.add_gridspec(3, max(n_show, 1), height_ratios=[1, 1, 2.4])
    sigma = list(source.attrs.get("sky_sigma", [None] * len(source.bands)))
    sigma = None if None in sigma else sigma
    for c, i in enumerate(show):
        j = row[str(source.ids[i])]
        # what the network sees: pixels without data (masked neighbours, bad pixels) are 0
        src = np.where(source.ivar[i] > 0, source.images[i], 0)
        _show(fig.add_subplot(grid[0, c]), src, source.bands, sigma, str(source.ids[i]))
        _show(fig.add_subplot(grid[1, c]), np.where(target.ivar[j] > 0, target.images[j], 0), target.bands, sigma)
    if show:
        fig.axes[0].set_ylabel(str(source.attrs["survey"]), fontsize=7)
        fig.axes[1].set_ylabel(f"{target.attrs['survey']}\n(on the {source.attrs['pixscale_arcsec']}''/px grid)",
                               fontsize=7)  # fmt: skip
    ax = fig.add_subplot(grid[2, :])
    questions = list(dict.fromkeys(metrics["question"]))
    order = [*METHODS, REFERENCE]
    methods = sorted(set(metrics["method"]), key=lambda m: order.index(m) if m in order else len(order))
    series = [("source_only", "source", "source survey")] + [
        (m, "target", f"target: {m.replace('_', ' ')}") for m in methods
    ]
    width = 0.8 / len(series)
    x = np.arange(len(questions))
    for k, (method, domain, label) in enumerate(series):
        m = metrics[(metrics["method"] == method) & (metrics["domain"] == domain)].set_index("question")
        m = m.reindex(questions)
        ax.bar(x + (k - (len(series) - 1) / 2) * width, m["accuracy"], width, yerr=m["accuracy_se"],
               label=label, error_kw={"lw": 0.6})  # fmt: skip
    n_test = metrics.drop_duplicates("question").set_index("question").reindex(questions)["n_test"]
    ax.set_xticks(x, [f"{q}\n(n={int(n)})" for q, n in zip(questions, n_test, strict=True)])
    ax.tick_params(axis="x", labelsize=6)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy (± s.e.)")
    ax.legend(ncols=4, loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=6, frameon=False)
    fig.suptitle("Survey A -> survey B: the source classifier on the target survey, without and with adaptation",
                 fontsize=9)  # fmt: skip
    return fig


def _read_examples(path: str) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as fh:
        out: dict[str, Any] = {k: fh[k][...] for k in fh}
        out["attrs"] = dict(fh.attrs)
    for key in ("ids", "source_bands", "input_bands"):
        if key in out:
            out[key] = [v.decode() if isinstance(v, bytes) else str(v) for v in out[key]]
    return out


def _re_scatter(ax: plt.Axes, table: Any, column: str, label: str, colour: str) -> None:
    x, y = table["re_euclid_arcsec"].to_numpy(), table[column].to_numpy()
    ok = np.isfinite(x) & np.isfinite(y)
    ratio = np.log10(y[ok] / x[ok])
    scatter = robust_std(ratio)
    ax.scatter(x[ok], y[ok], s=5, alpha=0.6, color=colour, label=f"{label}: {scatter:.3f} dex (n={ok.sum()})")


def superres_figure(metrics_path: str, re_path: str, examples_path: str) -> plt.Figure:
    """DESI -> Euclid: DECaLS input, diffusion draws and their spread, baselines, Euclid truth; Re comparison."""
    ex = _read_examples(examples_path)
    table = read_table(re_path)
    metrics = read_table(metrics_path).set_index("method")
    n_ex = len(ex["ids"])
    cols = ["DECaLS g,r,z", "draw 1", "draw 2", "draw spread", "regression", "bicubic", "Euclid VIS"]
    if "sersic_base" in ex:
        cols.insert(1, "Sérsic base")
    fig = plt.figure(figsize=(11 + 1.5 * ("sersic_base" in ex), 2.0 * max(n_ex, 1) + 3.2))
    grid = fig.add_gridspec(max(n_ex, 1) + 2, len(cols), height_ratios=[1] * max(n_ex, 1) + [0.3, 2.2])
    sigma = [float(ex["sky_sigma"][0])]
    for i in range(n_ex):
        truth = ex["truth"][i]
        draws = ex["draws"][:, i]
        panels = [None, draws[0], draws[min(1, len(draws) - 1)], None, ex["regression"][i], ex["bicubic"][i], truth]
        if "sersic_base" in ex:
            panels.insert(1, ex["sersic_base"][i])
        for j, title in enumerate(cols):
            ax = fig.add_subplot(grid[i, j])
            t = title if i == 0 else None
            if j == 0:
                _show(ax, ex["source"][i], ex["source_bands"], title=t)
            elif title == "draw spread":
                ax.imshow(draws.std(0)[0], cmap="magma")
                ax.set_xticks([])
                ax.set_yticks([])
                if t:
                    ax.set_title(t, fontsize=7)
            else:
                _show(ax, panels[j], ["VIS"], sigma=sigma, title=t)
            if j == 0:
                ax.set_ylabel(ex["ids"][i], fontsize=6)
    bottom = grid[-1, :].subgridspec(1, 3, width_ratios=[3, 3, 1.4], wspace=0.3)  # room for the y labels
    for k, (column, label, colour) in enumerate(
        (("re_decals_arcsec", "DECaLS", "tab:orange"), ("re_diffusion_arcsec", "diffusion", "tab:blue"))
    ):
        ax = fig.add_subplot(bottom[0, k])
        _re_scatter(ax, table, column, label, colour)
        if column == "re_diffusion_arcsec":
            _re_scatter(ax, table, "re_regression_arcsec", "regression", "tab:green")
        lim = [0.1, 10]
        ax.plot(lim, lim, "k--", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel("Re on the Euclid image (arcsec)")
        ax.set_ylabel(f"Re, {label} (arcsec)")
        ax.legend(fontsize=6, loc="upper left")
    ax = fig.add_subplot(bottom[0, 2])
    ax.axis("off")
    lines = [
        f"{m}: scatter {metrics.loc[m, 're_log_scatter_dex']:.3f} dex, bias {metrics.loc[m, 're_bias_percent']:+.1f}%"
        for m in ("decals", "sersic_base", "bicubic", "regression", "diffusion")
        if m in metrics.index
    ]
    if "diffusion" in metrics.index:
        d = metrics.loc["diffusion"]
        lines.append(f"draws: pixel 1σ coverage {d['pixel_coverage_1sigma']:.2f}, Re {d['re_coverage_1sigma']:.2f}")
    ax.text(0, 1, "\n".join(lines), fontsize=6, va="top")
    fig.suptitle("DESI -> Euclid: diffusion draws given DECaLS, against the Euclid image", fontsize=9)
    return fig


def halpha_figure(metrics_path: str, predictions_path: str, examples_path: str) -> plt.Figure:
    """u,g,r,i,z -> Hα: examples (input, observed, predicted), total flux predicted vs true, radial profiles."""
    ex = _read_examples(examples_path)
    table = read_table(predictions_path)
    metrics = read_table(metrics_path).set_index("subset")
    n_ex = len(ex["ids"])
    fig = plt.figure(figsize=(9, 2.0 * max(n_ex, 1) + 3.0))
    grid = fig.add_gridspec(max(n_ex, 1) + 1, 4, height_ratios=[1] * max(n_ex, 1) + [2.2])
    for i in range(n_ex):
        obs, pred = ex["observed"][i], ex["predicted"][i]
        top = np.percentile(obs, 99.5) or 1.0
        panels = (
            (None, "u,g,r,i,z"),
            (obs, "Hα observed"),
            (pred, "Hα predicted"),
            (obs - pred, "observed - predicted"),
        )
        for j, (img, title) in enumerate(panels):
            ax = fig.add_subplot(grid[i, j])
            t = title if i == 0 else None
            if img is None:
                _show(ax, ex["inputs"][i], ex["input_bands"], title=t)
                ax.set_ylabel(ex["ids"][i], fontsize=6)
            elif j == 3:
                ax.imshow(img, cmap="RdBu_r", vmin=-0.3 * top, vmax=0.3 * top)
            else:
                ax.imshow(np.arcsinh(img / (0.05 * top)), cmap="magma", vmin=0, vmax=np.arcsinh(20))
            if j:
                ax.set_xticks([])
                ax.set_yticks([])
                if t:
                    ax.set_title(t, fontsize=7)
    ax = fig.add_subplot(grid[-1, 0:2])
    det = table["detectable"].to_numpy(bool)
    for sel, colour, label in ((~det, "0.6", "not detectable"), (det, "tab:red", "detectable Hα")):
        x, y = table["flux_true"].to_numpy()[sel], table["flux_pred"].to_numpy()[sel]
        ok = (x > 0) & (y > 0)
        ax.scatter(x[ok], y[ok], s=5, alpha=0.6, color=colour, label=f"{label} (n={ok.sum()})")
    lim = [max(1.0, np.nanmin(table["flux_true"][table["flux_true"] > 0], initial=1.0)), None]
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.6)
    ax.set_xlabel("true total Hα flux (1e-17 erg/s/cm²)")
    ax.set_ylabel("predicted total Hα flux")
    if "detectable" in metrics.index:
        m = metrics.loc["detectable"]
        ax.set_title(
            f"detectable: scatter {m['flux_log_scatter_dex']:.3f} dex, median pixel r = {m['pixel_corr_median']:.2f}",
            fontsize=7,
        )
    ax.legend(fontsize=6)
    del lim
    ax = fig.add_subplot(grid[-1, 2:4])
    po, pp = ex["profile_observed"], ex["profile_predicted"]
    if len(po):
        r = (np.arange(po.shape[1]) + 0.5) * float(ex["attrs"].get("pixscale_arcsec", 1.0))
        ax.plot(r, np.nanmedian(po, 0), color="k", label="observed (median of detectable)")
        ax.plot(r, np.nanmedian(pp, 0), color="tab:red", label="predicted")
        ax.set_yscale("symlog", linthresh=max(1e-3, 0.01 * float(np.nanmax(np.nanmedian(po, 0)))))
    ax.set_xlabel("radius (arcsec)")
    ax.set_ylabel("Hα surface brightness (per pixel)")
    ax.legend(fontsize=6)
    fig.suptitle("u,g,r,i,z -> Hα: the U-Net's Hα maps of held-out galaxies", fontsize=9)
    return fig


def realism_figure(examples_path: str, c2st_path: str) -> plt.Figure:
    """Real Galaxy Zoo DECaLS images (top) and mock galaxies drawn the same way (bottom), and the test's result."""
    ex = np.load(examples_path)
    table = pd.read_csv(c2st_path)
    real, mock = ex["real"], ex["mock"]
    n = max(len(real), len(mock), 1)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0), squeeze=False, layout="constrained")
    for r, (images, ids, label) in enumerate(
        ((real, ex["real_ids"], "real (Galaxy Zoo DECaLS)"), (mock, ex["mock_ids"], "mock, same recipe"))
    ):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c])
                ax.set_title(str(ids[c]), fontsize=5)
        axes[r, 0].set_ylabel(label, fontsize=7)
    clf = table[table["statistic"] == "classifier"].set_index("comparison")
    parts = [f"{k.replace('_', ' ')}: ROC AUC {row['roc_auc']:.2f}" for k, row in clf.iterrows()]
    fig.suptitle("Real vs mock galaxies as Galaxy Zoo DECaLS images; two-sample test " + ", ".join(parts), fontsize=8)
    return fig


def unified_figure(
    translations_path: str, retrieval_path: str, classification_path: str, metrics_path: str
) -> plt.Figure:
    """One held-out galaxy in every survey, real and translated from each survey alone; retrieval and classification."""
    import h5py

    with h5py.File(translations_path, "r") as fh:
        surveys = [str(s) for s in fh.attrs["surveys"]]
        sources = [s for s in (str(v) for v in fh.attrs["sources"]) if s in surveys]
        n = len(fh["ids"])
        gid = fh["ids"][0].decode() if n else "none"
        bands = {s: [str(b) for b in fh.attrs[f"bands_{s}"]] for s in surveys}
        sigma = {s: list(fh.attrs[f"sky_sigma_{s}"]) for s in surveys}
        real = {s: fh[f"real/{s}"][0] for s in surveys} if n else {}
        trans = {(a, s): fh[f"from_{a}/{s}"][0] for a in sources for s in surveys} if n else {}
    rows = 1 + len(sources)
    fig = plt.figure(figsize=(1.3 * len(surveys) + 0.5, 1.3 * rows + 3.2))
    grid = fig.add_gridspec(rows + 2, len(surveys), height_ratios=[1] * rows + [0.25, 2.4])
    for c, s in enumerate(surveys):
        for r in range(rows):
            ax = fig.add_subplot(grid[r, c])
            if not n:
                ax.axis("off")
                continue
            image = real[s] if r == 0 else trans[(sources[r - 1], s)]
            _show(ax, image, bands[s], sigma[s] if np.all(np.isfinite(sigma[s])) else None, s if r == 0 else None)
            if c == 0:
                ax.set_ylabel("real" if r == 0 else f"from {sources[r - 1]}", fontsize=7)
    half = max(1, len(surveys) // 2)
    ax = fig.add_subplot(grid[rows + 1, :half])
    ret = read_table(retrieval_path)
    names = list(dict.fromkeys(ret["source"]))
    for method, marker in (("unified", "o"), ("measured", "x")):
        m = ret[ret["method"] == method]
        ax.plot(np.arange(len(m)), m["top1"], marker, label=method, ms=4)
    m = ret[ret["method"] == "unified"]
    ax.set_xticks(np.arange(len(m)), [f"{a}→{b}" for a, b in zip(m["source"], m["target"], strict=True)],
                  rotation=90, fontsize=5)  # fmt: skip
    ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("retrieval top-1")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6)
    ax.set_title(f"retrieval among {int(m['n_galaxies'].min()) if len(m) else 0}+ test galaxies ({len(names)} surveys)",
                 fontsize=7)  # fmt: skip
    ax = fig.add_subplot(grid[rows + 1, half:])
    cls = read_table(classification_path)
    mean = cls.groupby("model", sort=False)["balanced_accuracy"].mean()
    ax.barh(np.arange(len(mean)), mean.to_numpy(), color=["grey"] + ["C0"] * (len(mean) - 1))
    ax.set_yticks(np.arange(len(mean)), [str(k).replace("unified_", "from ") for k in mean.index], fontsize=6)
    ax.set_xlabel("balanced accuracy (mean of the questions)")
    ax.set_xlim(0, 1)
    ax.set_title("forest trained on DECaLS latents", fontsize=7)
    metrics = read_table(metrics_path)
    inv = metrics[metrics["use"] == "invariance"]
    text = ", ".join(f"{r['metric'].removeprefix('above_chance_')} {r['value']:+.2f}" for _, r in inv.iterrows())
    fig.suptitle(f"One latent space for every survey ({gid}); survey probe above chance: {text}", fontsize=8)
    return fig


FIGURES: dict[str, Callable[..., plt.Figure]] = {
    "survey_examples": survey_examples_figure,
    "sersic_truth": sersic_truth_figure,
    "sersic_residuals": sersic_residuals_figure,
    "morphometry": morphometry_figure,
    "vae": vae_figure,
    "outliers": outliers_figure,
    "classify": classify_figure,
    "flow": flow_figure,
    "domain": domain_figure,
    "superres": superres_figure,
    "halpha": halpha_figure,
    "realism": realism_figure,
    "unified": unified_figure,
}


def make_figure(name: str, inputs: Mapping[str, Any], pdf_path: str, png_path: str) -> None:
    """Draw figure ``name`` of :data:`FIGURES` from ``inputs`` (its keyword arguments) and save it."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r} (known: {', '.join(FIGURES)})")
    with plt.style.context(STYLE):
        fig = FIGURES[name](**inputs)
        save(fig, pdf_path, png_path)
