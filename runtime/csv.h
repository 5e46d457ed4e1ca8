/* CSV text (runtime/csv.c): the next line at *pos, NUL-terminated in place ("\r\n" handled; NULL
 * at the end); whether a line is blank; its field count; and its fields split in place, trimmed
 * of blanks and of surrounding double quotes. */
#ifndef KILN_RUNTIME_CSV_H
#define KILN_RUNTIME_CSV_H

#include <stdbool.h>
#include <stddef.h>

char *kl__csv_next_line(char *text, size_t len, size_t *pos);
bool kl__csv_blank(const char *s);
size_t kl__csv_count_fields(const char *s);
void kl__csv_split(char *line, char **fields, size_t n);

#endif
