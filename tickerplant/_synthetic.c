/* SyntheticMarket.next_messages in C: the same messages from the same Mersenne Twister state.
 *
 * The synthetic market is the main job's source, and in Python it cost more per message than numbering,
 * packing, journaling and sending together (540 ns a message). Standbys regenerate each other's stream
 * from the seed, so this file must give exactly what tickerplant/source.py gives: it draws with the
 * algorithm of CPython's random.random() (MT19937, genrand_res53) from the state random.getstate()
 * hands over, does the same double arithmetic, and hands the state back for setstate().
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

/* next_messages(state, n, now_ns, mid, trade_id, instruments, consts) -> (messages, state)
 * state: random.getstate()[1] (624 words and the index); mid, trade_id: the market's lists, updated in place. */
static PyObject *next_messages(PyObject *self, PyObject *args)
{
    PyObject *state, *now, *mid, *trade_id, *consts;
    Py_ssize_t n, count;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!nOO!O!nO!", &PyTuple_Type, &state, &n, &now, &PyList_Type, &mid, &PyList_Type, &trade_id, &count,
                          &PyTuple_Type, &consts))
        return NULL;
    if (PyTuple_GET_SIZE(state) != N + 1 || PyTuple_GET_SIZE(consts) != N_CONSTS || n < 0 || count < 1
        || PyList_GET_SIZE(mid) < count || PyList_GET_SIZE(trade_id) < count) {
        PyErr_SetString(PyExc_ValueError, "next_messages: a Mersenne Twister state of 625 ints, and mid/trade_id lists of `instruments`");
        return NULL;
    }
    mt_state s;
    for (int i = 0; i < N; i++) {
        unsigned long v = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(state, i));
        if (v == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
        s.mt[i] = (uint32_t)v;
    }
    long index = PyLong_AsLong(PyTuple_GET_ITEM(state, N));
    if (index == -1 && PyErr_Occurred())
        return NULL;
    if (index < 0 || index > N) {
        PyErr_SetString(PyExc_ValueError, "next_messages: state index outside 0..624");
        return NULL;
    }
    s.index = (int)index;
    PyObject **c = &PyTuple_GET_ITEM(consts, 0);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        long long k = (long long)(random_res53(&s) * (double)count);
        long long iid = k + 1;
        double r = random_res53(&s);
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
    PyObject *st = PyTuple_New(N + 1);
    if (st == NULL)
        goto error;
    for (int i = 0; i < N; i++) {
        PyObject *v = PyLong_FromUnsignedLong(s.mt[i]);
        if (v == NULL) {
            Py_DECREF(st);
            goto error;
        }
        PyTuple_SET_ITEM(st, i, v);
    }
    PyObject *ix = PyLong_FromLong(s.index);
    if (ix == NULL) {
        Py_DECREF(st);
        goto error;
    }
    PyTuple_SET_ITEM(st, N, ix);
    return Py_BuildValue("NN", out, st);
error:
    Py_DECREF(out);  /* items not yet set are NULL, which list dealloc skips */
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"next_messages", next_messages, METH_VARARGS, "next_messages(state, n, now_ns, mid, trade_id, instruments, consts) -> (messages, state)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_synthetic", "SyntheticMarket.next_messages in C", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__synthetic(void) { return PyModule_Create(&MODULE); }
