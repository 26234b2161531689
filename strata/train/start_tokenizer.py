"""The tokenizer stages of `strata train` (strata.train.start): the tokenizer
fitted on the data, or the one that came with the weights (--init, a
distillation teacher), or a resumed run's own, each checked to fit the model
before the run folder is made."""

from __future__ import annotations

import os
from pathlib import Path

from strata.errors import UsageError
from strata.io import write_atomic
from strata.train.distributed import Dist
from strata.train.records import RunInfo, read_run_json
from strata.train.run_folder import RUN_JSON, TOKENIZER
from strata.train.tokenizer import Unseen, UnseenCharacters, fit_tokenizer, load_tokenizer, tokenizer_from_json

__all__ = ["check_reused", "fits_model", "fitted_tokenizer", "run_tokenizer", "same_tokenizer", "unseen"]


def fitted_tokenizer(cfg, obj, limit, texts, d: Dist):
    """A tokenizer fitted on the data as the settings ask, checked to fit the model
    (rank 0 fits, the others read it): done before the run folder is made, so a
    tokenizer the model cannot hold (`tokenizer = byte` or `bpe` for a vocab of 128,
    vocab_size above the model's) leaves --out as it was."""
    text = None
    if d.main:
        text = fit_tokenizer(cfg["tokenizer"], texts, obj.specials, limit, cfg["vocab_size"]).dumps()
    tok = tokenizer_from_json(d.share_bytes(text.encode() if text else None).decode(), TOKENIZER)
    fits_model(tok, obj, limit)
    return tok


def run_tokenizer(cfg, obj, limit, texts, out: Path, ckpt, reuse: Path | None, fitted, d: Dist):
    """The run's own tokenizer when resuming, else the one that came with the
    weights, else `fitted` (fitted on the data before the folder was made), else
    one fitted now (a run set up but never trained, started again with --resume)."""
    if os.path.lexists(out / TOKENIZER) and ckpt is not None:
        tok = load_tokenizer(out / TOKENIZER, follow=False)
    elif reuse is not None:
        tok = load_tokenizer(reuse)
    else:
        tok = fitted or fitted_tokenizer(cfg, obj, limit, texts, d)
    fits_model(tok, obj, limit)
    if d.main and not (ckpt is not None and os.path.lexists(out / TOKENIZER)):
        write_atomic(out / TOKENIZER, tok.dumps(), follow=False)
    return tok


def fits_model(tok, obj, limit: int) -> None:
    if tok.vocab_size > limit:
        raise UsageError(f"the tokenizer has {tok.vocab_size:,} ids; the model's vocabulary holds "
                         f"{limit:,}")
    missing = [s for s in obj.specials if s not in tok.specials]
    if missing:
        raise UsageError(f"the reused tokenizer lacks {', '.join(missing)}, which {obj.name} needs")


def unseen(e: UnseenCharacters, whose: str, reuse: Path) -> UsageError:
    return UsageError(f"{e}; the tokenizer is the one {whose} came with ({reuse}): give --data "
                      "text it covers (the data those weights trained on)")


def check_reused(reuse: Path, obj, limit: int, texts, whose: str) -> Unseen:
    """The tokenizer that came with the weights (--init, a distillation teacher)
    fits the model and reads the data: checked before the run folder is made.
    Returns the data's characters one with [UNK] (a masked LM's, seq2seq's) reads
    as [UNK], which the run says; one without refuses them."""
    tok = load_tokenizer(reuse)
    fits_model(tok, obj, limit)
    try:
        tok.check_covers(texts())
    except UnseenCharacters as e:
        raise unseen(e, whose, reuse) from None
    return tok.unseen(texts())


def same_tokenizer(cfg: dict, out: Path) -> None:
    """A resumed run reads its data with its own tokenizer.json: a tokenizer setting
    changed since it started (`--set tokenizer=byte`) was ignored, and recorded in
    run.json as if it had been used."""
    old = read_run_json(out / RUN_JSON)
    if not isinstance(old, RunInfo):
        return
    used = {"tokenizer": old.tokenizer.type, "vocab_size": old.tokenizer.vocab_size}
    for key in ("tokenizer", "vocab_size"):
        was = old.settings.get(key)
        if cfg[key] not in (was, used[key]):  # the setting as started, or what it made
            raise UsageError(f"{out}: the run reads its data with its own tokenizer ({old.tokenizer.type}, "
                             f"{old.tokenizer.vocab_size:,} ids); {key} = "
                             f"{cfg[key] if cfg[key] is not None else 'none'} cannot change on --resume "
                             "(--out names a new run, or --overwrite starts this one over)")
