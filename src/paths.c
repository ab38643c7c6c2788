/* Outputs against inputs (see paths.h). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "paths.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cp_err.h"
#include "overlay.h"
#include "segment.h"

/* path with its folder part resolved by realpath (the last component kept as written, so that a
 * name that does not exist yet is placed where it would be created); path itself if the folder
 * cannot be resolved. */
static void resolve(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');
    char folder[PATH_MAX + 1], real[PATH_MAX + 1];
    if (!slash) snprintf(folder, sizeof folder, ".");
    else if (slash == path) snprintf(folder, sizeof folder, "/");
    else snprintf(folder, sizeof folder, "%.*s", (int)(slash - path), path);
    if (!realpath(folder, real)) {
        snprintf(out, len, "%s", path);
        return;
    }
    snprintf(out, len, "%s/%s", strcmp(real, "/") ? real : "", slash ? slash + 1 : path);
}

int cp_path_same(const char *a, const char *b)
{
    struct stat sa, sb;
    int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
    if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (ea != eb) return 0;
    char ra[2 * PATH_MAX + 2], rb[2 * PATH_MAX + 2];
    resolve(a, ra, sizeof ra);
    resolve(b, rb, sizeof rb);
    return strcmp(ra, rb) == 0;
}

typedef struct named {
    char path[CP_PATH_LEN + 64];
    const char *what;
} named;

/* An input: its name, what it is, and its file identity when it exists. */
typedef struct input {
    const char *path, *what;
    int exists;
    dev_t dev;
    ino_t ino;
} input;

static int by_id(const void *a, const void *b)
{
    const input *x = a, *y = b;
    if (x->exists != y->exists) return x->exists ? -1 : 1; /* existing ones first */
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* The names one image's run may write (at most MAX_OUTPUTS). */
#define MAX_OUTPUTS 7
static int outputs_of(const cp_params *p, const char *image, const char *out, named o[MAX_OUTPUTS])
{
    int n = 0;
    snprintf(o[n].path, sizeof o[n].path, "%s", out), o[n++].what = "the output";
    snprintf(o[n].path, sizeof o[n].path, "%s.partial", out);
    o[n++].what = "the output's temporary file";
    snprintf(o[n].path, sizeof o[n].path, "%s.work", out), o[n++].what = "the output's work folder";
    if (p->save_tif) {
        char tif[CP_PATH_LEN + 32];
        cp_masks_tif_path(out, image, tif, sizeof tif);
        snprintf(o[n].path, sizeof o[n].path, "%s", tif), o[n++].what = "the --save_tif masks";
        snprintf(o[n].path, sizeof o[n].path, "%s.partial", tif);
        o[n++].what = "the --save_tif temporary file";
    }
    if (p->save_overlay) {
        char png[CP_PATH_LEN + 32];
        cp_overlay_path(out, image ? image : p->flows, png, sizeof png);
        snprintf(o[n].path, sizeof o[n].path, "%s", png), o[n++].what = "the --save_overlay picture";
        snprintf(o[n].path, sizeof o[n].path, "%s.partial", png);
        o[n++].what = "the --save_overlay temporary file";
    }
    return n;
}

/* The input that output o is, or NULL. in[0..nex) exist and are sorted by identity; the others
 * do not exist and are compared by resolved path. */
static const input *find_input(const named *o, const input *in, int nex, int nin)
{
    struct stat st;
    if (stat(o->path, &st) == 0) {
        input key = {.exists = 1, .dev = st.st_dev, .ino = st.st_ino};
        return bsearch(&key, in, (size_t)nex, sizeof *in, by_id);
    }
    for (int k = nex; k < nin; k++)
        if (cp_path_same(o->path, in[k].path)) return &in[k];
    return NULL;
}

int cp_paths_check(const cp_params *p, const char *model_path, char *const *images, int n,
                   char *err)
{
    const char *one = p->flows[0] ? p->flows : p->image_path;
    int nimg = images ? n : 1, nin = 0;
    input *in = calloc((size_t)nimg + 5, sizeof *in);
    if (!in) return cp_errf(err, CP_ENOMEM, "out of memory for the names of %d inputs", nimg);
    const char *fixed[5] = {model_path, p->job, p->flows, p->cellprob_in, p->image_path};
    const char *what[5] = {"the model", "the job file", "--flows", "--cellprob_in", "the image"};
    for (int k = 0; k < 5; k++)
        if (fixed[k] && fixed[k][0]) in[nin].path = fixed[k], in[nin++].what = what[k];
    for (int i = 0; images && i < n; i++) in[nin].path = images[i], in[nin++].what = "an image of --dir";
    int nex = 0;
    for (int k = 0; k < nin; k++) {
        struct stat st;
        if ((in[k].exists = stat(in[k].path, &st) == 0)) in[k].dev = st.st_dev, in[k].ino = st.st_ino, nex++;
    }
    qsort(in, (size_t)nin, sizeof *in, by_id);
    int rc = 0;
    for (int i = 0; !rc && i < nimg; i++) {
        const char *image = images ? images[i] : one;
        char out[CP_PATH_LEN + 16];
        if (p->output[0] && !images) snprintf(out, sizeof out, "%s", p->output);
        else cp_default_output(image, out, sizeof out);
        named o[MAX_OUTPUTS];
        int no = outputs_of(p, image, out, o);
        for (int k = 0; !rc && k < no; k++) {
            const input *hit = find_input(&o[k], in, nex, nin);
            if (hit)
                rc = cp_errf(err, CP_EPARAM, "%s (%s) is the same file as %s (%s): refusing "
                             "to overwrite an input; nothing was written", o[k].path, o[k].what,
                             hit->path, hit->what);
        }
    }
    free(in);
    return rc;
}
