"""The YAML surface: the same spec as the .arch text, for tools and generated configs.

    >>> spec = parse_yaml('''
    ... models:
    ...   m:
    ...     vars: {d: 768, hidden: 4*d}
    ...     stacks:
    ...       decoder:
    ...         inputs: [tokens]
    ...         body:
    ...           - {embedding: [50257, d], as: wte}
    ...           - {residual: [layernorm, {attention: 12, causal: true}]}
    ...           - {lm_head: null, tie: wte}
    ... ''', "m.yaml")
    >>> from strata.dsl.formatter import format_expr
    >>> format_expr(spec.models[0].vars[1].value), spec.models[0].stacks[0].body[1].kind
    ('4 * d', 'residual')

The form (every key optional unless said otherwise):

    imports:
      - blocks.arch                          # import "blocks.arch"  (everything)
      - {from: common.arch, import: [layer]} # from "common.arch" import layer
      - {import: other.arch, comment: why}
    blocks:                                  # file-level blocks: name -> definition
      layer:
        comment: pre-norm layer              # any definition or statement may carry one
        params: {window: none, depth: null}  # param -> default; null = no default
        body: [...]                          # statements
      tiny: [layernorm]                      # shorthand: just the body
    models:
      gpt2:
        extends: base
        vars: {vocab: 50257, d: 768, hidden: 4*d, p: {value: 0.1, comment: why}}
        blocks: {layer: {body: [...]}}
        stacks:
          decoder:
            inputs: [tokens]                 # or [tgt, {memory: encoder}]  (required)
            body: [...]
    passes: [fuse_qkv, {quantize: int8_dynamic, on: "decoder.h.*.mlp.*"}]
                                             # or {comment: ..., items: [...]}
    train: {batch: 12, optimizer: "adamw(lr=1e-3, betas=(0.9, 0.99))"}
                                             # or {comment: ..., items: {...}}

Statements (a body is a list of them):

    - layernorm                              # a string is one statement of the text form:
    - attention(heads, causal=true) as attn  #   any use, assignment or construct
    - {embedding: [vocab, d], as: wte}       # use: the first key names the component or
    - {dropout: p}                           #   block; its value is null (no arguments),
    - {lm_head: null, tie: wte}              #   one value, or a list of values; the other
    - {layer: [3, {comment: 1}]}             #   keys are options (as, comment, keywords);
                                             #   {k: v} items in the list are keywords too
    - {let: {window: 256 if i % 2 == 0 else none}}   # an assignment
    - {residual: [layernorm, {attention: heads}]}    # also parallel, seq: a list of statements
    - {branch: [pooler], as: pooled}
    - {repeat: depth, index: i, body: layer, as: h}  # body: one statement or a list

Values are expressions.  YAML numbers, strings and sequences are read as
expressions of the text form (`4*d`, `1e-3`, `-1`, `[0.9, 0.99]` is a tuple);
YAML true/false/null are true/false/none, while YAML 1.1's yes/no/on/off are
names as in the text form.  A number is spelled as in the text form: unquoted
`0x10`, `0o17`, `1:30`, `.inf` or `2d` are errors (the hint gives the decimal).  A string that is not an expression
is a string value (`on: decoder.h.*.mlp.*`); to force a string write the text
form's quotes inside YAML's: `act: '"gelu"'`.

Safety: the file is composed node by node (never constructed into Python
objects); anchors, aliases, non-standard tags (`!!python/...`) and duplicate keys
are errors.  Every mistake is a SpecError at FILE:LINE:COL.
"""

from __future__ import annotations

import yaml

import strata.dsl.ast as A
from strata.dsl.clean import clean_text
from strata.dsl.parser import check_depth
from strata.dsl.yaml_nodes import (
    KEYWORDS,
    NAME,
    NULL,
    STATEMENT_WORDS,
    Bad,
    Where,
    compose,
    node_span,
    read_scalar,
    read_statement,
)
from strata.errors import Diagnostic, Span, SpecError, did_you_mean

BODIES = {"residual": A.Residual, "parallel": A.Parallel, "seq": A.Seq}
_KEYS = {
    "top": ("imports", "blocks", "models", "passes", "train"),
    "import": ("from", "import", "comment"),
    "block": ("params", "body", "comment"),
    "model": ("extends", "vars", "blocks", "stacks", "comment"),
    "stack": ("inputs", "body", "comment"),
    "item": ("value", "comment"),
    "section": ("items", "comment"),
    "branch": ("branch", "as", "comment"),
    "repeat": ("repeat", "index", "body", "as", "comment"),
    "let": ("let", "comment"),
}


# ------------------------------------------------------------------ reading

class _Reader:
    """Turns the composed node tree into the AST, collecting independent mistakes."""

    def __init__(self, file: str, text: str):
        self.file, self.text, self.errors = file, text, []

    def span(self, node) -> Span:
        return node_span(self.file, node)

    def each(self, items, fn) -> list:
        """`fn` over `items`; a mistake in one is recorded and the rest still read."""
        out = []
        for it in items:
            try:
                out.append(fn(it))
            except Bad as b:
                self.errors.append(b.diagnostic)
        return out

    # ---- shapes
    def mapping(self, node, what: str, keys: tuple[str, ...] | None = None) -> dict:
        """{key: (key node, value node)} of a mapping; unknown or repeated keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            raise Bad(f"{what} must be a mapping", self.span(node))
        out: dict[str, tuple] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.errors.append(Diagnostic(f"a key in {what} must be a plain name", self.span(k)))
            elif k.value in out:
                self.errors.append(Diagnostic(f"key '{k.value}' is given twice in {what}",
                                              self.span(k), "keep one of them"))
            elif keys is not None and k.value not in keys:
                hint = did_you_mean(k.value, keys) or f"expected one of: {', '.join(keys)}"
                self.errors.append(Diagnostic(f"unknown key '{k.value}' in {what}", self.span(k), hint))
            else:
                out[k.value] = (k, v)
        return out

    def seq(self, node, what: str) -> list:
        if not isinstance(node, yaml.SequenceNode):
            raise Bad(f"{what} must be a list", self.span(node))
        return node.value

    def name(self, node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or not node.value:
            raise Bad(f"{what} must be a name", self.span(node))
        if not NAME.match(node.value):
            raise Bad(f"'{node.value}' is not a valid {what}", self.span(node),
                      "names are letters, digits and '_', not starting with a digit")
        if node.value in KEYWORDS:
            raise Bad(f"'{node.value}' is a keyword and cannot be a {what}", self.span(node))
        return node.value

    def opt_name(self, m: dict, key: str, what: str) -> str | None:
        if key not in m or m[key][1].tag == NULL:
            return None
        return self.name(m[key][1], what)

    def comment(self, m: dict) -> str | None:
        if "comment" not in m or m["comment"][1].tag == NULL:
            return None
        node = m["comment"][1]
        if not isinstance(node, yaml.ScalarNode):
            raise Bad("a comment must be text", self.span(node))
        return node.value

    def expr(self, node):
        if isinstance(node, yaml.ScalarNode):
            return read_scalar(node.tag, node.value, Where(self.file, node, self.text))
        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                raise Bad("an empty list is not a value", self.span(node))
            return A.Tuple(items=[self.expr(x) for x in node.value], span=self.span(node))
        raise Bad("expected a value (a number, a name or an expression), found a mapping",
                  self.span(node))

    # ---- statements
    def body(self, node, what: str) -> list:
        if isinstance(node, yaml.SequenceNode):
            return self.each(node.value, self.stmt)
        if node.tag == NULL:
            raise Bad(f"{what} must be a list of statements", self.span(node), "write [] for none")
        return [self.stmt(node)]

    def stmt(self, node):
        if isinstance(node, yaml.ScalarNode):
            if node.tag == NULL:
                raise Bad("an empty statement", self.span(node))
            return read_statement(Where(self.file, node, self.text))
        if not isinstance(node, yaml.MappingNode):
            raise Bad("a statement must be a name, a text-form line or a mapping", self.span(node))
        head = next((k for k, _ in node.value
                     if isinstance(k, yaml.ScalarNode) and k.value not in ("as", "comment")), None)
        if head is None:
            raise Bad("this statement names no component", self.span(node),
                      "write the component first, e.g. {layernorm: null, as: ln}")
        key, sp = head.value, self.span(node)
        value = next(v for k, v in node.value if k is head)
        if key in BODIES:
            m = self.mapping(node, key, (key, "comment"))
            return BODIES[key](body=self.body(value, key), comment=self.comment(m), span=sp)
        if key == "branch":
            m = self.mapping(node, key, _KEYS["branch"])
            return A.Branch(body=self.body(value, key), alias=self.opt_name(m, "as", "name"),
                            comment=self.comment(m), span=sp)
        if key == "repeat":
            m = self.mapping(node, key, _KEYS["repeat"])
            if "body" not in m:
                raise Bad("repeat needs a body", sp, "e.g. {repeat: depth, body: layer, as: h}")
            return A.Repeat(count=self.expr(value), index=self.opt_name(m, "index", "index name"),
                            body=self.body(m["body"][1], "the body of repeat"),
                            alias=self.opt_name(m, "as", "name"), comment=self.comment(m), span=sp)
        if key == "let" and isinstance(value, yaml.MappingNode):
            m = self.mapping(node, key, _KEYS["let"])
            pairs = list(self.mapping(value, "let").values())
            if len(pairs) != 1:
                raise Bad("let takes exactly one name: value", self.span(value))
            k, v = pairs[0]
            return A.Assign(name=self.name(k, "variable name"), value=self.expr(v),
                            comment=self.comment(m), span=sp)
        return self.use(node, head, value)

    def use(self, node, head, value) -> A.Use:
        if head.value in KEYWORDS:
            raise Bad(f"'{head.value}' cannot start a statement", self.span(head),
                      did_you_mean(head.value, STATEMENT_WORDS))
        name = self.name(head, "component name")
        args, kwargs = [], []
        if isinstance(value, yaml.SequenceNode):
            try:
                for item in value.value:
                    if isinstance(item, yaml.MappingNode):
                        opts = list(self.mapping(item, f"an option of '{name}'").values())
                        if len(opts) != 1:
                            raise Bad("a keyword argument in a list is one {name: value}",
                                      self.span(item))
                        kwargs.append(self.keyword(*opts[0]))
                    elif kwargs:
                        raise Bad("a positional argument follows a keyword argument",
                                  self.span(item), "put positional arguments first")
                    else:
                        args.append(self.expr(item))
            except Bad as b:
                hint = did_you_mean(name, STATEMENT_WORDS)
                if hint and b.diagnostic.hint is None:
                    raise Bad(b.diagnostic.message, b.diagnostic.span, hint) from None
                raise
        elif isinstance(value, yaml.MappingNode):
            hint = did_you_mean(name, STATEMENT_WORDS) or (
                f"write options next to the name: {{{name}: null, option: value}}")
            raise Bad(f"the arguments of '{name}' must be a value or a list of values",
                      self.span(value), hint)
        elif value.tag != NULL:
            args.append(self.expr(value))
        m = self.mapping(node, name)
        for k, (knode, v) in m.items():
            if knode is not head and k not in ("as", "comment"):
                kwargs.append(self.keyword(knode, v))
        seen: set[str] = set()
        for kw in kwargs:
            if kw.name in seen:
                raise Bad(f"option '{kw.name}' is given twice", kw.span, "keep one of them")
            seen.add(kw.name)
        return A.Use(name=name, args=args, kwargs=kwargs, alias=self.opt_name(m, "as", "name"),
                     comment=self.comment(m), span=self.span(node))

    def keyword(self, knode, vnode) -> A.Keyword:
        return A.Keyword(name=self.name(knode, "option name"), value=self.expr(vnode),
                         span=self.span(knode))

    # ---- definitions
    def spec(self, root) -> A.SpecFile:
        if not isinstance(root, yaml.MappingNode):
            raise Bad("a spec must be a mapping with models, blocks, passes or train",
                      self.span(root))
        m = self.mapping(root, "the spec", _KEYS["top"])
        spec = A.SpecFile(path=self.file, span=self.span(root))
        if "imports" in m:
            spec.imports = self.each(self.seq(m["imports"][1], "imports"), self.import_)
        if "blocks" in m:
            spec.blocks = self.named(m["blocks"][1], "blocks", self.block)
        if "models" in m:
            spec.models = self.named(m["models"][1], "models", self.model)
        if "passes" in m:
            spec.passes = self.passes(m["passes"][1])
        if "train" in m:
            spec.train = self.train(m["train"][1])
        return spec

    def named(self, node, what: str, fn) -> list:
        """A mapping name -> definition, read by `fn(name, key node, value node)`."""
        pairs = self.mapping(node, what).values()
        return self.each(pairs, lambda kv: fn(self.name(kv[0], what[:-1] + " name"), *kv))

    def import_(self, node) -> A.Import:
        if isinstance(node, yaml.ScalarNode):
            return A.Import(path=self.path(node), span=self.span(node))
        m = self.mapping(node, "an import", _KEYS["import"])
        if "from" in m:
            if "import" not in m:
                raise Bad("an import 'from' a file needs 'import: [names]'", self.span(node))
            names = m["import"][1]
            names = names.value if isinstance(names, yaml.SequenceNode) else [names]
            if not names:
                raise Bad("import at least one name", self.span(m["import"][1]))
            return A.Import(path=self.path(m["from"][1]), comment=self.comment(m),
                            names=[self.name(n, "imported name") for n in names], span=self.span(node))
        if "import" not in m:
            raise Bad("an import needs 'import: FILE' or 'from: FILE'", self.span(node))
        return A.Import(path=self.path(m["import"][1]), comment=self.comment(m), span=self.span(node))

    def path(self, node) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == NULL:
            raise Bad("expected a file path", self.span(node))
        return node.value

    def block(self, name, knode, node) -> A.BlockDef:
        if isinstance(node, yaml.SequenceNode):
            return A.BlockDef(name=name, body=self.body(node, "a block"), span=self.span(knode))
        m = self.mapping(node, f"block '{name}'", _KEYS["block"])
        params = []
        if "params" in m:
            for k, v in self.mapping(m["params"][1], f"the params of '{name}'").values():
                default = None if v.tag == NULL else self.expr(v)
                params.append(A.Param(name=self.name(k, "parameter name"), default=default,
                                      span=self.span(k)))
        if "body" not in m:
            raise Bad(f"block '{name}' needs a body", self.span(knode))
        return A.BlockDef(name=name, params=params, body=self.body(m["body"][1], "a block body"),
                          comment=self.comment(m), span=self.span(knode))

    def model(self, name, knode, node) -> A.ModelDef:
        m = self.mapping(node, f"model '{name}'", _KEYS["model"])
        model = A.ModelDef(name=name, extends=self.opt_name(m, "extends", "model name"),
                           comment=self.comment(m), span=self.span(knode))
        if "vars" in m:
            model.vars = self.items(m["vars"][1], "vars")
        if "blocks" in m:
            model.blocks = self.named(m["blocks"][1], "blocks", self.block)
        if "stacks" in m:
            model.stacks = self.named(m["stacks"][1], "stacks", self.stack)
        return model

    def items(self, node, what: str) -> list[A.Assign]:
        """name -> value, or name -> {value: ..., comment: ...}."""
        def one(kv):
            k, v = kv
            comment = None
            if isinstance(v, yaml.MappingNode):
                m = self.mapping(v, f"'{k.value}'", _KEYS["item"])
                if "value" not in m:
                    raise Bad(f"'{k.value}' needs a 'value'", self.span(v))
                comment, v = self.comment(m), m["value"][1]
            return A.Assign(name=self.name(k, "variable name"), value=self.expr(v),
                            comment=comment, span=self.span(k))
        return self.each(self.mapping(node, what).values(), one)

    def stack(self, name, knode, node) -> A.StackDef:
        m = self.mapping(node, f"stack '{name}'", _KEYS["stack"])
        if "inputs" not in m or "body" not in m:
            raise Bad(f"stack '{name}' needs inputs and a body", self.span(knode),
                      "e.g. {inputs: [tokens], body: [...]}")
        inputs_node = m["inputs"][1]
        nodes = inputs_node.value if isinstance(inputs_node, yaml.SequenceNode) else [inputs_node]
        if not nodes:
            raise Bad(f"stack '{name}' needs at least one input", self.span(inputs_node),
                      "e.g. inputs: [tokens]")
        inputs = []
        for n in nodes:
            if isinstance(n, yaml.MappingNode):
                for k, v in self.mapping(n, "a stack input").values():
                    inputs.append(A.StackInput(name=self.name(k, "input name"),
                                               source=self.name(v, "stack name"), span=self.span(k)))
            else:
                inputs.append(A.StackInput(name=self.name(n, "input name"), span=self.span(n)))
        return A.StackDef(name=name, inputs=inputs, body=self.body(m["body"][1], "a stack body"),
                          comment=self.comment(m), span=self.span(knode))

    def section(self, node, kind: type) -> tuple[yaml.Node, str | None]:
        """`{comment: ..., items: ...}` (the long form of passes/train) -> (items, comment)."""
        keys = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        items = next((v for k, v in node.value if k.value == "items"), None)
        if "items" in keys and keys <= {"items", "comment"} and isinstance(items, kind):
            m = self.mapping(node, "the section", _KEYS["section"])
            return m["items"][1], self.comment(m)
        return node, None

    def passes(self, node) -> A.Passes:
        comment = None
        if isinstance(node, yaml.MappingNode):
            node, comment = self.section(node, yaml.SequenceNode)
        uses = self.each(self.seq(node, "passes"), self.stmt)
        for u in uses:
            if not isinstance(u, A.Use):
                self.errors.append(Diagnostic("passes holds only pass uses, e.g. quantize(int8_dynamic)",
                                              u.span))
        return A.Passes(items=[u for u in uses if isinstance(u, A.Use)], comment=comment,
                        span=self.span(node))

    def train(self, node) -> A.Train:
        comment = None
        if isinstance(node, yaml.MappingNode):
            node, comment = self.section(node, yaml.MappingNode)
        return A.Train(items=self.items(node, "train"), comment=comment, span=self.span(node))


def parse_yaml(text: str, file: str = "<string>") -> A.SpecFile:
    """Read the YAML surface into a `SpecFile`; every mistake is a located `SpecError`."""
    text = clean_text(text, file)
    root = compose(text, file)
    reader = _Reader(file, text)
    try:
        spec = reader.spec(root)
    except Bad as b:
        reader.errors.append(b.diagnostic)
    except RecursionError:
        reader.errors.append(Diagnostic("the spec is nested too deeply to read", Span(file, 1, 1)))
    if reader.errors:
        raise SpecError(list(reader.errors), {file: text})
    check_depth(spec, file, text)
    return spec
