/* Image.apply_many in C, for the messages that dominate a feed: quotes, trades and field updates
 * of instruments already in the image, and an initial image's record images. Everything else (directory entries, a new
 * instrument, a snapshot in progress, a tuple of an unexpected shape) goes to the Python
 * `Image.apply`, which stays the definition of what applying means (mdcommon/image.py, rules 1-3);
 * tests/unit/test_replica_native.py checks both give the same image for random streams.
 *
 * The field ids come from the field dictionary through `configure`, never restated here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { BID_PRICE, BID_SIZE, ASK_PRICE, ASK_SIZE, QUOTE_TIME, LAST_PRICE, LAST_SIZE, VOLUME, TRADE_COUNT, OPEN, HIGH, LOW,
       LAST_TRADE_TIME, N_FIELDS };

static PyObject *FIELD[N_FIELDS];
static PyObject *FIELD_TYPES;  /* field id -> value type, from the field dictionary */
static PyObject *ZERO, *ONE, *VALUES, *TYPES, *COPY, *INSTRUMENT_ID, *SYMBOL, *PRICE_EXPONENT;
static PyObject *RECORD;  /* the record class apply_many loads record images into (None: they go to Python) */
static PyObject *DEFAULT_TYPE;  /* the value type of a field the dictionary does not know (VALUE_INTEGER) */
static PyObject *IMAGE_TYPE;  /* b"I" */
static PyObject *MESSAGE;  /* "message": a record of another class makes its own (frozen_messages) */
static PyObject *PY_MESSAGE;  /* "_message": Record's Python definition, for what this file does not read itself */
static int configured;

/* configure(field_ids: tuple of 13 ints in the order above, field_types: dict[, record_class[, default_type]]) */
static PyObject *configure(PyObject *self, PyObject *args)
{
    PyObject *ids, *types, *record = Py_None, *default_type = Py_None;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!|OO", &PyTuple_Type, &ids, &PyDict_Type, &types, &record, &default_type))
        return NULL;
    if (PyTuple_GET_SIZE(ids) != N_FIELDS) {
        PyErr_Format(PyExc_ValueError, "configure: %d field ids expected", N_FIELDS);
        return NULL;
    }
    for (int i = 0; i < N_FIELDS; i++) {
        Py_XSETREF(FIELD[i], Py_NewRef(PyTuple_GET_ITEM(ids, i)));
    }
    Py_XSETREF(FIELD_TYPES, Py_NewRef(types));
    Py_XSETREF(RECORD, Py_NewRef(record));
    Py_XSETREF(DEFAULT_TYPE, Py_NewRef(default_type));
    configured = 1;
    Py_RETURN_NONE;
}

static int set(PyObject *values, int field, PyObject *v) { return PyDict_SetItem(values, FIELD[field], v); }

/* 1 applied, 0 leave it to Python, -1 error */
static int apply_quote(PyObject *values, PyObject *m)
{
    if (PyTuple_GET_SIZE(m) != 7)
        return 0;
    if (set(values, BID_PRICE, PyTuple_GET_ITEM(m, 3)) < 0 || set(values, BID_SIZE, PyTuple_GET_ITEM(m, 4)) < 0 ||
        set(values, ASK_PRICE, PyTuple_GET_ITEM(m, 5)) < 0 || set(values, ASK_SIZE, PyTuple_GET_ITEM(m, 6)) < 0 ||
        set(values, QUOTE_TIME, PyTuple_GET_ITEM(m, 1)) < 0)
        return -1;
    return 1;
}

static int apply_trade(PyObject *values, PyObject *m)
{
    if (PyTuple_GET_SIZE(m) != 7)
        return 0;
    PyObject *price = PyTuple_GET_ITEM(m, 3), *size = PyTuple_GET_ITEM(m, 4);
    if (!PyLong_CheckExact(price) || !PyLong_CheckExact(size))
        return 0;  /* Python's arithmetic and comparisons decide for anything else */
    if (set(values, LAST_PRICE, price) < 0 || set(values, LAST_SIZE, size) < 0)
        return -1;
    PyObject *volume = PyDict_GetItemWithError(values, FIELD[VOLUME]);
    if (volume == NULL && PyErr_Occurred())
        return -1;
    PyObject *sum = PyNumber_Add(volume ? volume : ZERO, size);
    if (sum == NULL)
        return -1;
    int rc = set(values, VOLUME, sum);
    Py_DECREF(sum);
    if (rc < 0)
        return -1;
    PyObject *count = PyDict_GetItemWithError(values, FIELD[TRADE_COUNT]);
    if (count == NULL && PyErr_Occurred())
        return -1;
    sum = PyNumber_Add(count ? count : ZERO, ONE);
    if (sum == NULL)
        return -1;
    rc = set(values, TRADE_COUNT, sum);
    Py_DECREF(sum);
    if (rc < 0)
        return -1;
    int has_open = PyDict_Contains(values, FIELD[OPEN]);
    if (has_open < 0 || (!has_open && set(values, OPEN, price) < 0))
        return -1;
    PyObject *high = PyDict_GetItemWithError(values, FIELD[HIGH]);
    if (high == NULL && PyErr_Occurred())
        return -1;
    int above = high == NULL ? 1 : PyObject_RichCompareBool(price, high, Py_GT);
    if (above < 0 || (above && set(values, HIGH, price) < 0))
        return -1;
    PyObject *low = PyDict_GetItemWithError(values, FIELD[LOW]);
    if (low == NULL && PyErr_Occurred())
        return -1;
    int below = low == NULL ? 1 : PyObject_RichCompareBool(price, low, Py_LT);
    if (below < 0 || (below && set(values, LOW, price) < 0))
        return -1;
    if (set(values, LAST_TRADE_TIME, PyTuple_GET_ITEM(m, 1)) < 0)
        return -1;
    return 1;
}

static int apply_field(PyObject *rec, PyObject *values, PyObject *m)
{
    if (PyTuple_GET_SIZE(m) != 6)
        return 0;
    PyObject *field_id = PyTuple_GET_ITEM(m, 3), *value_type = PyTuple_GET_ITEM(m, 4);
    if (PyDict_SetItem(values, field_id, PyTuple_GET_ITEM(m, 5)) < 0)
        return -1;
    PyObject *types = PyObject_GetAttr(rec, TYPES);
    if (types == NULL)
        return -1;
    int rc = 0;
    PyObject *declared = PyDict_GetItemWithError(FIELD_TYPES, field_id);
    if (declared == NULL && PyErr_Occurred()) {
        rc = -1;
    } else {
        int same = declared == NULL ? 0 : PyObject_RichCompareBool(declared, value_type, Py_EQ);
        if (same < 0) {
            rc = -1;
        } else if (!same) {
            rc = PyDict_SetItem(types, field_id, value_type);
        } else {
            int present = PyDict_Contains(types, field_id);
            rc = present < 0 ? -1 : present ? PyDict_DelItem(types, field_id) : 0;
        }
    }
    Py_DECREF(types);
    return rc < 0 ? -1 : 1;
}

static int load(PyObject *records, PyObject *m, PyObject *cls);

/* apply_many(records, msgs, apply[, saved]) -> None: each message applied in order; `apply` (the Python
 * Image.apply) takes those this file leaves alone. `saved` (a snapshot in progress, Image._saved): before a
 * record first changes, its copy (record.copy()) is kept there under its id, as Image._save does. */
static PyObject *apply_many(PyObject *self, PyObject *args)
{
    PyObject *records, *msgs, *fallback, *saved = Py_None;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!OO|O", &PyDict_Type, &records, &msgs, &fallback, &saved))
        return NULL;
    if (saved != Py_None && !PyDict_CheckExact(saved)) {
        PyErr_SetString(PyExc_TypeError, "apply_many: saved must be a dict or None");
        return NULL;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "apply_many before configure");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(msgs, "apply_many: msgs must be a sequence");
    if (seq == NULL)
        return NULL;
    PyObject *m = NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {  /* re-read: the fallback runs Python code */
        m = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));  /* held: copy() and getattr below run Python */
        int done = 0;
        if (PyTuple_CheckExact(m) && PyTuple_GET_SIZE(m) >= 4) {
            PyObject *type = PyTuple_GET_ITEM(m, 0);
            char t = PyBytes_CheckExact(type) && PyBytes_GET_SIZE(type) == 1 ? PyBytes_AS_STRING(type)[0] : 0;
            if (t == 'I' && saved == Py_None && RECORD != NULL && RECORD != Py_None) {  /* an image's records */
                done = load(records, m, RECORD);
                if (done < 0)
                    goto error;
            } else if (t == 'Q' || t == 'T' || t == 'F') {
                PyObject *rec = PyDict_GetItemWithError(records, PyTuple_GET_ITEM(m, 2));
                if (rec == NULL && PyErr_Occurred())
                    goto error;
                if (rec != NULL && saved != Py_None) {  /* copy on write: the snapshot keeps the record as it was */
                    int held = PyDict_Contains(saved, PyTuple_GET_ITEM(m, 2));
                    if (held < 0)
                        goto error;
                    if (!held) {
                        Py_INCREF(rec);
                        PyObject *copy = PyObject_CallMethodNoArgs(rec, COPY);
                        Py_DECREF(rec);
                        if (copy == NULL)
                            goto error;
                        int r = PyDict_SetItem(saved, PyTuple_GET_ITEM(m, 2), copy);
                        Py_DECREF(copy);
                        if (r < 0)
                            goto error;
                        rec = PyDict_GetItemWithError(records, PyTuple_GET_ITEM(m, 2));  /* copy() ran Python: look again */
                        if (rec == NULL && PyErr_Occurred())
                            goto error;
                    }
                }
                if (rec != NULL) {
                    PyObject *values = PyObject_GetAttr(rec, VALUES);
                    if (values == NULL)
                        goto error;
                    if (!PyDict_CheckExact(values))
                        done = 0;
                    else if (t == 'Q')
                        done = apply_quote(values, m);
                    else if (t == 'T')
                        done = apply_trade(values, m);
                    else
                        done = apply_field(rec, values, m);
                    Py_DECREF(values);
                    if (done < 0)
                        goto error;
                }
            }
        }
        if (!done) {
            PyObject *r = PyObject_CallOneArg(fallback, m);
            if (r == NULL)
                goto error;
            Py_DECREF(r);
        }
        Py_CLEAR(m);
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
error:
    Py_XDECREF(m);
    Py_DECREF(seq);
    return NULL;
}

/* A record image (b"I", ts, iid, symbol, exponent, fields) as Image.load_record makes it: a new cls(iid, symbol,
 * exponent), its values by field id, and in `types` the value types that differ from the field dictionary's.
 * 1 loaded; 0 changing nothing, a shape Python must judge; -1 an exception. */
static int load(PyObject *records, PyObject *m, PyObject *cls)
{
    if (!PyTuple_CheckExact(m) || PyTuple_GET_SIZE(m) != 6 || !PyTuple_CheckExact(PyTuple_GET_ITEM(m, 5)))
        return 0;
    PyObject *fields = PyTuple_GET_ITEM(m, 5);
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyTuple_GET_ITEM(fields, i);
        if (!PyTuple_CheckExact(f) || PyTuple_GET_SIZE(f) != 3)
            return 0;
    }
    PyObject *iid = PyTuple_GET_ITEM(m, 2);
    PyObject *call[3] = {iid, PyTuple_GET_ITEM(m, 3), PyTuple_GET_ITEM(m, 4)};
    PyObject *rec = PyObject_Vectorcall(cls, call, 3, NULL);
    if (rec == NULL)
        return -1;
    PyObject *values = PyObject_GetAttr(rec, VALUES), *types = values ? PyObject_GetAttr(rec, TYPES) : NULL;
    int bad = values == NULL || types == NULL;
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        PyObject *f = PyTuple_GET_ITEM(fields, i);
        PyObject *fid = PyTuple_GET_ITEM(f, 0), *vt = PyTuple_GET_ITEM(f, 1);
        if (PyObject_SetItem(values, fid, PyTuple_GET_ITEM(f, 2)) < 0) {
            bad = 1;
            break;
        }
        PyObject *known = PyDict_GetItemWithError(FIELD_TYPES, fid);
        if (known == NULL && PyErr_Occurred()) {
            bad = 1;
            break;
        }
        int same = known != NULL ? PyObject_RichCompareBool(known, vt, Py_EQ) : 0;
        if (same < 0 || (!same && PyObject_SetItem(types, fid, vt) < 0))
            bad = 1;
    }
    if (!bad)
        bad = PyDict_SetItem(records, iid, rec) < 0;
    Py_XDECREF(values);
    Py_XDECREF(types);
    Py_DECREF(rec);
    return bad ? -1 : 1;
}

/* load_record(records, msg, record_class) -> bool: `load`; False, changing nothing, for a shape Python must judge. */
static PyObject *load_record(PyObject *self, PyObject *args)
{
    PyObject *records, *m, *cls;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!OO", &PyDict_Type, &records, &m, &cls))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "load_record before configure");
        return NULL;
    }
    int r = load(records, m, cls);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

/* A record as its record image message, as Record._message makes it: (b"I", ts, iid, symbol, exponent, fields), the
 * fields (field id, value type, value) in field id order, the value type from `types` where the record has one, else
 * the dictionary's, else DEFAULT_TYPE. Anything but an exact Record whose values and types are exact dicts keyed by
 * exact ints (nothing there runs Python code while read) goes to `_message`, the Python definition (never to
 * `message`, which comes back here). New reference, or NULL with an exception. */
static PyObject *message_of(PyObject *rec, PyObject *ts)
{
    if (RECORD == NULL || RECORD == Py_None || Py_TYPE(rec) != (PyTypeObject *)RECORD || DEFAULT_TYPE == NULL || DEFAULT_TYPE == Py_None)
        return PyObject_CallMethodOneArg(rec, PY_MESSAGE, ts);
    PyObject *values = PyObject_GetAttr(rec, VALUES);
    if (values == NULL)
        return NULL;
    PyObject *types = PyObject_GetAttr(rec, TYPES);
    if (types == NULL) {
        Py_DECREF(values);
        return NULL;
    }
    PyObject *out = NULL, *keys = NULL, *fields = NULL, *iid = NULL, *symbol = NULL, *exponent = NULL;
    if (!PyDict_CheckExact(values) || !PyDict_CheckExact(types))
        goto python;
    keys = PyDict_Keys(values);
    if (keys == NULL)
        goto done;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyLong_CheckExact(PyList_GET_ITEM(keys, i)))
            goto python;  /* a key whose comparisons are Python code: its order and effects are Python's to decide */
    }
    if (PyList_Sort(keys) < 0)
        goto done;
    fields = PyTuple_New(n);
    if (fields == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *fid = PyList_GET_ITEM(keys, i);
        PyObject *val = PyDict_GetItemWithError(values, fid);  /* exact int keys: sorting ran no Python code */
        if (val == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "record values changed while read");
            goto done;
        }
        Py_INCREF(val);  /* held: a key of `types` colliding with fid may run Python code in the lookups below */
        PyObject *vt = PyDict_GetItemWithError(types, fid);
        if (vt == NULL || vt == Py_None) {  /* Record.value_type: a None there counts as no entry */
            vt = PyErr_Occurred() ? NULL : PyDict_GetItemWithError(FIELD_TYPES, fid);  /* ours: int keys */
            if (vt == NULL && !PyErr_Occurred())
                vt = DEFAULT_TYPE;
        }
        PyObject *f = vt == NULL ? NULL : PyTuple_Pack(3, fid, vt, val);
        Py_DECREF(val);
        if (f == NULL)
            goto done;
        PyTuple_SET_ITEM(fields, i, f);
    }
    iid = PyObject_GetAttr(rec, INSTRUMENT_ID);
    symbol = iid ? PyObject_GetAttr(rec, SYMBOL) : NULL;
    exponent = symbol ? PyObject_GetAttr(rec, PRICE_EXPONENT) : NULL;
    if (exponent != NULL)
        out = PyTuple_Pack(6, IMAGE_TYPE, ts, iid, symbol, exponent, fields);
    goto done;
python:
    out = PyObject_CallMethodOneArg(rec, PY_MESSAGE, ts);
done:
    Py_XDECREF(keys);
    Py_XDECREF(fields);
    Py_XDECREF(iid);
    Py_XDECREF(symbol);
    Py_XDECREF(exponent);
    Py_DECREF(values);
    Py_DECREF(types);
    return out;
}

/* record_message(record, ts) -> the record image message of one record (Record.message). */
static PyObject *record_message(PyObject *self, PyObject *args)
{
    PyObject *rec, *ts;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &rec, &ts))
        return NULL;
    return message_of(rec, ts);
}

/* frozen_messages(records, saved, ids, ts[, each]) -> list: the record image messages of `ids` as an image frozen
 * with `saved` (Image._saved: the originals of records changed since the freeze, None for one that did not exist
 * then) sees them; an id in neither is skipped. With `each`, each(message) in place of each message, the message
 * freed at once: a snapshot encodes 200,000 of them, and holding them all would cost full garbage collections of
 * the server's heap (1.4 us a record measured, more than making them). Image.frozen_messages. */
static PyObject *frozen_messages(PyObject *self, PyObject *args)
{
    PyObject *records, *saved, *ids, *ts, *each = Py_None;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!OOO|O", &PyDict_Type, &records, &saved, &ids, &ts, &each))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "frozen_messages before configure");
        return NULL;
    }
    if (saved != Py_None && !PyDict_CheckExact(saved)) {
        PyErr_SetString(PyExc_TypeError, "frozen_messages: saved must be a dict or None");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(ids, "frozen_messages: ids must be a sequence");
    if (seq == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {  /* re-read: a record's own message runs Python */
        PyObject *iid = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));  /* held: an id's __eq__ may change the list */
        PyObject *rec = saved == Py_None ? NULL : PyDict_GetItemWithError(saved, iid);
        if (rec == NULL && !PyErr_Occurred())
            rec = PyDict_GetItemWithError(records, iid);
        int failed = rec == NULL && PyErr_Occurred();
        Py_XINCREF(rec);  /* held across whatever Python code making its message runs */
        Py_DECREF(iid);
        if (failed)
            goto error;
        if (rec == NULL || rec == Py_None) {
            Py_XDECREF(rec);
            continue;
        }
        /* an exact Record is read here; one of another class makes its own message, as Python's path asks it to */
        PyObject *m = RECORD != NULL && Py_TYPE(rec) == (PyTypeObject *)RECORD ? message_of(rec, ts)
                                                                               : PyObject_CallMethodOneArg(rec, MESSAGE, ts);
        Py_DECREF(rec);
        if (m == NULL)
            goto error;
        if (each != Py_None) {
            Py_SETREF(m, PyObject_CallOneArg(each, m));
            if (m == NULL)
                goto error;
        }
        int r = PyList_Append(out, m);
        Py_DECREF(m);
        if (r < 0)
            goto error;
    }
    Py_DECREF(seq);
    return out;
error:
    Py_DECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"record_message", record_message, METH_VARARGS, "record_message(record, ts) -> record image message"},
    {"frozen_messages", frozen_messages, METH_VARARGS, "frozen_messages(records, saved, ids, ts[, each]) -> list of record image messages, or of each(message)"},
    {"configure", configure, METH_VARARGS, "configure(field_ids, field_types[, record_class[, default_type]])"},
    {"apply_many", apply_many, METH_VARARGS, "apply_many(records, msgs, apply[, saved])"},
    {"load_record", load_record, METH_VARARGS, "load_record(records, msg, record_class) -> bool"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_replica", "Image.apply_many for quotes, trades, field updates", -1,
                                    METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__replica(void)
{
    ZERO = PyLong_FromLong(0);
    ONE = PyLong_FromLong(1);
    VALUES = PyUnicode_InternFromString("values");
    TYPES = PyUnicode_InternFromString("types");
    COPY = PyUnicode_InternFromString("copy");
    MESSAGE = PyUnicode_InternFromString("message");
    PY_MESSAGE = PyUnicode_InternFromString("_message");
    INSTRUMENT_ID = PyUnicode_InternFromString("instrument_id");
    SYMBOL = PyUnicode_InternFromString("symbol");
    PRICE_EXPONENT = PyUnicode_InternFromString("price_exponent");
    IMAGE_TYPE = PyBytes_FromStringAndSize("I", 1);
    if (ZERO == NULL || ONE == NULL || VALUES == NULL || TYPES == NULL || COPY == NULL || MESSAGE == NULL || PY_MESSAGE == NULL ||
        INSTRUMENT_ID == NULL || SYMBOL == NULL || PRICE_EXPONENT == NULL || IMAGE_TYPE == NULL)
        return NULL;
    return PyModule_Create(&MODULE);
}
