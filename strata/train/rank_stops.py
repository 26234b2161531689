"""Which process of a torchrun stopped the run, said once and truly.

When one process fails alone (an error at its first step that only it hits,
out of memory on its GPU), the others learn it only as a broken collective —
gloo's `Connection closed by peer` — which is no bug in strata and names
nobody.  So every process that stops records why in the process group's store
(`Dist.store`, which outlives the group) before it leaves the group:

    strata/stopped/R = own    R stopped on its own error
    strata/stopped/R = peer   R's collective broke: another process had stopped

A process whose collective broke raises `PeerStopped` naming the ranks that
stopped on their own.  Rank 0 speaks for all (the same spec, data and loss give
every rank the same error), so another rank keeps its own error to itself
unless rank 0 says it stopped for a peer: then that error is this rank's alone
and is printed (`alone`).  Rank 0 records its verdict only once the folder is
as it should be (an --overwrite's old run put back), and the failed rank waits
for it before it exits — torchrun stops the others (SIGTERM) as soon as one exits.

    raise stopping(d, e)       # in train()'s error path, after the folder is cleaned up
"""

from __future__ import annotations

import datetime
import gc
import traceback

import torch.distributed as dist

from strata.errors import SpecError, TrainingError, UsageError

__all__ = ["PeerStopped", "alone", "stopping"]

OWN, PEER = b"own", b"peer"
VERDICT_WAIT_S = 20  # how long a failed rank waits for rank 0's verdict before it speaks anyway


class PeerStopped(TrainingError):
    """This process stopped because another process of the run did."""


def alone(e: BaseException) -> bool:
    """Whether `e`, raised on a rank other than 0, is that rank's alone (to print)."""
    return getattr(e, "strata_alone", False)


def _broken_collective(e: BaseException) -> bool:
    """A collective that failed because a peer left: NCCL's are DistErrors, gloo's
    RuntimeErrors naming gloo's source ('.../gloo/transport/tcp/pair.cc: Connection
    closed by peer')."""
    if isinstance(e, (SpecError, UsageError, TrainingError)):
        return False
    return isinstance(e, dist.DistError) or "gloo" in str(e)


def _key(rank: int) -> str:
    return f"stopped/{rank}"


def _record(d, what: bytes) -> None:
    try:
        d.store.set(_key(d.rank), what)
    except (RuntimeError, OSError):  # the store's host is gone: nobody is left to tell
        pass


def _stopped_on_their_own(d) -> list[int]:
    ranks = []
    for r in range(d.world):
        try:
            if r != d.rank and d.store.check([_key(r)]) and d.store.get(_key(r)) == OWN:
                ranks.append(r)
        except (RuntimeError, OSError):
            break
    return ranks


def _peer_stopped(ranks: list[int], e: BaseException) -> PeerStopped:
    if ranks:
        who = ", ".join(map(str, ranks))
        return PeerStopped(f"another process of this run (rank {who}) stopped, so this one did: "
                           f"rank {who}'s own error says why")
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return PeerStopped(f"another process of this run stopped, so this one did ({first}); "
                       "torchrun's report says which, and its own output why")


def stopping(d, e: Exception) -> Exception:
    """What this process raises for `e`: `PeerStopped` if its collective broke under
    it, else `e` (on a rank other than 0, marked `alone` when rank 0 stopped for it).
    Called with the run folder already cleaned up (rank 0's verdict means it is)."""
    if not d.on or d.store is None:
        return e
    if _broken_collective(e):
        _record(d, PEER)
        return _peer_stopped(_stopped_on_their_own(d), e)
    _record(d, OWN)
    if not d.main:
        # leave the group now, so that rank 0's collective breaks (gloo) and it gives its
        # verdict: the model, alive in the traceback's frames, holds the group open till then
        traceback.clear_frames(e.__traceback__)
        gc.collect()
        d.close()
        try:
            d.store.wait([_key(0)], datetime.timedelta(seconds=VERDICT_WAIT_S))
            e.strata_alone = d.store.get(_key(0)) == PEER
        except (RuntimeError, OSError):  # no verdict: said twice rather than never
            e.strata_alone = True
    return e
