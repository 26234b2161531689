"""Built-in example tasks: what seq2seq and classification train on when no
data is given, so every objective trains on a fresh machine with no download
(as the language-model objectives do on the built-in corpus).

Both are made from the lines of the built-in corpus (Python's documentation
topics) that hold 4 to 12 plain words, in the corpus's order, each line once:

    seq2seq    {"source": "the words of a line", "target": "line a of words the"}
    classify   {"text": "the words of a line", "label": min(words // 4, classes - 1)}

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


def _lines() -> list[str]:
    seen, out = set(), []
    for raw in builtin_text().splitlines():
        words = raw.split()
        if not 4 <= len(words) <= 12 or not all(_WORDS.fullmatch(w) for w in words):
            continue
        line = " ".join(words)
        if line not in seen:
            seen.add(line)
            out.append(line)
            if len(out) == MAX_EXAMPLES:
                break
    return out


def builtin_examples(objective: str, classes: int | None = None) -> tuple[list[dict], str]:
    """(records, sha256 of them as JSON Lines) of the built-in task for `objective`."""
    lines = _lines()
    if objective == "seq2seq":
        records = [{"source": s, "target": " ".join(s.split()[::-1])} for s in lines]
    else:
        top = (classes or 2) - 1
        records = [{"text": s, "label": min(len(s.split()) // 4, top)} for s in lines]
    h = hashlib.sha256("".join(json.dumps(r) + "\n" for r in records).encode())
    return records, h.hexdigest()


def examples(data, objective: str, classes: int | None = None) -> tuple[list[dict], str]:
    """The examples of `data` (a JSON Lines file), or of the built-in task when None."""
    if data is None:
        return builtin_examples(objective, classes)
    return read_examples(data, objective, classes)
