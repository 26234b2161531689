"""Watching the served folder (watchfiles): every change is fanned out to
the open pages as the set of names (relative to the root) that changed.

watchfiles batches the changes of one moment (its debounce: 50 ms here), so an
editor's write-to-temp-then-rename arrives as one set naming the file.
"""

from __future__ import annotations

import asyncio

import watchfiles

from strata.serve.files import Root


class Watcher:
    def __init__(self, root: Root):
        self.root = root
        self.queues: list[asyncio.Queue] = []
        self._stop: asyncio.Event | None = None

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=100)
        self.queues.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        if q in self.queues:
            self.queues.remove(q)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        self._stop = asyncio.Event()
        async for changes in watchfiles.awatch(self.root.path, debounce=50, step=20,
                                               stop_event=self._stop, recursive=True):
            names = {n for _, p in changes if (n := self.root.name_of(p)) is not None}
            # a path under a link resolves elsewhere: fall back to the plain relative name
            names |= {str(p)[len(str(self.root.path)) + 1:] for _, p in changes
                      if str(p).startswith(str(self.root.path) + "/")}
            for q in list(self.queues):
                if q.full():  # a page that stopped reading: drop its oldest batch
                    q.get_nowait()
                q.put_nowait(names)
