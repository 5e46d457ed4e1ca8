/* kiln serve: parses the options, starts the server (serve/), says where it listens,
 * and waits for SIGTERM or SIGINT, on which it stops accepting, answers what is in flight and
 * exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/device.h"
#include "kiln/serve.h"
#include "kiln/stop.h"
#include "kiln/track.h"

static const char serve_help[] =
    "usage: kiln serve MODEL.h5 [options]\n"
    "       kiln serve --repository DIR [options]\n"
    "\n"
    "Serves models from kiln export over HTTP with the Open Inference Protocol v2 (the REST API\n"
    "of KServe, Triton and MLServer): GET /v2/health/live|ready, GET /v2/models/NAME[/versions/V]\n"
    "[/ready|/stats], POST /v2/models/NAME[/versions/V]/infer with JSON tensors or Triton's\n"
    "binary tensor data, and POST /v2/repository/index|models/NAME/load|unload. Requests are\n"
    "batched per model version and run on instance threads. GET /metrics answers Prometheus\n"
    "metrics: requests, latencies, batch sizes, queues and the drift of inputs and predictions\n"
    "from the training data. See docs/serve.md.\n"
    "\n"
    "A repository holds DIR/<name>/<version>/model.h5 (or model.onnx, or an XGBoost\n"
    "xgboost.json or xgboost.ubj) and an optional DIR/<name>/config.yaml\n"
    "(max_batch_size, dynamic_batching, max_queue_delay_us, instances, device, gpu, max_queue,\n"
    "versions, monitoring, online_learning).\n"
    "One MODEL.h5 (or .onnx, or an XGBoost .json or .ubj) is served as its file name's stem\n"
    "(or --name), version 1.\n"
    "\n"
    "options:\n"
    "  --repository DIR        serve every model in DIR\n"
    "  --name NAME             the name to serve MODEL.h5 under\n"
    "  --host ADDR             the address to bind (default 127.0.0.1; any other address needs\n"
    "                          --auth-token)\n"
    "  --port N                the TCP port (default 8000; 0: any free port, printed)\n"
    "  --auth-token TOKEN      require 'Authorization: Bearer TOKEN' on the repository and\n"
    "                          feedback endpoints (also read from KILN_AUTH_TOKEN)\n"
    "  --poll SECONDS          rescan the repository this often: new versions, and versions\n"
    "                          whose model.h5 changed, load before they take traffic; retired\n"
    "                          ones finish what they hold\n"
    "  --max-batch-size N      default for models without a config.yaml key (64)\n"
    "  --max-queue-delay-us N  default wait for a batch to fill (0)\n"
    "  --instances N           default instances per version (0: one per two cores, on CUDA one\n"
    "                          per GPU used)\n"
    "  --device cpu|cuda|auto  default device the instances compute on (cpu)\n"
    "  --gpu N                 default GPU on CUDA (every instance on visible GPU N; default:\n"
    "                          instance i on GPU i mod the visible GPUs)\n"
    "  --max-queue N           default requests waiting per version before 503 (1024)\n"
    "  --no-batching           default: run every request alone\n"
    "  --max-body-mb N         largest request body, else 413 (64)\n"
    "  --timeout SECONDS       close connections idle this long (30)\n"
    "  --header-timeout SECONDS\n"
    "                          a request's headers must arrive whole within this, from its\n"
    "                          start, else 408 and the connection closes (10)\n"
    "  --body-timeout SECONDS  a request's body must arrive whole within this, from its\n"
    "                          headers (60)\n"
    "  --max-connections N     connections open at once; more are answered 503 (1000)\n"
    "  --max-connections-per-client N\n"
    "                          connections open at once from one client address; more are\n"
    "                          closed at once (128; 0: no limit, e.g. behind a proxy)\n"
    "  --queue-timeout SECONDS answer 503 to requests queued longer (60)\n"
    "  --http-threads N        threads reading and writing HTTP (0: one per core)\n"
    "  --access-log FILE       append one JSON line per request to FILE (- for stderr)\n"
    "  --drift-window N        default samples in the drift windows (1000; 0: no drift\n"
    "                          monitoring)\n"
    "  --psi-threshold X       default PSI from which inputs or predictions count as drifted\n"
    "                          (0.2)\n"
    "  -h, --help              show this help\n";

static int int_arg(const char *opt, const char *v, long long lo, long long hi, long long *out)
{
    if (!kl__cli_int(v, lo, hi, out))
        return kl__cli_usage_error("serve", "%s '%s': give a whole number from %lld to %lld", opt,
                                   v, lo, hi);
    return 0;
}

static int parse(int argc, char **argv, kl_serve_options *o)
{
    static const char *const valued[] = {"--repository",
                                         "--name",
                                         "--host",
                                         "--port",
                                         "--auth-token",
                                         "--poll",
                                         "--max-batch-size",
                                         "--max-queue-delay-us",
                                         "--instances",
                                         "--device",
                                         "--gpu",
                                         "--max-queue",
                                         "--max-body-mb",
                                         "--timeout",
                                         "--http-threads",
                                         "--queue-timeout",
                                         "--access-log",
                                         "--drift-window",
                                         "--psi-threshold",
                                         "--header-timeout",
                                         "--body-timeout",
                                         "--max-connections",
                                         "--max-connections-per-client"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(serve_help, stdout);
            return -1;
        }
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
            if (!strcmp(a, valued[k])) {
                if (i + 1 >= argc)
                    return kl__cli_usage_error("serve", "%s needs a value", a);
                v = argv[++i];
            }
        long long n = 0;
        int rc = 0;
        if (!strcmp(a, "--repository")) {
            o->repository = v;
        } else if (!strcmp(a, "--name")) {
            o->name = v;
        } else if (!strcmp(a, "--host")) {
            o->host = v;
        } else if (!strcmp(a, "--port")) {
            rc = int_arg(a, v, 0, 65535, &n);
            o->port = (int)n;
        } else if (!strcmp(a, "--auth-token")) {
            o->auth_token = v;
        } else if (!strcmp(a, "--poll")) {
            char *end;
            o->poll_s = strtod(v, &end);
            if (*end || !(o->poll_s > 0 && o->poll_s <= 86400))
                return kl__cli_usage_error("serve", "--poll '%s': give seconds, e.g. 2 or 0.5", v);
        } else if (!strcmp(a, "--max-batch-size")) {
            rc = int_arg(a, v, 1, 65536, &n);
            o->defaults.max_batch_size = (int)n;
        } else if (!strcmp(a, "--max-queue-delay-us")) {
            rc = int_arg(a, v, 0, 10000000, &n);
            o->defaults.max_queue_delay_us = n;
        } else if (!strcmp(a, "--instances")) {
            rc = int_arg(a, v, 0, 256, &n);
            o->defaults.instances = (int)n;
        } else if (!strcmp(a, "--device")) {
            int d = kl_train_device_parse(v);
            if (d < 0)
                return kl__cli_usage_error("serve", "--device '%s': give cpu, cuda or auto", v);
            o->defaults.device = (kl_train_device)d;
        } else if (!strcmp(a, "--gpu")) {
            rc = int_arg(a, v, 0, 255, &n);
            o->defaults.gpu = (int)n;
        } else if (!strcmp(a, "--max-queue")) {
            rc = int_arg(a, v, 1, 1000000, &n);
            o->defaults.max_queue = (int)n;
        } else if (!strcmp(a, "--no-batching")) {
            o->defaults.dynamic_batching = false;
        } else if (!strcmp(a, "--max-body-mb")) {
            rc = int_arg(a, v, 1, 4096, &n);
            o->max_body = n << 20;
        } else if (!strcmp(a, "--timeout")) {
            rc = int_arg(a, v, 1, 3600, &n);
            o->timeout_s = (int)n;
        } else if (!strcmp(a, "--header-timeout")) {
            rc = int_arg(a, v, 1, 3600, &n);
            o->header_timeout_s = (int)n;
        } else if (!strcmp(a, "--body-timeout")) {
            rc = int_arg(a, v, 1, 86400, &n);
            o->body_timeout_s = (int)n;
        } else if (!strcmp(a, "--max-connections")) {
            rc = int_arg(a, v, 1, 100000, &n);
            o->max_connections = (int)n;
        } else if (!strcmp(a, "--max-connections-per-client")) {
            rc = int_arg(a, v, 0, 100000, &n);
            o->max_per_client = n ? (int)n : -1; /* 0: no limit */
        } else if (!strcmp(a, "--queue-timeout")) {
            char *end;
            o->queue_timeout_s = strtod(v, &end);
            if (*end || !(o->queue_timeout_s > 0 && o->queue_timeout_s <= 3600))
                return kl__cli_usage_error("serve", "--queue-timeout '%s': give seconds, e.g. 10",
                                           v);
        } else if (!strcmp(a, "--access-log")) {
            o->access_log = v;
        } else if (!strcmp(a, "--drift-window")) {
            rc = int_arg(a, v, 0, 1000000, &n);
            o->defaults.drift_window = n;
        } else if (!strcmp(a, "--psi-threshold")) {
            char *end;
            o->defaults.psi_threshold = strtod(v, &end);
            if (*end || !(o->defaults.psi_threshold > 0 && o->defaults.psi_threshold <= 100))
                return kl__cli_usage_error("serve", "--psi-threshold '%s': give a PSI, e.g. 0.2",
                                           v);
        } else if (!strcmp(a, "--http-threads")) {
            rc = int_arg(a, v, 0, 256, &n);
            o->http_threads = (int)n;
        } else if (a[0] == '-' && a[1]) {
            return kl__cli_usage_error("serve", "unknown option '%s'", a);
        } else if (o->model) {
            return kl__cli_usage_error("serve",
                                       "one model file please (or --repository), got "
                                       "'%s' and '%s'",
                                       o->model, a);
        } else {
            o->model = a;
        }
        if (rc)
            return rc;
    }
    if (!o->model && !o->repository)
        return kl__cli_usage_error("serve", "what to serve? give MODEL.h5 or --repository DIR");
    if (o->model && o->repository)
        return kl__cli_usage_error("serve", "give MODEL.h5 or --repository DIR, not both");
    if (o->name && !o->model)
        return kl__cli_usage_error("serve", "--name is for a single MODEL.h5");
    if (o->poll_s > 0 && !o->repository)
        return kl__cli_usage_error("serve", "--poll watches a --repository");
    return 0;
}

/* Each version online learning publishes gets a run record (track/), which the server, a peer of
 * tracking, cannot write itself. */
static void record_publication(void *ctx, const kl_serve_publication *p)
{
    (void)ctx;
    kl_online_run_info info = {.dir = p->dir,
                               .model = p->model,
                               .version = p->version,
                               .cfg = p->cfg,
                               .settings = p->settings,
                               .parent = p->lineage->parent,
                               .parent_version = p->lineage->parent_version,
                               .source_run = p->lineage->run,
                               .source_checkpoint = p->lineage->checkpoint,
                               .steps = p->steps,
                               .new_steps = p->new_steps,
                               .feedback = p->feedback,
                               .loss = p->loss,
                               .start = p->start};
    kl_run_record_online(&info);
}

int kl__cli_serve(int argc, char **argv)
{
    kl_serve_options o = {.port = 8000, .on_publish = record_publication};
    kl_serve_model_config_defaults(&o.defaults);
    o.auth_token = getenv("KILN_AUTH_TOKEN");
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    kl_stop_catch_signals();
    kl_error err = {0};
    kl_server *s = NULL;
    if (kl_server_start(&o, &s, &err) != KL_OK) {
        fprintf(stderr, "kiln serve: %s\n", err.msg);
        return 1;
    }
    const char *host = o.host ? o.host : "127.0.0.1";
    fprintf(stderr, "kiln serve: listening on http://%s%s%s:%d (Open Inference Protocol v2)\n",
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", kl_server_port(s));
    kl_status st = kl_server_wait(s, &err);
    kl_server_free(s);
    if (st != KL_OK) {
        fprintf(stderr, "kiln serve: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "kiln serve: stopped\n");
    return 0;
}
