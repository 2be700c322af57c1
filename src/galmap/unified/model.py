"""One latent space for every survey: a product-of-experts multimodal VAE with cross-reconstruction.

Each survey ``s`` has an encoder and a decoder of its own (its bands, stamp size, pixel
scale and PSF are whatever its preprocessed stamps have): the encoder and the decoder of a
:class:`galmap.latent.vae.ConvVAE` built for that survey's stamps (stride-2 4x4
convolutions to a linear layer; extra levels for larger stamps, so every survey reaches a
bottom of at most ``max_bottom`` pixels). The encoders give Gaussian experts
``q_s(z | x_s) = N(mu_s, sigma_s^2)`` over one shared ``latent_dim``-dimensional space;
the posterior of a galaxy seen by a set ``S`` of surveys is their product with the prior
expert ``N(0, 1)`` (Wu & Goodman 2018):

``precision = 1 + sum_{s in S} 1 / sigma_s^2``, ``mu = sum_{s in S} mu_s / sigma_s^2 / precision``.

A survey in which a galaxy has no stamp (``avail = 0``) contributes neither an expert nor a
term of the loss. Surveys listed as decode-only (e.g. the Hα maps, blank for quiescent
galaxies) have a decoder and no encoder.

The loss per galaxy (:func:`make_step`) is the negative ELBO of the joint posterior plus
that of one single-survey posterior chosen at random among the surveys the galaxy has
(the sub-sampled MVAE objective: every encoder alone must reconstruct every survey,
which is what translation and retrieval ask of it):

``L = sum_s avail_s 0.5 chi2_s(decode_s(z_joint)) + beta KL(q_joint)
    + sum_s avail_s 0.5 chi2_s(decode_s(z_r)) + beta KL(q_r)``,

``chi2_s = sum w (x - xhat)^2`` on the asinh scale with the VAE's noise weights
(:mod:`galmap.nn.inputs`), divided by the mean number of pixels per galaxy so that the
learning rate does not depend on the stamps' size.

The reconstruction does not align the surveys' experts; :class:`Alignment` adds terms on the
single-survey posterior means (per galaxy, not divided by the pixels): a symmetric InfoNCE
between the same galaxy's latents in every pair of surveys (:func:`contrastive_loss`), their
mean squared distance (:func:`mean_alignment`) and a survey discriminator behind a gradient
reversal (:func:`adversary_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from galmap.latent.vae import ConvVAE, kl_beta, kl_divergence
from galmap.nn.adversarial import reversal_strength, reverse_gradient


def survey_channels(image_size: int, channels: Sequence[int], max_bottom: int = 4) -> list[int]:
    """The encoder's channels per level for stamps of ``image_size`` pixels.

    ``channels`` are the levels of a ``2**len(channels) * max_bottom`` px stamp; larger stamps
    get extra levels in front (half the first level's channels each, at least 4) until the
    bottom is at most ``max_bottom`` px.
    """
    levels = [int(c) for c in channels]
    while math.ceil(image_size / 2 ** len(levels)) > max_bottom:
        levels.insert(0, max(4, levels[0] // 2))
    return levels


class UnifiedVAE(nn.Module):
    """Per-survey encoders and decoders around one shared latent space; see the module docstring.

    Parameters
    ----------
    surveys : survey name -> ``{"bands": n, "size": px}`` (its stamps: ``n`` bands of ``px`` x ``px``).
    latent_dim : size of the shared latent space.
    channels : convolution channels per level (see :func:`survey_channels`).
    decode_only : surveys with a decoder and no encoder.
    adversary_hidden : > 0 adds a survey discriminator (an MLP of that width from a latent to the
        encoder surveys' logits) for the adversarial term of :func:`unified_loss`; 0: none.
    """

    def __init__(
        self,
        surveys: Mapping[str, Mapping[str, int]],
        latent_dim: int,
        channels: Sequence[int],
        decode_only: Sequence[str] = (),
        max_bottom: int = 4,
        adversary_hidden: int = 0,
    ) -> None:
        super().__init__()
        self.surveys = {str(k): {"bands": int(v["bands"]), "size": int(v["size"])} for k, v in surveys.items()}
        self.latent_dim = int(latent_dim)
        self.channels = [int(c) for c in channels]
        self.decode_only = [str(s) for s in decode_only]
        self.max_bottom = int(max_bottom)
        unknown = set(self.decode_only) - set(self.surveys)
        if unknown:
            raise ValueError(f"decode-only survey(s) {sorted(unknown)} are not among the surveys {list(self.surveys)}")
        self.encoders = [s for s in self.surveys if s not in self.decode_only]
        if not self.encoders:
            raise ValueError("the unified model needs at least one survey with an encoder")
        self.nets = nn.ModuleDict(
            {
                s: ConvVAE(
                    v["bands"], v["size"], self.latent_dim, survey_channels(v["size"], self.channels, max_bottom)
                )
                for s, v in self.surveys.items()
            }
        )
        for s in self.decode_only:  # no encoder: drop its layers (they would never be trained)
            self.nets[s].encoder = nn.Identity()
            self.nets[s].to_latent = nn.Identity()
        self.adversary_hidden = int(adversary_hidden)
        if self.adversary_hidden > 0:
            h = self.adversary_hidden
            self.discriminator = nn.Sequential(
                nn.Linear(self.latent_dim, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, len(self.encoders))
            )

    def config(self) -> dict[str, Any]:
        """The constructor arguments (stored with the weights)."""
        return {
            "surveys": {k: dict(v) for k, v in self.surveys.items()},
            "latent_dim": self.latent_dim,
            "channels": list(self.channels),
            "decode_only": list(self.decode_only),
            "max_bottom": self.max_bottom,
            "adversary_hidden": self.adversary_hidden,
        }

    def experts(self, xs: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Mean and log-variance of each encoder survey's expert, for the surveys in ``xs``."""
        return {s: self.nets[s].encode(xs[s]) for s in self.encoders if s in xs}

    def decode(self, survey: str, z: torch.Tensor) -> torch.Tensor:
        """Stamps (asinh scale) of ``survey`` for latent vectors ``z``."""
        return self.nets[survey].decode(z)


def product_of_experts(
    experts: Mapping[str, tuple[torch.Tensor, torch.Tensor]], avail: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-variance of ``N(0, 1)`` times the experts a galaxy has (``avail[s]`` 1 or 0 per galaxy).

    A galaxy without any expert gets the prior.
    """
    first = next(iter(experts.values()))[0]
    precision = torch.ones_like(first)
    weighted = torch.zeros_like(first)
    for s, (mu, logvar) in experts.items():
        p = avail[s].to(mu.dtype)[:, None] * torch.exp(-logvar)
        precision = precision + p
        weighted = weighted + p * mu
    return weighted / precision, -torch.log(precision)


def _sample(mu: torch.Tensor, logvar: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)


def reconstruction_chi2(
    model: UnifiedVAE,
    z: torch.Tensor,
    xs: Mapping[str, torch.Tensor],
    ws: Mapping[str, torch.Tensor],
    avail: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """``sum_s avail_s chi2_s`` per galaxy of the stamps decoded from ``z`` (the surveys in ``xs``)."""
    total = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
    for s in xs:
        xhat = model.decode(s, z)
        chi2 = (ws[s] * (xhat - xs[s]) ** 2).sum((1, 2, 3))
        total = total + avail[s].to(z.dtype) * chi2
    return total


def single_survey_means(
    experts: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Each survey's own posterior mean (the prior times its expert alone), as retrieval and the probe read it."""
    return {s: mu * torch.exp(-logvar) / (1.0 + torch.exp(-logvar)) for s, (mu, logvar) in experts.items()}


def contrastive_loss(
    means: Mapping[str, torch.Tensor],
    avail: Mapping[str, torch.Tensor],
    temperature: float,
    metric: str = "cosine",
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) between the latents of the same galaxy in two surveys, mean over survey pairs.

    For every pair of surveys (a, b), the galaxies of the batch seen in both (at least two)
    are the candidates: galaxy i in a must pick its own latent in b among them and vice
    versa; the logits are ``cos(z_a,i, z_b,j) / temperature`` (``metric = "cosine"``) or
    ``-|z_a,i - z_b,j|^2 / temperature`` (``"euclidean"``). A galaxy missing from a survey
    takes no part in that survey's pairs. Zero when no pair has two galaxies in common.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unified: unknown contrastive metric {metric!r} (cosine or euclidean)")
    names = list(means)
    terms = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = (avail[a] > 0) & (avail[b] > 0)
            if int(both.sum()) < 2:
                continue
            za, zb = means[a][both], means[b][both]
            if metric == "cosine":
                logits = nn.functional.normalize(za, dim=1) @ nn.functional.normalize(zb, dim=1).T
            else:
                logits = -(torch.cdist(za, zb) ** 2)
            logits = logits / temperature
            target = torch.arange(len(za), device=za.device)
            ce = nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)
            terms.append(0.5 * ce)
    if not terms:
        return next(iter(means.values())).sum() * 0.0
    return torch.stack(terms).mean()


def mean_alignment(means: Mapping[str, torch.Tensor], avail: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean over survey pairs of the mean squared distance ``|z_a,i - z_b,i|^2`` of a galaxy's latents in both.

    The positive half of the Euclidean InfoNCE without its saturation: it keeps pulling the
    same galaxy's latents together (and so removes survey offsets) after the galaxy is found
    in the batch; the contrastive term's negatives and the reconstruction keep it from collapsing.
    """
    names = list(means)
    terms = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = (avail[a] > 0) & (avail[b] > 0)
            if bool(both.any()):
                terms.append(((means[a][both] - means[b][both]) ** 2).sum(1).mean())
    if not terms:
        return next(iter(means.values())).sum() * 0.0
    return torch.stack(terms).mean()


def adversary_loss(
    model: UnifiedVAE, means: Mapping[str, torch.Tensor], avail: Mapping[str, torch.Tensor], strength: float
) -> torch.Tensor:
    """Cross-entropy of the model's survey discriminator on the single-survey means, behind a gradient reversal.

    The discriminator learns to name the survey of each (galaxy, survey) latent the batch has;
    the encoders get ``-strength`` times that gradient (:func:`galmap.nn.adversarial.reverse_gradient`)
    and learn to hide the survey.
    """
    z, y = [], []
    for j, s in enumerate(model.encoders):
        if s in means:
            keep = avail[s] > 0
            z.append(means[s][keep])
            y.append(torch.full((int(keep.sum()),), j, device=keep.device, dtype=torch.long))
    z, y = torch.cat(z), torch.cat(y)
    if not len(y):
        return next(iter(means.values())).sum() * 0.0
    return nn.functional.cross_entropy(model.discriminator(reverse_gradient(z, strength)), y)


@dataclass(frozen=True)
class Alignment:
    """The terms that align the surveys' latents (the ``unified`` config keys of the same names); all off by default.

    ``align_weight``: KL(joint || single-survey posterior); ``contrastive_weight``, ``temperature``,
    ``contrastive_metric``: :func:`contrastive_loss`; ``adversary_weight``: :func:`adversary_loss`;
    ``mean_align_weight``: :func:`mean_alignment`.
    """

    align_weight: float = 0.0
    contrastive_weight: float = 0.0
    temperature: float = 0.1
    contrastive_metric: str = "cosine"
    adversary_weight: float = 0.0
    mean_align_weight: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Alignment:
        """The settings of a config's ``unified`` section (absent keys: off)."""
        names = [f.name for f in fields(cls)]
        return cls(**{k: type(getattr(cls, k))(params[k]) for k in names if k in params})


def unified_loss(
    model: UnifiedVAE,
    xs: Mapping[str, torch.Tensor],
    ws: Mapping[str, torch.Tensor],
    avail: Mapping[str, torch.Tensor],
    beta: float,
    gen: torch.Generator | None,
    cross: bool = True,
    align: Alignment = Alignment(),
    adversary_strength: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The loss of the module docstring, per batch (mean over galaxies, per pixel), and its parts.

    ``xs``, ``ws``: stamps and weights per survey (N, B_s, H_s, W_s); ``avail``: 1 where a
    galaxy has that survey's stamp, else 0 (its stamp and weights are then ignored).
    ``align`` (:class:`Alignment`): ``align_weight`` > 0 adds ``align_weight * sum_s avail_s
    KL(q_joint || q_s)`` (the joint posterior held fixed): every single-survey posterior is pulled
    onto the joint one. ``contrastive_weight`` > 0 adds that times :func:`contrastive_loss` of the
    single-survey posterior means (per galaxy, beside the per-pixel reconstruction: it is not
    divided by the pixels); ``mean_align_weight`` > 0 likewise adds :func:`mean_alignment`.
    ``adversary_weight`` > 0 (a model with a discriminator) adds that
    times :func:`adversary_loss` with the reversal ``adversary_strength``.
    """
    experts = model.experts(xs)
    mu, logvar = product_of_experts(experts, avail)
    z = _sample(mu, logvar, gen)
    chi2_joint = reconstruction_chi2(model, z, xs, ws, avail)
    kl_joint = kl_divergence(mu, logvar)
    npix = sum(xs[s][0].numel() for s in xs)
    loss = 0.5 * chi2_joint + beta * kl_joint
    out = {"chi2_joint": chi2_joint.mean(), "kl_joint": kl_joint.mean()}
    if cross and experts:
        names = list(experts)
        have = torch.stack([avail[s].to(mu.dtype) for s in names], 1)  # (N, E)
        # one available encoder survey per galaxy, at random (uniform among those it has)
        u = torch.rand(have.shape, generator=gen, device=have.device, dtype=have.dtype)
        pick = torch.argmax(torch.where(have > 0, u + 1.0, u * 0.0), 1)
        one = {s: (pick == j) & (have[:, j] > 0) for j, s in enumerate(names)}
        mu_r, logvar_r = product_of_experts(experts, one)
        z_r = _sample(mu_r, logvar_r, gen)
        chi2_cross = reconstruction_chi2(model, z_r, xs, ws, avail)
        kl_cross = kl_divergence(mu_r, logvar_r)
        loss = loss + 0.5 * chi2_cross + beta * kl_cross
        out |= {"chi2_cross": chi2_cross.mean(), "kl_cross": kl_cross.mean()}
    if align.align_weight > 0 and experts:
        m_j, v_j = mu.detach(), logvar.detach().exp()
        kl_align = torch.zeros_like(kl_joint)
        for s in experts:
            m_s, lv_s = product_of_experts(
                experts, {t: avail[t] if t == s else torch.zeros_like(avail[t]) for t in experts}
            )
            kl = 0.5 * (lv_s - torch.log(v_j) + (v_j + (m_j - m_s) ** 2) / lv_s.exp() - 1.0).sum(1)
            kl_align = kl_align + avail[s].to(kl.dtype) * kl
        loss = loss + align.align_weight * kl_align
        out["align"] = kl_align.mean()
    total = loss.mean() / npix
    means = single_survey_means(experts) if experts else {}
    if align.contrastive_weight > 0 and len(experts) > 1:
        nce = contrastive_loss(means, avail, align.temperature, align.contrastive_metric)
        total = total + align.contrastive_weight * nce
        out["nce"] = nce
    if align.mean_align_weight > 0 and len(experts) > 1:
        pull = mean_alignment(means, avail)
        total = total + align.mean_align_weight * pull
        out["mean_align"] = pull
    if align.adversary_weight > 0 and experts:
        if model.adversary_hidden <= 0:
            raise ValueError("unified: adversary_weight > 0 needs a model with a discriminator (adversary_hidden > 0)")
        adv = adversary_loss(model, means, avail, adversary_strength)
        total = total + align.adversary_weight * adv
        out["adversary"] = adv
    out["loss"] = total
    return out


def make_step(
    surveys: Sequence[str],
    kl_weight: float,
    warmup_epochs: int,
    cross: bool = True,
    align: Alignment = Alignment(),
    max_epochs: int = 1,
):
    """The step of :func:`galmap.nn.training.train` for batches ``(x_1, w_1, ..., x_S, w_S, avail)``.

    ``avail`` is (N, S) with 1 where the galaxy has survey ``s``'s stamp. Validation always
    uses the full ``beta = kl_weight``. The gradient reversal of the survey adversary ramps up over
    ``max_epochs`` (:func:`galmap.nn.adversarial.reversal_strength`).
    """
    names = list(surveys)

    def step(model: UnifiedVAE, batch, epoch: int, gen: torch.Generator, training: bool) -> dict[str, torch.Tensor]:
        device = next(model.parameters()).device
        batch = [t.to(device, non_blocking=True) for t in batch]
        xs = {s: batch[2 * j] for j, s in enumerate(names)}
        ws = {s: batch[2 * j + 1] for j, s in enumerate(names)}
        av = batch[-1]
        avail = {s: av[:, j] for j, s in enumerate(names)}
        beta = kl_beta(epoch, kl_weight, warmup_epochs) if training else kl_weight
        strength = reversal_strength((epoch + 1) / max(1, max_epochs))
        return unified_loss(model, xs, ws, avail, beta, gen, cross, align, strength)

    return step
