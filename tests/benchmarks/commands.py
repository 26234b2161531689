"""The `python benchmarks/NAME.py ARGS` commands the docs show, and the scripts'
command lines loaded without running them (each script has a `parser()`).

A command is read from its line up to the first closing backtick or run of two
spaces (what follows is a note: `(load average ~1)`, `# every option`);
`[--flag value]` is optional (both forms are checked) and `<a placeholder>`
stands for any one argument.  A note that lists flags, `(--threads 2 --new 48
128)` or `(--size 1m --train-seconds 600; one run)`, gives the settings the
figures were measured with: checked too.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
COMMAND = re.compile(r"python (?:-u )?benchmarks/(\w+)\.py\b([^`\n]*)")
# Scripts a doc quotes as history, replaced since: name -> its successor.
RETIRED = {"vocab_head": "decode_layout"}


@dataclass(frozen=True)
class Command:
    where: str       # docs/benchmarks.md:615
    script: str      # generate
    args: tuple      # ("--part", "gpt2", ...)

    @property
    def id(self) -> str:
        return f"{self.where} {self.script} {' '.join(self.args)}".strip()


def _argv(text: str) -> list[list[str]]:
    """The argument lists `text` stands for: without and with each [optional] part."""
    text = re.sub(r"<[^>]*>", "PLACEHOLDER", text)
    bare = re.sub(r"\[[^\]]*\]", "", text)
    full = text.replace("[", "").replace("]", "")
    return [shlex.split(t) for t in dict.fromkeys((bare, full))]


def commands() -> list[Command]:
    out = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for m in COMMAND.finditer(line):
                args, note = (re.split(r"\s{2,}", m.group(2).rstrip(), maxsplit=1) + [""])[:2]
                where = f"{doc.relative_to(ROOT)}:{n}"
                for argv in _argv(args):
                    out.append(Command(where, m.group(1), tuple(argv)))
                if note.startswith("(--"):
                    settings = note[1:].split(")")[0].split(";")[0]
                    out += [Command(where + " (its note)", m.group(1), tuple(a)) for a in _argv(settings)]
    return out


def load(name: str) -> ModuleType:
    """benchmarks/NAME.py as a module (its main not run); sys.path as it was."""
    path = sys.path[:]
    try:
        spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = path
