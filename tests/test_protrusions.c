/* Protrusion recovery (src/protrusions.c, --protrusions) on synth_1024 with the trained model,
 * scored against the ground truth with the protrusion metric below; also the metric tool.
 *
 * Metric: a ground-truth cell is matched to the predicted mask of highest IoU if that IoU >= 0.5;
 * protrusion (body) recall = protrusion (body) pixels inside the mask matched to their own cell /
 * all protrusion (body) pixels; wrong-cell = protrusion pixels inside a predicted mask other than
 * the one matched to their cell / all protrusion pixels; a merge is a predicted mask holding
 * >= 20% of the pixels of each of two different ground-truth cells.
 *
 * Usage: test_protrusions reference | synth1024 | metric <labels.tif|labels.h5> */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define NY 1024
#define NX 1024

typedef struct pmetric {
    int64_t n_gt, n_pred, matched, merges;
    double prot_recall, wrong_cell, body_recall;
} pmetric;

/* Dense 0..n-1 ids of the labels in a (0 stays 0); returns the number of ids (>= 1). */
static int64_t compact(const uint32_t *a, int64_t n, int64_t *ids)
{
    uint32_t mx = 0;
    for (int64_t i = 0; i < n; i++) mx = a[i] > mx ? a[i] : mx;
    int64_t *map = calloc((size_t)mx + 1, sizeof *map);
    int64_t k = 1;
    for (int64_t i = 0; i < n; i++)
        if (a[i] && !map[a[i]]) map[a[i]] = k++;
    for (int64_t i = 0; i < n; i++) ids[i] = a[i] ? map[a[i]] : 0;
    free(map);
    return k;
}

static pmetric protrusion_metric(const uint32_t *pred, const uint32_t *gt, const uint32_t *parts,
                                 int64_t n)
{
    int64_t *g = malloc(sizeof *g * (size_t)n), *p = malloc(sizeof *p * (size_t)n);
    int64_t ng = compact(gt, n, g), np = compact(pred, n, p);
    int64_t *tab = calloc((size_t)(ng * np), sizeof *tab);
    int64_t *ga = calloc((size_t)ng, sizeof *ga), *pa = calloc((size_t)np, sizeof *pa);
    int64_t *match = malloc(sizeof *match * (size_t)ng);
    for (int64_t i = 0; i < n; i++) {
        tab[g[i] * np + p[i]]++;
        ga[g[i]]++;
        pa[p[i]]++;
    }
    pmetric m = {.n_gt = ng - 1, .n_pred = np - 1};
    for (int64_t a = 1; a < ng; a++) {
        double best = 0;
        match[a] = 0;
        for (int64_t b = 1; b < np; b++) {
            int64_t in = tab[a * np + b];
            double iou = in ? (double)in / (double)(ga[a] + pa[b] - in) : 0;
            if (iou > best) best = iou, match[a] = b;
        }
        if (best < 0.5) match[a] = 0;
        m.matched += match[a] != 0;
    }
    for (int64_t b = 1; b < np; b++) {
        int held = 0;
        for (int64_t a = 1; a < ng; a++) held += tab[a * np + b] * 5 >= ga[a];
        m.merges += held >= 2;
    }
    int64_t np1 = 0, np2 = 0, ok1 = 0, ok2 = 0, wrong = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!g[i] || !parts[i]) continue;
        int own = match[g[i]] && p[i] == match[g[i]];
        if (parts[i] == 1) np1++, ok1 += own, wrong += p[i] && !own;
        else np2++, ok2 += own;
    }
    m.prot_recall = (double)ok1 / (double)(np1 ? np1 : 1);
    m.wrong_cell = (double)wrong / (double)(np1 ? np1 : 1);
    m.body_recall = (double)ok2 / (double)(np2 ? np2 : 1);
    free(g), free(p), free(tab), free(ga), free(pa), free(match);
    return m;
}

static void print_metric(const char *what, pmetric m)
{
    printf("%s: gt %lld pred %lld matched %lld merges %lld protrusion_recall %.4f wrong_cell "
           "%.4f body_recall %.4f\n", what, (long long)m.n_gt, (long long)m.n_pred,
           (long long)m.matched, (long long)m.merges, m.prot_recall, m.wrong_cell, m.body_recall);
}

/* Labels of a TIFF or of /labels in a cellpose-mpi .h5 (NY x NX), NULL if unreadable. */
static uint32_t *read_labels(const char *path)
{
    size_t l = strlen(path);
    if (l > 3 && !strcmp(path + l - 3, ".h5")) {
        int64_t n = 0;
        uint32_t *a = tu_h5_read_u32(path, "labels", &n);
        if (a && n != NY * NX) free(a), a = NULL;
        return a;
    }
    tu_tiff t = tu_read_tiff(path);
    if (!t.u32 || t.ny != NY || t.nx != NX) {
        tu_tiff_free(&t);
        return NULL;
    }
    uint32_t *a = malloc(sizeof *a * NY * NX);
    memcpy(a, t.u32, sizeof *a * NY * NX);
    tu_tiff_free(&t);
    return a;
}

static pmetric score(const char *what, const uint32_t *pred)
{
    uint32_t *gt = read_labels(tu_path("%s/data/synthetic/synth_1024_labels.tif", tu_shared()));
    uint32_t *parts = read_labels(tu_path("%s/data/synthetic/synth_1024_parts.tif", tu_shared()));
    pmetric m = {0};
    TU_CHECK(gt && parts, "cannot read the synth_1024 ground truth");
    if (gt && parts) m = protrusion_metric(pred, gt, parts, NY * NX);
    print_metric(what, m);
    free(gt);
    free(parts);
    return m;
}

/* The metric reproduces the scores of Cellpose's own masks recorded in case.json. */
static void test_reference(void)
{
    const char *cs = "synth_trained_nbase16_synth1024";
    json_object *j = tu_case_json(cs);
    const char *files[2] = {"masks.tif", "masks_recipe.tif"};
    for (int f = 0; f < 2; f++) {
        uint32_t *pred = read_labels(tu_path("%s/reference/%s/%s", tu_shared(), cs, files[f]));
        TU_CHECK(pred != NULL, "cannot read %s", files[f]);
        if (!pred) continue;
        pmetric m = score(files[f], pred);
        char key[128];
#define REF(name) (snprintf(key, sizeof key, "files.%s.metrics_vs_ground_truth.%s", files[f], \
                            name), json_object_get_double(tu_json_get(j, key)))
        TU_CHECK(m.n_gt == (int64_t)REF("n_gt"), "%s: n_gt %lld", files[f], (long long)m.n_gt);
        TU_CHECK(m.n_pred == (int64_t)REF("n_pred"), "%s: n_pred", files[f]);
        TU_CHECK(m.matched == (int64_t)REF("matched_iou50"), "%s: matched %lld vs %g", files[f],
                 (long long)m.matched, REF("matched_iou50"));
        TU_CHECK(fabs(m.prot_recall - REF("protrusion_recall")) < 6e-5,
                 "%s: protrusion recall %.5f vs %.4f", files[f], m.prot_recall,
                 REF("protrusion_recall"));
        TU_CHECK(fabs(m.wrong_cell - REF("wrong_cell")) < 6e-5, "%s: wrong cell %.5f vs %.4f",
                 files[f], m.wrong_cell, REF("wrong_cell"));
        TU_CHECK(fabs(m.body_recall - REF("body_recall")) < 6e-5, "%s: body recall %.5f vs %.4f",
                 files[f], m.body_recall, REF("body_recall"));
#undef REF
        free(pred);
    }
    json_object_put(j);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "reference")) test_reference();
    else if (!strcmp(mode, "metric") && argc > 2) {
        uint32_t *pred = read_labels(argv[2]);
        TU_CHECK(pred != NULL, "cannot read %s", argv[2]);
        if (pred) score(argv[2], pred);
        free(pred);
    } else {
        fprintf(stderr, "usage: test_protrusions reference | synth1024 | metric <labels>\n");
        return 2;
    }
    return tu_finish();
}
