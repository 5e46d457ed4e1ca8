/* kl_buildinfo_print: the compiler, build type and library versions of this build, for
 * `kiln --version` and bug reports. Every query here works before MPI_Init and without a GPU, so
 * the cli can call it before it sets anything up. */
#include "kiln/buildinfo.h"

#include <hdf5.h>
#include <jansson.h>
#include <microhttpd.h>
#include <mpi.h>
#include <string.h>
#include <yaml.h>

#ifdef KILN_HAVE_CUDA
#include "kiln/comm.h"
#include "ops/cuda/cuda.h"
#endif

/* OpenBLAS's own queries. They are declared here rather than taken from <cblas.h> because the
 * cblas.h a system finds first may be another BLAS's, which lacks them; libkiln links OpenBLAS. */
char *openblas_get_config(void);
int openblas_get_num_threads(void);

static void print_compiler(FILE *f)
{
#if defined(__clang__)
    fprintf(f, "compiler: clang %s\n", __VERSION__);
#elif defined(__GNUC__)
    fprintf(f, "compiler: gcc %s\n", __VERSION__);
#elif defined(__VERSION__)
    fprintf(f, "compiler: %s\n", __VERSION__);
#else
    fprintf(f, "compiler: unknown\n");
#endif
}

/* CMake's build type when the build passes it as KILN_BUILD_TYPE, and in any case what the
 * compiler was told: optimization, assert() and the sanitizers it can report. */
static void print_build(FILE *f)
{
#ifdef KILN_BUILD_TYPE
    fprintf(f, "build: %s (", KILN_BUILD_TYPE);
#else
    fprintf(f, "build: ");
#endif
#ifdef __OPTIMIZE__
    fprintf(f, "optimized");
#else
    fprintf(f, "not optimized");
#endif
#ifdef NDEBUG
    fprintf(f, ", assert off");
#else
    fprintf(f, ", assert on");
#endif
#if defined(__SANITIZE_ADDRESS__)
    fprintf(f, ", AddressSanitizer");
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    fprintf(f, ", AddressSanitizer");
#endif
#endif
#ifdef KILN_BUILD_TYPE
    fprintf(f, ")");
#endif
    fprintf(f, "\n");
}

static void print_openblas(FILE *f)
{
    const char *config = openblas_get_config();
    int threads = openblas_get_num_threads();

    /* OpenBLAS pads its configuration string with spaces. */
    while (config && *config == ' ')
        config++;
    fprintf(f, "OpenBLAS: %s, %d thread%s\n", config ? config : "unknown", threads,
            threads == 1 ? "" : "s");
}

/* The MPI library's version string, first line only: some libraries (MPICH) add many more. */
static void print_mpi(FILE *f)
{
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0, major = 0, minor = 0;

    if (MPI_Get_library_version(version, &len) != MPI_SUCCESS) {
        fprintf(f, "MPI: unknown\n");
        return;
    }
    if (len < 0 || len >= (int)sizeof version)
        len = (int)sizeof version - 1;
    version[len] = '\0';
    version[strcspn(version, "\r\n")] = '\0';
    len = (int)strlen(version);
    while (len > 0 && (version[len - 1] == ' ' || version[len - 1] == '\t'))
        version[--len] = '\0';
    if (MPI_Get_version(&major, &minor) == MPI_SUCCESS)
        fprintf(f, "MPI: %s (MPI %d.%d)\n", version, major, minor);
    else
        fprintf(f, "MPI: %s\n", version);
}

static void print_hdf5(FILE *f)
{
    unsigned major, minor, release;

    if (H5get_libversion(&major, &minor, &release) < 0)
        fprintf(f, "HDF5: unknown\n");
    else
        fprintf(f, "HDF5: %u.%u.%u\n", major, minor, release);
}

static void print_cuda(FILE *f)
{
#ifdef KILN_HAVE_CUDA
    int n = kl__cuda_device_count();
    fprintf(f, "CUDA: built, %d device%s, NCCL %s\n", n, n == 1 ? "" : "s",
            kl_comm_have_nccl() ? "built" : "not built");
#else
    fprintf(f, "CUDA: not built\n");
#endif
}

void kl_buildinfo_print(FILE *f)
{
    print_compiler(f);
    print_build(f);
    print_openblas(f);
    print_mpi(f);
    print_hdf5(f);
    fprintf(f, "libyaml: %s\n", yaml_get_version_string());
    fprintf(f, "jansson: %s, libmicrohttpd: %s\n", jansson_version_str(), MHD_get_version());
    print_cuda(f);
}
