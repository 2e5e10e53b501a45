/* The session table in C: every SIM's latest session, one 64-byte slot each, no Python objects.
 *
 * Why: a session is recorded at every accept. As a tuple in a dict (core/service/sessions.py,
 * PythonSessions, the specification) each accept allocated a tuple, freed the SIM's previous
 * one and its numbers, all cold in a table of a million SIMs: ~1 µs of cache misses per
 * accept, and ~200 bytes per SIM. Here an accept writes one slot (one cache line) in place.
 * tests/service/test_sessions.py runs both implementations through the same operations.
 *
 * Layout: open addressing over a power-of-two array of slots, Fibonacci-hashed primary IMSI,
 * linear probing, key 0 = empty (an IMSI is 15 digits, never 0). Entries are never removed (a
 * session ends by going offline), so probing needs no tombstones. The table doubles at 70% load.
 * The NAS attribute is kept as received: up to NAS_INLINE octets in the slot, longer ones (a long
 * NAS-Identifier) in a dict beside the table.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define FIBONACCI 0x9E3779B97F4A7C15ULL
#define NAS_INLINE 18
#define NAS_LONG 255
#define MIN_BITS 10

typedef struct {
    uint64_t key; /* primary IMSI; 0: empty */
    uint64_t session_id;
    uint64_t imsi; /* the IMSI the request used (primary or virtual) */
    int64_t reported;
    double created;
    uint32_t framed_ip;
    uint8_t online;
    uint8_t nas_len; /* 0..NAS_INLINE, or NAS_LONG: in long_nas */
    uint8_t nas[NAS_INLINE];
} Slot;

_Static_assert(sizeof(Slot) == 64, "one slot, one cache line");

typedef struct {
    PyObject_HEAD
    Slot *slots;
    uint64_t mask;
    int shift;
    Py_ssize_t count;
    Py_ssize_t online;
    PyObject *long_nas; /* dict: primary IMSI -> bytes, for NAS longer than NAS_INLINE */
} SessionTableObject;

static inline uint64_t
home(const SessionTableObject *self, uint64_t key)
{
    return (key * FIBONACCI) >> self->shift;
}

static Slot *
probe(const SessionTableObject *self, uint64_t key)
{
    uint64_t at = home(self, key);
    for (;;) {
        Slot *slot = &self->slots[at];
        if (slot->key == key || slot->key == 0) {
            return slot;
        }
        at = (at + 1) & self->mask;
    }
}

/* A large table gets its own mapping, advised into 2 MiB pages. Every accept touches a random
 * slot: at 10M SIMs (16 MiB and more of slots) with 4 KiB pages nearly every one is a TLB miss
 * besides the cache miss. The system's THP setting is usually "madvise", so plain calloc'd
 * memory gets small pages. */
#define HUGE_PAGE ((size_t)2 << 20)

static Slot *
slots_new(size_t count)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    size_t bytes = count * sizeof(Slot);
    if (bytes >= HUGE_PAGE) {
        void *made = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (made == MAP_FAILED) {
            return NULL;
        }
        (void)madvise(made, bytes, MADV_HUGEPAGE); /* advice: small pages still work */
        return made;
    }
#endif
    return PyMem_RawCalloc(count, sizeof(Slot));
}

static void
slots_free(Slot *slots, size_t count)
{
    if (slots == NULL) {
        return;
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (count * sizeof(Slot) >= HUGE_PAGE) {
        munmap(slots, count * sizeof(Slot));
        return;
    }
#endif
    PyMem_RawFree(slots);
}

static int
allocate(SessionTableObject *self, int bits)
{
    Slot *slots = slots_new((size_t)1 << bits);
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->slots = slots;
    self->mask = ((uint64_t)1 << bits) - 1;
    self->shift = 64 - bits;
    return 0;
}

static int
grow(SessionTableObject *self)
{
    Slot *old = self->slots;
    uint64_t old_size = self->mask + 1;
    if (allocate(self, 64 - self->shift + 1) < 0) {
        return -1;
    }
    for (uint64_t i = 0; i < old_size; i++) {
        if (old[i].key != 0) {
            *probe(self, old[i].key) = old[i];
        }
    }
    slots_free(old, old_size);
    return 0;
}

static int
read_key(PyObject *value, uint64_t *key)
{
    *key = PyLong_AsUnsignedLongLong(value);
    if (*key == (uint64_t)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (*key == 0) {
        PyErr_SetString(PyExc_ValueError, "a primary IMSI is never 0");
        return -1;
    }
    return 0;
}

static PyObject *
SessionTable_record(SessionTableObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "record(primary, session_id, imsi, reported, nas, framed_ip, created)");
        return NULL;
    }
    uint64_t key;
    if (read_key(args[0], &key) < 0) {
        return NULL;
    }
    uint64_t session_id = PyLong_AsUnsignedLongLong(args[1]);
    uint64_t imsi = PyLong_AsUnsignedLongLong(args[2]);
    int64_t reported = PyLong_AsLongLong(args[3]);
    uint32_t framed_ip = (uint32_t)PyLong_AsUnsignedLong(args[5]);
    double created = PyFloat_AsDouble(args[6]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "nas must be bytes");
        return NULL;
    }
    Py_ssize_t nas_len = PyBytes_GET_SIZE(args[4]);
    Slot *slot = probe(self, key);
    if (slot->key == 0) {
        if ((uint64_t)(self->count + 1) * 10 > (self->mask + 1) * 7) {
            if (grow(self) < 0) {
                return NULL;
            }
            slot = probe(self, key);
        }
        slot->key = key;
        self->count += 1;
    }
    else if (slot->nas_len == NAS_LONG && nas_len <= NAS_INLINE) {
        PyObject *number = PyLong_FromUnsignedLongLong(key);
        if (number == NULL || PyDict_DelItem(self->long_nas, number) < 0) {
            Py_XDECREF(number);
            return NULL;
        }
        Py_DECREF(number);
    }
    if (nas_len > NAS_INLINE) {
        PyObject *number = PyLong_FromUnsignedLongLong(key);
        if (number == NULL || PyDict_SetItem(self->long_nas, number, args[4]) < 0) {
            Py_XDECREF(number);
            return NULL;
        }
        Py_DECREF(number);
        slot->nas_len = NAS_LONG;
    }
    else {
        slot->nas_len = (uint8_t)nas_len;
        memcpy(slot->nas, PyBytes_AS_STRING(args[4]), (size_t)nas_len);
    }
    if (!slot->online) {
        self->online += 1;
    }
    slot->session_id = session_id;
    slot->imsi = imsi;
    slot->reported = reported;
    slot->created = created;
    slot->framed_ip = framed_ip;
    slot->online = 1;
    Py_RETURN_NONE;
}

static PyObject *
make_session(SessionTableObject *self, const Slot *slot)
{
    PyObject *nas;
    if (slot->nas_len == NAS_LONG) {
        PyObject *number = PyLong_FromUnsignedLongLong(slot->key);
        if (number == NULL) {
            return NULL;
        }
        nas = PyDict_GetItemWithError(self->long_nas, number);
        Py_DECREF(number);
        if (nas == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_RuntimeError, "a long NAS went missing");
            }
            return NULL;
        }
        Py_INCREF(nas);
    }
    else {
        nas = PyBytes_FromStringAndSize((const char *)slot->nas, slot->nas_len);
        if (nas == NULL) {
            return NULL;
        }
    }
    return Py_BuildValue("(KKLNkdO)", (unsigned long long)slot->session_id,
                         (unsigned long long)slot->imsi, (long long)slot->reported, nas,
                         (unsigned long)slot->framed_ip, slot->created,
                         slot->online ? Py_True : Py_False);
}

static PyObject *
SessionTable_get(SessionTableObject *self, PyObject *primary)
{
    uint64_t key;
    if (read_key(primary, &key) < 0) {
        return NULL;
    }
    Slot *slot = probe(self, key);
    if (slot->key == 0) {
        Py_RETURN_NONE;
    }
    return make_session(self, slot);
}

static PyObject *
SessionTable_set_online(SessionTableObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_online(primary, online)");
        return NULL;
    }
    uint64_t key;
    if (read_key(args[0], &key) < 0) {
        return NULL;
    }
    int online = PyObject_IsTrue(args[1]);
    if (online < 0) {
        return NULL;
    }
    Slot *slot = probe(self, key);
    if (slot->key == 0) {
        Py_RETURN_FALSE;
    }
    self->online += online - slot->online;
    slot->online = (uint8_t)online;
    Py_RETURN_TRUE;
}

static PyObject *
SessionTable_online(SessionTableObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->online);
}

static Py_ssize_t
SessionTable_len(SessionTableObject *self)
{
    return self->count;
}

static int
SessionTable_init(SessionTableObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"expected", NULL};
    Py_ssize_t expected = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|n:SessionTable", keywords, &expected)) {
        return -1;
    }
    if (expected < 0 || expected > ((Py_ssize_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "expected must be between 0 and 2**40");
        return -1;
    }
    int bits = MIN_BITS;
    while ((uint64_t)expected * 10 > ((uint64_t)1 << bits) * 7) {
        bits += 1;
    }
    slots_free(self->slots, self->mask + 1);
    self->slots = NULL;
    Py_CLEAR(self->long_nas);
    self->count = self->online = 0;
    self->long_nas = PyDict_New();
    if (self->long_nas == NULL) {
        return -1;
    }
    return allocate(self, bits);
}

static void
SessionTable_dealloc(SessionTableObject *self)
{
    slots_free(self->slots, self->mask + 1);
    Py_XDECREF(self->long_nas);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Warming the slots a datagram batch will write (see core/store/_index.c finder_prefetch): an
 * accept writes its SIM's slot, a random line in a table of up to millions. Keys are IMSIs as
 * the requests carry them; a virtual IMSI's slot is not its session's and warms nothing useful,
 * which costs one wasted line. */
void
sessions_prefetch(PyObject *table, const uint64_t *keys, Py_ssize_t count)
{
    SessionTableObject *self = (SessionTableObject *)table;
    if (self->slots == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (keys[i] != 0) {
            __builtin_prefetch(&self->slots[home(self, keys[i])], 1);
        }
    }
}

static PyObject *
SessionTable_prefetch(SessionTableObject *self, PyObject *keys)
{
    Py_buffer view;
    if (PyObject_GetBuffer(keys, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    sessions_prefetch((PyObject *)self, view.buf, view.len / 8);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef SessionTable_methods[] = {
    {"prefetch", (PyCFunction)SessionTable_prefetch, METH_O,
     "prefetch(keys): warm the slots of these IMSIs (native uint64s)."},
    {"record", (PyCFunction)(void (*)(void))SessionTable_record, METH_FASTCALL,
     "record(primary, session_id, imsi, reported, nas, framed_ip, created): the SIM's new "
     "session, online."},
    {"get", (PyCFunction)SessionTable_get, METH_O,
     "get(primary) -> (session_id, imsi, reported, nas, framed_ip, created, online) or None."},
    {"set_online", (PyCFunction)(void (*)(void))SessionTable_set_online, METH_FASTCALL,
     "set_online(primary, online) -> False when the SIM has no session."},
    {"online", (PyCFunction)SessionTable_online, METH_NOARGS, "How many sessions are online."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods SessionTable_as_sequence = {
    .sq_length = (lenfunc)SessionTable_len,
};

static PyTypeObject SessionTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "core.service._sessions.SessionTable",
    .tp_basicsize = sizeof(SessionTableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The latest session of each SIM, by primary IMSI (see core/service/sessions.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SessionTable_init,
    .tp_dealloc = (destructor)SessionTable_dealloc,
    .tp_methods = SessionTable_methods,
    .tp_as_sequence = &SessionTable_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "core.service._sessions",
    .m_doc = "The session table: one 64-byte slot per SIM, written in place at every accept.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__sessions(void)
{
    if (PyType_Ready(&SessionTableType) < 0) {
        return NULL;
    }
    PyObject *created = PyModule_Create(&module);
    if (created == NULL) {
        return NULL;
    }
    Py_INCREF(&SessionTableType);
    if (PyModule_AddObject(created, "SessionTable", (PyObject *)&SessionTableType) < 0) {
        Py_DECREF(&SessionTableType);
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
