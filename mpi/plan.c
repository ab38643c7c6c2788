/* A run's plan (see plan.h). */
#include "plan.h"

#include "run_net.h"

/* The default block side: the largest power-of-two fraction of DEFAULT_BLOCK (not below 256)
 * that gives each of nranks ranks a block of a plane. */
static int64_t auto_block(int64_t Ly, int64_t Lx, int nranks)
{
    int64_t B = DEFAULT_BLOCK;
    while (B > 256 && ((Ly + B - 1) / B) * ((Lx + B - 1) / B) < nranks) B /= 2;
    return B;
}

/* The default side of the cubic blocks of a volume: the block of the memory budget (plan.h)
 * halved (not below 32) until each of nranks ranks has a block. */
static int64_t auto_block3(int64_t Lz, int64_t Ly, int64_t Lx, int nranks)
{
    int64_t B = 32;
    while (2 * B <= 1024 && BLOCK3_BYTES * (2 * B) * (2 * B) * (2 * B) <= BLOCK3_BUDGET) B *= 2;
    while (B > 32 && ((Lz + B - 1) / B) * ((Ly + B - 1) / B) * ((Lx + B - 1) / B) < nranks)
        B /= 2;
    return B;
}

/* What the image and the flows plans share: the stack mode and the blocks. */
static void plan_common(cp_plan *pl, const cp_params *p, int nranks)
{
    pl->do3d = p->do_3D;
    pl->stitch = pl->nz > 1 && p->stitch_threshold > 0;
    pl->min_size = pl->stitch ? -1 : p->min_size;
    if (p->block) pl->B = p->block;
    else if (pl->do3d) pl->B = auto_block3(pl->nz, pl->Ly0, pl->Lx0, nranks);
    else pl->B = auto_block(pl->Ly, pl->Lx, pl->nz > 1 ? 1 : nranks);
}

int cp_plan_image(cp_plan *pl, const cp_params *p, const cp_model *m, cp_image *im, int nranks,
                  char *err)
{
    const cp_model_info *mi = cp_model_get_info(m);
    const cp_layout *L = &im->layout;
    *pl = (cp_plan){.nz = L->nz, .Ly0 = L->ny, .Lx0 = L->nx,
                    .rescale = cp_rescale(p->diameter, mi->diam_mean, mi->diam_labels)};
    pl->steps = (int32_t)cp_niter_steps(p->niter, pl->rescale, !p->no_resample);
    pl->net = (cp_dnet){
        .model = m, .im = im, .no_norm = p->no_norm, .rescale = pl->rescale,
        .resample = !p->no_resample, .bsize = p->bsize, .tile_overlap = p->tile_overlap,
        .augment = p->augment, .batch_size = p->batch_size,
    };
    int rc = cp_dnet_size(&pl->net, &pl->Ly, &pl->Lx, err);
    plan_common(pl, p, nranks);
    return rc;
}

void cp_plan_flows(cp_plan *pl, const cp_params *p, int64_t nz, int64_t Ly, int64_t Lx,
                   int nranks)
{
    *pl = (cp_plan){.nz = nz, .Ly0 = Ly, .Lx0 = Lx, .Ly = Ly, .Lx = Lx, .rescale = 1.0,
                    .steps = (int32_t)(p->niter > 0 ? p->niter : 200)};
    plan_common(pl, p, nranks);
}
