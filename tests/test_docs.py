"""The documentation holds together: a short README, an architecture page that names every layer,
relative links (and their #anchors) that lead somewhere, and decisions that say when and whether
they hold. Reads files only: no database, no Airflow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 200
# the pages whose links are checked: the README, every page in docs/, and the folders' READMEs
PAGES = sorted([README, *DOCS.glob("*.md"), REPO / "bench" / "README.md", REPO / "expectations" / "README.md"])

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
DECISION = re.compile(
    r"^## (?P<title>.+) \((?P<date>\d{4}-\d{2}-\d{2}), "
    r"(?P<status>accepted|proposed|rejected|deprecated|(?:amended|superseded) by \"(?P<other>[^\"]+)\")\)$")


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("code", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text(encoding="utf-8")))


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, at most {README_MAX_LINES}: move reference material to a page in docs/")


def test_readme_keeps_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text


def test_architecture_names_every_layer():
    page = DOCS / "architecture.md"
    assert page.is_file(), "docs/architecture.md is missing"
    text = page.read_text(encoding="utf-8")
    packages = sorted(p.parent.name for p in (REPO / "crm360").glob("*/__init__.py"))
    assert packages, "no crm360 sub-packages found"
    missing = [p for p in packages if f"crm360/{p}/" not in text and f"crm360.{p}" not in text]
    assert not missing, f"docs/architecture.md does not name the crm360 sub-package(s) {', '.join(missing)}"
    assert "```" in text, "docs/architecture.md has no diagram (a fenced block)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_decisions_are_dated_with_a_status():
    text = (DOCS / "decisions.md").read_text(encoding="utf-8")
    headings = [line for line in FENCE.sub("", text).splitlines() if line.startswith("## ")]
    assert headings, "docs/decisions.md has no entries"
    parsed = {line: DECISION.match(line) for line in headings}
    undated = [line for line, m in parsed.items() if not m]
    assert not undated, ("each decision heading ends with (YYYY-MM-DD, status), status one of accepted, "
                         "proposed, rejected, deprecated, amended by \"Title\", superseded by \"Title\": "
                         + "; ".join(undated))
    titles = {m["title"] for m in parsed.values()}
    unknown = [f"{m['title']} -> {m['other']}" for m in parsed.values() if m["other"] and m["other"] not in titles]
    assert not unknown, "a status names a decision that does not exist: " + "; ".join(unknown)


def test_the_environment_reference_is_generated_from_the_settings(tmp_path):
    """docs/configuration.md's table of environment variables is what `crm360 config reference`
    writes from crm360/core/settings.py: a field added or changed there without regenerating the
    page fails here."""
    from crm360 import cli
    from crm360.core import settings

    page = DOCS / "configuration.md"
    text = page.read_text(encoding="utf-8")
    assert settings.with_reference(text) == text, (
        "docs/configuration.md's environment reference is out of date: run `crm360 config reference`")
    for name in settings.env_names():
        assert f"| `{name}` |" in text, f"{name} is missing from docs/configuration.md"
    # a stale copy is found, and rewritten with the prose around the table kept
    stale = tmp_path / "configuration.md"
    stale.write_text(text.replace("| `CRM360_LOAD_WORKERS` |", "| `CRM360_LOAD_WORKER` |"), encoding="utf-8")
    assert cli.main(["config", "reference", "--check", "--page", str(stale)]) == 1
    assert cli.main(["config", "reference", "--page", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
