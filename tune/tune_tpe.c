/* kiln tune's glue to the TPE sampler (kiln/tpe.h): on replay, each new trial is proposed again
 * at its place in the journal and must match the values the journal recorded; across MPI, a
 * job carries its trial's values, since only the coordinator holds the history they came from.
 * coord.c and worker.c call these; the sampler itself is tune/tpe.c. */
#include <string.h>

#include "tune/tune_impl.h"

kl_status kl__tune_tpe_replay(kl__tuner *tu, int64_t trial, json_t *ev, size_t eventno,
                              kl_error *err)
{
    kl_status st = kl__tune_overrides(tu, trial, err);
    json_t *journalled = json_object_get(ev, "overrides");
    const kl__trial *t = &tu->trials[trial];
    for (int i = 0; st == KL_OK && i < t->nov; i++) {
        const char *eq = strchr(t->ov[i], '=');
        char key[256];
        snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - t->ov[i]) : 0, t->ov[i]);
        const char *was = json_string_value(json_object_get(journalled, key));
        if (!eq || !was || strcmp(was, eq + 1) != 0)
            st = kl_error_set(err, KL_EFORMAT,
                              "%s/journal.jsonl: event %zu started trial %lld with %s=%s, but "
                              "the TPE sampler proposes %s on replay: the sweep file or kiln's "
                              "sampler changed since the sweep began",
                              tu->dir, eventno, (long long)trial, key, was ? was : "(none)",
                              t->ov[i]);
    }
    return st;
}

kl_status kl__tune_job_pack(kl__tuner *tu, kl__msg *m, kl_error *err)
{
    const kl__trial *t = &tu->trials[m->trial];
    if (!tu->sw->tpe.on && tu->sw->sched.kind != KL_SCHED_PBT)
        return KL_OK;
    size_t used = 0;
    for (int i = 0; i < t->nov; i++) {
        size_t len = strlen(t->ov[i]);
        if (used + len + 1 >= sizeof m->text)
            return kl_error_set(err, KL_EUNSUPPORTED,
                                "trial %lld: method tpe and the pbt scheduler on several ranks "
                                "send each trial's values with its job, in at most %zu bytes, "
                                "and these take more; "
                                "not supported yet: run the sweep on one rank, or tune fewer keys",
                                (long long)m->trial, sizeof m->text - 1);
        memcpy(m->text + used, t->ov[i], len);
        m->text[used + len] = '\n';
        used += len + 1;
    }
    m->text[used] = '\0';
    return KL_OK;
}

kl_status kl__tune_job_unpack(kl__tuner *tu, const kl__msg *m, kl_error *err)
{
    kl__trial *t = &tu->trials[m->trial];
    /* Under pbt a trial's values change as it exploits: a worker takes every job's. The
     * coordinator's own process (one rank) holds them already. */
    bool pbt = tu->sw->sched.kind == KL_SCHED_PBT && tu->rank != 0;
    if ((!tu->sw->tpe.on && !pbt) || (t->ov && !pbt))
        return KL_OK;
    char **ov = calloc((size_t)tu->sw->nparams, sizeof *ov);
    const char *p = m->text;
    int n = 0;
    while (ov && n < tu->sw->nparams && *p) {
        const char *nl = memchr(p, '\n', strnlen(p, sizeof m->text));
        if (!nl || !(ov[n] = strndup(p, (size_t)(nl - p))))
            break;
        n++;
        p = nl + 1;
    }
    if (!ov || n != tu->sw->nparams) {
        kl_sweep_overrides_free(ov, n);
        return kl_error_set(err, ov ? KL_EINTERNAL : KL_ENOMEM,
                            "trial %lld: its job carried %d of the sweep's %d values",
                            (long long)m->trial, n, tu->sw->nparams);
    }
    kl_sweep_overrides_free(t->ov, t->nov);
    t->ov = ov;
    t->nov = n;
    return KL_OK;
}
