"""The review page: a static HTML gallery of the top candidates with their scores."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def colour_png(image: np.ndarray, sky_sigma: Sequence[float]) -> bytes:
    """A PNG of a (bands, H, W) stamp: the last three bands as R, G, B (one band: grey), each as
    ``asinh(image / (3 sky_sigma))`` scaled to its 99.5th percentile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    img = np.asarray(image, np.float64)
    sig = np.asarray(sky_sigma, np.float64).reshape(-1, 1, 1)
    x = np.arcsinh(np.nan_to_num(img) / (3 * np.maximum(sig, 1e-30)))
    x = x[::-1][:3] if len(x) >= 3 else np.repeat(x[:1], 3, axis=0)
    top = np.percentile(x, 99.5)
    rgb = np.clip(x / max(top, 1e-6), 0, 1).transpose(1, 2, 0)
    buf = io.BytesIO()
    mpimg.imsave(buf, rgb, format="png")
    return buf.getvalue()


def gallery(
    table: pd.DataFrame, stamps: Mapping[str, bytes], columns: Sequence[str], title: str, note: str = ""
) -> str:
    """HTML of one card per row of ``table`` (in order): its rank, id, the image in ``stamps``
    (PNG bytes by id; a card without one says so) and the named columns."""
    cards = []
    for _, row in table.iterrows():
        gid = str(row["id"])
        png = stamps.get(gid)
        src = f"data:image/png;base64,{base64.b64encode(png).decode()}" if png else ""
        img = (
            f'<img src="{src}" width="128" height="128" alt="{html.escape(gid)}">'
            if png
            else "<div class='missing'>no image</div>"
        )

        vals = "".join(
            f"<tr><td>{html.escape(c)}</td><td>{row[c]:.2f}</td></tr>"
            if isinstance(row[c], float | np.floating)
            else f"<tr><td>{html.escape(c)}</td><td>{html.escape(str(row[c]))}</td></tr>"
            for c in columns
        )
        cards.append(
            f"<div class='card'><b>#{int(row['rank'])}</b> {html.escape(gid)}<br>{img}<table>{vals}</table></div>"
        )
    style = (
        "body{font-family:sans-serif}.card{display:inline-block;vertical-align:top;margin:4px;padding:4px;"
        "border:1px solid #ccc;width:180px;font-size:11px}.card table{font-size:10px}.missing{width:128px;height:128px}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>{''.join(cards)}</body></html>"
    )
