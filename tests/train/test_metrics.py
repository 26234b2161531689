"""metrics.jsonl is read in bounded memory (strata.train.metrics): streamed line
by line, an over-long line skipped unparsed, a resume's kept lines copied to an
unnamed file rather than held, the loss curves kept as numbers and thinned past
MAX_POINTS.  A file of millions of tiny records once cost ~38 times its size."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tracemalloc

import pytest

from strata.errors import WriteError
from strata.train import metrics as m
from strata.train.metrics import MetricsLog, iter_records
from tests.train.helpers import ROOT




def _peak(fn) -> int:
    """Bytes Python allocated at most while fn() ran."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


RESUME = """
import resource, sys
from strata.train.metrics import MetricsLog
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
log = MetricsLog(sys.argv[1], writer=True, resume_step=5)
log.add({"step": 6, "train_loss": 1.5})
log.flush(force=True)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_a_resume_over_a_file_of_tiny_records_holds_none_of_them(tmp_path):
    """A 2.2 MB file of {"step":0} lines: held as dicts and lines it took ~80 MB (a
    52 MB one 1.6 GB); streamed, the process grows by a few MB whatever the size."""
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step":0}\n' * 200_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    grew = int(subprocess.run([sys.executable, "-c", RESUME, str(path)], env=env, check=True,
                              capture_output=True, text=True, timeout=120).stdout)
    assert grew < 8 << 20, f"{grew:,} bytes"
    lines = path.read_bytes().splitlines()
    assert len(lines) == 200_001 and lines[0] == b'{"step": 0}' and lines[-1] == b'{"step": 6, "train_loss": 1.5}'


def test_an_over_long_line_is_skipped_without_being_held(tmp_path):
    path = tmp_path / "metrics.jsonl"
    big = json.dumps({"step": 1, "train_loss": 2.0, "x": list(range(400_000))}).encode()  # 3 MB on one line
    path.write_bytes(b'{"step": 0, "train_loss": 3.0}\n' + big + b'\n{"step": 2, "train_loss": 1.0}\n')
    got = []
    peak = _peak(lambda: got.extend(iter_records(path)))
    assert [r["step"] for r in got] == [0, 2]
    assert peak < 4 * m.MAX_LINE + 100_000, f"{peak:,} bytes"


def test_resume_keeps_the_lines_up_to_its_step_as_before(tmp_path):
    path = tmp_path / "metrics.jsonl"
    recs = [{"step": 1, "train_loss": 3.0, "lr": 0.1}, {"step": 2, "val_loss": 2.5, "val_ppl": 12.2},
            {"step": 3, "train_loss": 2.0, "lr": 0.1}]
    path.write_text("\n".join(map(json.dumps, recs)) + "\nnot json\r\n" + '{"step": 2, "train_loss": "x"}\n'
                    + '{"step": 1}\r{"step": 2, "train_loss": null}\n')
    log = MetricsLog(path, writer=True, resume_step=2)
    log.add({"step": 3, "train_loss": 1.0})
    log.flush(force=True)
    want = [recs[0], recs[1], {"step": 1}, {"step": 2, "train_loss": None}, {"step": 3, "train_loss": 1.0}]
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in want)
    assert list(iter_records(path)) == want
    # the plot's curves: the finite numbers, per step (a null loss is no point)
    assert list(log.curves.train.steps) == [1, 3] and list(log.curves.train.values) == [3.0, 1.0]
    assert list(log.curves.val.steps) == [2]
    log.flush(force=True)  # the kept lines head every rewrite
    assert list(iter_records(path)) == want


def test_a_long_curve_thins_evenly(monkeypatch):
    monkeypatch.setattr(m, "MAX_POINTS", 100)
    c = m.Curve()
    for step in range(1000):
        c.add(step, float(step))
    assert 50 <= len(c.steps) <= 100
    gaps = {b - a for a, b in zip(c.steps, c.steps[1:])}
    assert c.steps[0] == 0 and len(gaps) == 1, gaps
    c.add(1000, float("nan"))
    c.add(1001, None)
    assert all(v == s for s, v in zip(c.steps, c.values))


def test_a_resume_that_cannot_write_its_copy_is_one_write_error(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "train_loss": 2.0}\n')

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(m.tempfile, "TemporaryFile", full)
    with pytest.raises(WriteError, match=r"metrics.jsonl: cannot write \(No space left on device\)"):
        MetricsLog(path, writer=True, resume_step=1)


def test_run_metrics_reads_as_the_list_it_was(tmp_path):
    """`run.metrics` (m.RunMetrics) streams the file at each use but answers as the
    list of records did: indexes, slices (negative bounds and steps), len, truth."""
    path = tmp_path / "metrics.jsonl"
    recs = [{"step": i, "train_loss": 1.0 + i} for i in range(7)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + "torn {\n")
    view = m.RunMetrics(path)
    assert list(view) == recs and len(view) == 7 and view
    for i in [0, 3, 6, -1, -7]:
        assert view[i] == recs[i]
    for s in [slice(None), slice(2, 5), slice(None, None, 3), slice(-3, None), slice(1, -2),
              slice(None, None, -1), slice(5, 1, -2), slice(-1, -8, -3), slice(9, 20), slice(4, 2)]:
        assert view[s] == recs[s], s
    for i in [7, -8]:
        with pytest.raises(IndexError):
            view[i]
    with pytest.raises(TypeError):
        reversed(view)  # would index from the end once per record
    assert not m.RunMetrics(tmp_path / "none.jsonl") and len(m.RunMetrics(tmp_path / "none.jsonl")) == 0
    with path.open("a") as f:  # a run still training: read as it is now
        f.write(json.dumps({"step": 7, "val_loss": 0.5}) + "\n")
    assert view[-1] == {"step": 7, "val_loss": 0.5}
