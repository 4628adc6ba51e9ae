/* Unit tests for storage/: the SQLite backend of store.h, against files in a temporary dir. */
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "common/common.h"
#include "storage/store.h"

static char g_dir[] = "/tmp/as_test_store.XXXXXX";

/* The schema version this build migrates to. */
#define SCHEMA_VERSION 6

/* A fresh database path inside the temporary dir. */
static void db_path(const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", g_dir, name);
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Reads PRAGMA name of the file at path through a separate, raw connection. */
static long long raw_pragma_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    long long v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        v = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static bool raw_pragma_eq(const char *path, const char *sql, const char *want)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    bool eq = false;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        eq = t != NULL && strcmp((const char *)t, want) == 0;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return eq;
}

/* Whether a row of EXPLAIN QUERY PLAN sql (on the file at path) mentions needle. */
static bool raw_plan_has(const char *path, const char *sql, const char *needle)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char q[1024];
    bool has = false;
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, q, -1, &s, NULL) == SQLITE_OK) {
        while (!has && sqlite3_step(s) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(s, 3);
            has = t != NULL && strstr((const char *)t, needle) != NULL;
        }
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return has;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static char g_policies[] = "[\"default\",\"web\"]";
static char g_meta[] = "{\"team\":\"a\"}";
static char g_display[] = "token-web";
static char g_path[] = "auth/token/create";
static char g_spiffe[] = "[\"spiffe://example.org/web\"]";
static char g_mount[] = "token";

/* A token record with borrowed strings (never passed to as_token_rec_free). */
static struct as_token_rec mk_tok(const char *accessor, char *parent, unsigned seed, int64_t expire)
{
    struct as_token_rec t;
    memset(&t, 0, sizeof t);
    snprintf(t.accessor, sizeof t.accessor, "%s", accessor);
    for (size_t i = 0; i < sizeof t.secret_hash; i++) {
        t.secret_hash[i] = (unsigned char)(seed * 31u + i);
    }
    t.secret_hash[0] = (unsigned char)seed;
    t.secret_hash[1] = (unsigned char)(seed >> 8);
    t.secret_hash[2] = (unsigned char)(seed >> 16);
    t.parent = parent;
    t.policies_json = g_policies;
    t.meta_json = g_meta;
    t.display_name = g_display;
    t.path = g_path;
    t.spiffe_ids_json = g_spiffe;
    t.allowed_dns_json = NULL;
    t.mount = g_mount;
    t.creation_time = 1700000000;
    t.expire_time = expire;
    t.creation_ttl = 3600;
    t.explicit_max_ttl = 7200;
    t.period = 0;
    t.num_uses = 0;
    t.renewable = true;
    t.orphan = false;
    return t;
}

static bool has_token(struct as_store *st, const char *accessor)
{
    struct as_token_rec *t = NULL;
    enum as_err r = as_store_token_by_accessor(st, accessor, &t);
    as_token_rec_free(t);
    return r == AS_OK;
}

static void test_open(void)
{
    char path[256], wal[300];
    struct as_store *st = NULL;
    struct stat sb;
    unsigned char *v = NULL;
    size_t len = 0;

    db_path("open.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK(st != NULL);
    CHECK_INT(as_store_setting_put(st, "k", "persist", 7), AS_OK);
    /* The -wal file exists while a connection is open; it must not be wider than the db. */
    snprintf(wal, sizeof wal, "%s-wal", path);
    CHECK_INT(stat(wal, &sb), 0);
    CHECK_INT(sb.st_mode & 0777, 0600);
    as_store_close(st);
    st = NULL;

    CHECK_INT(stat(path, &sb), 0);
    CHECK_INT(sb.st_mode & 0777, 0600);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), SCHEMA_VERSION);
    CHECK(raw_pragma_eq(path, "PRAGMA journal_mode", "wal"));

    /* Reopen: no migration runs again and the data is still there. */
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(as_store_setting_get(st, "k", &v, &len), AS_OK);
    CHECK(len == 7 && v != NULL && memcmp(v, "persist", 7) == 0);
    free(v);
    as_store_close(st);
    st = NULL;
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), SCHEMA_VERSION);

    /* Negative twins. A file that exists with a wide mode is tightened to 0600. */
    db_path("wide.db", path, sizeof path);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fclose(f);
    }
    CHECK_INT(chmod(path, 0644), 0);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    as_store_close(st);
    st = NULL;
    CHECK_INT(stat(path, &sb), 0);
    CHECK_INT(sb.st_mode & 0777, 0600);

    /* A schema newer than this build is refused rather than used. */
    db_path("newer.db", path, sizeof path);
    raw_exec(path, "PRAGMA user_version = 99");
    CHECK_INT(as_store_open(path, &st), AS_ERR_CONFIG);
    CHECK(st == NULL);

    /* A file that is not a database. */
    db_path("garbage.db", path, sizeof path);
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        for (int i = 0; i < 200; i++) {
            fputs("this is not an sqlite database ", f);
        }
        fclose(f);
    }
    CHECK_INT(as_store_open(path, &st), AS_ERR_STORE);
    CHECK(st == NULL);

    /* A directory that does not exist. */
    db_path("nodir/x.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &st), AS_ERR_IO);
    CHECK(st == NULL);
    CHECK_INT(as_store_open(NULL, &st), AS_ERR_INVALID);
    as_store_close(NULL);
}

/* Two stores on one file in one process (each thread then has a connection per store). */
static void test_two_stores(void)
{
    char path[256];
    struct as_store *a = NULL, *b = NULL;
    unsigned char *v = NULL;
    size_t len = 0;

    db_path("two.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &a), AS_OK);
    CHECK_INT(as_store_setting_put(a, "from-a", "a", 1), AS_OK);
    CHECK_INT(as_store_open(path, &b), AS_OK);
    if (a == NULL || b == NULL) {
        as_store_close(a);
        as_store_close(b);
        return;
    }
    CHECK_INT(as_store_setting_get(b, "from-a", &v, &len), AS_OK);
    CHECK(len == 1 && v[0] == 'a');
    free(v);
    v = NULL;

    /* Uncommitted writes of one are invisible to the other; committed ones are visible. */
    CHECK_INT(as_store_begin(a), AS_OK);
    CHECK_INT(as_store_setting_put(a, "pending", "p", 1), AS_OK);
    CHECK_INT(as_store_setting_get(b, "pending", &v, &len), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_commit(a), AS_OK);
    CHECK_INT(as_store_setting_get(b, "pending", &v, &len), AS_OK);
    free(v);
    v = NULL;
    CHECK_INT(as_store_setting_put(b, "from-b", "b", 1), AS_OK);
    CHECK_INT(as_store_setting_get(a, "from-b", &v, &len), AS_OK);
    free(v);
    as_store_close(b);
    as_store_close(a);
}

static void test_settings(struct as_store *st)
{
    unsigned char *v = NULL;
    size_t len = 99;

    CHECK_INT(as_store_setting_get(st, "missing", &v, &len), AS_ERR_NOT_FOUND);
    CHECK(v == NULL && len == 0);

    static const unsigned char bin[] = {0x00, 0x01, 0xff, 0x00, 0x7f};
    CHECK_INT(as_store_setting_put(st, "bin", bin, sizeof bin), AS_OK);
    CHECK_INT(as_store_setting_get(st, "bin", &v, &len), AS_OK);
    CHECK(len == sizeof bin && memcmp(v, bin, sizeof bin) == 0);
    free(v);
    v = NULL;

    /* put replaces */
    CHECK_INT(as_store_setting_put(st, "bin", "xy", 2), AS_OK);
    CHECK_INT(as_store_setting_get(st, "bin", &v, &len), AS_OK);
    CHECK(len == 2 && memcmp(v, "xy", 2) == 0);
    free(v);
    v = NULL;

    /* insert is "exactly once" and leaves the first value alone */
    CHECK_INT(as_store_setting_insert(st, "once", "first", 5), AS_OK);
    CHECK_INT(as_store_setting_insert(st, "once", "second", 6), AS_ERR_EXISTS);
    CHECK_INT(as_store_setting_get(st, "once", &v, &len), AS_OK);
    CHECK(len == 5 && memcmp(v, "first", 5) == 0);
    free(v);
    v = NULL;

    /* an empty value is set, not missing */
    CHECK_INT(as_store_setting_put(st, "empty", NULL, 0), AS_OK);
    CHECK_INT(as_store_setting_get(st, "empty", &v, &len), AS_OK);
    CHECK(v != NULL && len == 0);
    free(v);
    v = NULL;

    CHECK_INT(as_store_setting_put(st, NULL, "x", 1), AS_ERR_INVALID);
    CHECK_INT(as_store_setting_put(st, "k", NULL, 3), AS_ERR_INVALID);
}

static void test_tokens_basic(struct as_store *st)
{
    struct as_token_rec t = mk_tok("acc-basic-1", NULL, 1, 2000000000);
    struct as_token_rec *got = NULL;

    t.num_uses = 3;
    t.period = 60;
    CHECK_INT(as_store_token_insert(st, &t), AS_OK);

    CHECK_INT(as_store_token_by_hash(st, t.secret_hash, &got), AS_OK);
    CHECK(got != NULL);
    if (got != NULL) {
        CHECK_STR(got->accessor, "acc-basic-1");
        CHECK(memcmp(got->secret_hash, t.secret_hash, 32) == 0);
        CHECK(got->parent == NULL);
        CHECK_STR(got->policies_json, g_policies);
        CHECK_STR(got->meta_json, g_meta);
        CHECK_STR(got->display_name, g_display);
        CHECK_STR(got->path, g_path);
        CHECK_STR(got->spiffe_ids_json, g_spiffe);
        CHECK(got->allowed_dns_json == NULL);
        CHECK_STR(got->mount, g_mount);
        CHECK_INT(got->creation_time, 1700000000);
        CHECK_INT(got->expire_time, 2000000000);
        CHECK_INT(got->creation_ttl, 3600);
        CHECK_INT(got->explicit_max_ttl, 7200);
        CHECK_INT(got->period, 60);
        CHECK_INT(got->num_uses, 3);
        CHECK(got->renewable);
        CHECK(!got->orphan);
    }
    as_token_rec_free(got);
    got = NULL;

    CHECK_INT(as_store_token_by_accessor(st, "acc-basic-1", &got), AS_OK);
    CHECK(got != NULL && memcmp(got->secret_hash, t.secret_hash, 32) == 0);
    as_token_rec_free(got);
    got = NULL;

    /* duplicate accessor, duplicate hash */
    struct as_token_rec dup_acc = mk_tok("acc-basic-1", NULL, 2, 0);
    CHECK_INT(as_store_token_insert(st, &dup_acc), AS_ERR_EXISTS);
    struct as_token_rec dup_hash = mk_tok("acc-basic-2", NULL, 1, 0);
    CHECK_INT(as_store_token_insert(st, &dup_hash), AS_ERR_EXISTS);
    CHECK(!has_token(st, "acc-basic-2"));

    /* unknown */
    unsigned char nohash[32] = {0xee};
    CHECK_INT(as_store_token_by_hash(st, nohash, &got), AS_ERR_NOT_FOUND);
    CHECK(got == NULL);
    CHECK_INT(as_store_token_by_accessor(st, "nope", &got), AS_ERR_NOT_FOUND);
    CHECK(got == NULL);

    /* invalid records: empty accessor, negative use count */
    struct as_token_rec bad = mk_tok("", NULL, 3, 0);
    CHECK_INT(as_store_token_insert(st, &bad), AS_ERR_INVALID);
    bad = mk_tok("acc-basic-3", NULL, 3, 0);
    bad.num_uses = -1;
    CHECK_INT(as_store_token_insert(st, &bad), AS_ERR_INVALID);
    as_token_rec_free(NULL);

    /* set_expiry: with a ttl, and with ttl < 0 keeping creation_ttl */
    CHECK_INT(as_store_token_set_expiry(st, "acc-basic-1", 2100000000, 900), AS_OK);
    CHECK_INT(as_store_token_by_accessor(st, "acc-basic-1", &got), AS_OK);
    CHECK(got != NULL && got->expire_time == 2100000000 && got->creation_ttl == 900);
    as_token_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_token_set_expiry(st, "acc-basic-1", 2200000000, -1), AS_OK);
    CHECK_INT(as_store_token_by_accessor(st, "acc-basic-1", &got), AS_OK);
    CHECK(got != NULL && got->expire_time == 2200000000 && got->creation_ttl == 900);
    as_token_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_token_set_expiry(st, "nope", 1, 1), AS_ERR_NOT_FOUND);

    size_t n = 0;
    CHECK_INT(as_store_token_delete(st, "acc-basic-1", true, NULL, &n), AS_OK);
    CHECK_INT(n, 1);
}

static void test_token_use(struct as_store *st)
{
    int64_t left = -5;
    struct as_token_rec t = mk_tok("use-limited", NULL, 10, 0);
    t.num_uses = 2;
    CHECK_INT(as_store_token_insert(st, &t), AS_OK);

    CHECK_INT(as_store_token_use(st, "use-limited", &left), AS_OK);
    CHECK_INT(left, 1);
    CHECK_INT(as_store_token_use(st, "use-limited", &left), AS_OK);
    CHECK_INT(left, 0); /* the last use: the caller revokes now */
    /* Until the revocation lands, nobody else gets a use, and it never reads as unlimited. */
    CHECK_INT(as_store_token_use(st, "use-limited", &left), AS_ERR_NOT_FOUND);
    struct as_token_rec *got = NULL;
    CHECK_INT(as_store_token_by_accessor(st, "use-limited", &got), AS_OK);
    CHECK(got != NULL && got->num_uses < 0);
    as_token_rec_free(got);

    /* unlimited: nothing changes, remaining 0, any number of times */
    struct as_token_rec u = mk_tok("use-unlimited", NULL, 11, 0);
    CHECK_INT(as_store_token_insert(st, &u), AS_OK);
    for (int i = 0; i < 3; i++) {
        left = -5;
        CHECK_INT(as_store_token_use(st, "use-unlimited", &left), AS_OK);
        CHECK_INT(left, 0);
    }
    CHECK_INT(as_store_token_use(st, "use-missing", &left), AS_ERR_NOT_FOUND);

    CHECK_INT(as_store_token_delete(st, "use-limited", false, NULL, NULL), AS_OK);
    CHECK_INT(as_store_token_delete(st, "use-unlimited", false, NULL, NULL), AS_OK);
}

static void test_token_tree(struct as_store *st)
{
    /* root -> (c1 -> (g1, g2), c2 -> g3); plus unrelated u1 and u2 (child of u1). */
    static char root[] = "tree-root", c1[] = "tree-c1", c2[] = "tree-c2", u1[] = "unrel-1";
    struct as_token_rec toks[] = {
        mk_tok(root, NULL, 20, 0),    mk_tok(c1, root, 21, 0),      mk_tok(c2, root, 22, 0),
        mk_tok("tree-g1", c1, 23, 0), mk_tok("tree-g2", c1, 24, 0), mk_tok("tree-g3", c2, 25, 0),
        mk_tok(u1, NULL, 26, 0),      mk_tok("unrel-2", u1, 27, 0),
    };
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        CHECK_INT(as_store_token_insert(st, &toks[i]), AS_OK);
    }

    char **del = NULL;
    size_t n = 0;
    CHECK_INT(as_store_token_delete(st, "tree-c1", true, &del, &n), AS_OK);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(del[0], "tree-c1");
        CHECK_STR(del[1], "tree-g1");
        CHECK_STR(del[2], "tree-g2");
    }
    as_store_strv_free(del, n);
    del = NULL;

    CHECK_INT(as_store_token_delete(st, "tree-root", true, &del, &n), AS_OK);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(del[0], "tree-c2");
        CHECK_STR(del[1], "tree-g3");
        CHECK_STR(del[2], "tree-root");
    }
    as_store_strv_free(del, n);
    del = NULL;
    CHECK(!has_token(st, "tree-g3"));
    CHECK(has_token(st, "unrel-1"));
    CHECK(has_token(st, "unrel-2"));

    /* negative twin: an absent token */
    n = 7;
    CHECK_INT(as_store_token_delete(st, "tree-root", true, &del, &n), AS_ERR_NOT_FOUND);
    CHECK(del == NULL && n == 0);
    CHECK_INT(as_store_token_delete(st, "tree-root", false, &del, &n), AS_ERR_NOT_FOUND);

    /* a whole 3-level tree in one call */
    struct as_token_rec again[] = {
        mk_tok(root, NULL, 30, 0),    mk_tok(c1, root, 31, 0),      mk_tok(c2, root, 32, 0),
        mk_tok("tree-g1", c1, 33, 0), mk_tok("tree-g2", c2, 34, 0),
    };
    for (size_t i = 0; i < sizeof again / sizeof again[0]; i++) {
        CHECK_INT(as_store_token_insert(st, &again[i]), AS_OK);
    }
    CHECK_INT(as_store_token_delete(st, "tree-root", true, &del, &n), AS_OK);
    CHECK_INT(n, 5);
    as_store_strv_free(del, n);
    del = NULL;
    CHECK(has_token(st, "unrel-2"));

    /* non-tree delete orphans the children */
    static char p[] = "orph-parent";
    struct as_token_rec o[] = {
        mk_tok(p, NULL, 40, 0),
        mk_tok("orph-child1", p, 41, 0),
        mk_tok("orph-child2", p, 42, 0),
    };
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++) {
        CHECK_INT(as_store_token_insert(st, &o[i]), AS_OK);
    }
    CHECK_INT(as_store_token_delete(st, "orph-parent", false, &del, &n), AS_OK);
    CHECK_INT(n, 1);
    if (n == 1) {
        CHECK_STR(del[0], "orph-parent");
    }
    as_store_strv_free(del, n);
    del = NULL;
    struct as_token_rec *got = NULL;
    CHECK_INT(as_store_token_by_accessor(st, "orph-child1", &got), AS_OK);
    CHECK(got != NULL && got->parent == NULL && got->orphan);
    as_token_rec_free(got);
    CHECK(has_token(st, "orph-child2"));

    const char *rest[] = {"unrel-1", "orph-child1", "orph-child2"};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        CHECK_INT(as_store_token_delete(st, rest[i], true, NULL, NULL), AS_OK);
    }
}

static void test_token_list_purge(struct as_store *st)
{
    char **v = NULL;
    size_t n = 5;

    /* negative twin first: an empty table lists nothing */
    CHECK_INT(as_store_token_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 0);
    as_store_strv_free(v, n);
    v = NULL;

    const int64_t now = 1800000000;
    static char old[] = "p-old";
    struct as_token_rec toks[] = {
        mk_tok("p-zeta", NULL, 50, 0),            /* never expires */
        mk_tok(old, NULL, 51, now - 10),          /* expired */
        mk_tok("p-boundary", NULL, 52, now),      /* expires exactly now: purged */
        mk_tok("p-future", NULL, 53, now + 10),   /* alive */
        mk_tok("p-old-child", old, 54, now + 99), /* alive itself, but its parent expired */
        mk_tok("p-alpha", NULL, 55, now + 1),
    };
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        CHECK_INT(as_store_token_insert(st, &toks[i]), AS_OK);
    }
    CHECK_INT(as_store_token_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 6);
    for (size_t i = 1; i < n; i++) {
        CHECK(strcmp(v[i - 1], v[i]) < 0);
    }
    if (n == 6) {
        CHECK_STR(v[0], "p-alpha");
        CHECK_STR(v[5], "p-zeta");
    }
    as_store_strv_free(v, n);
    v = NULL;

    size_t purged = 99;
    CHECK_INT(as_store_token_purge_expired(st, now - 100, &purged), AS_OK);
    CHECK_INT(purged, 0);
    CHECK_INT(as_store_token_purge_expired(st, now, &purged), AS_OK);
    CHECK_INT(purged, 3);
    CHECK(!has_token(st, "p-old") && !has_token(st, "p-old-child") && !has_token(st, "p-boundary"));
    CHECK(has_token(st, "p-zeta") && has_token(st, "p-future") && has_token(st, "p-alpha"));
    CHECK_INT(as_store_token_purge_expired(st, now, &purged), AS_OK);
    CHECK_INT(purged, 0);

    const char *rest[] = {"p-zeta", "p-future", "p-alpha"};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        CHECK_INT(as_store_token_delete(st, rest[i], false, NULL, NULL), AS_OK);
    }
}

/*
 * The epoch the caches trust (as_store_epoch): moved by every write that can change a cached
 * answer, not by adding a token or writing a setting; and the group commit's bookkeeping.
 */
/* The purge takes at most AS_STORE_PURGE_BATCH expired tokens per call, and the rest next time. */
static void test_purge_batches(struct as_store *st)
{
    const int extra = 500;
    char acc[32];
    size_t n = 0;
    CHECK_INT(as_store_begin(st), AS_OK);
    for (int i = 0; i < AS_STORE_PURGE_BATCH + extra; i++) {
        snprintf(acc, sizeof acc, "acc-batch-%d", i);
        struct as_token_rec t = mk_tok(acc, NULL, 100000u + (unsigned)i, 1000);
        CHECK_INT(as_store_token_insert(st, &t), AS_OK);
    }
    CHECK_INT(as_store_commit(st), AS_OK);
    CHECK_INT(as_store_token_purge_expired(st, 2000, &n), AS_OK);
    CHECK_INT(n, AS_STORE_PURGE_BATCH);
    CHECK_INT(as_store_token_purge_expired(st, 2000, &n), AS_OK);
    CHECK_INT(n, extra);
    CHECK_INT(as_store_token_purge_expired(st, 2000, &n), AS_OK);
    CHECK_INT(n, 0);
}

static void test_epoch_and_sync(struct as_store *st)
{
    uint64_t e0 = as_store_epoch(st);
    struct as_token_rec t = mk_tok("acc-epoch-1", NULL, 41, 2000000000);
    CHECK_INT(as_store_token_insert(st, &t), AS_OK);
    CHECK(as_store_epoch(st) == e0); /* nothing cached can have seen a new token */
    CHECK(as_store_my_commit(st) > 0);
    CHECK_INT(as_store_sync_mine(st), AS_OK);
    CHECK_INT(as_store_setting_put(st, "epoch-test", "x", 1), AS_OK);
    CHECK(as_store_epoch(st) == e0);
    CHECK_INT(as_store_policy_put(st, "epoch-policy", "{}"), AS_OK);
    uint64_t e1 = as_store_epoch(st);
    CHECK(e1 > e0); /* a policy changed: ACLs built before are stale */
    uint64_t before = as_store_my_commit(st);
    CHECK_INT(as_store_token_delete(st, "acc-epoch-1", false, NULL, NULL), AS_OK);
    CHECK(as_store_epoch(st) > e1); /* a revocation moves it before the call returns */
    CHECK(as_store_my_commit(st) > before);
    /* A failed write commits nothing and moves nothing. */
    uint64_t e2 = as_store_epoch(st);
    CHECK_INT(as_store_token_delete(st, "acc-epoch-missing", false, NULL, NULL), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_sync(st), AS_OK);
    CHECK(as_store_epoch(st) >= e2);
    CHECK_INT(as_store_policy_delete(st, "epoch-policy"), AS_OK);
}

static void test_policies(struct as_store *st)
{
    char *text = NULL;
    char **names = NULL;
    size_t n = 0;

    CHECK_INT(as_store_policy_get(st, "web", &text), AS_ERR_NOT_FOUND);
    CHECK(text == NULL);
    CHECK_INT(as_store_policy_put(st, "web", "path \"secret/*\" { capabilities = [\"read\"] }"),
              AS_OK);
    CHECK_INT(as_store_policy_put(st, "admin", "path \"*\" { capabilities = [\"sudo\"] }"), AS_OK);
    CHECK_INT(as_store_policy_get(st, "web", &text), AS_OK);
    CHECK_STR(text, "path \"secret/*\" { capabilities = [\"read\"] }");
    free(text);
    text = NULL;

    CHECK_INT(as_store_policy_put(st, "web", "replaced"), AS_OK);
    CHECK_INT(as_store_policy_get(st, "web", &text), AS_OK);
    CHECK_STR(text, "replaced");
    free(text);
    text = NULL;

    CHECK_INT(as_store_policy_list(st, &names, &n), AS_OK);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(names[0], "admin");
        CHECK_STR(names[1], "web");
    }
    as_store_strv_free(names, n);
    names = NULL;

    CHECK_INT(as_store_policy_delete(st, "web"), AS_OK);
    CHECK_INT(as_store_policy_delete(st, "web"), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_policy_get(st, "web", &text), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_policy_put(st, "x", NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_policy_list(st, &names, &n), AS_OK);
    CHECK_INT(n, 1);
    as_store_strv_free(names, n);
    CHECK_INT(as_store_policy_delete(st, "admin"), AS_OK);
}

static void test_transactions(struct as_store *st)
{
    /* rollback discards everything written since begin */
    CHECK_INT(as_store_begin(st), AS_OK);
    CHECK_INT(as_store_begin(st), AS_ERR_INTERNAL); /* nested */
    struct as_token_rec t = mk_tok("tx-1", NULL, 60, 0);
    CHECK_INT(as_store_token_insert(st, &t), AS_OK);
    CHECK_INT(as_store_policy_put(st, "tx-pol", "x"), AS_OK);
    CHECK(has_token(st, "tx-1")); /* visible inside the transaction */
    as_store_rollback(st);
    CHECK(!has_token(st, "tx-1"));
    char *text = NULL;
    CHECK_INT(as_store_policy_get(st, "tx-pol", &text), AS_ERR_NOT_FOUND);

    /* commit keeps them; a uniqueness failure inside does not spoil the transaction */
    CHECK_INT(as_store_begin(st), AS_OK);
    CHECK_INT(as_store_token_insert(st, &t), AS_OK);
    CHECK_INT(as_store_token_insert(st, &t), AS_ERR_EXISTS);
    CHECK_INT(as_store_commit(st), AS_OK);
    CHECK(has_token(st, "tx-1"));

    /* commit or a second rollback without a transaction */
    CHECK_INT(as_store_commit(st), AS_ERR_INTERNAL);
    as_store_rollback(st);

    /* a tree delete inside the caller's transaction is undone by its rollback */
    static char root[] = "tx-1";
    struct as_token_rec child = mk_tok("tx-2", root, 61, 0);
    CHECK_INT(as_store_token_insert(st, &child), AS_OK);
    CHECK_INT(as_store_begin(st), AS_OK);
    char **del = NULL;
    size_t n = 0;
    CHECK_INT(as_store_token_delete(st, "tx-1", true, &del, &n), AS_OK);
    CHECK_INT(n, 2);
    as_store_strv_free(del, n);
    del = NULL;
    CHECK_INT(as_store_token_delete(st, "tx-1", true, &del, &n), AS_ERR_NOT_FOUND);
    CHECK(!has_token(st, "tx-2"));
    as_store_rollback(st);
    CHECK(has_token(st, "tx-1") && has_token(st, "tx-2"));

    /* and kept by its commit */
    CHECK_INT(as_store_begin(st), AS_OK);
    CHECK_INT(as_store_token_delete(st, "tx-1", true, NULL, &n), AS_OK);
    CHECK_INT(as_store_commit(st), AS_OK);
    CHECK(!has_token(st, "tx-1") && !has_token(st, "tx-2"));
}

/* ---- concurrency ---- */

#define THREAD_AUTOCOMMIT 300
#define THREAD_TX 10
#define THREAD_TX_SIZE 10

struct worker {
    struct as_store *st;
    int id;
    int errors;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned seed = 100000u * (unsigned)(w->id + 1);
    char acc[AS_ACCESSOR_LEN + 1];

    for (int i = 0; i < THREAD_AUTOCOMMIT; i++) {
        snprintf(acc, sizeof acc, "w%d-a%04d", w->id, i);
        struct as_token_rec t = mk_tok(acc, NULL, seed++, 0);
        if (as_store_token_insert(w->st, &t) != AS_OK) {
            w->errors++;
        }
    }
    /* Explicit transactions contend for the write lock with the other thread's inserts. */
    for (int b = 0; b < THREAD_TX; b++) {
        if (as_store_begin(w->st) != AS_OK) {
            w->errors++;
            continue;
        }
        for (int i = 0; i < THREAD_TX_SIZE; i++) {
            snprintf(acc, sizeof acc, "w%d-t%02d-%02d", w->id, b, i);
            struct as_token_rec t = mk_tok(acc, NULL, seed++, 0);
            if (as_store_token_insert(w->st, &t) != AS_OK) {
                w->errors++;
            }
        }
        if (as_store_commit(w->st) != AS_OK) {
            w->errors++;
        }
    }
    return NULL;
}

static void test_threads(void)
{
    char path[256];
    struct as_store *st = NULL;
    pthread_t th[2];
    struct worker w[2];

    db_path("threads.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    if (st == NULL) {
        return;
    }
    for (int i = 0; i < 2; i++) {
        w[i] = (struct worker){.st = st, .id = i, .errors = 0};
        CHECK_INT(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        CHECK_INT(pthread_join(th[i], NULL), 0);
        CHECK_INT(w[i].errors, 0);
    }
    char **v = NULL;
    size_t n = 0;
    CHECK_INT(as_store_token_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 2 * (THREAD_AUTOCOMMIT + THREAD_TX * THREAD_TX_SIZE));
    as_store_strv_free(v, n);
    as_store_close(st);
}

/*
 * as_store_close while a thread that used the store is still alive: close must close that
 * thread's connection, and the thread's exit must not close it a second time.
 */
struct closer {
    struct as_store *st;
    enum as_err (*work)(struct as_store *st); /* what the thread does before parking */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stage; /* 1: worker used the store; 2: main closed it */
    enum as_err r;
};

static enum as_err put_setting(struct as_store *st)
{
    return as_store_setting_put(st, "from-thread", "1", 1);
}

/* Does c->work, then parks until main has closed the store (stage 2). */
static void *closer_main(void *arg)
{
    struct closer *c = arg;
    c->r = c->work(c->st);
    pthread_mutex_lock(&c->mu);
    c->stage = 1;
    pthread_cond_broadcast(&c->cv);
    while (c->stage != 2) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Runs c->work on a thread that then parks (stage 1), closes the store under it, then lets it
 * finish (stage 2) and joins it: the close must not break what the thread holds. */
static void close_under_thread(struct closer *c)
{
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, closer_main, c), 0);
    pthread_mutex_lock(&c->mu);
    while (c->stage != 1) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    as_store_close(c->st);
    c->stage = 2;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    CHECK_INT(pthread_join(th, NULL), 0);
    CHECK_INT(c->r, AS_OK);
}

static void test_close_with_live_thread(void)
{
    char path[256];
    struct closer c = {
        .work = put_setting, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

    db_path("close.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &c.st), AS_OK);
    if (c.st == NULL) {
        return;
    }
    close_under_thread(&c);

    /* A new store (which may reuse the key) must not see the old thread-local connection. */
    struct as_store *st = NULL;
    unsigned char *v = NULL;
    size_t len = 0;
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(as_store_setting_get(st, "from-thread", &v, &len), AS_OK);
    CHECK(len == 1 && v != NULL && v[0] == '1');
    free(v);
    as_store_close(st);
}

/*
 * Runs work(st) in a child process on a store opened at path, then kills the child with SIGKILL
 * as soon as work returns 0 (its nonzero result is the child's exit status instead), and checks
 * that it died by that signal: whatever work was told is durable must survive it.
 */
static void killed_after(const char *path, int (*work)(struct as_store *st))
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct as_store *st = NULL;
        if (as_store_open(path, &st) != AS_OK) {
            _exit(2);
        }
        int rc = work(st);
        if (rc != 0) {
            _exit(rc);
        }
        raise(SIGKILL);
        _exit(9);
    }
    int status = 0;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* A write that returned AS_OK survives the process being killed right after; an insert outside
 * a transaction once a sync covered it (what the server does before it answers). */
static int kill9_work(struct as_store *st)
{
    if (as_store_setting_put(st, "durable", "yes", 3) != AS_OK) {
        return 3;
    }
    struct as_token_rec t = mk_tok("kill-tok", NULL, 70, 0);
    if (as_store_token_insert(st, &t) != AS_OK || as_store_sync_mine(st) != AS_OK) {
        return 4;
    }
    return 0;
}

static void test_kill9(void)
{
    char path[256];
    db_path("kill.db", path, sizeof path);
    killed_after(path, kill9_work);

    struct as_store *st = NULL;
    unsigned char *v = NULL;
    size_t len = 0;
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(as_store_setting_get(st, "durable", &v, &len), AS_OK);
    CHECK(len == 3 && v != NULL && memcmp(v, "yes", 3) == 0);
    free(v);
    CHECK(has_token(st, "kill-tok"));
    CHECK_INT(as_store_setting_get(st, "never-written", &v, &len), AS_ERR_NOT_FOUND);
    as_store_close(st);
}

/*
 * kill -9 after a commit that overwrote some of its own WAL frames: a transaction larger than
 * the connection's page cache spills pages to the WAL and then changes them again, and SQLite
 * rewrites the frame headers up to the commit frame after writing it. storage/walvfs.c gathers
 * WAL writes; if any of those headers were still gathered when the process died, recovery
 * would find the checksum chain broken and drop the whole transaction. The file is read back
 * by a plain connection (the default VFS) before the store opens it.
 */
#define KILL_BIG 12000

static int kill9_big_work(struct as_store *st)
{
    char acc[32];
    if (as_store_begin(st) != AS_OK) {
        return 3;
    }
    for (int i = 0; i < KILL_BIG; i++) {
        snprintf(acc, sizeof acc, "big-%05d", i);
        struct as_token_rec t = mk_tok(acc, NULL, 200000u + (unsigned)i, 1000);
        if (as_store_token_insert(st, &t) != AS_OK) {
            return 4;
        }
    }
    for (int i = 0; i < KILL_BIG; i++) {
        snprintf(acc, sizeof acc, "big-%05d", i);
        if (as_store_token_set_expiry(st, acc, 5000 + i, -1) != AS_OK) {
            return 5;
        }
    }
    /* Killed right after: no later write to the WAL may be what brings its bytes out. */
    if (as_store_commit(st) != AS_OK || as_store_sync(st) != AS_OK) {
        return 6;
    }
    return 0;
}

static void test_kill9_big_tx(void)
{
    char path[256];
    db_path("kill-big.db", path, sizeof path);
    killed_after(path, kill9_big_work);

    CHECK(raw_pragma_eq(path, "PRAGMA integrity_check", "ok"));
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM tokens WHERE accessor LIKE 'big-%'"),
              KILL_BIG);
    CHECK_INT(raw_pragma_int(path, "SELECT sum(expire_time) FROM tokens WHERE accessor LIKE "
                                   "'big-%'"),
              5000LL * KILL_BIG + (long long)KILL_BIG * (KILL_BIG - 1) / 2);
    struct as_store *st = NULL;
    CHECK_INT(as_store_open(path, &st), AS_OK);
    if (st != NULL) {
        CHECK(has_token(st, "big-02999"));
    }
    as_store_close(st);
}

/* The size of the file at path, -1 when it cannot be read. */
static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/*
 * Checkpoints run on the store's own thread, not in commits: the database file grows while the
 * store stays open, and the WAL does not grow without bound though a transaction follows another
 * (the checkpoint thread starts it over past 8000 frames, about 33 MB; without that step it would
 * hold every frame written here, about three times as many), also when nothing syncs (a bulk
 * load). Closing the store empties the WAL, so the next open has nothing to read back.
 */
static void test_checkpoints(void)
{
    char path[256];
    char wal[300];
    char acc[32];
    struct as_store *st = NULL;
    const int txs = 90;
    const int per_tx = 400;

    db_path("ckpt.db", path, sizeof path);
    snprintf(wal, sizeof wal, "%s-wal", path);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    if (st == NULL) {
        return;
    }
    long long db0 = file_size(path);
    long long wal_max = 0;
    for (int t = 0; t < txs; t++) {
        CHECK_INT(as_store_begin(st), AS_OK);
        for (int i = 0; i < per_tx; i++) {
            snprintf(acc, sizeof acc, "ck-%03d-%03d", t, i);
            struct as_token_rec r = mk_tok(acc, NULL, 400000u + (unsigned)(t * per_tx + i), 0);
            CHECK_INT(as_store_token_insert(st, &r), AS_OK);
        }
        CHECK_INT(as_store_commit(st), AS_OK);
        long long w = file_size(wal);
        if (w > wal_max) {
            wal_max = w;
        }
        if (t == 15) {
            /* Some 5000 frames in: short of the restart, only the thread checkpoints. */
            CHECK(w < 30LL * 1024 * 1024);
            long long d = file_size(path);
            for (int i = 0; i < 100 && d < db0 + 1024 * 1024; i++) {
                usleep(50 * 1000);
                d = file_size(path);
            }
            CHECK(d >= db0 + 1024 * 1024);
        }
    }
    /* The checkpoint thread works on its own: give it a moment to catch up. */
    long long db1 = file_size(path);
    for (int i = 0; i < 100 && db1 < db0 + 4 * 1024 * 1024; i++) {
        usleep(50 * 1000);
        db1 = file_size(path);
    }
    CHECK(db1 >= db0 + 4 * 1024 * 1024);
    CHECK(wal_max > 0 && wal_max < 48LL * 1024 * 1024);
    CHECK(has_token(st, "ck-089-399"));
    as_store_close(st);
    CHECK_INT(file_size(wal), 0);
    CHECK(raw_pragma_eq(path, "PRAGMA integrity_check", "ok"));
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM tokens WHERE accessor LIKE 'ck-%'"),
              txs * per_tx);
}

/* ---- schema version 2: issued SVIDs and CA generations ---- */

/* The version-1 schema exactly as it shipped, to build a database the previous release left. */
#define V1_DDL                                                \
    "CREATE TABLE settings ("                                 \
    "  key TEXT PRIMARY KEY,"                                 \
    "  value BLOB"                                            \
    ");"                                                      \
    "CREATE TABLE tokens ("                                   \
    "  accessor TEXT PRIMARY KEY,"                            \
    "  secret_hash BLOB UNIQUE NOT NULL,"                     \
    "  parent TEXT,"                                          \
    "  policies TEXT,"                                        \
    "  meta TEXT,"                                            \
    "  display_name TEXT,"                                    \
    "  path TEXT,"                                            \
    "  spiffe_ids TEXT,"                                      \
    "  allowed_dns TEXT,"                                     \
    "  mount TEXT,"                                           \
    "  creation_time INTEGER,"                                \
    "  expire_time INTEGER,"                                  \
    "  creation_ttl INTEGER,"                                 \
    "  explicit_max_ttl INTEGER,"                             \
    "  period INTEGER,"                                       \
    "  num_uses INTEGER,"                                     \
    "  renewable INTEGER,"                                    \
    "  orphan INTEGER"                                        \
    ");"                                                      \
    "CREATE INDEX tokens_parent ON tokens(parent);"           \
    "CREATE INDEX tokens_expire_time ON tokens(expire_time);" \
    "CREATE TABLE policies ("                                 \
    "  name TEXT PRIMARY KEY,"                                \
    "  text TEXT NOT NULL"                                    \
    ");"

#define V1_ROWS                                                                             \
    "INSERT INTO tokens (accessor, secret_hash, policies, mount, creation_time, "           \
    "  expire_time, creation_ttl, explicit_max_ttl, period, num_uses, renewable, orphan) "  \
    "VALUES ('v1-tok', zeroblob(32), '[\"default\"]', 'token', 1700000000, 0, 0, 0, 0, 0, " \
    "  1, 0);"                                                                              \
    "INSERT INTO settings (key, value) VALUES ('v1-key', X'0102');"                         \
    "PRAGMA user_version = 1;"

static char g_dns[] = "[\"web.example.org\",\"web\"]";
static char g_role[] = "web-role";
static char g_subject[] = "system:serviceaccount:prod:web";
static unsigned char g_der[] = {0x30, 0x82, 0x00, 0x05, 0x00, 0xff, 0x01, 0x00, 0x7f};

/* A store on a new file of its own, so list and query results are not shared between tests. */
static struct as_store *open_fresh(const char *name)
{
    char path[256];
    struct as_store *st = NULL;

    db_path(name, path, sizeof path);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    return st;
}

/* An SVID record with borrowed strings (never passed to as_cert_rec_free); x509 gets g_der. */
static struct as_cert_rec mk_cert(const char *serial, const char *kind, char *spiffe,
                                  char *accessor, int64_t ca_gen, int64_t nb, int64_t na)
{
    struct as_cert_rec c;
    memset(&c, 0, sizeof c);
    snprintf(c.serial, sizeof c.serial, "%s", serial);
    snprintf(c.kind, sizeof c.kind, "%s", kind);
    c.spiffe_id = spiffe;
    c.dns_json = g_dns;
    c.token_accessor = accessor;
    c.mount = g_mount;
    c.role = g_role;
    c.subject = g_subject;
    c.ca_gen = ca_gen;
    c.not_before = nb;
    c.issued_at = nb;
    c.not_after = na;
    if (strcmp(kind, "x509") == 0) {
        c.der = g_der;
        c.der_len = sizeof g_der;
    }
    return c;
}

/* revoked_at of a record, or -1 if it cannot be read. */
static int64_t cert_revoked_at(struct as_store *st, const char *serial)
{
    struct as_cert_rec *c = NULL;
    int64_t v = -1;
    if (as_store_cert_get(st, serial, &c) == AS_OK && c != NULL) {
        v = c->revoked_at;
    }
    as_cert_rec_free(c);
    return v;
}

static int64_t cert_seq(struct as_store *st, const char *serial)
{
    struct as_cert_rec *c = NULL;
    int64_t v = -1;
    if (as_store_cert_get(st, serial, &c) == AS_OK && c != NULL) {
        v = c->seq;
    }
    as_cert_rec_free(c);
    return v;
}

/* Joins v[0..n) with commas into out (an empty list gives ""). */
static void join_strv(char **v, size_t n, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < outlen; i++) {
        int w = snprintf(out + used, outlen - used, "%s%s", i > 0 ? "," : "", v[i]);
        if (w < 0) {
            break;
        }
        used += (size_t)w;
    }
}

static void test_migrate_v1(void)
{
    char path[256];
    struct as_store *st = NULL;
    unsigned char *v = NULL;
    size_t len = 0;

    db_path("v1.db", path, sizeof path);
    raw_exec(path, V1_DDL V1_ROWS);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), 1);

    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), SCHEMA_VERSION);
    if (st != NULL) {
        /* Version-1 data survives the upgrade in place. */
        CHECK(has_token(st, "v1-tok"));
        CHECK_INT(as_store_setting_get(st, "v1-key", &v, &len), AS_OK);
        CHECK(len == 2 && v != NULL && v[0] == 1 && v[1] == 2);
        free(v);
        v = NULL;
        /* And the version-2 tables are there. */
        struct as_cert_rec c = mk_cert("v1:00", "x509", "spiffe://td/v1", "v1-tok", 1, 1, 2);
        CHECK_INT(as_store_cert_insert(st, &c), AS_OK);
        struct as_ca_gen_rec g = {.base = "ca", .state = "active"};
        CHECK_INT(as_store_ca_gen_insert(st, &g), AS_OK);
        /* The old token's SVIDs are revoked with it, like any other. */
        CHECK_INT(as_store_token_delete(st, "v1-tok", false, NULL, NULL), AS_OK);
        CHECK(cert_revoked_at(st, "v1:00") > 0);
    }
    as_store_close(st);
    st = NULL;

    /* Reopening a migrated file runs no migration again and keeps the records. */
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), SCHEMA_VERSION);
    if (st != NULL) {
        CHECK(cert_revoked_at(st, "v1:00") > 0);
    }
    as_store_close(st);
    st = NULL;

    /*
     * Negative twin: a version-1 file on which migration 2 fails (a table of that name is in
     * the way). Open fails, and the migration is all or nothing: still version 1, no ca_gens,
     * the token intact.
     */
    db_path("v1-bad.db", path, sizeof path);
    raw_exec(path, V1_DDL "CREATE TABLE certs (x INTEGER);" V1_ROWS);
    CHECK_INT(as_store_open(path, &st), AS_ERR_STORE);
    CHECK(st == NULL);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), 1);
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'ca_gens'"), 0);
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM tokens WHERE accessor = 'v1-tok'"), 1);
}

static void test_cert_basic(void)
{
    struct as_store *st = open_fresh("certs.db");
    struct as_cert_rec *got = NULL;
    if (st == NULL) {
        return;
    }

    struct as_cert_rec c = mk_cert("0a:01", "x509", "spiffe://td/web", "acc-1", 1, 1000, 2000);
    c.seq = -7;
    CHECK_INT(as_store_cert_insert(st, &c), AS_OK);
    CHECK(c.seq > 0);
    CHECK_INT(as_store_cert_get(st, "0a:01", &got), AS_OK);
    CHECK(got != NULL);
    if (got != NULL) {
        CHECK_STR(got->serial, "0a:01");
        CHECK_STR(got->kind, "x509");
        CHECK_STR(got->spiffe_id, "spiffe://td/web");
        CHECK_STR(got->dns_json, g_dns);
        CHECK_STR(got->token_accessor, "acc-1");
        CHECK_STR(got->mount, g_mount);
        CHECK_STR(got->role, g_role);
        CHECK_STR(got->subject, g_subject);
        CHECK_INT(got->ca_gen, 1);
        CHECK_INT(got->not_before, 1000);
        CHECK_INT(got->not_after, 2000);
        CHECK_INT(got->revoked_at, 0);
        CHECK_INT(got->seq, c.seq);
        /* The DER round-trips byte for byte, embedded zeros included. */
        CHECK(got->der_len == sizeof g_der && got->der != NULL &&
              memcmp(got->der, g_der, sizeof g_der) == 0);
    }
    as_cert_rec_free(got);
    got = NULL;

    /* A JWT-SVID: no DER, optional strings absent; seq keeps increasing. */
    struct as_cert_rec j = mk_cert("jti-AbC_1", "jwt", "spiffe://td/web", NULL, 1, 1100, 1400);
    j.dns_json = NULL;
    j.role = NULL;
    j.subject = NULL;
    CHECK_INT(as_store_cert_insert(st, &j), AS_OK);
    CHECK(j.seq > c.seq);
    CHECK_INT(as_store_cert_get(st, "jti-AbC_1", &got), AS_OK);
    if (got != NULL) {
        CHECK_STR(got->kind, "jwt");
        CHECK(got->der == NULL && got->der_len == 0);
        CHECK(got->dns_json == NULL && got->token_accessor == NULL && got->role == NULL &&
              got->subject == NULL);
        CHECK_STR(got->mount, g_mount);
    }
    as_cert_rec_free(got);
    got = NULL;

    /* Negative twins: a duplicate serial (whatever its kind), a missing one, bad records. */
    struct as_cert_rec dup = mk_cert("0a:01", "jwt", "spiffe://td/other", NULL, 2, 1, 2);
    CHECK_INT(as_store_cert_insert(st, &dup), AS_ERR_EXISTS);
    CHECK_INT(as_store_cert_get(st, "0a:01", &got), AS_OK);
    CHECK(got != NULL && strcmp(got->spiffe_id, "spiffe://td/web") == 0);
    as_cert_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_cert_get(st, "0a:02", &got), AS_ERR_NOT_FOUND);
    CHECK(got == NULL);
    CHECK_INT(as_store_cert_get(st, "0A:01", &got), AS_ERR_NOT_FOUND); /* serials are exact */

    struct as_cert_rec bad = mk_cert("", "x509", "spiffe://td/x", NULL, 1, 1, 2);
    CHECK_INT(as_store_cert_insert(st, &bad), AS_ERR_INVALID);
    bad = mk_cert("bb:01", "pem", "spiffe://td/x", NULL, 1, 1, 2);
    CHECK_INT(as_store_cert_insert(st, &bad), AS_ERR_INVALID);
    bad = mk_cert("bb:02", "x509", NULL, NULL, 1, 1, 2);
    CHECK_INT(as_store_cert_insert(st, &bad), AS_ERR_INVALID);
    bad = mk_cert("bb:03", "x509", "spiffe://td/x", NULL, 1, 1, 2);
    bad.der = NULL;
    CHECK_INT(as_store_cert_insert(st, &bad), AS_ERR_INVALID); /* der_len without der */
    bad = mk_cert("bb:04", "x509", "spiffe://td/x", NULL, 1, 1, 2);
    bad.revoked_at = -1;
    CHECK_INT(as_store_cert_insert(st, &bad), AS_ERR_INVALID);
    bad = mk_cert("bb:05", "x509", "spiffe://td/x", NULL, 1, 1, 2);
    memset(bad.serial, 'a', sizeof bad.serial); /* not terminated */
    CHECK_INT(as_store_cert_insert(st, &bad), AS_ERR_INVALID);
    CHECK_INT(as_store_cert_insert(st, NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_cert_get(st, "bb:04", &got), AS_ERR_NOT_FOUND);
    as_cert_rec_free(NULL);
    as_cert_recs_free(NULL, 3);

    /* Revoke: the first time sets it; a second keeps the first time and says so. */
    int64_t at = -1;
    bool was = true;
    CHECK_INT(as_store_cert_revoke(st, "0a:01", 1500, &at, &was), AS_OK);
    CHECK_INT(at, 1500);
    CHECK(!was);
    at = -1;
    was = false;
    CHECK_INT(as_store_cert_revoke(st, "0a:01", 1600, &at, &was), AS_OK);
    CHECK_INT(at, 1500);
    CHECK(was);
    CHECK_INT(cert_revoked_at(st, "0a:01"), 1500);
    CHECK_INT(as_store_cert_revoke(st, "0a:01", 1700, NULL, NULL), AS_OK);
    CHECK_INT(cert_revoked_at(st, "0a:01"), 1500);
    CHECK_INT(as_store_cert_revoke(st, "ff:ff", 1500, &at, &was), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_cert_revoke(st, "jti-AbC_1", 0, &at, &was), AS_ERR_INVALID);
    CHECK_INT(cert_revoked_at(st, "jti-AbC_1"), 0);

    /* A revocation inside the caller's transaction goes with its rollback. */
    CHECK_INT(as_store_begin(st), AS_OK);
    CHECK_INT(as_store_cert_revoke(st, "jti-AbC_1", 1800, &at, &was), AS_OK);
    CHECK_INT(cert_revoked_at(st, "jti-AbC_1"), 1800);
    as_store_rollback(st);
    CHECK_INT(cert_revoked_at(st, "jti-AbC_1"), 0);

    /* List: x509 only, sorted by serial; revoked_only keeps only revoked ones. */
    struct as_cert_rec more[] = {
        mk_cert("0c:03", "x509", "spiffe://td/c", NULL, 1, 1, 2),
        mk_cert("0b:02", "x509", "spiffe://td/b", NULL, 1, 1, 2),
        mk_cert("0a:00", "jwt", "spiffe://td/j", NULL, 1, 1, 2),
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        CHECK_INT(as_store_cert_insert(st, &more[i]), AS_OK);
    }
    CHECK_INT(as_store_cert_revoke(st, "0a:00", 1900, NULL, NULL), AS_OK); /* a jwt */
    char **v = NULL;
    size_t n = 0;
    char buf[256];
    CHECK_INT(as_store_cert_list(st, false, &v, &n), AS_OK);
    join_strv(v, n, buf, sizeof buf);
    CHECK_STR(buf, "0a:01,0b:02,0c:03");
    as_store_strv_free(v, n);
    v = NULL;
    CHECK_INT(as_store_cert_list(st, true, &v, &n), AS_OK);
    join_strv(v, n, buf, sizeof buf);
    CHECK_STR(buf, "0a:01");
    as_store_strv_free(v, n);
    v = NULL;
    CHECK_INT(as_store_cert_revoke(st, "0c:03", 2000, NULL, NULL), AS_OK);
    CHECK_INT(as_store_cert_list(st, true, &v, &n), AS_OK);
    join_strv(v, n, buf, sizeof buf);
    CHECK_STR(buf, "0a:01,0c:03");
    as_store_strv_free(v, n);
    v = NULL;
    CHECK_INT(as_store_cert_list(st, true, NULL, &n), AS_ERR_INVALID);
    as_store_close(st);
}

static void test_cert_crl(void)
{
    struct as_store *st = open_fresh("crl.db");
    if (st == NULL) {
        return;
    }
    const int64_t now = 5000;
    char **sv = NULL;
    int64_t *tv = NULL;
    size_t n = 9;
    char buf[256];

    /* Negative twin first: nothing recorded, nothing to list, max 0. */
    CHECK_INT(as_store_cert_crl_entries(st, 1, now, &sv, &tv, &n), AS_OK);
    CHECK(n == 0 && sv == NULL && tv == NULL);
    int64_t max = -1;
    CHECK_INT(as_store_cert_max_not_after(st, 1, &max), AS_OK);
    CHECK_INT(max, 0);

    struct {
        struct as_cert_rec c;
        int64_t revoke_at; /* 0 = leave it */
    } rows[] = {
        {mk_cert("01", "x509", "spiffe://td/a", NULL, 1, 10, 6000), 100}, /* listed */
        {mk_cert("02", "x509", "spiffe://td/a", NULL, 1, 10, now), 110},  /* expires now */
        {mk_cert("03", "x509", "spiffe://td/a", NULL, 1, 10, 4000), 120}, /* expired */
        {mk_cert("04", "x509", "spiffe://td/a", NULL, 1, 10, 6000), 0},   /* not revoked */
        {mk_cert("00", "x509", "spiffe://td/a", NULL, 1, 10, 9000), 200}, /* listed */
        {mk_cert("j1", "jwt", "spiffe://td/a", NULL, 1, 10, 99999), 130}, /* not x509 */
        {mk_cert("05", "x509", "spiffe://td/a", NULL, 2, 10, 7000), 140}, /* generation 2 */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK_INT(as_store_cert_insert(st, &rows[i].c), AS_OK);
        if (rows[i].revoke_at > 0) {
            CHECK_INT(as_store_cert_revoke(st, rows[i].c.serial, rows[i].revoke_at, NULL, NULL),
                      AS_OK);
        }
    }

    CHECK_INT(as_store_cert_crl_entries(st, 1, now, &sv, &tv, &n), AS_OK);
    join_strv(sv, n, buf, sizeof buf);
    CHECK_STR(buf, "00,01");
    if (n == 2 && tv != NULL) {
        CHECK_INT(tv[0], 200);
        CHECK_INT(tv[1], 100);
    }
    as_store_strv_free(sv, n);
    free(tv);
    sv = NULL;
    tv = NULL;

    /* Just before "02" expires it is still listed. */
    CHECK_INT(as_store_cert_crl_entries(st, 1, now - 1, &sv, &tv, &n), AS_OK);
    join_strv(sv, n, buf, sizeof buf);
    CHECK_STR(buf, "00,01,02");
    as_store_strv_free(sv, n);
    free(tv);
    sv = NULL;
    tv = NULL;

    CHECK_INT(as_store_cert_crl_entries(st, 2, now, &sv, &tv, &n), AS_OK);
    join_strv(sv, n, buf, sizeof buf);
    CHECK_STR(buf, "05");
    if (n == 1 && tv != NULL) {
        CHECK_INT(tv[0], 140);
    }
    as_store_strv_free(sv, n);
    free(tv);
    sv = NULL;
    tv = NULL;

    CHECK_INT(as_store_cert_crl_entries(st, 3, now, &sv, &tv, &n), AS_OK);
    CHECK(n == 0 && sv == NULL && tv == NULL);
    CHECK_INT(as_store_cert_crl_entries(st, 1, now, &sv, NULL, &n), AS_ERR_INVALID);

    /* max_not_after: both kinds count (the generation's JWT key must outlive its JWT-SVIDs),
     * per generation. */
    CHECK_INT(as_store_cert_max_not_after(st, 1, &max), AS_OK);
    CHECK_INT(max, 99999);
    CHECK_INT(as_store_cert_max_not_after(st, 2, &max), AS_OK);
    CHECK_INT(max, 7000);
    CHECK_INT(as_store_cert_max_not_after(st, 3, &max), AS_OK);
    CHECK_INT(max, 0);
    CHECK_INT(as_store_cert_max_not_after(st, 1, NULL), AS_ERR_INVALID);
    as_store_close(st);
}

static void test_cert_token_revoke(void)
{
    struct as_store *st = open_fresh("tokrev.db");
    if (st == NULL) {
        return;
    }
    /* root -> (c1 -> g1, c2); unrelated u1; pg expires and is purged. */
    static char root[] = "rv-root", c1[] = "rv-c1", c2[] = "rv-c2";
    struct as_token_rec toks[] = {
        mk_tok(root, NULL, 80, 0),  mk_tok(c1, root, 81, 0),      mk_tok(c2, root, 82, 0),
        mk_tok("rv-g1", c1, 83, 0), mk_tok("rv-u1", NULL, 84, 0), mk_tok("rv-pg", NULL, 85, 100),
    };
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        CHECK_INT(as_store_token_insert(st, &toks[i]), AS_OK);
    }
    struct as_cert_rec certs[] = {
        mk_cert("r1", "x509", "spiffe://td/root", root, 1, 1, 2000000000),
        mk_cert("c1a", "x509", "spiffe://td/c1", c1, 1, 1, 2000000000),
        mk_cert("c1b", "jwt", "spiffe://td/c1", c1, 1, 1, 2000000000),
        mk_cert("c1old", "x509", "spiffe://td/c1", c1, 1, 1, 2000000000),
        mk_cert("g1a", "x509", "spiffe://td/g1", "rv-g1", 1, 1, 2000000000),
        mk_cert("c2a", "x509", "spiffe://td/c2", c2, 1, 1, 2000000000),
        mk_cert("u1a", "x509", "spiffe://td/u1", "rv-u1", 1, 1, 2000000000),
        mk_cert("none", "x509", "spiffe://td/none", NULL, 1, 1, 2000000000),
        mk_cert("pg1", "x509", "spiffe://td/pg", "rv-pg", 1, 1, 2000000000),
    };
    for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++) {
        CHECK_INT(as_store_cert_insert(st, &certs[i]), AS_OK);
    }
    CHECK_INT(as_store_cert_revoke(st, "c1old", 42, NULL, NULL), AS_OK);

    /* Tree delete: every deleted token's SVIDs (both kinds) are revoked, now. */
    int64_t t0 = as_now();
    char **del = NULL;
    size_t n = 0;
    CHECK_INT(as_store_token_delete(st, c1, true, &del, &n), AS_OK);
    int64_t t1 = as_now();
    CHECK_INT(n, 2);
    as_store_strv_free(del, n);
    del = NULL;
    const char *gone[] = {"c1a", "c1b", "g1a"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        int64_t at = cert_revoked_at(st, gone[i]);
        CHECK(at >= t0 && at <= t1);
    }
    CHECK_INT(cert_revoked_at(st, "c1old"), 42); /* an earlier revocation stands */
    /* Negative twin: the parent, the sibling, unrelated and token-less records are untouched. */
    const char *kept[] = {"r1", "c2a", "u1a", "none", "pg1"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        CHECK_INT(cert_revoked_at(st, kept[i]), 0);
    }

    /* A delete inside the caller's transaction: its rollback undoes the revocation too. */
    CHECK_INT(as_store_begin(st), AS_OK);
    CHECK_INT(as_store_token_delete(st, c2, false, NULL, NULL), AS_OK);
    CHECK(cert_revoked_at(st, "c2a") > 0);
    as_store_rollback(st);
    CHECK_INT(cert_revoked_at(st, "c2a"), 0);
    CHECK(has_token(st, c2));

    /* Non-tree delete: only that token's SVIDs; its orphaned child keeps its own. */
    t0 = as_now();
    CHECK_INT(as_store_token_delete(st, root, false, &del, &n), AS_OK);
    t1 = as_now();
    as_store_strv_free(del, n);
    del = NULL;
    int64_t at = cert_revoked_at(st, "r1");
    CHECK(at >= t0 && at <= t1);
    CHECK_INT(cert_revoked_at(st, "c2a"), 0);
    CHECK(has_token(st, c2));

    /* Absent token: NOT_FOUND, nothing revoked. */
    CHECK_INT(as_store_token_delete(st, root, true, NULL, NULL), AS_ERR_NOT_FOUND);
    CHECK_INT(cert_revoked_at(st, "u1a"), 0);

    /* Expiry is not revocation: purging the expired token leaves its SVID unrevoked. */
    size_t purged = 0;
    CHECK_INT(as_store_token_purge_expired(st, 200, &purged), AS_OK);
    CHECK_INT(purged, 1);
    CHECK(!has_token(st, "rv-pg"));
    CHECK_INT(cert_revoked_at(st, "pg1"), 0);
    as_store_close(st);
}

/* Runs q and writes the serials of the result, in order, comma-separated, into out. */
static enum as_err query_serials(struct as_store *st, const struct as_cert_query *q, char *out,
                                 size_t outlen)
{
    struct as_cert_rec **v = NULL;
    size_t n = 0;
    size_t used = 0;
    enum as_err r = as_store_cert_query(st, q, &v, &n);

    out[0] = '\0';
    for (size_t i = 0; i < n && used < outlen; i++) {
        int w = snprintf(out + used, outlen - used, "%s%s", i > 0 ? "," : "", v[i]->serial);
        if (w < 0) {
            break;
        }
        used += (size_t)w;
    }
    /* Newest first, strictly. */
    for (size_t i = 1; i < n; i++) {
        CHECK(v[i - 1]->seq > v[i]->seq);
    }
    as_cert_recs_free(v, n);
    return r;
}

#define QUERY(glob_, state_, since_, until_, after_, limit_, want_) \
    do {                                                            \
        struct as_cert_query q_ = {.spiffe_glob = (glob_),          \
                                   .state = (state_),               \
                                   .now = now,                      \
                                   .since = (since_),               \
                                   .until = (until_),               \
                                   .after_seq = (after_),           \
                                   .limit = (limit_)};              \
        CHECK_INT(query_serials(st, &q_, buf, sizeof buf), AS_OK);  \
        CHECK_STR(buf, (want_));                                    \
    } while (0)

static void test_cert_query(void)
{
    struct as_store *st = open_fresh("query.db");
    if (st == NULL) {
        return;
    }
    const int64_t now = 10000;
    char buf[512];

    /* Negative twin first: an empty table. */
    QUERY(NULL, AS_CERT_ANY, 0, 0, 0, 100, "");

    struct {
        struct as_cert_rec c;
        int64_t revoke_at;
    } rows[] = {
        {mk_cert("q01", "x509", "spiffe://td/ns/prod/web", NULL, 1, 100, 20000), 0},
        {mk_cert("q02", "jwt", "spiffe://td/ns/prod/db", NULL, 1, 200, 20000), 0},
        {mk_cert("q03", "x509", "spiffe://td/ns/dev/web", NULL, 1, 300, 5000), 0},
        {mk_cert("q04", "x509", "spiffe://td/ns/prod/api", NULL, 1, 400, 20000), 9000},
        {mk_cert("q05", "x509", "spiffe://td/a?b", NULL, 1, 500, now), 0}, /* expires now */
        {mk_cert("q06", "x509", "spiffe://td/axb", NULL, 1, 600, 20000), 0},
        {mk_cert("q07", "x509", "spiffe://td/[x]", NULL, 1, 700, 20000), 0},
        {mk_cert("q08", "x509", "spiffe://td/x", NULL, 1, 800, 20000), 0},
        {mk_cert("q09", "x509", "spiffe://td/ns/prod/Web", NULL, 1, 900, 20000), 0},
        {mk_cert("q10", "jwt", "spiffe://td/ns/dev/old", NULL, 1, 1000, 3000), 2000},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK_INT(as_store_cert_insert(st, &rows[i].c), AS_OK);
        if (rows[i].revoke_at > 0) {
            CHECK_INT(as_store_cert_revoke(st, rows[i].c.serial, rows[i].revoke_at, NULL, NULL),
                      AS_OK);
        }
    }

    /* States. A revoked record that has also expired counts as revoked, not expired. */
    QUERY(NULL, AS_CERT_ANY, 0, 0, 0, 100, "q10,q09,q08,q07,q06,q05,q04,q03,q02,q01");
    QUERY(NULL, AS_CERT_ACTIVE, 0, 0, 0, 100, "q09,q08,q07,q06,q02,q01");
    QUERY(NULL, AS_CERT_EXPIRED, 0, 0, 0, 100, "q05,q03");
    QUERY(NULL, AS_CERT_REVOKED, 0, 0, 0, 100, "q10,q04");

    /* Globs: prefix, suffix, exact, all; case-sensitive; no implicit prefix match. */
    QUERY("spiffe://td/ns/prod/*", AS_CERT_ANY, 0, 0, 0, 100, "q09,q04,q02,q01");
    QUERY("spiffe://td/ns/prod/*", AS_CERT_ACTIVE, 0, 0, 0, 100, "q09,q02,q01");
    QUERY("*/web", AS_CERT_ANY, 0, 0, 0, 100, "q03,q01");
    QUERY("*/Web", AS_CERT_ANY, 0, 0, 0, 100, "q09");
    QUERY("spiffe://td/ns/prod/web", AS_CERT_ANY, 0, 0, 0, 100, "q01");
    QUERY("spiffe://td/ns/*/web", AS_CERT_ANY, 0, 0, 0, 100, "q03,q01");
    QUERY("*", AS_CERT_ANY, 0, 0, 0, 100, "q10,q09,q08,q07,q06,q05,q04,q03,q02,q01");
    QUERY("spiffe://td/ns/prod", AS_CERT_ANY, 0, 0, 0, 100, "");
    QUERY("SPIFFE://*", AS_CERT_ANY, 0, 0, 0, 100, "");
    QUERY("", AS_CERT_ANY, 0, 0, 0, 100, "");
    /* `?` and `[` are literal: they are GLOB metacharacters, not ours. */
    QUERY("spiffe://td/a?b", AS_CERT_ANY, 0, 0, 0, 100, "q05");
    QUERY("spiffe://td/?xb", AS_CERT_ANY, 0, 0, 0, 100, "");
    QUERY("spiffe://td/[x]", AS_CERT_ANY, 0, 0, 0, 100, "q07");
    QUERY("spiffe://td/[ax]*", AS_CERT_ANY, 0, 0, 0, 100, "");
    QUERY("spiffe://td/[*", AS_CERT_ANY, 0, 0, 0, 100, "q07");
    QUERY("*x]", AS_CERT_ANY, 0, 0, 0, 100, "q07");
    QUERY("*?*", AS_CERT_ANY, 0, 0, 0, 100, "q05");

    /* since/until bound issued_at (here equal to not_before), inclusively. */
    QUERY(NULL, AS_CERT_ANY, 300, 500, 0, 100, "q05,q04,q03");
    QUERY(NULL, AS_CERT_ANY, 901, 0, 0, 100, "q10");
    QUERY(NULL, AS_CERT_ANY, 0, 199, 0, 100, "q01");
    QUERY(NULL, AS_CERT_ANY, 600, 599, 0, 100, "");
    QUERY("spiffe://td/ns/*", AS_CERT_REVOKED, 0, 500, 0, 100, "q04");

    /* limit (clamped to 1..1000) and the cursor. */
    QUERY(NULL, AS_CERT_ANY, 0, 0, 0, 3, "q10,q09,q08");
    QUERY(NULL, AS_CERT_ANY, 0, 0, 0, 0, "q10");
    QUERY(NULL, AS_CERT_ANY, 0, 0, 0, -5, "q10");
    QUERY(NULL, AS_CERT_ANY, 0, 0, 0, 5000, "q10,q09,q08,q07,q06,q05,q04,q03,q02,q01");
    int64_t seq5 = cert_seq(st, "q05");
    CHECK(seq5 > 0);
    QUERY(NULL, AS_CERT_ANY, 0, 0, seq5, 100, "q04,q03,q02,q01");
    QUERY(NULL, AS_CERT_ANY, 0, 0, -1, 100, "q10,q09,q08,q07,q06,q05,q04,q03,q02,q01");
    QUERY(NULL, AS_CERT_ANY, 0, 0, cert_seq(st, "q01"), 100, "");

    /* Records are complete, der included. */
    struct as_cert_query q = {.spiffe_glob = "spiffe://td/ns/prod/*", .now = now, .limit = 10};
    struct as_cert_rec **v = NULL;
    size_t n = 0;
    CHECK_INT(as_store_cert_query(st, &q, &v, &n), AS_OK);
    CHECK_INT(n, 4);
    if (n == 4) {
        CHECK_STR(v[0]->spiffe_id, "spiffe://td/ns/prod/Web");
        CHECK(v[0]->der_len == sizeof g_der && memcmp(v[0]->der, g_der, sizeof g_der) == 0);
        CHECK_INT(v[1]->revoked_at, 9000);
        CHECK_STR(v[2]->kind, "jwt");
        CHECK(v[2]->der == NULL);
        CHECK(v[3]->token_accessor == NULL);
        CHECK_STR(v[3]->dns_json, g_dns);
    }
    as_cert_recs_free(v, n);
    v = NULL;

    /* Negative twins: an over-long glob (a longest one is fine), missing arguments. */
    char glob[2050];
    memset(glob, '*', sizeof glob - 1);
    glob[sizeof glob - 1] = '\0';
    q.spiffe_glob = glob;
    n = 9;
    CHECK_INT(as_store_cert_query(st, &q, &v, &n), AS_ERR_TOO_LARGE);
    CHECK(v == NULL && n == 0);
    glob[2048] = '\0';
    CHECK_INT(as_store_cert_query(st, &q, &v, &n), AS_OK);
    CHECK_INT(n, 10);
    as_cert_recs_free(v, n);
    v = NULL;
    q.state = (enum as_cert_state)42;
    CHECK_INT(as_store_cert_query(st, &q, &v, &n), AS_ERR_INVALID);
    q.state = AS_CERT_ANY;
    CHECK_INT(as_store_cert_query(st, NULL, &v, &n), AS_ERR_INVALID);
    CHECK_INT(as_store_cert_query(st, &q, NULL, &n), AS_ERR_INVALID);
    as_store_close(st);
}

/* Walks every page of q (page size q->limit) and checks the pages tile the expected set. */
static void page_through(struct as_store *st, struct as_cert_query q, size_t want,
                         const bool *expect, const size_t *page_sizes, size_t npages)
{
    bool seen[25] = {false};
    size_t total = 0, pages = 0;
    int64_t last = INT64_MAX;

    q.after_seq = 0;
    for (;;) {
        struct as_cert_rec **v = NULL;
        size_t n = 0;
        CHECK_INT(as_store_cert_query(st, &q, &v, &n), AS_OK);
        if (pages < npages) {
            CHECK_INT(n, page_sizes[pages]);
        } else {
            CHECK_INT(n, 0); /* the page after the last is empty */
        }
        for (size_t i = 0; i < n; i++) {
            long idx = strtol(v[i]->serial + 1, NULL, 10);
            CHECK(idx >= 0 && idx < 25);
            if (idx >= 0 && idx < 25) {
                CHECK(!seen[idx]);  /* no repeats */
                CHECK(expect[idx]); /* only what the filter selects */
                seen[idx] = true;
            }
            CHECK(v[i]->seq < last); /* newest first, across pages */
            last = v[i]->seq;
        }
        total += n;
        if (n > 0) {
            q.after_seq = v[n - 1]->seq;
        }
        as_cert_recs_free(v, n);
        if (n == 0 || ++pages > npages) {
            break;
        }
    }
    CHECK_INT(total, want);
    for (size_t i = 0; i < 25; i++) {
        CHECK(seen[i] == expect[i]); /* no gaps */
    }
}

static void test_cert_paging(void)
{
    struct as_store *st = open_fresh("paging.db");
    if (st == NULL) {
        return;
    }
    bool all[25], revoked[25];
    for (int i = 0; i < 25; i++) {
        char serial[8];
        snprintf(serial, sizeof serial, "p%02d", i);
        struct as_cert_rec c = mk_cert(serial, i % 2 == 0 ? "x509" : "jwt", "spiffe://td/page",
                                       NULL, 1, 1000 + i, 2000000000);
        CHECK_INT(as_store_cert_insert(st, &c), AS_OK);
        all[i] = true;
        revoked[i] = i % 3 == 0;
        if (revoked[i]) {
            CHECK_INT(as_store_cert_revoke(st, serial, 5000, NULL, NULL), AS_OK);
        }
    }
    struct as_cert_query q = {.state = AS_CERT_ANY, .now = 3000, .limit = 10};
    static const size_t tens[] = {10, 10, 5};
    page_through(st, q, 25, all, tens, 3);

    /* With a filter: 9 revoked records (0, 3, ..., 24) in pages of 4. */
    q.state = AS_CERT_REVOKED;
    q.limit = 4;
    static const size_t fours[] = {4, 4, 1};
    page_through(st, q, 9, revoked, fours, 3);

    /* Negative twin: active ones are the complement. */
    bool active[25];
    for (int i = 0; i < 25; i++) {
        active[i] = !revoked[i];
    }
    q.state = AS_CERT_ACTIVE;
    q.limit = 10;
    static const size_t rest[] = {10, 6};
    page_through(st, q, 16, active, rest, 2);
    as_store_close(st);
}

static void test_ca_gens(void)
{
    struct as_store *st = open_fresh("cagen.db");
    if (st == NULL) {
        return;
    }
    struct as_ca_gen_rec **v = NULL;
    size_t n = 9;

    CHECK_INT(as_store_ca_gen_list(st, &v, &n), AS_OK);
    CHECK(n == 0 && v == NULL);

    struct as_ca_gen_rec g1 = {.base = "ca",
                               .jwt_kid = "kid-1",
                               .state = "active",
                               .not_before = 100,
                               .not_after = 200,
                               .published_at = 100,
                               .activate_at = 100};
    struct as_ca_gen_rec g2 = {.base = "ca-2",
                               .jwt_kid = NULL,
                               .state = "prepared",
                               .not_before = 150,
                               .not_after = 300,
                               .published_at = 150,
                               .activate_at = 166};
    CHECK_INT(as_store_ca_gen_insert(st, &g1), AS_OK);
    CHECK_INT(as_store_ca_gen_insert(st, &g2), AS_OK);
    CHECK(g1.id > 0 && g2.id > g1.id);

    CHECK_INT(as_store_ca_gen_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_INT(v[0]->id, g1.id);
        CHECK_STR(v[0]->base, "ca");
        CHECK_STR(v[0]->jwt_kid, "kid-1");
        CHECK_STR(v[0]->state, "active");
        CHECK_INT(v[0]->not_before, 100);
        CHECK_INT(v[0]->not_after, 200);
        CHECK_INT(v[0]->published_at, 100);
        CHECK_INT(v[0]->activate_at, 100);
        CHECK_INT(v[1]->id, g2.id);
        CHECK_STR(v[1]->base, "ca-2");
        CHECK(v[1]->jwt_kid == NULL);
        CHECK_STR(v[1]->state, "prepared");
        CHECK_INT(v[1]->activate_at, 166);
    }
    as_ca_gen_recs_free(v, n);
    v = NULL;

    /* Rotation: the old one retires, the prepared one becomes active. */
    CHECK_INT(as_store_ca_gen_update(st, g1.id, "retired", 0), AS_OK);
    CHECK_INT(as_store_ca_gen_update(st, g2.id, "active", 170), AS_OK);
    CHECK_INT(as_store_ca_gen_list(st, &v, &n), AS_OK);
    if (n == 2) {
        CHECK_STR(v[0]->state, "retired");
        CHECK_INT(v[0]->activate_at, 0);
        CHECK_INT(v[0]->not_after, 200); /* other fields unchanged */
        CHECK_STR(v[1]->state, "active");
        CHECK_INT(v[1]->activate_at, 170);
        CHECK_STR(v[1]->base, "ca-2");
    }
    as_ca_gen_recs_free(v, n);
    v = NULL;

    /* Negative twins: unknown id, unknown state, missing base. */
    CHECK_INT(as_store_ca_gen_update(st, g2.id + 100, "active", 1), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_ca_gen_update(st, g1.id, "bogus", 1), AS_ERR_INVALID);
    CHECK_INT(as_store_ca_gen_update(st, g1.id, NULL, 1), AS_ERR_INVALID);
    struct as_ca_gen_rec bad = {.base = "ca-3", .state = "Active"};
    CHECK_INT(as_store_ca_gen_insert(st, &bad), AS_ERR_INVALID);
    bad = (struct as_ca_gen_rec){.base = NULL, .state = "prepared"};
    CHECK_INT(as_store_ca_gen_insert(st, &bad), AS_ERR_INVALID);
    bad = (struct as_ca_gen_rec){.base = "", .state = "prepared"};
    CHECK_INT(as_store_ca_gen_insert(st, &bad), AS_ERR_INVALID);
    CHECK_INT(as_store_ca_gen_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(v[0]->state, "retired");
    }
    as_ca_gen_recs_free(v, n);
    v = NULL;

    /* A third generation gets a larger id still. */
    struct as_ca_gen_rec g3 = {.base = "ca-3", .state = "prepared"};
    CHECK_INT(as_store_ca_gen_insert(st, &g3), AS_OK);
    CHECK(g3.id > g2.id);
    as_ca_gen_rec_free(NULL);
    as_ca_gen_recs_free(NULL, 0);
    as_store_close(st);
}

/* ---- schema version 3: auth mounts and roles, certificate-linked tokens ---- */

/* The version-2 additions exactly as they shipped, on top of V1_DDL. */
#define V2_DDL                                                                  \
    "CREATE TABLE certs ("                                                      \
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"                                  \
    "  serial TEXT UNIQUE NOT NULL,"                                            \
    "  kind TEXT NOT NULL CHECK (kind IN ('x509', 'jwt')),"                     \
    "  spiffe_id TEXT NOT NULL,"                                                \
    "  dns TEXT,"                                                               \
    "  token_accessor TEXT,"                                                    \
    "  mount TEXT,"                                                             \
    "  role TEXT,"                                                              \
    "  subject TEXT,"                                                           \
    "  ca_gen INTEGER NOT NULL,"                                                \
    "  not_before INTEGER NOT NULL,"                                            \
    "  not_after INTEGER NOT NULL,"                                             \
    "  revoked_at INTEGER NOT NULL DEFAULT 0,"                                  \
    "  der BLOB,"                                                               \
    "  issued_at INTEGER NOT NULL DEFAULT 0"                                    \
    ");"                                                                        \
    "CREATE INDEX certs_token_accessor ON certs(token_accessor);"               \
    "CREATE INDEX certs_ca_gen_revoked ON certs(ca_gen, revoked_at);"           \
    "CREATE INDEX certs_spiffe_id ON certs(spiffe_id);"                         \
    "CREATE INDEX certs_not_after ON certs(not_after);"                         \
    "CREATE TABLE ca_gens ("                                                    \
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"                                   \
    "  base TEXT NOT NULL,"                                                     \
    "  jwt_kid TEXT,"                                                           \
    "  state TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'retired'))," \
    "  not_before INTEGER,"                                                     \
    "  not_after INTEGER,"                                                      \
    "  published_at INTEGER,"                                                   \
    "  activate_at INTEGER"                                                     \
    ");"

/* A version-2 database as the previous release left it: a token tree and their SVIDs. */
#define V2_ROWS                                                                               \
    "INSERT INTO tokens (accessor, secret_hash, policies, mount, creation_time, "             \
    "  expire_time, creation_ttl, explicit_max_ttl, period, num_uses, renewable, orphan) "    \
    "VALUES ('v2-tok', zeroblob(32), '[\"default\"]', 'token', 1700000000, 0, 0, 0, 0, 0, "   \
    "  1, 0);"                                                                                \
    "INSERT INTO tokens (accessor, secret_hash, parent, policies, mount, creation_time, "     \
    "  expire_time, creation_ttl, explicit_max_ttl, period, num_uses, renewable, orphan) "    \
    "VALUES ('v2-child', X'01' || zeroblob(31), 'v2-tok', '[\"default\"]', 'token', "         \
    "  1700000000, 0, 0, 0, 0, 0, 1, 0);"                                                     \
    "INSERT INTO certs (serial, kind, spiffe_id, token_accessor, mount, ca_gen, "             \
    "  not_before, not_after, issued_at) "                                                    \
    "VALUES ('v2:01', 'x509', 'spiffe://td/v2', 'v2-child', 'token', 1, 1, 2000000000, 1);"   \
    "INSERT INTO certs (serial, kind, spiffe_id, token_accessor, mount, ca_gen, "             \
    "  not_before, not_after, revoked_at, issued_at) "                                        \
    "VALUES ('v2:02', 'x509', 'spiffe://td/v2', 'v2-tok', 'token', 1, 1, 2000000000, 77, 1);" \
    "INSERT INTO ca_gens (base, state) VALUES ('ca', 'active');"                              \
    "PRAGMA user_version = 2;"

static const char g_has_login_cert[] =
    "SELECT count(*) FROM pragma_table_info('tokens') WHERE name = 'login_cert'";

static void test_migrate_v2(void)
{
    char path[256];
    struct as_store *st = NULL;
    struct as_token_rec *got = NULL;

    db_path("v2.db", path, sizeof path);
    raw_exec(path, V1_DDL V2_DDL V2_ROWS);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), 2);
    CHECK_INT(raw_pragma_int(path, g_has_login_cert), 0);

    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), SCHEMA_VERSION);
    CHECK_INT(raw_pragma_int(path, g_has_login_cert), 1);
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                                   "name IN ('tokens_login_cert', 'tokens_mount')"),
              2);
    /* Migration 5: parent and login_cert are indexed only where set, and the lookups that
     * revocation makes by them still use those indexes (a scan of every token otherwise). */
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                                   "name IN ('tokens_parent', 'tokens_login_cert') AND "
                                   "sql LIKE '%WHERE % IS NOT NULL'"),
              2);
    CHECK(raw_plan_has(path, "SELECT accessor FROM tokens WHERE login_cert = ?1",
                       "USING INDEX tokens_login_cert (login_cert=?)"));
    CHECK(raw_plan_has(path,
                       "WITH RECURSIVE sub(a) AS (SELECT ?1 UNION SELECT t.accessor FROM tokens t "
                       "JOIN sub ON t.parent = sub.a) SELECT a FROM sub",
                       "USING INDEX tokens_parent (parent=?)"));
    CHECK(raw_plan_has(path, "UPDATE tokens SET parent = NULL, orphan = 1 WHERE parent = ?1",
                       "USING INDEX tokens_parent (parent=?)"));
    CHECK(!raw_plan_has(path, "SELECT accessor FROM tokens WHERE login_cert IS NULL",
                        "tokens_login_cert"));
    if (st != NULL) {
        /* Version-2 tokens survive with login_cert and bound_cidrs NULL (bound to no
         * network: no earlier version bound one); their SVIDs survive too. */
        CHECK_INT(as_store_token_by_accessor(st, "v2-tok", &got), AS_OK);
        CHECK(got != NULL && got->login_cert == NULL && got->parent == NULL &&
              got->bound_cidrs_json == NULL);
        as_token_rec_free(got);
        got = NULL;
        CHECK_INT(as_store_token_by_accessor(st, "v2-child", &got), AS_OK);
        CHECK(got != NULL && got->login_cert == NULL && got->parent != NULL &&
              strcmp(got->parent, "v2-tok") == 0);
        as_token_rec_free(got);
        got = NULL;
        CHECK_INT(cert_revoked_at(st, "v2:01"), 0);
        CHECK_INT(cert_revoked_at(st, "v2:02"), 77);
        /* The version-3 tables are usable. */
        struct as_mount_rec m = {
            .path = "jwt", .type = "jwt", .accessor = "auth_jwt_01", .created = 5};
        CHECK_INT(as_store_mount_insert(st, &m), AS_OK);
        CHECK_INT(as_store_role_put(st, "jwt", "r", "{}"), AS_OK);
        /* A new token may name an old certificate; revoking the tree cascades through it. */
        struct as_token_rec t = mk_tok("v2-login", NULL, 200, 0);
        t.login_cert = "v2:01";
        t.bound_cidrs_json = "[\"10.0.0.0/8\"]";
        CHECK_INT(as_store_token_insert(st, &t), AS_OK);
        /* The version-6 column keeps what it is given. */
        CHECK_INT(as_store_token_by_accessor(st, "v2-login", &got), AS_OK);
        CHECK(got != NULL && got->bound_cidrs_json != NULL &&
              strcmp(got->bound_cidrs_json, "[\"10.0.0.0/8\"]") == 0);
        as_token_rec_free(got);
        got = NULL;
        char **del = NULL;
        size_t n = 0;
        CHECK_INT(as_store_token_delete(st, "v2-tok", true, &del, &n), AS_OK);
        CHECK_INT(n, 3);
        if (n == 3) {
            CHECK_STR(del[0], "v2-child");
            CHECK_STR(del[1], "v2-tok");
            CHECK_STR(del[2], "v2-login");
        }
        as_store_strv_free(del, n);
        CHECK(cert_revoked_at(st, "v2:01") > 77);
        CHECK_INT(cert_revoked_at(st, "v2:02"), 77); /* an earlier revocation stands */
    }
    as_store_close(st);
    st = NULL;

    /* Reopening runs no migration again and keeps the new rows. */
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), SCHEMA_VERSION);
    if (st != NULL) {
        struct as_mount_rec *m = NULL;
        CHECK_INT(as_store_mount_get(st, "jwt", &m), AS_OK);
        as_mount_rec_free(m);
    }
    as_store_close(st);
    st = NULL;

    /* A version-1 file goes through every later migration at once. */
    db_path("v1-to-3.db", path, sizeof path);
    raw_exec(path, V1_DDL V1_ROWS);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), SCHEMA_VERSION);
    if (st != NULL) {
        CHECK_INT(as_store_token_by_accessor(st, "v1-tok", &got), AS_OK);
        CHECK(got != NULL && got->login_cert == NULL);
        as_token_rec_free(got);
        got = NULL;
    }
    as_store_close(st);
    st = NULL;

    /*
     * Negative twin: a version-2 file on which migration 3 fails (a table of that name is in
     * the way). Open fails and nothing of the migration sticks: still version 2, no login_cert
     * column (the ALTER ran before the failure and was rolled back), the rows intact.
     */
    db_path("v2-bad.db", path, sizeof path);
    raw_exec(path, V1_DDL V2_DDL "CREATE TABLE auth_roles (x INTEGER);" V2_ROWS);
    CHECK_INT(as_store_open(path, &st), AS_ERR_STORE);
    CHECK(st == NULL);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), 2);
    CHECK_INT(raw_pragma_int(path, g_has_login_cert), 0);
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                   "('auth_mounts', 'tokens_login_cert', 'tokens_mount')"),
              0);
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM tokens"), 2);
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM certs"), 2);
}

static void test_login_cert(void)
{
    struct as_store *st = open_fresh("logincert.db");
    struct as_token_rec *got = NULL;
    if (st == NULL) {
        return;
    }
    static char serial[] = "0a:1b:2c:3d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:f9";
    struct as_token_rec t = mk_tok("lc-1", NULL, 300, 0);
    t.login_cert = serial;
    CHECK_INT(as_store_token_insert(st, &t), AS_OK);
    CHECK_INT(as_store_token_by_accessor(st, "lc-1", &got), AS_OK);
    CHECK(got != NULL && got->login_cert != NULL && strcmp(got->login_cert, serial) == 0);
    /* The other columns did not shift around the new one. */
    CHECK(got != NULL && got->mount != NULL && strcmp(got->mount, g_mount) == 0);
    CHECK(got != NULL && got->creation_time == 1700000000 && got->creation_ttl == 3600 &&
          got->explicit_max_ttl == 7200 && got->renewable && !got->orphan);
    as_token_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_token_by_hash(st, t.secret_hash, &got), AS_OK);
    CHECK(got != NULL && got->login_cert != NULL && strcmp(got->login_cert, serial) == 0);
    as_token_rec_free(got);
    got = NULL;

    /* Negative twins: no login certificate reads back as NULL; an empty one is refused. */
    struct as_token_rec u = mk_tok("lc-2", NULL, 301, 0);
    CHECK_INT(as_store_token_insert(st, &u), AS_OK);
    CHECK_INT(as_store_token_by_accessor(st, "lc-2", &got), AS_OK);
    CHECK(got != NULL && got->login_cert == NULL);
    as_token_rec_free(got);
    got = NULL;
    struct as_token_rec e = mk_tok("lc-3", NULL, 302, 0);
    e.login_cert = "";
    CHECK_INT(as_store_token_insert(st, &e), AS_ERR_INVALID);
    CHECK(!has_token(st, "lc-3"));
    as_store_close(st);
}

/*
 * The cascade graph of test_cascade, every name prefixed with p:
 *   A obtained C1 and C1b; B logged in with C1, obtained C2 (x509) and J2 (jwt), and has a
 *   child Bc that obtained Bcc; D logged in with C2 and obtained C3; E logged in with C3.
 *   Unrelated: U obtained CU; V logged in with CU; N is a cert of no token.
 */
struct cascade_names {
    char a[16], b[16], bc[16], d[16], e[16], u[16], v[16];
    char c1[16], c1b[16], c2[16], j2[16], bcc[16], c3[16], cu[16], n[16];
};

static void cascade_build(struct as_store *st, const char *p, unsigned seed,
                          struct cascade_names *nm)
{
    snprintf(nm->a, sizeof nm->a, "%s-A", p);
    snprintf(nm->b, sizeof nm->b, "%s-B", p);
    snprintf(nm->bc, sizeof nm->bc, "%s-Bc", p);
    snprintf(nm->d, sizeof nm->d, "%s-D", p);
    snprintf(nm->e, sizeof nm->e, "%s-E", p);
    snprintf(nm->u, sizeof nm->u, "%s-U", p);
    snprintf(nm->v, sizeof nm->v, "%s-V", p);
    snprintf(nm->c1, sizeof nm->c1, "%s:c1", p);
    snprintf(nm->c1b, sizeof nm->c1b, "%s:c1b", p);
    snprintf(nm->c2, sizeof nm->c2, "%s:c2", p);
    snprintf(nm->j2, sizeof nm->j2, "%s:j2", p);
    snprintf(nm->bcc, sizeof nm->bcc, "%s:bcc", p);
    snprintf(nm->c3, sizeof nm->c3, "%s:c3", p);
    snprintf(nm->cu, sizeof nm->cu, "%s:cu", p);
    snprintf(nm->n, sizeof nm->n, "%s:n", p);

    struct as_token_rec toks[] = {
        mk_tok(nm->a, NULL, seed, 0),       mk_tok(nm->b, NULL, seed + 1, 0),
        mk_tok(nm->bc, nm->b, seed + 2, 0), mk_tok(nm->d, NULL, seed + 3, 0),
        mk_tok(nm->e, NULL, seed + 4, 0),   mk_tok(nm->u, NULL, seed + 5, 0),
        mk_tok(nm->v, NULL, seed + 6, 0),
    };
    toks[1].login_cert = nm->c1;
    toks[3].login_cert = nm->c2;
    toks[4].login_cert = nm->c3;
    toks[6].login_cert = nm->cu;
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        CHECK_INT(as_store_token_insert(st, &toks[i]), AS_OK);
    }
    struct as_cert_rec certs[] = {
        mk_cert(nm->c1, "x509", "spiffe://td/a", nm->a, 1, 1, 2000000000),
        mk_cert(nm->c1b, "x509", "spiffe://td/a", nm->a, 1, 1, 2000000000),
        mk_cert(nm->c2, "x509", "spiffe://td/b", nm->b, 1, 1, 2000000000),
        mk_cert(nm->j2, "jwt", "spiffe://td/b", nm->b, 1, 1, 2000000000),
        mk_cert(nm->bcc, "x509", "spiffe://td/bc", nm->bc, 1, 1, 2000000000),
        mk_cert(nm->c3, "x509", "spiffe://td/d", nm->d, 1, 1, 2000000000),
        mk_cert(nm->cu, "x509", "spiffe://td/u", nm->u, 1, 1, 2000000000),
        mk_cert(nm->n, "x509", "spiffe://td/n", NULL, 1, 1, 2000000000),
    };
    for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++) {
        CHECK_INT(as_store_cert_insert(st, &certs[i]), AS_OK);
    }
}

/* The unrelated part of the graph is untouched. */
static void cascade_check_unrelated(struct as_store *st, const struct cascade_names *nm)
{
    CHECK(has_token(st, nm->u));
    CHECK(has_token(st, nm->v));
    CHECK_INT(cert_revoked_at(st, nm->cu), 0);
    CHECK_INT(cert_revoked_at(st, nm->n), 0);
}

static void test_cascade_cert_revoke(void)
{
    struct as_store *st = open_fresh("cascade-cert.db");
    struct cascade_names nm;
    int64_t at = 0;
    bool was = true;
    if (st == NULL) {
        return;
    }
    cascade_build(st, "cr", 400, &nm);

    /* Inside the caller's transaction a rollback undoes the whole cascade. */
    CHECK_INT(as_store_begin(st), AS_OK);
    CHECK_INT(as_store_cert_revoke(st, nm.c1, 5000, &at, &was), AS_OK);
    CHECK(!has_token(st, nm.b) && !has_token(st, nm.e));
    as_store_rollback(st);
    CHECK(has_token(st, nm.b) && has_token(st, nm.bc) && has_token(st, nm.d) &&
          has_token(st, nm.e));
    CHECK_INT(cert_revoked_at(st, nm.c1), 0);
    CHECK_INT(cert_revoked_at(st, nm.c2), 0);

    /* Revoking C1 deletes B (with Bc), then D (C2), then E (C3), revoking their SVIDs. */
    CHECK_INT(as_store_cert_revoke(st, nm.c1, 5000, &at, &was), AS_OK);
    CHECK_INT(at, 5000);
    CHECK(!was);
    const char *gone[] = {nm.b, nm.bc, nm.d, nm.e};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        CHECK(!has_token(st, gone[i]));
    }
    /* Every SVID of the cascade carries the revocation time of the event. */
    const char *revoked[] = {nm.c1, nm.c2, nm.j2, nm.bcc, nm.c3};
    for (size_t i = 0; i < sizeof revoked / sizeof revoked[0]; i++) {
        CHECK_INT(cert_revoked_at(st, revoked[i]), 5000);
    }
    /* Negative twin: A obtained C1 but did not log in with it; A and its other SVID stay. */
    CHECK(has_token(st, nm.a));
    CHECK_INT(cert_revoked_at(st, nm.c1b), 0);
    cascade_check_unrelated(st, &nm);

    /*
     * Revoking it again does nothing more: the first time stands, and a token that (wrongly)
     * names the already revoked certificate is not touched, since the cascade already ran.
     */
    struct as_token_rec late = mk_tok("cr-late", NULL, 450, 0);
    late.login_cert = nm.c1;
    CHECK_INT(as_store_token_insert(st, &late), AS_OK);
    CHECK_INT(as_store_cert_revoke(st, nm.c1, 6000, &at, &was), AS_OK);
    CHECK_INT(at, 5000);
    CHECK(was);
    CHECK(has_token(st, "cr-late"));
    CHECK(has_token(st, nm.a));
    CHECK_INT(cert_revoked_at(st, nm.c1b), 0);

    /* A certificate nobody logged in with: only itself. */
    CHECK_INT(as_store_cert_revoke(st, nm.c1b, 7000, &at, &was), AS_OK);
    CHECK(has_token(st, nm.a));
    cascade_check_unrelated(st, &nm);
    /* Bad input. */
    CHECK_INT(as_store_cert_revoke(st, "", 7000, &at, &was), AS_ERR_INVALID);
    CHECK_INT(as_store_cert_revoke(st, "cr:absent", 7000, &at, &was), AS_ERR_NOT_FOUND);
    as_store_close(st);
}

static void test_cascade_token_delete(void)
{
    struct as_store *st = open_fresh("cascade-token.db");
    struct cascade_names nm;
    char **del = NULL;
    size_t n = 0;
    char joined[256];
    if (st == NULL) {
        return;
    }
    cascade_build(st, "td", 500, &nm);

    /* Deleting A (alone) revokes C1 and C1b, and C1 takes B, Bc, D and E with it. */
    int64_t t0 = as_now();
    CHECK_INT(as_store_token_delete(st, nm.a, false, &del, &n), AS_OK);
    int64_t t1 = as_now();
    /* The named token first, then the cascaded ones, sorted. */
    join_strv(del, n, joined, sizeof joined);
    CHECK_STR(joined, "td-A,td-B,td-Bc,td-D,td-E");
    as_store_strv_free(del, n);
    del = NULL;
    const char *gone[] = {nm.a, nm.b, nm.bc, nm.d, nm.e};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        CHECK(!has_token(st, gone[i]));
    }
    const char *revoked[] = {nm.c1, nm.c1b, nm.c2, nm.j2, nm.bcc, nm.c3};
    for (size_t i = 0; i < sizeof revoked / sizeof revoked[0]; i++) {
        int64_t at = cert_revoked_at(st, revoked[i]);
        CHECK(at >= t0 && at <= t1);
    }
    cascade_check_unrelated(st, &nm);

    /* Negative twin: deleting it again is NOT_FOUND and changes nothing. */
    n = 9;
    CHECK_INT(as_store_token_delete(st, nm.a, true, &del, &n), AS_ERR_NOT_FOUND);
    CHECK(del == NULL && n == 0);
    cascade_check_unrelated(st, &nm);
    CHECK_INT(as_store_token_delete(st, "", true, &del, &n), AS_ERR_INVALID);

    /* A tree delete of a token in the middle: D goes with E, B is unaffected. */
    cascade_build(st, "tm", 520, &nm);
    CHECK_INT(as_store_token_delete(st, nm.d, true, &del, &n), AS_OK);
    join_strv(del, n, joined, sizeof joined);
    CHECK_STR(joined, "tm-D,tm-E");
    as_store_strv_free(del, n);
    del = NULL;
    CHECK(cert_revoked_at(st, nm.c3) > 0);
    CHECK(has_token(st, nm.b) && has_token(st, nm.bc) && has_token(st, nm.a));
    CHECK_INT(cert_revoked_at(st, nm.c2), 0);
    CHECK_INT(cert_revoked_at(st, nm.c1), 0);
    cascade_check_unrelated(st, &nm);

    /*
     * The cascaded accessors come back sorted, not in the order the cascade reached them:
     * X obtained cx, z-1 logged in with cx and obtained cz, a-2 logged in with cz.
     */
    static char x[] = "so-X", z1[] = "so-z-1";
    struct as_token_rec so[] = {mk_tok(x, NULL, 530, 0), mk_tok(z1, NULL, 531, 0),
                                mk_tok("so-a-2", NULL, 532, 0)};
    so[1].login_cert = "so:cx";
    so[2].login_cert = "so:cz";
    for (size_t i = 0; i < sizeof so / sizeof so[0]; i++) {
        CHECK_INT(as_store_token_insert(st, &so[i]), AS_OK);
    }
    struct as_cert_rec cx = mk_cert("so:cx", "x509", "spiffe://td/x", x, 1, 1, 2000000000);
    struct as_cert_rec cz = mk_cert("so:cz", "x509", "spiffe://td/z", z1, 1, 1, 2000000000);
    CHECK_INT(as_store_cert_insert(st, &cx), AS_OK);
    CHECK_INT(as_store_cert_insert(st, &cz), AS_OK);
    CHECK_INT(as_store_token_delete(st, x, false, &del, &n), AS_OK);
    join_strv(del, n, joined, sizeof joined);
    CHECK_STR(joined, "so-X,so-a-2,so-z-1");
    as_store_strv_free(del, n);
    del = NULL;

    /* A cycle (P logged in with Q's cert and Q with P's) ends: each is handled once. */
    static char p[] = "cy-P", q[] = "cy-Q";
    struct as_token_rec tp = mk_tok(p, NULL, 540, 0), tq = mk_tok(q, NULL, 541, 0);
    tp.login_cert = "cy:q";
    tq.login_cert = "cy:p";
    CHECK_INT(as_store_token_insert(st, &tp), AS_OK);
    CHECK_INT(as_store_token_insert(st, &tq), AS_OK);
    struct as_cert_rec cp = mk_cert("cy:p", "x509", "spiffe://td/p", p, 1, 1, 2000000000);
    struct as_cert_rec cq = mk_cert("cy:q", "x509", "spiffe://td/q", q, 1, 1, 2000000000);
    CHECK_INT(as_store_cert_insert(st, &cp), AS_OK);
    CHECK_INT(as_store_cert_insert(st, &cq), AS_OK);
    CHECK_INT(as_store_token_delete(st, p, true, &del, &n), AS_OK);
    join_strv(del, n, joined, sizeof joined);
    CHECK_STR(joined, "cy-P,cy-Q");
    as_store_strv_free(del, n);
    del = NULL;
    CHECK(cert_revoked_at(st, "cy:p") > 0 && cert_revoked_at(st, "cy:q") > 0);
    as_store_close(st);
}

/* Chain length of test_cascade_bound: one link more than the cascade follows. */
#define CHAIN_LEN 10000

/*
 * A chain T1..Tn where Ti logged in with C(i-1) and obtained Ci. Revoking C0 needs one round
 * per link; past the bound the store refuses and undoes everything.
 */
static void test_cascade_bound(void)
{
    struct as_store *st = open_fresh("cascade-bound.db");
    char acc[32], parent_cert[32], serial[32];
    char **all = NULL;
    size_t n = 0;
    bool was = true;
    if (st == NULL) {
        return;
    }
    CHECK_INT(as_store_begin(st), AS_OK);
    struct as_cert_rec c0 = mk_cert("ch:0", "x509", "spiffe://td/ch", NULL, 1, 1, 2000000000);
    CHECK_INT(as_store_cert_insert(st, &c0), AS_OK);
    int bad = 0;
    for (unsigned i = 1; i <= CHAIN_LEN; i++) {
        snprintf(acc, sizeof acc, "ch-%05u", i);
        snprintf(parent_cert, sizeof parent_cert, "ch:%u", i - 1);
        snprintf(serial, sizeof serial, "ch:%u", i);
        struct as_token_rec t = mk_tok(acc, NULL, 100000 + i, 0);
        t.login_cert = parent_cert;
        struct as_cert_rec c = mk_cert(serial, "x509", "spiffe://td/ch", acc, 1, 1, 2000000000);
        if (as_store_token_insert(st, &t) != AS_OK || as_store_cert_insert(st, &c) != AS_OK) {
            bad++;
        }
    }
    CHECK_INT(bad, 0);
    CHECK_INT(as_store_commit(st), AS_OK);

    /* Too long a chain: AS_ERR_INTERNAL, and nothing of it happened. */
    CHECK_INT(as_store_cert_revoke(st, "ch:0", 900, NULL, &was), AS_ERR_INTERNAL);
    CHECK_INT(cert_revoked_at(st, "ch:0"), 0);
    CHECK_INT(cert_revoked_at(st, "ch:1"), 0);
    CHECK(has_token(st, "ch-00001"));
    CHECK_INT(as_store_token_list(st, &all, &n), AS_OK);
    CHECK_INT(n, CHAIN_LEN);
    as_store_strv_free(all, n);
    all = NULL;

    /* Negative twin: half of it is followed to the end. */
    CHECK_INT(as_store_cert_revoke(st, "ch:5000", 900, NULL, &was), AS_OK);
    CHECK(!was);
    CHECK(has_token(st, "ch-05000"));
    CHECK(!has_token(st, "ch-05001"));
    CHECK(!has_token(st, "ch-10000"));
    CHECK_INT(cert_revoked_at(st, "ch:10000"), 900);
    CHECK_INT(cert_revoked_at(st, "ch:4999"), 0);
    CHECK_INT(as_store_token_list(st, &all, &n), AS_OK);
    CHECK_INT(n, 5000);
    as_store_strv_free(all, n);
    as_store_close(st);
}

static void test_mounts(void)
{
    struct as_store *st = open_fresh("mounts.db");
    struct as_mount_rec *got = NULL, **v = NULL;
    size_t n = 0;
    if (st == NULL) {
        return;
    }
    struct as_mount_rec k8s = {.path = "k8s",
                               .type = "jwt",
                               .accessor = "auth_jwt_0001",
                               .description = "kubernetes",
                               .config_json = "{\"a\":1}",
                               .created = 1700000001};
    struct as_mount_rec jwt = {
        .path = "jwt", .type = "jwt", .accessor = "auth_jwt_0002", .created = 1700000002};
    struct as_mount_rec cert = {.path = "cert",
                                .type = "cert",
                                .accessor = "auth_cert_0003",
                                .description = "",
                                .created = 1700000003};
    CHECK_INT(as_store_mount_insert(st, &k8s), AS_OK);
    CHECK_INT(as_store_mount_insert(st, &jwt), AS_OK);
    CHECK_INT(as_store_mount_insert(st, &cert), AS_OK);

    CHECK_INT(as_store_mount_get(st, "k8s", &got), AS_OK);
    CHECK(got != NULL);
    if (got != NULL) {
        CHECK_STR(got->path, "k8s");
        CHECK_STR(got->type, "jwt");
        CHECK_STR(got->accessor, "auth_jwt_0001");
        CHECK_STR(got->description, "kubernetes");
        CHECK_STR(got->config_json, "{\"a\":1}");
        CHECK_INT(got->created, 1700000001);
    }
    as_mount_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_mount_get(st, "jwt", &got), AS_OK);
    CHECK(got != NULL && got->description == NULL && got->config_json == NULL);
    as_mount_rec_free(got);
    got = NULL;

    /* Sorted by path. */
    CHECK_INT(as_store_mount_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(v[0]->path, "cert");
        CHECK_STR(v[0]->type, "cert");
        CHECK_STR(v[0]->description, "");
        CHECK_STR(v[1]->path, "jwt");
        CHECK_STR(v[2]->path, "k8s");
    }
    as_mount_recs_free(v, n);
    v = NULL;

    /* Configure, reconfigure, unconfigure. */
    CHECK_INT(as_store_mount_set_config(st, "jwt", "{\"bound_issuer\":\"x\"}"), AS_OK);
    CHECK_INT(as_store_mount_get(st, "jwt", &got), AS_OK);
    CHECK(got != NULL && got->config_json != NULL &&
          strcmp(got->config_json, "{\"bound_issuer\":\"x\"}") == 0);
    as_mount_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_mount_set_config(st, "jwt", NULL), AS_OK);
    CHECK_INT(as_store_mount_get(st, "jwt", &got), AS_OK);
    CHECK(got != NULL && got->config_json == NULL);
    as_mount_rec_free(got);
    got = NULL;

    /* Negative twins: duplicates, absent mounts, bad input. */
    struct as_mount_rec dup_path = {
        .path = "k8s", .type = "cert", .accessor = "auth_cert_new", .created = 1};
    struct as_mount_rec dup_acc = {
        .path = "k8s-2", .type = "jwt", .accessor = "auth_jwt_0001", .created = 1};
    CHECK_INT(as_store_mount_insert(st, &dup_path), AS_ERR_EXISTS);
    CHECK_INT(as_store_mount_insert(st, &dup_acc), AS_ERR_EXISTS);
    CHECK_INT(as_store_mount_get(st, "k8s-2", &got), AS_ERR_NOT_FOUND);
    CHECK(got == NULL);
    CHECK_INT(as_store_mount_get(st, "k8s", &got), AS_OK);
    CHECK(got != NULL && strcmp(got->type, "jwt") == 0); /* the original is unchanged */
    as_mount_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_mount_set_config(st, "absent", "{}"), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_mount_set_config(st, "jwt", ""), AS_ERR_INVALID);
    CHECK_INT(as_store_mount_set_config(st, "", "{}"), AS_ERR_INVALID);
    CHECK_INT(as_store_mount_set_config(st, NULL, "{}"), AS_ERR_INVALID);

    struct as_mount_rec bad[] = {
        {.path = "oidc", .type = "oidc", .accessor = "auth_oidc_1"},
        {.path = "x", .type = NULL, .accessor = "auth_x_1"},
        {.path = "", .type = "jwt", .accessor = "auth_jwt_x"},
        {.path = NULL, .type = "jwt", .accessor = "auth_jwt_y"},
        {.path = "y", .type = "jwt", .accessor = ""},
        {.path = "z", .type = "jwt", .accessor = NULL},
        {.path = "w", .type = "jwt", .accessor = "auth_jwt_w", .config_json = ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(as_store_mount_insert(st, &bad[i]), AS_ERR_INVALID);
    }
    CHECK_INT(as_store_mount_insert(st, NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_mount_get(st, "", &got), AS_ERR_INVALID);
    CHECK_INT(as_store_mount_get(st, NULL, &got), AS_ERR_INVALID);
    CHECK_INT(as_store_mount_list(st, NULL, &n), AS_ERR_INVALID);
    CHECK_INT(as_store_mount_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 3);
    as_mount_recs_free(v, n);
    as_mount_rec_free(NULL);
    as_mount_recs_free(NULL, 0);
    as_store_close(st);
}

static void test_roles(void)
{
    struct as_store *st = open_fresh("roles.db");
    char *json = NULL;
    char **names = NULL;
    size_t n = 0;
    char joined[256];
    if (st == NULL) {
        return;
    }
    const char *order[] = {"web", "api", "db", "Zeta", "a-b"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        CHECK_INT(as_store_role_put(st, "k8s", order[i], "{\"token_ttl\":60}"), AS_OK);
    }
    CHECK_INT(as_store_role_put(st, "other", "web", "{\"other\":true}"), AS_OK);

    CHECK_INT(as_store_role_get(st, "k8s", "web", &json), AS_OK);
    CHECK_STR(json, "{\"token_ttl\":60}");
    free(json);
    json = NULL;
    /* Same name, other mount: its own role. */
    CHECK_INT(as_store_role_get(st, "other", "web", &json), AS_OK);
    CHECK_STR(json, "{\"other\":true}");
    free(json);
    json = NULL;
    /* Put replaces. */
    CHECK_INT(as_store_role_put(st, "k8s", "web", "{\"token_ttl\":120}"), AS_OK);
    CHECK_INT(as_store_role_get(st, "k8s", "web", &json), AS_OK);
    CHECK_STR(json, "{\"token_ttl\":120}");
    free(json);
    json = NULL;

    /* Sorted (bytewise), one mount only. */
    CHECK_INT(as_store_role_list(st, "k8s", &names, &n), AS_OK);
    join_strv(names, n, joined, sizeof joined);
    CHECK_STR(joined, "Zeta,a-b,api,db,web");
    as_store_strv_free(names, n);
    names = NULL;

    CHECK_INT(as_store_role_delete(st, "k8s", "db"), AS_OK);
    CHECK_INT(as_store_role_list(st, "k8s", &names, &n), AS_OK);
    join_strv(names, n, joined, sizeof joined);
    CHECK_STR(joined, "Zeta,a-b,api,web");
    as_store_strv_free(names, n);
    names = NULL;

    /* Negative twins. */
    CHECK_INT(as_store_role_delete(st, "k8s", "db"), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_role_delete(st, "nomount", "web"), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_role_get(st, "k8s", "db", &json), AS_ERR_NOT_FOUND);
    CHECK(json == NULL);
    CHECK_INT(as_store_role_get(st, "other", "api", &json), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_role_list(st, "nomount", &names, &n), AS_OK);
    CHECK(names == NULL && n == 0);
    CHECK_INT(as_store_role_put(st, "", "r", "{}"), AS_ERR_INVALID);
    CHECK_INT(as_store_role_put(st, "k8s", "", "{}"), AS_ERR_INVALID);
    CHECK_INT(as_store_role_put(st, "k8s", "r", ""), AS_ERR_INVALID);
    CHECK_INT(as_store_role_put(st, NULL, "r", "{}"), AS_ERR_INVALID);
    CHECK_INT(as_store_role_put(st, "k8s", NULL, "{}"), AS_ERR_INVALID);
    CHECK_INT(as_store_role_put(st, "k8s", "r", NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_role_get(st, "k8s", "", &json), AS_ERR_INVALID);
    CHECK_INT(as_store_role_get(st, NULL, "web", &json), AS_ERR_INVALID);
    CHECK_INT(as_store_role_get(st, "k8s", "web", NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_role_delete(st, "", "web"), AS_ERR_INVALID);
    CHECK_INT(as_store_role_delete(st, "k8s", NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_role_list(st, "", &names, &n), AS_ERR_INVALID);
    CHECK_INT(as_store_role_list(st, NULL, &names, &n), AS_ERR_INVALID);
    CHECK_INT(as_store_role_get(st, "k8s", "web", &json), AS_OK); /* nothing was lost */
    free(json);
    as_store_close(st);
}

static void test_mount_delete(void)
{
    struct as_store *st = open_fresh("mountdel.db");
    struct as_mount_rec *got = NULL;
    char **names = NULL;
    size_t n = 0, ntok = 99;
    if (st == NULL) {
        return;
    }
    struct as_mount_rec k8s = {
        .path = "k8s", .type = "jwt", .accessor = "auth_jwt_k8s", .created = 1};
    struct as_mount_rec other = {
        .path = "other", .type = "cert", .accessor = "auth_cert_o", .created = 2};
    struct as_mount_rec empty = {
        .path = "empty", .type = "jwt", .accessor = "auth_jwt_e", .created = 3};
    CHECK_INT(as_store_mount_insert(st, &k8s), AS_OK);
    CHECK_INT(as_store_mount_insert(st, &other), AS_OK);
    CHECK_INT(as_store_mount_insert(st, &empty), AS_OK);
    CHECK_INT(as_store_role_put(st, "k8s", "r1", "{}"), AS_OK);
    CHECK_INT(as_store_role_put(st, "k8s", "r2", "{}"), AS_OK);
    CHECK_INT(as_store_role_put(st, "other", "r1", "{}"), AS_OK);

    /*
     * K1 (k8s) with a child K1c created from it through the token store; K2 (k8s) obtained
     * CK2, and L logged in with CK2 on the other mount; O (other) obtained CO; T is a
     * token-store token.
     */
    static char k8s_m[] = "k8s", other_m[] = "other";
    static char k1[] = "md-K1", k2[] = "md-K2";
    struct as_token_rec toks[] = {
        mk_tok(k1, NULL, 600, 0),     mk_tok("md-K1c", k1, 601, 0), mk_tok(k2, NULL, 602, 0),
        mk_tok("md-L", NULL, 603, 0), mk_tok("md-O", NULL, 604, 0), mk_tok("md-T", NULL, 605, 0),
    };
    toks[0].mount = k8s_m;
    toks[2].mount = k8s_m;
    toks[3].mount = other_m;
    toks[3].login_cert = "md:ck2";
    toks[4].mount = other_m;
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        CHECK_INT(as_store_token_insert(st, &toks[i]), AS_OK);
    }
    struct as_cert_rec certs[] = {
        mk_cert("md:ck2", "x509", "spiffe://td/k2", k2, 1, 1, 2000000000),
        mk_cert("md:ck1c", "jwt", "spiffe://td/k1c", "md-K1c", 1, 1, 2000000000),
        mk_cert("md:cl", "x509", "spiffe://td/l", "md-L", 1, 1, 2000000000),
        mk_cert("md:co", "x509", "spiffe://td/o", "md-O", 1, 1, 2000000000),
    };
    for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++) {
        CHECK_INT(as_store_cert_insert(st, &certs[i]), AS_OK);
    }

    /* Inside the caller's transaction, a rollback brings everything back. */
    CHECK_INT(as_store_begin(st), AS_OK);
    CHECK_INT(as_store_mount_delete(st, "k8s", &ntok), AS_OK);
    CHECK_INT(ntok, 4);
    as_store_rollback(st);
    CHECK_INT(as_store_mount_get(st, "k8s", &got), AS_OK);
    as_mount_rec_free(got);
    got = NULL;
    CHECK(has_token(st, k1) && has_token(st, "md-L"));
    CHECK_INT(cert_revoked_at(st, "md:ck2"), 0);

    int64_t t0 = as_now();
    CHECK_INT(as_store_mount_delete(st, "k8s", &ntok), AS_OK);
    int64_t t1 = as_now();
    CHECK_INT(ntok, 4); /* K1, K1c, K2 and, through CK2, L */
    CHECK_INT(as_store_mount_get(st, "k8s", &got), AS_ERR_NOT_FOUND);
    const char *gone[] = {k1, "md-K1c", k2, "md-L"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        CHECK(!has_token(st, gone[i]));
    }
    const char *revoked[] = {"md:ck2", "md:ck1c", "md:cl"};
    for (size_t i = 0; i < sizeof revoked / sizeof revoked[0]; i++) {
        int64_t at = cert_revoked_at(st, revoked[i]);
        CHECK(at >= t0 && at <= t1);
    }
    CHECK_INT(as_store_role_list(st, "k8s", &names, &n), AS_OK);
    CHECK_INT(n, 0);
    as_store_strv_free(names, n);
    names = NULL;

    /* Negative twin: the other mount, its roles, tokens and SVIDs are untouched. */
    CHECK_INT(as_store_mount_get(st, "other", &got), AS_OK);
    as_mount_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_role_list(st, "other", &names, &n), AS_OK);
    CHECK_INT(n, 1);
    as_store_strv_free(names, n);
    names = NULL;
    CHECK(has_token(st, "md-O") && has_token(st, "md-T"));
    CHECK_INT(cert_revoked_at(st, "md:co"), 0);

    /* A mount without tokens; an absent one; bad input. */
    CHECK_INT(as_store_mount_delete(st, "empty", &ntok), AS_OK);
    CHECK_INT(ntok, 0);
    ntok = 99;
    CHECK_INT(as_store_mount_delete(st, "k8s", &ntok), AS_ERR_NOT_FOUND);
    CHECK_INT(ntok, 0);
    CHECK_INT(as_store_mount_delete(st, "", &ntok), AS_ERR_INVALID);
    CHECK_INT(as_store_mount_delete(st, NULL, NULL), AS_ERR_INVALID);
    /* Tokens of an absent mount stay: NOT_FOUND undoes nothing but also deletes nothing. */
    static char ghost_m[] = "ghost";
    struct as_token_rec g = mk_tok("md-G", NULL, 606, 0);
    g.mount = ghost_m;
    CHECK_INT(as_store_token_insert(st, &g), AS_OK);
    CHECK_INT(as_store_mount_delete(st, "ghost", NULL), AS_ERR_NOT_FOUND);
    CHECK(has_token(st, "md-G"));
    /* ntokens may be NULL. */
    CHECK_INT(as_store_mount_delete(st, "other", NULL), AS_OK);
    CHECK(!has_token(st, "md-O") && has_token(st, "md-T"));
    CHECK(cert_revoked_at(st, "md:co") > 0);
    as_store_close(st);
}

/* ---- schema version 4: intentions ---- */

/* The intentions change counter, or -1 if it cannot be read. */
static int64_t int_version(struct as_store *st)
{
    int64_t v = -1;
    if (as_store_intention_version(st, &v) != AS_OK) {
        return -1;
    }
    return v;
}

/* An intention record with borrowed strings (never passed to as_intention_rec_free). */
static struct as_intention_rec mk_int(const char *id, char *src, char *dst, char *action,
                                      char *desc, int64_t created, int64_t updated)
{
    struct as_intention_rec i;
    memset(&i, 0, sizeof i);
    snprintf(i.id, sizeof i.id, "%s", id);
    i.source = src;
    i.destination = dst;
    i.action = action;
    i.description = desc;
    i.created = created;
    i.updated = updated;
    return i;
}

static char g_allow[] = "allow";
static char g_deny[] = "deny";
static char g_any[] = "*";
static char g_web[] = "spiffe://td/web";
static char g_db[] = "spiffe://td/db";
static char g_prod[] = "spiffe://td/ns/prod/*";

static void test_intentions(void)
{
    struct as_store *st = open_fresh("intentions.db");
    struct as_intention_rec *got = NULL, **v = NULL;
    size_t n = 0;
    if (st == NULL) {
        return;
    }
    /* Never written: version 0, an empty list. */
    CHECK_INT(int_version(st), 0);
    CHECK_INT(as_store_intention_list(st, &v, &n), AS_OK);
    CHECK(v == NULL && n == 0);

    /* Ids in an order different from insertion, so the list order is the store's doing. */
    static const char id_b[] = "b0f4c2de-0000-4000-8000-000000000002";
    static const char id_a[] = "a0f4c2de-0000-4000-8000-000000000001";
    static const char id_c[] = "c0f4c2de-0000-4000-8000-000000000003";
    static char desc[] = "web may reach the database";
    struct as_intention_rec b = mk_int(id_b, g_web, g_db, g_allow, desc, 1000, 1000);
    struct as_intention_rec a = mk_int(id_a, g_any, g_prod, g_deny, NULL, 1001, 1001);
    struct as_intention_rec c = mk_int(id_c, g_prod, g_any, g_allow, "", 1002, 1002);
    CHECK_INT(as_store_intention_put(st, &b), AS_OK);
    CHECK_INT(int_version(st), 1);
    CHECK_INT(as_store_intention_put(st, &a), AS_OK);
    CHECK_INT(as_store_intention_put(st, &c), AS_OK);
    CHECK_INT(int_version(st), 3);

    CHECK_INT(as_store_intention_get(st, id_b, &got), AS_OK);
    CHECK(got != NULL);
    if (got != NULL) {
        CHECK_STR(got->id, id_b);
        CHECK_STR(got->source, g_web);
        CHECK_STR(got->destination, g_db);
        CHECK_STR(got->action, "allow");
        CHECK_STR(got->description, desc);
        CHECK_INT(got->created, 1000);
        CHECK_INT(got->updated, 1000);
    }
    as_intention_rec_free(got);
    got = NULL;
    /* No description stays NULL; an empty one stays empty. */
    CHECK_INT(as_store_intention_get(st, id_a, &got), AS_OK);
    CHECK(got != NULL && got->description == NULL && strcmp(got->action, "deny") == 0);
    as_intention_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_intention_get(st, id_c, &got), AS_OK);
    CHECK(got != NULL && got->description != NULL && got->description[0] == '\0');
    as_intention_rec_free(got);
    got = NULL;

    /* Listed by id. */
    CHECK_INT(as_store_intention_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(v[0]->id, id_a);
        CHECK_STR(v[0]->destination, g_prod);
        CHECK_STR(v[1]->id, id_b);
        CHECK_STR(v[2]->id, id_c);
        CHECK_STR(v[2]->source, g_prod);
    }
    as_intention_recs_free(v, n);
    v = NULL;
    /* Reads did not move the version. */
    CHECK_INT(int_version(st), 3);

    /* Replace: every field but created is the new one; created is the first put's. */
    struct as_intention_rec b2 = mk_int(id_b, g_any, g_db, g_deny, NULL, 5000, 2000);
    CHECK_INT(as_store_intention_put(st, &b2), AS_OK);
    CHECK_INT(int_version(st), 4);
    CHECK_INT(as_store_intention_get(st, id_b, &got), AS_OK);
    CHECK(got != NULL);
    if (got != NULL) {
        CHECK_STR(got->source, "*");
        CHECK_STR(got->destination, g_db);
        CHECK_STR(got->action, "deny");
        CHECK(got->description == NULL);
        CHECK_INT(got->created, 1000);
        CHECK_INT(got->updated, 2000);
    }
    as_intention_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_intention_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 3); /* replaced, not added */
    as_intention_recs_free(v, n);
    v = NULL;

    /* Delete bumps; deleting again is NOT_FOUND and does not. */
    CHECK_INT(as_store_intention_delete(st, id_a), AS_OK);
    CHECK_INT(int_version(st), 5);
    CHECK_INT(as_store_intention_get(st, id_a, &got), AS_ERR_NOT_FOUND);
    CHECK(got == NULL);
    CHECK_INT(as_store_intention_delete(st, id_a), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_intention_delete(st, "no-such-id"), AS_ERR_NOT_FOUND);
    CHECK_INT(int_version(st), 5);
    CHECK_INT(as_store_intention_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(v[0]->id, id_b);
        CHECK_STR(v[1]->id, id_c);
    }
    as_intention_recs_free(v, n);
    v = NULL;

    /* A rolled-back put takes its bump with it; a committed one keeps it. */
    CHECK_INT(as_store_begin(st), AS_OK);
    CHECK_INT(as_store_intention_put(st, &a), AS_OK);
    CHECK_INT(as_store_intention_delete(st, id_c), AS_OK);
    CHECK_INT(int_version(st), 7); /* the transaction sees its own writes */
    as_store_rollback(st);
    CHECK_INT(int_version(st), 5);
    CHECK_INT(as_store_intention_get(st, id_a, &got), AS_ERR_NOT_FOUND);
    CHECK_INT(as_store_intention_get(st, id_c, &got), AS_OK);
    as_intention_rec_free(got);
    got = NULL;
    CHECK_INT(as_store_begin(st), AS_OK);
    CHECK_INT(as_store_intention_put(st, &a), AS_OK);
    CHECK_INT(as_store_commit(st), AS_OK);
    CHECK_INT(int_version(st), 6);

    /* Negative twins: bad records are refused before anything is written. */
    struct as_intention_rec bad[] = {
        mk_int("", g_web, g_db, g_allow, NULL, 1, 1),
        mk_int("bad-1", NULL, g_db, g_allow, NULL, 1, 1),
        mk_int("bad-2", g_web, NULL, g_allow, NULL, 1, 1),
        mk_int("bad-3", "", g_db, g_allow, NULL, 1, 1),
        mk_int("bad-4", g_web, "", g_allow, NULL, 1, 1),
        mk_int("bad-5", g_web, g_db, NULL, NULL, 1, 1),
        mk_int("bad-6", g_web, g_db, "Allow", NULL, 1, 1),
        mk_int("bad-7", g_web, g_db, "permit", NULL, 1, 1),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(as_store_intention_put(st, &bad[i]), AS_ERR_INVALID);
    }
    /* An id that fills its array has no terminator: refused, never read past. */
    struct as_intention_rec full = mk_int("x", g_web, g_db, g_allow, NULL, 1, 1);
    memset(full.id, 'f', sizeof full.id);
    CHECK_INT(as_store_intention_put(st, &full), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_put(st, NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_put(NULL, &a), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_get(st, "", &got), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_get(st, NULL, &got), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_get(st, id_a, NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_delete(st, ""), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_delete(st, NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_list(st, NULL, &n), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_version(st, NULL), AS_ERR_INVALID);
    CHECK_INT(as_store_intention_version(NULL, NULL), AS_ERR_INVALID);
    CHECK_INT(int_version(st), 6);
    CHECK_INT(as_store_intention_list(st, &v, &n), AS_OK);
    CHECK_INT(n, 3);
    as_intention_recs_free(v, n);
    as_intention_rec_free(NULL);
    as_intention_recs_free(NULL, 0);
    as_store_close(st);

    /* Rows and counter are durable across a reopen. */
    char path[256];
    db_path("intentions.db", path, sizeof path);
    st = NULL;
    CHECK_INT(as_store_open(path, &st), AS_OK);
    if (st != NULL) {
        CHECK_INT(int_version(st), 6);
        CHECK_INT(as_store_intention_get(st, id_b, &got), AS_OK);
        CHECK(got != NULL && got->created == 1000 && got->updated == 2000);
        as_intention_rec_free(got);
        got = NULL;
    }
    as_store_close(st);
}

/*
 * "By any process": another store on the same file (its own connection, as another process
 * would have) sees the counter move with every write of the first, and only after commit.
 */
static void test_intention_version_shared(void)
{
    char path[256];
    struct as_store *w = NULL, *r = NULL;

    db_path("intentions-shared.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &w), AS_OK);
    CHECK_INT(as_store_open(path, &r), AS_OK);
    if (w == NULL || r == NULL) {
        as_store_close(w);
        as_store_close(r);
        return;
    }
    CHECK_INT(int_version(r), 0);
    struct as_intention_rec i = mk_int("shared-1", g_web, g_db, g_allow, NULL, 1, 1);
    CHECK_INT(as_store_intention_put(w, &i), AS_OK);
    CHECK_INT(int_version(r), 1);
    CHECK_INT(as_store_begin(w), AS_OK);
    CHECK_INT(as_store_intention_delete(w, "shared-1"), AS_OK);
    CHECK_INT(int_version(r), 1); /* not committed yet */
    CHECK_INT(as_store_commit(w), AS_OK);
    CHECK_INT(int_version(r), 2);
    struct as_intention_rec *got = NULL;
    CHECK_INT(as_store_intention_get(r, "shared-1", &got), AS_ERR_NOT_FOUND);
    /* Other settings writes leave the counter alone. */
    CHECK_INT(as_store_setting_put(w, "unrelated", "x", 1), AS_OK);
    CHECK_INT(int_version(r), 2);
    as_store_close(w);
    as_store_close(r);
}

/* The version-3 additions exactly as they shipped, on top of V1_DDL V2_DDL. */
#define V3_DDL                                              \
    "ALTER TABLE tokens ADD COLUMN login_cert TEXT;"        \
    "CREATE INDEX tokens_login_cert ON tokens(login_cert);" \
    "CREATE INDEX tokens_mount ON tokens(mount);"           \
    "CREATE TABLE auth_mounts ("                            \
    "  path TEXT PRIMARY KEY,"                              \
    "  type TEXT NOT NULL CHECK (type IN ('jwt', 'cert'))," \
    "  accessor TEXT UNIQUE NOT NULL,"                      \
    "  description TEXT,"                                   \
    "  config TEXT,"                                        \
    "  created INTEGER NOT NULL"                            \
    ");"                                                    \
    "CREATE TABLE auth_roles ("                             \
    "  mount TEXT NOT NULL,"                                \
    "  name TEXT NOT NULL,"                                 \
    "  json TEXT NOT NULL,"                                 \
    "  PRIMARY KEY (mount, name)"                           \
    ");"

/* A version-3 database as the previous release left it: a login token, a mount and a role. */
#define V3_ROWS                                                                            \
    "INSERT INTO tokens (accessor, secret_hash, policies, mount, creation_time, "          \
    "  expire_time, creation_ttl, explicit_max_ttl, period, num_uses, renewable, orphan, " \
    "  login_cert) "                                                                       \
    "VALUES ('v3-tok', zeroblob(32), '[\"default\"]', 'cert', 1700000000, 0, 0, 0, 0, 0, " \
    "  1, 1, 'v3:01');"                                                                    \
    "INSERT INTO auth_mounts (path, type, accessor, created) "                             \
    "VALUES ('cert', 'cert', 'auth_cert_v3', 1700000000);"                                 \
    "INSERT INTO auth_roles (mount, name, json) VALUES ('cert', 'web', '{}');"             \
    "INSERT INTO settings (key, value) VALUES ('v3-key', X'03');"                          \
    "PRAGMA user_version = 3;"

static const char g_has_intentions[] =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'intentions'";

static void test_migrate_v3(void)
{
    char path[256];
    struct as_store *st = NULL;
    struct as_token_rec *tok = NULL;
    struct as_mount_rec *m = NULL;
    char *json = NULL;

    db_path("v3.db", path, sizeof path);
    raw_exec(path, V1_DDL V2_DDL V3_DDL V3_ROWS);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), 3);
    CHECK_INT(raw_pragma_int(path, g_has_intentions), 0);

    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), SCHEMA_VERSION);
    CHECK_INT(raw_pragma_int(path, g_has_intentions), 1);
    if (st != NULL) {
        /* Version-3 rows survive. */
        CHECK_INT(as_store_token_by_accessor(st, "v3-tok", &tok), AS_OK);
        CHECK(tok != NULL && tok->login_cert != NULL && strcmp(tok->login_cert, "v3:01") == 0);
        as_token_rec_free(tok);
        CHECK_INT(as_store_mount_get(st, "cert", &m), AS_OK);
        as_mount_rec_free(m);
        CHECK_INT(as_store_role_get(st, "cert", "web", &json), AS_OK);
        free(json);
        /* The new table starts empty with version 0, and works. */
        CHECK_INT(int_version(st), 0);
        struct as_intention_rec i = mk_int("v3-int", g_any, g_db, g_deny, NULL, 7, 7);
        CHECK_INT(as_store_intention_put(st, &i), AS_OK);
        CHECK_INT(int_version(st), 1);
    }
    as_store_close(st);
    st = NULL;

    /* Reopening runs no migration again and keeps the new row and the counter. */
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), SCHEMA_VERSION);
    if (st != NULL) {
        struct as_intention_rec *got = NULL;
        CHECK_INT(as_store_intention_get(st, "v3-int", &got), AS_OK);
        CHECK(got != NULL && got->created == 7);
        as_intention_rec_free(got);
        CHECK_INT(int_version(st), 1);
    }
    as_store_close(st);
    st = NULL;

    /* The migration's CHECK is in force even for SQL that bypasses the store's own checks. */
    raw_exec(path, "INSERT INTO intentions VALUES ('ok', '*', '*', 'allow', NULL, 1, 1)");
    {
        sqlite3 *db = NULL;
        CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
        CHECK(sqlite3_exec(db,
                           "INSERT INTO intentions VALUES ('x', '*', '*', 'permit', NULL, "
                           "1, 1)",
                           NULL, NULL, NULL) != SQLITE_OK);
        sqlite3_close(db);
    }

    /*
     * Negative twin: a version-3 file on which migration 4 fails (a table of that name is in
     * the way). Open fails, the file stays at version 3 and its rows are intact.
     */
    db_path("v3-bad.db", path, sizeof path);
    raw_exec(path, V1_DDL V2_DDL V3_DDL "CREATE TABLE intentions (x INTEGER);" V3_ROWS);
    CHECK_INT(as_store_open(path, &st), AS_ERR_STORE);
    CHECK(st == NULL);
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), 3);
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM pragma_table_info('intentions')"), 1);
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM tokens"), 1);
    CHECK_INT(raw_pragma_int(path, "SELECT count(*) FROM auth_roles"), 1);
}

/* ---- inserts in the group transaction (on the store's writer connection) ---- */

#define BATCH_THREADS 8
#define BATCH_ROWS 40
#define BATCH_TX_EVERY 10 /* every tenth row, an explicit transaction of the thread's own */

struct batcher {
    struct as_store *st;
    pthread_barrier_t *bar;
    int id;
    int errors;
    int64_t seq[BATCH_ROWS]; /* the seq each certificate insert returned */
};

static void batch_serial(int thread, int i, char *out, size_t len)
{
    snprintf(out, len, "b%d:%02x", thread, i);
}

static void batch_accessor(int thread, const char *what, int i, char *out, size_t len)
{
    snprintf(out, len, "b%d-%s%d", thread, what, i);
}

/*
 * One worker: certificate and token inserts (group transaction), each read back at once on this
 * thread's own connection while the other threads keep inserting, every tenth row inside an
 * explicit transaction of its own (committed or rolled back), and duplicates that must fail
 * alone. Then, once every worker is done, it reads every row of every worker on its own
 * connection.
 */
static void *batcher_main(void *arg)
{
    struct batcher *b = arg;
    char serial[72], acc[AS_ACCESSOR_LEN + 1];
    uint64_t last = 0;

    for (int i = 0; i < BATCH_ROWS; i++) {
        batch_serial(b->id, i, serial, sizeof serial);
        struct as_cert_rec c = mk_cert(serial, "x509", g_spiffe, NULL, 1, 1000, 2000);
        b->errors += as_store_cert_insert(b->st, &c) != AS_OK;
        b->seq[i] = c.seq;
        /* Each insert is synced before the next, so the next goes into a later group
         * transaction: every one is a later commit, and it is this thread's to sync. */
        uint64_t mine = as_store_my_commit(b->st);
        b->errors += mine <= last;
        last = mine;
        b->errors += as_store_sync_mine(b->st) != AS_OK;
        b->errors += cert_seq(b->st, serial) != c.seq || c.seq <= 0;

        batch_accessor(b->id, "k", i, acc, sizeof acc);
        struct as_token_rec t = mk_tok(acc, NULL, (unsigned)(b->id * 1000 + i), 0);
        b->errors += as_store_token_insert(b->st, &t) != AS_OK;
        b->errors += !has_token(b->st, acc);

        /* A duplicate fails its own row only, in whatever batch it lands. */
        if (i % 7 == 3) {
            batch_serial(b->id, i - 1, serial, sizeof serial);
            struct as_cert_rec dup = mk_cert(serial, "x509", g_spiffe, NULL, 1, 1000, 2000);
            b->errors += as_store_cert_insert(b->st, &dup) != AS_ERR_EXISTS;
            b->errors += as_store_token_insert(b->st, &t) != AS_ERR_EXISTS;
        }
        if (i % BATCH_TX_EVERY == 0) {
            /* Inside the thread's own transaction inserts run on its own connection: they see
             * the batched rows and conflict with them, and a rollback takes them back. */
            b->errors += as_store_begin(b->st) != AS_OK;
            batch_accessor(b->id, "x", i, acc, sizeof acc);
            struct as_token_rec x = mk_tok(acc, NULL, (unsigned)(900000 + b->id * 1000 + i), 0);
            b->errors += as_store_token_insert(b->st, &x) != AS_OK;
            b->errors += as_store_token_insert(b->st, &t) != AS_ERR_EXISTS;
            b->errors += !has_token(b->st, acc);
            if (i % (2 * BATCH_TX_EVERY) == 0) {
                b->errors += as_store_commit(b->st) != AS_OK;
            } else {
                as_store_rollback(b->st);
            }
        }
    }
    pthread_barrier_wait(b->bar);
    for (int w = 0; w < BATCH_THREADS; w++) {
        for (int i = 0; i < BATCH_ROWS; i++) {
            batch_serial(w, i, serial, sizeof serial);
            b->errors += cert_seq(b->st, serial) <= 0;
            batch_accessor(w, "k", i, acc, sizeof acc);
            b->errors += !has_token(b->st, acc);
            if (i % BATCH_TX_EVERY == 0) {
                batch_accessor(w, "x", i, acc, sizeof acc);
                b->errors += has_token(b->st, acc) != (i % (2 * BATCH_TX_EVERY) == 0);
            }
        }
    }
    return NULL;
}

static void test_batch_threads(void)
{
    struct as_store *st = open_fresh("batch.db");
    pthread_t th[BATCH_THREADS];
    struct batcher *b = calloc(BATCH_THREADS, sizeof *b);
    pthread_barrier_t bar;

    CHECK(b != NULL);
    if (st == NULL || b == NULL) {
        as_store_close(st);
        free(b);
        return;
    }
    uint64_t epoch = as_store_epoch(st);
    pthread_barrier_init(&bar, NULL, BATCH_THREADS);
    for (int i = 0; i < BATCH_THREADS; i++) {
        b[i].st = st;
        b[i].bar = &bar;
        b[i].id = i;
        CHECK_INT(pthread_create(&th[i], NULL, batcher_main, &b[i]), 0);
    }
    for (int i = 0; i < BATCH_THREADS; i++) {
        CHECK_INT(pthread_join(th[i], NULL), 0);
        CHECK_INT(b[i].errors, 0);
    }
    pthread_barrier_destroy(&bar);
    /* Inserts, batched or in a transaction, change nothing a cache may hold. */
    CHECK(as_store_epoch(st) == epoch);

    /* Every seq was handed out once. */
    int64_t seen = 0, dups = 0;
    for (int i = 0; i < BATCH_THREADS; i++) {
        for (int j = 0; j < BATCH_ROWS; j++) {
            for (int k = 0; k < BATCH_THREADS; k++) {
                for (int l = 0; l < BATCH_ROWS; l++) {
                    dups += (k != i || l != j) && b[k].seq[l] == b[i].seq[j];
                }
            }
            seen++;
        }
    }
    CHECK_INT(seen, BATCH_THREADS * BATCH_ROWS);
    CHECK_INT(dups, 0);
    char **v = NULL;
    size_t n = 0;
    CHECK_INT(as_store_token_list(st, &v, &n), AS_OK);
    CHECK_INT(n, BATCH_THREADS *
                     (BATCH_ROWS + (BATCH_ROWS + 2 * BATCH_TX_EVERY - 1) / (2 * BATCH_TX_EVERY)));
    as_store_strv_free(v, n);
    as_store_close(st);
    free(b);
}

/* Records as_store_my_commit after one certificate insert made on a thread of its own. */
struct committer {
    struct as_store *st;
    const char *serial;
    enum as_err r;
    enum as_err sync;
    uint64_t before;
    uint64_t after;
};

static void *committer_main(void *arg)
{
    struct committer *m = arg;
    struct as_cert_rec c = mk_cert(m->serial, "x509", g_spiffe, NULL, 1, 1000, 2000);
    m->before = as_store_my_commit(m->st);
    m->r = as_store_cert_insert(m->st, &c);
    m->after = as_store_my_commit(m->st);
    m->sync = as_store_sync_mine(m->st);
    return NULL;
}

/*
 * The commit of a group transaction belongs to every caller whose row went in, whichever thread
 * commits it: a thread whose first store call is an insert has that commit as its latest, later
 * than any commit before; inserts with no sync between them share it.
 */
static void test_batch_commits(void)
{
    struct as_store *st = open_fresh("batch-commits.db");
    struct committer m[2] = {{.serial = "cm:01"}, {.serial = "cm:03"}};
    pthread_t th;

    if (st == NULL) {
        return;
    }
    m[0].st = m[1].st = st;
    CHECK_INT(pthread_create(&th, NULL, committer_main, &m[0]), 0);
    CHECK_INT(pthread_join(th, NULL), 0);
    struct as_cert_rec c = mk_cert("cm:02", "x509", g_spiffe, NULL, 1, 1000, 2000);
    CHECK_INT(as_store_cert_insert(st, &c), AS_OK);
    uint64_t mine = as_store_my_commit(st);
    CHECK_INT(pthread_create(&th, NULL, committer_main, &m[1]), 0);
    CHECK_INT(pthread_join(th, NULL), 0);
    for (int i = 0; i < 2; i++) {
        CHECK_INT(m[i].r, AS_OK);
        CHECK_INT(m[i].sync, AS_OK);
        CHECK_INT(m[i].before, 0);
    }
    CHECK(m[0].after > 0);
    CHECK(mine > m[0].after);
    CHECK(m[1].after == mine); /* the same group: this thread has not synced since its insert */

    /* A row that failed committed nothing: no later commit is the caller's to wait for. */
    CHECK_INT(as_store_cert_insert(st, &c), AS_ERR_EXISTS);
    CHECK(as_store_my_commit(st) == mine);
    struct as_token_rec t = mk_tok("cm-tok", NULL, 5, 0);
    t.num_uses = -1;
    CHECK_INT(as_store_token_insert(st, &t), AS_ERR_INVALID);
    CHECK(as_store_my_commit(st) == mine);
    CHECK_INT(as_store_sync_mine(st), AS_OK);
    as_store_close(st);
}

/* One token insert on a thread of its own, synced only when asked. */
struct grouper {
    struct as_store *st;
    const char *accessor;
    bool sync;
    enum as_err r;
};

static void *grouper_main(void *arg)
{
    struct grouper *g = arg;
    unsigned last = (unsigned char)g->accessor[strlen(g->accessor) - 1]; /* distinct hashes */
    struct as_token_rec t = mk_tok(g->accessor, NULL, 7000 + last, 0);
    g->r = as_store_token_insert(g->st, &t);
    if (g->r == AS_OK && g->sync) {
        g->r = as_store_sync_mine(g->st);
    }
    return NULL;
}

/*
 * The group transaction: another thread's insert is invisible here until something commits it,
 * which is a sync covering it, or any other write of this store (it needs SQLite's write lock).
 */
static void test_group_visibility(void)
{
    struct as_store *st = open_fresh("group.db");
    pthread_t th;
    if (st == NULL) {
        return;
    }
    struct grouper g1 = {st, "grp-1", false, AS_ERR_INTERNAL};
    CHECK_INT(pthread_create(&th, NULL, grouper_main, &g1), 0);
    CHECK_INT(pthread_join(th, NULL), 0);
    CHECK_INT(g1.r, AS_OK);
    CHECK(!has_token(st, "grp-1"));
    /* A write of this thread commits the group first. */
    CHECK_INT(as_store_setting_put(st, "g", "1", 1), AS_OK);
    CHECK(has_token(st, "grp-1"));

    struct grouper g2 = {st, "grp-2", false, AS_ERR_INTERNAL};
    CHECK_INT(pthread_create(&th, NULL, grouper_main, &g2), 0);
    CHECK_INT(pthread_join(th, NULL), 0);
    CHECK_INT(g2.r, AS_OK);
    CHECK(!has_token(st, "grp-2"));
    /* So does a sync of everything. */
    CHECK_INT(as_store_sync(st), AS_OK);
    CHECK(has_token(st, "grp-2"));

    /* And the inserting thread's own sync, before it returns. */
    struct grouper g3 = {st, "grp-3", true, AS_ERR_INTERNAL};
    CHECK_INT(pthread_create(&th, NULL, grouper_main, &g3), 0);
    CHECK_INT(pthread_join(th, NULL), 0);
    CHECK_INT(g3.r, AS_OK);
    CHECK(has_token(st, "grp-3"));
    as_store_close(st);
}

/*
 * The writer connection keeps its page cache between batches; what other connections (of this
 * store's threads, or of another store on the same file) wrote in between must still count.
 */
static void test_batch_sees_other_writes(void)
{
    char path[256];
    struct as_store *a = NULL, *b = NULL;
    int64_t at = 0;
    bool was = true;

    db_path("batch-other.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &a), AS_OK);
    CHECK_INT(as_store_open(path, &b), AS_OK);
    if (a == NULL || b == NULL) {
        as_store_close(a);
        as_store_close(b);
        return;
    }
    /* Deleted on this thread's connection between two batches: the accessor is free again. */
    struct as_token_rec t = mk_tok("other-1", NULL, 80, 0);
    CHECK_INT(as_store_token_insert(a, &t), AS_OK);
    CHECK_INT(as_store_token_delete(a, "other-1", false, NULL, NULL), AS_OK);
    CHECK_INT(as_store_token_insert(a, &t), AS_OK);
    CHECK(has_token(a, "other-1"));

    /* Committed in an explicit transaction: the batch sees the row and refuses a duplicate. */
    struct as_token_rec u = mk_tok("other-2", NULL, 81, 0);
    CHECK_INT(as_store_begin(a), AS_OK);
    CHECK_INT(as_store_token_insert(a, &u), AS_OK);
    CHECK_INT(as_store_commit(a), AS_OK);
    CHECK_INT(as_store_token_insert(a, &u), AS_ERR_EXISTS);

    /* Another store's writer in between: each sees the other's rows once they are synced (an
     * open group transaction holds SQLite's write lock, as a request holds it until it syncs
     * before answering). */
    struct as_cert_rec c1 = mk_cert("ot:01", "x509", g_spiffe, NULL, 1, 1000, 2000);
    struct as_cert_rec c2 = mk_cert("ot:02", "x509", g_spiffe, NULL, 1, 1000, 2000);
    CHECK_INT(as_store_cert_insert(a, &c1), AS_OK);
    CHECK_INT(as_store_sync_mine(a), AS_OK);
    CHECK_INT(as_store_cert_insert(b, &c2), AS_OK);
    CHECK_INT(as_store_sync_mine(b), AS_OK);
    CHECK(c2.seq > c1.seq);
    CHECK_INT(as_store_cert_insert(a, &c2), AS_ERR_EXISTS);
    CHECK_INT(as_store_sync_mine(a), AS_OK);
    CHECK_INT(as_store_cert_insert(b, &c1), AS_ERR_EXISTS);
    CHECK_INT(as_store_token_insert(b, &t), AS_ERR_EXISTS);
    CHECK_INT(as_store_sync_mine(b), AS_OK);

    /* A revocation on another connection, then a batch: the batch neither undoes nor hides it. */
    CHECK_INT(as_store_cert_revoke(b, "ot:01", 1500, &at, &was), AS_OK);
    CHECK(!was);
    struct as_cert_rec c3 = mk_cert("ot:03", "x509", g_spiffe, NULL, 1, 1000, 2000);
    CHECK_INT(as_store_cert_insert(a, &c3), AS_OK);
    CHECK(c3.seq > c2.seq);
    CHECK_INT(cert_revoked_at(a, "ot:01"), 1500);
    CHECK_INT(cert_revoked_at(b, "ot:03"), 0);
    as_store_close(b);
    as_store_close(a);
}

/* An insert in the group transaction: the writer connection is closed by as_store_close, and
 * the inserting thread's exit only ever closes the thread's own. */
static enum as_err insert_token(struct as_store *st)
{
    struct as_token_rec t = mk_tok("close-tok", NULL, 90, 0);
    return as_store_token_insert(st, &t);
}

static void test_batch_close(void)
{
    char path[256];
    struct closer c = {
        .work = insert_token, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct as_store *st = NULL;

    /* Open and close with nothing done: the writer connection exists and is closed. */
    db_path("batch-close.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    as_store_close(st);
    st = NULL;

    CHECK_INT(as_store_open(path, &c.st), AS_OK);
    if (c.st == NULL) {
        return;
    }
    close_under_thread(&c);

    /* The close left the batch's row on disk, and a new store's writer finds it. */
    CHECK_INT(as_store_open(path, &st), AS_OK);
    if (st != NULL) {
        CHECK(has_token(st, "close-tok"));
        struct as_token_rec t = mk_tok("close-tok", NULL, 90, 0);
        CHECK_INT(as_store_token_insert(st, &t), AS_ERR_EXISTS);
    }
    as_store_close(st);
}

int main(void)
{
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_open();
    test_two_stores();

    char path[256];
    struct as_store *st = NULL;
    db_path("main.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    if (st != NULL) {
        test_settings(st);
        test_tokens_basic(st);
        test_token_use(st);
        test_token_tree(st);
        test_token_list_purge(st);
        test_policies(st);
        test_epoch_and_sync(st);
        test_purge_batches(st);
        test_transactions(st);
        as_store_close(st);
    }
    test_threads();
    test_close_with_live_thread();
    test_kill9();
    test_kill9_big_tx();
    test_checkpoints();
    test_migrate_v1();
    test_cert_basic();
    test_cert_crl();
    test_cert_token_revoke();
    test_cert_query();
    test_cert_paging();
    test_ca_gens();
    test_migrate_v2();
    test_login_cert();
    test_cascade_cert_revoke();
    test_cascade_token_delete();
    test_cascade_bound();
    test_mounts();
    test_roles();
    test_mount_delete();
    test_intentions();
    test_intention_version_shared();
    test_migrate_v3();
    test_batch_threads();
    test_batch_commits();
    test_group_visibility();
    test_batch_sees_other_writes();
    test_batch_close();

    if (nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        perror("nftw");
    }
    return check_done();
}
