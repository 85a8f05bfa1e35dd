/* The plant's packing in C: messages into datagrams, and each datagram that fills sealed (header written,
 * bytes copied out, its block offsets as the journal holds them), for a whole publish batch in one call.
 * Included by the generated _native.c (it packs through its pack_one); hand-written because it holds
 * no schema knowledge. tickerplant/sequencer.py (Sequencer.publish_many) is its caller and keeps the Python
 * path for what this leaves alone; tests/unit/test_native.py and the sequencer's model test hold both to the
 * same datagrams.
 */

/* seal_datagrams(buf, off, count, max_bytes, msgs, start, session, first, starts)
 *     -> (i, off, count, first, datagrams, offsets, counts, firsts, sizes)
 * Packs msgs[start:] into the open datagram in `buf` (`count` blocks up to `off`, their starts in the list
 * `starts`, its first sequence `first`). Each time the next message does not fit, the open datagram is
 * sealed: header (session, first, count), copied out as bytes; its block starts and end as native uint16
 * bytes (offsets); its count, first sequence and its messages' bytes (sizes). Stops at the end of msgs
 * or at a message the C packers do not take (the struct codecs pack it, or raise); `starts` is then the
 * open datagram's again. */
static PyObject *seal_datagrams(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "seal_datagrams takes 9 arguments");
        return NULL;
    }
    PyObject *msgs = args[4], *session = args[6], *starts = args[8];
    Py_ssize_t off = PyLong_AsSsize_t(args[1]), count = PyLong_AsSsize_t(args[2]), max_bytes = PyLong_AsSsize_t(args[3]);
    Py_ssize_t i = PyLong_AsSsize_t(args[5]);
    unsigned long long first = PyLong_AsUnsignedLongLong(args[7]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyBytes_CheckExact(session) || PyBytes_GET_SIZE(session) != 10 || !PyList_CheckExact(starts) || PyList_GET_SIZE(starts) != count
        || count < 0 || count > MAX_COUNT || off < HEADER_SIZE || i < 0) {
        PyErr_SetString(PyExc_ValueError, "seal_datagrams: a 10-byte session, and `starts` holding the open datagram's `count` blocks");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (max_bytes > view.len || max_bytes > 65535 || off > max_bytes) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "seal_datagrams: max_bytes beyond the buffer or 64 KiB, or off beyond max_bytes");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(msgs, "seal_datagrams: msgs must be a sequence");
    if (seq == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    uint16_t st[MAX_COUNT + 1];
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t s = PyLong_AsSsize_t(PyList_GET_ITEM(starts, k));
        if (s < HEADER_SIZE || s >= off) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "seal_datagrams: a block start outside the open datagram");
            goto error_early;
        }
        st[k] = (uint16_t)s;
    }
    PyObject *datagrams = PyList_New(0), *offsets = PyList_New(0), *counts = PyList_New(0), *firsts = PyList_New(0), *sizes = PyList_New(0);
    if (datagrams == NULL || offsets == NULL || counts == NULL || firsts == NULL || sizes == NULL)
        goto error;
    unsigned char *buf = (unsigned char *)view.buf;
    const char *sess = PyBytes_AS_STRING(session);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    while (i < n) {
        Py_ssize_t stop;
        int r = pack_one(buf, items[i], off, count, max_bytes, &stop);
        if (r == PACK_PYTHON)
            break;
        if (r == PACK_FULL) {
            if (count == 0)
                break;  /* never fits even alone: the struct codecs raise the EncodeError */
            memcpy(buf, sess, 10);
            wrbe64(buf + 10, (uint64_t)first);
            wrbe16(buf + 18, (uint16_t)count);
            st[count] = (uint16_t)off;
            PyObject *d = PyBytes_FromStringAndSize((const char *)buf, off);
            PyObject *o = PyBytes_FromStringAndSize((const char *)st, (Py_ssize_t)((count + 1) * sizeof(uint16_t)));
            PyObject *c = PyLong_FromSsize_t(count), *f = PyLong_FromUnsignedLongLong(first), *z = PyLong_FromSsize_t(off - st[0] - 2 * count);
            int bad = d == NULL || o == NULL || c == NULL || f == NULL || z == NULL || PyList_Append(datagrams, d) < 0
                      || PyList_Append(offsets, o) < 0 || PyList_Append(counts, c) < 0 || PyList_Append(firsts, f) < 0 || PyList_Append(sizes, z) < 0;
            Py_XDECREF(d);
            Py_XDECREF(o);
            Py_XDECREF(c);
            Py_XDECREF(f);
            Py_XDECREF(z);
            if (bad)
                goto error;
            first += (unsigned long long)count;
            off = HEADER_SIZE;
            count = 0;
            continue;  /* the same message, into the next datagram */
        }
        st[count++] = (uint16_t)off;
        off = stop;
        i++;
    }
    {  /* `starts` is the open datagram's again */
        PyObject *open = PyList_New(count);
        if (open == NULL)
            goto error;
        for (Py_ssize_t k = 0; k < count; k++) {
            PyObject *s = PyLong_FromLong(st[k]);
            if (s == NULL) {
                Py_DECREF(open);
                goto error;
            }
            PyList_SET_ITEM(open, k, s);
        }
        int r = PyList_SetSlice(starts, 0, PyList_GET_SIZE(starts), open);
        Py_DECREF(open);
        if (r < 0)
            goto error;
    }
    Py_DECREF(seq);
    PyBuffer_Release(&view);
    return Py_BuildValue("nnnKNNNNN", i, off, count, first, datagrams, offsets, counts, firsts, sizes);
error:
    Py_XDECREF(datagrams);
    Py_XDECREF(offsets);
    Py_XDECREF(counts);
    Py_XDECREF(firsts);
    Py_XDECREF(sizes);
error_early:
    Py_DECREF(seq);
    PyBuffer_Release(&view);
    return NULL;
}
