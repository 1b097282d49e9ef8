"""The wire protocols a worker speaks: HTTP/1.x for ``http-socket`` and uwsgi packets for
``socket``; each turns bytes from a connection into a WSGI environ and a body reader."""
