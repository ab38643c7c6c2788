/* Protrusion recovery (src/protrusions.c, --protrusions) on synth_1024 with the trained model,
 * scored against the ground truth with the protrusion metric below; also the metric tool.
 *
 * Metric: a ground-truth cell is matched to the predicted mask of highest IoU if that IoU >= 0.5;
 * protrusion (body) recall = protrusion (body) pixels inside the mask matched to their own cell /
 * all protrusion (body) pixels; wrong-cell = protrusion pixels inside a predicted mask other than
 * the one matched to their cell / all protrusion pixels; a merge is a predicted mask holding
 * >= 20% of the pixels of each of two different ground-truth cells.
 *
 * The synth1024 bounds are a regression guard at the level reached so far (recall 0.797, wrong
 * 0.077, matched 104, 1 merge). They include issue 6's acceptance floor (recall >= 0.75, wrong
 * <= 0.12, matched >= 100, body >= Cellpose's) except "no merge", which this rule does not meet
 * yet (ground-truth cells 16 and 42): the issue stays open until a test asserts that too.
 *
 * Usage: test_protrusions reference | synth1024 | unit | windows | metric <labels.tif|labels.h5> */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cp_err.h"
#include "protrusions.h"
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

/* The CLI on synth_1024 with the trained model: without --protrusions the labels are Cellpose's
 * masks.tif exactly; with it (from the saved flows, at 1 and 2 OpenMP threads and on 3 MPI ranks
 * with blocks of 256: same labels) the protrusion metric clears the thresholds. */
static void test_synth1024(void)
{
    const char *sh = tu_shared();
    tu_need(tu_path("%s/models/synth_trained_nbase16.pth", sh)); /* before any run: skip early */
    tu_need(tu_path("%s/data/synthetic/synth_1024.tif", sh));
    tu_need(tu_path("%s/reference/synth_trained_nbase16_synth1024/masks.tif", sh));
    tu_need(tu_path("%s/data/synthetic/synth_1024_labels.tif", sh));
    tu_need(tu_path("%s/data/synthetic/synth_1024_parts.tif", sh));
    const char *dir = tu_tmpdir();
    char base[512], flows[512];
    snprintf(flows, sizeof flows, "%s/flows.h5", dir);
    snprintf(base, sizeof base, "%s/cellpose-mpi --quiet", tu_build_dir());
    double t0 = tu_now();
    int st = tu_run("%s --pretrained_model %s/models/synth_trained_nbase16.pth --image_path "
                    "%s/data/synthetic/synth_1024.tif --chan 1 --chan2 2 --diameter 30 "
                    "--save_flows --output %s", base, sh, sh, flows);
    printf("network run: %.1f s\n", tu_now() - t0);
    TU_CHECK(st == 0, "cellpose-mpi (network) exited with %d", st);
    uint32_t *off = read_labels(flows);
    uint32_t *ref = read_labels(tu_path("%s/reference/synth_trained_nbase16_synth1024/masks.tif",
                                        sh));
    TU_CHECK(off && ref, "cannot read the labels");
    if (off && ref) {
        int64_t nd = tu_count_diff_u32(off, ref, NY * NX);
        printf("without --protrusions: %lld pixels differ from masks.tif\n", (long long)nd);
        TU_CHECK(nd == 0, "without --protrusions %lld pixels differ from Cellpose", (long long)nd);
    }
    uint32_t *on[2] = {NULL, NULL};
    for (int t = 0; t < 2; t++) {
        char out[512];
        snprintf(out, sizeof out, "%s/prot%d.h5", dir, t + 1);
        t0 = tu_now();
        st = tu_run("OMP_NUM_THREADS=%d %s --flows %s --protrusions --output %s", t + 1, base,
                    flows, out);
        printf("--flows --protrusions at %d thread(s): %.2f s\n", t + 1, tu_now() - t0);
        TU_CHECK(st == 0, "cellpose-mpi --protrusions exited with %d", st);
        on[t] = read_labels(out);
        TU_CHECK(on[t] != NULL, "cannot read %s", out);
    }
    char dout[512]; /* 3 ranks, blocks of 256: the halo of a block reaches over the plane */
    snprintf(dout, sizeof dout, "%s/prot_np3.h5", dir);
    t0 = tu_now();
    st = tu_run("mpirun --oversubscribe -n 3 -x OMP_NUM_THREADS=1 %s --flows %s --protrusions "
                "--block 256 --output %s", base, flows, dout);
    printf("mpirun -n 3 --block 256 --flows --protrusions: %.2f s\n", tu_now() - t0);
    TU_CHECK(st == 0, "cellpose-mpi -n 3 --protrusions exited with %d", st);
    uint32_t *dist = read_labels(dout);
    TU_CHECK(dist != NULL, "cannot read %s", dout);
    if (dist && on[0]) {
        int64_t nd = tu_count_diff_u32(dist, on[0], NY * NX);
        printf("3 ranks vs one process: %lld pixels differ\n", (long long)nd);
        TU_CHECK(nd == 0, "3 ranks vs one process: %lld pixels differ", (long long)nd);
    }
    free(dist);
    if (on[0] && on[1]) {
        int64_t nd = tu_count_diff_u32(on[0], on[1], NY * NX);
        TU_CHECK(nd == 0, "1 vs 2 threads: %lld pixels differ", (long long)nd);
        pmetric m = score("--protrusions", on[0]);
        TU_CHECK(m.prot_recall >= 0.79, "protrusion recall %.4f < 0.79", m.prot_recall);
        TU_CHECK(m.wrong_cell <= 0.08, "wrong cell %.4f > 0.08", m.wrong_cell);
        TU_CHECK(m.body_recall >= 0.7737, "body recall %.4f below Cellpose's", m.body_recall);
        TU_CHECK(m.matched >= 100, "matched %lld < 100 of 105", (long long)m.matched);
        TU_CHECK(m.merges <= 1, "%lld merges", (long long)m.merges);
    }
    free(off), free(ref), free(on[0]), free(on[1]);
    tu_run("rm -rf %s", dir);
}

/* Small hand-made planes: a cell with an unlabelled thin process (flow pointing back to the cell)
 * gets it; a disconnected blob stays 0; max_len bounds the path; a mask thinner than 5 px is
 * released and taken by the cell it touches; a cell the process passes along takes none of it
 * (its flow does not point back there); two cells split a process by its flow; a strong process
 * goes to its cell in (3a), not through a weak bridge to a nearer one; bad arguments. */
static void test_unit(void)
{
    enum { H = 40, W = 80 };
    static uint32_t lab[H * W];
    static float dP[2 * H * W], cp[H * W];
    char err[CP_ERR_LEN];
    memset(lab, 0, sizeof lab);
    for (int i = 0; i < H * W; i++) cp[i] = -5.0f, dP[i] = dP[H * W + i] = 0.0f;
    for (int y = 10; y < 30; y++)      /* cell 1: a 20x20 square at x 0..19 */
        for (int x = 0; x < 20; x++) lab[y * W + x] = 1, cp[y * W + x] = 5.0f;
    for (int x = 20; x < 60; x++) {    /* a 1-px process at y 20, x 20..59, flowing to -x */
        cp[20 * W + x] = 1.0f;
        dP[H * W + 20 * W + x] = -1.0f;
    }
    for (int y = 2; y < 5; y++)        /* a blob touching nothing */
        for (int x = 70; x < 73; x++) cp[y * W + x] = 3.0f;
    uint32_t a[H * W];
    memcpy(a, lab, sizeof a);
    int rc = cp_protrusions_attach(a, NULL, dP, cp, H, W, 0.0f, 400, err);
    TU_CHECK(rc == 0, "attach: %s", err);
    int64_t got = 0;
    for (int x = 20; x < 60; x++) got += a[20 * W + x] == 1;
    TU_CHECK(got == 40, "process: %lld of 40 pixels attached", (long long)got);
    TU_CHECK(a[3 * W + 71] == 0, "the disconnected blob got label %u", a[3 * W + 71]);
    memcpy(a, lab, sizeof a);          /* 10 axial steps against the flow cost 100 = max_len 10 */
    rc = cp_protrusions_attach(a, NULL, dP, cp, H, W, 0.0f, 10, err);
    got = 0;
    for (int x = 20; x < 60; x++) got += a[20 * W + x] == 1;
    TU_CHECK(rc == 0 && got == 10, "max_len 10: %lld pixels attached", (long long)got);
    memcpy(a, lab, sizeof a);          /* the process as a mask of its own: released, attached */
    for (int x = 20; x < 60; x++) a[20 * W + x] = 2;
    rc = cp_protrusions_attach(a, NULL, dP, cp, H, W, 0.0f, 400, err);
    TU_CHECK(rc == 0 && a[20 * W + 40] == 1, "thin mask 2: pixel got %u, want 1", a[20 * W + 40]);
    memcpy(a, lab, sizeof a);          /* a cell passing along the process: no path out of it */
    for (int y = 21; y < 36; y++)      /* cell 4 under x 30..49; the process flows along it */
        for (int x = 30; x < 50; x++) a[y * W + x] = 4, cp[y * W + x] = 5.0f;
    rc = cp_protrusions_attach(a, NULL, dP, cp, H, W, 0.0f, 400, err);
    got = 0;
    for (int x = 20; x < 60; x++) got += a[20 * W + x] == 1;
    TU_CHECK(rc == 0 && got == 40, "cell along the process: %lld of 40 pixels to 1",
             (long long)got);
    for (int y = 21; y < 36; y++)
        for (int x = 30; x < 50; x++) cp[y * W + x] = -5.0f;
    memcpy(a, lab, sizeof a);          /* a second cell at the far end; the process's far half */
    for (int x = 0; x < 18; x++)       /* flows to it */
        for (int y = 10; y < 30; y++) a[y * W + x + 62] = 3, cp[y * W + x + 62] = 5.0f;
    for (int x = 41; x < 62; x++) dP[H * W + 20 * W + x] = 1.0f, cp[20 * W + x] = 1.0f;
    rc = cp_protrusions_attach(a, NULL, dP, cp, H, W, 0.0f, 400, err);
    int n1 = 0, n3 = 0;
    for (int x = 20; x < 62; x++) n1 += a[20 * W + x] == 1, n3 += a[20 * W + x] == 3;
    TU_CHECK(rc == 0 && n1 == 21 && n3 == 21, "split of the process: %d to 1, %d to 3", n1, n3);
    memcpy(a, lab, sizeof a);          /* the process in the core (cellprob > 2) up to x 59, */
    for (int x = 0; x < 18; x++)       /* a weak 2-px bridge to cell 3: (3a) gives the core to 1 */
        for (int y = 10; y < 30; y++) a[y * W + x + 62] = 3;
    for (int x = 20; x < 60; x++) dP[H * W + 20 * W + x] = -1.0f, cp[20 * W + x] = 5.0f;
    rc = cp_protrusions_attach(a, NULL, dP, cp, H, W, 0.0f, 400, err);
    n1 = n3 = 0;
    for (int x = 20; x < 62; x++) n1 += a[20 * W + x] == 1, n3 += a[20 * W + x] == 3;
    TU_CHECK(rc == 0 && n1 == 40 && n3 == 2, "core and bridge: %d to 1, %d to 3", n1, n3);
    rc = cp_protrusions_attach(a, NULL, dP, cp, H, W, 0.0f, 0, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "protrusions: bad size 40x80 or max_len 0"),
             "max_len 0: rc %d, '%s'", rc, err);
}


/* in[] lies in label v over the (2r+1)^2 window around (y, x), the window inside the plane */
static int window_in(const uint32_t *l, int64_t Ly, int64_t Lx, int64_t y, int64_t x, int r)
{
    uint32_t v = l[y * Lx + x];
    if (!v || y < r || x < r || y + r >= Ly || x + r >= Lx) return 0;
    for (int64_t yy = y - r; yy <= y + r; yy++)
        for (int64_t xx = x - r; xx <= x + r; xx++)
            if (l[yy * Lx + xx] != v) return 0;
    return 1;
}

/* Step (2) (the opening by the 5x5 square) and the step (1) flags of cp_protrusions_scan against
 * their definitions evaluated window by window, on random rectangles of labels in planes of
 * sizes from 1x1 up (the rule's own versions are O(1) per pixel: runs and sliding sums). */
static void test_opening(void)
{
    char err[CP_ERR_LEN];
    unsigned seed = 12345;
    int64_t released = 0, flagged = 0;
    for (int it = 0; it < 300; it++) {
        int64_t Ly = 1 + (seed = seed * 1103515245u + 12345u) % 37, Lx = 1 + (seed >> 8) % 41;
        int64_t n = Ly * Lx;
        uint32_t *l = calloc((size_t)n, sizeof *l), *a = malloc(sizeof *a * (size_t)n);
        float *f = calloc((size_t)(3 * n), sizeof *f);
        for (int k = 1; k <= 6; k++) { /* overlapping rectangles, later ones on top */
            seed = seed * 1103515245u + 12345u;
            int64_t y0 = (seed >> 4) % Ly, x0 = (seed >> 12) % Lx;
            int64_t h = 1 + (seed >> 20) % 16, w = 1 + (seed >> 24) % 16;
            for (int64_t y = y0; y < y0 + h && y < Ly; y++)
                for (int64_t x = x0; x < x0 + w && x < Lx; x++) l[y * Lx + x] = (uint32_t)k;
        }
        memcpy(a, l, sizeof *a * (size_t)n);
        for (int64_t i = 0; i < n; i++) f[2 * n + i] = -1.0f; /* no foreground: step (3) idle */
        int rc = cp_protrusions_apply(a, NULL, NULL, f, f + 2 * n, Ly, Lx, 0.0f, 10, err);
        TU_CHECK(rc == 0, "opening %lldx%lld: %s", (long long)Ly, (long long)Lx, err);
        int64_t bad = 0;
        for (int64_t y = 0; y < Ly; y++)
            for (int64_t x = 0; x < Lx; x++) {
                int keep = 0;
                for (int64_t yy = y - 2; yy <= y + 2; yy++)
                    for (int64_t xx = x - 2; xx <= x + 2; xx++)
                        keep |= yy >= 0 && yy < Ly && xx >= 0 && xx < Lx &&
                                window_in(l, Ly, Lx, yy, xx, 2) && l[yy * Lx + xx] == l[y * Lx + x];
                bad += a[y * Lx + x] != (keep ? l[y * Lx + x] : 0);
                released += l[y * Lx + x] && !keep;
            }
        TU_CHECK(bad == 0, "opening %lldx%lld: %lld pixels differ from the definition",
                 (long long)Ly, (long long)Lx, (long long)bad);
        unsigned char flags[8] = {0}, want[8] = {0};
        for (int64_t i = 0; i < n; i++) a[i] = l[i] == 3 ? 3 : 0; /* final masks: only mask 3 */
        rc = cp_protrusions_scan(a, l, Ly, Lx, 0, 0, Ly, Lx, flags, err);
        for (int64_t y = 0; y < Ly; y++)
            for (int64_t x = 0; x < Lx; x++) {
                uint32_t v = l[y * Lx + x];
                if (window_in(l, Ly, Lx, y, x, 3)) want[v] |= CP_PROT_CORE;
                for (int64_t yy = y - 1; v && yy <= y + 1; yy++)
                    for (int64_t xx = x - 1; xx <= x + 1; xx++)
                        if (yy >= 0 && yy < Ly && xx >= 0 && xx < Lx && a[yy * Lx + xx])
                            want[v] |= CP_PROT_TOUCH;
            }
        for (int k = 1; k <= 6; k++) flagged += (want[k] & CP_PROT_CORE) != 0;
        TU_CHECK(rc == 0 && !memcmp(flags + 1, want + 1, 6), "scan %lldx%lld: flags differ",
                 (long long)Ly, (long long)Lx);
        free(l), free(a), free(f);
    }
    printf("opening and scan: %lld pixels released, %lld masks with a 7x7 core, all as defined\n",
           (long long)released, (long long)flagged);
    TU_CHECK(released > 1000 && flagged > 50, "too few cases exercised (%lld, %lld)",
             (long long)released, (long long)flagged);
}

/* The rule over windows (what a distributed run does): on synth512 (the oracle's flows, masks
 * before QC and final masks, some final masks deleted so that step (1) restores them), blocks of
 * 128 each computed on the block grown by cp_protrusions_halo(max_len), with the step (1) flags
 * gathered from every block, give the whole plane's labels exactly. */
static void test_windows(void)
{
    const char *dir = tu_path("%s/reference/synth_trained_nbase16_synth512", tu_shared());
    tu_tiff d = tu_read_tiff(tu_path("%s/dP.tif", dir)), c = tu_read_tiff(tu_path("%s/cellprob.tif", dir));
    tu_tiff r = tu_read_tiff(tu_path("%s/masks_raw.tif", dir)), m = tu_read_tiff(tu_path("%s/masks.tif", dir));
    const int64_t L = c.ny, n = L * L, B = 128;
    char err[CP_ERR_LEN];
    uint32_t *lab = malloc(sizeof *lab * (size_t)n), *whole = malloc(sizeof *whole * (size_t)n);
    uint32_t *got = malloc(sizeof *got * (size_t)n), raw_max = 0, label_max = 0;
    for (int64_t i = 0; i < n; i++) {
        lab[i] = m.u32[i] % 5 == 3 ? 0 : m.u32[i]; /* as if QC had deleted every 5th mask */
        raw_max = r.u32[i] > raw_max ? r.u32[i] : raw_max;
        label_max = lab[i] > label_max ? lab[i] : label_max;
    }
    for (int64_t max_len = 30; max_len <= 400; max_len += 370) {
        memcpy(whole, lab, sizeof *lab * (size_t)n);
        int rc = cp_protrusions_attach(whole, r.u32, d.f32, c.f32, L, L, 0.0f, max_len, err);
        TU_CHECK(rc == 0, "whole plane: %s", err);
        unsigned char *flags = calloc((size_t)raw_max + 1, 1);
        uint32_t *map = malloc(sizeof *map * ((size_t)raw_max + 1));
        for (int64_t y0 = 0; y0 < L; y0 += B) /* the flags, block by block with a 3-pixel halo */
            for (int64_t x0 = 0; x0 < L; x0 += B) {
                int64_t wy = y0 < 3 ? 0 : y0 - 3, wx = x0 < 3 ? 0 : x0 - 3;
                int64_t ny = (y0 + B + 3 < L ? y0 + B + 3 : L) - wy, nx = (x0 + B + 3 < L ? x0 + B + 3 : L) - wx;
                uint32_t *wl = malloc(sizeof *wl * (size_t)(ny * nx)), *wr = malloc(sizeof *wr * (size_t)(ny * nx));
                for (int64_t y = 0; y < ny; y++)
                    for (int64_t x = 0; x < nx; x++)
                        wl[y * nx + x] = lab[(wy + y) * L + wx + x], wr[y * nx + x] = r.u32[(wy + y) * L + wx + x];
                rc |= cp_protrusions_scan(wl, wr, ny, nx, y0 - wy, x0 - wx, B, B, flags, err);
                free(wl), free(wr);
            }
        cp_protrusions_ids(flags, raw_max, label_max, map);
        const int64_t h = cp_protrusions_halo(max_len);
        for (int64_t y0 = 0; y0 < L; y0 += B)
            for (int64_t x0 = 0; x0 < L; x0 += B) {
                int64_t wy = y0 < h ? 0 : y0 - h, wx = x0 < h ? 0 : x0 - h;
                int64_t ny = (y0 + B + h < L ? y0 + B + h : L) - wy, nx = (x0 + B + h < L ? x0 + B + h : L) - wx;
                int64_t wn = ny * nx;
                uint32_t *wl = malloc(sizeof *wl * (size_t)wn), *wr = malloc(sizeof *wr * (size_t)wn);
                float *wf = malloc(sizeof *wf * (size_t)(3 * wn));
                for (int64_t y = 0; y < ny; y++)
                    for (int64_t x = 0; x < nx; x++) {
                        int64_t i = (wy + y) * L + wx + x, j = y * nx + x;
                        wl[j] = lab[i], wr[j] = r.u32[i];
                        wf[j] = d.f32[i], wf[wn + j] = d.f32[n + i], wf[2 * wn + j] = c.f32[i];
                    }
                rc |= cp_protrusions_apply(wl, wr, map, wf, wf + 2 * wn, ny, nx, 0.0f, max_len, err);
                for (int64_t y = y0; y < y0 + B; y++)
                    for (int64_t x = x0; x < x0 + B; x++) got[y * L + x] = wl[(y - wy) * nx + x - wx];
                free(wl), free(wr), free(wf);
            }
        int64_t nd = tu_count_diff_u32(got, whole, n), changed = tu_count_diff_u32(whole, lab, n);
        printf("max_len %lld: %lld pixels changed by the rule, %lld differ between windows and the "
               "whole plane\n", (long long)max_len, (long long)changed, (long long)nd);
        TU_CHECK(rc == 0 && nd == 0 && changed > 1000, "max_len %lld: rc %d, %lld pixels differ",
                 (long long)max_len, rc, (long long)nd);
        free(flags), free(map);
    }
    free(lab), free(whole), free(got);
    tu_tiff_free(&d), tu_tiff_free(&c), tu_tiff_free(&r), tu_tiff_free(&m);
}

/* Why the halo is 2 max_len + 4, not max_len + 4: a pixel p reached from cell B only through a
 * core pixel q that cell A claims in round (3a) from max_len - 1 steps away. In the plane p stays
 * 0 (q blocks B's path, A's budget ends at q's neighbour); in a window that reaches max_len + 4
 * around p but not A, q is free and B takes p. The window of cp_protrusions_halo() gives the
 * plane's answer. */
static void test_halo(void)
{
    enum { H = 45, W = 80, M = 30, S = 20, PY = 20, PX = S + 48 };
    static uint32_t lab[H * W], win[H * W];
    static float dP[2 * H * W], cp[H * W], wf[3 * H * W];
    char err[CP_ERR_LEN];
    for (int i = 0; i < H * W; i++) cp[i] = -5.0f;
    for (int y = 10; y < 30; y++)      /* cell A, x S..S+9 */
        for (int x = S; x < S + 10; x++) lab[y * W + x] = 1, cp[y * W + x] = 5.0f;
    for (int y = 31; y < 41; y++)      /* cell B under the far end */
        for (int x = S + 30; x < S + 45; x++) lab[y * W + x] = 2, cp[y * W + x] = 5.0f;
    for (int x = S + 10; x <= PX; x++) { /* core up to q (x S+38), weak beyond, flowing to A */
        cp[PY * W + x] = x <= S + 38 ? 5.0f : 1.0f;
        dP[H * W + PY * W + x] = -1.0f;
    }
    for (int y = 21; y < 31; y++)      /* B's weak column, meeting the chain only at q */
        cp[y * W + S + 37] = 1.0f, dP[y * W + S + 37] = 1.0f;
    uint32_t plane[H * W];
    memcpy(plane, lab, sizeof plane);
    int rc = cp_protrusions_attach(plane, NULL, dP, cp, H, W, 0.0f, M, err);
    TU_CHECK(rc == 0 && plane[PY * W + S + 38] == 1 && plane[PY * W + PX] == 0,
             "plane: q got %u, p got %u (want 1, 0)", plane[PY * W + S + 38], plane[PY * W + PX]);
    for (int k = 0; k < 2; k++) {
        int64_t h = k ? cp_protrusions_halo(M) : M + 4, x0 = PX - h > 0 ? PX - h : 0;
        int64_t nx = W - x0, wn = H * nx;
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < nx; x++) {
                int64_t i = y * W + x0 + x, j = y * nx + x;
                win[j] = lab[i], wf[j] = dP[i], wf[wn + j] = dP[H * W + i], wf[2 * wn + j] = cp[i];
            }
        rc = cp_protrusions_apply(win, NULL, NULL, wf, wf + 2 * wn, H, nx, 0.0f, M, err);
        uint32_t got = win[PY * nx + PX - x0];
        printf("window from x %lld (halo %lld): p got %u, the plane %u\n", (long long)x0,
               (long long)h, got, plane[PY * W + PX]);
        TU_CHECK(rc == 0 && (k ? got == 0 : got == 2), "halo %lld: p got %u", (long long)h, got);
    }
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "reference")) test_reference();
    else if (!strcmp(mode, "synth1024")) test_synth1024();
    else if (!strcmp(mode, "unit")) test_unit(), test_opening();
    else if (!strcmp(mode, "windows")) test_windows(), test_halo();
    else if (!strcmp(mode, "metric") && argc > 2) {
        uint32_t *pred = read_labels(argv[2]);
        TU_CHECK(pred != NULL, "cannot read %s", argv[2]);
        if (pred) score(argv[2], pred);
        free(pred);
    } else {
        fprintf(stderr, "usage: test_protrusions reference | synth1024 | unit | windows | metric <labels>\n");
        return 2;
    }
    return tu_finish();
}
