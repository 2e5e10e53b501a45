/* The IMSI lookup of a mapped snapshot, in C: the same probe as python_finder() in
 * core/store/finder.py.
 *
 * Why: find() runs for every Access-Request; in Python it is a loop of struct unpacks and a
 * tuple of eleven fields, ~10% of the request (bench/micro.py). The Python closure stays the
 * specification: tests/store/test_index.py compares the two on every IMSI of a table and on
 * misses. Layout (core/store/format.py): IMSI slots "<QII" (IMSI, reference, framed IP) at
 * index_at, a power-of-two number of them, Fibonacci-hashed with linear probing; records
 * "<QQHBB..." (primary IMSI, lock, group, status, flags) of 32 bytes at records_at.
 *
 * The buffer is taken for each call (PyObject_GetBuffer), never kept: the mmap can be closed
 * at any time (a table swapped out by compaction), and a closed one raises ValueError instead
 * of reading unmapped memory.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "core.store._index reads the little-endian snapshot format with native loads"
#endif

#define FIBONACCI 0x9E3779B97F4A7C15ULL
#define VIRTUAL (1U << 31)
#define TERMINATED (1U << 30)
#define RECORD_INDEX_MASK (TERMINATED - 1)
#define ALLOW_UNREPORTED 0x01
#define LOCK_ON_FIRST_CONNECT 0x02
#define SLOT_SIZE 16
#define RECORD_SIZE 32

typedef struct {
    PyObject_HEAD
    PyObject *buffer;      /* the mmap (or bytes) */
    PyObject *statuses;    /* tuple: status byte -> Status member */
    PyObject *subscriber;  /* the Subscriber type (a tuple subclass) */
    PyObject *overlay;     /* dict IMSI -> Subscriber, consulted first */
    Py_ssize_t index_at;
    Py_ssize_t records_at;
    uint64_t last;         /* slots - 1 */
    int shift;             /* 64 - log2(slots) */
} FinderObject;

static inline uint64_t
load64(const unsigned char *at)
{
    uint64_t value;
    memcpy(&value, at, 8); /* the format is little-endian, as is every Linux target we build */
    return value;
}

static inline uint32_t
load32(const unsigned char *at)
{
    uint32_t value;
    memcpy(&value, at, 4);
    return value;
}

static PyObject *
make_subscriber(FinderObject *self, PyObject *imsi, const unsigned char *slot,
                const unsigned char *base, Py_ssize_t size)
{
    uint32_t reference = load32(slot + 8);
    uint32_t framed_ip = load32(slot + 12);
    uint32_t sim = reference & RECORD_INDEX_MASK;
    Py_ssize_t at = self->records_at + (Py_ssize_t)sim * RECORD_SIZE;
    if (at < 0 || at + RECORD_SIZE > size) {
        PyErr_Format(PyExc_IndexError, "record %u is outside the snapshot", sim);
        return NULL;
    }
    const unsigned char *record = base + at;
    uint64_t primary = load64(record);
    uint64_t lock = load64(record + 8);
    uint16_t group;
    memcpy(&group, record + 16, 2);
    unsigned status = record[18];
    unsigned flags = record[19];
    if ((Py_ssize_t)status >= PyTuple_GET_SIZE(self->statuses)) {
        PyErr_Format(PyExc_IndexError, "status %u of record %u is unknown", status, sim);
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)self->subscriber;
    PyObject *made = type->tp_alloc(type, 11);
    if (made == NULL) {
        return NULL;
    }
    PyObject *sim_index = PyLong_FromUnsignedLong(sim);
    PyObject *framed = PyLong_FromUnsignedLong(framed_ip);
    PyObject *primary_imsi = PyLong_FromUnsignedLongLong(primary);
    PyObject *group_index = PyLong_FromLong(group);
    PyObject *locked = PyLong_FromUnsignedLongLong(lock);
    if (!sim_index || !framed || !primary_imsi || !group_index || !locked) {
        Py_XDECREF(sim_index);
        Py_XDECREF(framed);
        Py_XDECREF(primary_imsi);
        Py_XDECREF(group_index);
        Py_XDECREF(locked);
        Py_DECREF(made);
        return NULL;
    }
    PyObject *state = PyTuple_GET_ITEM(self->statuses, status);
    Py_INCREF(imsi);
    Py_INCREF(state);
    PyObject *is_virtual = reference >= VIRTUAL ? Py_True : Py_False;
    PyObject *is_terminated = (reference & TERMINATED) ? Py_True : Py_False;
    PyObject *allow = (flags & ALLOW_UNREPORTED) ? Py_True : Py_False;
    PyObject *first = (flags & LOCK_ON_FIRST_CONNECT) ? Py_True : Py_False;
    Py_INCREF(is_virtual);
    Py_INCREF(is_terminated);
    Py_INCREF(allow);
    Py_INCREF(first);
    PyTuple_SET_ITEM(made, 0, imsi);
    PyTuple_SET_ITEM(made, 1, sim_index);
    PyTuple_SET_ITEM(made, 2, is_virtual);
    PyTuple_SET_ITEM(made, 3, is_terminated);
    PyTuple_SET_ITEM(made, 4, framed);
    PyTuple_SET_ITEM(made, 5, primary_imsi);
    PyTuple_SET_ITEM(made, 6, state);
    PyTuple_SET_ITEM(made, 7, group_index);
    PyTuple_SET_ITEM(made, 8, locked);
    PyTuple_SET_ITEM(made, 9, allow);
    PyTuple_SET_ITEM(made, 10, first);
    return made;
}

static PyObject *
Finder_call(FinderObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *imsi;
    if (kwargs != NULL || PyTuple_GET_SIZE(args) != 1) {
        PyErr_SetString(PyExc_TypeError, "find(imsi) takes one positional argument");
        return NULL;
    }
    imsi = PyTuple_GET_ITEM(args, 0);
    PyObject *changed = PyDict_GetItemWithError(self->overlay, imsi);
    if (changed != NULL) {
        Py_INCREF(changed);
        return changed;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!PyLong_Check(imsi)) {
        PyErr_SetString(PyExc_TypeError, "an IMSI is an int");
        return NULL;
    }
    uint64_t key = PyLong_AsUnsignedLongLong(imsi);
    if (key == (uint64_t)-1 && PyErr_Occurred()) {
        /* negative or wider than 64 bits: no slot holds it, as in the Python probe */
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(self->buffer, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *base = view.buf;
    PyObject *result = NULL;
    uint64_t number = (key * FIBONACCI) >> self->shift;
    for (uint64_t probes = 0; probes <= self->last; probes++) {
        Py_ssize_t at = self->index_at + (Py_ssize_t)(number << 4);
        if (at < 0 || at + SLOT_SIZE > view.len) {
            PyErr_SetString(PyExc_IndexError, "IMSI slot outside the snapshot");
            goto done;
        }
        uint64_t found = load64(base + at);
        if (found == 0) {
            result = Py_None;
            Py_INCREF(result);
            goto done;
        }
        if (found == key) {
            result = make_subscriber(self, imsi, base + at, base, view.len);
            goto done;
        }
        number = (number + 1) & self->last;
    }
    result = Py_None; /* a full index without this IMSI (never written so: load <= 0.6) */
    Py_INCREF(result);
done:
    PyBuffer_Release(&view);
    return result;
}

/* Prefetching a batch's lookups. A datagram batch (core/service/_datagrams.c) names its IMSIs
 * before any of them is decided; at 1M SIMs and more, each lookup is two dependent cache misses
 * (the IMSI slot, then the record), plus a TLB miss each. Issued for the whole batch first, the
 * misses overlap one another and the decisions of the datagrams ahead, instead of stalling one
 * by one. Only the hardware prefetch hint touches the records: a stale or absent key costs
 * nothing but a wasted line. */
void
finder_prefetch(PyObject *finder, const uint64_t *keys, Py_ssize_t count)
{
    FinderObject *self = (FinderObject *)finder;
    Py_buffer view;
    if (PyObject_GetBuffer(self->buffer, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* a closed mmap: the finder is being swapped out; nothing to warm */
        return;
    }
    const unsigned char *base = view.buf;
    Py_ssize_t end = view.len - SLOT_SIZE;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t at = self->index_at + (Py_ssize_t)(((keys[i] * FIBONACCI) >> self->shift) << 4);
        if (keys[i] != 0 && at >= 0 && at <= end) {
            __builtin_prefetch(base + at);
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t key = keys[i];
        if (key == 0) {
            continue;
        }
        uint64_t number = (key * FIBONACCI) >> self->shift;
        for (uint64_t probes = 0; probes <= self->last; probes++) {
            Py_ssize_t at = self->index_at + (Py_ssize_t)(number << 4);
            if (at < 0 || at > end) {
                break;
            }
            uint64_t found = load64(base + at);
            if (found == 0) {
                break;
            }
            if (found == key) {
                uint32_t sim = load32(base + at + 8) & RECORD_INDEX_MASK;
                Py_ssize_t record = self->records_at + (Py_ssize_t)sim * RECORD_SIZE;
                if (record >= 0 && record + RECORD_SIZE <= view.len) {
                    __builtin_prefetch(base + record);
                }
                break;
            }
            number = (number + 1) & self->last;
        }
    }
    PyBuffer_Release(&view);
}

static PyObject *
Finder_prefetch(FinderObject *self, PyObject *keys)
{
    Py_buffer view;
    if (PyObject_GetBuffer(keys, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    finder_prefetch((PyObject *)self, view.buf, view.len / 8);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef Finder_methods[] = {
    {"prefetch", (PyCFunction)Finder_prefetch, METH_O,
     "prefetch(keys): warm the IMSI slots and records of these IMSIs (native uint64s)."},
    {NULL, NULL, 0, NULL},
};

static int
Finder_init(FinderObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"buffer", "index_at", "slots", "records_at", "statuses",
                               "subscriber", "overlay", NULL};
    PyObject *buffer, *statuses, *subscriber, *overlay;
    Py_ssize_t index_at, records_at, slots;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OnnnO!OO!:Finder", keywords, &buffer,
                                     &index_at, &slots, &records_at, &PyTuple_Type, &statuses,
                                     &subscriber, &PyDict_Type, &overlay)) {
        return -1;
    }
    if (slots < 1 || (slots & (slots - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "slots must be a power of two");
        return -1;
    }
    if (!PyType_Check(subscriber) ||
        !PyType_IsSubtype((PyTypeObject *)subscriber, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "subscriber must be a tuple subclass");
        return -1;
    }
    if (!PyObject_CheckBuffer(buffer)) {
        PyErr_SetString(PyExc_TypeError, "buffer must support the buffer protocol");
        return -1;
    }
    int bits = 0;
    while (((Py_ssize_t)1 << bits) < slots) {
        bits++;
    }
    self->shift = 64 - bits;
    self->last = (uint64_t)slots - 1;
    self->index_at = index_at;
    self->records_at = records_at;
    Py_INCREF(buffer);
    Py_XSETREF(self->buffer, buffer);
    Py_INCREF(statuses);
    Py_XSETREF(self->statuses, statuses);
    Py_INCREF(subscriber);
    Py_XSETREF(self->subscriber, subscriber);
    Py_INCREF(overlay);
    Py_XSETREF(self->overlay, overlay);
    return 0;
}

static int
Finder_traverse(FinderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buffer);
    Py_VISIT(self->statuses);
    Py_VISIT(self->subscriber);
    Py_VISIT(self->overlay);
    return 0;
}

static int
Finder_clear(FinderObject *self)
{
    Py_CLEAR(self->buffer);
    Py_CLEAR(self->statuses);
    Py_CLEAR(self->subscriber);
    Py_CLEAR(self->overlay);
    return 0;
}

static void
Finder_dealloc(FinderObject *self)
{
    PyObject_GC_UnTrack(self);
    Finder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FinderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core.store._index.Finder",
    .tp_doc = PyDoc_STR("Finder(buffer, index_at, slots, records_at, statuses, subscriber, "
                        "overlay)\n--\n\n"
                        "find(imsi) over a mapped snapshot: the overlay first, then the IMSI "
                        "index; a Subscriber or None."),
    .tp_basicsize = sizeof(FinderObject),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Finder_init,
    .tp_dealloc = (destructor)Finder_dealloc,
    .tp_traverse = (traverseproc)Finder_traverse,
    .tp_clear = (inquiry)Finder_clear,
    .tp_call = (ternaryfunc)Finder_call,
    .tp_methods = Finder_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "core.store._index",
    .m_doc = "The IMSI lookup of a mapped snapshot (optional; table.py has the same in Python).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__index(void)
{
    if (PyType_Ready(&FinderType) < 0) {
        return NULL;
    }
    PyObject *created = PyModule_Create(&module);
    if (created == NULL) {
        return NULL;
    }
    Py_INCREF(&FinderType);
    if (PyModule_AddObject(created, "Finder", (PyObject *)&FinderType) < 0) {
        Py_DECREF(&FinderType);
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
