"""The commands and code the documentation shows are valid.

Every ``$ stackengine ...`` console line of docs/*.rst and of the tutorial
notebook's text, and every ``stackengine ...`` command in README.md's shell
blocks, must parse with stackengine's own argument parser (glob patterns stay
strings; nothing is run). Every Python block of docs/*.rst and README.md
(among them every one with ``import stackengine as se``) must compile. A
console line is exempt only when its comment says ``(not a command)``.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from pathlib import Path

import pytest

from stackengine.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.rst"))
README = ROOT / "README.md"
TUTORIAL = ROOT / "docs" / "tutorial.ipynb"
NOT_A_COMMAND = "(not a command)"
# Options that read their file while parsing (--output-wcs) get a stand-in for the
# file the example names, so that the whole command is checked.
STAND_INS = {
    "grid.head": "\n".join(
        [
            "NAXIS   = 2",
            "NAXIS1  = 2000",
            "NAXIS2  = 2000",
            "CTYPE1  = 'RA---TAN'",
            "CTYPE2  = 'DEC--TAN'",
            "CRVAL1  = 150.0",
            "CRVAL2  = 2.0",
            "CRPIX1  = 1000.5",
            "CRPIX2  = 1000.5",
            "CDELT1  = -0.0002",
            "CDELT2  = 0.0002",
        ]
    ),
}


def _join_continuations(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines ending in a backslash joined with the next: (first line number, command)."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in lines:
        if pending is not None:
            number, line = pending[0], pending[1] + " " + line.strip()
            pending = None
        if line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1])
        else:
            out.append((number, line))
    if pending is not None:
        out.append(pending)
    return out


def _dollar_commands(name: str, text: str) -> list[tuple[str, str]]:
    """``$ stackengine ...`` lines (with their continuations) of a text."""
    lines = list(enumerate(text.splitlines(), 1))
    found = []
    for i, (number, line) in enumerate(lines):
        if not line.strip().startswith("$ stackengine"):
            continue
        block = [(number, line.strip()[2:])]
        j = i
        while block[-1][1].rstrip().endswith("\\") and j + 1 < len(lines):
            j += 1
            block.append(lines[j])
        for first, command in _join_continuations(block):
            found.append((f"{name}:{first}", command))
    return found


def _readme_commands() -> list[tuple[str, str]]:
    """``stackengine ...`` commands in README.md's bash blocks (also after ``&&``)."""
    found, fence = [], None
    lines = list(enumerate(README.read_text(encoding="utf-8").splitlines(), 1))
    block: list[tuple[int, str]] = []
    for number, line in lines:
        if line.startswith("```"):
            if fence is None:
                fence, block = line[3:].strip(), []
            else:
                if fence in ("bash", "sh", "shell", "console"):
                    for first, command in _join_continuations(block):
                        command = command.strip().removeprefix("$ ")
                        for part in re.split(r"&&|;|\|\|", command):
                            if part.strip().startswith("stackengine "):
                                found.append((f"README.md:{first}", part.strip()))
                fence = None
            continue
        if fence is not None:
            block.append((number, line))
    return found


def _tutorial_commands() -> list[tuple[str, str]]:
    nb = json.loads(TUTORIAL.read_text(encoding="utf-8"))
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            found += _dollar_commands(f"tutorial.ipynb cell {i}", "".join(cell["source"]))
    return found


def _all_commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        found += _dollar_commands(f"docs/{path.name}", path.read_text(encoding="utf-8"))
    return found + _readme_commands() + _tutorial_commands()


def _rst_python_blocks(path: Path) -> list[tuple[str, str]]:
    """A page's Python blocks: every ``.. code-block:: python``, and ``::`` literal
    blocks that import stackengine."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        start, literal = None, False
        if re.match(r"\.\. (code-block|code|sourcecode)::\s*(python|python3|py)\s*$", stripped):
            start = i + 1
            while start < len(lines) and lines[start].strip().startswith(":"):
                start += 1  # the directive's options
        elif stripped.endswith("::") and not stripped.startswith(".."):
            start, literal = i + 1, True  # a literal block: Python if it imports stackengine
        if start is None:
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        body, j = [], start
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            body.append(lines[j])
            j += 1
        code = textwrap.dedent("\n".join(body)).strip("\n")
        if code and (not literal or "import stackengine" in code):
            blocks.append((f"docs/{path.name}:{start + 1}", code))
        i = max(j, i + 1)
    return blocks


def _readme_python_blocks() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.M | re.S):
        out.append((f"README.md:{text[: m.start()].count(chr(10)) + 2}", m.group(1)))
    return out


COMMANDS = _all_commands()
PYTHON = [block for path in DOCS for block in _rst_python_blocks(path)] + _readme_python_blocks()


def test_found_the_docs_examples() -> None:
    """The extraction sees the documented commands (a broken regex would pass everything)."""
    assert len(COMMANDS) >= 50
    assert any(where.startswith("README.md") for where, _ in COMMANDS)
    assert any(where.startswith("docs/quickstart.rst") for where, _ in COMMANDS)
    assert any("\\" not in c and "--sigma-lower 3" in c for _, c in COMMANDS)  # continuations
    assert sum("import stackengine as se" in code for _, code in PYTHON) >= 15


def _parse(command: str) -> None:
    words = shlex.split(command, comments=True)
    assert words[0] == "stackengine"
    build_parser().parse_args(words[1:])


def test_docs_commands_parse(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, text in STAND_INS.items():
        (tmp_path / name).write_text(text + "\n", encoding="ascii")
    monkeypatch.chdir(tmp_path)
    failed = []
    for where, command in COMMANDS:
        if NOT_A_COMMAND in command:
            continue
        try:
            _parse(command)
        except SystemExit as exc:  # argparse's error exit (or --help / --version: 0)
            if exc.code not in (0, None):
                err = capsys.readouterr().err.strip().splitlines()
                failed.append(f"{where}: {command}\n    {err[-1] if err else exc}")
        except ValueError as exc:  # shlex: unbalanced quotes
            failed.append(f"{where}: {command}\n    {exc}")
    assert not failed, "documented commands that do not parse:\n" + "\n".join(failed)


def test_glob_patterns_stay_strings() -> None:
    ns = build_parser().parse_args(shlex.split('stack "lights/*.fits" -o master.fits'))
    assert ns.inputs == ["lights/*.fits"]


def test_docs_python_blocks_compile() -> None:
    failed = []
    for where, code in PYTHON:
        try:
            compile(code, where, "exec")
        except SyntaxError as exc:
            failed.append(f"{where}: {exc}")
    assert not failed, "documented Python that does not compile:\n" + "\n".join(failed)
