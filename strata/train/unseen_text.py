"""Text a command reads with a model's own tokenizer beyond the run's data
(`--calibration FILE`, `strata compress --finetune N --data FILE`): characters a
char tokenizer never saw are refused in one line naming the input when it has
no [UNK] (a causal LM's), or read as [UNK] and said in a one-line warning on
stderr (seq2seq's, classify's, a masked LM's), as `strata generate` and
`strata eval --data` say them: never lost in silence.

    check_text(tok, [text], "calib.txt", "give --calibration text in the characters the model trained on")
    # stderr: strata: warning: calib.txt has 2 characters the tokenizer never saw, read as [UNK]: 'ß' '☃'
"""

from __future__ import annotations

import sys
from typing import Sequence

from strata.errors import visible
from strata.train.tokenizer import Tokenizer, UnseenCharacters

__all__ = ["check_text"]


def check_text(tok: Tokenizer, texts: Sequence[str], what: str, instead: str) -> None:
    """Refuse `texts` (read as `what`, e.g. a file name) when `tok` has no id for
    a character and no [UNK] (saying `instead`, what to give); warn, naming the
    characters, when it reads them as [UNK].  Byte and BPE tokenizers read any text."""
    try:
        tok.check_covers(texts)
    except UnseenCharacters as e:
        raise e.within(what, instead) from None
    lost = tok.unseen(texts)
    if lost:  # names from the command line or a file: escaped
        print(visible(f"strata: warning: {lost.said_of(what)}"), file=sys.stderr, flush=True)
