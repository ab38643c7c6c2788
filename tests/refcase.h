/* Test support shared by the dynamics tests: the dynamics inputs and parameters of one reference
 * case (a plain case, its niter-200 rerun, its stitch_threshold 0.25 run or its run without
 * interp). */
#ifndef CP_TEST_REFCASE_H
#define CP_TEST_REFCASE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct refcase {
    const char *name, *variant; /* variant: "" | "niter200" | "stitch025" | "nointerp" */
    int32_t niter;
    float threshold;
    int interp;
    double max_size_fraction;
    tu_tiff dP, cellprob;            /* (2Z, Ly, Lx) and (Z, Ly, Lx); a volume: (3, Z, Ly, Lx) */
    int64_t Z, Ly, Lx;
    const char *p_final, *masks_raw; /* paths; p_final NULL when the oracle has none */
} refcase;

/* The path of file `file` of case `name`, following a `path` key of case.json. */
static inline const char *refcase_file(json_object *j, const char *name, const char *file)
{
    json_object *files = tu_json_get(j, "files"), *entry, *p; /* file names contain dots */
    if (files && json_object_object_get_ex(files, file, &entry) &&
        json_object_object_get_ex(entry, "path", &p)) {
        const char *s = json_object_get_string(p);
        if (strncmp(s, "shared/", 7) == 0) s += 7;
        return tu_path("%s/%s", tu_shared(), s);
    }
    return tu_path("%s/reference/%s/%s", tu_shared(), name, file);
}

/* A parameter of the eval call, from call.eval_kwargs or call (the flows cases). */
static inline json_object *refcase_param(json_object *j, const char *prefix, const char *key)
{
    json_object *v = tu_json_get(j, tu_path("%scall.eval_kwargs.%s", prefix, key));
    return v ? v : tu_json_get(j, tu_path("%scall.%s", prefix, key));
}

static inline refcase refcase_load(const char *name, const char *variant)
{
    refcase c = {.name = name, .variant = variant};
    json_object *j = tu_case_json(name);
    const int stitch = strcmp(variant, "stitch025") == 0;
    const int nointerp = strcmp(variant, "nointerp") == 0; /* same inputs, oracle run without */
    const char *prefix = stitch ? "stitch025_run." : "";
    const char *sfx = stitch ? "_stitch025" : "";
    json_object *ni = tu_json_get(j, tu_path("%sniter.used_by_follow_flows", prefix));
    json_object *th = refcase_param(j, prefix, "cellprob_threshold");
    json_object *ip = refcase_param(j, prefix, "interp");
    json_object *ms = refcase_param(j, prefix, "max_size_fraction");
    if (!ni || !th || !ms) {
        fprintf(stderr, "%s: case.json lacks niter/cellprob_threshold/max_size_fraction\n", name);
        exit(2);
    }
    c.niter = json_object_get_int(ni);
    c.threshold = (float)json_object_get_double(th);
    c.interp = !nointerp && (!ip || json_object_get_boolean(ip)); /* Cellpose's default: on */
    c.max_size_fraction = json_object_get_double(ms);
    c.dP = tu_read_tiff(refcase_file(j, name, tu_path("dP%s.tif", sfx)));
    c.cellprob = tu_read_tiff(refcase_file(j, name, tu_path("cellprob%s.tif", sfx)));
    if (strcmp(variant, "niter200") == 0) {
        c.niter = 200;
        c.masks_raw = strdup(tu_need(refcase_file(j, name, "masks_raw_niter200.tif")));
    } else { /* tu_need here, on every rank alike, not where one rank reads them later */
        const char *out = nointerp ? "_nointerp" : sfx;
        c.p_final = strdup(tu_need(refcase_file(j, name, tu_path("p_final%s.tif", out))));
        c.masks_raw = strdup(tu_need(refcase_file(j, name, tu_path("masks_raw%s.tif", out))));
    }
    c.Z = c.cellprob.pages, c.Ly = c.cellprob.ny, c.Lx = c.cellprob.nx;
    json_object_put(j);
    return c;
}

static inline void refcase_free(refcase *c)
{
    tu_tiff_free(&c->dP);
    tu_tiff_free(&c->cellprob);
    free((void *)c->p_final);
    free((void *)c->masks_raw);
}

/* Bitwise difference count of two float arrays (NaN payloads included). */
static inline int64_t refcase_count_diff_bits(const float *a, const float *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

#endif
