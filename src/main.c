/* cellpose-mpi, single-process entry point: parse the command line, load the model once, segment
 * one image, every TIFF of a folder, or a set of saved flows. Exit status: 0 success, 1 a
 * segmentation failed (the others were still done), 2 bad command line. */
#include <dirent.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "cp_err.h"
#include "cpnet.h"
#include "segment.h"

/* OpenBLAS picks its kernels when the library loads, before main, and Debian's 0.3.21 does not
 * know recent CPUs: it falls back to SSE3 kernels, 3.4x slower here. So unless the user chose
 * (OPENBLAS_CORETYPE set), we choose from the CPU's features and start again once with it set.
 * A fixed kernel also keeps the network's bits the same on every node (DESIGN.md §2.10). */
static void pin_openblas_kernel(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE")) return;
    __builtin_cpu_init();
    const char *core = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                       : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                         : NULL;
    if (!core) return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv); /* returns only on failure: go on with the default kernels */
}

static void join_args(int argc, char **argv, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < argc && used + 1 < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? " " : "", argv[i]);
}

static int is_tiff_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff"));
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The TIFF files of dir, sorted by name (malloc'ed list of malloc'ed paths). */
static int list_tiffs(const char *dir, char ***out, int *n, char *err)
{
    DIR *d = opendir(dir);
    if (!d) return cp_errf(err, CP_EIO, "%s: cannot open the folder", dir);
    char **v = NULL;
    int k = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_tiff_name(e->d_name)) continue;
        char **grown = realloc(v, sizeof *v * (size_t)(k + 1));
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!grown || !(grown[k] = malloc(len))) {
            free(grown ? grown : v);
            closedir(d);
            return cp_errf(err, CP_ENOMEM, "%s: out of memory", dir);
        }
        v = grown;
        snprintf(v[k++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (!k) return cp_errf(err, CP_EIO, "%s: no .tif/.tiff files", dir);
    qsort(v, (size_t)k, sizeof *v, by_name);
    *out = v, *n = k;
    return 0;
}

/* Segments the images of the run; returns how many failed (each reported). */
static int run_images(const cp_params *p, const cp_model *m, const char *model_path,
                      const char *cmdline, cp_timing *tm)
{
    char err[CP_ERR_LEN], out[CP_PATH_LEN + 16];
    char **files = NULL, *single = (char *)p->image_path;
    int n = 1, failed = 0;
    if (p->dir[0] && list_tiffs(p->dir, &files, &n, err)) {
        fprintf(stderr, "cellpose-mpi: error: %s\n", err);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const char *img = files ? files[i] : single;
        if (p->output[0]) snprintf(out, sizeof out, "%s", p->output);
        else cp_default_output(img, out, sizeof out);
        if (cp_segment_image(p, m, model_path, img, out, cmdline, tm, err)) {
            fprintf(stderr, "cellpose-mpi: error: %s\n", err);
            failed++;
        }
        if (files) free(files[i]);
    }
    free(files);
    if (n > 1 && failed) fprintf(stderr, "cellpose-mpi: %d of %d images failed\n", failed, n);
    return failed;
}

int main(int argc, char **argv)
{
    static cp_params p;
    char err[CP_ERR_LEN], cmdline[8192];
    pin_openblas_kernel(argv);
    join_args(argc, argv, cmdline, sizeof cmdline);
    int rc = cp_cli_parse(argc, argv, &p, err);
    if (rc == CP_CLI_EXIT) return 0;
    if (rc) {
        fprintf(stderr, "cellpose-mpi: error: %s\n", err);
        return 2;
    }
    if (p.threads > 0) omp_set_num_threads((int)p.threads);
    cp_timing tm = {0};
    int failed;
    if (p.flows[0]) {
        char out[CP_PATH_LEN + 16];
        if (p.output[0]) snprintf(out, sizeof out, "%s", p.output);
        else cp_default_output(p.flows, out, sizeof out);
        failed = cp_segment_flows(&p, out, cmdline, &tm, err) != 0;
        if (failed) fprintf(stderr, "cellpose-mpi: error: %s\n", err);
    } else {
        char model_path[CP_PATH_LEN];
        cp_model *m = NULL;
        if (cp_model_resolve(p.pretrained_model, model_path, sizeof model_path, err) ||
            cp_model_load(model_path, &m, err)) {
            fprintf(stderr, "cellpose-mpi: error: %s\n", err);
            return 1;
        }
        failed = run_images(&p, m, model_path, cmdline, &tm);
        cp_model_free(m);
    }
    if (!p.quiet && !failed) cp_timing_print(&tm, stderr);
    return failed ? 1 : 0;
}
