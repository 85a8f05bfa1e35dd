/* The wire backend's C API for other native parts (mdcommon/_compact.c), exported by decoders._native as the
 * capsule "decoders._native._API". Hand-written: it declares a calling convention, not the schema; the functions
 * behind it are generated from the schema (decoders/native_gen.py). */
#ifndef MD_NATIVE_API_H
#define MD_NATIVE_API_H
#include <Python.h>
#include <stdint.h>

#define MD_NATIVE_API_VERSION 1
#define MD_NATIVE_API_CAPSULE "decoders._native._API"

/* One message: `head` its fixed fields as the tuple decoder makes them (borrowed), its group as `count` rows of
 * `width` int64s. 0, or -1 with an exception set (soup_rows then stops and returns -1). */
typedef int (*md_rows_cb)(void *ctx, PyObject *head, Py_ssize_t count, const int64_t *rows, Py_ssize_t width);

typedef struct {
    int version;
    uint64_t fingerprint;  /* the schema's */
    /* The whole SoupBinTCP sequenced-data packets from buf[off:end] that each hold one message of type `type`
     * (whose group is integers only), one cb each, in order. It stops at anything else (a partial packet, another
     * packet or message type, a defect) and returns that packet's offset, for the Python path to judge; -1 with an
     * exception set if cb failed or memory ran out. `type` without such a group: returns off. */
    Py_ssize_t (*soup_rows)(const unsigned char *buf, Py_ssize_t off, Py_ssize_t end, unsigned char type, md_rows_cb cb, void *ctx);
} MdNativeApi;

#endif
