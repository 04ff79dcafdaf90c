"""The documentation site: builds offline with ``mkdocs build --strict``, has the key pages, renders the API
reference from the docstrings, loads nothing from the network, and the code on its pages runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUNNABLE = sorted((DOCS / "howto").glob("*.md")) + [DOCS / "gallery.md"]

pytest.importorskip("mkdocs", reason="mkdocs not installed (pip install -e '.[dev]')")
pytest.importorskip("mkdocstrings", reason="mkdocstrings not installed (pip install -e '.[dev]')")


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.resources: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("script", "img", "iframe") and a.get("src"):
            self.resources.append(a["src"])
        if tag == "link" and a.get("href"):
            self.resources.append(a["href"])


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_PROXY": "*", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_site_builds_strict_with_key_pages(site):
    for page in ("index.html", "howto/denoise.html", "howto/deconvolve.html", "howto/localize.html",
                 "howto/verify.html", "gallery.html", "api.html", "trust.html", "deconvolve.html"):
        assert (site / page).is_file(), page
    index = (site / "index.html").read_text()
    for target in ("howto/denoise.html", "howto/deconvolve.html", "howto/localize.html", "howto/verify.html",
                   "gallery.html", "api.html"):
        assert f'href="{target}' in index, target
    assert (site / "images" / "report.png").is_file() and (site / "images" / "napari.png").is_file()


def test_api_reference_is_rendered_from_docstrings(site):
    api = (site / "api.html").read_text()
    for name in ("fluorecon.trust.verify.verify", "fluorecon.report.write_report", "fluorecon.tasks.denoise.denoise",
                 "fluorecon.tasks.deconvolve.deconvolve", "fluorecon.io.read_image"):
        assert f'id="{name}"' in api, name
    # numpy "Parameters" sections become tables with the parameters' descriptions
    assert "Image-level false-alarm rate" in api and "reconstruction" in api


def test_site_loads_nothing_from_the_network_and_its_own_links_resolve(site):
    for page in site.rglob("*.html"):
        refs = _Refs()
        refs.feed(page.read_text())
        remote = [r for r in refs.resources if re.match(r"^(https?:)?//", r)]
        assert not remote, f"{page.relative_to(site)} loads {remote}"
    for page in ["index.html", "gallery.html", *[f"howto/{p.stem}.html" for p in (DOCS / "howto").glob("*.md")]]:
        refs = _Refs()
        refs.feed((site / page).read_text())
        for href in refs.links:
            if re.match(r"^[a-z]+:", href) or href.startswith("#"):
                continue
            target = (site / page).parent / href.split("#")[0]
            assert target.exists(), f"{page}: broken link {href}"


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.stem for p in RUNNABLE])
def test_code_on_the_pages_runs(page, tmp_path, monkeypatch):
    """Every ```python block of the how-to pages and the gallery runs as shown (in a scratch folder)."""
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert blocks, f"{page.name} shows no Python code"
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page.name}[{i}]", "exec"), {"__name__": "__docs__"})
    if page.name == "gallery.md":
        html = (tmp_path / "gallery_report.html").read_text()
        assert "Point spread function (forward model)" in html and 'class="viewer"' in html


def test_readme_and_makefile_point_to_the_site():
    readme = (ROOT / "README.md").read_text()
    assert "make docs" in readme and "mkdocs" in readme
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs:", make, re.M) and "mkdocs build --strict" in make
    dev = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"])
    assert "mkdocs" in dev and "mkdocstrings[python]" in dev
