"""JSON Schema (draft 2020-12) of the YAML surface, for editors and tools.

    >>> s = yaml_json_schema()
    >>> s["$schema"], sorted(s["properties"])
    ('https://json-schema.org/draft/2020-12/schema', ['blocks', 'imports', 'models', 'passes', 'train'])
    >>> "causal" in s["$defs"]["use_attention"]["properties"]
    True

The fixed shape (spec, model, block, stack, constructs) is written as pydantic
models below; one statement model per component and per pass is generated
from `strata.dsl.registry`, so yaml-language-server completes component names,
their options (with descriptions, defaults and enum values) and pass names.
Every expression-valued field accepts a number, boolean, null or string (an
expression of the text form), or a list (a tuple).  The form itself is
documented in `strata.dsl.yaml_loader`.  Point an editor at the output:

    # yaml-language-server: $schema=strata.schema.json
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model
from pydantic.json_schema import models_json_schema

from strata.dsl.registry import COMPONENTS, PASSES, Options, TrainConfig

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _ref(name: str) -> dict:
    return {"$ref": f"#/$defs/{name}"}


_EXPR = {"type": ["number", "boolean", "null", "string", "array"],
         "description": "a value: a number, true/false, null (none), a name, an expression of the "
                        "text form such as 4*d, or a list (a tuple)"}
_ARGS = {"type": ["number", "boolean", "null", "string", "array"],
         "description": "null: no arguments; one value; or a list of values "
                        "({name: value} items in the list are keyword arguments)"}
_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}

Expr = Annotated[Any, WithJsonSchema(_EXPR)]
Args = Annotated[Any, WithJsonSchema(_ARGS)]
Name = Annotated[str, WithJsonSchema(_NAME)]
Stmt = Annotated[Any, WithJsonSchema(_ref("statement"))]
Body = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "array", "items": _ref("statement")},
                                                _ref("statement")]})]
Comment = Annotated[str | None, Field(None, description="comment lines written above it")]
Alias = Annotated[Name | None, Field(None, alias="as", description="the module's name")]


class _Y(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ------------------------------------------------------------------ statements

class Residual(_Y):
    """x + body(x)."""

    residual: Body
    comment: Comment


class Parallel(_Y):
    """a(x) + b(x): each statement is one branch."""

    parallel: Body
    comment: Comment


class Seq(_Y):
    """Statements grouped into one branch of a parallel."""

    seq: Body
    comment: Comment


class Branch(_Y):
    """An extra output computed from the stream, which continues unchanged."""

    branch: Body
    alias: Alias
    comment: Comment


class Repeat(_Y):
    """The body `repeat` times; the layer index is bound to `index`."""

    repeat: Expr
    index: Name | None = None
    body: Body
    alias: Alias
    comment: Comment


class Let(_Y):
    """An assignment: {let: {name: value}}."""

    let: Annotated[dict[str, Expr], Field(min_length=1, max_length=1)]
    comment: Comment


def _option(options: type[Options], name: str, *alternatives: dict) -> tuple:
    """An option's field: any expression, with the registry's description, default
    and allowed words (for completion)."""
    field = options.model_fields[name]
    own = options.model_json_schema()["properties"][name]
    enums = [x for s in [own, *own.get("anyOf", [])] for x in s.get("enum", [])]
    schema: dict = {"anyOf": [{"enum": enums}, _EXPR]} if enums else dict(_EXPR)
    if alternatives:
        schema = {"anyOf": [schema, *alternatives]}

    def extra(s: dict) -> None:
        s.pop("default", None)  # the YAML field's own default (None) says nothing
        if "default" in own:
            s["default"] = own["default"]
    return (Annotated[Any, WithJsonSchema(schema)],
            Field(None, description=field.description, json_schema_extra=extra))


def _use_model(prefix: str, name: str, options: type[Options], doc: str) -> type[BaseModel]:
    fields: dict[str, Any] = {name: (Args, Field(description=doc or None))}
    for opt in options.model_fields:
        fields[opt] = _option(options, opt)
    fields["alias"] = (Alias, None)
    fields["comment"] = (Comment, None)
    return create_model(f"{prefix}_{name}", __config__=_Y.model_config, __doc__=doc, **fields)


# ----------------------------------------------------------------- definitions

class Block(_Y):
    """A reusable, parameterized group of statements."""

    params: dict[str, Expr] | None = Field(None, description="parameter -> default (null: required)")
    body: Body
    comment: Comment


class Stack(_Y):
    """A stream of statements from inputs (token ids, or another stack's output)."""

    inputs: list[Name | dict[str, Name]] = Field(description="[tokens] or [tgt, {memory: encoder}]")
    body: Body
    comment: Comment


class Item(_Y):
    """A value with a comment."""

    value: Expr
    comment: Comment


ItemOrExpr = Annotated[Any, WithJsonSchema({"anyOf": [_EXPR, _ref("Item")]})]


class Model(_Y):
    """A model: variables, blocks and stacks; `extends` another model to change a few values."""

    extends: Name | None = None
    vars: dict[str, ItemOrExpr] | None = None
    blocks: dict[str, Block | list[Stmt]] | None = None
    stacks: dict[str, Stack] | None = None
    comment: Comment


class ImportAll(_Y):
    import_: str = Field(alias="import", description="a spec file; import everything")
    comment: Comment


class ImportNames(_Y):
    from_: str = Field(alias="from", description="a spec file")
    import_: list[Name] | Name = Field(alias="import", description="the names to import")
    comment: Comment


Train = create_model("Train", __config__=_Y.model_config, __doc__=TrainConfig.__doc__, **{
    name: _option(TrainConfig, name, _ref("Item")) for name in TrainConfig.model_fields})


class PassesLong(_Y):
    items: list[Annotated[Any, WithJsonSchema(_ref("pass"))]]
    comment: Comment


class TrainLong(_Y):
    items: Train
    comment: Comment


class Spec(_Y):
    """A strata spec in its YAML form (the same AST as the .arch text form)."""

    imports: list[str | ImportNames | ImportAll] | None = None
    blocks: dict[str, Block | list[Stmt]] | None = None
    models: dict[str, Model] | None = None
    passes: list[Annotated[Any, WithJsonSchema(_ref("pass"))]] | PassesLong | None = None
    train: Train | TrainLong | None = None


def _block_uses(blocks: Mapping[str, Sequence[str]] | None) -> dict:
    """A statement that uses a block: {name: args, param: value, as:, comment:}.

    Without `blocks`, any name that is not a component or a construct (the
    schema cannot know a file's blocks); with them (name -> parameter names,
    `spec_blocks`), exactly those blocks with exactly their parameters."""
    if blocks is None:
        return {"type": "object", "minProperties": 1, "description": "a use of a block",
                "properties": {"as": _NAME, "comment": {"type": "string"}},
                "additionalProperties": _ARGS,
                "not": {"anyOf": [{"required": [c]} for c in ("residual", "parallel", "seq", "branch",
                                                               "repeat", "let", *sorted(COMPONENTS))]}}
    return {"anyOf": [{"type": "object", "description": f"a use of block '{name}'", "required": [name],
                       "properties": {name: _ARGS, "as": _NAME, "comment": {"type": "string"},
                                      **{p: _EXPR for p in params}},
                       "additionalProperties": False}
                      for name, params in sorted(blocks.items()) if name not in COMPONENTS]
            or [{"not": {}}]}


def spec_blocks(spec) -> dict[str, list[str]]:
    """name -> parameter names of every block a parsed spec defines (file-level and
    in its models), for `yaml_json_schema(blocks=...)`."""
    found = {b.name: [p.name for p in b.params] for b in spec.blocks}
    for m in spec.models:
        found.update({b.name: [p.name for p in b.params] for b in m.blocks})
    return found


def yaml_json_schema(blocks: Mapping[str, Sequence[str]] | None = None) -> dict:
    """The JSON Schema of the YAML surface, as a dict ready for `json.dumps`.

    Every mapping is closed (`additionalProperties: false`) except where the
    spec names things: variables, blocks, stacks, parameters.  A statement
    keyed by a component takes only that component's options; one keyed by
    any other name is a block use, checked exactly when `blocks` (the file's
    blocks and their parameters, `spec_blocks`) is given."""
    uses = [_use_model("use", c.name, c.options, c.doc) for c in COMPONENTS.values()]
    passes = [_use_model("pass", p.name, p.options, p.doc) for p in PASSES.values()]
    constructs = [Residual, Parallel, Seq, Branch, Repeat, Let]
    models = [Spec, Item, *constructs, *uses, *passes]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    defs = top["$defs"]
    words = {"type": "string", "description": "a statement in the text form, e.g. layernorm"}
    defs["statement"] = {"anyOf": [{"anyOf": [{"enum": sorted(COMPONENTS)}, words]},
                                   *[_ref(m.__name__) for m in constructs + uses], _block_uses(blocks)]}
    defs["pass"] = {"anyOf": [{"anyOf": [{"enum": sorted(PASSES)}, words]},
                              *[_ref(m.__name__) for m in passes]]}
    spec = defs.pop("Spec")
    return {"$schema": DRAFT, **spec, "title": "strata spec (YAML form)", "$defs": defs}
