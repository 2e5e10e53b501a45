/* Batched datagram I/O for the RADIUS ports: recvmmsg in, the pipeline per datagram, sendmmsg
 * out (Linux).
 *
 * Why: with one recvfrom and one sendto per datagram, the event loop's per-datagram work and
 * the two system calls cost about as much as the whole decision (PERF-NOTES: a bare uvloop
 * responder tops out at ~75,000/s on one core). Under load, datagrams queue in the socket
 * anyway; taking up to `batch` of them with one call and answering them with one call
 * spends that cost once per batch. Under light load a batch is one datagram and nothing
 * changes.
 *
 * What it does not do: decide anything. It calls the pipeline's handle(data, address, now)
 * for every datagram, exactly as the asyncio protocol does (core/service/udp.py), with the
 * same clock (CLOCK_MONOTONIC, which is time.perf_counter on Linux) and the same address
 * tuples the socket module makes ((host, port) for IPv4, (host, port, flowinfo, scope_id)
 * for IPv6). It counts processing time into a histogram and exceptions into a counter, in
 * C integers, which Python takes with take_counters() off the datagram path.
 *
 * Prefetch: before the first datagram of a batch is handled, the IMSI of every datagram in it
 * is read (imsi_key, below) and handed to prefetch(keys) -- the pipeline warms the table and
 * session slots those decisions will read (core/store/_index.c, core/service/_sessions.c).
 * At 1M SIMs and more each decision otherwise stalls on three cache and TLB misses in turn;
 * issued together, they overlap each other and the work of the datagrams ahead
 * (bench/micro.py, bench/load.py --size 10m). The keys are a hint: a packet the codec would
 * refuse, or an IMSI the policy would not accept, gives a useless key or 0, never a decision.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef __linux__

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_BATCH 64
#define MAX_DATAGRAM 4096 /* RFC 2865 §3: the largest RADIUS packet */
#define MAX_BOUNDS 64
#define HOSTS 64 /* IPv4 host strings remembered (direct-mapped by address) */
#define SEND_WAIT_MS 10 /* how long a full socket send buffer is waited for, in all */
#define VENDOR_SPECIFIC 26
#define VENDOR_3GPP 10415
#define MAX_KEY_DIGITS 19 /* fits a uint64 */

typedef struct {
    PyObject_HEAD
    int fd;
    int batch;
    PyObject *handle;
    /* processing-time histogram: counts[i] for seconds <= bounds[i], counts[nbounds] above */
    int nbounds;
    double bounds[MAX_BOUNDS];
    unsigned long long counts[MAX_BOUNDS + 1];
    double sum;
    unsigned long long errors;       /* handle() raised */
    unsigned long long send_failed;  /* replies the kernel would not take */
    PyObject *last_error;            /* the last exception handle() raised, or NULL */
    unsigned long long batches;      /* pump() calls that received datagrams */
    PyObject *prefetch;              /* prefetch(keys) before a batch, or NULL */
    int imsi_vsa;                    /* the 3GPP-IMSI vendor type, 0: none */
    int user_name;                   /* User-Name's type when it may carry the IMSI, 0: not */
    /* per-batch buffers */
    struct mmsghdr in[MAX_BATCH];
    struct iovec in_iov[MAX_BATCH];
    struct sockaddr_storage names[MAX_BATCH];
    struct mmsghdr out[MAX_BATCH];
    struct iovec out_iov[MAX_BATCH];
    PyObject *replies[MAX_BATCH];
    unsigned char buffers[MAX_BATCH][MAX_DATAGRAM];
    /* host strings of recent IPv4 peers */
    uint32_t host_keys[HOSTS];
    PyObject *host_values[HOSTS];
} PumpObject;

static uint64_t
digits_key(const unsigned char *at, unsigned length)
{
    if (length == 0 || length > MAX_KEY_DIGITS) {
        return 0;
    }
    uint64_t key = 0;
    for (unsigned i = 0; i < length; i++) {
        if (at[i] < '0' || at[i] > '9') {
            return 0;
        }
        key = key * 10 + (uint64_t)(at[i] - '0');
    }
    return key;
}

/* The IMSI a RADIUS packet names, as the integer the table is keyed by: the 3GPP-IMSI
 * vendor attribute, else (when user_name) the User-Name; 0 when neither is a digit string.
 * Reads only within the packet's own Length and the datagram. */
static uint64_t
imsi_key(const unsigned char *data, Py_ssize_t size, int imsi_vsa, int user_name)
{
    if (size < 20) {
        return 0;
    }
    Py_ssize_t end = ((Py_ssize_t)data[2] << 8) | data[3];
    if (end > size) {
        return 0;
    }
    const unsigned char *name = NULL;
    unsigned name_length = 0;
    for (Py_ssize_t at = 20; at + 2 <= end;) {
        unsigned type = data[at], length = data[at + 1];
        if (length < 2 || at + (Py_ssize_t)length > end) {
            return 0;
        }
        if (type == VENDOR_SPECIFIC && imsi_vsa && length >= 8 && data[at + 2] == 0 &&
            (((unsigned)data[at + 3] << 16) | ((unsigned)data[at + 4] << 8) | data[at + 5]) ==
                VENDOR_3GPP) {
            for (Py_ssize_t sub = at + 6; sub + 2 <= at + (Py_ssize_t)length;) {
                unsigned sub_type = data[sub], sub_length = data[sub + 1];
                if (sub_length < 2 || sub + (Py_ssize_t)sub_length > at + (Py_ssize_t)length) {
                    break;
                }
                if ((int)sub_type == imsi_vsa) {
                    return digits_key(data + sub + 2, sub_length - 2);
                }
                sub += sub_length;
            }
        }
        else if ((int)type == user_name && name == NULL) {
            name = data + at + 2;
            name_length = length - 2;
        }
        at += length;
    }
    return name == NULL ? 0 : digits_key(name, name_length);
}

/* Hand the batch's IMSIs to prefetch(keys); an exception there is counted like handle()'s. */
static void
warm(PumpObject *self, int received)
{
    uint64_t keys[MAX_BATCH];
    for (int i = 0; i < received; i++) {
        keys[i] = imsi_key(self->buffers[i], (Py_ssize_t)self->in[i].msg_len, self->imsi_vsa,
                           self->user_name);
    }
    PyObject *packed = PyBytes_FromStringAndSize((const char *)keys,
                                                 (Py_ssize_t)received * (Py_ssize_t)sizeof keys[0]);
    PyObject *done = packed == NULL ? NULL : PyObject_CallOneArg(self->prefetch, packed);
    Py_XDECREF(packed);
    if (done == NULL) {
        self->errors += 1;
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        Py_XSETREF(self->last_error, value);
        Py_XDECREF(type);
        Py_XDECREF(traceback);
        return;
    }
    Py_DECREF(done);
}

static double
monotonic(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static PyObject *
ipv4_host(PumpObject *self, const struct in_addr *address)
{
    uint32_t key = address->s_addr;
    unsigned slot = (key ^ (key >> 16)) & (HOSTS - 1);
    if (self->host_values[slot] != NULL && self->host_keys[slot] == key) {
        Py_INCREF(self->host_values[slot]);
        return self->host_values[slot];
    }
    char text[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, address, text, sizeof text) == NULL) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *host = PyUnicode_FromString(text);
    if (host == NULL) {
        return NULL;
    }
    Py_XSETREF(self->host_values[slot], host);
    self->host_keys[slot] = key;
    Py_INCREF(host);
    return host;
}

static PyObject *
make_address(PumpObject *self, const struct sockaddr_storage *name)
{
    if (name->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)name;
        PyObject *host = ipv4_host(self, &v4->sin_addr);
        if (host == NULL) {
            return NULL;
        }
        PyObject *port = PyLong_FromLong(ntohs(v4->sin_port));
        if (port == NULL) {
            Py_DECREF(host);
            return NULL;
        }
        PyObject *address = PyTuple_New(2);
        if (address == NULL) {
            Py_DECREF(host);
            Py_DECREF(port);
            return NULL;
        }
        PyTuple_SET_ITEM(address, 0, host);
        PyTuple_SET_ITEM(address, 1, port);
        return address;
    }
    if (name->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)name;
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(sHkk)", text, ntohs(v6->sin6_port),
                             (unsigned long)ntohl(v6->sin6_flowinfo),
                             (unsigned long)v6->sin6_scope_id);
    }
    PyErr_Format(PyExc_OSError, "datagram from address family %d", (int)name->ss_family);
    return NULL;
}

static void
count_duration(PumpObject *self, double seconds)
{
    int low = 0, high = self->nbounds; /* first bound >= seconds, as bisect_left */
    while (low < high) {
        int middle = (low + high) / 2;
        if (self->bounds[middle] < seconds) {
            low = middle + 1;
        }
        else {
            high = middle;
        }
    }
    self->counts[low] += 1;
    self->sum += seconds;
}

/* Send replies[0..count) to the addresses they answer; a full send buffer is waited for a
 * little, then the rest are counted as failed (a client retransmits, and gets the cached
 * reply). */
static void
send_replies(PumpObject *self, unsigned count)
{
    unsigned sent = 0;
    int waited = 0;
    while (sent < count) {
        int done;
        Py_BEGIN_ALLOW_THREADS
        done = sendmmsg(self->fd, self->out + sent, count - sent, MSG_DONTWAIT);
        Py_END_ALLOW_THREADS
        if (done > 0) {
            sent += (unsigned)done;
            continue;
        }
        if (done < 0 && errno == EINTR) {
            continue;
        }
        if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && waited < SEND_WAIT_MS) {
            struct pollfd writable = {.fd = self->fd, .events = POLLOUT};
            Py_BEGIN_ALLOW_THREADS
            poll(&writable, 1, 1);
            Py_END_ALLOW_THREADS
            waited += 1;
            continue;
        }
        if (done < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            /* this reply's destination refused it (e.g. unreachable): skip it alone */
            self->send_failed += 1;
            sent += 1;
            continue;
        }
        self->send_failed += count - sent;
        break;
    }
}

static PyObject *
Pump_pump(PumpObject *self, PyObject *Py_UNUSED(ignored))
{
    int received;
    for (int i = 0; i < self->batch; i++) {
        self->in_iov[i].iov_base = self->buffers[i];
        self->in_iov[i].iov_len = MAX_DATAGRAM;
        memset(&self->in[i].msg_hdr, 0, sizeof self->in[i].msg_hdr);
        self->in[i].msg_hdr.msg_iov = &self->in_iov[i];
        self->in[i].msg_hdr.msg_iovlen = 1;
        self->in[i].msg_hdr.msg_name = &self->names[i];
        self->in[i].msg_hdr.msg_namelen = sizeof self->names[i];
    }
    do {
        Py_BEGIN_ALLOW_THREADS
        received = recvmmsg(self->fd, self->in, (unsigned)self->batch, MSG_DONTWAIT, NULL);
        Py_END_ALLOW_THREADS
    } while (received < 0 && errno == EINTR);
    if (received < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return PyLong_FromLong(0);
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->batches += received > 0;
    if (self->prefetch != NULL && received > 0) {
        warm(self, received);
    }
    unsigned replies = 0;
    double now = monotonic();
    for (int i = 0; i < received; i++) {
        struct msghdr *header = &self->in[i].msg_hdr;
        PyObject *data = PyBytes_FromStringAndSize((const char *)self->buffers[i],
                                                   (Py_ssize_t)self->in[i].msg_len);
        PyObject *address = data == NULL ? NULL : make_address(self, &self->names[i]);
        PyObject *reply = NULL;
        if (address != NULL) {
            PyObject *when = PyFloat_FromDouble(now);
            if (when != NULL) {
                PyObject *call[3] = {data, address, when};
                reply = PyObject_Vectorcall(self->handle, call, 3, NULL);
                Py_DECREF(when);
            }
        }
        Py_XDECREF(data);
        Py_XDECREF(address);
        double after = monotonic();
        count_duration(self, after - now);
        now = after;
        if (reply == NULL) {
            self->errors += 1;
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyErr_NormalizeException(&type, &value, &traceback);
            if (value != NULL && traceback != NULL) {
                PyException_SetTraceback(value, traceback);
            }
            Py_XSETREF(self->last_error, value);
            Py_XDECREF(type);
            Py_XDECREF(traceback);
            continue;
        }
        if (reply == Py_None || !PyBytes_Check(reply)) {
            Py_DECREF(reply);
            continue;
        }
        self->replies[replies] = reply;
        self->out_iov[replies].iov_base = PyBytes_AS_STRING(reply);
        self->out_iov[replies].iov_len = (size_t)PyBytes_GET_SIZE(reply);
        memset(&self->out[replies].msg_hdr, 0, sizeof self->out[replies].msg_hdr);
        self->out[replies].msg_hdr.msg_iov = &self->out_iov[replies];
        self->out[replies].msg_hdr.msg_iovlen = 1;
        self->out[replies].msg_hdr.msg_name = &self->names[i];
        self->out[replies].msg_hdr.msg_namelen = header->msg_namelen;
        replies += 1;
    }
    if (replies) {
        send_replies(self, replies);
        for (unsigned i = 0; i < replies; i++) {
            Py_DECREF(self->replies[i]);
        }
    }
    return PyLong_FromLong(received);
}

static PyObject *
Pump_take_counters(PumpObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *counts = PyList_New(self->nbounds + 1);
    if (counts == NULL) {
        return NULL;
    }
    for (int i = 0; i <= self->nbounds; i++) {
        PyObject *count = PyLong_FromUnsignedLongLong(self->counts[i]);
        if (count == NULL) {
            Py_DECREF(counts);
            return NULL;
        }
        PyList_SET_ITEM(counts, i, count);
    }
    PyObject *error = self->last_error != NULL ? self->last_error : Py_None;
    PyObject *result = Py_BuildValue("(NdKKOK)", counts, self->sum, self->errors,
                                     self->send_failed, error, self->batches);
    if (result == NULL) {
        return NULL;
    }
    memset(self->counts, 0, sizeof self->counts);
    self->sum = 0.0;
    self->errors = 0;
    self->send_failed = 0;
    self->batches = 0;
    Py_CLEAR(self->last_error);
    return result;
}

static int
Pump_init(PumpObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"fd",       "handle",   "bounds",    "batch",
                               "prefetch", "imsi_vsa", "user_name", NULL};
    int fd, batch = MAX_BATCH, imsi_vsa = 0, user_name = 0;
    PyObject *handle, *bounds, *prefetch = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iOO|i$Oii:Pump", keywords, &fd, &handle,
                                     &bounds, &batch, &prefetch, &imsi_vsa, &user_name)) {
        return -1;
    }
    if (prefetch != Py_None && !PyCallable_Check(prefetch)) {
        PyErr_SetString(PyExc_TypeError, "prefetch must be callable or None");
        return -1;
    }
    if (imsi_vsa < 0 || imsi_vsa > 255 || user_name < 0 || user_name > 255) {
        PyErr_SetString(PyExc_ValueError, "imsi_vsa and user_name are attribute types 0..255");
        return -1;
    }
    if (!PyCallable_Check(handle)) {
        PyErr_SetString(PyExc_TypeError, "handle must be callable");
        return -1;
    }
    if (batch < 1 || batch > MAX_BATCH) {
        PyErr_Format(PyExc_ValueError, "batch must be between 1 and %d", MAX_BATCH);
        return -1;
    }
    PyObject *sequence = PySequence_Fast(bounds, "bounds must be a sequence of floats");
    if (sequence == NULL) {
        return -1;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    if (count > MAX_BOUNDS) {
        Py_DECREF(sequence);
        PyErr_Format(PyExc_ValueError, "at most %d bounds", MAX_BOUNDS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        double bound = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(sequence, i));
        if (bound == -1.0 && PyErr_Occurred()) {
            Py_DECREF(sequence);
            return -1;
        }
        self->bounds[i] = bound;
    }
    Py_DECREF(sequence);
    self->nbounds = (int)count;
    self->fd = fd;
    self->batch = batch;
    self->imsi_vsa = imsi_vsa;
    self->user_name = user_name;
    Py_INCREF(handle);
    Py_XSETREF(self->handle, handle);
    if (prefetch == Py_None) {
        Py_CLEAR(self->prefetch);
    }
    else {
        Py_INCREF(prefetch);
        Py_XSETREF(self->prefetch, prefetch);
    }
    return 0;
}

static int
Pump_traverse(PumpObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->handle);
    Py_VISIT(self->last_error);
    Py_VISIT(self->prefetch);
    return 0;
}

static int
Pump_clear(PumpObject *self)
{
    Py_CLEAR(self->handle);
    Py_CLEAR(self->last_error);
    Py_CLEAR(self->prefetch);
    for (int i = 0; i < HOSTS; i++) {
        Py_CLEAR(self->host_values[i]);
    }
    return 0;
}

static void
Pump_dealloc(PumpObject *self)
{
    PyObject_GC_UnTrack(self);
    Pump_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Pump_methods[] = {
    {"pump", (PyCFunction)Pump_pump, METH_NOARGS,
     PyDoc_STR("pump($self, /)\n--\n\n"
               "Receive up to `batch` waiting datagrams, hand each to handle(data, address, "
               "now), send the replies; return how many were received (0: none waiting).")},
    {"take_counters", (PyCFunction)Pump_take_counters, METH_NOARGS,
     PyDoc_STR("take_counters($self, /)\n--\n\n"
               "Return (histogram counts, seconds summed, errors, send failures, last error, "
               "batches) since the last call, and start counting from zero.")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core.service._datagrams.Pump",
    .tp_doc = PyDoc_STR("Pump(fd, handle, bounds, batch=64, *, prefetch=None, imsi_vsa=0, "
                        "user_name=0)\n--\n\n"
                        "Batched receive -> handle -> send for one non-blocking UDP socket."),
    .tp_basicsize = sizeof(PumpObject),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Pump_init,
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_traverse = (traverseproc)Pump_traverse,
    .tp_clear = (inquiry)Pump_clear,
    .tp_methods = Pump_methods,
};

static PyObject *
imsi_keys(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *datagrams;
    int imsi_vsa, user_name;
    if (!PyArg_ParseTuple(args, "Oii:imsi_keys", &datagrams, &imsi_vsa, &user_name)) {
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(datagrams, "datagrams must be a sequence of bytes");
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(uint64_t));
    if (result == NULL) {
        Py_DECREF(sequence);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(sequence, i);
        if (!PyBytes_Check(item)) {
            Py_DECREF(sequence);
            Py_DECREF(result);
            PyErr_SetString(PyExc_TypeError, "datagrams must be a sequence of bytes");
            return NULL;
        }
        uint64_t key = imsi_key((const unsigned char *)PyBytes_AS_STRING(item),
                                PyBytes_GET_SIZE(item), imsi_vsa, user_name);
        memcpy(PyBytes_AS_STRING(result) + i * (Py_ssize_t)sizeof key, &key, sizeof key);
    }
    Py_DECREF(sequence);
    return result;
}

static PyMethodDef module_methods[] = {
    {"imsi_keys", imsi_keys, METH_VARARGS,
     PyDoc_STR("imsi_keys(datagrams, imsi_vsa, user_name, /)\n--\n\n"
               "The keys a Pump hands to prefetch() for these datagrams: native uint64s.")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "core.service._datagrams",
    .m_methods = module_methods,
    .m_doc = "Batched datagram I/O (recvmmsg/sendmmsg) for the RADIUS ports; Linux only.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__datagrams(void)
{
    if (PyType_Ready(&PumpType) < 0) {
        return NULL;
    }
    PyObject *created = PyModule_Create(&module);
    if (created == NULL) {
        return NULL;
    }
    Py_INCREF(&PumpType);
    if (PyModule_AddObject(created, "Pump", (PyObject *)&PumpType) < 0) {
        Py_DECREF(&PumpType);
        Py_DECREF(created);
        return NULL;
    }
    return created;
}

#else /* not Linux: no recvmmsg; the module does not build and udp.py uses the event loop */
#error "core.service._datagrams needs recvmmsg/sendmmsg (Linux)"
#endif
