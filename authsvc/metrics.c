/*
 * metrics.c: sys/metrics in the Prometheus text format 0.0.4 (issue 6).
 *
 * Counters are process-wide atomics bumped on the request path without a lock; labels come from
 * bounded sets (route patterns of the route table, statuses, auth mounts up to MAX_MOUNTS), never
 * from raw request paths, so a scanner cannot grow the output. Everything resets at restart, as
 * Prometheus counters may.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "authsvc/server.h"
#include "common/auditchain.h"

#define MAX_ROUTES 96
#define MAX_MOUNTS 64
#define MAX_GENS 16

static const int codes[] = {200, 204, 400, 403, 404, 405, 413, 429, 500, 503};
#define NCODES (sizeof codes / sizeof codes[0])

struct route_stats {
    _Atomic uint64_t by_code[NCODES + 1]; /* last: any other status */
    struct as_hist latency;
};
/* [as_route_index] for matched routes; the last row for requests that matched none. */
static struct route_stats routes_st[MAX_ROUTES + 1];

/* Login outcomes by status; the label says what the status means for a login. */
static const struct {
    int status;
    const char *result;
} login_results[] = {
    {200, "success"},      {400, "invalid"}, {403, "denied"},
    {429, "rate_limited"}, {500, "error"},   {503, "store_unavailable"},
};
#define NRESULTS (sizeof login_results / sizeof login_results[0])

struct mount_stats {
    char name[72]; /* mount paths are at most 64 characters of [a-z0-9._-] */
    _Atomic uint64_t by_result[NRESULTS + 1]; /* last: any other status */
};
static pthread_mutex_t mounts_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mount_stats mounts[MAX_MOUNTS + 1]; /* the last collects mounts past the cap */
static size_t nmounts;

static _Atomic uint64_t svids[2];
static _Atomic uint64_t revocations[2];
static _Atomic uint64_t cache_hits[AS_CACHE_COUNT], cache_misses[AS_CACHE_COUNT];
static _Atomic uint64_t audit_failures;
static const char *const cache_names[AS_CACHE_COUNT] = {"intentions", "jwks", "certs", "auth_rows"};

static void bump(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static uint64_t get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

void as_metrics_request(const struct as_route *route, int status, int64_t ns)
{
    size_t ri = route != NULL ? as_route_index(route) : MAX_ROUTES;
    if (ri > MAX_ROUTES) {
        ri = MAX_ROUTES;
    }
    size_t ci = NCODES;
    for (size_t i = 0; i < NCODES; i++) {
        if (codes[i] == status) {
            ci = i;
            break;
        }
    }
    bump(&routes_st[ri].by_code[ci]);
    as_hist_observe(&routes_st[ri].latency, ns);
}

void as_metrics_login(const char *mount, int status)
{
    size_t ri = NRESULTS;
    for (size_t i = 0; i < NRESULTS; i++) {
        if (login_results[i].status == status) {
            ri = i;
            break;
        }
    }
    pthread_mutex_lock(&mounts_lock);
    size_t mi = 0;
    while (mi < nmounts && strcmp(mounts[mi].name, mount ? mount : "") != 0) {
        mi++;
    }
    if (mi == nmounts) {
        if (nmounts < MAX_MOUNTS) {
            snprintf(mounts[mi].name, sizeof mounts[mi].name, "%s", mount ? mount : "");
            nmounts++;
        } else {
            mi = MAX_MOUNTS;
            /* Parentheses cannot occur in a mount path, so this never names a real one. */
            snprintf(mounts[mi].name, sizeof mounts[mi].name, "%s", "(other)");
        }
    }
    bump(&mounts[mi].by_result[ri]);
    pthread_mutex_unlock(&mounts_lock);
}

void as_metrics_svid(enum as_metric_svid kind)
{
    bump(&svids[kind == AS_METRIC_SVID_JWT ? 1 : 0]);
}

void as_metrics_revocation(enum as_metric_revoke kind)
{
    bump(&revocations[kind == AS_METRIC_REVOKE_CERT ? 1 : 0]);
}

void as_metrics_cache(enum as_metric_cache c, bool hit)
{
    if (c < AS_CACHE_COUNT) {
        bump(hit ? &cache_hits[c] : &cache_misses[c]);
    }
}

void as_metrics_audit_failure(void)
{
    bump(&audit_failures);
}

/* A label value in the exposition format: backslash, quote and newline escaped. */
static enum as_err label(struct as_buf *b, const char *v)
{
    enum as_err r = AS_OK;
    for (const char *p = v; *p && r == AS_OK; p++) {
        if (*p == '\\' || *p == '"') {
            r = as_buf_printf(b, "\\%c", *p);
        } else if (*p == '\n') {
            r = as_buf_printf(b, "\\n");
        } else {
            r = as_buf_append(b, p, 1);
        }
    }
    return r;
}

static enum as_err family(struct as_buf *b, const char *name, const char *type, const char *help)
{
    return as_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The samples of one histogram; labels is "" or `key="value",` (with the trailing comma). */
static enum as_err histogram(struct as_buf *b, const char *name, const char *labels,
                             const struct as_hist *h)
{
    enum as_err r = AS_OK;
    uint64_t cum = 0;
    for (size_t i = 0; i <= AS_HIST_BUCKETS && r == AS_OK; i++) {
        cum += get(&h->bucket[i]);
        if (i < AS_HIST_BUCKETS) {
            r = as_buf_printf(b, "%s_bucket{%sle=\"%g\"} %" PRIu64 "\n", name, labels,
                              as_hist_bounds[i], cum);
        } else {
            r = as_buf_printf(b, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
        }
    }
    /* The count is the +Inf bucket as summed here, so the two always agree in one scrape. */
    size_t ll = strlen(labels);
    if (r == AS_OK) {
        r = as_buf_printf(b, "%s_sum%s%.*s%s %.9f\n", name, ll ? "{" : "", ll ? (int)ll - 1 : 0,
                          labels, ll ? "}" : "", (double)get(&h->sum_ns) / 1e9);
    }
    if (r == AS_OK) {
        r = as_buf_printf(b, "%s_count%s%.*s%s %" PRIu64 "\n", name, ll ? "{" : "",
                          ll ? (int)ll - 1 : 0, labels, ll ? "}" : "", cum);
    }
    return r;
}

static enum as_err render_requests(struct as_buf *b)
{
    enum as_err r = family(b, "authsvc_requests_total", "counter",
                           "HTTP requests answered, by route pattern and status code.");
    size_t n = as_route_count();
    if (n > MAX_ROUTES) {
        n = MAX_ROUTES;
    }
    for (size_t ri = 0; ri <= MAX_ROUTES && r == AS_OK; ri++) {
        if (ri >= n && ri != MAX_ROUTES) {
            continue;
        }
        const char *pat = ri == MAX_ROUTES ? "_unmatched" : as_route_at(ri)->pattern;
        for (size_t ci = 0; ci <= NCODES && r == AS_OK; ci++) {
            uint64_t v = get(&routes_st[ri].by_code[ci]);
            if (v == 0) {
                continue;
            }
            char code[8] = "other";
            if (ci < NCODES) {
                snprintf(code, sizeof code, "%d", codes[ci]);
            }
            r = as_buf_printf(b, "authsvc_requests_total{route=\"");
            if (r == AS_OK) {
                r = label(b, pat);
            }
            if (r == AS_OK) {
                r = as_buf_printf(b, "\",code=\"%s\"} %" PRIu64 "\n", code, v);
            }
        }
    }
    if (r == AS_OK) {
        r = family(b, "authsvc_request_duration_seconds", "histogram",
                   "Time from the request's arrival to its answer, by route pattern.");
    }
    for (size_t ri = 0; ri <= MAX_ROUTES && r == AS_OK; ri++) {
        if ((ri >= n && ri != MAX_ROUTES) || get(&routes_st[ri].latency.count) == 0) {
            continue;
        }
        const char *pat = ri == MAX_ROUTES ? "_unmatched" : as_route_at(ri)->pattern;
        struct as_buf lb;
        as_buf_init(&lb, 512);
        r = as_buf_printf(&lb, "route=\"");
        if (r == AS_OK) {
            r = label(&lb, pat);
        }
        if (r == AS_OK) {
            r = as_buf_printf(&lb, "\",");
        }
        if (r == AS_OK) {
            r = histogram(b, "authsvc_request_duration_seconds", lb.data, &routes_st[ri].latency);
        }
        as_buf_free(&lb, false);
    }
    return r;
}

static enum as_err render_logins(struct as_buf *b)
{
    enum as_err r = family(b, "authsvc_logins_total", "counter",
                           "Logins by auth mount and result (success or why it failed).");
    pthread_mutex_lock(&mounts_lock);
    for (size_t mi = 0; mi <= MAX_MOUNTS && r == AS_OK; mi++) {
        if (mi >= nmounts && mi != MAX_MOUNTS) {
            continue;
        }
        for (size_t ri = 0; ri <= NRESULTS && r == AS_OK; ri++) {
            uint64_t v = get(&mounts[mi].by_result[ri]);
            if (v == 0) {
                continue;
            }
            r = as_buf_printf(b, "authsvc_logins_total{mount=\"");
            if (r == AS_OK) {
                r = label(b, mounts[mi].name);
            }
            if (r == AS_OK) {
                r = as_buf_printf(b, "\",result=\"%s\"} %" PRIu64 "\n",
                                  ri < NRESULTS ? login_results[ri].result : "other", v);
            }
        }
    }
    pthread_mutex_unlock(&mounts_lock);
    return r;
}

static enum as_err render_pki(struct as_server *srv, struct as_buf *b)
{
    enum as_err r = family(b, "authsvc_svids_issued_total", "counter", "SVIDs issued, by kind.");
    if (r == AS_OK) {
        r = as_buf_printf(b,
                          "authsvc_svids_issued_total{kind=\"x509\"} %" PRIu64 "\n"
                          "authsvc_svids_issued_total{kind=\"jwt\"} %" PRIu64 "\n",
                          get(&svids[0]), get(&svids[1]));
    }
    if (r == AS_OK) {
        r = family(b, "authsvc_revocations_total", "counter",
                   "Revocation requests that took effect, by what was named (the cascade to "
                   "children and obtained certificates is not counted separately).");
    }
    if (r == AS_OK) {
        r = as_buf_printf(b,
                          "authsvc_revocations_total{kind=\"token\"} %" PRIu64 "\n"
                          "authsvc_revocations_total{kind=\"certificate\"} %" PRIu64 "\n",
                          get(&revocations[0]), get(&revocations[1]));
    }
    struct as_gen_info gens[MAX_GENS];
    size_t ng = srv->caset != NULL ? as_caset_gens(srv->caset, gens, MAX_GENS) : 0;
    if (r == AS_OK) {
        r = family(b, "authsvc_ca_not_after_seconds", "gauge",
                   "notAfter (unix seconds) of each CA generation, with its rotation state.");
    }
    for (size_t i = 0; i < ng && r == AS_OK; i++) {
        r = as_buf_printf(b,
                          "authsvc_ca_not_after_seconds{generation=\"%" PRId64
                          "\",state=\"%s\",in_bundle=\"%s\"} %" PRId64 "\n",
                          gens[i].id, gens[i].state, gens[i].in_bundle ? "true" : "false",
                          gens[i].not_after);
    }
    return r;
}

static enum as_err render_rest(struct as_server *srv, struct as_buf *b)
{
    enum as_err r =
        family(b, "authsvc_store_commit_duration_seconds", "histogram",
               "Duration of store commits (WAL frames written; made durable by the group commit).");
    if (r == AS_OK) {
        r = histogram(b, "authsvc_store_commit_duration_seconds", "",
                      as_store_commit_hist(srv->store));
    }
    if (r == AS_OK) {
        r = family(b, "authsvc_cache_requests_total", "counter",
                   "Lookups in the in-memory caches, by cache and result.");
    }
    /* The caches of this file's counters, then the tokens module's (resolved tokens and
     * ACLs). */
    uint64_t hits[AS_CACHE_COUNT + 1];
    uint64_t misses[AS_CACHE_COUNT + 1];
    const char *names[AS_CACHE_COUNT + 1];
    for (size_t c = 0; c < AS_CACHE_COUNT; c++) {
        hits[c] = get(&cache_hits[c]);
        misses[c] = get(&cache_misses[c]);
        names[c] = cache_names[c];
    }
    hits[AS_CACHE_COUNT] = 0;
    misses[AS_CACHE_COUNT] = 0;
    names[AS_CACHE_COUNT] = "tokens";
    if (srv->tokens != NULL) {
        as_tokens_cache_stats(srv->tokens, &hits[AS_CACHE_COUNT], &misses[AS_CACHE_COUNT]);
    }
    for (size_t c = 0; c <= AS_CACHE_COUNT && r == AS_OK; c++) {
        r = as_buf_printf(b,
                          "authsvc_cache_requests_total{cache=\"%s\",result=\"hit\"} %" PRIu64 "\n"
                          "authsvc_cache_requests_total{cache=\"%s\",result=\"miss\"} %" PRIu64
                          "\n",
                          names[c], hits[c], names[c], misses[c]);
    }
    if (r == AS_OK) {
        r = family(b, "authsvc_cache_hit_ratio", "gauge",
                   "Hits over lookups of each cache since start (1 before the first lookup).");
    }
    for (size_t c = 0; c <= AS_CACHE_COUNT && r == AS_OK; c++) {
        uint64_t h = hits[c];
        uint64_t m = misses[c];
        r = as_buf_printf(b, "authsvc_cache_hit_ratio{cache=\"%s\"} %.6f\n", names[c],
                          h + m ? (double)h / (double)(h + m) : 1.0);
    }
    char hash[AS_CHAIN_HASH_HEX + 1];
    uint64_t line = 0;
    bool have_head = srv->audit != NULL && as_audit_head(srv->audit, hash, &line) == AS_OK;
    if (r == AS_OK) {
        r = family(b, "authsvc_audit_failures_total", "counter",
                   "Audit lines the log did not take (each made its request a 500).");
    }
    if (r == AS_OK) {
        r = as_buf_printf(b, "authsvc_audit_failures_total %" PRIu64 "\n", get(&audit_failures));
    }
    if (r == AS_OK && have_head) {
        r = family(b, "authsvc_audit_head_line", "gauge",
                   "Number of the last audit line recorded as the chain's head.");
        if (r == AS_OK) {
            r = as_buf_printf(b, "authsvc_audit_head_line %" PRIu64 "\n", line);
        }
    }
    /* Process figures under Prometheus' standard names (the benchmarks read RSS here too). */
    long pages = 0;
    long rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) {
            rss = 0;
        }
        fclose(f);
    }
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    }
    if (r == AS_OK) {
        r = as_buf_printf(b,
                          "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                          "# TYPE process_resident_memory_bytes gauge\n"
                          "process_resident_memory_bytes %ld\n"
                          "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
                          "# TYPE process_cpu_seconds_total counter\n"
                          "process_cpu_seconds_total %.6f\n",
                          rss * sysconf(_SC_PAGESIZE), cpu);
    }
    return r;
}

char *as_metrics_render(struct as_server *srv)
{
    struct as_buf b;
    as_buf_init(&b, (size_t)4 << 20);
    enum as_err r = render_requests(&b);
    if (r == AS_OK) {
        r = render_logins(&b);
    }
    if (r == AS_OK) {
        r = render_pki(srv, &b);
    }
    if (r == AS_OK) {
        r = render_rest(srv, &b);
    }
    if (r != AS_OK) {
        as_buf_free(&b, false);
        return NULL;
    }
    return b.data;
}

enum as_err h_sys_metrics(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    (void)req;
    char *text = as_metrics_render(srv);
    if (text == NULL) {
        return AS_ERR_NOMEM;
    }
    resp->raw = text;
    resp->raw_len = strlen(text);
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->status = 200;
    return AS_OK;
}
