"""Infer each real image's GZ pixel scale from its noise ratio (legacypipe calibration of calib.py) and
predict its sky_noise at the mock's per-pixel sigma; compare with the measured one."""

import numpy as np
import pandas as pd

sc = np.array([0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.25])
rat = np.array([0.663, 0.576, 0.466, 0.439, 0.378, 0.339, 0.292])  # calib.out legacypipe
sn = np.array([0.0296, 0.0268, 0.0217, 0.0204, 0.0176, 0.0157, 0.0130])
df = pd.read_csv(str(__import__("pathlib").Path(__file__).parent / "out" / "real.csv"))
df["scale_inferred"] = np.interp(-df.ratio, -rat, sc)  # ratio > 0.663 -> 0.10
df["sky_noise_mock_sigma"] = np.interp(df.scale_inferred, sc, sn)
df["depth_factor"] = df.sky_noise / df.sky_noise_mock_sigma
ok = df.sky_noise < 0.1
d5 = df[(df.set == "dr5rows") & ok]
print(
    "dr5rows catalog vs inferred scale:\n",
    d5[["name", "pixscale", "scale_inferred", "sky_noise", "depth_factor"]].round(4).to_string(),
)
print(
    "dr5rows at 0.10 (catalog): median sky_noise",
    d5[d5.pixscale == 0.1].sky_noise.median(),
    "n",
    (d5.pixscale == 0.1).sum(),
)


def summary(g: pd.DataFrame) -> str:
    """Medians of one group of frames: inferred scale, measured sky_noise, predicted at the mock's sigma, depth."""
    return (
        f"n {len(g)} median inferred scale {g.scale_inferred.median():.3f} "
        f"frac at 0.10 floor {(g.scale_inferred <= 0.1001).mean():.2f} median sky_noise {g.sky_noise.median():.4f} "
        f"median predicted at mock sigma {g.sky_noise_mock_sigma.median():.4f} "
        f"median depth factor {g.depth_factor.median():.3f}"
    )


for name, g in df[ok].groupby("set"):
    print(name, summary(g))
r = df[df.set == "rings"]
for k, g in r.groupby("ring"):
    print("ring", k, summary(g))
print(pd.cut(r.scale_inferred, [0, 0.1001, 0.12, 0.14, 0.16, 0.2, 0.3]).value_counts().sort_index())
