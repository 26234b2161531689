"""`strata serve` on the command line: flags, the printed address, the warning
for another host, one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.optional import require

require("uvicorn")
require("starlette")
require("watchfiles")

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def strata(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "strata", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=60)


@pytest.mark.parametrize("args,message", [(["no/such/folder"], "no/such/folder: no such file or folder"),
                                          (["specs", "--port", "70000"], "--port must be 0-65535, got 70000")])
def test_mistakes_are_one_line(args, message):
    r = strata("serve", *args)
    assert r.returncode == 2 and r.stderr.strip() == f"strata: error: {message}"


def test_another_host_is_warned_about(tmp_path):
    (tmp_path / "m.arch").write_text("model m { stack s(ids) { embedding(10, 4) } }\n")
    p = subprocess.Popen([sys.executable, "-m", "strata", "serve", str(tmp_path), "--port", "0",
                          "--host", "127.0.0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=ENV)
    try:
        warning = p.stderr.readline()
        assert "warning: listening on 127.0.0.2" in warning and "read and edit" in warning
        assert re.fullmatch(rf"strata serve: {re.escape(str(tmp_path))} at http://127\.0\.0\.2:\d+/\n",
                            p.stdout.readline())
    finally:
        p.terminate()
        p.wait(10)
