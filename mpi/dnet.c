/* The network phase over owner blocks (see dnet.h). The layout is cp_run_net's: image (Ly, Lx)
 * -> network scale (Lyr, Lxr) -> padded plane (by, bx before the image) -> global tile grid ->
 * blended canvas -> crop -> resize back to the dynamics scale (Dy, Dx). Every step is a function
 * of global coordinates, so a window computes exactly the same bits as the whole plane:
 *   output window (dynamics scale) -> network-scale span it reads (cp_resize_src_span)
 *   -> tiles touching that span, blended in increasing index (cp_tiles_accumulate_part)
 *   -> for the tiles evaluated at this window's turn: the padded-plane rectangle they cover -> the
 *      image window its resize reads -> read, normalize, invert, resize, pad -> extract each tile
 *      -> CPnet -> each window's part of the tile (cp_tiles_crop), kept or sent to its rank.
 * Each tile of the windows of all ranks is evaluated once (DESIGN.md §2.2): the plan below is the
 * same on every rank, so who evaluates what, and which messages come in which order, need no
 * negotiation. */
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

/* The plan of a sequence of windows spread over ranks, computed alike by every rank (DESIGN.md
 * §2.2): the windows of all ranks, rank after rank, each rank's in its own order (rank r's are
 * start[r] .. start[r+1]; the t-th of each rank is taken in round t); the tiles each window needs
 * (window i: positions off[i] .. off[i+1) of tiles[], increasing; pwin[pos]: the window of a
 * position); the positions needing tile k (towin[tw_off[k] .. tw_off[k+1]), increasing); each
 * tile's owner, who evaluates it once; and the evaluations in order: order[q] at the turn of
 * window owin[q], the first window (by round, then rank) needing it. The owner sends a window of
 * another rank the tile's part over that window's canvas (cp_tiles_crop); MPI keeps the messages
 * of a pair of ranks in order, so rank r receives from rank o in the order of the queue
 * rq[rq_off[o] .. rq_off[o+1]) (positions of r's windows), cursor rcur[o]. */
typedef struct dctx {
    const cp_dnet *net;
    plan p;
    MPI_Comm comm;   /* MPI_COMM_NULL with one rank: no messages */
    int rank, nranks;
    int64_t nwin, nround, *start, *off, *tiles, *pwin, *tw_off, *towin, norder, *order, *owin;
    int *owner, *wrank;
    const cp_rect *wins;
    int64_t *rq_off, *rq, *rcur;
    float **part;    /* per position of this rank's windows: the tile's part, until blended */
    char *got;       /* per position: its part arrived (or its sender gave up) */
    float *scratch;  /* a largest part: where parts no one will blend are received */
    MPI_Request *req; /* parts in flight to other ranks, buffers sbuf */
    float **sbuf;
    int64_t nreq, capreq;
    int quit;        /* an error, a stop or a sender giving up: no more evaluations, only the
                        messages the others expect (empty, tagged TAG_NONE) */
    int64_t evals;   /* tiles run through the network */
    cp_progress *pr; /* tile evaluations done, or NULL */
} dctx;

enum { TAG_PART = 1, TAG_NONE = 2 };

static void ctx_free(dctx *x)
{
    cp_tiles_free(&x->p.g);
    int64_t m = x->off ? x->off[x->nwin] : 0;
    for (int64_t q = 0; x->part && q < m; q++) free(x->part[q]);
    for (int64_t j = 0; j < x->nreq; j++) free(x->sbuf[j]);
    void *arr[] = {x->start, x->off, x->tiles, x->pwin, x->tw_off, x->towin, x->order, x->owin,
                   x->owner, x->wrank, x->rq_off, x->rq, x->rcur, x->part, x->got, x->scratch,
                   x->req, x->sbuf};
    for (size_t j = 0; j < sizeof arr / sizeof *arr; j++) free(arr[j]);
    memset(x, 0, sizeof *x);
}

/* The owners: each tile the windows need goes to one of the ranks needing it, the one with the
 * fewest tiles so far: first every tile needed by one rank only, then the shared ones in
 * increasing index (ties to the lowest rank). The positions needing a tile are increasing, so
 * its ranks come in increasing order. load: nranks zeros. */
static void plan_owners(dctx *x, int64_t *load)
{
    int64_t nt = x->p.g.ny * x->p.g.nx;
    for (int shared = 0; shared < 2; shared++)
        for (int64_t k = 0; k < nt; k++) {
            int64_t e0 = x->tw_off[k], e1 = x->tw_off[k + 1];
            if (e0 == e1) {
                x->owner[k] = 0; /* needed by no window: never evaluated */
                continue;
            }
            int first = x->wrank[x->pwin[x->towin[e0]]], last = x->wrank[x->pwin[x->towin[e1 - 1]]];
            if ((first != last) != shared) continue;
            int best = first;
            for (int64_t e = e0; e < e1; e++) {
                int r = x->wrank[x->pwin[x->towin[e]]];
                if (load[r] < load[best]) best = r;
            }
            x->owner[k] = best;
            load[best]++;
        }
}

/* Rank r's window of round t, -1 if it has none. */
static int64_t round_window(const dctx *x, int r, int64_t t)
{
    return x->start[r] + t < x->start[r + 1] ? x->start[r] + t : -1;
}

/* The parts' routes: towin (positions by tile), the owners, the order of evaluations and the
 * receive queues of this rank. done: ntiles bytes of zeros; load: nranks zeros. */
static void plan_routes(dctx *x, char *done, int64_t *load)
{
    int64_t nt = x->p.g.ny * x->p.g.nx, m = x->off[x->nwin];
    for (int64_t i = 0; i < x->nwin; i++)
        for (int64_t q = x->off[i]; q < x->off[i + 1]; q++) x->pwin[q] = i;
    for (int64_t q = 0; q < m; q++) x->tw_off[x->tiles[q] + 1]++;
    for (int64_t k = 0; k < nt; k++) x->tw_off[k + 1] += x->tw_off[k];
    for (int64_t q = 0; q < m; q++) x->towin[x->tw_off[x->tiles[q]]++] = q;
    for (int64_t k = nt; k > 0; k--) x->tw_off[k] = x->tw_off[k - 1];
    x->tw_off[0] = 0;
    plan_owners(x, load);
    for (int64_t t = 0; t < x->nround; t++)
        for (int r = 0; r < x->nranks; r++) {
            int64_t i = round_window(x, r, t);
            for (int64_t q = i < 0 ? 0 : x->off[i]; i >= 0 && q < x->off[i + 1]; q++)
                if (!done[x->tiles[q]]) {
                    done[x->tiles[q]] = 1;
                    x->order[x->norder] = x->tiles[q];
                    x->owin[x->norder++] = i;
                }
        }
    for (int pass = 0; pass < 2; pass++) { /* count, then fill */
        memset(x->rcur, 0, sizeof(int64_t) * (size_t)x->nranks);
        for (int64_t q = 0; q < x->norder; q++) {
            int64_t k = x->order[q];
            int o = x->owner[k];
            for (int64_t e = x->tw_off[k]; o != x->rank && e < x->tw_off[k + 1]; e++)
                if (x->wrank[x->pwin[x->towin[e]]] == x->rank) {
                    if (pass) x->rq[x->rq_off[o] + x->rcur[o]] = x->towin[e];
                    x->rcur[o]++;
                }
        }
        for (int r = 0; !pass && r < x->nranks; r++) x->rq_off[r + 1] = x->rq_off[r] + x->rcur[r];
    }
    memset(x->rcur, 0, sizeof(int64_t) * (size_t)x->nranks);
}

/* Plans the plane and windows wins[0..nwin) (inside the dynamics plane) of ranks 0..nranks-1,
 * rank r's being start[r] .. start[r+1] (start: nranks + 1 entries, copied). */
static int ctx_init(dctx *x, const cp_dnet *net, MPI_Comm comm, int rank, int nranks,
                    const cp_rect *wins, const int64_t *start, char *err)
{
    memset(x, 0, sizeof *x);
    x->net = net;
    x->comm = comm;
    x->rank = rank;
    x->nranks = nranks;
    x->wins = wins;
    x->nwin = start[nranks];
    int64_t nwin = x->nwin;
    int rc = plan_init(net, &x->p, err);
    for (int64_t i = 0; !rc && i < x->nwin; i++) {
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
    int64_t nt = g->ny * g->nx, nw = max64(1, x->nwin);
    x->start = malloc(sizeof(int64_t) * (size_t)(nranks + 1));
    x->off = malloc(sizeof(int64_t) * (size_t)(nw + 1));
    x->wrank = malloc(sizeof(int) * (size_t)nw);
    if (!x->start || !x->off || !x->wrank) goto oom;
    memcpy(x->start, start, sizeof(int64_t) * (size_t)(nranks + 1));
    x->off[0] = 0;
    for (int r = 0; r < nranks; r++) {
        x->nround = max64(x->nround, start[r + 1] - start[r]);
        for (int64_t i = start[r]; i < start[r + 1]; i++) {
            cp_rect c = canvas_rect(&x->p, wins[i]);
            x->off[i + 1] = x->off[i] + cp_tiles_touching(g, c.y0, c.x0, c.ny, c.nx, NULL);
            x->wrank[i] = r;
        }
    }
    int64_t m = max64(1, x->off[x->nwin]);
    x->tiles = malloc(sizeof(int64_t) * (size_t)m);
    x->pwin = malloc(sizeof(int64_t) * (size_t)m);
    x->towin = malloc(sizeof(int64_t) * (size_t)m);
    x->rq = malloc(sizeof(int64_t) * (size_t)m);
    x->part = calloc((size_t)m, sizeof *x->part);
    x->got = calloc((size_t)m, 1);
    x->tw_off = calloc((size_t)(nt + 1), sizeof(int64_t));
    x->order = malloc(sizeof(int64_t) * (size_t)nt);
    x->owin = malloc(sizeof(int64_t) * (size_t)nt);
    x->owner = malloc(sizeof(int) * (size_t)nt);
    x->rq_off = calloc((size_t)(nranks + 1), sizeof(int64_t));
    x->rcur = calloc((size_t)nranks, sizeof(int64_t));
    x->scratch = malloc(sizeof(float) * (size_t)(x->p.nout * g->ty * g->tx));
    char *done = calloc((size_t)nt, 1);
    int64_t *load = calloc((size_t)nranks, sizeof *load);
    if (!load || !x->tiles || !x->pwin || !x->towin || !x->rq || !x->part || !x->got ||
        !x->tw_off || !x->order || !x->owin || !x->owner || !x->rq_off || !x->rcur ||
        !x->scratch || !done) {
        free(done);
        free(load);
        goto oom;
    }
    for (int64_t i = 0; i < x->nwin; i++) {
        cp_rect c = canvas_rect(&x->p, wins[i]);
        cp_tiles_touching(g, c.y0, c.x0, c.ny, c.nx, x->tiles + x->off[i]);
    }
    plan_routes(x, done, load);
    free(done);
    free(load);
    return 0;
oom:
    ctx_free(x);
    return cp_errf(err, CP_ENOMEM, "dnet: out of memory for the tile plan of %lld windows",
                   (long long)nwin);
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

/* Part sizes: the floats of position pos's part, its canvas window in *c. */
static int64_t part_size(const dctx *x, int64_t pos, cp_rect *c)
{
    int64_t y0, y1, x0, x1;
    *c = canvas_rect(&x->p, x->wins[x->pwin[pos]]);
    cp_tiles_clip(&x->p.g, x->tiles[pos], c->y0, c->x0, c->ny, c->nx, &y0, &y1, &x0, &x1);
    return x->p.nout * (y1 - y0) * (x1 - x0);
}

/* Sends that completed give their buffers back. */
static void sends_reap(dctx *x)
{
    int64_t n = 0;
    for (int64_t j = 0; j < x->nreq; j++) {
        int done = 0;
        MPI_Test(&x->req[j], &done, MPI_STATUS_IGNORE);
        if (done) {
            free(x->sbuf[j]);
            continue;
        }
        x->req[n] = x->req[j];
        x->sbuf[n++] = x->sbuf[j];
    }
    x->nreq = n;
}

/* Hands tile k's parts to the windows needing it: this rank's are kept, the others' sent (out
 * NULL: the rank has given up; the others get empty TAG_NONE messages in their place). */
static int deliver(dctx *x, int64_t k, const float *out, char *err)
{
    int rc = 0;
    for (int64_t e = x->tw_off[k]; e < x->tw_off[k + 1]; e++) {
        int64_t pos = x->towin[e];
        int to = x->wrank[x->pwin[pos]];
        cp_rect c;
        int64_t n = part_size(x, pos, &c);
        float *v = out ? malloc(sizeof(float) * (size_t)n) : NULL;
        if (out && !v && !rc) rc = cp_errf(err, CP_ENOMEM, "dnet: out of memory for a tile part");
        if (v) cp_tiles_crop(&x->p.g, k, out, x->p.nout, c.y0, c.x0, c.ny, c.nx, v);
        if (to == x->rank) {
            x->part[pos] = v;
            x->got[pos] = 1;
            continue;
        }
        if (x->nreq == x->capreq) {
            int64_t cap = max64(16, 2 * x->capreq);
            MPI_Request *r = realloc(x->req, sizeof *r * (size_t)cap);
            if (r) x->req = r;
            float **b = r ? realloc(x->sbuf, sizeof *b * (size_t)cap) : NULL;
            if (b) x->sbuf = b, x->capreq = cap;
        }
        if (x->nreq == x->capreq) { /* no room to keep a request: send it blocking */
            if (!rc) rc = cp_errf(err, CP_ENOMEM, "dnet: out of memory for the sends");
            MPI_Send(NULL, 0, MPI_FLOAT, to, TAG_NONE, x->comm);
            free(v);
            continue;
        }
        MPI_Isend(v, v ? (int)n : 0, MPI_FLOAT, to, v ? TAG_PART : TAG_NONE, x->comm,
                  &x->req[x->nreq]);
        x->sbuf[x->nreq++] = v;
    }
    return rc;
}

/* Evaluates tiles ks[0..n) through the network and delivers their parts: the input is built
 * once over the padded-plane rectangle the tiles cover, then batched. */
static int compute_tiles(dctx *x, const int64_t *ks, int64_t n, char *err)
{
    const cp_tile_grid *g = &x->p.g;
    int64_t y0 = g->Ly, y1 = 0, x0 = g->Lx, x1 = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t ys = g->ystart[ks[j] / g->nx], xs = g->xstart[ks[j] % g->nx];
        y0 = min64(y0, ys), y1 = max64(y1, min64(ys + g->ty, g->Ly));
        x0 = min64(x0, xs), x1 = max64(x1, min64(xs + g->tx, g->Lx));
    }
    cp_rect r = {y0, x0, y1 - y0, x1 - x0};
    int nout = x->p.nout;
    int64_t tsz = g->ty * g->tx, batch = min64(x->net->batch_size, n);
    float *img = malloc(sizeof(float) * (size_t)(2 * r.ny * r.nx));
    float *in = malloc(sizeof(float) * (size_t)(batch * 2 * tsz));
    float *out = malloc(sizeof(float) * (size_t)(batch * nout * tsz));
    int rc = (img && in && out) ? padded_input(x, r, img, err)
                                : cp_errf(err, CP_ENOMEM, "dnet: out of memory for %lld tiles",
                                          (long long)n);
    int64_t j0 = 0;
    for (; !rc && j0 < n; j0 += batch) {
        int64_t nb = min64(batch, n - j0);
        for (int64_t b = 0; b < nb; b++)
            cp_tiles_extract(g, ks[j0 + b], img, r.y0, r.x0, r.ny, r.nx, 2, in + b * 2 * tsz);
        rc = cp_net_forward(x->net->model, in, (int)nb, (int)g->ty, (int)g->tx, out, NULL, err);
        if (rc) break;
        x->evals += nb;
        cp_progress_add(x->pr, nb);
        for (int64_t b = 0; !rc && b < nb; b++) {
            float *o = out + b * nout * tsz;
            if (g->augment) cp_tiles_unflip(g, ks[j0 + b], o, nout);
            rc = deliver(x, ks[j0 + b], o, err);
        }
        if (rc) j0 += nb;
    }
    for (; rc && j0 < n; j0++) deliver(x, ks[j0], NULL, err); /* the others still expect them */
    free(img);
    free(in);
    free(out);
    return rc;
}

/* The evaluations order[q0..q1) at window owin[q0]'s turn: this rank's own (none after quit:
 * their parts are announced as given up). */
static int evaluate(dctx *x, int64_t q0, int64_t q1, int64_t *ks, char *err)
{
    int64_t n = 0;
    for (int64_t q = q0; q < q1; q++)
        if (x->owner[x->order[q]] == x->rank) ks[n++] = x->order[q];
    int rc = 0;
    if (x->quit)
        for (int64_t j = 0; j < n; j++) deliver(x, ks[j], NULL, err);
    else if (n)
        rc = compute_tiles(x, ks, n, err);
    if (x->nranks > 1) sends_reap(x);
    return rc;
}

/* Receives the next part from rank o in its queue (a part no window will blend, after quit,
 * lands in scratch and is dropped). */
static void receive_next(dctx *x, int o, char *err, int *rc)
{
    int64_t pos = x->rq[x->rq_off[o] + x->rcur[o]++];
    cp_rect c;
    int64_t n = part_size(x, pos, &c);
    float *v = x->quit ? NULL : malloc(sizeof(float) * (size_t)n);
    if (!x->quit && !v && !*rc) {
        *rc = cp_errf(err, CP_ENOMEM, "dnet: out of memory for a tile part");
        x->quit = 1;
    }
    MPI_Status st;
    MPI_Recv(v ? v : x->scratch, (int)n, MPI_FLOAT, o, MPI_ANY_TAG, x->comm, &st);
    if (st.MPI_TAG == TAG_NONE) x->quit = 1;
    if (x->quit) {
        free(v);
        v = NULL;
    }
    x->part[pos] = v;
    x->got[pos] = 1;
}

/* Window i of the sequence (one of this rank's) into out3 (3, win.ny, win.nx): its parts from
 * the other ranks received, then all blended in increasing tile index. Returns 1 when done,
 * 0 after quit (parts dropped, nothing written), or an error. */
static int run_window(dctx *x, int64_t i, float *out3, char *err)
{
    const plan *p = &x->p;
    cp_rect win = x->wins[i], cw = canvas_rect(p, win);
    int nout = p->nout, rc = 0;
    for (int64_t q = x->off[i]; q < x->off[i + 1]; q++)
        while (!x->got[q]) receive_next(x, x->owner[x->tiles[q]], err, &rc);
    float *acc = x->quit ? NULL : calloc((size_t)(nout * cw.ny * cw.nx), sizeof *acc);
    double *w = x->quit ? NULL : calloc((size_t)(cw.ny * cw.nx), sizeof *w);
    if (!x->quit && (!acc || !w))
        rc = cp_errf(err, CP_ENOMEM, "dnet: out of memory for a %lldx%lld window",
                     (long long)cw.ny, (long long)cw.nx);
    int done = !rc && !x->quit;
    for (int64_t q = x->off[i]; q < x->off[i + 1]; q++) {
        if (done)
            cp_tiles_accumulate_part(&p->g, x->tiles[q], x->part[q], nout, acc, w, cw.y0, cw.x0,
                                     cw.ny, cw.nx);
        free(x->part[q]);
        x->part[q] = NULL;
    }
    if (done) {
        cp_tiles_finish(acc, w, nout, cw.ny * cw.nx);
        for (int c = 0; c < 3; c++)
            cp_resize_bilinear_window(acc + c * cw.ny * cw.nx, cw.y0 - p->by, cw.x0 - p->bx, cw.nx,
                                      p->Lyr, p->Lxr, 1, out3 + c * win.ny * win.nx, win.y0,
                                      win.x0, win.ny, win.nx, p->Dy, p->Dx);
    }
    free(acc);
    free(w);
    return rc ? rc : done;
}

/* Runs the plan on this rank: round by round, the evaluations of every rank's window of the
 * round (this rank doing its own), then this rank's window of the round, handed to emit with its
 * index among this rank's windows (in v: 3 x its area; ks: room for a window's tiles). Every
 * rank goes through all rounds, also after an error or a stop (then evaluating nothing, only
 * keeping to the messages the others expect), so that no rank waits for ever. A rank waits only
 * for parts evaluated in its round or earlier ones, which every rank reaches without waiting for
 * later rounds: no deadlock. rc: the status so far (err its message); returns the first error. */
static int run_plan(dctx *x, cp_dnet_emit emit, void *arg, float *v, int64_t *ks, int rc,
                    char *err)
{
    int64_t q = 0, mine = x->start[x->rank], nmine = x->start[x->rank + 1] - mine;
    char e2[CP_ERR_LEN];
    x->quit = rc != 0;
    for (int64_t t = 0; t < x->nround; t++) {
        for (int r = 0; r < x->nranks; r++) {
            int64_t i = round_window(x, r, t), q1 = q;
            while (i >= 0 && q1 < x->norder && x->owin[q1] == i) q1++;
            int rc2 = q1 > q ? evaluate(x, q, q1, ks, rc ? e2 : err) : 0;
            if (!rc) rc = rc2;
            x->quit |= rc != 0;
            q = q1;
        }
        if (t >= nmine) continue;
        int got = run_window(x, mine + t, v, rc ? e2 : err);
        int rc2 = got == 1 ? emit(arg, t, v, err) : got;
        if (rc2 < 0 && !rc) {
            rc = rc2;
            snprintf(e2, sizeof e2, "%s", err);
            cp_rect w = x->wins[mine + t];
            cp_errf(err, rc, "dnet: window %lld (%lldx%lld at (%lld, %lld)): %s", (long long)t,
                    (long long)w.ny, (long long)w.nx, (long long)w.y0, (long long)w.x0, e2);
        }
        x->quit |= rc != 0;
    }
    x->quit = 1; /* what is still on its way to this rank is dropped */
    for (int o = 0; o < x->nranks; o++)
        while (x->rq_off[o] + x->rcur[o] < x->rq_off[o + 1]) receive_next(x, o, e2, &rc);
    if (x->nreq) MPI_Waitall((int)x->nreq, x->req, MPI_STATUSES_IGNORE);
    for (int64_t j = 0; j < x->nreq; j++) free(x->sbuf[j]);
    x->nreq = 0;
    return rc;
}

/* Windows wins[0..start[nranks]) of ranks 0..nranks-1 (see ctx_init), this rank's handed to
 * emit in order, with a progress line of this rank's tile evaluations (in `unit`) unless unit is
 * NULL. st (may be NULL) gets this rank's counts. Collective over comm with several ranks. */
static int windows(const cp_dnet *net, MPI_Comm comm, int rank, int nranks, const cp_rect *wins,
                   const int64_t *start, cp_dnet_emit emit, void *arg, cp_dnet_stats *st,
                   const char *unit, char *err)
{
    dctx x;
    int rc = ctx_init(&x, net, comm, rank, nranks, wins, start, err);
    if (nranks > 1) rc = cp_agree(comm, rc, err); /* the plan is the same everywhere, or none */
    if (rc) {
        ctx_free(&x);
        return rc;
    }
    int64_t most = 0, ntiles = 0, evals = 0;
    for (int64_t i = start[rank]; i < start[rank + 1]; i++)
        most = max64(most, wins[i].ny * wins[i].nx);
    for (int64_t i = 0; i < x.nwin; i++) ntiles = max64(ntiles, x.off[i + 1] - x.off[i]);
    float *v = malloc(sizeof(float) * (size_t)max64(1, 3 * most));
    int64_t *ks = malloc(sizeof(int64_t) * (size_t)max64(1, ntiles));
    if (!v || !ks) rc = cp_errf(err, CP_ENOMEM, "dnet: out of memory for a window");
    for (int64_t q = 0; q < x.norder; q++) evals += x.owner[x.order[q]] == rank;
    cp_progress pr;
    cp_progress_begin(&pr, "network", unit ? unit : "", unit && cp_progress_on() ? evals : 0);
    x.pr = &pr;
    rc = run_plan(&x, emit, arg, v, ks, rc, err);
    cp_progress_end(&pr);
    if (st) {
        st->tiles_run = x.evals;
        st->tiles_plane = x.p.g.ny * x.p.g.nx;
    }
    free(v);
    free(ks);
    ctx_free(&x);
    return rc;
}

/* cp_dnet_window's sink: the one window into out3 (3, ny, nx). */
typedef struct copy_sink {
    float *out3;
    int64_t n;
} copy_sink;

static int copy_window(void *arg, int64_t i, const float *out3, char *err)
{
    (void)i, (void)err;
    const copy_sink *k = arg;
    memcpy(k->out3, out3, sizeof(float) * (size_t)k->n);
    return 0;
}

int cp_dnet_window(const cp_dnet *net, cp_rect win, float *out3, char *err)
{
    copy_sink k = {out3, 3 * win.ny * win.nx};
    return cp_dnet_windows(net, &win, 1, copy_window, &k, NULL, err);
}

int cp_dnet_windows(const cp_dnet *net, const cp_rect *wins, int64_t n, cp_dnet_emit emit,
                    void *arg, cp_dnet_stats *st, char *err)
{
    int64_t start[2] = {0, n};
    return windows(net, MPI_COMM_NULL, 0, 1, wins, start, emit, arg, st, NULL, err);
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

/* The blocks to compute (all, or those without a complete "dp" file when resuming), every
 * rank's in the order it computes them, gathered on all ranks (todo: rank r's are start[r] ..
 * start[r+1]); the tiles evaluated once over them; this rank's blocks stored as they come. */
static int run_blocks(const cp_dplane *d, const cp_dnet *net, cp_dnet_stats *st, char *err)
{
    int64_t Dy, Dx, b0, b1, nb = d->grid.nblocks;
    int rc = cp_dnet_size(net, &Dy, &Dx, err);
    if (rc) return rc;
    if (Dy != d->grid.Ly || Dx != d->grid.Lx)
        return cp_errf(err, CP_EPARAM, "dnet: the block grid covers %lldx%lld but the plane is "
                       "%lldx%lld at the dynamics scale", (long long)d->grid.Ly,
                       (long long)d->grid.Lx, (long long)Dy, (long long)Dx);
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    char name[64];
    cp_dname(d, CP_SLOT_DP, name);
    int64_t *todo = malloc(sizeof(int64_t) * (size_t)(2 * nb));
    int64_t *start = malloc(sizeof(int64_t) * (size_t)(d->nranks + 1));
    int *cnt = malloc(sizeof(int) * (size_t)(2 * d->nranks));
    cp_rect *wins = malloc(sizeof(cp_rect) * (size_t)nb);
    if (!todo || !start || !cnt || !wins)
        rc = cp_errf(err, CP_ENOMEM, "dnet: out of memory for %lld blocks", (long long)nb);
    int64_t ntodo = 0, reused = 0, damaged = 0, *mine = todo ? todo + nb : NULL;
    /* odd ranks go through their blocks backwards: neighbouring ranks reach the blocks they
     * share tiles with in the same rounds, so neither waits long for the other's parts */
    for (int64_t j = 0; !rc && j < b1 - b0; j++) {
        int64_t b = d->rank % 2 ? b1 - 1 - j : b0 + j;
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
        mine[ntodo++] = b;
    }
    st->reused = reused;
    st->damaged = damaged;
    MPI_Comm comm = MPI_COMM_NULL;
    if (!(rc = cp_agree(d->comm, rc, err))) {
        int n = (int)ntodo, *displ = cnt + d->nranks;
        MPI_Allgather(&n, 1, MPI_INT, cnt, 1, MPI_INT, d->comm);
        start[0] = 0;
        for (int r = 0; r < d->nranks; r++) {
            displ[r] = (int)start[r];
            start[r + 1] = start[r] + cnt[r];
        }
        MPI_Allgatherv(mine, n, MPI_INT64_T, todo, cnt, displ, MPI_INT64_T, d->comm);
        for (int64_t i = 0; i < start[d->nranks]; i++)
            wins[i] = cp_rect_grow(&d->grid, cp_grid_block(&d->grid, todo[i]), 1);
        /* a communicator of its own: the parts' messages meet no other */
        MPI_Comm_dup(d->comm, &comm);
        block_sink k = {d, net, name, todo + start[d->rank], wins + start[d->rank]};
        rc = windows(net, comm, d->rank, d->nranks, wins, start, store_block, &k, st,
                     !net->progress ? NULL : d->nranks > 1 ? "tiles of rank 0" : "tiles", err);
        MPI_Comm_free(&comm);
    }
    free(todo);
    free(start);
    free(cnt);
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
