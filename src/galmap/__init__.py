"""galmap: a reproducible analysis of galaxy images with AI.

The library behind the Snakemake workflow: everything that computes lives here; the
workflow's rules and scripts only wire it together. One package per stage:

- :mod:`galmap.core`: what every stage shares (I/O, failures, ids, surveys, config, statistics);
- :mod:`galmap.mock` and :mod:`galmap.data`: the simulated sky, and real data;
- :mod:`galmap.preprocess`, :mod:`galmap.structure`: cleaned cutouts; Sérsic fits and morphometry;
- :mod:`galmap.nn`: the networks' shared toolbox (U-Net, diffusion, the training loop, losses);
- :mod:`galmap.latent`: the VAE, outliers and the flow; :mod:`galmap.classify`: forests and the CNN;
- :mod:`galmap.domain`: survey-to-survey adaptation; :mod:`galmap.images2images`: super-resolution and Hα;
- :mod:`galmap.figures`: the paper's figures.

Each stage package's ``jobs`` module holds what the workflow's scripts call: each function
reads its inputs, computes with the library, and writes its outputs atomically, so the
scripts stay one call long. Heavy libraries (torch, GalSim, photutils, statmorph) are
imported inside the job functions that need them: a job pays only for its own imports
(``tests/workflow/test_imports.py``).
"""

__version__ = "0.1.0"
