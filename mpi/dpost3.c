/* Hole filling and min_size of a volume over 3-D owner blocks (see dpost3.h). The steps are those
 * of mpi/dfill3.c (a stack's planes) with blocks for planes; the per-label tables, the batches,
 * the groups and their fill on a canvas are shared through holding.h. Label v "holds" u when a
 * hole of v contains a voxel of u; groups linked by holding are independent (a fill writes only
 * over its group's voxels and holes, see mpi/dpost_holes.c), so each is filled alone. */
#include "dpost3.h"

#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "exchange.h"
#include "holding.h"
#include "post.h"

/* Boxes are moved in batches of at least this many voxels (each batch reads the own blocks it
 * touches once): 2^20 voxels, 16 MiB of records at most in transit, but one box at least. */
#define CP_DPOST3_BATCH ((int64_t)1 << 20)

/* A voxel's new value (memset: the padding travels); blk is set by the receiver. */
struct edit {
    int64_t idx, blk;
    uint32_t v, pad;
};

/* The run: the volume, this rank's blocks and block-sized scratch. */
struct d3 {
    MPI_Comm comm;
    int np;
    const cp_grid *g;
    const cp_bstore *store;
    int64_t b0, b1, bmax, npix;
    int64_t budget; /* voxels of the boxes of one batch: max(bmax, CP_DPOST3_BATCH) */
    uint32_t *blk, *out, *list;
    unsigned char *state, *mark; /* mark: one byte per label (zeroed between uses) */
    int64_t *stack;
    char *err;
};

static int oom(char *err, const char *what)
{
    return cp_errf(err, CP_ENOMEM, "dpost3.c: out of memory for %s", what);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static cp_box block_box(const struct d3 *d, int64_t b)
{
    cp_box3 r = cp_grid_box(d->g, b);
    return (cp_box){r.o[0], r.o[0] + r.n[0], r.o[1], r.o[1] + r.n[1], r.o[2], r.o[2] + r.n[2]};
}

static cp_box meet(cp_box a, cp_box b)
{
    return (cp_box){max64(a.z0, b.z0), min64(a.z1, b.z1), max64(a.y0, b.y0),
                    min64(a.y1, b.y1), max64(a.x0, b.x0), min64(a.x1, b.x1)};
}

static int empty(cp_box b) { return b.z0 >= b.z1 || b.y0 >= b.y1 || b.x0 >= b.x1; }

/* b relative to the origin of block box bb. */
static cp_box rel(cp_box b, cp_box bb)
{
    return (cp_box){b.z0 - bb.z0, b.z1 - bb.z0, b.y0 - bb.y0, b.y1 - bb.y0, b.x0 - bb.x0,
                    b.x1 - bb.x0};
}

/* Raster index in the volume of voxel q of block box bb. */
static int64_t vidx(const struct d3 *d, cp_box bb, int64_t q)
{
    int64_t by = bb.y1 - bb.y0, bx = bb.x1 - bb.x0;
    return (bb.z0 + q / (by * bx)) * d->npix + (bb.y0 + q / bx % by) * d->g->Lx + bb.x0 + q % bx;
}

/* A label whose box does not lie in one block. */
static int crossing(const cp_grid *g, cp_box b)
{
    return cp_grid_block_at3(g, b.z0, b.y0, b.x0) !=
           cp_grid_block_at3(g, b.z1 - 1, b.y1 - 1, b.x1 - 1);
}

/* Array `name` of own block b into d->blk (its box *bb), through map (NULL: as stored; then
 * values above n, when n >= 0, are CP_EFORMAT, as they are with a map). */
static int get(struct d3 *d, const char *name, int64_t b, const uint32_t *map, int64_t n,
               cp_box *bb)
{
    *bb = block_box(d, b);
    int64_t nv = cp_box_vol(*bb);
    int rc = cp_bstore_get(d->store, name, b, d->blk, sizeof *d->blk * (size_t)nv, d->err);
    for (int64_t q = 0; !rc && n >= 0 && q < nv; q++) {
        if (d->blk[q] > n)
            return cp_errf(d->err, CP_EFORMAT, "dpost3.c: %s: block %lld: label %u out of range "
                           "[0, %lld]", name, (long long)b, d->blk[q], (long long)n);
        if (map) d->blk[q] = map[d->blk[q]];
    }
    return rc;
}

/* The labels of d->blk (nv voxels), each once, into d->list; returns the count. */
static int64_t labels_of(struct d3 *d, int64_t nv)
{
    int64_t k = 0;
    for (int64_t q = 0; q < nv; q++)
        if (d->blk[q] && !d->mark[d->blk[q]]) d->mark[d->blk[q]] = 1, d->list[k++] = d->blk[q];
    for (int64_t i = 0; i < k; i++) d->mark[d->list[i]] = 0;
    return k;
}

static void reduce_max_u8(MPI_Comm comm, unsigned char *a, int64_t n)
{
    for (int64_t o = 0; o < n; o += 1 << 28)
        MPI_Allreduce(MPI_IN_PLACE, a + o, (int)min64(n - o, 1 << 28), MPI_UNSIGNED_CHAR, MPI_MAX,
                      comm);
}

/* Step (b), on the blocks: a label w whose box lies in the block gets its holes (hole[w]) and
 * its edges; a crossing one is marked in cand when a voxel of its box in the block is not reached
 * from the faces it shares with the box (a voxel reached so is reached in the whole box). */
static int search_blocks(struct d3 *d, const cp_vstats *a, const uint32_t *map_a, int64_t ns,
                         unsigned char *hole, unsigned char *cand, uint32_t **e, int64_t *ne,
                         int64_t *cap)
{
    int rc = 0;
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb;
        if ((rc = get(d, CP_DPOST3_IN, b, map_a, ns, &bb))) break;
        int64_t k = labels_of(d, cp_box_vol(bb)), by = bb.y1 - bb.y0, bx = bb.x1 - bb.x0;
        for (int64_t i = 0; !rc && i < k; i++) {
            uint32_t w = d->list[i];
            cp_box lb = cp_vstats_box(a, w), sub = meet(lb, bb), r = rel(sub, bb);
            int cross = crossing(d->g, lb);
            if (cross && cand[w]) continue;
            unsigned faces =
                (sub.z0 == lb.z0 ? CP_FACE_Z0 : 0) | (sub.z1 == lb.z1 ? CP_FACE_Z1 : 0) |
                (sub.y0 == lb.y0 ? CP_FACE_Y0 : 0) | (sub.y1 == lb.y1 ? CP_FACE_Y1 : 0) |
                (sub.x0 == lb.x0 ? CP_FACE_X0 : 0) | (sub.x1 == lb.x1 ? CP_FACE_X1 : 0);
            cp_post_hole_map_faces(d->blk, by, bx, faces, w, &r, d->state, d->stack);
            int64_t sy = r.y1 - r.y0, sx = r.x1 - r.x0;
            for (int64_t q = 0; !rc && q < cp_box_vol(r); q++) {
                if (d->state[q]) continue;
                if (cross) {
                    cand[w] = 1;
                    break;
                }
                hole[w] = 1;
                uint32_t u = d->blk[((r.z0 + q / (sy * sx)) * by + r.y0 + q / sx % sy) * bx +
                                    r.x0 + q % sx];
                if (u && cp_holding_push(e, ne, cap, w, u)) rc = oom(d->err, "edges");
            }
        }
    }
    return cp_agree(d->comm, rc, d->err);
}

/* What the passes over boxes (cp_holding_pass) see. */
struct pass3 {
    struct d3 *d;
    const cp_vstats *a;
    const uint32_t *map_a, *keys, *root, *jmap;
    int64_t ns;
    const cp_box *box;
    unsigned char *hole, *in;
    uint32_t **e;
    int64_t *ne, *cap;
    const cp_groups *G;
    cp_outbox ed;
};

/* Sends the nonzero voxels of the own blocks inside the boxes box[i..e) of keys[i..e) (their
 * union: span) to the keys' owners. */
static int send_boxes(void *ctx, cp_outbox *o, int64_t i, int64_t e, cp_box span)
{
    struct pass3 *c = ctx;
    struct d3 *d = c->d;
    int rc = 0;
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb = block_box(d, b);
        if (empty(meet(bb, span))) continue;
        if ((rc = get(d, CP_DPOST3_IN, b, c->map_a, c->ns, &bb))) break;
        int64_t by = bb.y1 - bb.y0, bx = bb.x1 - bb.x0;
        for (int64_t k = i; !rc && k < e; k++) {
            cp_box s = meet(c->box[k], bb);
            for (int64_t z = s.z0; !rc && z < s.z1; z++)
                for (int64_t y = s.y0; !rc && y < s.y1; y++)
                    for (int64_t x = s.x0; !rc && x < s.x1; x++) {
                        uint32_t u = d->blk[((z - bb.z0) * by + y - bb.y0) * bx + x - bb.x0];
                        cp_kpix p = {z * d->npix + y * d->g->Lx + x, c->keys[k], u};
                        if (u && cp_outbox_push(o, (int)(c->keys[k] % (uint32_t)d->np), &p, 1))
                            rc = oom(d->err, "box voxels in transit");
                    }
        }
    }
    return rc;
}

/* The holes and edges of one candidate from the voxels of its box. */
static int box_edges(void *ctx, const cp_kpix *px, int64_t n)
{
    struct pass3 *c = ctx;
    int h = 0, rc = cp_holding_edges3(cp_vstats_box(c->a, px->key), px->key, px, n, c->d->g->Ly,
                                      c->d->g->Lx, c->e, c->ne, c->cap, &h, c->d->err);
    c->hole[px->key] |= (unsigned char)h;
    return rc;
}

/* cp_edit_fn of the group fill: queues the edit for the block's owner. */
static int queue_edit(void *ctx, int64_t z, int64_t y, int64_t x, uint32_t v)
{
    struct pass3 *c = ctx;
    const cp_grid *g = c->d->g;
    struct edit d;
    memset(&d, 0, sizeof d);
    d.idx = z * c->d->npix + y * g->Lx + x, d.v = v;
    int dst = cp_grid_owner(g, cp_grid_block_at3(g, z, y, x));
    return cp_outbox_push(&c->ed, dst, &d, 1) ? oom(c->d->err, "edits") : 0;
}

static int cmp_edit(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    if (x->blk != y->blk) return x->blk < y->blk ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Sends the voxels of the own blocks of the groups [i, e) (their boxes' union: span) to the
 * groups' owners. */
static int send_groups(void *ctx, cp_outbox *o, int64_t i, int64_t e, cp_box span)
{
    struct pass3 *c = ctx;
    struct d3 *d = c->d;
    int rc = 0;
    for (int64_t k = i; k < e; k++) c->in[c->G->gl[k]] = 1;
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb = block_box(d, b);
        if (empty(meet(bb, span))) continue;
        if ((rc = get(d, CP_DPOST3_IN, b, c->map_a, c->ns, &bb))) break;
        for (int64_t q = 0; !rc && q < cp_box_vol(bb); q++) {
            uint32_t w = d->blk[q], r = c->root[w];
            cp_kpix p = {vidx(d, bb, q), r, w};
            if (w && c->in[r] && cp_outbox_push(o, (int)(r % (uint32_t)d->np), &p, 1))
                rc = oom(d->err, "group voxels in transit");
        }
    }
    for (int64_t k = i; k < e; k++) c->in[c->G->gl[k]] = 0;
    return rc;
}

/* One group filled on a canvas of its box, its edits queued for the blocks' owners. */
static int fill_group(void *ctx, const cp_kpix *px, int64_t n)
{
    struct pass3 *c = ctx;
    return cp_holding_fill3(c->G->gbox[c->G->gidx[px->key]], px, n, c->d->g->Ly, c->d->g->Lx,
                            c->jmap, queue_edit, c, c->d->err);
}

/* The edits of a batch of groups to the blocks' owners, queued in the store per block. */
static int send_edits(void *ctx, int rc)
{
    struct pass3 *c = ctx;
    struct d3 *d = c->d;
    struct edit *e = NULL;
    int64_t ne = 0;
    if ((rc = cp_exchange(&c->ed, rc, INT64_MAX, (void **)&e, &ne, d->err))) return rc;
    for (int64_t k = 0; k < ne; k++) {
        int64_t z = e[k].idx / d->npix, r = e[k].idx % d->npix;
        e[k].blk = cp_grid_block_at3(d->g, z, r / d->g->Lx, r % d->g->Lx);
    }
    qsort(e, (size_t)ne, sizeof *e, cmp_edit);
    for (int64_t k = 0, end; !rc && k < ne; k = end) { /* one append per block */
        for (end = k; end < ne && e[end].blk == e[k].blk; end++) continue;
        rc = cp_bstore_append(d->store, CP_DPOST3_EDITS, e[k].blk, e + k,
                              sizeof *e * (size_t)(end - k), d->err);
    }
    free(e);
    return rc;
}

/* The holes and edges of the crossing candidates cl[0..ncl), from their boxes gathered in
 * batches at their owners (collective). */
static int search_boxes(struct pass3 *c, const uint32_t *cl, int64_t ncl)
{
    cp_box *box = malloc(sizeof *box * (size_t)(ncl ? ncl : 1));
    int rc = cp_agree(c->d->comm, box ? 0 : oom(c->d->err, "boxes"), c->d->err);
    for (int64_t k = 0; !rc && k < ncl; k++) box[k] = cp_vstats_box(c->a, cl[k]);
    c->keys = cl, c->box = box;
    cp_pass p = {c->d->comm, c->d->budget, send_boxes, box_edges, NULL, c, c->d->err};
    if (!rc) rc = cp_holding_pass(&p, box, ncl);
    free(box);
    return rc;
}

/* The groups of the labels marked in need, in batches: their voxels gathered at the group's
 * owner, filled there on a canvas of the group's box, the edits queued at the blocks' owners
 * (collective). */
static int fill_groups(struct pass3 *c, const unsigned char *need)
{
    cp_groups G = {0};
    c->in = calloc((size_t)c->a->n + 1, 1), c->G = &G;
    int rc = c->in ? cp_groups_make(&G, c->a, need, c->root, c->d->err)
                   : oom(c->d->err, "group tables");
    if (!rc) rc = cp_outbox_init(&c->ed, c->d->comm, sizeof(struct edit), c->d->err);
    cp_pass p = {c->d->comm, c->d->budget, send_groups, fill_group, send_edits, c, c->d->err};
    if (!(rc = cp_agree(c->d->comm, rc, c->d->err))) rc = cp_holding_pass(&p, G.gbox + 1, G.ng);
    cp_groups_free(&G);
    free(c->in);
    cp_outbox_free(&c->ed);
    return rc;
}

/* Own blocks to jmap[A], the labels alone in their block with a hole (inplace) filled there, the
 * queued edits applied; stored as "lab3", their tables added to sb (if not NULL). */
static int write_filled(struct d3 *d, const cp_vstats *a, const uint32_t *map_a, int64_t ns,
                        const uint32_t *jmap, const unsigned char *inplace, cp_vstats *sb)
{
    int rc = 0;
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb;
        if ((rc = get(d, CP_DPOST3_IN, b, map_a, ns, &bb))) break;
        int64_t nv = cp_box_vol(bb), by = bb.y1 - bb.y0, bx = bb.x1 - bb.x0;
        for (int64_t q = 0; q < nv; q++) d->out[q] = jmap[d->blk[q]];
        int64_t k = labels_of(d, nv);
        for (int64_t i = 0; i < k; i++) {
            uint32_t w = d->list[i];
            if (!inplace[w]) continue;
            cp_box r = rel(cp_vstats_box(a, w), bb);
            int64_t sy = r.y1 - r.y0, sx = r.x1 - r.x0;
            cp_post_hole_map(d->blk, by, bx, 1, w, &r, d->state, d->stack);
            for (int64_t q = 0; q < cp_box_vol(r); q++) {
                int64_t p = ((r.z0 + q / (sy * sx)) * by + r.y0 + q / sx % sy) * bx + r.x0 + q % sx;
                if (d->state[q] != 2) d->out[p] = jmap[w];
            }
        }
        void *data = NULL;
        size_t bytes = 0;
        rc = cp_bstore_take(d->store, CP_DPOST3_EDITS, b, &data, &bytes, d->err);
        const struct edit *e = data;
        for (size_t i = 0; !rc && i < bytes / sizeof *e; i++) {
            int64_t z = e[i].idx / d->npix, r = e[i].idx % d->npix;
            d->out[((z - bb.z0) * by + r / d->g->Lx - bb.y0) * bx + r % d->g->Lx - bb.x0] = e[i].v;
        }
        free(data);
        for (int64_t q = 0; !rc && sb && q < nv; q++) {
            int64_t idx = vidx(d, bb, q), z = idx / d->npix, r = idx % d->npix;
            if (d->out[q]) cp_vstats_add(sb, d->out[q], idx, z, r / d->g->Lx, r % d->g->Lx);
        }
        if (!rc)
            rc = cp_bstore_put(d->store, CP_DPOST3_OUT, b, d->out, sizeof *d->out * (size_t)nv,
                               d->err);
    }
    return cp_agree(d->comm, rc, d->err);
}

/* Step (b): see dpost3.h. */
static int stage_b(struct d3 *d, const cp_vstats *a, const uint32_t *map_a, int64_t ns,
                   uint32_t *jmap, cp_vstats *sb)
{
    int64_t n = a->n, ne = 0, cap = 0, ncl = 0;
    uint32_t *root = malloc(sizeof *root * ((size_t)n + 1)), *e = NULL, *cl = NULL;
    int64_t *gsize = calloc((size_t)n + 1, sizeof *gsize);
    unsigned char *hole = calloc((size_t)n + 1, 1), *cand = calloc((size_t)n + 1, 1);
    unsigned char *need = calloc((size_t)n + 1, 1), *inplace = calloc((size_t)n + 1, 1);
    struct pass3 c = {.d = d, .a = a, .map_a = map_a, .root = root, .jmap = jmap, .ns = ns,
                      .hole = hole, .e = &e, .ne = &ne, .cap = &cap};
    int rc = root && gsize && hole && cand && need && inplace ? 0 : oom(d->err, "label tables");
    if ((rc = cp_agree(d->comm, rc, d->err))) goto out;
    uint32_t j = 0; /* Cellpose's counter: labels with a box, in label order */
    jmap[0] = 0;
    for (int64_t l = 1; l <= n; l++) jmap[l] = a->area[l] ? ++j : 0;
    if ((rc = search_blocks(d, a, map_a, ns, hole, cand, &e, &ne, &cap))) goto out;
    reduce_max_u8(d->comm, cand, n + 1);
    for (int64_t l = 1; l <= n; l++) ncl += cand[l];
    cl = malloc(sizeof *cl * (size_t)(ncl ? ncl : 1));
    if ((rc = cp_agree(d->comm, cl ? 0 : oom(d->err, "candidates"), d->err))) goto out;
    for (int64_t l = 1, k = 0; l <= n; l++)
        if (cand[l]) cl[k++] = (uint32_t)l;
    if ((rc = search_boxes(&c, cl, ncl))) goto out;
    reduce_max_u8(d->comm, hole, n + 1);
    if ((rc = cp_holding_groups(d->comm, e, ne, root, n, d->err))) goto out;
    for (int64_t l = 1; l <= n; l++) gsize[root[l]] += a->area[l] > 0;
    for (int64_t l = 1; l <= n; l++) {
        if (!a->area[l]) continue;
        int cross = crossing(d->g, cp_vstats_box(a, (uint32_t)l));
        need[l] = gsize[root[l]] > 1 || (cross && hole[l]);
        inplace[l] = !need[l] && hole[l];
    }
    if ((rc = fill_groups(&c, need))) goto out;
    rc = write_filled(d, a, map_a, ns, jmap, inplace, sb);
out:
    free(root);
    free(e);
    free(cl);
    free(gsize);
    free(hole);
    free(cand);
    free(need);
    free(inplace);
    return rc;
}

/* Step (c) (min_size > 0): "lab3" renumbered by the min_size rule on its tables sb; *most: the
 * labels kept. */
static int stage_c(struct d3 *d, cp_vstats *sb, int64_t min_size, int64_t *most)
{
    cp_vstats_reduce(d->comm, sb);
    uint32_t *map = malloc(sizeof *map * ((size_t)sb->n + 1));
    int rc = map ? cp_vstats_min_size(sb, min_size, map, most, d->err) : oom(d->err, "a label map");
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb;
        if ((rc = get(d, CP_DPOST3_OUT, b, map, sb->n, &bb))) break;
        rc = cp_bstore_put(d->store, CP_DPOST3_OUT, b, d->blk,
                           sizeof *d->blk * (size_t)cp_box_vol(bb), d->err);
    }
    free(map);
    return cp_agree(d->comm, rc, d->err);
}

/* The largest label of array `name` over all own blocks, reduced (collective). */
static int largest(struct d3 *d, const char *name, int64_t *most)
{
    int rc = 0;
    *most = 0;
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb;
        if ((rc = get(d, name, b, NULL, -1, &bb))) break;
        for (int64_t q = 0; q < cp_box_vol(bb); q++) *most = max64(*most, d->blk[q]);
    }
    if (!(rc = cp_agree(d->comm, rc, d->err)))
        MPI_Allreduce(MPI_IN_PLACE, most, 1, MPI_INT64_T, MPI_MAX, d->comm);
    return rc;
}

int cp_dpost3_run(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, int64_t min_size,
                  int64_t *nlabels, char *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    struct d3 d = {.comm = comm, .g = g, .store = store, .npix = g->Ly * g->Lx, .err = err};
    MPI_Comm_size(comm, &d.np);
    cp_grid_range(g, rank, &d.b0, &d.b1);
    for (int64_t b = d.b0; b < d.b1; b++) d.bmax = max64(d.bmax, cp_box_vol(block_box(&d, b)));
    MPI_Allreduce(MPI_IN_PLACE, &d.bmax, 1, MPI_INT64_T, MPI_MAX, comm);
    d.budget = max64(d.bmax, CP_DPOST3_BATCH);
    size_t nb = (size_t)(d.bmax ? d.bmax : 1);
    d.blk = malloc(sizeof *d.blk * nb), d.out = malloc(sizeof *d.out * nb);
    d.list = malloc(sizeof *d.list * nb), d.state = malloc(nb);
    d.stack = malloc(sizeof *d.stack * nb);
    cp_vstats s = {0}, a = {0}, sb = {0};
    uint32_t *map_a = NULL, *jmap = NULL;
    int64_t ns = 0, most = 0;
    int rc = d.blk && d.out && d.list && d.state && d.stack ? 0 : oom(err, "a block");
    if ((rc = cp_agree(comm, rc, err))) goto out;
    if ((rc = largest(&d, CP_DPOST3_IN, &ns))) goto out;
    /* step (a) */
    map_a = malloc(sizeof *map_a * ((size_t)ns + 1));
    d.mark = calloc((size_t)ns + 1, 1);
    rc = map_a && d.mark ? cp_vstats_init(&s, ns, err) : oom(err, "label tables");
    for (int64_t b = d.b0; !rc && b < d.b1; b++) {
        cp_box bb;
        if ((rc = get(&d, CP_DPOST3_IN, b, NULL, ns, &bb))) break;
        for (int64_t q = 0; q < cp_box_vol(bb); q++) {
            int64_t idx = vidx(&d, bb, q), r = idx % d.npix;
            if (d.blk[q]) cp_vstats_add(&s, d.blk[q], idx, idx / d.npix, r / g->Lx, r % g->Lx);
        }
    }
    if ((rc = cp_agree(comm, rc, err))) goto out;
    if ((rc = cp_vstats_step_a(comm, &s, min_size, map_a, &a, err))) goto out;
    /* step (b), its tables for step (c) */
    jmap = malloc(sizeof *jmap * ((size_t)a.n + 1));
    rc = jmap ? 0 : oom(err, "label tables");
    if (!rc && min_size > 0) rc = cp_vstats_init(&sb, a.n, err);
    if ((rc = cp_agree(comm, rc, err))) goto out;
    if ((rc = stage_b(&d, &a, map_a, ns, jmap, min_size > 0 ? &sb : NULL))) goto out;
    if (min_size > 0) rc = stage_c(&d, &sb, min_size, &most);
    else rc = largest(&d, CP_DPOST3_OUT, &most);
    if (!rc) *nlabels = most;
out:
    free(d.blk);
    free(d.out);
    free(d.list);
    free(d.state);
    free(d.stack);
    free(d.mark);
    free(map_a);
    free(jmap);
    cp_vstats_free(&s);
    cp_vstats_free(&a);
    cp_vstats_free(&sb);
    return rc;
}
