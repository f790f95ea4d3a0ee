"""docs/engine.md, checked against the code it teaches: every path and symbol it names exists,
every link (and heading it points to) resolves, and every excerpt of a file is in that file as
written, so that the guide's example is the one the test suite runs."""

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from tests.unit.test_design_doc import (
    FENCE,
    FUNCTION,
    LINK,
    ROOT,
    _exists,
    _prose,
    code_references,
)

GUIDE = ROOT / "docs" / "engine.md"
# An excerpt names its file on its first line: `# examples/subscriptions/saga.py`.
EXCERPT_SOURCE = re.compile(r"^# ((?:[\w.-]+/)+[\w.-]+\.py)\n")


def _text(doc: Path = GUIDE) -> str:
    return doc.read_text(encoding="utf-8")


def _excerpts() -> list[tuple[str, str]]:
    found = []
    for lang, body in FENCE.findall(_text()):
        if lang.strip() == "python" and (source := EXCERPT_SOURCE.match(body)):
            found.append((source[1], body[source.end() :]))
    return found


@cache
def _example_functions() -> set[str]:
    """The functions of the examples, which the design document's check does not read."""
    return {
        node.name
        for source in (ROOT / "examples").rglob("*.py")
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _defined(symbol: str) -> bool:
    function = FUNCTION.match(symbol)
    return _exists(symbol) or bool(function and function[1] in _example_functions())


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", _prose(_text(doc)), re.M)}


def test_every_path_the_guide_names_exists():
    paths, _ = code_references(_text())
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_every_symbol_the_guide_names_is_defined():
    _, symbols = code_references(_text())
    assert symbols
    assert sorted(s for s in symbols if not _defined(s)) == []


def test_every_link_and_heading_it_points_to_resolves():
    broken = []
    for link in LINK.findall(_prose(_text())):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        target, _, anchor = link.partition("#")
        doc = (GUIDE.parent / target) if target else GUIDE
        if not doc.exists() or (anchor and anchor not in _anchors(doc)):
            broken.append(link)
    assert broken == []


def test_the_guide_shows_its_example_as_it_is_written():
    excerpts = _excerpts()
    assert len(excerpts) >= 5
    for path, excerpt in excerpts:
        assert excerpt in (ROOT / path).read_text(encoding="utf-8"), f"{path} differs:\n{excerpt}"


@pytest.mark.parametrize("heading", ["How it starts", "The rules a step's author must keep"])
def test_anchors_are_computed_as_github_does(heading: str):
    assert _anchor(heading) in {"how-it-starts", "the-rules-a-steps-author-must-keep"}
