"""Morphology classification: targets from the labels, random forests on the latents and a CNN on the
images, and their metrics. Reads: ``results/catalog/labels.parquet``, latents, images. Writes:
``results/classify/``.
"""
