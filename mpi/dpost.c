/* Per-mask steps at the label's owner (see dpost.h). Per-label facts (area, bounding box, first
 * raster index) are reduced into tables over all labels. A label whose box lies in one block is
 * decided there; any other one by the owner of its first pixel, which gathers its pixels (with dP
 * for the flow QC, with the other labels inside its box to find what its holes hold) and decides.
 * Hole filling: label v "holds" u when a hole of v (on the array before filling) contains a pixel
 * of u. Groups of labels linked by holding are independent of each other: a fill writes only over
 * its group's pixels and holes, and two holes that overlap belong to one group. A label alone in
 * its group with its box in one block is filled in place; every other group is filled at its
 * owner with cp_post_fill_and_min_size on a canvas of the group's box, which keeps Cellpose's
 * order and swallowing exact; the differences go back to the block owners as edits. */
#include "dpost.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "exchange.h"
#include "flows.h"
#include "post.h"
#include "renumber.h"

/* Records moved between ranks (memset before filling: padding travels too). */
struct qpix { /* a pixel of a crossing label with its network flow, for the QC */
    int64_t idx;
    uint32_t v;
    float dy, dx;
};
struct kpix { /* a pixel (value v) sent for label or group `key` */
    int64_t idx;
    uint32_t key, v;
};
struct edit { /* new value of a pixel; blk is set by the receiver */
    int64_t idx, blk;
    uint32_t v;
};

/* Per-label tables (labels 1..n): area, and mn[5v..5v+4] = first raster index, y0, x0, -y1,
 * -x1 of the bounding box [y0, y1) x [x0, x1), so one MIN reduction gives them all. */
struct stats {
    int64_t n;
    int64_t *area, *mn;
};

/* What every stage needs: the plane, this rank's blocks, block-sized scratch, outboxes. */
struct run {
    const cp_dplane *d;
    const cp_grid *g;
    int64_t b0, b1, bmax; /* own blocks [b0, b1); bmax = B*B */
    uint32_t *blk, *out;  /* one block */
    float *dp;            /* one "dp" block */
    cp_outbox qpx, kpx, ed; /* struct qpix, kpix, edit bound for other ranks */
    char *err;
};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static int oom(char *err, const char *what)
{
    return cp_errf(err, CP_ENOMEM, "dpost.c: out of memory for %s", what);
}

/* Queues record rec for rank dst in outbox o; what: what is sent, for the message. */
static int send(struct run *r, cp_outbox *o, int dst, const void *rec, const char *what)
{
    return cp_outbox_push(o, dst, rec, 1) ? oom(r->err, what) : 0;
}

/* In-place allreduce of n int64 in chunks that fit an int count. */
static void allreduce_i64(MPI_Comm comm, int64_t *v, int64_t n, MPI_Op op)
{
    for (int64_t o = 0; o < n; o += 1 << 26)
        MPI_Allreduce(MPI_IN_PLACE, v + o, (int)min64(n - o, 1 << 26), MPI_INT64_T, op, comm);
}

static int stats_init(struct stats *s, int64_t n, char *err)
{
    s->n = n;
    s->area = calloc((size_t)n + 1, sizeof(int64_t));
    s->mn = malloc(sizeof(int64_t) * 5 * ((size_t)n + 1));
    if (!s->area || !s->mn) return oom(err, "per-label tables");
    for (int64_t i = 0; i < 5 * (n + 1); i++) s->mn[i] = INT64_MAX;
    return 0;
}

static void stats_free(struct stats *s)
{
    free(s->area);
    free(s->mn);
    s->area = s->mn = NULL;
}

/* Adds the pixels of block array a (rectangle br of the plane) to s. */
static void stats_add(struct stats *s, const uint32_t *a, cp_rect br, int64_t Lx)
{
    for (int64_t y = 0; y < br.ny; y++)
        for (int64_t x = 0; x < br.nx; x++) {
            uint32_t v = a[y * br.nx + x];
            if (!v) continue;
            int64_t *m = s->mn + 5 * (int64_t)v, gy = br.y0 + y, gx = br.x0 + x;
            s->area[v]++;
            m[0] = min64(m[0], gy * Lx + gx);
            m[1] = min64(m[1], gy);
            m[2] = min64(m[2], gx);
            m[3] = min64(m[3], -(gy + 1));
            m[4] = min64(m[4], -(gx + 1));
        }
}

static void stats_reduce(MPI_Comm comm, struct stats *s)
{
    allreduce_i64(comm, s->area, s->n + 1, MPI_SUM);
    allreduce_i64(comm, s->mn, 5 * (s->n + 1), MPI_MIN);
}

static cp_rect label_box(const struct stats *s, uint32_t v)
{
    const int64_t *m = s->mn + 5 * (int64_t)v;
    return (cp_rect){m[1], m[2], -m[3] - m[1], -m[4] - m[2]};
}

/* A label whose box does not lie in one block. */
static int crossing(const struct run *r, const struct stats *s, uint32_t v)
{
    cp_rect b = label_box(s, v);
    return cp_grid_block_at(r->g, b.y0, b.x0) !=
           cp_grid_block_at(r->g, b.y0 + b.ny - 1, b.x0 + b.nx - 1);
}

/* The rank owning the block of label v's first pixel. */
static int label_owner(const struct run *r, const struct stats *s, uint32_t v)
{
    int64_t i = s->mn[5 * (int64_t)v];
    return cp_grid_owner(r->g, cp_grid_block_at(r->g, i / r->g->Lx, i % r->g->Lx));
}

static int load(struct run *r, const char *what, int64_t b, uint32_t *a, cp_rect *br)
{
    char name[64];
    *br = cp_grid_block(r->g, b);
    return cp_bstore_get(r->d->store, cp_dname(r->d, what, name), b, a,
                         sizeof(uint32_t) * (size_t)(br->ny * br->nx), r->err);
}

static int store(struct run *r, const char *what, int64_t b, const uint32_t *a, cp_rect br)
{
    char name[64];
    return cp_bstore_put(r->d->store, cp_dname(r->d, what, name), b, a,
                         sizeof(uint32_t) * (size_t)(br.ny * br.nx), r->err);
}

/* Holes of label v in rectangle box of the 2-D array a (row length stride): see
 * cp_post_hole_map. */
static void holes(const uint32_t *a, int64_t stride, cp_rect box, uint32_t v, unsigned char *state,
                  int64_t *stack)
{
    cp_box b = {0, 1, box.y0, box.y0 + box.ny, box.x0, box.x0 + box.nx};
    cp_post_hole_map(a, 1, stride, 0, v, &b, state, stack);
}

/* Cellpose's per-label flow error from the f64 sums of squared differences s[0], s[1]. */
static double flow_error(const double *s, int64_t cnt)
{
    return (0.0 + s[0] / (double)cnt) + s[1] / (double)cnt;
}

static void error_add(double *s, double mu0, double mu1, float dy, float dx)
{
    double d0 = mu0 - (double)(dy / 5.0f), d1 = mu1 - (double)(dx / 5.0f);
    s[0] += d0 * d0;
    s[1] += d1 * d1;
}

static int cmp_qpix(const void *a, const void *b)
{
    const struct qpix *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_kpix(const void *a, const void *b)
{
    const struct kpix *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_edit(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    if (x->blk != y->blk) return x->blk < y->blk ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* QC of the labels whose box lies in block b: ideal flows of those labels alone on the block
 * (translation does not change them), sums in raster order. Crossing labels' pixels go to their
 * owners. bad[v] = 1 for a removed label. scratch: cid (n+1 zeros, left zeroed), list, canvas
 * (block), mu (2 * block). */
static int qc_block(struct run *r, const struct stats *s, int64_t b, double thr, unsigned char *bad,
                    uint32_t *cid, uint32_t *list, uint32_t *canvas, double *mu, double *sum)
{
    cp_rect br;
    char name[64];
    int rc = load(r, "m0", b, r->blk, &br);
    cp_rect gr = cp_rect_grow(r->g, br, 1);
    int64_t gn = gr.ny * gr.nx, n = br.ny * br.nx;
    if (!rc)
        rc = cp_bstore_get(r->d->store, cp_dname(r->d, "dp", name), b, r->dp,
                           sizeof(float) * (size_t)(3 * gn), r->err);
    if (rc) return rc;
    uint32_t k = 0;
    for (int64_t y = 0; y < br.ny; y++)
        for (int64_t x = 0; x < br.nx; x++) {
            int64_t p = y * br.nx + x, q = (br.y0 - gr.y0 + y) * gr.nx + br.x0 - gr.x0 + x;
            uint32_t v = r->blk[p];
            canvas[p] = 0;
            if (v && crossing(r, s, v)) {
                struct qpix rec;
                memset(&rec, 0, sizeof rec);
                rec.idx = (br.y0 + y) * r->g->Lx + br.x0 + x, rec.v = v;
                rec.dy = r->dp[q], rec.dx = r->dp[gn + q];
                if ((rc = send(r, &r->qpx, label_owner(r, s, v), &rec, "QC pixels in transit")))
                    return rc;
            } else if (v) {
                if (!cid[v]) cid[v] = ++k, list[k] = v;
                canvas[p] = cid[v];
            }
        }
    if (k && (rc = cp_masks_to_flows(canvas, br.ny, br.nx, mu, r->err)) != 0) return rc;
    memset(sum, 0, sizeof(double) * 2 * ((size_t)k + 1));
    for (int64_t y = 0; y < br.ny; y++)
        for (int64_t x = 0; x < br.nx; x++) {
            int64_t p = y * br.nx + x, q = (br.y0 - gr.y0 + y) * gr.nx + br.x0 - gr.x0 + x;
            if (canvas[p]) error_add(sum + 2 * canvas[p], mu[p], mu[n + p], r->dp[q], r->dp[gn + q]);
        }
    for (uint32_t c = 1; c <= k; c++) {
        bad[list[c]] = flow_error(sum + 2 * c, s->area[list[c]]) > thr;
        cid[list[c]] = 0;
    }
    return 0;
}

/* QC of crossing labels at their owner, from their gathered pixels sorted by (label, index). */
static int qc_owned(struct run *r, const struct stats *s, struct qpix *px, int64_t npx,
                    double thr, unsigned char *bad)
{
    qsort(px, (size_t)npx, sizeof *px, cmp_qpix);
    int64_t Lx = r->g->Lx;
    for (int64_t i = 0; i < npx;) {
        uint32_t v = px[i].v;
        int64_t e = i;
        while (e < npx && px[e].v == v) e++;
        cp_rect bx = label_box(s, v);
        int64_t n = bx.ny * bx.nx;
        uint32_t *canvas = calloc((size_t)n, sizeof *canvas);
        double *mu = malloc(sizeof(double) * 2 * (size_t)n);
        int rc = canvas && mu ? 0 : oom(r->err, "the box of a crossing label");
        for (int64_t k = i; !rc && k < e; k++)
            canvas[(px[k].idx / Lx - bx.y0) * bx.nx + px[k].idx % Lx - bx.x0] = 1;
        if (!rc) rc = cp_masks_to_flows(canvas, bx.ny, bx.nx, mu, r->err);
        double sum[2] = {0, 0};
        for (int64_t k = i; !rc && k < e; k++) {
            int64_t p = (px[k].idx / Lx - bx.y0) * bx.nx + px[k].idx % Lx - bx.x0;
            error_add(sum, mu[p], mu[n + p], px[k].dy, px[k].dx);
        }
        if (!rc) bad[v] = flow_error(sum, e - i) > thr;
        free(canvas);
        free(mu);
        if (rc) return rc;
        i = e;
    }
    return 0;
}

/* The flow QC: bad[v] = 1 for every label it removes (bad zeroed by the caller). */
static int qc_stage(struct run *r, const struct stats *s, double thr, unsigned char *bad)
{
    int64_t n = s->n, B = r->g->B;
    uint32_t *cid = calloc((size_t)n + 1, sizeof *cid);
    uint32_t *list = malloc(sizeof(uint32_t) * ((size_t)r->bmax + 1));
    uint32_t *canvas = malloc(sizeof(uint32_t) * (size_t)r->bmax);
    double *mu = malloc(sizeof(double) * 2 * (size_t)r->bmax);
    double *sum = malloc(sizeof(double) * 2 * ((size_t)min64(n, B * B) + 1));
    int rc = cid && list && canvas && mu && sum ? 0 : oom(r->err, "the flow QC of a block");
    for (int64_t b = r->b0; !rc && b < r->b1; b++)
        rc = qc_block(r, s, b, thr, bad, cid, list, canvas, mu, sum);
    free(cid);
    free(list);
    free(canvas);
    free(mu);
    free(sum);
    struct qpix *px;
    int64_t npx;
    if ((rc = cp_exchange(&r->qpx, rc, INT64_MAX, (void **)&px, &npx, r->err)) != 0) return rc;
    rc = qc_owned(r, s, px, npx, thr, bad);
    free(px);
    if ((rc = cp_agree(r->d->comm, rc, r->err)) != 0) return rc;
    for (int64_t o = 0; o <= n; o += 1 << 28)
        MPI_Allreduce(MPI_IN_PLACE, bad + o, (int)min64(n + 1 - o, 1 << 28), MPI_UNSIGNED_CHAR,
                      MPI_MAX, r->d->comm);
    return 0;
}

/* The corrected min_size rule with renumbering by first appearance: map[v] (s->n + 1 entries) =
 * new id of label v, 0 for a label too small (cp_post_too_small), absent, or flagged in drop (may
 * be NULL). *count: the labels kept. */
static int renumber_map(const struct stats *s, int64_t min_size, const unsigned char *drop,
                        uint32_t *map, int64_t *count, char *err)
{
    for (int64_t v = 1; v <= s->n; v++)
        map[v] = !cp_post_too_small(s->area[v], min_size) && !(drop && drop[v]);
    if ((*count = cp_renumber_ids(s->mn, 5, s->n, map)) < 0) return oom(err, "renumbering");
    return 0;
}

/* "qc" of every own block: "m0" with the labels flagged bad set to 0. */
static int write_qc(struct run *r, const unsigned char *bad)
{
    int rc = 0;
    for (int64_t b = r->b0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load(r, "m0", b, r->blk, &br)) != 0) break;
        for (int64_t p = 0; p < br.ny * br.nx; p++)
            if (bad[r->blk[p]]) r->blk[p] = 0;
        rc = store(r, "qc", b, r->blk, br);
    }
    return cp_agree(r->d->comm, rc, r->err);
}

/* The array after step (a) of block b, map["qc"], into r->blk. */
static int load_mapped(struct run *r, int64_t b, const uint32_t *map, cp_rect *br)
{
    int rc = load(r, "qc", b, r->blk, br);
    for (int64_t p = 0; !rc && p < br->ny * br->nx; p++) r->blk[p] = map[r->blk[p]];
    return rc;
}

/* Labels in block array a whose box lies in the block, each once, in increasing order, into
 * list; mark (n+1 zeros) is left zeroed. Returns the count. */
static int64_t local_labels(const struct run *r, const struct stats *s, const uint32_t *a,
                            int64_t n, unsigned char *mark, uint32_t *list)
{
    int64_t k = 0;
    for (int64_t p = 0; p < n; p++)
        if (a[p] && !mark[a[p]] && !crossing(r, s, a[p])) mark[a[p]] = 1, list[k++] = a[p];
    for (int64_t i = 0; i < k; i++) mark[list[i]] = 0;
    return k;
}

static int cmp_pair(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* Appends the pair (v, u) unless it repeats the last one (a hole holds many pixels of a label). */
static int push_edge(uint32_t **e, int64_t *n, int64_t *cap, uint32_t v, uint32_t u)
{
    if (*n >= 2 && (*e)[*n - 2] == v && (*e)[*n - 1] == u) return 0;
    if (*n + 2 > *cap) {
        int64_t c = *cap ? 2 * *cap : 1024;
        uint32_t *p = realloc(*e, sizeof(uint32_t) * (size_t)c);
        if (!p) return CP_ENOMEM;
        *e = p, *cap = c;
    }
    (*e)[(*n)++] = v;
    (*e)[(*n)++] = u;
    return 0;
}

/* The "holds" edges (v, u) of the labels decided here: local labels of own blocks on the block,
 * crossing labels at their owner from the nonzero pixels of their box sent by every rank.
 * xb/xl: per own block (CSR), the crossing labels whose box touches it. Fills *e (pairs). */
static int find_edges(struct run *r, const struct stats *s, const uint32_t *map, const int64_t *xb, const uint32_t *xl, uint32_t **e,
                      int64_t *ne, int64_t *cap)
{
    unsigned char *mark = calloc((size_t)s->n + 1, 1), *state = malloc((size_t)r->bmax);
    uint32_t *list = malloc(sizeof(uint32_t) * (size_t)r->bmax);
    int64_t *stack = malloc(sizeof(int64_t) * (size_t)r->bmax);
    int rc = mark && state && list && stack ? 0 : oom(r->err, "hole search of a block");
    for (int64_t b = r->b0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load_mapped(r, b, map, &br)) != 0) break;
        int64_t k = local_labels(r, s, r->blk, br.ny * br.nx, mark, list);
        for (int64_t i = 0; !rc && i < k; i++) {
            uint32_t v = list[i];
            cp_rect bx = label_box(s, v);
            bx.y0 -= br.y0, bx.x0 -= br.x0;
            holes(r->blk, br.nx, bx, v, state, stack);
            for (int64_t q = 0; !rc && q < bx.ny * bx.nx; q++) {
                uint32_t u = r->blk[(bx.y0 + q / bx.nx) * br.nx + bx.x0 + q % bx.nx];
                if (state[q] == 0 && u && push_edge(e, ne, cap, v, u)) rc = oom(r->err, "edges");
            }
        }
        for (int64_t j = xb[b - r->b0]; !rc && j < xb[b - r->b0 + 1]; j++) {
            cp_rect bx = label_box(s, xl[j]);
            int64_t y0 = max64(bx.y0, br.y0), y1 = min64(bx.y0 + bx.ny, br.y0 + br.ny);
            int64_t x0 = max64(bx.x0, br.x0), x1 = min64(bx.x0 + bx.nx, br.x0 + br.nx);
            int dst = label_owner(r, s, xl[j]);
            for (int64_t y = y0; !rc && y < y1; y++)
                for (int64_t x = x0; !rc && x < x1; x++) {
                    uint32_t u = r->blk[(y - br.y0) * br.nx + x - br.x0];
                    struct kpix p = {y * r->g->Lx + x, xl[j], u};
                    if (u) rc = send(r, &r->kpx, dst, &p, "box pixels in transit");
                }
        }
    }
    free(mark);
    free(state);
    free(list);
    free(stack);
    struct kpix *px;
    int64_t npx;
    if ((rc = cp_exchange(&r->kpx, rc, INT64_MAX, (void **)&px, &npx, r->err)) != 0) return rc;
    qsort(px, (size_t)npx, sizeof *px, cmp_kpix);
    for (int64_t i = 0; !rc && i < npx;) {
        uint32_t v = px[i].key;
        int64_t e1 = i, Lx = r->g->Lx;
        while (e1 < npx && px[e1].key == v) e1++;
        cp_rect bx = label_box(s, v);
        int64_t n = bx.ny * bx.nx;
        uint32_t *canvas = calloc((size_t)n, sizeof *canvas);
        unsigned char *st = malloc((size_t)n);
        int64_t *stk = malloc(sizeof(int64_t) * (size_t)n);
        if (!canvas || !st || !stk) rc = oom(r->err, "the box of a crossing label");
        for (int64_t k = i; !rc && k < e1; k++)
            canvas[(px[k].idx / Lx - bx.y0) * bx.nx + px[k].idx % Lx - bx.x0] = px[k].v;
        if (!rc) holes(canvas, bx.nx, (cp_rect){0, 0, bx.ny, bx.nx}, v, st, stk);
        for (int64_t q = 0; !rc && q < n; q++)
            if (st[q] == 0 && canvas[q] && push_edge(e, ne, cap, v, canvas[q]))
                rc = oom(r->err, "edges");
        free(canvas);
        free(st);
        free(stk);
        i = e1;
    }
    free(px);
    return cp_agree(r->d->comm, rc, r->err);
}

/* Collective: every rank's edges to all; root[v] (n+1) = smallest label of v's group, single[v]
 * = 1 when v is alone in its group and its box lies in one block (filled in its block). */
static int make_groups(struct run *r, const struct stats *s, uint32_t *e, int64_t ne,
                       uint32_t *root, unsigned char *single)
{
    /* the distinct local pairs to every rank */
    if (ne) qsort(e, (size_t)(ne / 2), 2 * sizeof(uint32_t), cmp_pair);
    int64_t nu = 0;
    for (int64_t i = 0; i < ne; i += 2)
        if (nu == 0 || e[i] != e[nu - 2] || e[i + 1] != e[nu - 1]) e[nu++] = e[i], e[nu++] = e[i + 1];
    ne = nu;
    int np = r->d->nranks, rc = 0;
    int *cnt = malloc(sizeof(int) * 2 * (size_t)np);
    if (!cnt) rc = oom(r->err, "edge counts");
    if ((rc = cp_agree(r->d->comm, rc, r->err)) != 0) {
        free(cnt);
        return rc;
    }
    int mine = (int)ne;
    MPI_Allgather(&mine, 1, MPI_INT, cnt, 1, MPI_INT, r->d->comm);
    int64_t tot = 0;
    for (int k = 0; k < np; k++) cnt[np + k] = (int)tot, tot += cnt[k];
    uint32_t *all = tot > INT_MAX ? NULL : malloc(sizeof(uint32_t) * (size_t)(tot ? tot : 1));
    if (!all) rc = oom(r->err, "the edges of all ranks");
    if ((rc = cp_agree(r->d->comm, rc, r->err)) != 0) {
        free(cnt);
        return rc;
    }
    MPI_Allgatherv(e, mine, MPI_UINT32_T, all, cnt, cnt + np, MPI_UINT32_T, r->d->comm);
    free(cnt);
    for (int64_t v = 0; v <= s->n; v++) root[v] = (uint32_t)v;
    for (int64_t i = 0; i < tot; i += 2) {
        uint32_t a = all[i], b = all[i + 1];
        while (root[a] != a) a = root[a] = root[root[a]];
        while (root[b] != b) b = root[b] = root[root[b]];
        if (a < b) root[b] = a;
        else root[a] = b;
    }
    free(all);
    /* parents are smaller labels, so in increasing order root[root[v]] is already final */
    for (int64_t v = 1; v <= s->n; v++) {
        root[v] = root[root[v]];
        single[v] = 1;
    }
    for (int64_t v = 1; v <= s->n; v++)
        if (root[v] != v) single[v] = single[root[v]] = 0;
    for (int64_t v = 1; v <= s->n; v++)
        if (s->area[v] && crossing(r, s, (uint32_t)v)) single[v] = 0;
    return 0;
}

/* Fills the groups owned here (pixels gathered, sorted by (root, label, index)) on a canvas of
 * the group's box with the whole-plane routine, and sends the changed pixels to their blocks. */
static int fill_groups(struct run *r, const struct stats *s, const uint32_t *jmap,
                       const struct kpix *px, int64_t npx)
{
    int64_t Lx = r->g->Lx;
    char *err = r->err;
    for (int64_t i = 0; i < npx;) {
        int64_t e = i, nm = 0;
        while (e < npx && px[e].key == px[i].key) e++;
        int64_t y0 = INT64_MAX, x0 = INT64_MAX, y1 = 0, x1 = 0;
        for (int64_t k = i; k < e; k++)
            if (k == i || px[k].v != px[k - 1].v) {
                cp_rect bx = label_box(s, px[k].v);
                y0 = min64(y0, bx.y0), x0 = min64(x0, bx.x0);
                y1 = max64(y1, bx.y0 + bx.ny), x1 = max64(x1, bx.x0 + bx.nx);
            }
        int64_t h = y1 - y0, w = x1 - x0;
        uint32_t *canvas = calloc((size_t)(h * w), sizeof *canvas);
        uint32_t *init = calloc((size_t)(h * w), sizeof *init);
        uint32_t *mem = malloc(sizeof(uint32_t) * (size_t)(e - i));
        int rc = canvas && init && mem ? 0 : oom(err, "the box of a group of labels");
        for (int64_t k = i; !rc && k < e; k++) {
            if (k == i || px[k].v != px[k - 1].v) mem[nm++] = px[k].v;
            init[(px[k].idx / Lx - y0) * w + px[k].idx % Lx - x0] = (uint32_t)nm;
        }
        if (!rc) memcpy(canvas, init, sizeof(uint32_t) * (size_t)(h * w));
        if (!rc) rc = cp_post_fill_and_min_size(canvas, 1, h, w, -1, err);
        for (int64_t q = 0; !rc && q < h * w; q++) {
            if (!canvas[q]) continue;
            uint32_t nv = jmap[mem[canvas[q] - 1]], ov = init[q] ? mem[init[q] - 1] : 0;
            if (nv == ov) continue;
            struct edit ed;
            memset(&ed, 0, sizeof ed);
            ed.idx = (y0 + q / w) * Lx + x0 + q % w, ed.v = nv;
            int dst = cp_grid_owner(r->g, cp_grid_block_at(r->g, y0 + q / w, x0 + q % w));
            rc = send(r, &r->ed, dst, &ed, "edits in transit");
        }
        free(canvas);
        free(init);
        free(mem);
        if (rc) return rc;
        i = e;
    }
    return 0;
}

/* Step (b) of §4.8 over the blocks: single labels filled in place, the others gathered at their
 * group's owner, filled there, edits applied; the result is stored as "fh" and its area and first
 * index per label are reduced into s2 (allocated here, s->n labels). */
static int fill_stage(struct run *r, const struct stats *s, const uint32_t *map, const uint32_t *root, const unsigned char *single,
                      const uint32_t *jmap, struct stats *s2)
{
    unsigned char *mark = calloc((size_t)s->n + 1, 1), *state = malloc((size_t)r->bmax);
    uint32_t *list = malloc(sizeof(uint32_t) * (size_t)r->bmax);
    int64_t *stack = malloc(sizeof(int64_t) * (size_t)r->bmax);
    int rc = mark && state && list && stack ? 0 : oom(r->err, "hole filling of a block");
    for (int64_t b = r->b0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load_mapped(r, b, map, &br)) != 0) break;
        int64_t n = br.ny * br.nx, k = local_labels(r, s, r->blk, n, mark, list);
        memcpy(r->out, r->blk, sizeof(uint32_t) * (size_t)n);
        for (int64_t i = 0; i < k; i++) {
            uint32_t v = list[i];
            if (!single[v]) continue;
            cp_rect bx = label_box(s, v);
            bx.y0 -= br.y0, bx.x0 -= br.x0;
            holes(r->blk, br.nx, bx, v, state, stack);
            for (int64_t q = 0; q < bx.ny * bx.nx; q++)
                if (state[q] != 2) r->out[(bx.y0 + q / bx.nx) * br.nx + bx.x0 + q % bx.nx] = jmap[v];
        }
        for (int64_t p = 0; !rc && p < n; p++) {
            uint32_t v = r->blk[p];
            if (!v || single[v]) continue;
            struct kpix px = {(br.y0 + p / br.nx) * r->g->Lx + br.x0 + p % br.nx, root[v], v};
            rc = send(r, &r->kpx, label_owner(r, s, root[v]), &px, "group pixels in transit");
        }
        if (!rc) rc = store(r, "fh", b, r->out, br);
    }
    free(mark);
    free(state);
    free(list);
    free(stack);
    struct kpix *px;
    int64_t npx;
    if ((rc = cp_exchange(&r->kpx, rc, INT64_MAX, (void **)&px, &npx, r->err)) != 0) return rc;
    qsort(px, (size_t)npx, sizeof *px, cmp_kpix);
    rc = fill_groups(r, s, jmap, px, npx);
    free(px);
    struct edit *ed;
    int64_t ned;
    if ((rc = cp_exchange(&r->ed, rc, INT64_MAX, (void **)&ed, &ned, r->err)) != 0) return rc;
    for (int64_t i = 0; i < ned; i++)
        ed[i].blk = cp_grid_block_at(r->g, ed[i].idx / r->g->Lx, ed[i].idx % r->g->Lx);
    qsort(ed, (size_t)ned, sizeof *ed, cmp_edit);
    rc = stats_init(s2, s->n, r->err);
    for (int64_t b = r->b0, i = 0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load(r, "fh", b, r->out, &br)) != 0) break;
        for (; i < ned && ed[i].blk == b; i++)
            r->out[(ed[i].idx / r->g->Lx - br.y0) * br.nx + ed[i].idx % r->g->Lx - br.x0] = ed[i].v;
        stats_add(s2, r->out, br, r->g->Lx);
        rc = store(r, "fh", b, r->out, br);
    }
    free(ed);
    if ((rc = cp_agree(r->d->comm, rc, r->err)) != 0) return rc;
    stats_reduce(r->d->comm, s2);
    return 0;
}

/* Per own block, the crossing labels whose box touches it (CSR: xb[b-b0 .. b-b0+1) into xl). */
static int crossing_lists(const struct run *r, const struct stats *s, int64_t **xb, uint32_t **xl)
{
    int64_t nb = r->b1 - r->b0, nbx = r->g->nbx, B = r->g->B;
    *xb = calloc((size_t)nb + 2, sizeof(int64_t));
    *xl = NULL;
    if (!*xb) return oom(r->err, "crossing lists");
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t v = 1; v <= s->n; v++) {
            if (!s->area[v] || !crossing(r, s, (uint32_t)v)) continue;
            cp_rect bx = label_box(s, (uint32_t)v);
            for (int64_t by = bx.y0 / B; by <= (bx.y0 + bx.ny - 1) / B; by++)
                for (int64_t bxx = bx.x0 / B; bxx <= (bx.x0 + bx.nx - 1) / B; bxx++) {
                    int64_t b = by * nbx + bxx;
                    if (b < r->b0 || b >= r->b1) continue;
                    if (pass == 0) (*xb)[b - r->b0 + 2]++;
                    else (*xl)[(*xb)[b - r->b0 + 1]++] = (uint32_t)v;
                }
        }
        if (pass == 0) {
            for (int64_t i = 2; i <= nb + 1; i++) (*xb)[i] += (*xb)[i - 1];
            *xl = malloc(sizeof(uint32_t) * (size_t)((*xb)[nb + 1] + 1));
            if (!*xl) return oom(r->err, "crossing lists");
        }
    }
    return 0;
}

/* Everything after the flow QC: (a) min_size, (b) holes, (c) min_size, final ids into "lab". */
static int post_stage(struct run *r, const struct stats *s0, const unsigned char *bad,
                      int64_t min_size, int64_t *nlabels)
{
    int64_t M = s0->n, n1 = M;
    uint32_t *map = malloc(sizeof(uint32_t) * ((size_t)M + 1));
    struct stats s1 = {0}, s2 = {0};
    uint32_t *root = NULL, *jmap = NULL, *xl = NULL, *e = NULL;
    unsigned char *single = NULL;
    int64_t *xb = NULL, ne = 0, cap = 0;
    int rc = map ? 0 : oom(r->err, "label maps");
    if (!rc && min_size > 0) {
        rc = renumber_map(s0, min_size, bad, map, &n1, r->err);
    } else if (!rc) {
        for (int64_t v = 0; v <= M; v++) map[v] = bad[v] ? 0 : (uint32_t)v;
    }
    /* tables of the labels after (a): the same pixels under new ids */
    if (!rc) rc = stats_init(&s1, n1, r->err);
    for (int64_t v = 1; !rc && v <= M; v++)
        if (map[v]) {
            s1.area[map[v]] = s0->area[v];
            memcpy(s1.mn + 5 * (int64_t)map[v], s0->mn + 5 * v, 5 * sizeof(int64_t));
        }
    if (!rc) {
        root = malloc(sizeof(uint32_t) * ((size_t)n1 + 1));
        jmap = malloc(sizeof(uint32_t) * ((size_t)n1 + 1));
        single = malloc((size_t)n1 + 1);
        if (!root || !jmap || !single) rc = oom(r->err, "group tables");
    }
    if (!rc) { /* Cellpose's counter j: labels with a box, in label order */
        uint32_t j = 0;
        jmap[0] = 0;
        for (int64_t v = 1; v <= n1; v++) jmap[v] = s1.area[v] ? ++j : 0;
        rc = crossing_lists(r, &s1, &xb, &xl);
    }
    if ((rc = cp_agree(r->d->comm, rc, r->err)) != 0) goto out;
    if ((rc = write_qc(r, bad)) != 0) goto out;
    if ((rc = find_edges(r, &s1, map, xb, xl, &e, &ne, &cap)) != 0) goto out;
    if ((rc = make_groups(r, &s1, e, ne, root, single)) != 0) goto out;
    if ((rc = fill_stage(r, &s1, map, root, single, jmap, &s2)) != 0) goto out;
    /* (c), or the compacted labels as they are */
    if (min_size > 0) {
        rc = renumber_map(&s2, min_size, NULL, map, nlabels, r->err);
    } else {
        *nlabels = 0;
        for (int64_t v = 0; v <= n1; v++) {
            map[v] = (uint32_t)v;
            if (s2.area[v]) *nlabels = v;
        }
    }
    for (int64_t b = r->b0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load(r, "fh", b, r->out, &br)) != 0) break;
        for (int64_t p = 0; p < br.ny * br.nx; p++) r->out[p] = map[r->out[p]];
        if ((rc = store(r, "lab", b, r->out, br)) == 0) {
            char name[64];
            cp_bstore_remove(r->d->store, cp_dname(r->d, "fh", name), b);
        }
    }
    rc = cp_agree(r->d->comm, rc, r->err);
out:
    free(map);
    stats_free(&s1);
    stats_free(&s2);
    free(root);
    free(jmap);
    free(single);
    free(xb);
    free(xl);
    free(e);
    return rc;
}

int cp_dpost_run(const cp_dplane *d, double flow_threshold, int64_t min_size, int64_t *nlabels,
                 char *err)
{
    struct run r = {.d = d, .g = &d->grid, .err = err};
    cp_grid_range(r.g, d->rank, &r.b0, &r.b1);
    r.bmax = r.g->B * r.g->B;
    int64_t gb = (r.g->B + 2) * (r.g->B + 2);
    r.blk = malloc(sizeof(uint32_t) * (size_t)r.bmax);
    r.out = malloc(sizeof(uint32_t) * (size_t)r.bmax);
    r.dp = malloc(sizeof(float) * 3 * (size_t)gb);
    struct stats s0 = {0};
    unsigned char *bad = NULL;
    int rc = r.blk && r.out && r.dp ? 0 : oom(err, "block buffers");
    if (!rc) rc = cp_outbox_init(&r.qpx, d->comm, sizeof(struct qpix), err);
    if (!rc) rc = cp_outbox_init(&r.kpx, d->comm, sizeof(struct kpix), err);
    if (!rc) rc = cp_outbox_init(&r.ed, d->comm, sizeof(struct edit), err);
    *nlabels = 0;
    /* the largest label, then the per-label tables of "m0" */
    uint32_t M = 0;
    for (int64_t b = r.b0; !rc && b < r.b1; b++) {
        cp_rect br;
        if ((rc = load(&r, "m0", b, r.blk, &br)) != 0) break;
        for (int64_t p = 0; p < br.ny * br.nx; p++) M = r.blk[p] > M ? r.blk[p] : M;
    }
    if ((rc = cp_agree(d->comm, rc, err)) != 0) goto out;
    MPI_Allreduce(MPI_IN_PLACE, &M, 1, MPI_UINT32_T, MPI_MAX, d->comm);
    rc = stats_init(&s0, M, err);
    if (!rc && !(bad = calloc((size_t)M + 1, 1))) rc = oom(err, "QC flags");
    for (int64_t b = r.b0; !rc && b < r.b1; b++) {
        cp_rect br;
        if ((rc = load(&r, "m0", b, r.blk, &br)) == 0) stats_add(&s0, r.blk, br, r.g->Lx);
    }
    if ((rc = cp_agree(d->comm, rc, err)) != 0) goto out;
    stats_reduce(d->comm, &s0);
    if (flow_threshold > 0 && M > 0 && (rc = qc_stage(&r, &s0, flow_threshold, bad)) != 0) goto out;
    rc = post_stage(&r, &s0, bad, min_size, nlabels);
out:
    stats_free(&s0);
    free(bad);
    cp_outbox_free(&r.qpx);
    cp_outbox_free(&r.kpx);
    cp_outbox_free(&r.ed);
    free(r.blk);
    free(r.out);
    free(r.dp);
    return rc;
}
