"""Image-to-image networks: DESI -> Euclid super-resolution (:mod:`.superres`) and u,g,r,i,z -> Hα
(:mod:`.halpha`). Reads: the preprocessed shards (and the Sérsic table). Writes:
``results/superres/``, ``results/halpha/``.
"""
