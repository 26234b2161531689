"""Issue 11, item 4: errors, never tracebacks — string escapes, long integers,
YAML numbers and escapes, deep specs, surrogates, line endings, a BOM, output
paths, and file names that are not UTF-8.  All cases of one test run in one
subprocess (tests/hostile/harness.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.hostile.harness import (
    ROOT,
    SPEC,
    SPEC_YAML,
    UNWRITABLE,
    check_all,
    make_unwritable,
    ok,
    run_batch,
    spec_error,
    usage_error,
    with_var,
)


def _deep_residuals(k: int) -> str:
    """A valid spec whose innermost statement is k residuals deep (AST level 3 + k)."""
    return ("model m { stack s(tokens) { embedding(10, 4)\n" + "residual { " * k + "layernorm"
            + " }" * k + "\n} }\n")


def test_spec_text_errors_are_located(tmp_path):
    cases = [
        spec_error("escape_N", ["check", "a.arch"], "a.arch:2:7", "bad escape in a string: unknown "
                   "Unicode character name", files={"a.arch": with_var(r'"\N{NO SUCH NAME}"')}),
        spec_error("escape_short_x", ["check", "a.arch"], "a.arch:2:7", r"bad escape in a string: "
                   r"truncated \xXX escape", files={"a.arch": with_var(r'"\x4"')}),
        spec_error("escape_short_u", ["check", "a.arch"], "a.arch:2:7", r"bad escape in a string: "
                   r"truncated \uXXXX escape", files={"a.arch": with_var(r'"ab\u12"')}),
        spec_error("escape_unknown", ["check", "a.arch"], "a.arch:2:7",
                   r"bad escape in a string: invalid escape sequence '\q'",
                   files={"a.arch": with_var(r'"\q"')}),
        spec_error("escape_surrogate", ["convert", "a.arch"], "a.arch:2:7",
                   r"the escape for '\ud800' makes a lone surrogate",
                   files={"a.arch": with_var(r'"\ud800"')}),
        spec_error("import_path_escape", ["check", "a.arch"], "a.arch:1:8", "bad escape in a string",
                   files={"a.arch": 'import "\\x0"\n' + SPEC}),
        spec_error("import_path_nul", ["check", "a.arch"], "a.arch:1:1",
                   r"cannot import 'a\x00b': a path cannot hold a NUL character",
                   files={"a.arch": 'import "a\\x00b"\n' + SPEC}),
        spec_error("from_import_path_nul", ["compile", "a.arch"], "a.arch:1:1",
                   "a path cannot hold a NUL character",
                   files={"a.arch": 'from "a\\0b" import x\n' + SPEC}),
        spec_error("yaml_import_path_nul", ["check", "a.yaml"], "a.yaml:1:11",
                   "a path cannot hold a NUL character",
                   files={"a.yaml": 'imports: ["a\\0b"]\n' + SPEC_YAML}),
        spec_error("integer_past_digit_limit", ["check", "a.arch"], "a.arch:2:7",
                   "a number with 5,000 digits is too long (at most 100)",
                   files={"a.arch": with_var("9" * 5000)}),
        spec_error("integer_past_digit_limit_fmt", ["fmt", "a.arch"], "a.arch:2:7",
                   "a number with 5,000 digits is too long", files={"a.arch": with_var("9" * 5000)}),
        spec_error("not_utf8", ["check", "a.arch"], "a.arch:2:8", "the file is not UTF-8 text",
                   files={"a.arch": with_var('"xx"').encode().replace(b"xx", b"\xff\xfe")}),
        spec_error("cr_only_line_endings", ["check", "a.arch"], "a.arch:5:3",
                   "unknown component 'atention'",
                   files={"a.arch": "# one\rmodel m {\r  d = 4\r  stack s(tokens) {\r  atention(2)\r"
                                    "  }\r}\r"}),
        spec_error("crlf_line_endings", ["check", "a.arch"], "a.arch:5:3",
                   "unknown component 'atention'",
                   files={"a.arch": "# one\r\nmodel m {\r\n  d = 4\r\n  stack s(tokens) {\r\n"
                                    "  atention(2)\r\n  }\r\n}\r\n"}),
        ok("cr_only_comment_ends_at_cr", ["check", "a.arch"],
           files={"a.arch": SPEC.replace("\n", "\r").replace("model m {", "# note\rmodel m {")}),
        ok("utf8_bom_accepted", ["check", "a.arch"], files={"a.arch": "\ufeff" + SPEC}),
        spec_error("utf8_bom_columns", ["check", "a.arch"], "a.arch:1:7", "unexpected",
                   files={"a.arch": "\ufeffmodel { }\n"}),
        ok("deep_at_limit_check", ["check", "a.arch"], files={"a.arch": _deep_residuals(97)}),
        ok("deep_at_limit_fmt", ["fmt", "a.arch"], files={"a.arch": _deep_residuals(97)},
           outputs=("a.arch",)),
        ok("deep_at_limit_convert", ["convert", "a.arch", "-o", "a.yaml"],
           files={"a.arch": _deep_residuals(97)}, outputs=("a.yaml",)),
        spec_error("deep_past_limit_fmt", ["fmt", "a.arch"], "a.arch:2:",
                   "the spec nests more than 100 levels deep here",
                   files={"a.arch": _deep_residuals(98)}),
        spec_error("deep_past_limit_convert", ["convert", "a.arch"], "a.arch:2:",
                   "the spec nests more than 100 levels deep here",
                   files={"a.arch": _deep_residuals(400)}),
        spec_error("deep_expression", ["fmt", "a.arch"], "a.arch:2:",
                   "the spec nests more than 100 levels deep here",
                   files={"a.arch": with_var("-(" * 300 + "1" + ")" * 300)}),
        spec_error("long_sum_chain", ["convert", "a.arch"], "a.arch:2:", "the spec nests more than 100 levels",
                   files={"a.arch": with_var("1 + " * 3000 + "1")}),
        spec_error("blocks_nested_past_limit", ["check", "a.arch"], "a.arch:100:",
                   "blocks are nested more than 100 deep here",
                   files={"a.arch": "".join(f"block b{i} {{ b{i + 1} }}\n" for i in range(300))
                          + "block b300 { layernorm }\n"
                          "model m { stack s(tokens) { embedding(10, 4); b0 } }\n"}),
    ]
    # digits of other scripts once read as numbers: Bengali four (looks like 8) built d = 4
    for name, digit in (("bengali_four", "\u09ea"), ("fullwidth_four", "\uff14")):
        cases.append(spec_error(f"digit_{name}", ["check", "a.arch"], "a.arch:2:", "",
                                files={"a.arch": SPEC.replace("d = 4", f"d = {digit}")}))
    # the parse-only mistakes are still located mistakes with a caret under the source line
    run_batch(cases, tmp_path)
    check_all(cases)
    for c in cases:
        if c.name.startswith("digit_"):
            assert "a.arch:2:7: error: unexpected character" in c.result["err"], c.result["err"]
    bom = next(c for c in cases if c.name == "utf8_bom_columns")
    assert "^" in bom.result["err"] and "\ufeff" not in bom.result["err"]
    cr = next(c for c in cases if c.name == "cr_only_line_endings")
    assert "    5 |   atention(2)" in cr.result["err"]


def test_yaml_errors_are_located(tmp_path):
    base = SPEC_YAML.replace("    vars: {d: 4}\n", "    vars:\n      d: 4\n      x: {}\n")

    def y(value: str) -> str:
        return base.replace("{}", value)  # x's value is at line 5, column 10

    cases = [
        spec_error("yaml_huge_int", ["check", "a.yaml"], "a.yaml:5:10",
                   "a number with 5,000 digits is too long (at most 100)",  # the text form's words
                   files={"a.yaml": y("9" * 5000)}),
        # hex, octal: YAML 1.1 numbers the text form has not (strata/dsl yaml loader)
        spec_error("yaml_huge_hex", ["convert", "a.yaml"], "a.yaml:5:10", "is not a number of the spec language",
                   files={"a.yaml": y("0x" + "f" * 5000)}),
        spec_error("yaml_huge_negative_hex", ["check", "a.yaml"], "a.yaml:5:10",
                   "'-0xfffffffffffffffffffff...' is not a number of the spec language",
                   files={"a.yaml": y("-0x" + "f" * 400)}),
        spec_error("yaml_huge_short_hex", ["check", "a.yaml"], "a.yaml:5:10", "is not a number of the spec language",
                   files={"a.yaml": y("0x" + "f" * 100)}),
        spec_error("yaml_bad_octal", ["check", "a.yaml"], "a.yaml:5:10", "'0o9' is not a number of the spec language",
                   files={"a.yaml": y("!!int 0o9")}),
        spec_error("yaml_bad_bool", ["check", "a.yaml"], "a.yaml:5:10",
                   "'maybe' is not a YAML boolean", files={"a.yaml": y("!!bool maybe")}),
        spec_error("yaml_bad_escape", ["check", "a.yaml"], "a.yaml:5:",
                   "invalid YAML: found unknown escape character 'q'", files={"a.yaml": y(r'"\q"')}),
        spec_error("yaml_surrogate_escape", ["convert", "a.yaml"], "a.yaml:5:10",
                   r"the escape for '\ud800' makes a lone surrogate", files={"a.yaml": y(r'"\ud800"')}),
        spec_error("yaml_infinite", ["check", "a.yaml"], "a.yaml:5:10", ".inf is not a finite number",
                   files={"a.yaml": y(".inf")}),
        spec_error("yaml_python_tag", ["check", "a.yaml"], "a.yaml:5:10", "tag 'tag:yaml.org,2002:"
                   "python/object/apply:os.system' is not allowed",
                   files={"a.yaml": y("!!python/object/apply:os.system [echo]")}),
        spec_error("yaml_alias_bomb", ["check", "a.yaml"], "a.yaml:5:10", "anchor '&a' is not allowed",
                   files={"a.yaml": y("&a [1, 1]")}),
        spec_error("yaml_statement_huge_int", ["check", "a.yaml"], "a.yaml:", "digits",
                   files={"a.yaml": SPEC_YAML.replace("{embedding: [10, d], as: wte}",
                                                 f'"embedding({"9" * 5000}, d) as wte"')}),
        spec_error("yaml_deep", ["check", "a.yaml"], "a.yaml:5:", "the YAML nests more than 300 levels",
                   files={"a.yaml": y("[" * 5000 + "]" * 5000)}),
        spec_error("yaml_crlf_located", ["check", "a.yaml"], "a.yaml:5:10", "is not a YAML boolean",
                   files={"a.yaml": y("!!bool maybe").replace("\n", "\r\n")}),
        ok("yaml_bom_accepted", ["check", "a.yaml"], files={"a.yaml": "\ufeff" + SPEC_YAML}),
    ]
    run_batch(cases, tmp_path)
    check_all(cases)


def test_output_paths_are_one_line_errors(tmp_path):
    cases = []
    for cmd in (["compile", "a.arch"], ["diagram", "a.arch"], ["convert", "a.arch"], ["schema"]):
        name = cmd[0]
        cases += [
            usage_error(f"{name}_missing_folder", [*cmd, "-o", "no/such/x.out"],
                        "no/such/x.out: the folder no/such does not exist", files={"a.arch": SPEC}),
            usage_error(f"{name}_onto_directory", [*cmd, "-o", "dir"],
                        "dir: is a directory; give a file name to write",
                        files={"a.arch": SPEC, "dir/keep": ""}),
            # once wrote a file named `new` (Path drops the slash)
            usage_error(f"{name}_onto_a_new_folder", [*cmd, "-o", "new/"],
                        "new/: names a folder, which does not exist; give a file name to write",
                        files={"a.arch": SPEC}),
            usage_error(f"{name}_unwritable", [*cmd, "-o", f"{UNWRITABLE}/x.out"],
                        f"{UNWRITABLE}/x.out", files={"a.arch": SPEC}, setup=make_unwritable),
            # the rename once put a regular file in the FIFO's place (and, for root, in /dev/null's)
            usage_error(f"{name}_onto_fifo", [*cmd, "-o", "pipe"],
                        "pipe: not a regular file (a FIFO); strata writes only regular files",
                        files={"a.arch": SPEC}, setup=lambda f: os.mkfifo(f / "pipe")),
        ]
    cases += [
        usage_error("fmt_unwritable_folder", ["fmt", f"{UNWRITABLE}/a.arch"], "",
                    setup=make_unwritable) if UNWRITABLE == "ro" else
        usage_error("fmt_missing_file", ["fmt", "none.arch"], "none.arch: no such file"),
        usage_error("import_hf_onto_file", ["import-hf", "hf", "-o", "taken"],
                    "taken: exists and is not a folder", files={
                        "taken": "mine", "hf/config.json": '{"model_type": "gpt2", "n_layer": 1, '
                        '"n_embd": 8, "n_head": 2, "vocab_size": 10, "n_positions": 4}',
                        "hf/model.safetensors": b"\x02\x00\x00\x00\x00\x00\x00\x00{}"}),
        usage_error("import_hf_missing_parent", ["import-hf", "nope", "-o", "out"],
                    "nope: no such folder"),
    ]
    run_batch(cases, tmp_path, memory_mb=4096)
    check_all(cases)


def test_file_names_that_are_not_utf8(tmp_path):
    """A name from undecodable bytes reaches Python as surrogates: printed escaped,
    even where stdout is strict UTF-8 (a real subprocess, not captured in-process)."""
    good, bad = os.fsdecode(b"\xff\xfe.arch"), os.fsdecode(b"\xff.arch")
    (tmp_path / good).write_text(SPEC)
    (tmp_path / bad).write_text(with_var("1 + nope"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(ROOT)}
    runs = [subprocess.run([sys.executable, "-m", "strata.cli", "check", os.fsencode(name)],
                           cwd=tmp_path, capture_output=True, env=env, timeout=60)
            for name in (good, bad)]
    assert runs[0].returncode == 0 and runs[0].stdout.startswith(b"\\udcff\\udcfe.arch: ok")
    assert runs[1].returncode == 1
    assert runs[1].stderr.startswith(b"\\udcff.arch:2:11: error: undefined variable 'nope'")
    assert not any(b"Traceback" in r.stderr for r in runs)


def test_the_last_line_of_defence(monkeypatch, capsys):
    """A bug (not a user's mistake) still ends in one report request, exit 3, no
    traceback; STRATA_TRACEBACK=1 shows it.  No case above ever reaches it."""
    import strata.cli as cli

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "_cmd_schema", broken)
    monkeypatch.delenv("STRATA_TRACEBACK", raising=False)
    assert cli.main(["schema"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("strata: internal error: KeyError: 'a bug'\n")
    assert "please report it" in err and "Traceback" not in err
    monkeypatch.setenv("STRATA_TRACEBACK", "1")
    import pytest

    with pytest.raises(KeyError):
        cli.main(["schema"])


def test_a_path_with_a_nul_is_a_usage_error():
    """No file name holds a NUL; the OS calls raise ValueError on one, the one
    reader (strata.io.open_regular) answers as for any missing file."""
    import pytest

    import strata
    from strata.errors import UsageError
    from strata.io import read_regular

    for call in (lambda: strata.check("a\0b.arch"), lambda: read_regular("x\0")):
        with pytest.raises(UsageError, match="a path cannot hold a NUL character"):
            call()


def test_an_output_that_is_a_device_is_refused_before_anything_is_written():
    """`-o /dev/null` (a link to it too) once wrote a temporary file in /dev and
    renamed it over the device: root's /dev/null became a regular file.  Only the
    check is called here (it writes nothing), so the test is safe with or without
    the fix."""
    import pytest

    from strata.errors import UsageError
    from strata.io import _target

    for path in ("/dev/null", "/dev/zero"):
        with pytest.raises(UsageError, match=f"^{path}: not a regular file \\(a character device\\)"):
            _target(path)
        with pytest.raises(UsageError, match="a character device"):
            _target(path, follow=False)


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path):
    """pathlib's exists() / is_dir() raise on ENAMETOOLONG (a part over 255 bytes)
    instead of answering False: every command given such a path once ended in an
    internal error; a spec's distill("...") in a located one."""
    from tests.optional import require

    require("torch")
    long = "d" * 300
    spec = "model m {\n  stack s(tokens) { embedding(10, 4) as wte; lm_head(tie=wte) }\n}\n"
    cases = [
        usage_error("check", ["check", long + ".arch"], "File name too long"),
        usage_error("compile_out", ["compile", "a.arch", "-o", long + "/m.py"], "File name too long",
                    files={"a.arch": spec}),
        usage_error("train_data", ["train", "a.arch", "--data", long, "--out", "r", "-q", "--set", "context=4"],
                    "File name too long", files={"a.arch": spec}),
        usage_error("eval", ["eval", long], "File name too long"),
        usage_error("export", ["export", long, "-o", "o"], "File name too long"),
        usage_error("import_hf", ["import-hf", long, "-o", "o"], "File name too long"),
        spec_error("distill", ["check", "a.arch"], "a.arch:4:18",
                   f"distill: teacher spec '{long}.arch' cannot be read (File name too long)",
                   files={"a.arch": spec + f'passes {{ distill("{long}.arch") }}\n'}),
    ]
    run_batch(cases, tmp_path, memory_mb=4096)
    check_all(cases)


def test_a_string_in_a_message_cannot_start_a_line(tmp_path):
    """A located error quotes the spec's strings; one holding a newline once printed
    a line of the spec writer's choosing (a fake error, a fake `ok`)."""
    spec = SPEC + 'passes { distill("x\\nstrata: error: fake\\nm.arch: ok") }\n'
    cases = [spec_error(cmd, [cmd, "m.arch"], "m.arch:5:18", "distill: no model 'x\\nstrata: error: fake",
                        files={"m.arch": spec}) for cmd in ("check", "summary")]
    run_batch(cases, tmp_path)
    check_all(cases)
    for c in cases:
        lines = c.result["err"].splitlines()
        assert not any(x.startswith(("strata: error: fake", "m.arch: ok")) for x in lines), lines
