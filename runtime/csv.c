/* CSV text, shared by the training loader (trainers/data_csv.c), kiln predict's label-less
 * reader (trainers/predict_io.c) and the server's feature tables (serve/patterns/lookup.c):
 * lines, blank lines, field counts and fields split in place; and fields written, for the CSV
 * files kiln writes. Only the text: what a column means is the caller's. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/csv.h"

char *kl__csv_next_line(char *text, size_t len, size_t *pos)
{
    if (*pos >= len)
        return NULL;
    char *line = text + *pos, *nl = memchr(line, '\n', len - *pos);
    size_t n = nl ? (size_t)(nl - line) : len - *pos;
    *pos += n + (nl != NULL);
    line[n] = '\0';
    if (n > 0 && line[n - 1] == '\r')
        line[n - 1] = '\0';
    return line;
}

bool kl__csv_blank(const char *s)
{
    return s[strspn(s, " \t")] == '\0';
}

size_t kl__csv_count_fields(const char *s)
{
    size_t n = 1;
    for (; *s; s++)
        n += *s == ',';
    return n;
}

void kl__csv_split(char *line, char **fields, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *end = strchr(line, ',');
        if (end)
            *end = '\0';
        line += strspn(line, " \t");
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        if (len >= 2 && line[0] == '"' && line[len - 1] == '"') {
            line[len - 1] = '\0';
            line++;
        }
        fields[i] = line;
        line = end ? end + 1 : line + len;
    }
}

kl_status kl__csv_header(char *text, size_t len, size_t *pos, int64_t *line, const char *path,
                         const char *what, char ***names, char ***fields, size_t *ncols,
                         kl_error *err)
{
    char *l;
    while ((l = kl__csv_next_line(text, len, pos)) && kl__csv_blank(l))
        (*line)++;
    (*line)++;
    if (!l)
        return kl_error_set(err, KL_EFORMAT, "%s: empty file; %s needs a header row", path, what);
    *ncols = kl__csv_count_fields(l);
    *names = malloc(*ncols * sizeof **names);
    *fields = malloc(*ncols * sizeof **fields);
    if (!*names || !*fields)
        return kl_error_set(err, KL_ENOMEM, "%s: out of memory", path);
    kl__csv_split(l, *names, *ncols);
    return KL_OK;
}

/* The length of line [p, end) as kl__csv_next_line leaves it: up to a NUL, without a final '\r'. */
static size_t line_length(const char *p, const char *end)
{
    const char *nul = memchr(p, '\0', (size_t)(end - p));
    if (nul)
        return (size_t)(nul - p);
    return (size_t)(end - p) - (end > p && end[-1] == '\r');
}

kl_status kl__csv_count_rows(const char *text, size_t len, size_t pos, int64_t line, size_t ncols,
                             const char *path, int64_t *rows, kl_error *err)
{
    int64_t n = 0;
    for (const char *p = text + pos, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        size_t l = line_length(p, e), got = 1, blank = 1;
        line++;
        for (size_t i = 0; i < l; i++) {
            got += p[i] == ',';
            blank &= p[i] == ' ' || p[i] == '\t';
        }
        if (!blank && got != ncols)
            return kl_error_set(err, KL_EFORMAT, "%s:%lld: expected %zu fields, got %zu", path,
                                (long long)line, ncols, got);
        n += !blank;
        p = nl ? nl + 1 : end;
    }
    *rows = n;
    return KL_OK;
}

bool kl__csv_number(const char *field, double *v)
{
    char *end;
    if (!*field)
        return false;
    errno = 0;
    *v = strtod(field, &end);
    /* Below 0x1.ffffffp127 a double rounds to at most FLT_MAX as a float; from there on it would
     * become Inf in an f32 tensor. */
    return *end == '\0' && isfinite(*v) && errno != ERANGE && fabs(*v) < 0x1.ffffffp127;
}

void kl__csv_put_field(FILE *f, const char *prefix, const char *s)
{
    size_t n = strlen(s);
    bool edge = n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t');
    if (!edge && !strpbrk(s, ",\"\r\n") && !strpbrk(prefix, ",\"\r\n")) {
        fputs(prefix, f);
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (int part = 0; part < 2; part++)
        for (const char *c = part ? s : prefix; *c; c++) {
            if (*c == '"')
                fputc('"', f);
            fputc(*c, f);
        }
    fputc('"', f);
}
