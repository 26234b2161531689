"""Title nodes: every cluster's title is held at its top by invisible links from
what feeds the cluster and to its first boxes; memory and ties do not move it."""

from __future__ import annotations

import time

import pytest

from strata.backends.diagram.layout import Arrow, Box, Cluster, Layout, describe
from strata.backends.diagram.titles import title_id, title_links
from strata.compiler import build_text
from strata.passes import apply_passes
from tests.render.specs import LEVELS, SPECS, graph


def _under(d: Layout) -> dict[str, set[str]]:
    parent = {c.id: c.parent for c in d.clusters}
    out: dict[str, set[str]] = {c.id: set() for c in d.clusters}
    for b in d.boxes:
        c = b.cluster
        while c:
            out[c].add(b.id)
            c = parent[c]
    return out


@pytest.mark.parametrize("unfold", [False, True])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("spec", SPECS + ("seed",))
def test_every_title_is_above_what_enters_its_cluster(spec, level, unfold):
    g = apply_passes(graph("transformer_seed")) if spec == "seed" else graph(spec)
    d = describe(g, level, unfold=unfold)
    links = set(title_links(d))
    under = _under(d)
    for c in d.clusters:
        t = title_id(c.id)
        below = {b for a, b in links if a == t}
        assert below, f"{c.lines[0]}: nothing under its title"
        # the title is above boxes of its own cluster (or the title of a cluster inside it)
        assert all(b in under[c.id] or b.removeprefix("t_") in under for b in below)
    for a in d.arrows:
        for c in d.clusters:
            entering = a.dst in under[c.id] and a.src not in under[c.id]
            if entering and a.role in ("data", "residual"):
                outer = c
                while outer.parent and a.src not in under[outer.parent] \
                        and a.dst in under[outer.parent]:
                    outer = next(x for x in d.clusters if x.id == outer.parent)
                assert (a.src, title_id(outer.id)) in links, (a, c.lines)


def test_memory_and_ties_leave_titles_alone():
    d = Layout("t", "block", boxes=[Box("n0", "e", ["e"], "norm", cluster="c0"),
                                    Box("n1", "d", ["d"], "attention", cluster="c1")],
               arrows=[Arrow("n0", "n1", role="memory"), Arrow("n0", "n1", role="tied")],
               clusters=[Cluster("c0", "enc", ["enc"]), Cluster("c1", "dec", ["dec"])])
    assert title_links(d) == [("t_c0", "n0"), ("t_c1", "n1")]


def test_nested_titles_chain_outer_to_inner():
    d = Layout("t", "block", boxes=[Box("n0", "a", ["a"], "io"),
                                    Box("n1", "b", ["b"], "norm", cluster="c1")],
               arrows=[Arrow("n0", "n1")],
               clusters=[Cluster("c0", "s", ["s"]), Cluster("c1", "s.h", ["h"], parent="c0")])
    assert title_links(d) == [("n0", "t_c0"), ("t_c0", "t_c1"), ("t_c1", "n1")]


def test_linear_in_the_layers():
    spec = '''model m { d = 8
      block layer { residual { layernorm; attention(2, causal=true) }; residual { rmsnorm; mlp(16) } }
      stack decoder(ids) { embedding(10, d) as wte; repeat(N) layer as h; lm_head(10) } }'''
    times = {}
    for n in (200, 400):
        d = describe(build_text(spec.replace("N", str(n))), "op", unfold=True)
        runs = []
        for _ in range(3):  # the fastest of three: a busy machine stalls single runs
            t = time.perf_counter()
            title_links(d)
            runs.append(time.perf_counter() - t)
        times[n] = min(runs)
    assert times[400] < 4 * times[200] + 0.05, times  # quadratic would be 4x
