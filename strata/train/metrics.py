"""What a run reports: `metrics.jsonl`, the loss curve, and the progress line.

metrics.jsonl holds one JSON object per line: one per optimizer step

    {"step": 12, "train_loss": 3.41, "lr": 0.00012, "tokens_per_s": 15360.2, "time": 0.61}

and one per evaluation (`{"step": 200, "val_loss": 2.05, "val_ppl": 7.8, ...}`).
The file is rewritten atomically (at every evaluation and checkpoint, and every
few seconds in between), so it is always whole; a resumed run first drops the
lines past its checkpoint, so the file reads as one uninterrupted run.
`loss.png` (matplotlib) is redrawn at each evaluation and at the end.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from strata.io import atomic_output, read_regular, write_atomic

__all__ = ["MetricsLog", "plot_losses", "Progress", "read_metrics"]

MAX_METRICS = 1 << 30   # ~5 million steps of lines; a run's metrics.jsonl is read whole


def _number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def read_metrics(path: Path) -> list[dict]:
    """The records of a run's metrics.jsonl (a regular file inside the run, never
    through a link): lines that are not a record with an integer step and
    numeric losses are skipped (a torn or hand-edited line)."""
    out = []
    if not os.path.lexists(path):
        return out
    text = read_regular(path, MAX_METRICS, "metrics file", follow=False).decode("utf-8", "replace")
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(rec, dict) and type(rec.get("step")) is int and rec["step"] >= 0 \
                and all(_number(v) for k, v in rec.items() if k.endswith(("_loss", "_ppl", "lr"))):
            out.append(rec)
    return out


class MetricsLog:
    """The lines of metrics.jsonl, kept in memory and written out whole."""

    def __init__(self, path: Path, writer: bool, resume_step: int | None = None):
        self.path, self.writer = Path(path), writer
        self.lines: list[str] = []
        self.records: list[dict] = []
        if resume_step is not None:
            for rec in read_metrics(self.path):
                if rec["step"] <= resume_step:
                    self.add(rec)
        self._last = time.perf_counter()
        self._cost = 0.0

    def add(self, rec: dict) -> None:
        self.records.append(rec)
        self.lines.append(json.dumps(rec))

    def flush(self, force: bool = False) -> None:
        """Rewrite the file when forced, or when enough time has passed that the
        rewrite costs under ~2 % of the run (at least every 5 s)."""
        if not self.writer:
            return
        now = time.perf_counter()
        if not force and now - self._last < max(5.0, 50 * self._cost):
            return
        write_atomic(self.path, "\n".join(self.lines) + ("\n" if self.lines else ""), follow=False)
        self._last = time.perf_counter()
        self._cost = self._last - now


def _smooth(ys: list[float], k: float = 0.9) -> list[float]:
    out, acc = [], None
    for y in ys:
        acc = y if acc is None else k * acc + (1 - k) * y
        out.append(acc)
    return out


def plot_losses(records: list[dict], path: Path, title: str) -> None:
    """Training loss (raw and smoothed) and validation loss against step, as a PNG
    (skipped, once with a note, when matplotlib is not installed)."""
    try:
        import matplotlib  # lazy: optional
    except ImportError:
        if not getattr(plot_losses, "warned", False):
            plot_losses.warned = True
            print(f"note: no {path.name}: install matplotlib (pip install 'strata[train]') "
                  "for the loss curve", file=sys.stderr)
        return

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # lazy: optional

    train = [(r["step"], r["train_loss"]) for r in records
             if "train_loss" in r and math.isfinite(r["train_loss"])]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r and math.isfinite(r["val_loss"])]
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    if train:
        xs, ys = zip(*train)
        ax.plot(xs, ys, color="#9bb7d4", linewidth=0.8, label="train")
        ax.plot(xs, _smooth(list(ys)), color="#1f5fa8", linewidth=1.5, label="train (smoothed)")
    if val:
        xs, ys = zip(*val)
        ax.plot(xs, ys, "o-", color="#c0392b", linewidth=1.5, markersize=4, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    with atomic_output(path, follow=False) as tmp:
        fig.savefig(tmp, format="png")


def _clock(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """A rich progress bar on a terminal (loss, tokens/s, ETA); elsewhere a plain
    line every tenth of the run and at each evaluation."""

    def __init__(self, total: int, start: int, enabled: bool, stream=None):
        self.total, self.start, self.enabled = total, start, enabled
        self.stream = stream or sys.stderr
        self.live = enabled and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.every = max(total // 10, 1)
        self.bar = None
        self.last_val = None
        if self.live:
            from rich.console import Console  # lazy: startup
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn  # lazy: startup
            from rich.progress import Progress as Bar  # lazy: startup

            self.bar = Bar(TextColumn("step"), MofNCompleteColumn(), BarColumn(),
                           TextColumn("{task.fields[info]}"), TextColumn("eta"), TimeRemainingColumn(),
                           console=Console(file=self.stream), transient=False)
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def line(self, step: int, loss: float, tps: float) -> str:
        done = step - self.start
        eta = (time.perf_counter() - self.t0) / max(done, 1) * (self.total - step)
        val = f"  val {self.last_val:.4f}" if self.last_val is not None else ""
        return f"step {step}/{self.total}  loss {loss:.4f}{val}  {tps:,.0f} tok/s  eta {_clock(eta)}"

    def update(self, step: int, loss: float, tps: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            val = f" val {self.last_val:.3f}" if self.last_val is not None else ""
            self.bar.update(self.task, completed=step, info=f"loss {loss:.3f}{val} {tps:,.0f} tok/s")
        elif step % self.every == 0 or step == self.total:
            print(self.line(step, loss, tps), file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
