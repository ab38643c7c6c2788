/* Hole filling in 3-D, min_size and renumbering of a stitched stack where its planes are (see
 * dstitch.h), the steps of cp_post_fill_and_min_size on the whole volume:
 * (a) min_size: per-label voxel counts and first indices reduced over the ranks, the kept labels
 *     renumbered by first appearance (array A = map_a[stitched]);
 * (b) holes: a 3-D hole of label w (not reached from its box's faces) lies in a 2-D hole of w in
 *     the box's rectangle of one of the inner planes of its box, so a label without such a 2-D
 *     hole has no hole and its fill only renames it to Cellpose's counter j (jmap). The others
 *     ("candidates") get their box at an owner, which finds the labels their 3-D holes hold;
 *     groups of labels linked by holding are filled together at an owner with
 *     cp_post_fill_and_min_size_3d on a canvas of the group's box (Cellpose's order and
 *     swallowing kept, see mpi/dpost_holes.c for why groups are independent), the voxels that
 *     differ from jmap[A] sent back as edits to the planes' owners (queued in the store);
 * (c) min_size again on the filled array, renumbered by first appearance.
 * Boxes and groups are moved in batches of about one plane of voxels, so memory does not grow
 * with the depth of the stack. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "dstitch.h"
#include "exchange.h"
#include "holding.h"
#include "post.h"
#include "renumber.h"

struct edit { /* new value of voxel idx (memset: the padding travels) */
    int64_t idx;
    uint32_t v, pad;
};

/* What the steps share: the volume, one plane and its scratch. */
struct fill {
    const cp_dvol *v;
    int64_t npix, budget;
    uint32_t *pl;
    unsigned char *state;
    int64_t *stack;
    char *err;
};

static int oom(char *err, const char *what)
{
    return cp_errf(err, CP_ENOMEM, "dfill3.c: out of memory for %s", what);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Adds plane z (values checked against s->n). */
static int stats_add(cp_vstats *s, const struct fill *f, int64_t z)
{
    const cp_dvol *v = f->v;
    for (int64_t i = 0; i < f->npix; i++) {
        uint32_t l = f->pl[i];
        if (!l) continue;
        if (l > s->n)
            return cp_errf(f->err, CP_EFORMAT, "dfill3.c: %s: plane %lld: label %u out of range "
                           "[0, %lld]", v->name, (long long)z, l, (long long)s->n);
        cp_vstats_add(s, l, z * f->npix + i, z, i / v->nx, i % v->nx);
    }
    return 0;
}

/* Own plane z into f->pl through map (NULL: as stored); values above n are CP_EFORMAT. */
static int load(struct fill *f, int64_t z, const uint32_t *map, int64_t n)
{
    int rc = cp_dvol_get(f->v, z, f->pl, f->err);
    for (int64_t i = 0; !rc && map && i < f->npix; i++) {
        if (f->pl[i] > n)
            return cp_errf(f->err, CP_EFORMAT, "dfill3.c: %s: plane %lld: label %u out of range "
                           "[0, %lld]", f->v->name, (long long)z, f->pl[i], (long long)n);
        f->pl[i] = map[f->pl[i]];
    }
    return rc;
}

/* cand[w] = 1 for the labels of A with a 2-D hole in an inner plane of their box (collective). */
static int candidates(struct fill *f, const cp_vstats *a, const uint32_t *map_a, int64_t ns,
                      unsigned char *cand)
{
    const cp_dvol *v = f->v;
    unsigned char *mark = calloc((size_t)a->n + 1, 1);
    uint32_t *list = malloc(sizeof *list * (size_t)f->npix);
    int rc = mark && list ? 0 : oom(f->err, "the labels of a plane");
    for (int64_t z = v->z0; !rc && z < v->z1; z++) {
        if ((rc = load(f, z, map_a, ns))) break;
        int64_t k = 0;
        for (int64_t i = 0; i < f->npix; i++)
            if (f->pl[i] && !mark[f->pl[i]]) mark[f->pl[i]] = 1, list[k++] = f->pl[i];
        for (int64_t i = 0; i < k; i++) {
            uint32_t w = list[i];
            cp_box b = cp_vstats_box(a, w);
            mark[w] = 0;
            if (cand[w] || z <= b.z0 || z >= b.z1 - 1) continue;
            cp_box r = {0, 1, b.y0, b.y1, b.x0, b.x1};
            cp_post_hole_map(f->pl, v->ny, v->nx, 0, w, &r, f->state, f->stack);
            for (int64_t q = 0; q < (b.y1 - b.y0) * (b.x1 - b.x0) && !cand[w]; q++)
                cand[w] = f->state[q] == 0;
        }
    }
    free(mark);
    free(list);
    if ((rc = cp_agree(v->comm, rc, f->err))) return rc;
    for (int64_t o = 0; o <= a->n; o += 1 << 28)
        MPI_Allreduce(MPI_IN_PLACE, cand + o, (int)min64(a->n + 1 - o, 1 << 28), MPI_UNSIGNED_CHAR,
                      MPI_MAX, v->comm);
    return 0;
}

static int cmp_edit(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* What the passes over boxes (cp_holding_pass) see. */
struct pass {
    struct fill *f;
    const cp_vstats *a;
    const uint32_t *map_a, *keys, *root, *jmap;
    int64_t ns;
    const cp_box *box;
    unsigned char *in;
    uint32_t **e;
    int64_t *ne, cap;
    const cp_groups *G;
    cp_outbox ed;
    const char *edname;
};

/* Sends the nonzero voxels of box[k] in the own planes, for every key k in keys[i..e) (the
 * batch; their union: span), to the key's owner. */
static int send_boxes(void *ctx, cp_outbox *o, int64_t i, int64_t e, cp_box span)
{
    struct pass *c = ctx;
    struct fill *f = c->f;
    const cp_dvol *v = f->v;
    int rc = 0;
    for (int64_t z = max64(v->z0, span.z0); !rc && z < min64(v->z1, span.z1); z++) {
        if ((rc = load(f, z, c->map_a, c->ns))) break;
        for (int64_t k = i; !rc && k < e; k++) {
            const cp_box *b = &c->box[k];
            if (z < b->z0 || z >= b->z1) continue;
            for (int64_t y = b->y0; !rc && y < b->y1; y++)
                for (int64_t x = b->x0; !rc && x < b->x1; x++) {
                    cp_kpix p = {z * f->npix + y * v->nx + x, c->keys[k], f->pl[y * v->nx + x]};
                    if (p.v && cp_outbox_push(o, (int)(c->keys[k] % (uint32_t)v->nranks), &p, 1))
                        rc = oom(f->err, "box voxels in transit");
                }
        }
    }
    return rc;
}

/* The edges of one candidate from the voxels of its box. */
static int box_edges(void *ctx, const cp_kpix *px, int64_t n)
{
    struct pass *c = ctx;
    int hole = 0;
    return cp_holding_edges3(cp_vstats_box(c->a, px->key), px->key, px, n, c->f->v->ny,
                             c->f->v->nx, c->e, c->ne, &c->cap, &hole, c->f->err);
}

/* The "holds" edges (w, u) of the candidates owned here, from their boxes (collective). */
static int find_edges(struct pass *c, const uint32_t *cl, int64_t ncl)
{
    struct fill *f = c->f;
    cp_box *box = malloc(sizeof *box * (size_t)(ncl ? ncl : 1));
    int rc = cp_agree(f->v->comm, box ? 0 : oom(f->err, "boxes"), f->err);
    for (int64_t k = 0; !rc && k < ncl; k++) box[k] = cp_vstats_box(c->a, cl[k]);
    c->keys = cl, c->box = box;
    cp_pass p = {f->v->comm, f->budget, send_boxes, box_edges, NULL, c, f->err};
    if (!rc) rc = cp_holding_pass(&p, box, ncl);
    free(box);
    return rc;
}

/* cp_edit_fn of the group fill: queues the edit for the plane's owner. */
static int queue_edit(void *ctx, int64_t z, int64_t y, int64_t x, uint32_t v)
{
    struct pass *c = ctx;
    struct edit d;
    memset(&d, 0, sizeof d);
    d.idx = z * c->f->npix + y * c->f->v->nx + x, d.v = v;
    return cp_outbox_push(&c->ed, cp_dvol_owner(c->f->v, z), &d, 1) ? oom(c->f->err, "edits") : 0;
}

/* Sends the voxels of the groups [i, e) in the own planes of their span to the groups'
 * owners. */
static int send_groups(void *ctx, cp_outbox *o, int64_t i, int64_t e, cp_box span)
{
    struct pass *c = ctx;
    struct fill *f = c->f;
    const cp_dvol *v = f->v;
    int rc = 0;
    for (int64_t k = i; k < e; k++) c->in[c->G->gl[k]] = 1;
    for (int64_t z = max64(v->z0, span.z0); !rc && z < min64(v->z1, span.z1); z++) {
        if ((rc = load(f, z, c->map_a, c->ns))) break;
        for (int64_t q = 0; !rc && q < f->npix; q++) {
            uint32_t w = f->pl[q], r = c->root[w];
            cp_kpix p = {z * f->npix + q, r, w};
            if (w && c->in[r] && cp_outbox_push(o, (int)(r % (uint32_t)v->nranks), &p, 1))
                rc = oom(f->err, "group voxels in transit");
        }
    }
    for (int64_t k = i; k < e; k++) c->in[c->G->gl[k]] = 0;
    return rc;
}

/* One group filled on a canvas of its box, its edits queued for the planes' owners. */
static int fill_group(void *ctx, const cp_kpix *px, int64_t n)
{
    struct pass *c = ctx;
    return cp_holding_fill3(c->G->gbox[c->G->gidx[px->key]], px, n, c->f->v->ny, c->f->v->nx,
                            c->jmap, queue_edit, c, c->f->err);
}

/* The edits of a batch of groups to the planes' owners, queued in the store as "<name>.ed" z. */
static int send_edits(void *ctx, int rc)
{
    struct pass *c = ctx;
    struct fill *f = c->f;
    struct edit *e = NULL;
    int64_t ne = 0;
    if ((rc = cp_exchange(&c->ed, rc, INT64_MAX, (void **)&e, &ne, f->err))) return rc;
    qsort(e, (size_t)ne, sizeof *e, cmp_edit);
    for (int64_t k = 0, end; !rc && k < ne; k = end) { /* one append per plane */
        for (end = k; end < ne && e[end].idx / f->npix == e[k].idx / f->npix; end++) continue;
        rc = cp_bstore_append(f->v->store, c->edname, e[k].idx / f->npix, e + k,
                              sizeof *e * (size_t)(end - k), f->err);
    }
    free(e);
    return rc;
}

/* Step (b) for the groups of the candidates: batches of groups gathered at their owners, filled,
 * the edits queued in the store (collective). */
static int fill_stage(struct pass *c, const unsigned char *cand)
{
    struct fill *f = c->f;
    cp_groups G = {0};
    c->in = calloc((size_t)c->a->n + 1, 1), c->G = &G;
    int rc = c->in ? cp_groups_make(&G, c->a, cand, c->root, f->err) : oom(f->err, "group tables");
    if (!rc) rc = cp_outbox_init(&c->ed, f->v->comm, sizeof(struct edit), f->err);
    cp_pass p = {f->v->comm, f->budget, send_groups, fill_group, send_edits, c, f->err};
    if (!(rc = cp_agree(f->v->comm, rc, f->err))) rc = cp_holding_pass(&p, G.gbox + 1, G.ng);
    cp_groups_free(&G);
    free(c->in);
    cp_outbox_free(&c->ed);
    return rc;
}

/* Own planes to B = jmap[A] with the queued edits, stored; their tables into sb (if not NULL). */
static int write_filled(struct fill *f, const uint32_t *map_a, int64_t ns, const uint32_t *jmap,
                        const char *edname, cp_vstats *sb)
{
    const cp_dvol *v = f->v;
    int rc = 0;
    for (int64_t z = v->z0; !rc && z < v->z1; z++) {
        if ((rc = load(f, z, map_a, ns))) break;
        for (int64_t i = 0; i < f->npix; i++) f->pl[i] = jmap[f->pl[i]];
        void *data = NULL;
        size_t bytes = 0;
        rc = cp_bstore_take(v->store, edname, z, &data, &bytes, f->err);
        const struct edit *e = data;
        for (size_t k = 0; !rc && k < bytes / sizeof *e; k++)
            f->pl[e[k].idx - z * f->npix] = e[k].v;
        free(data);
        if (!rc && sb) rc = stats_add(sb, f, z);
        if (!rc) rc = cp_dvol_put(v, z, f->pl, f->err);
    }
    return cp_agree(v->comm, rc, f->err);
}

/* Step (a): the tables of the stitched planes, then map_a (ns + 1: stitched id -> A id) and the
 * tables of A in *a. */
static int stage_a(struct fill *f, int64_t ns, int64_t min_size, uint32_t *map_a,
                   cp_vstats *a)
{
    const cp_dvol *v = f->v;
    cp_vstats s = {0};
    int rc = cp_vstats_init(&s, ns, f->err);
    for (int64_t z = v->z0; !rc && z < v->z1; z++)
        if (!(rc = load(f, z, NULL, ns))) rc = stats_add(&s, f, z);
    if (!(rc = cp_agree(v->comm, rc, f->err)))
        rc = cp_vstats_step_a(v->comm, &s, min_size, map_a, a, f->err);
    cp_vstats_free(&s);
    return rc;
}

int cp_dfill3_run(const cp_dvol *v, int64_t nlabels, int64_t min_size, int64_t *nfinal,
                  char *err)
{
    struct fill f = {.v = v, .npix = v->ny * v->nx, .err = err};
    f.budget = f.npix;
    f.pl = malloc(sizeof *f.pl * (size_t)f.npix);
    f.state = malloc((size_t)f.npix);
    f.stack = malloc(sizeof *f.stack * (size_t)f.npix);
    uint32_t *map_a = malloc(sizeof *map_a * ((size_t)nlabels + 1)), *jmap = NULL, *root = NULL;
    uint32_t *cl = NULL, *e = NULL, *map_c = NULL;
    unsigned char *cand = NULL;
    cp_vstats a = {0}, sb = {0};
    int64_t ne = 0, ncl = 0, j = 0;
    char edname[4200];
    snprintf(edname, sizeof edname, "%s.ed", v->name);
    int rc = f.pl && f.state && f.stack && map_a ? 0 : oom(err, "a plane");
    if ((rc = cp_agree(v->comm, rc, err))) goto out;
    if ((rc = stage_a(&f, nlabels, min_size, map_a, &a))) goto out;
    jmap = malloc(sizeof *jmap * ((size_t)a.n + 1));
    root = malloc(sizeof *root * ((size_t)a.n + 1));
    cand = calloc((size_t)a.n + 1, 1);
    rc = jmap && root && cand ? 0 : oom(err, "per-label tables");
    if ((rc = cp_agree(v->comm, rc, err))) goto out;
    jmap[0] = 0; /* Cellpose's counter: labels with a box, in label order */
    for (int64_t l = 1; l <= a.n; l++) jmap[l] = a.area[l] ? (uint32_t)++j : 0;
    if ((rc = candidates(&f, &a, map_a, nlabels, cand))) goto out;
    for (int64_t l = 1; l <= a.n; l++) ncl += cand[l];
    if (ncl) {
        cl = malloc(sizeof *cl * (size_t)ncl);
        rc = cp_agree(v->comm, cl ? 0 : oom(err, "candidates"), err);
        for (int64_t l = 1, k = 0; !rc && l <= a.n; l++)
            if (cand[l]) cl[k++] = (uint32_t)l;
        struct pass c = {.f = &f, .a = &a, .map_a = map_a, .root = root, .jmap = jmap,
                         .ns = nlabels, .e = &e, .ne = &ne, .edname = edname};
        if (!rc) rc = find_edges(&c, cl, ncl);
        if (!rc) rc = cp_holding_groups(v->comm, e, ne, root, a.n, err);
        if (!rc) rc = fill_stage(&c, cand);
        if (rc) goto out;
    }
    if (min_size > 0) rc = cp_agree(v->comm, cp_vstats_init(&sb, j, err), err);
    if (!rc) rc = write_filled(&f, map_a, nlabels, jmap, edname, min_size > 0 ? &sb : NULL);
    if (rc) goto out;
    int64_t most = 0;
    if (min_size > 0) { /* step (c) */
        cp_vstats_reduce(v->comm, &sb);
        map_c = malloc(sizeof *map_c * ((size_t)j + 1));
        rc = map_c ? cp_vstats_min_size(&sb, min_size, map_c, &most, err)
                   : oom(err, "a map of labels");
        for (int64_t z = v->z0; !rc && z < v->z1; z++)
            if (!(rc = load(&f, z, map_c, j))) rc = cp_dvol_put(v, z, f.pl, err);
        rc = cp_agree(v->comm, rc, err);
    } else {
        for (int64_t z = v->z0; !rc && z < v->z1; z++) {
            if ((rc = cp_dvol_get(v, z, f.pl, err))) break;
            for (int64_t i = 0; i < f.npix; i++) most = f.pl[i] > most ? f.pl[i] : most;
        }
        if (!(rc = cp_agree(v->comm, rc, err)))
            MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_INT64_T, MPI_MAX, v->comm);
    }
    *nfinal = most;
out:
    free(f.pl);
    free(f.state);
    free(f.stack);
    free(map_a);
    free(jmap);
    free(root);
    free(cand);
    free(cl);
    free(e);
    free(map_c);
    cp_vstats_free(&a);
    cp_vstats_free(&sb);
    return rc;
}
