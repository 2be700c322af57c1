"""Downloader throughput against a local imitation of a cutout service, at 1, 4 and 16 connections.

A server on 127.0.0.1 answers every request after ``--latency`` seconds (the
round trip and queueing of a real service) with a ``--size``-pixel g,r,z FITS
cutout. The same ``--n`` files are fetched (and verified as FITS cutouts) into a
fresh folder at each number of connections, with no rate limit; the baseline
is one connection, measured in the same run. Usage::

    python benchmarks/download.py [--n 64] [--latency 0.05] [--size 64]

The last line is machine-readable: ``RESULT speedup_4=... speedup_16=...``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from galmap.data.cutouts import cutout_hdulist, verify_cutout
from galmap.data.download import DownloadSettings, Item, download


def serve(body: bytes, latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - http.server API
            time.sleep(latency)
            self.send_response(200)
            self.send_header("Content-Type", "application/fits")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="files per run")
    parser.add_argument("--latency", type=float, default=0.05, help="server delay per request (s)")
    parser.add_argument("--size", type=int, default=64, help="cutout size (pixels)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    cutout_hdulist(rng.normal(0, 0.01, (3, args.size, args.size)), ["g", "r", "z"], 0.262).writeto(buf)
    server = serve(buf.getvalue(), args.latency)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    rates = {}
    for conn in (1, 4, 16):
        with tempfile.TemporaryDirectory() as tmp:
            items = [Item(f"g{i:05d}", f"{url}/c/g{i:05d}.fits", Path(tmp) / f"g{i:05d}.fits") for i in range(args.n)]
            settings = DownloadSettings(service="benchmark", connections=conn, rate_per_s=0)
            t0 = time.perf_counter()
            table = download(items, lambda p: verify_cutout(p, ["g", "r", "z"]), settings, progress=False)
            dt = time.perf_counter() - t0
            assert (table["status"] == "fetched").all(), table["reason"].unique()
        rates[conn] = args.n / dt
        print(f"{conn:3d} connection(s): {args.n} files in {dt:.2f} s = {rates[conn]:.1f} files/s")
    server.shutdown()
    print(f"RESULT speedup_4={rates[4] / rates[1]:.2f} speedup_16={rates[16] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
