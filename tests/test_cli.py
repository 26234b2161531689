"""The command line: exit codes, outputs, and no torch on the front-end path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from strata.cli import main

ROOT = Path(__file__).resolve().parents[1]
GPT2 = str(ROOT / "specs" / "gpt2.arch")


def test_check_ok(capsys):
    assert main(["check", GPT2]) == 0
    assert "124,439,808 parameters" in capsys.readouterr().out


def test_check_spec_error_exit_1(tmp_path, capsys):
    p = tmp_path / "bad.arch"
    p.write_text("model m {\n  stack s(t) { embedding(10, 4); atention(2) }\n}\n")
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert f"{p}:2:34: error: unknown component 'atention'" in err
    assert "hint: did you mean 'attention'?" in err and err.rstrip().endswith("1 error")


def test_usage_errors_exit_2(capsys, tmp_path):
    assert main(["check", str(tmp_path / "missing.arch")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["check", GPT2, "--model", "gpt3"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["check"])
    assert e.value.code == 2


def test_summary_json_fields(capsys):
    assert main(["summary", str(ROOT / "specs" / "llama2_70b.arch"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["name"] == "llama2_70b"
    assert s["parameters"] == s["trainable_parameters"] == 68_976_648_192
    assert s["flops_per_token"] > 2 * 68e9
    m = {x["path"]: x for x in s["modules"]}
    assert m["decoder.layers.79.attn"] == {"path": "decoder.layers.79.attn", "kind": "attention",
                                           "parameters": 2 * 8192 * 8192 + 2 * 8192 * 1024,
                                           "output_shape": ["B", "T", 8192], "tied": []}
    assert s["repeats"][0] == {"path": "decoder.layers", "block": "layer", "count": 80, "uniform": True,
                               "parameters_each": 855_654_400, "parameters": 80 * 855_654_400}


def test_summary_table_folds_repeats(capsys):
    assert main(["summary", GPT2]) == 0
    out = capsys.readouterr().out
    assert "decoder.h × 12" in out and "7,087,872 each" in out and "124,439,808" in out
    assert "decoder.h.3" not in out


def test_ir_dump(capsys):
    assert main(["ir", str(ROOT / "specs" / "tiny_shakespeare.arch")]) == 0
    out = capsys.readouterr().out
    assert "decoder.h.3.attn.core" in out and "repeat: decoder.h = layer x 4" in out


def test_front_end_never_imports_torch(tmp_path):
    yaml = str(ROOT / "specs" / "gpt2.yaml")
    run, out = map(str, _folders(tmp_path))  # refused naming their specs, read without torch
    code = ("import sys; from strata.cli import main; "
            f"main(['summary', {run!r}]); main(['check', {out!r}]); "
            f"main(['summary', {GPT2!r}, '--json']); main(['ir', {GPT2!r}]); main(['check', {GPT2!r}]); "
            f"main(['check', {yaml!r}]); main(['convert', {GPT2!r}, '--to', 'yaml']); "
            f"main(['fmt', '--check', {GPT2!r}]); main(['schema']); "
            f"main(['diagram', {GPT2!r}, '--format', 'mermaid']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_file_whose_name_starts_with_a_dash(tmp_path, capsys, monkeypatch):
    """`strata check -a.arch`: argparse reads -a.arch as an option and said only
    'the following arguments are required: spec'; the error says how to give the
    file, and both ways work."""
    monkeypatch.chdir(tmp_path)
    Path("-a.arch").write_text(Path(GPT2).read_text())
    for argv in (["check", "-a.arch"], ["summary", "-a.arch", "--json"], ["fmt", "--check", "-a.arch"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err
        assert "'-a.arch' starts with '-', so it was read as an option" in err, err
        assert "write ./-a.arch, or put -- before it" in err
    assert main(["check", "--", "-a.arch"]) == 0
    assert main(["check", "./-a.arch"]) == 0
    assert "124,439,808 parameters" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an option misspelled is not a file: no hint
        main(["check", "--nope", "x.arch"])
    assert "read as an option" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval"])
def test_out_of_memory_on_the_gpu_is_a_one_line_error(command, tmp_path, capsys, monkeypatch):
    """torch.OutOfMemoryError is a RuntimeError: it ended as `internal error ...
    this is a bug in strata`; it is the device's memory, said in one line with what to try."""
    from tests.optional import require

    torch = require("torch")
    import strata.train.run

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 1 has a total "
                                     "capacity of 79.19 GiB of which 1.06 GiB is free. Including non-PyTorch ...")
    monkeypatch.setattr(strata.train, "train", oom)  # what `strata train` calls
    monkeypatch.setattr(strata.train.run, "open_source", oom)  # what `strata eval` calls
    spec = tmp_path / "m.arch"
    spec.write_text("model m { stack s(tokens) { embedding(16, 8) as e; lm_head(tie=e) } }\n")
    argv = ["train", str(spec), "--out", str(tmp_path / "r")] if command == "train" else ["eval", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("strata: error: out of memory on cuda:1 (tried to allocate 2.00 GiB); try a smaller ")
    assert len(err.splitlines()) == 1 and "internal error" not in err and "Traceback" not in err
    assert ("--device cpu" in err) == (command == "train")


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """A run folder whose run.json names its spec, and a compress output folder
    (what the front end reads of them: no weights needed)."""
    spec = tmp_path / "nt.arch"
    spec.write_text(Path(GPT2).read_text())
    run = tmp_path / "runs" / "nt"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": "strata-run", "spec": str(spec), "model": "gpt2"}))
    out = tmp_path / "small"
    out.mkdir()
    (out / "model.arch").write_text(spec.read_text())
    (out / "weights.safetensors").write_bytes(b"")
    return run, out


def test_compress_onto_its_input_folder_names_the_folder(tmp_path, capsys):
    """`strata compress runs/nt -o runs/nt` said 'is the input spec itself'."""
    run, out = _folders(tmp_path)
    for folder, kind in ((run, "run folder"), (out, "compress output folder")):
        assert main(["compress", str(folder), "-o", str(folder), "--pass", "prune(0.5)"]) == 2
        err = capsys.readouterr().err
        assert err == (f"strata: error: {folder}: is the input {kind} itself; writing there would "
                       "destroy it (give another -o)\n"), err


@pytest.mark.parametrize("command", ["check", "summary", "diagram", "ir"])
def test_a_folder_for_a_spec_names_the_spec_to_give(command, tmp_path, capsys, monkeypatch):
    """check/summary/diagram given a run or compress output folder said only 'is
    a directory, not a spec file'; the error names the spec to give instead."""
    run, out = _folders(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main([command, "runs/nt"]) == 2
    assert capsys.readouterr().err == (f"strata: error: runs/nt: is a run folder, not a spec file; give "
                                       f"the spec it trained: strata {command} nt.arch --model gpt2\n")
    assert main([command, "small"]) == 2
    assert capsys.readouterr().err == (f"strata: error: small: is a strata compress output folder, not a "
                                       f"spec file; give its spec: strata {command} small/model.arch\n")
    (tmp_path / "nt.arch").unlink()
    assert main([command, "runs/nt"]) == 2
    assert "give the spec it trained (run.json names " in capsys.readouterr().err
    (run / "model.arch").write_text(Path(GPT2).read_text())  # the copy strata train keeps now
    assert main([command, "runs/nt"]) == 2
    err = capsys.readouterr().err
    assert "give the spec it trained (run.json names " in err
    assert err.endswith(f"as the run keeps it: strata {command} runs/nt/model.arch\n"), err
    assert main([command, "."]) == 2
    assert capsys.readouterr().err == "strata: error: .: is a directory, not a spec file\n"


@pytest.mark.parametrize("command", [["eval"], ["generate"], ["export", "-o", "hf"]])
def test_a_source_and_its_weights_are_refused_alike(tmp_path, capsys, monkeypatch, command):
    """What reads weights says the same of a missing spec, a spec without weights
    and a folder given other weights (strata.train.sources: spec_weights, no_other_weights)."""
    from tests.optional import require

    require("torch")
    run, out = _folders(tmp_path)
    monkeypatch.chdir(tmp_path)
    said = {
        "nothere.arch": "nothere.arch: no such run folder or spec file",
        "nt.arch": "nt.arch: a spec needs its weights: --weights RUN_DIR, a compress output folder or "
                   "a .safetensors file",
    }
    for source, want in said.items():
        assert main([command[0], source, *command[1:]]) == 2
        assert capsys.readouterr().err == f"strata: error: {want}\n"
    assert main([command[0], "small", "--weights", "nt.arch", *command[1:]]) == 2
    assert capsys.readouterr().err == ("strata: error: small is a folder with its own weights; --weights goes "
                                       "with a spec file\n")


def test_diagram_output_suffix_it_does_not_draw(tmp_path, capsys):
    """`diagram -o arch.pdf` wrote Mermaid text into arch.pdf, and `-o G.SVG` Mermaid
    into G.SVG (the suffix was looked up case by case): a picture strata does not
    draw is refused without --format, nothing written; an upper-case suffix counts."""
    out = tmp_path / "arch.pdf"
    assert main(["diagram", GPT2, "-o", str(out)]) == 2
    assert capsys.readouterr().err == (f"strata: error: {out}: strata draws no pdf; -o a .svg or .png file "
                                       "(Graphviz), .mmd (Mermaid), .md (Markdown) or .gv (dot), or give "
                                       "--format\n")
    assert not out.exists()
    assert main(["diagram", GPT2, "-o", str(out), "--format", "dot"]) == 0  # said outright: as asked
    assert out.read_text().startswith("digraph")
    assert main(["diagram", GPT2, "--level", "model", "-o", str(tmp_path / "G.GV")]) == 0
    assert (tmp_path / "G.GV").read_text().startswith("digraph")


STUDENT = """model s {
  vocab = 128
  ctx = 32
  d = 32
  heads = 2
  block layer {
    residual { layernorm; attention(heads, causal=true) }
    residual { layernorm; mlp(4*d, act=gelu) }
  }
  stack decoder(tokens) { embedding(vocab, d); repeat(1) layer; layernorm; lm_head(vocab) }
}
passes { distill("../../teacher.arch") }
"""


@pytest.mark.parametrize("command", ["summary", "diagram", "ir"])
def test_a_students_run_folder_shows_without_its_teacher(command, tmp_path, capsys, monkeypatch):
    """`strata summary RUN` suggests `strata summary RUN/model.arch`; for a distilled
    student's run folder copied without its teacher's spec, that command failed
    (distill: teacher spec not found).  The run's own copy is a record of the
    model: summary, diagram and ir show it; `check` still locates the missing teacher,
    and so does summary of a spec the user wrote (not a run's copy)."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "s"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": "strata-run", "spec": "/gone/student.arch", "model": "s"}))
    (run / "model.arch").write_text(STUDENT)
    assert main([command, "runs/s"]) == 2
    suggested = capsys.readouterr().err.rstrip("\n").split(": strata ")[-1].split()
    assert suggested == [command, "runs/s/model.arch"]
    assert main(suggested) == 0, capsys.readouterr().err
    assert "decoder.lm_head" in capsys.readouterr().out or command == "diagram"
    assert main(["check", "runs/s/model.arch"]) == 1
    assert "runs/s/model.arch:12:18: error: distill: teacher spec 'teacher.arch' not found" in capsys.readouterr().err
    (tmp_path / "student.arch").write_text(STUDENT)  # a spec the user names: its teacher is needed
    assert main([command, "student.arch"]) == 1
    assert "error: distill: teacher spec 'teacher.arch' not found" in capsys.readouterr().err
