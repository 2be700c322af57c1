"""A simulated Galaxy Zoo volunteer process: votes from the truth.

Each galaxy is shown to a Poisson number of volunteers who walk the Galaxy Zoo
DECaLS decision tree. A volunteer gives the true answer with a probability set
by the galaxy's *clarity* (higher for brighter, larger, better-resolved galaxies
and stronger features) and otherwise picks from a confusion distribution
(half neighbouring answers for ordered questions, half what volunteers say when
they cannot tell, :data:`UNCLEAR`, which misses faint features). Vote counts down the tree follow
the volunteers: only those who answered "featured" are asked about edge-on disks,
and so on. So votes get noisier as galaxies get fainter and smaller.

Perception (issue 27): with ``perception`` given, whether volunteers see a bar,
spiral arms or a merger depends on how visible it is in the image they are shown,
its signal-to-noise ``S`` (``snr_bar``, ``snr_arms``, ``snr_merger`` of the truth:
:mod:`galmap.mock.visibility`). ``S`` is shared by all of a galaxy's volunteers; each
volunteer adds their own noise, a Gaussian scatter of ``scatter_dex`` in log10 S, so
one volunteer sees the feature with probability

    P_see = Phi( (log10 S - log10 S_0) / scatter_dex ),    S_0 = snr_threshold.

A volunteer who sees it answers as above (the truth, blurred by clarity); one who does
not answers "no" (bar, spiral arms) or "none" (merging). Counting arms needs each arm
seen: S / sqrt(m) for m arms, and a volunteer who cannot count answers "cant-tell";
the winding of unseen arms is guessed (:data:`UNCLEAR`). Galaxies without the feature
answer as before (false positives stay possible).

The first question (smooth or featured) is perceived the same way: a volunteer answers
"featured-or-disk" only when they see disk structure, ``snr_featured`` (bar, arms, clumps
and an edge-on disk's thinness together, :mod:`galmap.mock.visibility`) against the
threshold ``featured_snr_threshold`` (``snr_threshold`` when not given). A volunteer who
does not see it answers as for a smooth galaxy (the clarity model with the true answer
"smooth": mostly "smooth", with the same artifact and confused shares). Galaxies whose
true answer is "smooth" answer as before. The first question has its own clarity ceiling and
unclear answers (:data:`FIRST_QUESTION`), set from real votes: even clear smooth galaxies draw
"artifact" and "featured" votes. The parameters and their sources are in docs/mock.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from galmap.core.galaxyzoo import ALL_QUESTIONS, QUESTION_BY_NAME, classes_from_votes, votes_to_frame
from galmap.core.surveys import Survey
from galmap.mock.population import true_answers

#: Questions whose answers are ordered (confusion goes mostly to neighbours).
ORDERED = {"how-rounded", "bar", "spiral-winding", "spiral-arm-count", "bulge-size", "merging"}


#: The clarity model's ceiling: a volunteer's chance of the ideal answer on the clearest galaxies (no source;
#: from before issue 27). The first question has its own, set from real votes (:data:`FIRST_QUESTION`).
CLARITY_CEILING = 0.97


def clarity(truth: pd.DataFrame, survey: Survey, ceiling: float = CLARITY_CEILING) -> np.ndarray:
    """How clearly volunteers see a galaxy, in [0, ``ceiling``], from its r-band S/N and resolution.

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
    return np.clip(ceiling * c_snr * c_res, 0.0, ceiling)


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

#: The first question's volunteer errors (issue 27), set from half of the 4,000 real Galaxy Zoo DECaLS vote rows
#: and checked on the other half (``experiments/volunteer_errors.py``; docs/mock.md "Volunteer errors"):
#: ``ceiling``, its clarity ceiling (a volunteer's chance of the ideal answer on the clearest galaxy), and
#: ``unclear``, what volunteers answer when they cannot tell (smooth, featured-or-disk, artifact), in place of
#: :data:`UNCLEAR`'s. The config's ``mock.volunteers.first_question`` holds the same values.
FIRST_QUESTION = {"ceiling": 0.97, "unclear": [0.7, 0.1, 0.2]}


def _confusion(question: str, n_answers: int, true_idx: np.ndarray) -> np.ndarray:
    k = np.arange(n_answers)
    if question in ORDERED:
        w = np.exp(-np.abs(k[None, :] - true_idx[:, None]) / 0.8)
    else:
        w = np.ones((len(true_idx), n_answers))
    return w / w.sum(axis=1, keepdims=True)


#: Per perceptual question: the S/N column, and what a volunteer who does not see the feature answers.
PERCEIVED = {
    "bar": ("snr_bar", "no"),
    "has-spiral-arms": ("snr_arms", "no"),
    "spiral-winding": ("snr_arms", None),  # None: a guess (UNCLEAR)
    "spiral-arm-count": ("snr_arms", "cant-tell"),
    "merging": ("snr_merger", "none"),
    # "smooth": a volunteer who sees no disk structure answers as for a smooth galaxy (answer_probabilities)
    "smooth-or-featured": ("snr_featured", "smooth"),
}


def _threshold(question: str, perception: Mapping[str, Any]) -> float:
    """The S/N at which half the volunteers see ``question``'s feature."""
    if question == "smooth-or-featured" and perception.get("featured_snr_threshold") is not None:
        return float(perception["featured_snr_threshold"])
    return float(perception["snr_threshold"])


def see_probability(truth: pd.DataFrame, question: str, perception: Mapping[str, Any]) -> np.ndarray:
    """Probability that one volunteer sees ``question``'s feature (module docstring); NaN without the feature.

    For the first question "the feature" is being a featured galaxy (``true_smooth-or-featured``);
    one without visible disk structure (``snr_featured`` 0) is then not seen (probability 0).
    """
    col, _ = PERCEIVED[question]
    snr = truth[col].to_numpy(float)
    if question == "spiral-arm-count":
        snr = snr / np.sqrt(np.maximum(truth["arm_count"].to_numpy(float), 1.0))
    with np.errstate(divide="ignore"):
        z = (np.log10(snr) - np.log10(_threshold(question, perception))) / float(perception["scatter_dex"])
    if question == "smooth-or-featured":
        featured = true_answers(truth)["true_smooth-or-featured"].to_numpy() == "featured-or-disk"
        return np.where(featured, ndtr(z), np.nan)
    return np.where(snr > 0, ndtr(z), np.nan)


def _blurred(
    question: str, answer_idx: np.ndarray, clarity_q: np.ndarray, n_answers: int, unclear: np.ndarray
) -> np.ndarray:
    """One volunteer's answer probabilities (N, n_answers) for galaxies whose ideal answer is ``answer_idx``: that
    answer with probability ``clarity_q``, else confused (half :func:`_confusion`, half ``unclear``, (1, n_answers))."""
    onehot = np.eye(n_answers)[answer_idx]
    confused = 0.5 * _confusion(question, n_answers, answer_idx) + 0.5 * unclear
    return clarity_q[:, None] * onehot + (1 - clarity_q[:, None]) * confused


def answer_probabilities(
    truth: pd.DataFrame,
    survey: Survey,
    perception: Mapping[str, Any] | None = None,
    first_question: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Per-galaxy answer probabilities of one volunteer, for every question (N, n_answers).

    ``perception``: ``snr_threshold``, ``scatter_dex`` and optionally ``featured_snr_threshold`` of the
    perceptual model (module docstring; ``truth`` then needs the ``snr_*`` columns); ``None``: volunteers
    see every feature. ``first_question``: the first question's ``ceiling`` and ``unclear`` answers
    (:data:`FIRST_QUESTION`, the default).
    """
    first = dict(FIRST_QUESTION) | dict(first_question or {})
    shares = np.asarray(first["unclear"], float)
    if shares.shape != (3,) or shares.min() < 0 or shares.sum() <= 0 or not 0 < float(first["ceiling"]) <= 1:
        raise ValueError(f"first_question: ceiling in (0, 1] and three non-negative unclear shares, got {first}")
    answers = true_answers(truth)
    c = clarity(truth, survey)
    c_first = clarity(truth, survey, float(first["ceiling"]))
    # features that are intrinsically weak are harder to see (with perception, the image's S/N says that)
    feature = {
        "spiral-winding": np.full(len(truth), 0.85),
        "spiral-arm-count": np.full(len(truth), 0.8),
    }
    if perception is None:
        feature |= {
            "bar": np.where(truth["bar_class"] == "weak", 0.75, 1.0),
            "has-spiral-arms": np.clip(truth["arm_frac"].to_numpy() / 0.18, 0.5, 1.0),
            "merging": np.where(truth["merger_state"] == "minor-disturbance", 0.8, 1.0),
        }
    else:
        missing = sorted({col for col, _ in PERCEIVED.values()} - set(truth.columns))
        if missing:
            raise ValueError(f"perceptual volunteers need the truth's {', '.join(missing)} (galmap.mock.visibility)")
    probs: dict[str, np.ndarray] = {}
    for q in ALL_QUESTIONS:
        true = answers[f"true_{q.name}"].to_numpy()
        n_ans = len(q.answers)
        idx = np.array([q.answers.index(a) if a in q.answers else -1 for a in true])
        first_q = q.name == "smooth-or-featured"
        cq = (c_first if first_q else c) * feature.get(q.name, 1.0)
        unclear = (shares if first_q else np.asarray(UNCLEAR[q.name], float))[None, :]
        unclear = unclear / unclear.sum()
        # volunteers asked a question whose ideal answer is undefined (they reached it
        # by mistake) answer at random among the ordinary answers
        known = idx >= 0
        p = np.where(known[:, None], _blurred(q.name, np.where(known, idx, 0), cq, n_ans, unclear), unclear)
        if perception is not None and q.name in PERCEIVED:
            see = see_probability(truth, q.name, perception)
            unseen_answer = PERCEIVED[q.name][1]
            if unseen_answer is None:
                unseen = np.broadcast_to(unclear, p.shape)
            elif q.name == "smooth-or-featured":  # as for a smooth galaxy: the clarity model with the answer smooth
                unseen = _blurred(q.name, np.full(len(truth), q.answers.index(unseen_answer)), cq, n_ans, unclear)
            else:
                unseen = np.zeros((1, n_ans))
                unseen[0, q.answers.index(unseen_answer)] = 1.0
            has = np.isfinite(see)
            s = np.where(has, see, 1.0)[:, None]
            p = s * p + (1 - s) * unseen
        probs[q.name] = p / p.sum(axis=1, keepdims=True)
    return probs


def simulate_votes(
    truth: pd.DataFrame,
    survey: Survey,
    votes_mean: float,
    rng: np.random.Generator,
    perception: Mapping[str, Any] | None = None,
    first_question: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Simulate the volunteers' votes; return the Galaxy Zoo DECaLS style vote table."""
    probs = answer_probabilities(truth, survey, perception, first_question)
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


def make_labels(
    truth: pd.DataFrame,
    survey: Survey,
    seed: int,
    votes_mean: float,
    perception: Mapping[str, Any] | None = None,
    first_question: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """``labels.parquet``: vote counts, fractions, total votes and one class column per question.

    The volunteers look at ``survey``'s images (its depth and PSF set what they can
    see); ``votes_mean`` is the mean number answering the first question; ``seed``
    is the config's seed; ``perception`` and ``first_question`` as :func:`answer_probabilities`.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x607E5]))
    votes = simulate_votes(truth, survey, float(votes_mean), rng, perception, first_question)
    classes = classes_from_votes(votes)
    labels = pd.concat([votes, classes], axis=1)
    labels.insert(1, "ra", truth["ra"].to_numpy())
    labels.insert(2, "dec", truth["dec"].to_numpy())
    return labels
