/* Batched datagram syscalls for the daemons' shells: recvmmsg(2) and sendmmsg(2).
 *
 * Python's socket module has neither, and one recv_into per datagram costs about twice the
 * kernel's own time per datagram (docs/architecture.md, "The hot path"). Loaded by
 * mdcommon/batch_io.py when pip install built it; the per-datagram calls remain otherwise.
 * Hand-written (it holds no schema knowledge); tests/unit/test_batch_io.py checks it against
 * the socket module. Linux only.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_BATCH 1024

/* recv_batch(fd, buffer, slot, max_count) -> tuple of lengths, datagram i at buffer[i * slot:].
 * Never blocks. A negative length -n is a datagram longer than the slot, cut to n bytes. */
static PyObject *recv_batch(PyObject *self, PyObject *args)
{
    int fd, max_count;
    Py_buffer buf;
    Py_ssize_t slot;
    (void)self;
    if (!PyArg_ParseTuple(args, "iw*ni", &fd, &buf, &slot, &max_count))
        return NULL;
    if (slot <= 0 || max_count <= 0 || max_count > MAX_BATCH || slot > buf.len / max_count) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "recv_batch: need 0 < max_count <= 1024 slots of `slot` bytes within the buffer");
        return NULL;
    }
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)max_count);
    for (int i = 0; i < max_count; i++) {
        iov[i].iov_base = (char *)buf.buf + (Py_ssize_t)i * slot;
        iov[i].iov_len = (size_t)slot;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = recvmmsg(fd, msgs, (unsigned int)max_count, MSG_DONTWAIT, NULL);
    Py_END_ALLOW_THREADS
    int err = errno;
    PyBuffer_Release(&buf);
    if (n < 0) {
        if (err == EAGAIN || err == EWOULDBLOCK)
            return PyTuple_New(0);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        long len = (long)msgs[i].msg_len;
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
            len = -len;
        PyObject *v = PyLong_FromLong(len);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, v);
    }
    return out;
}

/* An IPv4 host:port as a sockaddr_in; 0, or -1 with ValueError. */
static int ipv4(const char *host, int port, struct sockaddr_in *a, const char *who)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (port < 0 || port > 65535 || inet_pton(AF_INET, host, &a->sin_addr) != 1) {
        PyErr_Format(PyExc_ValueError, "%s: %s:%d is not an IPv4 address and port", who, host, port);
        return -1;
    }
    return 0;
}

/* One sendmmsg of datagrams[:n] (at most MAX_BATCH, bytes-likes), datagram i to addrs[i]: (sent, errno), sent
 * datagrams left; errno is why the first did not (0: it left, or the kernel stopped early without saying why, and
 * the caller sends the rest again). */
static PyObject *send_held(int fd, PyObject *seq, Py_ssize_t n, struct sockaddr_in *addrs)
{
    Py_buffer views[MAX_BATCH];
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    Py_ssize_t held = 0;
    for (; held < n; held++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, held), &views[held], PyBUF_SIMPLE) < 0)
            break;
        iov[held].iov_base = views[held].buf;
        iov[held].iov_len = (size_t)views[held].len;
        memset(&msgs[held], 0, sizeof(struct mmsghdr));
        msgs[held].msg_hdr.msg_name = &addrs[held];
        msgs[held].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
        msgs[held].msg_hdr.msg_iov = &iov[held];
        msgs[held].msg_hdr.msg_iovlen = 1;
    }
    PyObject *result = NULL;
    if (held == n) {
        int r = n ? sendmmsg(fd, msgs, (unsigned int)n, 0) : 0;
        int err = r < 0 ? errno : 0;
        result = Py_BuildValue("ii", r < 0 ? 0 : r, err);
    }
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    return result;
}

/* send_batch_to(fd, datagrams, destinations) -> (sent, errno): one sendmmsg of up to 1024 bytes-like datagrams,
 * datagram i to destinations[i], an (IPv4 host, port) tuple (send_held says what sent and errno mean); one call
 * for a run that alternates between destinations (a capture's A and B). */
static PyObject *send_batch_to(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *datagrams, *dests;
    (void)self;
    if (!PyArg_ParseTuple(args, "iOO", &fd, &datagrams, &dests))
        return NULL;
    PyObject *seq = PySequence_Fast(datagrams, "send_batch_to: datagrams must be a sequence");
    if (seq == NULL)
        return NULL;
    PyObject *dseq = PySequence_Fast(dests, "send_batch_to: destinations must be a sequence");
    if (dseq == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = NULL;
    if (PySequence_Fast_GET_SIZE(dseq) != n) {
        PyErr_SetString(PyExc_ValueError, "send_batch_to: one destination per datagram");
        goto done;
    }
    if (n > MAX_BATCH)
        n = MAX_BATCH;
    static struct sockaddr_in addrs[MAX_BATCH];
    PyObject *last = NULL;  /* consecutive datagrams to the same tuple object: parsed once */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PySequence_Fast_GET_ITEM(dseq, i);
        if (d == last) {
            addrs[i] = addrs[i - 1];
            continue;
        }
        const char *host;
        int port;
        if (!PyTuple_Check(d) || !PyArg_ParseTuple(d, "si", &host, &port)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "send_batch_to: a destination is an (IPv4 host, port) tuple");
            goto done;
        }
        if (ipv4(host, port, &addrs[i], "send_batch_to") < 0)
            goto done;
        last = d;
    }
    result = send_held(fd, seq, n, addrs);
done:
    Py_DECREF(seq);
    Py_DECREF(dseq);
    return result;
}

/* send_feeds(datagrams, targets, chunk) -> list of (target, index, errno) refused: every datagram to every target, a
 * target an (fd, IPv4 host, port) tuple, in turns of `chunk` datagrams: target 0 takes datagrams[0:chunk], then target 1
 * the same, then target 0 the next chunk, so that the last feed trails the first by at most `chunk` datagrams. One
 * sendmmsg per turn (more if the kernel stops early); a datagram a target refuses is listed and skipped, as a refused
 * sendto would be, and the others still leave. The plant's A and B feeds, without a Python call per turn. */
#define MAX_TARGETS 8
static PyObject *send_feeds(PyObject *self, PyObject *args)
{
    PyObject *datagrams, *targets;
    Py_ssize_t chunk;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOn", &datagrams, &targets, &chunk))
        return NULL;
    if (chunk < 1 || chunk > MAX_BATCH) {
        PyErr_SetString(PyExc_ValueError, "send_feeds: chunk must be 1 to MAX_BATCH");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(datagrams, "send_feeds: datagrams must be a sequence");
    if (seq == NULL)
        return NULL;
    PyObject *tseq = PySequence_Fast(targets, "send_feeds: targets must be a sequence");
    if (tseq == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    PyObject *refused = NULL;
    Py_ssize_t nt = PySequence_Fast_GET_SIZE(tseq), n = PySequence_Fast_GET_SIZE(seq), held = 0;
    int fds[MAX_TARGETS];
    struct sockaddr_in addrs[MAX_TARGETS];
    Py_buffer views[MAX_BATCH];
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    if (nt > MAX_TARGETS) {
        PyErr_SetString(PyExc_ValueError, "send_feeds: at most 8 targets");
        goto done;
    }
    for (Py_ssize_t t = 0; t < nt; t++) {
        PyObject *d = PySequence_Fast_GET_ITEM(tseq, t);
        const char *host;
        int port;
        if (!PyTuple_Check(d) || !PyArg_ParseTuple(d, "isi", &fds[t], &host, &port)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "send_feeds: a target is an (fd, IPv4 host, port) tuple");
            goto done;
        }
        if (ipv4(host, port, &addrs[t], "send_feeds") < 0)
            goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {  /* every datagram a bytes-like before any leaves: none sent, or all tried */
        if (!PyObject_CheckBuffer(PySequence_Fast_GET_ITEM(seq, i))) {
            PyErr_Format(PyExc_TypeError, "send_feeds: datagram %zd is not bytes-like", i);
            goto done;
        }
    }
    if ((refused = PyList_New(0)) == NULL)
        goto done;
    for (Py_ssize_t base = 0; base < n; base += MAX_BATCH) {  /* a block of datagrams held at once */
        Py_ssize_t m = n - base < MAX_BATCH ? n - base : MAX_BATCH;
        for (held = 0; held < m; held++) {
            if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, base + held), &views[held], PyBUF_SIMPLE) < 0)
                goto release;
            iov[held].iov_base = views[held].buf;
            iov[held].iov_len = (size_t)views[held].len;
            memset(&msgs[held], 0, sizeof(struct mmsghdr));
            msgs[held].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
            msgs[held].msg_hdr.msg_iov = &iov[held];
            msgs[held].msg_hdr.msg_iovlen = 1;
        }
        for (Py_ssize_t lo = 0; lo < m; lo += chunk) {
            Py_ssize_t hi = lo + chunk < m ? lo + chunk : m;
            for (Py_ssize_t t = 0; t < nt; t++) {
                for (Py_ssize_t i = lo; i < hi; i++)
                    msgs[i].msg_hdr.msg_name = &addrs[t];
                for (Py_ssize_t i = lo; i < hi;) {
                    int r = sendmmsg(fds[t], &msgs[i], (unsigned int)(hi - i), 0);
                    if (r > 0) {
                        i += r;
                        continue;
                    }
                    PyObject *entry = Py_BuildValue("nni", t, base + i, r < 0 ? errno : EIO);
                    if (entry == NULL || PyList_Append(refused, entry) < 0) {
                        Py_XDECREF(entry);
                        Py_CLEAR(refused);
                        goto release;
                    }
                    Py_DECREF(entry);
                    i++;  /* skipped, as a refused sendto */
                }
            }
        }
release:
        for (Py_ssize_t i = 0; i < held; i++)
            PyBuffer_Release(&views[i]);
        if (refused == NULL || PyErr_Occurred()) {
            Py_CLEAR(refused);
            break;
        }
    }
done:
    Py_DECREF(seq);
    Py_DECREF(tseq);
    return refused;
}

/* Captured frames sent as they are (wire replay --frames): a classic pcap read whole, walked here. */
static uint32_t rd32(const unsigned char *p, int swap)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}

/* pcap_scan(data) -> (swap, packets), or None: a classic pcap of Ethernet frames, each captured whole and each a
 * whole, unfragmented IPv4 UDP datagram to a multicast group: what --frames may send as captured. */
static PyObject *pcap_scan(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *d = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len, off = 24, packets = 0;
    int swap = -1, ok = 0;
    if (n >= 24) {
        uint32_t magic = rd32(d, 0);
        if (magic == 0xa1b2c3d4U || magic == 0xa1b23c4dU)
            swap = 0;
        else if (magic == 0xd4c3b2a1U || magic == 0x4d3cb2a1U)
            swap = 1;
    }
    if (swap >= 0 && (rd32(d + 20, swap) & 0xFFFF) == 1) {  /* LINKTYPE_ETHERNET */
        ok = 1;
        while (off < n) {
            if (off + 16 > n) { ok = 0; break; }
            uint32_t incl = rd32(d + off + 8, swap), orig = rd32(d + off + 12, swap);
            const unsigned char *f = d + off + 16;
            if (incl != orig || incl < 42 || incl > 65535 || off + 16 + (Py_ssize_t)incl > n) { ok = 0; break; }
            unsigned ihl = (f[14] & 0x0F) * 4u, total = ((unsigned)f[16] << 8) | f[17];
            if (f[12] != 8 || f[13] != 0 || (f[14] >> 4) != 4 || ihl < 20 || f[23] != 17 || (f[20] & 0x3F) || f[21]
                || f[30] < 224 || f[30] > 239 || total < ihl + 8 || 14 + total > incl) { ok = 0; break; }
            packets++;
            off += 16 + (Py_ssize_t)incl;
        }
    }
    PyBuffer_Release(&view);
    if (!ok)
        Py_RETURN_NONE;
    return Py_BuildValue("in", swap, packets);
}

/* send_frames(fd, data, offset, swap, max_count) -> (next_offset, sent, errno): the frames of the next records of a
 * capture that pcap_scan accepted, by one sendmmsg on a packet socket bound to the interface (errno: why the
 * frame at next_offset did not leave; 0: it may be sent again). */
static PyObject *send_frames(PyObject *self, PyObject *args)
{
    int fd, swap, max_count;
    Py_buffer view;
    Py_ssize_t off;
    (void)self;
    if (!PyArg_ParseTuple(args, "iy*nii", &fd, &view, &off, &swap, &max_count))
        return NULL;
    if (max_count <= 0 || max_count > MAX_BATCH)
        max_count = MAX_BATCH;
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    Py_ssize_t offs[MAX_BATCH + 1];
    const unsigned char *d = (const unsigned char *)view.buf;
    int k = 0;
    Py_ssize_t o = off;
    while (k < max_count && o + 16 <= view.len) {
        uint32_t incl = rd32(d + o + 8, swap);
        if (o + 16 + (Py_ssize_t)incl > view.len)
            break;
        memset(&msgs[k], 0, sizeof msgs[k]);
        iov[k].iov_base = (void *)(d + o + 16);
        iov[k].iov_len = incl;
        msgs[k].msg_hdr.msg_iov = &iov[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
        offs[k] = o;
        o += 16 + (Py_ssize_t)incl;
        k++;
    }
    offs[k] = o;
    int r = 0, err = 0;
    if (k) {
        Py_BEGIN_ALLOW_THREADS
        r = sendmmsg(fd, msgs, (unsigned int)k, 0);
        Py_END_ALLOW_THREADS
        if (r < 0) {
            err = errno;
            r = 0;
        }
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nii", offs[r], r, err);
}

static PyMethodDef METHODS[] = {
    {"recv_batch", recv_batch, METH_VARARGS, "recv_batch(fd, buffer, slot, max_count) -> tuple of lengths (negative: cut)"},
    {"send_batch_to", send_batch_to, METH_VARARGS, "send_batch_to(fd, datagrams, destinations) -> (sent, errno)"},
    {"send_feeds", send_feeds, METH_VARARGS, "send_feeds(datagrams, targets, chunk) -> list of (target, index, errno) refused"},
    {"pcap_scan", pcap_scan, METH_O, "pcap_scan(data) -> (swap, packets) or None"},
    {"send_frames", send_frames, METH_VARARGS, "send_frames(fd, data, offset, swap, max_count) -> (next_offset, sent, errno)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_batch_io", "recvmmsg and sendmmsg for the daemons", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__batch_io(void)
{
    PyObject *m = PyModule_Create(&MODULE);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_BATCH", MAX_BATCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
