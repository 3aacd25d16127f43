"""The courier app's pages, served by dispatch with security headers, and the sign-in link."""

from __future__ import annotations

import re
from pathlib import Path

from services.dispatch.app import WEB
from shared.pages import CONTENT_SECURITY_POLICY, ShellWorker
from tests.dispatch.support import ADMIN


async def test_the_app_is_served_with_security_headers(dispatch):
    r = await dispatch.client.get("/app/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-cache"
    r = await dispatch.client.get("/app")
    assert r.status_code in (307, 308) and r.headers["location"].endswith("/app/")


async def test_a_missing_page_is_404_with_the_same_headers(dispatch):
    for path in ("/app/no-such-file.js", "/app/%2e%2e/app.py", "/app/..%2f..%2fapp.py"):
        r = await dispatch.client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "problem+json" in r.headers["content-type"]
    r = await dispatch.client.post("/app/", json={})
    assert r.status_code == 405 and r.headers["x-content-type-options"] == "nosniff"


async def test_the_offline_shell_keeps_every_shared_file_the_app_loads(dispatch):
    """The app's page and scripts load what the project's pages have alike from /web/shared/:
    dispatch serves each, and the service worker keeps each (its SHARED list), or the app
    would not open without network."""
    app = WEB / "app"
    pages = [app / "index.html", *(f for f in app.glob("*.js") if f.name != "sw.js")]
    loaded = {path for page in pages for path in re.findall(r'"(/web/shared/[^"]+)"', page.read_text())}
    worker = (app / "sw.js").read_text()
    shared_list = re.search(r"const SHARED = \[(.*?)\];", worker, re.S)
    assert shared_list is not None
    assert loaded and set(re.findall(r'"([^"]+)"', shared_list.group(1))) == loaded
    for path in sorted(loaded):
        r = await dispatch.client.get(path)
        assert r.status_code == 200 and r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path


async def test_the_service_worker_is_served_with_the_shells_version(dispatch):
    first = await dispatch.client.get("/app/sw.js")
    assert first.status_code == 200 and first.headers["content-type"].split(";")[0] == "text/javascript"
    assert first.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert first.headers["cache-control"] == "no-cache"
    assert re.search(r'const VERSION = "[0-9a-f]{16}";', first.text), "no version written in"
    assert "%SHELL_VERSION%" in (WEB / "app" / "sw.js").read_text()
    assert (await dispatch.client.get("/app/sw.js")).text == first.text  # no change, no new worker


def test_the_shells_version_changes_with_the_content_of_any_of_its_files(tmp_path):
    app, shared = tmp_path / "app", tmp_path / "shared"
    (app / "icons").mkdir(parents=True)
    shared.mkdir()
    (app / "sw.js").write_text('const VERSION = "%SHELL_VERSION%";')
    (app / "app.js").write_text("one")
    (app / "icons" / "icon.png").write_bytes(b"\x89PNG")
    (shared / "ui.js").write_text("ui")
    worker = ShellWorker(app / "sw.js", [app, shared])
    versions = [worker.version()]
    assert worker.text() == f'const VERSION = "{versions[0]}";'

    (app / "app.js").write_text("one")  # written again, the same: the same version
    assert worker.version() == versions[-1]
    for change in (
        lambda: (shared / "ui.js").write_text("ui, changed"),
        lambda: (app / "icons" / "icon.png").write_bytes(b"\x89PNG2"),
        lambda: (shared / "format.js").write_text("new file"),
        lambda: (shared / "format.js").unlink(),
    ):
        change()
        versions.append(worker.version())
        assert versions[-1] != versions[-2]
    assert versions[-1] == versions[-3]  # the file added and taken away again: the version before
    moved = tmp_path / "elsewhere"
    app.rename(moved)
    assert ShellWorker(moved / "sw.js", [moved, shared]).version() == versions[-1]  # where it lies is no part


def test_a_file_replaced_while_the_version_is_read_is_read_again(tmp_path, monkeypatch):
    (tmp_path / "sw.js").write_text('const VERSION = "%SHELL_VERSION%";')
    (tmp_path / "app.js").write_text("one")
    expected = ShellWorker(tmp_path / "sw.js", [tmp_path]).version()
    read_bytes, gone = Path.read_bytes, []

    def replaced_once(path: Path) -> bytes:  # a deploy swaps the file in while it is read
        if path.name == "app.js" and not gone:
            gone.append(path)
            raise FileNotFoundError(path)
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", replaced_once)
    assert ShellWorker(tmp_path / "sw.js", [tmp_path]).version() == expected and gone


async def test_pages_have_their_media_types(tmp_path):
    import httpx
    from fastapi import FastAPI

    from shared.pages import pages_router

    (tmp_path / "index.html").write_text("<!doctype html><title>x</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    (tmp_path / "manifest.webmanifest").write_text("{}")
    app = FastAPI()
    app.router.routes.extend(pages_router("/app", tmp_path).routes)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        js = await client.get("/app/app.js")
        manifest = await client.get("/app/manifest.webmanifest")
    assert js.status_code == 200 and js.headers["content-type"].split(";")[0] == "text/javascript"
    assert manifest.headers["content-type"] == "application/manifest+json"
    assert manifest.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_a_new_courier_gets_a_signin_link_with_the_token_in_the_fragment(start):
    body = {"name": "Trần Văn Minh", "phone": "0912 345 678", "vehicle": "motorbike"}
    relative = await start()
    r = await relative.client.post("/v1/admin/couriers", headers=ADMIN, json=body)
    assert r.status_code == 201 and r.json()["signin_link"] == f"/app/#t={r.json()['token']}"
    public = await start(public_url="https://dispatch.giao.example/")
    r = await public.client.post("/v1/admin/couriers", headers=ADMIN, json=body)
    assert r.json()["signin_link"] == f"https://dispatch.giao.example/app/#t={r.json()['token']}"


async def test_the_console_map_can_use_a_tile_server_and_only_its_images_are_allowed(start):
    tiles = "https://{s}.tiles.example.org/{z}/{x}/{y}.png"
    d = await start(map_tile_url=tiles, background=False)
    assert (await d.client.get("/map/config.json")).json() == {"tile_url": tiles}
    policy = (await d.client.get("/ops/")).headers["content-security-policy"]
    assert "img-src 'self' data: blob: https://*.tiles.example.org;" in policy
    assert policy.replace(" https://*.tiles.example.org", "") == CONTENT_SECURITY_POLICY
    # the courier app loads no map: its policy stays the strict one
    assert (await d.client.get("/app/")).headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_without_a_tile_server_the_console_draws_its_own_base_layer(dispatch):
    assert (await dispatch.client.get("/map/config.json")).json() == {"tile_url": ""}
    assert (await dispatch.client.get("/ops/")).headers["content-security-policy"] == CONTENT_SECURITY_POLICY
