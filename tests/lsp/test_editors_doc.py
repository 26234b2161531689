"""docs/editors.md: its editor configurations start the server this package has."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from strata.cli import make_parser

DOC = (Path(__file__).resolve().parents[2] / "docs" / "editors.md").read_text()


def test_helix_config_is_valid_toml_that_runs_strata_lsp():
    toml = re.search(r"```toml\n(.*?)```", DOC, re.S).group(1)
    conf = tomllib.loads(toml)
    server = conf["language-server"]["strata"]
    assert [server["command"], *server["args"]] == ["strata", "lsp"]
    assert conf["language"][0]["file-types"] == ["arch"]


def test_neovim_config_runs_strata_lsp():
    lua = re.search(r"```lua\n(.*?)```", DOC, re.S).group(1)
    assert 'cmd = { "strata", "lsp" }' in lua and 'vim.lsp.enable("strata")' in lua


def test_the_lsp_command_exists():
    args = make_parser().parse_args(["lsp"])
    assert args.func.__name__ == "_cmd_lsp"
