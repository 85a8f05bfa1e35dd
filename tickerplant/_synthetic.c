/* SyntheticMarket.next_messages in C: the same messages from the same Mersenne Twister state.
 *
 * The synthetic market is the main job's source, and in Python it cost more per message than numbering,
 * packing, journaling and sending together (540 ns a message). Standbys regenerate each other's stream
 * from the seed, so this file must give exactly what tickerplant/source.py gives: it draws with the
 * algorithm of CPython's random.random() (MT19937, genrand_res53) from the state random.getstate()
 * hands over (kept in a buffer between calls, see state_buffer), and does the same double arithmetic.
 * tests/unit/test_plant_source_config.py compares both for many seeds and sizes. Loaded by
 * tickerplant/source.py when pip install built it and MD_BACKEND is not "python".
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../decoders/pyobj_reuse.h"

#define N 624
#define M 397

typedef struct {
    uint32_t mt[N];
    int index;
} mt_state;

static uint32_t genrand_uint32(mt_state *s)
{
    static const uint32_t mag01[2] = {0x0U, 0x9908b0dfU};
    uint32_t y, *mt = s->mt;
    if (s->index >= N) {
        int kk;
        for (kk = 0; kk < N - M; kk++) {
            y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
            mt[kk] = mt[kk + M] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        for (; kk < N - 1; kk++) {
            y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
            mt[kk] = mt[kk + (M - N)] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        y = (mt[N - 1] & 0x80000000U) | (mt[0] & 0x7fffffffU);
        mt[N - 1] = mt[M - 1] ^ (y >> 1) ^ mag01[y & 0x1U];
        s->index = 0;
    }
    y = mt[s->index++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

static double random_res53(mt_state *s)  /* random.random() */
{
    uint32_t a = genrand_uint32(s) >> 5, b = genrand_uint32(s) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

enum { C_QUOTE, C_TRADE, C_FIELD, C_BUY, C_SELL, C_VWAP, C_VALUE_PRICE, C_OPEN_INTEREST, C_VALUE_INTEGER, C_HALTED, C_FOUR, C_ZERO,
       N_CONSTS };

/* The messages' tuples come from two rings (one per tuple size, pyobj_reuse.h): a tuple the plant dropped after
 * sending it is filled again in place with its ints, instead of freed and allocated anew; that was half of what a
 * message cost here. A ring is a little larger than the biggest batch the plant makes (2,000 messages, four in five
 * of seven fields), so a flat-out plant reuses all of the previous batch; a tuple anybody still holds is left to
 * them and replaced in its ring. */
#define RING_7 2048
#define RING_6 1024
static PyObject *POOL_7[RING_7], *POOL_6[RING_6];
static unsigned AT_7, AT_6;

/* The generator's state lives in a bytearray the market holds (an mt_state), so that a call costs nothing to
 * hand it over: converting the 625 ints of random.getstate() both ways cost as much as 64 messages, and the plant's
 * paced batches (30 messages a batch at 300 k msg/s) were made in Python for that. state_buffer() and
 * state_tuple() convert when the Python generator takes over or hands back. */
static mt_state *state_of(Py_buffer *view)
{
    if (view->len != (Py_ssize_t)sizeof(mt_state)) {
        PyErr_SetString(PyExc_ValueError, "a generator state buffer is state_buffer()'s bytearray");
        return NULL;
    }
    mt_state *s = (mt_state *)view->buf;
    if (s->index < 0 || s->index > N) {
        PyErr_SetString(PyExc_ValueError, "generator state: index outside 0..624");
        return NULL;
    }
    return s;
}

static PyObject *generate(Py_buffer *view, Py_ssize_t n, PyObject *now, long long *mid, long long *trade_id, Py_ssize_t count,
                          PyObject *consts)
{
    if (PyTuple_GET_SIZE(consts) != N_CONSTS || n < 0) {
        PyErr_SetString(PyExc_ValueError, "next_messages: a count of messages, and the constants");
        return NULL;
    }
    mt_state *s = state_of(view);  /* advanced in place: a memory error half-way leaves the market part-way, mids too */
    if (s == NULL)
        return NULL;
    PyObject **c = &PyTuple_GET_ITEM(consts, 0);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        long long k = (long long)(random_res53(s) * (double)count);
        long long iid = k + 1;
        double r = random_res53(s);
        long long m = mid[k] + (long long)((r - 0.5) * 20);
        if (m < 100)
            m = 100;
        mid[k] = m;
        int seven = r < 0.8;
        PyObject **slot;
        PyObject *t = seven ? pooled_tuple(POOL_7, RING_7, &AT_7, 7, &slot) : pooled_tuple(POOL_6, RING_6, &AT_6, 6, &slot);
        if (t == NULL)
            goto error;
        put_ref(t, 1, now);
        put_uint(t, 2, (uint64_t)iid);
        if (r < 0.6) {
            long long spread = 1 + (long long)(r * 10);
            put_ref(t, 0, c[C_QUOTE]);
            put_i64(t, 3, m - spread);
            put_uint(t, 4, (uint64_t)(100 + (long long)(r * 9000)));
            put_i64(t, 5, m + spread);
            put_uint(t, 6, (uint64_t)(100 + (long long)((1 - r) * 9000)));
        } else if (seven) {
            trade_id[k] += 1;
            put_ref(t, 0, c[C_TRADE]);
            put_i64(t, 3, m);
            put_uint(t, 4, (uint64_t)(1 + (long long)(r * 500)));
            put_ref(t, 5, c[((long long)(r * 100) & 1) ? C_SELL : C_BUY]);
            put_i64(t, 6, trade_id[k]);
        } else if (r < 0.95) {
            put_ref(t, 0, c[C_FIELD]);
            put_ref(t, 3, c[C_VWAP]);
            put_ref(t, 4, c[C_VALUE_PRICE]);
            put_i64(t, 5, m);
        } else if (r < 0.99) {
            put_ref(t, 0, c[C_FIELD]);
            put_ref(t, 3, c[C_OPEN_INTEREST]);
            put_ref(t, 4, c[C_VALUE_INTEGER]);
            put_uint(t, 5, (uint64_t)(long long)(r * 1000000));
        } else {
            put_ref(t, 0, c[C_FIELD]);
            put_ref(t, 3, c[C_HALTED]);
            put_ref(t, 4, c[C_FOUR]);
            put_ref(t, 5, c[C_ZERO]);
        }
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(t); j++) {
            if (PyTuple_GET_ITEM(t, j) == NULL) {  /* out of memory half-way */
                pooled_drop(t, slot);
                if (!PyErr_Occurred())
                    PyErr_NoMemory();
                goto error;
            }
        }
        PyList_SET_ITEM(out, i, t);
    }
    return out;
error:
    Py_DECREF(out);  /* items not yet set are NULL, which list dealloc skips */
    return NULL;
}

/* state_buffer(random.getstate()[1]) -> bytearray holding that Mersenne Twister state */
static PyObject *state_buffer(PyObject *self, PyObject *state)
{
    (void)self;
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != N + 1) {
        PyErr_SetString(PyExc_ValueError, "state_buffer: a Mersenne Twister state of 625 ints");
        return NULL;
    }
    mt_state s;
    for (int i = 0; i < N; i++) {
        unsigned long v = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(state, i));
        if (v == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
        if (v > 0xFFFFFFFFUL) {
            PyErr_SetString(PyExc_ValueError, "state_buffer: a word past 32 bits");
            return NULL;
        }
        s.mt[i] = (uint32_t)v;
    }
    long index = PyLong_AsLong(PyTuple_GET_ITEM(state, N));
    if (index == -1 && PyErr_Occurred())
        return NULL;
    if (index < 0 || index > N) {
        PyErr_SetString(PyExc_ValueError, "state_buffer: state index outside 0..624");
        return NULL;
    }
    s.index = (int)index;
    return PyByteArray_FromStringAndSize((const char *)&s, sizeof s);
}

/* state_tuple(buffer) -> the tuple random.setstate() takes as its second item */
static PyObject *state_tuple(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    mt_state *s = state_of(&view);
    PyObject *st = s == NULL ? NULL : PyTuple_New(N + 1);
    for (int i = 0; st != NULL && i <= N; i++) {
        PyObject *v = i < N ? PyLong_FromUnsignedLong(s->mt[i]) : PyLong_FromLong(s->index);
        if (v == NULL)
            Py_CLEAR(st);
        else
            PyTuple_SET_ITEM(st, i, v);
    }
    PyBuffer_Release(&view);
    return st;
}

/* An array('q') of at least `count` items, writable: the market's mids or trade ids. */
static long long *int64s(PyObject *o, Py_buffer *view, Py_ssize_t count, const char *what)
{
    int got = PyObject_GetBuffer(o, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) == 0;
    if (!got || view->itemsize != 8 || view->format == NULL || strcmp(view->format, "q") != 0 || count < 1 || view->len / 8 < count) {
        if (got)
            PyBuffer_Release(view);
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "next_messages: %s must be a writable array('q') of `instruments` (at least 1) items", what);
        return NULL;
    }
    return (long long *)view->buf;
}

/* next_messages(state, n, now_ns, mid, trade_id, instruments, consts) -> messages
 * state: state_buffer()'s bytearray, advanced in place; mid, trade_id: the market's array('q')s, updated in place. */
static PyObject *next_messages(PyObject *self, PyObject *args)
{
    Py_buffer view, mids, trades;
    PyObject *now, *mid, *trade_id, *consts, *out = NULL;
    Py_ssize_t n, count;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*nOOOnO!", &view, &n, &now, &mid, &trade_id, &count, &PyTuple_Type, &consts))
        return NULL;
    long long *m = int64s(mid, &mids, count, "mid");
    if (m != NULL) {
        long long *t = int64s(trade_id, &trades, count, "trade_id");
        if (t != NULL) {
            out = generate(&view, n, now, m, t, count, consts);
            PyBuffer_Release(&trades);
        }
        PyBuffer_Release(&mids);
    }
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef METHODS[] = {
    {"next_messages", next_messages, METH_VARARGS, "next_messages(state, n, now_ns, mid, trade_id, instruments, consts) -> messages"},
    {"state_buffer", state_buffer, METH_O, "state_buffer(random.getstate()[1]) -> bytearray"},
    {"state_tuple", state_tuple, METH_O, "state_tuple(state buffer) -> random.getstate()[1]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_synthetic", "SyntheticMarket.next_messages in C", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__synthetic(void) { return PyModule_Create(&MODULE); }
