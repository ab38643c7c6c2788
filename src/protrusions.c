/* Protrusion recovery (see protrusions.h): restoring QC-deleted cell bodies, opening the masks,
 * then a Dijkstra over the unlabelled foreground with integer costs and the total order
 * (cost, label). (Turning penalties over (pixel, incoming direction) states were measured not to
 * help: the wrong cell's path is mostly a suffix of the right one; they cost 8x the work.) */
#include "protrusions.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"

/* the 8 directions, counter-clockwise from +x; opposite directions differ by 4 */
static const int DY[8] = {0, -1, -1, -1, 0, 1, 1, 1};
static const int DX[8] = {1, 1, 0, -1, -1, -1, 0, 1};

enum {
    STEP_AXIAL = 10, STEP_DIAG = 14, /* step lengths; max_len is in STEP_AXIAL units */
    FLOW_PEN = 10,                   /* stepping along the flow instead of against it */
    OPEN_R = 2,                      /* masks are opened by a (2r+1)^2 square */
    BODY_R = 3,                      /* a restored mask needs a (2r+1)^2 core */
};
/* Round 1 of step (3) runs over the core of the foreground, cellprob > CORE_CP: where two
 * processes pass close to each other (or to a foreign body) the network's cellprob stays lower
 * between them, so the core keeps them apart. A path leaves a labelled pixel only into a pixel
 * whose flow makes an angle under ~37 degrees with the step back (cos < SEED_COS; measured:
 * the same scores from -0.7 to -0.8, within 0.1 point from -0.3 to -0.9). */
static const float CORE_CP = 2.0f, SEED_COS = -0.8f;
/* Cost of entering pixel q in direction d (from q - d): the step length plus FLOW_PEN * w, w in
 * [0, 1] growing as the step follows rather than opposes the flow at q (a process flows back to
 * its cell, against a path growing out of the cell); no flow counts as w = 1/2. */
static int32_t step_cost(const float *dP, int64_t npix, int64_t q, int d)
{
    float fy = dP[q], fx = dP[npix + q];
    float nrm = sqrtf(fy * fy + fx * fx);
    int32_t base = (d & 1) ? STEP_DIAG : STEP_AXIAL;
    if (!(nrm > 1e-3f)) return base + FLOW_PEN / 2;
    float dl = (d & 1) ? 1.41421356f : 1.0f;
    float along = ((float)DY[d] * fy + (float)DX[d] * fx) / (nrm * dl); /* in [-1, 1] */
    return base + (int32_t)lrintf((float)FLOW_PEN * (1.0f + along) * 0.5f);
}

/* core[i] = 1 where the (2r+1)^2 window around i lies inside the image and in label l[i] != 0.
 * O(1) per pixel: a row pass marks pixels whose row segment lies in one run of l[i] (kept in
 * core's row until it is overwritten r rows later), column counters then count such rows of
 * the same label in a row. cnt: Lx scratch. */
static void erode(const uint32_t *l, int64_t Ly, int64_t Lx, int r, unsigned char *core,
                  int32_t *cnt)
{
    memset(cnt, 0, sizeof *cnt * (size_t)Lx);
    for (int64_t y = 0; y < Ly; y++) {
        const uint32_t *row = l + y * Lx;
        unsigned char *h = core + y * Lx;
        memset(h, 0, (size_t)Lx);
        for (int64_t x0 = 0, x1; x0 < Lx; x0 = x1) {
            for (x1 = x0 + 1; x1 < Lx && row[x1] == row[x0]; x1++) {}
            for (int64_t x = x0 + r; row[x0] && x < x1 - r; x++) h[x] = 1;
        }
        for (int64_t x = 0; x < Lx; x++)
            cnt[x] = !h[x] ? 0 : cnt[x] && row[x] == row[x - Lx] ? cnt[x] + 1 : 1;
        for (int64_t x = 0; y >= r && x < Lx; x++)
            core[(y - r) * Lx + x] = (unsigned char)(cnt[x] >= 2 * r + 1);
    }
    int64_t tail = Ly < r ? Ly : r; /* rows whose window leaves the image at the bottom */
    memset(core + (Ly - tail) * Lx, 0, (size_t)(tail * Lx));
}

/* out[i] = 1 where in[] holds a 1 within Chebyshev distance r of i: sliding sums along rows
 * into tmp, then down columns. cnt: Lx scratch. */
static void dilate(const unsigned char *in, int64_t Ly, int64_t Lx, int r, unsigned char *tmp,
                   unsigned char *out, int32_t *cnt)
{
    for (int64_t y = 0; y < Ly; y++) {
        const unsigned char *a = in + y * Lx;
        int32_t s = 0;
        for (int64_t x = 0; x < r && x < Lx; x++) s += a[x];
        for (int64_t x = 0; x < Lx; x++) {
            s += (x + r < Lx ? a[x + r] : 0) - (x - r - 1 >= 0 ? a[x - r - 1] : 0);
            tmp[y * Lx + x] = (unsigned char)(s > 0);
        }
    }
    memset(cnt, 0, sizeof *cnt * (size_t)Lx);
    for (int64_t y = 0; y < r && y < Ly; y++)
        for (int64_t x = 0; x < Lx; x++) cnt[x] += tmp[y * Lx + x];
    for (int64_t y = 0; y < Ly; y++)
        for (int64_t x = 0; x < Lx; x++) {
            cnt[x] += (y + r < Ly ? tmp[(y + r) * Lx + x] : 0) -
                      (y - r - 1 >= 0 ? tmp[(y - r - 1) * Lx + x] : 0);
            out[y * Lx + x] = (unsigned char)(cnt[x] > 0);
        }
}

/* Opening of every mask by the (2r+1)^2 square: pixels of a mask not covered by a window lying
 * in the mask are released (set to 0); masks without such a window vanish. A window lying in
 * mask v covers only pixels of v, so "covered" is the dilation of the eroded plane. */
static int open_masks(uint32_t *labels, int64_t Ly, int64_t Lx, int r, char *err)
{
    unsigned char *core = malloc((size_t)(Ly * Lx)), *tmp = malloc((size_t)(Ly * Lx));
    int32_t *cnt = malloc(sizeof *cnt * (size_t)Lx);
    if (!core || !tmp || !cnt) {
        free(core);
        free(tmp);
        free(cnt);
        return cp_errf(err, CP_ENOMEM, "protrusions: out of memory (%lldx%lld)", (long long)Ly,
                       (long long)Lx);
    }
    erode(labels, Ly, Lx, r, core, cnt);
    dilate(core, Ly, Lx, r, tmp, core, cnt);
    for (int64_t i = 0; i < Ly * Lx; i++)
        if (!core[i]) labels[i] = 0;
    free(core);
    free(tmp);
    free(cnt);
    return 0;
}

int cp_protrusions_scan(const uint32_t *labels, const uint32_t *raw, int64_t Ly, int64_t Lx,
                        int64_t y0, int64_t x0, int64_t ny, int64_t nx, unsigned char *flags,
                        char *err)
{
    int64_t n = Ly * Lx;
    unsigned char *core = malloc((size_t)n), *near = malloc((size_t)n), *tmp = malloc((size_t)n);
    int32_t *cnt = malloc(sizeof *cnt * (size_t)Lx);
    int rc = core && near && tmp && cnt ? 0
             : cp_errf(err, CP_ENOMEM, "protrusions: out of memory (%lldx%lld)", (long long)Ly,
                       (long long)Lx);
    if (!rc) {
        erode(raw, Ly, Lx, BODY_R, core, cnt);
        for (int64_t i = 0; i < n; i++) near[i] = labels[i] != 0;
        dilate(near, Ly, Lx, 1, tmp, near, cnt); /* labelled or 8-adjacent to a labelled pixel */
        for (int64_t y = y0; y < y0 + ny; y++)
            for (int64_t x = x0; x < x0 + nx; x++) {
                int64_t i = y * Lx + x;
                if (raw[i])
                    flags[raw[i]] |= (core[i] ? CP_PROT_CORE : 0) | (near[i] ? CP_PROT_TOUCH : 0);
            }
    }
    free(core);
    free(near);
    free(tmp);
    free(cnt);
    return rc;
}

uint32_t cp_protrusions_ids(const unsigned char *flags, uint32_t raw_max, uint32_t label_max,
                            uint32_t *map)
{
    map[0] = 0;
    for (uint32_t k = 1; k <= raw_max; k++)
        map[k] = flags[k] == CP_PROT_CORE ? ++label_max : 0;
    return label_max;
}

/* Dial's bucket queue: costs are integers and every step costs at most MAX_STEP, so the nodes
 * of cost c wait in bucket c % NBUCKET until all cheaper ones are done. */
enum { MAX_STEP = STEP_DIAG + FLOW_PEN, NBUCKET = 32 };
_Static_assert(MAX_STEP < NBUCKET, "a step must not wrap around the buckets");

typedef struct bucket {
    int64_t *s;
    int64_t n, cap;
} bucket;

/* One round of shortest paths: the graph (node[] maps pixels to 0..nn-1 or -1, pix[] back),
 * each node's best (cost, label) so far, and the queue. */
typedef struct sweep_state {
    const int64_t *node, *pix;
    int64_t nn;
    int32_t *cost;
    uint32_t *lab;
    unsigned char *done;
    bucket b[NBUCKET];
    int64_t pending; /* entries in all buckets */
} sweep_state;

static int bpush(sweep_state *r, int32_t c, int64_t k)
{
    bucket *b = &r->b[c % NBUCKET];
    r->pending++;
    if (b->n == b->cap) {
        int64_t nc = b->cap ? 2 * b->cap : 256;
        int64_t *s = realloc(b->s, sizeof *s * (size_t)nc);
        if (!s) return -1;
        b->s = s, b->cap = nc;
    }
    b->s[b->n++] = k;
    return 0;
}

/* Offers (c, l) to node k: kept and queued if better in the order (cost, label) than what k
 * holds and within cap. */
static int relax(sweep_state *r, int64_t k, int32_t c, uint32_t l, int32_t cap)
{
    if (c > cap || c > r->cost[k] || (c == r->cost[k] && l >= r->lab[k])) return 0;
    r->cost[k] = c, r->lab[k] = l;
    return bpush(r, c, k);
}

/* A path leaves a labelled pixel only into a pixel whose flow points back at it (the way a
 * process meets its own cell; a process passing along a foreign cell flows along its edge). */
static int flows_back(const float *dP, int64_t npix, int64_t q, int d)
{
    float fy = dP[q], fx = dP[npix + q];
    float nrm = sqrtf(fy * fy + fx * fx), dl = (d & 1) ? 1.41421356f : 1.0f;
    return nrm > 1e-3f && ((float)DY[d] * fy + (float)DX[d] * fx) < SEED_COS * nrm * dl;
}

/* Offers the steps out of pixel p at cost c with label l to the nodes around it; from a
 * labelled pixel (source) only the steps that flows_back() allows. */
static int expand(sweep_state *r, const float *dP, int64_t Ly, int64_t Lx, int64_t p, int32_t c,
                  uint32_t l, int source, int32_t cap)
{
    int64_t npix = Ly * Lx, y = p / Lx, x = p % Lx;
    for (int d = 0; d < 8; d++) {
        int64_t qy = y + DY[d], qx = x + DX[d], q = qy * Lx + qx;
        if (qy < 0 || qy >= Ly || qx < 0 || qx >= Lx || r->node[q] < 0) continue;
        if (source && !flows_back(dP, npix, q, d)) continue;
        if (relax(r, r->node[q], c + step_cost(dP, npix, q, d), l, cap)) return -1;
    }
    return 0;
}

/* The shortest paths of one round from the sources src[0..ns) (labelled pixels, costs
 * srccost[] non-decreasing): each source is expanded when the sweep reaches its cost, each node
 * when its bucket comes up. A node is final then: steps are positive, so nothing of the same
 * cost can improve it, and its label is the least among its cheapest paths. The final nodes
 * are appended to settled[] (when not NULL) in that order, so by non-decreasing cost. */
static int sweep(sweep_state *r, const float *dP, int64_t Ly, int64_t Lx, const int64_t *src,
                 const int32_t *srccost, int64_t ns, int32_t cap, const uint32_t *labels,
                 int64_t *settled, int64_t *nsettled)
{
    int rc = 0;
    int64_t si = 0;
    for (int32_t c = 0; !rc && (r->pending || si < ns) && c <= cap; c++) {
        for (; !rc && si < ns && srccost[si] == c; si++)
            rc = expand(r, dP, Ly, Lx, src[si], c, labels[src[si]], 1, cap);
        bucket *b = &r->b[c % NBUCKET];
        for (int64_t i = 0; !rc && i < b->n; i++) {
            int64_t k = b->s[i];
            if (r->cost[k] != c || r->done[k]) continue; /* improved since: queued again */
            r->done[k] = 1;
            if (settled) settled[(*nsettled)++] = r->pix[k];
            rc = expand(r, dP, Ly, Lx, r->pix[k], c, r->lab[k], 0, cap);
        }
        r->pending -= b->n;
        b->n = 0;
    }
    return rc;
}

/* Step (3) over the unlabelled pixels with cellprob > thr: the nodes, then one sweep from
 * src[0..ns); attached nodes take their labels (and their costs in pcost, when settled is
 * given). Returns 0, or CP_ENOMEM with err. */
static int attach_round(uint32_t *labels, int32_t *pcost, const float *dP, const float *cellprob,
                        int64_t Ly, int64_t Lx, float thr, int32_t cap, const int64_t *src,
                        const int32_t *srccost, int64_t ns, int64_t *settled, int64_t *nsettled,
                        char *err)
{
    int64_t npix = Ly * Lx, nn = 0;
    int64_t *node = malloc(sizeof *node * (size_t)npix);
    if (!node) return cp_errf(err, CP_ENOMEM, "protrusions: out of memory");
    for (int64_t i = 0; i < npix; i++) node[i] = !labels[i] && cellprob[i] > thr ? nn++ : -1;
    sweep_state r = {.node = node, .nn = nn};
    size_t m = (size_t)(nn ? nn : 1);
    int64_t *pix = malloc(sizeof *pix * m);
    r.cost = malloc(sizeof *r.cost * m), r.lab = malloc(sizeof *r.lab * m), r.done = calloc(m, 1);
    int rc = pix && r.cost && r.lab && r.done ? 0 : -1;
    for (int64_t i = 0; !rc && i < npix; i++)
        if (node[i] >= 0) pix[node[i]] = i;
    for (int64_t k = 0; !rc && k < nn; k++) r.cost[k] = INT32_MAX, r.lab[k] = UINT32_MAX;
    r.pix = pix;
    if (!rc) rc = sweep(&r, dP, Ly, Lx, src, srccost, ns, cap, labels, settled, nsettled);
    for (int64_t k = 0; !rc && k < nn; k++)
        if (r.done[k]) {
            labels[pix[k]] = r.lab[k];
            if (pcost) pcost[pix[k]] = r.cost[k];
        }
    for (int i = 0; i < NBUCKET; i++) free(r.b[i].s);
    free(node), free(pix), free(r.cost), free(r.lab), free(r.done);
    return rc ? cp_errf(err, CP_ENOMEM, "protrusions: out of memory (%lld nodes)", (long long)nn)
              : 0;
}

/* Step (3): round 1 over the core, round 2 over the rest of the foreground from the masks and
 * from round 1's pixels at their costs. */
static int attach(uint32_t *labels, const float *dP, const float *cellprob, int64_t Ly,
                  int64_t Lx, float thr, int32_t cap, char *err)
{
    int64_t npix = Ly * Lx, nm = 0;
    for (int64_t i = 0; i < npix; i++) nm += labels[i] != 0;
    int64_t *src = malloc(sizeof *src * (size_t)(npix ? npix : 1));
    int32_t *srccost = calloc((size_t)(npix ? npix : 1), sizeof *srccost);
    int32_t *pcost = malloc(sizeof *pcost * (size_t)(npix ? npix : 1));
    if (!src || !srccost || !pcost) {
        free(src), free(srccost), free(pcost);
        return cp_errf(err, CP_ENOMEM, "protrusions: out of memory (%lldx%lld)", (long long)Ly,
                       (long long)Lx);
    }
    for (int64_t i = 0, k = 0; i < npix; i++)
        if (labels[i]) src[k++] = i;
    float core = thr > CORE_CP ? thr : CORE_CP;
    int64_t ns = nm;
    int rc = attach_round(labels, pcost, dP, cellprob, Ly, Lx, core, cap, src, srccost, nm,
                          src, &ns, err); /* round 1's pixels follow the masks in src */
    for (int64_t k = nm; k < ns; k++) srccost[k] = pcost[src[k]];
    if (!rc && core > thr)
        rc = attach_round(labels, NULL, dP, cellprob, Ly, Lx, thr, cap, src, srccost, ns, NULL,
                          NULL, err);
    free(src), free(srccost), free(pcost);
    return rc;
}

int cp_protrusions_apply(uint32_t *labels, const uint32_t *raw, const uint32_t *map,
                         const float *dP, const float *cellprob, int64_t Ly, int64_t Lx,
                         float cellprob_threshold, int64_t max_len, char *err)
{
    if (Ly < 1 || Lx < 1 || Ly > INT32_MAX || Lx > INT32_MAX || max_len < 1)
        return cp_errf(err, CP_EPARAM, "protrusions: bad size %lldx%lld or max_len %lld",
                       (long long)Ly, (long long)Lx, (long long)max_len);
    int64_t npix = Ly * Lx;
    for (int64_t i = 0; raw && map && i < npix; i++)
        if (raw[i] && map[raw[i]]) labels[i] = map[raw[i]];
    int rc = open_masks(labels, Ly, Lx, OPEN_R, err);
    if (rc) return rc;
    int32_t cap = max_len > INT32_MAX / (4 * STEP_AXIAL) ? INT32_MAX / 4
                                                         : (int32_t)(STEP_AXIAL * max_len);
    return attach(labels, dP, cellprob, Ly, Lx, cellprob_threshold, cap, err);
}

int cp_protrusions_attach(uint32_t *labels, const uint32_t *raw, const float *dP,
                          const float *cellprob, int64_t Ly, int64_t Lx, float cellprob_threshold,
                          int64_t max_len, char *err)
{
    if (!raw || Ly < 1 || Lx < 1)
        return cp_protrusions_apply(labels, NULL, NULL, dP, cellprob, Ly, Lx, cellprob_threshold,
                                    max_len, err);
    uint32_t raw_max = 0, label_max = 0;
    for (int64_t i = 0; i < Ly * Lx; i++) {
        raw_max = raw[i] > raw_max ? raw[i] : raw_max;
        label_max = labels[i] > label_max ? labels[i] : label_max;
    }
    unsigned char *flags = calloc((size_t)raw_max + 1, 1);
    uint32_t *map = malloc(sizeof *map * ((size_t)raw_max + 1));
    int rc = flags && map ? 0 : cp_errf(err, CP_ENOMEM, "protrusions: out of memory (%u raw masks)",
                                        raw_max);
    if (!rc) rc = cp_protrusions_scan(labels, raw, Ly, Lx, 0, 0, Ly, Lx, flags, err);
    if (!rc) {
        cp_protrusions_ids(flags, raw_max, label_max, map);
        rc = cp_protrusions_apply(labels, raw, map, dP, cellprob, Ly, Lx, cellprob_threshold,
                                  max_len, err);
    }
    free(flags);
    free(map);
    return rc;
}
