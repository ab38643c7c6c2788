/* Tests of the CPnet forward (src/cpnet.c):
 *   parity <case> <model.pth>  the oracle's tile0_in -> tile0_out, tolerance of reference/README.md
 *   determinism                same tiles at 1 and 2 threads, batch 1 and 5: bit-identical
 *   unit                       model info, style vector, bad arguments, model name resolution */
#include "cpnet.h"

#include "cp_err.h"
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static cp_model *load(const char *file)
{
    char err[CP_ERR_LEN];
    cp_model *m = NULL;
    int rc = cp_model_load(tu_need(tu_path("%s/models/%s", tu_shared(), file)), &m, err);
    TU_CHECK(rc == 0, "load %s: %s", file, err);
    return m;
}

static void parity(const char *casename, const char *model)
{
    cp_model *m = load(model);
    if (!m)
        return;
    tu_tiff in = tu_read_tiff(tu_path("%s/reference/%s/tile0_in.tif", tu_shared(), casename));
    tu_tiff ref = tu_read_tiff(tu_path("%s/reference/%s/tile0_out.tif", tu_shared(), casename));
    const cp_model_info *info = cp_model_get_info(m);
    TU_CHECK(in.pages == info->nchan && ref.pages == 3 && in.ny == ref.ny && in.nx == ref.nx,
             "tile shapes: in %lld pages, out %lld pages", (long long)in.pages,
             (long long)ref.pages);
    float *out = malloc((size_t)ref.n * sizeof(float));
    float *style = malloc((size_t)info->style_dim * sizeof(float));
    char err[CP_ERR_LEN];
    double t0 = tu_now();
    int rc = cp_net_forward(m, in.f32, 1, (int)in.ny, (int)in.nx, out, style, err);
    double dt = tu_now() - t0;
    TU_CHECK(rc == 0, "forward: %s", err);
    double refmax = 0;
    for (int64_t k = 0; k < ref.n; k++)
        refmax = fmax(refmax, fabs(ref.f32[k]));
    int64_t where = 0;
    double d = tu_maxabs(out, ref.f32, ref.n, &where);
    double tol = 1e-4 * refmax + 1e-5;
    printf("%s: max|out - ref| = %.3g at %lld (max|ref| %.3g, tolerance %.3g), %.3f s\n",
           casename, d, (long long)where, refmax, tol, dt);
    TU_CHECK(d <= tol, "%s: max abs error %.3g > %.3g", casename, d, tol);
    double norm = 0;
    for (int k = 0; k < info->style_dim; k++)
        norm += (double)style[k] * style[k];
    TU_CHECK(fabs(norm - 1.0) < 1e-5, "style is not unit length: |s|^2 = %.9g", norm);
    free(out);
    free(style);
    tu_tiff_free(&in);
    tu_tiff_free(&ref);
    cp_model_free(m);
}

/* Fills n tiles with a deterministic pseudo-random pattern, distinct per tile. */
static void fill_tiles(float *x, int64_t n)
{
    uint32_t s = 12345;
    for (int64_t k = 0; k < n; k++) {
        s = s * 1664525u + 1013904223u;
        x[k] = (float)(s >> 8) / 16777216.0f * 4.0f - 1.0f;
    }
}

static void determinism(void)
{
    cp_model *m = load("tiny_random_nbase8_seed7.pth");
    if (!m)
        return;
    const cp_model_info *info = cp_model_get_info(m);
    enum { NT = 5, TY = 64, TX = 96 };
    const int64_t in_n = (int64_t)info->nchan * TY * TX, out_n = 3 * TY * TX;
    float *in = malloc((size_t)(NT * in_n) * sizeof(float));
    float *ref = malloc((size_t)(NT * out_n) * sizeof(float));
    float *out = malloc((size_t)(NT * out_n) * sizeof(float));
    float *sref = malloc((size_t)(NT * info->style_dim) * sizeof(float));
    float *sout = malloc((size_t)(NT * info->style_dim) * sizeof(float));
    char err[CP_ERR_LEN];
    fill_tiles(in, NT * in_n);
    /* reference: one tile at a time on one thread */
    omp_set_num_threads(1);
    for (int t = 0; t < NT; t++) {
        int rc = cp_net_forward(m, in + t * in_n, 1, TY, TX, ref + t * out_n,
                                sref + t * info->style_dim, err);
        TU_CHECK(rc == 0, "forward: %s", err);
    }
    const int threads[3] = {1, 2, 3};
    for (int k = 0; k < 3; k++) {
        omp_set_num_threads(threads[k]);
        memset(out, 0, (size_t)(NT * out_n) * sizeof(float));
        int rc = cp_net_forward(m, in, NT, TY, TX, out, sout, err);
        TU_CHECK(rc == 0, "forward: %s", err);
        int same = !memcmp(out, ref, (size_t)(NT * out_n) * sizeof(float)) &&
                   !memcmp(sout, sref, (size_t)(NT * info->style_dim) * sizeof(float));
        printf("batch %d, %d threads: %s (max diff %.3g)\n", NT, threads[k],
               same ? "bit-identical" : "DIFFERENT", tu_maxabs(out, ref, NT * out_n, NULL));
        TU_CHECK(same, "batch %d on %d threads differs from batch 1 on 1 thread", NT, threads[k]);
        /* batch 1 of the last tile at this thread count */
        rc = cp_net_forward(m, in + (NT - 1) * in_n, 1, TY, TX, out, NULL, err);
        TU_CHECK(rc == 0 && !memcmp(out, ref + (NT - 1) * out_n, (size_t)out_n * sizeof(float)),
                 "batch 1 on %d threads differs", threads[k]);
    }
    free(in);
    free(ref);
    free(out);
    free(sref);
    free(sout);
    cp_model_free(m);
}

static void unit(void)
{
    char err[CP_ERR_LEN];
    static const struct {
        const char *file;
        int nbase[5];
        float diam_mean, diam_labels;
    } models[3] = {
        {"random_cp3_seed0.pth", {2, 32, 64, 128, 256}, 30.0f, 17.5f},
        {"tiny_random_nbase8_seed7.pth", {2, 8, 16, 32, 64}, 30.0f, 30.0f},
        {"synth_trained_nbase16.pth", {2, 16, 32, 64, 128}, 30.0f, 37.376163f},
    };
    json_object *manifest =
        json_object_from_file(tu_need(tu_path("%s/models/MANIFEST.json", tu_shared())));
    TU_CHECK(manifest != NULL, "cannot read models/MANIFEST.json");
    for (int k = 0; k < 3; k++) {
        if (!tu_have(tu_path("%s/models/%s", tu_shared(), models[k].file))) {
            printf("%s: in the extended parity suite only, not checked\n", models[k].file);
            continue;
        }
        cp_model *m = load(models[k].file);
        if (!m)
            continue;
        const cp_model_info *in = cp_model_get_info(m);
        TU_CHECK(!memcmp(in->nbase, models[k].nbase, sizeof in->nbase),
                 "%s: nbase [%d %d %d %d %d]", models[k].file, in->nbase[0], in->nbase[1],
                 in->nbase[2], in->nbase[3], in->nbase[4]);
        TU_CHECK(in->nchan == 2 && in->nout == 3 && in->style_dim == models[k].nbase[4],
                 "%s: nchan %d nout %d style %d", models[k].file, in->nchan, in->nout,
                 in->style_dim);
        TU_CHECK(in->diam_mean == models[k].diam_mean &&
                     fabsf(in->diam_labels - models[k].diam_labels) < 1e-5f,
                 "%s: diam_mean %.9g diam_labels %.9g", models[k].file, in->diam_mean,
                 in->diam_labels);
        json_object *entry = NULL, *sha = NULL; /* file names contain dots: no dotted lookup */
        json_object_object_get_ex(tu_json_get(manifest, "models"), models[k].file, &entry);
        json_object_object_get_ex(entry, "sha256", &sha);
        TU_CHECK(sha && !strcmp(json_object_get_string(sha), in->sha256), "%s: sha256 %s",
                 models[k].file, in->sha256);
        printf("%s: nbase [%d %d %d %d %d] diam_mean %.9g diam_labels %.9g sha256 %s\n",
               models[k].file, in->nbase[0], in->nbase[1], in->nbase[2], in->nbase[3],
               in->nbase[4], in->diam_mean, in->diam_labels, in->sha256);
        if (k == 1) {
            float x[2 * 16 * 16] = {0}, y[3 * 16 * 16];
            int rc = cp_net_forward(m, x, 1, 16, 24, y, NULL, err);
            TU_CHECK(rc == CP_EPARAM && strstr(err, "16 x 24"), "tile 16 x 24: %d %s", rc, err);
            rc = cp_net_forward(m, x, 0, 16, 16, y, NULL, err);
            TU_CHECK(rc == 0, "empty batch: %d %s", rc, err);
        }
        cp_model_free(m);
    }
    json_object_put(manifest);

    /* model resolution */
    char path[4096];
    const char *tiny = tu_path("%s/models/tiny_random_nbase8_seed7.pth", tu_shared());
    int rc = cp_model_resolve(tiny, path, sizeof path, err);
    TU_CHECK(rc == 0 && !strcmp(path, tiny), "existing path: %d %s", rc, err);
    setenv("CELLPOSE_LOCAL_MODELS_PATH", tu_path("%s/models", tu_shared()), 1);
    rc = cp_model_resolve("synth_trained_nbase16.pth", path, sizeof path, err);
    TU_CHECK(rc == 0 && !strcmp(path, tu_path("%s/models/synth_trained_nbase16.pth", tu_shared())),
             "name in $CELLPOSE_LOCAL_MODELS_PATH: %d %s -> %s", rc, err, path);
    rc = cp_model_resolve("cyto3", path, sizeof path, err);
    TU_CHECK(rc == CP_EIO && strstr(err, "cyto3") &&
                 strstr(err, tu_path("%s/models", tu_shared())) &&
                 strstr(err, "CELLPOSE_LOCAL_MODELS_PATH") &&
                 strstr(err, "copy the file from a Python Cellpose install's ~/.cellpose/models "
                             "into") &&
                 strstr(err, "cannot download") && !strchr(err, '\n'),
             "unknown name: %d %s", rc, err);
    setenv("CELLPOSE_LOCAL_MODELS_PATH", "", 1);
    setenv("HOME", tu_tmpdir(), 1);
    rc = cp_model_resolve("cyto3", path, sizeof path, err);
    TU_CHECK(rc == CP_EIO && strstr(err, tu_path("%s/.cellpose/models", tu_tmpdir())) &&
                 strstr(err, tu_path("into %s/.cellpose/models (or into "
                                     "$CELLPOSE_LOCAL_MODELS_PATH", tu_tmpdir())),
             "default folder: %d %s", rc, err);
    unsetenv("CELLPOSE_LOCAL_MODELS_PATH");
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "parity"))
        parity(argv[2], argv[3]);
    else if (argc == 2 && !strcmp(argv[1], "determinism"))
        determinism();
    else if (argc == 2 && !strcmp(argv[1], "unit"))
        unit();
    else {
        fprintf(stderr, "usage: %s parity <case> <model> | determinism | unit\n", argv[0]);
        return 2;
    }
    return tu_finish();
}
