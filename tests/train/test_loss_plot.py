"""loss.png is drawn when it is worth its cost (strata.train.metrics.LossPlot): a
drawing (~0.2-0.4 s of CPU) was made at every evaluation and again at the end,
four drawings for a 30-step run evaluated every 10 steps, most of its time."""

from __future__ import annotations

import types

from strata.train import metrics as m
from strata.train.metrics import Curves, LossPlot
from tests.optional import require
from tests.train.helpers import GPT, text, write


def _counted(monkeypatch) -> list:
    drawn = []
    monkeypatch.setattr(m, "plot_losses", lambda curves, path, title: drawn.append(
        (len(curves.train.steps), len(curves.val.steps))))
    return drawn


def test_a_short_run_draws_its_curve_once_at_the_end(tmp_path, monkeypatch):
    require("torch")
    import strata

    drawn = _counted(monkeypatch)
    run = strata.train(write(tmp_path / "g.arch", GPT), data=str(write(tmp_path / "a.txt", text())),
                       out=tmp_path / "r", progress=False)
    assert run.step == 30 and drawn == [(30, 3)]  # every point, drawn once


def test_evaluations_redraw_when_the_drawing_is_a_small_part_of_the_run(monkeypatch, tmp_path):
    clock = [100.0]
    monkeypatch.setattr(m, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    drawn = _counted(monkeypatch)
    curves = Curves()
    plot = LossPlot(curves, tmp_path / "loss.png", "t")

    def evaluate(step, after):
        clock[0] += after
        curves.add({"step": step, "train_loss": 1.0})
        curves.add({"step": step, "val_loss": 1.0})
        plot.draw()

    evaluate(1, 1.0)
    assert drawn == []            # 1 s into the run: not yet
    evaluate(2, 4.5)
    assert drawn == [(2, 2)]      # 5.5 s: drawn
    evaluate(3, 4.0)
    assert drawn == [(2, 2)]      # 4 s after the last drawing
    evaluate(4, 1.5)
    assert len(drawn) == 2        # 5.5 s after it
    plot.draw(end=True)
    assert len(drawn) == 2        # the end: the last drawing holds every point
    curves.add({"step": 5, "train_loss": 1.0})
    plot.draw(end=True)
    assert drawn[-1] == (5, 4)    # a point since: drawn again


def test_the_end_draws_a_resumed_run_that_had_nothing_left_to_do(tmp_path, monkeypatch):
    """A run resumed at its last step evaluates nothing: the end still draws (the
    curves read back from metrics.jsonl)."""
    drawn = _counted(monkeypatch)
    curves = Curves()
    curves.add({"step": 3, "train_loss": 2.0})
    LossPlot(curves, tmp_path / "loss.png", "t").draw(end=True)
    assert drawn == [(1, 0)]
