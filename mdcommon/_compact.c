/* A compact replica: the image of every instrument in fixed slots, for daemons with large universes.
 *
 * `Image` (mdcommon/image.py) keeps a Record object per instrument, with a dict of field values, each an int
 * object. At 200,000 instruments a quote then touches about twelve cache lines that are not in any cache (the
 * records dict, the record, its values dict and the five ints it frees), and applying costs 1.7 us against
 * 0.2 us at 1,000 instruments. Here an instrument is one slot in an array: its fields that fit in an int64 are
 * held as int64s, beside a presence mask; anything else (a value that is not an int64, a field the dictionary
 * does not number below 64) goes to the slot's `extra` dict. A hash table of 32-bit instrument ids finds the
 * slot. A quote touches three or four lines.
 *
 * What applying means stays `Image._apply` (rules 1-3 there). This file takes the shapes the wire produces:
 * quotes, trades, field updates, directory entries and record images of exact tuples with exact ints. Anything
 * else goes to `slow(msg)`, the Python definition applied to a copy of the record, which is put back whole
 * (`put`). tests/unit/test_compact_image.py runs both over random streams, snapshots included.
 *
 * Reading makes a Record from the slot: a copy, as of the read (`get`). Snapshots copy a slot the first time it
 * changes after `freeze`, into a second table, as `Image._save` does with records.
 *
 * Invariants: a field is in `mask` or in `extra`, never both; `extra` and `types` dicts are never changed in
 * place once in a slot (a change makes a new dict), so a saved slot may share them. No slot pointer is held
 * across a call that can run Python code (the slot array moves when it grows).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../decoders/native_api.h"

#define MAX_FIELDS 64

typedef struct {
    uint32_t iid;
    uint32_t absent;   /* saved table only: the instrument was not in the image at freeze */
    uint64_t mask;     /* bit f: field f is v[f] */
    uint64_t xmask;    /* bit f: `extra` has a key equal to f (all bits if it has a key other than an exact int) */
    PyObject *symbol;  /* owned; NULL only when absent */
    PyObject *exponent;
    PyObject *extra;   /* owned dict or NULL */
    PyObject *types;   /* owned dict or NULL: value types that differ from the dictionary's */
    int64_t v[];
} Slot;

typedef struct {
    uint32_t iid, idx1;  /* idx1 = slot index + 1; 0: empty */
} Entry;

typedef struct {
    Entry *ent;
    size_t cap;  /* 1 << bits, or 0 */
    int bits;
    char *slots;
    size_t count, slot_cap;
} Table;

enum { BID_PRICE, BID_SIZE, ASK_PRICE, ASK_SIZE, QUOTE_TIME, LAST_PRICE, LAST_SIZE, VOLUME, TRADE_COUNT, OPEN, HIGH, LOW,
       LAST_TRADE_TIME, N_NAMED };

typedef struct {
    PyObject_HEAD
    Table live, saved;
    int frozen;
    int nf;            /* fields 0..nf-1 may be held as int64 */
    size_t stride;
    int f[N_NAMED];    /* the named fields' ids (all < nf) */
    uint64_t quote_bits, trade_bits;  /* the fields a quote, a trade writes or reads */
    long dtype[MAX_FIELDS];       /* the dictionary's value type of field f, -1 if it has none */
    PyObject *fid_obj[MAX_FIELDS];
    PyObject *dtype_obj[MAX_FIELDS];  /* the value type a record image gives field f by default */
    PyObject *slow, *record_class;
    PyObject *field_types, *default_type;  /* the dictionary's {field id: value type}; VALUE_INTEGER for others */
} Replica;

static PyObject *EMPTY, *ZERO, *IMAGE_TAG, *S_VALUES, *S_TYPES, *S_SYMBOL, *S_EXPONENT;

#define SLOT(t, i, stride) ((Slot *)((t)->slots + (size_t)(i) * (stride)))

/* Fibonacci hashing: the top bits of the product, so ids that share their low bits still spread */
static inline size_t hash32(uint32_t k, int bits) { return (size_t)(((uint64_t)k * 0x9E3779B97F4A7C15ull) >> (64 - bits)); }

static Slot *find(const Table *t, uint32_t iid, size_t stride)
{
    if (t->cap == 0)
        return NULL;
    for (size_t h = hash32(iid, t->bits);; h = (h + 1) & (t->cap - 1)) {
        Entry e = t->ent[h];
        if (e.idx1 == 0)
            return NULL;
        if (e.iid == iid)
            return SLOT(t, e.idx1 - 1, stride);
    }
}

static int grow_index(Table *t, int bits)
{
    size_t cap = (size_t)1 << bits;
    Entry *ent = PyMem_Calloc(cap, sizeof(Entry));
    if (ent == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < t->cap; i++) {
        Entry e = t->ent[i];
        if (e.idx1 == 0)
            continue;
        size_t h = hash32(e.iid, bits);
        while (ent[h].idx1 != 0)
            h = (h + 1) & (cap - 1);
        ent[h] = e;
    }
    PyMem_Free(t->ent);
    t->ent = ent;
    t->cap = cap;
    t->bits = bits;
    return 0;
}

/* A new zeroed slot for `iid` (not in the table): NULL with an exception set if memory ran out. */
static Slot *add(Table *t, uint32_t iid, size_t stride)
{
    if ((t->count + 1) * 2 > t->cap && grow_index(t, t->cap ? t->bits + 1 : 10) < 0)
        return NULL;
    if (t->count == t->slot_cap) {
        size_t cap = t->slot_cap ? t->slot_cap * 2 : 512;
        char *slots = PyMem_Realloc(t->slots, cap * stride);
        if (slots == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        t->slots = slots;
        t->slot_cap = cap;
    }
    size_t h = hash32(iid, t->bits);
    while (t->ent[h].idx1 != 0)
        h = (h + 1) & (t->cap - 1);
    t->ent[h].iid = iid;
    t->ent[h].idx1 = (uint32_t)(t->count + 1);
    Slot *s = SLOT(t, t->count, stride);
    t->count++;
    memset(s, 0, stride);
    s->iid = iid;
    return s;
}

static void clear_table(Table *t, size_t stride)
{
    char *slots = t->slots;
    size_t n = t->count;
    t->slots = NULL;
    t->count = t->slot_cap = 0;
    PyMem_Free(t->ent);
    t->ent = NULL;
    t->cap = 0;
    t->bits = 0;
    for (size_t i = 0; i < n; i++) {  /* the table is empty before any object goes, in case one's finalizer looks */
        Slot *s = (Slot *)(slots + i * stride);
        Py_XDECREF(s->symbol);
        Py_XDECREF(s->exponent);
        Py_XDECREF(s->extra);
        Py_XDECREF(s->types);
    }
    PyMem_Free(slots);
}

/* An exact int within int64: 1, else 0 (no exception) */
static inline int int64_of(PyObject *o, int64_t *out)
{
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow)
        return 0;
    *out = v;
    return 1;
}

/* An instrument id as the table keys it: 1, or 0 (not a 32-bit unsigned exact int; no exception) */
static int key_of(PyObject *o, uint32_t *out)
{
    int64_t v;
    if (!int64_of(o, &v) || v < 0 || v > 0xFFFFFFFFLL)
        return 0;
    *out = (uint32_t)v;
    return 1;
}

/* Before the first change to `iid` after freeze: keep the slot as it is (or that there was none). */
/* `live` is the live slot of `iid` or NULL; adding to the saved table does not move it. */
static int save(Replica *r, uint32_t iid, const Slot *live)
{
    if (!r->frozen || find(&r->saved, iid, r->stride) != NULL)
        return 0;
    Slot *s = add(&r->saved, iid, r->stride);
    if (s == NULL)
        return -1;
    if (live == NULL) {
        s->absent = 1;
        return 0;
    }
    memcpy(s, live, r->stride);
    Py_XINCREF(s->symbol);
    Py_XINCREF(s->exponent);
    Py_XINCREF(s->extra);
    Py_XINCREF(s->types);
    return 0;
}

/* The slot of `iid` to change, made if new (symbol "", exponent 0) and saved first if a snapshot is open; `now`
 * its live slot found just before (NULL: none), with no Python code run since. */
static Slot *writable_at(Replica *r, uint32_t iid, Slot *now)
{
    if (save(r, iid, now) < 0)
        return NULL;
    if (now != NULL)
        return now;
    Slot *s = add(&r->live, iid, r->stride);
    if (s == NULL)
        return NULL;
    s->symbol = Py_NewRef(EMPTY);
    s->exponent = Py_NewRef(ZERO);
    return s;
}

static Slot *writable(Replica *r, uint32_t iid) { return writable_at(r, iid, find(&r->live, iid, r->stride)); }

static inline void put64(Slot *s, int f, int64_t v)
{
    s->v[f] = v;
    s->mask |= (uint64_t)1 << f;
}

static inline int has(const Slot *s, int f) { return (s->mask >> f) & 1; }

/* 1 applied, 0 not this file's to apply (slow path), -1 error */
static int apply_quote(Replica *r, PyObject *m, uint32_t iid)
{
    int64_t ts, bid, bsz, ask, asz;
    if (PyTuple_GET_SIZE(m) != 7 || !int64_of(PyTuple_GET_ITEM(m, 1), &ts) || !int64_of(PyTuple_GET_ITEM(m, 3), &bid) ||
        !int64_of(PyTuple_GET_ITEM(m, 4), &bsz) || !int64_of(PyTuple_GET_ITEM(m, 5), &ask) ||
        !int64_of(PyTuple_GET_ITEM(m, 6), &asz))
        return 0;
    Slot *now = find(&r->live, iid, r->stride);
    if (now != NULL && (now->xmask & r->quote_bits))
        return 0;  /* one of its fields is held as an object */
    Slot *s = writable_at(r, iid, now);
    if (s == NULL)
        return -1;
    put64(s, r->f[BID_PRICE], bid);
    put64(s, r->f[BID_SIZE], bsz);
    put64(s, r->f[ASK_PRICE], ask);
    put64(s, r->f[ASK_SIZE], asz);
    put64(s, r->f[QUOTE_TIME], ts);
    return 1;
}

static int apply_trade(Replica *r, PyObject *m, uint32_t iid)
{
    int64_t ts, price, size;
    if (PyTuple_GET_SIZE(m) != 7 || !int64_of(PyTuple_GET_ITEM(m, 1), &ts) || !int64_of(PyTuple_GET_ITEM(m, 3), &price) ||
        !int64_of(PyTuple_GET_ITEM(m, 4), &size))
        return 0;
    Slot *now = find(&r->live, iid, r->stride);
    int64_t volume = 0, count = 0;
    if (now != NULL) {
        if (now->xmask & r->trade_bits)
            return 0;
        if (has(now, r->f[VOLUME]))
            volume = now->v[r->f[VOLUME]];
        if (has(now, r->f[TRADE_COUNT]))
            count = now->v[r->f[TRADE_COUNT]];
    }
    if (__builtin_add_overflow(volume, size, &volume) || __builtin_add_overflow(count, (int64_t)1, &count))
        return 0;  /* beyond int64: Python's ints carry on */
    Slot *s = writable_at(r, iid, now);
    if (s == NULL)
        return -1;
    put64(s, r->f[LAST_PRICE], price);
    put64(s, r->f[LAST_SIZE], size);
    put64(s, r->f[VOLUME], volume);
    put64(s, r->f[TRADE_COUNT], count);
    if (!has(s, r->f[OPEN]))
        put64(s, r->f[OPEN], price);
    if (!has(s, r->f[HIGH]) || price > s->v[r->f[HIGH]])
        put64(s, r->f[HIGH], price);
    if (!has(s, r->f[LOW]) || price < s->v[r->f[LOW]])
        put64(s, r->f[LOW], price);
    put64(s, r->f[LAST_TRADE_TIME], ts);
    return 1;
}

/* `types` after field f took value type `vt` (a new dict if it changes: see the invariants); *changed says so */
static PyObject *types_after(Replica *r, PyObject *types, int f, PyObject *vt, int *changed)
{
    int64_t t;
    int declared = r->dtype[f] >= 0 && int64_of(vt, &t) && t == r->dtype[f];
    *changed = 0;
    if (declared) {
        if (types == NULL)
            return NULL;
        int present = PyDict_Contains(types, r->fid_obj[f]);
        if (present <= 0)
            return present < 0 ? (PyObject *)-1 : NULL;
        PyObject *out = PyDict_Copy(types);
        if (out == NULL || PyDict_DelItem(out, r->fid_obj[f]) < 0) {
            Py_XDECREF(out);
            return (PyObject *)-1;
        }
        *changed = 1;
        return out;
    }
    if (types != NULL) {
        PyObject *old = PyDict_GetItemWithError(types, r->fid_obj[f]);
        if (old == NULL && PyErr_Occurred())
            return (PyObject *)-1;
        if (old != NULL && PyLong_CheckExact(old) && PyLong_CheckExact(vt) && PyObject_RichCompareBool(old, vt, Py_EQ) == 1)
            return NULL;  /* the same type already */
    }
    PyObject *out = types ? PyDict_Copy(types) : PyDict_New();
    if (out == NULL || PyDict_SetItem(out, r->fid_obj[f], vt) < 0) {
        Py_XDECREF(out);
        return (PyObject *)-1;
    }
    *changed = 1;
    return out;
}

static int apply_field(Replica *r, PyObject *m, uint32_t iid)
{
    int64_t fid, value;
    if (PyTuple_GET_SIZE(m) != 6 || !int64_of(PyTuple_GET_ITEM(m, 3), &fid) || fid < 0 || fid >= r->nf ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(m, 4)) || !int64_of(PyTuple_GET_ITEM(m, 5), &value))
        return 0;
    int f = (int)fid, changed;
    const Slot *now = find(&r->live, iid, r->stride);
    if (now != NULL && ((now->xmask >> f) & 1))
        return 0;
    PyObject *held = now ? Py_XNewRef(now->types) : NULL;  /* the copy allocates, and a collection may run code */
    PyObject *types = types_after(r, held, f, PyTuple_GET_ITEM(m, 4), &changed);
    Py_XDECREF(held);
    if (types == (PyObject *)-1)
        return -1;
    Slot *s = writable(r, iid);
    if (s == NULL) {
        Py_XDECREF(types);
        return -1;
    }
    put64(s, f, value);
    if (changed) {
        PyObject *old = s->types;
        s->types = PyDict_GET_SIZE(types) ? types : NULL;
        if (s->types == NULL)
            Py_DECREF(types);
        Py_XDECREF(old);  /* a dict of ints: nothing runs */
    }
    return 1;
}

static int apply_directory(Replica *r, PyObject *m, uint32_t iid)
{
    if (PyTuple_GET_SIZE(m) != 5)
        return 0;
    Slot *s = writable(r, iid);
    if (s == NULL)
        return -1;
    PyObject *old_symbol = s->symbol, *old_exponent = s->exponent;
    s->symbol = Py_NewRef(PyTuple_GET_ITEM(m, 3));
    s->exponent = Py_NewRef(PyTuple_GET_ITEM(m, 4));
    Py_DECREF(old_symbol);  /* last: a finalizer may run, and the slot is not touched again */
    Py_DECREF(old_exponent);
    return 1;
}

/* Replace the slot of `iid` whole: symbol, exponent, int64 fields, extra and types (references stolen). */
static int replace(Replica *r, uint32_t iid, PyObject *symbol, PyObject *exponent, uint64_t mask, const int64_t *v,
                   PyObject *extra, PyObject *types)
{
    Slot *s = writable(r, iid);
    if (s == NULL) {
        Py_DECREF(symbol);
        Py_DECREF(exponent);
        Py_XDECREF(extra);
        Py_XDECREF(types);
        return -1;
    }
    PyObject *old[4] = {s->symbol, s->exponent, s->extra, s->types};
    s->symbol = symbol;
    s->exponent = exponent;
    s->extra = extra != NULL && PyDict_GET_SIZE(extra) ? extra : NULL;
    s->types = types != NULL && PyDict_GET_SIZE(types) ? types : NULL;
    if (s->extra == NULL)
        Py_XDECREF(extra);
    if (s->types == NULL)
        Py_XDECREF(types);
    s->mask = mask;
    s->xmask = 0;
    if (s->extra != NULL) {  /* reading the keys runs no Python code */
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        int64_t f;
        while (PyDict_Next(s->extra, &pos, &key, &value)) {
            if (!PyLong_CheckExact(key))
                s->xmask = ~(uint64_t)0;  /* True, 1.0 and the like equal a field id: Python decides */
            else if (int64_of(key, &f) && f >= 0 && f < r->nf)
                s->xmask |= (uint64_t)1 << f;
        }
    }
    for (int f = 0; f < r->nf; f++)
        s->v[f] = (mask >> f) & 1 ? v[f] : 0;
    for (int i = 0; i < 4; i++)
        Py_XDECREF(old[i]);
    return 0;
}

/* Field `fid` = `value` into (mask, v, extra): 0, or -1 with an exception */
static int set_any(Replica *r, PyObject *fid, PyObject *value, uint64_t *mask, int64_t *v, PyObject **extra)
{
    int64_t f, x;
    if (int64_of(fid, &f) && f >= 0 && f < r->nf && int64_of(value, &x)) {
        v[f] = x;
        *mask |= (uint64_t)1 << f;
        if (*extra != NULL) {
            int present = PyDict_Contains(*extra, fid);
            if (present < 0 || (present && PyDict_DelItem(*extra, fid) < 0))
                return -1;
        }
        return 0;
    }
    if (int64_of(fid, &f) && f >= 0 && f < r->nf)
        *mask &= ~((uint64_t)1 << f);
    if (*extra == NULL && (*extra = PyDict_New()) == NULL)
        return -1;
    return PyDict_SetItem(*extra, fid, value);
}

/* A record image message: 1 loaded, 0 for the slow path (fields of another shape), -1 error */
static int apply_image(Replica *r, PyObject *m, uint32_t iid)
{
    if (PyTuple_GET_SIZE(m) != 6 || !PyTuple_CheckExact(PyTuple_GET_ITEM(m, 5)))
        return 0;
    PyObject *fields = PyTuple_GET_ITEM(m, 5);
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < n; i++) {  /* shapes first, so nothing is half-loaded when the slow path takes it */
        PyObject *e = PyTuple_GET_ITEM(fields, i);
        int64_t f;
        if (!PyTuple_CheckExact(e) || PyTuple_GET_SIZE(e) != 3 || !int64_of(PyTuple_GET_ITEM(e, 0), &f) || f < 0 ||
            f >= r->nf || !PyLong_CheckExact(PyTuple_GET_ITEM(e, 1)))
            return 0;
    }
    uint64_t mask = 0;
    int64_t v[MAX_FIELDS];
    PyObject *extra = NULL, *types = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyTuple_GET_ITEM(fields, i), *fid = PyTuple_GET_ITEM(e, 0), *vt = PyTuple_GET_ITEM(e, 1);
        int64_t f = 0, t;
        int64_of(fid, &f);
        if (set_any(r, fid, PyTuple_GET_ITEM(e, 2), &mask, v, &extra) < 0)
            goto fail;
        if (r->dtype[f] < 0 || !int64_of(vt, &t) || t != r->dtype[f]) {  /* as load_record: set, never removed */
            if (types == NULL && (types = PyDict_New()) == NULL)
                goto fail;
            if (PyDict_SetItem(types, r->fid_obj[f], vt) < 0)
                goto fail;
        }
    }
    return replace(r, iid, Py_NewRef(PyTuple_GET_ITEM(m, 3)), Py_NewRef(PyTuple_GET_ITEM(m, 4)), mask, v, extra, types) < 0 ? -1 : 1;
fail:
    Py_XDECREF(extra);
    Py_XDECREF(types);
    return -1;
}

static int ready(const Replica *r)
{
    if (r->stride != 0 && r->slow != NULL && r->record_class != NULL)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "compact replica not initialised, or cleared");
    return 0;
}

static int apply_one(Replica *r, PyObject *m)
{
    int rc = 0;
    uint32_t iid;
    if (!ready(r))
        return -1;
    if (PyTuple_CheckExact(m) && PyTuple_GET_SIZE(m) >= 1 && PyBytes_CheckExact(PyTuple_GET_ITEM(m, 0)) &&
        PyBytes_GET_SIZE(PyTuple_GET_ITEM(m, 0)) == 1) {
        char t = PyBytes_AS_STRING(PyTuple_GET_ITEM(m, 0))[0];
        if (t != 'Q' && t != 'T' && t != 'F' && t != 'R' && t != 'I')
            return 0;  /* carries no instrument state */
        if (PyTuple_GET_SIZE(m) >= 3 && key_of(PyTuple_GET_ITEM(m, 2), &iid)) {
            switch (t) {
            case 'Q': rc = apply_quote(r, m, iid); break;
            case 'T': rc = apply_trade(r, m, iid); break;
            case 'F': rc = apply_field(r, m, iid); break;
            case 'R': rc = apply_directory(r, m, iid); break;
            default: rc = apply_image(r, m, iid); break;
            }
        }
    }
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (r->slow == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "compact replica cleared");
        return -1;
    }
    PyObject *res = PyObject_CallFunctionObjArgs(r->slow, (PyObject *)r, m, NULL);  /* slow(replica, msg) */
    Py_XDECREF(res);
    return res == NULL ? -1 : 0;
}

static PyObject *Replica_apply(Replica *r, PyObject *m)
{
    Py_INCREF(m);
    int rc = apply_one(r, m);
    Py_DECREF(m);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Replica_apply_many(Replica *r, PyObject *msgs)
{
    PyObject *seq = PySequence_Fast(msgs, "apply_many: msgs must be a sequence");
    if (seq == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *m = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        int rc = apply_one(r, m);
        Py_DECREF(m);
        if (rc < 0) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

/* What a slot holds, copied out so that no slot pointer is needed once Python code may run. */
typedef struct {
    PyObject *symbol, *exponent, *extra, *types;
    uint64_t mask;
    int64_t v[MAX_FIELDS];
} Copy;

static void copy_out(const Replica *r, const Slot *s, Copy *c)
{
    c->symbol = Py_NewRef(s->symbol);
    c->exponent = Py_NewRef(s->exponent);
    c->extra = Py_XNewRef(s->extra);
    c->types = Py_XNewRef(s->types);
    c->mask = s->mask;
    memcpy(c->v, s->v, (size_t)r->nf * sizeof(int64_t));
}

static void release(Copy *c)
{
    Py_DECREF(c->symbol);
    Py_DECREF(c->exponent);
    Py_XDECREF(c->extra);
    Py_XDECREF(c->types);
}

/* The slot as of now, in the saved table if `frozen_view` and saved there: 1 copied, 0 none, -1 never */
static int lookup(Replica *r, uint32_t iid, int frozen_view, Copy *c)
{
    const Slot *s = NULL;
    if (frozen_view && r->frozen) {
        s = find(&r->saved, iid, r->stride);
        if (s != NULL && s->absent)
            return 0;
    }
    if (s == NULL)
        s = find(&r->live, iid, r->stride);
    if (s == NULL)
        return 0;
    copy_out(r, s, c);
    return 1;
}

static PyObject *make_record(Replica *r, PyObject *iid, Copy *c)
{
    PyObject *values = PyDict_New(), *types = c->types ? PyDict_Copy(c->types) : PyDict_New(), *rec = NULL;
    if (values == NULL || types == NULL)
        goto done;
    for (int f = 0; f < r->nf; f++) {
        if (!((c->mask >> f) & 1))
            continue;
        PyObject *x = PyLong_FromLongLong(c->v[f]);
        if (x == NULL || PyDict_SetItem(values, r->fid_obj[f], x) < 0) {
            Py_XDECREF(x);
            goto done;
        }
        Py_DECREF(x);
    }
    if (c->extra != NULL && PyDict_Update(values, c->extra) < 0)
        goto done;
    if (r->record_class == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "compact replica cleared");
        goto done;
    }
    rec = PyObject_CallFunctionObjArgs(r->record_class, iid, c->symbol, c->exponent, NULL);
    if (rec != NULL && (PyObject_SetAttr(rec, S_VALUES, values) < 0 || PyObject_SetAttr(rec, S_TYPES, types) < 0))
        Py_CLEAR(rec);
done:
    Py_XDECREF(values);
    Py_XDECREF(types);
    return rec;
}

static PyObject *get_record(Replica *r, PyObject *iid, int frozen_view)
{
    uint32_t k;
    Copy c;
    if (!key_of(iid, &k) || lookup(r, k, frozen_view, &c) == 0)
        Py_RETURN_NONE;
    PyObject *rec = make_record(r, iid, &c);
    release(&c);
    return rec;
}

static PyObject *Replica_get(Replica *r, PyObject *iid) { return get_record(r, iid, 0); }
static PyObject *Replica_frozen_get(Replica *r, PyObject *iid) { return get_record(r, iid, 1); }

/* value(iid, field_id[, default]): records[iid].values.get(field_id, default), without making the Record */
static PyObject *Replica_value(Replica *r, PyObject *args)
{
    PyObject *iid, *fid, *dflt = Py_None;
    if (!PyArg_ParseTuple(args, "OO|O", &iid, &fid, &dflt))
        return NULL;
    uint32_t k;
    int64_t f;
    if (!key_of(iid, &k))
        return Py_NewRef(dflt);
    if (!int64_of(fid, &f)) {  /* a key of another type (True equals 1): the Record's dict decides */
        PyObject *rec = get_record(r, iid, 0), *out = NULL;
        if (rec == NULL || rec == Py_None) {
            Py_XDECREF(rec);
            return rec == NULL ? NULL : Py_NewRef(dflt);
        }
        PyObject *values = PyObject_GetAttr(rec, S_VALUES);
        Py_DECREF(rec);
        if (values != NULL)
            out = PyObject_CallMethod(values, "get", "OO", fid, dflt);
        Py_XDECREF(values);
        return out;
    }
    const Slot *s = find(&r->live, k, r->stride);
    if (s == NULL)
        return Py_NewRef(dflt);
    if (f >= 0 && f < r->nf && ((s->mask >> f) & 1))
        return PyLong_FromLongLong(s->v[f]);
    if (s->extra != NULL) {
        PyObject *extra = Py_NewRef(s->extra);  /* the lookup may compare with keys of any type */
        PyObject *x = PyDict_GetItemWithError(extra, fid);
        PyObject *out = x != NULL ? Py_NewRef(x) : PyErr_Occurred() ? NULL : Py_NewRef(dflt);
        Py_DECREF(extra);
        return out;
    }
    return Py_NewRef(dflt);
}

static PyObject *Replica_contains(Replica *r, PyObject *iid)
{
    uint32_t k;
    return PyBool_FromLong(key_of(iid, &k) && find(&r->live, k, r->stride) != NULL);
}

/* put(iid, record): the slot of `iid` becomes a copy of `record` (a Record: symbol, price_exponent, values, types) */
static PyObject *Replica_put(Replica *r, PyObject *args)
{
    PyObject *iid, *rec;
    uint32_t k;
    if (!PyArg_ParseTuple(args, "OO", &iid, &rec) || !ready(r))
        return NULL;
    if (!key_of(iid, &k)) {
        PyErr_Format(PyExc_ValueError, "instrument id %R: a compact image keys instruments by 32-bit unsigned ints", iid);
        return NULL;
    }
    PyObject *symbol = PyObject_GetAttr(rec, S_SYMBOL), *exponent = symbol ? PyObject_GetAttr(rec, S_EXPONENT) : NULL;
    PyObject *values = exponent ? PyObject_GetAttr(rec, S_VALUES) : NULL, *types_in = values ? PyObject_GetAttr(rec, S_TYPES) : NULL;
    PyObject *copy = NULL, *extra = NULL, *types = NULL;
    uint64_t mask = 0;
    int64_t v[MAX_FIELDS];
    if (types_in == NULL || (copy = PyDict_New()) == NULL || PyDict_Update(copy, values) < 0 || (types = PyDict_New()) == NULL ||
        PyDict_Update(types, types_in) < 0)
        goto fail;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(copy, &pos, &key, &value)) {
        if (set_any(r, key, value, &mask, v, &extra) < 0)
            goto fail;
    }
    Py_DECREF(copy);
    Py_DECREF(values);
    Py_DECREF(types_in);
    if (replace(r, k, symbol, exponent, mask, v, extra, types) < 0)
        return NULL;
    Py_RETURN_NONE;
fail:
    Py_XDECREF(symbol);
    Py_XDECREF(exponent);
    Py_XDECREF(values);
    Py_XDECREF(types_in);
    Py_XDECREF(copy);
    Py_XDECREF(extra);
    Py_XDECREF(types);
    return NULL;
}

/* A record image straight from the wire (native_api.h): the fixed fields as the tuple decoder makes them (the
 * positions of a record image message: 2 instrument id, 3 symbol, 4 price exponent), and rows of (field id, value
 * type, value). The same load as apply_image, without the tuples. */
typedef struct {
    Replica *r;
    Py_ssize_t loaded;
} LoadCtx;

static int load_rows(void *ctx, PyObject *head, Py_ssize_t count, const int64_t *rows, Py_ssize_t width)
{
    LoadCtx *lc = ctx;
    Replica *r = lc->r;
    uint32_t iid;
    if (width != 3 || PyTuple_GET_SIZE(head) < 5 || !key_of(PyTuple_GET_ITEM(head, 2), &iid)) {
        PyErr_SetString(PyExc_ValueError, "load_soup: not a record image of this schema (instrument id, symbol, exponent; "
                                          "rows of field id, value type, value)");
        return -1;
    }
    uint64_t mask = 0;
    int64_t v[MAX_FIELDS];
    PyObject *extra = NULL, *types = NULL, *fid = NULL, *x = NULL;
    for (Py_ssize_t k = 0; k < count; k++) {
        int64_t f = rows[3 * k], vt = rows[3 * k + 1], value = rows[3 * k + 2];
        long declared = -1;
        if (f >= 0 && f < r->nf) {
            v[f] = value;
            mask |= (uint64_t)1 << f;
            if (extra != NULL) {  /* the same field twice, the first beyond int64: cannot be from the wire, but exact */
                int present = PyDict_Contains(extra, r->fid_obj[f]);
                if (present < 0 || (present && PyDict_DelItem(extra, r->fid_obj[f]) < 0))
                    goto fail;
            }
            declared = r->dtype[f];
            fid = Py_NewRef(r->fid_obj[f]);
        } else {
            if ((fid = PyLong_FromLongLong(f)) == NULL || (x = PyLong_FromLongLong(value)) == NULL)
                goto fail;
            if (extra == NULL && (extra = PyDict_New()) == NULL)
                goto fail;
            if (PyDict_SetItem(extra, fid, x) < 0)
                goto fail;
            Py_CLEAR(x);
            PyObject *t = PyDict_GetItemWithError(r->field_types, fid);
            int64_t tv;
            if (t == NULL && PyErr_Occurred())
                goto fail;
            if (t != NULL && int64_of(t, &tv))
                declared = (long)tv;
        }
        if (declared < 0 || declared != vt) {  /* as load_record: set, never removed */
            if ((types == NULL && (types = PyDict_New()) == NULL) || (x = PyLong_FromLongLong(vt)) == NULL ||
                PyDict_SetItem(types, fid, x) < 0)
                goto fail;
            Py_CLEAR(x);
        }
        Py_CLEAR(fid);
    }
    if (replace(r, iid, Py_NewRef(PyTuple_GET_ITEM(head, 3)), Py_NewRef(PyTuple_GET_ITEM(head, 4)), mask, v, extra, types) < 0)
        return -1;
    lc->loaded++;
    return 0;
fail:
    Py_XDECREF(fid);
    Py_XDECREF(x);
    Py_XDECREF(extra);
    Py_XDECREF(types);
    return -1;
}

static const MdNativeApi *NATIVE_API;

/* load_soup(buf, off) -> (next_off, loaded): the record images of an image stream's SoupBinTCP packets from
 * buf[off:], loaded into slots as they are read, up to the first packet that is anything else. */
static PyObject *Replica_load_soup(Replica *r, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t off;
    if (!ready(r) || !PyArg_ParseTuple(args, "y*n", &view, &off))
        return NULL;
    if (NATIVE_API == NULL) {
        NATIVE_API = PyCapsule_Import(MD_NATIVE_API_CAPSULE, 0);
        if (NATIVE_API != NULL && NATIVE_API->version != MD_NATIVE_API_VERSION) {
            PyErr_Format(PyExc_ImportError, "decoders._native API version %d, this replica speaks %d", NATIVE_API->version,
                         MD_NATIVE_API_VERSION);
            NATIVE_API = NULL;
        }
        if (NATIVE_API == NULL) {
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    if (off < 0 || off > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "load_soup: offset outside the buffer");
        return NULL;
    }
    LoadCtx ctx = {r, 0};
    Py_ssize_t next = NATIVE_API->soup_rows((const unsigned char *)view.buf, off, view.len, (unsigned char)'I', load_rows, &ctx);
    PyBuffer_Release(&view);
    if (next < 0)
        return NULL;
    return Py_BuildValue("nn", next, ctx.loaded);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* ids(sorted=False) -> list of instrument ids, in the order they came (or ascending) */
static PyObject *ids_of(Replica *r, int sorted)
{
    size_t n = r->live.count;
    uint32_t *keys = PyMem_Malloc((n ? n : 1) * sizeof(uint32_t));
    if (keys == NULL)
        return PyErr_NoMemory();
    for (size_t i = 0; i < n; i++)
        keys[i] = SLOT(&r->live, i, r->stride)->iid;
    if (sorted)
        qsort(keys, n, sizeof(uint32_t), cmp_u32);
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; out != NULL && i < n; i++) {
        PyObject *x = PyLong_FromUnsignedLong(keys[i]);
        if (x == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, (Py_ssize_t)i, x);
    }
    PyMem_Free(keys);
    return out;
}

static PyObject *Replica_ids(Replica *r, PyObject *args)
{
    int sorted = 0;
    if (!PyArg_ParseTuple(args, "|p", &sorted))
        return NULL;
    return ids_of(r, sorted);
}

static PyObject *Replica_freeze(Replica *r, PyObject *Py_UNUSED(ignored))
{
    clear_table(&r->saved, r->stride);
    r->frozen = 1;
    return ids_of(r, 1);
}

static PyObject *Replica_thaw(Replica *r, PyObject *Py_UNUSED(ignored))
{
    r->frozen = 0;
    clear_table(&r->saved, r->stride);
    Py_RETURN_NONE;
}

/* Record.value_type: the slot's own type for `fid` (a None there counts as no entry), else the dictionary's (of
 * slot field f, or looked up when f < 0), else VALUE_INTEGER. A new reference, or NULL with an exception. */
static PyObject *value_type(Replica *r, Copy *c, PyObject *fid, int f)
{
    PyObject *t = NULL;
    if (c->types != NULL && (t = PyDict_GetItemWithError(c->types, fid)) == NULL && PyErr_Occurred())
        return NULL;
    if (t != NULL && t != Py_None)
        return Py_NewRef(t);
    if (f >= 0)
        return Py_NewRef(r->dtype_obj[f]);
    if ((t = PyDict_GetItemWithError(r->field_types, fid)) == NULL && PyErr_Occurred())
        return NULL;
    return Py_NewRef(t != NULL ? t : r->default_type);
}

/* items.append((fid, its value type, value)): 0, or -1 with an exception */
static int append_field(Replica *r, Copy *c, PyObject *items, PyObject *fid, int f, PyObject *value)
{
    PyObject *t = value_type(r, c, fid, f), *e = t ? PyTuple_Pack(3, fid, t, value) : NULL;
    int rc = e == NULL ? -1 : PyList_Append(items, e);
    Py_XDECREF(t);
    Py_XDECREF(e);
    return rc;
}

/* The record image message of a copied slot: (b"I", ts, iid, symbol, exponent, ((fid, type, value), ...)) */
static PyObject *image_message(Replica *r, PyObject *iid, PyObject *ts, Copy *c)
{
    PyObject *items = PyList_New(0), *fields = NULL, *m = NULL;
    if (items == NULL)
        return NULL;
    for (int f = 0; f < r->nf; f++) {
        if (!((c->mask >> f) & 1))
            continue;
        PyObject *x = PyLong_FromLongLong(c->v[f]);
        int rc = x == NULL ? -1 : append_field(r, c, items, r->fid_obj[f], f, x);
        Py_XDECREF(x);
        if (rc < 0)
            goto done;
    }
    if (c->extra != NULL) {  /* fields held as objects, then all in field order */
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(c->extra, &pos, &key, &value)) {
            if (append_field(r, c, items, key, -1, value) < 0)
                goto done;
        }
        if (PyList_Sort(items) < 0)
            goto done;
    }
    fields = PyList_AsTuple(items);
    if (fields != NULL)
        m = PyTuple_Pack(6, IMAGE_TAG, ts, iid, c->symbol, c->exponent, fields);
done:
    Py_DECREF(items);
    Py_XDECREF(fields);
    return m;
}

/* frozen_messages(ids, ts[, each]) -> list: as Image.frozen_messages */
static PyObject *Replica_frozen_messages(Replica *r, PyObject *args)
{
    PyObject *ids, *ts, *each = Py_None;
    int frozen = 1;
    if (!PyArg_ParseTuple(args, "OO|Op", &ids, &ts, &each, &frozen))
        return NULL;
    PyObject *seq = PySequence_Fast(ids, "frozen_messages: ids must be a sequence"), *out = NULL;
    if (seq == NULL)
        return NULL;
    if ((out = PyList_New(0)) == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *iid = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        uint32_t k;
        Copy c;
        if (!key_of(iid, &k) || lookup(r, k, frozen, &c) == 0) {
            Py_DECREF(iid);
            continue;
        }
        PyObject *m = image_message(r, iid, ts, &c);
        release(&c);
        Py_DECREF(iid);
        if (m != NULL && each != Py_None)
            Py_SETREF(m, PyObject_CallOneArg(each, m));
        if (m == NULL || PyList_Append(out, m) < 0) {
            Py_XDECREF(m);
            goto fail;
        }
        Py_DECREF(m);
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *Replica_len(Replica *r, PyObject *Py_UNUSED(ignored)) { return PyLong_FromSize_t(r->live.count); }

static PyObject *Replica_memory(Replica *r, PyObject *Py_UNUSED(ignored))
{
    size_t b = (r->live.cap + r->saved.cap) * sizeof(Entry) + (r->live.slot_cap + r->saved.slot_cap) * r->stride;
    return PyLong_FromSize_t(b);
}

/* Replica(field_ids, field_types, default_type, record_class, slow): field_ids the 13 named fields' ids in the
 * order of the enum above, field_types the dictionary's {field id: value type}, slow(replica, msg) the Python
 * definition (given the replica, so that it need not hold the image: no cycle, and a replaced image is freed at
 * once, not at the next full collection). */
static int Replica_init(Replica *r, PyObject *args, PyObject *kwds)
{
    PyObject *ids, *types, *default_type, *record_class, *slow;
    if (!PyArg_ParseTuple(args, "O!O!OOO", &PyTuple_Type, &ids, &PyDict_Type, &types, &default_type, &record_class, &slow))
        return -1;
    if (PyTuple_GET_SIZE(ids) != N_NAMED) {
        PyErr_Format(PyExc_ValueError, "Replica: %d field ids expected", N_NAMED);
        return -1;
    }
    if (r->nf != 0) {
        PyErr_SetString(PyExc_RuntimeError, "Replica: already initialised");
        return -1;
    }
    int nf = 0, named[N_NAMED];
    for (int i = 0; i < N_NAMED; i++) {
        int64_t f;
        if (!int64_of(PyTuple_GET_ITEM(ids, i), &f) || f < 0 || f >= MAX_FIELDS) {
            PyErr_SetString(PyExc_ValueError, "Replica: named field ids must be ints in 0..63");
            return -1;
        }
        named[i] = (int)f;
        nf = f + 1 > nf ? (int)f + 1 : nf;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(types, &pos, &key, &value)) {
        int64_t f;
        if (int64_of(key, &f) && f >= 0 && f < MAX_FIELDS && f + 1 > nf)
            nf = (int)f + 1;
    }
    memcpy(r->f, named, sizeof named);
    r->nf = nf;
    for (int i = BID_PRICE; i <= QUOTE_TIME; i++)
        r->quote_bits |= (uint64_t)1 << named[i];
    for (int i = LAST_PRICE; i <= LAST_TRADE_TIME; i++)
        r->trade_bits |= (uint64_t)1 << named[i];
    r->stride = (sizeof(Slot) + (size_t)nf * sizeof(int64_t) + 7) & ~(size_t)7;
    for (int f = 0; f < nf; f++) {
        PyObject *fid = PyLong_FromLong(f);
        if (fid == NULL)
            return -1;
        r->fid_obj[f] = fid;
        PyObject *t = PyDict_GetItemWithError(types, fid);
        if (t == NULL && PyErr_Occurred())
            return -1;
        int64_t tv;
        r->dtype[f] = t != NULL && int64_of(t, &tv) ? (long)tv : -1;
        r->dtype_obj[f] = Py_NewRef(t != NULL ? t : default_type);
    }
    if ((r->field_types = PyDict_Copy(types)) == NULL)
        return -1;
    r->default_type = Py_NewRef(default_type);
    (void)kwds;
    r->record_class = Py_NewRef(record_class);
    r->slow = Py_NewRef(slow);
    return 0;
}

static int Replica_traverse(Replica *r, visitproc visit, void *arg)
{
    Py_VISIT(r->slow);
    Py_VISIT(r->record_class);
    Table *tables[2] = {&r->live, &r->saved};
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; i < tables[t]->count; i++) {
            Slot *s = SLOT(tables[t], i, r->stride);
            Py_VISIT(s->symbol);
            Py_VISIT(s->exponent);
            Py_VISIT(s->extra);
            Py_VISIT(s->types);
        }
    }
    return 0;
}

static int Replica_clear(Replica *r)
{
    Py_CLEAR(r->slow);
    Py_CLEAR(r->record_class);
    clear_table(&r->live, r->stride);
    clear_table(&r->saved, r->stride);
    return 0;
}

static void Replica_dealloc(Replica *r)
{
    PyObject_GC_UnTrack(r);
    Replica_clear(r);
    Py_CLEAR(r->field_types);
    Py_CLEAR(r->default_type);
    for (int f = 0; f < r->nf; f++) {
        Py_CLEAR(r->fid_obj[f]);
        Py_CLEAR(r->dtype_obj[f]);
    }
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMethodDef Replica_methods[] = {
    {"apply", (PyCFunction)Replica_apply, METH_O, "apply(msg): one message, as Image.apply"},
    {"apply_many", (PyCFunction)Replica_apply_many, METH_O, "apply_many(msgs): each message in order"},
    {"get", (PyCFunction)Replica_get, METH_O, "get(iid) -> Record (a copy, as of now) or None"},
    {"frozen_get", (PyCFunction)Replica_frozen_get, METH_O, "frozen_get(iid) -> Record as at freeze, or None"},
    {"contains", (PyCFunction)Replica_contains, METH_O, "contains(iid) -> bool"},
    {"value", (PyCFunction)Replica_value, METH_VARARGS, "value(iid, field_id[, default]): one field, without making the Record"},
    {"put", (PyCFunction)Replica_put, METH_VARARGS, "put(iid, record): the slot becomes a copy of the record"},
    {"ids", (PyCFunction)Replica_ids, METH_VARARGS, "ids(sorted=False) -> list of instrument ids"},
    {"freeze", (PyCFunction)Replica_freeze, METH_NOARGS, "freeze() -> sorted ids; slots are saved on first change"},
    {"thaw", (PyCFunction)Replica_thaw, METH_NOARGS, "thaw(): the saved slots are dropped"},
    {"frozen_messages", (PyCFunction)Replica_frozen_messages, METH_VARARGS, "frozen_messages(ids, ts[, each[, frozen=True]]) -> list; frozen=False: as the slots are now"},
    {"size", (PyCFunction)Replica_len, METH_NOARGS, "size() -> number of instruments"},
    {"load_soup", (PyCFunction)Replica_load_soup, METH_VARARGS, "load_soup(buf, off) -> (next_off, loaded): record images from an image stream"},
    {"memory", (PyCFunction)Replica_memory, METH_NOARGS, "memory() -> bytes held by the tables (not the objects)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReplicaType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mdcommon._compact.Replica",
    .tp_basicsize = sizeof(Replica),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Instrument slots in C: see mdcommon/compact_image.py",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Replica_init,
    .tp_traverse = (traverseproc)Replica_traverse,
    .tp_clear = (inquiry)Replica_clear,
    .tp_dealloc = (destructor)Replica_dealloc,
    .tp_methods = Replica_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_compact", .m_doc = "A compact replica in C", .m_size = -1};

PyMODINIT_FUNC PyInit__compact(void)
{
    if (PyType_Ready(&ReplicaType) < 0)
        return NULL;
    EMPTY = PyUnicode_InternFromString("");
    ZERO = PyLong_FromLong(0);
    IMAGE_TAG = PyBytes_FromStringAndSize("I", 1);
    S_VALUES = PyUnicode_InternFromString("values");
    S_TYPES = PyUnicode_InternFromString("types");
    S_SYMBOL = PyUnicode_InternFromString("symbol");
    S_EXPONENT = PyUnicode_InternFromString("price_exponent");
    if (!EMPTY || !ZERO || !IMAGE_TAG || !S_VALUES || !S_TYPES || !S_SYMBOL || !S_EXPONENT)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReplicaType);
    if (PyModule_AddObject(m, "Replica", (PyObject *)&ReplicaType) < 0) {
        Py_DECREF(&ReplicaType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
