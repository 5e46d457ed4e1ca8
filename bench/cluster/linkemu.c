/* linkemu: the link emulator behind bench/cluster/cluster.sh. One process holds the TAP device
 * `kl0` of every node namespace (kiln-node0 .. kiln-node{N-1}) and forwards Ethernet frames
 * between them as a switch whose ports have a set rate and whose links a set one-way latency:
 *   - a frame from node i to node j leaves i's port when that port is free and takes
 *     len * 8 / rate seconds to serialise; it then queues for j's port (incast shares it), and is
 *     written to j's TAP one-way-latency (+ uniform jitter in [0, jitter]) after it left j's port;
 *   - frames on one (i, j) pair are never reordered by jitter (a real link does not reorder);
 *   - a port whose backlog exceeds the queue limit drops the frame (tail drop), as a switch does.
 * Routing is static: node i's MAC is 02:6b:6c:00:00:i (cluster.sh sets it), frames to another
 * MAC are flooded (ARP). Due frames sit in a min-heap of due times; one epoll loop waits on the
 * TAP fds and a timerfd armed for the earliest due frame (timer slack set to 1 ns).
 * Started by cluster.sh; SIGTERM or SIGINT ends it and prints its counters and CPU time. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_NODES  16
#define MAX_FRAME  65550
#define READ_BATCH 64

typedef struct frame {
    int64_t due; /* ns, CLOCK_MONOTONIC */
    uint64_t seq;
    int dst;
    int len;
    struct frame *next_free;
    unsigned char data[];
} frame;

typedef struct port {
    int fd;
    int64_t tx_free; /* when this node's port finishes sending what it holds */
    int64_t rx_free; /* when the switch's port towards this node is free */
    uint64_t frames_in, bytes_in, frames_out, bytes_out, drops;
} port;

typedef struct emu {
    int n;
    double ns_per_byte; /* serialisation: 8e9 / rate in bit/s */
    int64_t delay_ns, jitter_ns, queue_ns;
    int mtu;
    port ports[MAX_NODES];
    int64_t last_due[MAX_NODES][MAX_NODES]; /* per (src, dst): keeps jittered frames in order */
    frame **heap;
    size_t heap_len, heap_cap;
    frame *free_list;
    size_t frames_alloc, frames_cap;
    uint64_t seq;
    uint64_t rng;
} emu;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t next_rand(emu *e) /* xorshift64: jitter only needs to be cheap and spread */
{
    e->rng ^= e->rng << 13;
    e->rng ^= e->rng >> 7;
    e->rng ^= e->rng << 17;
    return e->rng;
}

static int heap_less(const frame *a, const frame *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_push(emu *e, frame *f)
{
    size_t i = e->heap_len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(f, e->heap[p]))
            break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = f;
}

static frame *heap_pop(emu *e)
{
    frame *top = e->heap[0], *last = e->heap[--e->heap_len];
    size_t i = 0, n = e->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_less(e->heap[c + 1], e->heap[c]))
            c++;
        if (!heap_less(e->heap[c], last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0)
        e->heap[i] = last;
    return top;
}

static frame *frame_get(emu *e)
{
    if (e->free_list) {
        frame *f = e->free_list;
        e->free_list = f->next_free;
        return f;
    }
    if (e->frames_alloc == e->frames_cap)
        return NULL;
    frame *f = malloc(sizeof *f + (size_t)e->mtu + 64);
    if (f)
        e->frames_alloc++;
    return f;
}

static void frame_put(emu *e, frame *f)
{
    f->next_free = e->free_list;
    e->free_list = f;
}

/* Attaches to the persistent TAP `kl0` that cluster.sh made inside namespace `ns`. */
static int open_tap(const char *ns)
{
    char path[256];
    snprintf(path, sizeof path, "/var/run/netns/%s", ns);
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || nsfd < 0) {
        fprintf(stderr, "linkemu: cannot open %s: %s\n", nsfd < 0 ? path : "/proc/self/ns/net",
                strerror(errno));
        return -1;
    }
    int fd = -1;
    if (setns(nsfd, CLONE_NEWNET) != 0) {
        fprintf(stderr, "linkemu: setns %s: %s\n", ns, strerror(errno));
    } else {
        fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        struct ifreq ifr = {0};
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
        snprintf(ifr.ifr_name, IFNAMSIZ, "kl0");
        if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) != 0) {
            fprintf(stderr, "linkemu: cannot attach to kl0 in %s: %s\n", ns, strerror(errno));
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
        if (setns(self, CLONE_NEWNET) != 0) {
            fprintf(stderr, "linkemu: cannot return to its own namespace: %s\n", strerror(errno));
            exit(1);
        }
    }
    close(nsfd);
    close(self);
    return fd;
}

/* Node index of a destination MAC 02:6b:6c:00:00:i, or -1 (flood). */
static int mac_node(const emu *e, const unsigned char *mac)
{
    static const unsigned char prefix[5] = {0x02, 0x6b, 0x6c, 0x00, 0x00};
    if (memcmp(mac, prefix, 5) != 0 || mac[5] >= e->n)
        return -1;
    return mac[5];
}

/* Schedules one copy of frame data from src to dst, or counts a drop. */
static void schedule(emu *e, int src, int dst, const unsigned char *data, int len, int64_t now)
{
    port *s = &e->ports[src], *d = &e->ports[dst];
    int64_t ser = (int64_t)((double)len * e->ns_per_byte);
    int64_t start = s->tx_free > now ? s->tx_free : now;
    if (start - now > e->queue_ns || (d->rx_free - now) > e->queue_ns) {
        s->drops++;
        return;
    }
    frame *f = frame_get(e);
    if (!f || e->heap_len == e->heap_cap) {
        if (f)
            frame_put(e, f);
        s->drops++;
        return;
    }
    s->tx_free = start + ser;
    int64_t out = s->tx_free > d->rx_free ? s->tx_free : d->rx_free; /* leaves dst's port */
    if (out > s->tx_free)
        out += ser; /* it had to wait for the port, so it serialises there after */
    d->rx_free = out;
    int64_t due = out + e->delay_ns;
    if (e->jitter_ns > 0)
        due += (int64_t)(next_rand(e) % (uint64_t)(e->jitter_ns + 1));
    if (due < e->last_due[src][dst])
        due = e->last_due[src][dst];
    e->last_due[src][dst] = due;
    f->due = due;
    f->seq = e->seq++;
    f->dst = dst;
    f->len = len;
    memcpy(f->data, data, (size_t)len);
    heap_push(e, f);
}

static void read_port(emu *e, int src, unsigned char *buf)
{
    port *p = &e->ports[src];
    for (int k = 0; k < READ_BATCH; k++) {
        ssize_t len = read(p->fd, buf, MAX_FRAME);
        if (len < 0)
            return; /* EAGAIN: drained; anything else: the device went away, seen at exit */
        if (len < 14 || len > e->mtu + 18)
            continue;
        p->frames_in++;
        p->bytes_in += (uint64_t)len;
        int64_t now = now_ns();
        int dst = mac_node(e, buf);
        if (dst == src)
            continue;
        if (dst >= 0) {
            schedule(e, src, dst, buf, (int)len, now);
            continue;
        }
        for (int j = 0; j < e->n; j++)
            if (j != src)
                schedule(e, src, j, buf, (int)len, now);
    }
}

static void deliver_due(emu *e)
{
    int64_t now = now_ns();
    while (e->heap_len > 0 && e->heap[0]->due <= now) {
        frame *f = heap_pop(e);
        port *d = &e->ports[f->dst];
        if (write(d->fd, f->data, (size_t)f->len) == f->len) {
            d->frames_out++;
            d->bytes_out += (uint64_t)f->len;
        } else {
            d->drops++;
        }
        frame_put(e, f);
    }
}

static void arm_timer(emu *e, int tfd)
{
    struct itimerspec its = {0};
    if (e->heap_len > 0) {
        int64_t due = e->heap[0]->due;
        its.it_value.tv_sec = due / 1000000000;
        its.it_value.tv_nsec = due % 1000000000;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void print_stats(const emu *e, double wall_s)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    uint64_t frames = 0, bytes = 0, drops = 0;
    for (int i = 0; i < e->n; i++) {
        frames += e->ports[i].frames_out;
        bytes += e->ports[i].bytes_out;
        drops += e->ports[i].drops;
    }
    fprintf(stderr,
            "linkemu: %d nodes, %.1f s: %llu frames, %.1f MB forwarded, %llu dropped; "
            "cpu %.2f s (%.0f%% of a core)\n",
            e->n, wall_s, (unsigned long long)frames, (double)bytes / 1e6,
            (unsigned long long)drops, cpu, wall_s > 0 ? 100.0 * cpu / wall_s : 0.0);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: linkemu --rate-mbit R --delay-us D [--jitter-us J] [--queue-us Q] [--mtu M]\n"
            "               NS0 NS1 [NS2 ...]   (namespaces, each with a persistent TAP kl0)\n"
            "  --queue-us: a port's queue limit as time to drain it (default 2000)\n");
}

static int parse_args(int argc, char **argv, emu *e, int *first_ns)
{
    double rate = 0, delay = -1, jitter = 0, queue = 2000;
    int mtu = 9000, i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        char *end;
        double x = strtod(v, &end);
        if (*end != '\0' || !(x >= 0) || x > 1e9) {
            fprintf(stderr, "linkemu: %s wants a number in [0, 1e9], not '%s'\n", a, v);
            return -1;
        }
        if (!strcmp(a, "--rate-mbit"))
            rate = x;
        else if (!strcmp(a, "--delay-us"))
            delay = x;
        else if (!strcmp(a, "--jitter-us"))
            jitter = x;
        else if (!strcmp(a, "--queue-us"))
            queue = x;
        else if (!strcmp(a, "--mtu"))
            mtu = (int)x;
        else
            return -1;
    }
    int n = argc - i;
    if (!(rate > 0) || delay < 0 || n < 2 || n > MAX_NODES || mtu < 576 || mtu > 65500) {
        if (n > MAX_NODES)
            fprintf(stderr, "linkemu: at most %d nodes\n", MAX_NODES);
        return -1;
    }
    e->n = n;
    e->ns_per_byte = 8e3 / rate; /* rate in Mbit/s: 8 bits / (rate * 1e6 bit/s) in ns */
    e->delay_ns = (int64_t)(delay * 1e3);
    e->jitter_ns = (int64_t)(jitter * 1e3);
    e->queue_ns = (int64_t)(queue * 1e3);
    e->mtu = mtu;
    *first_ns = i;
    return 0;
}

int main(int argc, char **argv)
{
    emu e = {0};
    int first;
    if (parse_args(argc, argv, &e, &first) != 0) {
        usage();
        return 2;
    }
    prctl(PR_SET_TIMERSLACK, 1UL);
    e.rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)now_ns();
    e.frames_cap = 65536;
    e.heap_cap = e.frames_cap;
    e.heap = malloc(e.heap_cap * sizeof *e.heap);
    unsigned char *buf = malloc(MAX_FRAME);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!e.heap || !buf || ep < 0 || tfd < 0) {
        fprintf(stderr, "linkemu: out of memory or file descriptors\n");
        return 1;
    }
    for (int i = 0; i < e.n; i++) {
        e.ports[i].fd = open_tap(argv[first + i]);
        if (e.ports[i].fd < 0)
            return 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, e.ports[i].fd, &ev);
    }
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = MAX_NODES};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    fprintf(stdout, "linkemu: ready, %d nodes\n", e.n);
    fflush(stdout);

    int64_t t0 = now_ns();
    struct epoll_event evs[MAX_NODES + 1];
    while (!stop_requested) {
        arm_timer(&e, tfd);
        int k = epoll_wait(ep, evs, MAX_NODES + 1, -1);
        if (k < 0 && errno != EINTR) {
            fprintf(stderr, "linkemu: epoll_wait: %s\n", strerror(errno));
            break;
        }
        for (int i = 0; i < k; i++) {
            if (evs[i].data.u32 == MAX_NODES) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                    break;
            } else {
                read_port(&e, (int)evs[i].data.u32, buf);
            }
        }
        deliver_due(&e);
    }
    print_stats(&e, (double)(now_ns() - t0) * 1e-9);
    return 0;
}
