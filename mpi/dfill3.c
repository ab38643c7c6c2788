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

/* Per-label tables (labels 1..n): voxel count, and mn[7v..7v+6] = first raster index, z0, y0,
 * x0, -z1, -y1, -x1 of the box, so one MIN reduction gives them all. */
struct vstats {
    int64_t n;
    int64_t *area, *mn;
};

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

static int stats_init(struct vstats *s, int64_t n, char *err)
{
    s->n = n;
    s->area = calloc((size_t)n + 1, sizeof *s->area);
    s->mn = malloc(sizeof *s->mn * 7 * ((size_t)n + 1));
    if (!s->area || !s->mn) return oom(err, "per-label tables");
    for (int64_t i = 0; i < 7 * (n + 1); i++) s->mn[i] = INT64_MAX;
    return 0;
}

static void stats_free(struct vstats *s)
{
    free(s->area);
    free(s->mn);
}

/* Adds plane z (values checked against s->n). */
static int stats_add(struct vstats *s, const struct fill *f, int64_t z)
{
    const cp_dvol *v = f->v;
    for (int64_t i = 0; i < f->npix; i++) {
        uint32_t l = f->pl[i];
        if (!l) continue;
        if (l > s->n)
            return cp_errf(f->err, CP_EFORMAT, "dfill3.c: %s: plane %lld: label %u out of range "
                           "[0, %lld]", v->name, (long long)z, l, (long long)s->n);
        int64_t *m = s->mn + 7 * (int64_t)l, y = i / v->nx, x = i % v->nx;
        s->area[l]++;
        m[0] = min64(m[0], z * f->npix + i);
        m[1] = min64(m[1], z), m[2] = min64(m[2], y), m[3] = min64(m[3], x);
        m[4] = min64(m[4], -(z + 1)), m[5] = min64(m[5], -(y + 1)), m[6] = min64(m[6], -(x + 1));
    }
    return 0;
}

static void reduce_i64(MPI_Comm comm, int64_t *a, int64_t n, MPI_Op op)
{
    for (int64_t o = 0; o < n; o += 1 << 26)
        MPI_Allreduce(MPI_IN_PLACE, a + o, (int)min64(n - o, 1 << 26), MPI_INT64_T, op, comm);
}

static void stats_reduce(MPI_Comm comm, struct vstats *s)
{
    reduce_i64(comm, s->area, s->n + 1, MPI_SUM);
    reduce_i64(comm, s->mn, 7 * (s->n + 1), MPI_MIN);
}

static cp_box box_of(const struct vstats *s, uint32_t l)
{
    const int64_t *m = s->mn + 7 * (int64_t)l;
    return (cp_box){m[1], -m[4], m[2], -m[5], m[3], -m[6]};
}

static int64_t box_vol(cp_box b) { return (b.z1 - b.z0) * (b.y1 - b.y0) * (b.x1 - b.x0); }

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
static int candidates(struct fill *f, const struct vstats *a, const uint32_t *map_a, int64_t ns,
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
            cp_box b = box_of(a, w);
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

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_edit(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* The end of the batch of keys i.. (boxes box[]): boxes adding up to at most the budget, at
 * least one; [*zlo, *zhi): the planes they span. */
static int64_t batch_end(const struct fill *f, const cp_box *box,
                         int64_t i, int64_t nkeys, int64_t *zlo, int64_t *zhi)
{
    int64_t e = i, tot = 0;
    *zlo = INT64_MAX, *zhi = 0;
    while (e < nkeys && (e == i || tot + box_vol(box[e]) <= f->budget)) {
        tot += box_vol(box[e]);
        *zlo = min64(*zlo, box[e].z0), *zhi = max64(*zhi, box[e].z1);
        e++;
    }
    return e;
}

/* Collective: the records queued in o, received sorted by (key, v, idx). */
static int gather(struct fill *f, cp_outbox *o, int rc, cp_kpix **px, int64_t *npx)
{
    if ((rc = cp_exchange(o, rc, INT64_MAX, (void **)px, npx, f->err)) == 0)
        qsort(*px, (size_t)*npx, sizeof **px, cp_kpix_cmp);
    return rc;
}

/* A canvas of box b (zeroed) with the records px[i..e) written in, and box-sized scratch. */
static int canvas_of(const struct fill *f, cp_box b, const cp_kpix *px, int64_t i, int64_t e,
                     uint32_t **canvas, unsigned char **st, int64_t **stk)
{
    int64_t n = box_vol(b), by = b.y1 - b.y0, bx = b.x1 - b.x0;
    *canvas = calloc((size_t)n, sizeof **canvas);
    *st = malloc((size_t)n);
    *stk = malloc(sizeof **stk * (size_t)n);
    if (!*canvas || !*st || !*stk) return oom(f->err, "the box of a label");
    for (int64_t k = i; k < e; k++) {
        int64_t z = px[k].idx / f->npix, r = px[k].idx % f->npix;
        int64_t y = r / f->v->nx, x = r % f->v->nx;
        (*canvas)[((z - b.z0) * by + y - b.y0) * bx + x - b.x0] = px[k].v;
    }
    return 0;
}

/* Sends the nonzero voxels of box[k] in the own planes, for every key k in keys[i..e) (the
 * batch, planes [zlo, zhi)), to the key's owner. */
static int send_boxes(struct fill *f, cp_outbox *o, const uint32_t *keys, const cp_box *box,
                      int64_t i, int64_t e, int64_t zlo, int64_t zhi, const uint32_t *map_a,
                      int64_t ns)
{
    const cp_dvol *v = f->v;
    int rc = 0;
    for (int64_t z = max64(v->z0, zlo); !rc && z < min64(v->z1, zhi); z++) {
        if ((rc = load(f, z, map_a, ns))) break;
        for (int64_t k = i; !rc && k < e; k++) {
            if (z < box[k].z0 || z >= box[k].z1) continue;
            for (int64_t y = box[k].y0; !rc && y < box[k].y1; y++)
                for (int64_t x = box[k].x0; !rc && x < box[k].x1; x++) {
                    cp_kpix p = {z * f->npix + y * v->nx + x, keys[k], f->pl[y * v->nx + x]};
                    if (p.v && cp_outbox_push(o, (int)(keys[k] % (uint32_t)v->nranks), &p, 1))
                        rc = oom(f->err, "box voxels in transit");
                }
        }
    }
    return rc;
}

/* The "holds" edges (w, u) of the candidates owned here, from their boxes (collective). */
static int find_edges(struct fill *f, const struct vstats *a, const uint32_t *cl, int64_t ncl,
                      const uint32_t *map_a, int64_t ns, uint32_t **e, int64_t *ne)
{
    cp_box *box = malloc(sizeof *box * (size_t)(ncl ? ncl : 1));
    cp_outbox o = {0};
    int64_t cap = 0;
    int rc = box ? cp_outbox_init(&o, f->v->comm, sizeof(cp_kpix), f->err)
                 : oom(f->err, "boxes");
    for (int64_t k = 0; box && k < ncl; k++) box[k] = box_of(a, cl[k]);
    if ((rc = cp_agree(f->v->comm, rc, f->err))) goto out;
    for (int64_t i = 0, nb; i < ncl; i = nb) {
        int64_t zlo, zhi;
        nb = batch_end(f, box, i, ncl, &zlo, &zhi);
        cp_kpix *px = NULL;
        int64_t npx = 0;
        rc = send_boxes(f, &o, cl, box, i, nb, zlo, zhi, map_a, ns);
        if ((rc = gather(f, &o, rc, &px, &npx))) break;
        for (int64_t k = 0; !rc && k < npx;) {
            int64_t end = k;
            while (end < npx && px[end].key == px[k].key) end++;
            uint32_t w = px[k].key, *cv = NULL;
            unsigned char *st = NULL;
            int64_t *stk = NULL;
            cp_box b = box_of(a, w), whole = {0, b.z1 - b.z0, 0, b.y1 - b.y0, 0, b.x1 - b.x0};
            rc = canvas_of(f, b, px, k, end, &cv, &st, &stk);
            if (!rc) cp_post_hole_map(cv, whole.y1, whole.x1, 1, w, &whole, st, stk);
            for (int64_t q = 0; !rc && q < box_vol(b); q++)
                if (st[q] == 0 && cv[q] && cp_holding_push(e, ne, &cap, w, cv[q]))
                    rc = oom(f->err, "edges");
            free(cv);
            free(st);
            free(stk);
            k = end;
        }
        free(px);
        if ((rc = cp_agree(f->v->comm, rc, f->err))) break;
    }
out:
    free(box);
    cp_outbox_free(&o);
    return rc;
}

/* Fills the groups received here on canvases of their boxes and queues the edits (voxels whose
 * value differs from jmap[A]) for the planes' owners. */
static int fill_groups(struct fill *f, const cp_box *gbox, const uint32_t *gidx,
                       const uint32_t *jmap, const cp_kpix *px, int64_t npx, cp_outbox *ed)
{
    int rc = 0;
    for (int64_t i = 0; !rc && i < npx;) {
        int64_t e = i, nm = 0;
        while (e < npx && px[e].key == px[i].key) e++;
        cp_box b = gbox[gidx[px[i].key]];
        int64_t n = box_vol(b), bz = b.z1 - b.z0, by = b.y1 - b.y0, bx = b.x1 - b.x0;
        uint32_t *cv = NULL, *init = malloc(sizeof *init * (size_t)n);
        uint32_t *mem = malloc(sizeof *mem * (size_t)(e - i));
        unsigned char *st = NULL;
        int64_t *stk = NULL;
        rc = canvas_of(f, b, px, i, e, &cv, &st, &stk);
        if (!rc && (!init || !mem)) rc = oom(f->err, "the box of a group of labels");
        for (int64_t k = i; !rc && k < e; k++) /* members numbered 1..nm in label order */
            if (k == i || px[k].v != px[k - 1].v) mem[nm++] = px[k].v;
        for (int64_t q = 0; !rc && q < n; q++) {
            if (cv[q]) {
                uint32_t *m = bsearch(&cv[q], mem, (size_t)nm, sizeof *mem, cmp_u32);
                cv[q] = (uint32_t)(m - mem) + 1;
            }
            init[q] = cv[q];
        }
        if (!rc) rc = cp_post_fill_and_min_size_3d(cv, bz, by, bx, -1, f->err);
        for (int64_t q = 0; !rc && q < n; q++) {
            uint32_t nv = cv[q] ? jmap[mem[cv[q] - 1]] : 0;
            uint32_t dv = init[q] ? jmap[mem[init[q] - 1]] : 0;
            if (nv == dv) continue;
            int64_t z = b.z0 + q / (by * bx), y = b.y0 + q / bx % by, x = b.x0 + q % bx;
            struct edit d;
            memset(&d, 0, sizeof d);
            d.idx = z * f->npix + y * f->v->nx + x, d.v = nv;
            if (cp_outbox_push(ed, cp_dvol_owner(f->v, z), &d, 1)) rc = oom(f->err, "edits");
        }
        free(cv);
        free(init);
        free(mem);
        free(st);
        free(stk);
        i = e;
    }
    return rc;
}

/* Sends the voxels of the labels whose group (root) is marked in `in`, own planes [zlo, zhi),
 * to the group's owner. */
static int send_groups(struct fill *f, cp_outbox *o, const uint32_t *root,
                       const unsigned char *in, int64_t zlo, int64_t zhi, const uint32_t *map_a,
                       int64_t ns)
{
    const cp_dvol *v = f->v;
    int rc = 0;
    for (int64_t z = max64(v->z0, zlo); !rc && z < min64(v->z1, zhi); z++) {
        if ((rc = load(f, z, map_a, ns))) break;
        for (int64_t i = 0; !rc && i < f->npix; i++) {
            uint32_t w = f->pl[i];
            cp_kpix p = {z * f->npix + i, root[w], w};
            if (w && in[root[w]] && cp_outbox_push(o, (int)(root[w] % (uint32_t)v->nranks), &p, 1))
                rc = oom(f->err, "group voxels in transit");
        }
    }
    return rc;
}

/* Step (b) for the groups of the candidates: batches of groups gathered at their owners, filled,
 * the edits queued in the store as "<name>.ed" z at the planes' owners. */
static int fill_stage(struct fill *f, const struct vstats *a, const unsigned char *cand,
                      const uint32_t *root, const uint32_t *jmap, const uint32_t *map_a,
                      int64_t ns, const char *edname)
{
    const cp_dvol *v = f->v;
    int64_t n = a->n, ng = 0;
    uint32_t *gidx = calloc((size_t)n + 1, sizeof *gidx), *gl = NULL;
    unsigned char *in = calloc((size_t)n + 1, 1);
    cp_box *gbox = NULL;
    cp_outbox o = {0}, ed = {0};
    int rc = gidx && in ? 0 : oom(f->err, "group tables");
    for (int64_t l = 1; !rc && l <= n; l++) /* groups: the roots of candidates, numbered 1.. */
        if (cand[l] && !gidx[root[l]]) gidx[root[l]] = (uint32_t)++ng;
    if (!rc) {
        gl = malloc(sizeof *gl * (size_t)(ng + 1));
        gbox = malloc(sizeof *gbox * (size_t)(ng + 1));
        if (!gl || !gbox) rc = oom(f->err, "group tables");
    }
    for (int64_t g = 0; !rc && g <= ng; g++)
        gbox[g] = (cp_box){INT64_MAX, 0, INT64_MAX, 0, INT64_MAX, 0};
    for (int64_t l = 1; !rc && l <= n; l++) {
        uint32_t g = gidx[root[l]];
        if (!g || !a->area[l]) continue;
        cp_box b = box_of(a, (uint32_t)l), *u = &gbox[g];
        gl[g - 1] = root[l];
        u->z0 = min64(u->z0, b.z0), u->z1 = max64(u->z1, b.z1);
        u->y0 = min64(u->y0, b.y0), u->y1 = max64(u->y1, b.y1);
        u->x0 = min64(u->x0, b.x0), u->x1 = max64(u->x1, b.x1);
    }
    if (!rc) rc = cp_outbox_init(&o, v->comm, sizeof(cp_kpix), f->err);
    if (!rc) rc = cp_outbox_init(&ed, v->comm, sizeof(struct edit), f->err);
    if ((rc = cp_agree(v->comm, rc, f->err))) goto out;
    for (int64_t i = 0, nb; i < ng; i = nb) {
        int64_t zlo, zhi;
        nb = batch_end(f, gbox + 1, i, ng, &zlo, &zhi);
        for (int64_t k = i; k < nb; k++) in[gl[k]] = 1;
        cp_kpix *px = NULL;
        struct edit *e = NULL;
        int64_t npx = 0, ne = 0;
        rc = send_groups(f, &o, root, in, zlo, zhi, map_a, ns);
        for (int64_t k = i; k < nb; k++) in[gl[k]] = 0;
        if ((rc = gather(f, &o, rc, &px, &npx))) break;
        rc = fill_groups(f, gbox, gidx, jmap, px, npx, &ed);
        free(px);
        if ((rc = cp_exchange(&ed, rc, INT64_MAX, (void **)&e, &ne, f->err))) break;
        qsort(e, (size_t)ne, sizeof *e, cmp_edit);
        for (int64_t k = 0, end; !rc && k < ne; k = end) { /* one append per plane */
            for (end = k; end < ne && e[end].idx / f->npix == e[k].idx / f->npix; end++) continue;
            rc = cp_bstore_append(v->store, edname, e[k].idx / f->npix, e + k,
                                  sizeof *e * (size_t)(end - k), f->err);
        }
        free(e);
        if ((rc = cp_agree(v->comm, rc, f->err))) break;
    }
out:
    free(gidx);
    free(gl);
    free(in);
    free(gbox);
    cp_outbox_free(&o);
    cp_outbox_free(&ed);
    return rc;
}

/* Own planes to B = jmap[A] with the queued edits, stored; their tables into sb (if not NULL). */
static int write_filled(struct fill *f, const uint32_t *map_a, int64_t ns, const uint32_t *jmap,
                        const char *edname, struct vstats *sb)
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

/* The corrected min_size rule on the tables of s: map (s->n + 1) to the kept labels' ids by
 * first appearance; *kept: their count. */
static int min_size_map(struct fill *f, const struct vstats *s, int64_t min_size, uint32_t *map,
                        int64_t *kept)
{
    for (int64_t l = 1; l <= s->n; l++) map[l] = !cp_post_too_small(s->area[l], min_size);
    if ((*kept = cp_renumber_ids(s->mn, 7, s->n, map)) < 0) return oom(f->err, "renumbering");
    return 0;
}

/* Step (a): the tables of the stitched planes, then map_a (ns + 1: stitched id -> A id) and the
 * tables of A in *a. */
static int stage_a(struct fill *f, int64_t ns, int64_t min_size, uint32_t *map_a,
                   struct vstats *a)
{
    const cp_dvol *v = f->v;
    struct vstats s = {0};
    int64_t na = ns;
    int rc = stats_init(&s, ns, f->err);
    for (int64_t z = v->z0; !rc && z < v->z1; z++)
        if (!(rc = load(f, z, NULL, ns))) rc = stats_add(&s, f, z);
    if ((rc = cp_agree(v->comm, rc, f->err))) goto out;
    stats_reduce(v->comm, &s);
    if (min_size > 0) rc = min_size_map(f, &s, min_size, map_a, &na);
    else
        for (int64_t l = 0; l <= ns; l++) map_a[l] = (uint32_t)l;
    if (!rc) rc = stats_init(a, na, f->err);
    for (int64_t l = 1; !rc && l <= ns; l++)
        if (map_a[l]) {
            a->area[map_a[l]] = s.area[l];
            memcpy(a->mn + 7 * (int64_t)map_a[l], s.mn + 7 * l, 7 * sizeof *s.mn);
        }
out:
    stats_free(&s);
    return cp_agree(v->comm, rc, f->err);
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
    struct vstats a = {0}, sb = {0};
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
        if (!rc) rc = find_edges(&f, &a, cl, ncl, map_a, nlabels, &e, &ne);
        if (!rc) rc = cp_holding_groups(v->comm, e, ne, root, a.n, err);
        if (!rc) rc = fill_stage(&f, &a, cand, root, jmap, map_a, nlabels, edname);
        if (rc) goto out;
    }
    if (min_size > 0) rc = cp_agree(v->comm, stats_init(&sb, j, err), err);
    if (!rc) rc = write_filled(&f, map_a, nlabels, jmap, edname, min_size > 0 ? &sb : NULL);
    if (rc) goto out;
    int64_t most = 0;
    if (min_size > 0) { /* step (c) */
        stats_reduce(v->comm, &sb);
        map_c = malloc(sizeof *map_c * ((size_t)j + 1));
        rc = map_c ? min_size_map(&f, &sb, min_size, map_c, &most) : oom(err, "a map of labels");
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
    stats_free(&a);
    stats_free(&sb);
    return rc;
}
