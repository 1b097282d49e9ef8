"""One uWSGI cache in shared memory: items, blocks, hash chains, LRU, expiry, math.

The memory is laid out as uWSGI 2.0 lays it out (core/cache.c), so a cache ``store`` file
written by Imperium is read by a real uWSGI and the other way round:

- the *store* region (a file for a persistent cache, anonymous memory otherwise): ``max_items``
  items of ``88 + keysize`` bytes (eleven native uint64 — flags, keysize, hash, valsize,
  first_block, expires, hits, prev, next, lru_prev, lru_next — then the key), followed by
  ``blocks`` blocks of ``blocksize`` bytes holding the values. Item 0 is never used (0 means
  "none" in the links), so ``items = N`` holds N-1 keys, as in uWSGI;
- the *meta* region (always anonymous): the robust mutex, the counters the stats show, the
  hash table (``hashsize`` slots, the first item of each chain), the stack of free items and,
  with ``bitmap``, the map of used blocks. Like uWSGI, it is rebuilt from the items when a
  store is loaded (``rebuild``); unlike uWSGI it is also rebuilt, with every item checked,
  when a process died holding the lock, and the bitmap is rebuilt too.

Keys are hashed with uWSGI's functions (djb33x by default, or murmur2), bit for bit
(``char`` is signed in uWSGI's C on x86, so bytes >= 0x80 are sign-extended).

Changes take the cache's lock (``vassal.api.shm.RobustMutex``). Reads (``get``, ``exists``)
take no lock: they are a *seqlock* read — the writer makes a sequence word odd while it
changes anything and even again after; a reader notes the word, reads, and keeps what it
read only if the word did not move and was even (else it tries again, and after a few tries
reads under the lock). A reader never follows a link out of range and never keeps a torn
value. This relies on the processor keeping loads in order (x86's TSO; CPython's own calls
between the loads stop the compiler reordering them; the C accelerator uses acquire loads).
Hits and misses of lock-free reads are counted per process and added to the shared counters
every 64 reads and at each write. The lock-free read and the in-place update of a live key
have an optional C twin (``_cachefast.c``, same memory, same protocol) that answers FALLBACK
for any other case. The public methods are the operations of uWSGI's cache API and return
what its C functions return.
"""

from __future__ import annotations

import array
import ctypes
import enum
import errno
import mmap
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vassal.accel import optional
from vassal.api import shm

#: the optional C accelerator of the two hot paths (see _cachefast.c); Python does it all too
_accel = optional("vassal.api._cachefast")

#: what a fast path answers when the case is not the plain one: run the Python path
FALLBACK: object = _accel.FALLBACK if _accel is not None else object()

ITEM_HEADER = 88  # eleven uint64
F_FLAGS, F_KEYSIZE, F_HASH, F_VALSIZE, F_FIRST, F_EXPIRES, F_HITS, F_PREV, F_NEXT, F_LRU_PREV, F_LRU_NEXT = range(11)

# meta region: the mutex, then these uint64 counters (word index), then the tables
M_ITEMS, M_HITS, M_MISS, M_FULL, M_NEXT_SCAN, M_LRU_HEAD, M_LRU_TAIL, M_STACK, M_BITMAP_POS, \
    M_LAST_MODIFIED, M_REPAIRS, M_SEQ, M_DIRTY = range(shm.MUTEX_SIZE // 8, shm.MUTEX_SIZE // 8 + 13)
# M_DIRTY: set by the C accelerator when it got the lock of a dead holder; the next Python
# taker of the lock repairs the cache (the word numbers are also written in _cachefast.c)
META_WORDS = 32  # header words before the hash table (room to grow)

_INT64 = struct.Struct("=q")
_HEAD = struct.Struct("=9Q")  # an item's fields up to next
_HEAD5 = struct.Struct("=5Q")  # flags, keysize, hash, valsize, first_block (the read path)
_NEXT = struct.Struct("=Q")
_VS_EXP = struct.Struct("=3Q")  # valsize, first_block, expires
_SEQ, _MISS, _HITS = M_SEQ, M_MISS, M_HITS
#: hits and misses of lock-free reads are counted per process and added to the shared
#: counters every _FLUSH of them (and at each write): one shared cache line bouncing between
#: processors at every read would cost more than the read
_FLUSH = 64
_SPIN = 40
_trylock, _lock, _unlock, _consistent = shm.raw_calls()
_NONE = 0xFFFFFFFFFFFFFFFF


class CacheFlag(enum.IntFlag):
    """uWSGI's UWSGI_CACHE_FLAG_* (uwsgi.h)."""

    UNGETTABLE = 1 << 0
    UPDATE = 1 << 1
    LOCAL = 1 << 2
    ABSEXPIRE = 1 << 3
    MATH = 1 << 4
    INC = 1 << 5
    DEC = 1 << 6
    MUL = 1 << 7
    DIV = 1 << 8
    FIXEXPIRE = 1 << 9


# plain ints for the hot paths (an IntFlag operation costs a microsecond)
_UNGETTABLE, _UPDATE, _ABSEXPIRE, _MATH, _INC, _DEC, _MUL, _DIV, _FIXEXPIRE = (
    int(f) for f in (CacheFlag.UNGETTABLE, CacheFlag.UPDATE, CacheFlag.ABSEXPIRE, CacheFlag.MATH, CacheFlag.INC,
                     CacheFlag.DEC, CacheFlag.MUL, CacheFlag.DIV, CacheFlag.FIXEXPIRE))

_SIGNED = [c if c < 128 else c | 0xFFFFFF00 for c in range(256)]  # (int)(char)c as uint32


def djb33x(key: bytes) -> int:
    """uWSGI's default cache hash (Bernstein's, xor variant), as core/hash.c computes it."""
    h = 5381
    s = _SIGNED
    for c in key:
        h = ((h * 33) ^ s[c]) & 0xFFFFFFFF
    return h


def murmur2(key: bytes) -> int:
    """uWSGI 2.0's murmur2 as core/hash.c really computes it (adapted from nginx's).

    Its 1 to 3 tail bytes are read from the start of the key (it indexes ``key``, which it
    never advances, instead of the walking ``ukey``) and as signed chars. So for a key of 5 or
    more bytes whose length is not a multiple of 4 this differs from textbook MurmurHash2, and
    it has to: the hash decides the slot of an item in a cache store file shared with uWSGI.
    """
    m = 0x5BD1E995
    n = len(key)
    h = n & 0xFFFFFFFF
    for k in struct.unpack_from(f"<{n >> 2}I", key):  # the 4-byte blocks, little-endian
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * m) & 0xFFFFFFFF) ^ ((k * m) & 0xFFFFFFFF)
    rest = n & 3
    if rest:
        s = _SIGNED
        if rest == 3:
            h ^= (s[key[2]] << 16) & 0xFFFFFFFF
        if rest >= 2:
            h ^= (s[key[1]] << 8) & 0xFFFFFFFF
        h = ((h ^ s[key[0]]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


HASHES: dict[str, Callable[[bytes], int]] = {"djb33x": djb33x, "murmur2": murmur2}


@dataclass
class CacheSpec:
    """A cache as configured (uWSGI's defaults: blocksize 64k, keysize 2048, hashsize 64k)."""

    name: str
    max_items: int
    blocksize: int = 65536
    blocks: int = 0  # 0: max_items
    keysize: int = 2048
    hashsize: int = 65536
    hash: str = "djb33x"
    bitmap: bool = False
    store: str | None = None
    store_sync: int = 0
    store_delete: bool = False
    use_last_modified: bool = False
    math_initial: int = 0
    ignore_full: bool = False
    purge_lru: bool = False
    lazy_expire: bool = False
    sweep_on_full: int = 0
    clear_on_full: bool = False
    no_expire: bool = False

    def __post_init__(self) -> None:
        if not self.blocks:
            self.blocks = self.max_items

    @property
    def item_size(self) -> int:
        return ITEM_HEADER + self.keysize

    @property
    def max_item_size(self) -> int:
        return self.blocksize * self.blocks if self.bitmap else self.blocksize

    @property
    def filesize(self) -> int:
        return self.item_size * self.max_items + self.blocksize * self.blocks


class StoreError(Exception):
    """The store file cannot be used (one line, as uWSGI says it)."""


def _views(buf: mmap.mmap, length: int) -> list[memoryview]:
    """Eight uint64 views of ``buf``, shifted by 0..7 bytes: the word at byte offset ``b`` is
    ``views[b & 7][b >> 3]`` whatever the alignment (items are 88 + keysize bytes long)."""
    mv = memoryview(buf)
    out = []
    for o in range(8):
        n = max(0, (length - o) // 8)
        out.append(mv[o: o + n * 8].cast("Q"))
    return out


class Cache:
    """One cache; created in the master (``open``), used by every process forked after."""

    def __init__(self, spec: CacheSpec, log: Callable[[str], None]) -> None:
        self.spec = spec
        self.name = spec.name
        self.log = log
        self.hash = HASHES[spec.hash]
        self.isz = spec.item_size
        self.max_items = spec.max_items
        self.hashsize = spec.hashsize
        self.blocksize = spec.blocksize
        self.max_item_size = spec.max_item_size
        self.keysize = spec.keysize
        self.purge_lru = spec.purge_lru
        self.lazy = spec.lazy_expire
        self.lastmod = spec.use_last_modified
        # reads without the lock, unless a read changes the cache (LRU order, lazy expiry)
        self.fast_reads = not (spec.purge_lru or spec.lazy_expire)
        # an update of a live key rewrites its value in place (no LRU order, no blocks to move)
        self.fast_writes = not (spec.purge_lru or spec.lazy_expire or spec.bitmap)
        self.bitmap_size = (spec.blocks + 7) // 8 if spec.bitmap else 0
        self.table_off = META_WORDS  # word index of the hash table
        self.stack_off = self.table_off + self.hashsize  # word index of the free-item stack
        self.bitmap_off = (self.stack_off + self.max_items + 1) * 8  # byte offset of the bitmap
        meta_size = self.bitmap_off + self.bitmap_size
        self.meta = shm.anonymous(meta_size)
        self.m = memoryview(self.meta)[: (meta_size // 8) * 8].cast("Q")
        self.lock = shm.RobustMutex(self.meta, 0, f"cache_{self.name}")
        self.data_off = self.isz * self.max_items
        self._hashes: dict[bytes, int] = {}
        self._counts = [0, 0]  # lock-free hits and misses not yet added to the shared counters
        self.store: mmap.mmap
        self.restored = False
        if spec.store:
            self.store = self._open_store(spec)
            self.restored = True
        else:
            self.store = shm.anonymous(spec.filesize)
        self.v = _views(self.store, self.data_off)
        if self.restored:
            self.rebuild()
        else:
            self._init_fresh()
        self.fast: Any = None
        self.updater: Callable[[bytes, bytes, int], object] | None = None
        if _accel is not None:
            self._anchors = (ctypes.c_char.from_buffer(self.meta), ctypes.c_char.from_buffer(self.store))
            self.fast = _accel.Fast(self, ctypes.addressof(self._anchors[0]), ctypes.addressof(self._anchors[1]),
                                    self.isz, self.table_off, self.hashsize, self.data_off,
                                    spec.blocksize * spec.blocks, self.blocksize, self.max_item_size,
                                    self.max_items, self.keysize, 1 if spec.hash == "murmur2" else 0,
                                    1 if self.lastmod else 0)
            if self.fast_writes:
                self.updater = self.fast.update
        self.reader = self._make_reader()

    # --- setup ---------------------------------------------------------------------------

    def _open_store(self, spec: CacheSpec) -> mmap.mmap:
        path = spec.store
        assert path is not None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise StoreError(f"cannot use cache store file {path}: {exc.strerror}") from None
        if st is not None and spec.store_delete and (st.st_size != spec.filesize or not _is_reg(st.st_mode)):
            self.log(f"Removing invalid cache store file: {path}")
            try:
                os.unlink(path)
            except OSError as exc:
                raise StoreError(f"cannot remove invalid cache store file {path}: {exc.strerror}") from None
            st = None
        if st is not None and (st.st_size != spec.filesize or not _is_reg(st.st_mode)):
            raise StoreError(f"invalid cache store file {path} ({st.st_size} bytes, {spec.filesize} expected): "
                             "remove it or fix the cache blocksize/items to match its size")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open cache store file {path}: {exc.strerror}") from None
        try:
            if st is None:
                self.log(f"creating a new cache store file: {path}")
                os.ftruncate(fd, spec.filesize)
            else:
                self.log(f"recovered cache from backing store file: {path}")
            return mmap.mmap(fd, spec.filesize, flags=mmap.MAP_SHARED)
        except OSError as exc:
            raise StoreError(f"cannot map cache store file {path}: {exc.strerror}") from None
        finally:
            os.close(fd)

    # --- item fields ---------------------------------------------------------------------

    def _get(self, i: int, f: int) -> int:
        b = i * self.isz + f * 8
        return self.v[b & 7][b >> 3]

    def _set(self, i: int, f: int, value: int) -> None:
        b = i * self.isz + f * 8
        self.v[b & 7][b >> 3] = value

    def _key(self, i: int, n: int) -> bytes:
        b = i * self.isz + ITEM_HEADER
        return self.store[b: b + n]

    def _value_at(self, i: int) -> int:
        return self.data_off + self._get(i, F_FIRST) * self.blocksize

    # --- repair --------------------------------------------------------------------------

    def rebuild(self) -> int:
        """Rebuild the meta region from the items (after loading a store, or after a process
        died holding the lock): every item is checked, bad ones dropped, chains relinked.
        Returns the number of items kept. Caller holds the lock (or no other process runs)."""
        m = self.m
        for w in range(self.table_off, self.stack_off + self.max_items + 1):
            m[w] = 0
        if self.bitmap_size:
            self.meta[self.bitmap_off: self.bitmap_off + self.bitmap_size] = bytes(self.bitmap_size)
            extra = self.spec.blocks % 8
            if extra:
                self.meta[self.bitmap_off + self.bitmap_size - 1] = 0xFF >> extra
        m[M_LRU_HEAD] = m[M_LRU_TAIL] = 0
        m[M_BITMAP_POS] = 0
        kept = 0
        next_scan = 0
        free: list[int] = []
        tails: dict[int, int] = {}
        for i in range(1, self.max_items):
            if not self._valid(i):
                self._clear_item(i)
                free.append(i)
                continue
            h = self._get(i, F_HASH)
            slot = h % self.hashsize
            self._set(i, F_NEXT, 0)
            self._set(i, F_PREV, 0)
            tail = tails.get(slot)
            if tail is None:
                m[self.table_off + slot] = i
            else:
                self._set(tail, F_NEXT, i)
                self._set(i, F_PREV, tail)
            tails[slot] = i
            if self.purge_lru:
                self._lru_add(i)
            exp = self._get(i, F_EXPIRES)
            if exp and (not next_scan or exp < next_scan):
                next_scan = exp
            kept += 1
        # the free stack pops from the top: keep low indexes first, as uWSGI does
        sp = 0
        for i in reversed(free):
            sp += 1
            m[self.stack_off + sp] = i
        m[M_STACK] = sp
        m[M_ITEMS] = kept
        m[M_NEXT_SCAN] = next_scan
        return kept

    def _init_fresh(self) -> None:
        """A new anonymous cache: every item free (what ``rebuild`` finds, without reading
        the zeroed items one by one: a million items start in milliseconds)."""
        n = self.max_items - 1
        if n > 0:
            # the stack pops from the top: item 1 last in, first out
            self.m[self.stack_off + 1: self.stack_off + 1 + n] = memoryview(array.array("Q", range(n, 0, -1)))
        self.m[M_STACK] = max(n, 0)
        if self.bitmap_size and self.spec.blocks % 8:
            self.meta[self.bitmap_off + self.bitmap_size - 1] = 0xFF >> (self.spec.blocks % 8)

    def _valid(self, i: int) -> bool:
        ks = self._get(i, F_KEYSIZE)
        if not ks:
            return False
        vs = self._get(i, F_VALSIZE)
        first = self._get(i, F_FIRST)
        if ks > self.keysize or not vs or vs > self.max_item_size:
            return False
        if self.hash(self._key(i, ks)) != self._get(i, F_HASH):
            return False
        if not self.bitmap_size:
            return first == i
        nblocks = -(-vs // self.blocksize)
        if first + nblocks > self.spec.blocks or self._blocks_used(first, nblocks):
            return False
        self._mark(first, nblocks, True)
        return True

    def _clear_item(self, i: int) -> None:
        for f in (F_KEYSIZE, F_VALSIZE, F_HASH, F_PREV, F_NEXT, F_EXPIRES, F_LRU_PREV, F_LRU_NEXT):
            self._set(i, f, 0)

    def locked(self) -> _Held:
        """``with cache.locked():`` — the lock, repairing the cache if its holder died; the
        sequence word is odd while it is held (readers retry)."""
        return _Held(self)

    def _enter(self) -> None:
        self._take(_trylock(self.lock.addr))

    def _take(self, r: int) -> None:
        """Finish taking the lock after a first trylock answered ``r``."""
        lk = self.lock
        if r == errno.EBUSY:
            # the holder runs on another processor for a microsecond or two: try again a few
            # times before sleeping in the kernel (a sleep and a wake-up cost far more)
            for _ in range(_SPIN):
                r = _trylock(lk.addr)
                if r != errno.EBUSY:
                    break
            else:
                r = _lock(lk.addr)
        if r != 0:
            if r != errno.EOWNERDEAD:
                raise OSError(r, f"cache {self.name}: lock: {os.strerror(r)}")
            # its holder died: what it was changing may be half done
            _consistent(lk.addr)
        m = self.m
        m[M_SEQ] = (m[M_SEQ] + 1) | 1
        if r or m[M_DIRTY]:
            m[M_DIRTY] = 0
            m[M_REPAIRS] += 1
            kept = self.rebuild()
            self.log(f'[cache] a process died holding the lock of cache "{self.name}": rebuilt, {kept} items kept')

    def _exit(self) -> None:
        m = self.m
        counts = self._counts
        if counts[0] or counts[1]:
            m[M_HITS] += counts[0]
            m[M_MISS] += counts[1]
            counts[0] = counts[1] = 0
        m[M_SEQ] += 1
        _unlock(self.lock.addr)

    # --- lookups -------------------------------------------------------------------------

    def _hash_of(self, key: bytes) -> int:
        h = self._hashes.get(key)
        if h is None:
            h = self.hash(key)
            if len(self._hashes) > 4096:
                self._hashes.clear()
            self._hashes[key] = h
        return h

    def _index(self, key: bytes, h: int) -> int:
        """The item holding ``key``, 0 when absent (an expired one is dropped if lazy)."""
        i = self.m[self.table_off + h % self.hashsize]
        n = len(key)
        isz = self.isz
        v = self.v
        rounds = 0
        while i:
            b = i * isz
            if v[(b + 16) & 7][(b + 16) >> 3] == h and v[(b + 8) & 7][(b + 8) >> 3] == n \
                    and self.store[b + ITEM_HEADER: b + ITEM_HEADER + n] == key:
                if self.lazy:
                    exp = v[(b + 40) & 7][(b + 40) >> 3]
                    if exp and exp <= int(time.time()):
                        self._delete_index(i)
                        return 0
                return i
            i = v[(b + 64) & 7][(b + 64) >> 3]  # next
            rounds += 1
            if rounds > self.max_items:  # a loop: cannot happen unless memory was damaged
                self.rebuild()
                return 0
        return 0

    def get(self, key: bytes) -> bytes | None:
        r = self.reader(key)
        return self.get_slow(key) if r is FALLBACK else r

    def get_slow(self, key: bytes) -> bytes | None:
        """``get`` under the lock (what a fast path answering FALLBACK leaves to Python)."""
        return self._get_locked(key, self._hash_of(key))

    def _make_reader(self) -> Callable[[bytes], bytes | None]:
        """The lock-free ``get``, as a closure: every constant it needs is a local of the
        closure (an attribute load per use would cost a third of the call)."""
        m = self.m
        isz = self.isz
        store = self.store
        unpack = _HEAD5.unpack_from
        unpack_next = _NEXT.unpack_from
        hashes = self._hashes
        hash_of = self._hash_of
        table_off = self.table_off
        hashsize = self.hashsize
        data_off = self.data_off
        blocksize = self.blocksize
        max_item_size = self.max_item_size
        counts = self._counts  # [hits, misses] not yet added to the shared counters

        def get(key: bytes) -> bytes | None:
            h = hashes.get(key)
            if h is None:
                h = hash_of(key)
            n = len(key)
            table = table_off + h % hashsize
            for _ in range(4):
                s = m[_SEQ]
                if s & 1:
                    continue
                try:
                    i = m[table]
                    rounds = 0
                    while i:
                        b = i * isz
                        flags, ks, ih, vs, first = unpack(store, b)
                        if ih == h and ks == n and store[b + 88: b + 88 + n] == key:
                            break
                        i = unpack_next(store, b + 64)[0]
                        rounds += 1
                        if rounds > 64:
                            return FALLBACK  # a long chain: walk it under the lock
                    if not i:
                        if m[_SEQ] == s:
                            counts[1] += 1
                            if counts[1] >= _FLUSH:
                                m[_MISS] += counts[1]
                                counts[1] = 0
                            return None
                        continue
                    if vs > max_item_size:
                        continue
                    off = data_off + first * blocksize
                    value = store[off: off + vs]
                except (IndexError, struct.error):  # a link read while a writer changed it
                    continue
                if m[_SEQ] != s:
                    continue
                if flags & _UNGETTABLE:
                    return None
                counts[0] += 1
                if counts[0] >= _FLUSH:
                    m[_HITS] += counts[0]
                    counts[0] = 0
                return value
            return FALLBACK

        if not self.fast_reads:
            return lambda key: FALLBACK
        if _accel is not None:
            return self.fast.get
        return get

    def _get_locked(self, key: bytes, h: int) -> bytes | None:
        self._enter()
        try:
            i = self._index(key, h)
            m = self.m
            if not i:
                m[M_MISS] += 1
                return None
            if self._get(i, F_FLAGS) & _UNGETTABLE:
                return None
            if self.purge_lru:
                self._lru_remove(i)
                self._lru_add(i)
            self._set(i, F_HITS, self._get(i, F_HITS) + 1)
            m[M_HITS] += 1
            off = self._value_at(i)
            return self.store[off: off + self._get(i, F_VALSIZE)]
        finally:
            self._exit()

    def exists(self, key: bytes) -> bool:
        h = self._hashes.get(key)
        if h is None:
            h = self._hash_of(key)
        if not self.lazy:
            m = self.m
            isz = self.isz
            store = self.store
            unpack = _HEAD.unpack_from
            n = len(key)
            table = self.table_off + h % self.hashsize
            for _ in range(4):
                s = m[_SEQ]
                if s & 1:
                    continue
                try:
                    i = m[table]
                    rounds = 0
                    while i and rounds <= 64:
                        b = i * isz
                        _f, ks, ih, _v, _b, _e, _h, _p, nxt = unpack(store, b)
                        if ih == h and ks == n and store[b + 88: b + 88 + n] == key:
                            break
                        i = nxt
                        rounds += 1
                except (IndexError, struct.error):
                    continue
                if rounds <= 64 and m[_SEQ] == s:
                    return i != 0
        with self.locked():
            return self._index(key, h) != 0

    def num(self, key: bytes) -> int:
        """The value as a native int64 (what cache_inc & co. keep), 0 when absent or not 8
        bytes long (uwsgi.cache_num)."""
        value = self.get(key)
        if value is None or len(value) != 8:
            return 0
        return _INT64.unpack(value)[0]

    def keys(self) -> list[bytes]:
        """Every key, in uWSGI's order (hash table slot, then chain)."""
        out = []
        with self.locked():
            m = self.m
            for i in m[self.table_off: self.table_off + self.hashsize].tolist():
                rounds = 0
                while i and rounds <= self.max_items:
                    out.append(self._key(i, self._get(i, F_KEYSIZE)))
                    i = self._get(i, F_NEXT)
                    rounds += 1
        return out

    # --- changes -------------------------------------------------------------------------

    def set(self, key: bytes, value: bytes, expires: int = 0, flags: int = 0) -> bool:
        """uwsgi_cache_set2: a new key is stored; an existing one only with UPDATE."""
        n = len(key)
        vlen = len(value)
        if not n or not vlen or n > self.keysize or vlen > self.max_item_size:
            return False
        if flags & _MATH and vlen != 8:
            return False
        h = self._hashes.get(key)
        if h is None:
            h = self._hash_of(key)
        addr = self.lock.addr
        r = _trylock(addr)
        if r or self.m[M_DIRTY]:
            self._take(r)
        else:
            self.m[_SEQ] += 1  # odd: readers retry (it is even here: a dead writer means EOWNERDEAD)
        try:
            if flags == _UPDATE and self.fast_writes:
                # the common case inline: replace the value of a live key in place
                m = self.m
                store = self.store
                isz = self.isz
                i = m[self.table_off + h % self.hashsize]
                while i:
                    b = i * isz
                    _f, ks, ih, _v, first, _e, _h, _p, nxt = _HEAD.unpack_from(store, b)
                    if ih == h and ks == n and store[b + 88: b + 88 + n] == key:
                        if expires:
                            expires += int(time.time())
                            if not m[M_NEXT_SCAN] or m[M_NEXT_SCAN] > expires:
                                m[M_NEXT_SCAN] = expires
                        off = self.data_off + first * self.blocksize
                        store[off: off + vlen] = value
                        _VS_EXP.pack_into(store, b + 24, vlen, first, expires)
                        if self.lastmod:
                            m[M_LAST_MODIFIED] = int(time.time())
                        return True
                    i = nxt
            return self._set_locked(key, h, value, expires, flags)
        finally:
            self._exit()

    def update(self, key: bytes, value: bytes, expires: int = 0) -> bool:
        """``set`` with UPDATE: the C fast path when it can, else Python's."""
        if self.updater is not None and expires >= 0 and self.updater(key, value, expires) is True:
            return True
        return self.set(key, value, expires, _UPDATE)

    def _set_locked(self, key: bytes, h: int, value: bytes, expires: int, flags: int) -> bool:
        m = self.m
        vlen = len(value)
        now = 0
        i = self._index(key, h)
        if not i:
            if not m[M_STACK]:
                self._full()
                if not m[M_STACK]:
                    return False
            i = m[self.stack_off + m[M_STACK]]
            m[M_STACK] -= 1
            if self.bitmap_size:
                first = self._find_blocks(vlen)
                if first == _NONE:
                    m[M_STACK] += 1
                    self._full()
                    return False
                self._claim(first, vlen)
            else:
                first = i
            self._set(i, F_FIRST, first)
            if self.purge_lru:
                self._lru_add(i)
            if expires and not flags & _ABSEXPIRE:
                now = int(time.time())
                expires += now
            if expires and (not m[M_NEXT_SCAN] or m[M_NEXT_SCAN] > expires):
                m[M_NEXT_SCAN] = expires
            self._set(i, F_EXPIRES, expires)
            self._set(i, F_HASH, h)
            self._set(i, F_HITS, 0)
            self._set(i, F_FLAGS, int(flags))
            b = i * self.isz + ITEM_HEADER
            self.store[b: b + len(key)] = key
            off = self.data_off + first * self.blocksize
            if flags & _MATH:
                self.store[off: off + 8] = _INT64.pack(_math(self.spec.math_initial, value, flags))
            else:
                self.store[off: off + vlen] = value
            # the key size last: an item is valid once it has one (a crash before leaves none)
            self._set(i, F_VALSIZE, vlen)
            self._set(i, F_PREV, 0)
            self._set(i, F_NEXT, 0)
            self._set(i, F_KEYSIZE, len(key))
            slot = self.table_off + h % self.hashsize
            last = m[slot]
            if not last:
                m[slot] = i
            else:
                rounds = 0
                while self._get(last, F_NEXT) and rounds <= self.max_items:
                    last = self._get(last, F_NEXT)
                    rounds += 1
                self._set(last, F_NEXT, i)
                self._set(i, F_PREV, last)
            m[M_ITEMS] += 1
        elif flags & _UPDATE:
            if not flags & _FIXEXPIRE:
                if self.purge_lru:
                    self._lru_remove(i)
                    self._lru_add(i)
                if expires and not flags & _ABSEXPIRE:
                    now = int(time.time())
                    expires += now
                if expires and (not m[M_NEXT_SCAN] or m[M_NEXT_SCAN] > expires):
                    m[M_NEXT_SCAN] = expires
                self._set(i, F_EXPIRES, expires)
            if self.bitmap_size:
                old_first = self._get(i, F_FIRST)
                old_len = self._get(i, F_VALSIZE)
                first = self._find_blocks(vlen)
                if first == _NONE:
                    self._full()
                    return False
                self._claim(first, vlen)
                if flags & _MATH:
                    src = self.data_off + old_first * self.blocksize
                    self.store[self.data_off + first * self.blocksize:
                               self.data_off + first * self.blocksize + 8] = self.store[src: src + 8]
                self._mark(old_first, -(-old_len // self.blocksize), False)
                self._set(i, F_FIRST, first)
            off = self._value_at(i)
            if flags & _MATH:
                old = _INT64.unpack(self.store[off: off + 8])[0]
                self.store[off: off + 8] = _INT64.pack(_math(old, value, flags))
            else:
                self.store[off: off + vlen] = value
            self._set(i, F_VALSIZE, vlen)
        else:
            return False
        if self.lastmod:
            m[M_LAST_MODIFIED] = now or int(time.time())
        return True

    def delete(self, key: bytes) -> bool:
        h = self._hash_of(key)
        with self.locked():
            i = self._index(key, h)
            if not i:
                return False
            self._delete_index(i)
            return True

    def clear(self) -> None:
        """Delete every item (walking the hash chains: only the items in use are read)."""
        with self.locked():
            m = self.m
            for head in m[self.table_off: self.table_off + self.hashsize].tolist():
                i = head
                rounds = 0
                while i and rounds <= self.max_items:
                    nxt = self._get(i, F_NEXT)
                    self._delete_index(i)
                    i = nxt
                    rounds += 1

    def _delete_index(self, i: int) -> None:
        m = self.m
        if self._get(i, F_KEYSIZE):
            if self.bitmap_size:
                self._mark(self._get(i, F_FIRST), -(-self._get(i, F_VALSIZE) // self.blocksize), False)
            m[M_STACK] += 1
            m[self.stack_off + m[M_STACK]] = i
            prev, nxt = self._get(i, F_PREV), self._get(i, F_NEXT)
            if prev:
                self._set(prev, F_NEXT, nxt)
            else:
                m[self.table_off + self._get(i, F_HASH) % self.hashsize] = nxt
            if nxt:
                self._set(nxt, F_PREV, prev)
            if self.purge_lru:
                self._lru_remove(i)
            m[M_ITEMS] -= 1
        self._clear_item(i)
        if self.lastmod:
            m[M_LAST_MODIFIED] = int(time.time())

    def _full(self) -> None:
        """No free item or block: uWSGI's cache_full (log, count, purge the LRU item, sweep
        or clear as configured)."""
        spec = self.spec
        m = self.m
        if not spec.ignore_full:
            if self.purge_lru:
                self.log(f'LRU item will be purged from cache "{self.name}"')
            else:
                self.log(f'*** DANGER cache "{self.name}" is FULL !!! ***')
        m[M_FULL] += 1
        if self.purge_lru and m[M_LRU_HEAD]:
            self._delete_index(m[M_LRU_HEAD])
        clear = spec.clear_on_full
        if spec.sweep_on_full:
            now = int(time.time())
            removed = 0
            if m[M_NEXT_SCAN] <= now:
                m[M_NEXT_SCAN] = now + spec.sweep_on_full
                for i in range(1, self.max_items):
                    exp = self._get(i, F_EXPIRES)
                    if exp and exp <= now and self._get(i, F_KEYSIZE):
                        self._delete_index(i)
                        removed += 1
            if removed:
                clear = False
        if clear:
            for i in range(1, self.max_items):
                if self._get(i, F_KEYSIZE):
                    self._delete_index(i)

    def sweep(self, now: int, batch: int = 4096) -> int:
        """Drop the expired items (the master's sweeper). It walks the hash table's chains,
        so it reads only the items in use (never the pages of free ones), and takes the lock
        per batch of hash slots so that workers are never held up for a whole scan."""
        spec = self.spec
        if spec.no_expire or spec.purge_lru or spec.lazy_expire:
            return 0
        with self.locked():
            due = self.m[M_NEXT_SCAN]
            if not due or due > now:
                return 0
            self.m[M_NEXT_SCAN] = 0
        freed = 0
        t0 = self.table_off
        for start in range(0, self.hashsize, batch):
            with self.locked():
                m = self.m
                heads = m[t0 + start: t0 + min(start + batch, self.hashsize)].tolist()
                for head in heads:
                    i = head
                    rounds = 0
                    while i and rounds <= self.max_items:
                        nxt = self._get(i, F_NEXT)
                        exp = self._get(i, F_EXPIRES)
                        if exp:
                            if exp <= now:
                                self._delete_index(i)
                                freed += 1
                            elif not m[M_NEXT_SCAN] or m[M_NEXT_SCAN] > exp:
                                m[M_NEXT_SCAN] = exp
                        i = nxt
                        rounds += 1
        return freed

    # --- LRU -----------------------------------------------------------------------------

    def _lru_remove(self, i: int) -> None:
        m = self.m
        prev, nxt = self._get(i, F_LRU_PREV), self._get(i, F_LRU_NEXT)
        if nxt:
            self._set(nxt, F_LRU_PREV, prev)
        else:
            m[M_LRU_TAIL] = prev
        if prev:
            self._set(prev, F_LRU_NEXT, nxt)
        else:
            m[M_LRU_HEAD] = nxt

    def _lru_add(self, i: int) -> None:
        m = self.m
        tail = m[M_LRU_TAIL]
        if tail:
            self._set(tail, F_LRU_NEXT, i)
        else:
            m[M_LRU_HEAD] = i
        self._set(i, F_LRU_NEXT, 0)
        self._set(i, F_LRU_PREV, tail)
        m[M_LRU_TAIL] = i

    # --- block bitmap (bitmap mode: a value spans consecutive blocks) -----------------------

    def _bit(self, block: int) -> bool:
        return bool(self.meta[self.bitmap_off + (block >> 3)] & (0x80 >> (block & 7)))

    def _blocks_used(self, first: int, n: int) -> bool:
        return any(self._bit(b) for b in range(first, first + n))

    def _mark(self, first: int, n: int, used: bool) -> None:
        meta = self.meta
        base = self.bitmap_off
        for b in range(first, first + n):
            pos = base + (b >> 3)
            bit = 0x80 >> (b & 7)
            meta[pos] = (meta[pos] | bit) if used else (meta[pos] & ~bit & 0xFF)

    def _find_blocks(self, length: int) -> int:
        """First of ``length``'s blocks free in a row, searched from the last allocation
        onward and then from the start (uWSGI's scan: runs never wrap around the end)."""
        need = -(-length // self.blocksize)
        total = self.spec.blocks
        start = self.m[M_BITMAP_POS] % total if total else 0
        for lo, hi in ((start, total), (0, min(start + need - 1, total))):
            run = 0
            b = lo
            while b < hi:
                if (b & 7) == 0 and run == 0 and b + 8 <= hi and self.meta[self.bitmap_off + (b >> 3)] == 0xFF:
                    b += 8
                    continue
                if self._bit(b):
                    run = 0
                else:
                    run += 1
                    if run == need:
                        return b - need + 1
                b += 1
        return _NONE

    def _claim(self, first: int, length: int) -> None:
        n = -(-length // self.blocksize)
        self._mark(first, n, True)
        self.m[M_BITMAP_POS] = 0 if first + n >= self.spec.blocks else first + n

    # --- what the stats server shows ---------------------------------------------------------

    def stats(self) -> dict:
        m = self.m
        if self.fast is not None:
            self.fast.flush()
        spec = self.spec
        return {"name": self.name, "hash": spec.hash, "hashsize": spec.hashsize, "keysize": spec.keysize,
                "max_items": spec.max_items, "blocks": spec.blocks, "blocksize": spec.blocksize,
                "items": m[M_ITEMS], "hits": m[M_HITS], "miss": m[M_MISS], "full": m[M_FULL],
                "last_modified_at": m[M_LAST_MODIFIED]}

    def sync(self, wait: bool = True) -> None:
        """Write a store's pages to its file: now and waiting (at exit), or ``wait=False``
        (``store_sync``) only asking the kernel to schedule it, as uWSGI's msync(MS_ASYNC)
        does, so that the master's loop never waits on the disk."""
        if not self.spec.store:
            return
        try:
            if wait:
                self.store.flush()
            else:
                shm.msync_async(self.store)
        except (OSError, ValueError):
            pass


class _Held:
    """The lock of a cache held; a dead previous holder's damage is repaired on entry."""

    __slots__ = ("cache",)

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def __enter__(self) -> None:
        self.cache._enter()

    def __exit__(self, *exc: object) -> None:
        self.cache._exit()


def _math(current: int, delta_bytes: bytes, flags: int) -> int:
    """uWSGI's cache math on int64, with C's wrap-around and truncating division."""
    delta = _INT64.unpack(delta_bytes)[0]
    if flags & _INC:
        r = current + delta
    elif flags & _DEC:
        r = current - delta
    elif flags & _MUL:
        r = current * delta
    elif flags & _DIV:
        if delta == 0:
            r = 0
        else:
            q = abs(current) // abs(delta)
            r = q if (current >= 0) == (delta >= 0) else -q
    else:
        r = current
    return (r + (1 << 63)) % (1 << 64) - (1 << 63)


def _is_reg(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)
