/*
 * Unit tests for common/jsonw.c: as_json_write against jansson's json_dumps(JSON_COMPACT), byte
 * for byte, on hand-picked edge cases and on random trees; the redacting mode against the audit
 * device's former copy-then-dump redaction; and the refusals (too deep, over the buffer's
 * maximum, not UTF-8) with the buffer left as it was.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/common.h"

#define BIG ((size_t)64 * 1024 * 1024)
#define RANDOM_TREES 4000
#define RANDOM_REDACTED 2000
/* Failures printed in full; the rest are only counted. */
#define SHOW_FAILURES 5

static int shown;

/* xorshift64*: a fixed sequence, so that a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}
static size_t below(size_t n)
{
    return (size_t)(rnd() % n);
}

/* json_dumps(v, JSON_COMPACT) (any value at the top) and as_json_write agree: both refuse, or
 * both write the same bytes. Also checks that what was in the buffer before stays. */
static void same_as_jansson(json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    struct as_buf b;
    as_buf_init(&b, BIG);
    CHECK_INT(as_buf_append(&b, "prefix:", 7), AS_OK);
    enum as_err r = as_json_write(&b, v);
    bool ok = want != NULL ? r == AS_OK && b.len == 7 + strlen(want) &&
                                 memcmp(b.data + 7, want, strlen(want)) == 0
                           : r == AS_ERR_INVALID && b.len == 7;
    ok = ok && memcmp(b.data, "prefix:", 7) == 0 && b.data[b.len] == '\0';
    CHECK(ok);
    if (!ok && shown++ < SHOW_FAILURES) {
        fprintf(stderr, "  jansson: %s\n  jsonw (%s): %s\n", want ? want : "(refused)",
                as_strerror(r), b.data + 7);
    }
    free(want);
    as_buf_free(&b, false);
}

static void same_new(json_t *v)
{
    CHECK(v != NULL);
    same_as_jansson(v);
    json_decref(v);
}

/* A string of n bytes from s, which must be UTF-8 (json_stringn checks). */
static json_t *str(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    CHECK(v != NULL);
    return v;
}

static void test_scalars(void)
{
    same_new(json_null());
    same_new(json_true());
    same_new(json_false());
    /* clang-format off */
    static const json_int_t ints[] = {
        0,         1,         -1,        9,         10,        -10,           99,
        100,       12345678,  -987654321, INT32_MAX, INT32_MIN, INT64_MAX,    INT64_MIN,
        INT64_MAX - 1, INT64_MIN + 1, 1000000000000000000LL, -999999999999999999LL,
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        same_new(json_integer(ints[i]));
    }
    static const double reals[] = {
        0.0,    -0.0,  1.0,     -1.5,    0.1,     1e21,   1e22,
        1e-7,   1e300, -1e-300, DBL_MAX, DBL_MIN, 5e-324, 123456789.0,
        2.5e-5, 1e100, 3.14159, 1.0 / 3, 100.0,   1e16,   1e17,
    };
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        same_new(json_real(reals[i]));
    }
}

static void test_strings(void)
{
    same_new(str("", 0));
    same_new(str("plain ascii text / with a slash", 31));
    same_new(str("\"quoted\" and \\back\\slashed\\", 28));
    same_new(str("\b\f\n\r\t", 5));
    same_new(str("a\0b", 3));
    same_new(str("\0", 1));
    same_new(str("\x7f del stays raw", 16));
    /* Every ASCII byte alone, and all of them in one string. */
    char all[128];
    for (int c = 0; c < 128; c++) {
        all[c] = (char)c;
        same_new(str(all + c, 1));
    }
    same_new(str(all, sizeof all));
    /* Every byte value at every position of 24 plain bytes, and a two-byte UTF-8 sequence at
     * each: the eight-at-a-time test of plain runs (plain8) and the byte loop hand over at any
     * offset. Lone bytes from 0x80 are not UTF-8: both refuse them. */
    for (size_t pos = 0; pos < 24; pos++) {
        char s24[25];
        for (int c = 0; c < 0x100; c++) {
            memset(s24, 'x', sizeof s24);
            s24[pos] = (char)c;
            same_new(json_stringn_nocheck(s24, 24));
        }
        memset(s24, 'y', sizeof s24);
        s24[pos] = (char)0xc3;
        s24[pos + 1] = (char)0xa9;
        same_new(str(s24, 25));
    }
    /* Multibyte UTF-8: 2, 3 and 4 bytes, the ends of the planes, next to escapes. */
    same_new(str("\xc3\xa9t\xc3\xa9", 6));
    same_new(str("\xe2\x82\xac\n\xe2\x82\xac", 7));
    same_new(str("\xf0\x9f\x98\x80\"", 5));
    same_new(str("\xef\xbf\xbf\xf4\x8f\xbf\xbf\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf", 17));
    /* A PEM chain: many short runs between newlines. */
    char *pem = as_pem_encode("CERTIFICATE", (const unsigned char *)all, sizeof all);
    CHECK(pem != NULL);
    if (pem != NULL) {
        same_new(str(pem, strlen(pem)));
    }
    free(pem);

    /* Negative twins: strings that are not UTF-8 (only json_stringn_nocheck makes them). Every
     * lone byte from 0x80, truncated and overlong sequences, surrogates, above U+10FFFF. */
    for (int c = 0x80; c < 0x100; c++) {
        char one = (char)c;
        CHECK(json_stringn(&one, 1) == NULL);
        same_new(json_stringn_nocheck(&one, 1));
    }
    static const char *const bad[] = {"\xc3",         "\xe2\x82",         "\xf0\x9f\x98",
                                      "\xc0\xaf",     "\xe0\x80\xaf",     "\xf0\x80\x80\xaf",
                                      "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok\xffok"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        same_new(json_stringn_nocheck(bad[i], strlen(bad[i])));
        struct as_buf b;
        as_buf_init(&b, 100);
        CHECK_INT(as_json_write_string(&b, bad[i], strlen(bad[i])), AS_ERR_INVALID);
        CHECK_INT(b.len, 0);
        as_buf_free(&b, false);
    }
}

static void test_containers(void)
{
    same_new(json_object());
    same_new(json_array());
    same_new(json_loads("[[],{},[[]],{\"\":{}},[{}]]", 0, NULL));
    same_new(json_pack("{s:s, s:i, s:b, s:n, s:f, s:[s,i]}", "z", "last?", "a", 1, "m", 1, "n", "r",
                       0.5, "arr", "x", -7));
    /* Insertion order: a replaced value keeps its place, a deleted and re-added key moves last. */
    json_t *o = json_object();
    json_object_set_new(o, "b", json_integer(1));
    json_object_set_new(o, "a", json_integer(2));
    json_object_set_new(o, "c", json_integer(3));
    json_object_set_new(o, "a", json_string("replaced"));
    json_object_del(o, "b");
    json_object_set_new(o, "b", json_true());
    same_new(o);
    /* Keys: empty, with escapes, with a NUL (json_object_setn), non-ASCII. */
    o = json_object();
    json_object_set_new(o, "", json_integer(0));
    json_object_set_new(o, "k\n\"\\\x01", json_integer(1));
    json_object_setn_new(o, "a\0b", 3, json_integer(2));
    json_object_set_new(o, "cl\xc3\xa9", json_integer(3));
    same_new(o);
    /* A shared child written twice is not a cycle. */
    json_t *child = json_pack("{s:s}", "x", "y");
    same_new(json_pack("[O,O,{s:O}]", child, child, "c", child));
    json_decref(child);
}

/* A chain of depth containers (arrays when arrays, else objects), innermost holding leaf. */
static json_t *nest(int depth, bool arrays, json_t *leaf)
{
    json_t *v = leaf;
    for (int i = 0; i < depth; i++) {
        json_t *c = arrays ? json_array() : json_object();
        if (v != NULL) {
            if (arrays) {
                json_array_append_new(c, v);
            } else {
                json_object_set_new(c, "k", v);
            }
        }
        v = c;
    }
    return v;
}

static void test_depth(void)
{
    for (int arrays = 0; arrays < 2; arrays++) {
        /* 32 levels of containers, the innermost empty: the limit exactly. */
        json_t *ok = nest(AS_MAX_JSON_DEPTH, arrays, NULL);
        same_as_jansson(ok);
        /* Negative twins: a value at level 33, a container or a scalar. */
        json_t *over = nest(AS_MAX_JSON_DEPTH + 1, arrays, NULL);
        json_t *over_scalar = nest(AS_MAX_JSON_DEPTH, arrays, json_integer(1));
        struct as_buf b;
        as_buf_init(&b, BIG);
        CHECK_INT(as_json_write(&b, ok), AS_OK);
        size_t len = b.len;
        CHECK_INT(as_json_write(&b, over), AS_ERR_INVALID);
        CHECK_INT(as_json_write(&b, over_scalar), AS_ERR_INVALID);
        CHECK_INT(b.len, len);
        CHECK(b.data[len] == '\0');
        /* Written as a part at level 2, the 32 levels are one too many. */
        CHECK_INT(as_json_write_redacted(&b, ok, 2, true, NULL), AS_ERR_INVALID);
        CHECK_INT(as_json_write_redacted(&b, ok, 1, true, NULL), AS_OK);
        CHECK_INT(as_json_write_redacted(&b, ok, 0, true, NULL), AS_ERR_INVALID);
        as_buf_free(&b, false);
        json_decref(ok);
        json_decref(over);
        json_decref(over_scalar);
    }
    /* A cycle is refused (too deep) instead of recursing forever; json_dumps refuses it too. */
    json_t *a = json_array();
    json_t *c = json_array();
    CHECK_INT(json_array_append(a, c), 0);
    CHECK_INT(json_array_append(c, a), 0);
    same_as_jansson(a);
    struct as_buf b;
    as_buf_init(&b, BIG);
    CHECK_INT(as_json_write(&b, a), AS_ERR_INVALID);
    CHECK_INT(b.len, 0);
    as_buf_free(&b, false);
    json_array_clear(c);
    json_decref(c);
    json_decref(a);
    /* NULL is refused, as json_dumps refuses it. */
    as_buf_init(&b, BIG);
    CHECK_INT(as_json_write(&b, NULL), AS_ERR_INVALID);
    as_buf_free(&b, false);
}

static void test_buffer_max(void)
{
    json_t *v = json_pack("{s:s, s:[i,i,s], s:{s:s}}", "pem", "-----BEGIN X-----\nAAAA\n", "n", 1,
                          -2, "\x01\"", "o", "k", "v");
    char *want = json_dumps(v, JSON_COMPACT);
    size_t n = strlen(want);
    /* Every maximum below the length is refused with the buffer untouched; the length fits. */
    for (size_t max = 0; max <= n + 1; max++) {
        struct as_buf b;
        as_buf_init(&b, max);
        enum as_err r = as_json_write(&b, v);
        if (max < n) {
            CHECK_INT(r, AS_ERR_TOO_LARGE);
            CHECK_INT(b.len, 0);
        } else {
            CHECK_INT(r, AS_OK);
            CHECK_STR(b.data, want);
        }
        as_buf_free(&b, false);
    }
    /* A full buffer refuses, and what it held stays. */
    struct as_buf b;
    as_buf_init(&b, n + 3);
    CHECK_INT(as_buf_append(&b, "abcd", 4), AS_OK);
    CHECK_INT(as_json_write(&b, v), AS_ERR_TOO_LARGE);
    CHECK_STR(b.data, "abcd");
    CHECK_INT(as_json_write_string(&b, "xyz", 3), AS_OK);
    CHECK_STR(b.data, "abcd\"xyz\"");
    as_buf_free(&b, false);
    free(want);
    json_decref(v);
}

/* ---- random trees ---- */

/* One code point, encoded; from all planes, weighted toward what needs care. */
static size_t random_char(char *out)
{
    uint32_t cp;
    switch (below(8)) {
    case 0:
        cp = (uint32_t)below(0x20); /* control characters, NUL included */
        break;
    case 1:
        cp = "\"\\/\x7f"[below(4)];
        break;
    case 2:
        cp = 0x80 + (uint32_t)below(0x780);
        break;
    case 3:
        cp = 0x800 + (uint32_t)below(0xf800);
        if (cp >= 0xd800 && cp <= 0xdfff) {
            cp = 0xfffd;
        }
        break;
    case 4:
        cp = 0x10000 + (uint32_t)below(0x100000);
        break;
    default:
        cp = 0x20 + (uint32_t)below(0x5f);
        break;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Random text into buf (at least 4 * 64 + 64 bytes): code points, or raw bytes of any value cut
 * to their valid UTF-8 prefix, or long plain runs. Returns its length. */
static size_t random_text(char *buf)
{
    size_t n = 0;
    size_t count = below(4) == 0 ? below(64) : below(12);
    switch (below(4)) {
    case 0:
        for (size_t i = 0; i < count; i++) {
            buf[n++] = (char)below(256);
        }
        return as_utf8_len(buf, n);
    case 1:
        for (size_t i = 0; i < count * 4; i++) {
            buf[n++] = below(20) == 0 ? '\n' : (char)('A' + below(26));
        }
        return n;
    default:
        for (size_t i = 0; i < count; i++) {
            n += random_char(buf + n);
        }
        return n;
    }
}

/* Keys from a small pool (so that clear keys of the redaction tests come up) or random text. */
static const char *const key_pool[] = {"spiffe_id",    "serials", "name", "token", "data",
                                       "policies",     "meta",    "path", "a",     "keys",
                                       "client_token", "",        "csr",  "reason"};

static json_t *random_tree(int depth, int max_depth, bool nul_keys)
{
    char buf[512];
    size_t kind = depth >= max_depth ? 3 + below(6) : below(9);
    switch (kind) {
    case 0:
    case 1: {
        json_t *o = json_object();
        size_t n = below(6);
        for (size_t i = 0; i < n; i++) {
            json_t *m = random_tree(depth + 1, max_depth, nul_keys);
            if (below(2) == 0) {
                const char *k = key_pool[below(sizeof key_pool / sizeof key_pool[0])];
                json_object_set_new(o, k, m);
            } else {
                size_t kl = random_text(buf);
                const char *nul = memchr(buf, '\0', kl);
                if (!nul_keys && nul != NULL) {
                    kl = (size_t)(nul - buf);
                }
                json_object_setn_new(o, buf, kl, m);
            }
        }
        return o;
    }
    case 2: {
        json_t *a = json_array();
        size_t n = below(6);
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(a, random_tree(depth + 1, max_depth, nul_keys));
        }
        return a;
    }
    case 3:
    case 4:
    case 5: {
        size_t n = random_text(buf);
        json_t *s = json_stringn(buf, n);
        CHECK(s != NULL);
        return s;
    }
    case 6: {
        static const json_int_t edge[] = {0, -1, INT64_MAX, INT64_MIN, 10, -10};
        return json_integer(below(3) == 0 ? edge[below(6)] : (json_int_t)rnd());
    }
    case 7: {
        uint64_t bits = rnd();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d)) {
            d = (double)(int64_t)bits / 1e9;
        }
        return json_real(d);
    }
    default:
        return below(3) == 0 ? json_null() : json_boolean(below(2));
    }
}

static int tree_depth(json_t *v)
{
    int deepest = 0;
    if (json_is_object(v)) {
        for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
            int d = tree_depth(json_object_iter_value(it));
            deepest = d > deepest ? d : deepest;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            int d = tree_depth(json_array_get(v, i));
            deepest = d > deepest ? d : deepest;
        }
    }
    return 1 + deepest;
}

static void test_random(void)
{
    int at_limit = 0;
    int over = 0;
    for (int i = 0; i < RANDOM_TREES; i++) {
        json_t *v = random_tree(1, 1 + (int)below(6), true);
        /* One in ten is wrapped to end exactly at the depth limit or one past it. */
        if (below(10) == 0) {
            int want = AS_MAX_JSON_DEPTH + (int)below(2);
            int d = tree_depth(v);
            v = nest(want > d ? want - d : 0, below(2), v);
        }
        if (tree_depth(v) <= AS_MAX_JSON_DEPTH) {
            at_limit += tree_depth(v) == AS_MAX_JSON_DEPTH;
            same_as_jansson(v);
        } else {
            /* jansson has no depth limit; this writer refuses, leaving the buffer alone. */
            struct as_buf b;
            as_buf_init(&b, BIG);
            CHECK_INT(as_json_write(&b, v), AS_ERR_INVALID);
            CHECK_INT(b.len, 0);
            as_buf_free(&b, false);
            over++;
        }
        json_decref(v);
    }
    /* The wrapping reached both sides of the limit. */
    CHECK(at_limit > 10 && over > 10);
}

/* ---- redaction ---- */

/* The clear keys of authsvc/audit.c. */
/* clang-format off */
static const char *const clear_keys[] = {
    "spiffe_id", "spiffe_ids", "target", "source", "destination", "client_cert_uri",
    "serial_number", "serial", "client_cert_serial", "serials", "accessor", "accessors",
    "client_token_accessor", "keys", "path", "policies", "token_policies", "identity_policies",
    "policy_name", "name", "role", "mount", "kind", "state", "reason", "intention_id",
    "dns_names", "allowed_dns_names", "audience", "token_accessor", "auth_mount", NULL,
};
/* clang-format on */

static bool is_clear_key(const char *k)
{
    for (size_t i = 0; clear_keys[i] != NULL; i++) {
        if (strcmp(k, clear_keys[i]) == 0) {
            return true;
        }
    }
    return false;
}

static const unsigned char test_salt[32] = "a salt of exactly thirty-two by";

static bool hash_of(const char *s, size_t len, char out[12 + 64 + 1])
{
    unsigned char mac[32];
    if (as_hmac_sha256(test_salt, sizeof test_salt, s, len, mac) != AS_OK) {
        return false;
    }
    memcpy(out, "hmac-sha256:", 12);
    as_hex(mac, sizeof mac, out + 12);
    return true;
}

static json_t *hmac_json(const char *s, size_t len)
{
    char h[12 + 64 + 1];
    return hash_of(s, len, h) ? json_string(h) : NULL;
}

/* The reference: authsvc/audit.c's redact() as it was before jsonw (a redacted copy, then
 * json_dumps). */
static json_t *redact(json_t *v, bool clear)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return clear ? json_incref(v) : hmac_json(json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        json_t *out = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            json_t *c = redact(e, clear);
            if (out == NULL || c == NULL || json_array_append_new(out, c) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    case JSON_OBJECT: {
        json_t *out = json_object();
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            json_t *c = redact(e, is_clear_key(k));
            if (out == NULL || c == NULL || json_object_set_new(out, k, c) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    case JSON_INTEGER:
    case JSON_REAL:
    case JSON_TRUE:
    case JSON_FALSE:
    case JSON_NULL:
        return json_incref(v);
    }
    return NULL;
}

static bool cb_clear(void *ctx, const char *key, size_t keylen)
{
    (void)ctx;
    (void)keylen;
    return is_clear_key(key);
}

static enum as_err cb_replace(void *ctx, struct as_buf *b, const char *s, size_t n)
{
    char h[12 + 64 + 1];
    int *calls = ctx;
    (*calls)++;
    if (!hash_of(s, n, h)) {
        return AS_ERR_CRYPTO;
    }
    return as_json_write_string(b, h, strlen(h));
}

static enum as_err cb_fail(void *ctx, struct as_buf *b, const char *s, size_t n)
{
    (void)ctx;
    (void)b;
    (void)s;
    (void)n;
    return AS_ERR_CRYPTO;
}

static void same_as_redact(json_t *v, bool clear)
{
    int calls = 0;
    struct as_json_redactor rd = {cb_clear, cb_replace, &calls};
    json_t *copy = redact(v, clear);
    char *want = copy != NULL ? json_dumps(copy, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    struct as_buf b;
    as_buf_init(&b, BIG);
    enum as_err r = as_json_write_redacted(&b, v, 1, clear, &rd);
    bool ok = want != NULL && r == AS_OK && strcmp(b.data, want) == 0;
    CHECK(ok);
    if (!ok && shown++ < SHOW_FAILURES) {
        fprintf(stderr, "  reference: %s\n  jsonw (%s): %s\n", want ? want : "(refused)",
                as_strerror(r), b.data ? b.data : "");
    }
    free(want);
    json_decref(copy);
    as_buf_free(&b, false);
}

static void test_redacted(void)
{
    /* The rule, spelled out: the nearest member's key decides; arrays pass their key's flag on;
     * a nested object's members use their own keys. */
    json_t *v = json_pack("{s:s, s:s, s:[s,s], s:{s:s, s:s, s:[s]}, s:[{s:s, s:s}], s:i}",
                          "spiffe_id", "spiffe://x/y", "token", "s3cret", "serials", "01", "02",
                          "spiffe_ids", "name", "clear", "secret", "hidden", "other", "h2",
                          "policies", "name", "n", "x", "hidden", "ttl", 60);
    int calls = 0;
    struct as_json_redactor rd = {cb_clear, cb_replace, &calls};
    struct as_buf b;
    as_buf_init(&b, BIG);
    CHECK_INT(as_json_write_redacted(&b, v, 1, false, &rd), AS_OK);
    char h_secret[77], h_hidden[77], h_h2[77];
    CHECK(hash_of("s3cret", 6, h_secret) && hash_of("hidden", 6, h_hidden) &&
          hash_of("h2", 2, h_h2));
    char want[1024];
    snprintf(want, sizeof want,
             "{\"spiffe_id\":\"spiffe://x/y\",\"token\":\"%s\",\"serials\":[\"01\",\"02\"],"
             "\"spiffe_ids\":{\"name\":\"clear\",\"secret\":\"%s\",\"other\":[\"%s\"]},"
             "\"policies\":[{\"name\":\"n\",\"x\":\"%s\"}],\"ttl\":60}",
             h_secret, h_hidden, h_h2, h_hidden);
    CHECK_STR(b.data, want);
    CHECK_INT(calls, 4);
    as_buf_free(&b, false);
    same_as_redact(v, false);
    same_as_redact(v, true);
    /* A top-level string or array takes the flag given. */
    json_t *s = json_string("top");
    same_as_redact(s, false);
    same_as_redact(s, true);
    json_decref(s);
    /* Without a redactor nothing is replaced. */
    as_buf_init(&b, BIG);
    CHECK_INT(as_json_write_redacted(&b, v, 1, false, NULL), AS_OK);
    char *plain = json_dumps(v, JSON_COMPACT);
    CHECK_STR(b.data, plain);
    free(plain);
    as_buf_free(&b, false);

    /* Negative twins: a failing replacement, too deep, too large; the buffer as it was. */
    struct as_json_redactor bad = {cb_clear, cb_fail, NULL};
    as_buf_init(&b, BIG);
    CHECK_INT(as_buf_append(&b, "x", 1), AS_OK);
    CHECK_INT(as_json_write_redacted(&b, v, 1, false, &bad), AS_ERR_CRYPTO);
    CHECK_STR(b.data, "x");
    /* v is 4 levels deep: from level 29 it ends at the limit, from 30 one past it. */
    CHECK_INT(as_json_write_redacted(&b, v, AS_MAX_JSON_DEPTH - 2, false, &rd), AS_ERR_INVALID);
    CHECK_INT(as_json_write_redacted(&b, v, AS_MAX_JSON_DEPTH - 3, false, &rd), AS_OK);
    as_buf_free(&b, false);
    as_buf_init(&b, 100);
    CHECK_INT(as_json_write_redacted(&b, v, 1, false, &rd), AS_ERR_TOO_LARGE);
    CHECK_INT(b.len, 0);
    as_buf_free(&b, false);
    json_decref(v);

    /* Random trees; keys without NUL, as in parsed bodies (jansson refuses a NUL in a key), which
     * the reference's C-string keys could not hold. */
    for (int i = 0; i < RANDOM_REDACTED; i++) {
        json_t *t = random_tree(1, 1 + (int)below(6), false);
        same_as_redact(t, below(4) == 0);
        json_decref(t);
    }
}

int main(void)
{
    const char *seed = getenv("JSONW_SEED");
    if (seed != NULL) {
        rng_state = strtoull(seed, NULL, 0) | 1;
    }
    test_scalars();
    test_strings();
    test_containers();
    test_depth();
    test_buffer_max();
    test_random();
    test_redacted();
    return check_done();
}
