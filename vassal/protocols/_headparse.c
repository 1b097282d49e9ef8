/*
 * Optional accelerator of vassal/protocols/http.py: the request head of a plain HTTP request
 * (no body, no upgrade, nothing the Python path treats specially) into its WSGI environ, in C.
 *
 * Why: parse_request() in Python costs a quarter of the CPU of a hello-world request, most of
 * it in the calls llhttp makes back into Python for each header. Here llhttp's callbacks are
 * C functions and the environ is built without the interpreter.
 *
 * The parser is the same llhttp the Python path uses: the copy linked into httptools' parser
 * module, whose exported llhttp_* functions we look up in the already loaded library (nothing
 * of llhttp is compiled here). We call it with httptools' defaults (strict, no lenient flag),
 * so every framing decision is the one the Python path makes. Whenever a head is not the plain
 * case -- an error of any kind, a body (Content-Length, Transfer-Encoding), Upgrade, a repeated
 * field, too many fields, a request line the Python path inspects (odd spacing, a version
 * other than HTTP/1.0 and 1.1, bytes above 0x7f, dot segments, a '#') -- parse() returns None
 * and the caller runs the Python path, which answers (or refuses) it as before. The package
 * works without this file compiled; IMPERIUM_NO_ACCEL=1 turns it off.
 *
 * llhttp_settings_t's field order is llhttp 9.3's (httptools 0.7 and later): the module only
 * loads with those (http.py checks the version; the self-test in the tests compares both paths).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* --- llhttp, as exported by httptools' parser module ------------------------------------- */

typedef struct { char opaque[256]; } llhttp_t;  /* llhttp 9's is 104 bytes on x86_64 */
typedef int (*data_cb)(llhttp_t *, const char *, size_t);
typedef int (*note_cb)(llhttp_t *);

/* indexes into llhttp 9.3's llhttp_settings_t (an array of function pointers) */
enum {
    S_ON_MESSAGE_BEGIN = 0,
    S_ON_HEADER_FIELD = 6,
    S_ON_HEADER_VALUE = 7,
    S_ON_HEADERS_COMPLETE = 10,
    S_ON_MESSAGE_COMPLETE = 12,
    S_COUNT = 26,
};
#define HPE_OK 0
#define HTTP_REQUEST 1

static void (*ll_init)(llhttp_t *, int, const void *);
static void (*ll_settings_init)(void *);
static int (*ll_execute)(llhttp_t *, const char *, size_t);
static uint8_t (*ll_get_upgrade)(llhttp_t *);

static void *settings[64];  /* room beyond S_COUNT: llhttp_settings_init clears its own size */

/* --- one parse ----------------------------------------------------------------------------- */

typedef struct {
    const char *p;
    Py_ssize_t n;
} span;

/* one parse. The fields go into the environ as llhttp reports them, not into an array first:
 * the frame of parse() stays small, which matters under gevent, where a greenlet's stack is
 * copied on switches (an array of 128 fields here, 4 KiB, cost a tenth of the throughput of
 * one-connection requests on a gevent worker) */
typedef struct {
    llhttp_t ll;  /* first: a callback's llhttp_t* is this struct */
    int messages, done, upgrade, bad, failed, count, max;
    int has_name, has_value;
    span name, value, conn;
    PyObject *env;
} ctx_t;

static int add_field(ctx_t *c);

/* a span continues the previous one only if it is adjacent (one buffer is fed: always) */
static inline int extend(span *s, const char *at, size_t n) {
    if (s->p + s->n != at)
        return 0;
    s->n += (Py_ssize_t)n;
    return 1;
}

/* httptools' pairing: a field is reported once its value has started and the next field (or
 * the end of the head) comes; a field without a value callback runs into the next name */
static int emit(ctx_t *c) {
    if (!c->has_value)
        return 0;
    c->has_name = c->has_value = 0;
    if (c->count >= c->max) {
        c->bad = 1;
        return -1;
    }
    c->count++;
    return add_field(c);
}

static int on_message_begin(llhttp_t *p) {
    ((ctx_t *)p)->messages++;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
    ctx_t *c = (ctx_t *)p;
    if (emit(c) < 0)
        return -1;
    if (!c->has_name) {
        c->name.p = at;
        c->name.n = (Py_ssize_t)n;
        c->has_name = 1;
    } else if (!extend(&c->name, at, n)) {
        c->bad = 1;
        return -1;
    }
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
    ctx_t *c = (ctx_t *)p;
    if (!c->has_value) {
        c->value.p = at;
        c->value.n = (Py_ssize_t)n;
        c->has_value = 1;
    } else if (!extend(&c->value, at, n)) {
        c->bad = 1;
        return -1;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p) {
    ctx_t *c = (ctx_t *)p;
    if (emit(c) < 0)
        return -1;
    if (c->has_name)
        c->bad = 1;  /* a name never given a value: the Python path decides */
    if (ll_get_upgrade(p)) {
        c->upgrade = 1;
        return 1;  /* as httptools: no body; the message ends here */
    }
    return 0;
}

static int on_message_complete(llhttp_t *p) {
    ctx_t *c = (ctx_t *)p;
    if (c->messages <= 1)
        c->done = 1;
    return 0;
}

/* --- the environ --------------------------------------------------------------------------- */

static PyObject *K_METHOD, *K_URI, *K_PATH, *K_QUERY, *K_PROTOCOL, *K_SCRIPT, *K_SNAME, *K_SPORT,
    *K_RADDR, *EMPTY, *HTTP11, *HTTP10, *GET, *HEAD_M, *POST;

/* environ keys of frequent fields, interned once: (lower-case name, key) */
static const char *COMMON[][2] = {
    {"host", "HTTP_HOST"},
    {"user-agent", "HTTP_USER_AGENT"},
    {"accept", "HTTP_ACCEPT"},
    {"accept-encoding", "HTTP_ACCEPT_ENCODING"},
    {"accept-language", "HTTP_ACCEPT_LANGUAGE"},
    {"connection", "HTTP_CONNECTION"},
    {"cookie", "HTTP_COOKIE"},
    {"referer", "HTTP_REFERER"},
    {"cache-control", "HTTP_CACHE_CONTROL"},
    {"content-type", "CONTENT_TYPE"},
    {"authorization", "HTTP_AUTHORIZATION"},
    {"x-forwarded-for", "HTTP_X_FORWARDED_FOR"},
    {"x-forwarded-proto", "HTTP_X_FORWARDED_PROTO"},
    {"x-real-ip", "HTTP_X_REAL_IP"},
    {"if-none-match", "HTTP_IF_NONE_MATCH"},
    {"if-modified-since", "HTTP_IF_MODIFIED_SINCE"},
    {"upgrade-insecure-requests", "HTTP_UPGRADE_INSECURE_REQUESTS"},
    {"sec-fetch-mode", "HTTP_SEC_FETCH_MODE"},
    {"pragma", "HTTP_PRAGMA"},
    {"origin", "HTTP_ORIGIN"},
};
#define NCOMMON (sizeof(COMMON) / sizeof(COMMON[0]))
static PyObject *COMMON_KEYS[NCOMMON];

static inline int lower_eq(const char *a, Py_ssize_t n, const char *lower) {
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)a[i];
        if (ch >= 'A' && ch <= 'Z')
            ch += 32;
        if (ch != (unsigned char)lower[i] || !lower[i])
            return 0;
    }
    return lower[n] == '\0';
}

/* what _env_key() in http.py makes of a field name: upper case, '-' as '_', HTTP_ in front
 * except for CONTENT_LENGTH and CONTENT_TYPE */
static PyObject *env_key(const char *name, Py_ssize_t n) {
    for (size_t i = 0; i < NCOMMON; i++)
        if (lower_eq(name, n, COMMON[i][0])) {
            Py_INCREF(COMMON_KEYS[i]);
            return COMMON_KEYS[i];
        }
    char stack[256];
    Py_ssize_t size = n + 5;
    char *buf = size <= (Py_ssize_t)sizeof(stack) ? stack : PyMem_Malloc(size);
    if (buf == NULL)
        return PyErr_NoMemory();
    char *out = buf + 5;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch >= 'a' && ch <= 'z')
            ch -= 32;
        else if (ch == '-')
            ch = '_';
        out[i] = (char)ch;
    }
    PyObject *key;
    if ((n == 14 && memcmp(out, "CONTENT_LENGTH", 14) == 0) || (n == 12 && memcmp(out, "CONTENT_TYPE", 12) == 0)) {
        key = PyUnicode_DecodeLatin1(out, n, NULL);
    } else {
        memcpy(buf, "HTTP_", 5);
        key = PyUnicode_DecodeLatin1(buf, n + 5, NULL);
    }
    if (buf != stack)
        PyMem_Free(buf);
    return key;
}

static inline int hexval(unsigned char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* urllib's unquote_to_bytes(), decoded as latin-1: %XX with two hex digits is a byte, any
 * other '%' stays as it is */
static PyObject *unquote(const char *s, Py_ssize_t n) {
    char stack[512];
    char *buf = n <= (Py_ssize_t)sizeof(stack) ? stack : PyMem_Malloc(n);
    if (buf == NULL)
        return PyErr_NoMemory();
    Py_ssize_t o = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            buf[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            buf[o++] = s[i];
        }
    }
    PyObject *r = PyUnicode_DecodeLatin1(buf, o, NULL);
    if (buf != stack)
        PyMem_Free(buf);
    return r;
}

static inline int contains_ci(const char *s, Py_ssize_t n, const char *word, Py_ssize_t wn) {
    for (Py_ssize_t i = 0; i + wn <= n; i++) {
        Py_ssize_t j = 0;
        for (; j < wn; j++) {
            unsigned char ch = (unsigned char)s[i + j];
            if (ch >= 'A' && ch <= 'Z')
                ch += 32;
            if (ch != (unsigned char)word[j])
                break;
        }
        if (j == wn)
            return 1;
    }
    return 0;
}

static int set_new(PyObject *env, PyObject *key, PyObject *value) {
    if (value == NULL)
        return -1;
    int r = PyDict_SetItem(env, key, value);
    Py_DECREF(value);
    return r;
}

/* one field into the environ; -1 stops llhttp: bad (the Python path decides) or failed (a
 * Python error is set) */
static int add_field(ctx_t *c) {
    PyObject *key = env_key(c->name.p, c->name.n);
    const char *k = key == NULL ? NULL : PyUnicode_AsUTF8(key);
    if (k == NULL) {
        Py_XDECREF(key);
        c->failed = 1;
        return -1;
    }
    /* framing and protocol switches, repeated fields: the Python path's cases */
    int present = 0;
    if (strcmp(k, "CONTENT_LENGTH") == 0 || strcmp(k, "HTTP_TRANSFER_ENCODING") == 0 ||
        strcmp(k, "HTTP_UPGRADE") == 0 || (present = PyDict_Contains(c->env, key)) != 0) {
        Py_DECREF(key);
        if (present < 0)
            c->failed = 1;
        else
            c->bad = 1;
        return -1;
    }
    if (strcmp(k, "HTTP_CONNECTION") == 0)
        c->conn = c->value;
    int r = set_new(c->env, key, PyUnicode_DecodeLatin1(c->value.p, c->value.n, NULL));
    Py_DECREF(key);
    if (r < 0) {
        c->failed = 1;
        return -1;
    }
    return 0;
}

static PyObject *method_str(const char *m, Py_ssize_t n) {
    if (n == 3 && memcmp(m, "GET", 3) == 0) {
        Py_INCREF(GET);
        return GET;
    }
    if (n == 4 && memcmp(m, "HEAD", 4) == 0) {
        Py_INCREF(HEAD_M);
        return HEAD_M;
    }
    if (n == 4 && memcmp(m, "POST", 4) == 0) {
        Py_INCREF(POST);
        return POST;
    }
    return PyUnicode_DecodeLatin1(m, n, NULL);
}

/* parse(head, server_name, server_port, remote_addr, max_headers[, base[, vars, offset, prefix, limit]])
 *   -> (environ, keep_alive, vars_written) | None
 * base: a dict added to the environ after the request's variables (the worker's wsgi.* and
 * uwsgi.* entries), into a dict sized for all of them at once.
 * vars, offset, prefix, limit: the stats server's record of the request in progress (see
 * vassal/scoreboard.py): when the head is answered here and prefix + head is shorter than
 * limit, the record -- 5 bytes (length, then the kind VARS_HTTP), prefix, head -- is written
 * at offset in the writable buffer vars; vars_written says whether it was. */
#define VARS_HTTP 1

static int write_vars(PyObject *buf, PyObject *offset, PyObject *prefix, PyObject *limit, const char *head,
                      Py_ssize_t hlen) {
    if (!PyBytes_CheckExact(prefix)) {
        PyErr_SetString(PyExc_TypeError, "prefix must be bytes");
        return -1;
    }
    Py_ssize_t off = PyLong_AsSsize_t(offset), max = PyLong_AsSsize_t(limit);
    if ((off == -1 || max == -1) && PyErr_Occurred())
        return -1;
    Py_ssize_t plen = PyBytes_GET_SIZE(prefix), n = plen + hlen;
    if (n >= max)
        return 0;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0)
        return -1;
    int r = 0;
    if (off >= 0 && off + 5 + n <= view.len) {
        unsigned char *at = (unsigned char *)view.buf + off;
        at[0] = (unsigned char)n;
        at[1] = (unsigned char)(n >> 8);
        at[2] = (unsigned char)(n >> 16);
        at[3] = (unsigned char)(n >> 24);
        at[4] = VARS_HTTP;
        memcpy(at + 5, PyBytes_AS_STRING(prefix), plen);
        memcpy(at + 5 + plen, head, hlen);
        r = 1;
    }
    PyBuffer_Release(&view);
    return r;
}
static PyObject *parse(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if ((nargs != 5 && nargs != 6 && nargs != 10) || !PyBytes_CheckExact(args[0]) ||
        (nargs >= 6 && !PyDict_CheckExact(args[5]))) {
        PyErr_SetString(PyExc_TypeError, "parse(head: bytes, server_name, server_port, remote_addr, max_headers"
                                         "[, base: dict[, vars, offset, prefix: bytes, limit]])");
        return NULL;
    }
    const char *head = PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    long max = PyLong_AsLong(args[4]);
    if (max == -1 && PyErr_Occurred())
        return NULL;
    if (max > INT_MAX)
        Py_RETURN_NONE;

    /* the request line, as parse_request() checks it before llhttp does */
    const char *eol = memchr(head, '\r', len);
    if (eol == NULL || eol + 1 >= head + len || eol[1] != '\n')
        Py_RETURN_NONE;
    const char *sp1 = memchr(head, ' ', eol - head);
    if (sp1 == NULL)
        Py_RETURN_NONE;
    const char *sp2 = memchr(sp1 + 1, ' ', eol - sp1 - 1);
    if (sp2 == NULL || memchr(sp2 + 1, ' ', eol - sp2 - 1) != NULL)
        Py_RETURN_NONE;
    Py_ssize_t vlen = eol - sp2 - 1;
    if (vlen != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '1' && sp2[8] != '0'))
        Py_RETURN_NONE;
    int http11 = sp2[8] == '1';
    const char *target = sp1 + 1;
    Py_ssize_t tlen = sp2 - target;
    const char *qmark = NULL;
    int pct = 0;
    for (Py_ssize_t i = 0; i < tlen; i++) {
        unsigned char ch = (unsigned char)target[i];
        if (ch >= 0x80)
            Py_RETURN_NONE;
        if (qmark == NULL) {
            if (ch == '#')
                Py_RETURN_NONE;  /* the path ends there: remove_dot_segments() in Python */
            if (ch == '?')
                qmark = target + i;
            else if (ch == '%')
                pct = 1;
            else if (ch == '/' && i + 1 < tlen && target[i + 1] == '.')
                Py_RETURN_NONE;  /* dot segments: remove_dot_segments() in Python */
        }
    }

    PyObject *base = nargs >= 6 ? args[5] : NULL;
    /* room for the usual fields and what _run adds (wsgi.url_scheme, wsgi.input) */
    PyObject *env = _PyDict_NewPresized(9 + 16 + (base ? PyDict_GET_SIZE(base) : 0) + 2);
    if (env == NULL)
        return NULL;
    PyObject *uri = PyUnicode_DecodeLatin1(target, tlen, NULL);
    if (uri == NULL)
        goto error;
    PyObject *path, *query;
    if (qmark == NULL && !pct) {
        path = uri;
        Py_INCREF(path);
    } else {
        Py_ssize_t plen = qmark == NULL ? tlen : qmark - target;
        path = pct ? unquote(target, plen) : PyUnicode_DecodeLatin1(target, plen, NULL);
    }
    if (qmark == NULL) {
        query = EMPTY;
        Py_INCREF(query);
    } else {
        query = PyUnicode_DecodeLatin1(qmark + 1, target + tlen - qmark - 1, NULL);
    }
    PyObject *protocol = http11 ? HTTP11 : HTTP10;
    Py_INCREF(protocol);
    PyObject *sname = args[1], *sport = args[2], *raddr = args[3];
    Py_INCREF(sname);
    Py_INCREF(sport);
    Py_INCREF(raddr);
    Py_INCREF(EMPTY);
    /* each set_new takes its value's reference, also on failure */
    if (set_new(env, K_METHOD, method_str(head, sp1 - head)) < 0 || set_new(env, K_URI, uri) < 0 ||
        set_new(env, K_PATH, path) < 0 || set_new(env, K_QUERY, query) < 0 ||
        set_new(env, K_PROTOCOL, protocol) < 0 || set_new(env, K_SCRIPT, EMPTY) < 0 ||
        set_new(env, K_SNAME, sname) < 0 || set_new(env, K_SPORT, sport) < 0 ||
        set_new(env, K_RADDR, raddr) < 0)
        goto error;

    ctx_t c;
    memset(&c, 0, sizeof c);
    c.max = (int)max;
    c.conn.n = -1;
    c.env = env;
    ll_init(&c.ll, HTTP_REQUEST, settings);
    int err = ll_execute(&c.ll, head, (size_t)len);
    if (c.failed)
        goto error;
    if (err != HPE_OK || c.bad || c.upgrade || !c.done || c.messages != 1) {
        Py_DECREF(env);
        Py_RETURN_NONE;
    }
    span conn = c.conn;
    int keep;
    if (http11)
        keep = conn.n < 0 || !contains_ci(conn.p, conn.n, "close", 5);
    else
        keep = conn.n == 10 && lower_eq(conn.p, 10, "keep-alive");
    if (base != NULL && PyDict_Update(env, base) < 0)
        goto error;
    int written = 0;
    if (nargs == 10 && (written = write_vars(args[6], args[7], args[8], args[9], head, len)) < 0)
        goto error;
    PyObject *result = PyTuple_New(3);
    if (result == NULL)
        goto error;
    PyTuple_SET_ITEM(result, 0, env);
    PyObject *flag = keep ? Py_True : Py_False;
    Py_INCREF(flag);
    PyTuple_SET_ITEM(result, 1, flag);
    flag = written ? Py_True : Py_False;
    Py_INCREF(flag);
    PyTuple_SET_ITEM(result, 2, flag);
    return result;

error:
    Py_DECREF(env);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse", (PyCFunction)(void (*)(void))parse, METH_FASTCALL,
     "parse(head, server_name, server_port, remote_addr, max_headers[, base[, vars, offset, prefix, limit]])"
     " -> (environ, keep_alive, vars_written) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_headparse", NULL, -1, methods};

/* dlsym the functions we need from the llhttp inside httptools' parser module */
static int bind_llhttp(void) {
    PyObject *mod = PyImport_ImportModule("httptools.parser.parser");
    if (mod == NULL)
        return -1;
    PyObject *file = PyObject_GetAttrString(mod, "__file__");
    Py_DECREF(mod);
    if (file == NULL)
        return -1;
    const char *path = PyUnicode_AsUTF8(file);
    if (path == NULL) {
        Py_DECREF(file);
        return -1;
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    Py_DECREF(file);
    if (lib == NULL) {
        PyErr_SetString(PyExc_ImportError, "httptools' parser module is not loaded");
        return -1;
    }
    ll_init = (void (*)(llhttp_t *, int, const void *))dlsym(lib, "llhttp_init");
    ll_settings_init = (void (*)(void *))dlsym(lib, "llhttp_settings_init");
    ll_execute = (int (*)(llhttp_t *, const char *, size_t))dlsym(lib, "llhttp_execute");
    ll_get_upgrade = (uint8_t (*)(llhttp_t *))dlsym(lib, "llhttp_get_upgrade");
    /* the handle stays open: the module it belongs to is never unloaded */
    if (!ll_init || !ll_settings_init || !ll_execute || !ll_get_upgrade) {
        PyErr_SetString(PyExc_ImportError, "httptools' parser module does not export llhttp");
        return -1;
    }
    ll_settings_init(settings);
    settings[S_ON_MESSAGE_BEGIN] = (void *)(note_cb)on_message_begin;
    settings[S_ON_HEADER_FIELD] = (void *)(data_cb)on_header_field;
    settings[S_ON_HEADER_VALUE] = (void *)(data_cb)on_header_value;
    settings[S_ON_HEADERS_COMPLETE] = (void *)(note_cb)on_headers_complete;
    settings[S_ON_MESSAGE_COMPLETE] = (void *)(note_cb)on_message_complete;
    return 0;
}

static PyObject *interned(const char *s) {
    return PyUnicode_InternFromString(s);
}

PyMODINIT_FUNC PyInit__headparse(void) {
    if (bind_llhttp() < 0)
        return NULL;
    K_METHOD = interned("REQUEST_METHOD");
    K_URI = interned("REQUEST_URI");
    K_PATH = interned("PATH_INFO");
    K_QUERY = interned("QUERY_STRING");
    K_PROTOCOL = interned("SERVER_PROTOCOL");
    K_SCRIPT = interned("SCRIPT_NAME");
    K_SNAME = interned("SERVER_NAME");
    K_SPORT = interned("SERVER_PORT");
    K_RADDR = interned("REMOTE_ADDR");
    EMPTY = interned("");
    HTTP11 = interned("HTTP/1.1");
    HTTP10 = interned("HTTP/1.0");
    GET = interned("GET");
    HEAD_M = interned("HEAD");
    POST = interned("POST");
    for (size_t i = 0; i < NCOMMON; i++)
        if ((COMMON_KEYS[i] = interned(COMMON[i][1])) == NULL)
            return NULL;
    if (!K_METHOD || !K_URI || !K_PATH || !K_QUERY || !K_PROTOCOL || !K_SCRIPT || !K_SNAME || !K_SPORT ||
        !K_RADDR || !EMPTY || !HTTP11 || !HTTP10 || !GET || !HEAD_M || !POST)
        return NULL;
    return PyModule_Create(&module);
}
