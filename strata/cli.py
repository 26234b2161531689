"""The `strata` command line: thin; each subcommand calls the public API.

Exit codes: 0 success, 1 spec errors (printed as FILE:LINE:COL: error: ...),
2 usage errors (bad flags, missing files).  No traceback reaches the user for a
mistake in a spec.
"""

from __future__ import annotations

import argparse
import sys

from strata.errors import SpecError, UsageError

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2


def _cmd_check(args) -> int:
    from strata.compiler import build_file

    graph = build_file(args.spec, model=args.model)
    print(f"{args.spec}: ok ({graph.graph['name']}, {graph.graph['parameters']:,} parameters)")
    return EXIT_OK


def _cmd_summary(args) -> int:
    from strata.compiler import build_file
    from strata.compiler.summary import summary_dict, print_summary

    graph = build_file(args.spec, model=args.model)
    if args.json:
        import json

        print(json.dumps(summary_dict(graph), indent=2))
    else:
        print_summary(graph, depth=args.depth)
    return EXIT_OK


def _cmd_ir(args) -> int:
    from strata.compiler import build_file
    from strata.compiler.ir import format_table

    graph = build_file(args.spec, model=args.model)
    print(format_table(graph))
    return EXIT_OK


def _add_spec(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="a .arch or .yaml spec file")
    p.add_argument("--model", help="which model of the file (default: the last one)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata", description="Declarative model assembly for transformer language models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="check a spec and report every mistake")
    _add_spec(p)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("summary", help="modules, shapes, parameters, FLOPs and memory of a spec")
    _add_spec(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--depth", type=int, default=None,
                   help="show modules down to this path depth (default: all, repeats folded)")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("ir", help="print the graph IR as a table")
    _add_spec(p)
    p.set_defaults(func=_cmd_ir)

    return parser


def main(argv: list[str] | None = None) -> int:
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
        print(f"strata: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
