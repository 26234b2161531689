"""Every `python benchmarks/NAME.py ARGS` command the docs show names a script
that exists and passes its command line: a renamed flag or a removed script
fails here, not in a reader's shell.  Fast: the scripts are imported, never run
(tests/benchmarks/test_smoke.py runs each once, shrunk)."""

from __future__ import annotations

import pytest

from tests.benchmarks.commands import BENCH, RETIRED, ROOT, commands, load

COMMANDS = commands()
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_") and p.stem != "handwritten_gpt")


def test_the_docs_show_commands_of_every_script():
    """The extraction finds what it should (a regex that matched nothing would pass
    every test below); gpu.py is documented in prose only."""
    shown = {c.script for c in COMMANDS}
    assert len(COMMANDS) >= 60
    assert set(SCRIPTS) - shown == {"gpu"}


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.script not in RETIRED], ids=lambda c: c.id)
def test_documented_command_parses(cmd, capsys):
    assert (BENCH / f"{cmd.script}.py").is_file(), f"{cmd.where}: benchmarks/{cmd.script}.py does not exist"
    try:
        load(cmd.script).parser().parse_args(list(cmd.args))
    except SystemExit:
        pytest.fail(f"{cmd.where}: benchmarks/{cmd.script}.py refuses {' '.join(cmd.args)!r}: "
                    f"{capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("old,new", RETIRED.items())
def test_retired_scripts_are_gone_and_the_doc_says_so(old, new):
    """A historical figure may quote a removed script, if the doc names its successor."""
    assert not (BENCH / f"{old}.py").exists(), f"{old}.py exists again: take it out of RETIRED"
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert f"`benchmarks/{old}.py`" in text and f"replaced by `benchmarks/{new}.py`" in text


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_a_parser(name):
    assert callable(getattr(load(name), "parser", None)), f"benchmarks/{name}.py: no parser()"
