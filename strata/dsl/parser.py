"""The .arch text surface: lark LALR parser + Transformer into the AST.

    >>> spec = parse('model m { d = 8\\n stack s(tokens) { embedding(10, d) as wte } }', "m.arch")
    >>> spec.models[0].stacks[0].body[0].alias
    'wte'
"""

from __future__ import annotations

import ast as pyast
import bisect
import hashlib
import os
import warnings
from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark, Token, Transformer_NonRecursive, v_args

import strata.dsl.ast as A
from strata.dsl.clean import clean_text
from strata.dsl.recovery import recover
from strata.dsl.syntax_errors import syntax_error as _syntax_error
from strata.errors import Diagnostic, Span, SpecError

GRAMMAR = Path(__file__).with_name("grammar.lark")
# The longest integer literal (either surface): 10**18 is already past any
# model, and Python refuses to convert past 4,300 digits.
MAX_INT_DIGITS = 100

# The text form's reserved words: never names, in either surface (lark's contextual
# lexer would read `as block` as a name, so the transformer refuses them).
KEYWORDS = frozenset({"model", "block", "stack", "residual", "parallel", "seq", "branch", "repeat",
                      "as", "import", "from", "extends", "passes", "train", "if", "else", "and",
                      "or", "not", "true", "false", "none"})

# Comments are %ignore'd by the grammar; the lexer hands each one to this list.
_comments: list[Token] = []


def _cache_file(grammar: str) -> str | bool:
    """Where lark keeps the compiled LALR tables (2-3x faster start-up): a
    private per-user directory, never a shared temp dir, since lark loads the
    file with pickle.  No cache when that directory cannot be made."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "strata"
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        if base.stat().st_uid != os.getuid() or base.stat().st_mode & 0o022:
            return False
    except OSError:
        return False
    key = hashlib.sha256(f"{lark.__version__}\n{grammar}".encode()).hexdigest()[:16]
    return str(base / f"grammar-{key}.lark-cache")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = GRAMMAR.read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True,
                cache=_cache_file(grammar), lexer_callbacks={"COMMENT": _comments.append})


def _span(file: str, meta_or_tok) -> Span:
    return Span(file, meta_or_tok.line, meta_or_tok.column,
                getattr(meta_or_tok, "end_line", None), getattr(meta_or_tok, "end_column", None))


@v_args(meta=True)
class _ToAST(Transformer_NonRecursive):
    """One method per grammar rule alias; each returns an AST node with its span.

    Nodes are made with `model_construct`: the grammar already guarantees their
    types, and skipping pydantic validation keeps `strata check` fast."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.errors: list[Diagnostic] = []  # every mistake found; the tree is still built

    def _err(self, span, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(message, span, hint))

    def _str(self, tok) -> str | None:
        try:
            return _unquote(tok, self.file)
        except _Dup as e:
            self._err(e.span, e.message, e.hint)
            return None

    def _s(self, meta):
        return _span(self.file, meta) if not getattr(meta, "empty", False) else None

    def _name(self, tok, what: str = "name") -> str:
        """A name the spec defines or uses as a name: never a keyword (as in YAML)."""
        if tok in KEYWORDS:
            self._err(_span(self.file, tok), f"'{tok}' is a keyword and cannot be a {what}",
                      f"choose another name, e.g. {tok}_")
        return str(tok)

    # ---- top level
    def start(self, meta, items):
        spec = A.SpecFile.model_construct(path=self.file)
        for it in items:
            if isinstance(it, A.Import):
                if it.path is not None:  # None: its path has a mistake, reported
                    spec.imports.append(it)
            elif isinstance(it, A.BlockDef):
                spec.blocks.append(it)
            elif isinstance(it, A.ModelDef):
                spec.models.append(it)
            elif isinstance(it, A.Passes):
                if spec.passes is not None:
                    self._err(it.span, "a second 'passes' section", "merge the two passes sections into one")
                    continue
                spec.passes = it
            elif isinstance(it, A.Train):
                if spec.train is not None:
                    self._err(it.span, "a second 'train' section", "merge the two train sections into one")
                    continue
                spec.train = it
        return spec

    def import_all(self, meta, c):
        return A.Import.model_construct(path=self._str(c[0]), names=None, span=self._s(meta))

    def import_names(self, meta, c):
        return A.Import.model_construct(path=self._str(c[0]), names=c[1], span=self._s(meta))

    def name_list(self, meta, c):
        return [self._name(t, "imported name") for t in c]

    def block_def(self, meta, c):
        name, params, *body = c
        return A.BlockDef.model_construct(name=self._name(name, "block name"), params=params or [], body=body,
                                          span=self._s(meta))

    def params(self, meta, c):
        return [p for p in c if p is not None]

    def param(self, meta, c):
        return A.Param.model_construct(name=self._name(c[0], "parameter name"), default=c[1], span=self._s(meta))

    def model_def(self, meta, c):
        name, extends, *items = c
        m = A.ModelDef.model_construct(name=self._name(name, "model name"),
                                       extends=self._name(extends, "model name") if extends else None,
                                       span=self._s(meta))
        for it in items:
            if isinstance(it, A.Assign):
                m.vars.append(it)
            elif isinstance(it, A.BlockDef):
                m.blocks.append(it)
            elif isinstance(it, A.StackDef):
                m.stacks.append(it)
        return m

    def stack_def(self, meta, c):
        name, *rest = c
        inputs = [x for x in rest if isinstance(x, A.StackInput)]
        body = [x for x in rest if not isinstance(x, A.StackInput)]
        return A.StackDef.model_construct(name=self._name(name, "stack name"), inputs=inputs, body=body,
                                          span=self._s(meta))

    def stack_input(self, meta, c):
        return A.StackInput.model_construct(name=self._name(c[0], "input name"),
                                            source=self._name(c[1], "stack name") if c[1] else None,
                                            span=self._s(meta))

    def passes(self, meta, c):
        return A.Passes.model_construct(items=list(c), span=self._s(meta))

    def train(self, meta, c):
        return A.Train.model_construct(items=list(c), span=self._s(meta))

    # ---- statements
    def assign(self, meta, c):
        return A.Assign.model_construct(name=self._name(c[0], "variable name"), value=c[1], span=self._s(meta))

    def use(self, meta, c):
        name, arglist, alias = c
        args, kwargs = arglist or ([], [])
        return A.Use.model_construct(name=self._name(name, "component name"), args=args, kwargs=kwargs,
                                     alias=alias, span=self._s(meta))

    def alias(self, meta, c):
        return self._name(c[0])

    def arglist(self, meta, c):
        args, kwargs = [], []
        for a in c:
            if a is None:
                continue
            if isinstance(a, A.Keyword):
                if any(k.name == a.name for k in kwargs):
                    self._err(a.span, f"option '{a.name}' is given twice", "keep one of them")
                    continue
                kwargs.append(a)
            elif kwargs:
                self._err(a.span, "a positional argument follows a keyword argument",
                          "put positional arguments first")
            else:
                args.append(a)
        return args, kwargs

    def keyword(self, meta, c):
        return A.Keyword.model_construct(name=self._name(c[0], "option name"), value=c[1], span=self._s(meta))

    def residual(self, meta, c):
        return A.Residual.model_construct(body=list(c), span=self._s(meta))

    def parallel(self, meta, c):
        return A.Parallel.model_construct(body=list(c), span=self._s(meta))

    def seq(self, meta, c):
        return A.Seq.model_construct(body=list(c), span=self._s(meta))

    def branch(self, meta, c):
        *body, alias = c
        return A.Branch.model_construct(body=body, alias=alias, span=self._s(meta))

    def repeat(self, meta, c):
        count, index, body, alias = c
        return A.Repeat.model_construct(count=count, index=self._name(index, "index name") if index else None,
                                        body=body,
                        alias=alias, span=self._s(meta))

    def repeat_use(self, meta, c):
        name, arglist = c
        args, kwargs = arglist or ([], [])
        return [A.Use.model_construct(name=self._name(name, "component name"), args=args, kwargs=kwargs,
                                      span=self._s(meta))]

    def repeat_block(self, meta, c):
        return list(c)

    # ---- expressions
    def cond(self, meta, c):
        return A.Cond.model_construct(body=c[0], test=c[1], orelse=c[2], span=self._s(meta))

    def binop(self, meta, c):
        return A.BinOp.model_construct(op=str(c[1]), left=c[0], right=c[2], span=self._s(meta))

    def unary(self, meta, c):
        return A.UnaryOp.model_construct(op=str(c[0]), operand=c[1], span=self._s(meta))

    def number(self, meta, c):
        text = str(c[0])
        clean = text.replace("_", "")
        if any(ch in clean for ch in ".eE"):
            value = float(clean)  # 1e999 is inf: the evaluator says it is not finite
        elif len(clean) > MAX_INT_DIGITS:  # past this, int() and str() get slow, then refuse
            self._err(_span(self.file, c[0]), f"a number with {len(clean):,} digits is too long "
                      f"(at most {MAX_INT_DIGITS})", "no model dimension or count needs more")
            value = 0
        else:
            value = int(clean)
        return A.Num.model_construct(value=value, text=text, span=self._s(meta))

    def string(self, meta, c):
        return A.Str.model_construct(value=self._str(c[0]) or "", span=self._s(meta))

    def true(self, meta, c):
        return A.Const.model_construct(value=True, span=self._s(meta))

    def false(self, meta, c):
        return A.Const.model_construct(value=False, span=self._s(meta))

    def none(self, meta, c):
        return A.Const.model_construct(value=None, span=self._s(meta))

    def name(self, meta, c):
        return A.Name.model_construct(id=c[0], span=self._s(meta))

    def dotted(self, meta, c):
        return ".".join(str(t) for t in c)

    def call(self, meta, c):
        args, kwargs = c[1]
        return A.Call.model_construct(func=str(c[0]), args=args, kwargs=kwargs, span=self._s(meta))

    def tuple(self, meta, c):
        return A.Tuple.model_construct(items=[x for x in c if x is not None], span=self._s(meta))


class _Dup(Exception):
    """A structural mistake found while building the AST (duplicate section, ...)."""

    def __init__(self, span, message, hint=None):
        super().__init__(message)
        self.span, self.message, self.hint = span, message, hint


_ESCAPES_HINT = ("escapes are \\\\ \\\" \\' \\n \\t \\r \\xHH \\uHHHH \\UHHHHHHHH and \\N{NAME}; "
                 "write \\\\ for a backslash")


def _unquote(tok: Token, file: str) -> str:
    """The value of a string literal, with Python's escapes.  A malformed or
    unknown escape, or one that makes a lone surrogate, is a located error."""
    span = _span(file, tok)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unknown escape (`\q`) warns, then is kept as is
            value = pyast.literal_eval(str(tok))
    except (SyntaxError, ValueError, Warning) as e:
        why = str(getattr(e, "msg", None) or e)
        why = why.rpartition(": ")[2] if "codec can't decode" in why else why
        raise _Dup(span, f"bad escape in a string: {why}", _ESCAPES_HINT) from None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _Dup(span, f"the escape for {value[e.start]!r} makes a lone surrogate, which no "
                   "UTF-8 text can hold", "write the character itself, or its \\U escape") from None
    return value


def comment_owners(spec: A.SpecFile, comments: list[Token]) -> list:
    """The statement each comment belongs to (None: no statement follows it):
    the first statement that starts after it, except that a trailing comment
    (`d = 768  # why`) belongs to the statement that starts and ends on its line."""
    owners: list[tuple[tuple[int, int], A.Stmt]] = []
    todo: list = [spec]
    while todo:  # every statement and definition with a span (iterative: specs may nest deeply)
        node = todo.pop()
        if isinstance(node, A.Stmt) and node.span is not None:
            owners.append(((node.span.line, node.span.col), node))
        for name in type(node).model_fields:
            v = getattr(node, name)
            todo += [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, (A.Stmt, A.SpecFile))]
    owners.sort(key=lambda t: t[0])
    keys = [k for k, _ in owners]
    out = []
    for tok in comments:
        i = bisect.bisect_right(keys, (tok.line, tok.column))
        if i > 0 and keys[i - 1][0] == tok.line and owners[i - 1][1].span.end_line == tok.line:
            i -= 1
        out.append(owners[i][1] if i < len(owners) else None)
    return out


def _attach_comments(spec: A.SpecFile, comments: list[Token]) -> None:
    """Give each comment to the statement it belongs to (`comment_owners`), so
    `fmt` and `convert` carry comments along instead of dropping them."""
    for tok, node in zip(comments, comment_owners(spec, comments)):
        text = str(tok)[1:]
        text = text.removeprefix(" ")
        if node is not None:
            node.comment = text if node.comment is None else node.comment + "\n" + text


def parse_recovering(text: str, file: str = "<string>") -> tuple[A.SpecFile | None, list[Diagnostic]]:
    """Parse .arch text, reporting every syntax error (`strata.dsl.recovery`):
    the AST of what parses (None when nothing does) and the diagnostics, in
    source order.  A statement dropped by recovery is named in the spec's
    `dropped` set, so the checker need not report its names as undefined."""
    try:
        text = clean_text(text, file)
    except SpecError as e:  # text no spec can be (too long, a lone surrogate): nothing parsed
        return None, list(e.diagnostics)
    result = recover(_lark(), text, file, _comments, lambda e, t: _syntax_error(e, file, t))
    diags = list(result.diagnostics)
    spec = None
    if result.tree is not None:
        try:
            builder = _ToAST(file)
            spec = builder.transform(result.tree)
            diags += builder.errors
        except RecursionError:
            return None, diags + [Diagnostic("the spec is nested too deeply to read", Span(file, 1, 1),
                                             "split deeply nested expressions into variables")]
        spec.path = file
        spec.dropped = result.dropped
        where = A.too_deep(spec)
        if where is not None:
            return None, diags + [_too_deep(where)]
        _attach_comments(spec, list(_comments))
    return spec, sorted(diags, key=lambda d: (d.span.line, d.span.col) if d.span else (0, 0))


def parse(text: str, file: str = "<string>") -> A.SpecFile:
    """Parse .arch text into a `SpecFile`; raise `SpecError` with every syntax mistake."""
    text = clean_text(text, file)
    spec, diags = parse_recovering(text, file)
    if diags or spec is None:
        raise SpecError(diags, {file: text})
    return spec


def _too_deep(where: Span) -> Diagnostic:
    return Diagnostic(f"the spec nests more than {A.MAX_DEPTH} levels deep here", where,
                      "split deep expressions into variables and deep bodies into blocks")


def check_depth(spec: A.SpecFile, file: str, text: str) -> None:
    """Refuse a spec nested deeper than `ast.MAX_DEPTH` levels (both surfaces)."""
    where = A.too_deep(spec)
    if where is not None:
        raise SpecError([_too_deep(where)], {file: text})
