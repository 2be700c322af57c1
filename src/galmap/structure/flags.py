"""The structure stage's flags in one place: the Sérsic fit's bits and the morphometry's trust levels.

A light module (no torch, no statmorph), so the tables can be read and filtered without the fitters.
"""

#: Bits of the Sérsic ``flag`` column (``sersic.parquet``); 0 is a clean fit.
SERSIC_FLAGS = {
    "not_converged": 1,  # hit the iteration limit before chi2 settled
    "at_bound": 2,  # n or q within 1% of a bound, or Re beyond the stamp
    "few_pixels": 4,  # fewer usable pixels than 10x the number of parameters
    "bad_covariance": 8,  # J^T W J singular: some uncertainties are undefined
    "no_data": 16,  # nothing to fit (no valid pixel or no positive flux)
    "skipped": 32,  # not fitted: the preprocessing found no data or no source at the centre (the structure stage)
}
#: Flag bits that leave a galaxy without a usable fit (no parameters to use).
SERSIC_UNUSABLE = SERSIC_FLAGS["no_data"] | SERSIC_FLAGS["skipped"]
#: statmorph flags (``morphometry.parquet``: 0 good, 1 suspect, 2 bad, 4 catastrophic) at or above this are not used.
MORPH_UNUSABLE = 2
