/* Ranked sets for the schedulers' rungs: a treap with subtree sizes over a pool of nodes, so that
 * recording a value, failing a trial, the rank of a value and the value at a rank all take
 * O(log n) expected time, and a binary heap of the trials waiting at a rung. tune/sched.c is the
 * only caller; nothing here allocates (the pool and the heaps are sized by the scheduler). */
#include "kiln/status.h"
#include "tune/sched_impl.h"

static int32_t size_of(const kl__rank_node *p, int32_t i)
{
    return i < 0 ? 0 : p[i].size;
}

static void pull(kl__rank_node *p, int32_t i)
{
    p[i].size = 1 + size_of(p, p[i].left) + size_of(p, p[i].right);
}

/* Splits the tree t into the nodes that rank before node x (*l) and the others (*r). */
static void split(kl__rank_node *p, int32_t t, const kl__rank_node *x, int32_t *l, int32_t *r)
{
    if (t < 0) {
        *l = *r = -1;
        return;
    }
    if (kl__rank_better(&p[t], x)) {
        split(p, p[t].right, x, &p[t].right, r);
        *l = t;
    } else {
        split(p, p[t].left, x, l, &p[t].left);
        *r = t;
    }
    pull(p, t);
}

/* Joins two trees where every node of a ranks before every node of b. */
static int32_t merge(kl__rank_node *p, int32_t a, int32_t b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    if (p[a].prio > p[b].prio) {
        p[a].right = merge(p, p[a].right, b);
        pull(p, a);
        return a;
    }
    p[b].left = merge(p, a, p[b].left);
    pull(p, b);
    return b;
}

static int32_t insert(kl__rank_node *p, int32_t t, int32_t x)
{
    if (t < 0)
        return x;
    if (p[x].prio > p[t].prio) {
        split(p, t, &p[x], &p[x].left, &p[x].right);
        pull(p, x);
        return x;
    }
    if (kl__rank_better(&p[x], &p[t]))
        p[t].left = insert(p, p[t].left, x);
    else
        p[t].right = insert(p, p[t].right, x);
    pull(p, t);
    return t;
}

static int32_t erase(kl__rank_node *p, int32_t t, int32_t x)
{
    KL_ASSERT(t >= 0); /* x is in the tree */
    if (t == x)
        return merge(p, p[t].left, p[t].right);
    if (kl__rank_better(&p[x], &p[t]))
        p[t].left = erase(p, p[t].left, x);
    else
        p[t].right = erase(p, p[t].right, x);
    pull(p, t);
    return t;
}

void kl__rankset_insert(kl__rank_node *pool, int32_t *root, int32_t x)
{
    pool[x].left = pool[x].right = -1;
    pool[x].size = 1;
    *root = insert(pool, *root, x);
}

void kl__rankset_erase(kl__rank_node *pool, int32_t *root, int32_t x)
{
    *root = erase(pool, *root, x);
}

int32_t kl__rankset_rank(const kl__rank_node *pool, int32_t root, int32_t x)
{
    int32_t rank = 0;
    for (int32_t t = root; t >= 0;) {
        if (t == x) {
            rank += size_of(pool, pool[t].left);
            break;
        }
        if (kl__rank_better(&pool[t], &pool[x])) {
            rank += size_of(pool, pool[t].left) + 1;
            t = pool[t].right;
        } else {
            t = pool[t].left;
        }
    }
    return rank;
}

int32_t kl__rankset_select(const kl__rank_node *pool, int32_t root, int32_t i)
{
    int32_t t = root;
    while (t >= 0) {
        int32_t l = size_of(pool, pool[t].left);
        if (i < l) {
            t = pool[t].left;
        } else if (i == l) {
            return t;
        } else {
            i -= l + 1;
            t = pool[t].right;
        }
    }
    KL_ASSERT(!"rank out of range");
    return -1;
}

void kl__candheap_push(const kl__rank_node *pool, int32_t *heap, int32_t *n, int32_t x)
{
    int32_t i = (*n)++;
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!kl__rank_better(&pool[x], &pool[heap[parent]]))
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = x;
}

int32_t kl__candheap_pop(const kl__rank_node *pool, int32_t *heap, int32_t *n)
{
    KL_ASSERT(*n > 0);
    int32_t top = heap[0], x = heap[--*n], i = 0;
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && kl__rank_better(&pool[heap[c + 1]], &pool[heap[c]]))
            c++;
        if (!kl__rank_better(&pool[heap[c]], &pool[x]))
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (*n > 0)
        heap[i] = x;
    return top;
}
