"""Metrics app for the twin tests: calls ``uwsgi.metric_*`` as the URL says, answers JSON.

``/call/FUNCTION/NAME[/VALUE]``: ``uwsgi.FUNCTION(NAME[, VALUE])`` and its result
(``{"result": ...}`` or ``{"error": "TypeName"}``); VALUE ``f1.5`` is the float 1.5,
``s1`` the string "1". ``/`` answers "ok".
"""

import json

import uwsgi


def _value(text):
    if text.startswith("f"):
        return float(text[1:])
    if text.startswith("s"):
        return text[1:]
    return int(text)


def application(environ, start_response):
    parts = environ.get("PATH_INFO", "").strip("/").split("/")
    body = b"ok"
    if parts[0] == "call" and len(parts) >= 3:
        fn = getattr(uwsgi, parts[1])
        args = [parts[2]] + [_value(p) for p in parts[3:]]
        try:
            body = json.dumps({"result": fn(*args)}).encode()
        except Exception as exc:  # noqa: BLE001 - the type is what the twin compares
            body = json.dumps({"error": type(exc).__name__}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
