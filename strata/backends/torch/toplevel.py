"""The model class: stacks, tied weights, GPT-2 init, forward, KV-cache generation."""

from __future__ import annotations

from strata.backends.torch.analysis import attr_path, camel, shape_comment


class TopLevel:
    """Mixin of Codegen: the model class."""

    def residual_suffixes(self) -> list[str]:
        out = set()
        for n, d in self.g.nodes(data=True):
            if d["op"] == "linear" and d["attrs"].get("role") in ("o", "down") and d["component"]:
                comp = d["component"].rsplit(".", 1)[-1]
                out.add(f".{comp}{n[len(d['component']):]}.weight")
        return sorted(out)

    def model_class(self, stack_classes: dict[str, str]) -> str:
        g = self.g
        stacks = g.graph["stacks"]
        single = len(stacks) == 1
        last = stacks[-1]
        tied = {f"{n}.{k}": t for n in self.order for k, t in g.nodes[n]["tied"].items()}
        init = ["    def __init__(self):", "        super().__init__()"]
        init += [f"        self.{s['name']} = {stack_classes[s['name']]}()" for s in stacks]
        if tied:
            init.append("        # tied weights: one Parameter, saved once under the name it is tied to")
            for dst, src in tied.items():
                init.append(f"        self.{attr_path(dst)} = self.{attr_path(src)}")
            init += ["        self.register_state_dict_post_hook(drop_tied)",
                     "        self.register_load_state_dict_pre_hook(fill_tied)"]
            self.helper("tied_hooks")
        init.append("        self.init_weights()")

        # forward
        names_seen: dict[str, int] = {}
        ins = {s["name"]: self.stack_inputs(s) for s in stacks}
        for s in stacks:
            for i in ins[s["name"]]:
                names_seen[i] = names_seen.get(i, 0) + 1
        def top(stack, i):
            return f"{stack}_{i}" if names_seen[i] > 1 else i
        required, optional = [], []
        for s in stacks:
            for i in ins[s["name"]]:
                (optional if g.nodes[f"{s['name']}.{i}"]["attrs"].get("optional") else required).append((s["name"], i))
        info = self.info[last["name"]]
        params = ["self"] + [top(s, i) for s, i in required] + [f"{top(s, i)}=None" for s, i in optional]
        if single and info.padding:
            params.append("attention_mask=None")
        if single and info.cache:
            params += ["cache=None", "start_pos=None"]
        branches = [k for k in self.outputs if k != "output"]
        params.append("return_dict=False")
        fwd = [f"    def forward({', '.join(params)}):"]
        if single and info.cache:
            fwd += ["        past = cache.start() if cache is not None else 0",
                    "        start_pos = past if start_pos is None else start_pos"]
        out_var: dict[str, str] = {}
        for k, s in enumerate(stacks):
            consumers = [m for t in stacks for m, src in t["memory"].items() if src == s["name"]]
            if s is last:
                role = g.nodes[s["output"]]["attrs"].get("role")
                var = "logits" if role == "lm_head" else "x"
            else:
                var = consumers[0] if consumers else f"{s['name']}_out"
            out_var[s["name"]] = var
            call = [top(s["name"], i) for i in ins[s["name"]]
                    if not g.nodes[f"{s['name']}.{i}"]["attrs"].get("optional")]
            call += [out_var[src] for src in s["memory"].values()]
            call += [f"{i}={top(s['name'], i)}" for i in ins[s["name"]]
                     if g.nodes[f"{s['name']}.{i}"]["attrs"].get("optional")]
            si = self.info[s["name"]]
            if single and si.padding:
                call.append("attention_mask=attention_mask")
            if single and si.cache:
                call += ["cache=cache", "start_pos=start_pos"]
            mine = [b for b in branches if self.outputs[b].startswith(s["name"] + ".")]
            lhs = ", ".join([var] + mine)
            fwd.append(f"        {lhs} = self.{s['name']}({', '.join(call)})"
                       + shape_comment(s["shape"]))
        main = out_var[last["name"]]
        fwd += ["        if return_dict:",
                "            return {" + ", ".join([f'"output": {main}'] + [f'"{b}": {b}' for b in branches]) + "}",
                f"        return {main}"]

        suffixes = self.residual_suffixes()
        depth = max([r["count"] for r in g.graph["repeats"]] or [1])
        initw = [
            "    def init_weights(self):",
            '        """GPT-2\'s init: N(0, 0.02) weights, zero biases, unit norm scales; the',
            '        projections into the residual stream shrunk by 1/sqrt(2 * layers)."""',
            f"        residual = {tuple(suffixes)!r}",
            "        for name, p in self.named_parameters():",
            "            if name.endswith(\"bias\"):",
            "                nn.init.zeros_(p)",
            "            elif p.dim() == 1:",
            "                nn.init.ones_(p)",
            "            elif name.endswith(residual):",
            f"                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * {depth}))",
            "            else:",
            "                nn.init.normal_(p, mean=0.0, std=0.02)",
        ]
        gen = []
        if single and info.cache and g.nodes[last["output"]]["attrs"].get("role") == "lm_head":
            self.helper("KVCache")
            gen = ["", "    def new_cache(self):",
                   '        """An empty KVCache: model(ids, cache=cache) then model(next_ids, cache=cache)."""',
                   "        return KVCache()",
                   "", "    @torch.no_grad()",
                   "    def generate(self, ids, max_new_tokens, temperature=0.0, top_k=None):",
                   '        """Append max_new_tokens tokens to ids (B, T): greedy when temperature is 0,',
                   '        else sampled (from the top_k most likely); keys and values are cached."""',
                   "        cache = KVCache()",
                   "        logits = self(ids, cache=cache)[:, -1, :]  # (B, vocab)",
                   "        for i in range(max_new_tokens):",
                   "            if temperature == 0:",
                   "                nxt = logits.argmax(dim=-1, keepdim=True)  # (B, 1)",
                   "            else:",
                   "                logits = logits / temperature",
                   "                if top_k is not None:",
                   "                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]",
                   "                    logits = logits.masked_fill(logits < kth, float(\"-inf\"))",
                   "                nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)",
                   "            ids = torch.cat((ids, nxt), dim=1)",
                   "            if i + 1 < max_new_tokens:",
                   "                logits = self(nxt, cache=cache)[:, -1, :]",
                   "        return ids"]
        doc = f'    """{g.graph["name"]}: {g.graph.get("parameters", 0):,} parameters."""'
        body = ["class {name}(nn.Module):", doc]
        if tied:
            body.append(f"    tied_weights = {tied!r}")
        body += ["", *init, "", *initw, "", *fwd, *gen]
        base = camel(g.graph["name"])
        if base in self.taken:
            base += "Model"
        return self.define(base, "\n".join(body) + "\n")
