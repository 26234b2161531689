"""`strata serve`: the browser workbench (optional extra `strata[serve]`:
starlette, uvicorn, watchfiles).  A spec's editor, its errors as you type,
its diagram folded and unfolded on a click, its summary, and the loss curves
of runs, all from one local page.  See docs/serve.md.

    files.py   what may be read and written: files under the served folder only
    render.py  one spec text -> diagnostics, SVG, hovers, summary, passes (no torch)
    svg.py     strata's diagram layout drawn as SVG with per-click folds
    runs.py    metrics.jsonl curves and run.json settings of the runs under the folder
    samples.py strata generate on a run, on request (the only lazy torch import)
    compare.py two specs side by side: their numbers and summary rows, aligned
    watch.py   watchfiles: changes on disk fanned out to the open pages
    guard.py   only the page itself is answered (Host and WebSocket Origin checked)
    app.py     the starlette app: the page, its bundled assets, the WebSocket
    static/    index.html, app.js, style.css and the CodeMirror 6 bundle (frontend/ builds it)
"""

from __future__ import annotations

import os
import sys

from strata.errors import UsageError
from strata.serve.files import Root

LOCAL = ("127.0.0.1", "localhost", "::1")


def serve(path: str = ".", *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False) -> int:
    """Serve `path` (a spec, a folder of specs, a run folder) until interrupted."""
    try:
        import starlette  # noqa: F401  # lazy: optional
        import uvicorn  # lazy: optional
        import watchfiles  # noqa: F401  # lazy: optional
    except ImportError:
        raise UsageError("strata serve needs starlette, uvicorn and watchfiles: "
                         "pip install 'strata[serve]'") from None
    from strata.serve.app import MAX_MESSAGE, create_app  # lazy: optional

    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or folder")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {port}")
    if host not in LOCAL:
        print(f"strata serve: warning: listening on {host}: anyone who can reach this machine can read "
              "and edit the specs under the served folder", file=sys.stderr)
    root = Root(path)
    config = uvicorn.Config(create_app(root, host), host=host, port=port, log_level="warning",
                            ws_max_size=MAX_MESSAGE)
    server = uvicorn.Server(config)

    async def announce():  # the URL once the socket is bound (port 0 picks a free one)
        import asyncio  # lazy: startup

        while not server.started:
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        url = f"http://{shown}:{bound[1]}/"
        print(f"strata serve: {root.path} at {url}", flush=True)
        if open_browser:
            import webbrowser  # lazy: startup

            webbrowser.open(url)

    async def main():
        import asyncio  # lazy: startup

        task = asyncio.create_task(announce())
        await server.serve()
        task.cancel()

    import asyncio  # lazy: startup

    asyncio.run(main())
    return 0
