"""Only the page itself may talk to `strata serve` (ASGI middleware).

Two attacks from a web page the user has open elsewhere:
- DNS rebinding: evil.example resolves to 127.0.0.1, and its script reads
  /files/... as same-origin.  The Host header then names evil.example: any
  request whose Host is not the address served is refused (403).
- Cross-site WebSocket hijacking: a WebSocket is not bound by the same-origin
  policy, so any page may open ws://127.0.0.1:PORT/ws — but the browser sends
  its Origin.  A handshake whose Origin is not this server's is refused.
  (Clients that are not browsers send none, and are not a page's script.)

    >>> allowed(b"127.0.0.1:8765", None, {"127.0.0.1"}), allowed(b"evil.example:8765", None, {"127.0.0.1"})
    (True, False)
    >>> allowed(b"127.0.0.1:8765", b"http://evil.example", {"127.0.0.1"})
    False
"""

from __future__ import annotations

LOCAL_NAMES = {"127.0.0.1", "localhost", "[::1]"}


def allowed(host: bytes, origin: bytes | None, names: set[str]) -> bool:
    h = host.decode("latin-1").lower()
    name = h if h.endswith("]") else h.rsplit(":", 1)[0]
    if name not in names:
        return False
    return origin is None or origin.decode("latin-1").lower() == f"http://{h}"


class LocalOnly:
    """Refuses HTTP requests and WebSocket handshakes that did not come from the page."""

    def __init__(self, app, names: set[str]):
        self.app, self.names = app, names

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope["headers"])
            origin = headers.get(b"origin") if scope["type"] == "websocket" else None
            if not allowed(headers.get(b"host", b""), origin, self.names):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body",
                            "body": b"refused: strata serve answers only its own page (Host / Origin)\n"})
                return
        await self.app(scope, receive, send)
