"""The PyTorch backend: IR -> readable Python source -> nn.Module.

    plan.py            the IR as plain data: scopes, units, live values, masks, positions
    emit.py, model.py  plans -> source: block and stack classes; the model, Config, build()
    source.py          the file being written; values as `config.d` expressions
    pysafe.py          the one place spec text becomes Python (escaping, identifiers)
    runtime.py         KV cache, masks, positions, init, generation: real code, copied in
    loader.py          exec generated source as a module;  weights_file.py  safetensors in and out

    >>> from strata.compiler import build_text
    >>> from strata.backends.torch import generate_source
    >>> src = generate_source(build_text("model m { stack s(tokens) { embedding(10, 4) } }"))
    >>> "def build(config=None, **changes):" in src
    True

Importing this package does not import torch; `runtime`, `loader` use and `weights` do.
"""

from strata.backends.torch.model import generate_source
from strata.backends.torch.plan import CodegenError

__all__ = ["CodegenError", "generate_source"]
