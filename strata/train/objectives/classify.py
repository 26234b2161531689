"""Sequence classification: a classifier on the pooled sequence (BERT fine-tuning).

    head        classifier on a pooled [B, d] (after a pooler)
    tokens      [PAD] [UNK] [CLS] [SEP]
    data        JSON Lines of {"text", "label"} (label an integer in [0, classes)), or
                the built-in task: the length class of a line of the built-in corpus
    batches     `[CLS] text [SEP]` padded to the longest of the batch, with its mask
    loss        "cls": cross-entropy per example; accuracy (no perplexity)
    generates   no (`strata eval` measures it)

    >>> r = Classify(classes=3).builtin_examples()[0]
    >>> sorted(r), r["label"] in (0, 1, 2)
    (['label', 'text'], True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strata.train.batches import ExampleBatches
from strata.train.objectives.objective import ExampleObjective
from strata.train.tasks import LINE_WORDS, corpus_lines

__all__ = ["Classify", "ClassifyBatches"]


class ClassifyBatches(ExampleBatches):
    """`[CLS] text [SEP]`, padded; labels (B,)."""

    def __init__(self, ex, context: int, batch: int, seed: int, eval_steps: int, tok, accumulate: int = 1):
        super().__init__(ex, context, batch, seed, eval_steps, accumulate)
        self.pad_id, self.cls, self.sep = tok.special("[PAD]"), tok.special("[CLS]"), tok.special("[SEP]")

    def make(self, idx: np.ndarray) -> dict:
        rows = [np.concatenate([[self.cls], self.ex.get("text", i)[:self.T - 2], [self.sep]]) for i in idx]
        tokens = self.pad(rows, self.pad_id)
        return {"tokens": tokens, "attention_mask": (tokens != self.pad_id).astype(np.int64),
                "labels": self.ex.labels[idx]}


@dataclass(frozen=True)
class Classify(ExampleObjective):
    classes: int | None = None

    name = "classify"
    head = "classifier"
    hint = "classifier after a pooler (classification)"
    specials = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
    term = "cls"
    perplexity = False
    accuracy = True
    fields = ("text", "label")
    builtin_task = "built-in task: the length class of a line of the built-in corpus"

    @classmethod
    def detect(cls, g, heads):
        for name, (kind, path, rank) in heads.items():
            if kind == "classifier" and rank == 2:  # on the pooled sequence, not per token
                return cls(output=name, classes=g.graph.components[path]["options"]["classes"])
        return None

    @property
    def label_count(self) -> int | None:
        return self.classes

    def builtin_examples(self) -> list[dict]:
        n, (lo, hi) = self.classes or 2, LINE_WORDS
        return [{"text": s, "label": (len(s.split()) - lo) * n // (hi - lo + 1)} for s in corpus_lines()]

    def batches(self, ex, context, batch, seed, eval_steps, tok, accumulate=1):
        return ClassifyBatches(ex, context, batch, seed, eval_steps, tok, accumulate)

    def counts(self, batch) -> dict[str, int]:
        return {self.term: len(batch["labels"])}
