/*
 * populate: fills a stopped authsvc's store with issued-SVID and token rows, for the "big store"
 * benchmark (issue 7: RSS, start time and issuance rate with 1M SVIDs and 1M tokens recorded).
 *
 *   populate DB_PATH TEMPLATE.der SVIDS TOKENS
 *
 * Going through the API would take far too long (each issuance is durable), so this writes
 * through the project's own store interface (storage/store.h), 100k rows per transaction. The
 * only thing it changes in the store's connection is the page cache (1 GiB instead of SQLite's
 * 2 MB, through sqlite3_auto_extension): four of the indexes (serials, accessors, secret hashes)
 * take random keys, and with a 2 MB cache every batch rewrote most of their pages, which made
 * 1M + 1M rows take over 4 minutes. The rows have the shape the server writes:
 *
 * - tokens: accessors as the token store makes them (base64url of 18 random bytes), distinct
 *   random 32-byte secret hashes (HMACs of secrets nobody knows). 80% are jwt-login tokens
 *   (orphans, mount "jwt", role "bench", 1h TTL), 20% token-store tokens (768h, children of the
 *   first thousand of them). All are created in the last 30 minutes and outlive any benchmark run,
 *   so the server's purge of expired tokens (every 60 s) finds nothing to delete mid-measurement.
 * - SVIDs: X.509 records of the active CA generation, 1h TTL, issued evenly over the last 30 days,
 *   so most are expired and the newest ones are active; one in a thousand is revoked. Those issued
 *   in the last 30 minutes name one of the tokens above; older ones name tokens that are gone (as
 *   in a store that has run for a month). The DER is TEMPLATE.der (a certificate this server
 *   issued) with the row's serial written over the template's: same size and layout as a real
 *   record, but its signature does not verify. Serials are random, positive, as long as the
 *   template's, in lowercase colon hex.
 *
 * Prints one line "populate: N svids, M tokens in S s" on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>
#include <sqlite3.h>

#include "common/common.h"
#include "storage/store.h"

#define BATCH 100000
#define CERT_SPAN (30 * 86400) /* the SVIDs were issued over the last 30 days */
#define TOKEN_SPAN 1800        /* the tokens over the last 30 minutes */
#define SVID_TTL 3600
#define N_IDS 1000     /* distinct workloads (SPIFFE IDs and JWT subjects) */
#define N_PARENTS 1000 /* token-store tokens that have children */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run by SQLite for every connection the store opens: a bulk load wants a big page cache. */
static int big_cache(sqlite3 *db, char **err, const struct sqlite3_api_routines *api)
{
    (void)api;
    return sqlite3_exec(db, "PRAGMA cache_size = -1048576", NULL, NULL, err);
}

static void fail(const char *what, enum as_err r)
{
    fprintf(stderr, "populate: %s: %s\n", what, as_strerror(r));
    exit(1);
}

/* A cheap PRNG for the shape of rows (which kind, which workload); keys and serials use
 * as_rand_bytes. */
static unsigned long long rng_state = 0x9e3779b97f4a7c15ULL;
static unsigned long long rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void rand_bytes(void *p, size_t n)
{
    if (as_rand_bytes(p, n) != AS_OK) {
        fail("random bytes", AS_ERR_CRYPTO);
    }
}

static void random_accessor(char out[AS_ACCESSOR_LEN + 1])
{
    unsigned char raw[18];
    rand_bytes(raw, sizeof raw);
    as_b64url(raw, sizeof raw, out);
}

/* The template certificate and where its serial's content octets are. */
struct tmpl {
    unsigned char *der;
    size_t len;
    size_t serial_off; /* offset of the first content octet of the serial INTEGER */
    size_t serial_len; /* number of content octets */
};

static void load_template(const char *path, struct tmpl *t)
{
    char *buf = NULL;
    size_t len = 0;
    enum as_err r = as_file_read(path, 1 << 20, &buf, &len);
    if (r != AS_OK) {
        fail(path, r);
    }
    const unsigned char *p = (const unsigned char *)buf;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL) {
        fprintf(stderr, "populate: %s is not a DER certificate\n", path);
        exit(1);
    }
    unsigned char *enc = NULL;
    int elen = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &enc);
    /* The serial's TLV is the first match: it comes right after the version in the TBS. */
    unsigned char *at = elen > 2 ? memmem(buf, len, enc, (size_t)elen) : NULL;
    if (at == NULL || enc[1] >= 0x80) {
        fprintf(stderr, "populate: cannot find the serial in %s\n", path);
        exit(1);
    }
    t->der = (unsigned char *)buf;
    t->len = len;
    t->serial_off = (size_t)(at - (unsigned char *)buf) + 2;
    t->serial_len = enc[1];
    OPENSSL_free(enc);
    X509_free(x);
}

/*
 * A new random serial of the template's length, written into der, and its lowercase colon hex
 * (of the magnitude, as the server prints serials) into hex. Keeps the DER valid: positive, and
 * minimal (a leading 00 only before a byte with the top bit set).
 */
static void new_serial(const struct tmpl *t, unsigned char *der, char *hex, size_t hexlen)
{
    unsigned char *s = der + t->serial_off;
    rand_bytes(s, t->serial_len);
    size_t mag = 0; /* where the magnitude starts */
    if (t->der[t->serial_off] == 0x00 && t->serial_len > 1) {
        s[0] = 0x00;
        s[1] |= 0x80;
        mag = 1;
    } else {
        s[0] = (unsigned char)(1 + s[0] % 0x7f); /* 01..7f */
    }
    size_t o = 0;
    for (size_t i = mag; i < t->serial_len && o + 3 < hexlen; i++) {
        o += (size_t)snprintf(hex + o, hexlen - o, "%s%02x", o ? ":" : "", s[i]);
    }
}

static void begin(struct as_store *st)
{
    enum as_err r = as_store_begin(st);
    if (r != AS_OK) {
        fail("begin", r);
    }
}

static void commit(struct as_store *st)
{
    enum as_err r = as_store_commit(st);
    if (r != AS_OK) {
        fail("commit", r);
    }
}

/* The accessor of token i, kept so that recent SVIDs and child tokens can name them. */
static char (*accessors)[AS_ACCESSOR_LEN + 1];

static void insert_tokens(struct as_store *st, long n, int64_t now)
{
    char meta[128];
    char display[64];
    char sids[96];
    for (long i = 0; i < n; i++) {
        if (i % BATCH == 0) {
            begin(st);
        }
        struct as_token_rec t;
        memset(&t, 0, sizeof t);
        random_accessor(t.accessor);
        memcpy(accessors[i], t.accessor, sizeof accessors[i]);
        rand_bytes(t.secret_hash, sizeof t.secret_hash);
        unsigned long long w = rng() % N_IDS;
        t.policies_json = "[\"default\"]";
        t.creation_time = now - (int64_t)(rng() % TOKEN_SPAN);
        snprintf(sids, sizeof sids, "[\"spiffe://example.org/bench/w%llu\"]", w);
        t.spiffe_ids_json = sids;
        t.allowed_dns_json = "[]";
        t.renewable = true;
        if (i >= N_PARENTS && rng() % 5 == 0) {
            /* A token-store token, child of one of the first ones (which are orphans). */
            t.parent = accessors[rng() % N_PARENTS];
            t.display_name = "token";
            t.path = "auth/token/create";
            t.mount = "token";
            t.creation_ttl = 768 * 3600;
        } else if (i < N_PARENTS) {
            t.display_name = "token";
            t.path = "auth/token/create-orphan";
            t.mount = "token";
            t.creation_ttl = 768 * 3600;
            t.orphan = true;
        } else {
            /* A jwt login: orphan, role and subject in its metadata. */
            snprintf(meta, sizeof meta, "{\"role\":\"bench\",\"subject\":\"bench-%llu\"}", w);
            snprintf(display, sizeof display, "jwt-bench-%llu", w);
            t.meta_json = meta;
            t.display_name = display;
            t.path = "auth/jwt/login";
            t.mount = "jwt";
            t.creation_ttl = 3600;
            t.orphan = true;
        }
        t.expire_time = t.creation_time + t.creation_ttl;
        enum as_err r = as_store_token_insert(st, &t);
        if (r != AS_OK) {
            fail("token insert", r);
        }
        if (i % BATCH == BATCH - 1 || i == n - 1) {
            commit(st);
        }
    }
}

static void insert_svids(struct as_store *st, long n, long ntokens, int64_t gen, int64_t now,
                         const struct tmpl *t)
{
    unsigned char *der = malloc(t->len);
    if (der == NULL) {
        fail("malloc", AS_ERR_NOMEM);
    }
    memcpy(der, t->der, t->len);
    char sid[96];
    char subject[32];
    char gone[AS_ACCESSOR_LEN + 1];
    for (long i = 0; i < n; i++) {
        if (i % BATCH == 0) {
            begin(st);
        }
        struct as_cert_rec c;
        memset(&c, 0, sizeof c);
        snprintf(c.kind, sizeof c.kind, "x509");
        new_serial(t, der, c.serial, sizeof c.serial);
        c.der = der;
        c.der_len = t->len;
        unsigned long long w = rng() % N_IDS;
        snprintf(sid, sizeof sid, "spiffe://example.org/bench/w%llu", w);
        snprintf(subject, sizeof subject, "bench-%llu", w);
        c.spiffe_id = sid;
        c.dns_json = "[]";
        c.ca_gen = gen;
        /* Oldest first, so seq (insertion order) follows issued_at as it does in a live store. */
        c.issued_at = now - CERT_SPAN + (int64_t)((double)CERT_SPAN * (double)i / (double)n);
        c.not_before = c.issued_at - 10;
        c.not_after = c.issued_at + SVID_TTL;
        if (ntokens > 0 && c.issued_at >= now - TOKEN_SPAN) {
            c.token_accessor = accessors[rng() % (unsigned long long)ntokens];
        } else {
            random_accessor(gone);
            c.token_accessor = gone;
        }
        c.mount = "jwt";
        c.role = "bench";
        c.subject = subject;
        if (rng() % 1000 == 0) {
            c.revoked_at = c.issued_at + 60 < now ? c.issued_at + 60 : now;
        }
        enum as_err r = as_store_cert_insert(st, &c);
        if (r != AS_OK) {
            fail("svid insert", r);
        }
        if (i % BATCH == BATCH - 1 || i == n - 1) {
            commit(st);
        }
    }
    free(der);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: populate DB_PATH TEMPLATE.der SVIDS TOKENS\n");
        return 2;
    }
    long nsvids = strtol(argv[3], NULL, 10);
    long ntokens = strtol(argv[4], NULL, 10);
    if (nsvids < 0 || ntokens < 0) {
        fprintf(stderr, "populate: counts must be >= 0\n");
        return 2;
    }
    as_log_set_level(AS_LOG_WARN);
    struct tmpl t;
    load_template(argv[2], &t);
    rand_bytes(&rng_state, sizeof rng_state);
    rng_state |= 1;

    if (sqlite3_auto_extension((void (*)(void))big_cache) != SQLITE_OK) {
        fprintf(stderr, "populate: sqlite3_auto_extension failed\n");
        return 1;
    }
    struct as_store *st = NULL;
    enum as_err r = as_store_open(argv[1], &st);
    if (r != AS_OK) {
        fail(argv[1], r);
    }
    /* The SVIDs belong to the generation that signs now. */
    struct as_ca_gen_rec **gens = NULL;
    size_t ngens = 0;
    if ((r = as_store_ca_gen_list(st, &gens, &ngens)) != AS_OK) {
        fail("CA generations", r);
    }
    int64_t gen = 0;
    for (size_t i = 0; i < ngens; i++) {
        if (strcmp(gens[i]->state, "active") == 0) {
            gen = gens[i]->id;
        }
    }
    as_ca_gen_recs_free(gens, ngens);
    if (gen == 0) {
        fprintf(stderr, "populate: no active CA generation in %s\n", argv[1]);
        return 1;
    }

    accessors = calloc(ntokens > 0 ? (size_t)ntokens : 1, sizeof *accessors);
    if (accessors == NULL) {
        fail("calloc", AS_ERR_NOMEM);
    }
    int64_t now = as_now();
    double t0 = mono();
    insert_tokens(st, ntokens, now);
    insert_svids(st, nsvids, ntokens, gen, now, &t);
    as_store_close(st);
    printf("populate: %ld svids, %ld tokens in %.1f s\n", nsvids, ntokens, mono() - t0);
    free(accessors);
    free(t.der);
    return 0;
}
