/*
 * auth.c: auth method mounts (sys/auth), the generic auth/:mount/... endpoints that dispatch to
 * a method by the mount's type, the per-source login rate limit, and the creation of login
 * tokens shared by every method (SPEC §3, §5).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authsvc/server.h"

/* ---- login rate limit: a token bucket per source address ---- */

#define RL_SLOTS 4096

struct rl_slot {
    char addr[64];
    double tokens;
    double last; /* seconds, monotonic */
};

static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rl_slot rl_table[RL_SLOTS];

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Takes one login from addr's bucket (rate per second, burst 2x rate). false with *retry_after
 * (seconds) when empty. The table is a fixed hash with replacement: an address pushed out by a
 * collision starts again with a full bucket, which only ever errs towards serving.
 */
bool as_login_allowed(const struct as_server *srv, const char *addr, int *retry_after)
{
    double rate = (double)srv->cfg.login_per_second;
    double burst = 2 * rate;
    uint32_t h = 2166136261u;
    for (const char *p = addr; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    double now = mono_now();
    pthread_mutex_lock(&rl_lock);
    struct rl_slot *s = &rl_table[h % RL_SLOTS];
    if (strcmp(s->addr, addr) != 0) {
        snprintf(s->addr, sizeof s->addr, "%s", addr);
        s->tokens = burst;
        s->last = now;
    }
    s->tokens += (now - s->last) * rate;
    if (s->tokens > burst) {
        s->tokens = burst;
    }
    s->last = now;
    bool ok = s->tokens >= 1.0;
    if (ok) {
        s->tokens -= 1.0;
    } else {
        *retry_after = (int)((1.0 - s->tokens) / rate) + 1;
    }
    pthread_mutex_unlock(&rl_lock);
    return ok;
}

/* ---- role fields shared by the methods ---- */

enum as_err as_role_strlist(json_t *b, const char *key, json_t **out, char *why, size_t whylen)
{
    if (as_json_get_strlist(b, key, out, NULL) != AS_OK) {
        snprintf(why, whylen, "\"%s\" must be a list of strings", key);
        return AS_ERR_INVALID;
    }
    if (*out == NULL && (*out = json_array()) == NULL) {
        return AS_ERR_NOMEM;
    }
    if (json_array_size(*out) > AS_ROLE_MAX_LIST) {
        snprintf(why, whylen, "\"%s\" has more than %d entries", key, AS_ROLE_MAX_LIST);
        return AS_ERR_INVALID;
    }
    return AS_OK;
}

static enum as_err token_fields(json_t *b, json_t **pols, json_t **cidrs, json_t **dns, char *why,
                                size_t whylen)
{
    enum as_err r;
    if ((r = as_role_strlist(b, "token_bound_cidrs", cidrs, why, whylen)) != AS_OK ||
        (r = as_role_strlist(b, "allowed_dns_names", dns, why, whylen)) != AS_OK) {
        return r;
    }
    if (as_json_get_strlist(b, "token_policies", pols, NULL) != AS_OK ||
        (*pols == NULL && as_json_get_strlist(b, "policies", pols, NULL) != AS_OK)) {
        snprintf(why, whylen, "\"token_policies\" must be a list of strings");
        return AS_ERR_INVALID;
    }
    if (*pols == NULL && (*pols = json_array()) == NULL) {
        return AS_ERR_NOMEM;
    }
    size_t i;
    json_t *it;
    json_array_foreach(*pols, i, it)
    {
        if (!as_policy_name_ok(json_string_value(it)) ||
            strcmp(json_string_value(it), "root") == 0) {
            snprintf(why, whylen, "invalid token_policies entry \"%.60s\"", json_string_value(it));
            return AS_ERR_INVALID;
        }
    }
    json_array_foreach(*cidrs, i, it)
    {
        if (!as_cidr_ok(json_string_value(it))) {
            snprintf(why, whylen, "invalid token_bound_cidrs entry \"%.60s\"",
                     json_string_value(it));
            return AS_ERR_INVALID;
        }
    }
    json_array_foreach(*dns, i, it)
    {
        if (!as_dns_glob_ok(json_string_value(it))) {
            snprintf(why, whylen, "invalid allowed_dns_names entry \"%.60s\"",
                     json_string_value(it));
            return AS_ERR_INVALID;
        }
    }
    return AS_OK;
}

enum as_err as_role_token_fields(json_t *b, json_t *role, char *why, size_t whylen)
{
    json_t *pols = NULL;
    json_t *cidrs = NULL;
    json_t *dns = NULL;
    int64_t ttl = 0, max_ttl = 0, uses = 0;
    bool no_default = false;
    enum as_err r = token_fields(b, &pols, &cidrs, &dns, why, whylen);
    if (r != AS_OK) {
        goto out;
    }
    r = AS_ERR_INVALID;
    if (as_json_get_duration(b, "token_ttl", &ttl, NULL) != AS_OK ||
        as_json_get_duration(b, "token_max_ttl", &max_ttl, NULL) != AS_OK ||
        as_json_get_int(b, "token_num_uses", &uses, NULL) != AS_OK || uses < 0 ||
        as_json_get_bool(b, "token_no_default_policy", &no_default, NULL) != AS_OK) {
        snprintf(why, whylen,
                 "token_ttl, token_max_ttl must be durations, token_num_uses a "
                 "non-negative integer, token_no_default_policy a boolean");
        goto out;
    }
    if (max_ttl > 0 && ttl > max_ttl) {
        snprintf(why, whylen, "token_ttl cannot be greater than token_max_ttl");
        goto out;
    }
    json_t *f = json_pack("{s:O,s:O,s:I,s:I,s:I,s:O,s:b,s:O}", "token_policies", pols, "policies",
                          pols, "token_ttl", (json_int_t)ttl, "token_max_ttl", (json_int_t)max_ttl,
                          "token_num_uses", (json_int_t)uses, "token_bound_cidrs", cidrs,
                          "token_no_default_policy", no_default, "allowed_dns_names", dns);
    r = f != NULL && json_object_update(role, f) == 0 ? AS_OK : AS_ERR_NOMEM;
    json_decref(f);
out:
    json_decref(pols);
    json_decref(cidrs);
    json_decref(dns);
    return r;
}

/* ---- mounts ---- */

static bool mount_name_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > 64 || strcmp(p, "token") == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!islower((unsigned char)p[i]) && !isdigit((unsigned char)p[i]) && p[i] != '-' &&
            p[i] != '_' && p[i] != '.') {
            return false;
        }
    }
    return true;
}

static json_t *mount_entry(const char *type, const char *description, const char *accessor)
{
    return json_pack("{s:s,s:s,s:s,s:{s:I,s:I},s:b,s:b,s:n}", "type", type, "description",
                     description ? description : "", "accessor", accessor, "config",
                     "default_lease_ttl", (json_int_t)0, "max_lease_ttl", (json_int_t)0, "local", 0,
                     "seal_wrap", 0, "options");
}

enum as_err h_sys_auth(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    (void)req;
    struct as_mount_rec **m = NULL;
    size_t n = 0;
    enum as_err r = as_store_mount_list(srv->store, &m, &n);
    if (r != AS_OK) {
        return r;
    }
    json_t *data = json_object();
    json_t *tok = mount_entry("token", "token based credentials", "auth_token_00000000");
    json_object_set_new(json_object_get(tok, "config"), "default_lease_ttl",
                        json_integer(AS_TOKEN_DEFAULT_TTL));
    json_object_set_new(json_object_get(tok, "config"), "max_lease_ttl",
                        json_integer(AS_TOKEN_MAX_TTL));
    json_object_set_new(data, "token/", tok);
    for (size_t i = 0; i < n; i++) {
        char key[80];
        snprintf(key, sizeof key, "%s/", m[i]->path);
        json_object_set_new(data, key, mount_entry(m[i]->type, m[i]->description, m[i]->accessor));
    }
    as_mount_recs_free(m, n);
    resp->data = data;
    resp->copy_data_top = true;
    resp->status = 200;
    return AS_OK;
}

enum as_err h_sys_auth_mount(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    const char *path = req->params[0];
    if (!mount_name_ok(path)) {
        return as_fail(resp, AS_ERR_INVALID,
                       "invalid mount path: use 1-64 of [a-z0-9._-], and not \"token\"");
    }
    if (req->method == AS_M_DELETE) {
        size_t ntok = 0;
        enum as_err r = as_store_mount_delete(srv->store, path, &ntok);
        if (r == AS_OK) {
            as_auth_mount_forget(path);
            as_info("auth mount %s disabled; %zu tokens revoked", path, ntok);
        } else if (r != AS_ERR_NOT_FOUND) {
            return r;
        }
        resp->status = 204;
        return AS_OK;
    }
    const char *type = NULL;
    const char *desc = "";
    if (as_json_get_string(req->body, "type", &type, NULL) != AS_OK || type == NULL) {
        return as_fail(resp, AS_ERR_INVALID, "missing or invalid \"type\"");
    }
    if (strcmp(type, "jwt") != 0 && strcmp(type, "cert") != 0) {
        return as_fail(resp, AS_ERR_INVALID,
                       "unknown auth method type \"%.40s\": use \"jwt\" or \"cert\"", type);
    }
    if (as_json_get_string(req->body, "description", &desc, NULL) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "\"description\" must be a string");
    }
    unsigned char rnd[4];
    char hex[9];
    char accessor[64];
    if (as_rand_bytes(rnd, sizeof rnd) != AS_OK) {
        return AS_ERR_CRYPTO;
    }
    as_hex(rnd, sizeof rnd, hex);
    snprintf(accessor, sizeof accessor, "auth_%s_%s", type, hex);
    struct as_mount_rec m = {
        .path = (char *)path,
        .type = (char *)type,
        .accessor = accessor,
        .description = (char *)(desc ? desc : ""),
        .config_json = NULL,
        .created = as_now(),
    };
    enum as_err r = as_store_mount_insert(srv->store, &m);
    if (r == AS_ERR_EXISTS) {
        return as_fail(resp, AS_ERR_INVALID, "path is already in use at %s/", path);
    }
    if (r != AS_OK) {
        return r;
    }
    as_info("auth mount %s enabled (type %s)", path, type);
    resp->status = 204;
    return AS_OK;
}

/* The mount named by the route's first parameter; 404 when absent. */
/*
 * Parsed auth method configs and roles, by their exact stored text: a login parsed the mount's
 * config (with its PEM keys) and the role from JSON every time. The text is the key, so a
 * changed config or role is simply another entry; entries are shared read-only (jansson's
 * reference counts are atomic) and never modified by their users.
 */
#define PARSED_SLOTS 64
static struct {
    char *text;
    json_t *value;
} parsed[PARSED_SLOTS];
static pthread_rwlock_t parsed_lock = PTHREAD_RWLOCK_INITIALIZER;

json_t *as_json_parsed(const char *text)
{
    size_t i = (size_t)(as_hash_str(text) % PARSED_SLOTS);
    json_t *v = NULL;
    pthread_rwlock_rdlock(&parsed_lock);
    if (parsed[i].text != NULL && strcmp(parsed[i].text, text) == 0) {
        v = json_incref(parsed[i].value);
    }
    pthread_rwlock_unlock(&parsed_lock);
    if (v != NULL) {
        return v;
    }
    json_error_t je;
    v = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    char *copy = v != NULL ? strdup(text) : NULL;
    if (copy == NULL) {
        return v;
    }
    pthread_rwlock_wrlock(&parsed_lock);
    char *old_text = parsed[i].text;
    json_t *old = parsed[i].value;
    parsed[i].text = copy;
    parsed[i].value = json_incref(v);
    pthread_rwlock_unlock(&parsed_lock);
    free(old_text);
    json_decref(old);
    return v;
}

void as_json_parsed_free_all(void)
{
    pthread_rwlock_wrlock(&parsed_lock);
    for (size_t i = 0; i < PARSED_SLOTS; i++) {
        free(parsed[i].text);
        json_decref(parsed[i].value);
        parsed[i].text = NULL;
        parsed[i].value = NULL;
    }
    pthread_rwlock_unlock(&parsed_lock);
}

/*
 * Mounts and roles as last read from the store, for logins: each login read both with SQL, and
 * in WAL mode a connection re-reads its pages from disk after any other connection's commit.
 * An entry is tagged with the store epoch read *before* the store was (as_store_epoch moves
 * after every commit that changes a mount or a role), so it is used only while nothing that
 * could have changed it has been committed since; a miss or a stale entry reads the store.
 */
#define ROW_SLOTS 64
enum row_kind { ROW_MOUNT, ROW_ROLE };
static struct row_slot {
    bool used;
    enum row_kind kind;
    uint64_t epoch;
    char *key; /* mount path, or "mount\nrole" */
    struct as_mount_rec *mount;
    char *role_text;
} rows[ROW_SLOTS];
static pthread_rwlock_t rows_lock = PTHREAD_RWLOCK_INITIALIZER;

static void row_slot_clear(struct row_slot *e)
{
    free(e->key);
    as_mount_rec_free(e->mount);
    free(e->role_text);
    memset(e, 0, sizeof *e);
}

static struct as_mount_rec *mount_dup(const struct as_mount_rec *m)
{
    struct as_mount_rec *c = malloc(sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    *c = *m;
    char **fields[] = {&c->path, &c->type, &c->accessor, &c->description, &c->config_json};
    if (!as_strdup_fields(fields, sizeof fields / sizeof fields[0])) {
        as_mount_rec_free(c);
        return NULL;
    }
    return c;
}

/* A copy of the cached row for key (a mount in *m or a role's text in *text); false on a miss. */
static bool row_get(enum row_kind kind, const char *key, uint64_t epoch, struct as_mount_rec **m,
                    char **text)
{
    struct row_slot *e = &rows[(as_hash_str(key) + kind) % ROW_SLOTS];
    bool hit = false;
    pthread_rwlock_rdlock(&rows_lock);
    if (e->used && e->kind == kind && e->epoch == epoch && strcmp(e->key, key) == 0) {
        if (kind == ROW_MOUNT) {
            hit = (*m = mount_dup(e->mount)) != NULL;
        } else {
            hit = (*text = strdup(e->role_text)) != NULL;
        }
    }
    pthread_rwlock_unlock(&rows_lock);
    return hit;
}

/* Keeps a copy of a row read at epoch (best effort: out of memory only skips the cache). */
static void row_put(enum row_kind kind, const char *key, uint64_t epoch,
                    const struct as_mount_rec *m, const char *text)
{
    struct row_slot n = {.used = true, .kind = kind, .epoch = epoch, .key = strdup(key)};
    n.mount = m != NULL ? mount_dup(m) : NULL;
    n.role_text = text != NULL ? strdup(text) : NULL;
    if (n.key == NULL || (m != NULL && n.mount == NULL) || (text != NULL && n.role_text == NULL)) {
        row_slot_clear(&n);
        return;
    }
    struct row_slot *e = &rows[(as_hash_str(key) + kind) % ROW_SLOTS];
    pthread_rwlock_wrlock(&rows_lock);
    struct row_slot old = *e;
    *e = n;
    pthread_rwlock_unlock(&rows_lock);
    row_slot_clear(&old);
}

enum as_err as_mount_get_cached(struct as_server *srv, const char *path, struct as_mount_rec **out)
{
    uint64_t epoch = as_store_epoch(srv->store);
    *out = NULL;
    if (row_get(ROW_MOUNT, path, epoch, out, NULL)) {
        as_metrics_cache(AS_CACHE_AUTH_ROWS, true);
        return AS_OK;
    }
    as_metrics_cache(AS_CACHE_AUTH_ROWS, false);
    enum as_err r = as_store_mount_get(srv->store, path, out);
    if (r == AS_OK) {
        row_put(ROW_MOUNT, path, epoch, *out, NULL);
    }
    return r;
}

enum as_err as_role_get_cached(struct as_server *srv, const char *mount, const char *name,
                               char **text)
{
    char key[300];
    uint64_t epoch = as_store_epoch(srv->store);
    *text = NULL;
    if ((size_t)snprintf(key, sizeof key, "%s\n%s", mount, name) >= sizeof key) {
        return as_store_role_get(srv->store, mount, name, text);
    }
    if (row_get(ROW_ROLE, key, epoch, NULL, text)) {
        as_metrics_cache(AS_CACHE_AUTH_ROWS, true);
        return AS_OK;
    }
    as_metrics_cache(AS_CACHE_AUTH_ROWS, false);
    enum as_err r = as_store_role_get(srv->store, mount, name, text);
    if (r == AS_OK) {
        row_put(ROW_ROLE, key, epoch, NULL, *text);
    }
    return r;
}

void as_rows_cache_free_all(void)
{
    pthread_rwlock_wrlock(&rows_lock);
    for (size_t i = 0; i < ROW_SLOTS; i++) {
        row_slot_clear(&rows[i]);
    }
    pthread_rwlock_unlock(&rows_lock);
}

static enum as_err mount_of(struct as_server *srv, struct as_req *req, struct as_resp *resp,
                            struct as_mount_rec **out)
{
    enum as_err r = as_mount_get_cached(srv, req->params[0], out);
    if (r == AS_ERR_NOT_FOUND) {
        return as_fail(resp, r, "no auth method mounted at auth/%s", req->params[0]);
    }
    return r;
}

static bool is_type(const struct as_mount_rec *m, const char *type)
{
    return strcmp(m->type, type) == 0;
}

/* Role names: Vault lowercases them; 1..128 of [a-z0-9_.@-]. */
static enum as_err role_name(struct as_req *req, struct as_resp *resp, int idx, char out[130])
{
    const char *n = req->params[idx];
    size_t i = 0;
    if (n == NULL || strlen(n) > 128 || *n == '\0') {
        return as_fail(resp, AS_ERR_INVALID, "invalid role name");
    }
    for (; n[i]; i++) {
        char c = (char)tolower((unsigned char)n[i]);
        if (!isalnum((unsigned char)c) && c != '_' && c != '.' && c != '-' && c != '@') {
            return as_fail(resp, AS_ERR_INVALID, "invalid role name");
        }
        out[i] = c;
    }
    out[i] = '\0';
    return AS_OK;
}

enum as_err h_auth_config(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_mount_rec *m = NULL;
    enum as_err r = mount_of(srv, req, resp, &m);
    if (r != AS_OK) {
        return r;
    }
    if (!is_type(m, "jwt")) {
        r = as_fail(resp, AS_ERR_NOT_FOUND, "auth/%s has no config endpoint", m->path);
    } else if (req->method == AS_M_POST) {
        r = as_jwt_config_write(srv, m, req, resp);
    } else {
        r = as_jwt_config_read(srv, m, resp);
    }
    as_mount_rec_free(m);
    return r;
}

/* auth/:mount/role/:name (jwt) and auth/:mount/certs/:name (cert). */
enum as_err h_auth_role(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_mount_rec *m = NULL;
    char name[130];
    bool certs = strncmp(req->path + strlen("auth/") + strlen(req->params[0]), "/certs/", 7) == 0;
    enum as_err r = role_name(req, resp, 1, name);
    if (r != AS_OK || (r = mount_of(srv, req, resp, &m)) != AS_OK) {
        return r;
    }
    if (!is_type(m, certs ? "cert" : "jwt")) {
        r = as_fail(resp, AS_ERR_NOT_FOUND, "unsupported path for a %s mount", m->type);
        goto out;
    }
    if (req->method == AS_M_DELETE) {
        r = as_store_role_delete(srv->store, m->path, name);
        if (r == AS_OK || r == AS_ERR_NOT_FOUND) {
            resp->status = 204;
            r = AS_OK;
        }
        goto out;
    }
    if (req->method == AS_M_POST) {
        json_t *role = NULL;
        char why[256] = "";
        r = certs ? as_cert_role_parse(srv, req->body, &role, why, sizeof why)
                  : as_jwt_role_parse(srv, req->body, &role, why, sizeof why);
        if (r == AS_ERR_INVALID) {
            r = as_fail(resp, r, "%s", why);
            goto out;
        }
        if (r != AS_OK) {
            goto out;
        }
        char *text = json_dumps(role, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(role);
        if (text == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        r = as_store_role_put(srv->store, m->path, name, text);
        free(text);
        if (r == AS_OK) {
            resp->status = 204;
        }
        goto out;
    }
    char *text = NULL;
    r = as_store_role_get(srv->store, m->path, name, &text);
    if (r == AS_ERR_NOT_FOUND) {
        r = as_fail(resp, r, "role \"%s\" not found", name);
        goto out;
    }
    if (r != AS_OK) {
        goto out;
    }
    json_error_t je;
    resp->data = json_loads(text, 0, &je);
    free(text);
    resp->status = 200;
    r = resp->data ? AS_OK : AS_ERR_INTERNAL;
out:
    as_mount_rec_free(m);
    return r;
}

enum as_err h_auth_roles(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_mount_rec *m = NULL;
    char **names = NULL;
    size_t n = 0;
    bool certs = strcmp(req->path + strlen(req->path) - strlen("/certs"), "/certs") == 0;
    enum as_err r = mount_of(srv, req, resp, &m);
    if (r != AS_OK) {
        return r;
    }
    if (!is_type(m, certs ? "cert" : "jwt")) {
        as_mount_rec_free(m);
        return as_fail(resp, AS_ERR_NOT_FOUND, "unsupported path for this mount");
    }
    r = as_store_role_list(srv->store, m->path, &names, &n);
    as_mount_rec_free(m);
    return r != AS_OK ? r : as_resp_keys(resp, names, n);
}

enum as_err h_auth_login(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_mount_rec *m = NULL;
    int retry = 1;
    enum as_err r = mount_of(srv, req, resp, &m);
    if (r != AS_OK) {
        return r;
    }
    /* Login metrics are labelled by mounts that exist, never by whatever a client put in the
     * URL (which would let anyone grow or break the metrics output). */
    snprintf(req->login_mount, sizeof req->login_mount, "%s", m->path);
    if (!as_login_allowed(srv, req->remote, &retry)) {
        as_mount_rec_free(m);
        resp->retry_after = retry;
        return as_fail(resp, AS_ERR_RATE, "too many logins from %s; retry in %d s", req->remote,
                       retry);
    }
    r = is_type(m, "jwt") ? as_jwt_login(srv, m, req, resp) : as_cert_login(srv, m, req, resp);
    as_mount_rec_free(m);
    return r;
}

/* ---- login tokens ---- */

enum as_err as_login_issue(struct as_server *srv, const struct as_mount_rec *m,
                           const struct as_login *in, struct as_resp *resp)
{
    enum as_err r;
    char path[160];
    char display[200];
    char err[256] = "";
    char *secret = NULL;
    struct as_token_rec *t = NULL;
    struct as_token_params p;
    memset(&p, 0, sizeof p);
    snprintf(path, sizeof path, "auth/%s/login", m->path);
    /* Vault names login tokens after the mount and the user; as_tokens_create prefixes
     * "token-", so build the name ourselves and pass it whole through display_name. */
    snprintf(display, sizeof display, "%s-%.120s", m->path, in->user);
    p.login = true;
    p.orphan = true;
    p.renewable = true;
    p.policies = in->policies;
    p.meta = in->meta;
    p.path = path;
    p.mount = m->path;
    p.spiffe_ids = in->spiffe_ids;
    p.allowed_dns = in->allowed_dns;
    p.bound_cidrs = in->bound_cidrs;
    p.has_ttl = true;
    p.ttl = in->ttl > 0 ? in->ttl : 3600;
    p.explicit_max_ttl = in->max_ttl > 0 ? in->max_ttl : 24 * 3600;
    p.num_uses = in->num_uses;
    p.no_default_policy = in->no_default_policy;
    p.login_cert = in->login_cert;
    p.display_name = NULL;
    p.raw_display_name = display;
    resp->warnings = json_array();
    r = as_tokens_create(srv->tokens, NULL, &p, &secret, &t, resp->warnings, err, sizeof err);
    if (r == AS_ERR_INVALID) {
        return as_fail(resp, r, "%s", err);
    }
    if (r != AS_OK) {
        return r;
    }
    resp->auth = as_auth_block(t, secret, t->creation_ttl);
    resp->status = 200;
    /* Every login is in the audit log; the server log has it at debug, as Vault's has none. */
    as_debug("login on auth/%s as %s (role %s): token %s", m->path, in->user,
             in->role ? in->role : "-", t->accessor);
    as_free_secret_str(secret);
    as_token_rec_free(t);
    return resp->auth ? AS_OK : AS_ERR_NOMEM;
}
