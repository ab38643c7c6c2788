/* Mask post-processing (CELLPOSE_ALGORITHM.md §4.7-4.9, §5): flow-error QC, hole filling with
 * Cellpose's label counter, the corrected min_size rule (DESIGN.md §2.8), renumbering by first
 * appearance, and stitching of stack planes by IoU. Labels are uint32 everywhere; per-label tables
 * are dense, so memory is O(pixels + largest label value). */
#include "post.h"

#include "cp_err.h"
#include "flows.h"
#include "renumber.h"

#include <stdlib.h>
#include <string.h>

static uint32_t max_label(const uint32_t *l, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = l[i] > m ? l[i] : m;
    return m;
}

int cp_post_flow_qc(uint32_t *labels, int64_t Ly, int64_t Lx, const float *dP, double threshold,
                    double *errors, char *err)
{
    if (!labels || !dP || Ly <= 0 || Lx <= 0)
        return cp_errf(err, CP_EPARAM, "post.c: flow_qc: bad arguments (%lld x %lld)",
                       (long long)Ly, (long long)Lx);
    int64_t n = Ly * Lx;
    uint32_t m = max_label(labels, n);
    if (errors) errors[0] = 0;
    if (m == 0 || (threshold <= 0 && !errors)) return 0;

    double *mu = malloc(sizeof(double) * (size_t)(2 * n));
    double *sum = calloc(2 * ((size_t)m + 1), sizeof(double));
    int64_t *cnt = calloc((size_t)m + 1, sizeof(int64_t));
    unsigned char *bad = calloc((size_t)m + 1, 1);
    int rc = 0;
    if (!mu || !sum || !cnt || !bad) {
        rc = cp_errf(err, CP_ENOMEM, "post.c: flow_qc: out of memory for %u labels", m);
        goto out;
    }
    if ((rc = cp_masks_to_flows(labels, Ly, Lx, mu, err)) != 0) goto out;
    /* scipy.ndimage.mean: per-label f64 sums in row-major pixel order, then sum / count. */
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = labels[i];
        if (!v) continue;
        cp_post_flow_error_add(sum + 2 * v, mu[i], mu[n + i], dP[i], dP[n + i]);
        cnt[v]++;
    }
    for (uint32_t v = 1; v <= m; v++) {
        /* A label value with no pixel gives 0/0 = NaN, as in scipy; NaN is never > threshold. */
        double e = cp_post_flow_error(sum + 2 * v, cnt[v]);
        if (errors) errors[v] = e;
        bad[v] = threshold > 0 && e > threshold;
    }
    for (int64_t i = 0; i < n; i++)
        if (bad[labels[i]]) labels[i] = 0;
out:
    free(mu);
    free(sum);
    free(cnt);
    free(bad);
    return rc;
}

int cp_post_too_small(int64_t area, int64_t min_size) { return area < min_size; }

/* Corrected min_size rule: every label too small is set to 0 (by its value, whatever the gaps),
 * then labels are renumbered by first appearance. */
static int remove_small(uint32_t *labels, int64_t n, int64_t min_size, char *err)
{
    uint32_t m = max_label(labels, n);
    int64_t *cnt = calloc((size_t)m + 1, sizeof *cnt);
    uint32_t *to = malloc(sizeof *to * ((size_t)m + 1));
    int64_t kept = cnt && to ? 0 : CP_ENOMEM;
    for (int64_t i = 0; !kept && i < n; i++) cnt[labels[i]]++;
    for (int64_t v = 1; !kept && v <= m; v++) to[v] = !cp_post_too_small(cnt[v], min_size);
    if (!kept) kept = cp_renumber_array(labels, n, m, to);
    free(cnt);
    free(to);
    return kept < 0 ? cp_errf(err, CP_ENOMEM, "post.c: min_size: out of memory for %u labels", m)
                    : 0;
}

void cp_post_hole_map(const uint32_t *labels, int64_t Ly, int64_t Lx, int three_d, uint32_t v,
                      const cp_box *b, unsigned char *state, int64_t *stack)
{
    cp_post_hole_map_faces(labels, Ly, Lx, three_d ? CP_FACES_ALL : CP_FACES_YX, v, b, state,
                           stack);
}

void cp_post_hole_map_faces(const uint32_t *labels, int64_t Ly, int64_t Lx, unsigned faces,
                            uint32_t v, const cp_box *b, unsigned char *state, int64_t *stack)
{
    int64_t bz = b->z1 - b->z0, by = b->y1 - b->y0, bx = b->x1 - b->x0;
    int64_t top = 0;
    for (int64_t z = 0; z < bz; z++)
        for (int64_t y = 0; y < by; y++) {
            const uint32_t *row = labels + ((b->z0 + z) * Ly + b->y0 + y) * Lx + b->x0;
            unsigned char *s = state + (z * by + y) * bx;
            int edge_row = (y == 0 && faces & CP_FACE_Y0) || (y == by - 1 && faces & CP_FACE_Y1) ||
                           (z == 0 && faces & CP_FACE_Z0) || (z == bz - 1 && faces & CP_FACE_Z1);
            for (int64_t x = 0; x < bx; x++) {
                s[x] = row[x] == v;
                if (!s[x] && (edge_row || (x == 0 && faces & CP_FACE_X0) ||
                              (x == bx - 1 && faces & CP_FACE_X1))) {
                    s[x] = 2;
                    stack[top++] = (z * by + y) * bx + x;
                }
            }
        }
    while (top > 0) {
        int64_t k = stack[--top];
        int64_t x = k % bx, y = k / bx % by, z = k / (bx * by);
        int64_t nb[6];
        int nn = 0;
        if (x > 0) nb[nn++] = k - 1;
        if (x < bx - 1) nb[nn++] = k + 1;
        if (y > 0) nb[nn++] = k - bx;
        if (y < by - 1) nb[nn++] = k + bx;
        if (z > 0) nb[nn++] = k - bx * by;
        if (z < bz - 1) nb[nn++] = k + bx * by;
        for (int i = 0; i < nn; i++)
            if (state[nb[i]] == 0) {
                state[nb[i]] = 2;
                stack[top++] = nb[i];
            }
    }
}

/* Fills the holes of label v inside its box b (see cp_post_hole_map): every voxel of the box not
 * reached from its border gets the value `to`. */
static void fill_one(uint32_t *labels, int64_t Ly, int64_t Lx, int three_d, uint32_t v,
                     const cp_box *b, uint32_t to, unsigned char *state, int64_t *stack)
{
    cp_post_hole_map(labels, Ly, Lx, three_d, v, b, state, stack);
    int64_t bz = b->z1 - b->z0, by = b->y1 - b->y0, bx = b->x1 - b->x0;
    for (int64_t z = 0; z < bz; z++)
        for (int64_t y = 0; y < by; y++) {
            uint32_t *row = labels + ((b->z0 + z) * Ly + b->y0 + y) * Lx + b->x0;
            const unsigned char *s = state + (z * by + y) * bx;
            for (int64_t x = 0; x < bx; x++)
                if (s[x] != 2) row[x] = to;
        }
}

/* Step (b) of §4.8: boxes once, then labels in increasing order, each filled and rewritten as
 * j+1; j advances for every label that had a box, even one swallowed by an earlier fill. */
static int fill_holes(uint32_t *labels, int64_t nz, int64_t Ly, int64_t Lx, int three_d, char *err)
{
    int64_t n = nz * Ly * Lx;
    uint32_t m = max_label(labels, n);
    if (m == 0) return 0;
    cp_box *box = calloc((size_t)m + 1, sizeof *box);
    if (!box) return cp_errf(err, CP_ENOMEM, "post.c: fill_holes: out of memory for %u labels", m);
    for (int64_t z = 0, i = 0; z < nz; z++)
        for (int64_t y = 0; y < Ly; y++)
            for (int64_t x = 0; x < Lx; x++, i++) {
                cp_box *b = &box[labels[i]];
                if (b->z1 == 0) {
                    *b = (cp_box){z, z + 1, y, y + 1, x, x + 1};
                    continue;
                }
                b->z1 = z + 1;
                if (y < b->y0) b->y0 = y;
                if (y + 1 > b->y1) b->y1 = y + 1;
                if (x < b->x0) b->x0 = x;
                if (x + 1 > b->x1) b->x1 = x + 1;
            }
    int64_t vmax = 0;
    for (uint32_t v = 1; v <= m; v++) {
        const cp_box *b = &box[v];
        int64_t vol = (b->z1 - b->z0) * (b->y1 - b->y0) * (b->x1 - b->x0);
        vmax = vol > vmax ? vol : vmax;
    }
    unsigned char *state = malloc((size_t)vmax);
    int64_t *stack = malloc(sizeof(int64_t) * (size_t)vmax);
    if (!state || !stack) {
        free(box);
        free(state);
        free(stack);
        return cp_errf(err, CP_ENOMEM, "post.c: fill_holes: out of memory for a box of %lld px",
                       (long long)vmax);
    }
    uint32_t j = 0;
    for (uint32_t v = 1; v <= m; v++)
        if (box[v].z1 > 0) fill_one(labels, Ly, Lx, three_d, v, &box[v], ++j, state, stack);
    free(box);
    free(state);
    free(stack);
    return 0;
}

/* (a), (b), (c) of cp_post_fill_and_min_size with the hole rule of a volume (three_d) or of a
 * plane. */
static int fill_and_min_size(uint32_t *labels, int64_t nz, int64_t Ly, int64_t Lx, int three_d,
                             int64_t min_size, char *err)
{
    if (!labels || nz <= 0 || Ly <= 0 || Lx <= 0)
        return cp_errf(err, CP_EPARAM, "post.c: fill_and_min_size: bad arguments (%lld x %lld x %lld)",
                       (long long)nz, (long long)Ly, (long long)Lx);
    int64_t n = nz * Ly * Lx;
    int rc;
    if (min_size > 0 && (rc = remove_small(labels, n, min_size, err)) != 0) return rc;
    if ((rc = fill_holes(labels, nz, Ly, Lx, three_d, err)) != 0) return rc;
    if (min_size > 0 && (rc = remove_small(labels, n, min_size, err)) != 0) return rc;
    return 0;
}

int cp_post_fill_and_min_size(uint32_t *labels, int64_t nz, int64_t Ly, int64_t Lx,
                              int64_t min_size, char *err)
{
    return fill_and_min_size(labels, nz, Ly, Lx, nz > 1, min_size, err);
}

int cp_post_fill_and_min_size_3d(uint32_t *labels, int64_t nz, int64_t Ly, int64_t Lx,
                                 int64_t min_size, char *err)
{
    return fill_and_min_size(labels, nz, Ly, Lx, 1, min_size, err);
}

/* ---- stitching ---------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Scratch of one plane pair, all freed by pair_free. */
struct pair {
    uint32_t *ucol;  /* distinct stitched ids of plane z, ascending (column j+1 = ucol[j]) */
    uint32_t *colof; /* orig label of plane z -> column (1-based; 0 background) */
    int64_t *area_a, *area_b; /* full areas of rows (orig labels of z+1) and of columns */
    int64_t *rowstart;        /* CSR: row a's overlaps are cols[rowstart[a] .. rowstart[a+1]) */
    uint32_t *cols;           /* the column of every pixel where both planes are labelled */
    double *colmax;           /* largest thresholded IoU of each column */
};

static void pair_free(struct pair *p)
{
    free(p->ucol);
    free(p->colof);
    free(p->area_a);
    free(p->area_b);
    free(p->rowstart);
    free(p->cols);
    free(p->colmax);
}

/* One step of Cellpose's stitch3D with a non-empty IoU table: plane a (orig labels 1..maxa)
 * against plane b (orig labels 1..maxb, whose stitched ids are mapb[]). Fills mapa[1..maxa] and
 * advances *mmax. Every row a of the table counts, also a label value with no pixel (it gets a
 * fresh id, as in Cellpose). The table is sparse: per row, the sorted columns it overlaps. */
static int stitch_pair(const uint32_t *a, uint32_t maxa, const uint32_t *b, const uint32_t *mapb,
                       uint32_t maxb, int64_t n, double threshold, uint32_t *mapa, int64_t *mmax,
                       char *err)
{
    struct pair p = {0};
    int rc = 0;
    p.ucol = malloc(sizeof(uint32_t) * maxb);
    p.colof = calloc((size_t)maxb + 1, sizeof(uint32_t));
    p.area_a = calloc((size_t)maxa + 1, sizeof(int64_t));
    p.area_b = calloc((size_t)maxb + 1, sizeof(int64_t));
    p.rowstart = calloc((size_t)maxa + 2, sizeof(int64_t));
    p.colmax = calloc((size_t)maxb + 1, sizeof(double));
    if (!p.ucol || !p.colof || !p.area_a || !p.area_b || !p.rowstart || !p.colmax) {
        rc = cp_errf(err, CP_ENOMEM, "post.c: stitch: out of memory for %u x %u labels", maxa, maxb);
        goto out;
    }
    /* Columns: the distinct stitched ids of plane z in ascending order (Cellpose's column order;
     * several orig labels can share an id after a tie). */
    memcpy(p.ucol, mapb + 1, sizeof(uint32_t) * maxb);
    qsort(p.ucol, maxb, sizeof(uint32_t), cmp_u32);
    uint32_t ncol = 0;
    for (uint32_t k = 0; k < maxb; k++)
        if (ncol == 0 || p.ucol[k] != p.ucol[ncol - 1]) p.ucol[ncol++] = p.ucol[k];
    for (uint32_t v = 1; v <= maxb; v++) {
        const uint32_t *f = bsearch(&mapb[v], p.ucol, ncol, sizeof(uint32_t), cmp_u32);
        p.colof[v] = (uint32_t)(f - p.ucol) + 1;
    }
    int64_t nov = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t c = p.colof[b[i]];
        p.area_a[a[i]]++;
        p.area_b[c]++;
        if (a[i] && c) {
            p.rowstart[a[i] + 1]++;
            nov++;
        }
    }
    p.cols = malloc(sizeof(uint32_t) * (size_t)(nov ? nov : 1));
    if (!p.cols) {
        rc = cp_errf(err, CP_ENOMEM, "post.c: stitch: out of memory for %lld overlaps", (long long)nov);
        goto out;
    }
    for (uint32_t v = 1; v <= maxa; v++) p.rowstart[v + 1] += p.rowstart[v];
    for (int64_t i = 0; i < n; i++) {
        uint32_t c = p.colof[b[i]];
        if (a[i] && c) p.cols[p.rowstart[a[i]]++] = c;
    }
    for (uint32_t v = maxa; v >= 1; v--) p.rowstart[v] = p.rowstart[v - 1]; /* undo the advance */

    /* Pass 1: thresholded IoU of every (row, column) pair, column maxima. Pass 2: per row the
     * first column whose IoU survives (>= column max, > 0) with the largest value. */
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t v = 1; v <= maxa; v++) {
            uint32_t *c = p.cols + p.rowstart[v];
            int64_t len = p.rowstart[v + 1] - p.rowstart[v];
            if (pass == 0) qsort(c, (size_t)len, sizeof(uint32_t), cmp_u32);
            uint32_t best = 0;
            double bestv = 0;
            for (int64_t k = 0; k < len;) {
                int64_t e = k;
                while (e < len && c[e] == c[k]) e++;
                double ov = (double)(e - k);
                double iou = ov / (double)(p.area_a[v] + p.area_b[c[k]] - (e - k));
                if (iou < threshold) iou = 0;
                if (pass == 0 && iou > p.colmax[c[k]]) p.colmax[c[k]] = iou;
                if (pass == 1 && iou >= p.colmax[c[k]] && iou > bestv) {
                    bestv = iou;
                    best = c[k];
                }
                k = e;
            }
            if (pass == 1) {
                if (best) {
                    mapa[v] = p.ucol[best - 1];
                } else if (*mmax >= UINT32_MAX) {
                    rc = cp_errf(err, CP_EDATA, "post.c: stitch: more than %u labels in the stack",
                                 UINT32_MAX);
                    goto out;
                } else {
                    mapa[v] = (uint32_t)++*mmax;
                }
            }
        }
out:
    pair_free(&p);
    return rc;
}

int cp_post_stitch(uint32_t *labels, int64_t nz, int64_t Ly, int64_t Lx, double threshold,
                   char *err)
{
    if (!labels || nz <= 0 || Ly <= 0 || Lx <= 0)
        return cp_errf(err, CP_EPARAM, "post.c: stitch: bad arguments (%lld x %lld x %lld)",
                       (long long)nz, (long long)Ly, (long long)Lx);
    int64_t n = Ly * Lx;
    uint32_t maxb = max_label(labels, n);
    uint32_t *mapb = malloc(sizeof(uint32_t) * ((size_t)maxb + 1));
    if (!mapb) return cp_errf(err, CP_ENOMEM, "post.c: stitch: out of memory for %u labels", maxb);
    for (uint32_t v = 0; v <= maxb; v++) mapb[v] = v;
    int64_t mmax = maxb;
    int rc = 0;
    for (int64_t z = 0; z + 1 < nz; z++) {
        uint32_t *b = labels + z * n, *a = b + n;
        uint32_t maxa = max_label(a, n);
        uint32_t *mapa = malloc(sizeof(uint32_t) * ((size_t)maxa + 1));
        if (!mapa) {
            rc = cp_errf(err, CP_ENOMEM, "post.c: stitch: out of memory for %u labels", maxa);
            break;
        }
        mapa[0] = 0;
        if (maxa == 0 || maxb == 0) {
            /* Empty IoU table. Cellpose, before the first non-empty table, leaves plane z+1 as is
             * and resets mmax to its maximum, so a plane after an empty one can reuse ids of
             * earlier planes (plane 0 {1}, plane 1 empty, plane 2 {1}: both objects 1).
             * Deviation: we always offset by the running maximum, as Cellpose does after the
             * first non-empty table; this equals Cellpose whenever all earlier planes were
             * empty. */
            if (mmax + maxa > UINT32_MAX) {
                free(mapa);
                rc = cp_errf(err, CP_EDATA, "post.c: stitch: more than %u labels in the stack",
                             UINT32_MAX);
                break;
            }
            for (uint32_t v = 1; v <= maxa; v++) mapa[v] = (uint32_t)(mmax + v);
            mmax += maxa;
        } else if ((rc = stitch_pair(a, maxa, b, mapb, maxb, n, threshold, mapa, &mmax, err)) != 0) {
            free(mapa);
            break;
        }
        for (int64_t i = 0; i < n; i++) b[i] = mapb[b[i]];
        free(mapb);
        mapb = mapa;
        maxb = maxa;
    }
    if (rc == 0)
        for (int64_t i = 0, off = (nz - 1) * n; i < n; i++) labels[off + i] = mapb[labels[off + i]];
    free(mapb);
    return rc;
}
