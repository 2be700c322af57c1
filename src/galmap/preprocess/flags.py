"""Bits of the ``flags`` dataset of preprocessed shards (a light module: readers need not import photutils)."""

FLAGS = {
    "bad_pixels": 1,  # some pixels were non-finite or had invalid ivar (now ivar = 0)
    "missing_band": 2,  # a band has no valid pixel at all
    "no_central_source": 4,  # nothing detected at the stamp centre (empty segmentation)
    "few_background_pixels": 8,  # background from fewer than 10% of the pixels
    "no_data": 16,  # no valid pixel in any band
}
