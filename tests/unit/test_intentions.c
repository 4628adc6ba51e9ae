/* Unit tests for acl/intentions.c: pattern shapes and the SPEC §7 decision rules. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "acl/acl.h"
#include "check.h"

#define MAX_RULES 5

/* One decision: a rule set of its own, a request, and the expected answer. */
struct dcase {
    const char *name;
    struct as_intention rules[MAX_RULES];
    const char *src;
    const char *dst;
    bool default_allow;
    bool want_allow;
    const char *want_id; /* "" when no rule should match */
};

/* The table reads best as one case per line group, which clang-format would undo. */
/* clang-format off */
#define ALLOW(id, s, d) {(id), (s), (d), true}
#define DENY(id, s, d) {(id), (s), (d), false}

#define TD "spiffe://td"
#define WEB TD "/web"
#define DB TD "/db"

/* Rules end at the first entry without an id. */
static const struct dcase cases[] = {
    /* SPEC §7: a prefix matches IDs strictly below its path, on a segment boundary. */
    {"spec: prefix matches a child", {ALLOW("p", "*", TD "/ns/prod/*")}, WEB, TD "/ns/prod/a",
     false, true, "p"},
    {"spec: prefix matches a grandchild", {ALLOW("p", "*", TD "/ns/prod/*")}, WEB,
     TD "/ns/prod/a/b", false, true, "p"},
    {"spec: prefix does not match its own path", {ALLOW("p", "*", TD "/ns/prod/*")}, WEB,
     TD "/ns/prod", false, false, ""},
    {"spec: prefix stops at a segment boundary", {ALLOW("p", "*", TD "/ns/prod/*")}, WEB,
     TD "/ns/production/a", false, false, ""},
    {"boundary miss falls to default allow", {DENY("p", "*", TD "/ns/prod/*")}, WEB,
     TD "/ns/production/a", true, true, ""},
    {"prefix needs a non-empty next segment", {ALLOW("p", "*", TD "/ns/prod/*")}, WEB,
     TD "/ns/prod//a", false, false, ""},
    /* SPEC §7: no match uses connect.default_action. */
    {"no rules, default deny", {{0}}, WEB, DB, false, false, ""},
    {"no rules, default allow", {{0}}, WEB, DB, true, true, ""},
    {"no matching rule, default deny", {ALLOW("a", WEB, TD "/cache")}, WEB, DB, false, false, ""},
    {"no matching rule, default allow", {DENY("d", WEB, TD "/cache")}, WEB, DB, true, true, ""},
    /* SPEC §7: at equal precedence deny wins, whatever the input order or the ids. */
    {"deny beats allow at equal precedence", {ALLOW("a", WEB, DB), DENY("z", WEB, DB)}, WEB, DB,
     true, false, "z"},
    {"deny beats allow, reversed input", {DENY("z", WEB, DB), ALLOW("a", WEB, DB)}, WEB, DB,
     true, false, "z"},
    {"deny beats allow on equal prefixes",
     {ALLOW("a", "*", TD "/ns/*"), DENY("d", "*", TD "/ns/*")}, WEB, TD "/ns/x", true, false,
     "d"},
    {"deny beats allow on */*", {ALLOW("a", "*", "*"), DENY("d", "*", "*")}, WEB, DB, true,
     false, "d"},
    /* "*" to "*" rules. */
    {"*/* allow over default deny", {ALLOW("all", "*", "*")}, WEB, DB, false, true, "all"},
    {"*/* deny over default allow", {DENY("none", "*", "*")}, WEB, DB, true, false, "none"},
    {"*/* yields to a specific rule", {DENY("none", "*", "*"), ALLOW("a", WEB, DB)}, WEB, DB,
     false, true, "a"},
    {"*/* decides what the specific rule leaves", {DENY("none", "*", "*"), ALLOW("a", WEB, DB)},
     WEB, TD "/other", true, false, "none"},
    /* SPEC §7: the most specific destination wins before the source is looked at. */
    {"exact dst allow beats prefix dst deny with exact src",
     {DENY("d", WEB, TD "/*"), ALLOW("a", "*", DB)}, WEB, DB, false, true, "a"},
    {"exact dst allow beats * dst deny with exact src", {DENY("d", WEB, "*"), ALLOW("a", "*", DB)},
     WEB, DB, false, true, "a"},
    {"prefix dst deny beats * dst allow with exact src",
     {ALLOW("a", WEB, "*"), DENY("d", "*", TD "/ns/*")}, WEB, TD "/ns/x", true, false, "d"},
    {"longer prefix dst wins",
     {DENY("short", "*", TD "/ns/*"), ALLOW("long", "*", TD "/ns/prod/*")}, WEB,
     TD "/ns/prod/a", false, true, "long"},
    {"shorter prefix dst when the longer misses",
     {DENY("short", "*", TD "/ns/*"), ALLOW("long", "*", TD "/ns/prod/*")}, WEB, TD "/ns/dev/a",
     true, false, "short"},
    {"longer prefix dst beats shorter even with exact src",
     {DENY("short", WEB, TD "/ns/*"), ALLOW("long", "*", TD "/ns/prod/*")}, WEB,
     TD "/ns/prod/a", false, true, "long"},
    {"trust-domain prefix matches below it", {ALLOW("td", "*", TD "/*")}, WEB, DB, false, true,
     "td"},
    {"trust-domain prefix: not the trust domain itself", {ALLOW("td", "*", TD "/*")}, WEB, TD,
     false, false, ""},
    {"trust-domain prefix: not a longer trust domain", {ALLOW("td", "*", TD "/*")}, WEB,
     "spiffe://tdx/a", false, false, ""},
    {"trust-domain prefix: not another trust domain", {ALLOW("td", "*", TD "/*")}, WEB,
     "spiffe://other/a", false, false, ""},
    /* SPEC §7: source specificity only breaks ties of equal destination precedence. */
    {"exact src beats * src", {DENY("d", "*", DB), ALLOW("a", WEB, DB)}, WEB, DB, false, true,
     "a"},
    {"* src when the exact src misses", {DENY("d", "*", DB), ALLOW("a", WEB, DB)}, TD "/api", DB,
     true, false, "d"},
    {"exact src beats prefix src",
     {DENY("d", TD "/ns/prod/*", DB), ALLOW("a", TD "/ns/prod/web", DB)}, TD "/ns/prod/web", DB,
     false, true, "a"},
    {"prefix src when the exact src misses",
     {DENY("d", TD "/ns/prod/*", DB), ALLOW("a", TD "/ns/prod/web", DB)}, TD "/ns/prod/api", DB,
     true, false, "d"},
    {"longer prefix src wins", {ALLOW("a", TD "/ns/*", DB), DENY("d", TD "/ns/prod/*", DB)},
     TD "/ns/prod/web", DB, true, false, "d"},
    {"shorter prefix src when the longer misses",
     {ALLOW("a", TD "/ns/*", DB), DENY("d", TD "/ns/prod/*", DB)}, TD "/ns/dev/web", DB, false,
     true, "a"},
    {"prefix src beats * src", {ALLOW("a", "*", DB), DENY("d", TD "/ns/*", DB)}, TD "/ns/web",
     DB, true, false, "d"},
    {"src prefix stops at a segment boundary", {ALLOW("a", TD "/ns/prod/*", DB)},
     TD "/ns/production/web", DB, false, false, ""},
    {"src prefix does not match its own path", {ALLOW("a", TD "/ns/prod/*", DB)}, TD "/ns/prod",
     DB, false, false, ""},
    {"src prefix matches a grandchild", {ALLOW("a", TD "/ns/prod/*", DB)}, TD "/ns/prod/a/b", DB,
     false, true, "a"},
    /* Exact patterns are whole-string matches, not leading parts. */
    {"exact dst is not a prefix", {ALLOW("a", WEB, DB)}, WEB, DB "/x", false, false, ""},
    {"exact dst is not a leading part", {ALLOW("a", WEB, DB)}, WEB, TD "/d", false, false, ""},
    {"exact src is not a prefix", {ALLOW("a", WEB, DB)}, WEB "/x", DB, false, false, ""},
    {"src matches but dst does not", {DENY("d", WEB, DB)}, WEB, TD "/cache", true, true, ""},
    /* The deciding id when several rules match at different precedences. */
    {"id of the deciding rule among many",
     {ALLOW("r1", "*", "*"), DENY("r2", "*", TD "/*"), ALLOW("r3", WEB, TD "/ns/*"),
      DENY("r4", "*", TD "/ns/prod/*"), ALLOW("r5", WEB, TD "/ns/prod/*")},
     WEB, TD "/ns/prod/db", false, true, "r5"},
    {"id of the deciding rule, one level up",
     {ALLOW("r1", "*", "*"), DENY("r2", "*", TD "/*"), ALLOW("r3", WEB, TD "/ns/*"),
      DENY("r4", "*", TD "/ns/prod/*"), ALLOW("r5", WEB, TD "/ns/prod/*")},
     TD "/api", TD "/ns/prod/db", true, false, "r4"},
    {"id of the deciding rule, two levels up",
     {ALLOW("r1", "*", "*"), DENY("r2", "*", TD "/*"), ALLOW("r3", WEB, TD "/ns/*"),
      DENY("r4", "*", TD "/ns/prod/*"), ALLOW("r5", WEB, TD "/ns/prod/*")},
     TD "/api", TD "/ns/dev/db", true, false, "r2"},
    {"id of the deciding rule, the catch-all",
     {ALLOW("r1", "*", "*"), DENY("r2", "*", TD "/*"), ALLOW("r3", WEB, TD "/ns/*"),
      DENY("r4", "*", TD "/ns/prod/*"), ALLOW("r5", WEB, TD "/ns/prod/*")},
     TD "/api", "spiffe://other/db", false, true, "r1"},
};
/* clang-format on */

#define N_CASES (sizeof cases / sizeof cases[0])

static size_t case_nrules(const struct dcase *c)
{
    size_t n = 0;
    while (n < MAX_RULES && c->rules[n].id != NULL) {
        n++;
    }
    return n;
}

/* One set per case, built up front; NULL where building failed (counted as a failure). */
static struct as_intentions *g_sets[N_CASES];

static bool case_ok(size_t i, const char **id_out)
{
    const struct dcase *c = &cases[i];
    const char *id = NULL;
    bool allow = as_intentions_decide(g_sets[i], c->src, c->dst, c->default_allow, &id);

    *id_out = id;
    return g_sets[i] != NULL && allow == c->want_allow && id != NULL && strcmp(id, c->want_id) == 0;
}

static void test_table(void)
{
    CHECK(N_CASES >= 16);
    for (size_t i = 0; i < N_CASES; i++) {
        const struct dcase *c = &cases[i];
        CHECK_INT(as_intentions_build(c->rules, case_nrules(c), &g_sets[i]), AS_OK);
        const char *id = NULL;
        bool ok = case_ok(i, &id);
        CHECK(ok);
        if (!ok) {
            fprintf(stderr, "  case %zu \"%s\": %s -> %s gave id \"%s\"\n", i, c->name, c->src,
                    c->dst, id != NULL ? id : "(null)");
        }
    }
}

static void test_pattern_ok(void)
{
    static const char *const good[] = {
        "*",
        TD,
        WEB,
        TD "/*",
        TD "/ns/prod/*",
        "spiffe://example.org/ns/prod/sa/web",
        "spiffe://example.org/a/b/c/*",
    };
    static const char *const bad[] = {
        "",
        "**",
        "* ",
        " *",
        "*/*",
        "spiffe://",
        "spiffe://*",
        "spiffe:///*",
        "spiffe:///a",
        "spiffe://*/a",
        "spiffe://td*",
        "spiffe://t*d/a",
        "spiffe://td/a*",
        "spiffe://td/*a",
        "spiffe://td/*/a",
        "spiffe://td/a/**",
        "spiffe://td/a/*/*",
        "spiffe://td/*?",
        "SPIFFE://td/a",
        "spiffe:/td/a",
        "http://td/a",
        "td/a",
        "/*",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        bool ok = as_intention_pattern_ok(good[i]);
        CHECK(ok);
        if (!ok) {
            fprintf(stderr, "  refused good pattern \"%s\"\n", good[i]);
        }
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool ok = as_intention_pattern_ok(bad[i]);
        CHECK(!ok);
        if (ok) {
            fprintf(stderr, "  accepted bad pattern \"%s\"\n", bad[i]);
        }
    }
    CHECK(!as_intention_pattern_ok(NULL));

    /*
     * The length cap: a 2048-byte ID (SPIFFE-ID §2.3) with "/" and "*" appended is 2050 bytes
     * and passes; a pattern of 2051 bytes does not, in either form.
     */
    char p[2052];
    memset(p, 'a', sizeof p);
    memcpy(p, TD "/", sizeof TD);
    p[2048] = '/';
    p[2049] = '*';
    p[2050] = '\0';
    CHECK(as_intention_pattern_ok(p));
    p[2048] = '\0';
    CHECK(as_intention_pattern_ok(p));
    p[2048] = 'a';
    p[2049] = '/';
    p[2050] = '*';
    p[2051] = '\0';
    CHECK(!as_intention_pattern_ok(p));
    p[2050] = 'a';
    CHECK(!as_intention_pattern_ok(p));
}

static void test_build_errors(void)
{
    struct as_intentions *set = NULL;
    const struct as_intention ok = ALLOW("ok", WEB, DB);
    const struct as_intention bad[] = {
        {NULL, WEB, DB, true},  {"", WEB, DB, true},       {"b", NULL, DB, true},
        {"b", WEB, NULL, true}, {"b", "web", DB, true},    {"b", WEB, TD "/*/x", true},
        {"b", WEB, "", true},   {"b", TD "/a*", DB, true},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* A bad rule anywhere in the list refuses the whole set. */
        struct as_intention two[2] = {ok, bad[i]};
        CHECK_INT(as_intentions_build(two, 2, &set), AS_ERR_INVALID);
        CHECK(set == NULL);
    }
    char longid[200];
    memset(longid, 'i', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    const struct as_intention long_rule = {longid, WEB, DB, true};
    CHECK_INT(as_intentions_build(&long_rule, 1, &set), AS_ERR_INVALID);
    CHECK_INT(as_intentions_build(NULL, 1, &set), AS_ERR_INVALID);
    CHECK_INT(as_intentions_build(&ok, 1, NULL), AS_ERR_INVALID);

    /* An empty set is valid and decides by the default only. */
    CHECK_INT(as_intentions_build(NULL, 0, &set), AS_OK);
    CHECK(set != NULL);
    const char *id = "unset";
    CHECK(as_intentions_decide(set, WEB, DB, true, &id));
    CHECK_STR(id, "");
    CHECK(!as_intentions_decide(set, WEB, DB, false, &id));
    as_intentions_free(set);
    as_intentions_free(NULL);

    /* The set owns copies: the caller's strings may change after build. */
    char src[] = WEB, dst[] = DB, rid[] = "copied";
    const struct as_intention mut = {rid, src, dst, true};
    CHECK_INT(as_intentions_build(&mut, 1, &set), AS_OK);
    memset(src, 'x', sizeof src - 1);
    memset(dst, 'x', sizeof dst - 1);
    memset(rid, 'x', sizeof rid - 1);
    id = NULL;
    CHECK(as_intentions_decide(set, WEB, DB, false, &id));
    CHECK_STR(id, "copied");

    /* NULL identities fail closed even under default allow; a NULL set decides by default. */
    id = "unset";
    CHECK(!as_intentions_decide(set, NULL, DB, true, &id));
    CHECK_STR(id, "");
    CHECK(!as_intentions_decide(set, WEB, NULL, true, &id));
    CHECK(as_intentions_decide(NULL, WEB, DB, true, &id));
    CHECK_STR(id, "");
    CHECK(!as_intentions_decide(NULL, WEB, DB, false, NULL));
    CHECK(as_intentions_decide(set, WEB, DB, false, NULL)); /* id may be NULL */
    as_intentions_free(set);
}

/* ---- concurrency: the shared, immutable sets answered from 4 threads at once ---- */

#define N_THREADS 4
#define ROUNDS 2000

struct worker {
    size_t first; /* each thread starts at a different case so they overlap differently */
    int wrong;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    for (int round = 0; round < ROUNDS; round++) {
        for (size_t k = 0; k < N_CASES; k++) {
            const char *id = NULL;
            if (!case_ok((w->first + k) % N_CASES, &id)) {
                w->wrong++;
            }
        }
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[N_THREADS];
    struct worker w[N_THREADS];
    int started = 0;

    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (struct worker){.first = (size_t)i * 7, .wrong = 0};
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0) {
            break;
        }
        started++;
    }
    CHECK_INT(started, N_THREADS);
    for (int i = 0; i < started; i++) {
        CHECK_INT(pthread_join(th[i], NULL), 0);
        CHECK_INT(w[i].wrong, 0);
    }
}

int main(void)
{
    test_pattern_ok();
    test_build_errors();
    test_table();
    test_threads();
    for (size_t i = 0; i < N_CASES; i++) {
        as_intentions_free(g_sets[i]);
    }
    return check_done();
}
