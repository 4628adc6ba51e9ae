/* common.c: errors, logging, secrets, buffers, durations and JSON helpers. */
#include "common.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

const char *as_strerror(enum as_err err)
{
    switch (err) {
#define AS_ERR_CASE(name, val, str) \
    case name:                      \
        return str;
        AS_ERRORS(AS_ERR_CASE)
#undef AS_ERR_CASE
    }
    return "unknown error";
}

/* ---- logging ---- */

static enum as_log_level g_level = AS_LOG_INFO;
static _Thread_local const char *t_request;

void as_log_request(const char *id)
{
    t_request = id;
}

void as_log_set_level(enum as_log_level lvl)
{
    g_level = lvl;
}

void as_log(enum as_log_level lvl, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (lvl < g_level) {
        return;
    }
    char ts[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Keep one event on one line: a newline in a message would let input forge log lines. */
    for (char *p = msg; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            *p = ' ';
        }
    }
    if (t_request != NULL) {
        fprintf(stderr, "%s.%03ldZ [%s] req=%s %s\n", ts, now.tv_nsec / 1000000, names[lvl],
                t_request, msg);
    } else {
        fprintf(stderr, "%s.%03ldZ [%s] %s\n", ts, now.tv_nsec / 1000000, names[lvl], msg);
    }
}

/* ---- UTF-8 ---- */

size_t as_utf8_seq(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

size_t as_utf8_len(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t l = as_utf8_seq(s + i, n - i);
        if (l == 0) {
            break;
        }
        i += l;
    }
    return i;
}

void as_utf8_sanitize(char *s)
{
    size_t n = strlen(s);
    size_t i = 0;
    while (i < n) {
        size_t l = as_utf8_seq(s + i, n - i);
        if (l == 0) {
            s[i] = '?';
            l = 1;
        }
        i += l;
    }
}

void as_why(char *why, size_t whylen, const char *fmt, ...)
{
    if (why == NULL || whylen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* ---- latency histograms ---- */

const double as_hist_bounds[AS_HIST_BUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                0.5,     1,      2.5,     10};

void as_hist_observe(struct as_hist *h, int64_t ns)
{
    double s = (double)(ns > 0 ? ns : 0) / 1e9;
    size_t i = 0;
    while (i < AS_HIST_BUCKETS && s > as_hist_bounds[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
}

/* ---- secrets ---- */

void as_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0) {
        OPENSSL_cleanse(p, n);
    }
}

void as_free_secret_str(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

bool as_secret_eq(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

enum as_err as_rand_bytes(void *buf, size_t n)
{
    if (n > INT32_MAX || RAND_bytes(buf, (int)n) != 1) {
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

size_t as_b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

char *as_pem_encode(const char *label, const unsigned char *der, size_t n)
{
    if (n > (1u << 24)) {
        return NULL;
    }
    size_t b64len = 4 * ((n + 2) / 3);
    unsigned char *b64 = malloc(b64len + 1);
    struct as_buf out;
    as_buf_init(&out, b64len + b64len / 64 + 256);
    if (b64 == NULL) {
        return NULL;
    }
    EVP_EncodeBlock(b64, der, (int)n);
    enum as_err r = as_buf_printf(&out, "-----BEGIN %s-----\n", label);
    for (size_t i = 0; r == AS_OK && i < b64len; i += 64) {
        size_t k = b64len - i < 64 ? b64len - i : 64;
        r = as_buf_append(&out, b64 + i, k);
        if (r == AS_OK) {
            r = as_buf_append(&out, "\n", 1);
        }
    }
    if (r == AS_OK) {
        r = as_buf_printf(&out, "-----END %s-----\n", label);
    }
    free(b64);
    if (r != AS_OK) {
        as_buf_free(&out, false);
        return NULL;
    }
    return out.data;
}

void as_hex(const unsigned char *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

enum as_err as_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                           unsigned char out[32])
{
    unsigned int outlen = 32;
    if (keylen > INT32_MAX ||
        HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &outlen) == NULL || outlen != 32) {
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

uint64_t as_hash_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 14695981039346656037ULL; /* FNV-1a's 64-bit offset basis */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 1099511628211ULL;
    }
    return h;
}

uint64_t as_hash_str(const char *s)
{
    return as_hash_bytes(s, strlen(s));
}

static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;
/* Each thread keeps one digest context: allocating and freeing one per call cost twice the
 * hashing of a short input (cache keys on every proxy check). Freed when the thread exits. */
static pthread_key_t g_sha256_tls;
static bool g_sha256_tls_ok;

static void md_ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void fetch_sha256(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_sha256_tls_ok = pthread_key_create(&g_sha256_tls, md_ctx_free) == 0;
}

enum as_err as_sha256_3(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                        size_t clen, unsigned char out[32])
{
    pthread_once(&g_sha256_once, fetch_sha256);
    EVP_MD_CTX *ctx = g_sha256_tls_ok ? pthread_getspecific(g_sha256_tls) : NULL;
    bool own = false;
    if (ctx == NULL) {
        if ((ctx = EVP_MD_CTX_new()) == NULL) {
            return AS_ERR_NOMEM;
        }
        own = !g_sha256_tls_ok || pthread_setspecific(g_sha256_tls, ctx) != 0;
    }
    unsigned int n = 0;
    enum as_err r = AS_ERR_CRYPTO;
    if (g_sha256 != NULL && EVP_DigestInit_ex(ctx, g_sha256, NULL) == 1 &&
        EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
        EVP_DigestUpdate(ctx, c, clen) == 1 && EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32) {
        r = AS_OK;
    }
    if (own) {
        EVP_MD_CTX_free(ctx);
    }
    return r;
}

struct as_hmac_key {
    EVP_MAC *mac;
    EVP_MAC_CTX *tmpl;
    pthread_key_t tls; /* this thread's copy of tmpl, re-initialized per message */
    bool tls_ok;
};

static void hmac_ctx_free(void *p)
{
    EVP_MAC_CTX_free(p);
}

enum as_err as_hmac_key_new(const void *key, size_t keylen, struct as_hmac_key **out)
{
    struct as_hmac_key *k = calloc(1, sizeof *k);
    OSSL_PARAM params[2];
    *out = NULL;
    if (k == NULL) {
        return AS_ERR_NOMEM;
    }
    params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if ((k->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
        (k->tmpl = EVP_MAC_CTX_new(k->mac)) == NULL ||
        EVP_MAC_init(k->tmpl, key, keylen, params) != 1) {
        as_hmac_key_free(k);
        return AS_ERR_CRYPTO;
    }
    k->tls_ok = pthread_key_create(&k->tls, hmac_ctx_free) == 0;
    *out = k;
    return AS_OK;
}

enum as_err as_hmac_key_mac(const struct as_hmac_key *k, const void *msg, size_t msglen,
                            unsigned char out[32])
{
    size_t outlen = 0;
    enum as_err r = AS_ERR_CRYPTO;
    /* Copying the template costs more than hashing a short message; each thread keeps its own
     * copy and re-initializes it with the same key (EVP_MAC_init with a NULL key). */
    EVP_MAC_CTX *c = k->tls_ok ? pthread_getspecific(k->tls) : NULL;
    bool own = false;
    if (c == NULL) {
        c = EVP_MAC_CTX_dup(k->tmpl);
        if (c == NULL) {
            return AS_ERR_CRYPTO;
        }
        if (k->tls_ok && pthread_setspecific(k->tls, c) == 0) {
            own = false;
        } else {
            own = true;
        }
    } else if (EVP_MAC_init(c, NULL, 0, NULL) != 1) {
        return AS_ERR_CRYPTO;
    }
    if (EVP_MAC_update(c, msg, msglen) == 1 && EVP_MAC_final(c, out, &outlen, 32) == 1 &&
        outlen == 32) {
        r = AS_OK;
    }
    if (own) {
        EVP_MAC_CTX_free(c);
    }
    return r;
}

void as_hmac_key_free(struct as_hmac_key *k)
{
    if (k != NULL) {
        if (k->tls_ok) {
            /* Other threads' copies were freed when they exited (the key's destructor); the
             * calling thread's is freed here. */
            hmac_ctx_free(pthread_getspecific(k->tls));
            pthread_key_delete(k->tls);
        }
        EVP_MAC_CTX_free(k->tmpl);
        EVP_MAC_free(k->mac);
        free(k);
    }
}

/* ---- bounded buffer ---- */

void as_buf_init(struct as_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static enum as_err buf_reserve(struct as_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) {
        return AS_ERR_TOO_LARGE;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return AS_OK;
    }
    /* 1 KiB first: most buffers are a request's answer or audit line (0.3-4 KiB), which from
     * 256 bytes took three or four reallocs each. */
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        return AS_ERR_NOMEM;
    }
    b->data = p;
    b->cap = cap;
    return AS_OK;
}

enum as_err as_buf_append(struct as_buf *b, const void *p, size_t n)
{
    enum as_err r = buf_reserve(b, n);
    if (r != AS_OK) {
        return r;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return AS_OK;
}

enum as_err as_buf_printf(struct as_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return AS_ERR_INTERNAL;
    }
    enum as_err r = buf_reserve(b, (size_t)n);
    if (r != AS_OK) {
        return r;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return AS_OK;
}

void as_buf_truncate(struct as_buf *b, size_t len)
{
    if (b->data != NULL && len <= b->len) {
        b->len = len;
        b->data[len] = '\0';
    }
}

bool as_strdup_fields(char **const *fields, size_t n)
{
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        if (ok && *fields[i] != NULL) {
            *fields[i] = strdup(*fields[i]);
            ok = *fields[i] != NULL;
        } else if (!ok) {
            *fields[i] = NULL;
        }
    }
    return ok;
}

void as_buf_free(struct as_buf *b, bool wipe)
{
    if (b->data != NULL && wipe) {
        OPENSSL_cleanse(b->data, b->cap);
    }
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* ---- URLs ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Percent-decodes in into out (outlen bytes). '+' stays '+'. false on a bad escape, a NUL, or
 * overflow. */
bool as_pct_decode(const char *in, size_t n, char *out, size_t outlen, size_t *written)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= n) {
                return false;
            }
            int hi = hexval(in[i + 1]);
            int lo = hexval(in[i + 2]);
            if (hi < 0 || lo < 0) {
                return false;
            }
            c = (char)(hi * 16 + lo);
            if (c == '\0') {
                return false;
            }
            i += 2;
        }
        if (o + 1 >= outlen) {
            return false;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    *written = o;
    return true;
}

/*
 * Builds the canonical path from the raw URL: "/v1/" prefix removed, each segment decoded, and
 * refused (AS_ERR_INVALID) when a segment is empty, "." or "..", or decodes to something holding
 * '/', NUL or a control character. One trailing slash is dropped. AS_ERR_NOT_FOUND outside /v1/.
 */
enum as_err as_url_path_canonical(const char *url, char *out, size_t outlen)
{
    if (strncmp(url, "/v1/", 4) != 0) {
        return AS_ERR_NOT_FOUND;
    }
    const char *p = url + 4;
    size_t o = 0;
    size_t n = strlen(p);
    if (n > 0 && p[n - 1] == '/') {
        n--;
    }
    if (n == 0) {
        return AS_ERR_NOT_FOUND;
    }
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && p[j] != '/') {
            j++;
        }
        char seg[1024];
        size_t sl = 0;
        if (!as_pct_decode(p + i, j - i, seg, sizeof seg, &sl)) {
            return AS_ERR_INVALID;
        }
        if (sl == 0 || strcmp(seg, ".") == 0 || strcmp(seg, "..") == 0) {
            return AS_ERR_INVALID;
        }
        for (size_t k = 0; k < sl; k++) {
            unsigned char c = (unsigned char)seg[k];
            if (c == '/' || c < 0x20 || c == 0x7f || c == '\\') {
                return AS_ERR_INVALID;
            }
        }
        /* The path goes into JSON (errors, audit lines), which holds only UTF-8. */
        if (as_utf8_len(seg, sl) != sl) {
            return AS_ERR_INVALID;
        }
        if (o + sl + 2 > outlen) {
            return AS_ERR_INVALID;
        }
        if (o > 0) {
            out[o++] = '/';
        }
        memcpy(out + o, seg, sl);
        o += sl;
        i = j + 1;
    }
    out[o] = '\0';
    return AS_OK;
}

/* ---- files ---- */

static enum as_err write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return AS_ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return AS_OK;
}

enum as_err as_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
    char tmp[4096];
    char dirbuf[4096];
    int fd = -1;
    enum as_err r = AS_ERR_IO;
    unsigned char rnd[6];
    char hex[13];
    if (as_rand_bytes(rnd, sizeof rnd) != AS_OK) {
        return AS_ERR_CRYPTO;
    }
    as_hex(rnd, sizeof rnd, hex);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-%s", path, hex) >= sizeof tmp ||
        (size_t)snprintf(dirbuf, sizeof dirbuf, "%s", path) >= sizeof dirbuf) {
        return AS_ERR_INVALID;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        as_error("cannot create %s: %s", tmp, strerror(errno));
        return AS_ERR_IO;
    }
    /* The umask may have narrowed the mode; make it exactly what was asked. */
    if (fchmod(fd, (mode_t)mode) != 0 || write_all(fd, data, len) != AS_OK || fsync(fd) != 0) {
        as_error("cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        as_error("cannot rename %s: %s", tmp, strerror(errno));
        goto out;
    }
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return AS_OK;
out:
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    return r;
}

enum as_err as_file_read(const char *path, size_t max, char **out, size_t *len)
{
    struct as_buf b;
    char chunk[4096];
    enum as_err r = AS_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? AS_ERR_NOT_FOUND : AS_ERR_IO;
    }
    as_buf_init(&b, max);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            r = AS_ERR_IO;
            break;
        }
        if (n == 0) {
            break;
        }
        if ((r = as_buf_append(&b, chunk, (size_t)n)) != AS_OK) {
            break;
        }
    }
    close(fd);
    as_wipe(chunk, sizeof chunk);
    if (r == AS_OK && b.data == NULL) {
        r = as_buf_append(&b, "", 0);
    }
    if (r != AS_OK) {
        as_buf_free(&b, true);
        return r;
    }
    *out = b.data;
    if (len) {
        *len = b.len;
    }
    return AS_OK;
}

/* ---- time and durations ---- */

int64_t as_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

int64_t as_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Go's time.ParseDuration grammar: [0-9]+(\.[0-9]*)?unit, repeated; units ns us µs ms s m h.
 * A bare integer is seconds (Vault's convention). Results are whole seconds, rounded down.
 */
enum as_err as_duration_parse(const char *s, int64_t *out_secs)
{
    if (s == NULL || *s == '\0' || strlen(s) > 64) {
        return AS_ERR_INVALID;
    }
    const char *p = s;
    bool all_digits = true;
    for (const char *q = s; *q; q++) {
        if (!isdigit((unsigned char)*q)) {
            all_digits = false;
            break;
        }
    }
    if (all_digits) {
        if (strlen(s) > 15) {
            return AS_ERR_INVALID;
        }
        int64_t v = 0;
        for (; *p; p++) {
            v = v * 10 + (*p - '0');
        }
        *out_secs = v;
        return AS_OK;
    }
    if (strcmp(s, "0") == 0) {
        *out_secs = 0;
        return AS_OK;
    }
    /* Total in nanoseconds as long double is exact enough for durations up to centuries. */
    long double total = 0;
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '.') {
            return AS_ERR_INVALID;
        }
        long double v = 0;
        bool digits = false;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p - '0');
            digits = true;
            p++;
        }
        if (*p == '.') {
            p++;
            long double scale = 0.1L;
            while (isdigit((unsigned char)*p)) {
                v += scale * (*p - '0');
                scale /= 10;
                digits = true;
                p++;
            }
        }
        if (!digits) {
            return AS_ERR_INVALID;
        }
        long double unit;
        if (strncmp(p, "ns", 2) == 0) {
            unit = 1e-9L;
            p += 2;
        } else if (strncmp(p, "us", 2) == 0) {
            unit = 1e-6L;
            p += 2;
        } else if (strncmp(p, "\xc2\xb5s", 3) == 0) {
            unit = 1e-6L;
            p += 3;
        } else if (strncmp(p, "ms", 2) == 0) {
            unit = 1e-3L;
            p += 2;
        } else if (*p == 's') {
            unit = 1;
            p++;
        } else if (*p == 'm') {
            unit = 60;
            p++;
        } else if (*p == 'h') {
            unit = 3600;
            p++;
        } else if (*p == 'd') {
            /* Vault accepts days too ("7d"). */
            unit = 86400;
            p++;
        } else {
            return AS_ERR_INVALID;
        }
        total += v * unit;
        if (total > 1e15L) {
            return AS_ERR_INVALID;
        }
    }
    *out_secs = (int64_t)total;
    return AS_OK;
}

void as_duration_format(int64_t secs, char *out, size_t outlen)
{
    if (secs <= 0) {
        snprintf(out, outlen, "0s");
        return;
    }
    int64_t h = secs / 3600;
    int64_t m = (secs % 3600) / 60;
    int64_t s = secs % 60;
    if (h > 0) {
        snprintf(out, outlen, "%" PRId64 "h%" PRId64 "m%" PRId64 "s", h, m, s);
    } else if (m > 0) {
        snprintf(out, outlen, "%" PRId64 "m%" PRId64 "s", m, s);
    } else {
        snprintf(out, outlen, "%" PRId64 "s", s);
    }
}

void as_time_rfc3339(int64_t secs, char *out, size_t outlen)
{
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- JSON ---- */

/* A size header in front of each block so the free can wipe exactly what was allocated. */
union alloc_hdr {
    size_t size;
    max_align_t align;
};

static void *wiping_malloc(size_t n)
{
    if (n > SIZE_MAX - sizeof(union alloc_hdr)) {
        return NULL;
    }
    union alloc_hdr *h = malloc(sizeof *h + n);
    if (h == NULL) {
        return NULL;
    }
    h->size = n;
    return h + 1;
}

static void wiping_free(void *p)
{
    if (p == NULL) {
        return;
    }
    union alloc_hdr *h = (union alloc_hdr *)p - 1;
    OPENSSL_cleanse(p, h->size);
    free(h);
}

void as_json_wipe_on_free(void)
{
    json_set_alloc_funcs(wiping_malloc, wiping_free);
}

static bool json_depth_ok(json_t *v, int depth)
{
    if (depth > AS_MAX_JSON_DEPTH) {
        return false;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c)
        {
            if (!json_depth_ok(c, depth + 1)) {
                return false;
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            if (!json_depth_ok(c, depth + 1)) {
                return false;
            }
        }
    }
    return true;
}

enum as_err as_json_parse_object(const char *body, size_t len, json_t **out, char *err,
                                 size_t errlen)
{
    *out = NULL;
    size_t i = 0;
    while (i < len && isspace((unsigned char)body[i])) {
        i++;
    }
    if (i == len) {
        *out = json_object();
        return *out ? AS_OK : AS_ERR_NOMEM;
    }
    if (len > AS_MAX_BODY_BYTES) {
        return AS_ERR_TOO_LARGE;
    }
    json_error_t je;
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (v == NULL) {
        if (err) {
            snprintf(err, errlen, "failed to parse JSON input: %s", je.text);
        }
        return AS_ERR_INVALID;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        if (err) {
            snprintf(err, errlen, "failed to parse JSON input: expected a JSON object");
        }
        return AS_ERR_INVALID;
    }
    if (!json_depth_ok(v, 1)) {
        json_decref(v);
        if (err) {
            snprintf(err, errlen, "failed to parse JSON input: nesting deeper than %d",
                     AS_MAX_JSON_DEPTH);
        }
        return AS_ERR_INVALID;
    }
    *out = v;
    return AS_OK;
}

static json_t *field(json_t *obj, const char *key, bool *present)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (v != NULL && json_is_null(v)) {
        v = NULL;
    }
    if (present) {
        *present = v != NULL;
    }
    return v;
}

enum as_err as_json_get_string(json_t *obj, const char *key, const char **out, bool *present)
{
    json_t *v = field(obj, key, present);
    if (v == NULL) {
        return AS_OK;
    }
    if (!json_is_string(v)) {
        return AS_ERR_INVALID;
    }
    *out = json_string_value(v);
    return AS_OK;
}

enum as_err as_json_get_duration(json_t *obj, const char *key, int64_t *out, bool *present)
{
    json_t *v = field(obj, key, present);
    if (v == NULL) {
        return AS_OK;
    }
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            return AS_ERR_INVALID;
        }
        *out = json_integer_value(v);
        return AS_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d < 0 || d > 1e15) {
            return AS_ERR_INVALID;
        }
        *out = (int64_t)d;
        return AS_OK;
    }
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) {
            *out = 0;
            return AS_OK;
        }
        return as_duration_parse(json_string_value(v), out);
    }
    return AS_ERR_INVALID;
}

json_t *as_json_array_from(const char *text)
{
    json_error_t je;
    json_t *v = text ? json_loads(text, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!json_is_array(v)) {
        json_decref(v);
        return json_array();
    }
    return v;
}

json_t *as_json_pointer(json_t *root, const char *ptr)
{
    json_t *cur = root;
    if (ptr == NULL || *ptr == '\0') {
        return root;
    }
    if (*ptr != '/') {
        return NULL;
    }
    const char *p = ptr;
    while (cur != NULL && *p == '/') {
        p++;
        char tok[512];
        size_t n = 0;
        while (*p && *p != '/') {
            char c = *p++;
            if (c == '~') {
                if (*p == '0') {
                    c = '~';
                } else if (*p == '1') {
                    c = '/';
                } else {
                    return NULL; /* RFC 6901 §3: only ~0 and ~1 */
                }
                p++;
            }
            if (n + 1 >= sizeof tok) {
                return NULL;
            }
            tok[n++] = c;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, tok, n);
        } else if (json_is_array(cur)) {
            if (n == 0 || (n > 1 && tok[0] == '0') || n > 9) {
                return NULL;
            }
            size_t idx = 0;
            for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char)tok[i])) {
                    return NULL;
                }
                idx = idx * 10 + (size_t)(tok[i] - '0');
            }
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
    }
    return cur;
}

const char *as_json_str_or(json_t *obj, const char *key, const char *def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

bool as_glob_match(const char *pat, const char *s)
{
    const char *star = NULL;
    const char *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat == *s) {
            pat++;
            s++;
        } else if (star != NULL) {
            pat = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*') {
        pat++;
    }
    return *pat == '\0';
}

/* One "a.b.c.d[/n]" or IPv6 "[/n]" network into its address bytes and prefix length. */
static bool cidr_parse(const char *c, unsigned char net[16], int *fam, long *bits)
{
    char ip[64];
    const char *slash = strchr(c, '/');
    size_t n = slash ? (size_t)(slash - c) : strlen(c);
    if (n == 0 || n >= sizeof ip) {
        return false;
    }
    memcpy(ip, c, n);
    ip[n] = '\0';
    *fam = inet_pton(AF_INET, ip, net) == 1 ? 4 : inet_pton(AF_INET6, ip, net) == 1 ? 6 : 0;
    if (*fam == 0) {
        return false;
    }
    *bits = *fam == 4 ? 32 : 128;
    if (slash == NULL) {
        return true;
    }
    char *end = NULL;
    long b = strtol(slash + 1, &end, 10);
    if (slash[1] == '\0' || *end != '\0' || b < 0 || b > *bits) {
        return false;
    }
    *bits = b;
    return true;
}

bool as_cidr_ok(const char *c)
{
    unsigned char net[16];
    int fam = 0;
    long bits = 0;
    return c != NULL && cidr_parse(c, net, &fam, &bits);
}

bool as_addr_in_cidrs(const char *addr, json_t *cidrs)
{
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    unsigned char a[16];
    if (addr == NULL) {
        return false;
    }
    int afam = inet_pton(AF_INET, addr, a) == 1 ? 4 : inet_pton(AF_INET6, addr, a) == 1 ? 6 : 0;
    if (afam == 6 && memcmp(a, v4_mapped, sizeof v4_mapped) == 0) {
        /* ::ffff:a.b.c.d, an IPv4 client on a dual-stack socket: matched as IPv4, as Vault's
         * Go code does (net.IP.To4). */
        memmove(a, a + sizeof v4_mapped, 4);
        afam = 4;
    }
    size_t i;
    json_t *it;
    json_array_foreach(cidrs, i, it)
    {
        unsigned char net[16];
        int fam = 0;
        long bits = 0;
        const char *cidr = json_string_value(it);
        if (cidr == NULL || !cidr_parse(cidr, net, &fam, &bits) || fam != afam) {
            continue;
        }
        size_t full = (size_t)bits / 8;
        int rest = (int)(bits % 8);
        if (memcmp(a, net, full) != 0) {
            continue;
        }
        if (rest == 0 || ((a[full] ^ net[full]) & (0xff << (8 - rest)) & 0xff) == 0) {
            return true;
        }
    }
    return false;
}

enum as_err as_parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return AS_OK;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return AS_OK;
        }
    }
    return AS_ERR_INVALID;
}

enum as_err as_json_get_bool(json_t *obj, const char *key, bool *out, bool *present)
{
    json_t *v = field(obj, key, present);
    if (v == NULL) {
        return AS_OK;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return AS_OK;
    }
    if (json_is_string(v)) {
        return as_parse_bool(json_string_value(v), out);
    }
    return AS_ERR_INVALID;
}

enum as_err as_json_get_int(json_t *obj, const char *key, int64_t *out, bool *present)
{
    json_t *v = field(obj, key, present);
    if (v == NULL) {
        return AS_OK;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return AS_OK;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end = NULL;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (*s == '\0' || *end != '\0' || errno != 0) {
            return AS_ERR_INVALID;
        }
        *out = n;
        return AS_OK;
    }
    return AS_ERR_INVALID;
}

enum as_err as_json_get_strlist(json_t *obj, const char *key, json_t **out, bool *present)
{
    json_t *v = field(obj, key, present);
    if (v == NULL) {
        return AS_OK;
    }
    json_t *arr = json_array();
    if (arr == NULL) {
        return AS_ERR_NOMEM;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *it;
        json_array_foreach(v, i, it)
        {
            if (!json_is_string(it)) {
                json_decref(arr);
                return AS_ERR_INVALID;
            }
            if (json_string_length(it) > 0) {
                json_array_append(arr, it);
            }
        }
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        while (*s) {
            const char *comma = strchr(s, ',');
            size_t n = comma ? (size_t)(comma - s) : strlen(s);
            const char *a = s;
            const char *b = s + n;
            while (a < b && isspace((unsigned char)*a)) {
                a++;
            }
            while (b > a && isspace((unsigned char)b[-1])) {
                b--;
            }
            if (b > a) {
                json_array_append_new(arr, json_stringn(a, (size_t)(b - a)));
            }
            s = comma ? comma + 1 : s + n;
        }
    } else {
        json_decref(arr);
        return AS_ERR_INVALID;
    }
    *out = arr;
    return AS_OK;
}
