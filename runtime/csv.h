/* CSV text (runtime/csv.c): the next line at *pos, NUL-terminated in place ("\r\n" handled; NULL
 * at the end); whether a line is blank; its field count; and its fields split in place, trimmed
 * of blanks and of surrounding double quotes. And the one writer of a CSV field. */
#ifndef KILN_RUNTIME_CSV_H
#define KILN_RUNTIME_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/status.h"

char *kl__csv_next_line(char *text, size_t len, size_t *pos);
bool kl__csv_blank(const char *s);
size_t kl__csv_count_fields(const char *s);
void kl__csv_split(char *line, char **fields, size_t n);

/* The header row from *pos on (blank lines before it skipped, *line counting them and it):
 * its *ncols column names split in place into *names, and *fields, room for as many fields
 * of a row (both malloc'd). An empty file is KL_EFORMAT naming path and what it is for. */
kl_status kl__csv_header(char *text, size_t len, size_t *pos, int64_t *line, const char *path,
                         const char *what, char ***names, char ***fields, size_t *ncols,
                         kl_error *err);

/* Parses field as a number that is finite as a 32-bit float (what kiln stores); false when it is
 * empty, not a number, NaN, Inf, or past float's range. */
bool kl__csv_number(const char *field, double *v);

/* Counts the rows that are not blank from *pos on, without changing the text, and checks that
 * each has ncols fields: KL_EFORMAT naming path:line (line is the 1-based number of the line
 * before pos) for the first that does not. So a reader knows its exact size, which the file's
 * length bounds, before it allocates anything. */
kl_status kl__csv_count_rows(const char *text, size_t len, size_t pos, int64_t line, size_t ncols,
                             const char *path, int64_t *rows, kl_error *err);

/* Writes prefix then s to f as one CSV field (RFC 4180): in double quotes, with its quotes
 * doubled, when it holds a comma, a quote or a line break, or starts or ends with a blank (which
 * a reader trims otherwise). For kiln predict's, kiln tune's and --simulate's CSV files. */
void kl__csv_put_field(FILE *f, const char *prefix, const char *s);

#endif
