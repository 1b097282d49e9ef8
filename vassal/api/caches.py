"""The instance's caches: the ``cache2``/``cache`` options, the ``uwsgi.cache_*`` functions,
the master's sweeper of expired items and the ``caches`` block of the stats document.

Caches are created in the master before the fork (``setup``), so every worker, mule and
spooler shares them; with ``store`` a cache lives in a file and survives the workers'
respawn, the instance's reload and its restart. The functions behave as uWSGI 2.0's python
plugin (plugins/python/uwsgi_pymodule.c): values come back as ``bytes``, a failed change as
``None`` (not ``False``), ``cache_set`` does not replace a live key (``cache_update`` does),
``cache_get`` of an expired key answers until the sweeper removes it (every
``cache-expire-freq`` seconds) unless the cache has ``lazy_expire``. The first cache
configured is the one used when no name is given. Remote caches (``name@server``) are
refused with a clear error.
"""

from __future__ import annotations

import operator
import time
from typing import Any

from vassal.api.cache import FALLBACK, HASHES, Cache, CacheFlag, CacheSpec, StoreError
from vassal.api.context import ApiContext, ApiError
from vassal.log import log
from vassal.services import Service

_UPDATE = int(CacheFlag.UPDATE)  # a plain int: IntFlag arithmetic on the hot path is slow

_caches: dict[str, Cache] = {}
_first: list[Cache] = []  # the default cache (the first one configured), if any
_warned: set[str] = set()

# cache2 keys, with uWSGI's aliases (core/cache.c, uwsgi_cache_create)
_KEYS = {
    "name": "name", "max_items": "items", "maxitems": "items", "items": "items",
    "blocksize": "blocksize", "blocks": "blocks", "hash": "hash", "hashsize": "hashsize",
    "hash_size": "hashsize", "keysize": "keysize", "key_size": "keysize", "store": "store",
    "store_sync": "store_sync", "storesync": "store_sync", "store_delete": "store_delete",
    "storedelete": "store_delete", "bitmap": "bitmap", "lastmod": "lastmod",
    "math_initial": "math_initial", "ignore_full": "ignore_full", "purge_lru": "purge_lru",
    "lru": "purge_lru", "lazy_expire": "lazy_expire", "lazy": "lazy_expire",
    "sweep_on_full": "sweep_on_full", "clear_on_full": "clear_on_full", "no_expire": "no_expire",
}
_REMOTE_KEYS = ("node", "nodes", "sync", "udp", "udp_servers", "udp_server", "udpservers", "udpserver")
_REFUSED_OPTIONS = ("cache-udp-server", "cache-udp-node", "cache-sync")


def _number(what: str, key: str, text: str, *, zero_ok: bool = False, signed: bool = False) -> int:
    try:
        n = int(text.strip(), 10)
    except ValueError:
        raise ApiError(f"{what}: {key} must be a number, not {text!r}") from None
    if (n < 0 and not signed) or (n == 0 and not zero_ok):
        raise ApiError(f"{what}: {key} must be a positive number, not {text!r}")
    return n


def parse_cache2(value: str, where: str = "") -> CacheSpec:
    """A ``cache2`` keyval spec (``name=x,items=100,...``) -> CacheSpec; ApiError naming the
    option and the fault."""
    what = f"cache2 {value!r}" + (f" ({where})" if where else "")
    kv: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep:
            raise ApiError(f"{what}: {part!r} is not key=value")
        if key in _REMOTE_KEYS:
            raise ApiError(f"{what}: {key}= (cache replication between nodes) is not supported by Imperium")
        canon = _KEYS.get(key)
        if canon is None:
            raise ApiError(f"{what}: unknown key {key!r}")
        kv[canon] = val
    if not kv.get("name"):
        raise ApiError(f"{what}: a cache needs a name (name=...)")
    if "items" not in kv:
        raise ApiError(f"{what}: a cache needs its maximum number of items (items=...)")
    spec = CacheSpec(name=kv["name"], max_items=_number(what, "items", kv["items"]))
    if "blocksize" in kv:
        spec.blocksize = _number(what, "blocksize", kv["blocksize"])
    if "blocks" in kv:
        spec.blocks = _number(what, "blocks", kv["blocks"])
    if "hash" in kv:
        if kv["hash"] not in HASHES:
            raise ApiError(f"{what}: hash {kv['hash']!r} is not one of {', '.join(HASHES)}")
        spec.hash = kv["hash"]
    if "hashsize" in kv:
        spec.hashsize = _number(what, "hashsize", kv["hashsize"])
    if "keysize" in kv:
        spec.keysize = _number(what, "keysize", kv["keysize"])
        if spec.keysize >= 65535:
            raise ApiError(f"{what}: keysize must be below 65535")
    if "store" in kv:
        spec.store = kv["store"] or None
    if "store_sync" in kv:
        spec.store_sync = _number(what, "store_sync", kv["store_sync"], zero_ok=True)
    if "sweep_on_full" in kv:
        spec.sweep_on_full = _number(what, "sweep_on_full", kv["sweep_on_full"], zero_ok=True)
    if "math_initial" in kv:
        spec.math_initial = _number(what, "math_initial", kv["math_initial"], zero_ok=True, signed=True)
    # flags: present means on, as in uWSGI (whatever the value)
    spec.bitmap = "bitmap" in kv
    spec.use_last_modified = "lastmod" in kv
    spec.ignore_full = "ignore_full" in kv
    spec.store_delete = "store_delete" in kv
    spec.lazy_expire = "lazy_expire" in kv
    spec.clear_on_full = "clear_on_full" in kv
    spec.no_expire = "no_expire" in kv
    spec.purge_lru = "purge_lru" in kv
    if spec.blocks < spec.max_items:
        raise ApiError(f"{what}: blocks ({spec.blocks}) must be at least items ({spec.max_items})")
    _check_size(what, spec)
    return spec


def _check_size(what: str, spec: CacheSpec) -> None:
    if spec.filesize > 1 << 40 or spec.hashsize > 1 << 32:
        raise ApiError(f"{what}: {spec.filesize} bytes of items and blocks and {spec.hashsize} hash slots "
                       "is more than a machine can map")


def specs_from_config(config: Any) -> list[CacheSpec]:
    """Every cache the config asks for: the old ``cache = N`` first (named "default"), then
    each ``cache2``, in order."""
    for name in _REFUSED_OPTIONS:
        if config.has(name):
            raise ApiError(f"{name}: cache replication between nodes is not supported by Imperium")
    out: list[CacheSpec] = []
    if config.has("cache"):
        items = config.get("cache")
        what = f"cache {items}"
        if not isinstance(items, int) or items <= 0:
            raise ApiError(f"{what}: the number of items must be a positive number")
        bs = config.get("cache-blocksize") if config.has("cache-blocksize") else 65536
        if not isinstance(bs, int) or bs <= 0:
            raise ApiError(f"cache-blocksize {bs}: must be a positive number")
        spec = CacheSpec(name="default", max_items=items, blocksize=bs, store=config.get("cache-store") or None,
                         store_sync=int(config.get("cache-store-sync") or 0),
                         use_last_modified=bool(config.get("cache-use-last-modified")))
        _check_size(what, spec)
        out.append(spec)
    for entry in config.entries:
        if entry.name == "cache2":
            out.append(parse_cache2(entry.typed or "", str(entry.origin)))
    names = [s.name for s in out]
    for n in names:
        if names.count(n) > 1:
            raise ApiError(f"cache2 name={n}: two caches have the same name")
    return out


def setup(ctx: ApiContext) -> None:
    _caches.clear()
    _first.clear()
    if ctx.config is None:
        return
    for spec in specs_from_config(ctx.config):
        try:
            c = Cache(spec, log)
        except StoreError as exc:
            raise ApiError(f"cache {spec.name}: {exc}") from None
        except (OSError, ValueError, OverflowError, MemoryError) as exc:
            raise ApiError(f"cache {spec.name}: cannot allocate its shared memory "
                           f"({spec.filesize} bytes of items and blocks, {spec.hashsize} hash slots): {exc}") from None
        if c.restored:
            log(f"[uwsgi-cache] restored {c.stats()['items']} items")
        log(f'*** Cache "{spec.name}" initialized: {spec.filesize // (1024 * 1024)}MB (key: {spec.item_size} '
            f"bytes, keys: {spec.item_size * spec.max_items} bytes, data: {spec.blocksize * spec.blocks} bytes, "
            f"bitmap: {c.bitmap_size} bytes) preallocated ***")
        _caches[spec.name] = c
        if not _first:
            _first.append(c)
        _add_items(ctx.config, c)
    if _caches:
        cfg = ctx.config
        sweeps = not cfg.get("cache-no-expire") and any(
            not (c.spec.no_expire or c.spec.purge_lru or c.spec.lazy_expire) for c in _caches.values())
        freq = int(cfg.get("cache-expire-freq") or 3)
        ctx.services.append(CacheSweeper(list(_caches.values()), freq if freq > 0 else 3, sweeps,
                                         bool(cfg.get("cache-report-freed-items"))))


def _add_items(config: Any, c: Cache) -> None:
    """``add-cache-item = [cache ]KEY=VALUE`` and ``load-file-in-cache = [cache ]PATH``."""
    for item in config.getlist("add-cache-item"):
        target, sep, rest = item.partition(" ")
        if sep and target != c.name:
            continue
        text = rest if sep else item
        key, eq, value = text.partition("=")
        if not eq:
            log(f"[cache] unable to store item {item}")
            continue
        if c.set(key.encode(), value.encode()):
            log(f'[cache] stored "{key}" in "{c.name}"')
        else:
            log(f'[cache-error] unable to store "{key}" in "{c.name}"')
    for item in config.getlist("load-file-in-cache"):
        target, sep, rest = item.partition(" ")
        if sep and target != c.name:
            continue
        path = rest if sep else item
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            log(f'[cache-error] unable to read file "{path}"')
            continue
        if c.set(path.encode(), data):
            log(f'[cache] stored "{path}" in "{c.name}"')
        else:
            log(f'[cache-error] unable to store "{path}" in "{c.name}"')


class CacheSweeper(Service):
    """The master's duty: drop expired items every ``cache-expire-freq`` seconds (uWSGI runs
    a thread for this; the master here runs none), write persistent stores to disk every
    ``store_sync`` seconds and at exit."""

    name = "cache-sweeper"

    def __init__(self, caches: list[Cache], freq: int, sweeps: bool, report: bool) -> None:
        self.caches = caches
        self.freq = freq
        self.sweeps = sweeps
        self.report = report
        self.next_sweep = 0.0
        self.next_sync: dict[str, float] = {}

    def start(self, master: Any) -> None:
        now = time.monotonic()
        self.next_sweep = now + self.freq
        for c in self.caches:
            if c.spec.store and c.spec.store_sync > 0:
                self.next_sync[c.name] = now + c.spec.store_sync
        if self.sweeps:
            log("cache sweeper enabled (in the master)")

    def timeout(self, now: float) -> float | None:
        wishes = list(self.next_sync.values())
        if self.sweeps:
            wishes.append(self.next_sweep)
        return min(wishes) - now if wishes else None

    def tick(self, now: float) -> None:
        if self.sweeps and now >= self.next_sweep:
            self.next_sweep = now + self.freq
            wall = int(time.time())
            for c in self.caches:
                freed = c.sweep(wall)
                if self.report and freed:
                    log(f'freed {freed} items for cache "{c.name}"')
        for c in self.caches:
            due = self.next_sync.get(c.name)
            if due is not None and now >= due:
                self.next_sync[c.name] = now + c.spec.store_sync
                c.sync(wait=False)

    def finish(self) -> None:
        for c in self.caches:
            c.sync()


# --- the uwsgi.cache_* functions ------------------------------------------------------------

def _bytes(what: str, value: Any) -> bytes:
    """What uWSGI's ``s#`` accepts: str (UTF-8) or a bytes-like object."""
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what}() argument must be str or bytes, not {type(value).__name__}")


def _cache(fn: str, name: Any) -> Cache | None:
    """The cache a call names (None or "": the first one); None, after one log line per name
    and process, when this instance has no such cache (uWSGI's answer is then None too)."""
    if name is None or name == "":
        c = _first[0] if _first else None
        label = "(default)"
    else:
        if not isinstance(name, str):
            raise TypeError(f"{fn}() cache name must be str, not {type(name).__name__}")
        if "@" in name:
            raise ValueError(f"uwsgi.{fn}: remote caches ({name}) are not supported by Imperium")
        c = _caches.get(name)
        label = name
    if c is None and label not in _warned:
        _warned.add(label)
        log(f"uwsgi.{fn}: no cache {label} in this instance (configure it with cache2 = name=...,items=...)")
    return c


def _int(fn: str, value: Any) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{fn}() integer argument expected, got {type(value).__name__}") from None


def exports(ctx: ApiContext) -> dict[str, Any]:
    return {f.__name__: f for f in (cache_get, cache_set, cache_update, cache_del, cache_exists, cache_clear,
                                     cache_inc, cache_dec, cache_mul, cache_div, cache_num, cache_keys)}


def cache_get(key: Any, cache: Any = None) -> bytes | None:
    c = _first[0] if cache is None and _first else _cache("cache_get", cache)
    if c is None:
        return None
    if type(key) is not bytes:
        key = _bytes("cache_get", key)
    r = c.reader(key)
    return c.get_slow(key) if r is FALLBACK else r


def cache_set(key: Any, value: Any, expires: Any = 0, cache: Any = None) -> bool | None:
    c = _first[0] if cache is None and _first else _cache("cache_set", cache)
    if c is None:
        return None
    k = key if type(key) is bytes else _bytes("cache_set", key)
    v = value if type(value) is bytes else _bytes("cache_set", value)
    return True if c.set(k, v, _int("cache_set", expires) if expires else 0, 0) else None


def cache_update(key: Any, value: Any, expires: Any = 0, cache: Any = None) -> bool | None:
    c = _first[0] if cache is None and _first else _cache("cache_update", cache)
    if c is None:
        return None
    k = key if type(key) is bytes else _bytes("cache_update", key)
    v = value if type(value) is bytes else _bytes("cache_update", value)
    e = _int("cache_update", expires) if expires else 0
    if c.updater is not None and e >= 0 and c.updater(k, v, e) is True:
        return True
    return True if c.set(k, v, e, _UPDATE) else None  # a new key, or no C fast path


def cache_del(key: Any, cache: Any = None) -> bool | None:
    c = _cache("cache_del", cache)
    if c is None:
        return None
    return True if c.delete(_bytes("cache_del", key)) else None


def cache_exists(key: Any, cache: Any = None) -> bool | None:
    c = _first[0] if cache is None and _first else _cache("cache_exists", cache)
    if c is None:
        return None
    return True if c.exists(key if type(key) is bytes else _bytes("cache_exists", key)) else None


def cache_clear(cache: Any = None) -> bool | None:
    c = _cache("cache_clear", cache)
    if c is None:
        return None
    c.clear()
    return True


def _math(fn: str, flag: CacheFlag, default: int, key: Any, value: Any, expires: Any, cache: Any) -> bool | None:
    c = _cache(fn, cache)
    if c is None:
        return None
    delta = _int(fn, default if value is None else value)
    if not -(1 << 63) <= delta < (1 << 63):
        raise OverflowError(f"{fn}() value out of the int64 range")
    flags = int(CacheFlag.UPDATE | CacheFlag.MATH | CacheFlag.FIXEXPIRE | flag)
    ok = c.set(_bytes(fn, key), delta.to_bytes(8, "little", signed=True), _int(fn, expires) if expires else 0, flags)
    return True if ok else None


def cache_inc(key: Any, value: Any = 1, expires: Any = 0, cache: Any = None) -> bool | None:
    return _math("cache_inc", CacheFlag.INC, 1, key, value, expires, cache)


def cache_dec(key: Any, value: Any = 1, expires: Any = 0, cache: Any = None) -> bool | None:
    return _math("cache_dec", CacheFlag.DEC, 1, key, value, expires, cache)


def cache_mul(key: Any, value: Any = 2, expires: Any = 0, cache: Any = None) -> bool | None:
    return _math("cache_mul", CacheFlag.MUL, 2, key, value, expires, cache)


def cache_div(key: Any, value: Any = 2, expires: Any = 0, cache: Any = None) -> bool | None:
    return _math("cache_div", CacheFlag.DIV, 2, key, value, expires, cache)


def cache_num(key: Any, cache: Any = None) -> int:
    c = _cache("cache_num", cache)
    if c is None:
        return 0
    return c.num(_bytes("cache_num", key))


def cache_keys(cache: Any = None) -> list[bytes]:
    if cache is not None and not isinstance(cache, str):
        raise TypeError(f"cache_keys() cache name must be str, not {type(cache).__name__}")
    c = (_first[0] if _first else None) if not cache else _caches.get(cache)
    if c is None:
        raise ValueError("no local uWSGI cache available")
    return c.keys()


def stats(ctx: ApiContext) -> dict[str, Any]:
    return {"caches": [c.stats() for c in _caches.values()],
            "locks": [(c.lock.name, c.lock.holder()) for c in _caches.values()]}


def caches() -> dict[str, Cache]:
    """The caches of this instance, by name (for tests and the bench)."""
    return dict(_caches)

