"""The README stays a newcomer's page: short, its quickstart well-formed, every link inside the
repository leading somewhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.readme import README, ROOT, anchors, quickstart_script, relative_links, section

DOCS = sorted((ROOT / "docs").glob("*.md"))
LINKED = (
    "docs/contract.md",
    "docs/architecture.md",
    "docs/configuration.md",
    "docs/operations.md",
    "docs/performance.md",
)


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) < 250


def test_the_readme_links_every_document_and_nothing_outside_the_repository() -> None:
    targets = relative_links(README.read_text())
    for doc in LINKED:
        assert doc in {t.split("#")[0] for t in targets}, f"the README does not link {doc}"
    for path in (README, *DOCS):
        assert "../shared/" not in path.read_text(), f"{path.name} points outside the repository"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_links_inside_the_repository_lead_somewhere(path: Path) -> None:
    for target in relative_links(path.read_text()):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name}: {target} names no file"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest.read_text()), f"{path.name}: {target} names no heading"


def test_the_quickstart_is_bash_that_reads_the_service_urls_from_the_environment() -> None:
    script = quickstart_script()
    for name in ("ORDERS", "DISPATCH", "TRACKING"):
        assert f"{name}=${{{name}:-http://127.0.0.1:" in script
    assert "${GIAO_ADMIN_TOKEN:-dev-admin-token}" in script
    # Every other URL goes through the variables, so the test can point it at any system.
    assert script.count("http://127.0.0.1:") == 3
    assert shutil.which("bash")
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_the_quickstart_ends_at_the_readme_section_end() -> None:
    text = (
        "# T\n\n## Quickstart\n\n```bash\necho one\n```\n\ntext\n\n```bash\necho two\n```\n\n"
        "## Next\n\n```bash\necho no\n```\n"
    )
    assert quickstart_script(text) == "echo one\n\necho two\n"
    assert section(text, "## Next").startswith("## Next")
