"""Serve a `toolkit web` folder on this machine, cross-origin isolated, for trying the page locally.

    python examples/web/serve.py web/ [--port 8000]

Any static host works; this one adds what the stdlib server lacks: the COOP/COEP headers that give
onnxruntime-web its WASM threads (SharedArrayBuffer needs a cross-origin-isolated page), and the
JavaScript/WebAssembly MIME types. It listens on 127.0.0.1 only and prints its URL on the first line
(with --port 0, the port the OS chose).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import sys

from toolkit.web import ISOLATION_HEADERS as HEADERS  # the headers `toolkit web` writes to _headers
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def end_headers(self):
        for name, value in HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format, *args):  # keep stdout for the URL line; requests are not worth a log here
        pass


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="the folder `toolkit web` wrote")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    args = parser.parse_args(argv)
    handler = functools.partial(IsolatedHandler, directory=args.directory)
    with http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            sys.exit(0)


if __name__ == "__main__":
    main()
