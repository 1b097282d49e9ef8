"""Hello world for the interop tests; ``/sleep/<seconds>`` answers late (a busy worker)."""

import time


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/sleep/"):
        time.sleep(float(path.rsplit("/", 1)[1]))
    body = b"Hello from " + path.encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
