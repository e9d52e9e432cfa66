"""The page's files over HTTP: gzip for text, and revalidation so a new deployment is picked up at once."""

from __future__ import annotations

import gzip
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import WEB_DIR
from gateway.webfiles import WebFiles

from .gatewayprocess import GatewayProcess

GZIP = {"Accept-Encoding": "gzip, deflate"}


async def test_text_files_are_gzipped_and_revalidated(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for path, file, kind in [("/js/main.js", "js/main.js", "javascript"), ("/", "index.html", "text/html"), ("/style.css", "style.css", "text/css")]:
            async with http.get(gateway.url.rstrip("/") + path, headers=GZIP) as reply:
                assert reply.status == 200
                assert reply.headers["Content-Encoding"] == "gzip"
                assert kind in reply.headers["Content-Type"]
                assert reply.headers["Cache-Control"] == "no-cache"
                assert reply.headers["Vary"] == "Accept-Encoding"
                assert "Last-Modified" in reply.headers
                assert gzip.decompress(await reply.read()) == (WEB_DIR / file).read_bytes()
                etag = reply.headers["ETag"]
            async with http.get(gateway.url.rstrip("/") + path, headers={**GZIP, "If-None-Match": etag}) as again:
                assert again.status == 304
                assert again.headers["ETag"] == etag
                assert await again.read() == b""

        async with http.get(gateway.url + "js/main.js", headers={"Accept-Encoding": "identity"}) as plain:
            assert plain.status == 200 and "Content-Encoding" not in plain.headers
            assert await plain.read() == (WEB_DIR / "js/main.js").read_bytes()
            assert plain.headers["ETag"] != etag

        for outside in ("%2e%2e/gateway/app.py", "js/", "js/nothing.js"):
            async with http.get(gateway.url + outside) as missing:
                assert missing.status == 404, outside


async def test_a_changed_file_gets_a_new_etag(tmp_path: Path) -> None:
    """A new deployment: the old ETag no longer matches, so browsers fetch the new module."""
    files = WebFiles(tmp_path)

    async def serve(request: web.Request) -> web.Response:
        return await files.response(request, request.match_info["name"])

    app = web.Application()
    app.router.add_get("/{name:.+}", serve)
    (tmp_path / "a.js").write_text("export const a = 1;\n")
    async with TestClient(TestServer(app)) as client:
        first = await client.get("/a.js")
        etag = first.headers["ETag"]
        assert await first.text() == "export const a = 1;\n"
        (tmp_path / "a.js").write_text("export const a = 22;\n")
        second = await client.get("/a.js", headers={"If-None-Match": etag})
        assert second.status == 200 and second.headers["ETag"] != etag
        assert await second.text() == "export const a = 22;\n"
