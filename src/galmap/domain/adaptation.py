"""From survey A to survey B: the classifier of the source survey on a target survey, without target labels.

The source is the survey the classifier was trained on (DECaLS g,r,z, labelled
by Galaxy Zoo); the target is another survey of the same sky (BASS g,r + MzLS z:
coarser pixels in g,r, a broader PSF, less depth) whose labels are never used
for training or model selection, only to score the predictions.

**Input grid.** Each target band is resampled from its native grid to the
source grid (:mod:`galmap.core.resample`: Lanczos-3, flux-conserving, variance
propagated; SDSS 0.396''/px -> 0.262''/px; the BASS and MzLS coadds are already on it, BASS's
native 0.454''/px where ``mock.systematics.coadd`` is off) and put on the
source's asinh scale (the source shards' ``norm_softening``): the same flux in
nanomaggies gives the same network input in both surveys, and what differs is
what the surveys really differ in (resolution, PSF, noise).

**Methods.**

- ``source_only``: the source classifier applied to the target unchanged.
- ``adabn`` (adaptive batch normalisation, Li et al. 2016, the simple
  comparison): the source classifier with every batch-norm layer's running mean
  and variance re-estimated on unlabelled target images; no weight changes.
- ``dann`` (domain-adversarial training, Ganin et al. 2016, the established
  method): the source classifier fine-tuned on labelled source batches while a
  domain discriminator, behind a gradient-reversal layer, learns to tell source
  features from target features and the feature extractor learns to prevent it:
  the two surveys are pushed to one feature distribution (the paper's idea that
  the same galaxies seen by two surveys should share one latent distribution),
  while the heads keep classifying the source.
- ``distill`` (cross-survey distillation on the overlap; knowledge distillation,
  Hinton et al. 2015, between two views of the same objects, Gupta et al. 2016):
  the two surveys observe the same galaxies, so for each galaxy outside the test
  split the source classifier's view of its source image (orientation-averaged
  class probabilities and pooled features) becomes the target of an ensemble of
  copies of the classifier reading its target image. No label of either survey
  is read; the students are models of the target survey.

**Reference** (optional, ``domain.reference``): ``target_supervised``, the same
CNN trained from scratch on the *target* images with their labels (same splits).
It uses target labels, so it is not an adaptation method: it measures how much
of the source-to-target drop is recoverable at all (what the target's images
still contain) rather than lost with the resolution and depth.

**No target label in training.** Target images enter training through
:func:`target_loader` and :func:`paired_loader`, which read pixels only (no ids
reach the step, no labels exist in them); galaxies in the test split of any
question are left out of the unlabelled target pool; the number of epochs is
fixed (no early stopping on anything measured on the target).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from galmap.classify.cnn import MorphologyCNN, masked_cross_entropy, target_lookup
from galmap.classify.cnn import loader as cnn_loader
from galmap.core.failures import FailureLog
from galmap.core.io import Shard, read_shard
from galmap.core.resample import resample_stamps
from galmap.nn.adversarial import reversal_strength, reverse_gradient
from galmap.nn.augment import dihedral_views, random_dihedral
from galmap.nn.inputs import ShardCache, ShardInputs, ShardStream, shard_inputs
from galmap.nn.training import TrainSettings, data_digest, derived_seed, train

log = logging.getLogger("galmap")

#: the source classifier unadapted and the two unsupervised adaptations
METHODS = ("source_only", "adabn", "dann", "distill")
#: the optional reference trained on the target's own labels (``domain.reference``): an upper bound, not a method
REFERENCE = "target_supervised"


# --------------------------------------------------------------------------- target images
def target_shard(
    source: Shard, components: Mapping[str, Shard], band_surveys: Mapping[str, str], failures: FailureLog | None = None
) -> Shard:
    """The target survey's images of ``source``'s galaxies on the source's grid and asinh scale.

    ``components`` maps a survey name to its preprocessed shard; ``band_surveys``
    maps each band of the source to the target survey observing it (e.g.
    ``{"g": "bass", "r": "bass", "z": "mzls"}``). Galaxies absent from a target
    shard, or without valid pixels in a band, keep ``ivar = 0`` in that band and
    are recorded in ``failures``; every source galaxy stays in the output.
    """
    bands = [str(b) for b in source.attrs["bands"]]
    if missing := [b for b in bands if b not in band_surveys]:
        raise ValueError(f"domain: no target survey observes band(s) {', '.join(missing)} of the source")
    n, _, size, _ = source.images.shape
    scale = float(source.attrs["pixscale_arcsec"])
    images = np.zeros((n, len(bands), size, size), np.float32)
    ivar = np.zeros_like(images)
    flags = np.zeros(n, np.int32)
    src_ids = [str(i) for i in source.ids]
    psf, units, origin = [], [], []
    for b, band in enumerate(bands):
        name = band_surveys[band]
        if name not in components:
            raise ValueError(f"domain: the shard of target survey {name!r} (band {band}) was not given")
        comp = components[name]
        if band not in comp.bands:
            raise ValueError(f"domain: target survey {name!r} has no band {band!r} (it has {comp.bands})")
        k = comp.bands.index(band)
        row = {str(g): i for i, g in enumerate(comp.ids)}
        have = np.array([g in row for g in src_ids])
        idx = np.array([row.get(g, -1) for g in src_ids], dtype=np.int64)
        cscale = float(comp.attrs["pixscale_arcsec"])
        if have.any():
            sel = idx[have]
            img, iv = resample_stamps(comp.images[sel, k : k + 1], comp.ivar[sel, k : k + 1], cscale, size, scale)
            images[have, b], ivar[have, b] = img[:, 0], iv[:, 0]
            if "flags" in comp.extra:
                flags[have] |= np.asarray(comp.extra["flags"], np.int32)[sel]
        psf.append(float(comp.attrs["psf_fwhm_arcsec"][k]))
        units.append(str(comp.attrs.get("units", ["nanomaggy"] * len(comp.bands))[k]))
        origin.append(f"{band}: {name} {cscale}''/px x{comp.images.shape[-1]}")
        if failures is not None:
            for g in np.asarray(src_ids)[~have]:
                failures.add(g, f"domain: galaxy not in the {name} shard (band {band})")
            empty = have & ~(ivar[:, b] > 0).any(axis=(1, 2))
            for g in np.asarray(src_ids)[empty]:
                failures.add(g, f"domain: no valid {name} pixel in band {band}")
    surveys = list(dict.fromkeys(band_surveys[b] for b in bands))
    attrs = {
        "survey": "+".join(surveys),
        "bands": bands,
        "pixscale_arcsec": scale,
        "psf_fwhm_arcsec": psf,
        "units": units,
        "source": source.attrs.get("source", "unknown"),
        "norm": "asinh",
        "norm_softening": list(source.attrs["norm_softening"]),
        "norm_from": str(source.attrs["survey"]),
        "resampled_from": origin,
        "preprocessed": True,
    }
    return Shard(images=images, ivar=ivar, ids=np.asarray(src_ids, dtype=object), attrs=attrs, extra={"flags": flags})


def target_loader(exclude: set[str]):
    """Read a target shard into unlabelled network inputs, leaving out the galaxies in ``exclude``.

    The inputs carry no targets (``y`` is None): this is the only way target
    images enter training.
    """

    def load(path: Path) -> ShardInputs:
        data = shard_inputs(read_shard(path, datasets=()), 0, 0.0, 0.0, 0.0)
        keep = np.array([str(g) not in exclude for g in data.ids], bool)
        kept = data.select(keep)
        return dataclasses.replace(kept, split=np.full(len(kept), "train", dtype=object))

    return load


def held_out_galaxies(targets: pd.DataFrame) -> set[str]:
    """Ids of the galaxies in the test split of any question (never used for adaptation)."""
    return set(targets.loc[targets["split"] == "test", "id"].astype(str))


# --------------------------------------------------------------------------- AdaBN
@torch.no_grad()
def adapt_batchnorm(model: nn.Module, batches: Iterator[torch.Tensor] | Sequence[torch.Tensor]) -> nn.Module:
    """A copy of ``model`` whose batch-norm statistics are re-estimated on ``batches`` of target images.

    The running mean and variance become averages over all target images (each
    batch weighted by its size: the momentum of batch ``k`` is
    ``n_k / (n_1 + ... + n_k)``); dropout stays off and no weight changes.
    """
    out = copy.deepcopy(model)
    out.eval()
    bns = [m for m in out.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError("adaptive batch normalisation needs a network with batch-norm layers")
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.train()
    device = next(out.parameters()).device
    seen = 0
    for x in batches:
        if not len(x):
            continue
        for m in bns:
            m.momentum = len(x) / (seen + len(x))
        out(x.to(device))
        seen += len(x)
    if not seen:
        raise ValueError("adaptive batch normalisation got no target image")
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
        m.eval()
    return out


# --------------------------------------------------------------------------- DANN
class DomainAdversarial(nn.Module):
    """A :class:`~galmap.classify.cnn.MorphologyCNN` and a domain discriminator on its pooled features."""

    def __init__(self, classifier: nn.Module, hidden: int = 64) -> None:
        super().__init__()
        self.classifier = classifier
        features = int(classifier.channels[-1])
        self.discriminator = nn.Sequential(
            nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor, strength: float = 1.0) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Class logits of every question, and the domain logit (target = 1) behind the gradient reversal."""
        h = self.classifier.body(x)
        logits = [head(h) for head in self.classifier.heads]
        return logits, self.discriminator(reverse_gradient(h, strength)).squeeze(1)


def _dann_step(domain_weight: float, augment_images: bool):
    """The step of :func:`galmap.nn.training.train` for a :class:`DomainAdversarial` model.

    Training batches are ``(x_source, w_source, y_source, x_target, strength)``:
    the loss is the source's masked cross-entropy plus ``domain_weight`` times the
    discriminator's binary cross-entropy (source 0, target 1), whose gradient
    reaches the features reversed and scaled by ``strength``. Validation batches
    are source ``(x, w, y)`` and report the source's classification loss only.
    """

    def step(model: DomainAdversarial, batch, epoch: int, gen: torch.Generator, training: bool):
        device = next(model.parameters()).device
        if not training:
            x, _w, y = batch
            loss, acc = masked_cross_entropy(model.classifier(x.to(device)), y.to(device))
            return {"loss": loss, "accuracy": acc}
        xs, _ws, ys, xt, strength = batch
        xs, ys, xt = xs.to(device), ys.to(device), xt.to(device)
        if augment_images:
            xs, xt = random_dihedral(xs, gen), random_dihedral(xt, gen)
        logits, dom = model(torch.cat([xs, xt]), strength)
        ns = len(xs)
        ce, acc = masked_cross_entropy([lg[:ns] for lg in logits], ys)
        truth = torch.cat([dom.new_zeros(ns), dom.new_ones(len(xt))])
        dl = F.binary_cross_entropy_with_logits(dom, truth)
        dacc = ((dom > 0).float() == truth).float().mean()
        return {
            "loss": ce + domain_weight * dl,
            "class_loss": ce,
            "accuracy": acc,
            "domain_loss": dl,
            "domain_accuracy": dacc,
        }

    return step


def _endless_images(stream: ShardStream, first_epoch: int) -> Iterator[torch.Tensor]:
    """The images of ``stream``'s epochs ``first_epoch``, ``first_epoch + 1``, ... one batch at a time, forever."""
    epoch = first_epoch
    while True:
        empty = True
        for batch in stream.epoch(epoch):
            empty = False
            yield batch[0]
        if empty:
            raise ValueError("domain adaptation: no unlabelled target image outside the test split")
        epoch += 1


def _fingerprint(
    params: Mapping[str, Any],
    what: list[str],
    source_paths: Sequence[str | Path],
    target_paths: Sequence[str | Path],
    classifier: MorphologyCNN,
) -> str:
    """What a fine-tuning's checkpoint must match to be resumed: settings, data files and the source classifier."""
    return repr(
        (sorted(params.items()), what, [str(p) for p in source_paths], [str(p) for p in target_paths])
    ) + data_digest(list(source_paths), list(target_paths), list(classifier.state_dict().values()))


def _fine_tune(
    build,
    step,
    batches,
    val: ShardStream,
    params: Mapping[str, Any],
    init_seed: int,
    train_seed: int,
    epochs: int,
    fingerprint: str,
    desc: str,
    checkpoint: str | Path | None,
    progress: bool,
) -> tuple[nn.Module, pd.DataFrame]:
    """Fine-tune the model ``build()`` makes (after seeding torch with ``init_seed``) for a fixed schedule.

    ``epochs`` epochs of ``step`` over ``batches(epoch)``, validated on ``val``, with the
    config section's ``learning_rate`` and ``weight_decay``; the last epoch is kept.
    """
    torch.manual_seed(init_seed)
    model = build()
    settings = TrainSettings(
        max_epochs=epochs,
        patience=epochs,
        learning_rate=float(params["learning_rate"]),
        seed=train_seed,
        weight_decay=float(params["weight_decay"]),
        keep="last",
        bf16=bool(params.get("bf16", False)),
    )
    state, history = train(
        model,
        step,
        batches,
        lambda: val.epoch(0),
        settings,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        desc=desc,
        progress=progress,
    )
    model.load_state_dict(state)
    return model, history


def train_dann(
    classifier: MorphologyCNN,
    source_paths: Sequence[str | Path],
    target_paths: Sequence[str | Path],
    targets: pd.DataFrame,
    questions: Sequence[str],
    params: Mapping[str, Any],
    seed: int,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[MorphologyCNN, pd.DataFrame]:
    """Fine-tune the source ``classifier`` domain-adversarially; return the adapted classifier and the history.

    ``targets`` holds the **source** labels and splits (:func:`galmap.classify.targets.make_targets`);
    the target shards are read by :func:`target_loader`, without labels, leaving
    out the test galaxies. ``params`` is the config's ``domain.dann`` section.
    The last epoch's weights are kept (a fixed schedule: nothing measured on the
    target chooses the model).
    """
    device = next(classifier.parameters()).device
    lookup = target_lookup(targets, questions)
    bs = int(params["batch_size"])
    cache = float(params.get("cache_mb", 4000))
    source = ShardStream(source_paths, cnn_loader(lookup, len(questions), "train"), None, bs, seed, cache)
    val = ShardStream(source_paths, cnn_loader(lookup, len(questions), "val"), None, 4 * bs, seed, cache, shuffle=False)
    target = ShardStream(target_paths, target_loader(held_out_galaxies(targets)), None, bs, seed + 1, cache)
    epochs = int(params["max_epochs"])

    def batches(epoch: int) -> Iterator[tuple]:
        src = list(source.epoch(epoch))
        tgt = _endless_images(target, epoch * 1000)  # the target pool may be smaller than the source's
        for i, (xs, ws, ys) in enumerate(src):
            yield xs, ws, ys, next(tgt), reversal_strength((epoch + i / len(src)) / epochs)

    model, history = _fine_tune(
        lambda: DomainAdversarial(copy.deepcopy(classifier), int(params["hidden"])).to(device),
        _dann_step(float(params["domain_weight"]), bool(params["augment"])),
        batches,
        val,
        params,
        derived_seed(seed, 0xDA, 0),
        derived_seed(seed, 0xDA, 1),
        epochs,
        _fingerprint(params, list(questions), source_paths, target_paths, classifier)
        + repr(pd.util.hash_pandas_object(targets, index=False).sum()),
        "DANN",
        checkpoint,
        progress,
    )
    return model.classifier.eval(), history


# --------------------------------------------------------------------------- cross-survey distillation
class CNNEnsemble(nn.Module):
    """``members`` :class:`~galmap.classify.cnn.MorphologyCNN` of one architecture, class probabilities averaged.

    The forward pass returns, per question, the logarithm of the members' mean
    probabilities, so ``softmax`` of the output is that mean (what
    :func:`galmap.classify.cnn.predict` reports).
    """

    def __init__(
        self, in_channels: int, n_classes: Sequence[int], channels: Sequence[int], dropout: float, members: int
    ) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"an ensemble needs at least one member, not {members}")
        self.members = nn.ModuleList(
            MorphologyCNN(in_channels, n_classes, channels, dropout) for _ in range(int(members))
        )

    @classmethod
    def of(cls, model: MorphologyCNN, members: int) -> CNNEnsemble:
        """An ensemble whose every member starts as a copy of ``model``."""
        out = cls(**model.config(), members=members).to(next(model.parameters()).device)
        for m in out.members:
            m.load_state_dict(model.state_dict())
        return out

    def config(self) -> dict[str, Any]:
        """The constructor arguments (stored with the weights)."""
        return self.members[0].config() | {"members": len(self.members)}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per question, log of the mean class probability over the members (N, n_classes[q])."""
        outs = [m(x) for m in self.members]
        return [
            torch.logsumexp(torch.stack([F.log_softmax(o[q], 1) for o in outs]), 0) - np.log(len(outs))
            for q in range(len(outs[0]))
        ]


@torch.no_grad()
def teacher_targets(teacher: MorphologyCNN, x: torch.Tensor, temperature: float, batch_size: int = 256) -> torch.Tensor:
    """What the source classifier says about source images ``x``: (N, F + sum of classes).

    Per galaxy: its pooled features (F = the last convolution's channels) and,
    per question, its class probabilities softened by ``temperature``, both
    averaged over the galaxy's 8 orientations (a galaxy's class does not depend
    on how it lies on the sky).
    """
    teacher.eval()
    device = next(teacher.parameters()).device
    parts = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        feats, probs = 0.0, None
        for view in dihedral_views(xb):
            h = teacher.body(view)  # eval mode: the final dropout is the identity
            p = [F.softmax(head(h) / temperature, 1) for head in teacher.heads]
            feats = feats + h
            probs = p if probs is None else [a + b for a, b in zip(probs, p, strict=True)]
        parts.append(torch.cat([feats / 8, *[q / 8 for q in probs]], 1).cpu())
    n_out = int(teacher.channels[-1]) + sum(teacher.n_classes)
    return torch.cat(parts) if parts else torch.zeros((0, n_out))


def paired_loader(
    teacher: MorphologyCNN, target_of: Mapping[Path, Path], exclude: set[str], params: Mapping[str, Any], seed: int
):
    """Read a source shard and its target shard into target images whose ``y`` is the teacher's view of the source.

    ``target_of`` maps each source shard to the target shard of the same
    galaxies (:func:`target_shard`, same ids in the same order). Galaxies in
    ``exclude`` (the test split) and those without target pixels are left out;
    no label is read. ``split`` marks a fixed ``val_fraction`` of the galaxies
    (by a hash of the id) as ``val``: the distillation loss there is monitored,
    never used to choose the model. Loaded shards are kept (up to ``cache_mb``)
    so that the training and the monitoring streams share one teacher pass.
    """
    temperature = float(params["temperature"])
    val_fraction = float(params["val_fraction"])
    cache = ShardCache(float(params.get("cache_mb", 4000)))

    def load(path: Path) -> ShardInputs:
        return cache.get(Path(path), read)

    def read(path: Path) -> ShardInputs:
        src = shard_inputs(read_shard(path, datasets=()), 0, 0.0, 0.0, 0.0)
        tgt = shard_inputs(read_shard(target_of[Path(path)], datasets=()), seed, val_fraction, 0.0, 0.0)
        if [str(g) for g in src.ids] != [str(g) for g in tgt.ids]:
            raise ValueError(f"distillation: {target_of[Path(path)]} does not hold the galaxies of {path} in order")
        keep = np.array([str(g) not in exclude for g in tgt.ids], bool)
        keep &= (tgt.w.flatten(1) > 0).any(1).numpy()
        kept = tgt.select(keep)
        y = teacher_targets(teacher, src.x[torch.as_tensor(np.flatnonzero(keep))], temperature)
        return dataclasses.replace(kept, y=y)

    return load


def _distill_step(n_features: int, n_classes: Sequence[int], params: Mapping[str, Any]):
    """The step of :func:`galmap.nn.training.train` for a :class:`CNNEnsemble` learning from the teacher's targets.

    Batches are ``(x_target, w, y_teacher)``. Each member sees its own random
    rotation/flip of the target images (the teacher's targets are averages over
    all orientations) and is penalised by the Kullback-Leibler divergence of
    its softened class probabilities from the teacher's (times
    ``temperature**2``, Hinton et al. 2015), summed over questions, plus
    ``feature_weight`` times the mean squared difference of its pooled features
    from the teacher's. The loss is the sum over members.
    """
    temperature = float(params["temperature"])
    feature_weight = float(params["feature_weight"])
    augment_images = bool(params["augment"])
    bounds = np.cumsum([n_features, *n_classes])

    def step(model: CNNEnsemble, batch, epoch: int, gen: torch.Generator, training: bool):
        device = next(model.parameters()).device
        x, _w, y = batch
        x, y = x.to(device), y.to(device)
        feats, probs = y[:, :n_features], [y[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        kl = feat = x.new_zeros(())
        for member in model.members:
            xm = random_dihedral(x, gen) if training and augment_images else x
            h = member.body[:-1](xm)  # the pooled features, before the final dropout
            hd = member.body[-1](h)
            for head, p in zip(member.heads, probs, strict=True):
                logq = F.log_softmax(head(hd) / temperature, 1)
                kl = kl + F.kl_div(logq, p, reduction="batchmean") * temperature**2
            feat = feat + F.mse_loss(h, feats)
        return {
            "loss": kl + feature_weight * feat,
            "kl": kl / len(model.members),
            "feature_mse": feat / len(model.members),
        }

    return step


def train_distill(
    classifier: MorphologyCNN,
    source_paths: Sequence[str | Path],
    target_paths: Sequence[str | Path],
    exclude: set[str],
    params: Mapping[str, Any],
    seed: int,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[CNNEnsemble, pd.DataFrame]:
    """Cross-survey distillation: an ensemble reading target images that says what ``classifier`` says of the source's.

    The galaxies observed by both surveys (outside ``exclude``, the test split)
    pair a source image with a target image. The source ``classifier`` (the
    teacher) gives each pair its orientation-averaged class probabilities and
    features (:func:`teacher_targets`); ``params["members"]`` copies of it (the
    students) are trained on the target images to reproduce them
    (:func:`_distill_step`), and their probabilities are averaged. No label of
    either survey is read. ``params`` is the config's ``domain.distill``
    section; the last epoch is kept (a fixed schedule).
    """
    if len(source_paths) != len(target_paths):
        raise ValueError(f"distillation: {len(source_paths)} source shards but {len(target_paths)} target shards")
    device = next(classifier.parameters()).device
    teacher = copy.deepcopy(classifier).eval()
    bs = int(params["batch_size"])
    cache = float(params.get("cache_mb", 4000))
    target_of = {Path(s): Path(t) for s, t in zip(source_paths, target_paths, strict=True)}
    load = paired_loader(teacher, target_of, exclude, params, seed)
    stream = ShardStream(source_paths, load, "train", bs, seed, cache)
    val = ShardStream(source_paths, load, "val", 4 * bs, seed, cache, shuffle=False)
    if not stream.size():
        raise ValueError("distillation: no galaxy with both a source and a target image outside the test split")
    epochs = int(params["epochs"])
    model, history = _fine_tune(
        lambda: CNNEnsemble.of(classifier, int(params["members"])).to(device),
        _distill_step(int(classifier.channels[-1]), classifier.n_classes, params),
        stream.epoch,
        val,
        params,
        derived_seed(seed, 0xD157, 0),  # the students' dropout
        derived_seed(seed, 0xD157, 1),
        epochs,
        _fingerprint(params, sorted(exclude), source_paths, target_paths, classifier),
        "distillation",
        checkpoint,
        progress,
    )
    return model.eval(), history


# --------------------------------------------------------------------------- evaluation
def target_batches(
    paths: Sequence[str | Path | ShardInputs], exclude: set[str], batch_size: int
) -> Iterator[torch.Tensor]:
    """Unlabelled target images outside ``exclude``, shard by shard, in batches (for :func:`adapt_batchnorm`).

    ``paths``: the target shards, each a path or its inputs already read (every galaxy: the
    ``exclude``-d ones are left out here, as :func:`target_loader` does).
    """
    load = target_loader(exclude)
    for path in paths:
        if isinstance(path, ShardInputs):
            x = path.select(np.array([str(g) not in exclude for g in path.ids], bool)).x
        else:
            x = load(Path(path)).x
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]


def paired_change(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float, int]:
    """Accuracy of predictions ``b`` minus that of ``a`` on their common test galaxies, its standard error, and n.

    The standard error is that of the mean of the per-galaxy differences of
    correctness (a paired comparison: both models classify the same galaxies).
    """
    key = ["id", "question"]
    m = a[key + ["true_class", "pred_class"]].merge(b[key + ["pred_class"]], on=key, suffixes=("_a", "_b"))
    if not len(m):
        return np.nan, np.nan, 0
    d = (m["pred_class_b"] == m["true_class"]).astype(float) - (m["pred_class_a"] == m["true_class"]).astype(float)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else np.nan
    return float(d.mean()), se, len(d)


def domain_metrics(
    predictions: Mapping[tuple[str, str], pd.DataFrame],
    targets: pd.DataFrame,
    classes: Mapping[str, Sequence[str]],
    resamples: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Per question, method and domain: test accuracy (with its standard error), macro F1, n_test, and the change.

    ``predictions`` maps ``(method, domain)`` (domain ``"source"`` or ``"target"``)
    to a prediction table. ``change`` is the paired accuracy difference to
    ``source_only`` on the same domain (``change_se`` its standard error);
    ``recovered`` (target rows) is the fraction of the source-to-target drop of
    ``source_only`` that the method wins back. A row ``question = "mean"``
    averages every column over the questions (its standard errors are those of
    the mean, its ``n_test`` the number of galaxy-question pairs).

    With ``resamples`` > 0, ``accuracy_lo/hi`` and ``change_lo/hi`` are 68 %
    bootstrap intervals (:func:`bootstrap_intervals`: the test galaxies
    resampled, every model and question on the same resamples, so the change is
    a paired bootstrap), and target rows get ``drop`` (source-only's accuracy on
    the source minus on the target, the same galaxies) with ``drop_se`` and
    ``drop_lo/hi``.
    """
    from galmap.classify.targets import score_predictions

    tests = {k: p[p["split"] == "test"] for k, p in predictions.items()}
    flat = {f"{m}@{d}": p for (m, d), p in tests.items()}
    scored, _ = score_predictions(flat, targets, classes)
    scored[["method", "domain"]] = scored["model"].str.split("@", expand=True)
    rows = []
    for _, r in scored.iterrows():
        base = tests.get(("source_only", r["domain"]))
        mine = tests[(r["method"], r["domain"])]
        q = r["question"]
        change, change_se, _ = (
            paired_change(base[base["question"] == q], mine[mine["question"] == q])
            if base is not None
            else (np.nan, np.nan, 0)
        )
        acc, n = r["accuracy"], r["n_test"]
        rows.append(
            {
                "question": q,
                "method": r["method"],
                "domain": r["domain"],
                "n_test": int(n),
                "accuracy": acc,
                "accuracy_se": float(np.sqrt(acc * (1 - acc) / n)) if n else np.nan,
                "f1_macro": r["f1_macro"],
                "chance_accuracy": r["chance_accuracy"],
                "change": change,
                "change_se": change_se,
            }
        )
    out = pd.DataFrame(rows)
    ref = out[out["method"] == "source_only"].set_index(["question", "domain"])["accuracy"]
    drop = ref.xs("source", level="domain") - ref.xs("target", level="domain") if len(ref) else pd.Series(dtype=float)
    tgt = out["domain"] == "target"
    d = out.loc[tgt, "question"].map(drop)
    out.loc[tgt, "recovered"] = out.loc[tgt, "change"] / d.where(d > 0)
    groups = out.groupby(["method", "domain"], sort=False)
    means = groups.mean(numeric_only=True).reset_index()
    means["question"] = "mean"
    means["n_test"] = groups["n_test"].sum().to_numpy()
    for col in ("accuracy_se", "change_se"):  # of the mean over questions (their test sets taken as independent)
        means[col] = groups[col].apply(lambda se: float(np.sqrt((se**2).sum(min_count=1)) / se.count())).to_numpy()
    mean_drop = drop.mean() if len(drop) else np.nan
    mt = means["domain"] == "target"
    means.loc[mt, "recovered"] = means.loc[mt, "change"] / mean_drop if mean_drop > 0 else np.nan
    out = pd.concat([out, means], ignore_index=True)
    if resamples > 0:
        out = out.merge(bootstrap_intervals(tests, list(classes), resamples, seed), how="left",
                        on=["question", "method", "domain"])  # fmt: skip
        so = {d: tests.get(("source_only", d)) for d in ("source", "target")}
        if so["source"] is not None and so["target"] is not None:
            src, tgt_p = so["source"], so["target"]
            se = {q: paired_change(src[src["question"] == q], tgt_p[tgt_p["question"] == q])[1] for q in classes}
            ses = pd.Series(se, dtype=float)
            se["mean"] = float(np.sqrt((ses**2).sum(min_count=1)) / ses.count()) if ses.count() else np.nan
            on_target = out["domain"] == "target"
            out.loc[on_target, "drop"] = out.loc[on_target, "question"].map(drop.to_dict() | {"mean": mean_drop})
            out.loc[on_target, "drop_se"] = out.loc[on_target, "question"].map(se)
        return out.reindex(columns=METRIC_COLUMNS + INTERVAL_COLUMNS)
    return out.reindex(columns=METRIC_COLUMNS)


def _correctness(pred: pd.DataFrame, ids: Sequence[str], questions: Sequence[str]) -> np.ndarray:
    """(galaxies, questions) matrix of 1 (right), 0 (wrong) and NaN (no prediction) on the galaxies ``ids``."""
    row = {g: i for i, g in enumerate(ids)}
    col = {q: j for j, q in enumerate(questions)}
    out = np.full((len(ids), len(questions)), np.nan)
    p = pred[pred["question"].isin(col) & pred["id"].astype(str).isin(row)]
    out[p["id"].astype(str).map(row).to_numpy(), p["question"].map(col).to_numpy()] = (
        p["true_class"].to_numpy() == p["pred_class"].to_numpy()
    )
    return out


def bootstrap_intervals(
    tests: Mapping[tuple[str, str], pd.DataFrame], questions: Sequence[str], resamples: int, seed: int
) -> pd.DataFrame:
    """68 % bootstrap intervals of the accuracies, changes and drop per question, method and domain (and the mean).

    ``tests`` maps ``(method, domain)`` to the predictions on the test split. The
    unit resampled is the galaxy (all of its questions together), with
    :func:`galmap.core.stats.bootstrap_interval` and one seed for every statistic,
    so every model is scored on the same resamples: ``change_lo/hi`` (to
    ``source_only`` on the same domain) and ``drop_lo/hi`` (``source_only``,
    source minus target) are paired bootstraps. The ``mean`` row's statistic is
    the mean over the questions of the resampled accuracies.
    """
    from galmap.core.stats import bootstrap_interval

    ids = sorted({str(g) for p in tests.values() for g in p["id"]})
    correct = {k: _correctness(p, ids, questions) for k, p in tests.items()}
    n = len(ids)
    so_source, so_target = ("source_only", "source"), ("source_only", "target")

    right = {k: np.where(np.isfinite(c), c, 0.0) for k, c in correct.items()}
    have = {k: np.isfinite(c).astype(float) for k, c in correct.items()}
    cache: dict[tuple[tuple[str, str], int], np.ndarray] = {}  # every call draws the same resamples: score each once

    def accuracies(key: tuple[str, str], idx: np.ndarray) -> np.ndarray:
        """Per question, the accuracy of ``key`` on the resampled galaxies ``idx``; the mean of them last."""
        tag = (key, hash(idx.tobytes()))
        if tag not in cache:
            w = np.bincount(idx, minlength=n).astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                a = (w @ right[key]) / (w @ have[key])
            cache[tag] = np.append(a, np.mean(a))
        return cache[tag]

    def interval(a: tuple[str, str], b: tuple[str, str] | None, j: int) -> tuple[float, float]:
        """Interval of entry ``j`` of ``accuracies(a) - accuracies(b)`` (just ``accuracies(a)`` when b is None)."""
        if b is None:
            return bootstrap_interval(lambda idx: accuracies(a, idx)[j], n, seed, resamples)
        return bootstrap_interval(lambda idx: accuracies(a, idx)[j] - accuracies(b, idx)[j], n, seed, resamples)

    rows = []
    for key in correct:
        method, domain = key
        base = ("source_only", domain)
        for j, q in enumerate([*questions, "mean"]):
            row = {"question": q, "method": method, "domain": domain}
            row["accuracy_lo"], row["accuracy_hi"] = interval(key, None, j)
            if base in correct:
                row["change_lo"], row["change_hi"] = interval(key, base, j)
            if domain == "target" and {so_source, so_target} <= set(correct):
                row["drop_lo"], row["drop_hi"] = interval(so_source, so_target, j)
            rows.append(row)
    return pd.DataFrame(rows)


#: which adaptation method is "best": the highest mean target accuracy on the validation split (never the test split)
ADAPTATIONS = ("adabn", "dann", "distill")


def best_method(predictions: Mapping[tuple[str, str], pd.DataFrame]) -> str:
    """The adaptation method with the highest target accuracy on the validation split, averaged over questions."""
    scores = {}
    for method in ADAPTATIONS:
        p = predictions.get((method, "target"))
        if p is None:
            continue
        v = p[p["split"] == "val"]
        if len(v):
            scores[method] = float((v["pred_class"] == v["true_class"]).groupby(v["question"]).mean().mean())
    if not scores:
        raise ValueError("domain: no adaptation method has target predictions on the validation split")
    return max(scores, key=scores.get)


def domain_summary(metrics: pd.DataFrame, best: str, questions: Sequence[str] = ("bar", "mean")) -> pd.DataFrame:
    """The seed's table for one pair: source, target without adaptation, target with the ``best`` method.

    One row per question of ``questions`` present in ``metrics`` (the output of
    :func:`domain_metrics` with intervals): accuracies with their 68 % bootstrap
    intervals, the drop (± paired s.e.; ``significant`` when it exceeds twice
    that), the fraction ``recovered`` by ``best``, and (``worse_questions``) the
    questions where ``best`` is worse than the unadapted CNN by more than its
    68 % interval (the upper end of its paired change interval below 0).
    """
    m = metrics.set_index(["question", "method", "domain"])
    per_q = metrics[(metrics["method"] == best) & (metrics["domain"] == "target") & (metrics["question"] != "mean")]
    worse = per_q.loc[per_q["change_hi"] < 0, "question"].tolist()
    rows = []
    for q in questions:
        if (q, "source_only", "source") not in m.index:
            continue
        src, tgt = m.loc[(q, "source_only", "source")], m.loc[(q, "source_only", "target")]
        ada = m.loc[(q, best, "target")]
        rows.append(
            {
                "question": q,
                "n_test": int(tgt["n_test"]),
                "source": src["accuracy"], "source_lo": src["accuracy_lo"], "source_hi": src["accuracy_hi"],
                "unadapted": tgt["accuracy"], "unadapted_lo": tgt["accuracy_lo"], "unadapted_hi": tgt["accuracy_hi"],
                "method": best,
                "adapted": ada["accuracy"], "adapted_lo": ada["accuracy_lo"], "adapted_hi": ada["accuracy_hi"],
                "drop": tgt["drop"], "drop_se": tgt["drop_se"], "drop_lo": tgt["drop_lo"], "drop_hi": tgt["drop_hi"],
                "significant": bool(tgt["drop"] > 2 * tgt["drop_se"]),
                "recovered": ada["recovered"],
                "change": ada["change"], "change_lo": ada["change_lo"], "change_hi": ada["change_hi"],
                "worse_questions": ";".join(worse) if q == "mean" else ("" if ada["change_hi"] >= 0 else q),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


METRIC_COLUMNS = [
    "question",
    "method",
    "domain",
    "n_test",
    "accuracy",
    "accuracy_se",
    "f1_macro",
    "chance_accuracy",
    "change",
    "change_se",
    "recovered",
]
#: the columns :func:`domain_metrics` adds with bootstrap intervals
INTERVAL_COLUMNS = ["accuracy_lo", "accuracy_hi", "change_lo", "change_hi", "drop", "drop_se", "drop_lo", "drop_hi"]
