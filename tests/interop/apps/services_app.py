"""App for the master-services twin tests.

``/pid``: the worker's pid. ``/boom``: raises ZeroDivisionError. ``/argv``: ``sys.argv`` as
JSON. ``/alias``: ``NAME`` of the module imported as ``imperium_alias`` (pymodule-alias).
``/sleep/<s>``: answers after s seconds.
"""

import json
import os
import sys
import time


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/boom":
        raise ZeroDivisionError("division by zero")
    if path.startswith("/sleep/"):
        time.sleep(float(path.rsplit("/", 1)[1]))
        body = b"slept"
    elif path == "/argv":
        body = json.dumps(sys.argv).encode()
    elif path == "/alias":
        import imperium_alias

        body = imperium_alias.NAME.encode()
    else:
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
