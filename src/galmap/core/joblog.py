"""Sending a job's messages to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def job_log(path: str | Path | None) -> Iterator[logging.Logger]:
    """Redirect stdout, stderr (progress bars included) and logging to ``path``.

    With ``path=None`` nothing is redirected. Yields a logger named ``galmap``.
    """
    logger = logging.getLogger("galmap")
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        yield logger
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        propagate, logger.propagate = logger.propagate, False
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            try:
                yield logger
            except BaseException:
                logger.exception("job failed")
                raise
            finally:
                logger.removeHandler(handler)
                logger.propagate = propagate
