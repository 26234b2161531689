"""torch.distributed for training: one process, or N under torchrun (DDP, or
FSDP2's `fully_shard` for models that do not fit one device).

    torchrun --standalone --nproc_per_node=2 -m strata train specs/tiny_shakespeare.arch

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; the process group
uses NCCL on GPUs and gloo on CPUs.  Only rank 0 writes files.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Dist", "say", "wrap", "unwrap"]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False      # this run started the process group (and ends it)
    store: Any = None        # the group's key-value store, under "strata/" (rank_stops.py); None
                             # for a group the caller started

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls, device: str) -> "Dist":
        """Join the process group torchrun describes (none without WORLD_SIZE > 1)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        backend = "nccl" if device.startswith("cuda") else "gloo"
        local = int(os.environ.get("LOCAL_RANK", 0))
        if backend == "nccl":
            torch.cuda.set_device(local)
        # the env:// rendezvous init_process_group(backend) does, kept: its store outlives the
        # group, so a process that stopped can say so to the others (rank_stops.py)
        store, rank, world = next(dist.rendezvous("env://"))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world)
        return cls(rank, world, local, owned=True, store=dist.PrefixStore("strata/", store))

    def device(self, device: str) -> str:
        return f"cuda:{self.local_rank}" if device == "cuda" and self.on else device

    def barrier(self) -> None:
        if self.on:
            dist.barrier()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over ranks (in place; returns t)."""
        if self.on:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def share_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's bytes on every rank (as a uint8 tensor: nothing is pickled)."""
        if not self.on:
            return data or b""
        dev = "cuda" if dist.get_backend() == "nccl" else "cpu"
        n = torch.tensor([len(data or b"")], dtype=torch.int64, device=dev)
        dist.broadcast(n, 0)
        buf = torch.zeros(int(n.item()), dtype=torch.uint8, device=dev)
        if self.main:
            buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buf, 0)
        return bytes(buf.cpu().numpy())

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's equal-shaped tensor, on every rank."""
        if not self.on:
            return [t]
        dev = "cuda" if dist.get_backend() == "nccl" else "cpu"
        out = [torch.empty_like(t, device=dev) for _ in range(self.world)]
        dist.all_gather(out, t.to(dev))
        return [x.cpu() for x in out]

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


def say(d: Dist, progress: bool, text: str) -> None:
    """A line of progress on stderr, from rank 0 only, and only with `progress` on."""
    if d.main and progress:
        print(text, file=sys.stderr, flush=True)


def wrap(net: torch.nn.Module, d: Dist, g, *, fsdp: bool, find_unused: bool):
    """The model the loop calls: `net` itself, DDP(net), or net sharded in place
    with FSDP2 (each repeated block, then the whole model)."""
    if not d.on:
        return net
    if fsdp:
        from torch.distributed.fsdp import fully_shard  # lazy: torch

        for path, s in g.graph.scopes.items():
            if s["kind"] == "block":
                try:
                    fully_shard(net.get_submodule(path))
                except AttributeError:  # a block used once is inlined in its stack
                    pass
        fully_shard(net)
        return net
    from torch.nn.parallel import DistributedDataParallel as DDP  # lazy: torch

    ids = [d.local_rank] if next(net.parameters()).is_cuda else None
    return DDP(net, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)       # DDP
    return getattr(model, "_orig_mod", model)     # torch.compile
