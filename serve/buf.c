/* The growable byte buffer every answer is written into (kl__buf): JSON text, the metrics page,
 * binary tensor data. An allocation that fails marks the buffer, and the answer becomes a 500. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_impl.h"

static bool buf_reserve(kl__buf *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->n + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void kl__buf_put(kl__buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void kl__buf_puts(kl__buf *b, const char *s)
{
    kl__buf_put(b, s, strlen(s));
}

void kl__buf_printf(kl__buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void kl__buf_json_string(kl__buf *b, const char *s)
{
    kl__buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            kl__buf_put(b, e, 2);
        } else if (*p < 0x20) {
            kl__buf_printf(b, "\\u%04x", *p);
        } else {
            kl__buf_put(b, (const char *)p, 1);
        }
    }
    kl__buf_put(b, "\"", 1);
}

void kl__buf_free(kl__buf *b)
{
    free(b->p);
    *b = (kl__buf){0};
}
