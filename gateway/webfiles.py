"""The page's files: gzip for text, and revalidation so a new deployment is picked up at once.

The page loads its JavaScript modules by plain names (no build step, no
hashes in file names), so browsers may keep a copy but must ask again each
time (``Cache-Control: no-cache``); an unchanged file costs a 304. Each file
is read and compressed once per version (modification time and size).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import mimetypes
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain",
}
_SMALLEST_WORTH_GZIP = 256


@dataclasses.dataclass(frozen=True)
class _Version:
    stamp: tuple[int, int]  # st_mtime_ns, st_size
    modified: datetime
    content_type: str
    charset: str | None  # text files are UTF-8
    plain: bytes
    gzipped: bytes | None  # None: not text, or too small to gain
    etag: str  # of the plain bytes; the gzipped ones add "-gz"


class WebFiles:
    """Serves the files under ``root``; nothing outside it, no directory listings."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._versions: dict[Path, _Version] = {}

    async def response(self, request: web.Request, name: str) -> web.Response:
        path = (self._root / name).resolve()
        if not path.is_relative_to(self._root) or not path.is_file():
            raise web.HTTPNotFound()
        version = await self._version(path)
        gzipped = version.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", "")
        etag = f"{version.etag}-gz" if gzipped else version.etag
        headers = {"Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if _unchanged(request, etag, version.modified):
            response = web.Response(status=304, headers=headers)
        else:
            body = version.gzipped if gzipped else version.plain
            if gzipped:
                headers["Content-Encoding"] = "gzip"
            response = web.Response(body=body, headers=headers, content_type=version.content_type, charset=version.charset)
        response.etag = etag
        response.last_modified = version.modified
        return response

    async def _version(self, path: Path) -> _Version:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        known = self._versions.get(path)
        if known is None or known.stamp != stamp:
            known = self._versions[path] = await asyncio.to_thread(_read, path, stamp)
        return known


def _read(path: Path, stamp: tuple[int, int]) -> _Version:
    plain = path.read_bytes()
    content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    text = path.suffix in _TYPES
    gzipped = gzip.compress(plain, mtime=0) if text and len(plain) >= _SMALLEST_WORTH_GZIP else None
    return _Version(
        stamp=stamp,
        modified=datetime.fromtimestamp(stamp[0] / 1e9, timezone.utc).replace(microsecond=0),
        content_type=content_type,
        charset="utf-8" if text else None,
        plain=plain,
        gzipped=gzipped,
        etag=hashlib.sha256(plain).hexdigest()[:20],
    )


def _unchanged(request: web.Request, etag: str, modified: datetime) -> bool:
    """The browser's copy is current: its ETag matches, or (without one) it is not older than the file."""
    if request.if_none_match is not None:
        return any(tag.value in (etag, "*") for tag in request.if_none_match)
    return request.if_modified_since is not None and request.if_modified_since >= modified
