/* The device memory kiln holds (ops/devmem.h): a small table of the live allocations, their sum
 * and its peak. Allocations are rare (a graph's buffers when it compiles, a step's state), so a
 * linear table behind a spin lock is plenty; the process has one such table, as it has one
 * device memory. kl_device_memory_peak (include/kiln/graph.h) reads the peak for run records. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "kiln/graph.h"
#include "ops/devmem.h"

typedef struct live {
    const void *p;
    size_t bytes;
} live;

static atomic_flag busy = ATOMIC_FLAG_INIT;
static live *table;
static size_t n, cap;
static size_t now_bytes, peak_bytes;
static bool any;

static void lock(void)
{
    while (atomic_flag_test_and_set_explicit(&busy, memory_order_acquire))
        ;
}

static void unlock(void)
{
    atomic_flag_clear_explicit(&busy, memory_order_release);
}

void kl__devmem_alloc(const void *p, size_t bytes)
{
    if (!p)
        return;
    lock();
    if (n == cap) {
        size_t c = cap ? 2 * cap : 64;
        live *t = c <= SIZE_MAX / sizeof *t ? realloc(table, c * sizeof *t) : NULL;
        if (t) {
            table = t;
            cap = c;
        }
    }
    /* Without room the bytes still count (the peak stays a bound); their free cannot subtract
     * them, so the sum may stay high afterwards, never the peak low. */
    if (n < cap)
        table[n++] = (live){p, bytes};
    now_bytes += bytes;
    peak_bytes = now_bytes > peak_bytes ? now_bytes : peak_bytes;
    any = true;
    unlock();
}

void kl__devmem_free(const void *p)
{
    if (!p)
        return;
    lock();
    for (size_t i = 0; i < n; i++)
        if (table[i].p == p) {
            now_bytes -= table[i].bytes;
            table[i] = table[--n];
            break;
        }
    unlock();
}

bool kl_device_memory_peak(int64_t *bytes)
{
    lock();
    bool had = any;
    size_t peak = peak_bytes;
    unlock();
    *bytes = peak > (size_t)INT64_MAX ? INT64_MAX : (int64_t)peak;
    return had;
}
