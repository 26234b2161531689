"""Built-in example tasks: what seq2seq and classification train on when no
data is given, so every objective trains on a fresh machine with no download
(as the language-model objectives do on the built-in corpus).

Both are made from runs of plain words of the built-in corpus (Python's
documentation topics), cut into pieces of 4 to 12 words, in the corpus's order,
each piece once:

    seq2seq    {"source": "the words of a line", "target": "line a of words the"}
    classify   {"text": "the words of a line", "label": (words - 4) * classes // 9}

Reversing the word order needs the encoder (the decoder cannot guess it) and
cross-attention that finds the right source position: a small but real
sequence task.  The length class needs the pooled sequence.

    >>> records, digest = builtin_examples("seq2seq")
    >>> r = records[0]; r["target"].split() == r["source"].split()[::-1]
    True
"""

from __future__ import annotations

import hashlib
import json
import re

from strata.train.data import builtin_text, read_examples

__all__ = ["BUILTIN_TASKS", "builtin_examples", "examples"]

BUILTIN_TASKS = {"seq2seq": "built-in task: reverse the words of a line of the built-in corpus",
                 "classify": "built-in task: the length class of a line of the built-in corpus"}
MAX_EXAMPLES = 20_000
_WORDS = re.compile(r"[A-Za-z][A-Za-z,.']*")
LINE_WORDS = (4, 12)


def _lines() -> list[str]:
    """Runs of plain words of the corpus, cut into pieces of lo..hi words (the
    length cycles, so every length is there), each piece once, in order."""
    lo, hi = LINE_WORDS
    seen, out, k = set(), [], 0
    for raw in builtin_text().splitlines():
        run: list[str] = []
        for w in raw.split() + [""]:
            if _WORDS.fullmatch(w):
                run.append(w)
                continue
            while len(run) >= lo:
                n = lo + k % (hi - lo + 1)
                if len(run) < n:
                    n = len(run) if len(run) <= hi else n
                piece, run = " ".join(run[:n]), run[n:]
                k += 1
                if piece not in seen:
                    seen.add(piece)
                    out.append(piece)
                    if len(out) == MAX_EXAMPLES:
                        return out
            run = []
    return out


def builtin_examples(objective: str, classes: int | None = None) -> tuple[list[dict], str]:
    """(records, sha256 of them as JSON Lines) of the built-in task for `objective`."""
    lines = _lines()
    if objective == "seq2seq":
        records = [{"source": s, "target": " ".join(s.split()[::-1])} for s in lines]
    else:
        n, (lo, hi) = classes or 2, LINE_WORDS
        records = [{"text": s, "label": (len(s.split()) - lo) * n // (hi - lo + 1)} for s in lines]
    h = hashlib.sha256("".join(json.dumps(r) + "\n" for r in records).encode())
    return records, h.hexdigest()


def examples(data, objective: str, classes: int | None = None) -> tuple[list[dict], str]:
    """The examples of `data` (a JSON Lines file), or of the built-in task when None."""
    if data is None:
        return builtin_examples(objective, classes)
    return read_examples(data, objective, classes)
