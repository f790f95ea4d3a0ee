"""docs/design.md and docs/design.ko.md, checked against the code they describe.

- The saga status diagram in each document has exactly the edges of
  `sagaengine.decisions.TRANSITIONS`, enters at the status `PostgresSagaStore.create` inserts,
  and leaves from the statuses that have no way out: neither can change without the other.
- Every module path, symbol and relative link the documents name exists, so a document cannot
  point at code that is gone.
- Both documents name the same code and every step of every saga definition, so the Korean one
  cannot fall behind the English one.
"""

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest

from orchestrator.definitions import SAGAS as REGISTRY
from sagaengine.decisions import TRANSITIONS
from sagaengine.definition import FINAL_STATUSES, SagaStatus

ROOT = Path(__file__).resolve().parents[2]
ENGLISH = ROOT / "docs" / "design.md"
KOREAN = ROOT / "docs" / "design.ko.md"
DOCS = [ENGLISH, KOREAN]
PACKAGES = (
    "sagaengine",
    "common",
    "orchestrator",
    "order_service",
    "user_service",
    "payment_service",
    "concert_service",
    "data_platform",
    "tools",
)
ENDPOINT = "[*]"  # mermaid's start and end pseudo-state

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
STATE_EDGE = re.compile(r"^(\[\*\]|\w+)\s*-->\s*(\[\*\]|\w+)\s*(?::.*)?$")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"^(?:[\w.-]+/)+[\w.-]*$|^[\w-]+\.(?:py|md|toml)$")
MEMBER = re.compile(r"^([A-Z]\w*)\.(\w+)(?:\(\))?$")
FUNCTION = re.compile(r"^([a-z_]\w*)\(\)$")
DOTTED = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.\w+)+$")


def _text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def _mermaid(text: str, kind: str) -> list[str]:
    return [
        body
        for lang, body in FENCE.findall(text)
        if lang.strip() == "mermaid" and body.lstrip().startswith(kind)
    ]


def _prose(text: str) -> str:
    """The document without its fenced blocks (diagrams, shell sessions)."""
    return FENCE.sub("", text)


def diagram_edges(text: str) -> list[tuple[str, str]]:
    """The edges of the document's one stateDiagram-v2, as (from, to) pairs."""
    blocks = _mermaid(text, "stateDiagram")
    assert len(blocks) == 1, f"expected one stateDiagram block, found {len(blocks)}"
    edges = []
    for line in blocks[0].splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("%%") or line.startswith("direction "):
            continue
        match = STATE_EDGE.match(line)
        assert match, f"a line of the state diagram this test cannot read: {line!r}"
        edges.append((match[1], match[2]))
    return edges


@cache
def created_status() -> SagaStatus:
    """The status a new saga is inserted with, read from `PostgresSagaStore.create` itself."""
    tree = ast.parse((ROOT / "sagaengine" / "postgres.py").read_text(encoding="utf-8"))
    store = next(
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PostgresSagaStore"
    )
    create = next(
        n
        for n in store.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "create"
    )
    values = [
        node.value
        for node in ast.walk(create)
        if isinstance(node, ast.keyword) and node.arg == "status"
    ]
    assert len(values) == 1, "PostgresSagaStore.create should set one status"
    value = values[0]
    assert (
        isinstance(value, ast.Attribute)
        and isinstance(value.value, ast.Name)
        and value.value.id == "SagaStatus"
    ), f"PostgresSagaStore.create sets a status this test cannot read: {ast.unparse(value)}"
    return SagaStatus[value.attr]


def code_edges() -> set[tuple[str, str]]:
    moves = {(str(a), str(b)) for a, targets in TRANSITIONS.items() for b in targets}
    start = {(ENDPOINT, str(created_status()))}
    dead_ends = {(str(s), ENDPOINT) for s in SagaStatus if not TRANSITIONS[s]}
    return moves | start | dead_ends


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_the_state_diagram_has_exactly_the_transitions_of_the_code(doc: Path):
    drawn = diagram_edges(_text(doc))
    assert len(drawn) == len(set(drawn)), "an edge is drawn twice"
    expected = code_edges()
    assert set(drawn) == expected, (
        f"{doc.name} draws {sorted(set(drawn) - expected)} that the code does not have, "
        f"and lacks {sorted(expected - set(drawn))}"
    )


def test_the_diagram_ends_exactly_at_the_engines_final_statuses():
    assert {s for s in SagaStatus if not TRANSITIONS[s]} == FINAL_STATUSES


def test_the_reader_of_diagrams_rejects_a_changed_edge():
    """The check above can fail: a diagram with one edge redirected disagrees with the code."""
    text = _text(ENGLISH)
    changed = text.replace("COMPENSATING --> COMPENSATED", "COMPENSATING --> COMPLETED", 1)
    assert changed != text
    assert set(diagram_edges(changed)) != code_edges()


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_both_sequence_diagrams_are_there(doc: Path):
    assert len(_mermaid(_text(doc), "sequenceDiagram")) >= 2


def code_references(text: str) -> tuple[set[str], set[str]]:
    """(repository paths, code symbols) named in backticks outside fenced blocks."""
    paths, symbols = set(), set()
    for span in CODE_SPAN.findall(_prose(text)):
        span = span.strip()
        if PATH.match(span):
            paths.add(span)
        elif MEMBER.match(span) or FUNCTION.match(span) or DOTTED.match(span):
            symbols.add(span)
    return paths, symbols


@cache
def definitions() -> tuple[dict[str, set[str]], set[str]]:
    """Every class of the project's packages with its members, and every function name."""
    classes: dict[str, set[str]] = {}
    functions: set[str] = set()
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    functions.add(node.name)
                elif isinstance(node, ast.ClassDef):
                    members = classes.setdefault(node.name, set())
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                            members.add(item.name)
                        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                            members.add(item.target.id)
                        elif isinstance(item, ast.Assign):
                            members |= {t.id for t in item.targets if isinstance(t, ast.Name)}
    return classes, functions


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def _exists(symbol: str) -> bool:
    classes, functions = definitions()
    if member := MEMBER.match(symbol):
        return member[2] in classes.get(member[1], set())
    if function := FUNCTION.match(symbol):
        return function[1] in functions
    return _resolves(symbol)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_path_the_document_names_exists(doc: Path):
    paths, _ = code_references(_text(doc))
    assert paths, "the document names no module at all"
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_symbol_the_document_names_is_defined(doc: Path):
    _, symbols = code_references(_text(doc))
    assert symbols, "the document names no class or function at all"
    assert sorted(s for s in symbols if not _exists(s)) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_relative_link_resolves(doc: Path):
    targets = {
        link.split("#")[0]
        for link in LINK.findall(_prose(_text(doc)))
        if not link.startswith(("http://", "https://", "mailto:", "#"))
    }
    assert sorted(t for t in targets if not (doc.parent / t).exists()) == []


def test_both_documents_name_the_same_code():
    english, korean = code_references(_text(ENGLISH)), code_references(_text(KOREAN))
    assert english[0] == korean[0], (
        f"paths only in design.md: {sorted(english[0] - korean[0])}; "
        f"only in design.ko.md: {sorted(korean[0] - english[0])}"
    )
    assert english[1] == korean[1], (
        f"symbols only in design.md: {sorted(english[1] - korean[1])}; "
        f"only in design.ko.md: {sorted(korean[1] - english[1])}"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_step_of_every_saga_is_described(doc: Path):
    spans = set(CODE_SPAN.findall(_prose(_text(doc))))
    steps = {step.name for definition in REGISTRY.values() for step in definition.steps}
    assert sorted(steps - spans) == []
