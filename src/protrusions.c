/* Protrusion recovery (see protrusions.h): restoring QC-deleted cell bodies, opening the masks,
 * then two rounds of Dijkstra over the unlabelled foreground pixels with integer costs and the
 * total order (cost, label); 5 bytes per pixel besides the queue. (Turning penalties over
 * (pixel, incoming direction) states were measured not to help: the wrong cell's path is mostly
 * a suffix of the right one; they cost 8x the work.) */
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
/* Round (3a) runs over the core of the foreground, cellprob > CORE_CP: where two
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

typedef struct list {
    int64_t *s;
    int64_t n, cap;
} list;

static int lpush(list *l, int64_t v)
{
    if (l->n == l->cap) {
        int64_t nc = l->cap ? 2 * l->cap : 256;
        int64_t *s = realloc(l->s, sizeof *s * (size_t)nc);
        if (!s) return -1;
        l->s = s, l->cap = nc;
    }
    l->s[l->n++] = v;
    return 0;
}

/* A pixel's part in a round: not in the graph (a source if labelled), a node of the round, or
 * done (attached, its label final in labels[]). */
enum { FREE = 0, NODE = 1, DONE = 2 };

/* Shortest paths over the pixels: labels[] holds the sources' labels and each node's best label
 * so far, cost[] its best cost (valid for nodes and done pixels). */
typedef struct sweep_state {
    uint32_t *labels;
    int32_t *cost;
    unsigned char *state;
    list b[NBUCKET];
    int64_t pending; /* entries in all buckets */
} sweep_state;

/* Offers (c, l) to node q: kept and queued if better in the order (cost, label) than what q
 * holds and within cap. */
static int relax(sweep_state *r, int64_t q, int32_t c, uint32_t l, int32_t cap)
{
    if (c > cap || c > r->cost[q] || (c == r->cost[q] && l >= r->labels[q])) return 0;
    r->cost[q] = c, r->labels[q] = l;
    r->pending++;
    return lpush(&r->b[c % NBUCKET], q);
}

/* A path leaves a source only into a pixel whose flow points back at it (the way a process
 * meets its own cell; a process passing along a foreign cell flows along its edge). */
static int flows_back(const float *dP, int64_t npix, int64_t q, int d)
{
    float fy = dP[q], fx = dP[npix + q];
    float nrm = sqrtf(fy * fy + fx * fx), dl = (d & 1) ? 1.41421356f : 1.0f;
    return nrm > 1e-3f && ((float)DY[d] * fy + (float)DX[d] * fx) < SEED_COS * nrm * dl;
}

/* Offers the steps out of pixel p at cost c, with its label, to the nodes around it; from a
 * source only the steps that flows_back() allows. */
static int expand(sweep_state *r, const float *dP, int64_t Ly, int64_t Lx, int64_t p, int32_t c,
                  int source, int32_t cap)
{
    int64_t npix = Ly * Lx, y = p / Lx, x = p % Lx;
    for (int d = 0; d < 8; d++) {
        int64_t qy = y + DY[d], qx = x + DX[d], q = qy * Lx + qx;
        if (qy < 0 || qy >= Ly || qx < 0 || qx >= Lx || r->state[q] != NODE) continue;
        if (source && !flows_back(dP, npix, q, d)) continue;
        if (relax(r, q, c + step_cost(dP, npix, q, d), r->labels[p], cap)) return -1;
    }
    return 0;
}

/* One round over the current nodes, the sources the labelled FREE pixels at cost 0 and src[]
 * (done pixels of an earlier round, by non-decreasing cost), each expanded when the sweep
 * reaches its cost. A node is done when its bucket comes up: steps are positive, so nothing of
 * the same cost can improve it, and its label is the least among its cheapest paths. Every node
 * offered a cost is done by the end (costs <= cap). The done nodes are appended to settled[]
 * (when not NULL) in that order, so by non-decreasing cost. */
static int sweep(sweep_state *r, const float *dP, int64_t Ly, int64_t Lx, const list *src,
                 list *settled, int32_t cap)
{
    int rc = 0;
    for (int64_t p = 0; !rc && p < Ly * Lx; p++)
        if (r->labels[p] && r->state[p] == FREE) rc = expand(r, dP, Ly, Lx, p, 0, 1, cap);
    int64_t si = 0, ns = src ? src->n : 0;
    for (int32_t c = 0; !rc && (r->pending || si < ns) && c <= cap; c++) {
        for (; !rc && si < ns && r->cost[src->s[si]] == c; si++)
            rc = expand(r, dP, Ly, Lx, src->s[si], c, 1, cap);
        list *b = &r->b[c % NBUCKET];
        for (int64_t i = 0; !rc && i < b->n; i++) {
            int64_t q = b->s[i];
            if (r->state[q] != NODE || r->cost[q] != c) continue; /* done, or queued again */
            r->state[q] = DONE;
            if (settled) rc = lpush(settled, q);
            if (!rc) rc = expand(r, dP, Ly, Lx, q, c, 0, cap);
        }
        r->pending -= b->n;
        b->n = 0;
    }
    return rc;
}

/* Makes the unlabelled FREE pixels with cellprob > thr nodes. */
static void add_nodes(sweep_state *r, const float *cellprob, int64_t npix, float thr)
{
    for (int64_t i = 0; i < npix; i++)
        if (r->state[i] == FREE && !r->labels[i] && cellprob[i] > thr)
            r->state[i] = NODE, r->cost[i] = INT32_MAX;
}

/* Step (3): round (3a) over the core, round (3b) over the rest of the foreground from the masks
 * and from (3a)'s pixels at their costs. */
static int attach(uint32_t *labels, const float *dP, const float *cellprob, int64_t Ly,
                  int64_t Lx, float thr, int32_t cap, char *err)
{
    int64_t npix = Ly * Lx;
    sweep_state r = {.labels = labels, .cost = malloc(sizeof *r.cost * (size_t)npix),
                     .state = calloc((size_t)npix, 1)};
    list core_done = {0};
    float core = thr > CORE_CP ? thr : CORE_CP;
    int rc = r.cost && r.state ? 0 : -1;
    if (!rc) {
        add_nodes(&r, cellprob, npix, core);
        rc = sweep(&r, dP, Ly, Lx, NULL, core > thr ? &core_done : NULL, cap);
    }
    if (!rc && core > thr) {
        add_nodes(&r, cellprob, npix, thr);
        rc = sweep(&r, dP, Ly, Lx, &core_done, NULL, cap);
    }
    for (int i = 0; i < NBUCKET; i++) free(r.b[i].s);
    free(r.cost), free(r.state), free(core_done.s);
    return rc ? cp_errf(err, CP_ENOMEM, "protrusions: out of memory (%lldx%lld)", (long long)Ly,
                        (long long)Lx)
              : 0;
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
