"""A simulated Galaxy Zoo volunteer process: votes from the truth.

Each galaxy is shown to a Poisson number of volunteers who walk the Galaxy Zoo
DECaLS decision tree. A volunteer gives the true answer with a probability set
by the galaxy's *clarity* (higher for brighter, larger, better-resolved galaxies
and stronger features) and otherwise picks from a confusion distribution
(half neighbouring answers for ordered questions, half what volunteers say when
they cannot tell, :data:`UNCLEAR`, which misses faint features). Vote counts down the tree follow
the volunteers: only those who answered "featured" are asked about edge-on disks,
and so on. So votes get noisier as galaxies get fainter and smaller.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from galmap.core.galaxyzoo import ALL_QUESTIONS, QUESTION_BY_NAME, classes_from_votes, votes_to_frame
from galmap.core.surveys import Survey
from galmap.mock.population import true_answers

#: Questions whose answers are ordered (confusion goes mostly to neighbours).
ORDERED = {"how-rounded", "bar", "spiral-winding", "spiral-arm-count", "bulge-size", "merging"}


def clarity(truth: pd.DataFrame, survey: Survey) -> np.ndarray:
    """How clearly volunteers see a galaxy, in [0, 1], from its r-band S/N and resolution.

    S/N is the galaxy's flux over the sky noise inside twice the light-weighted
    half-light radius; resolution is that radius over the PSF FWHM.
    """
    band = "r" if "r" in survey.bands else survey.bands[0]
    sigma = survey.sky_sigma[survey.bands.index(band)]
    fwhm = survey.psf_fwhm_arcsec[survey.bands.index(band)]
    re = truth["re_light_weighted_arcsec"].to_numpy()
    npix = np.pi * (2 * re / survey.pixscale_arcsec) ** 2
    snr = truth[f"flux_{band}"].to_numpy() / (sigma * np.sqrt(npix))
    resolution = re / fwhm
    c_snr = 1 / (1 + np.exp(-(np.log10(snr) - 2.7) / 0.2))
    c_res = 1 / (1 + np.exp(-(resolution - 0.9) / 0.3))
    return np.clip(0.97 * c_snr * c_res, 0.0, 0.97)


#: What volunteers answer when they cannot see a galaxy clearly (features get missed).
UNCLEAR = {
    "smooth-or-featured": [0.75, 0.23, 0.02],
    "how-rounded": [0.3, 0.5, 0.2],
    "disk-edge-on": [0.3, 0.7],
    "edge-on-bulge": [0.3, 0.35, 0.35],
    "bar": [0.1, 0.3, 0.6],
    "has-spiral-arms": [0.4, 0.6],
    "spiral-winding": [0.3, 0.45, 0.25],
    "spiral-arm-count": [0.1, 0.35, 0.15, 0.05, 0.05, 0.3],
    "bulge-size": [0.1, 0.2, 0.35, 0.25, 0.1],
    "merging": [0.8, 0.12, 0.05, 0.03],
}


def _confusion(question: str, n_answers: int, true_idx: np.ndarray) -> np.ndarray:
    k = np.arange(n_answers)
    if question in ORDERED:
        w = np.exp(-np.abs(k[None, :] - true_idx[:, None]) / 0.8)
    else:
        w = np.ones((len(true_idx), n_answers))
    return w / w.sum(axis=1, keepdims=True)


def answer_probabilities(truth: pd.DataFrame, survey: Survey) -> dict[str, np.ndarray]:
    """Per-galaxy answer probabilities of one volunteer, for every question (N, n_answers)."""
    answers = true_answers(truth)
    c = clarity(truth, survey)
    # features that are intrinsically weak are harder to see
    feature = {
        "bar": np.where(truth["bar_class"] == "weak", 0.75, 1.0),
        "has-spiral-arms": np.clip(truth["arm_frac"].to_numpy() / 0.18, 0.5, 1.0),
        "spiral-winding": np.full(len(truth), 0.85),
        "spiral-arm-count": np.full(len(truth), 0.8),
        "merging": np.where(truth["merger_state"] == "minor-disturbance", 0.8, 1.0),
    }
    probs: dict[str, np.ndarray] = {}
    for q in ALL_QUESTIONS:
        true = answers[f"true_{q.name}"].to_numpy()
        n_ans = len(q.answers)
        idx = np.array([q.answers.index(a) if a in q.answers else -1 for a in true])
        cq = c * feature.get(q.name, 1.0)
        # volunteers asked a question whose ideal answer is undefined (they reached it
        # by mistake) answer at random among the ordinary answers
        known = idx >= 0
        conf = _confusion(q.name, n_ans, np.where(known, idx, 0))
        onehot = np.zeros((len(truth), n_ans))
        onehot[np.arange(len(truth))[known], idx[known]] = 1.0
        unclear = np.asarray(UNCLEAR[q.name])[None, :]
        confused = 0.5 * conf + 0.5 * unclear
        p = np.where(known[:, None], cq[:, None] * onehot + (1 - cq[:, None]) * confused, unclear)
        probs[q.name] = p / p.sum(axis=1, keepdims=True)
    return probs


def simulate_votes(truth: pd.DataFrame, survey: Survey, votes_mean: float, rng: np.random.Generator) -> pd.DataFrame:
    """Simulate the volunteers' votes; return the Galaxy Zoo DECaLS style vote table."""
    probs = answer_probabilities(truth, survey)
    n = len(truth)
    n_root = np.maximum(rng.poisson(votes_mean, n), 5)
    counts: dict[str, np.ndarray] = {}

    def vote(name: str, n_voters: np.ndarray) -> np.ndarray:
        counts[name] = rng.multinomial(n_voters, probs[name])
        return counts[name]

    def col(name: str, answer: str) -> np.ndarray:
        return counts[name][:, QUESTION_BY_NAME[name].answers.index(answer)]

    root = vote("smooth-or-featured", n_root)
    vote("how-rounded", root[:, 0])
    vote("disk-edge-on", root[:, 1])
    vote("edge-on-bulge", col("disk-edge-on", "yes"))
    face_on = col("disk-edge-on", "no")
    vote("bar", face_on)
    vote("has-spiral-arms", face_on)
    vote("bulge-size", face_on)
    arms = col("has-spiral-arms", "yes")
    vote("spiral-winding", arms)
    vote("spiral-arm-count", arms)
    vote("merging", root[:, 0] + root[:, 1])
    return votes_to_frame(counts, truth["id"].to_numpy())


def make_labels(truth: pd.DataFrame, survey: Survey, seed: int, votes_mean: float) -> pd.DataFrame:
    """``labels.parquet``: vote counts, fractions, total votes and one class column per question.

    The volunteers look at ``survey``'s images (its depth and PSF set what they can
    see); ``votes_mean`` is the mean number answering the first question; ``seed``
    is the config's seed.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x607E5]))
    votes = simulate_votes(truth, survey, float(votes_mean), rng)
    classes = classes_from_votes(votes)
    labels = pd.concat([votes, classes], axis=1)
    labels.insert(1, "ra", truth["ra"].to_numpy())
    labels.insert(2, "dec", truth["dec"].to_numpy())
    return labels
