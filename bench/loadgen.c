/*
 * loadgen: a small HTTP/1.1 load generator for cloudseed's benchmark.
 *
 * Why not wrk: every simulated VM must come from its own loopback source
 * address (bind() before connect()), and the agent listens on a Unix socket;
 * wrk can do neither. Why not Python: one core of Python cannot drive the
 * ~20k req/s the tiers are expected to serve on a 2-core machine.
 *
 * One thread, epoll (edge-triggered), non-blocking sockets. Each of the
 * --concurrency clients takes the next VM of the script, GETs every path of
 * the crawl in order (one request at a time, as cloud-init does), then takes
 * the next VM. In "close" mode every request has its own connection; in
 * "keepalive" mode a connection is kept for as long as the identity allows:
 * for the whole crawl when the VM has its own source address, across VMs when
 * it has none (an upstream tier's pool).
 *
 * Script file (text, one directive per line):
 *   H <header line>       header sent with every request (Host, User-Agent …)
 *   path <request-target> one step of the crawl, in order
 *   vm <source-ip | -> [value]
 *                         a new VM; "-" = no source binding; value replaces
 *                         "{}" in the paths (the VM's MAC, for the EC2 crawl)
 *   h <header line>       header of the current VM only
 *
 * Safety: targets and sources must be loopback (127.0.0.0/8, ::1) or a Unix
 * socket, and every run ends by itself (--duration, --max-crawls).
 *
 * Output on stdout: "# measure-start" and "# measure-end" lines as the
 * measured window opens and closes (the harness samples CPU there), then one
 * JSON object.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A metadata request line plus cloud-init's and the tiers' headers fit in 4 KiB. */
#define MAX_REQUEST_BYTES 4096
/* The largest metadata document (user-data) is 64 KiB; responses past this are refused. */
#define MAX_RESPONSE_BYTES (1024 * 1024)
#define MAX_CLIENTS 4096
/* Histogram: exact microseconds up to 100 ms, then milliseconds up to 60 s. */
#define HIST_FINE_US 100000
#define HIST_COARSE_MS 60000

/* PENDING: ready to start its next request (started from the main loop, so a
 * run of instant failures never recurses). BACKOFF: a Unix socket whose
 * backlog was full (connect() gave EAGAIN); retried a moment later. */
enum state { IDLE, PENDING, BACKOFF, CONNECTING, WRITING, READING };
enum mode { MODE_CLOSE, MODE_KEEPALIVE };

struct vm {
    int has_src;
    struct sockaddr_in src;
    char *headers; /* "Name: value\r\n"… */
    size_t headers_len;
    char *var;
};

struct client {
    int fd;
    enum state state;
    size_t vm;
    size_t step;
    int reused;     /* the request went out on a connection that served one before */
    int retried;    /* already retried once after a stale keep-alive connection */
    char req[MAX_REQUEST_BYTES];
    size_t req_len, req_off;
    char *buf;
    size_t len, cap;
    uint64_t started_ns, deadline_ns, retry_at_ns;
};

struct stats {
    uint64_t ok, errors, connects, reconnects, backoffs, crawls, bytes;
    uint64_t status[600];
    uint64_t connect_errors, io_errors, timeouts, parse_errors;
    uint64_t fine[HIST_FINE_US + 1];
    uint64_t coarse[HIST_COARSE_MS + 1];
    double sum_us;
    uint64_t max_us;
};

static struct {
    int unix_target;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int family;
    enum mode mode;
    int concurrency;
    double warmup_s, duration_s;
    uint64_t max_crawls;
    uint64_t timeout_ns;
    char *common;
    size_t common_len;
    char **paths;
    size_t npaths;
    struct vm *vms;
    size_t nvms;
} cfg;

static struct stats st;
static int epfd;
static size_t next_vm;
static uint64_t crawls_started;
static int measuring;
/* SIGTERM/SIGINT end the run early, with results (the harness's memory guard). */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static int is_loopback4(const struct in_addr *a) { return (ntohl(a->s_addr) >> 24) == 127; }

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

static void append(char **dst, size_t *len, const char *s, size_t n) {
    *dst = xrealloc(*dst, *len + n + 1);
    memcpy(*dst + *len, s, n);
    *len += n;
    (*dst)[*len] = 0;
}

static void parse_target(const char *t) {
    memset(&cfg.addr, 0, sizeof cfg.addr);
    if (strncmp(t, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&cfg.addr;
        if (strlen(t + 5) >= sizeof un->sun_path) die("unix socket path too long");
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, t + 5);
        cfg.addr_len = sizeof *un;
        cfg.family = AF_UNIX;
        cfg.unix_target = 1;
        return;
    }
    if (strncmp(t, "tcp:", 4) != 0) die("target must be tcp:HOST:PORT or unix:PATH");
    const char *hp = t + 4;
    const char *colon = strrchr(hp, ':');
    if (!colon) die("target needs a port");
    char host[64];
    size_t hl = (size_t)(colon - hp);
    if (hl >= sizeof host) die("bad host");
    memcpy(host, hp, hl);
    host[hl] = 0;
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535) die("bad port");
    if (host[0] == '[') { /* [::1] */
        memmove(host, host + 1, hl);
        char *e = strchr(host, ']');
        if (e) *e = 0;
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *)&cfg.addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&cfg.addr;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        if (!is_loopback4(&in4->sin_addr)) die("refusing a non-loopback target");
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        cfg.addr_len = sizeof *in4;
        cfg.family = AF_INET;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) die("refusing a non-loopback target");
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        cfg.addr_len = sizeof *in6;
        cfg.family = AF_INET6;
    } else {
        die("target host must be a numeric loopback address");
    }
}

static void load_script(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) die("cannot open script");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t vcap = 0, pcap = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0 || line[0] == '#') continue;
        if (strncmp(line, "H ", 2) == 0) {
            append(&cfg.common, &cfg.common_len, line + 2, (size_t)n - 2);
            append(&cfg.common, &cfg.common_len, "\r\n", 2);
        } else if (strncmp(line, "path ", 5) == 0) {
            if (cfg.npaths == pcap) {
                pcap = pcap ? pcap * 2 : 64;
                cfg.paths = xrealloc(cfg.paths, pcap * sizeof *cfg.paths);
            }
            cfg.paths[cfg.npaths++] = strdup(line + 5);
        } else if (strncmp(line, "vm ", 3) == 0) {
            if (cfg.nvms == vcap) {
                vcap = vcap ? vcap * 2 : 1024;
                cfg.vms = xrealloc(cfg.vms, vcap * sizeof *cfg.vms);
            }
            struct vm *v = &cfg.vms[cfg.nvms++];
            memset(v, 0, sizeof *v);
            char *space = strchr(line + 3, ' ');
            if (space) {
                *space = 0;
                v->var = strdup(space + 1);
            }
            if (strcmp(line + 3, "-") != 0) {
                v->has_src = 1;
                v->src.sin_family = AF_INET;
                if (inet_pton(AF_INET, line + 3, &v->src.sin_addr) != 1) die("bad vm source");
                if (!is_loopback4(&v->src.sin_addr)) die("refusing a non-loopback source");
            }
        } else if (strncmp(line, "h ", 2) == 0) {
            if (cfg.nvms == 0) die("h before vm");
            struct vm *v = &cfg.vms[cfg.nvms - 1];
            append(&v->headers, &v->headers_len, line + 2, (size_t)n - 2);
            append(&v->headers, &v->headers_len, "\r\n", 2);
        } else {
            die("unknown script directive");
        }
    }
    free(line);
    fclose(f);
    if (cfg.npaths == 0 || cfg.nvms == 0) die("script needs at least one path and one vm");
    if (!cfg.common) append(&cfg.common, &cfg.common_len, "", 0);
}

static void record_latency(uint64_t us) {
    if (us <= HIST_FINE_US)
        st.fine[us]++;
    else {
        uint64_t ms = us / 1000;
        st.coarse[ms > HIST_COARSE_MS ? HIST_COARSE_MS : ms]++;
    }
    st.sum_us += (double)us;
    if (us > st.max_us) st.max_us = us;
}

static double percentile(double q) {
    uint64_t total = st.ok;
    if (!total) return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank >= total) rank = total - 1;
    uint64_t seen = 0;
    for (uint64_t i = 0; i <= HIST_FINE_US; i++) {
        seen += st.fine[i];
        if (seen > rank) return (double)i;
    }
    for (uint64_t i = 0; i <= HIST_COARSE_MS; i++) {
        seen += st.coarse[i];
        if (seen > rank) return (double)i * 1000.0;
    }
    return (double)st.max_us;
}

static void close_client(struct client *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->reused = 0;
}

/* Start the client's current step: connect if needed, then write. */
static void start_request(struct client *c, uint64_t now);

static int open_connection(struct client *c) {
    struct vm *v = &cfg.vms[c->vm];
    int fd = socket(cfg.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (!cfg.unix_target) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (v->has_src) {
            /* Let connect() pick the port per 4-tuple, so 10,000 sources do not
             * each reserve a port at bind() time. */
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            if (bind(fd, (struct sockaddr *)&v->src, sizeof v->src) < 0) {
                close(fd);
                return -1;
            }
        }
    }
    st.connects++;
    c->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    if (connect(fd, (struct sockaddr *)&cfg.addr, cfg.addr_len) < 0) {
        if (cfg.unix_target && errno == EAGAIN) { /* listen backlog full */
            close_client(c);
            st.backoffs++;
            c->state = BACKOFF;
            c->retry_at_ns = now_ns() + 1000000ull;
            return 0;
        }
        if (errno != EINPROGRESS) return -1;
        c->state = CONNECTING;
        return 0;
    }
    c->state = WRITING;
    return 0;
}

static void build_request(struct client *c) {
    struct vm *v = &cfg.vms[c->vm];
    const char *path = cfg.paths[c->step];
    const char *hole = strstr(path, "{}");
    int hole_at = hole ? (int)(hole - path) : (int)strlen(path);
    int n = snprintf(c->req, sizeof c->req, "GET %.*s%s%s HTTP/1.1\r\n%s%s%s\r\n", hole_at,
                     path, hole && v->var ? v->var : "", hole ? hole + 2 : "",
                     cfg.common, v->headers ? v->headers : "",
                     cfg.mode == MODE_CLOSE ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof c->req) die("request too large");
    c->req_len = (size_t)n;
    c->req_off = 0;
    c->len = 0;
}

static void fail(struct client *c, uint64_t *counter);
static void drive(struct client *c);

static void start_request(struct client *c, uint64_t now) {
    if (c->state != BACKOFF) {
        build_request(c);
        c->started_ns = now;
        c->deadline_ns = now + cfg.timeout_ns;
    }
    if (c->fd < 0) {
        if (open_connection(c) < 0) {
            fail(c, &st.connect_errors);
            return;
        }
        if (c->state == BACKOFF) return;
    } else {
        c->reused = 1;
        c->state = WRITING;
    }
    drive(c);
}

/* Move the client to its next step (or next VM); IDLE when the run is over. */
static int stopping;

static void advance(struct client *c) {
    c->retried = 0;
    c->step++;
    if (c->step == cfg.npaths) {
        st.crawls++;
        c->step = 0;
        size_t prev = c->vm;
        if (stopping || (cfg.max_crawls && crawls_started >= cfg.max_crawls)) {
            close_client(c);
            c->state = IDLE;
            return;
        }
        c->vm = next_vm++ % cfg.nvms;
        crawls_started++;
        /* A guest cannot share another guest's connection. */
        if (cfg.vms[prev].has_src || cfg.vms[c->vm].has_src) close_client(c);
    }
    if (stopping) {
        close_client(c);
        c->state = IDLE;
        return;
    }
    c->state = PENDING;
}

static void fail(struct client *c, uint64_t *counter) {
    (*counter)++;
    st.errors++;
    close_client(c);
    advance(c);
}

/* Is the response in c->buf complete? Returns 1 and sets *status when it is. */
static int response_complete(struct client *c, int eof, int *status, int *keep) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return eof ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (c->len < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->buf + 9);
    *keep = c->buf[7] == '1';
    long clen = -1;
    int chunked = 0;
    for (char *p = memmem(c->buf, head, "\r\n", 2); p && p + 2 < c->buf + head; ) {
        char *line = p + 2;
        char *nl = memmem(line, (size_t)(c->buf + head - line), "\r\n", 2);
        if (!nl) break;
        size_t ll = (size_t)(nl - line);
        if (ll > 15 && strncasecmp(line, "content-length:", 15) == 0)
            clen = strtol(line + 15, NULL, 10);
        else if (ll > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0 &&
                 memmem(line, ll, "chunked", 7))
            chunked = 1;
        else if (ll > 11 && strncasecmp(line, "connection:", 11) == 0 &&
                 memmem(line, ll, "close", 5))
            *keep = 0;
        p = nl;
    }
    if (clen >= 0) return c->len >= head + (size_t)clen ? 1 : (eof ? -1 : 0);
    if (chunked) {
        if (c->len >= head + 5 && memcmp(c->buf + c->len - 5, "0\r\n\r\n", 5) == 0) return 1;
        return eof ? -1 : 0;
    }
    *keep = 0;
    return eof ? 1 : 0; /* body runs to the end of the connection */
}

static void finish(struct client *c, int status, int keep) {
    uint64_t t = now_ns();
    if (measuring) {
        st.bytes += c->len;
        if (status >= 100 && status < 600) st.status[status]++;
        if (status >= 200 && status < 300) {
            st.ok++;
            record_latency((t - c->started_ns) / 1000);
        } else {
            st.errors++;
        }
    }
    if (!keep || cfg.mode == MODE_CLOSE) close_client(c);
    advance(c);
}

static void drive(struct client *c) {
    for (;;) {
        if (c->state == CONNECTING) {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err == EINPROGRESS) return;
            if (err) {
                fail(c, &st.connect_errors);
                return;
            }
            /* Still in progress when nothing is writable yet: wait for EPOLLOUT. */
            struct sockaddr_storage peer;
            socklen_t pl = sizeof peer;
            if (!cfg.unix_target && getpeername(c->fd, (struct sockaddr *)&peer, &pl) < 0) {
                if (errno == ENOTCONN) return;
            }
            c->state = WRITING;
        }
        if (c->state == WRITING) {
            while (c->req_off < c->req_len) {
                ssize_t n = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
                if (n < 0) {
                    if (errno == EAGAIN || errno == ENOTCONN) return;
                    if (c->reused && !c->retried) goto stale;
                    fail(c, &st.io_errors);
                    return;
                }
                c->req_off += (size_t)n;
            }
            c->state = READING;
        }
        if (c->state == READING) {
            for (;;) {
                if (c->cap - c->len < 16384) {
                    if (c->cap >= MAX_RESPONSE_BYTES) {
                        fail(c, &st.parse_errors);
                        return;
                    }
                    c->cap = c->cap ? c->cap * 2 : 32768;
                    c->buf = xrealloc(c->buf, c->cap);
                }
                ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
                int status = 0, keep = 1, done;
                if (n > 0) {
                    c->len += (size_t)n;
                    done = response_complete(c, 0, &status, &keep);
                } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                    /* A keep-alive connection the server closed while idle: try
                     * once more on a fresh one; that is not the server's error. */
                    if (c->len == 0 && c->reused && !c->retried) goto stale;
                    if (n < 0) {
                        fail(c, &st.io_errors);
                        return;
                    }
                    done = response_complete(c, 1, &status, &keep);
                } else {
                    return; /* EAGAIN */
                }
                if (done < 0) {
                    fail(c, &st.parse_errors);
                    return;
                }
                if (done > 0) {
                    finish(c, status, keep);
                    return;
                }
            }
        }
        return;
    stale:
        st.reconnects++;
        close_client(c);
        c->retried = 1;
        c->state = PENDING; /* keeps started_ns: the retry is part of this request */
        c->retry_at_ns = 1;
        return;
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --target tcp:127.0.0.1:PORT|unix:PATH --script FILE\n"
            "               [--mode close|keepalive] [--concurrency N] [--warmup S]\n"
            "               [--duration S] [--max-crawls N] [--timeout-ms N]\n");
    exit(2);
}

static void print_json(double elapsed) {
    printf("{\"requests\": %llu, \"ok\": %llu, \"errors\": %llu, \"elapsed_s\": %.6f, "
           "\"rps\": %.1f, \"crawls\": %llu, \"connects\": %llu, \"reconnects\": %llu, "
           "\"backoffs\": %llu, \"bytes\": %llu, ",
           (unsigned long long)(st.ok + st.errors), (unsigned long long)st.ok,
           (unsigned long long)st.errors, elapsed,
           elapsed > 0 ? (double)st.ok / elapsed : 0.0, (unsigned long long)st.crawls,
           (unsigned long long)st.connects, (unsigned long long)st.reconnects,
           (unsigned long long)st.backoffs, (unsigned long long)st.bytes);
    printf("\"error_kinds\": {\"connect\": %llu, \"io\": %llu, \"timeout\": %llu, "
           "\"parse\": %llu}, ",
           (unsigned long long)st.connect_errors, (unsigned long long)st.io_errors,
           (unsigned long long)st.timeouts, (unsigned long long)st.parse_errors);
    printf("\"status\": {");
    int first = 1;
    for (int s = 100; s < 600; s++) {
        if (!st.status[s]) continue;
        printf("%s\"%d\": %llu", first ? "" : ", ", s, (unsigned long long)st.status[s]);
        first = 0;
    }
    printf("}, \"latency_us\": {\"mean\": %.1f, \"p50\": %.0f, \"p90\": %.0f, \"p99\": %.0f, "
           "\"p999\": %.0f, \"max\": %llu}}\n",
           st.ok ? st.sum_us / (double)st.ok : 0.0, percentile(0.50), percentile(0.90),
           percentile(0.99), percentile(0.999), (unsigned long long)st.max_us);
}

int main(int argc, char **argv) {
    const char *target = NULL, *script = NULL;
    cfg.mode = MODE_KEEPALIVE;
    cfg.concurrency = 50;
    cfg.duration_s = 5;
    cfg.timeout_ns = 5000ull * 1000000ull;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--target")) target = v;
        else if (!strcmp(a, "--script")) script = v;
        else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "close")) cfg.mode = MODE_CLOSE;
            else if (!strcmp(v, "keepalive")) cfg.mode = MODE_KEEPALIVE;
            else usage();
        } else if (!strcmp(a, "--concurrency")) cfg.concurrency = atoi(v);
        else if (!strcmp(a, "--warmup")) cfg.warmup_s = atof(v);
        else if (!strcmp(a, "--duration")) cfg.duration_s = atof(v);
        else if (!strcmp(a, "--max-crawls")) cfg.max_crawls = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--timeout-ms")) cfg.timeout_ns = strtoull(v, NULL, 10) * 1000000ull;
        else usage();
        i++;
    }
    if (!target || !script) usage();
    if (cfg.concurrency < 1 || cfg.concurrency > MAX_CLIENTS) die("concurrency out of range");
    /* Every run ends by itself: a bounded window even with --max-crawls. */
    if (cfg.duration_s <= 0 || cfg.duration_s > 3600) die("duration must be in (0, 3600] s");
    parse_target(target);
    load_script(script);

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct client *clients = calloc((size_t)cfg.concurrency, sizeof *clients);
    if (!clients) die("out of memory");

    uint64_t t0 = now_ns();
    uint64_t measure_at = t0 + (uint64_t)(cfg.warmup_s * 1e9);
    uint64_t end_at = measure_at + (uint64_t)(cfg.duration_s * 1e9);
    measuring = cfg.warmup_s <= 0;
    if (measuring) {
        printf("# measure-start\n");
        fflush(stdout);
    }
    uint64_t measure_start = measuring ? t0 : 0;

    for (int i = 0; i < cfg.concurrency; i++) {
        struct client *c = &clients[i];
        c->fd = -1;
        c->state = IDLE;
        if (cfg.max_crawls && crawls_started >= cfg.max_crawls) continue;
        c->vm = next_vm++ % cfg.nvms;
        crawls_started++;
        c->state = PENDING;
    }

    struct epoll_event events[256];
    for (;;) {
        int busy = 0;
        for (int i = 0; i < cfg.concurrency; i++) busy |= clients[i].state != IDLE;
        if (!busy) break;
        uint64_t t = now_ns();
        int pending = 0;
        for (int i = 0; i < cfg.concurrency; i++) {
            struct client *c = &clients[i];
            if (c->state == PENDING) {
                /* retry_at_ns == 1 marks a stale keep-alive retry: same request. */
                int same = c->retry_at_ns == 1;
                c->retry_at_ns = 0;
                if (same) {
                    c->state = BACKOFF; /* reuse the built request and its start time */
                    c->req_off = 0;
                    c->len = 0;
                }
                start_request(c, t);
            } else if (c->state == BACKOFF && t >= c->retry_at_ns) {
                start_request(c, t);
            }
            pending |= c->state == PENDING || c->state == BACKOFF;
        }
        int n = epoll_wait(epfd, events, 256, pending ? 1 : 10);
        for (int i = 0; i < n; i++) drive((struct client *)events[i].data.ptr);
        t = now_ns();
        if (!measuring && t >= measure_at) {
            memset(&st, 0, sizeof st);
            measuring = 1;
            measure_start = t;
            printf("# measure-start\n");
            fflush(stdout);
        }
        if ((t >= end_at || stop_requested) && !stopping) {
            /* Requests in flight now are abandoned, not counted. */
            stopping = 1;
            for (int i = 0; i < cfg.concurrency; i++) {
                close_client(&clients[i]);
                clients[i].state = IDLE;
            }
            break;
        }
        for (int i = 0; i < cfg.concurrency; i++) {
            struct client *c = &clients[i];
            if (c->state >= BACKOFF && t > c->deadline_ns) fail(c, &st.timeouts);
        }
    }
    uint64_t t_end = now_ns();
    if (!measuring) { /* the run ended (max-crawls) inside the warm-up */
        measure_start = t0;
    }
    printf("# measure-end\n");
    print_json((double)(t_end - measure_start) / 1e9);
    return 0;
}
