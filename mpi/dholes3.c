/* The holes of labels whose box crosses blocks, over the blocks (see dholes3.h). Three rounds:
 * (1) each block sends, for every box it shares a high block face with, the components on its
 * last layer to the owner of the block across that face; (2) that block pairs them with its own
 * components on the other side and sends the pairs, and its components that touch a block face
 * (with their outside flag), to the owner of the label; (3) the label's owner joins them and
 * sends back the components that are holes to their blocks' owners. A block's components are
 * computed again in each round that needs them (deterministic: raster order). */
#include "dholes3.h"

#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "exchange.h"
#include "holding.h"

enum { OUT = 1, FACE = 2 }; /* a component touches a face of the box / a block face inside it */

/* A component of label w's box in block b: number c (1..). */
struct cp_hkey {
    int64_t b;
    uint32_t w, c;
};

/* The component c of label w's box in block b next to (across a block face from) voxel idx of
 * block `to` (set by the receiver). */
struct layer {
    int64_t idx, b, to;
    uint32_t w, c;
};

/* Two components (w, b1, c1) and (w, b2, c2) that touch, or, with b2 = -1, a component that
 * touches a block face, c2 its OUT flag. */
struct link {
    int64_t b1, b2;
    uint32_t w, c1, c2, pad;
};

static int oom(char *err, const char *what)
{
    return cp_errf(err, CP_ENOMEM, "dholes3.c: out of memory for %s", what);
}

static int cmp_hkey(const void *a, const void *b)
{
    const struct cp_hkey *x = a, *y = b;
    if (x->w != y->w) return x->w < y->w ? -1 : 1;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    return (x->c > y->c) - (x->c < y->c);
}

int cp_dholes3_init(cp_dholes3 *h, MPI_Comm comm, const cp_grid *g, int64_t bmax,
                    cp_dholes3_get get, void *ctx, char *err)
{
    int rank;
    memset(h, 0, sizeof *h);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &h->np);
    h->comm = comm, h->g = g, h->bmax = bmax, h->get = get, h->ctx = ctx, h->err = err;
    cp_grid_range(g, rank, &h->b0, &h->b1);
    size_t n = (size_t)(bmax > 0 ? bmax : 1);
    h->comp = malloc(sizeof *h->comp * n), h->flag = malloc(n + 1);
    h->stack = malloc(sizeof *h->stack * n);
    return h->comp && h->flag && h->stack ? 0 : oom(err, "a block");
}

void cp_dholes3_free(cp_dholes3 *h)
{
    free(h->comp);
    free(h->flag);
    free(h->stack);
    free(h->hole);
    memset(h, 0, sizeof *h);
}

/* The components of the voxels != w of box lb inside block box bb (voxels blk), 6-connected,
 * numbered 1.. in raster order into h->comp over s = meet(lb, bb) in C order (0: a voxel of w),
 * what each touches in h->flag. Returns their count. */
static uint32_t components(cp_dholes3 *h, const uint32_t *blk, cp_box bb, uint32_t w, cp_box lb)
{
    cp_box s = cp_box_meet(lb, bb);
    int64_t by = bb.y1 - bb.y0, bx = bb.x1 - bb.x0;
    int64_t sz = s.z1 - s.z0, sy = s.y1 - s.y0, sx = s.x1 - s.x0, nv = sz * sy * sx;
    /* each side of s is a face of the box or a block face inside it */
    unsigned char side[6] = {s.z0 == lb.z0 ? OUT : FACE, s.z1 == lb.z1 ? OUT : FACE,
                             s.y0 == lb.y0 ? OUT : FACE, s.y1 == lb.y1 ? OUT : FACE,
                             s.x0 == lb.x0 ? OUT : FACE, s.x1 == lb.x1 ? OUT : FACE};
    for (int64_t q = 0; q < nv; q++) {
        int64_t z = q / (sy * sx), y = q / sx % sy, x = q % sx;
        uint32_t v = blk[((s.z0 - bb.z0 + z) * by + s.y0 - bb.y0 + y) * bx + s.x0 - bb.x0 + x];
        h->comp[q] = v == w ? 0 : UINT32_MAX;
    }
    uint32_t k = 0;
    for (int64_t q0 = 0; q0 < nv; q0++) {
        if (h->comp[q0] != UINT32_MAX) continue;
        unsigned char f = 0;
        int64_t top = 0;
        h->comp[q0] = ++k, h->stack[top++] = q0;
        while (top > 0) {
            int64_t q = h->stack[--top], z = q / (sy * sx), y = q / sx % sy, x = q % sx;
            int64_t nb[6];
            int nn = 0;
            if (z == 0) f |= side[0];
            if (z == sz - 1) f |= side[1];
            if (y == 0) f |= side[2];
            if (y == sy - 1) f |= side[3];
            if (x == 0) f |= side[4];
            if (x == sx - 1) f |= side[5];
            if (x > 0) nb[nn++] = q - 1;
            if (x < sx - 1) nb[nn++] = q + 1;
            if (y > 0) nb[nn++] = q - sx;
            if (y < sy - 1) nb[nn++] = q + sx;
            if (z > 0) nb[nn++] = q - sx * sy;
            if (z < sz - 1) nb[nn++] = q + sx * sy;
            for (int i = 0; i < nn; i++)
                if (h->comp[nb[i]] == UINT32_MAX) h->comp[nb[i]] = k, h->stack[top++] = nb[i];
        }
        h->flag[k] = f;
    }
    return k;
}

/* Round (1) for own block b (voxels blk, box bb) and label w (box lb): its components on each
 * high block face inside the box, to the owner of the block across. */
static int send_layers(cp_dholes3 *h, cp_outbox *o, int64_t b, const uint32_t *blk, cp_box bb,
                       uint32_t w, cp_box lb)
{
    const cp_grid *g = h->g;
    components(h, blk, bb, w, lb);
    cp_box s = cp_box_meet(lb, bb);
    int64_t sz = s.z1 - s.z0, sy = s.y1 - s.y0, sx = s.x1 - s.x0;
    for (int a = 0; a < 3; a++) {
        int64_t hi[3] = {s.z1, s.y1, s.x1}, lbhi[3] = {lb.z1, lb.y1, lb.x1};
        if (hi[a] >= lbhi[a]) continue; /* a face of the box, or no block across */
        /* the layer: z (a = 0), y (1) or x (2) fixed at the last of s */
        int64_t n0 = a == 0 ? 1 : sz, n1 = a == 1 ? 1 : sy, n2 = a == 2 ? 1 : sx;
        int64_t dst = cp_grid_owner(g, cp_grid_block_at3(g, a == 0 ? s.z1 : s.z0,
                                                         a == 1 ? s.y1 : s.y0,
                                                         a == 2 ? s.x1 : s.x0));
        for (int64_t z = 0; z < n0; z++)
            for (int64_t y = 0; y < n1; y++)
                for (int64_t x = 0; x < n2; x++) {
                    int64_t lz = a == 0 ? sz - 1 : z, ly = a == 1 ? sy - 1 : y,
                            lx = a == 2 ? sx - 1 : x;
                    uint32_t c = h->comp[(lz * sy + ly) * sx + lx];
                    int64_t gz = s.z0 + lz + (a == 0), gy = s.y0 + ly + (a == 1),
                            gx = s.x0 + lx + (a == 2);
                    struct layer r = {(gz * g->Ly + gy) * g->Lx + gx, b, 0, w, c};
                    if (c && cp_outbox_push(o, (int)dst, &r, 1))
                        return oom(h->err, "block faces in transit");
                }
    }
    return 0;
}

static int cmp_layer(const void *a, const void *b) /* block across, label, voxel */
{
    const struct layer *x = a, *y = b;
    if (x->to != y->to) return x->to < y->to ? -1 : 1;
    if (x->w != y->w) return x->w < y->w ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_link(const void *a, const void *b)
{
    const struct link *x = a, *y = b;
    if (x->w != y->w) return x->w < y->w ? -1 : 1;
    if (x->b1 != y->b1) return x->b1 < y->b1 ? -1 : 1;
    if (x->c1 != y->c1) return x->c1 < y->c1 ? -1 : 1;
    if (x->b2 != y->b2) return x->b2 < y->b2 ? -1 : 1;
    return (x->c2 > y->c2) - (x->c2 < y->c2);
}

/* Round (2) for own block b and label w: the records in[0..n) received for them (sorted by idx)
 * paired with this side's components, and the components on block faces, queued in *lk (*nl
 * records, *cap allocated). */
static int pair_layers(cp_dholes3 *h, int64_t b, const uint32_t *blk, cp_box bb, uint32_t w,
                       cp_box lb, const struct layer *in, int64_t n, struct link **lk, int64_t *nl,
                       int64_t *cap)
{
    const cp_grid *g = h->g;
    uint32_t k = components(h, blk, bb, w, lb);
    cp_box s = cp_box_meet(lb, bb);
    int64_t sy = s.y1 - s.y0, sx = s.x1 - s.x0, npix = g->Ly * g->Lx;
    int64_t need = *nl + n + k;
    if (need > *cap) {
        int64_t nc = need > 2 * *cap ? need : 2 * *cap;
        struct link *t = realloc(*lk, sizeof *t * (size_t)nc);
        if (!t) return oom(h->err, "touching components");
        *lk = t, *cap = nc;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t z = in[i].idx / npix, r = in[i].idx % npix, y = r / g->Lx, x = r % g->Lx;
        uint32_t c = h->comp[((z - s.z0) * sy + y - s.y0) * sx + x - s.x0];
        struct link l;
        memset(&l, 0, sizeof l);
        l.b1 = in[i].b, l.c1 = in[i].c, l.b2 = b, l.c2 = c, l.w = w;
        if (c && (*nl == 0 || cmp_link(&(*lk)[*nl - 1], &l))) (*lk)[(*nl)++] = l;
    }
    for (uint32_t c = 1; c <= k; c++) {
        struct link l;
        memset(&l, 0, sizeof l);
        l.b1 = b, l.c1 = c, l.b2 = -1, l.c2 = h->flag[c] & OUT, l.w = w;
        if (h->flag[c] & FACE) (*lk)[(*nl)++] = l;
    }
    return 0;
}

static struct cp_hkey node_key(const struct link *l) { return (struct cp_hkey){l->b1, l->w, l->c1}; }

/* The index of component k among the nodes lk[0..nn) (sorted), or -1. */
static int64_t node_of(const struct link *lk, int64_t nn, struct cp_hkey k)
{
    int64_t lo = 0, hi = nn;
    while (lo < hi) {
        int64_t m = (lo + hi) / 2;
        struct cp_hkey km = node_key(&lk[m]);
        if (cmp_hkey(&km, &k) < 0) lo = m + 1;
        else hi = m;
    }
    struct cp_hkey kl = lo < nn ? node_key(&lk[lo]) : k;
    return lo < nn && !cmp_hkey(&kl, &k) ? lo : -1;
}

static int64_t root_of(int64_t *up, int64_t x)
{
    while (up[x] != x) up[x] = up[up[x]], x = up[x]; /* path halving */
    return x;
}

/* Round (3) at the labels' owner: the nodes and pairs lk[0..n) joined; the components that are
 * holes queued for their blocks' owners. */
static int join(cp_dholes3 *h, struct link *lk, int64_t n, cp_outbox *o)
{
    int64_t nn = 0;
    for (int64_t i = 0; i < n; i++) /* the nodes first, sorted by (w, b, c) */
        if (lk[i].b2 == -1) {
            struct link t = lk[nn];
            lk[nn++] = lk[i], lk[i] = t;
        }
    qsort(lk, (size_t)nn, sizeof *lk, cmp_link);
    int64_t *up = malloc(sizeof *up * (size_t)(nn ? nn : 1));
    unsigned char *out = malloc((size_t)(nn ? nn : 1));
    int rc = up && out ? 0 : oom(h->err, "joining components");
    for (int64_t i = 0; !rc && i < nn; i++) up[i] = i, out[i] = (unsigned char)lk[i].c2;
    for (int64_t i = nn; !rc && i < n; i++) {
        struct cp_hkey k1 = node_key(&lk[i]), k2 = {lk[i].b2, lk[i].w, lk[i].c2};
        int64_t x1 = node_of(lk, nn, k1), x2 = node_of(lk, nn, k2);
        if (x1 < 0 || x2 < 0) { /* both sides touch a block face: a node each */
            rc = cp_errf(h->err, CP_EFORMAT, "dholes3.c: label %u: a component of block %lld "
                         "without its node", lk[i].w, (long long)(x1 < 0 ? k1.b : k2.b));
            break;
        }
        x1 = root_of(up, x1), x2 = root_of(up, x2);
        if (x1 != x2) {
            int64_t a = x1 < x2 ? x1 : x2, c = x1 < x2 ? x2 : x1;
            up[c] = a, out[a] |= out[c];
        }
    }
    for (int64_t i = 0; !rc && i < nn; i++) {
        struct cp_hkey k = node_key(&lk[i]);
        if (!out[root_of(up, i)] && cp_outbox_push(o, cp_grid_owner(h->g, k.b), &k, 1))
            rc = oom(h->err, "holes in transit");
    }
    free(up);
    free(out);
    return rc;
}

/* Runs round (1) (in NULL) or (2) (the records in[0..nin), sorted by cmp_layer) over own blocks
 * and the labels of cl (increasing) whose box meets them but does not lie inside them (such a box
 * has no block face: cp_dholes3_map finds its holes alone). */
static int over_blocks(cp_dholes3 *h, const uint32_t *cl, const cp_box *box, int64_t ncl,
                       cp_outbox *o, const struct layer *in, int64_t nin, struct link **lk,
                       int64_t *nl, int64_t *cap)
{
    int rc = 0;
    int64_t i = 0;
    for (int64_t b = h->b0; !rc && b < h->b1; b++) {
        cp_box bb = cp_grid_bounds(h->g, b);
        const uint32_t *blk = NULL;
        int loaded = 0;
        for (int64_t k = 0; !rc && k < ncl; k++) {
            cp_box s = cp_box_meet(box[k], bb);
            if (cp_box_empty(s) || cp_box_vol(s) == cp_box_vol(box[k])) continue;
            if (!loaded && (rc = h->get(h->ctx, b, &blk, &bb))) break;
            loaded = 1;
            if (!in) {
                rc = send_layers(h, o, b, blk, bb, cl[k], box[k]);
                continue;
            }
            while (i < nin && (in[i].to < b || (in[i].to == b && in[i].w < cl[k]))) i++;
            int64_t e = i;
            while (e < nin && in[e].to == b && in[e].w == cl[k]) e++;
            rc = pair_layers(h, b, blk, bb, cl[k], box[k], in + i, e - i, lk, nl, cap);
            i = e;
        }
    }
    return rc;
}

int cp_dholes3_find(cp_dholes3 *h, const uint32_t *cl, const cp_box *box, int64_t ncl)
{
    cp_outbox o = {0};
    struct layer *in = NULL;
    struct link *lk = NULL, *got = NULL;
    struct cp_hkey *hk = NULL;
    int64_t nin = 0, nl = 0, cap = 0, ngot = 0, nh = 0;
    free(h->hole);
    h->hole = NULL, h->nhole = 0;
    /* (1) */
    int rc = cp_outbox_init(&o, h->comm, sizeof *in, h->err);
    if (!rc) rc = over_blocks(h, cl, box, ncl, &o, NULL, 0, NULL, NULL, NULL);
    if ((rc = cp_exchange(&o, rc, INT64_MAX, (void **)&in, &nin, h->err))) goto out;
    cp_outbox_free(&o);
    /* (2): the records by the block across, label, voxel */
    for (int64_t i = 0; i < nin; i++) {
        int64_t npix = h->g->Ly * h->g->Lx, r = in[i].idx % npix;
        in[i].to = cp_grid_block_at3(h->g, in[i].idx / npix, r / h->g->Lx, r % h->g->Lx);
    }
    qsort(in, (size_t)nin, sizeof *in, cmp_layer);
    if (!rc) rc = over_blocks(h, cl, box, ncl, NULL, in, nin, &lk, &nl, &cap);
    if (!rc) rc = cp_outbox_init(&o, h->comm, sizeof *lk, h->err);
    for (int64_t i = 0; !rc && i < nl; i++)
        if (cp_outbox_push(&o, (int)(lk[i].w % (uint32_t)h->np), &lk[i], 1))
            rc = oom(h->err, "touching components in transit");
    free(lk), lk = NULL;
    if ((rc = cp_exchange(&o, rc, INT64_MAX, (void **)&got, &ngot, h->err))) goto out;
    cp_outbox_free(&o);
    /* (3) */
    rc = cp_outbox_init(&o, h->comm, sizeof *hk, h->err);
    if (!rc) rc = join(h, got, ngot, &o);
    if ((rc = cp_exchange(&o, rc, INT64_MAX, (void **)&hk, &nh, h->err))) goto out;
    qsort(hk, (size_t)nh, sizeof *hk, cmp_hkey);
    h->hole = hk, h->nhole = nh, hk = NULL;
out:
    cp_outbox_free(&o);
    free(in);
    free(lk);
    free(got);
    free(hk);
    return cp_agree(h->comm, rc, h->err);
}

void cp_dholes3_map(cp_dholes3 *h, int64_t b, const uint32_t *blk, cp_box bb, uint32_t w,
                    cp_box lb, unsigned char *state)
{
    components(h, blk, bb, w, lb);
    int64_t nv = cp_box_vol(cp_box_meet(lb, bb));
    uint32_t last = 0;
    unsigned char st = 0;
    for (int64_t q = 0; q < nv; q++) {
        uint32_t c = h->comp[q];
        if (!c) {
            state[q] = 1;
            continue;
        }
        if (c != last) { /* runs of one component are common */
            unsigned char f = h->flag[c];
            struct cp_hkey k = {b, w, c};
            st = f & OUT ? 2 : !(f & FACE) ? 0
               : bsearch(&k, h->hole, (size_t)h->nhole, sizeof k, cmp_hkey) ? 0 : 2;
            last = c;
        }
        state[q] = st;
    }
}
