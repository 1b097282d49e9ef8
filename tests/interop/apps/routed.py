"""App behind the routing twin tests: it shows what the routing rules left it.

The body lists the request variables (upper-case environ keys, sorted, ``KEY=value`` lines)
except those that differ between two servers on two ports. ``/hdr`` answers
with the response headers its query string names (``?Name=value&...``); ``/status/NNN``
answers that status.
"""

from urllib.parse import parse_qsl

SKIP = {"SERVER_PORT", "SERVER_NAME", "REMOTE_PORT", "HTTP_CONNECTION"}
REASONS = {200: "OK", 404: "Not Found", 418: "I'm a teapot", 500: "Internal Server Error"}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    status = 200
    headers = [("Content-Type", "text/plain")]
    if path.startswith("/status/"):
        status = int(path.split("/")[2])
    if path.startswith("/hdr"):
        headers += parse_qsl(environ.get("QUERY_STRING", ""))
    lines = [f"{k}={v}" for k, v in sorted(environ.items()) if k.isupper() and k not in SKIP]
    lines.append(f"url_scheme={environ['wsgi.url_scheme']}")
    start_response(f"{status} {REASONS.get(status, 'Other')}", headers)
    return ["\n".join(lines).encode("latin-1")]
