"""Domain adaptation from one survey to another (AdaBN, DANN, distillation). Reads: the preprocessed shards
of the source and target surveys and the classify stage's CNN. Writes: ``results/domain/``.
"""
