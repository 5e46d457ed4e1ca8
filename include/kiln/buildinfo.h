/* What this build of kiln is made of: the compiler, the build type and the versions of the
 * libraries libkiln runs with (OpenBLAS, MPI, HDF5, libyaml, jansson, libmicrohttpd, CUDA).
 * `kiln --version` prints it, and so should any bug report. */
#ifndef KILN_BUILDINFO_H
#define KILN_BUILDINFO_H

#include <stdio.h>

/* Prints one "name: value" line per component to f. It needs neither MPI_Init nor a GPU: it can be
 * called first thing in main. */
void kl_buildinfo_print(FILE *f);

#endif
