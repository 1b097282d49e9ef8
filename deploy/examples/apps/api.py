"""A tiny JSON app behind nginx (deploy/examples/vassals/api.ini, deploy/nginx/imperium.conf).

GET answers with what the server told the app about the request; POST echoes the body's
length, to see a request travel nginx -> uwsgi protocol -> vassal -> app and back.
"""

import json
import os


def application(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    doc = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "remote_addr": environ.get("REMOTE_ADDR", ""),
        "received_bytes": len(body),
        "worker_pid": os.getpid(),
    }
    out = (json.dumps(doc) + "\n").encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]
