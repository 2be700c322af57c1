"""Real GZ DECaLS PNGs: sky_noise (imagestats.measure) and the unbinned/binned noise ratio that tells the
pixel scale; dr5rows with their catalog pixel scale; rings sample (no radii) with the scale inferred."""

import glob
import os

import numpy as np
import pandas as pd
from PIL import Image

from galmap.core.colour import gz_decals_pixscale
from galmap.realism.imagestats import measure, robust_std

D = str(__import__("pathlib").Path(__file__).resolve().parents[2] / ".." / "shared" / "data")


def ratio(img, border=12):
    lum = np.asarray(img)[..., :3].astype(float).mean(-1) / 255
    e = np.ones_like(lum, bool)
    e[border:-border, border:-border] = False
    b = lum.reshape(106, 4, 106, 4).mean((1, 3))
    eb = np.ones_like(b, bool)
    eb[3:-3, 3:-3] = False
    return robust_std(b[eb]) / robust_std(lum[e])


def main():
    rows = pd.concat(
        [
            pd.read_csv(f"{D}/gz_decals_catalog_rows/{f}")
            for f in ("gz_decals_volunteers_5.csv", "gz_decals_volunteers_1_and_2.csv", "gz_decals_auto_posteriors.csv")
        ]
    )
    rows = rows.drop_duplicates("iauname").set_index("iauname")
    out = []
    for p in sorted(glob.glob(f"{D}/gz_decals_catalog_rows/gz_decals_dr5_png_part*/**/*.png", recursive=True)):
        name = os.path.basename(p)[:-4]
        img = np.asarray(Image.open(p).convert("RGB"))
        s = (
            float(gz_decals_pixscale(rows.loc[name, "petro_th50"], rows.loc[name, "petro_th90"]))
            if name in rows.index
            else np.nan
        )
        out.append(dict(set="dr5rows", name=name, pixscale=s, sky_noise=measure(img)["sky_noise"], ratio=ratio(img)))
    cat = pd.read_csv(f"{D}/gz_decals_rings_sample/catalog.csv")
    for _, r in cat.iterrows():
        img = np.asarray(Image.open(f"{D}/gz_decals_rings_sample/{r['file']}").convert("RGB"))
        out.append(
            dict(
                set="rings",
                name=r["iauname"],
                pixscale=np.nan,
                sky_noise=measure(img)["sky_noise"],
                ratio=ratio(img),
                ring=r["ring"],
            )
        )
    df = pd.DataFrame(out)
    df.to_csv(str(__import__("pathlib").Path(__file__).parent / "out" / "real.csv"), index=False)
    print(df[df.set == "dr5rows"].sort_values("pixscale").to_string())
    print(df.groupby("set")[["sky_noise", "ratio"]].median())


if __name__ == "__main__":
    main()
