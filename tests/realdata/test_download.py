"""The downloader against a cutout-service imitation on 127.0.0.1 that can fail on demand; FITS cutouts."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from galmap.core.failures import FailureLog
from galmap.data.cutouts import CutoutError, cutout_hdulist, read_cutout, verify_cutout
from galmap.data.download import DownloadSettings, Item, check_url, download, item_path
from tests.loopback import LoopbackServer

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _fits_bytes(images: np.ndarray, ivar: np.ndarray | None = None, layout: str = "cube") -> bytes:
    buf = io.BytesIO()
    cutout_hdulist(images, ["g", "r", "z"], 0.262, ivar, layout=layout, meta={"SURVEY": "mock"}).writeto(buf)
    return buf.getvalue()


class Service(LoopbackServer):
    """An imitation of the cutout service: ``/{mode}/{name}.fits``; ``mode`` picks the behaviour.

    ``ok`` serves the FITS; ``flaky`` fails with 500 twice first; ``ratelimit`` answers 429
    (Retry-After: 0) once; ``slowonce`` stalls past the client's timeout once; ``slow``
    always; ``error`` always 500; ``truncated`` promises more bytes than it sends; ``corrupt``
    sends garbage; ``html`` an HTML error page with status 200; ``missing`` 404; ``delay``
    waits ``delay_s`` then serves (for kill tests and throughput).
    """

    def __init__(self, files: dict[str, bytes], delay_s: float = 0.0) -> None:
        self.files = files
        self.delay_s = delay_s
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                parts = self.path.strip("/").split("/")
                mode, name = parts[0], parts[-1].removesuffix(".fits")
                with service.lock:
                    n = service.hits[self.path] = service.hits.get(self.path, 0) + 1
                body = service.files.get(name)
                if body is None or mode == "missing":
                    return self._send(404, b"not found", "text/plain")
                if mode == "error" or (mode == "flaky" and n <= 2):
                    return self._send(500, b"internal error", "text/plain")
                if mode == "ratelimit" and n == 1:
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if mode == "slow" or (mode == "slowonce" and n == 1):
                    time.sleep(1.0)
                if mode == "delay":
                    time.sleep(service.delay_s)
                if mode == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/fits")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                if mode == "corrupt":
                    return self._send(200, b"SIMPLE  = garbage" + bytes(range(256)) * 20, "application/fits")
                if mode == "html":
                    page = b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>"
                    return self._send(200, page, "text/html; charset=utf-8")
                return self._send(200, body, "application/fits")

            def _send(self, code: int, body: bytes, ctype: str):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(Handler)


@pytest.fixture(scope="module")
def cutouts(rendered):
    """FITS cutouts made from the mock's DECaLS stamps: name -> bytes (half with ivar HDUs)."""
    shard = rendered["decals"]
    out = {}
    for i in range(8):
        ivar = shard.ivar[i] if i % 2 else None
        out[str(shard.ids[i])] = _fits_bytes(shard.images[i], ivar, layout="hdus" if i % 2 else "cube")
    return out, shard


@pytest.fixture
def service(cutouts):
    svc = Service(cutouts[0], delay_s=0.3)
    yield svc
    svc.close()


FAST = DownloadSettings(service="test cutouts", connections=4, rate_per_s=0, retries=3, backoff_s=0.01,
                        backoff_max_s=0.05, timeout_s=0.5)  # fmt: skip


def _verify(path: Path) -> str | None:
    return verify_cutout(path, ["g", "r", "z"], (48, 48))


def test_everything_fetchable_is_fetched_identical_and_failures_are_recorded(service, cutouts, tmp_path):
    files, shard = cutouts
    names = list(files)
    modes = ["ok", "flaky", "ratelimit", "slowonce", "ok", "ok", "ok", "ok"]
    faults = ["error", "slow", "truncated", "corrupt", "html", "missing"]
    items = [
        Item(n, f"{service.url}/{m}/{n}.fits", item_path(tmp_path, n, ".fits"))
        for n, m in zip(names, modes, strict=True)
    ]
    bad = [Item(f"bad-{m}", f"{service.url}/{m}/{names[0]}.fits", tmp_path / f"bad-{m}.fits") for m in faults]
    failures = FailureLog("data")
    table = download(items + bad, _verify, FAST, failures, progress=False).set_index("id")
    for item in items:
        assert table.loc[item.id, "status"] == "fetched", table.loc[item.id].to_dict()
        assert item.path.read_bytes() == files[item.id]
    assert table.loc[names[1], "attempts"] == 3 and table.loc[names[2], "attempts"] == 2
    assert table.loc[names[3], "attempts"] == 2
    cut = read_cutout(items[1].path)  # the one-HDU-per-band layout with ivar, read back exactly
    assert cut.bands == ["g", "r", "z"] and cut.pixscale_arcsec == pytest.approx(0.262)
    assert np.array_equal(cut.images, shard.images[1]) and np.array_equal(cut.ivar, shard.ivar[1])
    expected = {"error": "HTTP 500", "slow": "timed out", "truncated": "truncated", "corrupt": "verification",
                "html": "HTML page", "missing": "HTTP 404"}  # fmt: skip
    reasons = failures.frame().set_index("id")["reason"]
    for mode, text in expected.items():
        row = table.loc[f"bad-{mode}"]
        assert row["status"] == "failed" and text in row["reason"], (mode, row["reason"])
        assert text in reasons[f"bad-{mode}"] and "test cutouts" in reasons[f"bad-{mode}"]
        assert not (tmp_path / f"bad-{mode}.fits").exists()
    assert table.loc["bad-missing", "attempts"] == 1  # a 404 is not retried
    assert table.loc["bad-error", "attempts"] == FAST.retries + 1
    assert table.loc["bad-error", "http_status"] == 500
    assert not list(tmp_path.glob(".*.part"))  # no temporary file left behind
    # a second run fetches nothing new
    before = dict(service.hits)
    again = download(items, _verify, FAST, progress=False)
    assert (again["status"] == "present").all() and service.hits == before


def test_a_broken_file_under_the_final_name_is_fetched_again(service, cutouts, tmp_path):
    files, _ = cutouts
    name = next(iter(files))
    path = tmp_path / f"{name}.fits"
    path.write_bytes(files[name][:1000])
    table = download([Item(name, f"{service.url}/ok/{name}.fits", path)], _verify, FAST, progress=False)
    assert table["status"].iloc[0] == "fetched" and path.read_bytes() == files[name]


def test_a_killed_download_resumes_and_completes(service, cutouts, tmp_path):
    files, _ = cutouts
    names = list(files)
    script = f"""
import sys
from pathlib import Path
from galmap.data.download import DownloadSettings, Item, download
items = [Item(n, "{service.url}/delay/" + n + ".fits", Path(r"{tmp_path}") / (n + ".fits")) for n in {names!r}]
download(items, None, DownloadSettings(connections=1, rate_per_s=0, timeout_s=5), progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 30
    while time.time() < deadline and len(list(tmp_path.glob("*.fits"))) < 2:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done = list(tmp_path.glob("*.fits"))
    assert 2 <= len(done) < len(names)  # killed mid-way
    for path in done:  # whatever sits under a final name is complete
        assert path.read_bytes() == files[path.stem]
    hits = dict(service.hits)
    items = [Item(n, f"{service.url}/delay/{n}.fits", tmp_path / f"{n}.fits") for n in names]
    table = download(items, _verify, FAST, progress=False).set_index("id")
    assert set(table.loc[[p.stem for p in done], "status"]) == {"present"}
    assert (table["status"] != "failed").all()
    for n in names:
        assert (tmp_path / f"{n}.fits").read_bytes() == files[n]
    refetched = [p for p, k in service.hits.items() if k > hits.get(p, 0)]
    assert len(refetched) == len(names) - len(done)  # only the missing ones
    assert not list(tmp_path.glob(".*.part"))


def test_only_https_to_configured_hosts_ids_stay_in_their_folder_and_size_is_limited(service, cutouts, tmp_path):
    settings = DownloadSettings(allowed_hosts=frozenset({"www.legacysurvey.org"}))
    check_url("https://www.legacysurvey.org/viewer/fits-cutout?ra=1&dec=2", settings)
    check_url("http://127.0.0.1:8000/x.fits", settings)  # the loopback test server
    for url, match in (("http://www.legacysurvey.org/x", "HTTPS only"), ("ftp://a/b", "HTTPS only"),
                       ("https://evil.example.com/x", "not among the configured hosts")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            check_url(url, settings)
    path = item_path(tmp_path, "../../etc/passwd", ".fits")
    assert path.parent == tmp_path and ".." not in path.name.split(".")[0]
    table = download([Item("x", "http://example.com/x.fits", tmp_path / "x.fits")], None, FAST, progress=False)
    assert table["status"].iloc[0] == "failed" and "HTTPS only" in table["reason"].iloc[0]
    files, _ = cutouts
    name = next(iter(files))
    small = DownloadSettings(rate_per_s=0, max_bytes=1000, retries=2, backoff_s=0.01)
    table = download([Item(name, f"{service.url}/ok/{name}.fits", tmp_path / "big.fits")], None, small,
                     progress=False)  # fmt: skip
    assert table["status"].iloc[0] == "failed" and "limit" in table["reason"].iloc[0]
    assert table["attempts"].iloc[0] == 1 and not (tmp_path / "big.fits").exists()


# --------------------------------------------------------------------------- reading real cutouts
def test_real_cutouts_in_both_layouts_are_read_with_bands_and_pixel_scale():
    cube = read_cutout(SHARED / "decals_fits" / "temp_small.fits")
    assert cube.images.shape == (3, 225, 225) and cube.bands == ["g", "r", "z"] and cube.ivar is None
    assert cube.pixscale_arcsec == pytest.approx(0.262, rel=1e-3) and cube.meta["SURVEY"] == "DECaLS"
    hdus = read_cutout(SHARED / "dr9_cutout_with_ivar_psf" / "cutout_59.1067_-30.4848.fits", ["z", "g"])
    assert hdus.bands == ["z", "g"] and hdus.images.shape == (2, 256, 256) and hdus.ivar.shape == (2, 256, 256)
    assert np.median(hdus.ivar) > 1e3 and abs(np.median(hdus.images)) < 0.01  # ivar and images not swapped
    assert read_cutout(SHARED / "decals_fits" / "temp_extended.fits").pixscale_arcsec == pytest.approx(1.0)
    bad = read_cutout(SHARED / "decals_fits" / "example_bad_pix.fits")
    assert 0.3 < bad.bad_fraction < 0.7  # the service's zero-filled regions count as no data
    with pytest.raises(CutoutError, match="example_incomplete.fits: cannot be read"):
        read_cutout(SHARED / "decals_fits" / "example_incomplete.fits")
    with pytest.raises(CutoutError, match="band.s. u missing"):
        read_cutout(SHARED / "decals_fits" / "temp_small.fits", ["u", "g"])
    assert "shape" in verify_cutout(SHARED / "decals_fits" / "temp_small.fits", ["g"], (64, 64))


def test_cutouts_missing_header_information_name_the_file_and_keyword(tmp_path):
    from astropy.io import fits

    img = np.ones((3, 8, 8), np.float32)
    fits.PrimaryHDU(img).writeto(tmp_path / "nobands.fits")
    with pytest.raises(CutoutError, match="nobands.fits: a 3-plane cube without keyword BANDS or BAND0"):
        read_cutout(tmp_path / "nobands.fits")
    h = fits.Header({"BANDS": "grz"})
    fits.PrimaryHDU(img, header=h).writeto(tmp_path / "nowcs.fits")
    with pytest.raises(CutoutError, match="nowcs.fits: no celestial WCS"):
        read_cutout(tmp_path / "nowcs.fits")
    hl = cutout_hdulist(img, ["g", "r", "z"], 0.262, layout="hdus")
    del hl[2].header["BAND"]
    hl.writeto(tmp_path / "noband.fits")
    with pytest.raises(CutoutError, match="noband.fits: an image HDU without keyword BAND or FILTER"):
        read_cutout(tmp_path / "noband.fits")
