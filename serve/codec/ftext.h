/* Private to serve/: a float as the text the inference answers carry (serve/codec/respond.c).
 * The text is printf's %.8g when strtof reads it back as the same float, else %.9g; ftext.c
 * computes it exactly with integer arithmetic instead of calling printf and strtof. */
#ifndef KILN_SERVE_FTEXT_H
#define KILN_SERVE_FTEXT_H

#include <stddef.h>

/* The size of the buffer kl__float_text needs ("-1.23456789e-38" and its NUL, with room). */
#define KL__FLOAT_TEXT_MAX 24

/* Writes the text of a finite f into out (KL__FLOAT_TEXT_MAX bytes), NUL-terminated, and returns
 * its length: byte for byte what snprintf "%.8g" gives when strtof reads it back as f, else what
 * "%.9g" gives. -0.0f is "-0". */
size_t kl__float_text(float f, char *out);

#endif
