"""Issue 11, item 3: bounded work and memory — limits count what elaboration
really makes, imports read only regular files of bounded size, `extends`
chains are linear, and `strata.compile` refuses a model that cannot fit in CPU
memory before allocating it.  (Compile, diagram and --unfold being linear in
the number of layers is tested with the code generator and the diagrams.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.hostile.harness import (
    ROOT,
    SPEC,
    check_all,
    ok,
    run_batch,
    spec_error,
    usage_error,
)
from tests.optional import require


def _stack(body: str) -> str:
    return f"model m {{\n  stack s(tokens) {{\n    embedding(10, 4)\n    {body}\n  }}\n}}\n"


def _fifo(name):
    return lambda folder: os.mkfifo(folder / name)


def _sparse(name, size):
    def make(folder):
        with open(folder / name, "wb") as f:
            f.truncate(size)  # a hole: no disk, but a file this large
    return make


def _link(name, target):
    return lambda folder: os.symlink(target, folder / name)


@pytest.mark.slow
def test_work_is_bounded_before_it_is_spent(tmp_path):
    chain = "model m0 { d = 4\n stack s(tokens) { embedding(10, d) } }\n" + "".join(
        f"model m{i} extends m{i - 1} {{ v{i} = {i} }}\n" for i in range(1, 3000))
    cases = [
        spec_error("moe_1e8_experts", ["check", "a.arch"], "a.arch:4:5",
                   "the model would have more than 1,000,000 parameter tensors (300,000,000 here)",
                   files={"a.arch": _stack("moe(16, experts=10**8)")}, seconds=10),
        spec_error("moe_experts_times_layers", ["check", "a.arch"], "a.arch:4:",
                   "parameter tensors", seconds=20,
                   files={"a.arch": _stack("repeat(1000) { moe(16, experts=20000) }")}),
        spec_error("repeat_1e9", ["check", "a.arch"], "a.arch:4:12",
                   "repeat count 1,000,000,000 is too large (at most 10,000)",
                   files={"a.arch": _stack("repeat(10**9) { layernorm }")}, seconds=10),
        spec_error("nested_repeats", ["check", "a.arch"], "a.arch:4:",
                   "the model has more than 100,000 operations", seconds=20,
                   files={"a.arch": _stack("repeat(10000) { repeat(10000) { layernorm } }")}),
        spec_error("power_tower", ["check", "a.arch"], "a.arch:2:",
                   "number too large", seconds=5,
                   files={"a.arch": SPEC.replace("d = 4", "d = 10 ** 10 ** 10 ** 10")}),
        ok("extends_chain_3000", ["check", "a.arch"], files={"a.arch": chain}, seconds=10),
        spec_error("import_dev_zero", ["check", "a.arch"], "a.arch:1:1",
                   "cannot import '/dev/zero': not a regular file (a character device)",
                   files={"a.arch": 'import "/dev/zero"\n' + SPEC}, seconds=5),
        spec_error("import_fifo", ["check", "a.arch"], "a.arch:1:1",
                   "cannot import 'pipe.arch': not a regular file (a FIFO)",
                   files={"a.arch": 'import "pipe.arch"\n' + SPEC}, setup=_fifo("pipe.arch"),
                   seconds=5),
        spec_error("import_link_to_dev_zero", ["check", "a.arch"], "a.arch:1:1",
                   "cannot import 'z.arch': not a regular file", files={"a.arch": 'import "z.arch"\n'
                                                                        + SPEC},
                   setup=_link("z.arch", "/dev/zero"), seconds=5),
        spec_error("import_huge_file", ["check", "a.arch"], "a.arch:1:1",
                   "cannot import 'big.arch': 17,000,000 bytes is too large for a spec file",
                   files={"a.arch": 'import "big.arch"\n' + SPEC},
                   setup=_sparse("big.arch", 17_000_000), seconds=5),
        spec_error("import_directory", ["check", "a.arch"], "a.arch:1:1",
                   "cannot import 'dir.arch': is a directory",
                   files={"a.arch": 'import "dir.arch"\n' + SPEC, "dir.arch/x": ""}, seconds=5),
        usage_error("spec_is_fifo", ["check", "pipe.arch"], "pipe.arch: not a regular file (a FIFO)",
                    setup=_fifo("pipe.arch"), seconds=5),
        usage_error("spec_is_dev_zero", ["fmt", "/dev/zero"], "/dev/zero: not a regular file",
                    seconds=5),
        usage_error("spec_is_huge", ["convert", "big.arch"], "big.arch: 17,000,000 bytes is too large",
                    setup=_sparse("big.arch", 17_000_000), seconds=5),
        usage_error("spec_of_8mb", ["check", "big.arch"],
                    "big.arch: 8,000,000 bytes is too large for a spec file (at most 1,048,576)",
                    setup=_sparse("big.arch", 8_000_000), seconds=5),
        spec_error("tokens_400kb", ["check", "a.arch"], "a.arch:1:",  # 10 s before MAX_TOKENS
                   "the spec has more than 50,000 tokens", seconds=5,
                   files={"a.arch": "model m { d = " + "1+" * 200_000 + "1 }\n"}),
        spec_error("yaml_tokens_400kb", ["check", "a.yaml"], "a.yaml:4:",
                   "the spec has more than 50,000 tokens", seconds=5,
                   files={"a.yaml": "models:\n  m:\n    vars:\n      d: " + "1+" * 200_000 + "1\n"}),
        usage_error("config_is_fifo", ["import-hf", "hf", "-o", "out"],
                    "config.json: not a regular file (a FIFO)",
                    setup=lambda f: ((f / "hf").mkdir(), os.mkfifo(f / "hf" / "config.json")),
                    seconds=5),
        usage_error("config_is_huge", ["import-hf", "hf", "-o", "out"],
                    "config.json: 17,000,000 bytes is too large for a config.json",
                    setup=lambda f: ((f / "hf").mkdir(), _sparse("hf/config.json", 17_000_000)(f)),
                    seconds=5),
    ]
    # Memory: the front end must answer all of these inside 1 GB of address space.
    run_batch(cases, tmp_path, memory_mb=1024)
    check_all(cases)


def test_extends_chain_is_linear(monkeypatch):
    """Checking a chain of n models that each extend the last costs O(n): counted,
    not timed — the work that used to be quadratic (comparing whole models, each
    an AST dump) happens at most a bounded number of times per model."""
    from strata.compiler import build_text
    from strata.dsl import ast as A

    dumps = [0]
    real = A.Node.model_dump

    def counting(self, *args, **kwargs):
        dumps[0] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(A.Node, "model_dump", counting)

    def work(n):
        text = "model m0 { d = 4\n stack s(tokens) { embedding(10, d) } }\n" + "".join(
            f"model m{i} extends m{i - 1} {{ v{i} = {i} }}\n" for i in range(1, n))
        dumps[0] = 0
        build_text(text, "chain.arch")
        return dumps[0]

    small, large = work(150), work(600)
    assert large <= 4 * small + 50, (small, large)


@pytest.mark.slow
def test_compile_refuses_a_model_that_cannot_fit_in_cpu_memory():
    """Before a byte is allocated, with its size and the way out; device="meta" builds it."""
    require("torch")
    code = textwrap.dedent(f"""
        import resource, strata
        from strata.resources import TooLargeError
        limit = 3 * 2 ** 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        spec = {str(ROOT / "specs" / "llama2_70b.arch")!r}
        try:
            strata.compile(spec)
        except TooLargeError as e:
            print("REFUSED", e)
        m = strata.compile(spec, device="meta")
        print("META", sum(p.numel() for p in m.parameters()))
        small = strata.compile({str(ROOT / "specs" / "tiny_shakespeare.arch")!r})
        print("SMALL", type(small).__name__)
        # a 1.2B-parameter model (4.8 GB of float32) does not fit under a 3 GB rlimit
        big = "model b {{ stack s(tokens) {{ embedding(300000, 4096) }} }}"
        try:
            strata.compile(big)
        except MemoryError as e:
            print("REFUSED2", e)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    refused = next(x for x in lines if x.startswith("REFUSED "))
    assert "llama2_70b (68,976,648,192 parameters) needs 275.9 GB" in refused
    assert 'device="meta"' in refused
    assert "META 68976648192" in lines
    assert "SMALL" in done.stdout
    assert "b (1,228,800,000 parameters) needs 4.9 GB" in done.stdout


def test_a_training_batch_that_cannot_fit_is_refused_before_anything_is_written(tmp_path):
    """`batch = 10**9` once printed the training line, then ended in "out of memory"
    (or swapped) allocating it: on a CPU, a step's least memory (strata.train.limits.
    step_memory) is checked first, and no run folder is made."""
    require("torch")
    spec = ("model t { stack s(tokens) { embedding(16, 8) as wte; position(learned, 8); "
            "lm_head(tie=wte) } }\ntrain { batch = 2  context = 8  steps = 1 }\n")
    train = ["train", "t.arch", "--data", "a.txt", "--out", "run", "-q", "--device", "cpu"]
    files = {"t.arch": spec, "a.txt": "the cat sat on the mat.\n" * 40}
    cases = [
        usage_error("batch_1e9", [*train, "--set", "batch=10**9"], "a training step of batch "
                    "1,000,000,000 x context 8 needs 320.0 GB, more than the", files=files, seconds=20),
        usage_error("batch_1e9_in_spec", train, "lower batch (raise accumulate",
                    files={**files, "t.arch": spec.replace("batch = 2", "batch = 10**9")}, seconds=20),
    ]
    run_batch(cases, tmp_path, memory_mb=3072)
    check_all(cases)


def _ids_file(path, dtype: str, shape: list[int]) -> None:
    """A safetensors file of one integer tensor whose data is a hole (no disk)."""
    import json
    import math
    import struct

    size = math.prod(shape) * {"I64": 8, "I32": 4}[dtype]
    header = json.dumps({"tokens": {"dtype": dtype, "shape": shape, "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + size)


def test_calibration_token_ids_are_read_in_bounded_memory(tmp_path):
    """`--calibration ids.safetensors` (and `compress --finetune N --data ids.safetensors`)
    once loaded the whole file (every tensor in it) before cutting it to 128 rows: a file of 2**31 ids (or a sparse one whose header
    claims them) took 16 GB.  Now the rows are read spread over the file, the rest
    never read; a small file reads exactly as safetensors reads it."""
    torch = require("torch")
    from safetensors.torch import save_file

    from strata.backends.torch.workflows.calibration import load_calibration
    from strata.compiler import build_text

    g = build_text(SPEC)  # vocabulary 10, no positions: rows of MAX_LENGTH
    flat, rows = torch.arange(5000) % 10, (torch.arange(3 * 700) % 10).view(3, 700).int()
    save_file({"tokens": flat, "other": torch.zeros(3)}, tmp_path / "flat.safetensors")
    save_file({"ids": rows}, tmp_path / "rows.safetensors")
    for name, t in (("flat", flat), ("rows", rows)):
        assert torch.equal(load_calibration(str(tmp_path / f"{name}.safetensors"), g), load_calibration(t, g))

    _ids_file(tmp_path / "huge_flat.safetensors", "I64", [2 ** 31])
    _ids_file(tmp_path / "huge_rows.safetensors", "I32", [2 ** 22, 2 ** 10])
    code = textwrap.dedent(f"""
        import resource
        limit = 2 * 2 ** 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from strata.backends.torch.workflows.calibration import load_calibration
        from strata.compiler import build_text
        g = build_text({SPEC!r})
        for name in ("huge_flat", "huge_rows"):
            print(name, tuple(load_calibration({str(tmp_path)!r} + f"/{{name}}.safetensors", g).shape))
        from strata.train.recover import MAX_CHARS, _token_ids  # compress --finetune N --data ids.safetensors
        print("finetune", _token_ids({str(tmp_path)!r} + "/huge_flat.safetensors", None, None, 65).numel()
              <= MAX_CHARS)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:3] == ["huge_flat (128, 512)", "huge_rows (128, 512)", "finetune True"]
