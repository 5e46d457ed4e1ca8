/* The device memory accounting behind run records' device_memory_peak_bytes (ops/devmem.c),
 * tested without a GPU: the allocations ops/cuda/device.cu would note are noted here with
 * made-up pointers. A process that noted nothing reports no device memory (as on the CPU); the
 * peak is the largest sum of live allocations, frees of unknown pointers change nothing, and
 * threads noting at once lose no update. Each case runs in a process of its own. */
#include <pthread.h>
#include <stdint.h>

#include "check.h"
#include "kiln/graph.h"
#include "ops/devmem.h"

static char slots[4096]; /* made-up device pointers: addresses that are distinct */

static int64_t peak(void)
{
    int64_t b = -1;
    CHECK(kl_device_memory_peak(&b));
    return b;
}

static void test_none(void)
{
    int64_t b = -1;
    CHECK(!kl_device_memory_peak(&b));
    CHECK(b == 0);
    kl__devmem_free(slots); /* never noted: ignored */
    kl__devmem_free(NULL);
    kl__devmem_alloc(NULL, 100);
    CHECK(!kl_device_memory_peak(&b) && b == 0);
}

static void test_peak(void)
{
    kl__devmem_alloc(slots + 0, 100);
    kl__devmem_alloc(slots + 1, 50);
    CHECK(peak() == 150);
    kl__devmem_free(slots + 0);
    kl__devmem_alloc(slots + 2, 30); /* 80 live */
    CHECK(peak() == 150);
    kl__devmem_free(slots + 3);       /* never noted */
    kl__devmem_free(slots + 0);       /* already freed */
    kl__devmem_alloc(slots + 3, 200); /* 280 live */
    CHECK(peak() == 280);
    kl__devmem_free(slots + 1);
    kl__devmem_free(slots + 2);
    kl__devmem_free(slots + 3);
    CHECK(peak() == 280);             /* a peak stays */
    kl__devmem_alloc(slots + 4, 281); /* only this one live: the others were subtracted */
    CHECK(peak() == 281);
}

/* More live allocations than the table's first size. */
static void test_many(void)
{
    for (int i = 0; i < 1000; i++)
        kl__devmem_alloc(slots + i, 3);
    CHECK(peak() == 3000);
    for (int i = 0; i < 1000; i++)
        kl__devmem_free(slots + i);
    kl__devmem_alloc(slots, 3001);
    CHECK(peak() == 3001);
}

enum { THREADS = 4, ROUNDS = 20000 };

static void *churn(void *arg)
{
    char *mine = arg;
    for (int i = 0; i < ROUNDS; i++) {
        kl__devmem_alloc(mine, 8);
        kl__devmem_free(mine);
    }
    return NULL;
}

/* Threads noting and freeing at once: at most THREADS allocations are live, and once they are
 * all freed nothing is left over. */
static void test_threads(void)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, churn, slots + i) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    int64_t p = peak();
    CHECK(p >= 8 && p <= 8 * THREADS);
    kl__devmem_alloc(slots + 100, 1000);
    CHECK(peak() == 1000);
}

static const check_case cases[] = {
    CHECK_CASE(test_none),
    CHECK_CASE(test_peak),
    CHECK_CASE(test_many),
    CHECK_CASE(test_threads),
};

int main(int argc, char **argv)
{
    return check_run("test_devmem", cases, CHECK_NCASES(cases), argc, argv);
}
