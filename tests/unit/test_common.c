/* Unit tests for common/: durations, JSON conventions, buffers, secrets. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/common.h"

static void test_durations(void)
{
    static const struct {
        const char *in;
        int64_t secs;
    } ok[] = {
        {"0", 0},     {"90", 90},      {"90s", 90},    {"15m", 900},
        {"1h", 3600}, {"1h30m", 5400}, {"1.5h", 5400}, {"768h", 2764800},
        {"500ms", 0}, {"2m30s", 150},  {"7d", 604800}, {"1h0m0s", 3600},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        CHECK_INT(as_duration_parse(ok[i].in, &v), AS_OK);
        CHECK_INT(v, ok[i].secs);
    }
    static const char *bad[] = {"",       "-1", "-5m",   "h",   "1x",
                                "1.5.5h", "s",  "1h-2m", "abc", "99999999999999999999",
                                "1 h",    ".h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 0;
        if (as_duration_parse(bad[i], &v) == AS_OK) {
            fprintf(stderr, "accepted bad duration '%s'\n", bad[i]);
            CHECK(0);
        } else {
            CHECK(1);
        }
    }
    char buf[32];
    as_duration_format(2764800, buf, sizeof buf);
    CHECK_STR(buf, "768h0m0s");
    as_duration_format(90, buf, sizeof buf);
    CHECK_STR(buf, "1m30s");
    as_duration_format(5, buf, sizeof buf);
    CHECK_STR(buf, "5s");
    as_duration_format(0, buf, sizeof buf);
    CHECK_STR(buf, "0s");
}

static void test_json(void)
{
    json_t *o = NULL;
    char err[160];
    CHECK_INT(as_json_parse_object("", 0, &o, err, sizeof err), AS_OK);
    CHECK(json_is_object(o) && json_object_size(o) == 0);
    json_decref(o);
    const char *dup = "{\"a\":1,\"a\":2}";
    CHECK_INT(as_json_parse_object(dup, strlen(dup), &o, err, sizeof err), AS_ERR_INVALID);
    const char *arr = "[1]";
    CHECK_INT(as_json_parse_object(arr, strlen(arr), &o, err, sizeof err), AS_ERR_INVALID);
    const char *bad = "{\"a\":";
    CHECK_INT(as_json_parse_object(bad, strlen(bad), &o, err, sizeof err), AS_ERR_INVALID);
    char deep[200] = "{\"a\":";
    for (int i = 0; i < 40; i++) {
        strcat(deep, "[");
    }
    for (int i = 0; i < 40; i++) {
        strcat(deep, "]");
    }
    strcat(deep, "}");
    CHECK_INT(as_json_parse_object(deep, strlen(deep), &o, err, sizeof err), AS_ERR_INVALID);

    const char *body = "{\"ttl\":\"1h\",\"n\":90,\"b\":\"true\",\"l\":\"a, b,,c\",\"z\":null,"
                       "\"arr\":[\"x\",\"y\"],\"num\":\"12\",\"bad\":[1]}";
    CHECK_INT(as_json_parse_object(body, strlen(body), &o, err, sizeof err), AS_OK);
    int64_t d = 0;
    bool present = false;
    CHECK_INT(as_json_get_duration(o, "ttl", &d, &present), AS_OK);
    CHECK(present && d == 3600);
    CHECK_INT(as_json_get_duration(o, "n", &d, &present), AS_OK);
    CHECK(d == 90);
    CHECK_INT(as_json_get_duration(o, "z", &d, &present), AS_OK);
    CHECK(!present);
    bool b = false;
    CHECK_INT(as_json_get_bool(o, "b", &b, &present), AS_OK);
    CHECK(b);
    json_t *l = NULL;
    CHECK_INT(as_json_get_strlist(o, "l", &l, &present), AS_OK);
    CHECK(json_array_size(l) == 3);
    CHECK_STR(json_string_value(json_array_get(l, 1)), "b");
    json_decref(l);
    CHECK_INT(as_json_get_strlist(o, "arr", &l, &present), AS_OK);
    CHECK(json_array_size(l) == 2);
    json_decref(l);
    CHECK_INT(as_json_get_strlist(o, "bad", &l, &present), AS_ERR_INVALID);
    int64_t n = 0;
    CHECK_INT(as_json_get_int(o, "num", &n, &present), AS_OK);
    CHECK(n == 12);
    const char *s = NULL;
    CHECK_INT(as_json_get_string(o, "n", &s, &present), AS_ERR_INVALID);
    json_decref(o);

    bool v;
    CHECK_INT(as_parse_bool("t", &v), AS_OK);
    CHECK(v);
    CHECK_INT(as_parse_bool("FALSE", &v), AS_OK);
    CHECK(!v);
    CHECK_INT(as_parse_bool("yes", &v), AS_ERR_INVALID);
}

static void test_buf(void)
{
    struct as_buf b;
    as_buf_init(&b, 10);
    CHECK_INT(as_buf_append(&b, "12345", 5), AS_OK);
    CHECK_INT(as_buf_printf(&b, "%s", "67890"), AS_OK);
    CHECK_INT(as_buf_append(&b, "x", 1), AS_ERR_TOO_LARGE);
    CHECK_INT(b.len, 10);
    CHECK_STR(b.data, "1234567890");
    as_buf_free(&b, true);
}

static void test_secrets(void)
{
    unsigned char a[16] = {1, 2, 3};
    unsigned char c[16] = {1, 2, 3};
    CHECK(as_secret_eq(a, c, 16));
    c[15] = 1;
    CHECK(!as_secret_eq(a, c, 16));
    char out[80];
    CHECK_INT(as_b64url((const unsigned char *)"\xfb\xff", 2, out), 3);
    CHECK_STR(out, "-_8");
    unsigned char mac[32];
    CHECK_INT(as_hmac_sha256("key", 3, "The quick brown fox jumps over the lazy dog", 43, mac),
              AS_OK);
    as_hex(mac, 32, out);
    CHECK_STR(out, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
}

static void test_paths(void)
{
    static const struct {
        const char *url;
        enum as_err want;
        const char *path;
    } cases[] = {
        {"/v1/sys/health", AS_OK, "sys/health"},
        {"/v1/sys/policy/", AS_OK, "sys/policy"},
        {"/v1/sys/policy/a%41b", AS_OK, "sys/policy/aAb"},
        {"/v1/pki/cert/aa%3Abb", AS_OK, "pki/cert/aa:bb"},
        {"/v1/sys/../x", AS_ERR_INVALID, NULL},
        {"/v1/sys/./x", AS_ERR_INVALID, NULL},
        {"/v1/sys//x", AS_ERR_INVALID, NULL},
        {"/v1/sys%2Fhealth", AS_ERR_INVALID, NULL},
        {"/v1/sys%2fhealth", AS_ERR_INVALID, NULL},
        {"/v1/sys/%2e%2e/x", AS_ERR_INVALID, NULL},
        {"/v1/sys/health%00", AS_ERR_INVALID, NULL},
        {"/v1/sys/a%5cb", AS_ERR_INVALID, NULL},
        {"/v1/sys/a%0ab", AS_ERR_INVALID, NULL},
        {"/v1/sys/%zz", AS_ERR_INVALID, NULL},
        {"/v1/sys/%4", AS_ERR_INVALID, NULL},
        {"/v1/sys/caf%C3%A9", AS_OK, "sys/caf\xc3\xa9"},
        {"/v1/sys/%ff%fe", AS_ERR_INVALID, NULL},
        {"/v1/auth/%C3/login", AS_ERR_INVALID, NULL},
        {"/v1/sys/%C0%AF", AS_ERR_INVALID, NULL},
        {"/v1/sys/%ED%A0%80", AS_ERR_INVALID, NULL},
        {"/v2/sys/health", AS_ERR_NOT_FOUND, NULL},
        {"/v1/", AS_ERR_NOT_FOUND, NULL},
        {"/sys/health", AS_ERR_NOT_FOUND, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256] = "";
        enum as_err r = as_url_path_canonical(cases[i].url, out, sizeof out);
        if (r != cases[i].want) {
            fprintf(stderr, "path %s: got %d\n", cases[i].url, r);
        }
        CHECK_INT(r, cases[i].want);
        if (cases[i].path != NULL) {
            CHECK_STR(out, cases[i].path);
        }
    }
}

/* UTF-8: what JSON strings may hold (RFC 3629), and the repair of a message cut in two. */
static void test_utf8(void)
{
    CHECK_INT((long)as_utf8_len("abc", 3), 3);
    CHECK_INT((long)as_utf8_len("caf\xc3\xa9", 5), 5);
    CHECK_INT((long)as_utf8_len("\xf0\x9f\x98\x80", 4), 4); /* U+1F600 */
    CHECK_INT((long)as_utf8_len("ab\xc3", 3), 2);           /* cut short */
    CHECK_INT((long)as_utf8_len("\xc0\xaf", 2), 0);         /* overlong '/' */
    CHECK_INT((long)as_utf8_len("\xed\xa0\x80", 3), 0);     /* a surrogate */
    CHECK_INT((long)as_utf8_len("\xf4\x90\x80\x80", 4), 0); /* above U+10FFFF */
    CHECK_INT((long)as_utf8_len("\xff", 1), 0);
    char s[] = "ok \xff caf\xc3\xa9 \xc3";
    as_utf8_sanitize(s);
    CHECK_STR(s, "ok ? caf\xc3\xa9 ?");
}

/* The kept HMAC key gives RFC 2104 HMAC-SHA256, call after call on one thread (each call
 * re-initializes the same context), as the one-shot function does. */
static void test_hmac_key(void)
{
    static const unsigned char key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const char *const msgs[] = {"", "a", "ast.0123456789", "a longer message, twice"};
    struct as_hmac_key *k = NULL;
    CHECK_INT(as_hmac_key_new(key, sizeof key, &k), AS_OK);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
            unsigned char a[32];
            unsigned char b[32];
            CHECK_INT(as_hmac_key_mac(k, msgs[i], strlen(msgs[i]), a), AS_OK);
            CHECK_INT(as_hmac_sha256(key, sizeof key, msgs[i], strlen(msgs[i]), b), AS_OK);
            CHECK(memcmp(a, b, 32) == 0);
        }
    }
    /* RFC 4231 test case 2: key "Jefe", "what do ya want for nothing?". */
    struct as_hmac_key *jefe = NULL;
    unsigned char mac[32];
    char hex[65];
    CHECK_INT(as_hmac_key_new("Jefe", 4, &jefe), AS_OK);
    CHECK_INT(as_hmac_key_mac(jefe, "what do ya want for nothing?", 28, mac), AS_OK);
    as_hex(mac, 32, hex);
    CHECK_STR(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    as_hmac_key_free(jefe);
    as_hmac_key_free(k);
}

/* as_strdup_fields: the copies are equal and distinct; NULL fields stay NULL. */
static void test_strdup_fields(void)
{
    char a[] = "alpha";
    char *b = NULL;
    char c[] = "";
    char *pa = a;
    char *pc = c;
    char **fields[] = {&pa, &b, &pc};
    CHECK(as_strdup_fields(fields, 3));
    CHECK(pa != a && strcmp(pa, "alpha") == 0);
    CHECK(b == NULL);
    CHECK(pc != c && strcmp(pc, "") == 0);
    free(pa);
    free(pc);
    CHECK(as_strdup_fields(fields, 0));
}

/* The integer member "n" of a parsed body, or -1. */
static json_int_t member_n(const json_t *o)
{
    const json_t *n = json_object_get(o, "n");
    return json_is_integer(n) ? json_integer_value(n) : -1;
}

#define CACHE_BODIES 8
#define CACHE_ROUNDS 20000

struct cache_worker {
    pthread_t t;
    struct as_json_cache *c;
    unsigned seed;
    int wrong; /* answers that were not the body's own parse */
};

static void cache_body(char *out, size_t n, int i)
{
    /* Same length for every i: only the bytes tell them apart. */
    snprintf(out, n, "{\"target\":\"spiffe://example.org/api\",\"n\":%d}", i);
}

static void *cache_work(void *arg)
{
    struct cache_worker *w = arg;
    char body[128], err[160];
    for (int k = 0; k < CACHE_ROUNDS; k++) {
        int i = (int)(rand_r(&w->seed) % CACHE_BODIES);
        cache_body(body, sizeof body, i);
        json_t *o = NULL;
        if (as_json_cache_parse(w->c, body, strlen(body), &o, err, sizeof err) != AS_OK ||
            member_n(o) != i) {
            w->wrong++;
        }
        json_decref(o);
    }
    return NULL;
}

/*
 * as_json_cache_parse: a repeated body gets the object parsed the first time; a body differing
 * in one byte, or sharing the slot, gets its own parse; failures, blank and oversized bodies are
 * parsed every time as as_json_parse_object does; references outlive the cache; four threads on
 * three slots always get their own body's parse.
 */
/* as_hash_bytes is FNV-1a 64 (the published test values); as_hash_str hashes the same bytes;
 * as_hash_bytes reads bytes, not a string. */
static void test_hash(void)
{
    CHECK(as_hash_bytes("", 0) == 0xcbf29ce484222325ULL);
    CHECK(as_hash_bytes("a", 1) == 0xaf63dc4c8601ec8cULL);
    CHECK(as_hash_bytes("foobar", 6) == 0x85944171f73967e8ULL);
    CHECK(as_hash_str("foobar") == as_hash_bytes("foobar", 6));
    CHECK(as_hash_str("") == as_hash_bytes("", 0));
    CHECK(as_hash_bytes("a\0b", 3) != as_hash_bytes("a", 1)); /* bytes, not a C string */
}

static void test_json_cache(void)
{
    char err[160];
    json_t *a = NULL, *b = NULL, *c2 = NULL;
    CHECK(as_json_cache_new(0, 100) == NULL);
    CHECK(as_json_cache_new(4, 0) == NULL);
    struct as_json_cache *c = as_json_cache_new(4, 100);
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    const char *one = "{\"n\":1}", *two = "{\"n\":2}";
    CHECK_INT(as_json_cache_parse(c, one, strlen(one), &a, err, sizeof err), AS_OK);
    CHECK_INT(as_json_cache_parse(c, one, strlen(one), &b, err, sizeof err), AS_OK);
    CHECK(a != NULL && a == b); /* the same object, shared */
    CHECK_INT(member_n(b), 1);
    CHECK_INT(as_json_cache_parse(c, two, strlen(two), &c2, err, sizeof err), AS_OK);
    CHECK(c2 != a && member_n(c2) == 2);
    json_decref(a);
    json_decref(b);
    json_decref(c2);

    /* Errors are parsed, and explained, every time. */
    const char *dup = "{\"n\":1,\"n\":1}";
    for (int i = 0; i < 2; i++) {
        err[0] = '\0';
        CHECK_INT(as_json_cache_parse(c, dup, strlen(dup), &a, err, sizeof err), AS_ERR_INVALID);
        CHECK(a == NULL && strstr(err, "duplicate") != NULL);
    }
    const char *arr = "[1]";
    CHECK_INT(as_json_cache_parse(c, arr, strlen(arr), &a, err, sizeof err), AS_ERR_INVALID);
    /* A blank body is a fresh empty object; so is a long body's parse, every time. */
    CHECK_INT(as_json_cache_parse(c, "", 0, &a, err, sizeof err), AS_OK);
    CHECK_INT(as_json_cache_parse(c, "", 0, &b, err, sizeof err), AS_OK);
    CHECK(a != b && json_object_size(a) == 0 && json_object_size(b) == 0);
    json_decref(a);
    json_decref(b);
    char big[160];
    snprintf(big, sizeof big, "{\"n\":3,\"pad\":\"%0120d\"}", 0);
    CHECK_INT(as_json_cache_parse(c, big, strlen(big), &a, err, sizeof err), AS_OK);
    CHECK_INT(as_json_cache_parse(c, big, strlen(big), &b, err, sizeof err), AS_OK);
    CHECK(a != b && member_n(a) == 3 && member_n(b) == 3);
    json_decref(a);
    json_decref(b);
    /* NULL cache: straight through. */
    CHECK_INT(as_json_cache_parse(NULL, one, strlen(one), &a, err, sizeof err), AS_OK);
    CHECK_INT(member_n(a), 1);
    json_decref(a);
    /* A reference taken from the cache outlives it. */
    CHECK_INT(as_json_cache_parse(c, one, strlen(one), &a, err, sizeof err), AS_OK);
    as_json_cache_free(c);
    CHECK_INT(member_n(a), 1);
    json_decref(a);

    /* One slot: two bodies of one length keep replacing each other, each answered right. */
    c = as_json_cache_new(1, 100);
    CHECK(c != NULL);
    for (int i = 0; c != NULL && i < 6; i++) {
        const char *body = i % 2 ? two : one;
        CHECK_INT(as_json_cache_parse(c, body, strlen(body), &a, err, sizeof err), AS_OK);
        CHECK_INT(member_n(a), i % 2 ? 2 : 1);
        json_decref(a);
    }
    as_json_cache_free(c);

    c = as_json_cache_new(3, 100);
    CHECK(c != NULL);
    struct cache_worker w[4];
    for (unsigned i = 0; c != NULL && i < 4; i++) {
        w[i] = (struct cache_worker){.c = c, .seed = 7 + i};
        CHECK_INT(pthread_create(&w[i].t, NULL, cache_work, &w[i]), 0);
    }
    for (unsigned i = 0; c != NULL && i < 4; i++) {
        pthread_join(w[i].t, NULL);
        CHECK_INT(w[i].wrong, 0);
    }
    as_json_cache_free(c);
}

/* CIDR lists (token_bound_cidrs): prefix boundaries inside a byte, both families, bad entries. */
static void test_cidrs(void)
{
    const char *good[] = {"10.0.0.0/8",    "192.168.1.1", "0.0.0.0/0",
                          "2001:db8::/32", "::1/128",     "fe80::/10"};
    const char *bad[] = {"10.0.0.0/33",    "10.0.0.0/",   "10.0.0.0/8x",     "10.0.0/8", "/8", "",
                         "2001:db8::/129", "10.0.0.0/-1", "host.example.org"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK(as_cidr_ok(good[i]));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(!as_cidr_ok(bad[i]));
    }
    CHECK(!as_cidr_ok(NULL));
    json_t *l = json_pack("[s,s,s]", "10.0.0.0/9", "fe80::/10", "not/a/network");
    CHECK(as_addr_in_cidrs("10.127.255.255", l)); /* /9: the second byte's top bit is 0 */
    CHECK(!as_addr_in_cidrs("10.128.0.0", l));
    CHECK(as_addr_in_cidrs("::ffff:10.1.1.1", l));
    CHECK(as_addr_in_cidrs("febf::1", l)); /* /10: fe80-febf */
    CHECK(!as_addr_in_cidrs("fec0::1", l));
    CHECK(!as_addr_in_cidrs("::ffff:11.1.1.1", l) && !as_addr_in_cidrs(NULL, l));
    CHECK(!as_addr_in_cidrs("10.0.0.1", NULL));
    json_decref(l);
    l = json_pack("[s]", "0.0.0.0/0");
    CHECK(as_addr_in_cidrs("203.0.113.9", l) && !as_addr_in_cidrs("2001:db8::1", l));
    json_decref(l);
}

int main(void)
{
    test_cidrs();
    test_strdup_fields();
    test_paths();
    test_hmac_key();
    test_utf8();
    test_durations();
    test_json();
    test_hash();
    test_json_cache();
    test_buf();
    test_secrets();
    return check_done();
}
