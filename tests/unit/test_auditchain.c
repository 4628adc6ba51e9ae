/* Unit tests for common/auditchain: sealing lines, and each kind of break found at its line. */
#include <stdlib.h>

#include <openssl/evp.h>

#include "check.h"
#include "common/auditchain.h"

#define NLINES 10

struct log {
    char *line[NLINES + 2];
    size_t len[NLINES + 2];
    size_t n;
};

static void log_free(struct log *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->line[i]);
    }
    l->n = 0;
}

/* Seals NLINES records {"type":..., "n":i, "path":...} from the genesis. */
static void make_log(struct log *l)
{
    struct as_chain c;
    memset(l, 0, sizeof *l);
    CHECK_INT(as_chain_init(&c, NULL, 0), AS_OK);
    for (size_t i = 0; i < NLINES; i++) {
        json_t *o = json_pack("{s:s, s:I, s:s}", "type", i % 2 ? "response" : "request", "n",
                              (json_int_t)i, "path", "sys/policies/acl/x");
        CHECK(o != NULL);
        CHECK_INT(as_chain_seal(&c, o, &l->line[i], &l->len[i]), AS_OK);
        json_decref(o);
        l->n++;
    }
    CHECK_INT(c.line_no, NLINES);
}

/*
 * Checks lines[0..n) from the genesis. Returns the 1-based number of the first refused line (0
 * when all pass) and its fault; *end gets the final state.
 */
static size_t verify(char **lines, const size_t *lens, size_t n, enum as_chain_fault *fault,
                     struct as_chain *end, char *why, size_t whylen)
{
    struct as_chain c;
    *fault = AS_CHAIN_FAULT_NONE;
    if (as_chain_init(&c, NULL, 0) != AS_OK) {
        return SIZE_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        if (as_chain_check_line(&c, lines[i], lens[i], fault, why, whylen) != AS_OK) {
            if (end != NULL) {
                *end = c;
            }
            return i + 1;
        }
    }
    if (end != NULL) {
        *end = c;
    }
    return 0;
}

static void test_round_trip(void)
{
    struct log l;
    struct as_chain end;
    enum as_chain_fault fault;
    char why[320];
    char h[AS_CHAIN_HASH_HEX + 1];
    make_log(&l);
    /* The first line: the genesis first, then the members in insertion order, compact. */
    CHECK_STR(l.line[0], "{\"prev_hash\":\"" AS_CHAIN_GENESIS
                         "\",\"type\":\"request\",\"n\":0,\"path\":\"sys/policies/acl/x\"}");
    CHECK_INT(l.len[0], strlen(l.line[0]));
    /* Each prev_hash is the SHA-256 of the previous line (checked with EVP directly). */
    for (size_t i = 1; i < l.n; i++) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        CHECK(EVP_Digest(l.line[i - 1], l.len[i - 1], md, &mdlen, EVP_sha256(), NULL) == 1);
        as_hex(md, sizeof md, h);
        CHECK(strncmp(l.line[i] + strlen(AS_CHAIN_PREFIX), h, AS_CHAIN_HASH_HEX) == 0);
    }
    CHECK_INT(verify(l.line, l.len, l.n, &fault, &end, why, sizeof why), 0);
    CHECK_INT(fault, AS_CHAIN_FAULT_NONE);
    CHECK_INT(end.line_no, NLINES);
    CHECK_INT(as_chain_line_hash(l.line[l.n - 1], l.len[l.n - 1], h), AS_OK);
    CHECK_STR(end.prev_hash, h);

    /* Continuing after a restart from the stored head gives the same line as without one. */
    struct as_chain c;
    char *line = NULL;
    size_t len = 0;
    CHECK_INT(as_chain_init(&c, h, NLINES), AS_OK);
    json_t *o = json_pack("{s:s}", "type", "request");
    CHECK_INT(as_chain_seal(&c, o, &line, &len), AS_OK);
    CHECK_INT(c.line_no, NLINES + 1);
    CHECK(line != NULL && strncmp(line + strlen(AS_CHAIN_PREFIX), h, AS_CHAIN_HASH_HEX) == 0);
    CHECK_INT(as_chain_check_line(&end, line, len, &fault, why, sizeof why), AS_OK);
    CHECK_STR(end.prev_hash, c.prev_hash);
    free(line);
    json_decref(o);

    /* An empty object seals to just the prev_hash. */
    CHECK_INT(as_chain_init(&c, NULL, 0), AS_OK);
    o = json_object();
    CHECK_INT(as_chain_seal(&c, o, &line, NULL), AS_OK);
    CHECK_STR(line, "{\"prev_hash\":\"" AS_CHAIN_GENESIS "\"}");
    free(line);
    json_decref(o);

    /* Non-ASCII, escapes and a NUL in a string survive and verify. */
    CHECK_INT(as_chain_init(&c, NULL, 0), AS_OK);
    o = json_object();
    CHECK(json_object_set_new(o, "s", json_stringn("a\"b\n\xc3\xa9\0z", 8)) == 0);
    CHECK_INT(as_chain_seal(&c, o, &line, &len), AS_OK);
    CHECK(strchr(line, '\n') == NULL);
    struct as_chain v;
    CHECK_INT(as_chain_init(&v, NULL, 0), AS_OK);
    CHECK_INT(as_chain_check_line(&v, line, len, &fault, why, sizeof why), AS_OK);
    CHECK_STR(v.prev_hash, c.prev_hash);
    free(line);
    json_decref(o);
    log_free(&l);
}

static void test_seal_refuses(void)
{
    struct as_chain c;
    struct as_chain before;
    char *line = (char *)"x";
    CHECK_INT(as_chain_init(&c, NULL, 0), AS_OK);
    before = c;
    /* Not an object. */
    json_t *a = json_array();
    CHECK_INT(as_chain_seal(&c, a, &line, NULL), AS_ERR_INVALID);
    CHECK(line == NULL);
    json_decref(a);
    /* prev_hash is the chain's own. */
    json_t *o = json_pack("{s:s}", "prev_hash", AS_CHAIN_GENESIS);
    CHECK_INT(as_chain_seal(&c, o, &line, NULL), AS_ERR_INVALID);
    json_decref(o);
    /* Deeper than the reader accepts. */
    o = json_object();
    json_t *cur = o;
    for (int i = 0; i < AS_MAX_JSON_DEPTH + 1; i++) {
        json_t *n = json_object();
        CHECK(json_object_set_new(cur, "d", n) == 0);
        cur = n;
    }
    CHECK_INT(as_chain_seal(&c, o, &line, NULL), AS_ERR_INVALID);
    json_decref(o);
    /* Larger than a line may be. */
    size_t big = AS_AUDIT_MAX_LINE;
    char *s = malloc(big + 1);
    CHECK(s != NULL);
    if (s != NULL) {
        memset(s, 'a', big);
        s[big] = '\0';
        o = json_pack("{s:s}", "data", s);
        CHECK_INT(as_chain_seal(&c, o, &line, NULL), AS_ERR_TOO_LARGE);
        json_decref(o);
        free(s);
    }
    /* None of this moved the chain. */
    CHECK_STR(c.prev_hash, before.prev_hash);
    CHECK_INT(c.line_no, before.line_no);
    /* A bad head is refused at init. */
    CHECK_INT(as_chain_init(&c, "abc", 3), AS_ERR_INVALID);
    CHECK_INT(
        as_chain_init(&c, "0000000000000000000000000000000000000000000000000000000000000G00", 3),
        AS_ERR_INVALID);
    CHECK_INT(
        as_chain_init(&c, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 3),
        AS_ERR_INVALID);
    CHECK_STR(c.prev_hash, AS_CHAIN_GENESIS);
    CHECK(as_chain_hash_valid(AS_CHAIN_GENESIS, 64));
    CHECK(!as_chain_hash_valid(AS_CHAIN_GENESIS, 63));
}

/* One tampered copy of the log: the first refused line and its fault. */
static void expect_break(char **lines, const size_t *lens, size_t n, size_t want_line,
                         enum as_chain_fault want_fault, const char *want_why)
{
    enum as_chain_fault fault;
    char why[320] = "";
    size_t got = verify(lines, lens, n, &fault, NULL, why, sizeof why);
    CHECK_INT(got, want_line);
    CHECK_INT(fault, want_fault);
    if (want_why != NULL && strstr(why, want_why) == NULL) {
        fprintf(stderr, "why: \"%s\", expected to contain \"%s\"\n", why, want_why);
        CHECK(0);
    }
}

static void test_tampering(void)
{
    struct log l;
    char *t[NLINES + 2];
    size_t tl[NLINES + 2];
    make_log(&l);

    /* Edited line 5 (0-based 4): its own prev_hash is fine, line 6 no longer matches it. */
    char *ed = strdup(l.line[4]);
    CHECK(ed != NULL);
    char *p = strstr(ed, "\"n\":4");
    CHECK(p != NULL);
    p[4] = '7';
    memcpy(t, l.line, sizeof l.line);
    memcpy(tl, l.len, sizeof l.len);
    t[4] = ed;
    expect_break(t, tl, l.n, 6, AS_CHAIN_FAULT_MISMATCH, "does not match line 5");
    /* Edited prev_hash of line 5: refused at line 5 itself. */
    ed[strlen(AS_CHAIN_PREFIX)] = ed[strlen(AS_CHAIN_PREFIX)] == 'a' ? 'b' : 'a';
    p[4] = '4';
    expect_break(t, tl, l.n, 5, AS_CHAIN_FAULT_MISMATCH, "does not match line 4");
    free(ed);

    /* Dropped line 3: the line now at 3 carries the hash of the dropped one. */
    memcpy(t, l.line, 2 * sizeof t[0]);
    memcpy(tl, l.len, 2 * sizeof tl[0]);
    memcpy(t + 2, l.line + 3, (l.n - 3) * sizeof t[0]);
    memcpy(tl + 2, l.len + 3, (l.n - 3) * sizeof tl[0]);
    expect_break(t, tl, l.n - 1, 3, AS_CHAIN_FAULT_MISMATCH, "does not match line 2");

    /* Dropped first line: the new first line is not the genesis. */
    expect_break(l.line + 1, l.len + 1, l.n - 1, 1, AS_CHAIN_FAULT_MISMATCH, "64 zeros");

    /* Lines 7 and 8 swapped: found at 7. */
    memcpy(t, l.line, sizeof l.line);
    memcpy(tl, l.len, sizeof l.len);
    t[6] = l.line[7];
    tl[6] = l.len[7];
    t[7] = l.line[6];
    tl[7] = l.len[6];
    expect_break(t, tl, l.n, 7, AS_CHAIN_FAULT_MISMATCH, "does not match line 6");

    /* An inserted line forged to follow line 4: found at the next line (6). */
    struct as_chain c;
    char h[AS_CHAIN_HASH_HEX + 1];
    char *ins = NULL;
    size_t inslen = 0;
    CHECK_INT(as_chain_line_hash(l.line[3], l.len[3], h), AS_OK);
    CHECK_INT(as_chain_init(&c, h, 4), AS_OK);
    json_t *o = json_pack("{s:s}", "type", "forged");
    CHECK_INT(as_chain_seal(&c, o, &ins, &inslen), AS_OK);
    json_decref(o);
    memcpy(t, l.line, 4 * sizeof t[0]);
    memcpy(tl, l.len, 4 * sizeof tl[0]);
    t[4] = ins;
    tl[4] = inslen;
    memcpy(t + 5, l.line + 4, (l.n - 4) * sizeof t[0]);
    memcpy(tl + 5, l.len + 4, (l.n - 4) * sizeof tl[0]);
    expect_break(t, tl, l.n + 1, 6, AS_CHAIN_FAULT_MISMATCH, "does not match line 5");
    /* An inserted copy of line 4 (a replay): found at once. */
    t[4] = l.line[3];
    tl[4] = l.len[3];
    expect_break(t, tl, l.n + 1, 5, AS_CHAIN_FAULT_MISMATCH, "does not match line 4");
    free(ins);

    /* A second chain started in the middle (a genesis line). */
    struct log l2;
    make_log(&l2);
    memcpy(t, l.line, 3 * sizeof t[0]);
    memcpy(tl, l.len, 3 * sizeof tl[0]);
    t[3] = l2.line[0];
    tl[3] = l2.len[0];
    expect_break(t, tl, 4, 4, AS_CHAIN_FAULT_MISMATCH, "genesis");
    log_free(&l2);

    /* A truncated tail verifies on its own: its end no longer equals the last hash. */
    struct as_chain end;
    enum as_chain_fault fault;
    char why[320];
    char head[AS_CHAIN_HASH_HEX + 1];
    CHECK_INT(as_chain_line_hash(l.line[l.n - 1], l.len[l.n - 1], head), AS_OK);
    CHECK_INT(verify(l.line, l.len, l.n - 2, &fault, &end, why, sizeof why), 0);
    CHECK(strcmp(end.prev_hash, head) != 0);
    CHECK_INT(end.line_no, NLINES - 2);
    log_free(&l);
}

/* Checks one line against the genesis; returns the result and the fault. */
static enum as_err check_one(const char *line, enum as_chain_fault *fault, char *why)
{
    struct as_chain c;
    if (as_chain_init(&c, NULL, 0) != AS_OK) {
        return AS_ERR_INTERNAL;
    }
    enum as_err r = as_chain_check_line(&c, line, strlen(line), fault, why, 320);
    if (r != AS_OK && c.line_no != 0) {
        return AS_ERR_INTERNAL; /* a refused line must not advance the chain */
    }
    return r;
}

static void test_malformed(void)
{
    static const struct {
        const char *line;
        const char *why;
    } bad[] = {
        {"", "empty line"},
        {" ", "empty line"},
        {"\t\r", "empty line"},
        {"not json", "not a JSON object"},
        {"[1,2]", "not a JSON object"},
        {"{\"prev_hash\":\"" AS_CHAIN_GENESIS "\"", "not a JSON object"},
        {"{\"prev_hash\":\"" AS_CHAIN_GENESIS "\"} x", "not a JSON object"},
        {"{\"type\":\"request\"}", "no prev_hash"},
        {"{\"prev_hash\":1}", "not a string"},
        {"{\"prev_hash\":null}", "not a string"},
        {"{\"prev_hash\":\"00\"}", "64 lowercase hex"},
        {"{\"prev_hash\":\"" AS_CHAIN_GENESIS "0\"}", "64 lowercase hex"},
        {"{\"prev_hash\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
         "64 lowercase hex"},
        {"{\"prev_hash\":\"000000000000000000000000000000000000000000000000000000000000000g\"}",
         "64 lowercase hex"},
        /* Duplicate prev_hash: refused by the parser, whichever value comes first. */
        {"{\"prev_hash\":\"" AS_CHAIN_GENESIS "\",\"prev_hash\":\"" AS_CHAIN_GENESIS "\"}",
         "duplicate"},
        {"{\"prev_hash\":\"" AS_CHAIN_GENESIS "\",\"a\":1,\"a\":2}", "duplicate"},
        /* Not the first member, or not compact. */
        {"{\"type\":\"x\",\"prev_hash\":\"" AS_CHAIN_GENESIS "\"}", "does not begin"},
        {"{ \"prev_hash\":\"" AS_CHAIN_GENESIS "\"}", "does not begin"},
        {"{\"prev_hash\": \"" AS_CHAIN_GENESIS "\"}", "does not begin"},
        {"{\"prev_hash\":\"" AS_CHAIN_GENESIS "\" }", "does not begin"},
        {"{\"prev_hash\":\"" AS_CHAIN_GENESIS "\"}\r", "does not end"},
        {" {\"prev_hash\":\"" AS_CHAIN_GENESIS "\"}", "does not begin"},
        {"{\"prev\\u005fhash\":\"" AS_CHAIN_GENESIS "\"}", "does not begin"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum as_chain_fault fault = AS_CHAIN_FAULT_NONE;
        char why[320] = "";
        enum as_err r = check_one(bad[i].line, &fault, why);
        if (r != AS_ERR_INVALID || fault != AS_CHAIN_FAULT_FORMAT ||
            strstr(why, bad[i].why) == NULL) {
            fprintf(stderr, "bad line %zu (%s): r=%d fault=%d why=\"%s\"\n", i, bad[i].line, (int)r,
                    (int)fault, why);
            CHECK(0);
        } else {
            CHECK(1);
        }
    }
    /* Their good twins. */
    static const char *good[] = {
        "{\"prev_hash\":\"" AS_CHAIN_GENESIS "\"}",
        "{\"prev_hash\":\"" AS_CHAIN_GENESIS "\",\"a\":{\"b\":[1,2,{\"c\":null}]}}",
        "{\"prev_hash\":\"" AS_CHAIN_GENESIS "\",\"a\":\"x y\"}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        enum as_chain_fault fault = AS_CHAIN_FAULT_FORMAT;
        char why[320] = "";
        CHECK_INT(check_one(good[i], &fault, why), AS_OK);
        CHECK_INT(fault, AS_CHAIN_FAULT_NONE);
    }
    /* A NUL byte inside the line (len counts past it). */
    static const char nul[] = "{\"prev_hash\":\"" AS_CHAIN_GENESIS "\",\"a\":\"x\0\"}";
    struct as_chain c;
    enum as_chain_fault fault;
    char why[320];
    CHECK_INT(as_chain_init(&c, NULL, 0), AS_OK);
    CHECK_INT(as_chain_check_line(&c, nul, sizeof nul - 1, &fault, why, sizeof why),
              AS_ERR_INVALID);
    CHECK_INT(fault, AS_CHAIN_FAULT_FORMAT);
    /* A line over the cap is refused before parsing. */
    char *big = malloc(AS_AUDIT_MAX_LINE + 2);
    CHECK(big != NULL);
    if (big != NULL) {
        memset(big, 'a', AS_AUDIT_MAX_LINE + 1);
        big[AS_AUDIT_MAX_LINE + 1] = '\0';
        CHECK_INT(as_chain_check_line(&c, big, AS_AUDIT_MAX_LINE + 1, &fault, why, sizeof why),
                  AS_ERR_INVALID);
        CHECK(strstr(why, "longer than") != NULL);
        free(big);
    }
    /* Too deep to read. */
    char deep[400] = "{\"prev_hash\":\"" AS_CHAIN_GENESIS "\",\"a\":";
    size_t dl = strlen(deep);
    for (int i = 0; i < AS_MAX_JSON_DEPTH + 1; i++) {
        deep[dl++] = '[';
    }
    for (int i = 0; i < AS_MAX_JSON_DEPTH + 1; i++) {
        deep[dl++] = ']';
    }
    deep[dl++] = '}';
    deep[dl] = '\0';
    CHECK_INT(check_one(deep, &fault, why), AS_ERR_INVALID);
    CHECK(strstr(why, "deeper") != NULL);
}

int main(void)
{
    test_round_trip();
    test_seal_refuses();
    test_tampering();
    test_malformed();
    return check_done();
}
