"""`strata export --to hf` of a spec that is no transformers family: a Hugging
Face repository with custom code, loaded with `trust_remote_code=True`.

    OUT/strata_model.py           the readable module `strata compile` writes (torch alone;
                                  its runtime helpers copied in, every spec string escaped
                                  by strata.backends.torch.pysafe)
    OUT/configuration_strata.py   StrataConfig (a PretrainedConfig)     } copied verbatim from
    OUT/modeling_strata.py        StrataForCausalLM / StrataModel       } strata/interop/hf/remote_code
    OUT/config.json               model_type "strata", auto_map, strata_variables (the spec's)
    OUT/model.safetensors         the generated module's weights under `model.`

An LM head maps to `AutoModelForCausalLM` (generate() works); any other head
to `AutoModel`, whose output holds every output of the spec by name.
"""

from __future__ import annotations

import json
from importlib import resources

from strata.backends.torch.compile import compile_graph
from strata.backends.torch.source import config_fields
from strata.errors import UsageError

REMOTE = ("configuration_strata.py", "modeling_strata.py")
SOURCE = "strata_model.py"


class ExportError(UsageError):
    """A model the target cannot take: one line naming the component and the reason."""


def remote_file(name: str) -> str:
    """A file of strata/interop/hf/remote_code (package data: never imported here)."""
    return resources.files("strata.interop.hf").joinpath("remote_code", name).read_text()


def code_files(g, weights_file, causal: bool) -> tuple[dict[str, str], dict]:
    """(file name -> text, tensors) of the custom-code repository for graph `g`."""
    net = compile_graph(g, weights=weights_file, quantize=False)
    source = net.strata_source
    for step in ("quantize", "sparsify"):  # kernels outside torch: not a self-contained file
        if f"\ndef {step}(" in source:
            names = ", ".join(p["name"] for p in g.graph.get("passes", []))
            raise ExportError(f"model {g.graph['name']}: passes {{ {names} }}: {step} kernels need "
                              "strata (torchao) at load time; export the model before that pass")
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    bad = sorted(k for k, v in tensors.items() if not v.is_floating_point())
    if bad:
        raise ExportError(f"{bad[0]}: quantized weights ({tensors[bad[0]].dtype}); export of quantized "
                          "models is not supported yet: export the float model")
    fields = config_fields(g.graph["vars"], g.graph.get("var_syms", {}))
    variables = {f.name: f.value for f in fields if f.derived is None}
    arch = "StrataForCausalLM" if causal else "StrataModel"
    auto = "AutoModelForCausalLM" if causal else "AutoModel"
    config = {"model_type": "strata", "architectures": [arch],
              "auto_map": {"AutoConfig": "configuration_strata.StrataConfig",
                           auto: f"modeling_strata.{arch}"},
              "strata_variables": variables, "strata_outputs": list(g.graph.get("outputs", {}) or ["output"]),
              "strata_model": g.graph["name"]}
    files = {SOURCE: source, **{name: remote_file(name) for name in REMOTE}}
    return files | {"_config": json.dumps(config)}, tensors
