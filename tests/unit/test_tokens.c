/* Unit tests for acl/tokens.c: creation rules, TTL capping, renewal, use counts, revocation. */
#include <stdlib.h>
#include <unistd.h>

#include "acl/acl.h"
#include "check.h"

static struct as_store *st;
static struct as_tokens *tk;

static json_t *names(const char *csv)
{
    json_t *o = json_pack("{s:s}", "v", csv);
    json_t *out = NULL;
    if (as_json_get_strlist(o, "v", &out, NULL) != AS_OK) {
        out = NULL;
    }
    json_decref(o);
    return out;
}

static struct as_token_params params(void)
{
    struct as_token_params p;
    memset(&p, 0, sizeof p);
    p.renewable = true;
    p.path = "auth/token/create";
    return p;
}

/* Creates a child of parent; returns the record (caller frees) and its secret in *secret. */
static struct as_token_rec *mk(const struct as_token_rec *parent, struct as_token_params *p,
                               char **secret, json_t *warnings)
{
    char err[256] = "";
    struct as_token_rec *t = NULL;
    char *s = NULL;
    enum as_err r = as_tokens_create(tk, parent, p, &s, &t, warnings, err, sizeof err);
    if (r != AS_OK) {
        return NULL;
    }
    if (secret) {
        *secret = s;
    } else {
        as_free_secret_str(s);
    }
    return t;
}

static bool resolves(const char *secret)
{
    struct as_token_rec *t = NULL;
    enum as_err r = as_tokens_resolve(tk, secret, &t);
    as_token_rec_free(t);
    return r == AS_OK;
}

static void test_root_and_shape(struct as_token_rec **root_out, char **root_secret)
{
    char *s = NULL;
    struct as_token_rec *root = NULL;
    CHECK_INT(as_tokens_create_root(tk, &s, &root), AS_OK);
    CHECK(strncmp(s, "ast.", 4) == 0 && strlen(s) == AS_TOKEN_SECRET_LEN);
    CHECK(strlen(root->accessor) == AS_ACCESSOR_LEN);
    CHECK(strstr(s, root->accessor) == NULL);
    CHECK(as_token_is_root(root));
    CHECK(resolves(s));
    /* Negative twins: wrong shape, unknown secret, truncated, one char changed. */
    CHECK(!resolves("ast.short"));
    CHECK(!resolves("hvs.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    CHECK(!resolves("ast.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    char copy[64];
    snprintf(copy, sizeof copy, "%s", s);
    copy[10] = copy[10] == 'A' ? 'B' : 'A';
    CHECK(!resolves(copy));
    CHECK(!resolves(NULL));
    *root_out = root;
    *root_secret = s;
}

static void test_ttl_capping(const struct as_token_rec *root)
{
    json_t *w = json_array();
    struct as_token_params p = params();
    /* Default TTL is Vault's 768h. */
    struct as_token_rec *t = mk(root, &p, NULL, w);
    CHECK(t != NULL);
    CHECK_INT(t->creation_ttl, 768 * 3600);
    CHECK_INT(json_array_size(w), 0);
    as_token_rec_free(t);

    /* 1000h is capped at 768h with Vault's warning. */
    p.has_ttl = true;
    p.ttl = 1000 * 3600;
    t = mk(root, &p, NULL, w);
    CHECK(t != NULL);
    CHECK_INT(t->creation_ttl, 768 * 3600);
    CHECK_INT(json_array_size(w), 1);
    CHECK(strstr(json_string_value(json_array_get(w, 0)), "capped") != NULL);
    CHECK(strstr(json_string_value(json_array_get(w, 0)), "1000h0m0s") != NULL);
    as_token_rec_free(t);
    json_array_clear(w);

    /* explicit_max_ttl caps ttl. */
    p.ttl = 7200;
    p.explicit_max_ttl = 3600;
    t = mk(root, &p, NULL, w);
    CHECK(t != NULL);
    CHECK_INT(t->creation_ttl, 3600);
    CHECK_INT(t->explicit_max_ttl, 3600);
    CHECK_INT(t->expire_time - t->creation_time, 3600);
    as_token_rec_free(t);
    json_array_clear(w);

    /* An explicit max above the system max is itself capped. */
    p.ttl = 60;
    p.explicit_max_ttl = 2000 * 3600;
    t = mk(root, &p, NULL, w);
    CHECK(t != NULL);
    CHECK_INT(t->explicit_max_ttl, 768 * 3600);
    CHECK_INT(json_array_size(w), 1);
    as_token_rec_free(t);
    json_array_clear(w);

    /* Renewal: the increment, capped at the explicit max counted from creation. */
    p = params();
    p.has_ttl = true;
    p.ttl = 60;
    p.explicit_max_ttl = 600;
    t = mk(root, &p, NULL, w);
    int64_t ttl = 0;
    char err[256];
    CHECK_INT(as_tokens_renew(tk, t, 300, &ttl, w, err, sizeof err), AS_OK);
    CHECK_INT(ttl, 300);
    CHECK_INT(json_array_size(w), 0);
    CHECK_INT(as_tokens_renew(tk, t, 3600, &ttl, w, err, sizeof err), AS_OK);
    CHECK(ttl <= 600 && ttl >= 598);
    CHECK_INT(json_array_size(w), 1);
    /* No increment: the original TTL. */
    CHECK_INT(as_tokens_renew(tk, t, 0, &ttl, NULL, err, sizeof err), AS_OK);
    CHECK_INT(ttl, 60);
    as_token_rec_free(t);

    /* Not renewable → refused; negative values refused. */
    p = params();
    p.renewable = false;
    t = mk(root, &p, NULL, NULL);
    CHECK_INT(as_tokens_renew(tk, t, 10, &ttl, NULL, err, sizeof err), AS_ERR_INVALID);
    as_token_rec_free(t);
    p = params();
    p.has_ttl = true;
    p.ttl = -5;
    CHECK(mk(root, &p, NULL, NULL) == NULL);
    p = params();
    p.num_uses = -1;
    CHECK(mk(root, &p, NULL, NULL) == NULL);
    json_decref(w);
}

static void test_policies_rules(const struct as_token_rec *root)
{
    struct as_token_params p = params();
    p.policies = names("b, a, A, default");
    struct as_token_rec *t = mk(root, &p, NULL, NULL);
    CHECK(t != NULL);
    CHECK_STR(t->policies_json, "[\"a\",\"b\",\"default\"]");
    json_decref(p.policies);

    /* A non-root parent may only hand out a subset of its policies. */
    struct as_token_params c = params();
    c.policies = names("a");
    struct as_token_rec *child = mk(t, &c, NULL, NULL);
    CHECK(child != NULL);
    CHECK_STR(child->policies_json, "[\"a\",\"default\"]");
    as_token_rec_free(child);
    json_decref(c.policies);
    c.policies = names("a,zzz");
    CHECK(mk(t, &c, NULL, NULL) == NULL);
    json_decref(c.policies);
    c.policies = names("root");
    CHECK(mk(t, &c, NULL, NULL) == NULL);
    json_decref(c.policies);

    /* Inheritance when none given, and no_default_policy. */
    c = params();
    child = mk(t, &c, NULL, NULL);
    CHECK_STR(child->policies_json, "[\"a\",\"b\",\"default\"]");
    as_token_rec_free(child);
    c.no_default_policy = true;
    c.policies = names("b");
    child = mk(t, &c, NULL, NULL);
    CHECK_STR(child->policies_json, "[\"b\"]");
    as_token_rec_free(child);
    json_decref(c.policies);

    /* spiffe_ids may only narrow. */
    struct as_token_params q = params();
    q.spiffe_ids = names("spiffe://example.org/a,spiffe://example.org/b");
    q.policies = names("a"); /* not root: a root holder could hand out anything */
    struct as_token_rec *holder = mk(root, &q, NULL, NULL);
    json_decref(q.spiffe_ids);
    json_decref(q.policies);
    q = params();
    q.spiffe_ids = names("spiffe://example.org/a");
    child = mk(holder, &q, NULL, NULL);
    CHECK(child != NULL);
    as_token_rec_free(child);
    json_decref(q.spiffe_ids);
    q.spiffe_ids = names("spiffe://example.org/c");
    CHECK(mk(holder, &q, NULL, NULL) == NULL);
    json_decref(q.spiffe_ids);
    as_token_rec_free(holder);
    as_token_rec_free(t);
}

static void test_tree_revocation(const struct as_token_rec *root)
{
    struct as_token_params p = params();
    char *sa = NULL, *sb = NULL, *sc = NULL, *sx = NULL, *sd = NULL;
    struct as_token_rec *a = mk(root, &p, &sa, NULL);
    struct as_token_rec *b = mk(a, &p, &sb, NULL);
    struct as_token_rec *c = mk(b, &p, &sc, NULL);
    struct as_token_rec *x = mk(root, &p, &sx, NULL);
    CHECK(resolves(sa) && resolves(sb) && resolves(sc) && resolves(sx));
    CHECK_STR(b->parent, a->accessor);
    CHECK_INT(as_tokens_revoke(tk, a->accessor, true), AS_OK);
    CHECK(!resolves(sa));
    CHECK(!resolves(sb));
    CHECK(!resolves(sc));
    CHECK(resolves(sx)); /* unrelated token survives */
    CHECK_INT(as_tokens_revoke(tk, a->accessor, true), AS_ERR_NOT_FOUND);

    /* revoke-orphan: children survive as orphans. */
    struct as_token_rec *d = mk(x, &p, &sd, NULL);
    CHECK_INT(as_tokens_revoke(tk, x->accessor, false), AS_OK);
    CHECK(!resolves(sx));
    CHECK(resolves(sd));
    struct as_token_rec *dd = NULL;
    CHECK_INT(as_tokens_resolve(tk, sd, &dd), AS_OK);
    CHECK(dd != NULL && dd->orphan && dd->parent == NULL);
    as_token_rec_free(dd);

    as_free_secret_str(sa);
    as_free_secret_str(sb);
    as_free_secret_str(sc);
    as_free_secret_str(sx);
    as_free_secret_str(sd);
    as_token_rec_free(a);
    as_token_rec_free(b);
    as_token_rec_free(c);
    as_token_rec_free(x);
    as_token_rec_free(d);
}

static void test_expiry_and_uses(const struct as_token_rec *root)
{
    struct as_token_params p = params();
    char *sp = NULL, *sc = NULL, *su = NULL;
    p.has_ttl = true;
    p.ttl = 1;
    struct as_token_rec *parent = mk(root, &p, &sp, NULL);
    p.ttl = 3600;
    struct as_token_rec *child = mk(parent, &p, &sc, NULL);
    CHECK(resolves(sp) && resolves(sc));
    sleep(2);
    CHECK(!resolves(sp));
    CHECK(!resolves(sc)); /* an expired ancestor takes its subtree with it */
    size_t purged = 0;
    CHECK_INT(as_store_token_purge_expired(st, as_now(), &purged), AS_OK);
    CHECK(purged >= 2);

    p = params();
    p.num_uses = 2;
    struct as_token_rec *u = mk(root, &p, &su, NULL);
    bool last = false;
    struct as_token_rec *r1 = NULL;
    CHECK_INT(as_tokens_resolve(tk, su, &r1), AS_OK);
    CHECK_INT(as_tokens_use(tk, r1, &last), AS_OK);
    CHECK(!last);
    CHECK_INT(r1->num_uses, 1);
    as_token_rec_free(r1);
    r1 = NULL;
    CHECK_INT(as_tokens_resolve(tk, su, &r1), AS_OK);
    CHECK_INT(as_tokens_use(tk, r1, &last), AS_OK);
    CHECK(last);
    as_token_rec_free(r1);
    CHECK(!resolves(su)); /* used up → revoked */

    as_free_secret_str(sp);
    as_free_secret_str(sc);
    as_free_secret_str(su);
    as_token_rec_free(parent);
    as_token_rec_free(child);
    as_token_rec_free(u);
}

/* Both strings NULL, or both set and equal. */
static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Every field of a resolved record is the created one's. */
static void check_same_token(const struct as_token_rec *a, const struct as_token_rec *b)
{
    CHECK_STR(a->accessor, b->accessor);
    CHECK(memcmp(a->secret_hash, b->secret_hash, sizeof a->secret_hash) == 0);
    CHECK(same_str(a->parent, b->parent));
    CHECK(same_str(a->policies_json, b->policies_json));
    CHECK(same_str(a->meta_json, b->meta_json));
    CHECK(same_str(a->display_name, b->display_name));
    CHECK(same_str(a->path, b->path));
    CHECK(same_str(a->spiffe_ids_json, b->spiffe_ids_json));
    CHECK(same_str(a->allowed_dns_json, b->allowed_dns_json));
    CHECK(same_str(a->mount, b->mount));
    CHECK(same_str(a->login_cert, b->login_cert));
    CHECK(same_str(a->bound_cidrs_json, b->bound_cidrs_json));
    CHECK_INT(a->creation_time, b->creation_time);
    CHECK_INT(a->expire_time, b->expire_time);
    CHECK_INT(a->creation_ttl, b->creation_ttl);
    CHECK_INT(a->explicit_max_ttl, b->explicit_max_ttl);
    CHECK_INT(a->period, b->period);
    CHECK_INT(a->num_uses, b->num_uses);
    CHECK(a->renewable == b->renewable && a->orphan == b->orphan);
}

/* No string of x is a string of y (each record holds its own copies). */
static bool distinct_strings(const struct as_token_rec *x, const struct as_token_rec *y)
{
    const char *xs[] = {x->parent,     x->policies_json,   x->meta_json,        x->display_name,
                        x->path,       x->spiffe_ids_json, x->allowed_dns_json, x->mount,
                        x->login_cert, x->bound_cidrs_json};
    const char *ys[] = {y->parent,     y->policies_json,   y->meta_json,        y->display_name,
                        y->path,       y->spiffe_ids_json, y->allowed_dns_json, y->mount,
                        y->login_cert, y->bound_cidrs_json};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        if (xs[i] != NULL && xs[i] == ys[i]) {
            return false;
        }
    }
    return true;
}

/*
 * A token resolved from the cache (a packed copy: one block for the record and its strings) is
 * the token resolved from the store, field for field, for a child (parent set, no login
 * certificate) and a login token (no parent, a login certificate); each copy frees on its own.
 */
static void test_cached_copy(const struct as_token_rec *root)
{
    struct as_token_params p = params();
    p.meta = json_pack("{s:s}", "team", "web");
    p.spiffe_ids = names("spiffe://example.org/web");
    p.allowed_dns = names("*.web.example.org");
    p.display_name = "web";
    char *sc = NULL, *sl = NULL;
    struct as_token_rec *child = mk(root, &p, &sc, NULL);
    json_decref(p.meta);
    json_decref(p.spiffe_ids);
    json_decref(p.allowed_dns);

    p = params();
    p.login = true;
    p.policies = names("default");
    p.raw_display_name = "cert-web";
    p.path = "auth/cert/login";
    p.mount = "cert";
    p.login_cert = "0a:0b:0c";
    p.bound_cidrs = names("10.0.0.0/8");
    struct as_token_rec *login = mk(NULL, &p, &sl, NULL);
    json_decref(p.policies);
    json_decref(p.bound_cidrs);
    CHECK(child != NULL && login != NULL);
    CHECK(child != NULL && child->parent != NULL && child->meta_json != NULL &&
          child->login_cert == NULL && child->bound_cidrs_json == NULL);
    CHECK(login != NULL && login->parent == NULL && login->login_cert != NULL &&
          login->bound_cidrs_json != NULL);

    const char *secrets[] = {sc, sl};
    const struct as_token_rec *made[] = {child, login};
    for (size_t i = 0; i < 2 && made[i] != NULL; i++) {
        uint64_t h0 = 0, h1 = 0, m = 0;
        struct as_token_rec *a = NULL, *b = NULL, *c = NULL;
        CHECK_INT(as_tokens_resolve(tk, secrets[i], &a), AS_OK);
        as_tokens_cache_stats(tk, &h0, &m);
        CHECK_INT(as_tokens_resolve(tk, secrets[i], &b), AS_OK);
        CHECK_INT(as_tokens_resolve(tk, secrets[i], &c), AS_OK);
        as_tokens_cache_stats(tk, &h1, &m);
        CHECK(h1 >= h0 + 2); /* b and c came from the cache */
        if (a == NULL || b == NULL || c == NULL) {
            as_token_rec_free(a);
            as_token_rec_free(b);
            as_token_rec_free(c);
            continue;
        }
        check_same_token(a, made[i]);
        CHECK(distinct_strings(a, b) && distinct_strings(b, c));
        /* a, from the store, is gone before the copies are read: they must not point into it. */
        as_token_rec_free(a);
        check_same_token(b, made[i]);
        as_token_rec_free(b); /* c must not share b's strings */
        check_same_token(c, made[i]);
        as_token_rec_free(c);
    }
    as_free_secret_str(sc);
    as_free_secret_str(sl);
    as_token_rec_free(child);
    as_token_rec_free(login);
}

/*
 * token_bound_cidrs: a login token keeps its role's networks, every token made from it inherits
 * them whatever it asks for, and as_token_addr_ok admits only addresses inside them, failing
 * closed on anything it cannot read.
 */
static void test_bound_cidrs(const struct as_token_rec *root)
{
    struct as_token_params p = params();
    p.login = true;
    p.policies = names("default");
    p.raw_display_name = "jwt-web";
    p.path = "auth/jwt/login";
    p.mount = "jwt";
    p.bound_cidrs = names("10.0.0.0/8,2001:db8::/32");
    char *sl = NULL;
    struct as_token_rec *login = mk(NULL, &p, &sl, NULL);
    json_decref(p.bound_cidrs);
    p.bound_cidrs = json_array();
    struct as_token_rec *free_login = mk(NULL, &p, NULL, NULL);
    json_decref(p.bound_cidrs);
    json_decref(p.policies);
    CHECK(login != NULL && free_login != NULL);
    if (login == NULL || free_login == NULL) {
        as_token_rec_free(login);
        as_token_rec_free(free_login);
        as_free_secret_str(sl);
        return;
    }
    CHECK_STR(login->bound_cidrs_json, "[\"10.0.0.0/8\",\"2001:db8::/32\"]");
    CHECK(free_login->bound_cidrs_json == NULL); /* an empty list binds nothing */

    const char *in[] = {"10.1.2.3", "10.255.255.255", "::ffff:10.9.9.9", "2001:db8::1"};
    const char *out[] = {"11.0.0.1", "127.0.0.1",       "9.255.255.255",  "2001:db9::1",
                         "::1",      "::ffff:11.0.0.1", "not an address", ""};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        CHECK(as_token_addr_ok(login, in[i]));
    }
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        CHECK(!as_token_addr_ok(login, out[i]));
    }
    CHECK(!as_token_addr_ok(login, NULL));
    CHECK(as_token_addr_ok(free_login, "127.0.0.1") && as_token_addr_ok(root, "192.0.2.1"));

    /* The resolved record (store, then cache) carries the networks too. */
    struct as_token_rec *res = NULL;
    CHECK_INT(as_tokens_resolve(tk, sl, &res), AS_OK);
    CHECK(res != NULL && !as_token_addr_ok(res, "127.0.0.1") && as_token_addr_ok(res, "10.0.0.1"));
    as_token_rec_free(res);
    res = NULL;
    CHECK_INT(as_tokens_resolve(tk, sl, &res), AS_OK);
    CHECK(res != NULL && !as_token_addr_ok(res, "127.0.0.1"));
    as_token_rec_free(res);

    /* Children and orphans of a bound token are bound alike; a child's own list is ignored. */
    struct as_token_params c = params();
    c.bound_cidrs = names("0.0.0.0/0");
    struct as_token_rec *child = mk(login, &c, NULL, NULL);
    c.orphan = true;
    c.caller_sudo = true;
    struct as_token_rec *orphan = mk(login, &c, NULL, NULL);
    json_decref(c.bound_cidrs);
    CHECK(child != NULL && child->bound_cidrs_json != NULL &&
          strcmp(child->bound_cidrs_json, login->bound_cidrs_json) == 0 &&
          !as_token_addr_ok(child, "127.0.0.1"));
    CHECK(orphan != NULL && orphan->parent == NULL && orphan->bound_cidrs_json != NULL &&
          !as_token_addr_ok(orphan, "127.0.0.1"));

    /* A stored list that is not an array of networks admits no one. */
    struct as_token_rec broken = *login;
    const char *bad[] = {"not json", "{}", "[]", "[1]", "[\"10.0.0.0/33\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        broken.bound_cidrs_json = (char *)bad[i];
        CHECK(!as_token_addr_ok(&broken, "10.0.0.1"));
    }
    as_token_rec_free(child);
    as_token_rec_free(orphan);
    as_token_rec_free(login);
    as_token_rec_free(free_login);
    as_free_secret_str(sl);
}

static void test_acl(const struct as_token_rec *root)
{
    CHECK_INT(as_store_policy_put(st, "reader",
                                  "{\"path\":{\"sys/policy/*\":{\"capabilities\":[\"read\"]}}}"),
              AS_OK);
    struct as_token_params p = params();
    p.policies = names("reader");
    struct as_token_rec *t = mk(root, &p, NULL, NULL);
    json_decref(p.policies);
    struct as_acl *acl = NULL;
    CHECK_INT(as_tokens_acl(tk, t, &acl), AS_OK);
    CHECK(as_acl_caps(acl, "sys/policy/x") == AS_CAP_READ);
    CHECK(as_acl_caps(acl, "auth/token/lookup-self") == AS_CAP_READ); /* from default */
    CHECK(as_acl_caps(acl, "auth/token/create") == 0);
    as_acl_free(acl);
    acl = NULL;
    CHECK_INT(as_tokens_acl(tk, root, &acl), AS_OK);
    CHECK((as_acl_caps(acl, "anything/at/all") & AS_CAP_SUDO) != 0);
    as_acl_free(acl);
    as_token_rec_free(t);
}

/*
 * Accessors never begin with '-' or '_' (a leading '-' reads as a flag to authctl): 1000 tokens,
 * where random base64url would begin 31 of them with one of the two on average.
 */
static void test_accessor_first_char(const struct as_token_rec *root)
{
    int bad = 0, made = 0;
    for (int i = 0; i < 1000; i++) {
        struct as_token_params p = params();
        struct as_token_rec *t = mk(root, &p, NULL, NULL);
        if (t == NULL) {
            continue;
        }
        made++;
        bad += t->accessor[0] == '-' || t->accessor[0] == '_';
        as_token_rec_free(t);
    }
    CHECK_INT(made, 1000);
    CHECK_INT(bad, 0);
}

int main(void)
{
    char dir[] = "/tmp/as-tokens-XXXXXX";
    char path[256];
    if (mkdtemp(dir) == NULL) {
        return 1;
    }
    snprintf(path, sizeof path, "%s/t.db", dir);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(as_tokens_new(st, &tk), AS_OK);
    char *text = NULL;
    CHECK_INT(as_store_policy_get(st, "default", &text), AS_OK);
    free(text);

    struct as_token_rec *root = NULL;
    char *root_secret = NULL;
    test_root_and_shape(&root, &root_secret);
    test_ttl_capping(root);
    test_policies_rules(root);
    test_tree_revocation(root);
    test_expiry_and_uses(root);
    test_cached_copy(root);
    test_bound_cidrs(root);
    test_acl(root);
    test_accessor_first_char(root);

    /* The HMAC key survives a reopen: the root token still resolves. */
    as_tokens_free(tk);
    as_store_close(st);
    CHECK_INT(as_store_open(path, &st), AS_OK);
    CHECK_INT(as_tokens_new(st, &tk), AS_OK);
    CHECK(resolves(root_secret));

    as_free_secret_str(root_secret);
    as_token_rec_free(root);
    as_tokens_free(tk);
    as_store_close(st);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
    return check_done();
}
