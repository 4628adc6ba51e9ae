/*
 * audit.c: the audit device (SPEC §8). One JSON line per request and one per response, in
 * Vault's shape, hash-chained (common/auditchain.h), fsynced before the answer, with the chain's
 * head kept in the store.
 *
 * Decisions where SPEC §8 is silent:
 *   - Redaction: every string in request and response data is written as
 *     "hmac-sha256:<hex>" (HMAC-SHA256 under the installation's audit salt) except the values of
 *     the keys in clear_keys below: SPIFFE IDs, serials, paths, accessors, policy and role names,
 *     the decision of a check. The line-level "auth" block (who made the request: accessor,
 *     display name, policies, metadata) is clear as in Vault; the presented token is always
 *     HMAC'd (request.client_token, auth.client_token).
 *   - response.status carries the HTTP status (Vault has none; admins filter on it).
 *   - Durability: a line is written with one write() to the file (O_APPEND), so it survives
 *     kill -9 of the server as soon as it is written; every line is written before the answer.
 *     The disk sync follows the store's group commit (SPEC §8): a request that changed the store
 *     (a token, an SVID, a revocation) is answered only once an fdatasync covering its response
 *     line has returned and the store's group commit has synced its commits; concurrent
 *     requests share both (whoever finds no sync running does it for every line written so
 *     far). A request that changed nothing (a lookup, a denied check) does not wait for the
 *     disk: its lines are synced by the next group commit or by the main loop within a second.
 *     This is stronger than Vault's file device, which never syncs.
 *   - A route that changes nothing (AS_AUDIT_READS, like the checks) writes its request line
 *     with its response line, in one write, after the handler: the request line goes first so
 *     that no effect happens without it, and such a request has none (unless it spends a use of
 *     a limited-use token: then the request line is written before the handler). Two appends
 *     per lookup were two writes and two turns at mu, where threads queued.
 *   - The head: sys/audit/head serves the hash of the last line written. The last line known to
 *     be on disk is written to the store by the main loop once a second when it moved, at
 *     SIGHUP and at a clean stop (not in the request path, where it would cost a store commit
 *     per sync); after a crash the next start adopts the lines written after the stored head.
 *   - A write that fails is cut off again (ftruncate to the previous size), so the file only ever
 *     holds whole lines. When the file cannot be written or synced, the device closes it and
 *     tries to open it again on the next line; until that works every audited request is a 500.
 *   - At open the file's last line must be the head kept in the store, or lines after it (written
 *     but not yet recorded as the head when the server stopped): those are adopted. A file that
 *     does not continue the chain is refused (the server does not start; after SIGHUP requests
 *     fail) rather than starting a second chain in it. A last line cut short by a crash (no
 *     newline) is removed: its request was never answered.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "authsvc/server.h"
#include "common/auditchain.h"

#define SETTING_SALT "audit_salt"
#define SETTING_HEAD "audit_head"
#define SALT_LEN 32
#define HMAC_PREFIX "hmac-sha256:"
#define SCAN_CHUNK ((size_t)64 * 1024)
#define UNCACHE_ALIGN ((off_t)64 * 1024) /* synced bytes leave the page cache in such steps */
#define APPEND_MAX 2                     /* lines in one append: a request's two */

/*
 * A request waiting in append for its line to be on disk; the device's sync threads lead the
 * syncs every waiter needs. Whoever finishes a sync hands each waiter its outcome and wakes it
 * alone, by its own semaphore or callback: a broadcast on one condition woke every waiter (most
 * of them to go back to sleep, all of them to queue again on mu), which under load was half of
 * the server's context switches. A woken waiter never takes mu.
 */
enum waiter_state { W_WAITING, W_DONE, W_FAILED };
struct waiter {
    uint64_t mine; /* its line */
    enum waiter_state state;
    sem_t sem;
    /* An asynchronous waiter (as_audit_response_async, malloc'd): done(arg, ok) instead of the
     * semaphore, called once with mu held. */
    void (*done)(void *arg, bool ok);
    void *arg;
    struct waiter *next;
};

/* Two, so that one group's file sync overlaps the previous group's store sync. */
#define SYNC_THREADS 2

struct as_audit {
    struct as_store *store;
    char *path; /* NULL: auditing disabled (the salt still serves sys/audit-hash) */
    bool log_allowed_checks;
    unsigned char salt[SALT_LEN];
    struct as_hmac_key *mac; /* keyed with salt */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;                /* -1 when the file is not open (disabled or broken) */
    bool regular;          /* a regular file: failed writes are cut off, tails are read */
    off_t size;            /* bytes of whole lines in a regular file */
    off_t uncached;        /* the bytes before this offset were synced and dropped from the page
                              cache (lead_sync) */
    struct as_chain chain; /* the last line written */
    uint64_t written;      /* lines written since start */
    uint64_t synced;       /* lines covered by a finished fdatasync + head write */
    uint64_t epoch;        /* bumped when the file is given up: waiters of the old one fail */
    bool syncing;
    bool reopening; /* as_audit_reopen is draining the old file: appends wait (cv) */
    /* The sync threads (sync_main) lead the syncs waiters need: when need > started and no sync
     * of the file runs. */
    pthread_t syncers[SYNC_THREADS];
    int nsyncers;
    bool stopping;
    pthread_cond_t scv;
    uint64_t need;     /* the latest line a waiter waits for */
    bool sync_wanted;  /* scv was signalled and no sync thread has taken it up yet */
    uint64_t started;  /* the lines the latest sync of the file started covered */
    struct waiter *wq; /* waiters in line order (append queues them in that order) */
    struct waiter **wq_tail;
    uint64_t store_need;         /* the latest store commit a written line's request made */
    struct as_chain synced_head; /* the last line known on disk */
    uint64_t persisted_line;     /* synced_head's line number as last written to the store */
    int64_t last_open_error;     /* when the last "cannot open" was logged (rate limit) */
};

static void lead_sync(struct as_audit *a);

/* ---- salt and HMAC ---- */

static enum as_err load_salt(struct as_audit *a)
{
    unsigned char *v = NULL;
    size_t n = 0;
    unsigned char fresh[SALT_LEN];
    enum as_err r = as_store_setting_get(a->store, SETTING_SALT, &v, &n);
    if (r == AS_ERR_NOT_FOUND) {
        if ((r = as_rand_bytes(fresh, sizeof fresh)) != AS_OK) {
            return r;
        }
        /* Insert-if-absent: two servers racing on a new store keep one salt. */
        r = as_store_setting_insert(a->store, SETTING_SALT, fresh, sizeof fresh);
        as_wipe(fresh, sizeof fresh);
        if (r != AS_OK && r != AS_ERR_EXISTS) {
            return r;
        }
        r = as_store_setting_get(a->store, SETTING_SALT, &v, &n);
    }
    if (r != AS_OK) {
        return r;
    }
    if (n != SALT_LEN) {
        as_wipe(v, n);
        free(v);
        as_error("audit: the stored salt has %zu bytes, not %d", n, SALT_LEN);
        return AS_ERR_STORE;
    }
    memcpy(a->salt, v, SALT_LEN);
    as_wipe(v, n);
    free(v);
    return as_hmac_key_new(a->salt, sizeof a->salt, &a->mac);
}

enum as_err as_audit_hash(const struct as_audit *a, const char *in, size_t len,
                          char out[AS_AUDIT_HASH_LEN])
{
    unsigned char mac[32];
    enum as_err r = as_hmac_key_mac(a->mac, in, len, mac);
    if (r != AS_OK) {
        return r;
    }
    memcpy(out, HMAC_PREFIX, sizeof HMAC_PREFIX - 1);
    as_hex(mac, sizeof mac, out + sizeof HMAC_PREFIX - 1);
    return AS_OK;
}

/* Keys whose string values (or arrays of strings) stay clear so admins can search them. */
/* clang-format off */
#define K(s) {s, sizeof(s) - 1}
static const struct {
    const char *key;
    size_t len;
} clear_keys[] = {
    K("spiffe_id"), K("spiffe_ids"), K("target"), K("source"), K("destination"),
    K("client_cert_uri"), K("serial_number"), K("serial"), K("client_cert_serial"), K("serials"),
    K("accessor"), K("accessors"), K("client_token_accessor"), K("keys"), K("path"),
    K("policies"), K("token_policies"), K("identity_policies"), K("policy_name"), K("name"),
    K("role"), K("mount"), K("kind"), K("state"), K("reason"), K("intention_id"), K("dns_names"),
    K("allowed_dns_names"), K("audience"), K("token_accessor"), K("auth_mount"),
};
#undef K
/* clang-format on */

/* Whether the key (len bytes; a key with a NUL inside matches none) stays clear. Every member of
 * every audited object is looked up: lengths first, so most keys cost no string compare. */
static bool is_clear_key(const char *k, size_t len)
{
    for (size_t i = 0; i < sizeof clear_keys / sizeof clear_keys[0]; i++) {
        if (clear_keys[i].len == len && memcmp(k, clear_keys[i].key, len) == 0) {
            return true;
        }
    }
    return false;
}

/* Redaction while writing a line (as_json_write_redacted): the rule of clear keys above, and the
 * HMAC under the salt for every other string. ctx is the struct as_audit. */
static bool redact_clear(void *ctx, const char *key, size_t keylen)
{
    (void)ctx;
    return is_clear_key(key, keylen);
}

static enum as_err redact_replace(void *ctx, struct as_buf *b, const char *s, size_t n)
{
    char h[AS_AUDIT_HASH_LEN];
    enum as_err r = as_audit_hash(ctx, s, n, h);
    return r == AS_OK ? as_json_write_string(b, h, AS_AUDIT_HASH_LEN - 1) : r;
}

/* ---- the file ---- */

/* Streams the lines of the regular file fd from its start: *count lines, the hash of the last
 * in last, and whether one of them hashes to want (*found: its number). */
static enum as_err scan_file(int fd, const char *want, uint64_t *count, char last[65],
                             uint64_t *found)
{
    unsigned char *buf = malloc(SCAN_CHUNK);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    enum as_err r = AS_ERR_CRYPTO;
    uint64_t n = 0;
    off_t pos = 0;
    bool in_line = false;
    *found = 0;
    last[0] = '\0';
    if (buf == NULL || ctx == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (;;) {
        ssize_t got = pread(fd, buf, SCAN_CHUNK, pos);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            r = AS_ERR_IO;
            goto out;
        }
        if (got == 0) {
            break;
        }
        pos += got;
        size_t start = 0;
        for (size_t i = 0; i < (size_t)got; i++) {
            if (!in_line) {
                if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                    goto out;
                }
                in_line = true;
                start = i;
            }
            if (buf[i] != '\n') {
                continue;
            }
            unsigned char md[32];
            unsigned int mdlen = 0;
            if (EVP_DigestUpdate(ctx, buf + start, i - start) != 1 ||
                EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) {
                goto out;
            }
            as_hex(md, sizeof md, last);
            n++;
            if (strcmp(last, want) == 0) {
                *found = n;
            }
            in_line = false;
        }
        if (in_line && EVP_DigestUpdate(ctx, buf + start, (size_t)got - start) != 1) {
            goto out;
        }
    }
    *count = n;
    r = AS_OK;
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    return r;
}

/* Whether the last line of the file (size bytes, ending in a newline) hashes to head; false
 * also when that line is longer than what is read here (the caller then scans the file). */
static enum as_err last_line_is(int fd, off_t size, const char *head, bool *yes)
{
    const size_t window = SCAN_CHUNK;
    size_t n = size < (off_t)window ? (size_t)size : window;
    char *buf = malloc(n);
    char hash[AS_CHAIN_HASH_HEX + 1];
    *yes = false;
    if (buf == NULL) {
        return AS_ERR_NOMEM;
    }
    enum as_err r = AS_OK;
    if (pread(fd, buf, n, size - (off_t)n) != (ssize_t)n) {
        r = AS_ERR_IO;
        goto out;
    }
    /* buf ends with the last line's newline; its start follows the newline before it. */
    size_t end = n - 1;
    size_t start = end;
    while (start > 0 && buf[start - 1] != '\n') {
        start--;
    }
    if (start == 0 && (off_t)n < size) {
        goto out; /* longer than the window: let the scan decide */
    }
    if ((r = as_chain_line_hash(buf + start, end - start, hash)) == AS_OK) {
        *yes = strcmp(hash, head) == 0;
    }
out:
    free(buf);
    return r;
}

/* Whether the file's first line begins with {"prev_hash":"<head>" (it continues head). */
static bool first_continues(int fd, const char *head)
{
    char buf[sizeof AS_CHAIN_PREFIX - 1 + AS_CHAIN_HASH_HEX + 1];
    size_t plen = sizeof AS_CHAIN_PREFIX - 1;
    if (pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf) {
        return false;
    }
    return memcmp(buf, AS_CHAIN_PREFIX, plen) == 0 &&
           memcmp(buf + plen, head, AS_CHAIN_HASH_HEX) == 0 && buf[sizeof buf - 1] == '"';
}

/*
 * Makes a regular file end on a whole line (a torn tail from a crash is cut off) and continues
 * the chain in *c from it: c is the head to continue (the store's at start, the in-memory one
 * at a reopen). AS_ERR_INVALID when the file does not continue that chain.
 */
static enum as_err reconcile(struct as_audit *a, int fd, struct as_chain *c, off_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return AS_ERR_IO;
    }
    *size = st.st_size;
    if (st.st_size == 0) {
        return AS_OK;
    }
    /* Find the end of the last whole line. */
    off_t end = st.st_size;
    unsigned char ch = 0;
    while (end > 0) {
        if (pread(fd, &ch, 1, end - 1) != 1) {
            return AS_ERR_IO;
        }
        if (ch == '\n') {
            break;
        }
        end--;
        if (st.st_size - end > (off_t)AS_AUDIT_MAX_LINE + 1) {
            as_error("audit: %s ends in %jd bytes without a newline; not an audit log", a->path,
                     (intmax_t)(st.st_size - end));
            return AS_ERR_INVALID;
        }
    }
    if (end != st.st_size) {
        as_warn("audit: %s ended in a line cut short (%jd bytes, a crash while writing); "
                "removing it",
                a->path, (intmax_t)(st.st_size - end));
        if (ftruncate(fd, end) != 0) {
            return AS_ERR_IO;
        }
        *size = end;
        if (end == 0) {
            return AS_OK;
        }
    }
    /* The usual case, a clean stop: the last line is the head. Only otherwise is the whole file
     * read (it may be gigabytes). */
    bool ends_on_head = false;
    enum as_err r = last_line_is(fd, *size, c->prev_hash, &ends_on_head);
    if (r != AS_OK) {
        return r;
    }
    if (ends_on_head) {
        return AS_OK;
    }
    uint64_t count = 0;
    uint64_t found = 0;
    char last[65];
    r = scan_file(fd, c->prev_hash, &count, last, &found);
    if (r != AS_OK) {
        return r;
    }
    if (count == 0) {
        return AS_OK;
    }
    if (found == count) {
        return AS_OK; /* the file ends on the head */
    }
    /* Lines after the head (written, not yet recorded as the head when the server stopped). A
     * head of line 0 is the genesis: every line of the file follows it; so does every line of a
     * file whose first line continues the head (a rotation after the head was recorded). */
    if (found == 0 && c->line_no != 0 && !first_continues(fd, c->prev_hash)) {
        as_error("audit: %s does not continue the audit chain: the chain's head (line %" PRIu64
                 ", %s) is not in it; move the file aside to start a new one",
                 a->path, c->line_no, c->prev_hash);
        return AS_ERR_INVALID;
    }
    as_warn("audit: %s has %" PRIu64 " lines after the recorded head; continuing after them",
            a->path, count - found);
    c->line_no += count - found;
    memcpy(c->prev_hash, last, sizeof c->prev_hash);
    return AS_OK;
}

/* Opens the file and continues the in-memory chain in it. Called with mu held, no sync running. */
static enum as_err open_locked(struct as_audit *a)
{
    struct stat st;
    int fd;
    bool fifo = stat(a->path, &st) == 0 && S_ISFIFO(st.st_mode);
    if (fifo) {
        /* Without a reader, O_NONBLOCK makes this fail (ENXIO) instead of hanging the server;
         * with one, writes block again so a slow reader slows requests rather than losing lines. */
        fd = open(a->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            int fl = fcntl(fd, F_GETFL);
            if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
                close(fd);
                fd = -1;
            }
        }
    } else {
        fd = open(a->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        int64_t now = as_now();
        if (now != a->last_open_error) {
            as_error("audit: cannot open %s: %s", a->path, strerror(errno));
            a->last_open_error = now;
        }
        return AS_ERR_IO;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return AS_ERR_IO;
    }
    a->regular = S_ISREG(st.st_mode);
    a->size = 0;
    a->uncached = 0;
    if (a->regular) {
        if ((st.st_mode & 077) != 0) {
            as_warn("audit: %s is readable by group or others; it should be 0600", a->path);
        }
        struct as_chain c = a->chain;
        enum as_err r = reconcile(a, fd, &c, &a->size);
        if (r != AS_OK) {
            close(fd);
            return r;
        }
        a->chain = c;
    }
    a->fd = fd;
    return AS_OK;
}

/*
 * Wakes one sync thread to lead a sync for waiters, unless a sync of the file runs (lead_sync
 * wants the next one when its file sync ends) or a wake-up is already on its way: one signal
 * per request woke the idle sync thread only to find the file busy. Called with mu held.
 */
static void want_sync(struct as_audit *a)
{
    if (!a->syncing && !a->sync_wanted) {
        a->sync_wanted = true;
        pthread_cond_signal(&a->scv);
    }
}

/* Unlinks *pw (a queued waiter) and wakes it with state. Called with mu held. */
static void wake_one(struct as_audit *a, struct waiter **pw, enum waiter_state state)
{
    struct waiter *w = *pw;
    *pw = w->next;
    if (*pw == NULL) {
        a->wq_tail = pw;
    }
    if (w->done != NULL) {
        void (*done)(void *, bool) = w->done;
        void *arg = w->arg;
        free(w);
        done(arg, state == W_DONE);
        return;
    }
    w->state = state;
    sem_post(&w->sem); /* w is its owner's again from here */
}

/* Wakes the waiters whose lines are synced, or all of them, failed, when the file was given up.
 * Called with mu held; the queue is in line order. */
static void wake_synced(struct as_audit *a, bool failed)
{
    while (a->wq != NULL && (failed || a->wq->mine <= a->synced)) {
        wake_one(a, &a->wq, failed ? W_FAILED : W_DONE);
    }
    /* as_audit_flush and as_audit_reopen wait on cv. */
    pthread_cond_broadcast(&a->cv);
}

/* A sync thread: leads the syncs that waiters need, so that no request thread blocks in
 * fdatasync for them. */
static void *sync_main(void *arg)
{
    struct as_audit *a = arg;
    pthread_mutex_lock(&a->mu);
    while (!a->stopping) {
        if (!a->syncing && !a->reopening && a->fd >= 0 && a->need > a->started) {
            a->sync_wanted = false;
            lead_sync(a);
            continue;
        }
        a->sync_wanted = false;
        pthread_cond_wait(&a->scv, &a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Gives the file up after a failed write or sync: waiters on it fail, the next line reopens.
 * While a sync of the file runs, its leader closes the descriptor once its fdatasync returns,
 * so that the number is not reused under it (lead_sync). */
static void drop_locked(struct as_audit *a)
{
    if (a->fd >= 0 && !a->syncing) {
        close(a->fd);
    }
    a->fd = -1;
    a->epoch++;
    wake_synced(a, true);
}

static enum as_err head_parse(const unsigned char *v, size_t n, struct as_chain *c)
{
    char buf[128];
    if (n >= sizeof buf || n < AS_CHAIN_HASH_HEX + 2 || v[AS_CHAIN_HASH_HEX] != ':') {
        return AS_ERR_INVALID;
    }
    memcpy(buf, v, n);
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long no = strtoull(buf + AS_CHAIN_HASH_HEX + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == buf + AS_CHAIN_HASH_HEX + 1) {
        return AS_ERR_INVALID;
    }
    buf[AS_CHAIN_HASH_HEX] = '\0';
    return as_chain_init(c, buf, (uint64_t)no);
}

/* The head as last written to the store (the genesis before the first). */
static enum as_err stored_head(const struct as_audit *a, struct as_chain *out)
{
    unsigned char *v = NULL;
    size_t n = 0;
    struct as_chain c;
    enum as_err r = as_store_setting_get(a->store, SETTING_HEAD, &v, &n);
    if (r == AS_ERR_NOT_FOUND) {
        r = as_chain_init(&c, NULL, 0);
    } else if (r == AS_OK) {
        r = head_parse(v, n, &c);
        if (r != AS_OK) {
            as_error("audit: the stored head is malformed");
            r = AS_ERR_STORE;
        }
    }
    free(v);
    if (r == AS_OK) {
        *out = c;
    }
    return r;
}

enum as_err as_audit_head(struct as_audit *a, char hash[AS_CHAIN_HASH_HEX + 1], uint64_t *line)
{
    pthread_mutex_lock(&a->mu);
    memcpy(hash, a->chain.prev_hash, AS_CHAIN_HASH_HEX + 1);
    *line = a->chain.line_no;
    pthread_mutex_unlock(&a->mu);
    return AS_OK;
}

enum as_err as_audit_flush(struct as_audit *a)
{
    enum as_err r = AS_OK;
    if (a == NULL || a->path == NULL) {
        return AS_OK;
    }
    pthread_mutex_lock(&a->mu);
    uint64_t epoch = a->epoch;
    /* The lines written so far, not those written while syncing them: under a steady stream of
     * audited requests those keep coming (14 syncs, 30 ms in one call under 8 parallel curls),
     * and the main loop's other timers (CRLs, rotation, purges) wait for this to return. */
    uint64_t upto = a->written;
    while (a->fd >= 0 && a->synced < upto) {
        if (a->syncing) {
            pthread_cond_wait(&a->cv, &a->mu);
        } else {
            lead_sync(a);
        }
        if (a->epoch != epoch) {
            r = AS_ERR_IO;
            break;
        }
    }
    pthread_mutex_unlock(&a->mu);
    return r == AS_OK ? as_audit_persist_head(a) : r;
}

enum as_err as_audit_persist_head(struct as_audit *a)
{
    if (a == NULL) {
        return AS_OK;
    }
    pthread_mutex_lock(&a->mu);
    struct as_chain c = a->synced_head;
    pthread_mutex_unlock(&a->mu);
    if (c.line_no == a->persisted_line) {
        return AS_OK;
    }
    char hv[AS_CHAIN_HASH_HEX + 32];
    int hn = snprintf(hv, sizeof hv, "%s:%" PRIu64, c.prev_hash, c.line_no);
    enum as_err r = as_store_setting_put(a->store, SETTING_HEAD, hv, (size_t)hn);
    if (r == AS_OK) {
        r = as_store_sync_mine(a->store);
    }
    if (r != AS_OK) {
        as_error("audit: cannot record the chain head in the store: %s", as_strerror(r));
        return r;
    }
    a->persisted_line = c.line_no;
    return AS_OK;
}

enum as_err as_audit_open(struct as_store *store, const char *path, bool log_allowed_checks,
                          struct as_audit **out)
{
    enum as_err r;
    struct as_audit *a = calloc(1, sizeof *a);
    *out = NULL;
    if (a == NULL) {
        return AS_ERR_NOMEM;
    }
    a->store = store;
    a->fd = -1;
    a->log_allowed_checks = log_allowed_checks;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&a->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&a->cv, NULL);
    pthread_cond_init(&a->scv, NULL);
    a->wq_tail = &a->wq;
    if ((r = load_salt(a)) != AS_OK) {
        goto fail;
    }
    if ((r = stored_head(a, &a->chain)) != AS_OK) {
        goto fail;
    }
    a->synced_head = a->chain;
    a->persisted_line = a->chain.line_no;
    if (path == NULL || *path == '\0') {
        as_info("audit: disabled (audit.path is empty)");
        *out = a;
        return AS_OK;
    }
    if ((a->path = strdup(path)) == NULL) {
        r = AS_ERR_NOMEM;
        goto fail;
    }
    r = open_locked(a);
    if (r == AS_ERR_INVALID) {
        goto fail; /* a file that is not our chain: refuse to start */
    }
    /* Lines adopted from the file (written after the stored head) are on disk already. */
    a->synced_head = a->chain;
    if (as_audit_persist_head(a) != AS_OK) {
        r = AS_ERR_STORE;
        goto fail;
    }
    if (r != AS_OK) {
        /* Not fatal: every audited request fails (500) until the file can be opened. */
        as_error("audit: %s is not writable; audited requests fail until it is", path);
    } else {
        as_info("audit: writing %s (chain at line %" PRIu64 ")", path, a->chain.line_no);
    }
    for (int i = 0; i < SYNC_THREADS; i++) {
        if (pthread_create(&a->syncers[i], NULL, sync_main, a) != 0) {
            as_error("audit: cannot start a sync thread");
            r = AS_ERR_INTERNAL;
            goto fail;
        }
        a->nsyncers++;
    }
    *out = a;
    return AS_OK;
fail:
    as_audit_free(a);
    return r;
}

void as_audit_free(struct as_audit *a)
{
    if (a == NULL) {
        return;
    }
    /* A clean stop leaves every line on disk and the store's head on the last one. */
    if (as_audit_flush(a) != AS_OK) {
        as_error("audit: the head in the store is behind the file; the next start adopts it");
    }
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_cond_broadcast(&a->scv);
    pthread_mutex_unlock(&a->mu);
    for (int i = 0; i < a->nsyncers; i++) {
        pthread_join(a->syncers[i], NULL);
    }
    if (a->fd >= 0) {
        close(a->fd);
    }
    as_wipe(a->salt, sizeof a->salt);
    as_hmac_key_free(a->mac);
    pthread_cond_destroy(&a->scv);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a->path);
    free(a);
}

enum as_err as_audit_reopen(struct as_audit *a)
{
    if (a == NULL || a->path == NULL) {
        return AS_OK;
    }
    pthread_mutex_lock(&a->mu);
    /* Lines already written to the old file are made durable there first, so the requests
     * waiting on them are answered rather than failed by the reopen. New lines wait for the new
     * file meanwhile: under a steady stream of audited requests the lines to sync kept coming,
     * and the loop below chased them for as long as the stream lasted. */
    a->reopening = true;
    while (a->syncing || (a->fd >= 0 && a->synced < a->written)) {
        if (a->syncing) {
            pthread_cond_wait(&a->cv, &a->mu);
        } else {
            lead_sync(a);
        }
    }
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    a->epoch++;
    wake_synced(a, true); /* none: every line written was synced above */
    enum as_err r = open_locked(a);
    uint64_t line = a->chain.line_no;
    a->reopening = false;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (as_audit_persist_head(a) != AS_OK) {
        r = AS_ERR_STORE;
    }
    if (r == AS_OK) {
        as_info("audit: reopened %s (chain at line %" PRIu64 ")", a->path, line);
    } else {
        as_error("audit: cannot reopen %s; audited requests fail until it can be", a->path);
    }
    return r;
}

bool as_audit_enabled(const struct as_audit *a)
{
    return a != NULL && a->path != NULL;
}

bool as_audit_log_allowed_checks(const struct as_audit *a)
{
    return a != NULL && a->log_allowed_checks;
}

/* Writes the lines (each followed by "\n") at the end of the file, with one writev. */
static enum as_err write_lines(struct as_audit *a, char *const *lines, const size_t *lens, int n)
{
    struct iovec iov[2 * APPEND_MAX];
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        iov[2 * i] = (struct iovec){lines[i], lens[i]};
        iov[2 * i + 1] = (struct iovec){(void *)"\n", 1};
        total += lens[i] + 1;
    }
    size_t done = 0;
    while (done < total) {
        struct iovec v[2 * APPEND_MAX];
        int nv = 0;
        size_t skip = done;
        for (int i = 0; i < 2 * n; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[nv].iov_base = (char *)iov[i].iov_base + skip;
            v[nv].iov_len = iov[i].iov_len - skip;
            skip = 0;
            nv++;
        }
        ssize_t w = writev(a->fd, v, nv);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            as_error("audit: cannot write %s: %s", a->path,
                     w < 0 ? strerror(errno) : "no progress");
            if (a->regular && done > 0 && ftruncate(a->fd, a->size) != 0) {
                as_error("audit: cannot cut off the partial line in %s", a->path);
            }
            return AS_ERR_IO;
        }
        done += (size_t)w;
    }
    a->size += (off_t)total;
    return AS_OK;
}

/*
 * Makes every line written so far durable, with the store commits their requests made: one
 * fdatasync of the file, then the store's group commit. Called with mu held and no sync of the
 * file running; mu is released meanwhile (other threads keep appending) and held again on
 * return. On failure the file is given up (drop_locked).
 *
 * The two syncs of consecutive groups overlap: once the file's fdatasync has returned, the next
 * group's may start (want_sync) while this one waits for the store's. Each takes a few hundred
 * microseconds here; run one after the other they bounded the groups per second, with part of
 * the CPU idle. Lines count as synced only when both are done; a later group finishing first
 * covers the earlier one's lines too (its fdatasync started after theirs ended, and the store
 * syncs commits in order).
 */
static void lead_sync(struct as_audit *a)
{
    a->syncing = true;
    uint64_t upto = a->written;
    if (upto > a->started) {
        a->started = upto;
    }
    /* Store commits the requests of these lines made (before writing their lines). */
    uint64_t store_upto = a->store_need;
    struct as_chain head = a->chain;
    int fd = a->fd;
    bool regular = a->regular;
    off_t from = a->uncached;
    off_t to = a->size - a->size % UNCACHE_ALIGN;
    pthread_mutex_unlock(&a->mu);
    enum as_err sr = AS_OK;
    if (regular && fdatasync(fd) != 0) {
        as_error("audit: cannot sync %s: %s", a->path, strerror(errno));
        sr = AS_ERR_IO;
    }
    /* The synced lines are never read again by us: their pages leave the page cache, so that
     * the file's gigabytes do not fill memory and new lines reuse the freed pages (under
     * lookup-self load, writes grew from 35 to 56 us of CPU per request as the cache grew by
     * a few gigabytes). The tail page stays: dropping it would make the next append read it. */
    if (sr == AS_OK && regular && to > from &&
        posix_fadvise(fd, from, to - from, POSIX_FADV_DONTNEED) == 0) {
        from = to;
    }
    pthread_mutex_lock(&a->mu);
    a->syncing = false;
    if (a->fd != fd) {
        /* Given up meanwhile (a failed write or store sync): its waiters have failed; the
         * next line may reopen it now (append waits on cv for that). */
        close(fd);
        pthread_cond_broadcast(&a->cv);
        return;
    }
    a->uncached = from;
    if (sr != AS_OK) {
        drop_locked(a);
        return;
    }
    if (a->need > upto) {
        want_sync(a); /* the next group's file sync may start now */
    }
    pthread_mutex_unlock(&a->mu);
    sr = as_store_sync_to(a->store, store_upto);
    pthread_mutex_lock(&a->mu);
    if (sr != AS_OK) {
        drop_locked(a);
        return;
    }
    if (upto > a->synced) {
        a->synced = upto;
        a->synced_head = head;
    }
    wake_synced(a, false);
}

/* Appends n lines (n <= APPEND_MAX) with one write, bodies[i] being a record without
 * prev_hash (written outside the lock: only splicing in prev_hash and hashing need the chain);
 * with wait, returns once they are durable (see the group commit note at the top). */
static enum as_err append(struct as_audit *a, const struct as_buf *bodies, int n, bool wait,
                          void (*done)(void *, bool), void *arg, bool *pending)
{
    enum as_err r = AS_OK;
    char *lines[APPEND_MAX] = {NULL};
    size_t lens[APPEND_MAX] = {0};
    pthread_mutex_lock(&a->mu);
    while ((a->fd < 0 && a->syncing) || a->reopening) {
        pthread_cond_wait(&a->cv, &a->mu);
    }
    if (a->fd < 0 && (r = open_locked(a)) != AS_OK) {
        pthread_mutex_unlock(&a->mu);
        return AS_ERR_IO;
    }
    struct as_chain before = a->chain;
    for (int i = 0; i < n && r == AS_OK; i++) {
        r = as_chain_seal_prepared(&a->chain, bodies[i].data, bodies[i].len, &lines[i], &lens[i]);
    }
    if (r == AS_OK && (r = write_lines(a, lines, lens, n)) != AS_OK) {
        drop_locked(a);
    }
    for (int i = 0; i < n; i++) {
        free(lines[i]);
    }
    if (r != AS_OK) {
        a->chain = before;
        pthread_mutex_unlock(&a->mu);
        return r;
    }
    uint64_t mine = a->written += (uint64_t)n;
    uint64_t my_store = as_store_my_commit(a->store);
    if (my_store > a->store_need) {
        a->store_need = my_store;
    }
    if ((done == NULL && !wait) || a->synced >= mine) {
        pthread_mutex_unlock(&a->mu);
        return AS_OK;
    }
    /* Queued in line order, under the lock that wrote the line: a later drop of the file fails
     * it (wake_synced), and one of the sync threads leads the sync it needs. */
    struct waiter sw = {.mine = mine};
    struct waiter *w = &sw;
    if (done != NULL) {
        if ((w = calloc(1, sizeof *w)) == NULL) {
            pthread_mutex_unlock(&a->mu);
            return AS_ERR_NOMEM;
        }
        w->mine = mine;
        w->done = done;
        w->arg = arg;
        *pending = true;
    } else if (sem_init(&sw.sem, 0, 0) != 0) {
        pthread_mutex_unlock(&a->mu);
        return AS_ERR_INTERNAL;
    }
    *a->wq_tail = w;
    a->wq_tail = &w->next;
    if (mine > a->need) {
        a->need = mine;
    }
    want_sync(a);
    pthread_mutex_unlock(&a->mu);
    if (done != NULL) {
        return AS_OK;
    }
    while (sem_wait(&sw.sem) != 0) {
        /* EINTR: the post is still to come, and sw stays queued until it does. */
    }
    sem_destroy(&sw.sem);
    return sw.state == W_DONE ? AS_OK : AS_ERR_IO;
}

/* ---- records ---- */

static const char *operation_of(enum as_method m)
{
    switch (m) {
    case AS_M_GET:
    case AS_M_HEAD:
        return "read";
    case AS_M_POST:
    case AS_M_OTHER:
        return "update";
    case AS_M_DELETE:
        return "delete";
    case AS_M_LIST:
        return "list";
    }
    return "update";
}

static void time_now(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;
    char base[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%09ldZ", base, ts.tv_nsec);
}

/* Writes a string literal. */
#define PUT(b, lit) as_buf_add((b), (lit), sizeof(lit) - 1)

/*
 * A line is written member by member (the record's shape was Vault's, built as a jansson tree
 * and dumped; these write the same bytes without the tree). first: no member written yet in the
 * object being written, so no ',' before this one.
 */
static enum as_err member(struct as_buf *b, bool *first, const char *key, size_t keylen)
{
    enum as_err r = *first ? AS_OK : PUT(b, ",");
    *first = false;
    if (r == AS_OK) {
        r = as_json_write_string(b, key, keylen);
    }
    return r == AS_OK ? PUT(b, ":") : r;
}

/* A string member, left out when s is NULL or not UTF-8, as json_object_set_new(o, key,
 * json_string(s)) left it out (the method name is the client's bytes). */
static enum as_err member_str(struct as_buf *b, bool *first, const char *key, const char *s)
{
    size_t mark = b->len;
    bool was_first = *first;
    if (s == NULL) {
        return AS_OK;
    }
    enum as_err r = member(b, first, key, strlen(key));
    if (r == AS_OK) {
        r = as_json_write_string(b, s, strlen(s));
    }
    if (r == AS_ERR_INVALID) {
        as_buf_truncate(b, mark);
        *first = was_first;
        r = AS_OK;
    }
    return r;
}

/* A member holding v, which sits at depth in the line; rd NULL writes it clear, otherwise its
 * strings are redacted (they are not under a clear key). */
static enum as_err member_json(struct as_buf *b, bool *first, const char *key, json_t *v, int depth,
                               const struct as_json_redactor *rd)
{
    enum as_err r = member(b, first, key, strlen(key));
    return r == AS_OK ? as_json_write_redacted(b, v, depth, false, rd) : r;
}

/* The caller: Vault's auth block of the request's token, clear but for the token itself (tok,
 * its HMAC). */
static enum as_err put_caller_auth(struct as_buf *b, const struct as_req *req, const char *tok)
{
    const struct as_token_rec *t = req->auth;
    json_t *pol = NULL;
    json_t *meta = NULL;
    bool first = true;
    enum as_err r = PUT(b, "{");
    if (r == AS_OK && req->token != NULL) {
        r = member_str(b, &first, "client_token", tok);
    }
    if (r == AS_OK && t != NULL) {
        pol = as_json_array_from(t->policies_json);
        meta = t->meta_json ? json_loads(t->meta_json, 0, NULL) : NULL;
        /* Depths: the line is 1, this block 2, its members 3. */
        if ((r = member_str(b, &first, "accessor", t->accessor)) == AS_OK &&
            (r = member_str(b, &first, "display_name", t->display_name ? t->display_name : "")) ==
                AS_OK &&
            (r = member_json(b, &first, "policies", pol ? pol : json_null(), 3, NULL)) == AS_OK &&
            (r = member_json(b, &first, "token_policies", pol ? pol : json_null(), 3, NULL)) ==
                AS_OK &&
            (r = member_json(b, &first, "metadata", meta ? meta : json_null(), 3, NULL)) == AS_OK) {
            r = member_str(b, &first, "token_type", "service");
        }
    }
    json_decref(pol);
    json_decref(meta);
    return r == AS_OK ? PUT(b, "}") : r;
}

static enum as_err put_request_block(struct as_buf *b, struct as_audit *a, const struct as_req *req,
                                     const char *tok)
{
    const struct as_json_redactor rd = {redact_clear, redact_replace, a};
    bool first = true;
    bool has_data = req->body != NULL && json_object_size(req->body) > 0;
    enum as_err r = PUT(b, "{");
    if (r == AS_OK && (r = member_str(b, &first, "id", req->request_id)) == AS_OK &&
        (r = member_str(b, &first, "operation", operation_of(req->method))) == AS_OK &&
        (r = member_str(b, &first, "method", req->method_name ? req->method_name : "")) == AS_OK &&
        (r = member_str(b, &first, "client_token", tok)) == AS_OK &&
        (r = member_str(b, &first, "client_token_accessor",
                        req->auth != NULL ? req->auth->accessor : "")) == AS_OK &&
        (r = member_str(b, &first, "path", req->path)) == AS_OK &&
        (r = member_str(b, &first, "remote_address", req->remote)) == AS_OK) {
        r = member_json(b, &first, "data", has_data ? req->body : json_null(), 3, &rd);
    }
    return r == AS_OK ? PUT(b, "}") : r;
}

/*
 * The caller's auth block and the request block are the same in both lines of a request:
 * written (the token HMAC'd once for both places it goes, the body redacted) for the first line
 * and kept on the request, as the text "auth":{...},"request":{...}, for the second.
 */
static enum as_err request_blocks(struct as_audit *a, struct as_req *req)
{
    char tok[AS_AUDIT_HASH_LEN] = "";
    struct as_buf *b = &req->audit_blocks;
    enum as_err r = AS_OK;
    if (b->data != NULL) {
        return AS_OK;
    }
    if (req->token != NULL) {
        if ((r = as_audit_hash(a, req->token, strlen(req->token), tok)) != AS_OK) {
            return r;
        }
    }
    as_buf_init(b, AS_AUDIT_MAX_LINE);
    if ((r = PUT(b, "\"auth\":")) == AS_OK && (r = put_caller_auth(b, req, tok)) == AS_OK &&
        (r = PUT(b, ",\"request\":")) == AS_OK) {
        r = put_request_block(b, a, req, tok);
    }
    if (r != AS_OK) {
        as_buf_free(b, false);
    }
    return r;
}

/*
 * data, redacted, followed by the members of extra (what only the audit line shows, e.g. a
 * check's decision) that data lacks, as json_object_update_missing merged their redacted copies.
 * Members sit at depth 4: the line, response, data, the member.
 */
static enum as_err put_data(struct as_buf *b, json_t *data, json_t *extra,
                            const struct as_json_redactor *rd)
{
    if (!json_is_object(data) || !json_is_object(extra)) {
        return as_json_write_redacted(b, data, 3, false, rd);
    }
    bool first = true;
    enum as_err r = PUT(b, "{");
    for (int pass = 0; pass < 2 && r == AS_OK; pass++) {
        json_t *o = pass == 0 ? data : extra;
        for (void *it = json_object_iter(o); it != NULL && r == AS_OK;
             it = json_object_iter_next(o, it)) {
            const char *key = json_object_iter_key(it);
            size_t keylen = json_object_iter_key_len(it);
            if (pass == 1 && json_object_get(data, key) != NULL) {
                continue;
            }
            if ((r = member(b, &first, key, keylen)) == AS_OK) {
                r = as_json_write_redacted(b, json_object_iter_value(it), 4,
                                           is_clear_key(key, keylen), rd);
            }
        }
    }
    return r == AS_OK ? PUT(b, "}") : r;
}

static enum as_err put_response_block(struct as_buf *b, struct as_audit *a,
                                      const struct as_resp *resp, int status)
{
    const struct as_json_redactor rd = {redact_clear, redact_replace, a};
    json_t *data = resp->data != NULL ? resp->data : resp->audit_data;
    char num[16];
    bool first = true;
    enum as_err r = PUT(b, "{");
    if (r == AS_OK && (r = member(b, &first, "status", strlen("status"))) == AS_OK) {
        int n = snprintf(num, sizeof num, "%d", status);
        r = as_buf_add(b, num, (size_t)n);
    }
    if (r == AS_OK && resp->auth != NULL) {
        r = member_json(b, &first, "auth", resp->auth, 3, &rd);
    }
    if (r == AS_OK && data != NULL && (r = member(b, &first, "data", strlen("data"))) == AS_OK) {
        r = put_data(b, data, resp->data != NULL ? resp->audit_data : NULL, &rd);
    }
    /* Warnings are our own text, written clear. */
    if (r == AS_OK && resp->warnings != NULL && json_array_size(resp->warnings) > 0) {
        r = member_json(b, &first, "warnings", resp->warnings, 3, NULL);
    }
    if (r == AS_OK && resp->raw != NULL && resp->content_type != NULL) {
        r = member_str(b, &first, "content_type", resp->content_type);
    }
    return r == AS_OK ? PUT(b, "}") : r;
}

/*
 * Writes one line of req into b: {"time", "type", "auth", "request", "response" (resp not NULL),
 * "error"}, "error" last as Vault writes it. b is initialized here; the caller frees it.
 */
static enum as_err render_record(struct as_audit *a, const char *type, struct as_req *req,
                                 const struct as_resp *resp, int status, const char *error,
                                 struct as_buf *b)
{
    char ts[48];
    bool first = true;
    /* The braces and the members between them, bounded as as_chain_seal bounds a record. */
    as_buf_init(b, AS_AUDIT_MAX_LINE + 2);
    enum as_err r = request_blocks(a, req);
    if (r != AS_OK) {
        return r;
    }
    time_now(ts, sizeof ts);
    if ((r = PUT(b, "{")) == AS_OK && (r = member_str(b, &first, "time", ts)) == AS_OK &&
        (r = member_str(b, &first, "type", type)) == AS_OK && (r = PUT(b, ",")) == AS_OK) {
        r = as_buf_add(b, req->audit_blocks.data, req->audit_blocks.len);
    }
    if (r == AS_OK && resp != NULL) {
        if ((r = member(b, &first, "response", strlen("response"))) == AS_OK) {
            r = put_response_block(b, a, resp, status);
        }
    }
    if (r == AS_OK && (r = member_str(b, &first, "error", error ? error : "")) == AS_OK) {
        r = PUT(b, "}");
    }
    return r;
}

/*
 * Appends the request line of req (resp NULL), or its response line: together with its request
 * line, in the same write, when that was not written yet (a route that changes nothing, whose
 * request line waits for the decision; a request refused before its handler).
 */
static enum as_err write_record(struct as_audit *a, struct as_req *req, const struct as_resp *resp,
                                int status, const char *error, bool wait,
                                void (*done)(void *, bool), void *arg, bool *pending)
{
    struct as_buf b[APPEND_MAX];
    int n = 0;
    enum as_err r = AS_OK;
    if (!req->audit_req_done) {
        r = render_record(a, "request", req, NULL, 0, error, &b[n++]);
    }
    if (r == AS_OK && resp != NULL) {
        r = render_record(a, "response", req, resp, status, error, &b[n++]);
    }
    if (r == AS_OK && n > 0) {
        r = append(a, b, n, wait, done, arg, pending);
    }
    if (r == AS_OK) {
        req->audit_req_done = true;
    }
    for (int i = 0; i < n; i++) {
        as_buf_free(&b[i], false);
    }
    return r;
}

enum as_err as_audit_request(struct as_audit *a, struct as_req *req, const char *error)
{
    return write_record(a, req, NULL, 0, error, false, NULL, NULL, NULL);
}

enum as_err as_audit_response(struct as_audit *a, struct as_req *req, const struct as_resp *resp,
                              int status, const char *error, bool durable)
{
    return write_record(a, req, resp, status, error, durable, NULL, NULL, NULL);
}

enum as_err as_audit_response_async(struct as_audit *a, struct as_req *req,
                                    const struct as_resp *resp, int status, const char *error,
                                    void (*done)(void *arg, bool ok), void *arg, bool *pending)
{
    *pending = false;
    return write_record(a, req, resp, status, error, false, done, arg, pending);
}
