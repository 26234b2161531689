"""The two models of speculative decoding for a run: the run's model verifies and
another run drafts (`strata generate TEACHER_RUN --draft STUDENT_RUN`), or the run
is the draft and its spec's `distill(teacher, ...)` names the model that verifies
(`strata generate STUDENT_RUN --speculate`).  Refused, with the reason, when the two
do not share a tokenizer and a vocabulary.

In code::

    target, draft = speculative_pair(Run.open("runs/student"), speculate=True)
"""

from __future__ import annotations

from pathlib import Path

from strata.errors import UsageError
from strata.train.limits import model_limits
from strata.train.run_folder import OutsideError, RunFolder, may_read, weights_key
from strata.train.settings import spec_file
from strata.train.teacher import load_teacher, resolve_teacher_weights, teacher_spec
from strata.train.tokenizer import load_tokenizer

__all__ = ["speculative_pair"]


def speculative_pair(run, draft=None, speculate: bool = False, teacher_weights: str | None = None):
    """(target model, draft model): both causal LMs, or both encoder-decoders, reading
    the run's tokenizer.  draft: a run folder's path, or an opened source (a Run:
    strata.train.run.open_source, which also opens a compress output).  teacher_weights
    (with speculate): the teacher's, instead of those the run trained with."""
    if teacher_weights is not None and not speculate:
        raise UsageError("--teacher-weights goes with --speculate (the teacher of the run's distill pass)")
    if (draft is None) == (not speculate):
        raise UsageError("give either --draft RUN (a smaller model) or --speculate (the spec's distill teacher)")
    kind = run.objective
    if not kind.drafts:
        raise UsageError(f"{run.path}: speculative decoding is for models that generate text (a causal LM, an encoder-decoder), not {kind.name}")
    if draft is not None:
        other = RunFolder.open(draft) if isinstance(draft, (str, Path)) else draft
        if type(other.objective) is not type(kind):
            raise UsageError(f"{other.path}: a {other.objective.name} run cannot draft for a {kind.name} run; "
                             "both must be the same kind")
        _same_tokenizer(run.tokenizer.dumps(), other.tokenizer.dumps(), f"{run.path}", f"{other.path}")
        target, drafter = run.model, other.model
    else:
        target, tok_file = _teacher(run, teacher_weights)
        drafter = run.model
        if tok_file is not None and Path(tok_file).is_file():
            _same_tokenizer(load_tokenizer(tok_file).dumps(), run.tokenizer.dumps(), "the teacher", f"{run.path}")
    tv, dv = (model_limits(m.strata_graph)[0] for m in (target, drafter))
    if tv != dv:
        raise UsageError(f"the draft's vocabulary ({dv:,}) is not the target's ({tv:,}): speculative "
                         "decoding verifies the draft's tokens, so both need the same tokenizer")
    return target, drafter


def _same_tokenizer(a: str, b: str, a_name: str, b_name: str) -> None:
    if a != b:
        raise UsageError(f"{a_name} and {b_name} use different tokenizers: speculative decoding verifies "
                         "the draft's token ids, so the draft must be trained with the target's "
                         "tokenizer (as distill does)")


def _within_the_run(run, g, what: str) -> None:
    """The file the `distill` pass of a run's own spec (RUN/model.arch, a compress
    output's) names as `what` -- "teacher spec", or the pass's "teacher weights" --
    read only where a path a run records is (run_folder.may_read): a run folder from
    someone else could name any file, and a spec shows the line of a file it cannot
    parse, a weights file its first 8 bytes (as a header length).  Checked before
    whether the file is there: a refusal says nothing of what exists outside.
    Weights given on the command line are read wherever they are."""
    spec, folder = spec_file(g), Path(run.path).resolve()
    if spec is None or folder not in spec.resolve().parents:
        return  # a spec the user named: its paths are the user's
    info, here = g.graph.distill, spec.resolve().parent
    teacher = info["teacher"] if info["teacher"].endswith((".arch", ".yaml", ".yml")) else None  # else a model of it
    path = teacher if what == "teacher spec" else info.get("weights")
    if path and not may_read(here / path, run.path):
        hint = ("give --teacher-weights" if what == "teacher weights" else
                f"run it from a folder that holds the teacher's spec, or give the teacher's run: strata "
                f"generate TEACHER_RUN --draft {run.path}")
        raise OutsideError(f"{spec}: its distill pass names its {what} at {here / path}, outside the run "
                           "folder and the working directory: strata reads only such files of a run (a "
                           f"run's spec could name any file); {hint}")


def _teacher(run, weights: str | None = None):
    """(the teacher model of the run's `distill` pass, its run's tokenizer.json or None),
    with `weights`, else those the run trained with (`--teacher-weights`, where they
    are now: strata.train.run_folder.RunFolder.teacher_weights), else the pass's."""
    g = run.model.strata_graph
    if "distill" not in g.graph:
        raise UsageError(f"{run.path}: its spec has no distill(teacher, ...) pass, so it names no teacher; "
                         "give the target with `strata generate TEACHER_RUN --draft "
                         f"{run.path}`")
    _within_the_run(run, g, "teacher spec")  # whether it may be read, then whether it is there
    teacher_spec(g)  # its spec first: a student's run folder copied alone has none
    if weights is None and hasattr(run, "teacher_weights"):
        weights = run.teacher_weights()
    if weights is None:  # the pass's own (given or recorded ones are read wherever they are)
        _within_the_run(run, g, "teacher weights")
    key = ("teacher", *weights_key(resolve_teacher_weights(g, weights).file))  # compiled once per weights
    teacher, _, tok_file = run.kept(key, lambda: load_teacher(g, run.objective, "cpu", weights))
    return teacher, tok_file
