"""Each component kind: the module its scope constructs and the line that calls it."""

from __future__ import annotations

from strata.backends.torch import templates as T
from strata.backends.torch.analysis import CodegenError, StackInfo, Unit
from strata.compiler import ir
from strata.dsl.registry import GATED


class Lowering:
    """Mixin of Codegen: component classes and calls (uses Analysis's state)."""

    def helper(self, name: str) -> None:
        if name not in self.helpers:
            self.helpers.append(name)
            self.taken.add(name)

    def define(self, base: str, source: str) -> str:
        """Emit a class once per distinct source; return its name."""
        if source in self.classes:
            return self.classes[source]
        name, i = base, 1
        while name in self.taken:
            i += 1
            name = f"{base}{i}"
        self.taken.add(name)
        self.classes[source] = name
        self.defs.append(source.replace("{name}", name))
        return name

    def component_class(self, c: T.Component) -> str:
        """Define the component's class; return the constructor call."""
        return self.component_name(c) + f"({c.ctor})"

    def component_name(self, c: T.Component) -> str:
        for h in c.helpers:
            self.helper(h)
        source = c.source
        for dep in c.deps:
            source = source.replace("{expert}", self.component_name(dep))
        return self.define(c.base, source)

    def module_ctor(self, path: str) -> str | None:
        """The constructor expression of the module at `path` (None: no module)."""
        g, kind = self.g, self.comps[path]["kind"]
        opts = self.comps[path]["options"]
        node = g.nodes[path] if path in g else None
        info = self.stack_of(path)
        if kind == "embedding":
            a = node["attrs"]
            meta = ', device="meta"' if node["tied"] else ""
            return f"nn.Embedding({a['vocab']}, {a['dim']}{meta})"
        if kind == "position":
            if opts["kind"] == "learned":
                return f"nn.Embedding({node['attrs']['ctx']}, {node['attrs']['dim']})"
            if opts["kind"] == "sinusoidal":
                self.helper("SinusoidalPositions")
                return f"SinusoidalPositions({node['attrs']['dim']})"
            if opts["kind"] == "rotary" and info.rope:
                self.helper("RotaryEmbedding")
                return f"RotaryEmbedding({info.rope['dims']}, base={info.rope['base']!r})"
            if opts["kind"] == "alibi" and info.alibi:
                self.helper("ALiBi")
                return f"ALiBi({info.alibi})"
            return None
        if kind == "token_types":
            return f"nn.Embedding({node['attrs']['vocab']}, {node['attrs']['dim']})"
        self.check_plain(path)
        if kind in ("attention", "cross_attention"):
            fused = f"{path}.qkv" in g
            q, o, core = (g.nodes[f"{path}.{p}"] for p in ("qkv" if fused else "q", "o", "core"))
            c = T.attention(core["attrs"], q["attrs"]["in"], q["attrs"]["bias"], o["attrs"]["bias"],
                            f"{path}.q_norm" in g, mask=info.mask and not core["attrs"]["cross"],
                            cache=info.cache, fused=fused)
            return self.component_class(c)
        if kind == "mlp":
            fused = f"{path}.gate_up" in g
            up = g.nodes[f"{path}.gate_up" if fused else f"{path}.up"]["attrs"]
            down = g.nodes[f"{path}.down"]["attrs"]
            fn = g.nodes[f"{path}.act"]["attrs"]["fn"]
            drop = g.nodes[f"{path}.drop"]["attrs"]["p"] if f"{path}.drop" in g else None
            gated = fused or f"{path}.gate" in g
            return self.component_class(T.mlp(up["in"], down["in"], fn, gated, down["bias"], drop, fused))
        if f"{path}.a" in g and g.nodes[f"{path}.a"]["attrs"].get("low_rank") == "a":
            a, b = g.nodes[f"{path}.a"]["attrs"], g.nodes[f"{path}.b"]["attrs"]
            return self.component_class(T.low_rank(a["in"], a["out"], b["out"], bool(b.get("bias"))))
        if kind == "moe":
            a = node["attrs"]
            d = node["params"]["router.weight"][1]
            gated = a["act"] in GATED
            expert = T.mlp(d, a["hidden"], GATED.get(a["act"], a["act"]), gated, a["bias"], None)
            return self.component_class(T.moe(d, a, expert))
        if kind == "layernorm":
            a = node["attrs"]
            return f"nn.LayerNorm({node['params']['weight'][0]}, eps={a['eps']!r}" + \
                (", bias=False)" if not a["bias"] else ")")
        if kind == "rmsnorm":
            self.helper("RMSNorm")
            return f"RMSNorm({node['params']['weight'][0]}, eps={node['attrs']['eps']!r})"
        if kind == "dropout":
            return f"nn.Dropout({node['attrs']['p']!r})"
        if kind in ("linear", "lm_head", "classifier", "nsp_head"):
            a = node["attrs"]
            meta = ', device="meta"' if node["tied"] and not a["bias"] else ""
            return f"nn.Linear({a['in']}, {a['out']}, bias={bool(a['bias'])}{meta})"
        if kind == "activation":
            return None
        if kind == "pooler":
            fn = g.nodes[f"{path}.act"]["attrs"]["fn"] if f"{path}.act" in g else "none"
            return self.component_class(T.pooler(g.nodes[f"{path}.dense"]["attrs"]["in"], fn))
        if kind == "mlm_head":
            dense, dec = g.nodes[f"{path}.dense"]["attrs"], g.nodes[f"{path}.decoder"]["attrs"]
            return self.component_class(T.mlm_head(
                dense["in"], dec["out"], g.nodes[f"{path}.act"]["attrs"]["fn"],
                g.nodes[f"{path}.norm"]["attrs"]["eps"]))
        raise CodegenError(f"'{path}': no torch lowering for component kind '{kind}'")

    def check_plain(self, path: str) -> None:
        """Low-rank factors are lowered only for whole linear components."""
        kind = self.comps[path]["kind"]
        for n in ir.scope_nodes(self.g, path):
            if self.g.nodes[n]["attrs"].get("low_rank") and n.rpartition(".")[0] != path or \
                    self.g.nodes[n]["attrs"].get("low_rank") and kind not in (
                        "linear", "lm_head", "classifier", "nsp_head"):
                raise CodegenError(f"'{n}': the torch backend lowers low_rank only on linear, "
                                   "lm_head and classifier components")

    def comp_params(self, path: str) -> list[str]:
        kind = self.comps[path]["kind"]
        if kind != "attention":
            return []
        info = self.stack_of(path)
        return [e for e, on in (("rope", info.rope), ("mask", info.mask), ("cache", info.cache)) if on]

    def comp_call(self, u: Unit, attr: str, args: list[str], name: str, comment: str,
                  info: StackInfo, masks: dict | None = None) -> list[str]:
        kind = self.comps[u.path]["kind"]
        node = self.g.nodes[u.path] if u.path in self.g else None
        x = args[0] if args else "x"
        if kind == "embedding":
            scale = node["attrs"].get("scale")
            return [f"        {name} = self.{attr}({x})" + (f" * {scale!r}" if scale else "") + comment]
        if kind == "position":
            if node["attrs"]["type"] == "sinusoidal":
                return [f"        {name} = {x} + self.{attr}(pos, {x}.dtype){comment}"]
            return [f"        {name} = {x} + self.{attr}(pos){comment}"]
        if kind == "token_types":
            return [f"        {name} = {x} + self.{attr}({args[1]}){comment}"]
        if kind == "attention":
            core = self.g.nodes[f"{u.path}.core"]["attrs"]
            var = (masks or {}).get((core["causal"], core["window"]), "mask")
            kw = "".join(f", {e}={var if e == 'mask' else e}" for e in self.comp_params(u.path))
            return [f"        {name} = self.{attr}({x}{kw}){comment}"]
        if kind == "cross_attention":
            return [f"        {name} = self.{attr}({x}, {args[1]}){comment}"]
        if kind == "activation":
            return [f"        {name} = {T.act(node['attrs']['fn'], x)}{comment}"]
        lines = [f"        {name} = self.{attr}({x}){comment}"]
        if kind == "lm_head" and node is not None and node["attrs"].get("softcap"):
            c = node["attrs"]["softcap"]
            lines.append(f"        {name} = {c!r} * torch.tanh({name} / {c!r})  # logit soft-capping")
        return lines

    # ------------------------------------------------------------ stacks and model
