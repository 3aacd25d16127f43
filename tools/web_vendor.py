"""Copies the browser libraries the pages use from web/node_modules into shared/web/vendor/.

    cd web && npm ci --ignore-scripts && cd .. && python -m tools.web_vendor

The versions are pinned in web/package.json and web/package-lock.json; only the files the
pages load (and each package's licence) are copied, and shared/web/vendor/manifest.json
records each package's locked version and the sha256 of every copied file, so that a test
(tests/foundation/test_web_vendor.py) can tell a vendored file from another version's.
The services serve these files as their own: a page never loads anything from elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
LOCK = WEB / "package-lock.json"
VENDOR = ROOT / "shared" / "web" / "vendor"
MANIFEST = VENDOR / "manifest.json"

# package -> {path in the package: path under shared/web/vendor/<package>/}
FILES = {
    "leaflet": {
        "dist/leaflet.js": "leaflet.js",
        "dist/leaflet.css": "leaflet.css",
        "dist/images/layers.png": "images/layers.png",
        "dist/images/layers-2x.png": "images/layers-2x.png",
        "dist/images/marker-icon.png": "images/marker-icon.png",
        "dist/images/marker-icon-2x.png": "images/marker-icon-2x.png",
        "dist/images/marker-shadow.png": "images/marker-shadow.png",
        "LICENSE": "LICENSE",
    },
    # Natural Earth land at 1:50m (545 KB): a city's coast is recognisable; 1:10m is 3 MB, too
    # much for a phone, and country borders (countries-50m, 756 KB) say nothing inside a city.
    "world-atlas": {
        "land-50m.json": "land-50m.json",
        "LICENSE": "LICENSE",
    },
    "topojson-client": {
        "dist/topojson-client.min.js": "topojson-client.min.js",
        "LICENSE": "LICENSE",
    },
    # The ops console's QR codes of couriers' sign-in links. The package ships no LICENSE file:
    # its MIT notice is the header of qrcode.js itself, copied with it.
    "qrcode-generator": {
        "dist/qrcode.js": "qrcode.js",
    },
}
# Packages whose licence is the header of their vendored file, not a LICENSE file.
LICENCE_IN_HEADER = {"qrcode-generator": "qrcode.js"}


def locked(lock: Path = LOCK) -> dict[str, dict[str, str]]:
    """Each vendored package's version and integrity (the tarball's hash) in the lock file."""
    packages = json.loads(lock.read_text())["packages"]
    return {
        name: {
            "version": packages[f"node_modules/{name}"]["version"],
            "integrity": packages[f"node_modules/{name}"]["integrity"],
        }
        for name in FILES
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor(node_modules: Path = WEB / "node_modules", out: Path = VENDOR) -> dict:
    lock = locked()
    manifest: dict = {}
    for name, files in FILES.items():
        installed = json.loads((node_modules / name / "package.json").read_text())["version"]
        if installed != lock[name]["version"]:
            raise SystemExit(
                f"web/node_modules has {name} {installed}, the lock says {lock[name]['version']}: "
                "run `npm ci --ignore-scripts` in web/ first"
            )
        target = out / name
        shutil.rmtree(target, ignore_errors=True)
        hashes = {}
        for source, dest in files.items():
            (target / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(node_modules / name / source, target / dest)
            hashes[dest] = sha256(target / dest)
        manifest[name] = {**lock[name], "files": hashes}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


if __name__ == "__main__":
    for name, package in vendor().items():
        print(f"vendored {name} {package['version']} into {(VENDOR / name).relative_to(ROOT)}", file=sys.stderr)
