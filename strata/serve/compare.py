"""Two specs side by side (teacher and student, a model and its compressed
spec): the difference of their numbers and of their structure, from the two
payloads `render.Checked.view` made for them.

The structure is compared on `strata summary`'s folded rows, keyed by module
path with repeat counts left out (so `decoder.h × 12` and `decoder.h × 6` are
the same row, changed), aligned in order with difflib.

    >>> a = {"totals": {"parameters": 10, "flops": 20}, "rows": [["s.h × 2", "layer", "[B]", "8"]]}
    >>> b = {"totals": {"parameters": 5, "flops": 20}, "rows": [["s.h × 1", "layer", "[B]", "4"]]}
    >>> d = diff(a, b)
    >>> d["totals"][0], d["rows"][0]["status"]
    ({'name': 'parameters', 'a': 10, 'b': 5, 'ratio': 0.5}, 'changed')
"""

from __future__ import annotations

import difflib
import re

NUMBERS = (("parameters", "parameters"), ("flops", "FLOPs per token"), ("weights_bytes", "weights bytes"),
           ("kv_cache_bytes_per_token", "KV cache bytes per token"), ("seq_len", "context"))
COUNT = re.compile(r" × \d+$")


def _keys(rows: list[list[str]]) -> list[str]:
    """A path per row: a repeat's heading (count dropped) prefixes the rows indented under it."""
    out, stack = [], []  # stack: (indent, key) of the open headings
    for label, *_ in rows:
        indent = len(label) - len(label.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = COUNT.sub("", label.strip())
        key = (stack[-1][1] if stack else "") + (name if not stack or not name.startswith(".") else name)
        out.append(key)
        if label.rstrip() != COUNT.sub("", label.rstrip()):  # a repeat heading: rows under it follow
            stack.append((indent, key))
    return out


def diff(a: dict, b: dict) -> dict:
    totals = []
    for key, name in NUMBERS:
        x, y = a["totals"].get(key), b["totals"].get(key)
        if x is None or y is None:
            continue
        totals.append({"name": name, "a": x, "b": y, "ratio": round(y / x, 4) if x else None})
    ka, kb = _keys(a["rows"]), _keys(b["rows"])
    rows = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ka, kb, autojunk=False).get_opcodes():
        if op == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2)):
                same = a["rows"][i][1:] == b["rows"][j][1:] and a["rows"][i][0] == b["rows"][j][0]
                rows.append({"status": "same" if same else "changed", "a": a["rows"][i], "b": b["rows"][j]})
            continue
        pairs = list(zip(range(i1, i2), range(j1, j2))) if op == "replace" else []
        for i, j in pairs:  # a module renamed or swapped at the same place
            rows.append({"status": "changed", "a": a["rows"][i], "b": b["rows"][j]})
        for i in range(i1 + len(pairs), i2):
            rows.append({"status": "removed", "a": a["rows"][i], "b": None})
        for j in range(j1 + len(pairs), j2):
            rows.append({"status": "added", "a": None, "b": b["rows"][j]})
    return {"totals": totals, "rows": rows}
