/*
 * storeins: concurrent single-row inserts through storage/store.h, the way the server's worker
 * threads make them (issue 7: system calls and instructions per recorded issuance or login).
 *
 *   storeins DB_PATH preload N          adds N certificate rows and N token rows (one transaction
 *                                       per 10k), so the b-trees have a real store's depth
 *   storeins DB_PATH cert|token THREADS ROWS [read]
 *                                       THREADS threads each insert ROWS rows of that kind, each
 *                                       insert followed by as_store_sync_mine as a request does
 *                                       before its answer; with "read", each also looks up one
 *                                       preloaded row on its own connection first
 *
 * Wall-clock figures from this are meaningless (it is meant to run under strace -f -c or
 * valgrind --tool=callgrind); it prints what those need to be divided by: the rows inserted and
 * the number of distinct commits (group transactions) they went into. Every thread opens its
 * connection and waits at a barrier before the measured part, so a run with ROWS = 0 measures
 * the fixed cost to subtract. Keys come from a fixed-seed generator, so two runs on copies of
 * one preloaded file touch the same pages.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "storage/store.h"

#define PRELOAD_TX 10000
#define DER_LEN 640 /* about an X.509-SVID with a P-256 key */

struct worker {
    struct as_store *st;
    bool token;
    bool read;
    long rows;
    unsigned id;
    unsigned long long rng;
    uint64_t *commits; /* as_store_my_commit after each insert */
    int errors;
};

static pthread_barrier_t g_start;

static void fail(const char *what, enum as_err r)
{
    fprintf(stderr, "storeins: %s: %s\n", what, as_strerror(r));
    exit(1);
}

static unsigned long long rng(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void rng_fill(unsigned long long *s, unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)(rng(s) >> 24);
    }
}

/* A serial of 16 random bytes in lowercase colon hex, as the server prints them (by hand: with
 * snprintf, formatting cost a tenth of the instructions this program measures). */
static void mk_serial(unsigned long long *s, char out[72])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];
    size_t o = 0;
    rng_fill(s, raw, sizeof raw);
    raw[0] = (unsigned char)(1 + raw[0] % 0x7f);
    for (size_t i = 0; i < sizeof raw; i++) {
        if (i > 0) {
            out[o++] = ':';
        }
        out[o++] = hex[raw[i] >> 4];
        out[o++] = hex[raw[i] & 15];
    }
    out[o] = '\0';
}

static enum as_err insert_cert(struct as_store *st, unsigned long long *s, unsigned w)
{
    static unsigned char der[DER_LEN];
    char sid[96], acc[AS_ACCESSOR_LEN + 1];
    unsigned char raw[18];
    struct as_cert_rec c;

    memset(&c, 0, sizeof c);
    snprintf(c.kind, sizeof c.kind, "x509");
    mk_serial(s, c.serial);
    snprintf(sid, sizeof sid, "spiffe://example.org/bench/w%u", w);
    rng_fill(s, raw, sizeof raw);
    as_b64url(raw, sizeof raw, acc);
    c.spiffe_id = sid;
    c.dns_json = "[]";
    c.token_accessor = acc;
    c.mount = "jwt";
    c.role = "bench";
    c.subject = "bench";
    c.ca_gen = 1;
    c.issued_at = 1700000000 + (int64_t)(rng(s) % 86400);
    c.not_before = c.issued_at - 10;
    c.not_after = c.issued_at + 3600;
    c.der = der; /* the content does not matter to the store, only its size */
    c.der_len = sizeof der;
    return as_store_cert_insert(st, &c);
}

static enum as_err insert_token(struct as_store *st, unsigned long long *s, unsigned w)
{
    char meta[96], display[64], sids[96];
    unsigned char raw[18];
    struct as_token_rec t;

    memset(&t, 0, sizeof t);
    rng_fill(s, raw, sizeof raw);
    as_b64url(raw, sizeof raw, t.accessor);
    rng_fill(s, t.secret_hash, sizeof t.secret_hash);
    snprintf(meta, sizeof meta, "{\"role\":\"bench\",\"subject\":\"bench-%u\"}", w);
    snprintf(display, sizeof display, "jwt-bench-%u", w);
    snprintf(sids, sizeof sids, "[\"spiffe://example.org/bench/w%u\"]", w);
    t.policies_json = "[\"default\"]";
    t.meta_json = meta;
    t.display_name = display;
    t.path = "auth/jwt/login";
    t.spiffe_ids_json = sids;
    t.allowed_dns_json = "[]";
    t.mount = "jwt";
    t.creation_time = 1700000000;
    t.creation_ttl = 3600;
    t.expire_time = t.creation_time + t.creation_ttl;
    t.renewable = true;
    t.orphan = true;
    return as_store_token_insert(st, &t);
}

/* The first preloaded rows' keys, regenerated from the preload's seed. */
static void preload_keys(char serial[72], char accessor[AS_ACCESSOR_LEN + 1])
{
    unsigned long long s = 0x9e3779b97f4a7c15ULL;
    unsigned char raw[18];
    mk_serial(&s, serial);
    s = 0x2545f4914f6cdd1dULL;
    rng_fill(&s, raw, sizeof raw);
    as_b64url(raw, sizeof raw, accessor);
}

static void preload(struct as_store *st, long n)
{
    unsigned long long cs = 0x9e3779b97f4a7c15ULL, ts = 0x2545f4914f6cdd1dULL;
    enum as_err r;

    for (long i = 0; i < n; i++) {
        if (i % PRELOAD_TX == 0 && (r = as_store_begin(st)) != AS_OK) {
            fail("begin", r);
        }
        if ((r = insert_cert(st, &cs, (unsigned)(i % 1000))) != AS_OK ||
            (r = insert_token(st, &ts, (unsigned)(i % 1000))) != AS_OK) {
            fail("preload insert", r);
        }
        if ((i % PRELOAD_TX == PRELOAD_TX - 1 || i == n - 1) &&
            (r = as_store_commit(st)) != AS_OK) {
            fail("commit", r);
        }
    }
    if ((r = as_store_sync(st)) != AS_OK) {
        fail("sync", r);
    }
}

/* The measured part: no name of its own would be needed but for callgrind's --toggle-collect. */
static __attribute__((noinline)) void storeins_loop(struct worker *w)
{
    char serial[72], accessor[AS_ACCESSOR_LEN + 1];

    preload_keys(serial, accessor);
    for (long i = 0; i < w->rows; i++) {
        if (w->read) {
            struct as_cert_rec *c = NULL;
            struct as_token_rec *t = NULL;
            enum as_err r = w->token ? as_store_token_by_accessor(w->st, accessor, &t)
                                     : as_store_cert_get(w->st, serial, &c);
            w->errors += r != AS_OK;
            as_cert_rec_free(c);
            as_token_rec_free(t);
        }
        enum as_err r =
            w->token ? insert_token(w->st, &w->rng, w->id) : insert_cert(w->st, &w->rng, w->id);
        w->errors += r != AS_OK;
        w->commits[i] = as_store_my_commit(w->st);
        w->errors += as_store_sync_mine(w->st) != AS_OK;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned char *v = NULL;
    size_t len = 0;

    /* Opens this thread's connection outside the measured part. */
    if (as_store_setting_get(w->st, "storeins", &v, &len) != AS_ERR_NOT_FOUND) {
        w->errors++;
    }
    free(v);
    pthread_barrier_wait(&g_start);
    storeins_loop(w);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    struct as_store *st = NULL;
    enum as_err r;

    if (argc == 4 && strcmp(argv[2], "preload") == 0) {
        long n = strtol(argv[3], NULL, 10);
        as_log_set_level(AS_LOG_WARN);
        if ((r = as_store_open(argv[1], &st)) != AS_OK) {
            fail(argv[1], r);
        }
        preload(st, n);
        as_store_close(st);
        return 0;
    }
    bool kind_ok = argc >= 3 && (strcmp(argv[2], "cert") == 0 || strcmp(argv[2], "token") == 0);
    if ((argc != 5 && argc != 6) || !kind_ok || (argc == 6 && strcmp(argv[5], "read") != 0)) {
        fprintf(stderr, "usage: storeins DB_PATH preload N\n"
                        "       storeins DB_PATH cert|token THREADS ROWS [read]\n");
        return 2;
    }
    long nthreads = strtol(argv[3], NULL, 10);
    long rows = strtol(argv[4], NULL, 10);
    if (nthreads < 1 || nthreads > 256 || rows < 0 || rows > 10000000) {
        fprintf(stderr, "storeins: 1..256 threads, 0..10M rows\n");
        return 2;
    }
    as_log_set_level(AS_LOG_WARN);
    if ((r = as_store_open(argv[1], &st)) != AS_OK) {
        fail(argv[1], r);
    }
    pthread_t th[256];
    struct worker w[256];
    uint64_t *commits = calloc((size_t)(nthreads * rows) + 1, sizeof *commits);
    if (commits == NULL) {
        fail("calloc", AS_ERR_NOMEM);
    }
    pthread_barrier_init(&g_start, NULL, (unsigned)nthreads);
    for (long i = 0; i < nthreads; i++) {
        w[i] = (struct worker){.st = st,
                               .token = strcmp(argv[2], "token") == 0,
                               .read = argc == 6,
                               .rows = rows,
                               .id = (unsigned)i,
                               .rng = 0x51af3c9e6d1b4a27ULL * (unsigned long long)(i + 1),
                               .commits = commits + i * rows};
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "storeins: pthread_create failed\n");
            return 1;
        }
    }
    int errors = 0;
    for (long i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        errors += w[i].errors;
    }
    pthread_barrier_destroy(&g_start);
    size_t n = (size_t)(nthreads * rows), batches = 0;
    qsort(commits, n, sizeof *commits, cmp_u64);
    for (size_t i = 0; i < n; i++) {
        batches += i == 0 || commits[i] != commits[i - 1];
    }
    printf("storeins: %zu %s rows in %zu commits (%.2f rows per commit), %d errors\n", n, argv[2],
           batches, batches > 0 ? (double)n / (double)batches : 0.0, errors);
    free(commits);
    as_store_close(st);
    return errors == 0 ? 0 : 1;
}
