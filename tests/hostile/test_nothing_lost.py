"""Issue 11, item 5: nothing lost — no command writes onto its own input,
`convert` and `fmt` keep every comment in its block or write nothing, `fmt`
through a symlink rewrites the target and keeps the link, and new files get
the user's umask (a replaced file keeps its mode)."""

from __future__ import annotations

import os
import stat

from strata.cli import main
from strata.dsl import load_text
from strata.dsl.formatter import format_spec
from tests.hostile.harness import (
    SPEC,
    SPEC_YAML,
    check_all,
    ok,
    run_batch,
    spec_error,
    usage_error,
)

UGLY = SPEC.replace("  d = 4\n", "  d   =   4\n")  # valid, not in canonical form
CANONICAL = format_spec(load_text(SPEC, "a.arch"))


def test_no_command_writes_onto_its_input(tmp_path):
    own = "is the input spec itself; writing there would destroy it"
    cases = [
        usage_error(f"{cmd}_onto_input", [cmd, "a.arch", "-o", out], own, files={"a.arch": SPEC},
                    setup=setup)
        for cmd in ("compile", "diagram", "convert")
        for out, setup in (("a.arch", None), ("./sub/../a.arch", lambda f: (f / "sub").mkdir()),
                           ("link.arch", lambda f: os.symlink("a.arch", f / "link.arch")),
                           ("hard.arch", lambda f: os.link(f / "a.arch", f / "hard.arch")))
    ]
    for c in cases:
        c.name += "_" + c.argv[3].replace("/", "_").replace(".", "")
    cases.append(usage_error("convert_yaml_onto_input", ["convert", "a.yaml", "-o", "a.yaml"], own,
                             files={"a.yaml": SPEC_YAML}))
    run_batch(cases, tmp_path)
    check_all(cases)


def test_comments_are_kept_or_nothing_is_written(tmp_path):
    in_block = UGLY.replace("  stack s", "  # about s\n  stack s").replace(
        "lm_head(tie=wte) }\n}", "lm_head(tie=wte) }\n  # end of m: would leave the model\n}")
    cases = [
        spec_error("convert_trailing_comment", ["convert", "a.arch", "-o", "a.yaml"], "a.arch:5:1",
                   "convert would drop this comment", files={"a.arch": SPEC + "# the end\n"}),
        spec_error("convert_comment_before_brace", ["convert", "a.arch", "-o", "a.yaml"],
                   "a.arch:5:3", "convert would drop this comment", files={"a.arch": in_block}),
        spec_error("convert_to_stdout_too", ["convert", "a.arch"], "a.arch:5:3",
                   "convert would drop this comment", files={"a.arch": in_block}),
        spec_error("convert_yaml_comment", ["convert", "a.yaml", "-o", "a.arch"], "a.yaml:1:1",
                   "convert would drop this comment", files={"a.yaml": "# why\n" + SPEC_YAML}),
        spec_error("fmt_comment_before_brace", ["fmt", "a.arch"], "a.arch:6:3",
                   "fmt would drop this comment",
                   files={"a.arch": in_block.replace("  # about s\n", "  # about s\n  #\n")}),
        ok("convert_kept_comments", ["convert", "a.arch", "-o", "a.yaml"],
           files={"a.arch": "# the model\n" + SPEC.replace("  d = 4", "  # width\n  d = 4  # why")},
           outputs=("a.yaml",)),
    ]
    run_batch(cases, tmp_path)
    check_all(cases)
    kept = load_text((next(c for c in cases if c.name == "convert_kept_comments").folder
                      / "a.yaml").read_text(), "a.yaml")
    assert kept.models[0].comment == "the model" and kept.models[0].vars[0].comment == "width\nwhy"


def test_comments_stay_in_their_block():
    src = ("model m {\n  block layer {\n    # before the norm\n    layernorm\n    # before mlp\n"
           "    mlp(8)\n  }\n  # before the stack\n  stack s(tokens) { embedding(10, 4); layer }\n}\n")
    spec = load_text(src, "a.arch")
    layer = spec.models[0].blocks[0]
    assert [s.comment for s in layer.body] == ["before the norm", "before mlp"]
    assert spec.models[0].stacks[0].comment == "before the stack"
    again = load_text(format_spec(spec), "a.arch")
    assert again == spec and [s.comment for s in again.models[0].blocks[0].body] == [
        "before the norm", "before mlp"]


def test_fmt_through_a_symlink_rewrites_the_target_and_keeps_the_link(tmp_path):
    cases = [ok("fmt_symlink", ["fmt", "link.arch"], files={"real/a.arch": UGLY},
                setup=lambda f: os.symlink("real/a.arch", f / "link.arch"),
                outputs=("real/a.arch",))]
    run_batch(cases, tmp_path)
    check_all(cases)
    folder = cases[0].folder
    assert (folder / "link.arch").is_symlink() and os.readlink(folder / "link.arch") == "real/a.arch"
    assert (folder / "real" / "a.arch").read_text() == CANONICAL


def test_outputs_have_the_users_umask_and_replaced_files_keep_their_mode(tmp_path):
    (tmp_path / "a.arch").write_text(UGLY)
    (tmp_path / "kept.yaml").write_text("old")
    os.chmod(tmp_path / "kept.yaml", 0o600)
    old = os.umask(0o027)
    try:
        assert main(["compile", str(tmp_path / "a.arch"), "-o", str(tmp_path / "m.py")]) == 0
        assert main(["convert", str(tmp_path / "a.arch"), "-o", str(tmp_path / "a.yaml")]) == 0
        assert main(["convert", str(tmp_path / "a.arch"), "-o", str(tmp_path / "kept.yaml")]) == 0
        os.umask(0o022)
        os.chmod(tmp_path / "a.arch", 0o664)
        assert main(["fmt", str(tmp_path / "a.arch")]) == 0
    finally:
        os.umask(old)

    def mode(name):
        return stat.S_IMODE(os.stat(tmp_path / name).st_mode)

    assert mode("m.py") == 0o640 and mode("a.yaml") == 0o640
    assert mode("kept.yaml") == 0o600 and mode("a.arch") == 0o664
    assert (tmp_path / "a.arch").read_text() == CANONICAL


def test_export_writes_over_no_input_and_no_file_without_overwrite(tmp_path):
    """`strata export RUN -o RUN` once replaced the run's model.safetensors and
    tokenizer.json with the Hugging Face files (the run then failed to load), and an
    export into a folder holding the user's config.json replaced it silently."""
    from tests.optional import require

    require("torch")
    from strata import api

    spec = "model t { stack s(tokens) { embedding(16, 8) as wte; lm_head(tie=wte) } }\n"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "t.arch").write_text(spec)
    api.save_weights(api.compile(spec), tmp_path / "src" / "model.safetensors")
    inputs = {"t.arch": spec, "w/model.safetensors": (tmp_path / "src" / "model.safetensors").read_bytes()}
    export = ["export", "t.arch", "--weights", "w/model.safetensors"]
    written = ("hf/config.json", "hf/generation_config.json", "hf/model.safetensors", "hf/configuration_strata.py",
               "hf/modeling_strata.py", "hf/strata_model.py")
    cases = [
        usage_error("onto_its_weights", [*export, "-o", "w", "--overwrite"],
                    "w: holds this export's input w/model.safetensors; writing there would destroy it",
                    files=inputs),
        usage_error("onto_the_users_config", [*export, "-o", "hf"],
                    "hf/config.json exists: --overwrite replaces it, or -o names another folder",
                    files={**inputs, "hf/config.json": "{\"mine\": 1}"}),
        ok("overwrite_replaces_only_its_own", [*export, "-o", "hf", "--overwrite"],
           files={**inputs, "hf/config.json": "{\"mine\": 1}", "hf/notes.txt": "mine"}, outputs=written),
        ok("into_an_empty_folder", [*export, "-o", "hf"], files=inputs,
           setup=lambda f: (f / "hf").mkdir(), outputs=written),
    ]
    run_batch(cases, tmp_path / "cases", memory_mb=4096)
    check_all(cases)
    assert (cases[2].folder / "hf" / "notes.txt").read_text() == "mine"
