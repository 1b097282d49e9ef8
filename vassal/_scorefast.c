/*
 * Optional accelerator of vassal/scoreboard.py's RequestCounters: the scoreboard writes a
 * worker makes at the start and at the end of every request, in one call each.
 *
 * Why: on a hello-world request the start (the core's in_request, the slot's busy_cores and
 * status) and the end (seven counters of the slot, the core's in_request and requests,
 * busy_cores and status again) were a dozen Python operations and five ctypes stores, about
 * a twentieth of the request's CPU. The worker is the only writer of these fields, so it
 * keeps the counters here and stores them into the shared map, as the Python class does.
 * Both run with the GIL held: the threads of a worker never interleave inside one.
 *
 * Layout (see scoreboard.py, which computes the offsets and checks the field order): the
 * slot's block requests, delta_requests, running_time, tx, avg_rt, app_requests (uint64)
 * then last_request_end (double); each core's in_request (double) then requests (uint64);
 * the slot's status and busy_cores (int32).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include "structmember.h"

typedef struct {
    PyObject_HEAD
    Py_buffer view;          /* the scoreboard's map, held for the life of the object */
    Py_ssize_t block, status, busy_off;
    Py_ssize_t *cores;       /* each core's in_request offset (requests follows) */
    Py_ssize_t ncores;
    unsigned long long requests, delta, running_time, tx, app_requests;
    unsigned long long *core_requests;
    int busy, status_busy, status_idle;
} Book;

static inline void put_u64(char *at, unsigned long long v) {
    uint64_t x = (uint64_t)v;
    memcpy(at, &x, 8);
}
static inline void put_f64(char *at, double v) { memcpy(at, &v, 8); }
static inline void put_i32(char *at, int v) {
    int32_t x = (int32_t)v;
    memcpy(at, &x, 4);
}

static int fits(Book *b, Py_ssize_t off, Py_ssize_t n) { return off >= 0 && off + n <= b->view.len; }

/* Book(map, block, core_offsets, status, busy_cores, requests, delta, running_time, tx,
 *      app_requests, core_requests, status_busy, status_idle) */
static int Book_init(Book *self, PyObject *args, PyObject *kwds) {
    PyObject *map, *cores, *core_requests;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Book() takes positional arguments only");
        return -1;
    }
    if (self->cores != NULL) {
        PyErr_SetString(PyExc_TypeError, "Book() is initialised once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OnO!nnKKKKKO!ii", &map, &self->block, &PyList_Type, &cores, &self->status,
                          &self->busy_off, &self->requests, &self->delta, &self->running_time, &self->tx,
                          &self->app_requests, &PyList_Type, &core_requests, &self->status_busy,
                          &self->status_idle))
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(cores);
    if (n < 1 || PyList_GET_SIZE(core_requests) != n) {
        PyErr_SetString(PyExc_ValueError, "one offset and one request count per core");
        return -1;
    }
    if (PyObject_GetBuffer(map, &self->view, PyBUF_WRITABLE) < 0)
        return -1;
    self->cores = PyMem_Calloc(n, sizeof(Py_ssize_t));
    self->core_requests = PyMem_Calloc(n, sizeof(unsigned long long));
    if (self->cores == NULL || self->core_requests == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->ncores = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        self->cores[i] = PyLong_AsSsize_t(PyList_GET_ITEM(cores, i));
        self->core_requests[i] = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(core_requests, i));
        if (PyErr_Occurred())
            return -1;
        if (!fits(self, self->cores[i], 16)) {
            PyErr_SetString(PyExc_ValueError, "a core's offset is outside the map");
            return -1;
        }
    }
    if (!fits(self, self->block, 56) || !fits(self, self->status, 4) || !fits(self, self->busy_off, 4)) {
        PyErr_SetString(PyExc_ValueError, "an offset is outside the map");
        return -1;
    }
    return 0;
}

static void Book_dealloc(Book *self) {
    if (self->view.obj != NULL)
        PyBuffer_Release(&self->view);
    PyMem_Free(self->cores);
    PyMem_Free(self->core_requests);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int core_arg(Book *b, PyObject *o, Py_ssize_t *core) {
    *core = PyLong_AsSsize_t(o);
    if (*core == -1 && PyErr_Occurred())
        return -1;
    if (*core < 0 || *core >= b->ncores || b->cores == NULL) {
        PyErr_SetString(PyExc_IndexError, "no such core");
        return -1;
    }
    return 0;
}

/* begin(core, t0): the core is in a request since t0 (monotonic); the worker is busy */
static PyObject *Book_begin(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t core;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "begin(core, t0)");
        return NULL;
    }
    if (core_arg(self, args[0], &core) < 0)
        return NULL;
    double t0 = PyFloat_AsDouble(args[1]);
    if (t0 == -1.0 && PyErr_Occurred())
        return NULL;
    char *m = self->view.buf;
    put_f64(m + self->cores[core], t0);
    self->busy++;
    put_i32(m + self->busy_off, self->busy);
    put_i32(m + self->status, self->status_busy);
    Py_RETURN_NONE;
}

/* done(core, t1, rt, tx, app) -> delta: a request of rt microseconds that sent tx bytes ended
 * at t1 (monotonic); app: it was a request of an app (app_requests counts it) */
static PyObject *Book_done(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t core;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "done(core, t1, rt, tx, app)");
        return NULL;
    }
    if (core_arg(self, args[0], &core) < 0)
        return NULL;
    double t1 = PyFloat_AsDouble(args[1]);
    if (t1 == -1.0 && PyErr_Occurred())
        return NULL;
    unsigned long long rt = PyLong_AsUnsignedLongLong(args[2]);
    if (rt == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long long tx = PyLong_AsUnsignedLongLong(args[3]);
    if (tx == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    int app = PyObject_IsTrue(args[4]);
    if (app < 0)
        return NULL;
    self->requests++;
    self->delta++;
    self->running_time += rt;
    self->tx += tx;
    if (app)
        self->app_requests++;
    char *m = self->view.buf, *at = m + self->block;
    put_u64(at, self->requests);
    put_u64(at + 8, self->delta);
    put_u64(at + 16, self->running_time);
    put_u64(at + 24, self->tx);
    put_u64(at + 32, self->running_time / self->requests);
    put_u64(at + 40, self->app_requests);
    put_f64(at + 48, t1);
    self->core_requests[core]++;
    put_f64(m + self->cores[core], 0.0);
    put_u64(m + self->cores[core] + 8, self->core_requests[core]);
    self->busy--;
    put_i32(m + self->busy_off, self->busy);
    if (self->busy <= 0)
        put_i32(m + self->status, self->status_idle);
    return PyLong_FromUnsignedLongLong(self->delta);
}

static PyObject *Book_core_requests(Book *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(self->ncores);
    for (Py_ssize_t i = 0; out != NULL && i < self->ncores; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(self->core_requests[i]);
        if (v == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

static PyMethodDef Book_methods[] = {
    {"begin", (PyCFunction)(void (*)(void))Book_begin, METH_FASTCALL, "begin(core, t0)"},
    {"done", (PyCFunction)(void (*)(void))Book_done, METH_FASTCALL, "done(core, t1, rt, tx, app) -> delta"},
    {"core_requests", (PyCFunction)Book_core_requests, METH_NOARGS, "each core's request count"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Book_members[] = {
    {"requests", T_ULONGLONG, offsetof(Book, requests), READONLY, NULL},
    {"delta", T_ULONGLONG, offsetof(Book, delta), READONLY, NULL},
    {"running_time", T_ULONGLONG, offsetof(Book, running_time), READONLY, NULL},
    {"tx", T_ULONGLONG, offsetof(Book, tx), READONLY, NULL},
    {"app_requests", T_ULONGLONG, offsetof(Book, app_requests), READONLY, NULL},
    {"busy", T_INT, offsetof(Book, busy), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject BookType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vassal._scorefast.Book",
    .tp_basicsize = sizeof(Book),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A worker's request counters and its scoreboard writes (see RequestCounters)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Book_init,
    .tp_dealloc = (destructor)Book_dealloc,
    .tp_methods = Book_methods,
    .tp_members = Book_members,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scorefast", NULL, -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scorefast(void) {
    if (PyType_Ready(&BookType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&BookType);
    if (PyModule_AddObject(m, "Book", (PyObject *)&BookType) < 0) {
        Py_DECREF(&BookType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
