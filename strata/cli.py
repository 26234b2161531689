"""The `strata` command line: thin; each subcommand calls the public API.

The commands that make and use trained weights (train, generate, eval) live
in strata/cli_train.py.  Exit codes (strata.errors): 0 success, 1 spec errors
(printed as FILE:LINE:COL: error: ...), 2 usage errors (bad flags, missing
files), 3 an internal error (a bug in strata: a one-line report, never a bare
traceback).  No traceback reaches the
user for a mistake in a spec or any other input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import strata
from strata.api import compress
from strata.backends.diagram import SUFFIX_FORMAT
from strata.cli_folders import folder_kind, kept_spec, refuse_folder
from strata.cli_parser import Parser
from strata.cli_train import add_spec, add_train_commands, out_of_memory, weights_errors
from strata.errors import EXIT_INTERNAL, EXIT_OK, EXIT_SPEC, EXIT_USAGE, SpecError, TrainingError, UsageError, visible
from strata.io import is_spec_path, same_file, write_atomic


def _spec_path(args) -> Path:
    """The command line's spec argument is always a file, whatever its name; a
    run or compress output folder is refused naming the spec to give instead."""
    refuse_folder(args.spec, args.command)
    return Path(args.spec)


def _cmd_check(args) -> int:
    info = strata.check(_spec_path(args), model=args.model)
    print(f"{args.spec}: ok ({info['name']}, {info['parameters']:,} parameters)")
    return EXIT_OK


def _graph(args, spec=None, need_teacher: bool | None = None):
    """The spec's IR with the --pass passes appended to its own (parsed in the
    spec's syntax; a mistake is located in the flag's text).  need_teacher: as
    strata.build takes it (compile needs no distill teacher); None: needed unless
    the spec is a run's own copy (kept_spec: the model shown, not trained)."""
    if need_teacher is None:
        need_teacher = not kept_spec(args.spec)
    graph = strata.build(spec if spec is not None else _spec_path(args), model=args.model,
                         need_teacher=need_teacher)
    if getattr(args, "passes", None):
        from strata.passes.text import parse_pass_texts  # lazy: startup

        graph.graph.passes = list(graph.graph.passes) + parse_pass_texts(args.passes, graph)
    return graph


def _cmd_summary(args) -> int:
    if args.depth is not None and args.depth < 2:  # depth 1 is a stack, which has no row of its own
        raise UsageError(f"--depth counts module path parts: 2 shows each stack's components "
                         f"(decoder.wte, decoder.h × 12), 3 one level inside; got {args.depth}")
    graph = _graph(args)  # strata.summary runs its passes: the model as compiled
    if args.json:
        print(json.dumps(strata.summary(graph), indent=2))
    else:
        from strata.compiler.summary import print_summary  # lazy: startup
        from strata.passes import apply_passes, report  # lazy: startup

        g = apply_passes(graph)
        print_summary(g, depth=args.depth, reports=report(g))
    return EXIT_OK


def _cmd_ir(args) -> int:
    from strata.compiler.ir import format_table  # lazy: startup

    print(format_table(strata.build(_spec_path(args), model=args.model,
                                    need_teacher=not kept_spec(args.spec))))  # a run's copy: as _graph
    return EXIT_OK


def _refuse_own_input(output: str | None, spec: str) -> None:
    """A command never writes its output onto its own input (nothing lost)."""
    if output and same_file(output, spec):
        what = folder_kind(spec) if os.path.isdir(spec) else "spec"
        raise UsageError(f"{output}: is the input {what} itself; writing there would destroy it "
                         "(give another -o)")


def _cmd_compile(args) -> int:
    from strata.backends.torch import CodegenError  # lazy: startup

    _refuse_own_input(args.output, args.spec)
    spec, origin = None, args.spec
    if os.path.isdir(args.spec):  # a run or compress output folder: the spec it was made from
        from strata.train.folder_spec import folder_spec  # lazy: startup

        spec, model = folder_spec(args.spec)
        args.model = args.model or model
        origin = spec if is_spec_path(spec) else args.spec
    try:
        source = strata.generate_source(_graph(args, spec, need_teacher=False), origin=origin)
    except CodegenError as e:
        print(visible(f"{args.spec}: error: {e}"), file=sys.stderr)
        return EXIT_SPEC
    if not args.output:
        sys.stdout.write(source)
        return EXIT_OK
    write_atomic(args.output, source)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


# pictures and documents strata does not draw: without --format, their -o is a mistake
IMAGE_SUFFIXES = {".pdf", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".eps", ".ps"}


def _cmd_diagram(args) -> int:
    from strata.backends.diagram.graphviz import DotMissing  # lazy: startup

    _refuse_own_input(args.output, args.spec)
    suffix = Path(args.output).suffix.lower() if args.output else ""  # G.SVG is an svg too
    if not args.format and suffix in IMAGE_SUFFIXES:  # not Mermaid text in a file named x.pdf
        raise UsageError(f"{args.output}: strata draws no {suffix[1:]}; -o a .svg or .png file (Graphviz), "
                         ".mmd (Mermaid), .md (Markdown) or .gv (dot), or give --format")
    fmt = args.format or SUFFIX_FORMAT.get(suffix) or "mermaid"
    try:  # DotMissing: no `dot` binary (svg, png) or no graphviz python package
        d = strata.diagram(_graph(args), format=fmt, level=args.level, direction=args.direction,
                           unfold=args.unfold, after_passes=args.after_passes or bool(args.passes))
        data = d.render()
    except DotMissing as e:
        raise UsageError(str(e)) from None
    if args.output:
        write_atomic(args.output, data)
    elif fmt in ("svg", "png"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        sys.stdout.write(data.decode())
    return EXIT_OK


def _cmd_import_hf(args) -> int:
    arch, weights = strata.import_hf(args.src, args.output, dtype=args.dtype, overwrite=args.overwrite)
    print(f"wrote {arch} and {weights}")
    return EXIT_OK


def _cmd_export(args) -> int:
    out = strata.export(args.source, args.output, to=args.to, weights=args.weights, model=args.model,
                        int8=args.int8, overwrite=args.overwrite)
    custom = (out / "configuration_strata.py").is_file()
    print(f"wrote {out}/ ({', '.join(sorted(p.name for p in out.iterdir() if p.is_file()))})"
          + ("; custom code: load with trust_remote_code=True" if custom else ""))
    return EXIT_OK


def _cmd_convert(args) -> int:
    from strata.dsl import YAML_SUFFIXES  # lazy: startup

    _refuse_own_input(args.output, args.spec)
    to = args.to
    if args.output and not to:
        to = "yaml" if args.output.endswith(YAML_SUFFIXES) else "arch"
    text = strata.convert(args.spec, to, args.output)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_fmt(args) -> int:
    from strata.dsl import read_source  # lazy: startup

    changed = 0
    for path in args.files:
        text = strata.fmt(path)  # a file with mistakes, or whose comments would be lost, raises
        if text == read_source(path):
            continue
        changed += 1
        if args.check:
            print(f"would reformat {path}")
        else:
            write_atomic(path, text)
            print(f"reformatted {path}")
    return 1 if changed and args.check else EXIT_OK


def _cmd_schema(args) -> int:
    from strata.dsl.schema import yaml_json_schema  # lazy: startup

    text = json.dumps(yaml_json_schema(), indent=2) + "\n"
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_lsp(args) -> int:
    from strata.lsp import serve  # lazy: optional

    return serve()


def _cmd_serve(args) -> int:
    from strata.serve import serve  # lazy: optional

    return serve(args.path, host=args.host, port=args.port, open_browser=args.open)


def _cmd_passes(args) -> int:
    from strata.passes.listing import describe_passes  # lazy: startup

    sys.stdout.write(describe_passes())
    return EXIT_OK


def _cmd_compress(args) -> int:
    _refuse_own_input(args.output, args.spec)
    with weights_errors():
        result = compress(args.spec, args.output, weights=args.weights, passes=args.passes or [],
                          model=args.model, calibration=args.calibration, tokenizer=args.tokenizer,
                          overwrite=args.overwrite, evaluate=args.eval or False,
                          max_batches=args.max_batches, finetune=args.finetune, data=args.data,
                          finetune_lr=args.finetune_lr, adapters=args.adapters, cli=True)
    for line in result.lines():  # names from a report.json or run.json: escaped
        print(visible(line))
    return EXIT_OK


def _add_pass(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pass", dest="passes", action="append", metavar="PASS",
                   help="apply this pass after the spec's own, in the spec's syntax, e.g. "
                        "--pass 'quantize(int8_dynamic, on=\"mlp\")' (repeatable; `strata passes` lists them)")


def make_parser() -> argparse.ArgumentParser:
    """The command line, a stage per group of commands (in `strata --help`'s order)."""
    parser = Parser(prog="strata", description="Declarative model assembly for transformer language models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _spec_commands(sub)
    _compress_command(sub)
    _file_commands(sub)
    add_train_commands(sub)
    _front_end_commands(sub)
    return parser


def _spec_commands(sub) -> None:
    """What reads a spec without weights: check, summary, ir, compile, diagram, passes."""
    p = sub.add_parser("check", help="check a spec and report every mistake")
    add_spec(p)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("summary", help="modules, shapes, parameters, FLOPs and memory of a spec")
    add_spec(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--depth", type=int, default=None,
                   help="show modules down to this path depth (default: all, repeats folded)")
    _add_pass(p)
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("ir", help="print the graph IR as a table")
    add_spec(p)
    p.set_defaults(func=_cmd_ir)

    p = sub.add_parser("compile", help="write a spec as readable PyTorch source (runs with torch alone)")
    p.add_argument("spec", metavar="SOURCE", help="a .arch or .yaml spec file, or a run / compress "
                   "output folder (its spec)")
    p.add_argument("--model", help="which model of the file (default: the last one)")
    p.add_argument("-o", "--output", help="write to this .py file (atomically) instead of stdout")
    _add_pass(p)
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("diagram", help="draw a spec as Mermaid or Graphviz (dot, svg, png)")
    add_spec(p)
    p.add_argument("--format", choices=["mermaid", "markdown", "dot", "svg", "png"],
                   help="default: from the -o suffix (.mmd .md .gv .svg .png), else mermaid")
    p.add_argument("--level", choices=["model", "block", "op"], default="block",
                   help="model: stacks and blocks; block: components; op: every IR op")
    p.add_argument("--direction", choices=["TB", "LR"], default="TB")
    p.add_argument("--unfold", action="store_true", help="draw every repeat instance")
    p.add_argument("--after-passes", action="store_true",
                   help="apply the spec's passes first (fused, quantized, low-rank, distill)")
    p.add_argument("-o", "--output", help="write to this file (atomically) instead of stdout")
    _add_pass(p)
    p.set_defaults(func=_cmd_diagram)

    p = sub.add_parser("passes", help="list every pass with its options")
    p.set_defaults(func=_cmd_passes)


def _compress_command(sub) -> None:
    p = sub.add_parser("compress", help="apply passes to a checkpoint: a smaller spec, its weights, a report")
    p.add_argument("spec", metavar="SOURCE", help="a run folder, a compress output folder, or a spec file "
                   "(with --weights)")
    p.add_argument("--model", help="which model of the spec file (default: the last one)")
    p.add_argument("--weights", help="the spec's weights: a run folder, a compress output folder or a "
                   ".safetensors file in the spec's own names")
    _add_pass(p)
    p.add_argument("--calibration", help="token ids (.safetensors), text (read with the run's tokenizer), "
                   "a run folder (the text it trained on) or builtin (the built-in corpus) for Wanda, "
                   "activation-aware low rank, GPTQ, AWQ, SmoothQuant, SparseGPT and quantize(auto)")
    p.add_argument("--tokenizer", help="the tokenizer.json of the run that trained the weights "
                   "(to read text calibration data)")
    p.add_argument("-o", "--output", required=True, help="folder for model.arch, weights.safetensors, report.json")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier compress in OUT")
    p.add_argument("--eval", nargs="?", const=True, metavar="DATA",
                   help="measure the original and the compressed model as strata eval does (on the "
                        "run's validation split, or on all of DATA) into the report")
    p.add_argument("--max-batches", type=int, metavar="N", help="with --eval: at most N batches")
    p.add_argument("--finetune", type=int, metavar="STEPS", help="distill the original into the compressed "
                   "model for STEPS steps before writing it (pruned weights and shrunk sizes held)")
    p.add_argument("--data", help="with --finetune: text (read with the run's tokenizer) or token ids "
                   "(.safetensors); default the run's data, else the built-in corpus")
    p.add_argument("--finetune-lr", type=float, metavar="LR", help="with --finetune: AdamW's peak "
                   "learning rate (default 3e-4)")
    p.add_argument("--adapters", choices=("merge", "keep"), default="merge",
                   help="LoRA adapters merged into the weights (default) or kept as adapters")
    p.set_defaults(func=_cmd_compress)


def _file_commands(sub) -> None:
    """Conversions of files: import-hf, export, convert, fmt."""
    p = sub.add_parser("import-hf", help="import a Hugging Face model folder as a spec + weights")
    p.add_argument("src", help="folder with config.json and model.safetensors (or a sharded index)")
    p.add_argument("-o", "--output", required=True, help="folder to write model.arch and weights.safetensors")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                   help="convert the weights to this dtype (default: keep the checkpoint's)")
    p.add_argument("--overwrite", action="store_true", help="replace model.arch and weights.safetensors "
                   "already in OUT (an earlier import's)")
    p.set_defaults(func=_cmd_import_hf)

    p = sub.add_parser("export", help="write a model as a Hugging Face folder or ONNX Runtime files")
    p.add_argument("source", help="a run folder, a strata compress output folder, or a spec (with --weights)")
    p.add_argument("--to", choices=["hf", "onnx"], default="hf",
                   help="hf: a Hugging Face folder; onnx: ONNX Runtime files (default: hf)")
    p.add_argument("--int8", action="store_true", help="with --to onnx: ONNX Runtime's dynamic int8 quantization")
    p.add_argument("-o", "--output", required=True, help="folder to write (whole or not at all)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in OUT")
    p.add_argument("--weights", help="the spec's weights: a run folder, compress output or .safetensors")
    p.add_argument("--model", help="which model of a spec with several")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("convert", help="convert a spec between the .arch and YAML surfaces (comments kept)")
    p.add_argument("spec", help="a .arch or .yaml spec file")
    p.add_argument("-o", "--output", help="write here (atomically); the suffix picks the surface")
    p.add_argument("--to", choices=["arch", "yaml"],
                   help="the surface to write (default: from -o, else the other one)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("fmt", help="rewrite spec files in canonical form")
    p.add_argument("files", nargs="+", metavar="FILE", help=".arch or .yaml spec files")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 when a file would be reformatted")
    p.set_defaults(func=_cmd_fmt)


def _front_end_commands(sub) -> None:
    """The editor's and the browser's: lsp, serve, schema."""
    p = sub.add_parser("lsp", help="run the language server on stdin/stdout (for editors)")
    p.set_defaults(func=_cmd_lsp)
    p = sub.add_parser("serve", help="a live workbench in the browser: edit a spec, see its diagram, "
                                     "errors, summary and runs")
    p.add_argument("path", nargs="?", default=".", help="a spec, a folder of specs, or a run folder")
    p.add_argument("--port", type=int, default=8765, help="port (0: a free one; default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                                                       "another one is warned about)")
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("schema", help="print the JSON Schema of the YAML surface (for editors)")
    p.add_argument("-o", "--output", help="write here (atomically) instead of stdout")
    p.set_defaults(func=_cmd_schema)


def _escape_undecodable_output() -> None:
    """A file name that is not UTF-8 reaches Python as surrogates; print it
    escaped rather than fail on it."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) == "strict":
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    _escape_undecodable_output()
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        n = len(e.diagnostics)
        print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return EXIT_SPEC
    except UsageError as e:
        print(visible(f"strata: error: {e}"), file=sys.stderr)
        return EXIT_USAGE
    except TrainingError as e:
        print(visible(f"strata: error: {e}"), file=sys.stderr)
        return EXIT_SPEC
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except RecursionError:
        print("strata: error: the input is nested too deeply to process", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print("strata: error: out of memory", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # what the system says of a path it was given (a name too long, ...)
        where = f"{e.filename}: " if e.filename is not None else ""
        print(visible(f"strata: error: {where}{e.strerror or e}"), file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # the last line of defence: a bug in strata, never a user's mistake
        if (oom := out_of_memory(e, args.command)) is not None:  # torch's: the device is too small for what was asked
            print(visible(f"strata: error: {oom}"), file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("STRATA_TRACEBACK"):
            raise
        print(visible(f"strata: internal error: {type(e).__name__}: {e}"), file=sys.stderr)
        print("this is a bug in strata, not in your input: please report it with the command "
              "and its input files (STRATA_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
