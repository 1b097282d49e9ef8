/*
 * Optional accelerator of the response head (vassal/worker.py, _Response.head): the head of
 * an answer built in one pass into one bytes object, instead of a list of str joined and
 * encoded. It does the plain case only -- exact str everywhere, every character latin-1, the
 * headers a list of 2-tuples, bool flags, a length that is None or an int of 64 bits -- and
 * answers None for anything else, so that the caller runs the Python code, which is the
 * reference: it decides the odd cases and raises their errors. Nothing is changed before that
 * answer, so the Python code starts from the same state.
 *
 * build(protocol, status, headers, extra, keep, length, auto_chunked, head_only, http, chunked)
 *   -> (head, keep, has_length, chunked, nheaders, head_bytes) | None
 * keep and chunked come back as given unless the head changes them (the Python code assigns
 * them only then).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* the lower-case of a latin-1 character as str.lower() gives it, when the result is ASCII:
 * only A-Z map into ASCII (the other latin-1 letters lower to latin-1 letters), so comparing
 * against ASCII names and words needs nothing more */
static inline unsigned char lower_ascii(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* a == name (lower-case ASCII), case-insensitively as k.lower() == name */
static int same_name(const unsigned char *a, const char *name, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (lower_ascii(a[i]) != (unsigned char)name[i]) return 0;
    return 1;
}

/* "close" in v.lower() */
static int has_close(const unsigned char *v, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i + 5 <= n; i++)
        if (lower_ascii(v[i]) == 'c' && same_name(v + i + 1, "lose", 4)) return 1;
    return 0;
}

/* the latin-1 bytes of an exact str whose characters are all latin-1; NULL otherwise (the
 * caller falls back) */
static inline const unsigned char *latin1(PyObject *s, Py_ssize_t *n) {
    if (!PyUnicode_CheckExact(s)) return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {
        PyErr_Clear();
        return NULL;
    }
#endif
    if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND) return NULL;
    *n = PyUnicode_GET_LENGTH(s);
    return PyUnicode_1BYTE_DATA(s);
}

#define PUT(p, s, n) (memcpy((p), (s), (size_t)(n)), (p) += (n))
#define PUTS(p, lit) PUT(p, lit, sizeof(lit) - 1)

static PyObject *build(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "build() takes 10 arguments");
        return NULL;
    }
    PyObject *protocol = args[0], *status = args[1], *headers = args[2], *extra = args[3];
    PyObject *keep_o = args[4], *length = args[5], *auto_o = args[6], *head_only_o = args[7];
    PyObject *http_o = args[8], *chunked_o = args[9];
    if (!PyBool_Check(keep_o) || !PyBool_Check(auto_o) || !PyBool_Check(head_only_o)
        || !PyBool_Check(http_o) || !PyBool_Check(chunked_o) || !PyList_CheckExact(headers))
        Py_RETURN_NONE;
    int keep = keep_o == Py_True, auto_chunked = auto_o == Py_True;
    int head_only = head_only_o == Py_True, http = http_o == Py_True;
    PyObject *chunked_out = chunked_o;

    Py_ssize_t np, ns, ne;
    const unsigned char *p = latin1(protocol, &np), *s = latin1(status, &ns), *e = latin1(extra, &ne);
    if (!p || !s || !e || ns == 0) Py_RETURN_NONE;  /* an empty status: Python's status[:3][0] fails */

    long long len = 0;
    int has_len_arg = length != Py_None;
    if (has_len_arg) {
        if (!PyLong_CheckExact(length)) Py_RETURN_NONE;
        int overflow;
        len = PyLong_AsLongLongAndOverflow(length, &overflow);
        if (overflow || (len == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    }

    /* pass 1: check every header, find the flags, size the head */
    Py_ssize_t nh = PyList_GET_SIZE(headers);
    Py_ssize_t size = np + 1 + ns + 2;
    int has_length = 0, said = 0;
    for (Py_ssize_t i = 0; i < nh; i++) {
        PyObject *t = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 2) Py_RETURN_NONE;
        Py_ssize_t nk, nv;
        const unsigned char *k = latin1(PyTuple_GET_ITEM(t, 0), &nk);
        const unsigned char *v = latin1(PyTuple_GET_ITEM(t, 1), &nv);
        if (!k || !v) Py_RETURN_NONE;
        if (nk == 14 && same_name(k, "content-length", 14)) {
            has_length = 1;
        } else if (nk == 10 && same_name(k, "connection", 10)) {
            said = 1;
            if (has_close(v, nv)) keep = 0;
        } else if (nk == 17 && same_name(k, "transfer-encoding", 17)) {
            has_length = 1;  /* the app frames its body itself */
        }
        size += nk + 2 + nv + 2;
    }
    size += ne;

    /* what the head adds: a length, chunking, a Connection header */
    char num[24];
    Py_ssize_t nnum = 0;
    enum { ADD_NONE, ADD_LENGTH, ADD_CHUNKED } add = ADD_NONE;
    if (!has_length && keep) {
        if ((ns >= 3 && ((s[0] == '2' && s[1] == '0' && s[2] == '4') || (s[0] == '3' && s[1] == '0' && s[2] == '4')))
            || s[0] == '1') {
            has_length = 1;  /* no body by definition, and no Content-Length allowed */
        } else if (has_len_arg) {
            nnum = snprintf(num, sizeof num, "%lld", len);
            size += (Py_ssize_t)(sizeof "Content-Length: " - 1) + nnum + 2;
            add = ADD_LENGTH;
            has_length = 1;
        } else if (auto_chunked && np == 8 && memcmp(p, "HTTP/1.1", 8) == 0) {
            size += (Py_ssize_t)(sizeof "Transfer-Encoding: chunked\r\n" - 1);
            add = ADD_CHUNKED;
            has_length = 1;
            chunked_out = head_only ? Py_False : Py_True;
        }
    }
    enum { CONN_NONE, CONN_CLOSE, CONN_KEEP } conn = CONN_NONE;
    if (http && !said) {
        if (np == 8 && memcmp(p, "HTTP/1.1", 8) == 0) {
            if (!(keep && has_length)) conn = CONN_CLOSE;
        } else if (keep && has_length) {
            conn = CONN_KEEP;
        }
    }
    if (conn == CONN_CLOSE) size += (Py_ssize_t)(sizeof "Connection: close\r\n" - 1);
    else if (conn == CONN_KEEP) size += (Py_ssize_t)(sizeof "Connection: keep-alive\r\n" - 1);
    size += 2;

    /* pass 2: write it */
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (!data) return NULL;
    char *o = PyBytes_AS_STRING(data);
    PUT(o, p, np);
    *o++ = ' ';
    PUT(o, s, ns);
    PUTS(o, "\r\n");
    for (Py_ssize_t i = 0; i < nh; i++) {
        PyObject *t = PyList_GET_ITEM(headers, i);
        PyObject *ko = PyTuple_GET_ITEM(t, 0), *vo = PyTuple_GET_ITEM(t, 1);
        PUT(o, PyUnicode_1BYTE_DATA(ko), PyUnicode_GET_LENGTH(ko));
        PUTS(o, ": ");
        PUT(o, PyUnicode_1BYTE_DATA(vo), PyUnicode_GET_LENGTH(vo));
        PUTS(o, "\r\n");
    }
    PUT(o, e, ne);
    if (add == ADD_LENGTH) {
        PUTS(o, "Content-Length: ");
        PUT(o, num, nnum);
        PUTS(o, "\r\n");
    } else if (add == ADD_CHUNKED) {
        PUTS(o, "Transfer-Encoding: chunked\r\n");
    }
    if (conn == CONN_CLOSE) PUTS(o, "Connection: close\r\n");
    else if (conn == CONN_KEEP) PUTS(o, "Connection: keep-alive\r\n");
    PUTS(o, "\r\n");

    PyObject *r = PyTuple_New(6);
    if (!r) {
        Py_DECREF(data);
        return NULL;
    }
    PyObject *nh_o = PyLong_FromSsize_t(nh), *size_o = PyLong_FromSsize_t(size);
    if (!nh_o || !size_o) {
        Py_XDECREF(nh_o);
        Py_XDECREF(size_o);
        Py_DECREF(data);
        Py_DECREF(r);
        return NULL;
    }
    PyObject *keep_out = keep ? keep_o : Py_False;  /* unchanged unless a Connection: close */
    PyObject *has_length_out = has_length ? Py_True : Py_False;
    Py_INCREF(keep_out);
    Py_INCREF(has_length_out);
    Py_INCREF(chunked_out);
    PyTuple_SET_ITEM(r, 0, data);
    PyTuple_SET_ITEM(r, 1, keep_out);
    PyTuple_SET_ITEM(r, 2, has_length_out);
    PyTuple_SET_ITEM(r, 3, chunked_out);
    PyTuple_SET_ITEM(r, 4, nh_o);
    PyTuple_SET_ITEM(r, 5, size_o);
    return r;
}

static PyMethodDef module_methods[] = {
    {"build", (PyCFunction)(void (*)(void))build, METH_FASTCALL,
     "build(protocol, status, headers, extra, keep, length, auto_chunked, head_only, http, chunked)"
     " -> (head, keep, has_length, chunked, nheaders, head_bytes), or None: run the Python code"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_headfast", "the response head in C", -1,
                                    module_methods};

PyMODINIT_FUNC PyInit__headfast(void) { return PyModule_Create(&module); }
