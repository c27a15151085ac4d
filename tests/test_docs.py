"""Citations in the repository point at files a reader of the repository has.

Docstrings, comments and documents cite the maintainers' notes as ``docs/protocol.md §N`` /
``docs/controller.md §N`` (or a Java class by name). These tests fail when a citation names a
file that is not in the repository (the design notes it was once written from), or a section
that the cited file does not have."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Where citations live: the package, its tests, benchmarks, fuzzers and tools, and the
#: top-level documents.
SOURCE_DIRS = ("pravega_wire", "tests", "bench", "fuzz", "tools", "docs")
SOURCE_SUFFIXES = {".py", ".pyx", ".pxd", ".pyi", ".md", ".sh", ".proto", ".toml", ".txt"}

#: Notes a user of the repository does not have (spelled in two parts so that this file does
#: not cite them itself).
MISSING_NOTES = tuple(name + ".md" for name in ("PROTOCOL", "CONTROLLER", "DESIGN"))

#: ``docs/<file>.md §4.2`` and any sections listed after it: ``docs/protocol.md §3.8, §4.6, §9``
#: (the file name may be in backquotes; the list may break across lines).
CITATION = re.compile(r"docs/([\w.-]+\.md)`?((?:[\s,]*(?:and\s+)?§\d+(?:\.\d+)*)+)")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
#: A numbered heading: ``## 4. Title``, ``### 4.2 Title``, ``### 4.2–4.4 Title``.
HEADING = re.compile(r"^#+\s+(\d+(?:\.\d+)*)\.?(?:\s*[–-]\s*(\d+(?:\.\d+)*))?\s", re.MULTILINE)


def _sources() -> list[Path]:
    found = [p for p in ROOT.glob("*.md")] + [ROOT / "tasks.sh"]
    for directory in SOURCE_DIRS:
        found.extend(p for p in (ROOT / directory).rglob("*")
                     if p.suffix in SOURCE_SUFFIXES and p.is_file()
                     and "__pycache__" not in p.parts)
    return sorted(p for p in found if p.exists())


def _sections(document: str) -> set[str]:
    """The section numbers of a document's numbered headings (a range heading gives each
    number of the range)."""
    numbers: set[str] = set()
    for match in HEADING.finditer(document):
        first, last = match.group(1), match.group(2)
        numbers.add(first)
        if last is not None:
            head, _, low = first.rpartition(".")
            last_head, _, high = last.rpartition(".")
            assert head == last_head, f"a heading range across sections: {match.group(0)!r}"
            numbers.update(f"{head}.{n}" if head else str(n)
                           for n in range(int(low), int(high) + 1))
    return numbers


def citations(text: str) -> list[tuple[str, str]]:
    """Every ``(file, section)`` cited in ``text``."""
    return [(match.group(1), number) for match in CITATION.finditer(text)
            for number in SECTION.findall(match.group(2))]


def test_the_section_parsers_understand_the_citation_forms():
    text = ("(docs/protocol.md §3.8, §4.6, §9) `docs/protocol.md` §6 (docs/controller.md\n"
            "  §5.4) docs/protocol.md §1 and §7.3; see docs/real-store.md.")
    assert citations(text) == [("protocol.md", "3.8"), ("protocol.md", "4.6"),
                               ("protocol.md", "9"), ("protocol.md", "6"),
                               ("controller.md", "5.4"), ("protocol.md", "1"),
                               ("protocol.md", "7.3")]
    assert _sections("# T\n## 4. The path\n### 4.2–4.4 The encoder\n### 4.5 Timeout\n") == {
        "4", "4.2", "4.3", "4.4", "4.5"}


def test_no_citation_of_notes_the_repository_does_not_have():
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in _sources()
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if any(note in line for note in MISSING_NOTES)]
    assert not offenders, "cite docs/protocol.md or docs/controller.md instead:\n" + \
        "\n".join(offenders)


def test_every_cited_section_exists():
    missing = []
    for path in _sources():
        for document, number in citations(path.read_text(encoding="utf-8")):
            cited = ROOT / "docs" / document
            if not cited.is_file():
                missing.append(f"{path.relative_to(ROOT)}: docs/{document} (no such file)")
            elif number not in _sections(cited.read_text(encoding="utf-8")):
                missing.append(f"{path.relative_to(ROOT)}: docs/{document} §{number}")
    assert not missing, "cited sections that do not exist:\n" + "\n".join(missing)


def test_the_documents_have_the_sections_the_code_relies_on():
    """The check above is not vacuous: the package cites both documents, by section."""
    cited = {c for path in _sources() if path.is_relative_to(ROOT / "pravega_wire")
             for c in citations(path.read_text(encoding="utf-8"))}
    assert {document for document, _ in cited} >= {"protocol.md", "controller.md"}
    assert len(cited) >= 15
