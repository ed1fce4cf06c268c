"""A small HTTP JSON service around `toolkit.runtime.EmotionClassifier`, standard library only.

    python examples/serve.py --export exported/emotion --port 8000

    POST /predict  {"texts": ["I love it", "so annoying"], "threshold": 0.5}   (threshold optional)
        -> {"predictions": [{"text", "labels", "scores"}, ...], "variant", "provider", "threshold"}
    GET  /health   -> {"status": "ok", "variant", "provider", "labels", "thresholds", "max_length", limits}

Errors are JSON too, `{"error": "<one line>"}`: 400 bad JSON, 404 unknown path, 405 wrong method,
411 no Content-Length, 413 body or text count over the limit, 415 not JSON, 422 wrong types.
One classifier (one onnxruntime session) serves every request thread; it is thread-safe.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from toolkit.errors import ToolkitError
from toolkit.runtime import EmotionClassifier

log = logging.getLogger("toolkit.serve")

MAX_BODY_BYTES = 1 << 20  # 1 MiB: a few thousand tweets-sized texts, far below memory trouble
MAX_TEXTS = 256  # per request: keeps one request's latency bounded (~8 batches of 32)
SOCKET_TIMEOUT_S = 30  # a client that stops sending mid-body releases its thread after this
REQUEST_FIELDS = {"texts", "threshold"}


class RequestError(Exception):
    """A client error: becomes `{"error": message}` with this HTTP status."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def make_server(classifier: EmotionClassifier, host: str = "127.0.0.1", port: int = 8000,
                max_body_bytes: int = MAX_BODY_BYTES, max_texts: int = MAX_TEXTS) -> ThreadingHTTPServer:
    """A ThreadingHTTPServer bound to (host, port) (port 0 picks a free one); call serve_forever()."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True  # Ctrl-C does not wait for idle keep-alive connections
    server.classifier = classifier
    server.max_body_bytes = max_body_bytes
    server.max_texts = max_texts
    return server


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        classifier = EmotionClassifier.load(args.export, variant=args.variant, provider=args.provider,
                                            threads=args.threads, max_batch_size=args.max_batch_size)
    except ToolkitError as e:
        log.error("%s", e)
        return 2
    server = make_server(classifier, args.host, args.port, args.max_body_bytes, args.max_texts)
    host, port = server.server_address[:2]
    log.info("listening on http://%s:%d (variant %s on %s)", host, port, classifier.variant, classifier.provider)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        server.server_close()
    return 0


class Handler(BaseHTTPRequestHandler):
    """Routes: GET /health, POST /predict. Every answer is JSON with a Content-Length (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "toolkit-serve"
    timeout = SOCKET_TIMEOUT_S
    routes = {"/health": "GET", "/predict": "POST"}

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        log.info("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        self._body_read = False
        try:
            if path not in self.routes:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no route {path}; use GET /health or POST /predict")
            if method != self.routes[path] and not (method == "HEAD" and self.routes[path] == "GET"):
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts {self.routes[path]} only")
            body = self._predict() if path == "/predict" else self._health()
            self._send(HTTPStatus.OK, body)
        except RequestError as e:
            self._send(e.status, {"error": str(e)})
        except Exception:  # the client gets a 500; the traceback goes to the log, not to the client
            log.exception("%s %s failed", method, path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see the server log"})

    def _health(self) -> dict:
        clf = self.server.classifier
        return {"status": "ok", "variant": clf.variant, "provider": clf.provider, "labels": clf.labels,
                "thresholds": clf.thresholds.tolist(), "max_length": clf.max_length,
                "max_texts": self.server.max_texts, "max_body_bytes": self.server.max_body_bytes}

    def _predict(self) -> dict:
        texts, threshold = _parse_request(self._read_json(), self.server.max_texts)
        clf = self.server.classifier
        predictions = clf.predict(texts, threshold=threshold)
        return {"predictions": [{"text": p.text, "labels": p.labels, "scores": p.scores} for p in predictions],
                "variant": clf.variant, "provider": clf.provider, "threshold": threshold}

    def _read_json(self):
        content_type = self.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                               f"Content-Type {content_type!r} is not supported; send application/json")
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the JSON body with a Content-Length header")
        length = int(length)
        if length > self.server.max_body_bytes:  # refused unread; _send closes the connection
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"body of {length} bytes is over the limit of {self.server.max_body_bytes}; "
                               "split the texts over several requests")
        raw = self.rfile.read(length)
        self._body_read = True
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not UTF-8 ({e.reason} at byte {e.start})") from e
        except json.JSONDecodeError as e:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {e.msg} at line {e.lineno} "
                                                       f"column {e.colno}") from e

    def _send(self, status: HTTPStatus, body: dict) -> None:
        try:
            data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a "\ud83d" escape in the request, echoed back
            data = json.dumps(body, ensure_ascii=True, allow_nan=False).encode("ascii")
        if not self._body_read and (self.headers.get("Content-Length", "0").strip() not in ("", "0")
                                    or "Transfer-Encoding" in self.headers):
            self.close_connection = True  # an unread body would be taken for the next request
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", self.routes[self.path.split("?", 1)[0]])
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _parse_request(payload, max_texts: int) -> tuple[list[str], float | None]:
    """`{"texts": [str, ...], "threshold": number?}` -> (texts, threshold), or a 413/422 RequestError."""
    if not isinstance(payload, dict):
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY,
                           f'body must be a JSON object like {{"texts": ["..."]}}, got {_json_type(payload)}')
    unknown = sorted(set(payload) - REQUEST_FIELDS)
    if unknown:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY,
                           f"unknown field(s) {unknown}; allowed: {sorted(REQUEST_FIELDS)}")
    if "texts" not in payload:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, 'missing field "texts" (a list of strings)')
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY,
                           f'"texts" must be a list of strings, got {_json_type(texts)}')
    if len(texts) > max_texts:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"{len(texts)} texts is over the limit of {max_texts} per request; split them")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"texts[{i}] must be a string, got {_json_type(text)}")
    threshold = payload.get("threshold")
    # NaN and Infinity (which json.loads accepts) fail the range test too
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0 <= threshold <= 1):
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY,
                           f'"threshold" must be a number in [0, 1], got {threshold!r}')
    return texts, None if threshold is None else float(threshold)


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _parse_args(argv):
    p = argparse.ArgumentParser(description="Serve an exported toolkit model over HTTP (JSON).")
    p.add_argument("--export", default="exported/emotion", help="export directory (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="bind address; 0.0.0.0 to accept remote clients")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (logged at start)")
    p.add_argument("--variant", default="auto", help="auto (int8 on CPU, fp16 on CUDA), fp32, fp16 or int8")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"])
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: physical cores)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-texts", type=int, default=MAX_TEXTS, help="texts per request (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                   help="request body limit (default: %(default)s)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
