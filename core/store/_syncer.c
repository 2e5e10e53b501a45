/* One thread that writes journal records and makes them durable without the interpreter lock.
 *
 * Why: a journal sync run by a Python worker thread needs the interpreter lock when it starts
 * and again when the write returns. A decision thread that is busy gives the lock up only
 * every switch interval (5 ms), so each sync stopped the decisions twice and waited up to 10 ms
 * (bench/writes.py: 1,000 fsynced writes/s took 6-15% of the decisions; ~6% was the writes
 * themselves). This thread never touches a Python object: the event loop hands it one job (a
 * file descriptor, the bytes, their offset, whether to fsync after), the thread runs
 * pwrite (+ fsync) and then signals an eventfd that the loop watches.
 *
 * Invariants:
 * - One job at a time: submit() refuses a second before complete() collected the first.
 * - The job's buffer is held (a buffer export) from submit() until complete() or close().
 * - close() waits for a job in flight to finish; its result can still be collected.
 *
 * Linux only (eventfd, pthread_setaffinity_np); without it the journal syncs in a Python thread
 * (core/service/commit.py).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setaffinity_np */
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__linux__)

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { IDLE, QUEUED, RUNNING, DONE };

typedef struct {
    PyObject_HEAD
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    int initialised;  /* mutex and condition exist */
    int started;      /* the thread exists (joined by close()) */
    int stopping;     /* close(): the thread ends after any job in flight */
    int closed;
    int event;        /* eventfd: written once per finished job */
    int state;        /* IDLE, QUEUED, RUNNING, DONE (guarded by mutex) */
    /* the job (written by submit() before QUEUED, read by the thread after) */
    int fd;
    Py_buffer view;
    int has_view;
    off_t offset;
    int sync;         /* fsync() after the write */
    int error;        /* errno of the job's failure, 0: durable */
    uint64_t jobs;    /* jobs finished */
} SyncerObject;

/* pwrite everything at offset (a short write continues; EINTR retries), then fsync. */
static int
run_job(int fd, const char *data, size_t length, off_t offset, int sync)
{
    while (length > 0) {
        ssize_t done = pwrite(fd, data, length, offset);
        if (done < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        if (done == 0) {
            return EIO;
        }
        data += done;
        length -= (size_t)done;
        offset += done;
    }
    if (sync) {
        while (fsync(fd) != 0) {
            if (errno != EINTR) {
                return errno;
            }
        }
    }
    return 0;
}

static void *
syncer_main(void *argument)
{
    SyncerObject *self = (SyncerObject *)argument;
    pthread_mutex_lock(&self->mutex);
    for (;;) {
        while (self->state != QUEUED && !self->stopping) {
            pthread_cond_wait(&self->wake, &self->mutex);
        }
        if (self->state != QUEUED) {
            break; /* stopping, nothing queued */
        }
        self->state = RUNNING;
        int fd = self->fd;
        const char *data = (const char *)self->view.buf;
        size_t length = (size_t)self->view.len;
        off_t offset = self->offset;
        int sync = self->sync;
        pthread_mutex_unlock(&self->mutex);

        int error = run_job(fd, data, length, offset, sync);

        pthread_mutex_lock(&self->mutex);
        self->error = error;
        self->state = DONE;
        self->jobs += 1;
        uint64_t one = 1;
        /* an eventfd write fails only when the counter would overflow: never here */
        ssize_t ignored = write(self->event, &one, sizeof one);
        (void)ignored;
    }
    pthread_mutex_unlock(&self->mutex);
    return NULL;
}

static int
Syncer_init(SyncerObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"cpus", NULL};
    PyObject *cpus = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:Syncer", keywords, &cpus)) {
        return -1;
    }
    if (self->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "Syncer is already initialised");
        return -1;
    }
    cpu_set_t chosen;
    CPU_ZERO(&chosen);
    int pin = 0;
    if (cpus != Py_None) {
        PyObject *iterator = PyObject_GetIter(cpus);
        if (iterator == NULL) {
            return -1;
        }
        PyObject *item;
        while ((item = PyIter_Next(iterator)) != NULL) {
            long cpu = PyLong_AsLong(item);
            Py_DECREF(item);
            if (cpu == -1 && PyErr_Occurred()) {
                Py_DECREF(iterator);
                return -1;
            }
            if (cpu < 0 || cpu >= CPU_SETSIZE) {
                Py_DECREF(iterator);
                PyErr_Format(PyExc_ValueError, "no such CPU: %ld", cpu);
                return -1;
            }
            CPU_SET((int)cpu, &chosen);
            pin = 1;
        }
        Py_DECREF(iterator);
        if (PyErr_Occurred()) {
            return -1;
        }
    }
    self->event = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->event < 0) {
        self->event = -1;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_mutex_init(&self->mutex, NULL);
    pthread_cond_init(&self->wake, NULL);
    self->initialised = 1;
    self->state = IDLE;
    int failed = pthread_create(&self->thread, NULL, syncer_main, self);
    if (failed) {
        close(self->event);
        self->event = -1;
        errno = failed;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->started = 1;
    /* named here, not by the thread itself, so that it has its name once Syncer() returns:
     * /proc/PID/task/TID/comm, top -H */
    pthread_setname_np(self->thread, "journal-syncer");
    if (pin) {
        failed = pthread_setaffinity_np(self->thread, sizeof chosen, &chosen);
        if (failed) {
            pthread_mutex_lock(&self->mutex);
            self->stopping = 1;
            pthread_cond_signal(&self->wake);
            pthread_mutex_unlock(&self->mutex);
            pthread_join(self->thread, NULL);
            self->started = 0;
            close(self->event);
            self->event = -1;
            self->closed = 1;
            errno = failed;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    return 0;
}

static PyObject *
Syncer_submit(SyncerObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "submit(fd, data, offset, sync) takes 4 arguments");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long long offset = PyLong_AsLongLong(args[2]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int sync = PyObject_IsTrue(args[3]);
    if (sync < 0) {
        return NULL;
    }
    if (fd < 0 || fd > INT32_MAX || offset < 0) {
        PyErr_SetString(PyExc_ValueError, "submit: fd and offset must be 0 or more");
        return NULL;
    }
    if (self->closed || !self->started) {
        PyErr_SetString(PyExc_RuntimeError, "the syncer is closed or was never started");
        return NULL;
    }
    pthread_mutex_lock(&self->mutex);
    int busy = self->state != IDLE;
    pthread_mutex_unlock(&self->mutex);
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "a job is in flight: complete() it first");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    pthread_mutex_lock(&self->mutex);
    self->view = view;
    self->has_view = 1;
    self->fd = (int)fd;
    self->offset = (off_t)offset;
    self->sync = sync;
    self->error = 0;
    self->state = QUEUED;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->mutex);
    Py_RETURN_NONE;
}

/* The finished job's result: False while none is finished, True when it is durable; raises
 * OSError with its errno when it failed. Either way a finished job is collected (IDLE again). */
static PyObject *
Syncer_complete(SyncerObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->event >= 0) {
        uint64_t count;
        ssize_t ignored = read(self->event, &count, sizeof count); /* EAGAIN: nothing new */
        (void)ignored;
    }
    if (!self->initialised) {
        Py_RETURN_FALSE;
    }
    pthread_mutex_lock(&self->mutex);
    if (self->state != DONE) {
        pthread_mutex_unlock(&self->mutex);
        Py_RETURN_FALSE;
    }
    int error = self->error;
    self->state = IDLE;
    self->has_view = 0;
    Py_buffer view = self->view;
    pthread_mutex_unlock(&self->mutex);
    PyBuffer_Release(&view);
    if (error) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_TRUE;
}

static void
stop_thread(SyncerObject *self)
{
    if (!self->started) {
        return;
    }
    pthread_mutex_lock(&self->mutex);
    self->stopping = 1;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->mutex);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(self->thread, NULL);
    Py_END_ALLOW_THREADS
    self->started = 0;
}

/* Stop the thread (after a job in flight), release a job's buffer unless ``keep_finished`` and
 * the job finished (complete() collects it), close the eventfd. */
static void
shut_down(SyncerObject *self, int keep_finished)
{
    stop_thread(self);
    if (self->has_view && !(keep_finished && self->state == DONE)) {
        self->has_view = 0;
        self->state = IDLE; /* a job queued but never started: nothing was written */
        PyBuffer_Release(&self->view);
    }
    if (self->event >= 0) {
        close(self->event);
        self->event = -1;
    }
}

static PyObject *
Syncer_close(SyncerObject *self, PyObject *Py_UNUSED(ignored))
{
    shut_down(self, 1);
    self->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *
Syncer_fileno(SyncerObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->event < 0) {
        PyErr_SetString(PyExc_ValueError, "the syncer is closed");
        return NULL;
    }
    return PyLong_FromLong(self->event);
}

static PyObject *
Syncer_get_busy(SyncerObject *self, void *Py_UNUSED(closure))
{
    if (!self->initialised) {
        Py_RETURN_FALSE;
    }
    pthread_mutex_lock(&self->mutex);
    int busy = self->state != IDLE;
    pthread_mutex_unlock(&self->mutex);
    return PyBool_FromLong(busy);
}

static PyObject *
Syncer_get_jobs(SyncerObject *self, void *Py_UNUSED(closure))
{
    if (!self->initialised) {
        return PyLong_FromLong(0);
    }
    pthread_mutex_lock(&self->mutex);
    uint64_t jobs = self->jobs;
    pthread_mutex_unlock(&self->mutex);
    return PyLong_FromUnsignedLongLong(jobs);
}

static PyObject *
Syncer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    SyncerObject *self = (SyncerObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->event = -1;
    }
    return (PyObject *)self;
}

static void
Syncer_dealloc(SyncerObject *self)
{
    shut_down(self, 0);
    if (self->initialised) {
        pthread_mutex_destroy(&self->mutex);
        pthread_cond_destroy(&self->wake);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Syncer_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))Syncer_submit, METH_FASTCALL,
     "submit(fd, data, offset, sync): pwrite data at offset (then fsync if sync), in the thread"},
    {"complete", (PyCFunction)Syncer_complete, METH_NOARGS,
     "collect the finished job: False if none, True if durable; raises OSError if it failed"},
    {"close", (PyCFunction)Syncer_close, METH_NOARGS,
     "end the thread after any job in flight (its result stays collectable)"},
    {"fileno", (PyCFunction)Syncer_fileno, METH_NOARGS,
     "the eventfd that becomes readable when a job finishes"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Syncer_getset[] = {
    {"busy", (getter)Syncer_get_busy, NULL, "a job is queued, running or not yet collected", NULL},
    {"jobs", (getter)Syncer_get_jobs, NULL, "jobs finished so far", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SyncerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core.store._syncer.Syncer",
    .tp_basicsize = sizeof(SyncerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Syncer(cpus=None): one thread running pwrite + fsync jobs off the interpreter lock",
    .tp_new = Syncer_new,
    .tp_init = (initproc)Syncer_init,
    .tp_dealloc = (destructor)Syncer_dealloc,
    .tp_methods = Syncer_methods,
    .tp_getset = Syncer_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "core.store._syncer",
    .m_doc = "A thread that writes and fsyncs journal records without the interpreter lock.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__syncer(void)
{
    if (PyType_Ready(&SyncerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&SyncerType);
    if (PyModule_AddObject(m, "Syncer", (PyObject *)&SyncerType) < 0) {
        Py_DECREF(&SyncerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

#else /* not Linux */
#error "core.store._syncer needs eventfd and pthread_setaffinity_np (Linux)"
#endif
