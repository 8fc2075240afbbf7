/* The event reader's scan in C: the bytes of one event written with the reader schema itself
 * (consumer/avro/event_reader.py, CANONICAL) or with its version 1 (CANONICAL_V1) to a tuple of its
 * fields, or None when unsure.
 *
 * It is the same shortcut as event_reader._scan, only compiled: the id clean-up spends a third
 * of its CPU reading events in Python. It is never a judge either: anything it is not sure of
 * (a varint wider than 9 bytes, a negative length or block count, a length past the end, bad
 * UTF-8, a boolean byte other than 0 or 1, trailing bytes, an unknown branch) returns None and
 * the codec takes fastavro's path, which decides and words the error.
 * tests/unit/avro/test_event_reader.py holds it to the general path on valid events, on arbitrary
 * bytes and on mutated encodings.
 *
 * scan(data: bytes, start: int, linked: bool) -> tuple | None, a 10-tuple, where `linked` says
 * whether the writer's MemoriesDeleted has its last field, include_linked (version 2); version
 * 1 bodies lack that byte, and the field is then False (its default, as resolution reads it):
 *   (event_id, occurred_at, source, reason_index, branch, f1, f2, f3, f4, f5)
 *   branch 0 UserDeleted:     f1 user_id
 *   branch 1 SessionExpired:  f1 run_id, f2 user_id or None, f3 agent_id or None
 *   branch 2 ScopeDeleted:    f1 user_id, f2 agent_id, f3 run_id, f4 app_id (each or None),
 *                             f5 metadata dict
 *   branch 3 MemoriesDeleted: f1 memory ids, f2 user_id or None, f3 include_linked (a bool;
 *                             False when not `linked`)
 * Unused fields are None. The memory ids come as a tuple when they need no cleaning (none
 * empty, none with white space at either end, no duplicates), else as a list for the caller
 * to clean: the common case then costs no Python work at all.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define N_REASONS 6
#define FIELDS 10
/* Below this many ids, duplicates are looked for pairwise; above, the caller cleans. */
#define PAIRWISE_MAX 16

typedef struct {
    const unsigned char *data;
    Py_ssize_t size;
    Py_ssize_t pos;
} Cursor;

/* A zigzag varint of at most 9 bytes (63 bits), as the Python reader reads it. 0 if unsure. */
static int read_long(Cursor *c, int64_t *out) {
    uint64_t result = 0;
    int shift = 0;
    while (c->pos < c->size) {
        unsigned char byte = c->data[c->pos++];
        result |= (uint64_t)(byte & 0x7F) << shift;
        if (byte < 0x80) {
            *out = (int64_t)(result >> 1) ^ -(int64_t)(result & 1);
            return 1;
        }
        shift += 7;
        if (shift > 56) {
            return 0;
        }
    }
    return 0;
}

/* A length-prefixed string: its bytes in place (no copy). 0 if unsure. */
static int read_span(Cursor *c, const unsigned char **start, Py_ssize_t *length) {
    int64_t size;
    if (!read_long(c, &size) || size < 0 || size > c->size - c->pos) {
        return 0;
    }
    *start = c->data + c->pos;
    *length = (Py_ssize_t)size;
    c->pos += (Py_ssize_t)size;
    return 1;
}

/* Bytes as a new str (strict UTF-8), NULL if they are not UTF-8 (with no exception set). */
static PyObject *decode_span(const unsigned char *start, Py_ssize_t length) {
    PyObject *text = PyUnicode_DecodeUTF8((const char *)start, length, "strict");
    if (text == NULL) {
        PyErr_Clear(); /* bad UTF-8: unsure, the general path words it */
    }
    return text;
}

/* A string as a new str, NULL if unsure (with no exception set). */
static PyObject *read_string(Cursor *c) {
    const unsigned char *start;
    Py_ssize_t length;
    if (!read_span(c, &start, &length)) {
        return NULL;
    }
    return decode_span(start, length);
}

/* ["null", "string"]: Py_None (a new reference) or a str; NULL if unsure. */
static PyObject *read_optional(Cursor *c) {
    if (c->pos >= c->size) {
        return NULL;
    }
    unsigned char branch = c->data[c->pos++];
    if (branch == 0) {
        Py_RETURN_NONE;
    }
    if (branch == 2) {
        return read_string(c);
    }
    return NULL;
}

/* A boolean, one byte 0 or 1: Py_False or Py_True (a new reference); NULL if unsure. Any other
 * byte is unsure: fastavro reads it as True, and that is the general path's call to make. */
static PyObject *read_boolean(Cursor *c) {
    if (c->pos >= c->size) {
        return NULL;
    }
    unsigned char byte = c->data[c->pos++];
    if (byte == 0) {
        Py_RETURN_FALSE;
    }
    if (byte == 1) {
        Py_RETURN_TRUE;
    }
    return NULL;
}

/* A block count: negative ones (followed by a byte size) are legal but rare: unsure. */
static int read_count(Cursor *c, int64_t *count) {
    return read_long(c, count) && *count >= 0;
}

/* Whether an id's bytes can go through untouched: not empty, and no white space at either
 * end (an ASCII printable first and last byte; a non-ASCII end might be Unicode space). */
static int needs_no_strip(const unsigned char *start, Py_ssize_t length) {
    return length > 0 && start[0] > 0x20 && start[0] < 0x7F && start[length - 1] > 0x20 &&
           start[length - 1] < 0x7F;
}

typedef struct {
    const unsigned char *start;
    Py_ssize_t length;
} Span;

/* MemoriesDeleted's array of ids: a tuple when already clean, else a list. NULL if unsure. */
static PyObject *read_ids(Cursor *c) {
    PyObject *ids = PyList_New(0);
    if (ids == NULL) {
        return NULL;
    }
    Span seen[PAIRWISE_MAX];
    Py_ssize_t n = 0;
    int clean = 1;
    int64_t count;
    if (!read_count(c, &count)) {
        goto unsure;
    }
    while (count) {
        for (int64_t i = 0; i < count; i++) {
            const unsigned char *start;
            Py_ssize_t length;
            PyObject *text;
            if (!read_span(c, &start, &length) || !(text = decode_span(start, length))) {
                goto unsure;
            }
            int failed = PyList_Append(ids, text);
            Py_DECREF(text);
            if (failed) {
                goto error;
            }
            if (clean) {
                if (n >= PAIRWISE_MAX || !needs_no_strip(start, length)) {
                    clean = 0;
                } else {
                    for (Py_ssize_t j = 0; j < n; j++) {
                        if (seen[j].length == length && memcmp(seen[j].start, start, length) == 0) {
                            clean = 0;
                            break;
                        }
                    }
                    seen[n].start = start;
                    seen[n].length = length;
                }
            }
            n++;
        }
        if (!read_count(c, &count)) {
            goto unsure;
        }
    }
    if (clean) {
        PyObject *tuple = PyList_AsTuple(ids);
        Py_DECREF(ids);
        return tuple;
    }
    return ids;
unsure:
error:
    Py_DECREF(ids);
    return NULL;
}

/* ScopeDeleted's metadata map. NULL if unsure. */
static PyObject *read_map(Cursor *c) {
    PyObject *map = PyDict_New();
    if (map == NULL) {
        return NULL;
    }
    int64_t count;
    if (!read_count(c, &count)) {
        goto fail;
    }
    while (count) {
        for (int64_t i = 0; i < count; i++) {
            PyObject *key = read_string(c);
            if (key == NULL) {
                goto fail;
            }
            PyObject *value = read_string(c);
            if (value == NULL) {
                Py_DECREF(key);
                goto fail;
            }
            int failed = PyDict_SetItem(map, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (failed) {
                goto fail;
            }
        }
        if (!read_count(c, &count)) {
            goto fail;
        }
    }
    return map;
fail:
    Py_DECREF(map);
    return NULL;
}

static PyObject *scan(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyBool_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "scan(data: bytes, start: int, linked: bool)");
        return NULL;
    }
    int linked = args[2] == Py_True;
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Cursor c = {(const unsigned char *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), start};
    if (start < 0 || start > c.size) {
        Py_RETURN_NONE;
    }
    PyObject *fields[FIELDS] = {NULL};
    int64_t occurred_at, symbol;
    if (!(fields[0] = read_string(&c)) || !read_long(&c, &occurred_at) ||
        !(fields[1] = PyLong_FromLongLong(occurred_at)) || !(fields[2] = read_string(&c)) ||
        !read_long(&c, &symbol) || symbol < 0 || symbol >= N_REASONS ||
        !(fields[3] = PyLong_FromLongLong(symbol)) || c.pos >= c.size) {
        goto unsure;
    }
    unsigned char branch = c.data[c.pos++];
    switch (branch) {
    case 0: /* UserDeleted */
        if (!(fields[5] = read_string(&c))) {
            goto unsure;
        }
        break;
    case 2: /* SessionExpired */
        if (!(fields[5] = read_string(&c)) || !(fields[6] = read_optional(&c)) ||
            !(fields[7] = read_optional(&c))) {
            goto unsure;
        }
        break;
    case 4: /* ScopeDeleted */
        if (!(fields[5] = read_optional(&c)) || !(fields[6] = read_optional(&c)) ||
            !(fields[7] = read_optional(&c)) || !(fields[8] = read_optional(&c)) ||
            !(fields[9] = read_map(&c))) {
            goto unsure;
        }
        break;
    case 6: /* MemoriesDeleted; a version-1 writer (not linked) has no include_linked byte */
        if (!(fields[5] = read_ids(&c)) || !(fields[6] = read_optional(&c)) ||
            !(fields[7] = linked ? read_boolean(&c) : Py_NewRef(Py_False))) {
            goto unsure;
        }
        break;
    default:
        goto unsure;
    }
    if (c.pos != c.size) {
        goto unsure; /* trailing bytes: the general path words the error */
    }
    if (!(fields[4] = PyLong_FromLong(branch >> 1))) {
        goto unsure;
    }
    PyObject *result = PyTuple_New(FIELDS);
    if (result == NULL) {
        goto unsure;
    }
    for (int i = 0; i < FIELDS; i++) {
        if (fields[i] == NULL) {
            Py_INCREF(Py_None);
            fields[i] = Py_None;
        }
        PyTuple_SET_ITEM(result, i, fields[i]); /* steals the reference */
    }
    return result;
unsure:
    for (int i = 0; i < FIELDS; i++) {
        Py_XDECREF(fields[i]);
    }
    if (PyErr_Occurred()) {
        /* Only MemoryError gets here (decode errors are cleared where they arise): let it be
         * seen rather than hidden as "unsure". */
        if (!PyErr_ExceptionMatches(PyExc_MemoryError)) {
            PyErr_Clear();
        } else {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, start, linked) -> the event's fields as a 10-tuple, or None when unsure."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "consumer.avro._scan",
    .m_doc = "The event reader's scan, compiled (see consumer/avro/event_reader.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
