"""The binary uwsgi protocol (what nginx's ``uwsgi_pass`` speaks to a ``socket``).

A request is a 4-byte header — modifier1 (u8), size of the vars block (little-endian u16),
modifier2 (u8) — then the vars block: pairs of (le16 key length, key, le16 value length,
value). The request body (CONTENT_LENGTH bytes) follows. The answer is a plain HTTP response
written on the same connection, which is then closed.
"""

from __future__ import annotations

import struct

from vassal.protocols.http import BadRequest, Reader

_HEADER = struct.Struct("<BHB")


def encode_vars(env: dict[str, str] | list[tuple[str, str]]) -> bytes:
    """The vars block for these key/values (utf-8 for str)."""
    out = bytearray()
    items = env.items() if isinstance(env, dict) else env
    for k, v in items:
        kb = k.encode() if isinstance(k, str) else k
        vb = v.encode() if isinstance(v, str) else v
        out += struct.pack("<H", len(kb)) + kb + struct.pack("<H", len(vb)) + vb
    return bytes(out)


def encode_packet(env: dict[str, str] | list[tuple[str, str]], body: bytes = b"", modifier1: int = 0,
                  modifier2: int = 0) -> bytes:
    """A whole request packet: header, vars, body."""
    block = encode_vars(env)
    if len(block) > 0xFFFF:
        raise ValueError("uwsgi vars block larger than 65535 bytes")
    return _HEADER.pack(modifier1, len(block), modifier2) + block + body


def decode_vars(block: bytes) -> tuple[dict[str, str], int]:
    """Parse a vars block into an environ (values latin-1 decoded, as PEP 3333 wants)."""
    env: dict[str, str] = {}
    pos = 0
    end = len(block)
    count = 0
    try:
        while pos < end:
            klen = block[pos] | (block[pos + 1] << 8)
            pos += 2
            key = block[pos:pos + klen].decode("latin-1")
            pos += klen
            vlen = block[pos] | (block[pos + 1] << 8)
            pos += 2
            if pos + vlen > end:
                raise BadRequest("truncated uwsgi vars block")
            env[key] = block[pos:pos + vlen].decode("latin-1")
            pos += vlen
            count += 1
    except IndexError:
        raise BadRequest("truncated uwsgi vars block") from None
    if pos != end:
        raise BadRequest("truncated uwsgi vars block")
    return env, count


def take_packet(reader: Reader, max_size: int = 0xFFFF) -> tuple[int, int, dict[str, str], int, int] | None:
    """A whole request packet head (header and vars) if buffered, else None: the
    non-blocking twin of ``read_request`` (the body stays in the reader)."""
    buf = reader.buf
    if len(buf) < 4:
        return None
    modifier1, size, modifier2 = _HEADER.unpack_from(buf)
    if size > max_size:
        raise BadRequest(f"invalid request block size: {size} (max {max_size})...skip", 0)
    if len(buf) < 4 + size:
        return None
    block = buf[4:4 + size]
    reader.buf = buf[4 + size:]
    env, count = decode_vars(block)
    return modifier1, modifier2, env, count * 2, size


def read_request(reader: Reader, max_size: int = 0xFFFF) -> tuple[int, int, dict[str, str], int, int] | None:
    """(modifier1, modifier2, environ, var count as uWSGI logs it, packet size), or None on EOF.

    A vars block larger than ``max_size`` (``buffer-size``) is refused without an answer, as
    uWSGI does ("invalid request block size"): the front server then reports 502.
    """
    header = reader.read_exact(4)
    if not header:
        return None
    if len(header) < 4:
        raise BadRequest("client closed the connection inside the uwsgi header")
    modifier1, size, modifier2 = _HEADER.unpack(header)
    if size > max_size:
        raise BadRequest(f"invalid request block size: {size} (max {max_size})...skip", 0)
    block = reader.read_exact(size)
    if len(block) < size:
        raise BadRequest("client closed the connection inside the uwsgi vars block")
    env, count = decode_vars(block)
    return modifier1, modifier2, env, count * 2, size
