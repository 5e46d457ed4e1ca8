/* The op table: one row per op, indexed by kl__op, made from KL__OP_LIST (ops/graph_impl.h). The
 * rows live in the kernel files under ops/cpu/; this file only collects them so that the graph can
 * dispatch on an op's number. */
#include "ops/graph_impl.h"

#define KL__OP_ROW_(E, n) [KL__OP_##E] = &kl__op_##n,
const kl__op_def *const kl__ops[KL__OP_COUNT] = {[KL__OP_NONE] = NULL, KL__OP_LIST(KL__OP_ROW_)};
#undef KL__OP_ROW_

/* Changing the count means an op was added or removed: its tests and docs/architecture.md's op
 * list change with it. */
_Static_assert(KL__OP_COUNT == 33, "an op was added or removed: update its tests and this count");

const kl__kernel *kl__op_kernels(kl__op op, bool cuda, kl_error *err)
{
    KL_ASSERT(op > KL__OP_NONE && op < KL__OP_COUNT && !kl__ops[op]->alias);
    const kl__op_def *row = kl__ops[op];
    if (!cuda)
        return &row->cpu;
    if (!row->cuda || !row->cuda->forward) {
        kl_error_set(err, KL_EUNSUPPORTED, "op %s has no CUDA kernel%s; run this model on the CPU",
                     row->name, row->cuda ? "" : " (this kiln was built without CUDA)");
        return NULL;
    }
    return row->cuda;
}
