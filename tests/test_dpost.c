/* Tests of mpi/dpost.c (per-mask steps over owner blocks): on any number of ranks and several
 * block sizes, "qc" and "lab" gathered from the blocks must equal, pixel for pixel, the oracle
 * (masks_flowqc.tif, masks.tif) and the whole-plane functions cp_post_flow_qc +
 * cp_post_fill_and_min_size, on the reference cases and on synthetic planes built to stress
 * masks across blocks: a ring over many blocks swallowing the labels in its hole (one of them a
 * ring holding a label in its own hole), thin labels, gaps, non-contiguous labels, labels on the
 * plane border, and flow QC removing crossing labels.
 * Usage: test_dpost oracle CASE [SUFFIX] | gaps | synth */
#include "dpost.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "bstore.h"
#include "cp_err.h"
#include "dplane.h"
#include "flows.h"
#include "post.h"
#include "renumber.h"
#include "refcase.h"
#include "dtest.h"
#include "testutil.h"

static const int64_t BLOCKS[] = {32, 77, 128};
#define NBLOCKS (sizeof BLOCKS / sizeof BLOCKS[0])

static int rank;

/* Every rank writes the "m0" blocks it owns from the whole array. */
static int put_m0(const cp_dplane *d, const uint32_t *whole, char *err)
{
    int64_t b0, b1;
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    char name[64];
    int rc = 0;
    for (int64_t b = b0; !rc && b < b1; b++) {
        cp_rect r = cp_grid_block(&d->grid, b);
        uint32_t *v = malloc(sizeof(uint32_t) * (size_t)(r.ny * r.nx));
        for (int64_t y = 0; y < r.ny; y++)
            memcpy(v + y * r.nx, whole + (r.y0 + y) * d->grid.Lx + r.x0, sizeof(uint32_t) * (size_t)r.nx);
        rc = cp_bstore_put(d->store, cp_dname(d, CP_SLOT_M0, name), b, v,
                           sizeof(uint32_t) * (size_t)(r.ny * r.nx), err);
        free(v);
    }
    return rc;
}

/* One distributed run on plane (Ly, Lx) with blocks of side B: m0 (+ dP when thr > 0), then
 * gathers "qc" and "lab" to rank 0 and counts the pixels differing from want_qc / want_lab (either
 * may be NULL). Returns the differing pixels (rank 0). */
static int64_t run_once(const cp_bstore *st, int64_t z, int64_t Ly, int64_t Lx, int64_t B,
                        const uint32_t *m0, const float *dP, double thr, int64_t min_size,
                        const uint32_t *want_qc, const uint32_t *want_lab, int64_t want_n,
                        const char *what)
{
    cp_dplane d;
    cp_dplane_init(&d, MPI_COMM_WORLD, Ly, Lx, B, st, z);
    char err[CP_ERR_LEN] = "";
    int64_t n = Ly * Lx, nl = -1;
    int rc = put_m0(&d, m0, err);
    TU_CHECK(rc == 0, "%s: put m0: %s", what, err);
    if (thr > 0) {
        float *cp = calloc((size_t)n, sizeof(float));
        rc = cp_dplane_put_dp(&d, dP, cp, err);
        TU_CHECK(rc == 0, "%s: put dp: %s", what, err);
        free(cp);
    }
    double t0 = MPI_Wtime();
    rc = cp_dpost_run(&d, thr, min_size, &nl, err);
    double t = MPI_Wtime() - t0;
    TU_CHECK(rc == 0, "%s B %lld: %s", what, (long long)B, err);
    uint32_t *qc = rank == 0 ? malloc(sizeof(uint32_t) * (size_t)n) : NULL;
    uint32_t *lab = rank == 0 ? malloc(sizeof(uint32_t) * (size_t)n) : NULL;
    rc = cp_dplane_gather_u32(&d, CP_SLOT_QC, qc, err);
    TU_CHECK(rc == 0, "%s: gather qc: %s", what, err);
    rc = cp_dplane_gather_u32(&d, CP_SLOT_LAB, lab, err);
    TU_CHECK(rc == 0, "%s: gather lab: %s", what, err);
    int64_t dq = 0, dl = 0;
    if (rank == 0) {
        if (want_qc) dq = tu_count_diff_u32(qc, want_qc, n);
        if (want_lab) dl = tu_count_diff_u32(lab, want_lab, n);
        printf("  %s B=%lld (%lld blocks): qc %s %lld px differ, lab %s %lld px differ, nlabels "
               "%lld (want %lld), %.3f s\n",
               what, (long long)B, (long long)d.grid.nblocks, want_qc ? "" : "(unchecked)",
               (long long)dq, want_lab ? "" : "(unchecked)", (long long)dl, (long long)nl,
               (long long)want_n, t);
        TU_CHECK(dq == 0 && dl == 0, "%s B %lld: qc %lld, lab %lld pixels differ", what,
                 (long long)B, (long long)dq, (long long)dl);
        TU_CHECK(want_n < 0 || nl == want_n, "%s B %lld: nlabels %lld, want %lld", what,
                 (long long)B, (long long)nl, (long long)want_n);
    }
    free(qc);
    free(lab);
    return dq + dl;
}

static uint32_t max_u32(const uint32_t *a, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = a[i] > m ? a[i] : m;
    return m;
}

/* masks_raw (+ dP) of every plane of a case -> qc == masks_flowqc, lab == masks (masks_planes
 * with min_size -1 in a stitching run; no final check for the no-resample case). */
static void test_oracle(const cp_bstore *st, const char *cs, const char *suffix)
{
    json_object *cj = tu_case_json(cs);
    const char *prefix = strcmp(suffix, "_stitch025") == 0 ? "stitch025_run." : "";
    json_object *jt = refcase_param(cj, prefix, "flow_threshold");
    json_object *jm = refcase_param(cj, prefix, "min_size");
    json_object *js = refcase_param(cj, prefix, "stitch_threshold");
    int stitched = js && json_object_get_double(js) > 0;
    double thr = json_object_get_double(jt);
    int64_t min_size = stitched ? -1 : json_object_get_int64(jm);
    int final = strcmp(cs, "synth_trained_nbase16_diam40_noresample") != 0;
    const char *raw_name = tu_path("masks_raw%s.tif", suffix);
    const char *dp_name = strcmp(suffix, "_niter200") == 0 ? "dP.tif" : tu_path("dP%s.tif", suffix);
    tu_tiff raw = tu_read_tiff(refcase_file(cj, cs, raw_name));
    tu_tiff dP = tu_read_tiff(refcase_file(cj, cs, dp_name));
    int chain = strcmp(suffix, "_niter200") == 0; /* no flowqc file: qc from the whole-plane QC */
    tu_tiff qc = {0}, fin = {0};
    if (!chain) qc = tu_read_tiff(refcase_file(cj, cs, tu_path("masks_flowqc%s.tif", suffix)));
    if (final)
        fin = tu_read_tiff(refcase_file(cj, cs, tu_path("%s%s.tif", stitched ? "masks_planes" : "masks", suffix)));
    int64_t Z = raw.pages, Ly = raw.ny, Lx = raw.nx, n = Ly * Lx, nd = 0;
    if (rank == 0)
        printf("%s%s: %lld plane(s) %lld x %lld, flow_threshold %g, min_size %lld\n", cs, suffix,
               (long long)Z, (long long)Ly, (long long)Lx, thr, (long long)min_size);
    float *flow = malloc(sizeof(float) * 2 * (size_t)n);
    uint32_t *wq = malloc(sizeof(uint32_t) * (size_t)n);
    char err[CP_ERR_LEN] = "";
    for (int64_t z = 0; z < Z; z++) {
        for (int c = 0; c < 2; c++) /* dP is (C, Z, Y, X) */
            memcpy(flow + c * n, dP.f32 + (c * Z + z) * n, sizeof(float) * (size_t)n);
        memcpy(wq, raw.u32 + z * n, sizeof(uint32_t) * (size_t)n);
        if (chain) TU_CHECK(cp_post_flow_qc(wq, Ly, Lx, flow, thr, NULL, err) == 0, "%s", err);
        else memcpy(wq, qc.u32 + z * n, sizeof(uint32_t) * (size_t)n);
        const uint32_t *wl = final ? fin.u32 + z * n : NULL;
        int64_t wn = final ? (int64_t)max_u32(wl, n) : -1;
        for (size_t k = 0; k < NBLOCKS; k++)
            nd += run_once(st, z * 16 + (int64_t)k, Ly, Lx, BLOCKS[k], raw.u32 + z * n, flow, thr,
                           min_size, wq, wl, wn, tu_path("%s%s plane %lld", cs, suffix, (long long)z));
    }
    if (rank == 0) printf("%s%s: %lld pixels differ in all\n", cs, suffix, (long long)nd);
    free(flow);
    free(wq);
    tu_tiff_free(&raw);
    tu_tiff_free(&dP);
    if (!chain) tu_tiff_free(&qc);
    if (final) tu_tiff_free(&fin);
    json_object_put(cj);
}

/* labels_in.tif of fill_holes_min_size_gaps (labels with gaps, one swallowed), min_size 15, no
 * QC -> the corrected rule of cp_post_fill_and_min_size on the whole array. */
static void test_gaps(const cp_bstore *st)
{
    const char *cs = "fill_holes_min_size_gaps";
    tu_tiff in = tu_read_tiff(tu_path("%s/reference/%s/labels_in.tif", tu_shared(), cs));
    int64_t n = in.ny * in.nx;
    uint32_t *want = malloc(sizeof(uint32_t) * (size_t)n);
    memcpy(want, in.u32, sizeof(uint32_t) * (size_t)n);
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_post_fill_and_min_size(want, 1, in.ny, in.nx, 15, err) == 0, "%s", err);
    if (rank == 0)
        printf("%s: %lld x %lld, labels up to %u -> %u masks (corrected rule)\n", cs,
               (long long)in.ny, (long long)in.nx, max_u32(in.u32, n), max_u32(want, n));
    for (size_t k = 0; k < NBLOCKS; k++)
        run_once(st, (int64_t)k, in.ny, in.nx, BLOCKS[k], in.u32, NULL, 0, 15, in.u32, want,
                 max_u32(want, n), cs);
    free(want);
    tu_tiff_free(&in);
}

/* ---- synthetic planes ---------------------------------------------------------------------- */

static uint64_t rng_state = 12345;
static double rnd(void) /* deterministic, identical on every rank */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static void disc(uint32_t *l, int64_t Ly, int64_t Lx, double cy, double cx, double r0, double r1,
                 uint32_t v)
{
    for (int64_t y = 0; y < Ly; y++)
        for (int64_t x = 0; x < Lx; x++) {
            double d = hypot((double)y - cy, (double)x - cx);
            if (d >= r0 && d < r1) l[y * Lx + x] = v;
        }
}

static void box(uint32_t *l, int64_t Lx, int64_t y0, int64_t y1, int64_t x0, int64_t x1, uint32_t v)
{
    for (int64_t y = y0; y < y1; y++)
        for (int64_t x = x0; x < x1; x++) l[y * Lx + x] = v;
}

/* The stress plane (ids 1..k before relabelling; returns k). See the file comment. */
static uint32_t synth_plane(uint32_t *l, int64_t Ly, int64_t Lx)
{
    uint32_t v = 0;
    memset(l, 0, sizeof(uint32_t) * (size_t)(Ly * Lx));
    for (int i = 0; i < 70; i++) /* overlapping blobs: irregular shapes, some with holes */
        disc(l, Ly, Lx, rnd() * (double)Ly, rnd() * (double)Lx, rnd() < 0.2 ? 3 + 3 * rnd() : 0,
             4 + 10 * rnd(), ++v);
    double cy = 130, cx = 150;
    disc(l, Ly, Lx, cy, cx, 0, 70, 0);
    disc(l, Ly, Lx, cy, cx, 45, 70, ++v);         /* the ring: crosses many 32-px blocks */
    disc(l, Ly, Lx, cy - 20, cx - 5, 0, 5, ++v);  /* swallowed */
    disc(l, Ly, Lx, cy + 25, cx + 10, 0, 2, ++v); /* swallowed, small */
    disc(l, Ly, Lx, cy + 5, cx + 15, 9, 16, ++v); /* a ring in the hole ... */
    disc(l, Ly, Lx, cy + 5, cx + 15, 0, 4, ++v);  /* ... holding a label in its own hole */
    uint32_t split = ++v;                         /* non-contiguous: in the hole and outside */
    box(l, Lx, (int64_t)cy - 5, (int64_t)cy + 3, (int64_t)cx - 30, (int64_t)cx - 20, split);
    box(l, Lx, 5, 12, Lx - 40, Lx - 20, split);
    box(l, Lx, 60, 62, 3, Lx - 3, ++v);          /* long thin horizontal */
    box(l, Lx, 3, Ly - 3, 250, 251, ++v);         /* long thin vertical, 1 px */
    uint32_t diag = ++v;
    for (int64_t k = 0; k < 150; k++) l[(70 + k) * Lx + 10 + k / 2] = diag; /* thin, 8-connected */
    uint32_t top = ++v;                           /* on the plane border, with a hole */
    box(l, Lx, 0, 12, 100, 140, top);
    box(l, Lx, 3, 8, 105, 135, 0);
    box(l, Lx, 4, 6, 110, 113, ++v);              /* swallowed by the border ring */
    uint32_t u = ++v;                             /* U open on the plane border: no hole */
    box(l, Lx, Ly - 20, Ly, 10, 40, u);
    box(l, Lx, Ly - 15, Ly, 15, 35, 0);
    box(l, Lx, Ly - 45, Ly - 41, 30, 90, ++v);    /* gap maker: removed below */
    /* a U closed by another label: the space between them is a hole of neither */
    box(l, Lx, 200, 230, 255, 295, ++v);
    box(l, Lx, 205, 230, 260, 290, 0);
    box(l, Lx, 230, 236, 255, 295, ++v);
    return v;
}

/* Whole-plane expectation: QC then fill/min_size. */
static void expect(const uint32_t *m0, int64_t Ly, int64_t Lx, const float *dP, double thr,
                   int64_t min_size, uint32_t *qc, uint32_t *lab)
{
    int64_t n = Ly * Lx;
    char err[CP_ERR_LEN] = "";
    memcpy(qc, m0, sizeof(uint32_t) * (size_t)n);
    if (thr > 0) TU_CHECK(cp_post_flow_qc(qc, Ly, Lx, dP, thr, NULL, err) == 0, "%s", err);
    memcpy(lab, qc, sizeof(uint32_t) * (size_t)n);
    TU_CHECK(cp_post_fill_and_min_size(lab, 1, Ly, Lx, min_size, err) == 0, "%s", err);
}

static int present(const uint32_t *l, int64_t n, uint32_t v)
{
    for (int64_t i = 0; i < n; i++)
        if (l[i] == v) return 1;
    return 0;
}

static void test_synth(const cp_bstore *st)
{
    int64_t Ly = 260, Lx = 300, n = Ly * Lx;
    uint32_t *l = malloc(sizeof(uint32_t) * (size_t)n), *m0 = malloc(sizeof(uint32_t) * (size_t)n);
    uint32_t *qc = malloc(sizeof(uint32_t) * (size_t)n), *lab = malloc(sizeof(uint32_t) * (size_t)n);
    float *dP = malloc(sizeof(float) * 2 * (size_t)n);
    double *mu = malloc(sizeof(double) * 2 * (size_t)n);
    uint32_t k = synth_plane(l, Ly, Lx);
    char err[CP_ERR_LEN] = "";
    int64_t z = 0;

    /* Variants of the label values: raw ids with gaps in a scrambled order (the ring gets a value
     * above and below those it holds), and renumbered by first appearance as "m0" is. */
    for (int variant = 0; variant < 2; variant++) {
        for (int64_t i = 0; i < n; i++) {
            uint32_t v = l[i];
            if (v == k - 2) v = 0; /* the gap maker */
            m0[i] = v ? (variant == 0 ? (v * 37u) % 211u + 3u : v) : 0;
        }
        if (variant == 1) cp_renumber(m0, n);
        uint32_t ringv = m0[180 * Lx + 150], innerv = m0[135 * Lx + 165];
        uint32_t innerring = m0[135 * Lx + 177];
        /* QC flows: 5 mu scaled per label by 1 - a (error ~ a^2 against threshold 0.4); the ring
         * and the long horizontal label get a = 1 (removed: crossing labels). */
        TU_CHECK(cp_masks_to_flows(m0, Ly, Lx, mu, err) == 0, "%s", err);
        for (int64_t i = 0; i < n; i++) {
            uint32_t v = m0[i];
            double a = v == ringv || v == m0[61 * Lx + 100] ? 1.0 : fmod(v * 0.37, 1.0);
            dP[i] = (float)(5 * mu[i] * (1 - a));
            dP[n + i] = (float)(5 * mu[n + i] * (1 - a));
        }
        const double thr[] = {0, 0, 0, 0.4};
        const int64_t ms[] = {15, 0, -1, 15};
        for (int c = 0; c < 4; c++) {
            expect(m0, Ly, Lx, dP, thr[c], ms[c], qc, lab);
            if (c == 0) /* the plane does what it is built for */
                TU_CHECK(innerv && innerv != ringv && innerring != ringv && innerring != innerv &&
                             lab[135 * Lx + 165] == lab[180 * Lx + 150] &&
                             lab[135 * Lx + 177] == lab[180 * Lx + 150] && lab[180 * Lx + 150],
                         "synth: the ring does not swallow the labels in its hole");
            if (c == 3) TU_CHECK(!present(qc, n, ringv), "synth: the QC keeps the ring");
            const char *what = tu_path("synth %s thr %g min_size %lld",
                                       variant ? "renumbered" : "gaps", thr[c], (long long)ms[c]);
            for (size_t b = 0; b < NBLOCKS; b++)
                run_once(st, z++, Ly, Lx, BLOCKS[b], m0, dP, thr[c], ms[c], qc, lab,
                         max_u32(lab, n), what);
        }
    }
    free(l);
    free(m0);
    free(qc);
    free(lab);
    free(dP);
    free(mu);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    cp_bstore st;
    dtest_open_store(&st);
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "oracle") == 0 && argc > 2) test_oracle(&st, argv[2], argc > 3 ? argv[3] : "");
    else if (strcmp(mode, "gaps") == 0) test_gaps(&st);
    else if (strcmp(mode, "synth") == 0) test_synth(&st);
    else TU_CHECK(0, "usage: test_dpost oracle CASE [SUFFIX] | gaps | synth");
    MPI_Barrier(MPI_COMM_WORLD);
    int failed = tu_failed;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        if (!failed) cp_bstore_destroy(&st);
        tu_run("rmdir %s 2>/dev/null", tu_tmpdir());
    }
    tu_failed = failed;
    int rc = rank == 0 ? tu_finish() : (failed ? 1 : 0);
    MPI_Finalize();
    return rc;
}
