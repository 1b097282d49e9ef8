"""The PROXY protocol, version 1 (``enable-proxy-protocol``, ``http-enable-proxy-protocol``).

A load balancer (HAProxy, AWS ELB/NLB, nginx's ``proxy_protocol``) that opens the TCP
connection says whose it really is in one line before the first request::

    PROXY TCP4 203.0.113.7 10.0.0.2 51234 80\\r\\n

uWSGI 2.0 (core/proto/http.c ``proxy1_parse``) reads that line at the start of a request
head when it is there (a head without it is served as usual) and gives the app the source as
REMOTE_ADDR/REMOTE_PORT and the destination as SERVER_ADDR/SERVER_PORT. Here the line is read
once per connection, at its start (where load balancers send it), and its addresses stay for
every request the connection carries (uWSGI's http-socket serves one request per connection).

Unlike uWSGI, addresses that are not IP addresses and ports that are not numbers are not
believed (the peer's own address is kept): the line is still consumed, and the request served.
Only the text form (v1) is read; a v2 (binary) header is not a request and gets the 400 any
garbage gets. Whoever can connect to such a socket chooses the REMOTE_ADDR the app sees: it is
meant for sockets only the load balancer reaches, as in uWSGI.
"""

from __future__ import annotations

import ipaddress

PREFIX = b"PROXY "
#: a PROXY v1 line is at most 107 bytes (the spec); anything longer is not one
MAX_LINE = 107


def take_line(head: bytes) -> tuple[bytes, dict[str, str] | None]:
    """``head`` without its leading PROXY line, and the variables it gives (None: none).

    ``head`` must start with ``PREFIX``. Fields are split on single spaces as uWSGI splits
    them: protocol, source, destination, source port, destination port."""
    end = head.find(b"\n", 0, MAX_LINE + 1)
    if end < 0:
        return head, None  # not a PROXY line: the HTTP parser refuses what this is
    line = head[len(PREFIX):end].rstrip(b"\r").decode("latin-1")
    rest = head[end + 1:]
    fields = line.split(" ")
    if len(fields) < 5 or fields[0] not in ("TCP4", "TCP6"):
        return rest, None  # "PROXY UNKNOWN": the connection's own addresses stand
    src, dst, sport, dport = fields[1:5]
    try:
        ipaddress.ip_address(src)
        ipaddress.ip_address(dst)
    except ValueError:
        return rest, None
    if not (sport.isdigit() and dport.isdigit() and int(sport) < 65536 and int(dport) < 65536):
        return rest, None
    return rest, {"REMOTE_ADDR": src, "REMOTE_PORT": sport, "SERVER_ADDR": dst, "SERVER_PORT": dport}
