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

static PyObject *tuple_of(Py_ssize_t n, PyObject **items)  /* steals the items; NULL if any is NULL */
{
    PyObject *t = PyTuple_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (t == NULL || items[i] == NULL) {
            for (Py_ssize_t j = i; j < n; j++)
                Py_XDECREF(items[j]);
            Py_XDECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, items[i]);
    }
    return t;
}

static PyObject *ref(PyObject *o) { Py_INCREF(o); return o; }
static PyObject *num(long long v) { return PyLong_FromLongLong(v); }

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

static PyObject *generate(Py_buffer *view, Py_ssize_t n, PyObject *now, PyObject *mid, PyObject *trade_id, Py_ssize_t count,
                          PyObject *consts)
{
    if (PyTuple_GET_SIZE(consts) != N_CONSTS || n < 0 || count < 1 || PyList_GET_SIZE(mid) < count
        || PyList_GET_SIZE(trade_id) < count) {
        PyErr_SetString(PyExc_ValueError, "next_messages: mid/trade_id lists of `instruments`, and the constants");
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
        long long m = PyLong_AsLongLong(PyList_GET_ITEM(mid, k));
        if (m == -1 && PyErr_Occurred())
            goto error;
        m += (long long)((r - 0.5) * 20);
        if (m < 100)
            m = 100;
        PyObject *mo = num(m);
        if (mo == NULL)
            goto error;
        PyList_SetItem(mid, k, ref(mo));
        PyObject *msg;
        if (r < 0.6) {
            long long spread = 1 + (long long)(r * 10);
            PyObject *f[7] = {ref(c[C_QUOTE]), ref(now), num(iid), num(m - spread), num(100 + (long long)(r * 9000)), num(m + spread),
                              num(100 + (long long)((1 - r) * 9000))};
            msg = tuple_of(7, f);
        } else if (r < 0.8) {
            long long t = PyLong_AsLongLong(PyList_GET_ITEM(trade_id, k));
            if (t == -1 && PyErr_Occurred()) {
                Py_DECREF(mo);
                goto error;
            }
            PyObject *to = num(t + 1);
            if (to == NULL) {
                Py_DECREF(mo);
                goto error;
            }
            PyList_SetItem(trade_id, k, ref(to));
            PyObject *f[7] = {ref(c[C_TRADE]), ref(now), num(iid), ref(mo), num(1 + (long long)(r * 500)),
                              ref(c[((long long)(r * 100) & 1) ? C_SELL : C_BUY]), to};
            msg = tuple_of(7, f);
        } else if (r < 0.95) {
            PyObject *f[6] = {ref(c[C_FIELD]), ref(now), num(iid), ref(c[C_VWAP]), ref(c[C_VALUE_PRICE]), ref(mo)};
            msg = tuple_of(6, f);
        } else if (r < 0.99) {
            PyObject *f[6] = {ref(c[C_FIELD]), ref(now), num(iid), ref(c[C_OPEN_INTEREST]), ref(c[C_VALUE_INTEGER]),
                              num((long long)(r * 1000000))};
            msg = tuple_of(6, f);
        } else {
            PyObject *f[6] = {ref(c[C_FIELD]), ref(now), num(iid), ref(c[C_HALTED]), ref(c[C_FOUR]), ref(c[C_ZERO])};
            msg = tuple_of(6, f);
        }
        Py_DECREF(mo);
        if (msg == NULL)
            goto error;
        PyList_SET_ITEM(out, i, msg);
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

/* next_messages(state, n, now_ns, mid, trade_id, instruments, consts) -> messages
 * state: state_buffer()'s bytearray, advanced in place; mid, trade_id: the market's lists, updated in place. */
static PyObject *next_messages(PyObject *self, PyObject *args)
{
    Py_buffer view;
    PyObject *now, *mid, *trade_id, *consts;
    Py_ssize_t n, count;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*nOO!O!nO!", &view, &n, &now, &PyList_Type, &mid, &PyList_Type, &trade_id, &count,
                          &PyTuple_Type, &consts))
        return NULL;
    PyObject *out = generate(&view, n, now, mid, trade_id, count, consts);
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
