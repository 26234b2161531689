"""The material of the built-in example tasks: what an example objective trains
on when no data is given, so every objective trains on a fresh machine with no
download (as the text objectives do on the built-in corpus).

Runs of plain words of the built-in corpus (Python's documentation topics), cut
into pieces of 4 to 12 words, in the corpus's order, each piece once; each
example objective makes its records from them (seq2seq.py reverses the words,
classify.py labels the length).

    >>> lines = corpus_lines()
    >>> all(4 <= len(s.split()) <= 12 for s in lines[:100])
    True
"""

from __future__ import annotations

import hashlib
import json
import re

from strata.train.data import builtin_text

__all__ = ["LINE_WORDS", "corpus_lines", "records_digest"]

MAX_EXAMPLES = 20_000
_WORDS = re.compile(r"[A-Za-z][A-Za-z,.']*")
LINE_WORDS = (4, 12)


def corpus_lines() -> list[str]:
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


def records_digest(records: list[dict]) -> str:
    """sha256 of the records as JSON Lines (what a file of them would hash to)."""
    return hashlib.sha256("".join(json.dumps(r) + "\n" for r in records).encode()).hexdigest()
