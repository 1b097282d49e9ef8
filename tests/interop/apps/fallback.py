"""App behind the static-file tests: says it answered, and what PATH_INFO it saw.

``/wrapped/<name>``: the file ``<name>`` (next to the ``STATIC_BASE`` environment variable's
directory) through ``wsgi.file_wrapper``, so sendfile and offload paths serve app bodies too.
``/logvar``: sets the log variable ``who`` (``uwsgi.set_logvar``) and echoes it back.
"""

import os


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/wrapped/"):
        name = os.path.join(os.environ["STATIC_BASE"], path[len("/wrapped/"):])
        f = open(name, "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(os.fstat(f.fileno()).st_size))])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/logvar":
        import uwsgi

        uwsgi.set_logvar("who", "tester")
        body = uwsgi.get_logvar("who") or b"-"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    body = b"app:" + path.encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
