"""Anomaly search: ranked candidates, instrumental artefacts told apart, an expert in the loop.

* :mod:`galmap.anomalies.scores`: unsupervised scores per galaxy (latent, reconstruction,
  density, morphology, image columns), the artefact score and flag, the discovery score;
* :mod:`galmap.anomalies.active`: labels (``outliers.labels``), the relevance model
  retrained on them, the simulated expert and its measurement;
* :mod:`galmap.anomalies.review`: the HTML review gallery;
* :mod:`galmap.anomalies.jobs`: the file-level job of the ``anomalies`` rule.

A stage of its own (not :mod:`galmap.latent.outliers`, whose per-galaxy latent and
reconstruction scores it reuses): it reads the images and the morphometry besides the
latents, and keeps state (labels) the latent stage has none of.
"""
