/* Tests of src/post.c: flow-error QC, hole filling + corrected min_size, renumbering and
 * stitching, against the oracle (one ctest per reference case) and on small hand-made arrays
 * that show the documented deviations from Cellpose (CELLPOSE_ALGORITHM.md §4.8, §5).
 * Usage: test_post qc CASE [SUFFIX] | fill CASE [SUFFIX] | chain CASE SUFFIX | stitch CASE [SUFFIX]
 *        | gaps | noresample | unit */
#include "post.h"
#include "renumber.h"

#include "cp_err.h"
#include "flows.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A file of a case: its own folder, or the folder named by files.<name>.path ("shared/..."). */
static const char *case_file(json_object *cj, const char *cs, const char *name)
{
    json_object *files = tu_json_get(cj, "files"), *f = NULL, *p = NULL;
    if (files && json_object_object_get_ex(files, name, &f) && json_object_object_get_ex(f, "path", &p))
        return tu_path("%s/%s", tu_shared(), json_object_get_string(p) + strlen("shared/"));
    return tu_path("%s/reference/%s/%s", tu_shared(), cs, name);
}

/* Where the run's parameters are: "call.eval_kwargs." (or "call." for the no-network cases),
 * behind "stitch025_run." for the second run of a case (suffix "_stitch025"). A missing key is
 * def, or a fatal error if def is NaN. */
static double case_param(json_object *cj, const char *suffix, const char *key, double def)
{
    char run[64] = "";
    if (suffix && *suffix) snprintf(run, sizeof run, "%s_run.", suffix + 1);
    json_object *v = tu_json_get(cj, tu_path("%scall.eval_kwargs.%s", run, key));
    if (!v) v = tu_json_get(cj, tu_path("%scall.%s", run, key));
    if (!v && !isnan(def)) return def;
    if (!v) {
        fprintf(stderr, "case.json: no parameter %s\n", key);
        exit(2);
    }
    return json_object_get_double(v);
}

static int64_t count_masks(const uint32_t *l, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = l[i] > m ? l[i] : m;
    char *seen = calloc((size_t)m + 1, 1);
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (l[i] && !seen[l[i]]) seen[l[i]] = 1, k++;
    free(seen);
    return k;
}

/* masks_raw (+ dP) -> QC -> masks_flowqc, per plane; per-label errors against case.json. */
static void test_qc(const char *cs, const char *suffix)
{
    json_object *cj = tu_case_json(cs);
    double thr = case_param(cj, suffix, "flow_threshold", NAN);
    tu_tiff raw = tu_read_tiff(case_file(cj, cs, tu_path("masks_raw%s.tif", suffix)));
    tu_tiff qc = tu_read_tiff(case_file(cj, cs, tu_path("masks_flowqc%s.tif", suffix)));
    tu_tiff dP = tu_read_tiff(case_file(cj, cs, tu_path("dP%s.tif", suffix)));
    char run[64] = "";
    if (*suffix) snprintf(run, sizeof run, "%s_run.", suffix + 1);
    json_object *ferr = tu_json_get(cj, tu_path("%sflow_errors_of_masks_raw", run));
    int64_t Z = raw.pages, n = raw.ny * raw.nx;
    TU_CHECK(dP.pages == 2 * Z && dP.ny == raw.ny && qc.pages == Z, "shapes of %s", cs);
    double worst_rel = 0;
    int64_t ndiff = 0, nerr = 0, removed = 0;
    char err[CP_ERR_LEN] = "";
    for (int64_t z = 0; z < Z; z++) {
        uint32_t *lab = malloc(sizeof(uint32_t) * (size_t)n);
        float *flow = malloc(sizeof(float) * (size_t)(2 * n));
        memcpy(lab, raw.u32 + z * n, sizeof(uint32_t) * (size_t)n);
        for (int c = 0; c < 2; c++) /* dP is (C, Z, Y, X) */
            memcpy(flow + c * n, dP.f32 + (c * Z + z) * n, sizeof(float) * (size_t)n);
        uint32_t m = 0;
        for (int64_t i = 0; i < n; i++) m = lab[i] > m ? lab[i] : m;
        double *e = malloc(sizeof(double) * ((size_t)m + 1));
        int rc = cp_post_flow_qc(lab, raw.ny, raw.nx, flow, thr, e, err);
        TU_CHECK(rc == 0, "%s plane %lld: %s", cs, (long long)z, err);
        ndiff += tu_count_diff_u32(lab, qc.u32 + z * n, n);
        json_object *list = Z > 1 ? json_object_array_get_idx(ferr, (size_t)z) : ferr;
        TU_CHECK((int64_t)json_object_array_length(list) == (int64_t)m,
                 "%s plane %lld: %zu errors in case.json, max label %u", cs, (long long)z,
                 json_object_array_length(list), m);
        for (uint32_t v = 1; v <= m && v <= json_object_array_length(list); v++) {
            double r = json_object_get_double(json_object_array_get_idx(list, v - 1));
            double rel = fabs(e[v] - r) / fabs(r);
            worst_rel = fmax(worst_rel, rel);
            nerr++;
            removed += e[v] > thr;
        }
        free(e);
        free(flow);
        free(lab);
    }
    printf("%s%s: flow QC (threshold %g) on %lld plane(s): %lld labels, %lld removed; "
           "%lld pixels differ from masks_flowqc; max relative error of the flow errors %.3g\n",
           cs, suffix, thr, (long long)Z, (long long)nerr, (long long)removed, (long long)ndiff,
           worst_rel);
    TU_CHECK(ndiff == 0, "%s: %lld pixels differ from masks_flowqc", cs, (long long)ndiff);
    TU_CHECK(worst_rel <= 1e-14, "%s: flow errors off by %.3g relative", cs, worst_rel);
    tu_tiff_free(&raw);
    tu_tiff_free(&qc);
    tu_tiff_free(&dP);
    json_object_put(cj);
}

/* Plane-wise §4.8 on `in` with min_size, compared with `want`; returns the differing pixels. */
static int64_t fill_planes(const tu_tiff *in, const tu_tiff *want, int64_t min_size, int64_t *nmasks)
{
    int64_t n = in->ny * in->nx, nd = 0;
    uint32_t *lab = malloc(sizeof(uint32_t) * (size_t)n);
    char err[CP_ERR_LEN] = "";
    *nmasks = 0;
    for (int64_t z = 0; z < in->pages; z++) {
        memcpy(lab, in->u32 + z * n, sizeof(uint32_t) * (size_t)n);
        int rc = cp_post_fill_and_min_size(lab, 1, in->ny, in->nx, min_size, err);
        TU_CHECK(rc == 0, "plane %lld: %s", (long long)z, err);
        nd += tu_count_diff_u32(lab, want->u32 + z * n, n);
        *nmasks += count_masks(lab, n);
    }
    free(lab);
    return nd;
}

/* masks_flowqc -> §4.8 -> masks (or, in a stitching run, -> masks_planes with min_size -1). */
static void test_fill(const char *cs, const char *suffix)
{
    json_object *cj = tu_case_json(cs);
    int stitched = case_param(cj, suffix, "stitch_threshold", 0) > 0;
    int64_t min_size = stitched ? -1 : (int64_t)case_param(cj, suffix, "min_size", NAN);
    const char *out = stitched ? "masks_planes" : "masks";
    tu_tiff qc = tu_read_tiff(case_file(cj, cs, tu_path("masks_flowqc%s.tif", suffix)));
    tu_tiff want = tu_read_tiff(case_file(cj, cs, tu_path("%s%s.tif", out, suffix)));
    int64_t nm = 0, nd = fill_planes(&qc, &want, min_size, &nm);
    printf("%s%s: masks_flowqc -> fill holes, min_size %lld -> %s%s: %lld masks, %lld pixels differ\n",
           cs, suffix, (long long)min_size, out, suffix, (long long)nm, (long long)nd);
    TU_CHECK(nd == 0, "%s: %lld pixels differ", cs, (long long)nd);
    tu_tiff_free(&qc);
    tu_tiff_free(&want);
    json_object_put(cj);
}

/* The whole post chain of a rerun without a flowqc file: masks_raw SUFFIX -> QC -> §4.8. */
static void test_chain(const char *cs, const char *suffix)
{
    json_object *cj = tu_case_json(cs);
    tu_tiff raw = tu_read_tiff(case_file(cj, cs, tu_path("masks_raw%s.tif", suffix)));
    tu_tiff dP = tu_read_tiff(case_file(cj, cs, "dP.tif"));
    tu_tiff want = tu_read_tiff(case_file(cj, cs, tu_path("masks%s.tif", suffix)));
    char err[CP_ERR_LEN] = "";
    int rc = cp_post_flow_qc(raw.u32, raw.ny, raw.nx, dP.f32, case_param(cj, "", "flow_threshold", NAN),
                             NULL, err);
    TU_CHECK(rc == 0, "%s", err);
    rc = cp_post_fill_and_min_size(raw.u32, 1, raw.ny, raw.nx, (int64_t)case_param(cj, "", "min_size", NAN), err);
    TU_CHECK(rc == 0, "%s", err);
    int64_t nd = tu_count_diff_u32(raw.u32, want.u32, raw.ny * raw.nx);
    printf("%s%s: masks_raw -> QC -> fill/min_size: %lld masks, %lld pixels differ from masks%s\n",
           cs, suffix, (long long)count_masks(raw.u32, raw.ny * raw.nx), (long long)nd, suffix);
    TU_CHECK(nd == 0, "%s%s: %lld pixels differ", cs, suffix, (long long)nd);
    tu_tiff_free(&raw);
    tu_tiff_free(&dP);
    tu_tiff_free(&want);
    json_object_put(cj);
}

/* masks_planes -> stitch -> 3-D §4.8 -> masks (the final stitched volume). */
static void test_stitch(const char *cs, const char *suffix)
{
    json_object *cj = tu_case_json(cs);
    double thr = case_param(cj, suffix, "stitch_threshold", 0);
    int64_t min_size = (int64_t)case_param(cj, suffix, "min_size", NAN);
    tu_tiff pl = tu_read_tiff(case_file(cj, cs, tu_path("masks_planes%s.tif", suffix)));
    tu_tiff want = tu_read_tiff(case_file(cj, cs, tu_path("masks%s.tif", suffix)));
    int64_t n = pl.pages * pl.ny * pl.nx;
    char err[CP_ERR_LEN] = "";
    int rc = cp_post_stitch(pl.u32, pl.pages, pl.ny, pl.nx, thr, err);
    TU_CHECK(rc == 0, "%s", err);
    int64_t nst = count_masks(pl.u32, n);
    rc = cp_post_fill_and_min_size(pl.u32, pl.pages, pl.ny, pl.nx, min_size, err);
    TU_CHECK(rc == 0, "%s", err);
    int64_t nd = tu_count_diff_u32(pl.u32, want.u32, n);
    printf("%s%s: stitch(%g) -> %lld ids; 3-D fill/min_size %lld -> %lld masks; %lld voxels differ "
           "from masks%s\n",
           cs, suffix, thr, (long long)nst, (long long)min_size, (long long)count_masks(pl.u32, n),
           (long long)nd, suffix);
    TU_CHECK(nd == 0, "%s: %lld voxels differ", cs, (long long)nd);
    tu_tiff_free(&pl);
    tu_tiff_free(&want);
    json_object_put(cj);
}

/* Areas of labels 1..k (k = max), into a[] (a[0] unused). */
static uint32_t areas(const uint32_t *l, int64_t n, int64_t *a, uint32_t cap)
{
    uint32_t m = 0;
    memset(a, 0, sizeof(int64_t) * (cap + 1));
    for (int64_t i = 0; i < n; i++) {
        if (l[i] <= cap) a[l[i]]++;
        m = l[i] > m ? l[i] : m;
    }
    return m;
}

/* fill_holes_min_size_gaps: labels {2:441, 4:8, 5:816, 7:20 (inside annulus 5), 8:30}, min_size
 * 15. Corrected rule: the 8-px mask goes, 7 is swallowed by 5 -> areas 441, 30, 1009 in
 * first-appearance order. Cellpose's masks_out.tif (positional defect): 30, 1009, 8 - the disc is
 * deleted and the 8-px mask kept. Everything else must agree. */
static void test_gaps(void)
{
    const char *cs = "fill_holes_min_size_gaps";
    json_object *cj = tu_case_json(cs);
    tu_tiff in = tu_read_tiff(case_file(cj, cs, "labels_in.tif"));
    tu_tiff cp = tu_read_tiff(case_file(cj, cs, "masks_out.tif"));
    int64_t n = in.ny * in.nx, a[8], b[8];
    uint32_t *ours = in.u32;
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_post_fill_and_min_size(ours, 1, in.ny, in.nx, 15, err) == 0, "%s", err);
    uint32_t m = areas(ours, n, a, 7), mc = areas(cp.u32, n, b, 7);
    printf("%s: corrected rule: %u masks, areas %lld %lld %lld; Cellpose masks_out: %u masks, areas "
           "%lld %lld %lld\n",
           cs, m, (long long)a[1], (long long)a[2], (long long)a[3], mc, (long long)b[1],
           (long long)b[2], (long long)b[3]);
    TU_CHECK(m == 3 && a[1] == 441 && a[2] == 30 && a[3] == 1009, "corrected areas");
    TU_CHECK(mc == 3 && b[1] == 30 && b[2] == 1009 && b[3] == 8, "masks_out.tif areas");
    /* ours 2 <-> theirs 1, ours 3 <-> theirs 2; ours 1 (disc) is 0 there; their 3 is 0 here. */
    int64_t bad = 0, disc = 0, small = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t o = ours[i], t = cp.u32[i];
        if (o == 1) disc += t == 0, bad += t != 0;
        else if (t == 3) small += o == 0, bad += o != 0;
        else bad += t != (o == 0 ? 0 : o - 1);
    }
    printf("%s: differences exactly the disc (%lld px) and the 8-px mask (%lld px); %lld other "
           "pixels differ\n", cs, (long long)disc, (long long)small, (long long)bad);
    TU_CHECK(disc == 441 && small == 8 && bad == 0, "difference to masks_out.tif");
    tu_tiff_free(&in);
    tu_tiff_free(&cp);
    json_object_put(cj);
}

/* synth_trained_nbase16_diam40_noresample: QC ran at 288x336; masks resized back with OpenCV's
 * nearest rule (§2.3), then min_size 30: the corrected rule gives masks_corrected.tif (32 masks),
 * Cellpose's masks.tif has 30 (the resize left gaps). */
static void test_noresample(void)
{
    const char *cs = "synth_trained_nbase16_diam40_noresample";
    json_object *cj = tu_case_json(cs);
    tu_tiff qc = tu_read_tiff(case_file(cj, cs, "masks_flowqc.tif"));
    tu_tiff want = tu_read_tiff(case_file(cj, cs, "masks_corrected.tif"));
    tu_tiff cp = tu_read_tiff(case_file(cj, cs, "masks.tif"));
    int64_t Ly = want.ny, Lx = want.nx, n = Ly * Lx;
    double sy = 1.0 / ((double)Ly / (double)qc.ny), sx = 1.0 / ((double)Lx / (double)qc.nx);
    uint32_t *big = malloc(sizeof(uint32_t) * (size_t)n);
    for (int64_t y = 0; y < Ly; y++) {
        int64_t ry = (int64_t)floor((double)y * sy);
        ry = ry < qc.ny - 1 ? ry : qc.ny - 1;
        for (int64_t x = 0; x < Lx; x++) {
            int64_t rx = (int64_t)floor((double)x * sx);
            rx = rx < qc.nx - 1 ? rx : qc.nx - 1;
            big[y * Lx + x] = qc.u32[ry * qc.nx + rx];
        }
    }
    char err[CP_ERR_LEN] = "";
    int rc = cp_post_fill_and_min_size(big, 1, Ly, Lx, (int64_t)case_param(cj, "", "min_size", NAN), err);
    TU_CHECK(rc == 0, "%s", err);
    int64_t nd = tu_count_diff_u32(big, want.u32, n), nm = count_masks(big, n);
    int64_t ncp = count_masks(cp.u32, n);
    printf("%s: nearest resize + fill/min_size: %lld masks, %lld pixels differ from "
           "masks_corrected.tif; Cellpose's masks.tif has %lld masks\n",
           cs, (long long)nm, (long long)nd, (long long)ncp);
    TU_CHECK(nd == 0 && nm == 32 && ncp == 30, "noresample corrected masks");
    free(big);
    tu_tiff_free(&qc);
    tu_tiff_free(&want);
    tu_tiff_free(&cp);
    json_object_put(cj);
}

static void rect(uint32_t *l, int64_t Lx, int64_t y0, int64_t y1, int64_t x0, int64_t x1, uint32_t v)
{
    for (int64_t y = y0; y < y1; y++)
        for (int64_t x = x0; x < x1; x++) l[y * Lx + x] = v;
}

static void unit_renumber(void)
{
    uint32_t l[8] = {0, 5, 5, 3, 0, 70000, 3, 5};
    uint32_t want[8] = {0, 1, 1, 2, 0, 3, 2, 1};
    TU_CHECK(cp_renumber(l, 8) == 3 && !memcmp(l, want, sizeof l), "renumber by first appearance");
    uint32_t z[3] = {0, 0, 0};
    TU_CHECK(cp_renumber(z, 3) == 0 && z[0] == 0, "renumber of background only");
    /* the rule from tables, as the distributed phases use it: first raster index at stride 2
     * (label 2 absent, label 4 not kept), ids by first index among the kept labels */
    const int64_t first[12] = {0, 0, 40, 0, INT64_MAX, 0, 7, 0, 3, 0, 12, 0};
    uint32_t to[6] = {9, 1, 1, 1, 0, 1}, want_to[6] = {0, 3, 0, 1, 0, 2};
    TU_CHECK(cp_renumber_ids(first, 2, 5, to) == 3 && !memcmp(to, want_to, sizeof to),
             "ids by first appearance from tables: %u %u %u %u %u", to[1], to[2], to[3], to[4],
             to[5]);
}

static void unit_min_size(void)
{
    char err[CP_ERR_LEN] = "";
    int64_t a[8];
    /* Gaps: {1,2,4,5} with areas {100,100,100,9}, min_size 15. Cellpose removes label 4 (position
     * 3 holds the 9-px count) and keeps 2 masks; the corrected rule keeps the three 100-px ones. */
    uint32_t *l = calloc(40 * 40, sizeof *l);
    rect(l, 40, 0, 10, 0, 10, 1);
    rect(l, 40, 0, 10, 20, 30, 2);
    rect(l, 40, 20, 30, 0, 10, 4);
    rect(l, 40, 25, 28, 25, 28, 5);
    TU_CHECK(cp_post_fill_and_min_size(l, 1, 40, 40, 15, err) == 0, "%s", err);
    uint32_t m = areas(l, 1600, a, 7);
    TU_CHECK(m == 3 && a[1] == 100 && a[2] == 100 && a[3] == 100 && l[25 * 40 + 25] == 0 &&
                 l[20 * 40] == 3,
             "gaps: %u masks, areas %lld %lld %lld", m, (long long)a[1], (long long)a[2],
             (long long)a[3]);
    /* No background: 1/2/3 with areas 196/4/200 filling 20x20 (2 in a corner of 1's box, so no
     * hole). Cellpose keeps only one mask; we remove the 4-px one and keep 196 and 200. */
    memset(l, 0, 40 * 40 * sizeof *l);
    rect(l, 20, 0, 10, 0, 20, 1);
    rect(l, 20, 0, 2, 0, 2, 2);
    rect(l, 20, 10, 20, 0, 20, 3);
    TU_CHECK(cp_post_fill_and_min_size(l, 1, 20, 20, 15, err) == 0, "%s", err);
    m = areas(l, 400, a, 7);
    TU_CHECK(m == 2 && a[1] == 196 && a[2] == 200 && l[0] == 0, "no background: %u masks, %lld %lld",
             m, (long long)a[1], (long long)a[2]);
    free(l);
}

static void unit_fill(void)
{
    char err[CP_ERR_LEN] = "";
    /* Ring 1 around 2 (swallowed), 3 elsewhere; min_size 0: j advances for the emptied 2, so the
     * result has ids 1 and 3 (Cellpose's compaction in label order, gaps kept). */
    uint32_t l[12 * 12] = {0};
    rect(l, 12, 1, 8, 1, 8, 1);
    rect(l, 12, 3, 6, 3, 6, 0);
    rect(l, 12, 4, 5, 4, 5, 2);
    rect(l, 12, 9, 11, 9, 11, 3);
    TU_CHECK(cp_post_fill_and_min_size(l, 1, 12, 12, 0, err) == 0, "%s", err);
    int64_t a[8];
    uint32_t m = areas(l, 144, a, 7);
    TU_CHECK(m == 3 && a[1] == 49 && a[2] == 0 && a[3] == 4, "swallow: max %u areas %lld %lld %lld",
             m, (long long)a[1], (long long)a[2], (long long)a[3]);
    /* Compaction in label order: 9 appears first in raster order but becomes 2. The background
     * pixel between four 4-neighbours of label 5 (its diagonals open) is a hole: 4-connected
     * background cannot pass between diagonal neighbours. */
    uint32_t c[5 * 5] = {9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 5, 0, 5, 0, 0, 0, 5, 0, 0};
    TU_CHECK(cp_post_fill_and_min_size(c, 1, 5, 5, -1, err) == 0, "%s", err);
    TU_CHECK(c[0] == 2 && c[12] == 1 && c[17] == 1, "label-order compaction: %u %u", c[0], c[12]);
    TU_CHECK(c[16] == 1 && c[18] == 1 && c[22] == 1, "4-connected hole filled: %u", c[17]);

    /* 3-D: a hollow 3x3x3 cube is filled (6-connected, closed in z); a ring in one plane of a
     * volume (box depth 1: every voxel on a z face) and a tube along z (hole open at both ends)
     * are not. */
    uint32_t v[5 * 7 * 7] = {0};
    for (int z = 1; z < 4; z++) rect(v + z * 49, 7, 1, 4, 1, 4, 1);
    v[2 * 49 + 2 * 7 + 2] = 0;
    rect(v + 2 * 49, 7, 0, 3, 4, 7, 2);
    v[2 * 49 + 1 * 7 + 5] = 0;
    for (int z = 0; z < 5; z++) {
        rect(v + z * 49, 7, 4, 7, 4, 7, 3);
        v[z * 49 + 5 * 7 + 5] = 0;
    }
    TU_CHECK(cp_post_fill_and_min_size(v, 5, 7, 7, 0, err) == 0, "%s", err);
    TU_CHECK(v[2 * 49 + 2 * 7 + 2] == 1, "3-D cavity not filled");
    TU_CHECK(v[2 * 49 + 1 * 7 + 5] == 0, "single-plane ring in 3-D must stay open");
    TU_CHECK(v[2 * 49 + 5 * 7 + 5] == 0, "tube along z must stay open");
    /* The same ring as a 2-D image is filled. */
    uint32_t r[9] = {2, 2, 2, 2, 0, 2, 2, 2, 2};
    TU_CHECK(cp_post_fill_and_min_size(r, 1, 3, 3, 0, err) == 0 && r[4] == 1, "2-D ring: %u", r[4]);
}

static void unit_stitch(void)
{
    char err[CP_ERR_LEN] = "";
    /* Empty-plane collision, fixed: plane 0 {1}, plane 1 empty, plane 2 {1} elsewhere. Cellpose
     * labels both objects 1; we give plane 2 a fresh id. */
    uint32_t l[3 * 16] = {0};
    l[0] = l[1] = 1;
    l[2 * 16 + 10] = l[2 * 16 + 11] = 1;
    TU_CHECK(cp_post_stitch(l, 3, 4, 4, 0.25, err) == 0, "%s", err);
    TU_CHECK(l[0] == 1 && l[32 + 10] == 2 && l[32 + 11] == 2, "empty plane: ids %u and %u", l[0],
             l[42]);
    /* All planes empty before the first non-empty one: same as Cellpose (no offset). */
    uint32_t e[3 * 4] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 0};
    TU_CHECK(cp_post_stitch(e, 3, 2, 2, 0.25, err) == 0 && e[9] == 3, "leading empty planes: %u", e[9]);

    /* Matching: plane 1 label 2 overlaps plane 0 label 1 with IoU 3/4 -> 1; plane 1 label 1
     * overlaps nothing -> new id 2. Plane 2 label 7 overlaps that 1 with IoU 1/(1+3-1) = 1/3 >=
     * 0.25 -> 1. Rows 1..6 of that table are absent labels that consume new ids 3..8 as in
     * Cellpose, so the unmatched label 8 gets 9. */
    uint32_t s[3 * 8] = {1, 1, 1, 1, 0, 0, 0, 0, /* plane 1 */ 2, 2, 2, 0, 1, 0, 0, 0,
                         /* plane 2 */ 0, 0, 7, 0, 0, 0, 0, 8};
    TU_CHECK(cp_post_stitch(s, 3, 2, 4, 0.25, err) == 0, "%s", err);
    TU_CHECK(s[8] == 1 && s[12] == 2 && s[18] == 1 && s[23] == 9, "matching: %u %u %u %u", s[8],
             s[12], s[18], s[23]);

    /* More than 65535 labels in a stack: uint32 ids, no wrap. Plane 0 has 40000 one-pixel masks
     * on even pixels, plane 1 40000 on odd pixels (no overlap -> all new). */
    int64_t L = 300, n = L * L;
    uint32_t *big = calloc((size_t)(2 * n), sizeof *big);
    for (int64_t k = 0; k < 40000; k++) {
        big[2 * k] = (uint32_t)k + 1;
        big[n + 2 * k + 1] = (uint32_t)k + 1;
    }
    TU_CHECK(cp_post_stitch(big, 2, L, L, 0.25, err) == 0, "%s", err);
    int64_t bad = 0;
    for (int64_t k = 0; k < 40000; k++)
        bad += big[2 * k] != (uint32_t)k + 1 || big[n + 2 * k + 1] != (uint32_t)k + 40001;
    TU_CHECK(bad == 0, "80000 labels: %lld wrong ids (max id should be 80000)", (long long)bad);
    free(big);
}

static void unit_qc(void)
{
    char err[CP_ERR_LEN] = "";
    /* dP = 5*mu for labels 1 and 4 (error ~0, kept), 0 for label 3 (error = mean |mu|^2 ~ 1,
     * removed); label 2 is absent (NaN error); the survivors keep their values (no renumbering). */
    enum { L = 16 };
    uint32_t l[L * L] = {0};
    rect(l, L, 1, 6, 1, 6, 1);
    rect(l, L, 8, 14, 8, 14, 3);
    rect(l, L, 8, 14, 1, 6, 4);
    double mu[2 * L * L];
    float dP[2 * L * L];
    TU_CHECK(cp_masks_to_flows(l, L, L, mu, err) == 0, "%s", err);
    for (int i = 0; i < 2 * L * L; i++) dP[i] = l[i % (L * L)] == 3 ? 0.0f : (float)(5.0 * mu[i]);
    double e[5];
    TU_CHECK(cp_post_flow_qc(l, L, L, dP, 0.4, e, err) == 0, "%s", err);
    TU_CHECK(e[1] < 1e-12 && e[4] < 1e-12 && e[3] > 0.4 && isnan(e[2]), "errors %g %g %g %g", e[1],
             e[2], e[3], e[4]);
    TU_CHECK(l[2 * L + 2] == 1 && l[9 * L + 9] == 0 && l[9 * L + 2] == 4, "QC removal / no renumbering");
    /* threshold 0 disables removal but still reports errors. */
    rect(l, L, 8, 14, 8, 14, 3);
    TU_CHECK(cp_post_flow_qc(l, L, L, dP, 0, e, err) == 0 && l[9 * L + 9] == 3 && e[3] > 0.4,
             "threshold 0");
}

static void unit_errors(void)
{
    char err[CP_ERR_LEN] = "";
    uint32_t l[4] = {0};
    float dP[8] = {0};
    int rc = cp_post_fill_and_min_size(l, 0, 2, 2, 15, err);
    TU_CHECK(rc == CP_EPARAM && !strcmp(err, "post.c: fill_and_min_size: bad arguments (0 x 2 x 2)"),
             "fill: rc %d '%s'", rc, err);
    rc = cp_post_stitch(NULL, 2, 2, 2, 0.25, err);
    TU_CHECK(rc == CP_EPARAM && !strcmp(err, "post.c: stitch: bad arguments (2 x 2 x 2)"),
             "stitch: rc %d '%s'", rc, err);
    rc = cp_post_flow_qc(l, 2, -1, dP, 0.4, NULL, err);
    TU_CHECK(rc == CP_EPARAM && !strcmp(err, "post.c: flow_qc: bad arguments (2 x -1)"),
             "qc: rc %d '%s'", rc, err);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "unit";
    const char *cs = argc > 2 ? argv[2] : "";
    const char *suffix = argc > 3 ? argv[3] : "";
    if (!strcmp(mode, "qc")) test_qc(cs, suffix);
    else if (!strcmp(mode, "fill")) test_fill(cs, suffix);
    else if (!strcmp(mode, "chain")) test_chain(cs, suffix);
    else if (!strcmp(mode, "stitch")) test_stitch(cs, suffix);
    else if (!strcmp(mode, "gaps")) test_gaps();
    else if (!strcmp(mode, "noresample")) test_noresample();
    else {
        unit_renumber();
        unit_min_size();
        unit_fill();
        unit_stitch();
        unit_qc();
        unit_errors();
    }
    return tu_finish();
}
