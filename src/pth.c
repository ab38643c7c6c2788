/* Reader of PyTorch .pth files (CELLPOSE_ALGORITHM.md §3.1): the zip container through libzip,
 * the pickle of the state dict by a small interpreter of the opcodes torch.save writes, and the
 * conversion of each tensor's storage (float32/float64/float16/int64/int32, offset and strides
 * honoured) to float32. Every read is bounds-checked; every error names the file. */
#include "pth.h"

#include "cp_err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>
#include <zlib.h>

/* ---- pickle values ---------------------------------------------------------------------- */

enum pk_kind {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STR,
    PK_TUPLE,
    PK_DICT,    /* dict or OrderedDict: items = key, value, key, value, ... */
    PK_GLOBAL,  /* str = "module name" */
    PK_MARK,
    PK_STORAGE, /* persistent id: str = key, i = numel, dtype */
    PK_TENSOR,  /* items = storage, offset, size tuple, stride tuple */
};

enum pk_dtype { DT_F32, DT_F64, DT_F16, DT_I64, DT_I32 };

typedef struct pk_obj {
    enum pk_kind kind;
    int64_t i;
    double f;
    char *s;
    enum pk_dtype dtype;
    struct pk_obj **items;
    int64_t n, cap;
} pk_obj;

/* The interpreter: input bytes, value stack, memo, and every object allocated (freed at once). */
typedef struct pk_vm {
    const char *path;
    const unsigned char *buf;
    int64_t len, pos;
    pk_obj **stack;
    int64_t nstack, capstack;
    pk_obj **memo;
    int64_t nmemo;
    pk_obj **all;
    int64_t nall, capall;
    char *err;
} pk_vm;

static int pk_grow(void **arr, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int64_t nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

static pk_obj *pk_new(pk_vm *vm, enum pk_kind kind)
{
    if (pk_grow((void **)&vm->all, &vm->capall, vm->nall + 1, sizeof(pk_obj *)))
        return NULL;
    pk_obj *o = calloc(1, sizeof(pk_obj));
    if (!o)
        return NULL;
    o->kind = kind;
    vm->all[vm->nall++] = o;
    return o;
}

static int pk_append(pk_obj *o, pk_obj *item)
{
    if (pk_grow((void **)&o->items, &o->cap, o->n + 1, sizeof(pk_obj *)))
        return -1;
    o->items[o->n++] = item;
    return 0;
}

static void pk_vm_free(pk_vm *vm)
{
    for (int64_t k = 0; k < vm->nall; k++) {
        free(vm->all[k]->s);
        free(vm->all[k]->items);
        free(vm->all[k]);
    }
    free(vm->all);
    free(vm->stack);
    free(vm->memo);
}

/* ---- the interpreter -------------------------------------------------------------------- */

#define PK_FAIL(vm, ...)                                                                         \
    do {                                                                                         \
        char msg_[256];                                                                          \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                                \
        return cp_errf((vm)->err, CP_EFORMAT, "%s: data.pkl: offset %lld: %s", (vm)->path,     \
                       (long long)(vm)->pos, msg_);                                              \
    } while (0)

static int pk_push(pk_vm *vm, pk_obj *o)
{
    if (!o || pk_grow((void **)&vm->stack, &vm->capstack, vm->nstack + 1, sizeof(pk_obj *)))
        return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
    vm->stack[vm->nstack++] = o;
    return 0;
}

static int pk_pop(pk_vm *vm, pk_obj **o)
{
    if (vm->nstack == 0 || vm->stack[vm->nstack - 1]->kind == PK_MARK)
        PK_FAIL(vm, "pickle stack underflow");
    *o = vm->stack[--vm->nstack];
    return 0;
}

/* Reads n bytes at the cursor (bounds-checked). */
static int pk_take(pk_vm *vm, int64_t n, const unsigned char **p)
{
    if (n < 0 || n > vm->len - vm->pos)
        PK_FAIL(vm, "truncated pickle");
    *p = vm->buf + vm->pos;
    vm->pos += n;
    return 0;
}

static int pk_uint(pk_vm *vm, int nbytes, uint64_t *v)
{
    const unsigned char *p = NULL;
    int rc = pk_take(vm, nbytes, &p);
    if (rc)
        return rc;
    *v = 0;
    for (int k = nbytes - 1; k >= 0; k--)
        *v = (*v << 8) | p[k];
    return 0;
}

/* Index of the topmost MARK on the stack. */
static int pk_find_mark(pk_vm *vm, int64_t *at)
{
    for (int64_t k = vm->nstack - 1; k >= 0; k--)
        if (vm->stack[k]->kind == PK_MARK) {
            *at = k;
            return 0;
        }
    PK_FAIL(vm, "no MARK on the pickle stack");
}

static int pk_str(pk_vm *vm, pk_obj *o, const unsigned char *p, int64_t n)
{
    o->s = malloc((size_t)n + 1);
    if (!o->s)
        return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
    memcpy(o->s, p, (size_t)n);
    o->s[n] = 0;
    if ((int64_t)strlen(o->s) != n)
        PK_FAIL(vm, "string with a NUL byte");
    return 0;
}

/* Makes a tuple of stack[from..top) and replaces those entries (and the MARK at from-1 if
 * drop_mark) by it. */
static int pk_make_tuple(pk_vm *vm, int64_t from, int drop_mark)
{
    pk_obj *t = pk_new(vm, PK_TUPLE);
    if (!t)
        return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
    for (int64_t k = from; k < vm->nstack; k++)
        if (pk_append(t, vm->stack[k]))
            return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
    vm->nstack = from - (drop_mark ? 1 : 0);
    return pk_push(vm, t);
}

static const struct {
    const char *name;
    enum pk_dtype dtype;
} pk_storages[] = {
    {"torch FloatStorage", DT_F32}, {"torch DoubleStorage", DT_F64}, {"torch HalfStorage", DT_F16},
    {"torch LongStorage", DT_I64},  {"torch IntStorage", DT_I32},
};

static int pk_global(pk_vm *vm)
{
    const unsigned char *start = vm->buf + vm->pos;
    int64_t nl = 0, len = 0;
    for (int64_t k = vm->pos; k < vm->len && nl < 2; k++, len++)
        if (vm->buf[k] == '\n')
            nl++;
    if (nl < 2)
        PK_FAIL(vm, "truncated GLOBAL");
    pk_obj *g = pk_new(vm, PK_GLOBAL);
    if (!g)
        return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
    int rc = pk_str(vm, g, start, len - 1);
    if (rc)
        return rc;
    vm->pos += len;
    char *nlp = strchr(g->s, '\n');
    *nlp = ' ';
    int known = !strcmp(g->s, "collections OrderedDict") ||
                !strcmp(g->s, "torch._utils _rebuild_tensor_v2");
    for (size_t k = 0; k < sizeof pk_storages / sizeof pk_storages[0]; k++)
        known |= !strcmp(g->s, pk_storages[k].name);
    if (!known)
        PK_FAIL(vm, "unsupported pickle global '%s'", g->s);
    return pk_push(vm, g);
}

static int pk_is_int_tuple(const pk_obj *o)
{
    if (o->kind != PK_TUPLE)
        return 0;
    for (int64_t k = 0; k < o->n; k++)
        if (o->items[k]->kind != PK_INT)
            return 0;
    return 1;
}

/* REDUCE: OrderedDict() or _rebuild_tensor_v2(storage, offset, size, stride, grad, hooks). */
static int pk_reduce(pk_vm *vm)
{
    pk_obj *args = NULL, *fn = NULL;
    int rc = pk_pop(vm, &args);
    if (!rc)
        rc = pk_pop(vm, &fn);
    if (rc)
        return rc;
    if (fn->kind != PK_GLOBAL || args->kind != PK_TUPLE)
        PK_FAIL(vm, "REDUCE on something that is not a global and a tuple");
    if (!strcmp(fn->s, "collections OrderedDict")) {
        if (args->n != 0)
            PK_FAIL(vm, "OrderedDict with arguments");
        return pk_push(vm, pk_new(vm, PK_DICT));
    }
    if (!strcmp(fn->s, "torch._utils _rebuild_tensor_v2")) {
        if (args->n < 4 || args->items[0]->kind != PK_STORAGE || args->items[1]->kind != PK_INT ||
            !pk_is_int_tuple(args->items[2]) || !pk_is_int_tuple(args->items[3]) ||
            args->items[2]->n != args->items[3]->n)
            PK_FAIL(vm, "malformed _rebuild_tensor_v2 arguments");
        if (args->items[2]->n > CP_PTH_MAXDIM)
            PK_FAIL(vm, "tensor with %lld dimensions (at most %d)", (long long)args->items[2]->n,
                    CP_PTH_MAXDIM);
        pk_obj *t = pk_new(vm, PK_TENSOR);
        if (!t)
            return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
        for (int k = 0; k < 4; k++)
            if (pk_append(t, args->items[k]))
                return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
        return pk_push(vm, t);
    }
    PK_FAIL(vm, "REDUCE of unsupported global '%s'", fn->s);
}

/* BINPERSID: ('storage', <Storage global>, key, location, numel). */
static int pk_persid(pk_vm *vm)
{
    pk_obj *pid = NULL;
    int rc = pk_pop(vm, &pid);
    if (rc)
        return rc;
    if (pid->kind != PK_TUPLE || pid->n != 5 || pid->items[0]->kind != PK_STR ||
        strcmp(pid->items[0]->s, "storage") || pid->items[1]->kind != PK_GLOBAL ||
        pid->items[2]->kind != PK_STR || pid->items[4]->kind != PK_INT || pid->items[4]->i < 0)
        PK_FAIL(vm, "malformed storage persistent id");
    pk_obj *st = pk_new(vm, PK_STORAGE);
    if (!st)
        return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
    size_t k = 0;
    while (k < sizeof pk_storages / sizeof pk_storages[0] &&
           strcmp(pid->items[1]->s, pk_storages[k].name))
        k++;
    if (k == sizeof pk_storages / sizeof pk_storages[0])
        PK_FAIL(vm, "storage type '%s' is not a storage", pid->items[1]->s);
    st->dtype = pk_storages[k].dtype;
    st->i = pid->items[4]->i;
    rc = pk_str(vm, st, (const unsigned char *)pid->items[2]->s,
                (int64_t)strlen(pid->items[2]->s));
    if (rc)
        return rc;
    return pk_push(vm, st);
}

static int pk_setitems(pk_vm *vm, int64_t from)
{
    if (from < 1 || vm->stack[from - 1]->kind != PK_DICT || (vm->nstack - from) % 2)
        PK_FAIL(vm, "SETITEM(S) without a dict and key/value pairs");
    pk_obj *d = vm->stack[from - 1];
    for (int64_t k = from; k < vm->nstack; k++)
        if (pk_append(d, vm->stack[k]))
            return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
    vm->nstack = from;
    return 0;
}

static int pk_memo_put(pk_vm *vm, uint64_t idx)
{
    if (vm->nstack == 0)
        PK_FAIL(vm, "PUT on an empty stack");
    if (idx >= (uint64_t)vm->nmemo)
        PK_FAIL(vm, "memo index %llu out of range", (unsigned long long)idx);
    vm->memo[idx] = vm->stack[vm->nstack - 1];
    return 0;
}

static int pk_memo_get(pk_vm *vm, uint64_t idx)
{
    if (idx >= (uint64_t)vm->nmemo || !vm->memo[idx])
        PK_FAIL(vm, "memo index %llu not defined", (unsigned long long)idx);
    return pk_push(vm, vm->memo[idx]);
}

/* 1 if the top n stack entries are values (no MARK among them). */
static int pk_has_values(const pk_vm *vm, int64_t n)
{
    if (vm->nstack < n)
        return 0;
    for (int64_t k = vm->nstack - n; k < vm->nstack; k++)
        if (vm->stack[k]->kind == PK_MARK)
            return 0;
    return 1;
}

static int pk_push_int(pk_vm *vm, int64_t v)
{
    pk_obj *o = pk_new(vm, PK_INT);
    if (o)
        o->i = v;
    return pk_push(vm, o);
}

/* Runs the pickle to STOP; *top gets the result. */
static int pk_run(pk_vm *vm, pk_obj **top)
{
    /* Each PUT takes at least two bytes, so the memo never needs more slots than that. */
    vm->nmemo = vm->len / 2 + 1;
    vm->memo = calloc((size_t)vm->nmemo, sizeof(pk_obj *));
    if (!vm->memo)
        return cp_errf(vm->err, CP_ENOMEM, "%s: data.pkl: out of memory", vm->path);
    for (;;) {
        const unsigned char *p = NULL;
        uint64_t v = 0;
        int64_t at = 0;
        pk_obj *o;
        int rc = pk_take(vm, 1, &p);
        if (rc)
            return rc;
        unsigned op = p[0];
        switch (op) {
        case 0x80: /* PROTO */
            rc = pk_uint(vm, 1, &v);
            if (!rc && v > 5)
                PK_FAIL(vm, "pickle protocol %llu", (unsigned long long)v);
            break;
        case '.': /* STOP */
            if (vm->nstack != 1 || vm->stack[0]->kind == PK_MARK)
                PK_FAIL(vm, "STOP with %lld values on the stack", (long long)vm->nstack);
            *top = vm->stack[0];
            return 0;
        case 'c':
            rc = pk_global(vm);
            break;
        case ')':
            rc = pk_make_tuple(vm, vm->nstack, 0);
            break;
        case '}':
            rc = pk_push(vm, pk_new(vm, PK_DICT));
            break;
        case '(':
            rc = pk_push(vm, pk_new(vm, PK_MARK));
            break;
        case 't':
            rc = pk_find_mark(vm, &at);
            if (!rc)
                rc = pk_make_tuple(vm, at + 1, 1);
            break;
        case 0x85: /* TUPLE1, TUPLE2, TUPLE3 */
        case 0x86:
        case 0x87:
            if (!pk_has_values(vm, op - 0x84))
                PK_FAIL(vm, "TUPLE%u with too few values", op - 0x84);
            rc = pk_make_tuple(vm, vm->nstack - (op - 0x84), 0);
            break;
        case 'X': /* BINUNICODE */
            rc = pk_uint(vm, 4, &v);
            if (!rc)
                rc = pk_take(vm, (int64_t)v, &p);
            if (rc)
                break;
            o = pk_new(vm, PK_STR);
            rc = o ? pk_str(vm, o, p, (int64_t)v) : 0;
            if (!rc)
                rc = pk_push(vm, o);
            break;
        case 'J': /* BININT (signed 32), BININT1, BININT2 (unsigned) */
            rc = pk_uint(vm, 4, &v);
            if (!rc)
                rc = pk_push_int(vm, (int32_t)(uint32_t)v);
            break;
        case 'K':
        case 'M':
            rc = pk_uint(vm, op == 'K' ? 1 : 2, &v);
            if (!rc)
                rc = pk_push_int(vm, (int64_t)v);
            break;
        case 0x8a: /* LONG1: little-endian two's complement of n <= 8 bytes */
            rc = pk_uint(vm, 1, &v);
            if (!rc && v > 8)
                PK_FAIL(vm, "LONG1 of %llu bytes", (unsigned long long)v);
            if (!rc) {
                int nb = (int)v;
                rc = pk_uint(vm, nb, &v);
                if (!rc && nb > 0 && nb < 8 && ((v >> (8 * nb - 1)) & 1))
                    v |= ~(uint64_t)0 << (8 * nb);
            }
            if (!rc)
                rc = pk_push_int(vm, (int64_t)v);
            break;
        case 'G': /* BINFLOAT: big-endian double */
            rc = pk_take(vm, 8, &p);
            if (rc)
                break;
            o = pk_new(vm, PK_FLOAT);
            if (o) {
                uint64_t bits = 0;
                for (int k = 0; k < 8; k++)
                    bits = (bits << 8) | p[k];
                memcpy(&o->f, &bits, 8);
            }
            rc = pk_push(vm, o);
            break;
        case 0x88: /* NEWTRUE, NEWFALSE */
        case 0x89:
            o = pk_new(vm, PK_BOOL);
            if (o)
                o->i = op == 0x88;
            rc = pk_push(vm, o);
            break;
        case 'N':
            rc = pk_push(vm, pk_new(vm, PK_NONE));
            break;
        case 'R':
            rc = pk_reduce(vm);
            break;
        case 'Q':
            rc = pk_persid(vm);
            break;
        case 'q': /* BINPUT, LONG_BINPUT */
        case 'r':
            rc = pk_uint(vm, op == 'q' ? 1 : 4, &v);
            if (!rc)
                rc = pk_memo_put(vm, v);
            break;
        case 'h': /* BINGET, LONG_BINGET */
        case 'j':
            rc = pk_uint(vm, op == 'h' ? 1 : 4, &v);
            if (!rc)
                rc = pk_memo_get(vm, v);
            break;
        case 's':
            if (!pk_has_values(vm, 3))
                PK_FAIL(vm, "SETITEM on a short stack");
            rc = pk_setitems(vm, vm->nstack - 2);
            break;
        case 'u':
            rc = pk_find_mark(vm, &at);
            if (!rc) { /* drop the MARK, then store the pairs above it */
                memmove(vm->stack + at, vm->stack + at + 1,
                        (size_t)(vm->nstack - at - 1) * sizeof(pk_obj *));
                vm->nstack--;
                rc = pk_setitems(vm, at);
            }
            break;
        case 'b': /* BUILD: the OrderedDict's state (its _metadata) is ignored */
            if (!pk_has_values(vm, 2))
                PK_FAIL(vm, "BUILD on a short stack");
            vm->nstack--;
            break;
        default:
            vm->pos--;
            PK_FAIL(vm, "unsupported pickle opcode 0x%02x", op);
        }
        if (rc)
            return rc;
    }
}

/* ---- zip and storages ------------------------------------------------------------------- */

/* Reads the whole entry name (must be stored, not compressed) into a malloc'd buffer and checks
 * its CRC-32 against the zip's directory. libzip verifies the CRC only when a read reaches the
 * end of the entry (a read returning 0 bytes), which a read of exactly st.size bytes never does,
 * so the check is done here over the bytes read: a damaged model is refused, not used. */
static int zip_read_entry(zip_t *z, const char *path, const char *name, unsigned char **buf,
                          int64_t *len, char *err)
{
    zip_stat_t st;
    zip_int64_t idx = zip_name_locate(z, name, 0);
    if (idx < 0 || zip_stat_index(z, (zip_uint64_t)idx, 0, &st) != 0)
        return cp_errf(err, CP_EFORMAT, "%s: zip entry '%s' missing", path, name);
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_METHOD))
        return cp_errf(err, CP_EFORMAT, "%s: zip entry '%s': no size", path, name);
    if (st.comp_method != ZIP_CM_STORE)
        return cp_errf(err, CP_EUNSUPPORTED, "%s: zip entry '%s': compression method %d (only "
                       "stored entries are read)", path, name, (int)st.comp_method);
    if (st.size > ((zip_uint64_t)1 << 40))
        return cp_errf(err, CP_EFORMAT, "%s: zip entry '%s': size %llu", path, name,
                       (unsigned long long)st.size);
    /* a stored entry lies in the file: a larger size is a corrupt directory, refused before the
     * buffer is allocated (a 600-byte file could ask for 4 GiB, or 1 TiB with zip64) */
    struct stat fs;
    if (stat(path, &fs) == 0 && st.size > (zip_uint64_t)fs.st_size)
        return cp_errf(err, CP_EFORMAT, "%s: zip entry '%s': %llu bytes stored in a %lld-byte "
                       "file (corrupt zip directory)", path, name, (unsigned long long)st.size,
                       (long long)fs.st_size);
    *buf = malloc(st.size ? st.size : 1);
    if (!*buf)
        return cp_errf(err, CP_ENOMEM, "%s: zip entry '%s': out of memory", path, name);
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)idx, 0);
    zip_int64_t got = f ? zip_fread(f, *buf, st.size) : -1;
    if (f)
        zip_fclose(f);
    if (got != (zip_int64_t)st.size) {
        free(*buf);
        *buf = NULL;
        return cp_errf(err, CP_EFORMAT, "%s: zip entry '%s': truncated or unreadable (%s)", path,
                       name, zip_strerror(z));
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (zip_uint64_t at = 0; at < st.size;) { /* crc32 takes a uInt length */
        uInt chunk = st.size - at > (1u << 30) ? (1u << 30) : (uInt)(st.size - at);
        crc = crc32(crc, *buf + at, chunk);
        at += chunk;
    }
    if (!(st.valid & ZIP_STAT_CRC) || (uint32_t)crc != st.crc) {
        free(*buf);
        *buf = NULL;
        return cp_errf(err, CP_EFORMAT, "%s: zip entry '%s': CRC mismatch (directory %08x, data "
                       "%08x): the file is damaged", path, name, (unsigned)st.crc,
                       (unsigned)crc);
    }
    *len = (int64_t)st.size;
    return 0;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, bits;
    if (e == 0) { /* zero or subnormal: m * 2^-24 */
        float f = (float)m * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    if (e == 31)
        bits = sign | 0x7f800000u | (m << 13);
    else
        bits = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float storage_get(const unsigned char *s, enum pk_dtype dt, int64_t k)
{
    float f;
    double d;
    int64_t l;
    int32_t i;
    uint16_t h;
    switch (dt) {
    case DT_F32:
        memcpy(&f, s + 4 * k, 4);
        return f;
    case DT_F64:
        memcpy(&d, s + 8 * k, 8);
        return (float)d;
    case DT_F16:
        memcpy(&h, s + 2 * k, 2);
        return half_to_float(h);
    case DT_I64:
        memcpy(&l, s + 8 * k, 8);
        return (float)l;
    case DT_I32:
        memcpy(&i, s + 4 * k, 4);
        return (float)i;
    }
    return 0;
}

static int dtype_size(enum pk_dtype dt)
{
    return dt == DT_F64 || dt == DT_I64 ? 8 : dt == DT_F16 ? 2 : 4;
}

/* Fills t (name already set) from the pickled tensor o, reading its storage from the zip. */
static int load_tensor(zip_t *z, const char *path, const char *prefix, const pk_obj *o,
                       cp_tensor *t, char *err)
{
    const pk_obj *st = o->items[0], *size = o->items[2], *stride = o->items[3];
    int64_t offset = o->items[1]->i;
    t->ndim = (int)size->n;
    t->numel = 1;
    int64_t maxel = offset > 0 ? offset : 0; /* highest storage element touched */
    for (int d = 0; d < t->ndim; d++) {
        t->shape[d] = size->items[d]->i;
        int64_t sd = stride->items[d]->i;
        const int64_t lim = (int64_t)1 << 40;
        if (t->shape[d] < 0 || sd < 0 || t->shape[d] > lim || sd > lim)
            return cp_errf(err, CP_EFORMAT, "%s: tensor '%s': bad size/stride", path, t->name);
        if (t->shape[d] > 0 && t->numel > lim / t->shape[d])
            return cp_errf(err, CP_EFORMAT, "%s: tensor '%s': too large", path, t->name);
        t->numel *= t->shape[d];
        if (t->shape[d] > 1 && sd > 0) {
            if (t->shape[d] - 1 > (4 * lim - maxel) / sd)
                maxel = 4 * lim; /* beyond any storage: reported below */
            else
                maxel += (t->shape[d] - 1) * sd;
        }
    }
    /* zero strides (a broadcast view) give more elements than the storage holds: allowed up to
     * 2^24 (64 MiB of float32), not the 2^40 a 600-byte file could otherwise ask to allocate */
    if (t->numel > st->i && t->numel > ((int64_t)1 << 24))
        return cp_errf(err, CP_EFORMAT, "%s: tensor '%s': %lld elements from a storage of %lld "
                       "(zero strides): refused above 2^24", path, t->name, (long long)t->numel,
                       (long long)st->i);
    if (offset < 0 || offset > ((int64_t)1 << 40) || (t->numel > 0 && maxel >= st->i))
        return cp_errf(err, CP_EFORMAT, "%s: tensor '%s': storage '%s' out of bounds (needs "
                       "element %lld, has %lld)", path, t->name, st->s, (long long)maxel,
                       (long long)st->i);
    char name[1024];
    if (snprintf(name, sizeof name, "%sdata/%s", prefix, st->s) >= (int)sizeof name)
        return cp_errf(err, CP_EFORMAT, "%s: tensor '%s': storage key too long", path, t->name);
    unsigned char *buf;
    int64_t len;
    int rc = zip_read_entry(z, path, name, &buf, &len, err);
    if (rc)
        return rc;
    if (len / dtype_size(st->dtype) < st->i) {
        free(buf);
        return cp_errf(err, CP_EFORMAT, "%s: zip entry '%s': %lld bytes, storage needs %lld",
                       path, name, (long long)len, (long long)(st->i * dtype_size(st->dtype)));
    }
    t->data = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    if (!t->data) {
        free(buf);
        return cp_errf(err, CP_ENOMEM, "%s: tensor '%s': out of memory", path, t->name);
    }
    int64_t idx[CP_PTH_MAXDIM] = {0};
    for (int64_t k = 0; k < t->numel; k++) {
        int64_t e = offset;
        for (int d = 0; d < t->ndim; d++)
            e += idx[d] * stride->items[d]->i;
        t->data[k] = storage_get(buf, st->dtype, e);
        if (!isfinite(t->data[k])) {
            free(buf);
            return cp_errf(err, CP_EDATA, "%s: tensor '%s': %s at element %lld", path, t->name,
                           isnan(t->data[k]) ? "NaN" : "Inf", (long long)k);
        }
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    free(buf);
    return 0;
}

/* Finds "<prefix>/data.pkl"; prefix gets "<prefix>/". */
static int find_prefix(zip_t *z, const char *path, char *prefix, size_t len, char *err)
{
    zip_int64_t n = zip_get_num_entries(z, 0);
    for (zip_int64_t k = 0; k < n; k++) {
        const char *nm = zip_get_name(z, (zip_uint64_t)k, 0);
        size_t l = nm ? strlen(nm) : 0;
        if (l >= 9 && !strcmp(nm + l - 9, "/data.pkl") && strchr(nm, '/') == nm + l - 9 &&
            l - 8 < len) {
            memcpy(prefix, nm, l - 8);
            prefix[l - 8] = 0;
            return 0;
        }
    }
    return cp_errf(err, CP_EFORMAT, "%s: no '<folder>/data.pkl' in the zip: not a PyTorch model "
                   "file", path);
}

static int check_byteorder(zip_t *z, const char *path, const char *prefix, char *err)
{
    char name[1024];
    snprintf(name, sizeof name, "%sbyteorder", prefix);
    if (zip_name_locate(z, name, 0) < 0)
        return 0;
    unsigned char *buf;
    int64_t len;
    int rc = zip_read_entry(z, path, name, &buf, &len, err);
    if (rc)
        return rc;
    int little = len >= 6 && !memcmp(buf, "little", 6);
    free(buf);
    if (!little)
        return cp_errf(err, CP_EUNSUPPORTED, "%s: big-endian tensor data", path);
    return 0;
}

static int open_zip(const char *path, zip_t **z, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cp_errf(err, CP_EIO, "%s: cannot open: No such file or unreadable", path);
    unsigned char magic[2] = {0, 0};
    size_t got = fread(magic, 1, 2, f);
    fclose(f);
    if (got >= 1 && magic[0] == 0x80)
        return cp_errf(err, CP_EUNSUPPORTED, "%s: legacy (pre-1.6, non-zip) PyTorch format: "
                       "re-save it with a current PyTorch", path);
    if (got < 2 || magic[0] != 'P' || magic[1] != 'K')
        return cp_errf(err, CP_EFORMAT, "%s: not a zip file (a PyTorch model starts with 'PK')",
                       path);
    int zerr = 0;
    *z = zip_open(path, ZIP_RDONLY, &zerr);
    if (!*z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        cp_errf(err, CP_EFORMAT, "%s: not a readable zip (truncated or corrupt?): %s", path,
                zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return CP_EFORMAT;
    }
    return 0;
}

int cp_pth_read(const char *path, cp_pth *out, char *err)
{
    memset(out, 0, sizeof *out);
    zip_t *z = NULL;
    int rc = open_zip(path, &z, err);
    if (rc)
        return rc;
    char prefix[512];
    unsigned char *pkl = NULL;
    int64_t pkl_len = 0;
    pk_vm vm = {.path = path, .err = err};
    pk_obj *top = NULL;
    rc = find_prefix(z, path, prefix, sizeof prefix, err);
    if (!rc)
        rc = check_byteorder(z, path, prefix, err);
    if (!rc) {
        char name[1024];
        snprintf(name, sizeof name, "%sdata.pkl", prefix);
        rc = zip_read_entry(z, path, name, &pkl, &pkl_len, err);
    }
    if (!rc) {
        vm.buf = pkl;
        vm.len = pkl_len;
        rc = pk_run(&vm, &top);
    }
    if (!rc && top->kind != PK_DICT)
        rc = cp_errf(err, CP_EFORMAT, "%s: data.pkl is not a state dict", path);
    if (!rc) {
        out->t = calloc((size_t)(top->n / 2 + 1), sizeof(cp_tensor));
        if (!out->t)
            rc = cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
    }
    for (int64_t k = 0; !rc && k < top->n / 2; k++) {
        const pk_obj *key = top->items[2 * k], *val = top->items[2 * k + 1];
        if (key->kind != PK_STR || val->kind != PK_TENSOR) {
            rc = cp_errf(err, CP_EFORMAT, "%s: state dict entry %lld is not a name -> tensor",
                         path, (long long)k);
            break;
        }
        cp_tensor *t = &out->t[out->n++];
        t->name = strdup(key->s);
        rc = t->name ? load_tensor(z, path, prefix, val, t, err)
                     : cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
    }
    pk_vm_free(&vm);
    free(pkl);
    zip_discard(z);
    if (rc)
        cp_pth_free(out);
    return rc;
}

const cp_tensor *cp_pth_find(const cp_pth *p, const char *name)
{
    for (int k = 0; k < p->n; k++)
        if (!strcmp(p->t[k].name, name))
            return &p->t[k];
    return NULL;
}

void cp_pth_free(cp_pth *p)
{
    for (int k = 0; k < p->n; k++) {
        free(p->t[k].name);
        free(p->t[k].data);
    }
    free(p->t);
    p->n = 0;
    p->t = NULL;
}
