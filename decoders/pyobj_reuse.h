/* Result tuples and ints reused in place, for the C parts that hand the application many small tuples of ints:
 * the generated decoders (decoders/_native.c, from decoders/native_gen.py) and the synthetic market
 * (tickerplant/_synthetic.c). Allocating and freeing a tuple and an int per wide field was most of what either
 * spent per message. Hand-written: it holds no schema knowledge. Each includer gets its own static tables.
 *
 * A tuple is reused the way CPython's zip() reuses its result: each comes from a ring the includer owns, and a
 * tuple whose only reference is the ring's (the application has dropped it) is filled again in place instead of
 * being freed and allocated anew. Its int items held by nothing else are rewritten in place too (ints made by
 * new_long below, always with room for 64 bits). Nothing outside can see either change: an object anybody else
 * holds has a second reference and is never reused; it is replaced. Items must be ints, bytes or other objects
 * without references (a ring's tuple may have been untracked by the garbage collector). */
#ifndef MD_PYOBJ_REUSE_H
#define MD_PYOBJ_REUSE_H
#include <Python.h>
#include <stdint.h>

/* CPython 3.11's int layout (public in cpython/longintrepr.h): 30-bit digits after ob_size, the sign in ob_size.
 * The packers read ints through it and new_long/long_set write them; elsewhere the API does both. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && PyLong_SHIFT == 30
#define DIGITS(o) (((PyLongObject *)(o))->ob_digit)
#endif

/* Unsigned values below 65,536 (sizes, instrument ids, counts) become shared int objects, made the first time
 * each value is seen and kept for the module's life: at most 65,536 ints, about 2 MB. (CPython caches only
 * -5..256.) */
#define SMALL_INTS 65536
static PyObject *SMALL_INT[SMALL_INTS];
static inline PyObject *small_uint(uint64_t v)
{
    if (v >= SMALL_INTS)
        return PyLong_FromUnsignedLongLong(v);
    PyObject *o = SMALL_INT[v];
    if (o == NULL && (o = SMALL_INT[v] = PyLong_FromUnsignedLongLong(v)) == NULL)
        return NULL;
    return Py_NewRef(o);
}

/* Reuse is for the versions read for it: 3.14 caches a tuple's hash in the tuple, and without the GIL a refcount
 * of 1 proves nothing; there every result is a new tuple. */
#if PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
#define REUSE_TUPLES 1
#else
#define REUSE_TUPLES 0
#endif

/* A new reference to a tuple of n items from the ring `pool` of `size` slots (a power of two), `*at` its cursor:
 * the slot's own tuple if nothing else holds it (its items still the old message's, each to be replaced or
 * rewritten), else a new tuple of NULLs that takes the slot. `*slot` says which slot, so that a caller failing
 * half-way can take a half-filled tuple out of the ring (pooled_drop). Every tuple a ring
 * holds has n items: one ring per tuple size. */
static inline PyObject *pooled_tuple(PyObject **pool, unsigned size, unsigned *at, Py_ssize_t n, PyObject ***slot)
{
    PyObject **s = &pool[(*at)++ & (size - 1)];
    *slot = s;
    if (!REUSE_TUPLES)
        return PyTuple_New(n);  /* and the ring stays empty */
    if (*s != NULL && Py_REFCNT(*s) == 1)
        return Py_NewRef(*s);
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    Py_XSETREF(*s, t);  /* the old one, if any, stays with whoever holds it */
    return Py_NewRef(t);
}

/* Item j of a pooled tuple becomes o (a new reference, or NULL on a memory error, which the caller then finds). */
static inline void put_obj(PyObject *t, Py_ssize_t j, PyObject *o)
{
    PyObject *old = PyTuple_GET_ITEM(t, j);
    PyTuple_SET_ITEM(t, j, o);
    Py_XDECREF(old);
}

/* Item j of a pooled tuple becomes the shared object o (a constant), unless it already is. */
static inline void put_ref(PyObject *t, Py_ssize_t j, PyObject *o)
{
    if (PyTuple_GET_ITEM(t, j) != o)
        put_obj(t, j, Py_NewRef(o));
}

/* A pooled tuple left half-filled (a defect or a memory error part-way) leaves its ring, if still there, and is
 * released: nobody may see it again. */
static inline void pooled_drop(PyObject *t, PyObject **slot)
{
    if (*slot == t)
        Py_CLEAR(*slot);
    Py_DECREF(t);
}

#ifdef DIGITS
#define LONG_DIGITS 3  /* 64 bits in 30-bit digits */
static inline void long_set(PyObject *o, uint64_t magnitude, int negative)
{
    digit *d = DIGITS(o);
    Py_ssize_t n = 0;
    while (magnitude) {
        d[n++] = (digit)(magnitude & PyLong_MASK);
        magnitude >>= PyLong_SHIFT;
    }
    Py_SET_SIZE(o, negative ? -n : n);
}
/* An int that may be rewritten later: room for any 64-bit value, whatever this one needs. */
static inline PyObject *new_long(uint64_t magnitude, int negative)
{
    PyObject *o = (PyObject *)_PyLong_New(LONG_DIGITS);
    if (o != NULL)
        long_set(o, magnitude, negative);
    return o;
}
/* Outside CPython's cached -5..256; `old` is a pooled tuple's item: only ints made by new_long are ever held
 * there alone (shared and cached ints have other references). */
static inline void put_long(PyObject *t, Py_ssize_t j, uint64_t magnitude, int negative)
{
    PyObject *old = PyTuple_GET_ITEM(t, j);
    if (old != NULL && Py_REFCNT(old) == 1 && PyLong_CheckExact(old))
        long_set(old, magnitude, negative);
    else
        put_obj(t, j, new_long(magnitude, negative));
}
static inline void put_i64(PyObject *t, Py_ssize_t j, int64_t v)
{
    if (v >= -5 && v <= 256)
        put_obj(t, j, PyLong_FromLong((long)v));
    else
        put_long(t, j, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, v < 0);
}
static inline void put_u64(PyObject *t, Py_ssize_t j, uint64_t v)
{
    if (v <= 256)
        put_obj(t, j, PyLong_FromLong((long)v));
    else
        put_long(t, j, v, 0);
}
#else
static inline void put_i64(PyObject *t, Py_ssize_t j, int64_t v) { put_obj(t, j, PyLong_FromLongLong(v)); }
static inline void put_u64(PyObject *t, Py_ssize_t j, uint64_t v) { put_obj(t, j, PyLong_FromUnsignedLongLong(v)); }
#endif
/* Unsigned and mostly small: shared below SMALL_INTS. */
static inline void put_uint(PyObject *t, Py_ssize_t j, uint64_t v)
{
    if (v < SMALL_INTS)
        put_obj(t, j, small_uint(v));
    else
        put_u64(t, j, v);
}

#endif
