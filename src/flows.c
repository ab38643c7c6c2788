/* Ideal flows from a label image: Cellpose's masks_to_flows_cpu, bit-exact in f64
 * (CELLPOSE_ALGORITHM.md §4.2). Per label: Jacobi heat diffusion from the mask pixel nearest the
 * centroid inside the label's bounding box plus a 1-pixel border, then the normalized gradient.
 * Labels run in parallel (OpenMP); each label only touches its own pixels, a list of them with
 * neighbour offsets, and two private grid buffers. Memory: O(max label + pixels) plus, per thread,
 * two f64 grids of the label's box. */
#include "flows.h"

#include "cp_err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Labels with at least this many pixels share the threads inside their diffusion. */
#define BIG_LABEL 65536

/* One label's pixels (image indices, row-major) and its bounding box [r0, r1) x [c0, c1). */
struct label_box {
    int64_t start, count; /* slice of the pixel list */
    int64_t r0, r1, c0, c1;
};

/* Index of the mask pixel nearest the centroid (grid coordinates y+1, x+1 as in Cellpose; the
 * shift cancels in the differences but is kept so the f64 operands are the same). Ties: first. */
static int64_t centre_pixel(const int64_t *pix, const struct label_box *b, int64_t Lx)
{
    int64_t sy = 0, sx = 0;
    for (int64_t k = 0; k < b->count; k++) {
        sy += pix[k] / Lx - b->r0 + 1;
        sx += pix[k] % Lx - b->c0 + 1;
    }
    double ym = (double)sy / (double)b->count, xm = (double)sx / (double)b->count;
    int64_t best = 0;
    double bestd = INFINITY;
    for (int64_t k = 0; k < b->count; k++) {
        double dx = (double)(pix[k] % Lx - b->c0 + 1) - xm;
        double dy = (double)(pix[k] / Lx - b->r0 + 1) - ym;
        double d = dx * dx + dy * dy;
        if (d < bestd) {
            bestd = d;
            best = k;
        }
    }
    return best;
}

/* Diffusion of one label: g[k] are grid indices of the mask pixels (grid row length gx), g[kc]
 * the centre, a and b zeroed grids. Returns the buffer that holds T after niter Jacobi steps.
 * The centre's "+1" of step t+1 is added right after step t writes it, by the thread that wrote
 * it (same operands, same order as Cellpose), so a step needs a single barrier. With par, the
 * pixels of each step are shared by the threads of a new team (a Jacobi step has no order, so the
 * bits do not depend on it). */
static double *diffuse(const int64_t *g, int64_t np, int64_t gx, int64_t kc, int64_t niter,
                       double *a, double *b, int par)
{
    const double ninth = 1 / 9.;
    if (niter > 0) a[g[kc]] += 1;
#pragma omp parallel if (par)
    {
        double *src = a, *dst = b;
        for (int64_t t = 0; t < niter; t++) {
            int more = t + 1 < niter;
#pragma omp for schedule(static)
            for (int64_t k = 0; k < np; k++) {
                const double *p = src + g[k];
                dst[g[k]] = ninth * (p[0] + p[-gx] + p[gx] + p[-1] + p[1] + p[-gx - 1] +
                                     p[-gx + 1] + p[gx - 1] + p[gx + 1]);
                if (k == kc && more) dst[g[k]] += 1;
            }
            double *s = src;
            src = dst;
            dst = s;
        }
    }
    return niter % 2 ? b : a;
}

/* Unnormalized flows (dy, dx) of one label into mu (par: see diffuse). Returns 0 or CP_ENOMEM. */
static int label_flows(const int64_t *pix, const struct label_box *b, int64_t Ly, int64_t Lx,
                       double *mu, int par)
{
    int64_t gy = b->r1 - b->r0 + 2, gx = b->c1 - b->c0 + 2;
    double *ta = calloc((size_t)(gy * gx), sizeof(double));
    double *tb = calloc((size_t)(gy * gx), sizeof(double));
    int64_t *g = malloc(sizeof(int64_t) * (size_t)b->count);
    if (!ta || !tb || !g) {
        free(ta);
        free(tb);
        free(g);
        return CP_ENOMEM;
    }
    for (int64_t k = 0; k < b->count; k++)
        g[k] = (pix[k] / Lx - b->r0 + 1) * gx + (pix[k] % Lx - b->c0 + 1);
    int64_t c = centre_pixel(pix, b, Lx);
    double *T = diffuse(g, b->count, gx, c, 2 * (gy + gx), ta, tb, par);
    for (int64_t k = 0; k < b->count; k++) {
        mu[pix[k]] = T[g[k] + gx] - T[g[k] - gx];
        mu[Ly * Lx + pix[k]] = T[g[k] + 1] - T[g[k] - 1];
    }
    free(ta);
    free(tb);
    free(g);
    return 0;
}

int cp_masks_to_flows(const uint32_t *labels, int64_t Ly, int64_t Lx, double *mu, char *err)
{
    if (!labels || !mu || Ly <= 0 || Lx <= 0)
        return cp_errf(err, CP_EPARAM, "flows.c: masks_to_flows: bad arguments (%lld x %lld)",
                       (long long)Ly, (long long)Lx);
    int64_t n = Ly * Lx;
    uint32_t vmax = 0;
    for (int64_t i = 0; i < n; i++) vmax = labels[i] > vmax ? labels[i] : vmax;
    memset(mu, 0, sizeof(double) * (size_t)(2 * n));
    if (vmax == 0) return 0;

    struct label_box *box = calloc((size_t)vmax + 1, sizeof *box);
    int64_t *pix = malloc(sizeof(int64_t) * (size_t)n);
    if (!box || !pix) {
        free(box);
        free(pix);
        return cp_errf(err, CP_ENOMEM, "flows.c: masks_to_flows: out of memory for %u labels",
                       vmax);
    }
    for (uint32_t v = 1; v <= vmax; v++) {
        box[v].r0 = Ly;
        box[v].c0 = Lx;
    }
    for (int64_t i = 0; i < n; i++) {
        struct label_box *b = &box[labels[i]];
        int64_t r = i / Lx, c = i % Lx;
        b->count++;
        if (r < b->r0) b->r0 = r;
        if (r + 1 > b->r1) b->r1 = r + 1;
        if (c < b->c0) b->c0 = c;
        if (c + 1 > b->c1) b->c1 = c + 1;
    }
    int64_t off = 0;
    for (uint32_t v = 1; v <= vmax; v++) {
        box[v].start = off;
        off += box[v].count;
        box[v].count = 0;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = labels[i];
        if (v) pix[box[v].start + box[v].count++] = i;
    }

    /* Small labels run in parallel, one per thread; labels of BIG_LABEL pixels or more run one
     * after the other with the threads sharing each diffusion step. */
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (int64_t v = 1; v <= (int64_t)vmax; v++)
        if (box[v].count && box[v].count < BIG_LABEL && !failed)
            failed |= label_flows(pix + box[v].start, &box[v], Ly, Lx, mu, 0) != 0;
    for (int64_t v = 1; v <= (int64_t)vmax && !failed; v++)
        if (box[v].count >= BIG_LABEL)
            failed |= label_flows(pix + box[v].start, &box[v], Ly, Lx, mu, 1) != 0;
    free(box);
    free(pix);
    if (failed)
        return cp_errf(err, CP_ENOMEM, "flows.c: masks_to_flows: out of memory for a label grid");

#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double dy = mu[i], dx = mu[n + i];
        double s = 1e-60 + sqrt(dy * dy + dx * dx);
        mu[i] = dy / s;
        mu[n + i] = dx / s;
    }
    return 0;
}
