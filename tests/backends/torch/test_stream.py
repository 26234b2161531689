"""Streaming calibration (strata/backends/torch/workflows/stream.py): replaying
the compressed blocks' outputs gives exactly what running the model from the
start for every block gives, and each block runs a bounded number of times."""

from __future__ import annotations

import pytest

from tests.passes.helpers import LLAMA, ids, spec_file, torch, weights

from strata.backends.torch.workflows.stream import stream
from strata.compiler import build_file

# the seed's encoder-decoder: decoder blocks read the encoder's output as memory
SEQ2SEQ = """
model tiny_t5 {
  vocab = 64
  ctx   = 32
  d     = 32
  heads = 2
  depth = 3
  block enc_layer {
    residual { layernorm; attention(heads) }
    residual { layernorm; mlp(64) }
  }
  block dec_layer {
    residual { layernorm; attention(heads, causal=true) }
    residual { layernorm; cross_attention(heads, memory) }
    residual { layernorm; mlp(64) }
  }
  stack encoder(src) {
    embedding(vocab, d) as embed
    position(learned, ctx) as pos
    repeat(depth) enc_layer as layers
    layernorm as norm
  }
  stack decoder(tgt, memory=encoder) {
    embedding(vocab, d) as embed
    position(learned, ctx) as pos
    repeat(depth) dec_layer as layers
    layernorm as norm
    lm_head(vocab)
  }
}
"""

# every other layer a sliding window: the generated loop zips the layers with their masks
WINDOWS = LLAMA.replace("depth = 2", "depth = 4").replace(
    "attention(heads, kv_heads=2, causal=true, bias=false)",
    "attention(heads, kv_heads=2, causal=true, bias=false, window=8 if i % 2 == 0 else none)").replace(
    "repeat(depth) layer", "repeat(depth, i) layer")


def _run(g, state, x, replay):
    """Each block's Hessians and the state after a handle that rounds the block's
    weights (so later blocks see the compressed ones), and how often each linear ran."""
    from safetensors.torch import load_file

    state = dict(load_file(str(state)))
    nodes = [n for n, d in g.nodes(data=True) if d["op"] == "linear" and f"{n}.weight" in state]
    seen, calls = {}, {}

    def handle(block, stats):
        for k, s in stats.items():
            seen[k] = s["H"].clone() if s["n"] else None
        for n in block:
            state[f"{n}.weight"] = (state[f"{n}.weight"] * 8).round() / 8

    import strata.backends.torch.workflows.stream as mod

    build = mod.plain_model

    def counted(g, st):
        net = build(g, st)
        for n in nodes:
            net.get_submodule(n).register_forward_hook(
                lambda m, a, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
        return net
    mod.plain_model = counted
    try:
        cost = stream(g, state, x, nodes, handle, replay=replay)
    finally:
        mod.plain_model = build
    return seen, state, calls, cost


@pytest.mark.parametrize("text", [LLAMA.replace("depth = 2", "depth = 4"), SEQ2SEQ, WINDOWS])
def test_replay_equals_running_from_the_start_at_linear_cost(tmp_path, text):
    spec = spec_file(tmp_path, text)
    w = weights(tmp_path, spec)
    g = build_file(spec)
    x = ids(64, rows=12, length=16)  # two batches of 8
    fast = _run(g, w, x, replay=True)
    slow = _run(g, w, x, replay=False)
    assert fast[3]["replay"] and not slow[3]["replay"]
    assert fast[0].keys() == slow[0].keys() and len(fast[0]) > 4
    for k in fast[0]:
        torch.testing.assert_close(fast[0][k], slow[0][k], rtol=0, atol=0)
    for k in slow[1]:
        assert torch.equal(fast[1][k], slow[1][k]), k
    blocks = {n.rsplit(".", 2)[0] if ".layers." in n else n for n in fast[2]}
    batches = 2
    deepest = max((n for n in fast[2] if ".layers." in n), key=lambda n: int(n.split(".layers.")[1].split(".")[0]))
    # replayed: a block runs to be measured and once more compressed (its outputs kept), whatever its depth
    assert fast[2][deepest] <= 2 * batches, (deepest, fast[2][deepest])
    first = next(n for n in fast[2] if ".layers.0." in n)
    assert fast[2][first] <= 2 * batches and slow[2][first] > 2 * batches  # from the start: once per later block
    assert len(blocks) > 3


def test_sequential_measures_each_input_after_the_linears_before_it(tmp_path):
    """sequential=True: one handle call per distinct input of a block in model
    order (q, k, v; o; gate, up; down), each measured after the earlier calls'
    rewrites: with v zeroed, o reads zeros; without it, o's statistics come
    from the float block."""
    from safetensors.torch import load_file

    spec = spec_file(tmp_path, LLAMA)
    g = build_file(spec)
    x = ids(96, rows=4, length=16)

    def run(sequential):
        state = dict(load_file(str(weights(tmp_path, spec))))
        nodes = [n for n, d in g.nodes(data=True) if d["op"] == "linear" and ".layers." in n]
        calls, o_energy = [], {}

        def handle(part, stats):
            calls.append([n.rsplit(".", 1)[1] for n in part])
            for n in part:
                if n.endswith(".attn.v"):
                    state[f"{n}.weight"] = torch.zeros_like(state[f"{n}.weight"])
                if n.endswith(".attn.o"):
                    o_energy[n] = float(stats[list(g.predecessors(n))[0]]["H"].abs().sum())
        cost = stream(g, state, x, nodes, handle, sequential=sequential)
        return calls, o_energy, cost

    calls, energy, cost = run(True)
    assert cost["sequential"]
    assert calls[:4] == [["q", "k", "v"], ["o"], ["gate", "up"], ["down"]], calls
    assert len(calls) == 8 and all(e == 0 for e in energy.values()) and len(energy) == 2
    calls, energy, cost = run(False)
    assert len(calls) == 2 and all(e > 0 for e in energy.values())


def test_the_probe_reruns_a_module_on_what_it_read(tmp_path):
    """stats[PROBE](module, {linear: W}) is the module's output on the inputs it
    read while measured (its arguments and keywords: rotary tables, masks),
    with those weights: {} gives what it computed; new weights give what the
    module computes holding them."""
    from safetensors.torch import load_file

    from strata.passes.methods.blocks import PROBE

    spec = spec_file(tmp_path, LLAMA)
    g = build_file(spec)
    x = ids(96, rows=4, length=16)
    state = dict(load_file(str(weights(tmp_path, spec))))
    nodes = [n for n, d in g.nodes(data=True) if d["op"] == "linear" and ".layers.0." in n]
    seen = {}

    def handle(part, stats):
        probe = stats[PROBE]
        assert "decoder.layers.0.attn" in probe and "decoder.nowhere" not in probe
        seen["plain"] = probe("decoder.layers.0.attn", {})
        W = state["decoder.layers.0.attn.v.weight"] * 0.5
        seen["half_v"] = probe("decoder.layers.0.attn", {"decoder.layers.0.attn.v": W})
        seen["mlp"] = probe("decoder.layers.0.mlp", {})

    stream(g, dict(state), x, nodes, handle, rows=32, modules=lambda part: {
        "decoder.layers.0.attn", "decoder.layers.0.mlp", "decoder.nowhere"})
    net = compile_model(spec, state)
    outs = {}
    net.get_submodule("decoder.layers.0.attn").register_forward_hook(lambda m, a, o: outs.setdefault("attn", o))
    with torch.no_grad():
        net(x[:4])
    assert seen["plain"].shape == (4 * 16, 64)  # calls kept until 32 tokens: the one batch of 4 x 16
    torch.testing.assert_close(seen["plain"], outs["attn"].reshape(-1, 64), rtol=0, atol=0)
    assert seen["mlp"].shape == (64, 64)
    # v's output is linear in its weight and o is linear: half of v's weight halves the attention's output
    torch.testing.assert_close(seen["half_v"], seen["plain"] * 0.5, rtol=1e-5, atol=1e-6)


def compile_model(spec, state):
    from strata.api import compile as compile_spec
    from strata.backends.torch.weights_file import load_state

    net = compile_spec(spec, passes=[], quantize=False).eval()
    load_state(net, state)
    return net
