/*
 * Optional accelerator of vassal/api/cache.py: the two hot paths of a cache (a read of a key,
 * an update in place of a live key's value) in C, on the memory cache.py lays out and with
 * cache.py's protocol (seqlock reads, writes under the robust mutex at offset 0 of the meta
 * region). Everything else -- new keys, deletes, expiry, LRU, bitmap, repair -- stays in
 * Python: whenever a case is not the plain one, these functions answer FALLBACK and the
 * caller runs the Python code, which is complete on its own (the package works without this
 * file compiled; IMPERIUM_NO_ACCEL=1 turns it off).
 *
 * Layout (see cache.py): meta words (uint64) -- MUTEX (8 words), then ITEMS, HITS, MISS, ...,
 * SEQ (word 19), DIRTY (word 20); the hash table at word table_off; the store region holds the
 * items (88 + keysize bytes: flags, keysize, hash, valsize, first_block, expires, hits, prev,
 * next, lru_prev, lru_next, key) then the value blocks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define W_HITS 9
#define W_MISS 10
#define W_NEXT_SCAN 12
#define W_LAST_MODIFIED 17
#define W_SEQ 19
#define W_DIRTY 20
#define ITEM_HEADER 88
#define FLUSH 64
#define SPIN 40
#define HASH_DJB33X 0
#define HASH_MURMUR2 1

typedef struct {
    PyObject_HEAD
    PyObject *owner;         /* what keeps the mappings alive (the Python Cache) */
    uint64_t *meta;
    char *store;
    uint64_t isz, table_off, hashsize, data_off, data_size, blocksize, max_item_size, max_items, keysize;
    int hash_kind, lastmod;
    uint64_t hits, miss;     /* not yet added to the shared counters */
} Fast;

static PyObject *FALLBACK;

static uint32_t djb33x(const unsigned char *k, Py_ssize_t n) {
    uint32_t h = 5381;
    for (Py_ssize_t i = 0; i < n; i++)
        h = ((h << 5) + h) ^ (uint32_t)(int32_t)(signed char)k[i];
    return h;
}

static uint32_t murmur2(const unsigned char *k, Py_ssize_t len) {
    const uint32_t m = 0x5bd1e995;
    uint32_t h = (uint32_t)len;
    Py_ssize_t i = 0;
    while (len - i >= 4) {
        uint32_t x = k[i] | (uint32_t)k[i + 1] << 8 | (uint32_t)k[i + 2] << 16 | (uint32_t)k[i + 3] << 24;
        x *= m; x ^= x >> 24; x *= m;
        h *= m; h ^= x;
        i += 4;
    }
    /* the tail is read from the key's first bytes, as signed chars: uWSGI indexes its unmoved
     * `key` there, not the advanced `ukey`, and the slots of a shared store must agree */
    switch (len - i) {
    case 3: h ^= (uint32_t)(int32_t)(signed char)k[2] << 16; /* fallthrough */
    case 2: h ^= (uint32_t)(int32_t)(signed char)k[1] << 8;  /* fallthrough */
    case 1: h ^= (uint32_t)(int32_t)(signed char)k[0]; h *= m;
    }
    h ^= h >> 13; h *= m; h ^= h >> 15;
    return h;
}

static inline uint64_t rd(const char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void wr(char *p, uint64_t v) { memcpy(p, &v, 8); }

static inline uint64_t seq_load(Fast *f) {
    return __atomic_load_n(&f->meta[W_SEQ], __ATOMIC_ACQUIRE);
}

/* the item holding key, 0 if none; *long_chain set when it gave up after 64 links */
static uint64_t find(Fast *f, const char *key, Py_ssize_t n, uint32_t h, int *long_chain) {
    uint64_t i = __atomic_load_n(&f->meta[f->table_off + h % f->hashsize], __ATOMIC_RELAXED);
    int rounds = 0;
    while (i) {
        if (i >= f->max_items) return 0;  /* torn: the caller's sequence check throws it away */
        const char *it = f->store + i * f->isz;
        if (rd(it + 16) == h && rd(it + 8) == (uint64_t)n && memcmp(it + ITEM_HEADER, key, n) == 0)
            return i;
        i = rd(it + 64);
        if (++rounds > 64) { *long_chain = 1; return 0; }
    }
    return 0;
}

static uint32_t hash_of(Fast *f, const char *key, Py_ssize_t n) {
    return f->hash_kind == HASH_MURMUR2 ? murmur2((const unsigned char *)key, n)
                                         : djb33x((const unsigned char *)key, n);
}

/* get(key: bytes) -> bytes | None | FALLBACK */
static PyObject *Fast_get(Fast *f, PyObject *arg) {
    char *key;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &key, &n) < 0) return NULL;
    if (n == 0 || (uint64_t)n > f->keysize) goto fallback;  /* no such key can be stored: Python answers */
    uint32_t h = hash_of(f, key, n);
    for (int attempt = 0; attempt < 4; attempt++) {
        uint64_t s = seq_load(f);
        if (s & 1) continue;
        int long_chain = 0;
        uint64_t i = find(f, key, n, h, &long_chain);
        if (long_chain) break;
        if (!i) {
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (seq_load(f) != s) continue;
            if (++f->miss >= FLUSH) { __atomic_fetch_add(&f->meta[W_MISS], f->miss, __ATOMIC_RELAXED); f->miss = 0; }
            Py_RETURN_NONE;
        }
        const char *it = f->store + i * f->isz;
        uint64_t flags = rd(it), vs = rd(it + 24), first = rd(it + 32);
        /* first below the number of blocks before any product: no overflow, no read outside */
        if (vs > f->max_item_size || first >= f->data_size / f->blocksize || first * f->blocksize + vs > f->data_size)
            continue;
        PyObject *value = PyBytes_FromStringAndSize(f->store + f->data_off + first * f->blocksize, (Py_ssize_t)vs);
        if (!value) return NULL;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (seq_load(f) != s) { Py_DECREF(value); continue; }
        if (flags & 1) { Py_DECREF(value); Py_RETURN_NONE; }  /* UNGETTABLE */
        if (++f->hits >= FLUSH) { __atomic_fetch_add(&f->meta[W_HITS], f->hits, __ATOMIC_RELAXED); f->hits = 0; }
        return value;
    }
fallback:
    Py_INCREF(FALLBACK);
    return FALLBACK;
}

/* take the mutex; 0 when held and clean, else the caller must let Python handle it */
static int take(Fast *f) {
    pthread_mutex_t *mx = (pthread_mutex_t *)f->meta;
    int r = pthread_mutex_trylock(mx);
    for (int i = 0; r == EBUSY && i < SPIN; i++) r = pthread_mutex_trylock(mx);
    if (r == EBUSY) {
        Py_BEGIN_ALLOW_THREADS
        r = pthread_mutex_lock(mx);
        Py_END_ALLOW_THREADS
    }
    if (r == EOWNERDEAD) {
        /* its holder died mid-change: mark the cache for repair, let Python repair it */
        pthread_mutex_consistent(mx);
        f->meta[W_DIRTY] = 1;
        pthread_mutex_unlock(mx);
        return -1;
    }
    if (r != 0) return -1;
    if (f->meta[W_DIRTY]) { pthread_mutex_unlock(mx); return -1; }
    return 0;
}

/* update(key: bytes, value: bytes, expires: int) -> True | FALLBACK: the value of a live key
   replaced in place; anything else (a new key) is Python's */
static PyObject *Fast_update(Fast *f, PyObject *const *args, Py_ssize_t nargs) {
    char *key, *val;
    Py_ssize_t n, vn;
    if (nargs != 3) { PyErr_SetString(PyExc_TypeError, "update(key, value, expires)"); return NULL; }
    if (PyBytes_AsStringAndSize(args[0], &key, &n) < 0 || PyBytes_AsStringAndSize(args[1], &val, &vn) < 0)
        return NULL;
    uint64_t expires = PyLong_AsUnsignedLongLong(args[2]);
    if (expires == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    if (n == 0 || (uint64_t)n > f->keysize || vn == 0 || (uint64_t)vn > f->max_item_size) goto fallback;
    uint32_t h = hash_of(f, key, n);
    if (take(f)) goto fallback;
    uint64_t *seq = &f->meta[W_SEQ];
    __atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);  /* odd: readers retry */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    int long_chain = 0;
    uint64_t i = find(f, key, n, h, &long_chain);
    PyObject *ret = FALLBACK;
    if (i) {
        char *it = f->store + i * f->isz;
        uint64_t first = rd(it + 32);
        if (first >= f->data_size / f->blocksize || first * f->blocksize + (uint64_t)vn > f->data_size)
            i = 0;  /* cannot happen with a sane cache: let Python's path (and its checks) decide */
    }
    if (i) {
        char *it = f->store + i * f->isz;
        uint64_t first = rd(it + 32);
        time_t now = 0;
        if (expires) {
            now = time(NULL);
            expires += (uint64_t)now;
            uint64_t ns = f->meta[W_NEXT_SCAN];
            if (!ns || ns > expires) f->meta[W_NEXT_SCAN] = expires;
        }
        memcpy(f->store + f->data_off + first * f->blocksize, val, vn);
        wr(it + 24, (uint64_t)vn);
        wr(it + 40, expires);
        if (f->lastmod) f->meta[W_LAST_MODIFIED] = (uint64_t)(now ? now : time(NULL));
        ret = Py_True;
    }
    if (f->hits || f->miss) {
        f->meta[W_HITS] += f->hits;
        f->meta[W_MISS] += f->miss;
        f->hits = f->miss = 0;
    }
    __atomic_store_n(seq, *seq + 1, __ATOMIC_RELEASE);  /* even again */
    pthread_mutex_unlock((pthread_mutex_t *)f->meta);
    Py_INCREF(ret);
    return ret;
fallback:
    Py_INCREF(FALLBACK);
    return FALLBACK;
}

static int Fast_init(Fast *f, PyObject *args, PyObject *kw) {
    unsigned long long meta, store, isz, table_off, hashsize, data_off, data_size, blocksize, max_item_size,
        max_items, keysize;
    int hash_kind, lastmod;
    PyObject *owner;
    if (!PyArg_ParseTuple(args, "OKKKKKKKKKKKii", &owner, &meta, &store, &isz, &table_off, &hashsize, &data_off,
                          &data_size, &blocksize, &max_item_size, &max_items, &keysize, &hash_kind, &lastmod))
        return -1;
    Py_INCREF(owner);
    Py_XSETREF(f->owner, owner);
    f->meta = (uint64_t *)(uintptr_t)meta;
    f->store = (char *)(uintptr_t)store;
    f->isz = isz; f->table_off = table_off; f->hashsize = hashsize; f->data_off = data_off;
    f->data_size = data_size; f->blocksize = blocksize; f->max_item_size = max_item_size;
    f->max_items = max_items; f->keysize = keysize;
    f->hash_kind = hash_kind; f->lastmod = lastmod;
    f->hits = f->miss = 0;
    return 0;
}

/* flush() -> None: add this process's pending hit/miss counts to the shared counters */
static PyObject *Fast_flush(Fast *f, PyObject *unused) {
    __atomic_fetch_add(&f->meta[W_HITS], f->hits, __ATOMIC_RELAXED);
    __atomic_fetch_add(&f->meta[W_MISS], f->miss, __ATOMIC_RELAXED);
    f->hits = f->miss = 0;
    Py_RETURN_NONE;
}

static void Fast_dealloc(Fast *f) {
    Py_XDECREF(f->owner);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyMethodDef Fast_methods[] = {
    {"get", (PyCFunction)Fast_get, METH_O, "the value of key (bytes), None, or FALLBACK"},
    {"update", (PyCFunction)(void (*)(void))Fast_update, METH_FASTCALL, "replace a live key's value, or FALLBACK"},
    {"flush", (PyCFunction)Fast_flush, METH_NOARGS, "add the pending hit/miss counts"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vassal.api._cachefast.Fast",
    .tp_basicsize = sizeof(Fast),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Fast_init,
    .tp_dealloc = (destructor)Fast_dealloc,
    .tp_methods = Fast_methods,
    .tp_doc = "hot paths of one cache (see vassal/api/cache.py)",
};

/* hash(key: bytes, murmur2: bool) -> int: the C hash, so that tests hold it to cache.py's */
static PyObject *mod_hash(PyObject *self, PyObject *args) {
    const char *key;
    Py_ssize_t n;
    int use_murmur2;
    if (!PyArg_ParseTuple(args, "y#p", &key, &n, &use_murmur2)) return NULL;
    uint32_t h = use_murmur2 ? murmur2((const unsigned char *)key, n) : djb33x((const unsigned char *)key, n);
    return PyLong_FromUnsignedLong(h);
}

static PyMethodDef module_methods[] = {
    {"hash", mod_hash, METH_VARARGS, "hash(key, murmur2): the hash the fast paths use for key"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cachefast", "cache hot paths in C", -1, module_methods};

PyMODINIT_FUNC PyInit__cachefast(void) {
    if (PyType_Ready(&FastType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    FALLBACK = PyObject_CallObject((PyObject *)&PyBaseObject_Type, NULL);
    if (!FALLBACK || PyModule_AddObject(m, "FALLBACK", FALLBACK) < 0) return NULL;
    Py_INCREF(FALLBACK);
    Py_INCREF(&FastType);
    if (PyModule_AddObject(m, "Fast", (PyObject *)&FastType) < 0) return NULL;
    return m;
}
