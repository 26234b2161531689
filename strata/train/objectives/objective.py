"""What an objective is: one class that the loop, evaluation, generation, the
tokenizer and the command line ask, so that none of them names an objective.

An objective class declares

    name, head, hint      its name (`--objective`, run.json), the head kind it trains, how to add one
    detect(g, heads)      the objective bound to a model output, or None (from the heads)
    check(g)              refuse a model it would train wrongly (a located SpecError)
    specials              the special tokens its tokenizer reserves at ids 0, 1, ...
    read_data(data)       (texts for the tokenizer, what `dataset` reads, run.json's data record)
    dataset(...)          token ids of that data, cached; train_sampler / eval_sampler draw from them
    term_names, counts, forward, terms, correct     its loss terms (sums) and accuracy
    perplexity, accuracy  which metrics its validation reports
    generates             whether `generate` writes text (prompt_ids / warm_up / continue_ids)
    past_positions        whether that text goes on past the model's positions (ctx)

and an instance is that objective bound to the model's outputs (`output`, and
the fields a subclass adds: the classes, the next-sentence head).  Two bases
hold what families share: `TextObjective` (trains on text: a token stream cut
into windows) and `ExampleObjective` (trains on JSON Lines examples).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from strata.errors import Diagnostic, SpecError, UsageError
from strata.train.data import read_examples, text_source
from strata.train.dataset import token_stream, tokenize_examples
from strata.train.tasks import records_digest
from strata.train.tokenizer import Unseen

__all__ = ["IGNORE", "Objective", "TextObjective", "ExampleObjective", "Heads", "heads_of",
           "noncausal", "located", "accepts"]

IGNORE = -100

# output name -> (component kind, component path, rank of the head's input)
Heads = dict[str, tuple[str, str, int]]


def heads_of(g) -> Heads:
    """The model's outputs and the heads that make them."""
    comps = g.graph.components
    out = {}
    for name, node in g.graph.outputs.items():
        path = g.nodes[node].get("component") or node
        kind = comps.get(path, {}).get("kind", g.nodes[node].op)
        ranks = [len(d["shape"]) for _, _, d in g.in_edges(node, data=True) if d.get("shape")]
        out[name] = (kind, path, ranks[0] if ranks else 3)
    return out


def noncausal(g, stack: str | None = None) -> str | None:
    """The first attention (inside `stack`, when given) that is not causal."""
    for path, c in g.graph.components.items():
        if c["kind"] == "attention" and not c["options"].get("causal") \
                and (stack is None or path.startswith(stack + ".")):
            return path
    return None


def located(g, path: str, message: str, hint: str) -> SpecError:
    span = g.graph.components[path].get("span")
    return SpecError([Diagnostic(message, span, hint)])


def accepts(model) -> set[str]:
    """The keyword arguments the model's forward takes."""
    m = getattr(model, "module", model)      # DDP
    m = getattr(m, "_orig_mod", m)           # torch.compile
    return set(inspect.signature(m.forward).parameters)


@dataclass(frozen=True)
class Objective(ABC):
    output: str = "output"    # the model output the loss reads

    name: ClassVar[str] = ""
    head: ClassVar[str] = ""                 # component kind; the main output's head picks the default
    hint: ClassVar[str] = ""                 # the head it needs, for "no head to train"
    specials: ClassVar[tuple[str, ...]] = ()
    term: ClassVar[str] = "lm"               # the main loss term's name in metrics
    perplexity: ClassVar[bool] = True        # validation reports exp(loss)
    accuracy: ClassVar[bool] = False         # validation reports accuracy
    generates: ClassVar[bool] = False        # `strata generate` writes text with it
    drafts: ClassVar[bool] = False           # speculative decoding can draft / verify with it
    past_positions: ClassVar[bool] = False   # generation goes on past ctx (re-reading the last ctx tokens)

    # ------------------------------------------------------------ choice
    @classmethod
    def detect(cls, g, heads: Heads) -> "Objective | None":
        """This objective bound to the first output whose head it trains, or None."""
        return None

    def check(self, g) -> None:
        """Refuse a model this objective would train wrongly."""

    @property
    def uses(self) -> set[str]:
        """The model outputs the loss reads (others are unused: DDP must know)."""
        return {self.output}

    def to_json(self) -> dict:
        """run.json's record: {"name", "output", "nsp", "classes"} (None where it has none)."""
        return {"name": self.name, "output": self.output, "nsp": None, "classes": None} \
            | {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, d: dict) -> "Objective":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    # ------------------------------------------------------------ data
    @abstractmethod
    def read_data(self, data) -> tuple:
        """(callable giving the texts the tokenizer is fitted on, what `dataset`
        reads, run.json's "data" record)."""

    @abstractmethod
    def dataset(self, payload, tok, cache: Path | None, val_fraction: float, context: int,
                writer: bool):
        ...

    @abstractmethod
    def train_sampler(self, data, tok, cfg: dict, context: int):
        """Batches of the training run: train_batch(step, micro), eval_count(), eval_batch(i)."""

    @abstractmethod
    def eval_sampler(self, data, tok, cfg: dict, own: bool, cache: Path | None,
                     max_batches: int | None):
        """(batches of `strata eval`, what they are read from, the characters of
        `data` the tokenizer read as [UNK]: strata.train.tokenizer.Unseen): the
        run's own validation split (own=True: its characters are the tokenizer's)
        or all of `data`."""

    # ------------------------------------------------------------ loss
    @property
    def term_names(self) -> list[str]:
        return [self.term]

    def counts(self, batch) -> dict[str, int]:
        """Items each term sums over (from the numpy batch, before any forward)."""
        return {self.term: int((batch["labels"] != IGNORE).sum())}

    def wants_dict(self) -> bool:
        return self.output != "output"

    def forward(self, model, b: dict, kwargs: set[str]) -> dict:
        """The model's outputs for a batch of tensors, as a dict; `kwargs`: what
        its forward accepts."""
        kw = {"return_dict": True} if self.wants_dict() else {}
        for k in ("token_type_ids", "attention_mask"):
            if k in b and k in kwargs:
                kw[k] = b[k]
        out = model(b["tokens"], **kw)
        return out if isinstance(out, dict) else {"output": out}

    def primary(self, out: dict, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, C), labels (N,)) of the main prediction, only where it counts."""
        logits, labels = out[self.output], b["labels"]
        if logits.dim() == 3:
            logits, labels = logits.flatten(0, 1), labels.flatten()
        return logits, labels

    def terms(self, out: dict, b: dict) -> dict[str, torch.Tensor]:
        logits, labels = self.primary(out, b)
        return {self.term: F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum")}

    def correct(self, out: dict, b: dict) -> torch.Tensor:
        """Correct predictions (classification accuracy, token accuracy)."""
        logits, labels = self.primary(out, b)
        return ((logits.argmax(-1) == labels) & (labels != IGNORE)).sum()

    # ------------------------------------------------------------ generation
    def prompt_ids(self, ids: np.ndarray, tok, ctx: int | None) -> torch.Tensor:
        """The prompt as the model reads it, (1, T)."""
        return torch.tensor(ids, dtype=torch.long)[None]

    def warm_up(self, model, tok, x: torch.Tensor, ctx: int | None, draft=None, k: int = 4) -> None:
        """Compile the one-token step (greedy, a few tokens) before the clock starts;
        with a `draft`, both models' steps as speculative decoding runs them."""

    def continue_ids(self, model, tok, x: torch.Tensor, n: int, temperature: float,
                     top_k: int | None, ctx: int | None, **options) -> tuple[list[int], list[int]]:
        """(ids to decode, the new ones among them).  Only an objective that
        generates (generates=True) has it, so it is not abstract."""
        raise NotImplementedError


class TextObjective(Objective):
    """Trains on text (a file, a folder, the built-in corpus): one token stream."""

    window_extra: ClassVar[int] = 0   # ids a training window holds past `context`

    def read_data(self, data):
        src = text_source(data).check()
        return src.texts, src, {"name": src.name, "sha256": src.digest, "characters": src.chars,
                                "builtin": src.builtin, "path": str(Path(data).resolve()) if data else None}

    def dataset(self, src, tok, cache, val_fraction, context, writer):
        return token_stream(src, tok, cache, val_fraction, context + self.window_extra, writer)

    @abstractmethod
    def eval_windows(self, ids, tok, context: int, batch: int, max_batches: int | None):
        """Batches of `strata eval` over the token ids `ids`."""

    def eval_tokens(self, context: int, batch: int, max_batches: int | None) -> int | None:
        """How many leading ids eval_windows reads (None: it may read any of them)."""
        return None

    def eval_sampler(self, data, tok, cfg, own, cache, max_batches):
        T, B = cfg["context"], cfg["batch"]
        src = text_source(data).check()
        unseen = Unseen()
        if own:
            ids = token_stream(src, tok, cache, cfg["val_fraction"], 1, writer=False).val
        else:  # with --max-batches, text is tokenized only as far as the batches read
            need, pieces, n = self.eval_tokens(T, B, max_batches), [], 0
            for t in src.texts():
                pieces.append(np.asarray(tok.encode(t), dtype=np.int64))
                unseen += tok.unseen([t])
                n += len(pieces[-1])
                if need is not None and n >= need:
                    break
            ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        if len(ids) < T + 1:
            raise UsageError(f"{src.name}: {len(ids)} tokens; evaluation needs at least context + 1 "
                             f"= {T + 1}")
        return self.eval_windows(ids, tok, T, B, max_batches), \
            f"{src.name}" + (" (validation split)" if own else ""), unseen


class ExampleObjective(Objective):
    """Trains on JSON Lines examples with `fields`, or on its built-in task."""

    fields: ClassVar[tuple[str, ...]] = ()
    builtin_task: ClassVar[str] = ""   # what it trains on when no data is given

    @property
    def label_count(self) -> int | None:
        """How many values an integer "label" field takes (None: no bound)."""
        return None

    @abstractmethod
    def builtin_examples(self) -> list[dict]:
        """The built-in task's records (from `strata.train.tasks.corpus_lines`)."""

    def examples(self, data) -> tuple[list[dict], str]:
        """(records, sha256) of `data` (a JSON Lines file), or of the built-in task when None."""
        if data is None:
            records = self.builtin_examples()
            return records, records_digest(records)
        return read_examples(data, self.fields, self.name, self.label_count)

    def read_data(self, data):
        records, digest = self.examples(data)
        kept = [k for k in self.fields if k != "label"]  # the text fields
        name = str(data) if data is not None else self.builtin_task
        return (lambda: (r[k] for r in records for k in kept)), (records, digest, name), {
            "name": name, "sha256": digest, "examples": len(records), "builtin": data is None,
            "path": str(Path(data).resolve()) if data is not None else None}

    def dataset(self, payload, tok, cache, val_fraction, context, writer):
        records, digest, name = payload
        return tokenize_examples(records, digest, self.name, self.fields, tok, cache, val_fraction,
                                 name, writer)

    @abstractmethod
    def batches(self, ex, context: int, batch: int, seed: int, eval_steps: int, tok, accumulate: int = 1):
        ...

    def train_sampler(self, data, tok, cfg, context):
        return self.batches(data, context, cfg["batch"], cfg["seed"], cfg["eval_steps"], tok,
                            accumulate=cfg["accumulate"])

    def eval_sampler(self, data, tok, cfg, own, cache, max_batches):
        records, digest = self.examples(data)
        ex = tokenize_examples(records, digest, self.name, self.fields, tok, cache, cfg["val_fraction"],
                               str(data), writer=False, all_val=not own)
        unseen = Unseen()
        if not own:
            # seq2seq's and classify's tokenizers reserve [UNK]: what they never saw is counted, not refused
            unseen = tok.unseen(r[k] for r in records for k in self.fields if k != "label")
        what = (f"{data}" if data is not None else self.builtin_task) + (" (validation split)" if own else "")
        return self.batches(ex, cfg["context"], cfg["batch"], 0, max_batches or 1 << 62, tok), what, unseen
