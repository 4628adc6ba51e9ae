/* h_sys.c: sys/health, sys/bootstrap, sys/policy, sys/policies/acl, sys/auth (SPEC §3). */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authsvc/server.h"

enum as_err h_sys_health(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    (void)req;
    pthread_mutex_lock(&srv->lock);
    bool init = srv->initialized;
    pthread_mutex_unlock(&srv->lock);
    resp->raw_json = json_pack("{s:b,s:b,s:b,s:b,s:s,s:s,s:I,s:s,s:s}", "initialized", init,
                               "sealed", 0, "standby", 0, "performance_standby", 0,
                               "replication_performance_mode", "disabled", "replication_dr_mode",
                               "disabled", "server_time_utc", (json_int_t)as_now(), "version",
                               AS_VERSION, "trust_domain", srv->cfg.trust_domain);
    if (resp->raw_json == NULL) {
        return AS_ERR_NOMEM;
    }
    /* Vault answers 501 while it is not initialized. */
    resp->status = init ? 200 : 501;
    return AS_OK;
}

/* Vault's auth block for a token that was just created or renewed. */
json_t *as_auth_block(const struct as_token_rec *t, const char *secret, int64_t ttl)
{
    json_error_t je;
    json_t *pols = as_json_array_from(t->policies_json);
    json_t *meta = t->meta_json ? json_loads(t->meta_json, 0, &je) : NULL;
    json_t *a = json_object();
    json_object_set_new(a, "client_token", json_string(secret ? secret : ""));
    json_object_set_new(a, "accessor", json_string(t->accessor));
    json_object_set(a, "policies", pols ? pols : json_array());
    json_object_set(a, "token_policies", pols ? pols : json_array());
    json_object_set_new(a, "metadata", meta ? meta : json_null());
    json_object_set_new(a, "lease_duration", json_integer(ttl));
    json_object_set_new(a, "renewable", json_boolean(t->renewable));
    json_object_set_new(a, "entity_id", json_string(""));
    json_object_set_new(a, "token_type", json_string("service"));
    json_object_set_new(a, "orphan", json_boolean(t->orphan));
    json_object_set_new(a, "mfa_requirement", json_null());
    json_object_set_new(a, "num_uses", json_integer(t->num_uses));
    json_decref(pols);
    return a;
}

enum as_err h_sys_bootstrap(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    enum as_err r;
    const char *code = NULL;
    unsigned char *want = NULL;
    size_t want_len = 0;
    unsigned char got[32];
    char *secret = NULL;
    struct as_token_rec *root = NULL;

    pthread_mutex_lock(&srv->lock);
    bool init = srv->initialized;
    pthread_mutex_unlock(&srv->lock);
    if (init) {
        return as_fail(resp, AS_ERR_INVALID, "already bootstrapped");
    }
    if (as_json_get_string(req->body, "code", &code, NULL) != AS_OK || code == NULL ||
        *code == '\0') {
        return as_fail(resp, AS_ERR_INVALID, "missing bootstrap code");
    }
    r = as_store_setting_get(srv->store, "bootstrap_code_hash", &want, &want_len);
    if (r == AS_ERR_NOT_FOUND) {
        return as_fail(resp, AS_ERR_PERMISSION, "permission denied");
    }
    if (r != AS_OK) {
        return r;
    }
    if ((r = as_tokens_hmac(srv->tokens, code, strlen(code), got)) != AS_OK) {
        goto out;
    }
    if (want_len != sizeof got || !as_secret_eq(want, got, sizeof got)) {
        r = as_fail(resp, AS_ERR_PERMISSION, "permission denied");
        goto out;
    }
    r = as_server_bootstrap(srv, &secret, &root);
    if (r == AS_ERR_EXISTS) {
        r = as_fail(resp, AS_ERR_INVALID, "already bootstrapped");
        goto out;
    }
    if (r != AS_OK) {
        goto out;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/bootstrap-code", srv->cfg.data_dir);
    (void)remove(path);
    resp->auth = as_auth_block(root, secret, 0);
    resp->status = 200;
    as_info("bootstrap: root token created (accessor %s)", root->accessor);
out:
    if (want != NULL) {
        as_wipe(want, want_len);
        free(want);
    }
    as_wipe(got, sizeof got);
    as_free_secret_str(secret);
    as_token_rec_free(root);
    return r;
}

/* ---- policies ---- */

/* Lowercased, validated policy name from the route's :name. */
static enum as_err policy_name(struct as_req *req, struct as_resp *resp, char out[130])
{
    const char *n = req->params[0];
    if (n == NULL || strlen(n) > 128) {
        return as_fail(resp, AS_ERR_INVALID, "invalid policy name");
    }
    size_t i = 0;
    for (; n[i]; i++) {
        out[i] = (char)tolower((unsigned char)n[i]);
    }
    out[i] = '\0';
    if (!as_policy_name_ok(out)) {
        return as_fail(resp, AS_ERR_INVALID, "invalid policy name");
    }
    return AS_OK;
}

static enum as_err policy_names(struct as_server *srv, json_t **out)
{
    char **names = NULL;
    size_t n = 0;
    enum as_err r = as_store_policy_list(srv->store, &names, &n);
    if (r != AS_OK) {
        return r;
    }
    json_t *arr = json_array();
    bool root_added = false;
    for (size_t i = 0; i < n; i++) {
        if (!root_added && strcmp(names[i], "root") > 0) {
            json_array_append_new(arr, json_string("root"));
            root_added = true;
        }
        json_array_append_new(arr, json_string(names[i]));
    }
    if (!root_added) {
        json_array_append_new(arr, json_string("root"));
    }
    as_store_strv_free(names, n);
    *out = arr;
    return AS_OK;
}

enum as_err h_sys_policy_list(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    (void)req;
    json_t *names = NULL;
    enum as_err r = policy_names(srv, &names);
    if (r != AS_OK) {
        return r;
    }
    resp->data = json_pack("{s:O,s:O}", "keys", names, "policies", names);
    json_decref(names);
    resp->copy_data_top = true;
    resp->status = 200;
    return AS_OK;
}

static enum as_err policy_write(struct as_server *srv, struct as_resp *resp, const char *name,
                                const char *text)
{
    char perr[160] = "";
    struct as_policy *p = NULL;
    if (strcmp(name, "root") == 0) {
        return as_fail(resp, AS_ERR_INVALID, "cannot update \"root\" policy");
    }
    enum as_err r = as_policy_parse(text, strlen(text), &p, perr, sizeof perr);
    if (r == AS_ERR_TOO_LARGE) {
        return as_fail(resp, AS_ERR_INVALID, "failed to parse policy: policy is too large");
    }
    if (r != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "failed to parse policy: %s", perr);
    }
    as_policy_free(p);
    if ((r = as_store_policy_put(srv->store, name, text)) != AS_OK) {
        return r;
    }
    as_tokens_policy_changed(srv->tokens);
    resp->status = 204;
    return AS_OK;
}

static enum as_err policy_delete(struct as_server *srv, struct as_resp *resp, const char *name)
{
    if (strcmp(name, "root") == 0 || strcmp(name, "default") == 0) {
        return as_fail(resp, AS_ERR_INVALID, "cannot delete \"%s\" policy", name);
    }
    enum as_err r = as_store_policy_delete(srv->store, name);
    if (r != AS_OK && r != AS_ERR_NOT_FOUND) {
        return r;
    }
    as_tokens_policy_changed(srv->tokens);
    resp->status = 204;
    return AS_OK;
}

/* Reads a policy's text; root has none (it is built in). */
static enum as_err policy_read(struct as_server *srv, struct as_resp *resp, const char *name,
                               char **text)
{
    if (strcmp(name, "root") == 0) {
        *text = strdup("");
        return *text ? AS_OK : AS_ERR_NOMEM;
    }
    enum as_err r = as_store_policy_get(srv->store, name, text);
    if (r == AS_ERR_NOT_FOUND) {
        return as_fail(resp, r, "no policy named \"%s\"", name);
    }
    return r;
}

/*
 * One policy by name, for both of Vault's APIs: the legacy sys/policy/:name (accepts "policy"
 * or "rules", answers {name, rules} also at the top level) and sys/policies/acl/:name
 * ({name, policy} in data).
 */
static enum as_err policy_endpoint(struct as_server *srv, struct as_req *req, struct as_resp *resp,
                                   bool legacy)
{
    char name[130];
    enum as_err r = policy_name(req, resp, name);
    if (r != AS_OK) {
        return r;
    }
    if (req->method == AS_M_DELETE) {
        return policy_delete(srv, resp, name);
    }
    if (req->method == AS_M_POST) {
        const char *text = NULL;
        bool present = false;
        if (as_json_get_string(req->body, "policy", &text, &present) != AS_OK) {
            return as_fail(resp, AS_ERR_INVALID, "\"policy\" must be a string");
        }
        if (legacy && !present &&
            as_json_get_string(req->body, "rules", &text, &present) != AS_OK) {
            return as_fail(resp, AS_ERR_INVALID, "\"rules\" must be a string");
        }
        if (!present || *text == '\0') {
            return as_fail(resp, AS_ERR_INVALID, "'policy' parameter not supplied or empty");
        }
        return policy_write(srv, resp, name, text);
    }
    char *text = NULL;
    if ((r = policy_read(srv, resp, name, &text)) != AS_OK) {
        return r;
    }
    resp->data = json_pack("{s:s,s:s}", "name", name, legacy ? "rules" : "policy", text);
    free(text);
    resp->copy_data_top = legacy;
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

enum as_err h_sys_policy(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    return policy_endpoint(srv, req, resp, true);
}

enum as_err h_sys_policies_acl_list(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    (void)req;
    json_t *names = NULL;
    enum as_err r = policy_names(srv, &names);
    if (r != AS_OK) {
        return r;
    }
    resp->data = json_pack("{s:o}", "keys", names);
    resp->status = 200;
    return AS_OK;
}

enum as_err h_sys_policies_acl(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    return policy_endpoint(srv, req, resp, false);
}

/* ---- identity inventory (SPEC §8) ---- */

static const char *state_name(const struct as_cert_rec *c, int64_t now)
{
    if (c->revoked_at > 0) {
        return "revoked";
    }
    return c->not_after > now ? "active" : "expired";
}

static bool query_int(const struct as_req *req, const char *key, int64_t *out, bool *bad)
{
    char v[32];
    if (!as_req_query(req, key, v, sizeof v)) {
        return false;
    }
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < 0) {
        *bad = true;
        return false;
    }
    *out = n;
    return true;
}

enum as_err h_sys_identities(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_cert_query q;
    char glob[AS_SPIFFE_MAX_ID + 1];
    char state[16];
    bool bad = false;
    struct as_cert_rec **rows = NULL;
    size_t n = 0;
    memset(&q, 0, sizeof q);
    q.now = as_now();
    q.limit = 100;
    if (as_req_query(req, "spiffe_id", glob, sizeof glob)) {
        q.spiffe_glob = glob;
    }
    if (as_req_query(req, "state", state, sizeof state)) {
        if (strcmp(state, "active") == 0) {
            q.state = AS_CERT_ACTIVE;
        } else if (strcmp(state, "expired") == 0) {
            q.state = AS_CERT_EXPIRED;
        } else if (strcmp(state, "revoked") == 0) {
            q.state = AS_CERT_REVOKED;
        } else if (strcmp(state, "all") != 0 && *state != '\0') {
            return as_fail(resp, AS_ERR_INVALID, "state must be active, expired or revoked");
        }
    }
    query_int(req, "since", &q.since, &bad);
    query_int(req, "until", &q.until, &bad);
    query_int(req, "limit", &q.limit, &bad);
    query_int(req, "after", &q.after_seq, &bad);
    if (bad || q.limit < 1 || q.limit > 1000) {
        return as_fail(resp, AS_ERR_INVALID,
                       "since, until and after must be non-negative integers, limit 1..1000");
    }
    enum as_err r = as_store_cert_query(srv->store, &q, &rows, &n);
    if (r != AS_OK) {
        return r;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct as_cert_rec *c = rows[i];
        json_error_t je;
        json_t *dns = c->dns_json ? json_loads(c->dns_json, 0, &je) : NULL;
        json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:s,s:I,s:s?,s:s?,s:s?,s:s?,s:I}", "serial",
                              c->serial, "kind", c->kind, "spiffe_id", c->spiffe_id, "dns_names",
                              dns ? dns : json_array(), "issued", (json_int_t)c->issued_at,
                              "expires", (json_int_t)c->not_after, "state", state_name(c, q.now),
                              "revoked_at", (json_int_t)c->revoked_at, "token_accessor",
                              c->token_accessor, "auth_mount", c->mount, "role", c->role,
                              "login_subject", c->subject, "ca_generation", (json_int_t)c->ca_gen);
        if (o != NULL) {
            json_array_append_new(list, o);
        }
    }
    resp->data = json_pack("{s:o}", "identities", list);
    /* A full page may have more behind it: hand out the cursor of its last row. */
    if (resp->data != NULL && n == (size_t)q.limit && n > 0) {
        char next[32];
        snprintf(next, sizeof next, "%" PRId64, rows[n - 1]->seq);
        json_object_set_new(resp->data, "next", json_string(next));
    }
    as_cert_recs_free(rows, n);
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

/* sys/audit-hash: Vault's {input} → {hash}, so an admin can find a known value in the log. */
enum as_err h_sys_audit_hash(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    json_t *in = json_object_get(req->body, "input");
    char hash[AS_AUDIT_HASH_LEN];
    if (!json_is_string(in)) {
        return as_fail(resp, AS_ERR_INVALID, "input is required and must be a string");
    }
    enum as_err r = as_audit_hash(srv->audit, json_string_value(in), json_string_length(in), hash);
    if (r != AS_OK) {
        return r;
    }
    resp->data = json_pack("{s:s}", "hash", hash);
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

/* sys/audit/head: the chain head kept in the store (SPEC §8). Successful reads are not audited
 * (AS_AUDIT_FAILURES), so with no other traffic the head is the last line of the log. */
enum as_err h_sys_audit_head(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    (void)req;
    char hash[65];
    uint64_t line = 0;
    enum as_err r = as_audit_head(srv->audit, hash, &line);
    if (r != AS_OK) {
        return r;
    }
    resp->data = json_pack("{s:s,s:I,s:b}", "hash", hash, "line", (json_int_t)line, "enabled",
                           as_audit_enabled(srv->audit));
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}
