"""The web console's files over plain HTTP: served unsigned, typed, under a strict CSP, and
with nothing in them that reaches outside the node."""

import configparser
import fnmatch
import re
from pathlib import Path

import pytest
import requests
from conftest import Server

from api import console_files

CONSOLE = Path(console_files.__file__).parent / console_files.DIRECTORY
FILES = sorted(p.name for p in CONSOLE.iterdir() if p.is_file())
#: The one scheme://... text allowed: the SVG namespace name, an identifier the page never fetches.
NAMESPACES = {"http://www.w3.org/2000/svg"}


def test_the_console_ships_its_page_scripts_and_style() -> None:
    assert {"index.html", "console.js", "console.css", "sign.js", "verify.js", "bytes.js"} <= set(FILES)
    assert set(console_files.load()) == set(FILES)


def test_the_package_data_ships_every_console_file() -> None:
    config = configparser.ConfigParser()
    config.read(Path(__file__).parent.parent / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["api"].split(",")]
    for name in FILES:
        assert any(fnmatch.fnmatch(f"{console_files.DIRECTORY}/{name}", p) for p in patterns), name


@pytest.mark.parametrize("path", ["/console/", "/console", *[f"/console/{name}" for name in FILES]])
def test_each_file_is_served_unsigned_with_its_type_and_policy(server: Server, path: str) -> None:
    response = requests.get(server.url + path, timeout=10)
    assert response.status_code == 200, response.text
    name = "index.html" if path in ("/console/", "/console") else path.rsplit("/", 1)[1]
    expected = console_files.TYPES[name[name.rfind("."):]]
    assert response.headers["Content-Type"] == expected
    assert response.content == (CONSOLE / name).read_bytes()
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe" not in policy and "http" not in policy and "*" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_an_unknown_console_file_is_a_json_404(server: Server) -> None:
    response = requests.get(server.url + "/console/nothing.js", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"title": "Not Found", "description": "no console file 'nothing.js'"}


def test_the_index_links_to_the_console(server: Server) -> None:
    assert requests.get(server.url + "/", timeout=10).json()["links"]["console"] == "/console/"


@pytest.mark.parametrize("name", FILES)
def test_nothing_in_the_console_references_an_outside_url(name: str) -> None:
    text = (CONSOLE / name).read_text()
    for found in re.findall(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'`)]*", text):
        assert found in NAMESPACES, f"{name} references {found}"
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?//""", text), f"{name} has a protocol-relative URL"
    for specifier in re.findall(r"""\bfrom\s+["']([^"']+)["']""", text):
        assert specifier.startswith("/console/"), f"{name} imports {specifier}"
    for reference in re.findall(r"""(?:src|href)="([^"]+)\"""", text):
        assert reference.startswith("/console/"), f"{name} loads {reference}"
