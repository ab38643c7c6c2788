/* CPnet (CELLPOSE_ALGORITHM.md §3.2): loading the weights from a .pth file (architecture derived
 * from tensor shapes, BatchNorm turned into per-channel affines, projections folded), model file
 * resolution, and the float32 forward pass of a batch of tiles.
 *
 * Layout: activations are (C, H, W) per tile. Two ways to run a convolution, chosen by the layer's
 * shape only (wino_shape):
 * - 3x3 convolutions from 8 input channels up: Winograd F(4x4, 3x3) (winograd.h), the input's
 *   BatchNorm affine + ReLU (and nearest upsampling in the decoder) applied while the input is
 *   transformed; one unit of work is a (tile, block of tile rows) item.
 * - the others (1x1 projections and output, the first 3x3 conv with the 2 image channels): one
 *   OpenBLAS sgemm per (tile, pixel block): out[:, block] += W (cout x cin*k*k) * col (cin*k*k x
 *   block), where col is the im2col of the block taken from the activated input (applied once per
 *   layer).
 * Block boundaries depend only on the layer shape, each sgemm call runs on one thread (OpenBLAS is
 * single-threaded inside an active OpenMP region), and OpenMP distributes whole items: a tile's
 * bits never depend on batch size or thread count (DESIGN.md §2.10). */
#include "cpnet.h"

#include "cp_err.h"
#include "pth.h"
#include "winograd.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BN_EPS 1e-5
/* Floats of an im2col panel (cin*k*k x block): ~1 MiB, so that it stays in L2 while packed. */
#define COL_PANEL_FLOATS (1 << 18)
/* At most this many tiles' activations are held at once (per-tile memory is bounded). */
#define CHUNK_TILES 8
#define CHUNK_BYTES ((int64_t)512 << 20)
/* 3x3 convs with fewer input channels stay on im2col (wino_shape). */
#define WINO_MIN_CIN 8
/* Output tile of the Winograd convs: F(4x4, 3x3) (CP_NET_CONV=f4 / f6 at load picks one). */
#define WINO_M 4

/* One convolution with the BatchNorm (+ ReLU) of its input, or a folded projection. */
typedef struct conv {
    int cin, cout, k;
    int relu;            /* ReLU after the input affine */
    float *w;            /* cout x (cin*k*k), PyTorch's (O, C, u, v) order */
    float *b;            /* cout */
    float *scale, *shift; /* input affine (cin each), NULL when folded into w and b */
    float *wu;           /* Winograd weights (winograd.h) of a 3x3 conv that uses them, or NULL */
    int wm;              /* their output tile: F(wm x wm, 3x3) */
} conv;

/* A decoder conv_1..3: BN(x + F) with F = full_w * style + full_b per tile. */
typedef struct style_mix {
    float *w; /* cin x S */
    float *b; /* cin */
} style_mix;

struct cp_model {
    cp_model_info info;
    conv down[4][4], down_proj[4];
    conv up[4][4], up_proj[4];
    style_mix mix[4][4]; /* [n][1..3] */
    conv out;
};

/* ---- loading -------------------------------------------------------------------------------- */

/* The tensor name with exactly the given shape (ndim dims; -1 = any), or an error naming it. */
static int want(const cp_pth *p, const char *path, const char *name, int ndim, const int64_t *dims,
                const cp_tensor **t, char *err)
{
    *t = cp_pth_find(p, name);
    if (!*t)
        return cp_errf(err, CP_EFORMAT, "%s: not a CPnet model: tensor '%s' missing", path, name);
    int ok = (*t)->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = dims[d] < 0 || (*t)->shape[d] == dims[d];
    if (!ok) {
        char got[128] = "", exp[128] = "";
        for (int d = 0; d < (*t)->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)(*t)->shape[d]);
        for (int d = 0; d < ndim; d++)
            snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", d ? ", " : "",
                     (long long)dims[d]);
        return cp_errf(err, CP_EFORMAT, "%s: not a CPnet model: tensor '%s' has shape (%s), "
                       "expected (%s)", path, name, got, exp);
    }
    return 0;
}

static float *copy_floats(const float *src, int64_t n)
{
    float *d = malloc((size_t)n * sizeof(float));
    if (d)
        memcpy(d, src, (size_t)n * sizeof(float));
    return d;
}

/* BatchNorm `<prefix>` (cin channels) as scale/shift: y = x*scale + shift. */
static int load_bn(const cp_pth *p, const char *path, const char *prefix, int cin, float **scale,
                   float **shift, char *err)
{
    static const char *parts[4] = {"weight", "bias", "running_mean", "running_var"};
    const cp_tensor *t[4];
    int64_t dims[1] = {cin};
    char name[256];
    for (int k = 0; k < 4; k++) {
        if (snprintf(name, sizeof name, "%s.%s", prefix, parts[k]) >= (int)sizeof name)
            return cp_errf(err, CP_EFORMAT, "%s: tensor name too long", path);
        int rc = want(p, path, name, 1, dims, &t[k], err);
        if (rc)
            return rc;
    }
    *scale = malloc((size_t)cin * sizeof(float));
    *shift = malloc((size_t)cin * sizeof(float));
    if (!*scale || !*shift)
        return cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
    for (int c = 0; c < cin; c++) {
        double s = (double)t[0]->data[c] / sqrt((double)t[3]->data[c] + BN_EPS);
        (*scale)[c] = (float)s;
        (*shift)[c] = (float)((double)t[1]->data[c] - (double)t[2]->data[c] * s);
    }
    return 0;
}

/* conv `<prefix>.<bn_i>` (BatchNorm) then `<prefix>.<conv_i>` (k x k conv, cin -> cout). A
 * projection (fold) has no ReLU, so its affine is folded into the 1x1 weights exactly:
 * W' = W*scale, b' = b + W*shift. */
/* Whether a conv runs as Winograd F(4x4, 3x3) (winograd.h) rather than im2col + sgemm: by its
 * shape only (DESIGN.md §2.10). 3x3 convs from 8 input channels up (the first conv, with the 2
 * image channels, has too little reduction to pay for the transforms). CP_NET_CONV=im2col in the
 * environment at model load turns Winograd off (for comparisons). */
static int wino_shape(const conv *cv)
{
    const char *e = getenv("CP_NET_CONV");
    if (cv->k != 3 || cv->cin < WINO_MIN_CIN || (e && !strcmp(e, "im2col")))
        return 0;
    return e && !strcmp(e, "f6") ? 6 : e && !strcmp(e, "f4") ? 4 : WINO_M;
}

static int load_conv(const cp_pth *p, const char *path, const char *prefix, int bn_i, int conv_i,
                     int cin, int cout, int k, int fold, conv *cv, char *err)
{
    char name[256];
    const cp_tensor *w, *b;
    int64_t wd[4] = {cout, cin, k, k}, bd[1] = {cout};
    cv->cin = cin;
    cv->cout = cout;
    cv->k = k;
    cv->relu = !fold;
    snprintf(name, sizeof name, "%s.%d.weight", prefix, conv_i);
    int rc = want(p, path, name, 4, wd, &w, err);
    snprintf(name, sizeof name, "%s.%d.bias", prefix, conv_i);
    if (!rc)
        rc = want(p, path, name, 1, bd, &b, err);
    snprintf(name, sizeof name, "%s.%d", prefix, bn_i);
    if (!rc)
        rc = load_bn(p, path, name, cin, &cv->scale, &cv->shift, err);
    if (rc)
        return rc;
    cv->w = copy_floats(w->data, w->numel);
    cv->b = copy_floats(b->data, b->numel);
    if (!cv->w || !cv->b)
        return cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
    if ((cv->wm = wino_shape(cv))) {
        cv->wu = malloc((size_t)(cv->wm + 2) * (cv->wm + 2) * cout * cin * sizeof(float));
        if (!cv->wu)
            return cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
        cp_wino_weights(cv->w, cout, cin, cv->wm, cv->wu);
    }
    if (fold) {
        int64_t kk = (int64_t)cin * k * k;
        for (int o = 0; o < cout; o++) {
            double bias = cv->b[o];
            for (int64_t c = 0; c < kk; c++) {
                bias += (double)w->data[o * kk + c] * cv->shift[c / (k * k)];
                cv->w[o * kk + c] = w->data[o * kk + c] * cv->scale[c / (k * k)];
            }
            cv->b[o] = (float)bias;
        }
        free(cv->scale);
        free(cv->shift);
        cv->scale = cv->shift = NULL;
    }
    return 0;
}

static void conv_free(conv *cv)
{
    free(cv->w);
    free(cv->b);
    free(cv->scale);
    free(cv->shift);
    free(cv->wu);
}

static int load_mix(const cp_pth *p, const char *path, const char *prefix, int c, int S,
                    style_mix *mx, char *err)
{
    char name[256];
    const cp_tensor *w, *b;
    int64_t wd[2] = {c, S}, bd[1] = {c};
    snprintf(name, sizeof name, "%s.full.weight", prefix);
    int rc = want(p, path, name, 2, wd, &w, err);
    snprintf(name, sizeof name, "%s.full.bias", prefix);
    if (!rc)
        rc = want(p, path, name, 1, bd, &b, err);
    if (rc)
        return rc;
    mx->w = copy_floats(w->data, w->numel);
    mx->b = copy_floats(b->data, b->numel);
    if (!mx->w || !mx->b)
        return cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
    return 0;
}

/* The widths from the tensor shapes (§3.1), before any other check. */
static int derive_arch(const cp_pth *p, const char *path, cp_model_info *in, char *err)
{
    const cp_tensor *t;
    char name[128];
    int64_t any4[4] = {-1, -1, 1, 1}, any2[2] = {-1, -1};
    for (int n = 0; n < 4; n++) {
        snprintf(name, sizeof name, "downsample.down.res_down_%d.proj.1.weight", n);
        int rc = want(p, path, name, 4, any4, &t, err);
        if (rc)
            return rc;
        if (n == 0)
            in->nbase[0] = (int)t->shape[1];
        in->nbase[n + 1] = (int)t->shape[0];
    }
    int rc = want(p, path, "upsample.up.res_up_0.conv.conv_1.full.weight", 2, any2, &t, err);
    if (rc)
        return rc;
    in->style_dim = (int)t->shape[1];
    rc = want(p, path, "output.2.weight", 4, any4, &t, err);
    if (rc)
        return rc;
    in->nout = (int)t->shape[0];
    in->nchan = in->nbase[0];
    for (int n = 0; n < 5; n++)
        if (in->nbase[n] < 1 || in->nbase[n] > 4096)
            return cp_errf(err, CP_EFORMAT, "%s: not a CPnet model: width %d at level %d", path,
                           in->nbase[n], n);
    if (in->style_dim != in->nbase[4])
        return cp_errf(err, CP_EFORMAT, "%s: not a CPnet model: tensor 'upsample.up.res_up_0."
                       "conv.conv_1.full.weight' has style width %d, expected %d", path,
                       in->style_dim, in->nbase[4]);
    if (in->nout != 3)
        return cp_errf(err, CP_EFORMAT, "%s: not a CPnet model: tensor 'output.2.weight' has %d "
                       "outputs, expected 3", path, in->nout);
    return 0;
}

static int load_weights(const cp_pth *p, const char *path, cp_model *m, char *err)
{
    const int *nb = m->info.nbase;
    int nbup[5] = {nb[1], nb[2], nb[3], nb[4], nb[4]};
    char pre[128];
    int rc = 0;
    for (int n = 0; n < 4 && !rc; n++) {
        int cin = nb[n], cout = nb[n + 1];
        for (int c = 0; c < 4 && !rc; c++) {
            snprintf(pre, sizeof pre, "downsample.down.res_down_%d.conv.conv_%d", n, c);
            rc = load_conv(p, path, pre, 0, 2, c ? cout : cin, cout, 3, 0, &m->down[n][c], err);
        }
        snprintf(pre, sizeof pre, "downsample.down.res_down_%d.proj", n);
        if (!rc)
            rc = load_conv(p, path, pre, 0, 1, cin, cout, 1, 1, &m->down_proj[n], err);
    }
    for (int n = 0; n < 4 && !rc; n++) {
        int cin = nbup[n + 1], cout = nbup[n];
        snprintf(pre, sizeof pre, "upsample.up.res_up_%d.conv.conv_0", n);
        rc = load_conv(p, path, pre, 0, 2, cin, cout, 3, 0, &m->up[n][0], err);
        for (int c = 1; c < 4 && !rc; c++) {
            snprintf(pre, sizeof pre, "upsample.up.res_up_%d.conv.conv_%d.conv", n, c);
            rc = load_conv(p, path, pre, 0, 2, cout, cout, 3, 0, &m->up[n][c], err);
            snprintf(pre, sizeof pre, "upsample.up.res_up_%d.conv.conv_%d", n, c);
            if (!rc)
                rc = load_mix(p, path, pre, cout, m->info.style_dim, &m->mix[n][c], err);
        }
        snprintf(pre, sizeof pre, "upsample.up.res_up_%d.proj", n);
        if (!rc)
            rc = load_conv(p, path, pre, 0, 1, cin, cout, 1, 1, &m->up_proj[n], err);
    }
    if (!rc)
        rc = load_conv(p, path, "output", 0, 2, nb[1], m->info.nout, 1, 0, &m->out, err);
    const cp_tensor *t;
    int64_t one[1] = {1};
    if (!rc)
        rc = want(p, path, "diam_mean", 1, one, &t, err);
    if (!rc) {
        m->info.diam_mean = t->data[0];
        rc = want(p, path, "diam_labels", 1, one, &t, err);
    }
    if (!rc)
        m->info.diam_labels = t->data[0];
    return rc;
}

int cp_model_load(const char *path, cp_model **out, char *err)
{
    *out = NULL;
    cp_pth p;
    int rc = cp_pth_read(path, &p, err);
    if (rc)
        return rc;
    cp_model *m = calloc(1, sizeof *m);
    if (!m) {
        cp_pth_free(&p);
        return cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
    }
    rc = derive_arch(&p, path, &m->info, err);
    if (!rc)
        rc = load_weights(&p, path, m, err);
    cp_pth_free(&p);
    if (!rc && !SHA256File(path, m->info.sha256))
        rc = cp_errf(err, CP_EIO, "%s: cannot read for its sha256", path);
    if (rc) {
        cp_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

const cp_model_info *cp_model_get_info(const cp_model *m) { return &m->info; }

int cp_model_winograd_convs(const cp_model *m)
{
    int n = 0;
    for (int l = 0; l < 4; l++)
        for (int c = 0; c < 4; c++)
            n += (m->down[l][c].wu != NULL) + (m->up[l][c].wu != NULL);
    return n;
}

void cp_model_free(cp_model *m)
{
    if (!m)
        return;
    for (int n = 0; n < 4; n++) {
        for (int c = 0; c < 4; c++) {
            conv_free(&m->down[n][c]);
            conv_free(&m->up[n][c]);
            free(m->mix[n][c].w);
            free(m->mix[n][c].b);
        }
        conv_free(&m->down_proj[n]);
        conv_free(&m->up_proj[n]);
    }
    conv_free(&m->out);
    free(m);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cp_model_resolve(const char *name_or_path, char *path_out, int path_len, char *err)
{
    if (is_file(name_or_path)) {
        if ((int)strlen(name_or_path) >= path_len)
            return cp_errf(err, CP_EPARAM, "%s: model path too long", name_or_path);
        strcpy(path_out, name_or_path);
        return 0;
    }
    const char *dir = getenv("CELLPOSE_LOCAL_MODELS_PATH");
    const char *home = getenv("HOME");
    char where[1024];
    if (dir && *dir)
        snprintf(where, sizeof where, "%s", dir);
    else
        snprintf(where, sizeof where, "%s/.cellpose/models", home ? home : "");
    if (snprintf(path_out, (size_t)path_len, "%s/%s", where, name_or_path) < path_len &&
        !strchr(name_or_path, '/') && is_file(path_out))
        return 0;
    path_out[0] = 0;
    /* One line that also says how to get a missing model: this tool cannot download Cellpose's
     * built-in weights, a Python Cellpose install keeps them in ~/.cellpose/models. */
    const char *var = dir && *dir ? " ($CELLPOSE_LOCAL_MODELS_PATH)" : "";
    return cp_errf(err, CP_EIO, "%s: model not found: not a file, and not in %s%s; cellpose-mpi "
                   "cannot download Cellpose's built-in models: copy the file from a Python "
                   "Cellpose install's ~/.cellpose/models into %s%s%s", name_or_path, where, var,
                   where, var, *var ? "" : " (or into $CELLPOSE_LOCAL_MODELS_PATH if you set it)");
}

/* ---- forward -------------------------------------------------------------------------------- */

/* Pixels per sgemm block for a reduction of K rows: a multiple of 16, function of K only. */
static int64_t block_pixels(int64_t K)
{
    int64_t b = COL_PANEL_FLOATS / K / 16 * 16;
    return b < 64 ? 64 : b > 2048 ? 2048 : b;
}

/* A convolution over ntile tiles: out_t (+)= conv(act(in_t)). The input of tile t is at
 * in + t*in_stride with resolution (H >> up, W >> up): up = 1 reads it through nearest
 * upsampling. shift (if not NULL, shift_stride per tile) replaces the conv's input shift. */
typedef struct conv_job {
    const conv *cv;
    const float *in;
    int64_t in_stride;
    int up;
    const float *shift;
    int64_t shift_stride;
    float *out;
    int64_t out_stride;
    int accumulate;
} conv_job;

/* act_t[c] = ReLU?(UP^up(in_t[c])*scale[c] + shift_t[c]) for planes of H x W. */
static void activate(const conv_job *j, int ntile, int H, int W, float *act, int64_t act_stride)
{
    const conv *cv = j->cv;
    const int up = j->up, Ws = W >> up;
    const int64_t P = (int64_t)H * W, Ps = (int64_t)(H >> up) * Ws;
#pragma omp parallel for schedule(static)
    for (int64_t tc = 0; tc < (int64_t)ntile * cv->cin; tc++) {
        const int64_t t = tc / cv->cin;
        const int c = (int)(tc % cv->cin);
        const float *x = j->in + t * j->in_stride + c * Ps;
        float *y = act + t * act_stride + c * P;
        const float s = cv->scale[c];
        const float b = (j->shift ? j->shift + t * j->shift_stride : cv->shift)[c];
        for (int r = 0; r < H; r++) {
            const float *xr = x + (int64_t)(r >> up) * Ws;
            float *yr = y + (int64_t)r * W;
            if (up && (r & 1)) { /* the same source row as the row above */
                memcpy(yr, yr - W, (size_t)W * sizeof(float));
                continue;
            }
            for (int q = 0; q < Ws; q++) {
                float v = xr[q] * s + b;
                v = cv->relu && v < 0 ? 0.0f : v; /* NaN propagates, as torch.relu */
                if (up) {
                    yr[2 * q] = v;
                    yr[2 * q + 1] = v;
                } else {
                    yr[q] = v;
                }
            }
        }
    }
}

/* im2col of pixels [p0, p0+np) of an H x W output: row (c, u, v) of col holds in[c] at the
 * (u, v) neighbour of each pixel, zero outside the image. */
static void im2col(const float *in, int cin, int k, int H, int W, int64_t p0, int64_t np,
                   float *col)
{
    const int r = k / 2;
    const int64_t P = (int64_t)H * W;
    for (int c = 0; c < cin; c++)
        for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++) {
                float *dst = col + ((int64_t)(c * k + u) * k + v) * np;
                for (int64_t p = p0; p < p0 + np;) {
                    const int y = (int)(p / W), x0 = (int)(p % W);
                    const int x1 = (int)(p0 + np - p < W - x0 ? x0 + (p0 + np - p) : W);
                    const int sy = y + u - r, dx = v - r;
                    float *d = dst + (p - p0) - x0; /* d[x] for x in [x0, x1) */
                    p += x1 - x0;
                    if (sy < 0 || sy >= H) {
                        memset(d + x0, 0, (size_t)(x1 - x0) * sizeof(float));
                        continue;
                    }
                    const float *row = in + c * P + (int64_t)sy * W;
                    int xa = x0 + dx < 0 ? -dx : x0, xb = x1 + dx > W ? W - dx : x1;
                    xa = xa > x1 ? x1 : xa;
                    xb = xb < xa ? xa : xb;
                    for (int x = x0; x < xa; x++)
                        d[x] = 0.0f;
                    memcpy(d + xa, row + xa + dx, (size_t)(xb - xa) * sizeof(float));
                    for (int x = xb; x < x1; x++)
                        d[x] = 0.0f;
                }
            }
}

/* A Winograd conv job: the input is activated (and upsampled) inside the input transform;
 * OpenMP distributes whole (tile, block) items. */
static void run_wino(const conv_job *j, int ntile, int H, int W, float **ws)
{
    const conv *cv = j->cv;
    cp_wino_plan pl;
    cp_wino_plan_make(cv->cin, cv->cout, H, W, cv->wm, &pl);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t item = 0; item < (int64_t)ntile * pl.nblk; item++) {
        const int64_t t = item / pl.nblk;
        const cp_wino_src s = {j->in + t * j->in_stride, j->up, cv->scale,
                               j->shift ? j->shift + t * j->shift_stride : cv->shift, cv->relu};
        cp_wino_block(&pl, cv->wu, cv->b, &s, (int)(item % pl.nblk), j->out + t * j->out_stride,
                      j->accumulate, ws[omp_get_thread_num()]);
    }
}

/* Runs job on ntile tiles of H x W. act (act_stride per tile) receives the activated input;
 * col[thread] are the im2col panels. */
static void run_conv(const conv_job *j, int ntile, int H, int W, float *act, int64_t act_stride,
                     float **col)
{
    const conv *cv = j->cv;
    if (cv->wu) {
        run_wino(j, ntile, H, W, col);
        return;
    }
    const int64_t P = (int64_t)H * W, K = (int64_t)cv->cin * cv->k * cv->k;
    const int64_t bp = block_pixels(K), nblk = (P + bp - 1) / bp;
    const float *in = j->in;
    int64_t in_stride = j->in_stride;
    if (cv->scale) {
        activate(j, ntile, H, W, act, act_stride);
        in = act;
        in_stride = act_stride;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t item = 0; item < ntile * nblk; item++) {
        const int64_t t = item / nblk, p0 = item % nblk * bp;
        const int64_t np = P - p0 < bp ? P - p0 : bp;
        const float *x = in + t * in_stride;
        float *out = j->out + t * j->out_stride + p0;
        for (int o = 0; o < cv->cout; o++) {
            float *d = out + o * P;
            const float b = cv->b[o];
            if (j->accumulate)
                for (int64_t q = 0; q < np; q++)
                    d[q] += b;
            else
                for (int64_t q = 0; q < np; q++)
                    d[q] = b;
        }
        const float *B = x + p0; /* a 1x1 conv reads its input in place */
        int64_t ldb = P;
        if (cv->k > 1) {
            float *c = col[omp_get_thread_num()];
            im2col(x, cv->cin, cv->k, H, W, p0, np, c);
            B = c;
            ldb = np;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cv->cout, (int)np, (int)K, 1.0f,
                    cv->w, (int)K, B, (int)ldb, 1.0f, out, (int)P);
    }
}

/* dst_t[c] = UP^up(src_t[c]) (+ add_t[c] if add), per tile, channel-parallel. */
static void copy_up(float *dst, const float *src, const float *add, int ntile, int C, int H,
                    int W, int up)
{
    const int64_t P = (int64_t)H * W, Ws = W >> up, Ps = (int64_t)(H >> up) * Ws;
#pragma omp parallel for schedule(static)
    for (int64_t tc = 0; tc < (int64_t)ntile * C; tc++) {
        const float *s = src + tc * Ps;
        const float *a = add ? add + tc * P : NULL;
        float *d = dst + tc * P;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const int64_t q = (int64_t)y * W + x;
                const float v = s[(int64_t)(y >> up) * Ws + (x >> up)];
                d[q] = a ? v + a[q] : v;
            }
    }
}

/* 2x2 max pooling of ntile x C planes of H x W. */
static void maxpool(float *dst, const float *src, int ntile, int C, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
#pragma omp parallel for schedule(static)
    for (int64_t tc = 0; tc < (int64_t)ntile * C; tc++) {
        const float *s = src + tc * H * W;
        float *d = dst + tc * Ho * Wo;
        for (int y = 0; y < Ho; y++)
            for (int x = 0; x < Wo; x++) {
                const float *q = s + (int64_t)2 * y * W + 2 * x;
                float m = q[0];
                const float v[3] = {q[1], q[W], q[W + 1]};
                for (int k = 0; k < 3; k++)
                    if (v[k] > m || v[k] != v[k])
                        m = v[k];
                d[(int64_t)y * Wo + x] = m;
            }
    }
}

/* Style of each tile (§3.2: global mean of xd3, L2-normalised, no epsilon) and from it the
 * shifted BatchNorm affine of every decoder conv_1..3: BN(x + F) = x*scale + (shift + F*scale). */
static void style_shifts(const cp_model *m, const float *xd3, int ntile, int64_t P3, float *style,
                         float *shifts, int64_t shifts_stride)
{
    const int S = m->info.style_dim;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < ntile; t++) {
        float *st = style + (int64_t)t * S;
        double norm = 0;
        for (int c = 0; c < S; c++) {
            const float *x = xd3 + ((int64_t)t * S + c) * P3;
            double sum = 0;
            for (int64_t q = 0; q < P3; q++)
                sum += x[q];
            st[c] = (float)(sum / (double)P3);
            norm += (double)st[c] * st[c];
        }
        const float inv = (float)sqrt(norm);
        for (int c = 0; c < S; c++)
            st[c] = st[c] / inv;
        float *sh = shifts + t * shifts_stride;
        for (int n = 0; n < 4; n++)
            for (int c = 1; c < 4; c++) {
                const conv *cv = &m->up[n][c];
                const style_mix *mx = &m->mix[n][c];
                for (int o = 0; o < cv->cin; o++) {
                    double f = mx->b[o];
                    for (int k = 0; k < S; k++)
                        f += (double)mx->w[(int64_t)o * S + k] * st[k];
                    *sh++ = (float)((double)cv->shift[o] + f * (double)cv->scale[o]);
                }
            }
    }
}

/* Buffers of one chunk of tiles, all per tile (strides in floats). */
typedef struct net_ws {
    int H[4], W[4];
    int64_t P[4];
    float *xd[4];      /* encoder outputs = skips; reused as decoder block outputs */
    int64_t xd_n[4];
    float *a;          /* conv_0 / conv_2 outputs */
    int64_t a_n;
    float *y;          /* pooled inputs / decoder projections at input resolution */
    int64_t y_n;
    float *act;        /* the activated input of the current conv */
    int64_t act_n;
    float *style, *shifts;
    int64_t shifts_n;
    float **col;
    int nthreads;
} net_ws;

static void ws_free(net_ws *w)
{
    for (int l = 0; l < 4; l++)
        free(w->xd[l]);
    free(w->a);
    free(w->y);
    free(w->act);
    free(w->style);
    free(w->shifts);
    for (int k = 0; w->col && k < w->nthreads; k++)
        free(w->col[k]);
    free(w->col);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Buffer sizes (per tile, in floats) for tiles of ty x tx; allocates nothing. Returns the bytes
 * per tile. */
static int64_t ws_plan(const cp_model *m, int ty, int tx, net_ws *w)
{
    const int *nb = m->info.nbase;
    int64_t tile = 0;
    memset(w, 0, sizeof *w);
    for (int l = 0; l < 4; l++) {
        w->H[l] = ty >> l;
        w->W[l] = tx >> l;
        w->P[l] = (int64_t)w->H[l] * w->W[l];
        w->xd_n[l] = nb[l + 1] * w->P[l];
        w->a_n = max64(w->a_n, w->xd_n[l]);
        tile += w->xd_n[l];
    }
    for (int l = 1; l < 4; l++)
        w->y_n = max64(w->y_n, nb[l] * w->P[l]);     /* pooled encoder input */
    for (int l = 0; l < 3; l++)
        w->y_n = max64(w->y_n, nb[l + 1] * w->P[l + 1]); /* decoder proj, low resolution */
    w->y_n = max64(w->y_n, nb[4] * w->P[3]);
    w->act_n = max64(w->a_n, nb[0] * w->P[0]);
    for (int l = 0; l < 4; l++) /* decoder conv_0: its input upsampled to level l */
        w->act_n = max64(w->act_n, m->up[l][0].cin * w->P[l]);
    for (int l = 1; l < 4; l++) /* encoder conv_0 */
        w->act_n = max64(w->act_n, nb[l] * w->P[l]);
    for (int n = 0; n < 4; n++)
        for (int c = 1; c < 4; c++)
            w->shifts_n += m->up[n][c].cin;
    tile += w->a_n + w->y_n + w->act_n + w->shifts_n + m->info.style_dim;
    return tile * (int64_t)sizeof(float);
}

static int ws_alloc(const cp_model *m, net_ws *w, int ntile)
{
    for (int l = 0; l < 4; l++)
        w->xd[l] = malloc((size_t)(w->xd_n[l] * ntile) * sizeof(float));
    w->a = malloc((size_t)(w->a_n * ntile) * sizeof(float));
    w->y = malloc((size_t)(w->y_n * ntile) * sizeof(float));
    w->act = malloc((size_t)(w->act_n * ntile) * sizeof(float));
    w->style = malloc((size_t)m->info.style_dim * ntile * sizeof(float));
    w->shifts = malloc((size_t)(w->shifts_n * ntile) * sizeof(float));
    w->nthreads = omp_get_max_threads();
    w->col = calloc((size_t)w->nthreads, sizeof(float *));
    int ok = w->xd[0] && w->xd[1] && w->xd[2] && w->xd[3] && w->a && w->y && w->act && w->style &&
             w->shifts && w->col;
    int64_t colmax = 0;
    for (int n = 0; n < 4; n++)
        for (int c = 0; c < 4; c++) {
            const int64_t Kd = 9 * (int64_t)m->down[n][c].cin, Ku = 9 * (int64_t)m->up[n][c].cin;
            colmax = max64(colmax, max64(Kd * block_pixels(Kd), Ku * block_pixels(Ku)));
            const conv *cs[2] = {&m->down[n][c], &m->up[n][c]};
            for (int k = 0; k < 2; k++) {
                cp_wino_plan pl;
                if (!cs[k]->wu)
                    continue;
                cp_wino_plan_make(cs[k]->cin, cs[k]->cout, w->H[n], w->W[n], cs[k]->wm, &pl);
                colmax = max64(colmax, pl.ws_floats);
            }
        }
    for (int k = 0; ok && k < w->nthreads; k++)
        ok = (w->col[k] = malloc((size_t)colmax * sizeof(float))) != NULL;
    return ok ? 0 : -1;
}

/* Forward of ntile tiles held in ws (§3.2). */
static void forward_chunk(const cp_model *m, net_ws *w, const float *in, int ntile, float *out)
{
    const int *nb = m->info.nbase;
    /* encoder */
    for (int l = 0; l < 4; l++) {
        const int H = w->H[l], W = w->W[l];
        const float *y = in;
        int64_t ys = (int64_t)nb[0] * w->P[0];
        if (l > 0) {
            maxpool(w->y, w->xd[l - 1], ntile, nb[l], w->H[l - 1], w->W[l - 1]);
            y = w->y;
            ys = nb[l] * w->P[l]; /* maxpool packs the tiles */
        }
        float *h = w->xd[l];
        const int64_t hs = w->xd_n[l];
        conv_job proj = {&m->down_proj[l], y, ys, 0, NULL, 0, h, hs, 0};
        conv_job c0 = {&m->down[l][0], y, ys, 0, NULL, 0, w->a, w->a_n, 0};
        conv_job c1 = {&m->down[l][1], w->a, w->a_n, 0, NULL, 0, h, hs, 1};
        conv_job c2 = {&m->down[l][2], h, hs, 0, NULL, 0, w->a, w->a_n, 0};
        conv_job c3 = {&m->down[l][3], w->a, w->a_n, 0, NULL, 0, h, hs, 1};
        run_conv(&proj, ntile, H, W, w->act, w->act_n, w->col);
        run_conv(&c0, ntile, H, W, w->act, w->act_n, w->col);
        run_conv(&c1, ntile, H, W, w->act, w->act_n, w->col);
        run_conv(&c2, ntile, H, W, w->act, w->act_n, w->col);
        run_conv(&c3, ntile, H, W, w->act, w->act_n, w->col);
    }
    style_shifts(m, w->xd[3], ntile, w->P[3], w->style, w->shifts, w->shifts_n);
    /* decoder: block n reads xd[n+1] (or xd[3] for n = 3), adds skip xd[n], writes into xd[n] */
    int64_t shift_off[4][4] = {{0}}, off = 0;
    for (int n = 0; n < 4; n++)
        for (int c = 1; c < 4; c++) {
            shift_off[n][c] = off;
            off += m->up[n][c].cin;
        }
    for (int n = 3; n >= 0; n--) {
        const int H = w->H[n], W = w->W[n], up = n < 3;
        const int nin = n < 3 ? n + 1 : 3, cout = m->up[n][0].cout;
        const float *x = w->xd[nin];
        const int64_t xs = w->xd_n[nin];
        float *h = w->xd[n];
        const int64_t hs = w->xd_n[n];
        conv_job c0 = {&m->up[n][0], x, xs, up, NULL, 0, w->a, w->a_n, 0};
        /* the 1x1 projection commutes with nearest upsampling: run it at input resolution */
        conv_job proj = {&m->up_proj[n], x, xs, 0, NULL, 0, w->y, w->y_n, 0};
        run_conv(&c0, ntile, H, W, w->act, w->act_n, w->col);
        run_conv(&proj, ntile, H >> up, W >> up, w->act, w->act_n, w->col);
        for (int t = 0; t < ntile; t++) /* a += skip */
            copy_up(w->a + t * w->a_n, h + t * hs, w->a + t * w->a_n, 1, cout, H, W, 0);
        for (int t = 0; t < ntile; t++) /* h = UP(proj) */
            copy_up(h + t * hs, w->y + t * w->y_n, NULL, 1, cout, H, W, up);
        conv_job c1 = {&m->up[n][1], w->a, w->a_n, 0, w->shifts + shift_off[n][1], w->shifts_n,
                       h, hs, 1};
        conv_job c2 = {&m->up[n][2], h, hs, 0, w->shifts + shift_off[n][2], w->shifts_n, w->a,
                       w->a_n, 0};
        conv_job c3 = {&m->up[n][3], w->a, w->a_n, 0, w->shifts + shift_off[n][3], w->shifts_n,
                       h, hs, 1};
        run_conv(&c1, ntile, H, W, w->act, w->act_n, w->col);
        run_conv(&c2, ntile, H, W, w->act, w->act_n, w->col);
        run_conv(&c3, ntile, H, W, w->act, w->act_n, w->col);
    }
    conv_job o = {&m->out, w->xd[0], w->xd_n[0], 0, NULL, 0, out, m->info.nout * w->P[0], 0};
    run_conv(&o, ntile, w->H[0], w->W[0], w->act, w->act_n, w->col);
}

int cp_net_forward(const cp_model *m, const float *in, int n, int ty, int tx, float *out,
                   float *style, char *err)
{
    if (n < 0 || ty < 16 || tx < 16 || ty % 16 || tx % 16 || (int64_t)ty * tx > ((int64_t)1 << 28))
        return cp_errf(err, CP_EPARAM, "network: tiles of %d x %d (n %d): sizes must be positive "
                       "multiples of 16", ty, tx, n);
    net_ws w;
    const int64_t per_tile = ws_plan(m, ty, tx, &w);
    int chunk = (int)(CHUNK_BYTES / per_tile);
    chunk = chunk < 1 ? 1 : chunk > CHUNK_TILES ? CHUNK_TILES : chunk;
    if (chunk > n)
        chunk = n;
    if (n == 0)
        return 0;
    if (ws_alloc(m, &w, chunk)) {
        ws_free(&w);
        return cp_errf(err, CP_ENOMEM, "network: out of memory for %d tiles of %d x %d", chunk,
                       ty, tx);
    }
    const int64_t in_n = (int64_t)m->info.nchan * w.P[0], out_n = (int64_t)m->info.nout * w.P[0];
    const int S = m->info.style_dim;
    for (int t0 = 0; t0 < n; t0 += chunk) {
        const int nt = n - t0 < chunk ? n - t0 : chunk;
        forward_chunk(m, &w, in + t0 * in_n, nt, out + t0 * out_n);
        if (style)
            memcpy(style + (int64_t)t0 * S, w.style, (size_t)nt * S * sizeof(float));
    }
    ws_free(&w);
    return 0;
}
