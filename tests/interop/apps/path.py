"""App for the request-path option twins: each endpoint records what the app saw in a file
of the working directory, so a test can read it whichever server ran the app.

- ``/calls``: appends a line to ``calls.log`` (the app was called), then reads the whole body
  and answers its length;
- ``/writer``: writes 64 KiB pieces with the ``write`` callable until told to stop; writes
  the outcome (``no error`` or the exception) to ``outcome.txt``;
- ``/yielder``: the same with a generator; ``closed.txt`` records that ``close()`` ran;
- ``/stream``: three pieces from a generator, no Content-Length;
- ``/environ``: the names of the non-string environ values (``wsgi.file_wrapper``, ...).
"""

import json


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/calls":
        with open("calls.log", "a") as f:
            f.write(environ.get("REQUEST_METHOD", "") + "\n")
        body = environ["wsgi.input"].read()
        data = json.dumps({"length": len(body)}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]
    if path == "/writer":
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        outcome = "no error"
        try:
            for _ in range(400):
                write(b"x" * 65536)
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            outcome = f"{type(exc).__name__}: {exc}"
        with open("outcome.txt", "w") as f:
            f.write(outcome)
        return []
    if path == "/yielder":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _pieces()
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part%d\n" % i for i in range(3))
    if path == "/environ":
        data = json.dumps(sorted(k for k, v in environ.items() if not isinstance(v, (str, int, bool, tuple)))).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return []


def _pieces():
    sent = 0
    try:
        for _ in range(400):
            sent += 1
            yield b"y" * 65536
    finally:
        with open("closed.txt", "w") as f:
            f.write(str(sent))
