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
static struct as_token_rec mk_tok(const char *accessor, char *parent, unsigned seed,
                                  int64_t expire)
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
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), 1);
    CHECK(raw_pragma_eq(path, "PRAGMA journal_mode", "wal"));

    /* Reopen: no migration runs again and the data is still there. */
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(as_store_setting_get(st, "k", &v, &len), AS_OK);
    CHECK(len == 7 && v != NULL && memcmp(v, "persist", 7) == 0);
    free(v);
    as_store_close(st);
    st = NULL;
    CHECK_INT(raw_pragma_int(path, "PRAGMA user_version"), 1);

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
        mk_tok(root, NULL, 20, 0),      mk_tok(c1, root, 21, 0),    mk_tok(c2, root, 22, 0),
        mk_tok("tree-g1", c1, 23, 0),   mk_tok("tree-g2", c1, 24, 0), mk_tok("tree-g3", c2, 25, 0),
        mk_tok(u1, NULL, 26, 0),        mk_tok("unrel-2", u1, 27, 0),
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
        mk_tok(p, NULL, 40, 0), mk_tok("orph-child1", p, 41, 0), mk_tok("orph-child2", p, 42, 0),
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
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stage; /* 1: worker used the store; 2: main closed it */
    enum as_err r;
};

static void *closer_main(void *arg)
{
    struct closer *c = arg;
    c->r = as_store_setting_put(c->st, "from-thread", "1", 1);
    pthread_mutex_lock(&c->mu);
    c->stage = 1;
    pthread_cond_broadcast(&c->cv);
    while (c->stage != 2) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void test_close_with_live_thread(void)
{
    char path[256];
    struct closer c = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t th;

    db_path("close.db", path, sizeof path);
    CHECK_INT(as_store_open(path, &c.st), AS_OK);
    if (c.st == NULL) {
        return;
    }
    CHECK_INT(pthread_create(&th, NULL, closer_main, &c), 0);
    pthread_mutex_lock(&c.mu);
    while (c.stage != 1) {
        pthread_cond_wait(&c.cv, &c.mu);
    }
    as_store_close(c.st);
    c.stage = 2;
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);
    CHECK_INT(pthread_join(th, NULL), 0);
    CHECK_INT(c.r, AS_OK);

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

/* A write that returned AS_OK survives the process being killed right after. */
static void test_kill9(void)
{
    char path[256];
    db_path("kill.db", path, sizeof path);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct as_store *st = NULL;
        if (as_store_open(path, &st) != AS_OK ||
            as_store_setting_put(st, "durable", "yes", 3) != AS_OK) {
            _exit(3);
        }
        struct as_token_rec t = mk_tok("kill-tok", NULL, 70, 0);
        if (as_store_token_insert(st, &t) != AS_OK) {
            _exit(4);
        }
        raise(SIGKILL);
        _exit(5);
    }
    int status = 0;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

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
        test_transactions(st);
        as_store_close(st);
    }
    test_threads();
    test_close_with_live_thread();
    test_kill9();

    if (nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        perror("nftw");
    }
    return check_done();
}
