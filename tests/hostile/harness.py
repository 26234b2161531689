"""Run strata commands on hostile inputs and check the exact outcome.

Every case runs in a fresh folder (the inputs written there at test time) and
is checked for: the exit code, the first line of stderr (a located
`FILE:LINE:COL: error:` or a one-line `strata: error:`), no traceback and no
internal error (the CLI's last line of defence is never reached), and the
folder afterwards — inputs unchanged, nothing created but the expected output.

Cases run in batches, many per subprocess (`run_batch`): the driver calls
`strata.cli.main` in-process under an address-space rlimit and a per-case
alarm, so a hang or a memory blow-up fails the batch instead of the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCATED = re.compile(r"^\S.*:\d+:\d+: error: ")
ONE_LINE = re.compile(r"^strata: error: ")

# The driver: runs each case's argv through strata.cli.main in its own folder,
# with stdout/stderr captured and an alarm per case; prints one JSON result per case.
_DRIVER = r"""
import contextlib, io, json, os, signal, sys, time
cases = json.loads(sys.stdin.read())
from strata.cli import main

class Hang(BaseException):
    pass

def alarm(*_):
    raise Hang()

signal.signal(signal.SIGALRM, alarm)
for case in cases:
    os.chdir(case["cwd"])
    out, err = io.StringIO(), io.StringIO()
    t = time.perf_counter()
    signal.alarm(case["seconds"])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(case["argv"])
            except SystemExit as e:
                code = e.code
    except Hang:
        code = "hang"
    except MemoryError:
        code = "memory"
    finally:
        signal.alarm(0)
    print(json.dumps({"code": code, "out": out.getvalue()[:4000], "err": err.getvalue()[:4000],
                      "seconds": time.perf_counter() - t}), flush=True)
"""


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder` -> a digest of what it is (content, link target, kind)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "special"
    return out


@dataclass
class Case:
    """One command on files made in its own folder.

    files: name -> bytes or str written before the run (folders made as needed);
    argv: the strata arguments (paths relative to the folder);
    code: the expected exit code; first: a regex the first stderr line must match
    (LOCATED or ONE_LINE shapes are added by `expect_*`); outputs: the paths the
    command may create or change; setup: a callable(folder) for what `files`
    cannot make (FIFOs, links, modes)."""

    name: str
    argv: list[str]
    code: int
    first: str = ""
    files: dict = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    setup: object = None
    seconds: int = 30
    # filled by run_batch
    result: dict | None = None
    before: dict | None = None
    folder: Path | None = None


def spec_error(name, argv, where: str, message: str, **kw) -> Case:
    """Exit 1 with `FILE:LINE:COL: error: message...` first.  `where` is FILE:LINE:COL,
    or FILE:LINE: / FILE: when the column / line may be any."""
    loc = re.escape(where)
    if where.endswith(":"):
        loc += r"\d+" if where.count(":") == 2 else r"\d+:\d+"
    return Case(name, argv, 1, rf"^{loc}: error: .*{re.escape(message)}", **kw)


def usage_error(name, argv, message: str, **kw) -> Case:
    """Exit 2 with one line `strata: error: ...message...`."""
    return Case(name, argv, 2, rf"^strata: error: .*{re.escape(message)}", **kw)


def ok(name, argv, **kw) -> Case:
    return Case(name, argv, 0, **kw)


def run_batch(cases: list[Case], tmp: Path, *, memory_mb: int = 3072, timeout: int = 300) -> None:
    """Run `cases` in one subprocess (address space capped at `memory_mb`) and
    fill each case's `result`.  Raises when the driver itself dies."""
    import resource

    payload = []
    for i, c in enumerate(cases):
        folder = tmp / f"{i:03d}_{c.name}"
        folder.mkdir(parents=True)
        for rel, data in c.files.items():
            p = folder / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        if c.setup is not None:
            c.setup(folder)
        c.folder, c.before = folder, snapshot(folder)
        payload.append({"cwd": str(folder), "argv": c.argv, "seconds": c.seconds})

    def limits():
        limit = memory_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
           "PYTHONIOENCODING": "utf-8", "STRATA_TRACEBACK": ""}
    done = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=limits)
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    if len(lines) != len(cases):
        stuck = cases[len(lines)].name if len(lines) < len(cases) else "?"
        raise AssertionError(f"the driver stopped at case {stuck!r} (exit {done.returncode}):\n"
                             f"{done.stderr[-3000:]}")
    for c, r in zip(cases, lines):
        c.result = r


def problems(c: Case) -> list[str]:
    """What is wrong with one finished case (empty: exactly as expected)."""
    r, out = c.result, []
    err = r["err"]
    if r["code"] != c.code:
        out.append(f"exit {r['code']}, expected {c.code}")
    if "Traceback" in err or "Traceback" in r["out"]:
        out.append("a traceback")
    if "internal error" in err:
        out.append("reached the last line of defence")
    first = err.splitlines()[0] if err.strip() else ""
    if c.first and not re.search(c.first, first):
        out.append(f"first stderr line {first!r} does not match {c.first!r}")
    if c.code == 2 and len([x for x in err.splitlines() if x.strip()]) != 1:
        out.append("a usage error is not one line")
    if c.code == 1 and not LOCATED.match(first):
        out.append("a spec error without FILE:LINE:COL")
    if r["seconds"] > c.seconds:
        out.append(f"took {r['seconds']:.1f} s")
    after = snapshot(c.folder)
    changed = {k for k in set(after) | set(c.before) if after.get(k) != c.before.get(k)}
    allowed = set(c.outputs) | {str(Path(o).parent) for o in c.outputs}
    if c.code != 0:  # a refused command writes nothing at all
        allowed = set()
    if extra := sorted(changed - allowed):
        out.append(f"changed or created {extra}")
    return out


def check_all(cases: list[Case]) -> None:
    """Assert every case came out as expected, listing every one that did not."""
    bad = {c.name: p for c in cases if (p := problems(c))}
    assert not bad, "\n".join(f"{k}: {'; '.join(v)}\n    stderr: {c.result['err'][:600]!r}"
                              for k, v in bad.items() for c in cases if c.name == k)


# A small valid spec (line 3 holds the stack), and the same in YAML.
SPEC = """model m {
  d = 4
  stack s(tokens) { embedding(10, d) as wte; lm_head(tie=wte) }
}
"""
SPEC_YAML = """models:
  m:
    vars: {d: 4}
    stacks:
      s:
        inputs: [tokens]
        body: [{embedding: [10, d], as: wte}, {lm_head: null, tie: wte}]
"""


def with_var(value: str) -> str:
    """SPEC with `x = <value>` on line 2 (so an error in it is at 2:7)."""
    return SPEC.replace("  d = 4\n", f"  x = {value}\n  d = 4\n")


# A folder no file can be created in: a 0o555 folder (made by `make_unwritable`),
# or, for root (who may write anywhere), /proc.
UNWRITABLE = "/proc" if os.geteuid() == 0 else "ro"


def make_unwritable(folder: Path) -> None:
    if UNWRITABLE == "ro":
        (folder / "ro").mkdir()
        (folder / "ro").chmod(0o555)
