"""One downloader for every service: concurrent, rate-limited, resumable, retried, verified, atomic.

:func:`download` fetches a list of :class:`Item` (an object id, a URL, the final
file path) with ``connections`` worker threads sharing one politeness limit
(``rate_per_s`` requests per second, all connections together). For each item:

- **resumable**: a file already at its final path that passes ``verify`` is
  kept and not fetched again (status ``present``), so a rerun fetches only what
  is missing or was broken;
- **atomic**: the body is streamed to a temporary name in the same folder,
  checked (complete against ``Content-Length``, below ``max_bytes``, not an
  HTML error page, then ``verify``), and only then renamed to its final name:
  no partial or unverified file ever sits under a final name;
- **retried** with exponential backoff (``backoff_s * 2^k``, capped at
  ``backoff_max_s``, with seeded jitter) on timeouts, connection errors, HTTP
  5xx, 429 (honouring ``Retry-After``), truncated bodies and files that fail
  verification; other 4xx fail at once;
- **safe**: only ``https`` URLs to the configured hosts (``http`` only to the
  loopback interface, for tests), object ids sanitised before they become file
  names (:func:`galmap.core.ids.sanitize_id`), a size limit per file.

The result is a table with one row per item (``id, url, path, status,
http_status, attempts, bytes, seconds, reason``) where ``status`` is
``fetched``, ``present`` or ``failed``; failures also become ``failures.csv``
rows (``id, stage, reason``) naming the service, the HTTP status or the cause,
and how to retry.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from galmap.core.failures import FailureLog
from galmap.core.ids import sanitize_id

log = logging.getLogger("galmap")

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
RESULT_COLUMNS = ["id", "url", "path", "status", "http_status", "attempts", "bytes", "seconds", "reason"]
#: ``verify(path) -> None`` when the file is good, else the reason it is not
Verify = Callable[[Path], "str | None"]


class DownloadError(Exception):
    """One attempt failed; ``retry`` says whether another attempt may succeed."""

    def __init__(self, reason: str, status: int | None = None, retry: bool = True, wait_s: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry = retry
        self.wait_s = wait_s


@dataclass(frozen=True)
class Item:
    """One file to fetch: the object id (sanitised for paths), its URL, the final path."""

    id: str
    url: str
    path: Path


@dataclass
class DownloadSettings:
    """How politely and persistently to fetch (see the module docstring)."""

    service: str = "service"
    connections: int = 4
    rate_per_s: float = 10.0
    retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 60.0
    max_bytes: int = 200 * 2**20
    allowed_hosts: frozenset[str] | None = None
    user_agent: str = "galmap (https://github.com/galmap; reproducible galaxy-image analysis)"
    seed: int = 0
    chunk_bytes: int = 1 << 16
    extra_headers: dict[str, str] = field(default_factory=dict)


def item_path(folder: str | Path, object_id: str, suffix: str) -> Path:
    """``folder/<sanitised id><suffix>``: object names never escape ``folder``."""
    folder = Path(folder)
    path = folder / f"{sanitize_id(object_id)}{suffix}"
    if path.resolve().parent != folder.resolve():
        raise ValueError(f"object id {object_id!r} would leave the folder {folder}")
    return path


def check_url(url: str, settings: DownloadSettings) -> None:
    """Refuse anything but https to an allowed host (http only to the loopback interface)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http" and host in LOOPBACK:
        return
    if parts.scheme != "https":
        raise ValueError(f"{settings.service}: refusing {parts.scheme or 'a scheme-less'} URL {url!r}: HTTPS only")
    if settings.allowed_hosts is not None and host not in settings.allowed_hosts:
        raise ValueError(
            f"{settings.service}: host {host!r} of {url!r} is not among the configured hosts "
            f"({', '.join(sorted(settings.allowed_hosts))})"
        )


class RateLimiter:
    """At most ``rate_per_s`` starts per second over all threads (evenly spaced)."""

    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def _looks_like_html(head: bytes) -> bool:
    """An HTML (or XHTML) page, e.g. a service's error page; XML data such as a VOTable is not."""
    text = head.lstrip()[:512].lower()
    if text.startswith(b"<?xml"):
        return b"<html" in text or b"<!doctype html" in text
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _fetch_once(item: Item, settings: DownloadSettings, tmp: Path) -> tuple[int, int]:
    """One GET of ``item.url`` into ``tmp``; returns (HTTP status, bytes) or raises :class:`DownloadError`."""
    headers = {"User-Agent": settings.user_agent} | settings.extra_headers
    request = urllib.request.Request(item.url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as resp:  # noqa: S310 - scheme checked
            status = int(resp.status)
            expected = resp.headers.get("Content-Length")
            expected_n = int(expected) if expected and expected.isdigit() else None
            if expected_n is not None and expected_n > settings.max_bytes:
                raise DownloadError(f"{expected_n} bytes exceed the limit of {settings.max_bytes}", status, False)
            ctype = (resp.headers.get("Content-Type") or "").lower()
            n = 0
            head = b""
            with open(tmp, "wb") as fh:
                while chunk := resp.read(settings.chunk_bytes):
                    if len(head) < 512:
                        head += chunk[:512]
                    n += len(chunk)
                    if n > settings.max_bytes:
                        raise DownloadError(f"more than the limit of {settings.max_bytes} bytes", status, False)
                    fh.write(chunk)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
        retry = exc.code >= 500 or exc.code in (408, 429)
        raise DownloadError(f"HTTP {exc.code} {exc.reason}", exc.code, retry, wait) from None
    except TimeoutError as exc:
        raise DownloadError(f"timed out after {settings.timeout_s:g} s ({exc})") from None
    except (urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise DownloadError(f"timed out after {settings.timeout_s:g} s connecting") from None
        raise DownloadError(f"connection failed: {reason}") from None
    except Exception as exc:  # noqa: BLE001 - http.client.IncompleteRead and friends: a broken body
        raise DownloadError(f"broken response: {type(exc).__name__}: {exc}") from None
    if expected_n is not None and n != expected_n:
        raise DownloadError(f"truncated body: {n} of {expected_n} bytes", status)
    if "text/html" in ctype or _looks_like_html(head):
        raise DownloadError(f"an HTML page instead of data (HTTP {status}, Content-Type {ctype or 'none'})", status)
    return status, n


def _one(item: Item, verify: Verify | None, settings: DownloadSettings, limiter: RateLimiter) -> dict:
    """Fetch (or keep) one item; never raises: the outcome is the returned row."""
    t0 = time.perf_counter()
    row = {"id": item.id, "url": item.url, "path": str(item.path), "status": "failed", "http_status": None,
           "attempts": 0, "bytes": 0, "seconds": 0.0, "reason": ""}  # fmt: skip
    if item.path.exists():
        why = verify(item.path) if verify else None
        if why is None:
            row |= {"status": "present", "bytes": item.path.stat().st_size}
            return row
        log.info("%s: %s exists but %s; fetching it again", settings.service, item.path, why)
    try:
        check_url(item.url, settings)
    except ValueError as exc:
        row["reason"] = str(exc)
        return row
    item.path.parent.mkdir(parents=True, exist_ok=True)
    for stale in item.path.parent.glob(f".{item.path.name}.*.part"):  # left by a killed run
        stale.unlink(missing_ok=True)
    rng = random.Random(f"{settings.seed}:{item.id}")
    last: DownloadError | None = None
    for attempt in range(settings.retries + 1):
        row["attempts"] = attempt + 1
        limiter.wait()
        fd, name = tempfile.mkstemp(prefix=f".{item.path.name}.", suffix=".part", dir=item.path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            status, n = _fetch_once(item, settings, tmp)
            why = verify(tmp) if verify else None
            if why is not None:
                raise DownloadError(f"the file fails verification: {why}", status)
            os.replace(tmp, item.path)
            row |= {"status": "fetched", "http_status": status, "bytes": n, "reason": ""}
            break
        except DownloadError as exc:
            last = exc
            row |= {"http_status": exc.status, "reason": exc.reason}
            if not exc.retry or attempt == settings.retries:
                break
            wait = min(settings.backoff_max_s, settings.backoff_s * 2**attempt) * (0.5 + rng.random())
            if exc.wait_s is not None:
                wait = min(settings.backoff_max_s, max(wait, exc.wait_s))
            time.sleep(wait)
        finally:
            tmp.unlink(missing_ok=True)
    if row["status"] == "failed" and last is not None:
        row["reason"] = f"{last.reason} (after {row['attempts']} attempt(s))"
    row["seconds"] = time.perf_counter() - t0
    return row


def download(
    items: Sequence[Item],
    verify: Verify | None = None,
    settings: DownloadSettings | None = None,
    failures: FailureLog | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fetch every item (see the module docstring); return one result row per item, in input order."""
    settings = settings or DownloadSettings()
    if settings.connections < 1:
        raise ValueError(f"{settings.service}: connections must be at least 1, not {settings.connections}")
    paths = [str(i.path) for i in items]
    if len(set(paths)) != len(paths):
        dup = sorted({p for p in paths if paths.count(p) > 1})[:3]
        raise ValueError(f"{settings.service}: several items would be written to the same file ({', '.join(dup)})")
    limiter = RateLimiter(settings.rate_per_s)
    rows: list[dict | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc=f"{settings.service}", unit="file", disable=not progress)
    with ThreadPoolExecutor(max_workers=settings.connections) as pool:
        futures = {pool.submit(_one, item, verify, settings, limiter): k for k, item in enumerate(items)}
        for fut in as_completed(futures):
            rows[futures[fut]] = fut.result()
            bar.update(1)
    bar.close()
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    bad = table[table["status"] == "failed"]
    if failures is not None:
        for _, r in bad.iterrows():
            failures.add(
                r["id"],
                f"{settings.service}: {r['url']}: {r['reason']}; "
                "rerun the same command to retry (only missing or broken files are fetched)",
            )
    counts = table["status"].value_counts().to_dict()
    log.info("%s: %s of %d files", settings.service, ", ".join(f"{v} {k}" for k, v in counts.items()), len(table))
    return table
