"""`strata export --to hf` of a spec that is no transformers family: a Hugging
Face repository with custom code, loaded with `trust_remote_code=True`.

    OUT/strata_model.py           the readable module `strata compile` writes (torch alone;
                                  its runtime helpers copied in, every spec string escaped
                                  by strata.backends.torch.pysafe)
    OUT/configuration_strata.py   StrataConfig (a PretrainedConfig)     } copied from strata/interop/hf/
    OUT/modeling_strata.py        StrataForCausalLM / StrataModel       } remote_code (+ a hash line)
    OUT/config.json               model_type "strata", auto_map, strata_variables (the spec's)
    OUT/model.safetensors         the generated module's weights under `model.`

An LM head maps to `AutoModelForCausalLM` (generate() works); any other head
to `AutoModel`, whose output holds every output of the spec by name.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import torch

from strata.backends.torch.compile import compile_graph
from strata.backends.torch.source import config_fields
from strata.backends.torch.model_tensors import tied_names
from strata.train.export_quantized import ExportError, code_tensors

REMOTE = ("configuration_strata.py", "modeling_strata.py")
SOURCE = "strata_model.py"




def remote_file(name: str) -> str:
    """A file of strata/interop/hf/remote_code (package data: never imported here)."""
    return resources.files("strata.interop.hf").joinpath("remote_code", name).read_text()


def code_files(g, weights_file, causal: bool, packed=None) -> tuple[dict[str, str], dict]:
    """(file name -> text, tensors) of the custom-code repository for graph `g`;
    packed: its compressed checkpoint (strata.train.export_quantized), whose
    quantized linears go out in the compressed-tensors form, on the module
    compiled without the quantize passes."""
    quantization = None
    if packed is not None:
        g = g.copy()
        g.graph.passes = [p for p in g.graph.get("passes", []) if p["name"] != "quantize"]
        net = compile_graph(g, quantize=False)
        tensors, quantization = code_tensors(packed, net.state_dict(), tied_names(net))
    else:
        net = compile_graph(g, weights=weights_file, quantize=False)
    source = net.strata_source
    for step in ("quantize", "sparsify"):  # kernels outside torch: not a self-contained file
        if f"\ndef {step}(" in source:
            names = ", ".join(p["name"] for p in g.graph.get("passes", []))
            raise ExportError(f"model {g.graph['name']}: passes {{ {names} }}: {step} kernels need "
                              "strata (torchao) at load time; export its `strata compress` output (compressed-tensors) "
                              "or the model before that pass")
    if packed is None:
        tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    bad = sorted(k for k, v in tensors.items() if not v.is_floating_point()) if packed is None else []
    if bad:
        raise ExportError(f"{bad[0]}: quantized weights ({tensors[bad[0]].dtype}) that are not a "
                          "`strata compress` output's packed form: export the float model")
    fields = config_fields(g.graph.vars, g.graph.get("var_syms", {}))
    variables = {f.name: f.value for f in fields if f.derived is None}
    arch = "StrataForCausalLM" if causal else "StrataModel"
    auto = "AutoModelForCausalLM" if causal else "AutoModel"
    layers = 0
    if causal and hasattr(net, "new_cache"):  # how many self-attentions one step caches
        cache = net.new_cache(None)
        with torch.no_grad():
            net(torch.zeros(1, 1, dtype=torch.long), cache=cache)
        layers = len(cache.layers)
    config = {"model_type": "strata", "architectures": [arch], "num_hidden_layers": layers,
              "auto_map": {"AutoConfig": "configuration_strata.StrataConfig",
                           auto: f"modeling_strata.{arch}"},
              "strata_variables": variables, "strata_outputs": list(g.graph.get("outputs", {}) or ["output"]),
              "strata_model": g.graph.name}
    if quantization is not None:
        config["quantization_config"] = quantization
    files = {SOURCE: source, **{name: remote_file(name) for name in REMOTE}}
    # transformers registers a remote model class under its config class, and a config
    # class is one per file hash: two exports' identical configuration files would
    # make the second load build the first one's model.  This line makes each its own.
    files[REMOTE[0]] += f"\n# for strata_model.py sha256:{hashlib.sha256(source.encode()).hexdigest()}\n"
    return files | {"_config": json.dumps(config)}, tensors
