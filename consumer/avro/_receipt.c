/* The receipt writer in C: receipts (consumer/core/receipts.py) to their framed Avro values.
 *
 * It writes the bytes consumer/avro/receipt_writer.py writes, only compiled: with receipts on,
 * the Python writer was the largest part of a receipt's cost (about 6 us of the 20 an event's
 * receipt added in an id clean-up, bench/e2e.py). tests/unit/avro/test_receipt_writer_compiled.py
 * holds it to the Python writer (itself held to fastavro) on arbitrary receipts, and
 * tests/fuzz/receipt_fuzz.py does the same under AddressSanitizer.
 *
 * values(receipts, header, operations) -> list[bytes]: for each Receipt, `header` (the framing)
 * then the Avro body. The `operations` array is the larger half of a body and is the same tuple
 * for the events one operation served (up to a thousand), so it is asked of the Python callable
 * `operations(tuple) -> bytes` once per run of receipts sharing that tuple.
 *
 * completed(events, operations, completed_at, group, records, header, type_names, describe)
 *   -> list[dict]: the receipts `receipts.completed` would build for a CompletedReceipts' parts,
 * written without building them (a Receipt and a Position per event cost more than the
 * writing), each as a message {"key": event id, "value": header + body} ready for
 * produce_batch. `records` have `tp` (topic, partition) and `offset`; `type_names` maps an
 * EventType to its name; `describe(tuple) -> (bytes, verified)` is asked once per run.
 *
 * What the schema cannot hold raises as the Python writer does: ValueError for an outcome that
 * is no symbol of its enum, a partition outside 32 bits or a long outside 64; UnicodeEncodeError
 * for text that is not UTF-8 (a lone surrogate); TypeError for a field of the wrong type.
 *
 * Every value's size is computed before its bytes are allocated and checked against what was
 * written (SystemError if they differ: a bug, never bytes); the fuzz checks with red zones
 * around every object that no write passes the end.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The attribute names, interned once. */
static PyObject *name_event_id, *name_outcome, *name_event_type, *name_reason, *name_source,
    *name_occurred_at_ms, *name_completed_at_ms, *name_time_to_erasure_ms, *name_operations,
    *name_verified, *name_dlq_reason, *name_consumer_group, *name_input, *name_duplicate_of,
    *name_topic, *name_partition, *name_offset, *name_type, *name_completed_at, *name_tp,
    *name_key, *name_value;

typedef struct {
    PyObject *owner; /* the str the bytes belong to (a new reference), or NULL */
    const char *data;
    Py_ssize_t size;
} Text;

typedef struct {
    Text topic;
    int64_t partition;
    int64_t offset;
} Where;

typedef struct {
    Text event_id, event_type, reason, source, dlq_reason, group;
    int outcome; /* the enum's index */
    int64_t occurred_at, completed_at, erasure;
    int has_erasure, verified, has_dlq_reason, has_duplicate;
    Where input, duplicate_of;
} Fields;

static void release(Fields *f) {
    Py_XDECREF(f->event_id.owner);
    Py_XDECREF(f->event_type.owner);
    Py_XDECREF(f->reason.owner);
    Py_XDECREF(f->source.owner);
    Py_XDECREF(f->dlq_reason.owner);
    Py_XDECREF(f->group.owner);
    Py_XDECREF(f->input.topic.owner);
    Py_XDECREF(f->duplicate_of.topic.owner);
}

/* `value` (a new reference, taken) as UTF-8 text, `name` naming it in errors; 0 with an
 * exception set if it is NULL, no str or not encodable. */
static int take_text(PyObject *value, PyObject *name, Text *out) {
    if (value == NULL) {
        return 0;
    }
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%U must be a str, not %.100s", name, Py_TYPE(value)->tp_name);
        Py_DECREF(value);
        return 0;
    }
    out->data = PyUnicode_AsUTF8AndSize(value, &out->size);
    if (out->data == NULL) {
        Py_DECREF(value);
        return 0;
    }
    out->owner = value;
    return 1;
}

static int text_of(PyObject *object, PyObject *name, Text *out) {
    return take_text(PyObject_GetAttr(object, name), name, out);
}

/* `value` (a new reference, taken) as a 64-bit integer; `bits` 32 for an Avro int. 0 with
 * ValueError (out of range, worded as the Python writer words it) or TypeError set. */
static int take_integer(PyObject *value, PyObject *name, int bits, int64_t *out) {
    if (value == NULL) {
        return 0;
    }
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%U must be an int, not %.100s", name, Py_TYPE(value)->tp_name);
        Py_DECREF(value);
        return 0;
    }
    int overflow = 0;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (number == -1 && PyErr_Occurred()) {
        Py_DECREF(value);
        return 0;
    }
    if (overflow || (bits == 32 && (number < INT32_MIN || number > INT32_MAX))) {
        PyErr_Format(PyExc_ValueError, "%S is out of range for an Avro %s", value,
                     bits == 32 ? "int" : "long");
        Py_DECREF(value);
        return 0;
    }
    Py_DECREF(value);
    *out = (int64_t)number;
    return 1;
}

static int integer_of(PyObject *object, PyObject *name, int bits, int64_t *out) {
    return take_integer(PyObject_GetAttr(object, name), name, bits, out);
}

/* Whether the attribute is None: 1 if it is, 0 if not, -1 with an exception set. */
static int is_none(PyObject *object, PyObject *name) {
    PyObject *value = PyObject_GetAttr(object, name);
    if (value == NULL) {
        return -1;
    }
    int none = value == Py_None;
    Py_DECREF(value);
    return none;
}

static int where_of(PyObject *receipt, PyObject *name, Where *out) {
    PyObject *position = PyObject_GetAttr(receipt, name);
    if (position == NULL) {
        return 0;
    }
    int ok = text_of(position, name_topic, &out->topic) &&
             integer_of(position, name_partition, 32, &out->partition) &&
             integer_of(position, name_offset, 64, &out->offset);
    Py_DECREF(position);
    return ok;
}

static int fields_of(PyObject *receipt, Fields *f) {
    memset(f, 0, sizeof *f);
    Text outcome = {0};
    if (!text_of(receipt, name_outcome, &outcome)) {
        return 0;
    }
    if (outcome.size == 9 && memcmp(outcome.data, "COMPLETED", 9) == 0) {
        f->outcome = 0;
    } else if (outcome.size == 13 && memcmp(outcome.data, "DEAD_LETTERED", 13) == 0) {
        f->outcome = 1;
    } else {
        PyErr_Format(PyExc_ValueError, "%R is not a ReceiptOutcome symbol", outcome.owner);
        Py_DECREF(outcome.owner);
        return 0;
    }
    Py_DECREF(outcome.owner);
    if (!text_of(receipt, name_event_id, &f->event_id) ||
        !text_of(receipt, name_event_type, &f->event_type) ||
        !text_of(receipt, name_reason, &f->reason) || !text_of(receipt, name_source, &f->source) ||
        !integer_of(receipt, name_occurred_at_ms, 64, &f->occurred_at) ||
        !integer_of(receipt, name_completed_at_ms, 64, &f->completed_at) ||
        !text_of(receipt, name_consumer_group, &f->group) ||
        !where_of(receipt, name_input, &f->input)) {
        return 0;
    }
    int none = is_none(receipt, name_time_to_erasure_ms);
    if (none < 0 || (!none && !integer_of(receipt, name_time_to_erasure_ms, 64, &f->erasure))) {
        return 0;
    }
    f->has_erasure = !none;
    PyObject *verified = PyObject_GetAttr(receipt, name_verified);
    if (verified == NULL) {
        return 0;
    }
    f->verified = PyObject_IsTrue(verified);
    Py_DECREF(verified);
    if (f->verified < 0) {
        return 0;
    }
    none = is_none(receipt, name_dlq_reason);
    if (none < 0 || (!none && !text_of(receipt, name_dlq_reason, &f->dlq_reason))) {
        return 0;
    }
    f->has_dlq_reason = !none;
    none = is_none(receipt, name_duplicate_of);
    if (none < 0 || (!none && !where_of(receipt, name_duplicate_of, &f->duplicate_of))) {
        return 0;
    }
    f->has_duplicate = !none;
    return 1;
}

static uint64_t zigzag(int64_t value) {
    return ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
}

static Py_ssize_t long_size(int64_t value) {
    uint64_t z = zigzag(value);
    Py_ssize_t size = 1;
    while (z >= 0x80) {
        z >>= 7;
        size++;
    }
    return size;
}

static Py_ssize_t text_size(const Text *t) { return long_size(t->size) + t->size; }

static Py_ssize_t where_size(const Where *w) {
    return text_size(&w->topic) + long_size(w->partition) + long_size(w->offset);
}

static Py_ssize_t body_size(const Fields *f, Py_ssize_t operations) {
    return text_size(&f->event_id) + 1 + text_size(&f->event_type) + text_size(&f->reason) +
           text_size(&f->source) + long_size(f->occurred_at) + long_size(f->completed_at) + 1 +
           (f->has_erasure ? long_size(f->erasure) : 0) + operations + 1 + 1 +
           (f->has_dlq_reason ? text_size(&f->dlq_reason) : 0) + text_size(&f->group) +
           where_size(&f->input) + 1 + (f->has_duplicate ? where_size(&f->duplicate_of) : 0);
}

static char *put_long(char *out, int64_t value) {
    uint64_t z = zigzag(value);
    while (z >= 0x80) {
        *out++ = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *out++ = (char)z;
    return out;
}

static char *put_text(char *out, const Text *t) {
    out = put_long(out, t->size);
    memcpy(out, t->data, (size_t)t->size);
    return out + t->size;
}

static char *put_where(char *out, const Where *w) {
    out = put_text(out, &w->topic);
    out = put_long(out, w->partition);
    return put_long(out, w->offset);
}

/* Field by field in the schema's order; a union's branch is its index as a long (0 null, 2 set). */
static char *put_body(char *out, const Fields *f, const char *operations, Py_ssize_t size) {
    out = put_text(out, &f->event_id);
    *out++ = (char)(f->outcome << 1);
    out = put_text(out, &f->event_type);
    out = put_text(out, &f->reason);
    out = put_text(out, &f->source);
    out = put_long(out, f->occurred_at);
    out = put_long(out, f->completed_at);
    *out++ = f->has_erasure ? 2 : 0;
    if (f->has_erasure) {
        out = put_long(out, f->erasure);
    }
    memcpy(out, operations, (size_t)size);
    out += size;
    *out++ = f->verified ? 1 : 0;
    *out++ = f->has_dlq_reason ? 2 : 0;
    if (f->has_dlq_reason) {
        out = put_text(out, &f->dlq_reason);
    }
    out = put_text(out, &f->group);
    out = put_where(out, &f->input);
    *out++ = f->has_duplicate ? 2 : 0;
    if (f->has_duplicate) {
        out = put_where(out, &f->duplicate_of);
    }
    return out;
}

/* The framed value of the receipt `f` describes, `encoded` the bytes of its operations. */
static PyObject *framed(const Fields *f, const char *header, Py_ssize_t header_size,
                        PyObject *encoded) {
    Py_ssize_t operations = PyBytes_GET_SIZE(encoded);
    Py_ssize_t size = header_size + body_size(f, operations);
    PyObject *value = PyBytes_FromStringAndSize(NULL, size);
    if (value == NULL) {
        return NULL;
    }
    char *start = PyBytes_AS_STRING(value);
    memcpy(start, header, (size_t)header_size);
    char *end = put_body(start + header_size, f, PyBytes_AS_STRING(encoded), operations);
    if (end - start != size) { /* a size and its write disagree: a bug, never bytes */
        Py_DECREF(value);
        PyErr_SetString(PyExc_SystemError, "receipt size miscounted");
        return NULL;
    }
    return value;
}

/* The framed value of one receipt, `encoded` the bytes of its operations. */
static PyObject *value_of(PyObject *receipt, const char *header, Py_ssize_t header_size,
                          PyObject *encoded) {
    Fields f;
    PyObject *value = fields_of(receipt, &f) ? framed(&f, header, header_size, encoded) : NULL;
    release(&f);
    return value;
}

static PyObject *values(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3 || !PyBytes_Check(args[1]) || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "values(receipts, header: bytes, operations: callable)");
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(args[0], "receipts must be a sequence");
    if (sequence == NULL) {
        return NULL;
    }
    PyObject *header = args[1], *encode_operations = args[2];
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    PyObject *result = PyList_New(count);
    PyObject *shared = NULL;  /* the operations tuple last encoded (a new reference) ... */
    PyObject *encoded = NULL; /* ... and its bytes */
    if (result == NULL) {
        goto failed;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *receipt = PySequence_Fast_GET_ITEM(sequence, i);
        PyObject *operations = PyObject_GetAttr(receipt, name_operations);
        if (operations == NULL) {
            goto failed;
        }
        if (operations != shared) {
            Py_XDECREF(shared);
            Py_XDECREF(encoded);
            shared = operations; /* the reference GetAttr gave */
            encoded = PyObject_CallOneArg(encode_operations, operations);
            if (encoded == NULL) {
                goto failed;
            }
            if (!PyBytes_Check(encoded)) {
                PyErr_SetString(PyExc_TypeError, "operations() must return bytes");
                goto failed;
            }
        } else {
            Py_DECREF(operations); /* `shared` holds it */
        }
        PyObject *value =
            value_of(receipt, PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header), encoded);
        if (value == NULL) {
            goto failed;
        }
        PyList_SET_ITEM(result, i, value); /* steals the reference */
    }
    Py_XDECREF(shared);
    Py_XDECREF(encoded);
    Py_DECREF(sequence);
    return result;
failed:
    Py_XDECREF(shared);
    Py_XDECREF(encoded);
    Py_XDECREF(result); /* the items not yet set are NULL, which a list's dealloc skips */
    Py_DECREF(sequence);
    return NULL;
}

/* The fields of a completed event's receipt (receipts.completed): `input` the record it came
 * in, with `tp` (topic, partition) and `offset`; `verified` whether its operations all were. */
static int completed_fields(PyObject *event, PyObject *type_names, PyObject *completed_at,
                            PyObject *group, PyObject *input, int verified, Fields *f) {
    memset(f, 0, sizeof *f);
    PyObject *type = PyObject_GetAttr(event, name_type);
    if (type == NULL) {
        return 0;
    }
    PyObject *type_name = PyDict_GetItemWithError(type_names, type); /* borrowed */
    Py_DECREF(type);
    if (type_name == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "an event type with no name");
        }
        return 0;
    }
    /* take_* take a reference, hence Py_NewRef for the borrowed ones */
    if (!take_text(Py_NewRef(type_name), name_event_type, &f->event_type) ||
        !take_text(Py_NewRef(group), name_consumer_group, &f->group) ||
        !take_integer(Py_NewRef(completed_at), name_completed_at, 64, &f->completed_at) ||
        !text_of(event, name_event_id, &f->event_id) || !text_of(event, name_reason, &f->reason) ||
        !text_of(event, name_source, &f->source) ||
        !integer_of(event, name_occurred_at_ms, 64, &f->occurred_at)) {
        return 0;
    }
    PyObject *tp = PyObject_GetAttr(input, name_tp);
    if (tp == NULL) {
        return 0;
    }
    if (!PyTuple_Check(tp) || PyTuple_GET_SIZE(tp) != 2) {
        PyErr_SetString(PyExc_TypeError, "an input's tp must be (topic, partition)");
        Py_DECREF(tp);
        return 0;
    }
    int ok = take_text(Py_NewRef(PyTuple_GET_ITEM(tp, 0)), name_topic, &f->input.topic) &&
             take_integer(Py_NewRef(PyTuple_GET_ITEM(tp, 1)), name_partition, 32,
                          &f->input.partition);
    Py_DECREF(tp);
    if (!ok || !integer_of(input, name_offset, 64, &f->input.offset)) {
        return 0;
    }
    /* The time to erasure, never negative: max(0, completed_at - occurred_at). */
    int64_t erasure = 0;
    if (f->completed_at > f->occurred_at &&
        __builtin_sub_overflow(f->completed_at, f->occurred_at, &erasure)) {
        PyErr_SetString(PyExc_ValueError, "the time to erasure is out of range for an Avro long");
        return 0;
    }
    f->erasure = erasure;
    f->has_erasure = 1;
    f->verified = verified;
    f->outcome = 0; /* COMPLETED */
    return 1;
}

static PyObject *completed(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 8 || !PyBytes_Check(args[5]) || !PyDict_Check(args[6]) ||
        !PyCallable_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError,
                        "completed(events, operations, completed_at, group, records, "
                        "header: bytes, type_names: dict, describe: callable)");
        return NULL;
    }
    PyObject *events = PySequence_Fast(args[0], "events must be a sequence");
    PyObject *operations = events ? PySequence_Fast(args[1], "operations must be a sequence") : NULL;
    PyObject *times = operations ? PySequence_Fast(args[2], "completed_at must be a sequence") : NULL;
    PyObject *inputs = times ? PySequence_Fast(args[4], "records must be a sequence") : NULL;
    PyObject *group = args[3], *header = args[5], *type_names = args[6], *describe = args[7];
    PyObject *result = NULL;
    PyObject *shared = NULL;  /* the operations tuple last described (a new reference) ... */
    PyObject *encoded = NULL; /* ... its bytes (a new reference) ... */
    int verified = 0;         /* ... and whether they all were verified */
    if (inputs == NULL) {
        goto done;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(events);
    if (PySequence_Fast_GET_SIZE(operations) != count || PySequence_Fast_GET_SIZE(times) != count ||
        PySequence_Fast_GET_SIZE(inputs) != count) {
        PyErr_SetString(PyExc_ValueError, "events, operations, completed_at and records differ in length");
        goto done;
    }
    result = PyList_New(count);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *ops = PySequence_Fast_GET_ITEM(operations, i);
        if (ops != shared) {
            PyObject *described = PyObject_CallOneArg(describe, ops);
            if (described == NULL) {
                goto failed;
            }
            if (!PyTuple_Check(described) || PyTuple_GET_SIZE(described) != 2 ||
                !PyBytes_Check(PyTuple_GET_ITEM(described, 0))) {
                Py_DECREF(described);
                PyErr_SetString(PyExc_TypeError, "describe() must return (bytes, verified)");
                goto failed;
            }
            verified = PyObject_IsTrue(PyTuple_GET_ITEM(described, 1));
            Py_XSETREF(encoded, Py_NewRef(PyTuple_GET_ITEM(described, 0)));
            Py_DECREF(described);
            if (verified < 0) {
                goto failed;
            }
            Py_XSETREF(shared, Py_NewRef(ops));
        }
        Fields f;
        PyObject *value = NULL, *key = NULL, *pair = NULL; /* pair: the message */
        if (completed_fields(PySequence_Fast_GET_ITEM(events, i), type_names,
                             PySequence_Fast_GET_ITEM(times, i), group,
                             PySequence_Fast_GET_ITEM(inputs, i), verified, &f)) {
            value = framed(&f, PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header), encoded);
            key = value ? PyBytes_FromStringAndSize(f.event_id.data, f.event_id.size) : NULL;
            pair = key ? PyDict_New() : NULL;
            if (pair != NULL && (PyDict_SetItem(pair, name_key, key) < 0 ||
                                 PyDict_SetItem(pair, name_value, value) < 0)) {
                Py_CLEAR(pair);
            }
        }
        release(&f);
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (pair == NULL) {
            goto failed;
        }
        PyList_SET_ITEM(result, i, pair); /* steals the reference */
    }
    goto done;
failed:
    Py_CLEAR(result); /* the items not yet set are NULL, which a list's dealloc skips */
done:
    Py_XDECREF(shared);
    Py_XDECREF(encoded);
    Py_XDECREF(events);
    Py_XDECREF(operations);
    Py_XDECREF(times);
    Py_XDECREF(inputs);
    return result;
}

static PyMethodDef methods[] = {
    {"values", (PyCFunction)(void (*)(void))values, METH_FASTCALL,
     "values(receipts, header, operations) -> each receipt's framed value."},
    {"completed", (PyCFunction)(void (*)(void))completed, METH_FASTCALL,
     "completed(events, operations, completed_at, group, inputs, header, type_names, describe)"
     " -> each completed event's receipt as a message, {\"key\": event id, \"value\": ...}."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "consumer.avro._receipt",
    .m_doc = "The receipt writer, compiled (see consumer/avro/receipt_writer.py).",
    .m_size = -1,
    .m_methods = methods,
};

static int intern(PyObject **slot, const char *name) {
    *slot = PyUnicode_InternFromString(name);
    return *slot != NULL;
}

PyMODINIT_FUNC PyInit__receipt(void) {
    if (!intern(&name_event_id, "event_id") || !intern(&name_outcome, "outcome") ||
        !intern(&name_event_type, "event_type") || !intern(&name_reason, "reason") ||
        !intern(&name_source, "source") || !intern(&name_occurred_at_ms, "occurred_at_ms") ||
        !intern(&name_completed_at_ms, "completed_at_ms") ||
        !intern(&name_time_to_erasure_ms, "time_to_erasure_ms") ||
        !intern(&name_operations, "operations") || !intern(&name_verified, "verified") ||
        !intern(&name_dlq_reason, "dlq_reason") ||
        !intern(&name_consumer_group, "consumer_group") || !intern(&name_input, "input") ||
        !intern(&name_duplicate_of, "duplicate_of") || !intern(&name_topic, "topic") ||
        !intern(&name_partition, "partition") || !intern(&name_offset, "offset") ||
        !intern(&name_type, "type") || !intern(&name_completed_at, "completed_at") ||
        !intern(&name_tp, "tp") || !intern(&name_key, "key") || !intern(&name_value, "value")) {
        return NULL;
    }
    return PyModule_Create(&module);
}
