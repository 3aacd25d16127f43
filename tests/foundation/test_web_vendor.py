"""The browser libraries in shared/web/vendor are exactly the versions web/package-lock.json pins:
the manifest tools/web_vendor.py writes names the locked version and tarball hash of each
package and the sha256 of each file, and the files' own headers name the same versions."""

from __future__ import annotations

import json

from tools import web_vendor

MANIFEST = json.loads(web_vendor.MANIFEST.read_text())


def test_the_manifest_names_the_locked_versions_and_tarballs() -> None:
    lock = web_vendor.locked()
    assert {n: {"version": p["version"], "integrity": p["integrity"]} for n, p in MANIFEST.items()} == lock
    assert json.loads((web_vendor.WEB / "package.json").read_text())["dependencies"] == {
        name: package["version"] for name, package in lock.items()
    }  # exact versions, no ranges


def test_every_vendored_file_is_the_one_copied_and_nothing_else_is_there() -> None:
    on_disk = {p.relative_to(web_vendor.VENDOR).as_posix() for p in web_vendor.VENDOR.rglob("*") if p.is_file()}
    listed = {f"{name}/{file}" for name, package in MANIFEST.items() for file in package["files"]}
    assert on_disk == listed | {"manifest.json"}
    for name, package in MANIFEST.items():
        assert set(package["files"]) == set(web_vendor.FILES[name].values())
        for file, digest in package["files"].items():
            assert web_vendor.sha256(web_vendor.VENDOR / name / file) == digest, f"{name}/{file} changed"


def test_the_files_headers_name_the_locked_versions() -> None:
    versions = {name: package["version"] for name, package in MANIFEST.items()}
    leaflet = (web_vendor.VENDOR / "leaflet" / "leaflet.js").read_text()[:200]
    assert f"Leaflet {versions['leaflet']}," in leaflet
    topojson = (web_vendor.VENDOR / "topojson-client" / "topojson-client.min.js").read_text()[:200]
    assert f"topojson-client v{versions['topojson-client']} " in topojson
    land = json.loads((web_vendor.VENDOR / "world-atlas" / "land-50m.json").read_text())
    assert land["type"] == "Topology" and "land" in land["objects"]
    for name in MANIFEST:
        if name in web_vendor.LICENCE_IN_HEADER:
            header = (web_vendor.VENDOR / name / web_vendor.LICENCE_IN_HEADER[name]).read_text()[:600]
            assert "Licensed under the MIT license" in header
        else:
            assert (web_vendor.VENDOR / name / "LICENSE").stat().st_size > 100


def test_the_service_area_and_a_destination_area_come_from_h3_cells() -> None:
    from shared import maps

    area = json.loads(maps.service_area_geojson())
    (feature,) = area["features"]
    assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    ring = maps.area_of(20.9586, 107.0452)
    assert len(ring) == 6 and all(abs(lat - 20.9586) < 0.01 and abs(lng - 107.0452) < 0.01 for lat, lng in ring)
    assert maps.tile_origin("") == "" and maps.tile_origin("/tiles/{z}/{x}/{y}.png") == ""
    assert maps.tile_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png") == "https://*.tile.example.org"
