"""Everything a checkpoint holds, saved from and restored into the model as the
loop runs it: plain, DDP, or sharded with FSDP2 (full state dicts either way,
so N processes' checkpoint resumes on M).

    state = TrainState(run_dir, net, opt, dist, device, fsdp_graph=None)
    start, best = state.restore(ckpt, seed)      # weights were loaded before wrapping
    state.save(step, best, is_best, {"data": ...})
    with state.writes():                        # a full disk: one line naming the checkpoint kept
        loop.run()
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from strata.errors import TrainingError, UsageError, WriteError
from strata.train.checkpoint import Checkpoint, find_checkpoint, prune, save_checkpoint, set_pointer
from strata.train.distributed import Dist
from strata.train.models import compile_model, save_weights

__all__ = ["TrainState"]


def _opt_state_fits(osd: dict, net) -> bool:
    want = {k: tuple(p.shape) for k, p in net.named_parameters() if p.requires_grad}
    for name, st in osd["state"].items():
        t = st.get("exp_avg", st.get("momentum_buffer"))
        if name not in want or (isinstance(t, torch.Tensor) and tuple(t.shape) != want[name]):
            return False
    return True


def _optimizer_kind(groups: list[dict]) -> str | None:
    """adamw (its groups hold betas) or sgd (momentum): the two the train section makes."""
    keys = set().union(*(g.keys() for g in groups)) if groups else set()
    return "adamw" if "betas" in keys else "sgd" if "momentum" in keys else None


class TrainState:
    def __init__(self, out: Path, net, opt, d: Dist, device: str, fsdp_graph=None, say=print):
        self.out, self.net, self.opt, self.d, self.device, self.say = out, net, opt, d, device, say
        self.full = StateDictOptions(full_state_dict=True, cpu_offload=True) if d.on else StateDictOptions()
        # FSDP2 shards the parameters in place: a meta-device twin takes the gathered
        # full state dict so that `save_weights` (spec names, ties once) can write it.
        self.shadow = compile_model(fsdp_graph, device="meta") if fsdp_graph is not None else None

    def restore(self, ckpt: Checkpoint, seed: int) -> tuple[int, float | None]:
        """Optimizer state and RNG states of `ckpt`; (step, best validation loss)."""
        d = self.d
        osd, rng = ckpt.optimizer()
        was, now = _optimizer_kind(osd["param_groups"]), _optimizer_kind(self.opt.param_groups)
        if was != now:  # torch would load the other one's groups: KeyError 'betas' at the first step
            self.say(f"resume: the checkpoint holds {was or 'another optimizer'}'s state and the run now "
                     f"trains with {now}; the optimizer starts afresh")
        elif _opt_state_fits(osd, self.net):
            # the state as saved, the settings as given now: loading replaces the groups, so a
            # weight_decay or betas changed on --resume (and written into run.json) was ignored
            settings = [{k: v for k, v in g.items() if k != "params"} for g in self.opt.param_groups]
            set_optimizer_state_dict(self.net, self.opt, osd,
                                     options=StateDictOptions(full_state_dict=True) if d.on else None)
            for group, own in zip(self.opt.param_groups, settings):
                group.update(own)
        else:
            self.say("resume: the optimizer state does not fit the model (its passes or frozen parts "
                     "changed); the optimizer starts afresh")
        if f"torch/{d.rank}" in rng:
            torch.set_rng_state(rng[f"torch/{d.rank}"])
        else:  # more processes than the checkpoint had
            torch.manual_seed(seed * 1000 + d.rank + ckpt.step)
        if self.device.startswith("cuda") and f"cuda/{d.rank}" in rng:
            torch.cuda.set_rng_state(rng[f"cuda/{d.rank}"])
        self.say(f"resume: from step {ckpt.step} ({ckpt.path})")
        return ckpt.step, ckpt.state.get("best_val")

    def _weights_model(self):
        if self.shadow is not None:
            sd = get_model_state_dict(self.net, options=self.full)  # every rank takes part
            if self.d.main:
                self.shadow.load_state_dict(sd, assign=True)
            return self.shadow
        return self.net

    def save(self, step: int, best_val: float | None, is_best: bool, extra: dict) -> None:
        """A checkpoint of `step` (collective: every rank calls it; rank 0 writes)."""
        d = self.d
        osd = get_optimizer_state_dict(self.net, self.opt, options=self.full)
        rng = {f"torch/{r}": t for r, t in enumerate(d.gather(torch.get_rng_state()))}
        if self.device.startswith("cuda"):
            rng.update({f"cuda/{r}": t for r, t in
                        enumerate(d.gather(torch.cuda.get_rng_state().to(self.device)))})
        model = self._weights_model()
        if d.main:
            state = {"best_val": best_val, "world_size": d.world, **extra}
            rel = save_checkpoint(self.out, step, lambda p: save_weights(model, p), osd, rng, state)
            set_pointer(self.out, "latest", rel)
            if is_best:
                set_pointer(self.out, "best", rel, val_loss=best_val)
            prune(self.out)
        d.barrier()

    def save_final(self, path: Path) -> None:
        """The weights at the end of the run (after the last checkpoint, so the FSDP
        twin already holds them), written to a fresh file renamed onto `path`: a
        symlink planted there is replaced, never written through."""
        if self.d.main:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)  # the mode the new file keeps: the user's umask
            try:
                save_weights(self.shadow if self.shadow is not None else self.net, tmp)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    @contextlib.contextmanager
    def writes(self):
        """A write that fails — a full disk, the file-size limit (ulimit -f), a
        quota — is one line naming the checkpoint that is kept, not a traceback.
        Any other UsageError (a user's mistake found in the loop) keeps its own
        message: it was said as 'cannot write the run's files (...)'."""
        from safetensors import SafetensorError  # lazy: torch

        try:
            yield
        except (OSError, SafetensorError, WriteError) as e:
            code = re.search(r"os error (\d+)", str(e))  # safetensors' own I/O error
            reason = (getattr(e, "strerror", None) or (os.strerror(int(code[1])) if code else None)
                      or str(e).splitlines()[0][:300])
            try:
                ckpt = find_checkpoint(self.out)
            except UsageError:
                ckpt = None
            kept = (f"the last complete checkpoint, step {ckpt.step} ({ckpt.path}), is kept: free "
                    "some space (or raise the file-size limit) and continue with --resume"
                    if ckpt else "no checkpoint had been written yet")
            raise TrainingError(f"{self.out}: cannot write the run's files ({reason}); "
                                f"{kept}") from None
