"""Completion in strata YAML files, read off the strict JSON Schema the loader
is held to (`strata.dsl.schema.yaml_json_schema`): the keys allowed at the
cursor's place (less those already written), and after `key: ` the words that
key takes (activations, position kinds, quantize schemes, ...).

The place is found from the text, not a YAML parser, so it works while the
file is half written: the keys of the lines above with less indentation (a
`- ` is a list item), then the open `{` / `[` of a flow mapping on the line.

    >>> text = "models:\\n  m:\\n    stacks:\\n      s:\\n        body:\\n          - {mlp: 64, act: "
    >>> [i.label for i in complete(text, 5, len(text.splitlines()[5]))][:3]
    ['relu', 'gelu', 'gelu_tanh']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from strata.dsl.registry import COMPONENTS, PASSES
from strata.dsl.schema import yaml_json_schema
from strata.lsp.items import Item
from strata.lsp.refused import refused, scalar

_KEY = re.compile(r"""^\s*(?:-\s+)*(?P<key>[A-Za-z_][\w.-]*|"[^"]*"|'[^']*')\s*:(?:\s|$)""")


@dataclass
class Place:
    path: list[str]                 # keys from the top; "[]" is a list item
    present: set[str] = field(default_factory=set)  # keys already in the mapping at the cursor
    value_of: str | None = None     # completing the value of this key (else a key)
    written: dict[str, str] = field(default_factory=dict)  # those keys' values, as written on their line


@lru_cache(maxsize=1)
def _schema() -> dict:
    return yaml_json_schema()


def complete(text: str, line: int, col: int) -> list[Item]:
    """What may be written at (line, col) 0-based of a strata YAML file."""
    lines = text.split("\n")
    if not 0 <= line < len(lines):
        return []
    place = locate(lines, line, col)
    if place is None:
        return []
    nodes = [_schema()]
    for key in place.path:
        nodes = _child(nodes, key)
    if place.value_of is not None:
        key = place.value_of
        nodes = _narrow(nodes, place.present | {key})
        values = _child(nodes, key)
        table = COMPONENTS if key in COMPONENTS else PASSES if key in PASSES else {}
        if key in table and table[key].positional:  # `mlp: ...`: the call's positional arguments
            values += _child(nodes, table[key].positional[0])
        return [Item(str(v).lower() if isinstance(v, bool) else str(v), "value", key)
                for v in _dedupe(w for n in values for w in _enum(n))]
    return [i for i in _keys(nodes, place.present) if i.label not in _refused(place)]


def _refused(place: Place) -> set[str]:
    """The options of the pass or component of the mapping at the cursor that the
    checker refuses beside those written (`quantize: int8_dynamic` leaves out
    group_size, strata.lsp.refused asking the options model; and scheme, which
    that wrote already)."""
    table = PASSES if "passes" in place.path else COMPONENTS
    name = next((k for k in place.written if k in table), None)
    if name is None:
        return set()
    spec = table[name]
    written = {k: scalar(v) for k, v in place.written.items() if k in spec.options.model_fields and v}
    head = place.written[name]
    if spec.positional and head and not head.startswith(("[", "{")) and head not in ("null", "~"):
        written.setdefault(spec.positional[0], scalar(head))
    return set(written) | refused(spec.options, written)  # the positional one too: given twice


# ------------------------------------------------------------------ where the cursor is
def _indent(s: str) -> int:
    return len(s) - len(s.lstrip(" "))


def _block_path(lines: list[str], line: int, indent: int) -> list[str]:
    """Keys of the block mappings and lists enclosing a line indented by
    `indent`: each line above with less indentation either opens our mapping
    with its `- ` (a list item: "[]") or ends with the key whose value we are in."""
    path: list[str] = []
    for ln in range(line - 1, -1, -1):
        s = lines[ln]
        if not s.strip() or s.lstrip().startswith("#"):
            continue
        ind = _indent(s)
        if ind >= indent:
            continue
        dashes = re.match(r"(-\s+)*", s[ind:]).group()
        content = ind + len(dashes)  # where this line's own mapping starts
        m = _KEY.match(s)
        if content == indent:  # `- a: 1` above `  b: 2`: the same mapping, a list item
            path[:0] = ["[]"] * dashes.count("-")
        elif content < indent and m:  # a key whose value holds our line
            path[:0] = ["[]"] * dashes.count("-") + [_unquote(m.group("key"))]
        else:
            continue
        indent = ind
        if indent == 0:
            break
    return path


def _siblings(lines: list[str], line: int, indent: int) -> dict[str, str]:
    """Keys written at `indent` in the block mapping around `line`, each with the
    value written after it on its line ("" for none)."""
    out = {}
    for step in (-1, 1):
        ln = line + step
        while 0 <= ln < len(lines):
            s = lines[ln]
            if s.strip() and not s.lstrip().startswith("#"):
                ind = _indent(s)
                head = s[ind:]
                if ind < indent and not (head.startswith("- ") and ind + len(re.match(r"(-\s+)*", head).group())
                                         == indent and step < 0):
                    break
                m = _KEY.match(s)
                if m and ind + len(re.match(r"(-\s+)*", head).group()) == indent:
                    out[_unquote(m.group("key"))] = re.sub(r"\s+#.*$", "", s[m.end():]).strip()
                    if head.startswith("-") and step < 0:
                        break  # the first line of our list item
            ln += step
    return out


def locate(lines: list[str], line: int, col: int) -> Place | None:
    before = lines[line][:col]
    ind = _indent(before) if before.strip() else col
    head = before[ind:] if before.strip() else ""
    dashes = re.match(r"(-\s*)*", head).group()
    content = ind + len(dashes)
    path = _block_path(lines, line, ind) + ["[]"] * dashes.count("-")
    rest = head[len(dashes):]
    written = _siblings(lines, line, content) if not dashes or rest else {}
    present = set(written)
    if re.search(r"[{\[]", rest):  # a flow collection on this line
        return _flow(path, rest)
    m = re.match(r"""([A-Za-z_][\w.-]*|"[^"]*"|'[^']*')\s*:\s+(\S*)$""", rest)
    if m:
        return Place(path, present, _unquote(m.group(1)), written)
    if re.fullmatch(r"[\w.-]*", rest):
        return Place(path, present - {rest}, written={k: v for k, v in written.items() if k != rest})
    return None


def _flow(path: list[str], text: str) -> Place | None:
    """The place inside `{...}` / `[...]` written on one line."""
    path = list(path)
    frames: list[dict] = []  # {"kind": "{" or "[", "keys": set, "key": current key or None}
    token, i, outer = "", 0, None  # outer: the block key the flow collection is the value of
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            j = text.find(ch, i + 1)
            token += text[i:(len(text) if j < 0 else j + 1)]
            i = len(text) if j < 0 else j + 1
            continue
        if ch in "{[":
            if frames:
                top = frames[-1]
                if top["kind"] == "{" and top["key"] is None:
                    return None  # a mapping as a key
                path.append(top["key"] if top["kind"] == "{" else "[]")
            elif outer is not None:
                path.append(outer)
            frames.append({"kind": ch, "keys": set(), "key": None, "values": {}})
            token = ""
        elif ch in "}]":
            if frames:
                frames.pop()
                if frames:
                    path.pop()
            token = ""
        elif ch == ":" and not frames:
            outer = _unquote(token.strip())
            token = ""
        elif ch == ":" and frames and frames[-1]["kind"] == "{" and frames[-1]["key"] is None:
            key = _unquote(token.strip())
            frames[-1]["key"] = key
            frames[-1]["keys"].add(key)
            token = ""
        elif ch == ",":
            if frames and frames[-1]["kind"] == "{":
                if frames[-1]["key"] is not None:
                    frames[-1]["values"][frames[-1]["key"]] = token.strip()
                frames[-1]["key"] = None
            token = ""
        else:
            token += ch
        i += 1
    if not frames:
        return None
    top = frames[-1]
    if top["kind"] == "[":
        return Place(path + ["[]"], set())
    if top["key"] is not None:
        return Place(path, top["keys"] - {top["key"]}, top["key"])
    return Place(path, top["keys"], written={k: top["values"].get(k, "") for k in top["keys"]})


def _unquote(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'" else s


# ------------------------------------------------------------------ the schema at a place
def _expand(node: dict) -> list[dict]:
    """A schema node's alternatives ($ref followed, anyOf / oneOf flattened)."""
    defs = _schema()["$defs"]
    out, todo = [], [node]
    while todo:
        n = todo.pop(0)
        if "$ref" in n:
            todo.insert(0, defs[n["$ref"].rpartition("/")[2]])
        elif "anyOf" in n or "oneOf" in n:
            todo[:0] = n.get("anyOf", []) + n.get("oneOf", [])
        else:
            out.append(n)
    return out


def _child(nodes: list[dict], key: str) -> list[dict]:
    out = []
    for n in nodes:
        for alt in _expand(n):
            if key == "[]":
                if isinstance(alt.get("items"), dict):
                    out.append(alt["items"])
            elif key in alt.get("properties", {}):
                out.append(alt["properties"][key])
            elif isinstance(alt.get("additionalProperties"), dict):
                out.append(alt["additionalProperties"])
    return out


def _objects(nodes: list[dict]) -> list[dict]:
    return [a for n in nodes for a in _expand(n) if "properties" in a]


def _narrow(nodes: list[dict], present: set[str]) -> list[dict]:
    """The object alternatives that allow every key already written."""
    objs = _objects(nodes)
    fit = [o for o in objs if present <= set(o["properties"])]
    return fit or objs


def _keys(nodes: list[dict], present: set[str]) -> list[Item]:
    objs = _narrow(nodes, present)
    if not present and len(objs) > 3:
        # a statement or pass with nothing written yet: each alternative's first
        # key names it (attention:, residual:, quantize:); the bare words too
        items = [_key_item(next(iter(o["properties"])), next(iter(o["properties"].values())), o) for o in objs]
        words = [Item(str(w), "value", "statement") for n in nodes for a in _expand(n) for w in a.get("enum", [])]
        return _unique(words + items)
    return _unique([_key_item(k, v, o) for o in objs for k, v in o["properties"].items() if k not in present])


def _key_item(key: str, prop: dict, owner: dict) -> Item:
    kinds = sorted({t for a in _expand(prop) for t in (a["type"] if isinstance(a.get("type"), list)
                                                         else [a.get("type", "object")])} - {"null"})
    words = list(_dedupe(w for a in _expand(prop) for w in a.get("enum", [])))
    detail = ", ".join(kinds) + (f": one of {', '.join(map(str, words))}" if words else "")
    if "default" in prop and prop["default"] is not None:
        detail += f", default {prop['default']!r}"
    doc = prop.get("description") or owner.get("description") or ""
    return Item(key, "option", detail, doc, insert=f"{key}: ")


def _enum(node: dict):
    for a in _expand(node):
        yield from a.get("enum", [])
        if a.get("type") == "boolean":
            yield from (True, False)


def _dedupe(xs):
    seen = set()
    for x in xs:
        if x not in seen:
            seen.add(x)
            yield x


def _unique(items: list[Item]) -> list[Item]:
    seen, out = set(), []
    for i in items:
        if i.label not in seen:
            seen.add(i.label)
            out.append(i)
    return out
