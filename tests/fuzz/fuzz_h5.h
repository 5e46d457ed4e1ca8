/* Recipes for the HDF5 fuzz targets (fuzz_hdf5.c, fuzz_modelfile.c). HDF5 1.10's own parser has
 * crashes, hangs and leaks on damaged metadata (raw-byte fuzzing finds them within seconds, none
 * in kiln), so these targets do not hand kiln mutated bytes: the input is a recipe of edits that
 * the HDF5 library applies to a real file (a seed from tests/fuzz/seeds-NAME, the directory in
 * $FUZZ_SEEDS) or to an empty one, in memory. What kiln then reads is a valid HDF5 file with
 * whatever datasets, shapes, types, layouts, filters, attributes and values the recipe asked
 * for: the hostile content a user can make with h5py. Header-only, as each target is one
 * program; the file is read back through fuzz_file (fuzz_util.h). */
#ifndef KILN_FUZZ_H5_H
#define KILN_FUZZ_H5_H

#define KILN_FUZZ_HDF5
#include <dirent.h>
#include <hdf5.h>
#include <stdbool.h>

#include "fuzz_util.h"

/* The recipe, read a byte at a time; past its end every read is 0. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in;

static inline uint8_t in_u8(fuzz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint32_t in_u32(fuzz_in *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | in_u8(in);
    return v;
}

static inline float in_f32(fuzz_in *in)
{
    uint32_t u = in_u32(in);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The seed files, read once from $FUZZ_SEEDS in name order. */
enum { FUZZ_MAX_SEEDS = 8 };
typedef struct fuzz_seed {
    uint8_t *data;
    size_t n;
} fuzz_seed;
static fuzz_seed fuzz_seeds[FUZZ_MAX_SEEDS];
static int fuzz_nseeds;

static inline void fuzz_load_seeds(void)
{
    const char *dir = getenv("FUZZ_SEEDS");
    struct dirent **names = NULL;
    int n = dir ? scandir(dir, &names, NULL, alphasort) : -1;
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        FILE *f = names[i]->d_name[0] != '.' ? fopen(path, "rb") : NULL;
        if (f && fuzz_nseeds < FUZZ_MAX_SEEDS && fseek(f, 0, SEEK_END) == 0) {
            long len = ftell(f);
            uint8_t *b = len > 0 ? malloc((size_t)len) : NULL;
            rewind(f);
            if (b && fread(b, 1, (size_t)len, f) == (size_t)len)
                fuzz_seeds[fuzz_nseeds++] = (fuzz_seed){b, (size_t)len};
            else
                free(b);
        }
        if (f)
            fclose(f);
        free(names[i]);
    }
    free(names);
    if (fuzz_nseeds == 0) {
        fprintf(stderr, "fuzz: no seed files in $FUZZ_SEEDS (%s); tests/fuzz/run.sh sets it\n",
                dir ? dir : "unset");
        exit(1);
    }
}

/* libFuzzer calls it once: the seeds are read and HDF5's error printing made a trap. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_load_seeds();
    fuzz_h5_init();
    /* HDF5 keeps freed blocks on its own free lists, which hides a use after free from
     * AddressSanitizer until it corrupts the heap much later; with no free lists it sees it. */
    H5set_free_list_limits(0, 0, 0, 0, 0, 0);
    return 0;
}

/* Opens seed k in memory (k == fuzz_nseeds: a new, empty file). The recipe's own HDF5 calls may
 * fail (that is the point of some recipes), so HDF5's error printing is off until fuzz_h5_save. */
static inline hid_t fuzz_h5_open(int k)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = -1;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0) {
        if (k < fuzz_nseeds && H5Pset_file_image(fapl, fuzz_seeds[k].data, fuzz_seeds[k].n) >= 0)
            f = H5Fopen("fuzz-image.h5", H5F_ACC_RDWR, fapl);
        else if (k >= fuzz_nseeds)
            f = H5Fcreate("fuzz-image.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    }
    H5Pclose(fapl);
    if (f < 0)
        abort();
    return f;
}

/* Closes the edited file and writes its image to the temporary file name: the path. */
static inline const char *fuzz_h5_save(hid_t f, const char *name)
{
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    uint8_t *b = n > 0 ? malloc((size_t)n) : NULL;
    if (!b || H5Fget_file_image(f, b, (size_t)n) != n)
        abort();
    H5Fclose(f);
    const char *path = fuzz_file(name, b, (size_t)n);
    free(b);
    fuzz_h5_init(); /* kiln's turn: HDF5 must stay quiet from here on */
    return path;
}

/* The types a recipe's dataset can have: every integer and float width and byte order kiln
 * converts, and types it must refuse. */
static inline hid_t fuzz_type(uint8_t k)
{
    static const hid_t *const types[] = {&H5T_STD_I8LE_g,   &H5T_STD_U8LE_g,   &H5T_STD_I16LE_g,
                                         &H5T_STD_U16BE_g,  &H5T_STD_I32LE_g,  &H5T_STD_U32LE_g,
                                         &H5T_STD_I64LE_g,  &H5T_STD_U64BE_g,  &H5T_IEEE_F32LE_g,
                                         &H5T_IEEE_F32BE_g, &H5T_IEEE_F64LE_g, &H5T_IEEE_F64BE_g,
                                         &H5T_C_S1_g,       &H5T_STD_B8LE_g};
    return H5Tcopy(*types[k % (sizeof types / sizeof *types)]);
}

/* Sets row r of dataset name (or its only value) to v, converted to the dataset's type: a NaN or
 * an extreme value anywhere in real data. */
static inline void fuzz_h5_poke(hid_t loc, const char *name, fuzz_in *in)
{
    uint8_t r = in_u8(in);
    float v = in_f32(in);
    hid_t d = H5Lexists(loc, name, H5P_DEFAULT) > 0 ? H5Dopen2(loc, name, H5P_DEFAULT) : -1;
    hid_t dcpl = d >= 0 ? H5Dget_create_plist(d) : -1;
    /* Not through scale-offset or n-bit, which HDF5 1.10 writes with heap corruption. */
    for (int i = 0; dcpl >= 0 && i < H5Pget_nfilters(dcpl); i++) {
        unsigned flags, config;
        size_t n = 0;
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &n, NULL, 0, NULL, &config);
        if (id == H5Z_FILTER_SCALEOFFSET || id == H5Z_FILTER_NBIT) {
            H5Dclose(d);
            d = -1;
        }
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0}, per = 1;
    bool small = rank >= 1 && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0 && dims[0] > 0;
    for (int i = 1; small && i < rank; i++)
        small = dims[i] <= 65536 && (per *= dims[i]) <= 65536;
    if (small) {
        float *row = malloc((per ? per : 1) * sizeof *row);
        start[0] = r % dims[0];
        dims[0] = 1;
        hid_t ms = H5Screate_simple(1, &per, NULL);
        for (hsize_t i = 0; row && i < per; i++)
            row[i] = v;
        if (row && per && H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, dims, NULL) >= 0)
            H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, row);
        H5Sclose(ms);
        free(row);
    }
    if (sp >= 0)
        H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
}

/* Writes rows [0, rows) of dataset d (of space sp, type t) with a pattern of the recipe (a count,
 * then that many bytes), repeated. */
static inline void fuzz_write_rows(hid_t d, hid_t sp, hid_t t, int rank, const hsize_t *dims,
                                   hsize_t rows, size_t bytes, fuzz_in *in)
{
    uint8_t *v = malloc(bytes ? bytes : 1), pattern[64];
    size_t np = in_u8(in) % (sizeof pattern + 1);
    for (size_t i = 0; i < np; i++)
        pattern[i] = in_u8(in);
    for (size_t i = 0; v && i < bytes; i++)
        v[i] = np ? pattern[i % np] : 0;
    hsize_t start[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
    for (int i = 0; i < rank; i++)
        count[i] = i ? dims[i] : rows;
    hid_t ms = rank ? H5Screate_simple(rank, count, NULL) : H5Screate(H5S_SCALAR);
    if (v && ms >= 0 &&
        (!rank || H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0))
        H5Dwrite(d, t, ms, sp, H5P_DEFAULT, v);
    if (ms >= 0)
        H5Sclose(ms);
    free(v);
}

/* A dataset name under loc as the recipe says: type, rank (0 to 5), dimensions (small, or huge
 * for a file that lies), layout (contiguous, chunked, compact), filters, and how many rows of it
 * are written, with what bytes. Values are written only when they take at most 1 MiB, so that
 * the recipe cannot make the target itself allocate what kiln must refuse to. */
static inline void fuzz_h5_dataset(hid_t loc, const char *name, fuzz_in *in)
{
    hid_t t = fuzz_type(in_u8(in));
    if (H5Tget_class(t) == H5T_STRING)
        H5Tset_size(t, 1 + in_u8(in) % 16);
    int rank = in_u8(in) % 6;
    hsize_t dims[5], maxdims[5], chunk[5];
    double numel = 1;
    for (int i = 0; i < rank; i++) {
        uint8_t b = in_u8(in);
        dims[i] = b & 0x80 ? (hsize_t)in_u32(in) << (b & 0x1f) : b & 0x7f;
        maxdims[i] = H5S_UNLIMITED;
        chunk[i] = 1 + in_u8(in) % 16;
        numel *= (double)dims[i];
    }
    double bytes = numel * (double)H5Tget_size(t);
    int layout = in_u8(in) % 3; /* 0 contiguous, 1 chunked, 2 compact */
    if (rank == 0)
        layout = layout == 1 ? 0 : layout;
    else if (bytes > (layout == 2 ? 32768 : 1 << 20))
        layout = 1;
    uint8_t filters = in_u8(in);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (layout == 1) {
        H5Pset_chunk(dcpl, rank, chunk);
        if (filters & 1)
            H5Pset_shuffle(dcpl);
        if (filters & 2)
            H5Pset_deflate(dcpl, filters >> 5);
        if (filters & 4)
            H5Pset_fletcher32(dcpl);
        if (filters & 8)
            H5Pset_scaleoffset(dcpl,
                               H5Tget_class(t) == H5T_FLOAT ? H5Z_SO_FLOAT_DSCALE : H5Z_SO_INT,
                               filters >> 6);
        if (filters & 16)
            H5Pset_nbit(dcpl);
    } else if (layout == 2) {
        H5Pset_layout(dcpl, H5D_COMPACT);
    }
    hid_t sp =
        rank ? H5Screate_simple(rank, dims, layout == 1 ? maxdims : NULL) : H5Screate(H5S_SCALAR);
    H5Ldelete(loc, name, H5P_DEFAULT);
    hid_t d = sp >= 0 ? H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    /* Of 255: the fraction of the rows written. HDF5 1.10 crashes writing through the
     * scale-offset and n-bit filters, so those datasets (which kiln refuses) stay empty. */
    uint8_t written = filters & 24 ? 0 : in_u8(in);
    if (d >= 0 && bytes <= (1 << 20) && written) {
        hsize_t rows = rank ? (hsize_t)((double)dims[0] * written / 255) : 1;
        size_t row = rank && dims[0] ? (size_t)(bytes / (double)dims[0]) : (size_t)bytes;
        if (rows)
            fuzz_write_rows(d, sp, t, rank, dims, rows, rows * row, in);
    }
    if (d >= 0)
        H5Dclose(d);
    if (sp >= 0)
        H5Sclose(sp);
    H5Pclose(dcpl);
    H5Tclose(t);
}

/* An attribute name on obj: an integer or a float of the recipe's value, a string, or an array,
 * replacing any attribute of that name. */
static inline void fuzz_h5_attr(hid_t obj, const char *name, fuzz_in *in)
{
    uint8_t kind = in_u8(in) % 5;
    int64_t iv = (int32_t)in_u32(in);
    double dv = in_f32(in);
    char text[17] = {0};
    for (int i = 0; i < 16; i++)
        text[i] = (char)in_u8(in);
    hsize_t two = 2;
    hid_t t = kind == 0   ? H5Tcopy(H5T_STD_I64LE)
              : kind == 1 ? H5Tcopy(H5T_IEEE_F64LE)
              : kind == 2 ? H5Tcopy(H5T_C_S1)
              : kind == 3 ? H5Tcopy(H5T_C_S1)
                          : H5Tcopy(H5T_STD_I32LE);
    if (kind == 2)
        H5Tset_size(t, H5T_VARIABLE);
    else if (kind == 3)
        H5Tset_size(t, 16);
    hid_t sp = kind == 4 ? H5Screate_simple(1, &two, NULL) : H5Screate(H5S_SCALAR);
    H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char *vs = text;
    int32_t pair[2] = {(int32_t)iv, (int32_t)(iv >> 16)};
    const void *v = kind == 0   ? (const void *)&iv
                    : kind == 1 ? (const void *)&dv
                    : kind == 2 ? (const void *)&vs
                    : kind == 3 ? (const void *)text
                                : (const void *)pair;
    if (a >= 0) {
        H5Awrite(a, kind == 0 ? H5T_NATIVE_INT64 : kind == 1 ? H5T_NATIVE_DOUBLE : t, v);
        H5Aclose(a);
    }
    H5Sclose(sp);
    H5Tclose(t);
}

#endif
