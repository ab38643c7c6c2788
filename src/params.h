/* Every user parameter in one struct, described once in a table (name, type, range, help) that the
 * command line, the job files, validation and the HDF5 provenance attributes all read. */
#ifndef CP_PARAMS_H
#define CP_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define CP_PATH_LEN 4096

typedef struct cp_params {
    /* input and output */
    char image_path[CP_PATH_LEN]; /* one image */
    char dir[CP_PATH_LEN];        /* or every TIFF of a folder */
    char output[CP_PATH_LEN];     /* default: <input stem>_seg.h5 next to the input */
    char pretrained_model[CP_PATH_LEN];
    char flows[CP_PATH_LEN];       /* masks from saved flows: FILE.h5, or dP.tif with cellprob_in */
    char cellprob_in[CP_PATH_LEN];
    int save_tif, save_flows;
    int save_overlay;             /* <image>_cp_overlay.png: outlines over the image */
    /* channels and normalization */
    int64_t chan, chan2;
    int64_t channel_axis, z_axis; /* -1: decided as Cellpose does */
    int invert, no_norm;
    double norm_percentile_lo, norm_percentile_hi;
    /* network */
    double diameter;              /* 0: the model's diam_labels */
    int no_resample, augment;
    int64_t bsize;
    double tile_overlap;
    int64_t batch_size;
    /* dynamics and masks */
    int64_t niter;                /* 0: automatic (§4.1) */
    int no_interp;
    double flow_threshold, cellprob_threshold;
    int64_t min_size;
    double max_size_fraction;
    double stitch_threshold;
    /* 3-D segmentation (Cellpose's do_3D, CELLPOSE_ALGORITHM.md §8) */
    int do_3D;
    double anisotropy;            /* Z spacing / XY spacing (1.0) */
    double flow3D_smooth;         /* Gaussian sigma on dP before the dynamics (0: off) */
    /* execution */
    int64_t threads;              /* 0: OMP_NUM_THREADS, else all cores */
    int quiet;
    /* protrusion recovery (off by default: output stays exactly Cellpose's) */
    int protrusions;
    int64_t protrusion_max_len;   /* pixels: how far an unassigned pixel may be attached */
    /* job file: the run described in a file, flags override it */
    char job[CP_PATH_LEN];
    /* distribution (issue 3) */
    int64_t block;                /* owner-block side; 0: whole planes (one rank) or automatic */
    int resume, keep_work;        /* reuse finished blocks of <output>.work; keep it at the end */
} cp_params;

typedef enum cp_param_type { CP_PT_INT, CP_PT_REAL, CP_PT_FLAG, CP_PT_STR } cp_param_type;

typedef struct cp_param_def {
    const char *name;     /* flag name without "--", job-file key, HDF5 attribute name */
    cp_param_type type;
    size_t offset;        /* into cp_params */
    double lo, hi;        /* valid range (inclusive) for numbers */
    const char *help;
} cp_param_def;

/* The table, terminated by an entry with name NULL. */
extern const cp_param_def cp_param_defs[];
const cp_param_def *cp_param_find(const char *name);

void cp_params_default(cp_params *p);
/* Sets one parameter from its text value (the flag's argument; NULL for a flag), checking type
 * and range. err: "--bsize: 100 is not a multiple of 16" style messages. */
int cp_param_set(cp_params *p, const cp_param_def *d, const char *value, char *err);
/* Cross-parameter checks after all values are set (range checks are done by cp_param_set). */
int cp_params_validate(const cp_params *p, char *err);
/* The value of a parameter as text (for messages and provenance). */
void cp_param_format(const cp_params *p, const cp_param_def *d, char *buf, size_t len);

#endif
