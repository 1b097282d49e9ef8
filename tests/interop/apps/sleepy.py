"""``/sleep`` answers after time.sleep(0.05): concurrent only when something made it yield
(gevent's monkey patching); anything else answers at once."""

import os
import time


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        time.sleep(0.05)
    body = b"ok %d" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
