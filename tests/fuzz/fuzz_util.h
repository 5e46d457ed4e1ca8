/* What the file-reading fuzz targets share (tests/fuzz/fuzz_{idx,csv,hdf5,modelfile}.c): the
 * input written to a file of a temporary folder, since kiln's readers take paths; a check that a
 * failure is reported properly; and, for HDF5, a trap that fires when HDF5 would print its error
 * stack outside kiln's quiet brackets, or when a call leaves an HDF5 object open. Header-only, as
 * each target is one program. */
#ifndef KILN_FUZZ_UTIL_H
#define KILN_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/status.h"

static char fuzz_dir[64];

static inline void fuzz_cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
    if (fuzz_dir[0] && system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}

/* Writes data to name in this process's temporary folder (made on first use) and returns the
 * path. The file is replaced by a new one each time, so no reader can see the previous input. */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[4][256];
    static int k;
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/kiln-fuzz-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(fuzz_dir))
            abort();
        atexit(fuzz_cleanup);
    }
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", fuzz_dir, name);
    unlink(path[k]);
    FILE *f = fopen(path[k], "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    return path[k];
}

/* A refusal must carry its status in err and a message. */
static inline void fuzz_check_error(kl_status st, const kl_error *err)
{
    if (st == KL_OK || err->status != st || !err->msg[0] || st == KL_EINTERNAL)
        __builtin_trap();
}

#ifdef KILN_FUZZ_DATA
#include "kiln/data.h"

/* Loads src for classification and for regression: a data set that loads goes to check, a
 * refusal must be reported properly. */
static inline void fuzz_load_tasks(kl_data_source *src,
                                   void (*check)(const kl_dataset *d, kl_task task))
{
    for (int t = 0; t < 2; t++) {
        kl_task task = t ? KL_TASK_REGRESSION : KL_TASK_CLASSIFICATION;
        kl_dataset d;
        kl_error err = {0};
        kl_status st = kl_dataset_load(src, task, &d, &err);
        if (st == KL_OK)
            check(&d, task);
        else
            fuzz_check_error(st, &err);
        kl_dataset_free(&d);
    }
}
#endif

#ifdef KILN_FUZZ_HDF5
#include <hdf5.h>

static inline herr_t fuzz_h5_printed(hid_t stack, void *data)
{
    (void)stack;
    (void)data;
    fprintf(stderr, "fuzz: HDF5 would have printed its error stack: a call outside "
                    "kl__h5_quiet_begin/end\n");
    __builtin_trap();
}

/* Installed once: kiln saves and restores this handler around its own calls. */
static inline void fuzz_h5_init(void)
{
    H5Eset_auto2(H5E_DEFAULT, fuzz_h5_printed, NULL);
}

/* After each input: every file, dataset, group, type and attribute kiln opened is closed. */
static inline void fuzz_h5_check_closed(void)
{
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) {
        fprintf(stderr, "fuzz: %lld HDF5 objects left open\n",
                (long long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
        __builtin_trap();
    }
}
#endif

#endif
