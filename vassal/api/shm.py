"""Shared memory between the master, the workers and the mules, and the lock that guards it.

Every shared structure of the ``uwsgi`` module (caches, user locks, sharedareas) lives in an
anonymous ``MAP_SHARED`` mapping (or a file mapping for a persistent cache store) created by
the master before it forks, so every child — and every respawned child — sees the same pages.

The lock is a POSIX process-shared *robust* mutex (``pthread_mutexattr_setrobust``), the lock
engine uWSGI itself reports as "pthread robust mutexes". Why this one:

- a process killed while holding it (SIGKILL by harakiri, the OOM killer, a crash) does not
  wedge the others: the kernel walks the dead thread's robust list and hands the mutex to the
  next waiter with ``EOWNERDEAD``. That return value is the point: the next holder *knows*
  the previous one died mid-update and repairs the structure (``RobustMutex.acquire``
  returns True), where an OFD ``fcntl`` lock would be released silently and leave a
  half-written hash chain behind;
- it is owned by a thread, so threads of one worker exclude each other with the same lock
  (an OFD lock belongs to an open file and would let two threads of a process in at once);
- uncontended it costs no system call (a futex in user space), where ``fcntl`` costs two.

It is called through ``ctypes``: the fast path (``trylock``/``unlock``, which never block) keeps
the GIL; only a contended ``lock`` releases it while it waits, so other threads of the
process go on (and the holder, if it is one of them, can finish).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

_libc = ctypes.CDLL(None, use_errno=True)  # calls that may block release the GIL
_libc_fast = ctypes.PyDLL(None)  # calls that never block keep it (much cheaper)

_trylock = _libc_fast.pthread_mutex_trylock
_unlock = _libc_fast.pthread_mutex_unlock
_lock = _libc.pthread_mutex_lock
_consistent = _libc_fast.pthread_mutex_consistent
for _f in (_trylock, _unlock, _lock, _consistent):
    _f.argtypes = [ctypes.c_void_p]
    _f.restype = ctypes.c_int

PTHREAD_PROCESS_SHARED = 1
PTHREAD_MUTEX_ROBUST = 1
PTHREAD_MUTEX_RECURSIVE = 1
PTHREAD_MUTEX_ERRORCHECK = 2

#: bytes reserved per mutex: pthread_mutex_t (40 bytes on x86_64 glibc, 48 on aarch64) and,
#: at MUTEX_PID_OFFSET, the pid of the holder (shown by the stats server, as uWSGI does)
MUTEX_SIZE = 64
MUTEX_PID_OFFSET = 56


def raw_calls() -> tuple:
    """(trylock, lock, unlock, consistent) taking a mutex address: for hot paths that inline
    what ``RobustMutex`` does (each Python call level costs as much as the lock itself)."""
    return _trylock, _lock, _unlock, _consistent


_msync = _libc.msync
_msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MS_ASYNC = 1


def msync_async(buf: mmap.mmap) -> None:
    """Ask the kernel to write a file mapping's dirty pages out, without waiting."""
    anchor = ctypes.c_char.from_buffer(buf)
    try:
        if _msync(ctypes.addressof(anchor), len(buf), MS_ASYNC) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        del anchor


def anonymous(size: int) -> mmap.mmap:
    """Zeroed memory shared with every process forked after this call."""
    return mmap.mmap(-1, max(size, 1), flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)


class RobustMutex:
    """A process-shared robust mutex at ``offset`` of ``buf`` (MUTEX_SIZE bytes).

    ``create`` initializes it (in the master, before the fork); children use the inherited
    mapping. ``recursive``: the same thread may take it again (counted), otherwise taking it
    twice raises instead of deadlocking the thread on itself.
    """

    __slots__ = ("addr", "_pid", "_anchor", "name")

    def __init__(self, buf: mmap.mmap, offset: int, name: str, create: bool = True,
                 recursive: bool = False) -> None:
        self.name = name
        self._anchor = (ctypes.c_char * MUTEX_SIZE).from_buffer(buf, offset)
        self.addr = ctypes.addressof(self._anchor)
        self._pid = memoryview(buf)[offset + MUTEX_PID_OFFSET: offset + MUTEX_SIZE].cast("q")
        if create:
            attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes; room to spare
            _check(_libc.pthread_mutexattr_init(attr), "pthread_mutexattr_init")
            _check(_libc.pthread_mutexattr_setpshared(attr, PTHREAD_PROCESS_SHARED), "setpshared")
            _check(_libc.pthread_mutexattr_setrobust(attr, PTHREAD_MUTEX_ROBUST), "setrobust")
            kind = PTHREAD_MUTEX_RECURSIVE if recursive else PTHREAD_MUTEX_ERRORCHECK
            _check(_libc.pthread_mutexattr_settype(attr, kind), "settype")
            _check(_libc.pthread_mutex_init(ctypes.c_void_p(self.addr), attr), "pthread_mutex_init")
            _libc.pthread_mutexattr_destroy(attr)
            self._pid[0] = 0

    def acquire(self) -> bool:
        """Take the lock; True when its previous holder died holding it (the caller must
        repair what the lock guards before relying on it)."""
        r = _trylock(self.addr)
        if r == errno.EBUSY:
            r = _lock(self.addr)
        if r == 0:
            self._pid[0] = os.getpid()
            return False
        if r == errno.EOWNERDEAD:
            _consistent(self.addr)
            self._pid[0] = os.getpid()
            return True
        if r == errno.EDEADLK:
            raise RuntimeError(f"{self.name}: already held by this thread")
        raise OSError(r, f"{self.name}: {os.strerror(r)}")

    def try_acquire(self) -> bool | None:
        """Take the lock if free: None when busy, else like ``acquire``."""
        r = _trylock(self.addr)
        if r == errno.EBUSY or r == errno.EDEADLK:
            return None
        if r == errno.EOWNERDEAD:
            _consistent(self.addr)
            self._pid[0] = os.getpid()
            return True
        if r == 0:
            self._pid[0] = os.getpid()
            return False
        raise OSError(r, f"{self.name}: {os.strerror(r)}")

    def release(self) -> bool:
        """Release the lock; False when this thread did not hold it (nothing happens)."""
        pid = self._pid[0]
        self._pid[0] = 0
        if _unlock(self.addr) != 0:
            self._pid[0] = pid
            return False
        return True

    def holder(self) -> int:
        """The pid of the process holding the lock, 0 when free (as uWSGI's stats show)."""
        return self._pid[0]

    def locked(self) -> bool:
        """True while another thread or process holds the lock (a dead holder's lock is
        recovered and counts as free)."""
        r = _trylock(self.addr)
        if r == 0 or r == errno.EOWNERDEAD:
            if r == errno.EOWNERDEAD:
                _consistent(self.addr)
            _unlock(self.addr)
            return False
        return True

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise OSError(rc, f"{what}: {os.strerror(rc)}")
