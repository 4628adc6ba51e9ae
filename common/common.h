/*
 * common.h: what every authsvc module needs: one error enum, logging, bounded buffers,
 * secret wiping, randomness, duration parsing and JSON helpers.
 *
 * Nothing here knows about HTTP, SQL or X.509.
 */
#ifndef AS_COMMON_H
#define AS_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#define AS_WUR __attribute__((warn_unused_result))
#define AS_PRINTF(a, b) __attribute__((format(printf, a, b)))

/*
 * Errors. 0 is success, failures are negative. The HTTP layer maps each to a status through one
 * table (authsvc/http.c); the string is for logs, never a detail the peer should learn.
 */
#define AS_ERRORS(X)                                        \
    X(AS_OK, 0, "ok")                                       \
    X(AS_ERR_NOMEM, -1, "out of memory")                    \
    X(AS_ERR_INVALID, -2, "invalid input")                  \
    X(AS_ERR_PERMISSION, -3, "permission denied")           \
    X(AS_ERR_NOT_FOUND, -4, "not found")                    \
    X(AS_ERR_METHOD, -5, "unsupported operation")           \
    X(AS_ERR_TOO_LARGE, -6, "input too large")              \
    X(AS_ERR_RATE, -7, "rate limit exceeded")               \
    X(AS_ERR_INTERNAL, -8, "internal error")                \
    X(AS_ERR_STORE, -9, "store unavailable")                \
    X(AS_ERR_EXISTS, -10, "already exists")                 \
    X(AS_ERR_CRYPTO, -11, "cryptographic operation failed") \
    X(AS_ERR_IO, -12, "i/o error")                          \
    X(AS_ERR_EXPIRED, -13, "expired")                       \
    X(AS_ERR_CONFIG, -14, "bad configuration")

enum as_err {
#define AS_ERR_ENUM(name, val, str) name = val,
    AS_ERRORS(AS_ERR_ENUM)
#undef AS_ERR_ENUM
};

/* Returns a static string naming err; never NULL. */
const char *as_strerror(enum as_err err);

/* ---- logging (stderr, one line per event; never pass a secret as an argument) ---- */
enum as_log_level { AS_LOG_DEBUG, AS_LOG_INFO, AS_LOG_WARN, AS_LOG_ERROR };
void as_log_set_level(enum as_log_level lvl);
void as_log(enum as_log_level lvl, const char *fmt, ...) AS_PRINTF(2, 3);
/* The request the calling thread is serving: its lines carry "req=<id>" until cleared with
 * NULL. id is borrowed until then. */
void as_log_request(const char *id);
#define as_debug(...) as_log(AS_LOG_DEBUG, __VA_ARGS__)
#define as_info(...) as_log(AS_LOG_INFO, __VA_ARGS__)
#define as_warn(...) as_log(AS_LOG_WARN, __VA_ARGS__)
#define as_error(...) as_log(AS_LOG_ERROR, __VA_ARGS__)

/* Writes a formatted reason into why (whylen bytes; nothing when why is NULL or whylen 0): the
 * "why" out-parameter of parsers and checks. */
void as_why(char *why, size_t whylen, const char *fmt, ...) AS_PRINTF(3, 4);

/* ---- secrets and randomness ---- */
/* Wipes n bytes at p with OPENSSL_cleanse. p may be NULL. */
void as_wipe(void *p, size_t n);
/* Wipes a NUL-terminated string and frees it. s may be NULL. */
void as_free_secret_str(char *s);
/* Constant-time equality of two n-byte buffers. */
bool as_secret_eq(const void *a, const void *b, size_t n);
/* Fills buf with n cryptographically random bytes. AS_ERR_CRYPTO on failure. */
enum as_err as_rand_bytes(void *buf, size_t n) AS_WUR;
/* Base64url without padding of n bytes; out must hold 4*((n+2)/3)+1 bytes. Returns strlen. */
size_t as_b64url(const unsigned char *in, size_t n, char *out);
/* PEM armour ("-----BEGIN <label>-----", base64 in 64-column lines) of n DER bytes; malloc'd,
 * NULL on failure. */
char *as_pem_encode(const char *label, const unsigned char *der, size_t n);
/* Lowercase hex of n bytes; out must hold 2n+1 bytes. */
void as_hex(const unsigned char *in, size_t n, char *out);
/* FNV-1a of a string or of n bytes: a fast, unkeyed hash for picking a cache slot (never for
 * secrets). as_hash_str(s) == as_hash_bytes(s, strlen(s)). */
uint64_t as_hash_str(const char *s);
uint64_t as_hash_bytes(const void *p, size_t n);
/* SHA-256 of the concatenation of three byte ranges (any may be empty) into out[32], with the
 * digest fetched once. */
enum as_err as_sha256_3(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                        size_t clen, unsigned char out[32]) AS_WUR;
/* HMAC-SHA256(key, msg) into out[32]. */
enum as_err as_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                           unsigned char out[32]) AS_WUR;
/*
 * A key kept ready for many HMAC-SHA256 computations: the MAC is fetched and keyed once, and each
 * computation starts from a copy of that context (OpenSSL 3's one-shot HMAC() fetches and keys on
 * every call, several times the cost of the hashing for short messages). Thread-safe: the
 * template is only ever copied. as_hmac_key_free wipes and frees (NULL ok).
 */
struct as_hmac_key;
enum as_err as_hmac_key_new(const void *key, size_t keylen, struct as_hmac_key **out) AS_WUR;
enum as_err as_hmac_key_mac(const struct as_hmac_key *k, const void *msg, size_t msglen,
                            unsigned char out[32]) AS_WUR;
void as_hmac_key_free(struct as_hmac_key *k);

/* ---- bounded buffer ---- */
/*
 * A growable byte buffer with a hard maximum: appends past max fail with AS_ERR_TOO_LARGE and
 * leave the buffer unchanged. The data is always NUL-terminated (not counted in len).
 */
struct as_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};
void as_buf_init(struct as_buf *b, size_t max);
enum as_err as_buf_append(struct as_buf *b, const void *p, size_t n) AS_WUR;
enum as_err as_buf_printf(struct as_buf *b, const char *fmt, ...) AS_PRINTF(2, 3) AS_WUR;
/*
 * as_buf_append for serializers, which append a few bytes at a time: inline while the bytes fit
 * the storage already allocated, as_buf_append (growth, the maximum) otherwise.
 */
static inline AS_WUR enum as_err as_buf_add(struct as_buf *b, const void *p, size_t n)
{
    /* len < cap whenever cap > 0 (the NUL), and len <= max always. */
    if (n < b->cap - b->len && n <= b->max - b->len) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return AS_OK;
    }
    return as_buf_append(b, p, n);
}
/* Cuts the data back to its first len bytes (len <= b->len), e.g. to drop a partial write. */
void as_buf_truncate(struct as_buf *b, size_t len);
/* Frees the storage (wiping it first when wipe is true); the buffer can be reused after init. */
void as_buf_free(struct as_buf *b, bool wipe);

/*
 * Deep-copies the strings of a record that was copied by value: each non-NULL *fields[i] is
 * replaced by a malloc'd copy of itself. On out of memory returns false, with every field not
 * yet copied set to NULL, so the copy can be released with the record's usual _free.
 */
bool as_strdup_fields(char **const *fields, size_t n) AS_WUR;

/* ---- UTF-8 (JSON strings must be valid UTF-8, or jansson refuses them) ---- */
/* Length of the one valid UTF-8 sequence at s[0..n) (n > 0), 0 when there is none (RFC 3629:
 * no overlongs, no surrogates, nothing above U+10FFFF; jansson's rule too). */
size_t as_utf8_seq(const char *s, size_t n);
/* Bytes of s[0..n) that form valid UTF-8 from the start (n when all of it is valid). */
size_t as_utf8_len(const char *s, size_t n);
/* Replaces every byte of s that is not part of a valid UTF-8 sequence with '?' (e.g. a
 * multibyte character cut by a %.200s). */
void as_utf8_sanitize(char *s);

/* ---- URLs ---- */
/* Percent-decodes n bytes of in into out (outlen bytes, NUL-terminated); '+' stays '+'.
 * false on a bad escape, an encoded NUL, or overflow. */
bool as_pct_decode(const char *in, size_t n, char *out, size_t outlen, size_t *written);
/*
 * The canonical API path of a raw (still percent-encoded) request URL: the "/v1/" prefix
 * removed, each segment decoded; AS_ERR_INVALID when a segment is empty, "." or "..", or decodes
 * to something holding '/', '\\', NUL or a control character; one trailing slash is dropped;
 * AS_ERR_NOT_FOUND outside /v1/. This is what is routed, authorized and logged (PERF-NOTES
 * trap 7).
 */
enum as_err as_url_path_canonical(const char *url, char *out, size_t outlen) AS_WUR;

/* ---- files ---- */
/*
 * Writes len bytes to path atomically: a temp file in the same directory created with mode
 * (O_EXCL), written, fsynced, renamed over path, then the directory fsynced. The temp file is
 * removed on failure. AS_ERR_IO on failure (logged).
 */
enum as_err as_file_write_atomic(const char *path, const void *data, size_t len,
                                 unsigned mode) AS_WUR;
/* Reads a whole file of at most max bytes into a malloc'd NUL-terminated buffer. */
enum as_err as_file_read(const char *path, size_t max, char **out, size_t *len) AS_WUR;

/* ---- time and durations ---- */
/* Seconds since the epoch (CLOCK_REALTIME). */
int64_t as_now(void);
/* Nanoseconds of CLOCK_MONOTONIC, for durations. */
int64_t as_mono_ns(void);

/* ---- latency histograms (lock-free; rendered by the server's sys/metrics) ---- */
#define AS_HIST_BUCKETS 16
/* Upper bounds in seconds, increasing; a last implicit bucket is +Inf. */
extern const double as_hist_bounds[AS_HIST_BUCKETS];
struct as_hist {
    _Atomic uint64_t bucket[AS_HIST_BUCKETS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
};
void as_hist_observe(struct as_hist *h, int64_t ns);
/*
 * Parses a duration: integer seconds ("90") or a Go-style duration ("90s", "15m", "1h30m",
 * "1.5h", "500ms" rounds down to whole seconds). Negative values and overflow are AS_ERR_INVALID.
 */
enum as_err as_duration_parse(const char *s, int64_t *out_secs) AS_WUR;
/* Formats secs as Go's time.Duration.String() does ("768h0m0s", "1m30s", "0s") into out (>= 32). */
void as_duration_format(int64_t secs, char *out, size_t outlen);
/* RFC 3339 UTC with nanoseconds zero as Vault prints ("2026-11-26T13:39:56Z"); out >= 32 bytes. */
void as_time_rfc3339(int64_t secs, char *out, size_t outlen);

/* ---- JSON helpers over jansson (SPEC §2 value conventions) ---- */
/* Hard caps for untrusted JSON. */
#define AS_MAX_BODY_BYTES (1024 * 1024)
#define AS_MAX_JSON_DEPTH 32
/*
 * Parses an untrusted JSON object (rejecting duplicate keys and depth over AS_MAX_JSON_DEPTH).
 * An empty body gives an empty object. On AS_ERR_INVALID, err (if not NULL, >= 160 bytes) says why.
 * Caller owns *out (json_decref).
 */
enum as_err as_json_parse_object(const char *body, size_t len, json_t **out, char *err,
                                 size_t errlen) AS_WUR;
/*
 * A cache of parsed bodies (jsoncache.c) for requests that repeat byte for byte (a proxy's
 * checks): nslots bodies of at most max_len bytes each. NULL on bad sizes or no memory.
 */
struct as_json_cache;
struct as_json_cache *as_json_cache_new(size_t nslots, size_t max_len);
void as_json_cache_free(struct as_json_cache *c);
/*
 * as_json_parse_object through c (c NULL: straight through): a body seen before, byte for byte,
 * gets the object parsed then. The caller owns a reference (json_decref) to an object other
 * threads may be reading: it must not be modified. Errors, blank bodies and bodies over
 * max_len are parsed every time, exactly as by as_json_parse_object.
 */
enum as_err as_json_cache_parse(struct as_json_cache *c, const char *body, size_t len, json_t **out,
                                char *err, size_t errlen) AS_WUR;
/* Makes jansson wipe every block it frees (tokens, keys and secrets pass through JSON bodies).
 * Call once at start, before any JSON is made. Afterwards a buffer jansson returns (json_dumps)
 * must not be released with free(): serialize with as_json_write instead. Used by authctl; the
 * server does not use it yet because it frees json_dumps results with free(). */
void as_json_wipe_on_free(void);

/*
 * Serializing (jsonw.c). as_json_write appends v to b exactly as json_dumps(v, JSON_COMPACT) of
 * jansson 2.14 writes it (members in insertion order; '"' '\\' \b \f \n \r \t escaped, other
 * bytes below 0x20 as \u00XX in uppercase hex, '/' and UTF-8 raw), at a fraction of its cost; any
 * value may be the top level (as with JSON_ENCODE_ANY). v is borrowed.
 * AS_ERR_INVALID: v nests deeper than AS_MAX_JSON_DEPTH (v itself is level 1), is NULL, or holds
 * a string or key that is not UTF-8 (only the _nocheck setters of jansson can make one; json_dumps
 * refuses such a value too). AS_ERR_TOO_LARGE: b's maximum was reached. AS_ERR_NOMEM.
 * On failure b holds what it held before (its storage may have grown).
 */
enum as_err as_json_write(struct as_buf *b, json_t *v) AS_WUR;
/* Appends the n bytes at s as a JSON string (quoted, escaped as above). Errors as as_json_write. */
enum as_err as_json_write_string(struct as_buf *b, const char *s, size_t n) AS_WUR;
/*
 * Redaction while writing (the audit device): a string is written as it is when it is "clear",
 * otherwise replace() writes what stands for it (with as_json_write_string, say). A string is
 * clear when the nearest object member it sits under has a key for which clear_key() is true:
 * an object's members each take the flag of their own key, array elements the flag of the array.
 * Keys, numbers, booleans and null are always written as they are. ctx is passed to both.
 */
struct as_json_redactor {
    bool (*clear_key)(void *ctx, const char *key, size_t keylen);
    enum as_err (*replace)(void *ctx, struct as_buf *b, const char *s, size_t n);
    void *ctx;
};
/*
 * as_json_write of v as a part of a larger document that the caller writes around it: v sits at
 * nesting level depth (>= 1; the limit counts from the document's top), and its strings are clear
 * or not as clear says (see above: the flag of the member v is the value of). rd NULL writes
 * every string as it is. Errors as as_json_write, and whatever replace() returns.
 */
enum as_err as_json_write_redacted(struct as_buf *b, json_t *v, int depth, bool clear,
                                   const struct as_json_redactor *rd) AS_WUR;

/* Field getters: a missing or JSON-null field leaves *out untouched and returns AS_OK with
 * *present=false (present may be NULL). A wrong type is AS_ERR_INVALID. */
enum as_err as_json_get_string(json_t *obj, const char *key, const char **out,
                               bool *present) AS_WUR;
/* Accepts integer seconds, or a duration string. */
enum as_err as_json_get_duration(json_t *obj, const char *key, int64_t *out, bool *present) AS_WUR;
/* Accepts true/false or the strings "true"/"false" (and Go ParseBool spellings). */
enum as_err as_json_get_bool(json_t *obj, const char *key, bool *out, bool *present) AS_WUR;
/* Accepts an integer or a decimal string. */
enum as_err as_json_get_int(json_t *obj, const char *key, int64_t *out, bool *present) AS_WUR;
/* Accepts an array of strings or a comma-separated string (items trimmed, empty ones dropped).
 * *out is a new JSON array of strings (caller decrefs). */
enum as_err as_json_get_strlist(json_t *obj, const char *key, json_t **out, bool *present) AS_WUR;
/* Parses JSON array text the store keeps (trusted); NULL, invalid or non-array text gives an
 * empty array. Never NULL unless out of memory. New reference. */
json_t *as_json_array_from(const char *text);
/* Resolves an RFC 6901 JSON Pointer ("/a/b", "~0" for '~', "~1" for '/', arrays by decimal
 * index without leading zeros) in root; "" is root itself. Borrowed result, NULL when absent. */
json_t *as_json_pointer(json_t *root, const char *ptr);
/* The string at key, or def when absent or not a string. Borrowed. */
const char *as_json_str_or(json_t *obj, const char *key, const char *def);
/* Vault's globs (go-glob): '*' matches any run of characters; nothing else is special. */
bool as_glob_match(const char *pat, const char *s);
/* An IPv4 or IPv6 network, "addr" or "addr/bits" (Vault's token_bound_cidrs entries). */
bool as_cidr_ok(const char *cidr);
/* Whether the address addr (text, as inet_pton reads it) lies in one of cidrs, an array of
 * such networks; entries that do not parse match nothing, so a broken list admits no one. */
bool as_addr_in_cidrs(const char *addr, json_t *cidrs);
/* Go strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False. */
enum as_err as_parse_bool(const char *s, bool *out) AS_WUR;

#endif
