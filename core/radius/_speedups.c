/* core.radius._speedups: the hot path's structural check and MD5 work, in C.
 *
 * Owns: ``parse`` (the attribute walk of core/radius/wire.py ``parse_python``), MD5 (RFC 1321)
 * and HMAC-MD5 (RFC 2104) with per-client pre-keyed states (``Secret``),
 * ``verify_message_authenticator`` and ``sign_reply`` (core/radius/auth.py).
 *
 * Invariants:
 * - The pure-Python code in wire.py and auth.py is the specification; every function here
 *   returns what its Python twin returns and raises the same MalformedPacket(Drop) for the
 *   same input (tests/radius/test_speedups.py compares them, with hypothesis).
 * - Every read of packet octets is preceded by a bounds check against both the Length field
 *   and the buffer's size; offsets are Py_ssize_t and never exceed 4096 + 255 + 2.
 * - No Python imports: the Packet type, the MalformedPacket class, the Drop members and the
 *   pure-Python parse (the fallback for arguments this code does not handle) are passed in
 *   once by wire.py through ``configure``.
 * - Secret-derived comparisons are constant-time.
 *
 * Must not: depend on anything but Python.h and the C standard library; release the GIL
 * (every buffer read here may belong to a mutable object).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* T_OBJECT_EX, READONLY (Python 3.11) */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HEADER_LEN 20
#define MAX_LEN 4096
#define VSA 26
#define PROXY_STATE 33
#define MESSAGE_AUTHENTICATOR 80
#define MA_SIZE 18 /* attribute header + 16-octet HMAC-MD5 (RFC 3579 §3.2) */

/* --- MD5 (RFC 1321), written from the RFC's description ----------------------------------- */

typedef struct {
    uint32_t state[4];
    uint64_t count; /* octets hashed so far */
    unsigned char buffer[64];
} md5_ctx;

#define MD5_F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MD5_G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define MD5_H(x, y, z) ((x) ^ (y) ^ (z))
#define MD5_I(x, y, z) ((y) ^ ((x) | ~(z)))
#define MD5_STEP(f, a, b, c, d, x, t, s)                                                      \
    do {                                                                                      \
        (a) += MD5_##f((b), (c), (d)) + (x) + (uint32_t)(t);                                  \
        (a) = ((a) << (s)) | ((a) >> (32 - (s)));                                             \
        (a) += (b);                                                                           \
    } while (0)

static uint32_t
load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void
store_le32(unsigned char *p, uint32_t value)
{
    p[0] = (unsigned char)value;
    p[1] = (unsigned char)(value >> 8);
    p[2] = (unsigned char)(value >> 16);
    p[3] = (unsigned char)(value >> 24);
}

/* One 64-octet block into ``state``; the constants are floor(abs(sin(i + 1)) * 2^32). */
static void
md5_compress(uint32_t state[4], const unsigned char block[64])
{
    uint32_t x[16];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    int i;

    for (i = 0; i < 16; i++) {
        x[i] = load_le32(block + 4 * i);
    }
    MD5_STEP(F, a, b, c, d, x[0], 0xd76aa478, 7);
    MD5_STEP(F, d, a, b, c, x[1], 0xe8c7b756, 12);
    MD5_STEP(F, c, d, a, b, x[2], 0x242070db, 17);
    MD5_STEP(F, b, c, d, a, x[3], 0xc1bdceee, 22);
    MD5_STEP(F, a, b, c, d, x[4], 0xf57c0faf, 7);
    MD5_STEP(F, d, a, b, c, x[5], 0x4787c62a, 12);
    MD5_STEP(F, c, d, a, b, x[6], 0xa8304613, 17);
    MD5_STEP(F, b, c, d, a, x[7], 0xfd469501, 22);
    MD5_STEP(F, a, b, c, d, x[8], 0x698098d8, 7);
    MD5_STEP(F, d, a, b, c, x[9], 0x8b44f7af, 12);
    MD5_STEP(F, c, d, a, b, x[10], 0xffff5bb1, 17);
    MD5_STEP(F, b, c, d, a, x[11], 0x895cd7be, 22);
    MD5_STEP(F, a, b, c, d, x[12], 0x6b901122, 7);
    MD5_STEP(F, d, a, b, c, x[13], 0xfd987193, 12);
    MD5_STEP(F, c, d, a, b, x[14], 0xa679438e, 17);
    MD5_STEP(F, b, c, d, a, x[15], 0x49b40821, 22);

    MD5_STEP(G, a, b, c, d, x[1], 0xf61e2562, 5);
    MD5_STEP(G, d, a, b, c, x[6], 0xc040b340, 9);
    MD5_STEP(G, c, d, a, b, x[11], 0x265e5a51, 14);
    MD5_STEP(G, b, c, d, a, x[0], 0xe9b6c7aa, 20);
    MD5_STEP(G, a, b, c, d, x[5], 0xd62f105d, 5);
    MD5_STEP(G, d, a, b, c, x[10], 0x02441453, 9);
    MD5_STEP(G, c, d, a, b, x[15], 0xd8a1e681, 14);
    MD5_STEP(G, b, c, d, a, x[4], 0xe7d3fbc8, 20);
    MD5_STEP(G, a, b, c, d, x[9], 0x21e1cde6, 5);
    MD5_STEP(G, d, a, b, c, x[14], 0xc33707d6, 9);
    MD5_STEP(G, c, d, a, b, x[3], 0xf4d50d87, 14);
    MD5_STEP(G, b, c, d, a, x[8], 0x455a14ed, 20);
    MD5_STEP(G, a, b, c, d, x[13], 0xa9e3e905, 5);
    MD5_STEP(G, d, a, b, c, x[2], 0xfcefa3f8, 9);
    MD5_STEP(G, c, d, a, b, x[7], 0x676f02d9, 14);
    MD5_STEP(G, b, c, d, a, x[12], 0x8d2a4c8a, 20);

    MD5_STEP(H, a, b, c, d, x[5], 0xfffa3942, 4);
    MD5_STEP(H, d, a, b, c, x[8], 0x8771f681, 11);
    MD5_STEP(H, c, d, a, b, x[11], 0x6d9d6122, 16);
    MD5_STEP(H, b, c, d, a, x[14], 0xfde5380c, 23);
    MD5_STEP(H, a, b, c, d, x[1], 0xa4beea44, 4);
    MD5_STEP(H, d, a, b, c, x[4], 0x4bdecfa9, 11);
    MD5_STEP(H, c, d, a, b, x[7], 0xf6bb4b60, 16);
    MD5_STEP(H, b, c, d, a, x[10], 0xbebfbc70, 23);
    MD5_STEP(H, a, b, c, d, x[13], 0x289b7ec6, 4);
    MD5_STEP(H, d, a, b, c, x[0], 0xeaa127fa, 11);
    MD5_STEP(H, c, d, a, b, x[3], 0xd4ef3085, 16);
    MD5_STEP(H, b, c, d, a, x[6], 0x04881d05, 23);
    MD5_STEP(H, a, b, c, d, x[9], 0xd9d4d039, 4);
    MD5_STEP(H, d, a, b, c, x[12], 0xe6db99e5, 11);
    MD5_STEP(H, c, d, a, b, x[15], 0x1fa27cf8, 16);
    MD5_STEP(H, b, c, d, a, x[2], 0xc4ac5665, 23);

    MD5_STEP(I, a, b, c, d, x[0], 0xf4292244, 6);
    MD5_STEP(I, d, a, b, c, x[7], 0x432aff97, 10);
    MD5_STEP(I, c, d, a, b, x[14], 0xab9423a7, 15);
    MD5_STEP(I, b, c, d, a, x[5], 0xfc93a039, 21);
    MD5_STEP(I, a, b, c, d, x[12], 0x655b59c3, 6);
    MD5_STEP(I, d, a, b, c, x[3], 0x8f0ccc92, 10);
    MD5_STEP(I, c, d, a, b, x[10], 0xffeff47d, 15);
    MD5_STEP(I, b, c, d, a, x[1], 0x85845dd1, 21);
    MD5_STEP(I, a, b, c, d, x[8], 0x6fa87e4f, 6);
    MD5_STEP(I, d, a, b, c, x[15], 0xfe2ce6e0, 10);
    MD5_STEP(I, c, d, a, b, x[6], 0xa3014314, 15);
    MD5_STEP(I, b, c, d, a, x[13], 0x4e0811a1, 21);
    MD5_STEP(I, a, b, c, d, x[4], 0xf7537e82, 6);
    MD5_STEP(I, d, a, b, c, x[11], 0xbd3af235, 10);
    MD5_STEP(I, c, d, a, b, x[2], 0x2ad7d2bb, 15);
    MD5_STEP(I, b, c, d, a, x[9], 0xeb86d391, 21);

    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
}

static void
md5_init(md5_ctx *ctx)
{
    ctx->state[0] = 0x67452301;
    ctx->state[1] = 0xefcdab89;
    ctx->state[2] = 0x98badcfe;
    ctx->state[3] = 0x10325476;
    ctx->count = 0;
}

static void
md5_update(md5_ctx *ctx, const unsigned char *data, size_t size)
{
    size_t used = (size_t)(ctx->count & 63);

    ctx->count += size;
    if (used != 0) {
        size_t room = 64 - used;
        if (size < room) {
            memcpy(ctx->buffer + used, data, size);
            return;
        }
        memcpy(ctx->buffer + used, data, room);
        md5_compress(ctx->state, ctx->buffer);
        data += room;
        size -= room;
    }
    while (size >= 64) {
        md5_compress(ctx->state, data);
        data += 64;
        size -= 64;
    }
    if (size != 0) {
        memcpy(ctx->buffer, data, size);
    }
}

/* Pad (0x80, zeros, the bit count little-endian) and write the digest; ``ctx`` is spent. */
static void
md5_final(md5_ctx *ctx, unsigned char digest[16])
{
    uint64_t bits = ctx->count << 3;
    size_t used = (size_t)(ctx->count & 63);
    int i;

    ctx->buffer[used++] = 0x80;
    if (used > 56) {
        memset(ctx->buffer + used, 0, 64 - used);
        md5_compress(ctx->state, ctx->buffer);
        used = 0;
    }
    memset(ctx->buffer + used, 0, 56 - used);
    for (i = 0; i < 8; i++) {
        ctx->buffer[56 + i] = (unsigned char)(bits >> (8 * i));
    }
    md5_compress(ctx->state, ctx->buffer);
    for (i = 0; i < 4; i++) {
        store_le32(digest + 4 * i, ctx->state[i]);
    }
}

/* Compare two 16-octet values without an early exit (BlastRADIUS: constant-time). */
static int
equal16(const unsigned char *a, const unsigned char *b)
{
    unsigned int difference = 0;
    int i;

    for (i = 0; i < 16; i++) {
        difference |= (unsigned int)(a[i] ^ b[i]);
    }
    return difference == 0;
}

static const unsigned char ZERO16[16] = {0};

/* --- Secret: a shared secret with its HMAC-MD5 prefix states --------------------------------- */

/* HMAC(K, m) = MD5(K ^ opad || MD5(K ^ ipad || m)) (RFC 2104 §2); ``inner`` and ``outer`` are
   the MD5 states after the one keyed 64-octet block, so a packet costs no key schedule. */
typedef struct {
    PyObject_HEAD
    PyObject *value; /* bytes: the secret itself, for the Response Authenticator */
    uint32_t inner[4];
    uint32_t outer[4];
} SecretObject;

static PyTypeObject SecretType;

static void
hmac_begin(const SecretObject *secret, md5_ctx *ctx)
{
    memcpy(ctx->state, secret->inner, sizeof ctx->state);
    ctx->count = 64;
}

static void
hmac_end(const SecretObject *secret, md5_ctx *ctx, unsigned char mac[16])
{
    unsigned char inner_digest[16];

    md5_final(ctx, inner_digest);
    memcpy(ctx->state, secret->outer, sizeof ctx->state);
    ctx->count = 64;
    md5_update(ctx, inner_digest, 16);
    md5_final(ctx, mac);
}

/* The octets of a bytes-like argument: bytes directly, anything else through the buffer
   protocol (released by release_octets). */
typedef struct {
    const unsigned char *octets;
    Py_ssize_t size;
    Py_buffer view;
    int has_view;
} octets_arg;

static int
get_octets(PyObject *object, octets_arg *out)
{
    if (PyBytes_Check(object)) {
        out->octets = (const unsigned char *)PyBytes_AS_STRING(object);
        out->size = PyBytes_GET_SIZE(object);
        out->has_view = 0;
        return 0;
    }
    if (PyObject_GetBuffer(object, &out->view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    out->octets = (const unsigned char *)out->view.buf;
    out->size = out->view.len;
    out->has_view = 1;
    return 0;
}

static void
release_octets(octets_arg *arg)
{
    if (arg->has_view) {
        PyBuffer_Release(&arg->view);
        arg->has_view = 0;
    }
}

static PyObject *
Secret_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"value", NULL};
    PyObject *value;
    octets_arg key;
    unsigned char block[64], pad[64];
    md5_ctx ctx;
    SecretObject *self;
    int i;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:Secret", keywords, &value)) {
        return NULL;
    }
    if (get_octets(value, &key) < 0) {
        return NULL;
    }
    if (key.size == 0) {
        release_octets(&key);
        PyErr_SetString(PyExc_ValueError,
                        "a RADIUS shared secret must not be empty (RFC 2865 §3)");
        return NULL;
    }
    self = (SecretObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        release_octets(&key);
        return NULL;
    }
    self->value = PyBytes_CheckExact(value)
                      ? Py_NewRef(value)
                      : PyBytes_FromStringAndSize((const char *)key.octets, key.size);
    if (self->value == NULL) {
        release_octets(&key);
        Py_DECREF(self);
        return NULL;
    }
    /* "Keys longer than B bytes are first hashed using H" (RFC 2104 §3), then zero-padded. */
    memset(block, 0, sizeof block);
    if (key.size > 64) {
        md5_init(&ctx);
        md5_update(&ctx, key.octets, (size_t)key.size);
        md5_final(&ctx, block);
    }
    else {
        memcpy(block, key.octets, (size_t)key.size);
    }
    release_octets(&key);
    for (i = 0; i < 64; i++) {
        pad[i] = block[i] ^ 0x36;
    }
    md5_init(&ctx);
    md5_compress(ctx.state, pad);
    memcpy(self->inner, ctx.state, sizeof self->inner);
    for (i = 0; i < 64; i++) {
        pad[i] = block[i] ^ 0x5c;
    }
    md5_init(&ctx);
    md5_compress(ctx.state, pad);
    memcpy(self->outer, ctx.state, sizeof self->outer);
    return (PyObject *)self;
}

static void
Secret_dealloc(SecretObject *self)
{
    Py_XDECREF(self->value);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Secret_hmac_md5(SecretObject *self, PyObject *message)
{
    octets_arg octets;
    md5_ctx ctx;
    unsigned char mac[16];

    if (get_octets(message, &octets) < 0) {
        return NULL;
    }
    hmac_begin(self, &ctx);
    md5_update(&ctx, octets.octets, (size_t)octets.size);
    release_octets(&octets);
    hmac_end(self, &ctx, mac);
    return PyBytes_FromStringAndSize((const char *)mac, 16);
}

static PyMethodDef Secret_methods[] = {
    {"hmac_md5", (PyCFunction)Secret_hmac_md5, METH_O,
     PyDoc_STR("hmac_md5($self, message, /)\n--\n\nReturn HMAC-MD5(secret, message).")},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Secret_members[] = {
    {"value", T_OBJECT_EX, offsetof(SecretObject, value), READONLY,
     PyDoc_STR("The shared secret as bytes.")},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SecretType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core.radius._speedups.Secret",
    .tp_doc = PyDoc_STR("Secret(value)\n--\n\n"
                        "A client's shared secret with its HMAC-MD5 inner and outer states "
                        "computed once."),
    .tp_basicsize = sizeof(SecretObject),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Secret_new,
    .tp_dealloc = (destructor)Secret_dealloc,
    .tp_methods = Secret_methods,
    .tp_members = Secret_members,
};

/* --- Arguments --------------------------------------------------------------------------------- */

/* Match vectorcall arguments to parameter ``names`` as a Python ``def`` would: the first
   ``positional`` names are positional-or-keyword, the rest keyword-only, the first ``required``
   must be given. ``out`` receives borrowed references, NULL for what was not given. */
static int
unpack_arguments(const char *function, const char *const *names, Py_ssize_t positional,
                 Py_ssize_t total, Py_ssize_t required, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames, PyObject **out)
{
    Py_ssize_t i, k, keywords;

    if (nargs > positional) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments but %zd were given",
                     function, positional, nargs);
        return -1;
    }
    for (i = 0; i < total; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    keywords = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (k = 0; k < keywords; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        for (i = 0; i < total; i++) {
            if (PyUnicode_CompareWithASCIIString(name, names[i]) == 0) {
                break;
            }
        }
        if (i == total) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                         function, name);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
                         function, names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (i = 0; i < required; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", function,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

static SecretObject *
as_secret(PyObject *object)
{
    if (!PyObject_TypeCheck(object, &SecretType)) {
        PyErr_Format(PyExc_TypeError, "secret must be a core.radius._speedups.Secret, not %.100s",
                     Py_TYPE(object)->tp_name);
        return NULL;
    }
    return (SecretObject *)object;
}

/* --- parse --------------------------------------------------------------------------------------- */

/* Set by configure(); parse refuses to run before. Strong references, kept for the process. */
static PyTypeObject *packet_type;
static PyObject *malformed_type;
static PyObject *fallback_parse;
static PyObject *drop_too_short, *drop_bad_length, *drop_truncated, *drop_unknown_code,
    *drop_bad_attribute, *drop_ma_duplicate;
static unsigned char known_codes[256];

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"packet",      "malformed",    "fallback",  "known_codes",
                               "too_short",   "bad_length",   "truncated", "unknown_code",
                               "bad_attribute", "ma_duplicate", NULL};
    PyObject *packet, *malformed, *fallback, *codes, *too_short, *bad_length, *truncated,
        *unknown_code, *bad_attribute, *ma_duplicate, *iterator, *item;
    unsigned char codes_table[256];
    PyTypeObject *type;

    (void)module;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOOOO:configure", keywords, &packet,
                                     &malformed, &fallback, &codes, &too_short, &bad_length,
                                     &truncated, &unknown_code, &bad_attribute, &ma_duplicate)) {
        return NULL;
    }
    /* parse fills the Packet's items itself, so it must be laid out exactly as a tuple. */
    if (!PyType_Check(packet) || !PyType_IsSubtype((PyTypeObject *)packet, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "packet must be a tuple subclass");
        return NULL;
    }
    type = (PyTypeObject *)packet;
    if (type->tp_basicsize != PyTuple_Type.tp_basicsize ||
        type->tp_itemsize != PyTuple_Type.tp_itemsize) {
        PyErr_SetString(PyExc_TypeError, "packet must add no storage to tuple (__slots__ = ())");
        return NULL;
    }
    if (!PyExceptionClass_Check(malformed)) {
        PyErr_SetString(PyExc_TypeError, "malformed must be an exception class");
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    memset(codes_table, 0, sizeof codes_table);
    iterator = PyObject_GetIter(codes);
    if (iterator == NULL) {
        return NULL;
    }
    while ((item = PyIter_Next(iterator)) != NULL) {
        long code = PyLong_AsLong(item);
        Py_DECREF(item);
        if (code == -1 && PyErr_Occurred()) {
            break;
        }
        if (code < 0 || code > 255) {
            PyErr_SetString(PyExc_ValueError, "known_codes must be octets");
            break;
        }
        codes_table[code] = 1;
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        return NULL;
    }
    memcpy(known_codes, codes_table, sizeof known_codes);
    Py_XSETREF(packet_type, (PyTypeObject *)Py_NewRef(packet));
    Py_XSETREF(malformed_type, Py_NewRef(malformed));
    Py_XSETREF(fallback_parse, Py_NewRef(fallback));
    Py_XSETREF(drop_too_short, Py_NewRef(too_short));
    Py_XSETREF(drop_bad_length, Py_NewRef(bad_length));
    Py_XSETREF(drop_truncated, Py_NewRef(truncated));
    Py_XSETREF(drop_unknown_code, Py_NewRef(unknown_code));
    Py_XSETREF(drop_bad_attribute, Py_NewRef(bad_attribute));
    Py_XSETREF(drop_ma_duplicate, Py_NewRef(ma_duplicate));
    Py_RETURN_NONE;
}

/* Raise MalformedPacket(drop); returns NULL for ``return malformed(...)``. */
static PyObject *
malformed(PyObject *drop)
{
    PyObject *error = PyObject_CallOneArg(malformed_type, drop);
    if (error != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
    }
    return NULL;
}

#define SEEN(bits, kind) ((bits)[(kind) >> 6] & ((uint64_t)1 << ((kind) & 63)))
#define MARK(bits, kind) ((bits)[(kind) >> 6] |= ((uint64_t)1 << ((kind) & 63)))

/* offsets[key] = position; 0, or -1 with an exception set. */
static int
record(PyObject *offsets, long long key, Py_ssize_t position)
{
    PyObject *key_object, *position_object;
    int result;

    key_object = PyLong_FromLongLong(key);
    if (key_object == NULL) {
        return -1;
    }
    position_object = PyLong_FromSsize_t(position);
    if (position_object == NULL) {
        Py_DECREF(key_object);
        return -1;
    }
    result = PyDict_SetItem(offsets, key_object, position_object);
    Py_DECREF(key_object);
    Py_DECREF(position_object);
    return result;
}

static PyObject *
new_packet(PyObject *data, const unsigned char *octets, Py_ssize_t length, PyObject *offsets,
           Py_ssize_t message_authenticator, PyObject *proxy_states)
{
    PyObject *packet = packet_type->tp_alloc(packet_type, 8);
    PyObject *items[8];
    int i;

    if (packet == NULL) {
        return NULL;
    }
    items[0] = PyLong_FromLong(octets[0]);
    items[1] = PyLong_FromLong(octets[1]);
    items[2] = PyLong_FromSsize_t(length);
    items[3] = PyBytes_FromStringAndSize((const char *)octets + 4, 16);
    items[4] = Py_NewRef(offsets);
    items[5] = PyLong_FromSsize_t(message_authenticator);
    items[6] = Py_NewRef(proxy_states == NULL ? Py_None : proxy_states);
    items[7] = Py_NewRef(data);
    for (i = 0; i < 8; i++) {
        PyTuple_SET_ITEM(packet, i, items[i]); /* a NULL item is skipped by tuple dealloc */
    }
    for (i = 0; i < 8; i++) {
        if (items[i] == NULL) {
            Py_DECREF(packet);
            return NULL;
        }
    }
    return packet;
}

/* The walk of wire.parse_python, check for check and in the same order (its comments quote
   the RFC sentences). Returns a new Packet, or NULL with MalformedPacket (or MemoryError). */
static PyObject *
parse_octets(PyObject *data, int indexed, uint32_t vendor)
{
    const unsigned char *octets = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    Py_ssize_t length, position, end, sub, sub_end;
    Py_ssize_t message_authenticator = -1;
    unsigned char vendor_prefix[4];
    long long base = (long long)vendor << 8;
    uint64_t standard_seen[4] = {0, 0, 0, 0}, vendor_storage[4] = {0, 0, 0, 0};
    /* vendor 0 keys its sub-attributes 0..255, the same keys as standard attributes */
    uint64_t *vendor_seen = vendor == 0 ? standard_seen : vendor_storage;
    PyObject *offsets, *proxy_states = NULL, *packet;

    if (size < HEADER_LEN) {
        return malformed(drop_too_short);
    }
    length = ((Py_ssize_t)octets[2] << 8) | octets[3];
    if (length < HEADER_LEN || length > MAX_LEN) {
        return malformed(drop_bad_length);
    }
    if (size < length) {
        return malformed(drop_truncated);
    }
    if (!known_codes[octets[0]]) {
        return malformed(drop_unknown_code);
    }
    vendor_prefix[0] = (unsigned char)(vendor >> 24);
    vendor_prefix[1] = (unsigned char)(vendor >> 16);
    vendor_prefix[2] = (unsigned char)(vendor >> 8);
    vendor_prefix[3] = (unsigned char)vendor;
    offsets = PyDict_New();
    if (offsets == NULL) {
        return NULL;
    }
    position = HEADER_LEN;
    while (position < length) {
        unsigned int kind, attribute_size;
        /* The attribute header must lie inside Length; the Python walk reaches the same
           verdict through an IndexError or the checks below. */
        if (position + 2 > length) {
            goto bad_attribute;
        }
        kind = octets[position];
        attribute_size = octets[position + 1];
        end = position + attribute_size;
        if (attribute_size < 2 || end > length) {
            goto bad_attribute;
        }
        if (kind == VSA) {
            /* Only the indexed vendor's data is read (RFC 2865 §5.26); an attribute shorter
               than 6 octets holds no sub-attribute, whatever follows it. */
            if (indexed && attribute_size >= 6 &&
                memcmp(octets + position + 2, vendor_prefix, 4) == 0) {
                sub = position + 6;
                while (sub < end) {
                    unsigned int sub_kind, sub_size;
                    if (sub + 2 > end) {
                        goto bad_attribute;
                    }
                    sub_kind = octets[sub];
                    sub_size = octets[sub + 1];
                    sub_end = sub + sub_size;
                    if (sub_size < 2 || sub_end > end) {
                        goto bad_attribute;
                    }
                    if (!SEEN(vendor_seen, sub_kind)) {
                        MARK(vendor_seen, sub_kind);
                        if (record(offsets, base | sub_kind, sub) < 0) {
                            goto error;
                        }
                    }
                    sub = sub_end;
                }
            }
        }
        else if (kind == PROXY_STATE) {
            PyObject *at = PyLong_FromSsize_t(position);
            int appended;
            if (at == NULL) {
                goto error;
            }
            if (proxy_states == NULL) {
                proxy_states = PyList_New(0);
                if (proxy_states == NULL) {
                    Py_DECREF(at);
                    goto error;
                }
            }
            appended = PyList_Append(proxy_states, at);
            Py_DECREF(at);
            if (appended < 0) {
                goto error;
            }
        }
        else if (kind == MESSAGE_AUTHENTICATOR) {
            if (message_authenticator >= 0) {
                Py_DECREF(offsets);
                Py_XDECREF(proxy_states);
                return malformed(drop_ma_duplicate);
            }
            message_authenticator = position;
        }
        else if (!SEEN(standard_seen, kind)) {
            MARK(standard_seen, kind);
            if (record(offsets, kind, position) < 0) {
                goto error;
            }
        }
        position = end;
    }
    packet = new_packet(data, octets, length, offsets, message_authenticator, proxy_states);
    Py_DECREF(offsets);
    Py_XDECREF(proxy_states);
    return packet;

bad_attribute:
    Py_DECREF(offsets);
    Py_XDECREF(proxy_states);
    return malformed(drop_bad_attribute);

error:
    Py_DECREF(offsets);
    Py_XDECREF(proxy_states);
    return NULL;
}

static PyObject *
parse(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"data", "indexed_vendor"};
    PyObject *given[2];
    PyObject *vendor_object;
    long long vendor = 0;
    int overflow = 0;

    (void)module;
    if (packet_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "core.radius._speedups.configure() was not called");
        return NULL;
    }
    if (unpack_arguments("parse", names, 2, 2, 1, args, nargs, kwnames, given) < 0) {
        return NULL;
    }
    vendor_object = given[1];
    if (vendor_object != NULL && vendor_object != Py_None) {
        if (PyLong_CheckExact(vendor_object)) {
            vendor = PyLong_AsLongLongAndOverflow(vendor_object, &overflow);
        }
        else {
            overflow = 1;
        }
    }
    /* Anything but bytes and a 32-bit vendor id goes to the Python walk, so that odd
       arguments (a bytearray, a vendor the Python code refuses) behave exactly as there. */
    if (!PyBytes_CheckExact(given[0]) || overflow || vendor < 0 || vendor > 0xFFFFFFFFLL) {
        return PyObject_Vectorcall(fallback_parse, args, nargs, kwnames);
    }
    return parse_octets(given[0], vendor_object != NULL && vendor_object != Py_None,
                        (uint32_t)vendor);
}

/* --- Message-Authenticator and replies ----------------------------------------------------------- */

static int
as_index(PyObject *object, Py_ssize_t *out)
{
    *out = PyNumber_AsSsize_t(object, NULL); /* clamped, as a slice index is */
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
verify_message_authenticator(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"data", "length", "ma_offset", "secret"};
    PyObject *given[4];
    SecretObject *secret;
    Py_ssize_t length, offset, value, tail_end;
    octets_arg data;
    md5_ctx ctx;
    unsigned char mac[16];
    int valid;

    (void)module;
    if (unpack_arguments("verify_message_authenticator", names, 4, 4, 4, args, nargs, kwnames,
                         given) < 0) {
        return NULL;
    }
    if (as_index(given[1], &length) < 0 || as_index(given[2], &offset) < 0) {
        return NULL;
    }
    secret = as_secret(given[3]);
    if (secret == NULL || get_octets(given[0], &data) < 0) {
        return NULL;
    }
    /* As the Python code slices: data[:value] + ZERO16 + data[value + 16:length] is hashed and
       compared with data[value:value + 16]; an offset whose length octet is missing raises
       IndexError there too. A negative offset (no attribute) never verifies. */
    if (offset < 0) {
        release_octets(&data);
        Py_RETURN_FALSE;
    }
    if (offset >= data.size - 1) {
        release_octets(&data);
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    value = offset + 2;
    if (data.octets[offset + 1] != MA_SIZE || value + 16 > data.size) {
        release_octets(&data);
        Py_RETURN_FALSE;
    }
    tail_end = length < 0 ? length + data.size : length;
    if (tail_end > data.size) {
        tail_end = data.size;
    }
    hmac_begin(secret, &ctx);
    md5_update(&ctx, data.octets, (size_t)value);
    md5_update(&ctx, ZERO16, 16);
    if (tail_end > value + 16) {
        md5_update(&ctx, data.octets + value + 16, (size_t)(tail_end - value - 16));
    }
    hmac_end(secret, &ctx, mac);
    valid = equal16(mac, data.octets + value);
    release_octets(&data);
    return PyBool_FromLong(valid);
}

/* An octet of the reply header, as ``bytes((...))`` would refuse it. */
static int
as_octet(PyObject *object, unsigned int *out)
{
    int overflow;
    long value = PyLong_AsLongAndOverflow(object, &overflow);

    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || value < 0 || value > 255) {
        PyErr_SetString(PyExc_ValueError, "bytes must be in range(0, 256)");
        return -1;
    }
    *out = (unsigned int)value;
    return 0;
}

static PyObject *
sign_reply(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"code",       "identifier", "request_authenticator",
                                        "attributes", "secret",     "message_authenticator"};
    PyObject *given[6];
    SecretObject *secret;
    unsigned int code, identifier;
    int with_ma = 1;
    octets_arg request_authenticator, attributes;
    Py_ssize_t length, start;
    PyObject *reply;
    unsigned char *out;
    md5_ctx ctx;

    (void)module;
    if (unpack_arguments("sign_reply", names, 5, 6, 5, args, nargs, kwnames, given) < 0) {
        return NULL;
    }
    if (as_octet(given[0], &code) < 0 || as_octet(given[1], &identifier) < 0) {
        return NULL;
    }
    secret = as_secret(given[4]);
    if (secret == NULL) {
        return NULL;
    }
    if (given[5] != NULL && (with_ma = PyObject_IsTrue(given[5])) < 0) {
        return NULL;
    }
    if (get_octets(given[2], &request_authenticator) < 0) {
        return NULL;
    }
    if (get_octets(given[3], &attributes) < 0) {
        release_octets(&request_authenticator);
        return NULL;
    }
    start = HEADER_LEN + (with_ma ? MA_SIZE : 0);
    if (attributes.size > 0xFFFF - start) { /* the Length octets could not say it */
        release_octets(&request_authenticator);
        release_octets(&attributes);
        PyErr_SetString(PyExc_ValueError, "bytes must be in range(0, 256)");
        return NULL;
    }
    length = start + attributes.size;
    reply = PyBytes_FromStringAndSize(NULL, length);
    if (reply == NULL) {
        release_octets(&request_authenticator);
        release_octets(&attributes);
        return NULL;
    }
    out = (unsigned char *)PyBytes_AS_STRING(reply);
    out[0] = (unsigned char)code;
    out[1] = (unsigned char)identifier;
    out[2] = (unsigned char)(length >> 8);
    out[3] = (unsigned char)(length & 0xFF);
    if (attributes.size > 0) {
        memcpy(out + start, attributes.octets, (size_t)attributes.size);
    }
    release_octets(&attributes);
    if (with_ma) {
        /* Message-Authenticator first, over the reply with the Request Authenticator in the
           header and the HMAC zeroed (RFC 3579 §3.2); then covered by the Response
           Authenticator (RFC 2865 §3). */
        out[HEADER_LEN] = MESSAGE_AUTHENTICATOR;
        out[HEADER_LEN + 1] = MA_SIZE;
        memset(out + HEADER_LEN + 2, 0, 16);
        hmac_begin(secret, &ctx);
        md5_update(&ctx, out, 4);
        md5_update(&ctx, request_authenticator.octets, (size_t)request_authenticator.size);
        md5_update(&ctx, out + HEADER_LEN, (size_t)(length - HEADER_LEN));
        hmac_end(secret, &ctx, out + HEADER_LEN + 2);
    }
    /* MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret) */
    md5_init(&ctx);
    md5_update(&ctx, out, 4);
    md5_update(&ctx, request_authenticator.octets, (size_t)request_authenticator.size);
    release_octets(&request_authenticator);
    md5_update(&ctx, out + HEADER_LEN, (size_t)(length - HEADER_LEN));
    md5_update(&ctx, (const unsigned char *)PyBytes_AS_STRING(secret->value),
               (size_t)PyBytes_GET_SIZE(secret->value));
    md5_final(&ctx, out + 4);
    return reply;
}

static PyObject *
md5_digest(PyObject *module, PyObject *data)
{
    octets_arg octets;
    md5_ctx ctx;
    unsigned char digest[16];

    (void)module;
    if (get_octets(data, &octets) < 0) {
        return NULL;
    }
    md5_init(&ctx);
    md5_update(&ctx, octets.octets, (size_t)octets.size);
    release_octets(&octets);
    md5_final(&ctx, digest);
    return PyBytes_FromStringAndSize((const char *)digest, 16);
}

/* --- Module -------------------------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("configure(*, packet, malformed, fallback, known_codes, too_short, bad_length, "
               "truncated, unknown_code, bad_attribute, ma_duplicate)\n--\n\n"
               "Give parse the Packet type, the MalformedPacket class, the pure-Python parse "
               "and the Drop members it raises with.")},
    {"parse", (PyCFunction)(void (*)(void))parse, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("parse($module, /, data, indexed_vendor=None)\n--\n\n"
               "Check a datagram's structure and index its attributes (wire.parse_python).")},
    {"verify_message_authenticator",
     (PyCFunction)(void (*)(void))verify_message_authenticator, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("verify_message_authenticator($module, /, data, length, ma_offset, secret)\n--\n\n"
               "Check a request's Message-Authenticator (auth.verify_message_authenticator).")},
    {"sign_reply", (PyCFunction)(void (*)(void))sign_reply, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("sign_reply($module, /, code, identifier, request_authenticator, attributes, "
               "secret, *, message_authenticator=True)\n--\n\n"
               "Encode a reply: header, Message-Authenticator first, then attributes.")},
    {"md5", (PyCFunction)md5_digest, METH_O,
     PyDoc_STR("md5($module, data, /)\n--\n\nReturn the MD5 digest of data.")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "core.radius._speedups",
    .m_doc = PyDoc_STR("The hot path's attribute walk and MD5/HMAC-MD5 in C; see wire.py and "
                       "auth.py for the pure-Python specification."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *module;

    if (PyType_Ready(&SecretType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&SecretType);
    if (PyModule_AddObject(module, "Secret", (PyObject *)&SecretType) < 0) {
        Py_DECREF(&SecretType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
