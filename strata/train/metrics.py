"""What a run reports: `metrics.jsonl`, the loss curve, and the progress line.

metrics.jsonl holds one JSON object per line: one per optimizer step

    {"step": 12, "train_loss": 3.41, "lr": 0.00012, "tokens_per_s": 15360.2, "time": 0.61}

and one per evaluation (`{"step": 200, "val_loss": 2.05, "val_ppl": 7.8, ...}`).
The file is rewritten atomically (at every evaluation and checkpoint, and every
few seconds in between), so it is always whole; a resumed run first drops the
lines past its checkpoint, so the file reads as one uninterrupted run.
`loss.png` (matplotlib) is redrawn at an evaluation when drawing costs under ~5 %
of the run (a drawing is ~0.2-0.4 s of CPU: at least 5 s apart), and at the end.
"""

from __future__ import annotations

import json
import math
import operator
import os
import shutil
import sys
import tempfile
import time
from array import array
from collections import deque
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from strata.errors import UsageError, WriteError
from strata.io import atomic_output, open_regular

__all__ = ["Curves", "LossPlot", "MetricsLog", "plot_losses", "Progress", "iter_records", "RunMetrics"]

MAX_METRICS = 1 << 30   # bytes: ~5 million steps of lines, streamed, never held whole
MAX_LINE = 1 << 16      # bytes a line: a record is ~150; a longer line is skipped unparsed, never held
MAX_POINTS = 1 << 16    # points a loss curve keeps (train, val); past it every other one is dropped


def _number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _lines(f, path: Path):
    """The lines of a binary file, each at most MAX_LINE bytes (a longer one is
    read past in pieces and skipped), at most MAX_METRICS bytes in all."""
    size = 0
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        size += len(line)
        long = len(line) > MAX_LINE
        while long and not line.endswith(b"\n"):  # the rest of an over-long line, never kept
            line = f.readline(MAX_LINE + 1)
            size += len(line)
            if not line:
                break
        if size > MAX_METRICS:
            raise UsageError(f"{path}: more than {MAX_METRICS:,} bytes is too large for a metrics file")
        if not long:
            yield line


def iter_records(path: Path) -> Iterator[dict]:
    """The records of a run's metrics.jsonl, one at a time (a regular file inside
    the run, never through a link, streamed: memory is one line's): lines that are
    not a record with an integer step and numeric losses are skipped (a torn or
    hand-edited line)."""
    if not os.path.lexists(path):
        return
    fd = open_regular(path, "metrics file", follow=False)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        if size > MAX_METRICS:
            raise UsageError(f"{path}: {size:,} bytes is too large for a metrics file (at most {MAX_METRICS:,})")
        try:
            for raw in _lines(f, path):
                for line in raw.decode("utf-8", "replace").splitlines():  # \r and the like end a line too
                    try:
                        rec = json.loads(line)
                    except (ValueError, RecursionError):
                        continue
                    if isinstance(rec, dict) and type(rec.get("step")) is int and rec["step"] >= 0 \
                            and all(_number(v) for k, v in rec.items() if k.endswith(("_loss", "_ppl", "lr"))):
                        yield rec
        except OSError as e:
            raise UsageError(f"{path}: cannot read ({e.strerror})") from None


class RunMetrics:
    """A run's metrics.jsonl as a sequence read on demand (the Python API's
    `run.metrics`): each use streams the file (`iter_records`) and keeps only what
    it returns, so memory does not grow with the run, and a run still training
    is read as it is now.

        run.metrics[-1]                                    # the last record: one kept
        [r["train_loss"] for r in run.metrics if "train_loss" in r]
        run.metrics[-100:], run.metrics[::10], len(run.metrics)

    A negative slice bound (and len) counts the records first: two passes.
    `list(run.metrics)` holds every record, as a list would."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __iter__(self) -> Iterator[dict]:
        return iter_records(self.path)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return next(iter(self), None) is not None

    # reversed() would otherwise index from the end once per record (n passes)
    __reversed__ = None

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._slice(i)
        i = operator.index(i)
        if i >= 0:
            got = next(islice(self, i, None), None)
        else:  # the last -i records, the first of them returned
            last = deque(self, maxlen=-i)
            got = last[0] if len(last) == -i else None
        if got is None:
            raise IndexError(f"{self.path}: no record {i}")
        return got

    def _slice(self, s: slice) -> list[dict]:
        if (s.step or 1) > 0 and all(b is None or b >= 0 for b in (s.start, s.stop)):
            return list(islice(self, s.start, s.stop, s.step))
        r = range(*s.indices(len(self)))
        if not r:
            return []
        if r.step > 0:
            return list(islice(self, r.start, r.stop, r.step))
        return list(islice(self, r[-1], r[0] + 1, -r.step))[::-1]


class Curve:
    """(step, value) points of one loss, at most MAX_POINTS of them in two arrays
    (16 bytes a point): past that every other point is dropped and from then on
    only every 2nd (4th, ...) point offered is kept, so a long curve thins evenly."""

    def __init__(self):
        self.steps, self.values = array("q"), array("d")
        self.every, self.offered = 1, 0

    def add(self, step: int, value) -> None:
        if not (_number(value) and value is not None and math.isfinite(value)):
            return
        self.offered += 1
        if (self.offered - 1) % self.every:
            return
        if len(self.steps) >= MAX_POINTS:
            self.steps, self.values = self.steps[::2], self.values[::2]
            self.every *= 2
            if (self.offered - 1) % self.every:
                return
        self.steps.append(step)
        self.values.append(float(value))


class Curves:
    """What the loss plot needs of the records: the train and validation curves."""

    def __init__(self):
        self.train, self.val = Curve(), Curve()

    def add(self, rec: dict) -> None:
        if "train_loss" in rec:
            self.train.add(rec["step"], rec["train_loss"])
        if "val_loss" in rec:
            self.val.add(rec["step"], rec["val_loss"])


class MetricsLog:
    """metrics.jsonl, written out whole: the lines of this start in memory; on
    resume the file's lines up to the resume step are first copied, streamed, to
    an unnamed file beside it (never held in memory), which heads every rewrite."""

    def __init__(self, path: Path, writer: bool, resume_step: int | None = None):
        self.path, self.writer = Path(path), writer
        self.lines: list[str] = []
        self.curves = Curves()
        self._kept = None  # the lines kept from before a resume, in an unnamed file
        if resume_step is not None:
            self._keep(resume_step)
        self._last = time.perf_counter()
        self._cost = 0.0

    def _keep(self, resume_step: int) -> None:
        try:
            kept = tempfile.TemporaryFile(dir=self.path.parent) if self.writer else None
        except OSError as e:
            raise WriteError(f"{self.path}: cannot write ({e.strerror})", e.strerror) from None
        try:
            for rec in iter_records(self.path):
                if rec["step"] <= resume_step:
                    self.curves.add(rec)
                    if kept is not None:
                        kept.write(json.dumps(rec).encode("utf-8") + b"\n")
        except BaseException as e:
            if kept is not None:
                kept.close()
            if isinstance(e, OSError):  # writing the copy (reading is iter_records' UsageError)
                raise WriteError(f"{self.path}: cannot write ({e.strerror})", e.strerror) from None
            raise
        self._kept = kept

    def add(self, rec: dict) -> None:
        self.curves.add(rec)
        self.lines.append(json.dumps(rec))

    def flush(self, force: bool = False) -> None:
        """Rewrite the file when forced, or when enough time has passed that the
        rewrite costs under ~2 % of the run (at least every 5 s)."""
        if not self.writer:
            return
        now = time.perf_counter()
        if not force and now - self._last < max(5.0, 50 * self._cost):
            return
        with atomic_output(self.path, follow=False) as tmp:
            try:
                with open(tmp, "wb") as out:
                    if self._kept is not None:
                        self._kept.seek(0)
                        shutil.copyfileobj(self._kept, out, 1 << 20)
                    out.write(("\n".join(self.lines) + ("\n" if self.lines else "")).encode("utf-8"))
            except OSError as e:
                raise WriteError(f"{self.path}: cannot write ({e.strerror})", e.strerror) from None
        self._last = time.perf_counter()
        self._cost = self._last - now


def _smooth(ys: list[float], k: float = 0.9) -> list[float]:
    out, acc = [], None
    for y in ys:
        acc = y if acc is None else k * acc + (1 - k) * y
        out.append(acc)
    return out


def plot_losses(curves: Curves, path: Path, title: str) -> None:
    """Training loss (raw and smoothed) and validation loss against step, as a PNG
    (skipped, once with a note, when matplotlib is not installed); a curve of
    more than MAX_POINTS points is drawn thinned (`Curve`)."""
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

    train = list(zip(curves.train.steps, curves.train.values))
    val = list(zip(curves.val.steps, curves.val.values))
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


class LossPlot:
    """loss.png of a run as it trains.  A drawing costs ~0.2-0.4 s of CPU, more
    than a tiny model's whole run between two evaluations, so an evaluation
    redraws only when enough time has passed since the last drawing (or the
    start) that drawing costs under ~5 % of the run (at least 5 s apart); the
    end redraws unless the last drawing already holds every point."""

    def __init__(self, curves: Curves, path: Path, title: str):
        self.curves, self.path, self.title = curves, path, title
        self._last = time.perf_counter()
        self._cost = 0.0
        self._drawn: tuple[int, int] | None = None  # points offered to each curve at the last drawing

    def draw(self, end: bool = False) -> None:
        now = time.perf_counter()
        points = (self.curves.train.offered, self.curves.val.offered)
        if (points == self._drawn) if end else (now - self._last < max(5.0, 20 * self._cost)):
            return
        plot_losses(self.curves, self.path, self.title)
        self._drawn, self._last = points, time.perf_counter()
        self._cost = self._last - now


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
