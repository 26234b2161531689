"""Execute generated source as a real module.

The module is registered in `sys.modules` under a unique name and its source
kept in `linecache`, so tracebacks, `inspect.getsource` and torch.compile all
see the generated code.
"""

from __future__ import annotations

import itertools
import linecache
import re
import sys
import types

_counter = itertools.count()


def load_source(source: str, name: str = "model") -> types.ModuleType:
    """Exec `source` as a fresh module `strata_generated.<name>_<n>` and return it."""
    safe = re.sub(r"\W", "_", name) or "model"
    modname = f"strata_generated_{safe}_{next(_counter)}"
    filename = f"<strata-generated {modname}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = types.ModuleType(modname)
    module.__file__ = filename
    sys.modules[modname] = module
    code = compile(source, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - our own generated source
    return module
