/* The line handler's in-order lane in C: one call per recvmmsg batch instead of five Python frames per
 * datagram. Included by the generated _native.c (it decodes with the generated DECODERS through
 * decode_blocks); hand-written because it holds no schema knowledge.
 *
 * It does, for a run of datagrams, exactly what HandlerCore.on_datagram does for the two cases that
 * make up a healthy feed, and nothing else:
 *   - the next datagram in order (sequence == expected, nothing buffered, no gap, not joining): count,
 *     decode, deliver, apply to the replica, remember it in the ring of first copies, move expected;
 *   - a copy of a datagram wholly delivered whose bytes equal the first copy's (the other feed's copy):
 *     count it, time A against B, drop it.
 * It stops, changing nothing, at the first datagram that is anything else (a gap, another session, a
 * heartbeat, a defect, a copy that differs), which the Python path then takes. linehandler/session.py
 * (HandlerCore.on_batch) decides when the lane may run and builds its argument list; the stateful model
 * test drives both paths with the same inputs and checks the same promises.
 */

/* lane list, built by HandlerCore._lane_args (indexes here must match it) */
enum {
    L_FEED_COUNTS, L_STREAM_COUNTS, L_LEAD_LAG, L_EDGES, L_RECENT, L_RECENT_ORDER, L_FEED_NEXT, L_RECENT_LIMIT,
    L_ON_MESSAGES, L_ON_MESSAGE, L_APPLY_MANY, L_APPLY, L_IDS, L_NEXT, L_EXPECTED, L_RECENT_MAX_COUNT, L_MAX_BYTES,
    L_SIZE
};
/* L_IDS: the counter ids, from linehandler/counters.py */
enum { ID_DATAGRAMS, ID_MESSAGES, ID_FIRST_ARRIVALS, ID_DUPLICATES, ID_MISSED, ID_DELIVERED, N_IDS };

static PyObject *S_APPEND, *S_POPLEFT;

static int bump(PyObject *list, Py_ssize_t i, long long delta)
{
    if (i < 0 || i >= PyList_GET_SIZE(list)) {
        PyErr_SetString(PyExc_IndexError, "admit_run: counter id out of range");
        return -1;
    }
    long long v = PyLong_AsLongLong(PyList_GET_ITEM(list, i));
    if (v == -1 && PyErr_Occurred())
        return -1;
    PyObject *n = PyLong_FromLongLong(v + delta);
    if (n == NULL)
        return -1;
    PyList_SetItem(list, i, n);  /* steals n, releases the old value */
    return 0;
}

/* A call's result dropped: 0, or -1 with its exception set. */
static int discard(PyObject *r)
{
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int set_int(PyObject *list, Py_ssize_t i, long long v)
{
    PyObject *n = PyLong_FromLongLong(v);
    if (n == NULL)
        return -1;
    PyList_SetItem(list, i, n);
    return 0;
}

/* datagrams, messages and missed for a datagram of `count` messages from `seq` on feed `feed` (what
 * on_datagram and _admit count before anything else) */
static int count_arrival(PyObject *counts, PyObject *feed_next, int feed, const Py_ssize_t *ids, long long seq, long long count)
{
    long long end = seq + count;
    if (bump(counts, ids[ID_DATAGRAMS], 1) < 0 || bump(counts, ids[ID_MESSAGES], count) < 0)
        return -1;
    long long was = PyLong_AsLongLong(PyList_GET_ITEM(feed_next, feed));
    if (was == -1 && PyErr_Occurred())
        return -1;
    if (seq > was && was && bump(counts, ids[ID_MISSED], seq - was) < 0)
        return -1;
    if (end > was && set_int(feed_next, feed, end) < 0)
        return -1;
    return 0;
}

/* admit_run(buf, slot, lengths, start, feed, now_ns, session, lane) -> None
 * Datagram i of the batch is buf[i * slot:][:lengths[i]]. Runs from `start` while each datagram is one of
 * the two cases above; lane[L_NEXT] is then the first it did not take (also when a callback raised, which
 * then propagates: that datagram was counted as on_datagram counts it before delivering). */
static PyObject *admit_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "admit_run takes 8 arguments");
        return NULL;
    }
    PyObject *lane = args[7], *session = args[6];
    Py_ssize_t slot = PyLong_AsSsize_t(args[1]), start = PyLong_AsSsize_t(args[3]);
    long long feed_ll = PyLong_AsLongLong(args[4]), now = PyLong_AsLongLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(lane) || PyList_GET_SIZE(lane) != L_SIZE || !PyBytes_CheckExact(session) || PyBytes_GET_SIZE(session) != 10
        || (feed_ll != 0 && feed_ll != 1) || slot <= 0 || start < 0) {
        PyErr_SetString(PyExc_ValueError, "admit_run: a lane list, a 10-byte session, feed 0 or 1, a positive slot");
        return NULL;
    }
    int feed = (int)feed_ll;
    PyObject *counts = PyList_GET_ITEM(lane, L_FEED_COUNTS), *stream = PyList_GET_ITEM(lane, L_STREAM_COUNTS);
    PyObject *lead_lag = PyList_GET_ITEM(lane, L_LEAD_LAG), *edges = PyList_GET_ITEM(lane, L_EDGES);
    PyObject *recent = PyList_GET_ITEM(lane, L_RECENT), *order = PyList_GET_ITEM(lane, L_RECENT_ORDER);
    PyObject *feed_next = PyList_GET_ITEM(lane, L_FEED_NEXT), *ids_t = PyList_GET_ITEM(lane, L_IDS);
    PyObject *on_messages = PyList_GET_ITEM(lane, L_ON_MESSAGES), *on_message = PyList_GET_ITEM(lane, L_ON_MESSAGE);
    PyObject *apply_many = PyList_GET_ITEM(lane, L_APPLY_MANY), *apply = PyList_GET_ITEM(lane, L_APPLY);
    if (!PyList_CheckExact(counts) || !PyList_CheckExact(stream) || !PyList_CheckExact(lead_lag) || !PyTuple_CheckExact(edges)
        || PyList_GET_SIZE(lead_lag) != PyTuple_GET_SIZE(edges) + 1 || !PyDict_CheckExact(recent) || !PyList_CheckExact(feed_next)
        || PyList_GET_SIZE(feed_next) < 2 || !PyTuple_CheckExact(ids_t) || PyTuple_GET_SIZE(ids_t) != N_IDS) {
        PyErr_SetString(PyExc_ValueError, "admit_run: the lane list is not as HandlerCore._lane_args builds it");
        return NULL;
    }
    Py_ssize_t ids[N_IDS];
    for (int k = 0; k < N_IDS; k++)
        ids[k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(ids_t, k));
    long long expected = PyLong_AsLongLong(PyList_GET_ITEM(lane, L_EXPECTED));
    long long recent_max = PyLong_AsLongLong(PyList_GET_ITEM(lane, L_RECENT_MAX_COUNT));
    Py_ssize_t limit = PyLong_AsSsize_t(PyList_GET_ITEM(lane, L_RECENT_LIMIT));
    Py_ssize_t max_bytes = PyLong_AsSsize_t(PyList_GET_ITEM(lane, L_MAX_BYTES));
    if (PyErr_Occurred())
        return NULL;
    PyObject *lengths = PySequence_Fast(args[2], "admit_run: lengths must be a sequence");
    if (lengths == NULL)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(lengths);
        return NULL;
    }
    const char *sess = PyBytes_AS_STRING(session);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(lengths), i = start;
    int failed = 0;
    for (; i < n; i++) {
        Py_ssize_t len = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(lengths, i));
        if (len == -1 && PyErr_Occurred()) {
            failed = 1;
            break;
        }
        if (len < HEADER_SIZE || len > max_bytes || len > slot || i * slot + len > view.len)
            break;  /* short, long or cut: malformed, which Python says how */
        const unsigned char *p = (const unsigned char *)view.buf + i * slot;
        if (memcmp(p, sess, 10) != 0)
            break;
        long long seq = (long long)rdbe64(p + 10), count = rdbe16(p + 18);
        if (count == 0 || count == 0xFFFF || seq <= 0 || seq > (1LL << 62))
            break;  /* heartbeat, end of session, sequence 0, or a sequence no stream reaches */
        long long end = seq + count;
        PyObject *key = PyLong_FromLongLong(seq);
        if (key == NULL) {
            failed = 1;
            break;
        }
        PyObject *first = PyDict_GetItemWithError(recent, key);  /* borrowed: (feed, arrival ns, bytes) */
        if (first == NULL && PyErr_Occurred()) {
            Py_DECREF(key);
            failed = 1;
            break;
        }
        if (seq == expected) {
            if (first != NULL) {
                Py_DECREF(key);
                break;  /* a first copy of this sequence is already kept: Python times and keeps it */
            }
            PyObject *msgs = decode_blocks(p, len, count);
            if (msgs == NULL) {
                Py_DECREF(key);
                if (PyErr_Occurred())
                    failed = 1;
                break;  /* a defect: Python finds it and says what */
            }
            int bad = count_arrival(counts, feed_next, feed, ids, seq, count) < 0;
            if (!bad) {  /* from here on the datagram is taken: a raising callback stops the run after it */
                if (on_messages != Py_None) {
                    PyObject *call[2] = {key, msgs};
                    bad = discard(PyObject_Vectorcall(on_messages, call, 2, NULL)) < 0
                          || (apply_many != Py_None && discard(PyObject_CallOneArg(apply_many, msgs)) < 0);
                } else {
                    for (Py_ssize_t k = 0; k < count && !bad; k++) {
                        PyObject *m = PyList_GET_ITEM(msgs, k), *s = k ? PyLong_FromLongLong(seq + k) : Py_NewRef(key);
                        if (s == NULL) {
                            bad = 1;
                            break;
                        }
                        PyObject *call[2] = {s, m};
                        bad = discard(PyObject_Vectorcall(on_message, call, 2, NULL)) < 0;
                        Py_DECREF(s);
                        bad = bad || (apply != Py_None && discard(PyObject_CallOneArg(apply, m)) < 0);
                    }
                }
            }
            Py_DECREF(msgs);
            if (!bad) {  /* remember the first copy: recent[seq] = (feed, now, bytes), bounded by the order deque */
                PyObject *entry = Py_BuildValue("(iLy#)", feed, now, (const char *)p, len);
                bad = entry == NULL || PyDict_SetItem(recent, key, entry) < 0;
                Py_XDECREF(entry);
                bad = bad || discard(PyObject_CallMethodOneArg(order, S_APPEND, key)) < 0;
                if (!bad) {
                    Py_ssize_t held = PyObject_Size(order);
                    bad = held < 0;
                    if (!bad && held > limit) {
                        PyObject *old = PyObject_CallMethodNoArgs(order, S_POPLEFT);
                        bad = old == NULL;
                        if (!bad && PyDict_DelItem(recent, old) < 0) {
                            if (PyErr_ExceptionMatches(PyExc_KeyError))
                                PyErr_Clear();
                            else
                                bad = 1;
                        }
                        Py_XDECREF(old);
                    }
                }
                if (count > recent_max)
                    recent_max = count;
                if (!bad)
                    bad = bump(counts, ids[ID_FIRST_ARRIVALS], count) < 0 || bump(stream, ids[ID_DELIVERED], count) < 0;
                if (!bad)
                    expected = end;
            }
            Py_DECREF(key);
            if (bad) {
                failed = 1;
                break;
            }
            continue;
        }
        Py_DECREF(key);
        if (end > expected || first == NULL || !PyTuple_CheckExact(first) || PyTuple_GET_SIZE(first) != 3)
            break;
        PyObject *copy = PyTuple_GET_ITEM(first, 2);
        if (!PyBytes_CheckExact(copy) || PyBytes_GET_SIZE(copy) != len || memcmp(PyBytes_AS_STRING(copy), p, (size_t)len) != 0)
            break;  /* not a byte copy of the first: Python compares it message by message */
        /* a copy of a datagram wholly delivered, byte for byte: counted, timed, dropped */
        if (count_arrival(counts, feed_next, feed, ids, seq, count) < 0) {
            failed = 1;
            break;
        }
        long long first_feed = PyLong_AsLongLong(PyTuple_GET_ITEM(first, 0)), arrival = PyLong_AsLongLong(PyTuple_GET_ITEM(first, 1));
        if (PyErr_Occurred()) {
            failed = 1;
            break;
        }
        if (first_feed != feed && first_feed < 2) {
            long long delta = now - arrival, a_minus_b = first_feed == 0 ? -delta : delta;
            Py_ssize_t b = 0, n_edges = PyTuple_GET_SIZE(edges);
            while (b < n_edges && a_minus_b >= PyLong_AsLongLong(PyTuple_GET_ITEM(edges, b)))
                b++;
            if (PyErr_Occurred() || bump(lead_lag, b, 1) < 0) {
                failed = 1;
                break;
            }
        }
        if (bump(counts, ids[ID_DUPLICATES], count) < 0) {
            failed = 1;
            break;
        }
    }
    PyBuffer_Release(&view);
    Py_DECREF(lengths);
    PyObject *et = NULL, *ev = NULL, *tb = NULL;
    if (failed)
        PyErr_Fetch(&et, &ev, &tb);  /* the progress is written back even when a callback raised */
    if (set_int(lane, L_NEXT, i) < 0 || set_int(lane, L_EXPECTED, expected) < 0 || set_int(lane, L_RECENT_MAX_COUNT, recent_max) < 0) {
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
        return NULL;
    }
    if (failed) {
        PyErr_Restore(et, ev, tb);
        return NULL;
    }
    Py_RETURN_NONE;
}

static int lane_init(void)
{
    S_APPEND = PyUnicode_InternFromString("append");
    S_POPLEFT = PyUnicode_InternFromString("popleft");
    return S_APPEND != NULL && S_POPLEFT != NULL ? 0 : -1;
}
