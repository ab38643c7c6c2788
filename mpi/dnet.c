/* The network phase over owner blocks (see dnet.h). The layout is cp_run_net's: image (Ly, Lx)
 * -> network scale (Lyr, Lxr) -> padded plane (by, bx before the image) -> global tile grid ->
 * blended canvas -> crop -> resize back to the dynamics scale (Dy, Dx). Every step is a function
 * of global coordinates, so a window computes exactly the same bits as the whole plane:
 *   output window (dynamics scale) -> network-scale span it reads (cp_resize_src_span)
 *   -> tiles touching that span, blended in increasing index (cp_tiles_accumulate)
 *   -> for the tiles not yet cached: the padded-plane rectangle they cover -> the image window its
 *      resize reads -> read, normalize, invert, resize, pad -> extract each tile -> CPnet.
 * Tile outputs live in a bounded cache: a rank computes its blocks in order and evicts the tile
 * needed again the latest (Belady's rule over the known sequence of blocks). */
#include "dnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "bstore.h"
#include "cp_err.h"
#include "progress.h"
#include "resize.h"
#include "tiles.h"

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The geometry of the plane's network phase, as cp_run_net lays it out. */
typedef struct plan {
    int64_t Ly, Lx;   /* image */
    int64_t Lyr, Lxr; /* network scale */
    int64_t by, bx;   /* padding before the image on the padded plane */
    int64_t Dy, Dx;   /* dynamics scale */
    int nout;
    cp_tile_grid g;   /* tile grid of the padded plane */
} plan;

static int plan_sizes(const cp_dnet *net, plan *p, char *err)
{
    p->Ly = p->Lyr = net->im->layout.ny;
    p->Lx = p->Lxr = net->im->layout.nx;
    if (net->rescale != 1.0) {
        p->Lyr = (int64_t)((double)p->Ly * net->rescale);
        p->Lxr = (int64_t)((double)p->Lx * net->rescale);
        if (p->Lyr < 1 || p->Lxr < 1)
            return cp_errf(err, CP_EPARAM, "dnet: image %lldx%lld is empty at rescale %g "
                           "(diameter too large?)", (long long)p->Ly, (long long)p->Lx,
                           net->rescale);
    }
    int back = net->resample && (p->Lyr != p->Ly || p->Lxr != p->Lx);
    p->Dy = back ? p->Ly : p->Lyr;
    p->Dx = back ? p->Lx : p->Lxr;
    return 0;
}

static int plan_init(const cp_dnet *net, plan *p, char *err)
{
    memset(p, 0, sizeof *p);
    int rc = plan_sizes(net, p, err);
    if (rc) return rc;
    const cp_model_info *mi = cp_model_get_info(net->model);
    if (mi->nchan != 2)
        return cp_errf(err, CP_EPARAM, "dnet: the model has %d input channels; the image gives 2",
                       mi->nchan);
    if (net->batch_size < 1)
        return cp_errf(err, CP_EPARAM, "dnet: batch size %lld (at least 1 needed)",
                       (long long)net->batch_size);
    p->nout = mi->nout;
    int64_t ay, ax;
    cp_pad_amounts(p->Lyr, &p->by, &ay);
    cp_pad_amounts(p->Lxr, &p->bx, &ax);
    return cp_tiles_plan(p->by + p->Lyr + ay, p->bx + p->Lxr + ax, net->bsize, net->tile_overlap,
                         net->augment, &p->g, err);
}

int cp_dnet_size(const cp_dnet *net, int64_t *ny, int64_t *nx, char *err)
{
    plan p;
    memset(&p, 0, sizeof p);
    int rc = plan_sizes(net, &p, err);
    *ny = p.Dy;
    *nx = p.Dx;
    return rc;
}

/* The source rectangle that a bilinear resize from sny x snx to dny x dnx reads for output
 * rectangle r (r itself when both sizes are equal: the resize is a copy). */
static cp_rect resize_src(int64_t sny, int64_t snx, int64_t dny, int64_t dnx, cp_rect r)
{
    if (sny == dny && snx == dnx) return r;
    int64_t y0, y1, x0, x1;
    cp_resize_src_span(sny, dny, r.y0, r.y0 + r.ny, &y0, &y1);
    cp_resize_src_span(snx, dnx, r.x0, r.x0 + r.nx, &x0, &x1);
    return (cp_rect){y0, x0, y1 - y0, x1 - x0};
}

/* The canvas rectangle whose blended values the dynamics-scale window win needs. */
static cp_rect canvas_rect(const plan *p, cp_rect win)
{
    cp_rect r = resize_src(p->Lyr, p->Lxr, p->Dy, p->Dx, win);
    r.y0 += p->by;
    r.x0 += p->bx;
    return r;
}

/* The network phase of a sequence of windows: the plan, the tiles each window needs (window i:
 * tiles[off[i] .. off[i+1]), increasing; next[p]: the next window needing the tile of position
 * p, INT64_MAX if none) and the cache of tile outputs (slot s holds tile key[s], -1 when free,
 * next needed by window use[s]). */
typedef struct dctx {
    const cp_dnet *net;
    plan p;
    int64_t nwin, *off, *tiles, *next;
    int64_t cap, *key, *use;
    float *out;      /* cap slots of (nout, ty, tx) */
    int64_t evals;   /* tiles run through the network */
    cp_progress *pr; /* tile evaluations done, or NULL */
} dctx;

static void ctx_free(dctx *x)
{
    cp_tiles_free(&x->p.g);
    free(x->off);
    free(x->tiles);
    free(x->next);
    free(x->key);
    free(x->use);
    free(x->out);
    memset(x, 0, sizeof *x);
}

typedef struct tpos {
    int64_t tile, pos, win; /* position pos of the need lists, in window win */
} tpos;

static int cmp_tpos(const void *a, const void *b)
{
    const tpos *u = a, *v = b;
    if (u->tile != v->tile) return u->tile < v->tile ? -1 : 1;
    return (u->pos > v->pos) - (u->pos < v->pos);
}

/* next[] from the need lists: positions sorted by (tile, position), each followed by the next
 * use of the same tile. */
static int next_uses(dctx *x)
{
    int64_t m = x->off[x->nwin];
    tpos *t = malloc(sizeof(tpos) * (size_t)max64(1, m));
    if (!t) return -1;
    for (int64_t i = 0; i < x->nwin; i++)
        for (int64_t q = x->off[i]; q < x->off[i + 1]; q++) t[q] = (tpos){x->tiles[q], q, i};
    qsort(t, (size_t)m, sizeof *t, cmp_tpos);
    for (int64_t q = 0; q < m; q++)
        x->next[t[q].pos] = q + 1 < m && t[q + 1].tile == t[q].tile ? t[q + 1].win : INT64_MAX;
    free(t);
    return 0;
}

/* Plans the plane and the tile needs of windows wins[0..nwin) (inside the dynamics plane); the
 * cache holds twice the largest need (one need for a single window). */
static int ctx_init(dctx *x, const cp_dnet *net, const cp_rect *wins, int64_t nwin, char *err)
{
    memset(x, 0, sizeof *x);
    x->net = net;
    x->nwin = nwin;
    int rc = plan_init(net, &x->p, err);
    for (int64_t i = 0; !rc && i < nwin; i++) {
        cp_rect w = wins[i];
        if (w.ny < 1 || w.nx < 1 || w.y0 < 0 || w.x0 < 0 || w.y0 + w.ny > x->p.Dy ||
            w.x0 + w.nx > x->p.Dx)
            rc = cp_errf(err, CP_EPARAM, "dnet: window %lldx%lld at (%lld, %lld) is not inside "
                         "the %lldx%lld plane", (long long)w.ny, (long long)w.nx, (long long)w.y0,
                         (long long)w.x0, (long long)x->p.Dy, (long long)x->p.Dx);
    }
    if (rc) {
        ctx_free(x);
        return rc;
    }
    const cp_tile_grid *g = &x->p.g;
    x->off = malloc(sizeof(int64_t) * (size_t)(nwin + 1));
    if (!x->off) goto oom;
    x->off[0] = 0;
    int64_t most = 0;
    for (int64_t i = 0; i < nwin; i++) {
        cp_rect c = canvas_rect(&x->p, wins[i]);
        int64_t n = cp_tiles_touching(g, c.y0, c.x0, c.ny, c.nx, NULL);
        x->off[i + 1] = x->off[i] + n;
        most = max64(most, n);
    }
    x->tiles = malloc(sizeof(int64_t) * (size_t)max64(1, x->off[nwin]));
    x->next = malloc(sizeof(int64_t) * (size_t)max64(1, x->off[nwin]));
    if (!x->tiles || !x->next) goto oom;
    for (int64_t i = 0; i < nwin; i++) {
        cp_rect c = canvas_rect(&x->p, wins[i]);
        cp_tiles_touching(g, c.y0, c.x0, c.ny, c.nx, x->tiles + x->off[i]);
    }
    if (next_uses(x)) goto oom;
    x->cap = nwin > 1 ? 2 * most : most;
    x->key = malloc(sizeof(int64_t) * (size_t)max64(1, x->cap));
    x->use = malloc(sizeof(int64_t) * (size_t)max64(1, x->cap));
    x->out = malloc(sizeof(float) * (size_t)max64(1, x->cap * x->p.nout * g->ty * g->tx));
    if (!x->key || !x->use || !x->out) goto oom;
    for (int64_t s = 0; s < x->cap; s++) x->key[s] = -1;
    return 0;
oom:
    ctx_free(x);
    return cp_errf(err, CP_ENOMEM, "dnet: out of memory for the tile plan of %lld windows",
                   (long long)nwin);
}

static int64_t slot_of(const dctx *x, int64_t k)
{
    for (int64_t s = 0; s < x->cap; s++)
        if (x->key[s] == k) return s;
    return -1;
}

/* A slot for a tile that window i needs and the cache lacks: a free one, else, among the slots
 * window i does not use (use[s] != i), the one needed again the latest (Belady's rule). One
 * exists: the cache has at least as many slots as window i needs tiles. */
static int64_t claim_slot(const dctx *x, int64_t i)
{
    int64_t best = -1;
    for (int64_t s = 0; s < x->cap; s++) {
        if (x->key[s] < 0) return s;
        if (x->use[s] != i && (best < 0 || x->use[s] > x->use[best])) best = s;
    }
    return best;
}

/* The network input over rectangle r of the padded plane (inside it), channel-first
 * (2, r.ny, r.nx): the image window the resize to the network scale reads, normalized with the
 * global constants, inverted, resized, and zero outside the image. */
static int padded_input(const dctx *x, cp_rect r, float *img, char *err)
{
    const plan *p = &x->p;
    const cp_dnet *net = x->net;
    memset(img, 0, sizeof(float) * (size_t)(2 * r.ny * r.nx));
    int64_t y0 = max64(r.y0 - p->by, 0), x0 = max64(r.x0 - p->bx, 0);
    cp_rect n = {y0, x0, min64(r.y0 + r.ny - p->by, p->Lyr) - y0,
                 min64(r.x0 + r.nx - p->bx, p->Lxr) - x0};
    if (n.ny < 1 || n.nx < 1) return 0;
    cp_rect s = resize_src(p->Ly, p->Lx, p->Lyr, p->Lxr, n);
    int same = p->Ly == p->Lyr && p->Lx == p->Lxr;
    float *raw = malloc(sizeof(float) * (size_t)(2 * s.ny * s.nx));
    float *rs = same ? NULL : malloc(sizeof(float) * (size_t)(2 * n.ny * n.nx));
    int rc = (raw && (same || rs)) ? cp_image_read(net->im, net->z, s.y0, s.x0, s.ny, s.nx, raw, err)
                                   : cp_errf(err, CP_ENOMEM, "dnet: out of memory for a %lldx%lld "
                                             "image window", (long long)s.ny, (long long)s.nx);
    if (!rc) {
        if (!net->no_norm) cp_norm_apply(raw, s.ny * s.nx, net->norm, 0);
        cp_norm_invert(raw, s.ny * s.nx, net->inv);
        if (rs)
            cp_resize_bilinear_window(raw, s.y0, s.x0, s.nx, p->Ly, p->Lx, 2, rs, n.y0, n.x0, n.ny,
                                      n.nx, p->Lyr, p->Lxr);
        const float *v = rs ? rs : raw;
        for (int c = 0; c < 2; c++)
            for (int64_t y = 0; y < n.ny; y++) {
                float *o = img + (c * r.ny + p->by + n.y0 + y - r.y0) * r.nx + p->bx + n.x0 - r.x0;
                for (int64_t xx = 0; xx < n.nx; xx++) o[xx] = v[(y * n.nx + xx) * 2 + c];
            }
    }
    free(raw);
    free(rs);
    return rc;
}

/* Runs tiles need[miss[j]] (j < nm) through the network into their slots at[miss[j]]: the input
 * is built once over the padded-plane rectangle the tiles cover, then batched. */
static int compute_tiles(dctx *x, const int64_t *need, const int64_t *at, const int64_t *miss,
                         int64_t nm, char *err)
{
    const cp_tile_grid *g = &x->p.g;
    int64_t y0 = g->Ly, y1 = 0, x0 = g->Lx, x1 = 0;
    for (int64_t j = 0; j < nm; j++) {
        int64_t k = need[miss[j]], ys = g->ystart[k / g->nx], xs = g->xstart[k % g->nx];
        y0 = min64(y0, ys), y1 = max64(y1, min64(ys + g->ty, g->Ly));
        x0 = min64(x0, xs), x1 = max64(x1, min64(xs + g->tx, g->Lx));
    }
    cp_rect r = {y0, x0, y1 - y0, x1 - x0};
    int nout = x->p.nout;
    int64_t tsz = g->ty * g->tx, batch = min64(x->net->batch_size, nm);
    float *img = malloc(sizeof(float) * (size_t)(2 * r.ny * r.nx));
    float *in = malloc(sizeof(float) * (size_t)(batch * 2 * tsz));
    float *out = malloc(sizeof(float) * (size_t)(batch * nout * tsz));
    int rc = (img && in && out) ? padded_input(x, r, img, err)
                                : cp_errf(err, CP_ENOMEM, "dnet: out of memory for %lld tiles",
                                          (long long)nm);
    for (int64_t j0 = 0; !rc && j0 < nm; j0 += batch) {
        int64_t nb = min64(batch, nm - j0);
        for (int64_t b = 0; b < nb; b++)
            cp_tiles_extract(g, need[miss[j0 + b]], img, r.y0, r.x0, r.ny, r.nx, 2,
                             in + b * 2 * tsz);
        rc = cp_net_forward(x->net->model, in, (int)nb, (int)g->ty, (int)g->tx, out, NULL, err);
        for (int64_t b = 0; !rc && b < nb; b++) {
            float *o = out + b * nout * tsz;
            if (g->augment) cp_tiles_unflip(g, need[miss[j0 + b]], o, nout);
            memcpy(x->out + at[miss[j0 + b]] * nout * tsz, o, sizeof(float) * (size_t)(nout * tsz));
        }
        if (!rc) x->evals += nb;
        if (!rc) cp_progress_add(x->pr, nb);
    }
    free(img);
    free(in);
    free(out);
    return rc;
}

/* The cache slots at[j] of window i's tiles; those the cache lacks are claimed (key and use
 * set), their positions j listed in miss. Returns how many are missing. */
static int64_t assign_slots(dctx *x, int64_t i, int64_t *at, int64_t *miss)
{
    const int64_t *need = x->tiles + x->off[i];
    int64_t n = x->off[i + 1] - x->off[i], nm = 0;
    /* a cached tile that window i needs has use == i (its next use, recorded at its last use) */
    for (int64_t j = 0; j < n; j++) {
        at[j] = slot_of(x, need[j]);
        if (at[j] >= 0) continue;
        at[j] = claim_slot(x, i);
        x->key[at[j]] = need[j];
        x->use[at[j]] = i;
        miss[nm++] = j;
    }
    return nm;
}

/* The tile evaluations windows 0..nwin) will cost: the cache run dry (no network), then put
 * back as it was. -1 when out of memory. */
static int64_t count_evals(dctx *x)
{
    int64_t most = 0, evals = 0;
    for (int64_t i = 0; i < x->nwin; i++) most = max64(most, x->off[i + 1] - x->off[i]);
    int64_t *at = malloc(sizeof(int64_t) * (size_t)max64(1, 2 * most + 2 * x->cap));
    if (!at) return -1;
    int64_t *key = at + 2 * most, *use = key + x->cap;
    memcpy(key, x->key, sizeof(int64_t) * (size_t)x->cap);
    memcpy(use, x->use, sizeof(int64_t) * (size_t)x->cap);
    for (int64_t i = 0; i < x->nwin; i++) {
        int64_t n = x->off[i + 1] - x->off[i];
        evals += assign_slots(x, i, at, at + most);
        for (int64_t j = 0; j < n; j++) x->use[at[j]] = x->next[x->off[i] + j];
    }
    memcpy(x->key, key, sizeof(int64_t) * (size_t)x->cap);
    memcpy(x->use, use, sizeof(int64_t) * (size_t)x->cap);
    free(at);
    return evals;
}

/* Window i of the sequence (dynamics-scale rectangle win) into out3 (3, win.ny, win.nx). */
static int run_window(dctx *x, int64_t i, cp_rect win, float *out3, char *err)
{
    const plan *p = &x->p;
    const cp_tile_grid *g = &p->g;
    const int64_t *need = x->tiles + x->off[i];
    int64_t n = x->off[i + 1] - x->off[i], nm = 0, tsz = g->ty * g->tx;
    int nout = p->nout;
    cp_rect cw = canvas_rect(p, win);
    int64_t *at = malloc(sizeof(int64_t) * (size_t)(2 * n));
    float *acc = calloc((size_t)(nout * cw.ny * cw.nx), sizeof *acc);
    double *w = calloc((size_t)(cw.ny * cw.nx), sizeof *w);
    int rc = (at && acc && w) ? 0 : cp_errf(err, CP_ENOMEM, "dnet: out of memory for a %lldx%lld "
                                            "window", (long long)cw.ny, (long long)cw.nx);
    int64_t *miss = rc ? NULL : at + n;
    if (!rc) nm = assign_slots(x, i, at, miss);
    if (!rc && nm) rc = compute_tiles(x, need, at, miss, nm, err);
    if (rc)
        for (int64_t j = 0; j < nm; j++) x->key[at[miss[j]]] = -1;
    for (int64_t j = 0; !rc && j < n; j++) x->use[at[j]] = x->next[x->off[i] + j];
    for (int64_t j = 0; !rc && j < n; j++)
        cp_tiles_accumulate(g, need[j], x->out + at[j] * nout * tsz, nout, acc, w, cw.y0, cw.x0,
                            cw.ny, cw.nx);
    if (!rc) {
        cp_tiles_finish(acc, w, nout, cw.ny * cw.nx);
        for (int c = 0; c < 3; c++)
            cp_resize_bilinear_window(acc + c * cw.ny * cw.nx, cw.y0 - p->by, cw.x0 - p->bx, cw.nx,
                                      p->Lyr, p->Lxr, 1, out3 + c * win.ny * win.nx, win.y0,
                                      win.x0, win.ny, win.nx, p->Dy, p->Dx);
    }
    free(at);
    free(acc);
    free(w);
    return rc;
}

int cp_dnet_window(const cp_dnet *net, cp_rect win, float *out3, char *err)
{
    dctx x;
    int rc = ctx_init(&x, net, &win, 1, err);
    if (!rc) rc = run_window(&x, 0, win, out3, err);
    ctx_free(&x);
    return rc;
}

/* cp_dnet_windows, with a progress line of the tile evaluations (in `unit`) unless unit is
 * NULL. */
static int windows(const cp_dnet *net, const cp_rect *wins, int64_t n, cp_dnet_emit emit,
                   void *arg, cp_dnet_stats *st, const char *unit, char *err)
{
    dctx x;
    int64_t most = 0;
    for (int64_t i = 0; i < n; i++) most = max64(most, wins[i].ny * wins[i].nx);
    int rc = ctx_init(&x, net, wins, n, err);
    float *v = rc ? NULL : malloc(sizeof(float) * (size_t)max64(1, 3 * most));
    if (!rc && !v) rc = cp_errf(err, CP_ENOMEM, "dnet: out of memory for a window");
    cp_progress pr;
    int64_t evals = !rc && unit && cp_progress_on() ? count_evals(&x) : 0;
    cp_progress_begin(&pr, "network", unit ? unit : "", evals > 0 ? evals : 0);
    x.pr = &pr;
    for (int64_t i = 0; !rc && i < n; i++) {
        rc = run_window(&x, i, wins[i], v, err);
        if (!rc) rc = emit(arg, i, v, err);
        if (rc) {
            char why[CP_ERR_LEN];
            snprintf(why, sizeof why, "%s", err);
            cp_errf(err, rc, "dnet: window %lld (%lldx%lld at (%lld, %lld)): %s", (long long)i,
                    (long long)wins[i].ny, (long long)wins[i].nx, (long long)wins[i].y0,
                    (long long)wins[i].x0, why);
        }
    }
    cp_progress_end(&pr);
    if (st) {
        st->tiles_run = x.evals;
        st->tiles_plane = x.p.g.ny * x.p.g.nx;
    }
    free(v);
    ctx_free(&x);
    return rc;
}

int cp_dnet_windows(const cp_dnet *net, const cp_rect *wins, int64_t n, cp_dnet_emit emit,
                    void *arg, cp_dnet_stats *st, char *err)
{
    return windows(net, wins, n, emit, arg, st, NULL, err);
}

/* cp_dnet_windows' sink in a distributed run: window i is block todo[i], stored as "dp". */
typedef struct block_sink {
    const cp_dplane *d;
    const cp_dnet *net;
    const char *name;
    const int64_t *todo;
    const cp_rect *wins;
} block_sink;

static int store_block(void *arg, int64_t i, const float *out3, char *err)
{
    const block_sink *k = arg;
    int rc = cp_bstore_put(k->d->store, k->name, k->todo[i], out3,
                           sizeof(float) * (size_t)(3 * k->wins[i].ny * k->wins[i].nx), err);
    if (!rc && k->net->stop && *k->net->stop)
        rc = cp_errf(err, CP_EINTR, "stopped by a signal after block %lld",
                     (long long)k->todo[i]);
    return rc;
}

/* This rank's part: the own blocks to compute (all, or those without a complete "dp" file when
 * resuming), in order through one cache, stored as they come. */
static int run_blocks(const cp_dplane *d, const cp_dnet *net, cp_dnet_stats *st, char *err)
{
    int64_t Dy, Dx, b0, b1;
    int rc = cp_dnet_size(net, &Dy, &Dx, err);
    if (rc) return rc;
    if (Dy != d->grid.Ly || Dx != d->grid.Lx)
        return cp_errf(err, CP_EPARAM, "dnet: the block grid covers %lldx%lld but the plane is "
                       "%lldx%lld at the dynamics scale", (long long)d->grid.Ly,
                       (long long)d->grid.Lx, (long long)Dy, (long long)Dx);
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    char name[64];
    cp_dname(d, "dp", name);
    int64_t *todo = malloc(sizeof(int64_t) * (size_t)max64(1, b1 - b0));
    cp_rect *wins = malloc(sizeof(cp_rect) * (size_t)max64(1, b1 - b0));
    if (!todo || !wins) {
        free(todo);
        free(wins);
        return cp_errf(err, CP_ENOMEM, "dnet: out of memory for %lld blocks", (long long)(b1 - b0));
    }
    int64_t ntodo = 0, reused = 0, damaged = 0;
    for (int64_t b = b0; b < b1; b++) {
        cp_rect r = cp_rect_grow(&d->grid, cp_grid_block(&d->grid, b), 1);
        int64_t bytes = (int64_t)sizeof(float) * 3 * r.ny * r.nx;
        if (net->resume && cp_bstore_size(d->store, name, b) == bytes) {
            char verr[CP_ERR_LEN];
            if (!cp_bstore_verify(d->store, name, b, (size_t)bytes, verr)) {
                reused++;
                continue;
            }
            /* a damaged block is data we must not use: say so and compute it again */
            damaged++;
            fprintf(stderr, "cellpose-mpi: resume: block (%lld,%lld) 'dp': checksum mismatch, "
                    "recomputed (%s)\n", (long long)(b / d->grid.nbx),
                    (long long)(b % d->grid.nbx), verr);
        }
        todo[ntodo] = b;
        wins[ntodo++] = r;
    }
    block_sink k = {d, net, name, todo, wins};
    /* every rank has a similar share: rank 0's pace estimates the job's (progress.h) */
    rc = windows(net, wins, ntodo, store_block, &k, st,
                 !net->progress ? NULL : d->nranks > 1 ? "tiles of rank 0" : "tiles", err);
    st->reused = reused;
    st->damaged = damaged;
    free(todo);
    free(wins);
    return rc;
}

int cp_dnet_run_stats(const cp_dplane *d, const cp_dnet *net, cp_dnet_stats *st, char *err)
{
    cp_dnet_stats mine = {0, 0, 0, 0};
    int rc = cp_agree(d->comm, run_blocks(d, net, &mine, err), err);
    int64_t sum[3], loc[3] = {mine.reused, mine.tiles_run, mine.damaged};
    MPI_Allreduce(loc, sum, 3, MPI_INT64_T, MPI_SUM, d->comm);
    MPI_Allreduce(&mine.tiles_plane, &st->tiles_plane, 1, MPI_INT64_T, MPI_MAX, d->comm);
    st->reused = sum[0];
    st->tiles_run = sum[1];
    st->damaged = sum[2];
    return rc;
}

int cp_dnet_run(const cp_dplane *d, const cp_dnet *net, int64_t *reused, char *err)
{
    cp_dnet_stats st;
    int rc = cp_dnet_run_stats(d, net, &st, err);
    *reused = st.reused;
    return rc;
}
