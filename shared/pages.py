"""Static pages of a service (a web app's shell, its scripts, its manifest), served from a
directory under a path with the same security headers on every answer.

    routers=[api.router, pages_router("/app", WEB / "app")]

The pages load nothing from elsewhere (a strict Content-Security-Policy), may not be framed,
and are revalidated on every load (`Cache-Control: no-cache`: a new version is picked up at
once; a service worker caches the shell for offline use). Errors are problem documents like
the API's. A service worker's script is served with the shell's version written into it
(`ShellWorker`), so that every change to the shell is a new worker the browser installs.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from shared.http import problem_response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}

# What the platform's mimetypes table may not know or may spell otherwise (a manifest as
# text/plain would be ignored by the browser; nosniff makes the type matter).
MEDIA_TYPES = {
    ".webmanifest": "application/manifest+json",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
}


def security_headers(img_origin: str = "") -> dict[str, str]:
    """SECURITY_HEADERS, with one more origin images may come from (a map's tile server)."""
    if not img_origin:
        return SECURITY_HEADERS
    policy = CONTENT_SECURITY_POLICY.replace("img-src 'self' data: blob:", f"img-src 'self' data: blob: {img_origin}")
    return {**SECURITY_HEADERS, "content-security-policy": policy}


class Pages:
    """ASGI app: the files of `directory` (index.html for a directory) with the security headers."""

    def __init__(self, directory: Path, headers: dict[str, str] = SECURITY_HEADERS) -> None:
        # Not checked at start: an app whose pages are not there (yet) serves its API, and 404 here.
        self.files = StaticFiles(directory=directory, html=True, check_dir=False)
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        suffix = posixpath.splitext(scope["path"])[1].lower()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(self.headers)
                if message["status"] in (200, 206) and suffix in MEDIA_TYPES:
                    headers["content-type"] = MEDIA_TYPES[suffix]
            await send(message)

        try:
            await self.files(scope, receive, send_with_headers)
        except HTTPException as exc:  # not found, or a method other than GET/HEAD
            detail = "Page not found" if exc.status_code == 404 else str(exc.detail)
            await problem_response(exc.status_code, detail, headers=exc.headers)(scope, receive, send_with_headers)


SHELL_VERSION_MARK = "%SHELL_VERSION%"


class ShellWorker:
    """A service worker's script with its shell's version written in where it says
    `SHELL_VERSION_MARK`: a digest of every file of the shell's directories.

    Browsers compare a worker's script byte for byte to decide that there is a new version, so a
    change to any file of the shell, and only that, makes a new worker, which fetches the whole
    new shell at once beside the one in use (docs/contract.md, the courier app). The digest is
    read again only when a file's size or time changes: the script is fetched on every opening
    of the app."""

    def __init__(self, script: Path, shell: Iterable[Path]) -> None:
        self.script = script
        self.shell = tuple(shell)
        self._known: tuple[tuple[tuple[str, int, int], ...], str] | None = None

    def _files(self) -> list[tuple[str, Path]]:
        """Each file of the shell, named inside its directory: where it lies on disk is no part
        of the version."""
        return [
            (f"{i}/{f.relative_to(directory).as_posix()}", f)
            for i, directory in enumerate(self.shell)
            for f in sorted(directory.rglob("*"))
            if f.is_file()
        ]

    def version(self) -> str:
        for _ in range(3):  # a file replaced while it was read (a deploy under way): read again
            try:
                return self._version()
            except FileNotFoundError:
                continue
        return self._version()

    def _version(self) -> str:
        files = self._files()
        stamps = tuple((name, (st := f.stat()).st_size, st.st_mtime_ns) for name, f in files)
        if self._known is None or self._known[0] != stamps:
            digest = hashlib.sha256()
            for name, f in files:
                digest.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
            self._known = (stamps, digest.hexdigest()[:16])
        return self._known[1]

    def text(self) -> str:
        return self.script.read_text().replace(SHELL_VERSION_MARK, self.version())


def pages_router(path: str, directory: Path, *, img_origin: str = "", worker: ShellWorker | None = None) -> APIRouter:
    """A router serving `directory` under `path` (e.g. "/app": /app/ is its index.html, /app
    redirects there). Add it after the API's routers: routes are tried in order. `img_origin`:
    a map's tile server (shared.maps.tile_origin), the one other origin its pages may load from.
    `worker`: the directory's service worker, served with its shell's version."""
    path = path.rstrip("/")
    router = APIRouter()
    headers = security_headers(img_origin)

    async def to_index(_: Request) -> Any:
        return RedirectResponse(f"{path}/", status_code=308, headers=headers)

    router.add_route(path, to_index, methods=["GET", "HEAD"], include_in_schema=False)
    if worker is not None:

        def worker_script(_: Request) -> Any:  # reads files: Starlette runs it in its thread pool
            return Response(worker.text(), headers=headers, media_type=MEDIA_TYPES[".js"])

        worker_path = f"{path}/{worker.script.relative_to(directory).as_posix()}"
        router.add_route(worker_path, worker_script, methods=["GET"], include_in_schema=False)
    router.mount(path, Pages(directory, headers))
    return router
