"""``sharedarea``: raw memory pages shared by every process, and uWSGI 2.0's functions on them.

``sharedarea = N`` makes an area of N pages; the keyval form takes ``pages=``, ``size=``
(bytes, or 0x hex; rounded up to whole pages unless ``file=``) and ``file=`` (map that file
instead of anonymous memory) — ``fd=``, ``ptr=`` and ``offset=`` are refused. Areas are numbered from 0 in config order. The functions follow uWSGI 2.0's
python plugin: the area id comes first (``sharedarea_read(id, pos[, len])``), reads answer
bytes or ints (8/16/32/64-bit values are native and signed), writes and inc/dec answer None,
and any fault (no such area, out of range) raises ValueError. Each area has a robust
process-shared lock (recursive, so ``sharedarea_wlock`` then ``sharedarea_write`` by one thread
works); ``sharedarea_rlock``/``wlock``/``unlock`` take and give it. Unlike uWSGI, 64-bit
inc/dec check the 8 bytes they touch (uWSGI checks 4).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

from vassal.api import shm
from vassal.api.context import ApiContext, ApiError

PAGE = mmap.PAGESIZE


@dataclass
class Area:
    id: int
    mem: mmap.mmap
    size: int
    lock: shm.RobustMutex
    pages: int


_areas: list[Area] = []
_FMT = {8: struct.Struct("=b"), 16: struct.Struct("=h"), 32: struct.Struct("=i"), 64: struct.Struct("=q")}


def _parse(value: str, where: str) -> tuple[int, str | None]:
    """(size in bytes, file or None) of one ``sharedarea`` value."""
    what = f"sharedarea {value!r}" + (f" ({where})" if where else "")
    if "=" not in value:
        try:
            pages = int(value.strip(), 10)
        except ValueError:
            raise ApiError(f"{what}: the number of pages must be a number") from None
        if pages <= 0:
            raise ApiError(f"{what}: the number of pages must be positive")
        return pages * PAGE, None
    kv: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep:
            raise ApiError(f"{what}: {part!r} is not key=value")
        if key in ("fd", "ptr"):
            raise ApiError(f"{what}: {key}= is not supported by Imperium")
        if key not in ("pages", "size", "file", "offset"):
            raise ApiError(f"{what}: unknown key {key!r}")
        kv[key] = val
    if "offset" in kv:
        raise ApiError(f"{what}: offset= is not supported by Imperium")
    size = 0
    if "size" in kv:
        try:
            text = kv["size"].strip()
            size = int(text[2:], 16) if text.startswith("0x") else int(text, 10)
        except ValueError:
            raise ApiError(f"{what}: size must be a number") from None
    if "pages" in kv:
        try:
            size = int(kv["pages"], 10) * PAGE
        except ValueError:
            raise ApiError(f"{what}: pages must be a number") from None
    if size <= 0:
        raise ApiError(f"{what}: you need to set a size for a sharedarea (pages= or size=)")
    if size > 1 << 40:
        raise ApiError(f"{what}: too large")
    if not kv.get("file"):
        size = -(-size // PAGE) * PAGE  # anonymous areas are whole pages, as in uWSGI
    return size, kv.get("file")


def setup(ctx: ApiContext) -> None:
    _areas.clear()
    if ctx.config is None:
        return
    entries = [e for e in ctx.config.entries if e.name == "sharedarea"]
    if not entries:
        return
    locks = shm.anonymous(shm.MUTEX_SIZE * len(entries))
    for n, entry in enumerate(entries):
        size, path = _parse(entry.typed or "", str(entry.origin))
        if path:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    if os.fstat(fd).st_size < size:
                        raise ApiError(f"sharedarea {entry.typed!r}: {path} is smaller than {size} bytes")
                    mem = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise ApiError(f"sharedarea {entry.typed!r}: cannot map {path}: {exc.strerror}") from None
        else:
            mem = shm.anonymous(size)
        lock = shm.RobustMutex(locks, n * shm.MUTEX_SIZE, f"sharedarea{n}", recursive=True)
        _areas.append(Area(n, mem, size, lock, -(-size // PAGE)))
        from vassal.log import log

        log(f"sharedarea {n} created ({_areas[-1].pages} pages)")


def _area(fn: str, id: Any, pos: Any = 0, length: int = 0) -> Area:
    if not isinstance(id, int) or not isinstance(pos, int):
        raise TypeError(f"{fn}() id and position must be integers")
    if id < 0 or id >= len(_areas) or pos < 0:
        raise ValueError(f"error calling uwsgi_{fn}()")
    a = _areas[id]
    if pos + length > a.size or pos >= a.size:
        raise ValueError(f"error calling uwsgi_{fn}()")
    return a


def _read(fn: str, bits: int):
    def read(id: int, pos: int) -> int:
        a = _area(fn, id, pos, bits // 8)
        with a.lock:
            return _FMT[bits].unpack_from(a.mem, pos)[0]
    read.__name__ = fn
    return read


def _write(fn: str, bits: int):
    mask = (1 << bits) - 1

    def write(id: int, pos: int, value: int) -> None:
        a = _area(fn, id, pos, bits // 8)
        if not isinstance(value, int):
            raise TypeError(f"{fn}() value must be an integer")
        if bits == 8 and not 0 <= value <= 255:  # uWSGI parses it as an unsigned char
            raise OverflowError("unsigned byte integer is out of range")
        raw = value & mask
        with a.lock:
            a.mem[pos: pos + bits // 8] = raw.to_bytes(bits // 8, "little" if _LITTLE else "big")
    write.__name__ = fn
    return write


def _add(fn: str, bits: int, sign: int):
    def add(id: int, pos: int, value: int = 1) -> None:
        a = _area(fn, id, pos, bits // 8)
        fmt = _FMT[bits]
        with a.lock:
            cur = fmt.unpack_from(a.mem, pos)[0]
            new = (cur + sign * value + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
            fmt.pack_into(a.mem, pos, new)
    add.__name__ = fn
    return add


_LITTLE = struct.pack("=H", 1) == b"\x01\x00"


def sharedarea_read(id: int, pos: int, length: int = 0) -> bytes:
    a = _area("sharedarea_read", id, pos)
    if length < 0:
        raise ValueError("error calling uwsgi_sharedarea_read()")
    if not length:
        length = a.size - pos
    if pos + length > a.size:
        raise ValueError("error calling uwsgi_sharedarea_read()")
    with a.lock:
        return a.mem[pos: pos + length]


def sharedarea_write(id: int, pos: int, data: Any) -> None:
    if isinstance(data, str):
        data = data.encode()
    data = bytes(data)
    a = _area("sharedarea_write", id, pos, len(data))
    with a.lock:
        a.mem[pos: pos + len(data)] = data


def sharedarea_memoryview(id: int) -> memoryview:
    if not isinstance(id, int) or id < 0 or id >= len(_areas):
        raise ValueError(f"cannot get a memoryview object from sharedarea {id}")
    return memoryview(_areas[id].mem)


def sharedarea_object(id: int) -> Any:
    raise ValueError(f"cannot get an object from sharedarea {id}: uWSGI keeps C objects there; "
                     "use sharedarea_memoryview")


def _lockfn(fn: str, op: str):
    def locker(id: int) -> None:
        a = _area(fn, id)
        if op == "unlock":
            a.lock.release()
        else:
            a.lock.acquire()
    locker.__name__ = fn
    return locker


def exports(ctx: ApiContext) -> dict[str, Any]:
    if not _areas:
        return {}  # as uWSGI: the functions exist only with a sharedarea configured
    out: dict[str, Any] = {"sharedarea_read": sharedarea_read, "sharedarea_write": sharedarea_write,
                           "sharedarea_memoryview": sharedarea_memoryview,
                           "sharedarea_object": sharedarea_object}
    for bits in (8, 16, 32, 64):
        out[f"sharedarea_read{bits}"] = _read(f"sharedarea_read{bits}", bits)
        out[f"sharedarea_write{bits}"] = _write(f"sharedarea_write{bits}", bits)
    for bits in (32, 64):
        out[f"sharedarea_inc{bits}"] = _add(f"sharedarea_inc{bits}", bits, 1)
        out[f"sharedarea_dec{bits}"] = _add(f"sharedarea_dec{bits}", bits, -1)
    out["sharedarea_readbyte"] = out["sharedarea_read8"]
    out["sharedarea_writebyte"] = out["sharedarea_write8"]
    out["sharedarea_readlong"] = out["sharedarea_read64"]
    out["sharedarea_writelong"] = out["sharedarea_write64"]
    out["sharedarea_inclong"] = out["sharedarea_inc64"]
    for name, op in (("sharedarea_rlock", "lock"), ("sharedarea_wlock", "lock"), ("sharedarea_unlock", "unlock")):
        out[name] = _lockfn(name, op)
    return out


def stats(ctx: ApiContext) -> dict[str, list]:
    # uWSGI registers its "snmp" lock right after the sharedareas' (and before the caches')
    return {"locks": [(a.lock.name, a.lock.holder()) for a in _areas] + [("snmp", 0)]}
