"""The PyTorch backend: IR -> readable Python source -> nn.Module.

    >>> from strata.compiler import build_text
    >>> from strata.backends.torch import generate_source
    >>> src = generate_source(build_text("model m { stack s(tokens) { embedding(10, 4) } }"))
    >>> "def build():" in src
    True

Importing this package does not import torch; `runtime` and `weights` do.
"""

from strata.backends.torch.codegen import CodegenError, generate_source

__all__ = ["CodegenError", "generate_source"]
