/* Tests of the .pth reader (src/pth.c) and of the model loader's refusals (src/cpnet.c):
 * the three shared models (tensor list, shapes, values against the raw zip entries), and bad
 * files generated here: missing, not a zip, truncated, legacy pickle, corrupt pickle, storage
 * out of bounds, a valid state dict that is not a CPnet. Each error must name the file. */
#include "cpnet.h"
#include "pth.h"

#include "cp_err.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

/* ---- the shared models ---------------------------------------------------------------------- */

/* The float32 bytes of zip entry name, read with libzip directly (not through the reader). */
static float *raw_entry(const char *path, const char *name, int64_t *n)
{
    zip_t *z = zip_open(path, ZIP_RDONLY, NULL);
    zip_stat_t st;
    if (!z || zip_stat(z, name, 0, &st)) {
        if (z)
            zip_discard(z);
        return NULL;
    }
    float *buf = malloc(st.size);
    zip_file_t *f = zip_fopen(z, name, 0);
    zip_fread(f, buf, st.size);
    zip_fclose(f);
    zip_discard(z);
    *n = (int64_t)(st.size / 4);
    return buf;
}

static void check_model(const char *file, const char *folder, int w1, float diam_labels)
{
    char path[4096]; /* kept: tu_path's buffers are recycled in the loop below */
    snprintf(path, sizeof path, "%s/models/%s", tu_shared(), file);
    if (!tu_have(path)) {
        printf("%s: in the extended parity suite only, not checked\n", file);
        return;
    }
    cp_pth p;
    char err[CP_ERR_LEN];
    int rc = cp_pth_read(path, &p, err);
    TU_CHECK(rc == 0, "%s: %s", file, err);
    if (rc)
        return;
    TU_CHECK(p.n == 313, "%s: %d tensors", file, p.n);
    TU_CHECK(!strcmp(p.t[0].name, "diam_mean") && !strcmp(p.t[1].name, "diam_labels") &&
                 !strcmp(p.t[p.n - 1].name, "output.2.bias"),
             "%s: state-dict order: %s, %s ... %s", file, p.t[0].name, p.t[1].name,
             p.t[p.n - 1].name);
    TU_CHECK(p.t[0].ndim == 1 && p.t[0].shape[0] == 1 && p.t[0].data[0] == 30.0f &&
                 p.t[1].data[0] == diam_labels,
             "%s: diam_mean %g diam_labels %.9g", file, p.t[0].data[0], p.t[1].data[0]);
    const cp_tensor *t = cp_pth_find(&p, "downsample.down.res_down_0.conv.conv_0.2.weight");
    TU_CHECK(t && t->ndim == 4 && t->shape[0] == w1 && t->shape[1] == 2 && t->shape[2] == 3 &&
                 t->shape[3] == 3 && t->numel == w1 * 18,
             "%s: res_down_0.conv.conv_0.2.weight shape", file);
    t = cp_pth_find(&p, "output.0.num_batches_tracked");
    TU_CHECK(t && t->ndim == 0 && t->numel == 1, "%s: num_batches_tracked is a scalar", file);
    t = cp_pth_find(&p, "upsample.up.res_up_3.conv.conv_1.full.weight");
    TU_CHECK(t && t->ndim == 2 && t->shape[0] == 8 * w1 && t->shape[1] == 8 * w1,
             "%s: res_up_3 full.weight shape", file);
    TU_CHECK(cp_pth_find(&p, "no.such.tensor") == NULL, "find of a missing name");
    /* float tensors equal their storage entry bit for bit; int64 counters are small integers */
    int nfloat = 0, nlong = 0, bad = 0;
    for (int k = 0; k < p.n; k++) {
        if (strstr(p.t[k].name, "num_batches_tracked")) {
            nlong++;
            bad += p.t[k].data[0] < 0 || p.t[k].data[0] != (float)(int64_t)p.t[k].data[0];
            continue;
        }
        nfloat++;
        int64_t n = 0;
        float *raw = raw_entry(path, tu_path("%s/data/%d", folder, k), &n);
        int same = raw && n == p.t[k].numel &&
                   memcmp(raw, p.t[k].data, (size_t)n * sizeof(float)) == 0;
        if (!same && bad++ == 0)
            printf("%s: tensor %d '%s' differs from entry %s/data/%d (%lld values)\n", file, k,
                   p.t[k].name, folder, k, (long long)n);
        free(raw);
    }
    TU_CHECK(nfloat == 272 && nlong == 41 && bad == 0, "%s: %d float, %d int64, %d mismatched",
             file, nfloat, nlong, bad);
    printf("%s: %d tensors (%d float32, %d int64), diam_labels %.9g\n", file, p.n, nfloat, nlong,
           p.t[1].data[0]);
    cp_pth_free(&p);
}

/* ---- generated files ------------------------------------------------------------------------ */

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

/* A pickle being written, as torch.save lays out a state dict (no memo). */
typedef struct pkw {
    unsigned char b[8192];
    size_t n;
} pkw;

static void put(pkw *w, const void *d, size_t n)
{
    if (w->n + n <= sizeof w->b) {
        memcpy(w->b + w->n, d, n);
        w->n += n;
    }
}
static void op(pkw *w, unsigned char c) { put(w, &c, 1); }
static void str(pkw *w, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    op(w, 'X');
    put(w, &n, 4);
    put(w, s, n);
}
static void glob(pkw *w, const char *s)
{
    op(w, 'c');
    put(w, s, strlen(s));
    op(w, '\n');
}
static void bint(pkw *w, int32_t v)
{
    op(w, 'J');
    put(w, &v, 4);
}
static void ituple(pkw *w, int n, const int64_t *v)
{
    op(w, '(');
    for (int k = 0; k < n; k++)
        bint(w, (int32_t)v[k]);
    op(w, 't');
}

typedef struct spec {
    const char *name, *key;
    int ndim;
    int64_t shape[4], stride[4], offset, numel; /* numel of the storage */
} spec;

static void tensor(pkw *w, const spec *s)
{
    str(w, s->name);
    glob(w, "torch._utils\n_rebuild_tensor_v2");
    op(w, '(');
    op(w, '(');
    str(w, "storage");
    glob(w, "torch\nFloatStorage");
    str(w, s->key);
    str(w, "cpu");
    bint(w, (int32_t)s->numel);
    op(w, 't');
    op(w, 'Q');
    bint(w, (int32_t)s->offset);
    ituple(w, s->ndim, s->shape);
    ituple(w, s->ndim, s->stride);
    op(w, 0x89);
    glob(w, "collections\nOrderedDict");
    op(w, ')');
    op(w, 'R');
    op(w, 't');
    op(w, 'R');
}

/* A state dict of the given tensors; storage key k holds floats k*1000 + 0, 1, 2, ... */
static void state_dict(pkw *w, int n, const spec *s)
{
    w->n = 0;
    op(w, 0x80);
    op(w, 2);
    glob(w, "collections\nOrderedDict");
    op(w, ')');
    op(w, 'R');
    op(w, '(');
    for (int k = 0; k < n; k++)
        tensor(w, &s[k]);
    op(w, 'u');
    op(w, '.');
}

/* Writes a zip "archive/data.pkl" + "archive/data/<key>" entries (stored) to path. */
static void write_pth(const char *path, const pkw *w, int n, const spec *s)
{
    remove(path);
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, NULL);
    zip_source_t *src = zip_source_buffer(z, w->b, w->n, 0);
    zip_int64_t i = zip_file_add(z, "archive/data.pkl", src, ZIP_FL_OVERWRITE);
    zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_STORE, 0);
    static float data[16][512];
    for (int k = 0; k < n; k++) {
        int key = atoi(s[k].key);
        for (int e = 0; e < 512; e++)
            data[key][e] = (float)(key * 1000 + e);
        src = zip_source_buffer(z, data[key], (size_t)s[k].numel * 4, 0);
        i = zip_file_add(z, tu_path("archive/data/%s", s[k].key), src, ZIP_FL_OVERWRITE);
        zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_STORE, 0);
    }
    zip_close(z);
}

/* cp_pth_read (or cp_model_load if model) must fail with code, naming path and containing
 * what. */
static void expect_fail(const char *path, int model, int code, const char *what)
{
    char err[CP_ERR_LEN] = "";
    int rc;
    if (model) {
        cp_model *m = NULL;
        rc = cp_model_load(path, &m, err);
        TU_CHECK(m == NULL, "%s: model returned on error", path);
    } else {
        cp_pth p;
        rc = cp_pth_read(path, &p, err);
        TU_CHECK(p.n == 0 && p.t == NULL, "%s: tensors returned on error", path);
    }
    printf("  %-44s -> %d: %s\n", strrchr(path, '/') + 1, rc, err);
    TU_CHECK(rc == code, "%s: code %d, expected %d (%s)", path, rc, code, err);
    TU_CHECK(strncmp(err, path, strlen(path)) == 0, "message does not start with the file: %s",
             err);
    TU_CHECK(strstr(err, what) != NULL, "message lacks '%s': %s", what, err);
}

static void bad_files(void)
{
    const char *dir = tu_tmpdir();
    char err[CP_ERR_LEN];
    const char *p;

    expect_fail(tu_path("%s/missing.pth", dir), 0, CP_EIO, "cannot open");
    expect_fail(tu_path("%s/missing.pth", dir), 1, CP_EIO, "cannot open");

    unsigned char junk[4096];
    uint32_t s = 7;
    for (size_t k = 0; k < sizeof junk; k++) {
        s = s * 1103515245u + 12345u;
        junk[k] = (unsigned char)(s >> 16);
    }
    junk[0] = 'x';
    p = tu_path("%s/random.pth", dir);
    write_file(p, junk, sizeof junk);
    expect_fail(p, 0, CP_EFORMAT, "not a zip file");
    p = tu_path("%s/text.pth", dir);
    write_file(p, "hello, I am not a model\n", 24);
    expect_fail(p, 1, CP_EFORMAT, "not a zip file");
    p = tu_path("%s/empty.pth", dir);
    write_file(p, "", 0);
    expect_fail(p, 0, CP_EFORMAT, "not a zip file");

    const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20};
    p = tu_path("%s/legacy.pth", dir);
    write_file(p, legacy, sizeof legacy);
    expect_fail(p, 1, CP_EUNSUPPORTED, "legacy");

    size_t n = 0;
    unsigned char *model =
        slurp(tu_need(tu_path("%s/models/tiny_random_nbase8_seed7.pth", tu_shared())), &n);
    TU_CHECK(model != NULL, "cannot read the tiny model");
    const size_t cuts[5] = {2, 1000, n / 2, n - 100, n - 1};
    for (int k = 0; model && k < 5; k++) {
        p = tu_path("%s/truncated_%zu.pth", dir, cuts[k]);
        write_file(p, model, cuts[k]);
        expect_fail(p, 1, CP_EFORMAT, "truncated or corrupt");
    }
    free(model);

    /* a hand-written state dict: strides, offsets, a shared storage */
    pkw w;
    spec ok[2] = {
        {"a.weight", "0", 2, {2, 2}, {1, 3}, 1, 6}, /* transposed view of storage 0 */
        {"b", "0", 1, {3}, {2}, 0, 6},              /* same storage, stride 2 */
    };
    state_dict(&w, 2, ok);
    p = tu_path("%s/views.pth", dir);
    write_pth(p, &w, 2, ok);
    cp_pth pt;
    int rc = cp_pth_read(p, &pt, err);
    TU_CHECK(rc == 0 && pt.n == 2, "views.pth: %d %s", rc, err);
    if (rc == 0 && pt.n == 2) {
        const float a[4] = {1, 4, 2, 5}, b[3] = {0, 2, 4};
        TU_CHECK(!memcmp(pt.t[0].data, a, sizeof a) && !memcmp(pt.t[1].data, b, sizeof b),
                 "views.pth: strided values %g %g %g %g / %g %g %g", pt.t[0].data[0],
                 pt.t[0].data[1], pt.t[0].data[2], pt.t[0].data[3], pt.t[1].data[0],
                 pt.t[1].data[1], pt.t[1].data[2]);
        cp_pth_free(&pt);
    }
    /* ...which is not a CPnet */
    expect_fail(p, 1, CP_EFORMAT, "tensor 'downsample.down.res_down_0.proj.1.weight' missing");

    /* storage out of bounds: 4 elements of a 3-element storage */
    spec oob[1] = {{"x", "0", 1, {4}, {1}, 0, 3}};
    state_dict(&w, 1, oob);
    p = tu_path("%s/oob.pth", dir);
    write_pth(p, &w, 1, oob);
    expect_fail(p, 0, CP_EFORMAT, "tensor 'x': storage '0' out of bounds");

    /* storage larger than its zip entry */
    spec big[1] = {{"x", "0", 1, {3}, {1}, 0, 3}};
    state_dict(&w, 1, big);
    p = tu_path("%s/short_entry.pth", dir);
    write_pth(p, &w, 1, big);
    w.n = 0;
    {
        /* rewrite with the pickle claiming 600 elements: entry has 3*4 bytes */
        spec claim[1] = {{"x", "0", 1, {3}, {1}, 0, 600}};
        state_dict(&w, 1, claim);
        zip_t *z = zip_open(p, 0, NULL);
        zip_source_t *src = zip_source_buffer(z, w.b, w.n, 0);
        zip_int64_t i = zip_file_add(z, "archive/data.pkl", src, ZIP_FL_OVERWRITE);
        zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_STORE, 0);
        zip_close(z);
    }
    expect_fail(p, 0, CP_EFORMAT, "bytes, storage needs 2400");

    /* corrupt pickles: unknown opcode, unknown global, cut short */
    state_dict(&w, 1, big);
    w.b[2] = 0xff;
    p = tu_path("%s/opcode.pth", dir);
    write_pth(p, &w, 1, big);
    expect_fail(p, 0, CP_EFORMAT, "unsupported pickle opcode 0xff");
    state_dict(&w, 1, big);
    memcpy(w.b + 3, "os\nsystem\n", 10); /* overwrite the first GLOBAL's text */
    p = tu_path("%s/global.pth", dir);
    write_pth(p, &w, 1, big);
    expect_fail(p, 0, CP_EFORMAT, "unsupported pickle global");
    state_dict(&w, 1, big);
    w.n -= 5;
    p = tu_path("%s/short_pickle.pth", dir);
    write_pth(p, &w, 1, big);
    expect_fail(p, 0, CP_EFORMAT, "truncated pickle");

    /* a zip without <folder>/data.pkl */
    p = tu_path("%s/nopkl.pth", dir);
    remove(p);
    zip_t *z = zip_open(p, ZIP_CREATE, NULL);
    zip_file_add(z, "readme.txt", zip_source_buffer(z, "hi", 2, 0), 0);
    zip_close(z);
    expect_fail(p, 0, CP_EFORMAT, "no '<folder>/data.pkl'");

    /* CPnet-like files: the architecture tensors, then wrong nout / a missing tensor */
    spec arch[6] = {
        {"downsample.down.res_down_0.proj.1.weight", "0", 4, {8, 2, 1, 1}, {2, 1, 1, 1}, 0, 16},
        {"downsample.down.res_down_1.proj.1.weight", "1", 4, {16, 8, 1, 1}, {8, 1, 1, 1}, 0, 128},
        {"downsample.down.res_down_2.proj.1.weight", "2", 4, {32, 16, 1, 1}, {16, 1, 1, 1}, 0, 512},
        {"downsample.down.res_down_3.proj.1.weight", "3", 4, {16, 32, 1, 1}, {32, 1, 1, 1}, 0, 512},
        {"upsample.up.res_up_0.conv.conv_1.full.weight", "4", 2, {8, 64}, {64, 1}, 0, 512},
        {"output.2.weight", "5", 4, {2, 8, 1, 1}, {8, 1, 1, 1}, 0, 16},
    };
    state_dict(&w, 6, arch);
    p = tu_path("%s/nout2.pth", dir);
    write_pth(p, &w, 6, arch);
    expect_fail(p, 1, CP_EFORMAT, "tensor 'upsample.up.res_up_0.conv.conv_1.full.weight' has "
                                  "style width 64, expected 16");
    arch[4].shape[1] = 16;
    arch[4].stride[0] = 16;
    arch[4].numel = 128;
    state_dict(&w, 6, arch);
    write_pth(p, &w, 6, arch);
    expect_fail(p, 1, CP_EFORMAT, "tensor 'output.2.weight' has 2 outputs, expected 3");
    arch[5].shape[0] = 3;
    arch[5].numel = 24;
    state_dict(&w, 6, arch);
    p = tu_path("%s/incomplete.pth", dir);
    write_pth(p, &w, 6, arch);
    expect_fail(p, 1, CP_EFORMAT,
                "tensor 'downsample.down.res_down_0.conv.conv_0.2.weight' missing");
}

/* ---- damaged copies of a real model ------------------------------------------------------- */

/* The largest "<folder>/data/<key>" entry of the zip at path (its name into name). */
static zip_uint64_t largest_storage(zip_t *z, char *name, size_t len)
{
    zip_uint64_t best = 0, best_size = 0;
    for (zip_int64_t k = 0; k < zip_get_num_entries(z, 0); k++) {
        zip_stat_t st;
        if (zip_stat_index(z, (zip_uint64_t)k, 0, &st) || !strstr(st.name, "/data/"))
            continue;
        if (st.size > best_size)
            best = (zip_uint64_t)k, best_size = st.size;
    }
    snprintf(name, len, "%s", zip_get_name(z, best, 0));
    return best;
}

/* One flipped bit in the stored bytes of a tensor: the zip stays readable, the entry's CRC-32
 * no longer matches (libzip checks it only when a read runs past the end of the entry); and
 * NaN / Inf weights written with a valid CRC (libzip rebuilds the entry). */
static void damaged_models(void)
{
    const char *dir = tu_tmpdir();
    const char *src = tu_path("%s/models/tiny_random_nbase8_seed7.pth", tu_shared());
    size_t n = 0;
    unsigned char *model = slurp(src, &n);
    zip_t *z = zip_open(src, ZIP_RDONLY, NULL);
    TU_CHECK(model && z, "cannot read %s", src);
    if (!model || !z)
        return;
    char name[512];
    zip_uint64_t idx = largest_storage(z, name, sizeof name);
    zip_stat_t st;
    zip_stat_index(z, idx, 0, &st);
    unsigned char *data = malloc(st.size);
    zip_file_t *f = zip_fopen_index(z, idx, 0);
    TU_CHECK(f && zip_fread(f, data, st.size) == (zip_int64_t)st.size, "cannot read %s", name);
    zip_fclose(f);
    zip_discard(z);
    unsigned char *at = NULL; /* stored: the bytes are in the file verbatim */
    for (size_t i = 0; !at && i + st.size <= n; i++)
        if (!memcmp(model + i, data, st.size))
            at = model + i;
    TU_CHECK(at != NULL, "%s: data of %s not found", src, name);
    if (at) {
        at[st.size / 2] ^= 0x10;
        const char *p = tu_path("%s/bitflip.pth", dir);
        write_file(p, model, n);
        expect_fail(p, 0, CP_EFORMAT, tu_path("zip entry '%s': CRC mismatch", name));
        expect_fail(p, 1, CP_EFORMAT, "CRC mismatch");
    }
    if (at)
        at[st.size / 2] ^= 0x10; /* intact again */
    const float bad[2] = {NAN, INFINITY};
    const char *what[2] = {"NaN at element", "Inf at element"};
    for (int k = 0; k < 2; k++) {
        const char *p = tu_path("%s/nonfinite%d.pth", dir, k);
        write_file(p, model, n);
        zip_t *w = zip_open(p, 0, NULL);
        unsigned char *mod = malloc(st.size);
        memcpy(mod, data, st.size);
        memcpy(mod + 4 * 5, &bad[k], 4); /* element 5 of the storage */
        zip_source_t *s = zip_source_buffer(w, mod, st.size, 0);
        TU_CHECK(w && s && zip_file_replace(w, idx, s, 0) == 0 &&
                     zip_set_file_compression(w, idx, ZIP_CM_STORE, 0) == 0 && zip_close(w) == 0,
                 "cannot rewrite %s", p);
        free(mod);
        expect_fail(p, 0, CP_EDATA, what[k]);
        expect_fail(p, 1, CP_EDATA, "tensor '");
    }
    free(data);
    free(model);
}

int main(void)
{
    check_model("random_cp3_seed0.pth", "random_cp3_seed0", 32, 17.5f);
    check_model("tiny_random_nbase8_seed7.pth", "tiny_random_nbase8_seed7", 8, 30.0f);
    check_model("synth_trained_nbase16.pth", "synth_trained_nbase16", 16, 37.376163f);
    bad_files();
    damaged_models();
    return tu_finish();
}
