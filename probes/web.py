"""Web test service: a small HTTP server and a client that measures page load times (shell).

The server serves a page ("/") that references `objects` objects ("/obj/N"), each of
`object_bytes` bytes, like a page with its images and scripts. The client loads the page
the way a browser does at its simplest: the HTML first (time to first byte, then the
whole document), then the objects over `connections` parallel keep-alive connections. The
page load time is from the first request to the last byte of the last object. Each load
reports its own ground truth: bytes, objects, times and errors. With a certificate and key
the server speaks HTTPS (TLS 1.2 or 1.3, as most real pages do) and the client loads
https:// URLs, checking the server against a CA file when given one.
"""

import dataclasses
import http.client
import http.server
import re
import socketserver
import ssl
import threading
import time
import urllib.parse

_OBJECT = re.compile(rb'src="(/obj/\d+)"')


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "cems-web/1"

    def do_GET(self):  # noqa: N802 (http.server's name)
        page: "WebServer" = self.server.service  # type: ignore[attr-defined]
        if self.path == "/":
            body = page.html()
            kind = "text/html"
        elif self.path.startswith("/obj/") and self.path[5:].isdigit() and \
                int(self.path[5:]) < page.objects:
            body = page.object_body
            kind = "application/octet-stream"
        else:
            self.send_error(404, "no such object")
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet: the client reports what happened
        pass


class ThreadingHttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """An HTTP server with a thread per connection (shared with probes/video.py)."""
    daemon_threads = True
    allow_reuse_address = True


class HttpService:
    """A test service's HTTP server on (host, port), in a thread from start() to stop();
    port 0 picks a free one. The handler finds the service as `self.server.service`."""

    def __init__(self, host: str, port: int, handler, certfile: str | None = None,
                 keyfile: str | None = None):
        self._server = ThreadingHttpServer((host, port), handler)
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            # the handshake runs in the connection's own thread, on its first read
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.tls = bool(certfile)
        self._server.service = self  # type: ignore[attr-defined]
        self.address = self._server.server_address
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class WebServer(HttpService):
    """Serves the test page."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8080, objects: int = 20,
                 object_bytes: int = 50_000, html_bytes: int = 20_000,
                 certfile: str | None = None, keyfile: str | None = None):
        self.objects = objects
        self.object_body = bytes(object_bytes)
        self.html_bytes = html_bytes
        super().__init__(host, port, _Handler, certfile, keyfile)

    def html(self) -> bytes:
        tags = "".join(f'<img src="/obj/{i}">' for i in range(self.objects))
        head = f"<html><body>{tags}".encode()
        return head + b" " * max(0, self.html_bytes - len(head) - 14) + b"</body></html>"


@dataclasses.dataclass(frozen=True)
class PageLoad:
    url: str
    started_unix_s: float
    ttfb_s: float          # first request sent -> first byte of the HTML answer
    html_s: float          # -> the whole HTML
    page_load_s: float     # -> the last byte of the last object
    objects: int           # objects loaded
    bytes: int             # body bytes received
    errors: tuple[str, ...]


def _connection(parts, timeout_s: float, tls: ssl.SSLContext | None = None
                ) -> http.client.HTTPConnection:
    if tls is not None:
        return http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout_s,
                                           context=tls)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)


def load_page(url: str, connections: int = 4, timeout_s: float = 30.0,
              cafile: str | None = None) -> PageLoad:
    """Load the page at `url` (http:// or https://; `cafile` names the CA to check an HTTPS
    server against, else the system's) and its objects; never raises for network errors,
    which are reported in `errors` (the load time is then up to the failure)."""
    parts = urllib.parse.urlsplit(url)
    tls = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None
    started, start = time.time(), time.monotonic()
    errors: list[str] = []
    received = [0]
    lock = threading.Lock()
    ttfb = html_s = float("nan")
    links: list[bytes] = []
    try:
        conn = _connection(parts, timeout_s, tls)
        conn.request("GET", parts.path or "/")
        answer = conn.getresponse()
        ttfb = time.monotonic() - start
        body = answer.read()
        html_s = time.monotonic() - start
        received[0] += len(body)
        if answer.status != 200:
            errors.append(f"GET {parts.path or '/'}: HTTP {answer.status}")
        links = _OBJECT.findall(body)
        conn.close()
    except (OSError, http.client.HTTPException) as err:
        errors.append(f"GET {parts.path or '/'}: {err}")
    pending = list(links)
    done = [0]

    def worker():
        conn = _connection(parts, timeout_s, tls)
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    path = pending.pop(0).decode()
                try:
                    conn.request("GET", path)
                    answer = conn.getresponse()
                    body = answer.read()
                except (OSError, http.client.HTTPException) as err:
                    with lock:
                        errors.append(f"GET {path}: {err}")
                    conn.close()
                    conn = _connection(parts, timeout_s, tls)
                    continue
                with lock:
                    received[0] += len(body)
                    if answer.status == 200:
                        done[0] += 1
                    else:
                        errors.append(f"GET {path}: HTTP {answer.status}")
        finally:
            conn.close()
    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(max(1, min(connections, len(links))))] if links else []
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return PageLoad(url, started, ttfb, html_s, time.monotonic() - start, done[0], received[0],
                    tuple(errors))
