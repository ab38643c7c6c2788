/* Hole filling and min_size of a volume over 3-D owner blocks (see dpost3.h). The per-label
 * tables and the groups are shared with mpi/dfill3.c (a stack's planes) through holding.h; the
 * holes of a box over several blocks come from dholes3.c. Label v "holds" u when a hole of v
 * contains a voxel of u; groups linked by holding are independent (a fill writes only over its
 * group's voxels and holes, see mpi/dpost_holes.c), so groups are filled side by side. */
#include "dpost3.h"

#include <stdlib.h>

#include "agree.h"
#include "cp_err.h"
#include "dholes3.h"
#include "holding.h"
#include "post.h"

/* The run: the volume, this rank's blocks and block-sized scratch. */
struct d3 {
    MPI_Comm comm;
    int np;
    const cp_grid *g;
    const cp_bstore *store;
    int64_t b0, b1, bmax, npix;
    uint32_t *blk, *list;
    unsigned char *state, *mark; /* mark: one byte per label (zeroed between uses) */
    int64_t *stack;
    cp_dholes3 holes; /* the components of crossing boxes (step b) */
    char *err;
};

static int oom(char *err, const char *what)
{
    return cp_errf(err, CP_ENOMEM, "dpost3.c: out of memory for %s", what);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

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
    *bb = cp_grid_bounds(d->g, b);
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

/* The voxels left 0 in d->state over r (a box inside block bb, voxels d->blk) are holes of w:
 * hole[w] set, an edge (w, u) for each label u in them. */
static int scan_holes(struct d3 *d, cp_box bb, cp_box r, uint32_t w, unsigned char *hole,
                      uint32_t **e, int64_t *ne, int64_t *cap)
{
    int64_t by = bb.y1 - bb.y0, bx = bb.x1 - bb.x0, sy = r.y1 - r.y0, sx = r.x1 - r.x0;
    for (int64_t q = 0; q < cp_box_vol(r); q++) {
        if (d->state[q]) continue;
        hole[w] = 1;
        uint32_t u = d->blk[((r.z0 + q / (sy * sx)) * by + r.y0 + q / sx % sy) * bx + r.x0 + q % sx];
        if (u && cp_holding_push(e, ne, cap, w, u)) return oom(d->err, "edges");
    }
    return 0;
}

/* The labels of the store's "m03" through map_a, for cp_dholes3. */
struct raw {
    struct d3 *d;
    const uint32_t *map_a;
    int64_t ns;
};

static int get_raw(void *ctx, int64_t b, const uint32_t **vox, cp_box *bb)
{
    struct raw *c = ctx;
    *vox = c->d->blk;
    return get(c->d, CP_DPOST3_IN, b, c->map_a, c->ns, bb);
}

/* Step (b), on the blocks: a label w whose box lies in the block gets its holes (hole[w]) and
 * its edges; a crossing label xl[k] (box xbox[k]) whose box meets the block, present there or
 * not, is marked in cand when a voxel of its box in the block is not reached from the faces it
 * shares with the box (a voxel reached so is reached in the whole box). */
static int search_blocks(struct d3 *d, const cp_vstats *a, const struct raw *raw,
                         const uint32_t *xl, const cp_box *xbox, int64_t nxl, unsigned char *hole,
                         unsigned char *cand, uint32_t **e, int64_t *ne, int64_t *cap)
{
    int rc = 0;
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb;
        if ((rc = get(d, CP_DPOST3_IN, b, raw->map_a, raw->ns, &bb))) break;
        int64_t k = labels_of(d, cp_box_vol(bb)), by = bb.y1 - bb.y0, bx = bb.x1 - bb.x0;
        for (int64_t i = 0; !rc && i < k; i++) {
            uint32_t w = d->list[i];
            cp_box lb = cp_vstats_box(a, w), r = rel(lb, bb);
            if (crossing(d->g, lb)) continue;
            cp_post_hole_map(d->blk, by, bx, 1, w, &r, d->state, d->stack);
            rc = scan_holes(d, bb, r, w, hole, e, ne, cap);
        }
        for (int64_t i = 0; i < nxl; i++) {
            cp_box lb = xbox[i], sub = cp_box_meet(lb, bb), r = rel(sub, bb);
            if (cand[xl[i]] || cp_box_empty(sub)) continue;
            unsigned faces =
                (sub.z0 == lb.z0 ? CP_FACE_Z0 : 0) | (sub.z1 == lb.z1 ? CP_FACE_Z1 : 0) |
                (sub.y0 == lb.y0 ? CP_FACE_Y0 : 0) | (sub.y1 == lb.y1 ? CP_FACE_Y1 : 0) |
                (sub.x0 == lb.x0 ? CP_FACE_X0 : 0) | (sub.x1 == lb.x1 ? CP_FACE_X1 : 0);
            cp_post_hole_map_faces(d->blk, by, bx, faces, xl[i], &r, d->state, d->stack);
            for (int64_t q = 0; q < cp_box_vol(r) && !cand[xl[i]]; q++) cand[xl[i]] = !d->state[q];
        }
    }
    return cp_agree(d->comm, rc, d->err);
}

/* The holes and edges of the crossing candidates cl[0..ncl) (boxes cbox), their components
 * joined over the blocks (cp_dholes3; collective). */
static int search_crossing(struct d3 *d, const struct raw *raw, const uint32_t *cl,
                           const cp_box *cbox, int64_t ncl, unsigned char *hole, uint32_t **e,
                           int64_t *ne, int64_t *cap)
{
    int rc = cp_dholes3_find(&d->holes, cl, cbox, ncl);
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb = cp_grid_bounds(d->g, b);
        for (int64_t k = 0, loaded = 0; !rc && k < ncl; k++) {
            cp_box sub = cp_box_meet(cbox[k], bb);
            if (cp_box_empty(sub)) continue;
            if (!loaded++ && (rc = get(d, CP_DPOST3_IN, b, raw->map_a, raw->ns, &bb))) break;
            cp_dholes3_map(&d->holes, b, d->blk, bb, cl[k], cbox[k], d->state);
            rc = scan_holes(d, bb, rel(sub, bb), cl[k], hole, e, ne, cap);
        }
    }
    return cp_agree(d->comm, rc, d->err);
}

/* Every voxel of r (a box inside block bb) that d->state does not mark as reached from the
 * box's faces (2) gets v in dst (the block's voxels). */
static void fill_state(struct d3 *d, uint32_t *dst, cp_box bb, cp_box r, uint32_t v)
{
    int64_t by = bb.y1 - bb.y0, bx = bb.x1 - bb.x0, sy = r.y1 - r.y0, sx = r.x1 - r.x0;
    for (int64_t q = 0; q < cp_box_vol(r); q++)
        if (d->state[q] != 2)
            dst[((r.z0 + q / (sy * sx)) * by + r.y0 + q / sx % sy) * bx + r.x0 + q % sx] = v;
}

/* "lab3" of the own blocks, for cp_dholes3 during the fill. */
static int get_filled(void *ctx, int64_t b, const uint32_t **vox, cp_box *bb)
{
    struct d3 *d = ctx;
    *vox = d->blk;
    return get(d, CP_DPOST3_OUT, b, NULL, -1, bb);
}

/* "lab3" of the own blocks = through map from array `name` (map NULL: as stored, values up to
 * n), its tables added to sb when not NULL (collective). */
static int rewrite(struct d3 *d, const char *name, const uint32_t *map, int64_t n, cp_vstats *sb)
{
    int rc = 0;
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb;
        if ((rc = get(d, name, b, map, n, &bb))) break;
        for (int64_t q = 0; sb && q < cp_box_vol(bb); q++) {
            int64_t idx = vidx(d, bb, q), z = idx / d->npix, r = idx % d->npix;
            if (d->blk[q]) cp_vstats_add(sb, d->blk[q], idx, z, r / d->g->Lx, r % d->g->Lx);
        }
        rc = cp_bstore_put(d->store, CP_DPOST3_OUT, b, d->blk,
                           sizeof *d->blk * (size_t)cp_box_vol(bb), d->err);
    }
    return cp_agree(d->comm, rc, d->err);
}

/* One round of the fill: the labels fl[0..n) (boxes fbox; at most one per group) filled in
 * "lab3" with their own value where cp_dholes3 finds their holes (collective). */
static int fill_round(struct d3 *d, const uint32_t *fl, const cp_box *fbox, int64_t n)
{
    int rc = cp_dholes3_find(&d->holes, fl, fbox, n);
    for (int64_t b = d->b0; !rc && b < d->b1; b++) {
        cp_box bb = cp_grid_bounds(d->g, b);
        int loaded = 0;
        for (int64_t k = 0; !rc && k < n; k++) {
            cp_box sub = cp_box_meet(fbox[k], bb);
            if (cp_box_empty(sub)) continue;
            if (!loaded++ && (rc = get(d, CP_DPOST3_OUT, b, NULL, -1, &bb))) break;
            cp_dholes3_map(&d->holes, b, d->blk, bb, fl[k], fbox[k], d->state);
            fill_state(d, d->blk, bb, rel(sub, bb), fl[k]);
        }
        if (loaded && !rc)
            rc = cp_bstore_put(d->store, CP_DPOST3_OUT, b, d->blk,
                               sizeof *d->blk * (size_t)cp_box_vol(bb), d->err);
    }
    return cp_agree(d->comm, rc, d->err);
}

/* The labels marked in sel (n + 1 entries), increasing, into *l, their boxes into *box
 * (collective). */
static int label_list(struct d3 *d, const cp_vstats *a, const unsigned char *sel, uint32_t **l,
                      cp_box **box, int64_t *nl)
{
    *nl = 0;
    for (int64_t v = 1; v <= a->n; v++) *nl += sel[v];
    *l = malloc(sizeof **l * (size_t)(*nl ? *nl : 1));
    *box = malloc(sizeof **box * (size_t)(*nl ? *nl : 1));
    if (!*l || !*box) return cp_agree(d->comm, oom(d->err, "label lists"), d->err);
    for (int64_t v = 1, k = 0; v <= a->n; v++)
        if (sel[v]) (*l)[k] = (uint32_t)v, (*box)[k++] = cp_vstats_box(a, (uint32_t)v);
    return cp_agree(d->comm, 0, d->err);
}

/* The labels with a hole filled in "lab3" (which holds A), in rounds: Cellpose fills labels in
 * increasing order, and only labels of one group (root) change each other's voxels, so round r
 * fills the r-th label with a hole of every group at once. A label without a hole on A gets
 * none from its group's fills (they only turn voxels of it into voxels of another), so it is
 * skipped (collective). */
static int fill_rounds(struct d3 *d, const cp_vstats *a, const uint32_t *root,
                       const unsigned char *hole)
{
    int64_t n = a->n, nr = 0, nl = 0;
    int64_t *cnt = calloc((size_t)n + 1, sizeof *cnt), *turn = malloc(sizeof *turn * (size_t)(n + 1));
    unsigned char *sel = calloc((size_t)n + 1, 1);
    uint32_t *fl = NULL;
    cp_box *fbox = NULL;
    int rc = cnt && turn && sel ? 0 : oom(d->err, "fill rounds");
    if ((rc = cp_agree(d->comm, rc, d->err))) goto out;
    for (int64_t l = 1; l <= n; l++) {
        turn[l] = hole[l] ? cnt[root[l]]++ : -1;
        nr = turn[l] + 1 > nr ? turn[l] + 1 : nr;
    }
    for (int64_t r = 0; !rc && r < nr; r++) {
        for (int64_t l = 1; l <= n; l++) sel[l] = turn[l] == r;
        free(fl), free(fbox);
        if (!(rc = label_list(d, a, sel, &fl, &fbox, &nl))) rc = fill_round(d, fl, fbox, nl);
    }
out:
    free(cnt);
    free(turn);
    free(sel);
    free(fl);
    free(fbox);
    return rc;
}

/* Step (b): see dpost3.h. */
static int stage_b(struct d3 *d, const cp_vstats *a, const uint32_t *map_a, int64_t ns,
                   uint32_t *jmap, cp_vstats *sb)
{
    int64_t n = a->n, ne = 0, cap = 0, nxl = 0, ncl = 0;
    uint32_t *root = malloc(sizeof *root * ((size_t)n + 1)), *e = NULL, *xl = NULL, *cl = NULL;
    cp_box *xbox = NULL, *cbox = NULL;
    unsigned char *hole = calloc((size_t)n + 1, 1), *cand = calloc((size_t)n + 1, 1);
    unsigned char *cross = calloc((size_t)n + 1, 1);
    struct raw raw = {d, map_a, ns};
    int rc = root && hole && cand && cross ? 0 : oom(d->err, "label tables");
    if (!rc) rc = cp_dholes3_init(&d->holes, d->comm, d->g, d->bmax, get_raw, &raw, d->err);
    if ((rc = cp_agree(d->comm, rc, d->err))) goto out;
    for (int64_t l = 1; l <= n; l++)
        cross[l] = a->area[l] && crossing(d->g, cp_vstats_box(a, (uint32_t)l));
    if ((rc = label_list(d, a, cross, &xl, &xbox, &nxl))) goto out;
    if ((rc = search_blocks(d, a, &raw, xl, xbox, nxl, hole, cand, &e, &ne, &cap))) goto out;
    reduce_max_u8(d->comm, cand, n + 1);
    if ((rc = label_list(d, a, cand, &cl, &cbox, &ncl))) goto out;
    if ((rc = search_crossing(d, &raw, cl, cbox, ncl, hole, &e, &ne, &cap))) goto out;
    reduce_max_u8(d->comm, hole, n + 1);
    if ((rc = cp_holding_groups(d->comm, e, ne, root, n, d->err))) goto out;
    if ((rc = rewrite(d, CP_DPOST3_IN, map_a, ns, NULL))) goto out;
    d->holes.get = get_filled, d->holes.ctx = d;
    if ((rc = fill_rounds(d, a, root, hole))) goto out;
    uint32_t j = 0; /* Cellpose's counter: labels with a box, in label order */
    jmap[0] = 0;
    for (int64_t l = 1; l <= n; l++) jmap[l] = a->area[l] ? ++j : 0;
    rc = rewrite(d, CP_DPOST3_OUT, jmap, n, sb);
out:
    cp_dholes3_free(&d->holes);
    free(root);
    free(e);
    free(xl);
    free(xbox);
    free(cl);
    free(cbox);
    free(hole);
    free(cand);
    free(cross);
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
    for (int64_t b = d.b0; b < d.b1; b++) d.bmax = max64(d.bmax, cp_box3_voxels(cp_grid_box(g, b)));
    MPI_Allreduce(MPI_IN_PLACE, &d.bmax, 1, MPI_INT64_T, MPI_MAX, comm);
    size_t nb = (size_t)(d.bmax ? d.bmax : 1);
    d.blk = malloc(sizeof *d.blk * nb);
    d.list = malloc(sizeof *d.list * nb), d.state = malloc(nb);
    d.stack = malloc(sizeof *d.stack * nb);
    cp_vstats s = {0}, a = {0}, sb = {0};
    uint32_t *map_a = NULL, *jmap = NULL;
    int64_t ns = 0, most = 0;
    int rc = d.blk && d.list && d.state && d.stack ? 0 : oom(err, "a block");
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
