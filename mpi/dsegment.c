/* The distributed driver for one image (see dsegment.h). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "dsegment.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <sha2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agree.h"
#include "bstore.h"
#include "cells.h"
#include "commtime.h"
#include "cp_err.h"
#include "dcells.h"
#include "dfollow.h"
#include "dmasks.h"
#include "dnet.h"
#include "dnorm.h"
#include "dplane.h"
#include "dpost.h"
#include "dprot.h"
#include "dresize.h"
#include "dstack.h"
#include "dvolume.h"
#include "flows3d_input.h"
#include "h5par.h"
#include "image.h"
#include "masks_tif.h"
#include "plan.h"
#include "progress.h"
#include "segment.h"
#include "tiff_io.h"

static volatile sig_atomic_t stop_requested;

void cp_dsegment_request_stop(void) { stop_requested = 1; }

/* What one run needs everywhere. */
typedef struct run {
    MPI_Comm comm;
    int rank, nranks;
    const cp_params *p;
    const cp_plan *plan;    /* resolved once, before any phase */
    const cp_model *m;      /* NULL: saved flows */
    const char *model_path, *image, *out_path, *cmdline;
    cp_timing *tm;
    int quiet;              /* no progress lines: --quiet, ranks other than 0, a stack's planes */
    double t0, c0;          /* start of the current phase: wall and MPI seconds */
    cp_bstore store;        /* the work folder */
    int resumed;            /* its network blocks are kept from a stopped run (--resume) */
    int64_t net_blocks[2];  /* a stack's planes: network blocks computed, and taken from the
                               checkpoint */
} run;

#define say(r, ...) cp_say((r)->quiet, __VA_ARGS__)

/* Closes the current phase: wall and MPI time into ph. */
static void lap(run *r, cp_phase ph) { cp_comm_lap(r->tm, ph, &r->t0, &r->c0); }

/* 1 if any rank was asked to stop (collective). */
static int stop_agreed(const run *r)
{
    int mine = stop_requested, any;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, r->comm);
    return any;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : (int64_t)st.st_size;
}

/* ---- work directory ---------------------------------------------------------------------- */

/* Everything that decides the content of the block files, one "key=value" line each. The input
 * is known by its content (sha256: another image of the same size at the same path is another
 * input), as the model is. */
static void manifest_text(const run *r, const char *sha, char *buf, size_t len)
{
    static const char *const skip[] = {"output", "quiet", "threads", "resume", "keep_work",
                                       "save_tif", "save_overlay", "dir", NULL};
    size_t used = (size_t)snprintf(buf, len, "image=%s\nimage_bytes=%lld\nimage_sha256=%s\n"
                                   "model_sha256=%s\n", r->image, (long long)file_size(r->image),
                                   sha, r->m ? cp_model_get_info(r->m)->sha256 : "");
    for (const cp_param_def *d = cp_param_defs; d->name && used < len; d++) {
        int skipped = 0;
        for (int k = 0; skip[k]; k++) skipped |= !strcmp(skip[k], d->name);
        if (skipped) continue;
        char v[CP_PATH_LEN];
        cp_param_format(r->p, d, v, sizeof v);
        used += (size_t)snprintf(buf + used, len - used, "%s=%s\n", d->name, v);
    }
}

static int remove_all_but_dp(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    const char *base = path + f->base;
    if (f->level == 0 || flag == FTW_D || flag == FTW_DP) return 0;
    if ((!strncmp(base, "dp.", 3) || !strncmp(base, "dp3.", 4)) && !strstr(base, ".tmp"))
        return 0; /* network blocks of a plane, a stack or a volume */
    if (!strcmp(base, "manifest")) return 0;
    return remove(path);
}

/* The value of "key=" in a manifest, "" if absent. */
static void manifest_value(const char *text, const char *key, char *v, size_t len)
{
    size_t k = strlen(key);
    v[0] = 0;
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line)
        if (!strncmp(line, key, k) && line[k] == '=') {
            size_t n = strcspn(line + k + 1, "\n");
            snprintf(v, len, "%.*s", (int)(n < len ? n : len - 1), line + k + 1);
            return;
        }
}

/* The sha256 of the input files (the image, or the saved flows and their cellprob TIFF) as hex,
 * several joined by '+'. */
static int input_sha256(const run *r, char *sha, size_t len, char *err)
{
    const char *files[2] = {r->image, r->m ? "" : r->p->cellprob_in};
    char one[SHA256_DIGEST_STRING_LENGTH];
    sha[0] = 0;
    for (int i = 0; i < 2; i++) {
        if (!files[i][0]) continue;
        if (!SHA256File(files[i], one))
            return cp_errf(err, CP_EIO, "%s: cannot read it to identify the input of the "
                           "checkpoint: %s", files[i], strerror(errno));
        size_t used = strlen(sha);
        snprintf(sha + used, len - used, "%s%s", used ? "+" : "", one);
    }
    return 0;
}

/* Rank 0 sets up <output>.work: with --resume and the same manifest, it keeps the finished
 * network blocks ("dp.*") and drops everything else; otherwise it starts empty. */
static int workdir_rank0(run *r, const char *dir, int *resumed, char *err)
{
    static char want[1 << 16], have[1 << 16];
    char mpath[CP_PATH_LEN + 32], sha[2 * SHA256_DIGEST_STRING_LENGTH + 2];
    int rc = input_sha256(r, sha, sizeof sha, err);
    if (rc) return rc;
    manifest_text(r, sha, want, sizeof want);
    snprintf(mpath, sizeof mpath, "%s/manifest", dir);
    *resumed = 0;
    FILE *f = fopen(mpath, "r");
    if (f) {
        size_t n = fread(have, 1, sizeof have - 1, f);
        have[n] = 0;
        fclose(f);
    }
    if (r->p->resume && f) {
        char was[sizeof sha];
        manifest_value(have, "image_sha256", was, sizeof was);
        if (strcmp(have, want) && strcmp(was, sha))
            return cp_errf(err, CP_EPARAM, "%s: its blocks were computed from another input (%s "
                           "has sha256 %.16s..., the checkpoint's input %.16s...); remove it or "
                           "run without --resume", dir, r->image, sha, was[0] ? was : "unknown");
        if (strcmp(have, want))
            return cp_errf(err, CP_EPARAM, "%s: belongs to a run with other parameters or input; "
                           "remove it or run without --resume", dir);
        nftw(dir, remove_all_but_dp, 16, FTW_DEPTH | FTW_PHYS);
        *resumed = 1;
        return 0;
    }
    rc = cp_bstore_check_ours(dir, "manifest", err); /* never a user's file or folder */
    if (!rc) rc = cp_bstore_open(&r->store, dir, err);
    if (rc) return rc;
    cp_bstore_destroy(&r->store); /* start empty */
    if ((rc = cp_bstore_open(&r->store, dir, err))) return rc;
    f = fopen(mpath, "w");
    if (!f || fputs(want, f) < 0 || fclose(f))
        return cp_errf(err, CP_EIO, "%s: cannot write the manifest", mpath);
    return 0;
}

static int workdir_open(run *r, int *resumed, char *err)
{
    char dir[CP_PATH_LEN + 16];
    snprintf(dir, sizeof dir, "%s.work", r->out_path);
    int rc = r->rank == 0 ? workdir_rank0(r, dir, resumed, err) : 0;
    MPI_Bcast(resumed, 1, MPI_INT, 0, r->comm);
    if ((rc = cp_agree(r->comm, rc, err))) return rc; /* once: no "rank 0: rank 0:" */
    rc = cp_bstore_open(&r->store, dir, err);
    return cp_agree(r->comm, rc, err);
}

/* ---- output --------------------------------------------------------------------------------- */

static int finish_output(run *r, cp_h5out *h, cp_cell *cells, int64_t ncells, int64_t nmasks,
                         char *err)
{
    cp_provenance pv = {
        .command_line = r->cmdline, .input_file = r->image, .input_bytes = file_size(r->image),
        .model_file = r->model_path, .rescale = r->plan->rescale,
        .model_sha256 = r->m ? cp_model_get_info(r->m)->sha256 : "",
        .niter_used = r->plan->steps,
        .block_used = r->plan->B,
        .n_masks = nmasks,
    };
    int rc = cp_h5_write_cells(h, cells, ncells, r->plan->do3d, err);
    if (!rc) rc = cp_h5_write_attrs(h, r->p, &pv, err);
    if (rc) {
        cp_h5_abort(h);
        return rc;
    }
    return cp_h5_commit(h, err);
}

/* Collective writes in rounds, round i writing every rank's i-th own block (a rank past its
 * last block writes nothing): the "lab" blocks of plane d into /labels, and the "dp" blocks
 * (their own pixels) into /flows and /cellprob. */
static int write_blocks(run *r, cp_h5out *h, const cp_dplane *d, int flows, char *err)
{
    int64_t b0, b1, mine, most;
    cp_grid_range(&d->grid, r->rank, &b0, &b1);
    mine = b1 - b0;
    MPI_Allreduce(&mine, &most, 1, MPI_INT64_T, MPI_MAX, r->comm);
    int rc = 0;
    for (int64_t i = 0; !rc && i < most; i++) {
        cp_rect q = i < mine ? cp_grid_block(&d->grid, b0 + i) : (cp_rect){0, 0, 0, 0};
        int64_t n = q.ny * q.nx;
        void *v = malloc(sizeof(float) * (size_t)((flows ? 3 : 1) * (n ? n : 1)));
        int lrc = v ? 0 : cp_errf(err, CP_ENOMEM, "write: out of memory");
        if (!lrc && n) lrc = cp_dplane_load_window(d, flows ? CP_SLOT_DP : CP_SLOT_LAB, q, v, err);
        rc = cp_agree(r->comm, lrc, err);
        if (!rc && flows)
            rc = cp_h5_write_flows(h, d->z, q.y0, q.x0, q.ny, q.nx, v, (float *)v + 2 * n, err);
        else if (!rc)
            rc = cp_h5_write_labels(h, d->z, q.y0, q.x0, q.ny, q.nx, v, err);
        free(v);
    }
    return rc;
}

/* ---- a 2-D plane over blocks ------------------------------------------------------------------ */

static int stopped(run *r, const char *where, char *err)
{
    if (!stop_agreed(r)) return 0;
    say(r, "stop requested: checkpoint kept in %s (%s); run again with --resume", r->store.dir,
        where);
    return cp_errf(err, CP_EINTR, "stopped by a signal after %s; resume with --resume", where);
}

/* The network phase of plane d: its "dp" blocks, from the plan's network with the plane's
 * normalization in net. */
static int plane_network(run *r, const cp_dplane *d, cp_dnet *net, char *err)
{
    cp_dnet_stats st;
    net->resume = r->resumed;
    net->stop = &stop_requested;
    net->progress = !r->p->quiet;
    int rc = cp_dnet_run_stats(d, net, &st, err);
    r->net_blocks[0] += d->grid.nblocks - st.reused, r->net_blocks[1] += st.reused;
    lap(r, CP_PH_NET);
    if (rc == CP_EINTR) {
        say(r, "stop requested: finished network blocks kept in %s; run again with --resume",
            r->store.dir);
        return cp_errf(err, CP_EINTR, "stopped by a signal in the network phase");
    }
    if (rc) return rc;
    char bad[96] = "";
    if (st.damaged)
        snprintf(bad, sizeof bad, " (%lld failed their checksum and were recomputed)",
                 (long long)st.damaged);
    say(r, "network: %lld blocks done, %lld reused from the checkpoint%s; %lld tile evaluations "
        "for %lld tiles", (long long)(d->grid.nblocks - st.reused), (long long)st.reused, bad,
        (long long)st.tiles_run, (long long)st.tiles_plane);
    return stopped(r, "the network phase", err);
}

/* The per-mask steps from the raw masks ("m0") of plane d to the final labels ("lab") of plane
 * o: o is d, or, with --no_resample and a rescale other than 1, the image-scale plane to which
 * the masks after the flow QC are resized (the single process's order: QC at the network scale,
 * then the resize, then holes, min_size and protrusions at the image scale). */
static int masks_to_labels(run *r, const cp_dplane *d, const cp_dplane *o, uint32_t raw_max,
                           int64_t *nlabels, char *err)
{
    const cp_params *p = r->p;
    const int64_t min_size = r->plan->min_size;
    int rc;
    if (o == d) {
        rc = cp_dpost_run(d, p->flow_threshold, min_size, nlabels, err);
    } else {
        rc = cp_dpost_qc(d, p->flow_threshold, err);
        if (!rc) rc = cp_dresize_nearest(d, CP_SLOT_QC, o, CP_SLOT_M0, err);
        if (!rc) rc = cp_dpost_run(o, 0, min_size, nlabels, err);
        if (!rc && p->protrusions) /* protrusions read the masks before the QC, and the flows */
            rc = cp_dresize_nearest(d, CP_SLOT_M0, o, CP_SLOT_M0, err);
        if (!rc && p->protrusions) rc = cp_dresize_nearest(d, CP_SLOT_DP, o, CP_SLOT_DP, err);
    }
    if (!rc && p->protrusions)
        rc = cp_dprot_run(o, (float)p->cellprob_threshold, p->protrusion_max_len, raw_max,
                          nlabels, err);
    return rc;
}

/* The planes of a run's labels: d at the dynamics scale, and o, where the labels are: d, or its
 * image-scale twin (--no_resample with a rescale), whose blocks have a folder of their own. */
typedef struct planes {
    cp_dplane d, image_plane;
    const cp_dplane *o;
    cp_bstore image_scale;
} planes;

/* Plane z of the plan on comm, at the dynamics scale. */
static void planes_init(run *r, planes *pp, int64_t z)
{
    cp_dplane_init(&pp->d, r->comm, r->plan->Ly, r->plan->Lx, r->plan->B, &r->store, z);
    pp->o = &pp->d;
}

/* From the "dp" blocks of pp->d to the final labels ("lab") of pp->o: particle rounds, seeds,
 * per-mask steps. *nlabels as cp_dpost_run's. */
static int plane_labels(run *r, planes *pp, int64_t *nlabels, char *err)
{
    const cp_params *p = r->p;
    const cp_plan *pl = r->plan;
    const cp_dplane *d = &pp->d;
    int64_t rounds;
    int rc = cp_dfollow_run(d, pl->steps, !p->no_interp, (float)p->cellprob_threshold, &rounds,
                            err);
    lap(r, CP_PH_FOLLOW);
    if (rc) return rc;
    say(r, "flow following: %d steps, %lld rounds of particle exchange", pl->steps,
        (long long)rounds);
    if ((rc = stopped(r, "flow following", err))) return rc;
    rc = cp_dmasks_run(d, p->max_size_fraction, nlabels, err);
    lap(r, CP_PH_MASKS);
    const uint32_t raw_max = (uint32_t)*nlabels; /* the largest "m0" id */
    if (!rc && (pl->Ly0 != pl->Ly || pl->Lx0 != pl->Lx)) {
        char dir[sizeof pp->image_scale.dir + 16];
        snprintf(dir, sizeof dir, "%s/image_scale", r->store.dir);
        rc = cp_agree(r->comm, cp_bstore_open(&pp->image_scale, dir, err), err);
        cp_dplane_init(&pp->image_plane, r->comm, pl->Ly0, pl->Lx0, pl->B, &pp->image_scale,
                       d->z);
        pp->o = &pp->image_plane;
    }
    if (!rc) rc = masks_to_labels(r, d, pp->o, raw_max, nlabels, err);
    lap(r, CP_PH_POST);
    if (!rc) say(r, "masks: %lld", (long long)*nlabels);
    return rc;
}

/* The committed output of a plane from its final labels (pp->o) and flows (pp->d): collective
 * writes, the cells, the attributes. */
static int plane_output(run *r, const planes *pp, int64_t nlabels, char *err)
{
    const cp_params *p = r->p;
    const cp_plan *pl = r->plan;
    cp_h5out *h = NULL;
    cp_h5_backend be = cp_h5par_backend(&r->comm);
    int rc = cp_h5_create(r->out_path, &be, 1, pl->Ly0, pl->Lx0, 0, p->save_flows ? pl->Ly : 0,
                          p->save_flows ? pl->Lx : 0, &h, err);
    if (!rc) rc = write_blocks(r, h, pp->o, 0, err);
    if (!rc && p->save_flows) rc = write_blocks(r, h, &pp->d, 1, err);
    cp_cell *cells = NULL;
    int64_t ncells = 0;
    if (!rc) rc = cp_dcells_plane(pp->o, nlabels, &cells, &ncells, err);
    int64_t nmasks = ncells; /* ids may have gaps (swallowed masks, --protrusions) */
    if (!rc) MPI_Bcast(&nmasks, 1, MPI_INT64_T, 0, r->comm);
    if (!rc) rc = finish_output(r, h, cells, ncells, nmasks, err);
    else if (h) cp_h5_abort(h);
    free(cells);
    lap(r, CP_PH_WRITE);
    if (!rc) say(r, "wrote %s (%lld masks)", r->out_path, (long long)nmasks);
    return rc;
}

/* A plane's "dp" blocks from its saved flows (--flows: a --save_flows .h5, or the TIFF pair of
 * dP pages (2, Z, Y, X) and cellprob pages (Z, Y, X)), each block read as a window. */
static int flows_to_blocks(run *r, const cp_dplane *d, char *err)
{
    const cp_params *p = r->p;
    const int64_t nz = r->plan->nz;
    cp_tiff *td = NULL, *tc = NULL;
    cp_tiff_info id, ic;
    int rc = 0;
    if (p->cellprob_in[0]) {
        rc = cp_tiff_open(p->flows, &td, &id, err);
        if (!rc) rc = cp_tiff_open(p->cellprob_in, &tc, &ic, err);
        if (!rc && (id.spp != 1 || ic.spp != 1 || id.npages != 2 * nz || id.ny != ic.ny ||
                    id.nx != ic.nx))
            rc = cp_errf(err, CP_EFORMAT, "%s: expected 2 pages per page of %s with the same "
                         "size (dP as (2,Z,Y,X), cellprob as (Z,Y,X))", p->flows, p->cellprob_in);
    }
    int64_t b0, b1;
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    char name[64];
    for (int64_t b = b0; !rc && b < b1; b++) {
        cp_rect g = cp_rect_grow(&d->grid, cp_grid_block(&d->grid, b), 1);
        int64_t n = g.ny * g.nx;
        float *v = malloc(sizeof *v * (size_t)(3 * n));
        if (!v) {
            rc = cp_errf(err, CP_ENOMEM, "%s: out of memory", p->flows);
            break;
        }
        if (td) {
            for (int c = 0; !rc && c < 2; c++)
                rc = cp_tiff_read_f32(td, c * nz + d->z, g.y0, g.x0, g.ny, g.nx, v + c * n, err);
            if (!rc) rc = cp_tiff_read_f32(tc, d->z, g.y0, g.x0, g.ny, g.nx, v + 2 * n, err);
        } else {
            rc = cp_h5_read_flows_window(p->flows, d->z, g.y0, g.x0, g.ny, g.nx, v, v + 2 * n,
                                         err);
        }
        if (!rc) rc = cp_bstore_put(&r->store, cp_dname(d, CP_SLOT_DP, name), b, v,
                                    sizeof *v * (size_t)(3 * n), err);
        free(v);
    }
    if (td) cp_tiff_close(td);
    if (tc) cp_tiff_close(tc);
    return cp_agree(d->comm, rc, err);
}

/* A single plane (the input's plane 0) on all ranks: global percentiles, the network on the
 * owner blocks (or the saved flows), then plane_labels and the output. */
static int plane_run(run *r, cp_image *im, char *err)
{
    const cp_params *p = r->p;
    const cp_plan *pl = r->plan;
    planes pp;
    planes_init(r, &pp, 0);
    say(r, "%s: %lldx%lld%s on %d rank(s), blocks of %lld (%lld blocks)%s", r->image,
        (long long)pl->Ly, (long long)pl->Lx, im ? "" : " flows", r->nranks, (long long)pl->B,
        (long long)pp.d.grid.nblocks, r->resumed ? ", resuming" : "");
    int rc = 0;
    if (im) {
        cp_dnet net = pl->net;
        lap(r, CP_PH_READ);
        if (!p->no_norm) {
            rc = cp_dnorm_compute(r->comm, im, 0, 1, p->norm_percentile_lo,
                                  p->norm_percentile_hi, net.norm, err);
            for (int c = 0; c < 2; c++) net.inv[c] = p->invert && net.norm[c].good;
        }
        lap(r, CP_PH_PREP);
        if (!rc) rc = stopped(r, "normalization", err);
        if (!rc) rc = plane_network(r, &pp.d, &net, err);
    } else {
        rc = flows_to_blocks(r, &pp.d, err);
        lap(r, CP_PH_READ);
    }
    int64_t nlabels = 0;
    if (!rc) rc = plane_labels(r, &pp, &nlabels, err);
    return rc ? rc : plane_output(r, &pp, nlabels, err);
}

/* ---- a stack: contiguous planes per rank, in the work folder (dstack.h) ---------------------- */

/* The end of a stack or a volume whose engine created the output h (rc: its status): the cells
 * and attributes, the commit, the last progress line. */
static int finish_run(run *r, int rc, cp_h5out *h, cp_cell *cells, int64_t ncells,
                      int64_t nmasks, char *err)
{
    if (!rc) rc = finish_output(r, h, cells, ncells, nmasks, err);
    free(cells);
    lap(r, CP_PH_WRITE);
    if (!rc) say(r, "wrote %s (%lld masks)", r->out_path, (long long)nmasks);
    return rc;
}

/* One plane of a stack through plane_network (or the saved flows) and plane_labels on this rank
 * alone (cp_dstack_plane): its labels and flows read back whole, then its block arrays other
 * than "dp" (kept for --resume) removed. */
static int stack_plane(void *ctx, int64_t z, const cp_norm *norm, const int inv[2], uint32_t *lab,
                       float *flows, char *err)
{
    run *stack = ctx, r = *stack;
    r.comm = MPI_COMM_SELF, r.rank = 0, r.nranks = 1, r.quiet = 1; /* the stack reports */
    r.t0 = MPI_Wtime(), r.c0 = cp_comm_seconds();
    planes pp;
    planes_init(&r, &pp, z);
    int rc;
    if (r.m) {
        cp_dnet net = r.plan->net;
        net.z = z;
        for (int c = 0; c < 2; c++) {
            if (norm) net.norm[c] = norm[c];
            net.inv[c] = inv[c];
        }
        rc = plane_network(&r, &pp.d, &net, err);
    } else {
        rc = flows_to_blocks(&r, &pp.d, err);
    }
    int64_t nlabels;
    if (!rc) rc = plane_labels(&r, &pp, &nlabels, err);
    const cp_grid *go = &pp.o->grid, *gd = &pp.d.grid;
    if (!rc) rc = cp_dplane_load_window(pp.o, CP_SLOT_LAB, (cp_rect){0, 0, go->Ly, go->Lx}, lab,
                                        err);
    if (!rc && flows)
        rc = cp_dplane_load_window(&pp.d, CP_SLOT_DP, (cp_rect){0, 0, gd->Ly, gd->Lx}, flows,
                                   err);
    for (int k = 0; k < 2; k++) stack->net_blocks[k] = r.net_blocks[k];
    char name[64];
    for (cp_slot s = CP_SLOT_DP; s <= CP_SLOT_LAB; s++) { /* the slots phases hand over */
        for (int64_t b = 0; s != CP_SLOT_DP && b < gd->nblocks; b++)
            cp_bstore_remove(pp.d.store, cp_dname(&pp.d, s, name), b);
        for (int64_t b = 0; pp.o != &pp.d && b < go->nblocks; b++)
            cp_bstore_remove(pp.o->store, cp_dname(pp.o, s, name), b);
    }
    return rc;
}

/* A stack of planes (im NULL: the saved flows of r->p) into the output. */
static int stack_run(run *r, cp_image *im, char *err)
{
    cp_dstack s = {.comm = r->comm, .p = r->p, .plan = r->plan, .im = im, .plane = stack_plane,
                   .ctx = r, .input = r->image, .store = &r->store, .out_path = r->out_path,
                   .tm = r->tm};
    cp_h5out *h;
    cp_cell *cells;
    int64_t ncells, nmasks;
    int rc = cp_dstack_run(&s, &h, &cells, &ncells, &nmasks, err);
    r->t0 = MPI_Wtime(), r->c0 = cp_comm_seconds(); /* the stack timed its phases */
    MPI_Allreduce(MPI_IN_PLACE, r->net_blocks, 2, MPI_INT64_T, MPI_SUM, r->comm);
    if (r->m)
        say(r, "network: %lld blocks of the planes done, %lld reused from the checkpoint",
            (long long)r->net_blocks[0], (long long)r->net_blocks[1]);
    if (rc == CP_EINTR)
        say(r, "stop requested: the network blocks of the planes are kept in %s; run again with "
            "--resume", r->store.dir);
    return finish_run(r, rc, h, cells, ncells, nmasks, err);
}

/* ---- a volume over 3-D blocks (dvolume.h) ------------------------------------------------ */

static int volume_run(run *r, cp_image *im, char *err)
{
    cp_dvolume v = {.comm = r->comm, .p = r->p, .plan = r->plan, .m = r->m, .im = im,
                    .store = &r->store, .resume = r->resumed, .stop = &stop_requested,
                    .out_path = r->out_path, .tm = r->tm};
    cp_h5out *h;
    cp_cell *cells;
    int64_t ncells, nmasks;
    int rc = cp_dvolume_run(&v, &h, &cells, &ncells, &nmasks, err);
    r->t0 = MPI_Wtime(), r->c0 = cp_comm_seconds(); /* the volume timed its phases */
    if (rc == CP_EINTR)
        say(r, "stop requested: finished network blocks kept in %s; run again with --resume",
            r->store.dir);
    return finish_run(r, rc, h, cells, ncells, nmasks, err);
}

/* The plane, the stack or the volume of the plan, in the work folder (removed after success
 * unless --keep_work). */
static int run_plan(run *r, cp_image *im, char *err)
{
    int rc = workdir_open(r, &r->resumed, err);
    lap(r, CP_PH_READ);
    if (!rc && r->plan->do3d) rc = volume_run(r, im, err);
    else if (!rc) rc = r->plan->nz > 1 ? stack_run(r, im, err) : plane_run(r, im, err);
    if (!rc && !r->p->keep_work && r->rank == 0) cp_bstore_destroy(&r->store);
    return rc;
}

static void run_init(run *r, MPI_Comm comm, const cp_params *p)
{
    r->comm = comm;
    r->p = p;
    MPI_Comm_rank(comm, &r->rank);
    MPI_Comm_size(comm, &r->nranks);
    r->quiet = p->quiet || r->rank != 0;
    r->t0 = MPI_Wtime(), r->c0 = cp_comm_seconds();
}

/* After a run's output is committed (rc 0): with --save_tif, rank 0 writes its masks TIFF from
 * /labels a plane at a time (one rule for planes, stacks and volumes). Returns the agreed
 * status. */
static int save_tif(const run *r, int rc, char *err)
{
    if (rc || !r->p->save_tif) return rc;
    char tif[CP_PATH_LEN + 64];
    cp_masks_tif_path(r->out_path, r->image, tif, sizeof tif);
    if (r->rank == 0) rc = cp_masks_tif_save(r->out_path, tif, err);
    rc = cp_agree(r->comm, rc, err);
    if (!rc) say(r, "wrote %s", tif);
    return rc;
}

int cp_dsegment_image(MPI_Comm comm, const cp_params *p, const cp_model *m,
                      const char *model_path, const char *image, const char *out_path,
                      const char *cmdline, cp_timing *tm, char *err)
{
    cp_plan plan;
    run r = {.m = m, .plan = &plan, .model_path = model_path, .image = image,
             .out_path = out_path, .cmdline = cmdline, .tm = tm};
    run_init(&r, comm, p);
    if (p->do_3D && r.nranks == 1 && !p->block) /* a volume that one process holds whole */
        return save_tif(&r, cp_agree(comm, cp_segment_volume(p, m, model_path, image, out_path,
                                                             cmdline, tm, err), err), err);
    cp_image im;
    int rc = cp_image_open(&im, image, (int)p->z_axis, (int)p->channel_axis,
                           p->stitch_threshold > 0 || p->do_3D, (int)p->chan, (int)p->chan2, err);
    if (!rc && cp_model_get_info(m)->nchan != 2)
        rc = cp_errf(err, CP_EPARAM, "%s: the model has %d input channels; cellpose-mpi feeds "
                     "the 2 channels of --chan/--chan2", model_path, cp_model_get_info(m)->nchan);
    if (!rc && p->do_3D) rc = cp_volume_check(image, &im.layout, err);
    if (!rc) rc = cp_plan_image(&plan, p, m, &im, r.nranks, err);
    if (!(rc = cp_agree(comm, rc, err))) rc = run_plan(&r, &im, err);
    cp_image_close(&im);
    return save_tif(&r, rc, err);
}

/* ---- masks from saved flows ------------------------------------------------------------------ */

/* Sizes of a saved-flows input (TIFF pair or .h5). */
static int flows_size(const cp_params *p, int64_t *nz, int64_t *Ly, int64_t *Lx, char *err)
{
    if (!p->cellprob_in[0]) return cp_h5_read_flows(p->flows, nz, Ly, Lx, NULL, NULL, err);
    cp_tiff *t;
    cp_tiff_info in;
    int rc = cp_tiff_open(p->cellprob_in, &t, &in, err);
    if (rc) return rc;
    cp_tiff_close(t);
    *nz = in.npages, *Ly = in.ny, *Lx = in.nx;
    return 0;
}

int cp_dsegment_flows(MPI_Comm comm, const cp_params *p, const char *out_path,
                      const char *cmdline, cp_timing *tm, char *err)
{
    cp_plan plan;
    run r = {.plan = &plan, .model_path = "", .image = p->flows, .out_path = out_path,
             .cmdline = cmdline, .tm = tm};
    run_init(&r, comm, p);
    if (p->do_3D && r.nranks == 1 && !p->block) /* flows that one process holds whole */
        return save_tif(&r, cp_agree(comm, cp_segment_flows3(p, out_path, cmdline, tm, err), err),
                        err);
    int64_t nz = 1, Ly = 0, Lx = 0, n3[3];
    int rc = p->do_3D ? cp_flows3_size(p, n3, err) : flows_size(p, &nz, &Ly, &Lx, err);
    if (!rc && p->do_3D) nz = n3[0], Ly = n3[1], Lx = n3[2];
    rc = cp_agree(comm, rc, err);
    if (rc) return rc;
    cp_plan_flows(&plan, p, nz, Ly, Lx, r.nranks);
    return save_tif(&r, run_plan(&r, NULL, err), err);
}
