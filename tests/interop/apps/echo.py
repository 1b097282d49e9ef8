"""Echo app for the interop tests: answers with what the server gave the application.

GET/POST anything: a JSON document with every plain environ value, the body's length and
sha256. ``/status/<code>``: that status. ``/big?<n>``: n bytes streamed in 64 KiB chunks.
"""

import hashlib
import json

REASONS = {200: "OK", 201: "Created", 404: "Not Found", 418: "I'm a teapot"}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.endswith("/big"):
        size = int(environ.get("QUERY_STRING") or 1048576)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return _stream(size)
    status = 200
    if "/status/" in path:
        status = int(path.rsplit("/", 1)[1])
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in environ.items()
             if isinstance(v, (str, int, bool, float, tuple))}
    doc = json.dumps({"environ": plain, "body_len": len(body),
                      "body_sha256": hashlib.sha256(body).hexdigest(),
                      "has": sorted(k for k in environ if not isinstance(
                          environ[k], (str, int, bool, float, tuple)))}).encode()
    start_response(f"{status} {REASONS.get(status, 'Whatever')}", [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(doc))),
        ("X-Echo-Method", environ.get("REQUEST_METHOD", "")),
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; Path=/"),
    ])
    return [doc]


def _stream(size):
    chunk = b"0123456789abcdef" * 4096
    while size > 0:
        piece = chunk[:size]
        size -= len(piece)
        yield piece
