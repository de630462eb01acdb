"""`make docs`: the documentation site, built offline with warnings as errors, and opened in a real
headless Chromium; the README as its landing page, with links that work on GitHub and in the site."""

import re
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ElementTree
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers import DOCS, ROOT, doc_pages
from tests.test_docs import CHROMIUM

README_MOST_LINES = 200
PICTURE = "diagram.svg"
# Pages the README links to, one per thing a reader does (docs/settings.md among them).
LEAST_README_LINKS = 10
EXTERNAL = re.compile(r"""(?:https?:)?//""")
# Where a page would load something from: scripts, stylesheets, fonts, images, frames, imports.
LOADS = [
    re.compile(r"""<script[^>]*\bsrc=["']([^"']+)"""),
    re.compile(r"""<link[^>]*\bhref=["']([^"']+)["'][^>]*\brel=["']?(?:stylesheet|preload|icon|modulepreload)"""),
    re.compile(r"""<link[^>]*\brel=["']?(?:stylesheet|preload|icon|modulepreload)["']?[^>]*\bhref=["']([^"']+)"""),
    re.compile(r"""<(?:img|iframe|source)[^>]*\bsrc=["']([^"']+)"""),
    re.compile(r"""url\(\s*["']?([^"')]+)"""),
    re.compile(r"""@import\s+["']([^"']+)"""),
]


def build(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_make_docs_builds_offline_with_warnings_as_errors():
    makefile = (ROOT / "Makefile").read_text()
    (recipe,) = re.findall(r"^docs: .*\n\t(.*)$", makefile, re.M)

    assert recipe.split() == ["$(BIN)/python", "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "docs", "site"]
    assert re.search(r"^docs-serve: docs\n\t.*http\.server \$\(DOCS_PORT\) --bind 127\.0\.0\.1 --directory site$", makefile, re.M)
    assert "site/" in (ROOT / ".gitignore").read_text().split()


def test_a_broken_anchor_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    (docs / "cost.md").write_text((docs / "cost.md").read_text() + "\n[gone](security.md#no-such-heading)\n")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "results" / "latest.png", tmp_path / "bench" / "results")

    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", str(docs), str(tmp_path / "site")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode != 0
    assert "local id not found in doc 'security': 'no-such-heading'" in result.stderr


def test_nothing_is_loaded_from_the_network(site):
    files = [path for path in site.rglob("*") if path.suffix in {".html", ".css", ".js"}]
    assert len(files) >= 12

    loaded = [
        (str(path.relative_to(site)), found)
        for path in files
        for pattern in LOADS
        for found in pattern.findall(path.read_text(errors="replace"))
    ]

    assert len(loaded) >= 20  # the patterns find the site's own scripts, styles and images
    assert [(path, found) for path, found in loaded if EXTERNAL.match(found)] == []


def test_the_readme_is_short_and_links_every_page():
    readme = doc_pages()["README.md"]
    links = re.findall(r"\]\((docs/[^)#]+\.md)(?:#[^)]*)?\)", readme)

    assert len(readme.splitlines()) <= README_MOST_LINES
    assert len(set(links)) >= LEAST_README_LINKS
    for link in links:
        assert (ROOT / link).is_file(), link  # GitHub follows the relative link to the file
    assert {f"docs/{page.name}" for page in DOCS.glob("*.md") if page.name != "index.md"} <= set(links)
    assert f"](docs/{PICTURE})" in readme


def test_the_readme_starts_with_run_and_test_and_names_make_alone():
    readme = doc_pages()["README.md"]
    (first,) = re.findall(r"```sh\n(.*?)```", readme, re.S)[:1]

    assert [line.split()[:2] for line in first.splitlines()] == [["make", "run"], ["make", "test"], ["make", "#"]]


class _Logged(SimpleHTTPRequestHandler):
    requested: list[tuple[str, int]]

    def log_request(self, code="-", size="-"):
        self.requested.append((urlsplit(self.path).path, int(code)))


@pytest.mark.timeout(180)
def test_a_browser_shows_the_picture_on_the_home_page(site, tmp_path):
    assert shutil.which(CHROMIUM), "chromium is missing: `make debian-deps` installs it"
    ElementTree.parse(site / "_images" / PICTURE)  # a well-formed SVG
    handler = type("Handler", (_Logged,), {"requested": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
                "--dump-dom", f"http://127.0.0.1:{server.server_address[1]}/index.html",
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()

    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert re.search(rf'<img [^>]*src="_images/{PICTURE}"', dom)
    assert ("/_images/" + PICTURE, 200) in handler.requested  # the browser fetched the picture
    assert "<title>inference-on-secure-cloud-run" in dom
    for page in ("own-model", "deploy", "security", "settings", "cost"):
        assert f'href="{page}.html"' in dom


def test_make_alone_lists_every_command():
    makefile = (ROOT / "Makefile").read_text()
    (phony,) = re.findall(r"^\.PHONY: (.*)$", makefile, re.M)
    internal = {"help", "run-port-free", "debian-deps"}

    listed = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout

    named = {line.split()[1] for line in listed.splitlines() if line.startswith("make ")}
    assert set(phony.split()) - internal == named


def test_the_readme_s_own_model_commands_are_the_page_s():
    readme, page = doc_pages()["README.md"], doc_pages()["docs/own-model.md"]
    commands = [line.split("#")[0].strip() for line in re.findall(r"^make (?:export|run MODEL_URI)[^\n]*", readme, re.M)]

    assert len(commands) == 2
    for command in commands:
        assert re.search(rf"^{re.escape(command)}$", page, re.M), command
