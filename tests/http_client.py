"""A JSON HTTP client for the service tests (stdlib only): 4xx/5xx are answers, not exceptions."""
import json
import urllib.error
import urllib.request


def request_json(url, path, body=None, raw=None, method=None, headers=None, timeout=60):
    """(status, JSON body) of one request; `raw` bytes are sent as they are, `body` as JSON."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
