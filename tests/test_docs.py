"""The documentation: links resolve, the CLI reference matches the parsers, no local narrative.

The docs are plain Markdown (README.md and docs/**/*.md, read as GitHub renders them); this file is
their build check. A relative link must name an existing file, and a ``#fragment`` a heading of the
page it points to (GitHub's anchor rule). docs/cli.md must equal what ``python -m
aigb.cli_reference`` writes, built in a fresh interpreter that must not import torch.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_FORBIDDEN = {
    "an issue number": re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE),
    "a local machine path": re.compile(r"/work/|/tmp/g\d+|/opt/wheels"),
}


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    files = [root / "README.md"] if (root / "README.md").exists() else []
    return files + sorted((root / "docs").rglob("*.md"))


def _outside_fences(text: str) -> list[tuple[int, str]]:
    """(line number, line) for the lines outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings, duplicates numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _outside_fences(path.read_text(encoding="utf-8")):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(files: list[Path]) -> list[str]:
    """'file:line: target (why)' for every relative link that does not resolve."""
    problems = []
    for path in files:
        for number, line in _outside_fences(path.read_text(encoding="utf-8")):
            for target in _LINK.findall(_INLINE_CODE.sub("", line)):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
                    continue
                file_part, _, fragment = target.partition("#")
                dest = (path.parent / file_part).resolve() if file_part else path
                where = f"{path}:{number}: {target}"
                if not dest.exists():
                    problems.append(f"{where} (no such file)")
                elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                    problems.append(f"{where} (no heading with anchor #{fragment} in {dest.name})")
    return problems


def forbidden_mentions(files: list[Path]) -> list[str]:
    """'file:line: what' for every issue number or local machine path, code blocks included."""
    problems = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in _FORBIDDEN.items():
                m = pattern.search(line)
                if m:
                    problems.append(f"{path}:{number}: {what} ({m.group(0)!r})")
    return problems


def test_every_relative_link_resolves():
    files = doc_files()
    assert ROOT / "README.md" in files and len(files) > 2
    assert broken_links(files) == []


def test_no_issue_numbers_or_local_paths():
    assert forbidden_mentions(doc_files()) == []


def test_checker_finds_what_it_looks_for(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(textwrap.dedent("""\
        # A page
        ## `aigb evaluate` — strategies, and the oracle
        ## A page
    """))
    (tmp_path / "README.md").write_text(textwrap.dedent("""\
        [ok](docs/page.md) [ok](docs/page.md#aigb-evaluate--strategies-and-the-oracle) [ok](docs/page.md#a-page-1)
        [ok](https://example.org/x.md) [missing](docs/nothing.md) [bad anchor](docs/page.md#nowhere)
        `[in code](docs/nothing.md)`
        ```
        [in a block](docs/nothing.md)
        ```
        As issue 12 showed, see /work/main.
    """))
    files = doc_files(tmp_path)
    problems = broken_links(files)
    assert len(problems) == 2, problems
    assert "docs/nothing.md (no such file)" in problems[0]
    assert "#nowhere" in problems[1]
    assert [p.split(": ", 1)[1] for p in forbidden_mentions(files)] == [
        "an issue number ('issue 12')", "a local machine path ('/work/')"]


def test_slug_follows_github():
    assert slug("`aigb evaluate` — strategies against the market") == "aigb-evaluate--strategies-against-the-market"
    assert slug("The market (version v2)") == "the-market-version-v2"
    assert slug("Set-up: two commands") == "set-up-two-commands"


def test_cli_reference_is_current_and_needs_no_torch():
    script = textwrap.dedent("""\
        import sys
        from pathlib import Path
        from aigb.cli_reference import DEFAULT_OUT, render
        text = render()
        assert "torch" not in sys.modules, "building the CLI reference imported torch"
        current = Path(sys.argv[1]).read_text(encoding="utf-8")
        sys.exit(0 if current == text else 3)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, str(ROOT / "docs" / "cli.md")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 3:
        pytest.fail("docs/cli.md is out of date with the aigb parsers; regenerate it with: python -m aigb.cli_reference")
    assert done.returncode == 0, done.stderr
