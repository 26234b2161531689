"""Mutated specs: strata answers success or a located spec error — never a
traceback, never a hang."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from strata.compiler import build_text
from strata.errors import SpecError

SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.arch")) + \
    sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.yaml"))
LOCATED = re.compile(r"^\S+:\d+:\d+: error: ", re.M)
TOKENS = ["{", "}", "(", ")", ",", "=", ";", "#", '"', "'", "**", "//", "-", ".", "as", "repeat",
          "residual", "model", "stack", "block", "none", "true", "0", "-1", "1e308", "10**100",
          "99999999999999999999", "heads", "d", "layer", "attention", "embedding(", "\t", "\n",
          "é", "\x00", ":", "- ", "[", "]", "&a", "*a", "!!python/object", "{}", "0.0", "nan"]


@contextmanager
def deadline(seconds: int):
    def fail(*_):
        raise TimeoutError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    kind = rng.choice(["delete_line", "dup_line", "token", "delete_span", "number", "truncate", "swap"])
    if kind == "delete_line" and lines:
        del lines[rng.randrange(len(lines))]
        return "".join(lines)
    if kind == "dup_line" and lines:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return "".join(lines)
    if kind == "swap" and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)
    if kind == "number":
        nums = list(re.finditer(r"\d+", text))
        if nums:
            m = rng.choice(nums)
            big = rng.choice(["0", "10**12", "99999999999999999999999", "2**62", "1e300", "-5", "7"])
            return text[:m.start()] + big + text[m.end():]
    if kind == "delete_span" and text:
        i = rng.randrange(len(text))
        return text[:i] + text[i + rng.randint(1, 40):]
    if kind == "truncate" and text:
        return text[:rng.randrange(len(text))]
    i = rng.randrange(len(text) + 1)
    return text[:i] + rng.choice(TOKENS) + text[i:]


def check_one(text: str, file: str) -> None:
    try:
        with deadline(20):
            build_text(text, file)
    except SpecError as e:
        rendered = str(e)
        assert e.diagnostics and all(d.span is not None for d in e.diagnostics), rendered
        assert LOCATED.match(rendered), rendered


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_mutated_specs_only_answer_success_or_located_errors(spec):
    rng = random.Random(f"strata-fuzz-{spec.name}")
    original = spec.read_text()
    for _ in range(60):
        text = original
        for _ in range(rng.randint(1, 3)):
            text = mutate(text, rng)
        check_one(text, spec.name)


def test_deep_nesting_is_a_located_error():
    check_one("model m { d = " + "(" * 5000 + "1" + ")" * 5000 + " }", "deep.arch")
    check_one("model m { d = " + "-" * 20000 + "1 }", "deep.arch")


def test_cli_never_prints_a_traceback(tmp_path):
    rng = random.Random("strata-fuzz-cli")
    original = (Path(__file__).resolve().parents[1] / "specs" / "gpt2.arch").read_text()
    for i in range(4):
        p = tmp_path / f"m{i}.arch"
        p.write_text(mutate(mutate(original, rng), rng))
        r = subprocess.run([sys.executable, "-m", "strata.cli", "check", str(p)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode in (0, 1), r.stderr
        assert "Traceback" not in r.stderr + r.stdout
        if r.returncode == 1:
            assert LOCATED.match(r.stderr), r.stderr
