"""The README and docs/ as a reader follows them: links that lead somewhere, commands that exist.

Files are read with markdown-it-py, a CommonMark parser as GitHub's renderer is one. Links are
checked the way GitHub renders them: a relative link must name a file or folder of the
repository, and a `#fragment` must be the slug GitHub gives one of the target's headings.
Every `make <target>` written in code (a span or a code block) must be a rule of the
Makefile, as make itself parses it."""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_DIR = ROOT / "docs"
DOCUMENTS = [README, *sorted(DOCS_DIR.glob("*.md"))]
README_MAX_LINES = 250

MAKE_COMMAND = re.compile(r"(?<![\w./-])make((?:[ \t]+[^\s;&|`]+)+)")
TARGET = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")


@functools.cache
def tokens(path: Path) -> list[Token]:
    """Every token of a Markdown file, block and inline ones (links, code spans) alike."""
    blocks = MarkdownIt("commonmark").enable("table").parse(path.read_text(encoding="utf-8"))
    return [t for block in blocks for t in [block, *(block.children or [])]]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower-cased, punctuation dropped,
    spaces turned into hyphens (duplicates are numbered by `anchors`)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, numbered as GitHub numbers repeats."""
    found = tokens(path)
    seen: Counter[str] = Counter()
    result: set[str] = set()
    for opening, inline in itertools.pairwise(found):
        if opening.type == "heading_open":
            slug = github_slug(inline.content)
            result.add(slug if seen[slug] == 0 else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return result


def links(path: Path) -> list[str]:
    """The target of every link and image."""
    kinds = {"link_open": "href", "image": "src"}
    return [str(t.attrs[kinds[t.type]]) for t in tokens(path) if t.type in kinds]


def make_targets_named(path: Path) -> set[str]:
    """The targets of every `make …` command written as code in a Markdown file."""
    code = [t.content for t in tokens(path) if t.type in ("fence", "code_block", "code_inline")]
    named: set[str] = set()
    for line in "\n".join(code).splitlines():
        for command in MAKE_COMMAND.finditer(line):
            for word in command.group(1).split():
                if word.startswith("#"):
                    break
                if word.startswith("-") or "=" in word or word.startswith(('"', "'")):
                    continue  # an option, or a variable assignment
                if TARGET.fullmatch(word):
                    named.add(word)
                break
    return named


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto: and the like
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not resolved.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{target}: no such file {resolved.relative_to(root)}")
            continue
        if fragment and resolved.suffix == ".md" and unquote(fragment) not in anchors(resolved):
            problems.append(f"{target}: no heading #{fragment} in {resolved.relative_to(root)}")
    return problems


def test_docs_exist_and_each_starts_with_a_title_and_a_link_back_to_the_readme():
    assert len(DOCUMENTS) > 1, "docs/ holds no Markdown file"
    for path in DOCUMENTS[1:]:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# "), f"{path.name}: no title on its first line"
        assert any("](../README.md" in line for line in lines[:5]), (
            f"{path.name}: no link back to the README near its top"
        )


def test_the_readme_stays_a_front_door_of_at_most_250_lines():
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= README_MAX_LINES, (
        f"README.md has {count} lines (at most {README_MAX_LINES}): move detail to docs/"
    )


def test_the_readme_links_every_doc():
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in links(README)}
    orphans = [path.name for path in DOCUMENTS[1:] if path.resolve() not in linked]
    assert not orphans, f"docs the README does not link: {orphans}"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path):
    assert not broken_links(path), "\n".join(broken_links(path))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_the_docs_name_is_a_rule_of_the_makefile(
    path: Path, make_targets: set[str]
):
    unknown = sorted(make_targets_named(path) - make_targets)
    assert not unknown, f"{path.name} names make targets the Makefile lacks: {unknown}"


def test_the_checks_catch_a_broken_link_a_missing_anchor_and_a_fake_target(
    tmp_path: Path, make_targets: set[str]
):
    """The checkers above must be able to fail: feed them a document with one of each fault."""
    doc = tmp_path / "fault.md"
    doc.write_text(
        "# Title\n\n## CI/CD: pull request → review\n\n### `make bench`, measured\n\n"
        "[ok](#cicd-pull-request--review) [gone](no-such-file.md) [ok too](#make-bench-measured)\n"
        "[anchor](#no-such-heading) [out](/etc/passwd) [wrapped\nok](#title)\n\n"
        "```bash\n# [not a link](nowhere.md)\nmake serve   # fine\n"
        "make no-such-target CDK_ARGS=x\n```\n"
        "and `make IMAGE=x:y image`, a span that wraps: `make\nimage-test`; "
        "not `[code](nothing.md)`\n",
        encoding="utf-8",
    )
    problems = broken_links(doc, root=tmp_path)
    assert len(problems) == 3, problems
    assert any("no-such-file.md" in p for p in problems)
    assert any("#no-such-heading" in p for p in problems)
    assert any("outside the repository" in p for p in problems)
    assert make_targets_named(doc) == {"serve", "no-such-target", "image", "image-test", "bench"}
    assert make_targets_named(doc) - make_targets == {"no-such-target"}


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("CI/CD: pull request → merge → deploy", "cicd-pull-request--merge--deploy"),
        ("Deployment (AWS CDK, ECS Fargate)", "deployment-aws-cdk-ecs-fargate"),
        ("Settings (CDK context values)", "settings-cdk-context-values"),
        ("The `SERVICE_BIND` setting", "the-service_bind-setting"),
    ],
)
def test_anchors_follow_githubs_slug_rules(heading: str, slug: str):
    assert github_slug(heading) == slug
