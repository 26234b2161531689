"""Samples from a run, on the page's request: `strata generate` in a worker
thread, one at a time for the whole server, bounded in tokens and prompt.

The only place `strata serve` imports torch (lazily, on the first sample):
checking, drawing and the loss curves never do.
"""

from __future__ import annotations

import math
import time

from strata.errors import SpecError, TrainingError, UsageError
from strata.serve.files import Root

MAX_TOKENS = 500       # new tokens a sample may ask for
MAX_PROMPT = 4000      # characters of prompt


def sample(root: Root, run: str, prompt: str, tokens: int, temperature: float, seed: int | None) -> dict:
    """{"run", "text", "seconds"} or {"run", "error"}: what `strata generate RUN` prints."""
    if not 1 <= tokens <= MAX_TOKENS:
        return {"run": run, "error": f"tokens should be 1 to {MAX_TOKENS}, got {tokens}"}
    if len(prompt) > MAX_PROMPT:
        return {"run": run, "error": f"the prompt is longer than {MAX_PROMPT:,} characters"}
    if not math.isfinite(temperature) or not 0 <= temperature <= 10:
        return {"run": run, "error": f"temperature should be 0 (greedy) to 10, got {temperature}"}
    folder = root.resolve(run)  # Refused outside the served folder
    from strata.backends.torch.weights_file import WeightsError  # lazy: torch
    from strata.train.run import open_source  # lazy: torch

    t = time.perf_counter()
    try:
        text = open_source(folder).generate(prompt or "\n", tokens=tokens, temperature=temperature, seed=seed)
    except (UsageError, SpecError, TrainingError, WeightsError) as e:
        return {"run": run, "error": str(e).splitlines()[0] if str(e) else type(e).__name__}
    return {"run": run, "text": text, "seconds": round(time.perf_counter() - t, 3)}
