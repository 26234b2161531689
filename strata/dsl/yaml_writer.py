"""Write a spec in the YAML surface: deterministic, readable, lossless.

    >>> from strata.dsl.parser import parse
    >>> print(to_yaml(parse("model m { d = 8\\n stack s(tokens) { embedding(10, d) as wte } }")), end="")
    models:
      m:
        vars: {d: 8}
        stacks:
          s:
            inputs: [tokens]
            body:
              - {embedding: [10, d], as: wte}

`parse_yaml(to_yaml(spec)) == spec` for every spec the text form can hold (the
YAML form keys definitions by name, so a spec that defines one name twice is
refused with a SpecError).  The form is described in `strata.dsl.yaml_loader`.
Block style for structure, flow style for single statements.  Every value is
written so it reads back as the same expression: a tuple as a list; YAML's own
numbers, booleans and null where they mean the same; else the formatter's text,
quoted where YAML would read it otherwise (`'yes'`, `'"gelu"'`, `'0x10'`).
"""

from __future__ import annotations

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

import strata.dsl.ast as A
from strata.dsl.formatter import format_expr, format_use
from strata.dsl.yaml_nodes import (
    BOOL,
    FLOAT,
    INT,
    NULL,
    STR,
    TAG,
    Bad,
    parse_expression,
    read_scalar,
)
from strata.errors import Diagnostic, SpecError

_RESOLVER = yaml.resolver.Resolver()
# YAML's own scalar types that may stand for an expression; other implicit tags
# (timestamps, `!`, `=`, `<<`) are written as quoted strings.
_NATIVE = {INT, FLOAT, BOOL, NULL}


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        # Indent lists under their key (`body:\n  - x`), which PyYAML does not by default.
        return super().increase_indent(flow, False)


def _str(text: str, style: str | None = None) -> ScalarNode:
    return ScalarNode(STR, text, style=style)


def _null() -> ScalarNode:
    return ScalarNode(NULL, "null")


def _map(pairs: list, flow: bool = False) -> MappingNode:
    return MappingNode(TAG + "map", [(_str(k), v) for k, v in pairs], flow_style=flow)


def _seq(items: list, flow: bool = False) -> SequenceNode:
    return SequenceNode(TAG + "seq", items, flow_style=flow)


def _flow(node: A.Stmt) -> bool:
    """Short statements are one flow mapping; a multi-line comment needs block style."""
    return node.comment is None or "\n" not in node.comment


def _comment(node: A.Stmt) -> list:
    if node.comment is None:
        return []
    return [("comment", _str(node.comment, "|" if "\n" in node.comment else None))]


# ----------------------------------------------------------------- expressions

def _expr(e: A.Node) -> ScalarNode | SequenceNode:
    """The node the loader turns back into `e`: a tuple is a YAML list; a scalar is
    plain when YAML's own reading of the text agrees (`768`, `true`, `4 * d`),
    else quoted."""
    if isinstance(e, A.Tuple) and e.items:
        return _seq([_expr(x) for x in e.items], flow=True)
    if isinstance(e, A.Str) and parse_expression(e.value) is None:
        text = e.value  # reads back as a string by itself: `decoder.*.mlp`
    else:
        text = format_expr(e)
    tag = _RESOLVER.resolve(ScalarNode, text, (True, False))
    if tag in _NATIVE or tag == STR:  # a plain `0o17` or `2d` is refused: quote it
        try:
            same = read_scalar(tag, text) == e
        except Bad:
            same = False
        if same:
            return ScalarNode(tag, text) if tag != STR else _str(text)
    # A str-tagged scalar that YAML would read otherwise is quoted by the emitter;
    # one the loader would refuse plain (`0o17`) is quoted here.
    return _str(text, '"' if "\n" in text else "'" if tag == STR else None)


# ------------------------------------------------------------------ statements

def _use(u: A.Use):
    if not (u.args or u.kwargs or u.alias or u.comment is not None):
        return _str(u.name)
    if u.name == "comment":  # the mapping form would read it as a comment: use the text form
        if u.comment is not None:
            raise SpecError([Diagnostic("a use of 'comment' with a comment cannot be written in "
                                        "YAML", u.span, "rename the block")])
        return _str(format_use(u))
    # Keywords whose name is also a key of the statement go into the argument list.
    inline = not any(k.name in ("as", "comment", u.name) for k in u.kwargs)
    args = [_expr(a) for a in u.args]
    if not inline:
        args += [_map([(k.name, _expr(k.value))], flow=True) for k in u.kwargs]
    if not args:
        value = _null()
    elif (len(args) == 1 and inline and isinstance(args[0], ScalarNode)
          and not (isinstance(u.args[0], A.Const) and u.args[0].value is None)):
        value = args[0]
    else:
        value = _seq(args, flow=True)
    pairs = _comment(u) + [(u.name, value)]
    if inline:
        pairs += [(k.name, _expr(k.value)) for k in u.kwargs]
    if u.alias:
        pairs.append(("as", _str(u.alias)))
    return _map(pairs, flow=_flow(u))


def _body(body: list) -> SequenceNode:
    return _seq([_stmt(s) for s in body])


def _one_line(node: MappingNode, limit: int = 72) -> MappingNode:
    """`node` in flow style when its statements are all simple and it fits on a line."""
    body = [v for _, v in node.value if isinstance(v, SequenceNode)]
    simple = all(isinstance(x, ScalarNode) or x.flow_style for b in body for x in b.value)
    if simple and not any(k.value == "comment" for k, _ in node.value):
        node.flow_style = True
        for b in body:
            b.flow_style = True
        text = yaml.serialize(node, Dumper=_Dumper, allow_unicode=True, width=1 << 30)
        if len(text) <= limit and text.count("\n") == 1:
            return node
        node.flow_style = False
        for b in body:
            b.flow_style = False
    return node


def _stmt(s: A.Node):
    if isinstance(s, A.Use):
        return _use(s)
    if isinstance(s, A.Assign):
        return _map(_comment(s) + [("let", _map([(s.name, _expr(s.value))], flow=True))],
                    flow=_flow(s))
    if isinstance(s, (A.Residual, A.Parallel, A.Seq)):
        return _one_line(_map(_comment(s) + [(s.kind, _body(s.body))]))
    if isinstance(s, A.Branch):
        alias = [("as", _str(s.alias))] if s.alias else []
        return _one_line(_map(_comment(s) + [("branch", _body(s.body))] + alias))
    if isinstance(s, A.Repeat):
        pairs = _comment(s) + [("repeat", _expr(s.count))]
        if s.index:
            pairs.append(("index", _str(s.index)))
        only = s.body[0] if len(s.body) == 1 else None
        one = isinstance(only, A.Use) and only.alias is None and only.comment is None
        pairs.append(("body", _use(only) if one else _body(s.body)))
        if s.alias:
            pairs.append(("as", _str(s.alias)))
        return _map(pairs, flow=_flow(s)) if one else _one_line(_map(pairs))
    raise TypeError(f"not a statement: {s!r}")


# ----------------------------------------------------------------- definitions

def _unique(nodes: list, what: str) -> None:
    seen: set[str] = set()
    for n in nodes:
        if n.name in seen:
            raise SpecError([Diagnostic(f"{what} '{n.name}' is defined twice; the YAML form keys "
                                        f"{what}s by name", n.span, "rename or remove one")])
        seen.add(n.name)


def _items(items: list[A.Assign], what: str, flow: bool = True) -> MappingNode:
    """name -> value; flow style `{d: 768, hidden: 4 * d}` when short and plain."""
    _unique(items, what)
    pairs = []
    for a in items:
        value = _expr(a.value)
        if a.comment is not None:
            value = _map(_comment(a) + [("value", value)])
        pairs.append((a.name, value))
    node = _map(pairs)
    plain = all(isinstance(v, ScalarNode) and not any(c in v.value for c in ',[]{}#"\'\n')
                for _, v in pairs)
    return _one_line(node, 60) if flow and plain and len(pairs) <= 4 else node


def _blocks(blocks: list[A.BlockDef]) -> MappingNode:
    _unique(blocks, "block")
    pairs = []
    for b in blocks:
        if not b.params and b.comment is None:
            pairs.append((b.name, _body(b.body)))
            continue
        params = _map([(p.name, _null() if p.default is None else _expr(p.default))
                       for p in b.params], flow=True)
        pairs.append((b.name, _map(_comment(b) + ([("params", params)] if b.params else [])
                                   + [("body", _body(b.body))])))
    return _map(pairs)


def _stack(s: A.StackDef) -> MappingNode:
    inputs = [_str(i.name) if i.source is None else _map([(i.name, _str(i.source))], flow=True)
              for i in s.inputs]
    return _map(_comment(s) + [("inputs", _seq(inputs, flow=True)), ("body", _body(s.body))])


def _model(m: A.ModelDef) -> MappingNode:
    pairs = _comment(m)
    if m.extends:
        pairs.append(("extends", _str(m.extends)))
    if m.vars:
        pairs.append(("vars", _items(m.vars, "variable")))
    if m.blocks:
        pairs.append(("blocks", _blocks(m.blocks)))
    if m.stacks:
        _unique(m.stacks, "stack")
        pairs.append(("stacks", _map([(s.name, _stack(s)) for s in m.stacks])))
    return _map(pairs)


def _import(i: A.Import):
    if i.names is None:
        if i.comment is None:
            return _str(i.path)
        return _map(_comment(i) + [("import", _str(i.path))], flow=_flow(i))
    names = _seq([_str(n) for n in i.names], flow=True)
    return _map(_comment(i) + [("from", _str(i.path)), ("import", names)], flow=_flow(i))


def to_yaml(spec: A.SpecFile) -> str:
    """The YAML text of `spec`; `parse_yaml` reads it back to an equal spec."""
    pairs = []
    if spec.imports:
        pairs.append(("imports", _seq([_import(i) for i in spec.imports])))
    if spec.blocks:
        pairs.append(("blocks", _blocks(spec.blocks)))
    if spec.models:
        _unique(spec.models, "model")
        pairs.append(("models", _map([(m.name, _model(m)) for m in spec.models])))
    if spec.passes is not None:
        items = _seq([_use(u) for u in spec.passes.items])
        pairs.append(("passes", items if spec.passes.comment is None
                      else _map(_comment(spec.passes) + [("items", items)])))
    if spec.train is not None:
        items = _items(spec.train.items, "train setting", flow=False)
        long = spec.train.comment is not None or any(
            a.name in ("items", "comment") for a in spec.train.items)
        pairs.append(("train", _map(_comment(spec.train) + [("items", items)]) if long else items))
    return yaml.serialize(_map(pairs), Dumper=_Dumper, allow_unicode=True, width=1 << 30)
