"""The ASGI app of `strata serve` (starlette): the page, its bundled assets,
the served folder's files (read-only, under the root only), and one
WebSocket per page.

WebSocket messages, JSON both ways:

    page -> server   {"type": "open", "file": NAME, "toggled": [KEY...], "after": false}
                     {"type": "edit", "text": TEXT}       written to disk (atomic), then checked
                     {"type": "view", "toggled": [...], "after": true}   fold / passes changed
                     {"type": "run", "names": [RUN...]}  watch these runs' curves
                     {"type": "sample", "run", "prompt", "tokens", "temperature"}   strata generate
                     {"type": "compare", "a": NAME, "b": NAME}   two specs side by side
    server -> page   {"type": "text", "file", "text"}     the file changed on disk
                     {"type": "view", ...render.Checked.view}
                     {"type": "runs", "runs": [runs.run_view...]}
                     {"type": "sample", "run", "text" | "error"}
                     {"type": "compare", "a": view, "b": view, "diff": compare.diff}
                     {"type": "error", "message"}

Checking runs in one worker thread for the whole server (a hostile spec
holds one thread, bounded by the compiler's own limits, never the event
loop); edits that arrive while one is checked are coalesced to the newest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from strata.dsl.clean import MAX_SPEC_BYTES
from strata.errors import UsageError
from strata.serve.compare import diff
from strata.serve.files import Refused, Root
from strata.serve.guard import LOCAL_NAMES, LocalOnly
from strata.serve.render import Checked
from strata.serve.runs import find_runs, run_view
from strata.serve.samples import sample
from strata.serve.watch import Watcher

STATIC = Path(__file__).parent / "static"
# One WebSocket message: an edit holds a spec of at most MAX_SPEC_BYTES, which JSON
# escaping makes at most 6 times longer (a control character is `\u0001`).
MAX_MESSAGE = 8 * MAX_SPEC_BYTES
MAX_TOGGLED = 10_000
MAX_CHECKED = 8         # files whose last check is kept


class Workbench:
    """Shared by every page: the root, the last check of each file, the watcher."""

    def __init__(self, root: Root):
        self.root = root
        self.checked: dict[str, Checked] = {}     # file name -> its last check
        self.limiter = anyio.CapacityLimiter(1)   # one check at a time
        self.sampling = anyio.Lock()              # one sample at a time (a model on the CPU)
        self.watcher = Watcher(root)

    async def check(self, name: str, text: str) -> Checked:
        last = self.checked.pop(name, None)
        if last is not None and last.text == text:
            self.checked[name] = last  # now the most recently used
            return last
        path = str(self.root.resolve(name))
        c = await anyio.to_thread.run_sync(Checked.of, text, path, self.root.path, limiter=self.limiter)
        self.checked[name] = c
        while len(self.checked) > MAX_CHECKED:  # a 70B graph is tens of MB: keep the last few files
            self.checked.pop(next(iter(self.checked)))
        return c

    async def view(self, c: Checked, toggled: set[str], after: bool) -> dict:
        v = await anyio.to_thread.run_sync(c.view, toggled, after, limiter=self.limiter)
        return {"type": "view", **v, "file": self.root.name_of(c.name) or c.name}


def create_app(root: Root, host: str = "127.0.0.1") -> Starlette:
    """The app for `root`, answering requests addressed to `host` (or a loopback name)."""
    bench = Workbench(root)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def listing(request: Request) -> Response:
        return JSONResponse({"root": str(root.path), "file": root.file, "specs": root.specs(),
                             "runs": find_runs(root)})

    async def raw(request: Request) -> Response:
        """A file of the served folder, as text (nothing outside it, nothing but regular files)."""
        try:
            return PlainTextResponse(root.read_text(request.path_params["name"]))
        except (Refused, UsageError) as e:
            return PlainTextResponse(f"refused: {e}\n", status_code=403)

    async def missing(request: Request) -> Response:
        return PlainTextResponse("not found\n", status_code=404)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(bench.watcher.run())
        yield
        bench.watcher.stop()
        task.cancel()

    routes = [Route("/", index), Route("/api/files", listing), Route("/files/{name:path}", raw),
              WebSocketRoute("/ws", lambda ws: Page(bench, ws).run()),
              Mount("/static", StaticFiles(directory=STATIC)), Route("/{rest:path}", missing)]
    names = LOCAL_NAMES | {host.lower() if ":" not in host else f"[{host.lower()}]"}
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(LocalOnly, names=names)])


class Page:
    """One open page: which file, which folds, before or after passes."""

    def __init__(self, bench: Workbench, ws: WebSocket):
        self.bench, self.ws = bench, ws
        self.file: str | None = None
        self.text = ""
        self.toggled: set[str] = set()
        self.after = False
        self.runs: list[str] = []
        self.pair: tuple[str, str] | None = None   # the two specs compared
        self.wake = asyncio.Event()   # something to check or draw
        self.dirty = False
        self.saving: asyncio.Task | None = None
        # (file, Root.identity) of this page's last writes, each told before its rename (from
        # the writing thread): a watcher's report of any of them is the page's own save
        self.written: collections.deque[tuple[str, tuple]] = collections.deque(maxlen=8)

    async def save(self) -> None:
        """Write the page's newest text to disk (atomic, fsynced: in a thread of its
        own, beside the check rather than before it); edits made meanwhile are
        written next, so the file ends as the page's last text."""
        try:
            while True:
                name, text = self.file, self.text
                await anyio.to_thread.run_sync(self.bench.root.write_text, name, text,
                                               lambda ident, name=name: self.written.append((name, ident)))
                if (name, text) == (self.file, self.text):
                    return
        except (Refused, UsageError, OSError) as e:
            await self.send({"type": "error", "message": f"not saved: {e}"})
        finally:
            self.saving = None

    async def run(self) -> None:
        await self.ws.accept()
        changes = self.bench.watcher.subscribe()
        worker = asyncio.create_task(self.work())
        disk = asyncio.create_task(self.follow(changes))
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    await self.send({"type": "error", "message": "expected a JSON text message"})
                    continue
                if len(raw) > MAX_MESSAGE:  # refused before it is decoded
                    await self.send({"type": "error", "message": f"a message of {len(raw):,} characters "
                                     f"is more than {MAX_MESSAGE:,}; a spec is at most {MAX_SPEC_BYTES:,} bytes"})
                    continue
                try:
                    msg = json.loads(raw)
                    if not isinstance(msg, dict):
                        raise ValueError("expected a JSON object")
                    await self.handle(msg)
                except (Refused, UsageError, ValueError, TypeError, KeyError, RecursionError) as e:
                    await self.send({"type": "error", "message": str(e)})
        except WebSocketDisconnect:
            pass
        finally:
            self.bench.watcher.unsubscribe(changes)
            worker.cancel()
            disk.cancel()
            if self.saving is not None:  # the page's last edit reaches the disk though the page closed
                with anyio.CancelScope(shield=True):
                    await self.saving

    async def send(self, msg: dict) -> None:
        try:
            await self.ws.send_text(json.dumps(msg))
        except (WebSocketDisconnect, RuntimeError):
            pass

    async def handle(self, msg: dict) -> None:
        kind = msg.get("type")
        if "toggled" in msg:
            self.toggled = {str(k) for k in list(msg["toggled"])[:MAX_TOGGLED]}
        if "after" in msg:
            self.after = bool(msg["after"])
        if kind == "open":
            self.file = str(msg["file"])
            self.text = self.bench.root.read_text(self.file)
            await self.send({"type": "text", "file": self.file, "text": self.text})
        elif kind == "edit" and self.file is not None:
            text = str(msg["text"])
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > MAX_SPEC_BYTES:  # neither saved nor checked: the page keeps it, and is told
                await self.send({"type": "error", "message": f"not saved: the text is {size:,} bytes, "
                                 f"more than a spec may be ({MAX_SPEC_BYTES:,})"})
                return
            if text != self.text:
                self.text = text
                self.saving = self.saving or asyncio.create_task(self.save())
        elif kind == "compare":
            self.pair = (str(msg["a"]), str(msg["b"]))
            await self.send_compare()
            return
        elif kind == "sample":
            asyncio.create_task(self.sample(msg))
            return
        elif kind == "run":
            self.runs = [str(n) for n in list(msg["names"])[:20]]
            await self.send_runs()
            return
        elif kind != "view":
            return
        self.dirty = True
        self.wake.set()

    async def work(self) -> None:
        """Check and draw the newest text; edits made meanwhile wait for the next round."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            if not self.dirty or self.file is None:
                continue
            self.dirty = False
            c = await self.bench.check(self.file, self.text)
            if self.dirty:  # a newer edit came in: check that one instead
                continue
            await self.send(await self.bench.view(c, set(self.toggled), self.after))

    async def follow(self, changes: asyncio.Queue) -> None:
        """The served folder changed on disk: a new text for the open file, new curves."""
        while True:
            names = await changes.get()
            if self.file in names:
                try:
                    mine = (self.file, self.bench.root.identity(self.file)) in self.written
                    text = self.bench.root.read_text(self.file)
                except (Refused, UsageError):
                    continue  # deleted or replaced by something else: keep the page's text
                # the file as this page last wrote it (its own save, reported while a newer edit is on
                # its way to disk) is not another editor's change: taking it would undo what was typed
                if text != self.text and not mine:
                    self.text = text
                    await self.send({"type": "text", "file": self.file, "text": text})
                    self.dirty = True
                    self.wake.set()
            if self.pair and names & set(self.pair):
                await self.send_compare()
            if self.runs and any(n.endswith(("metrics.jsonl", "run.json")) for n in names):
                await self.send_runs()

    async def sample(self, msg: dict) -> None:
        """`strata generate` on a run of the folder; a second request waits its turn."""
        run = str(msg.get("run", ""))
        seed = msg.get("seed")
        async with self.bench.sampling:
            try:
                out = await anyio.to_thread.run_sync(
                    sample, self.bench.root, run, str(msg.get("prompt", "")), int(msg.get("tokens", 100)),
                    float(msg.get("temperature", 0.8)), seed if isinstance(seed, int) else None)
            except (Refused, ValueError, TypeError, OverflowError) as e:  # OverflowError: int(1e400)
                out = {"run": run, "error": str(e)}
        await self.send({"type": "sample", **out})

    async def send_compare(self) -> None:
        """Both specs as on disk, folded, before or after passes as the page shows
        them, and the difference of their numbers and structure."""
        views = []
        for name in self.pair:
            try:
                c = await self.bench.check(name, self.bench.root.read_text(name))
            except (Refused, UsageError) as e:
                await self.send({"type": "error", "message": str(e)})
                return
            views.append(await self.bench.view(c, set(), self.after))
        a, b = views
        out = {"type": "compare", "a": a, "b": b}
        if a["ok"] and b["ok"]:
            out["diff"] = diff(a, b)
        await self.send(out)

    async def send_runs(self) -> None:
        views = []
        for name in self.runs:
            try:
                views.append(await anyio.to_thread.run_sync(run_view, self.bench.root, name))
            except (Refused, UsageError) as e:
                await self.send({"type": "error", "message": str(e)})
        await self.send({"type": "runs", "runs": views})
