/* The parameter table and its checks (see params.h). */
#include "params.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"

#define OFF(f) offsetof(cp_params, f)
#define BIG 9.0e15

const cp_param_def cp_param_defs[] = {
    {"image_path", CP_PT_STR, OFF(image_path), 0, 0, "input TIFF image"},
    {"dir", CP_PT_STR, OFF(dir), 0, 0, "segment every TIFF of this folder (one .h5 each)"},
    {"output", CP_PT_STR, OFF(output), 0, 0, "output HDF5 file (default <image>_seg.h5)"},
    {"pretrained_model", CP_PT_STR, OFF(pretrained_model), 0, 0, "model file path or name"},
    {"flows", CP_PT_STR, OFF(flows), 0, 0,
     "masks from saved flows: an earlier --save_flows .h5, or dP.tif with --cellprob_in "
     "(3-D flows with --do_3D)"},
    {"cellprob_in", CP_PT_STR, OFF(cellprob_in), 0, 0, "cellprob TIFF for --flows dP.tif"},
    {"save_tif", CP_PT_FLAG, OFF(save_tif), 0, 1, "also write <image>_cp_masks.tif (uint32)"},
    {"save_flows", CP_PT_FLAG, OFF(save_flows), 0, 1, "store /flows and /cellprob in the .h5"},
    {"save_overlay", CP_PT_FLAG, OFF(save_overlay), 0, 1,
     "also write <image>_cp_overlay.png: mask outlines over the image (not Cellpose's --save_png)"},
    {"chan", CP_PT_INT, OFF(chan), 0, 4, "channel to segment (0 = gray: mean of all)"},
    {"chan2", CP_PT_INT, OFF(chan2), 0, 4, "optional nuclear channel (0 = none)"},
    {"channel_axis", CP_PT_INT, OFF(channel_axis), -1, 5, "axis of the channels (-1: automatic)"},
    {"z_axis", CP_PT_INT, OFF(z_axis), -1, 5, "axis of the planes (-1: automatic)"},
    {"invert", CP_PT_FLAG, OFF(invert), 0, 1, "invert the normalized image"},
    {"no_norm", CP_PT_FLAG, OFF(no_norm), 0, 1, "do not normalize"},
    {"norm_percentile_lo", CP_PT_REAL, OFF(norm_percentile_lo), 0, 100, "lower percentile (1)"},
    {"norm_percentile_hi", CP_PT_REAL, OFF(norm_percentile_hi), 0, 100, "upper percentile (99)"},
    {"diameter", CP_PT_REAL, OFF(diameter), 0, 1e6, "cell diameter in pixels (0: model's)"},
    {"no_resample", CP_PT_FLAG, OFF(no_resample), 0, 1, "run the dynamics at network scale"},
    {"augment", CP_PT_FLAG, OFF(augment), 0, 1, "test-time augmentation (flipped tiles)"},
    {"bsize", CP_PT_INT, OFF(bsize), 16, 4096, "tile size, a multiple of 16 (224)"},
    {"tile_overlap", CP_PT_REAL, OFF(tile_overlap), 0.05, 0.5, "tile overlap fraction (0.1)"},
    {"batch_size", CP_PT_INT, OFF(batch_size), 1, 1024, "tiles per network call (8)"},
    {"niter", CP_PT_INT, OFF(niter), 0, 4294967295.0, "dynamics steps (0: automatic)"},
    {"no_interp", CP_PT_FLAG, OFF(no_interp), 0, 1, "follow flows without interpolation"},
    {"flow_threshold", CP_PT_REAL, OFF(flow_threshold), 0, BIG, "flow-error QC (0: off) (0.4)"},
    {"cellprob_threshold", CP_PT_REAL, OFF(cellprob_threshold), -BIG, BIG, "foreground logit (0)"},
    {"min_size", CP_PT_INT, OFF(min_size), -1, BIG, "smallest mask in pixels (<= 0: off) (15)"},
    {"max_size_fraction", CP_PT_REAL, OFF(max_size_fraction), 0, 1, "largest mask (0.4)"},
    {"stitch_threshold", CP_PT_REAL, OFF(stitch_threshold), 0, 1, "stitch planes by IoU (0: off)"},
    {"do_3D", CP_PT_FLAG, OFF(do_3D), 0, 1,
     "segment a volume in 3-D (Cellpose's do_3D; on N ranks in cubic blocks)"},
    {"anisotropy", CP_PT_REAL, OFF(anisotropy), 0, 1e6,
     "--do_3D: Z spacing / XY spacing, > 0 (1.0)"},
    {"flow3D_smooth", CP_PT_REAL, OFF(flow3D_smooth), 0, 1e3,
     "--do_3D: Gaussian sigma of the flows before the dynamics (0: off)"},
    {"threads", CP_PT_INT, OFF(threads), 0, 4096, "OpenMP threads (0: OMP_NUM_THREADS or all)"},
    {"quiet", CP_PT_FLAG, OFF(quiet), 0, 1, "no progress output"},
    {"protrusions", CP_PT_FLAG, OFF(protrusions), 0, 1,
     "attach unassigned foreground (thin processes) to their cells (not Cellpose)"},
    {"protrusion_max_len", CP_PT_INT, OFF(protrusion_max_len), 1, 1e6,
     "longest attachment path in pixels for --protrusions (400)"},
    {"job", CP_PT_STR, OFF(job), 0, 0, "job file describing the run (flags override it)"},
    {"block", CP_PT_INT, OFF(block), 0, 1 << 20,
     "owner-block side in pixels for distributed runs, in voxels of cubic blocks with --do_3D "
     "(0: automatic)"},
    {"resume", CP_PT_FLAG, OFF(resume), 0, 1,
     "reuse the finished blocks of <output>.work; --dir: skip images already done"},
    {"keep_work", CP_PT_FLAG, OFF(keep_work), 0, 1, "keep <output>.work after success"},
    {NULL, 0, 0, 0, 0, NULL},
};

const cp_param_def *cp_param_find(const char *name)
{
    for (const cp_param_def *d = cp_param_defs; d->name; d++)
        if (!strcmp(d->name, name)) return d;
    return NULL;
}

void cp_params_default(cp_params *p)
{
    memset(p, 0, sizeof *p);
    p->channel_axis = p->z_axis = -1;
    p->norm_percentile_lo = 1.0;
    p->norm_percentile_hi = 99.0;
    p->diameter = 30.0;
    p->bsize = 224;
    p->tile_overlap = 0.1;
    p->batch_size = 8;
    p->flow_threshold = 0.4;
    p->min_size = 15;
    p->max_size_fraction = 0.4;
    p->protrusion_max_len = 400;
    p->anisotropy = 1.0;
}

static int parse_number(const cp_param_def *d, const char *v, double *out, char *err)
{
    if (!v || !*v) return cp_errf(err, CP_EPARAM, "--%s: needs a value", d->name);
    /* decimal only ([+-]digits[.digits][e[+-]digits]): strtod alone also takes hexadecimal
     * ("0x10" = 16), "inf", "nan" and leading blanks */
    if (strspn(v, "0123456789+-.eE") != strlen(v) || !strpbrk(v, "0123456789"))
        return cp_errf(err, CP_EPARAM, "--%s: '%s' is not a number (decimal digits only)",
                       d->name, v);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (*end || errno || !isfinite(x))
        return cp_errf(err, CP_EPARAM, "--%s: '%s' is not a number (decimal digits only)",
                       d->name, v);
    if (d->type == CP_PT_INT && x != floor(x))
        return cp_errf(err, CP_EPARAM, "--%s: '%s' is not an integer", d->name, v);
    if (x < d->lo || x > d->hi)
        return cp_errf(err, CP_EPARAM, "--%s: %s is outside [%g, %g]", d->name, v, d->lo, d->hi);
    *out = x;
    return 0;
}

int cp_param_set(cp_params *p, const cp_param_def *d, const char *value, char *err)
{
    char *field = (char *)p + d->offset;
    double x;
    int rc;
    switch (d->type) {
    case CP_PT_FLAG:
        *(int *)field = 1;
        return 0;
    case CP_PT_STR:
        if (!value || !*value) return cp_errf(err, CP_EPARAM, "--%s: needs a value", d->name);
        if (strlen(value) >= CP_PATH_LEN)
            return cp_errf(err, CP_EPARAM, "--%s: value longer than %d bytes", d->name,
                           CP_PATH_LEN - 1);
        strcpy(field, value);
        return 0;
    case CP_PT_INT:
        if ((rc = parse_number(d, value, &x, err))) return rc;
        *(int64_t *)field = (int64_t)x;
        return 0;
    case CP_PT_REAL:
        if ((rc = parse_number(d, value, &x, err))) return rc;
        *(double *)field = x;
        return 0;
    }
    return cp_errf(err, CP_EPARAM, "--%s: unknown parameter type", d->name);
}

/* The flag combinations --do_3D refuses (§8.1: Cellpose's 3-D mode has no bsize, no stitching, no
 * flow QC; protrusions are defined on planes only). flow_threshold is accepted and unused. */
static int validate_3d(const cp_params *p, char *err)
{
    if (!(p->anisotropy > 0))
        return cp_errf(err, CP_EPARAM, "--anisotropy: %g must be > 0", p->anisotropy);
    if (!p->do_3D) return 0;
    if (p->bsize != 224)
        return cp_errf(err, CP_EPARAM, "--bsize %lld: not with --do_3D (Cellpose's 3-D mode "
                       "always tiles at 224)", (long long)p->bsize);
    if (p->stitch_threshold > 0)
        return cp_errf(err, CP_EPARAM, "--stitch_threshold: not with --do_3D (stitching planes is "
                       "the 2.5-D mode; give one or the other)");
    if (p->protrusions)
        return cp_errf(err, CP_EPARAM, "--protrusions: not with --do_3D (not defined in 3-D yet)");
    return 0;
}

int cp_params_validate(const cp_params *p, char *err)
{
    int rc = validate_3d(p, err);
    if (rc) return rc;
    if (p->bsize % 16)
        return cp_errf(err, CP_EPARAM, "--bsize: %lld is not a multiple of 16",
                       (long long)p->bsize);
    if (p->invert && p->no_norm)
        return cp_errf(err, CP_EPARAM,
                       "--invert: cannot invert without normalization (--no_norm is given)");
    if (p->invert && (p->norm_percentile_lo != 1.0 || p->norm_percentile_hi != 99.0))
        return cp_errf(err, CP_EPARAM, "--invert: not with --norm_percentile (Cellpose silently "
                                       "ignores it; invert the image instead)");
    if (p->norm_percentile_lo >= p->norm_percentile_hi)
        return cp_errf(err, CP_EPARAM, "--norm_percentile: lower %g must be below upper %g",
                       p->norm_percentile_lo, p->norm_percentile_hi);
    if (p->chan2 && !p->chan)
        return cp_errf(err, CP_EPARAM, "--chan2 %lld: needs --chan > 0 (Cellpose ignores it)",
                       (long long)p->chan2);
    if (p->channel_axis >= 0 && p->channel_axis == p->z_axis)
        return cp_errf(err, CP_EPARAM, "--channel_axis and --z_axis are both %lld",
                       (long long)p->z_axis);
    int inputs = !!p->image_path[0] + !!p->dir[0];
    if (inputs != 1 && !p->flows[0])
        return cp_errf(err, CP_EPARAM, "give exactly one of --image_path, --dir or --flows");
    if (p->flows[0] && inputs)
        return cp_errf(err, CP_EPARAM, "--flows replaces the image: do not give --image_path/--dir");
    if (p->cellprob_in[0] && !p->flows[0])
        return cp_errf(err, CP_EPARAM, "--cellprob_in goes with --flows dP.tif");
    if (!p->flows[0] && !p->pretrained_model[0])
        return cp_errf(err, CP_EPARAM, "--pretrained_model: a model file or name is required");
    if (p->block && p->block < 32)
        return cp_errf(err, CP_EPARAM, "--block: %lld is below the minimum of 32 pixels",
                       (long long)p->block);
    if (p->dir[0] && p->output[0])
        return cp_errf(err, CP_EPARAM, "--output: not with --dir (one <image>_seg.h5 per image)");
    return 0;
}

void cp_param_format(const cp_params *p, const cp_param_def *d, char *buf, size_t len)
{
    const char *field = (const char *)p + d->offset;
    switch (d->type) {
    case CP_PT_FLAG: snprintf(buf, len, "%d", *(const int *)field); break;
    case CP_PT_STR: snprintf(buf, len, "%s", field); break;
    case CP_PT_INT: snprintf(buf, len, "%lld", (long long)*(const int64_t *)field); break;
    case CP_PT_REAL: snprintf(buf, len, "%.17g", *(const double *)field); break;
    }
}
