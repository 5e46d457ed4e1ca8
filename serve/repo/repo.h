/* Private to serve/: the repository (serve/repo/). Models and versions from DIR/<name>/<version>/
 * and each model's config.yaml: loading before traffic, retiring, polling, the repository API,
 * and the versions online learning publishes. http/ calls it; the patterns, below it, reach
 * kl__serve_acquire and kl__serve_publish through the server's acquire and publish. */
#ifndef KILN_SERVE_REPO_H
#define KILN_SERVE_REPO_H

#include "serve/serve_impl.h"

/* Loads what the options name (a file or the whole repository). */
kl_status kl__serve_load_all(kl_server *s, kl_error *err);
/* (Re)loads model name from the repository: KL_ENOTFOUND when it has no such model, KL_EINVAL
 * when the model cannot load as it is. Unloads it: KL_ENOTFOUND when none is loaded. */
kl_status kl__serve_load_model(kl_server *s, const char *name, kl_error *err);
kl_status kl__serve_unload_model(kl_server *s, const char *name, kl_error *err);
/* One pass of the repository poll: new versions, new models, retired versions. */
void kl__serve_poll(kl_server *s);
/* Brings model m in line with its folder (and its learner's publish_dir) as a poll does, after
 * its learner wrote version number there: KL_OK when that version serves then. Then prunes the
 * learner's versions past online_learning.keep_versions that nothing serves. */
kl_status kl__serve_publish(kl_server *s, kl__model *m, int64_t number, kl_error *err);
/* The served version v of model name (v < 0: the latest), with a reference the caller drops
 * with kl__version_release; NULL with a message otherwise: KL_ENOTFOUND for an unknown model or
 * version, KL_EIO for one with no version ready. */
kl__version *kl__serve_acquire(kl_server *s, const char *name, int64_t v, kl_error *err);
void kl__serve_free_models(kl_server *s);

#endif
