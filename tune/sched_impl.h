/* Private structures of the trial schedulers (include/kiln/sched.h), shared by tune/sched.c (the
 * policies: fifo, ASHA, Hyperband, median stopping) and tune/sched_rank.c (the ranked sets each
 * rung keeps its values in, and the heaps of trials waiting there for a promotion). */
#ifndef KILN_SCHED_IMPL_H
#define KILN_SCHED_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/sched.h"

/* One value recorded at one rung. Nodes live in one pool per scheduler and are linked into a
 * treap per rung (ordered best first) and, per trial, into a list through `next`. */
typedef struct kl__rank_node {
    double score; /* the value, negated when minimizing: larger is better */
    uint64_t seq; /* arrival order: the earlier of two equal scores ranks better */
    int32_t left, right, size;
    int32_t trial;
    int32_t next;  /* the same trial's node at its previous rung, -1: none */
    uint32_t prio; /* treap priority */
    uint8_t worst; /* not finite, or the trial failed: below every number */
    uint8_t rung;
} kl__rank_node;

/* Whether node a ranks strictly before node b: not worst before worst, then the larger score,
 * then the earlier arrival. Keys are unique (seq is), so this is a strict total order. */
static inline bool kl__rank_better(const kl__rank_node *a, const kl__rank_node *b)
{
    if (a->worst != b->worst)
        return b->worst;
    if (a->score != b->score)
        return a->score > b->score;
    return a->seq < b->seq;
}

/* The ranked set of one rung: a treap over pool nodes, root -1 when empty. */
void kl__rankset_insert(kl__rank_node *pool, int32_t *root, int32_t x);
void kl__rankset_erase(kl__rank_node *pool, int32_t *root, int32_t x);
/* How many nodes of the set rank strictly before node x (x need not be in the set). */
int32_t kl__rankset_rank(const kl__rank_node *pool, int32_t root, int32_t x);
/* The node at rank i (0: the best), i < the set's size. */
int32_t kl__rankset_select(const kl__rank_node *pool, int32_t root, int32_t i);

/* A max-heap of node ids by kl__rank_better, in caller-owned storage of sufficient capacity. */
void kl__candheap_push(const kl__rank_node *pool, int32_t *heap, int32_t *n, int32_t x);
int32_t kl__candheap_pop(const kl__rank_node *pool, int32_t *heap, int32_t *n);

typedef struct kl__rung {
    int milestone;  /* epochs */
    int32_t root;   /* every value recorded here */
    int32_t count;  /* trials that recorded here */
    int32_t nworst; /* of which not finite or failed */
    int32_t *cand;  /* promote mode: heap of the nodes of trials paused here, not yet promoted */
    int32_t ncand;
} kl__rung;

typedef struct kl__bracket {
    int grace; /* its first milestone */
    int nrungs;
    kl__rung *rungs; /* [nrungs]; the last one's milestone is max_t */
} kl__bracket;

/* The running median of one epoch t for the median stopping rule: the running averages of the
 * trials that reported t, split into a lower max-heap and an upper min-heap. */
typedef struct kl__median {
    double *lo, *hi;
    int32_t nlo, nhi, cap;
} kl__median;

typedef struct kl__trial {
    uint8_t state; /* kl_trial_state */
    uint8_t bracket;
    uint8_t queued;  /* requeued, waiting in the queue */
    uint8_t held;    /* paused, but its worker has not released it yet (holds on) */
    int8_t rung;     /* the highest rung recorded at, -1: none */
    int8_t target;   /* the rung it is heading for */
    int32_t until_t; /* and that rung's epochs (max_t outside promote mode) */
    int32_t last_t;
    int32_t node;  /* its node at its highest rung, -1: none */
    int32_t donor; /* pbt: the trial its current job exploited, -1: none */
    double last;   /* NaN: none or not finite */
    double best;   /* the best finite value, NaN: none */
    /* Its latest recording, which kl_sched_best_trial ranks by: at a rung for ASHA and
     * Hyperband, every report for fifo and the median rule. rec_t 0: none. */
    int32_t rec_t;
    uint8_t rec_worst;
    double rec_score;
    uint64_t rec_seq;
    /* The median rule: the sum and count of its scores for t = 1..med_t (the running average
     * is their quotient, or the worst once a value was not finite). */
    int32_t med_t, med_n;
    uint8_t med_worst;
    double med_sum;
} kl__trial;

struct kl_sched {
    kl_sched_config cfg; /* as given, brackets resolved */
    bool maximize;
    bool promote; /* ASHA or Hyperband in promote mode */
    bool holds;   /* a paused trial is a candidate only once released (kl_sched_set_holds) */
    int64_t max_trials, created, running;
    int64_t held; /* paused trials not released yet */
    kl__trial *trials;
    int64_t cap; /* trials, and each rung's candidate heap and the queue, hold this many */

    kl__bracket *brackets;
    int nbrackets;
    int max_rungs;          /* bracket 0's: the most any bracket has */
    int32_t *promote_order; /* (bracket << 8 | rung) pairs by milestone, highest first */
    int npromote;

    kl__rank_node *nodes;
    int32_t nnodes, nodes_cap;
    uint32_t prio_state; /* xorshift32 for treap priorities: deterministic */
    uint64_t seq;

    int32_t *queue; /* requeued trials, a ring of cap entries */
    int64_t qhead, qlen;

    kl__median *median; /* [max_t + 1], by t */

    kl_status status; /* KL_ENOMEM once an allocation failed */
    char msg[160];
};

/* tune/sched_pbt.c: PBT's next job, after requeued and new trials: the paused trial trained
 * least (Ray's choose_trial_to_run), exploiting a top-quantile trial first when it ranks in the
 * bottom quantile. False when no paused trial is free. */
bool kl__sched_pbt_next(kl_sched *s, kl_job *job);

#endif
