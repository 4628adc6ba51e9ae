/* h_token.c: the auth/token/ API with Vault's semantics and fields (SPEC §4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authsvc/server.h"

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s);
    size_t b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool caller_has_sudo(const struct as_req *req)
{
    return (as_acl_caps(req->acl, req->path) & AS_CAP_SUDO) != 0;
}

enum as_err h_token_create(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    enum as_err r;
    struct as_token_params p;
    json_t *pols = NULL;
    json_t *sids = NULL;
    json_t *dns = NULL;
    char *secret = NULL;
    struct as_token_rec *t = NULL;
    char err[256] = "";
    bool no_parent = false;
    bool present = false;
    const char *type = NULL;
    memset(&p, 0, sizeof p);
    p.renewable = true;
    p.path = req->path;
    p.mount = "token";

    json_t *b = req->body;
    if (as_json_get_strlist(b, "policies", &pols, NULL) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "\"policies\" must be a list of strings");
    }
    p.policies = pols;
    json_t *meta = json_object_get(b, "meta");
    if (meta != NULL && !json_is_null(meta)) {
        const char *k;
        json_t *v;
        if (!json_is_object(meta)) {
            r = as_fail(resp, AS_ERR_INVALID, "\"meta\" must be an object of strings");
            goto out;
        }
        json_object_foreach(meta, k, v)
        {
            if (!json_is_string(v)) {
                r = as_fail(resp, AS_ERR_INVALID, "\"meta\" must be an object of strings");
                goto out;
            }
        }
        p.meta = meta;
    }
    if (as_json_get_string(b, "display_name", &p.display_name, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID, "\"display_name\" must be a string");
        goto out;
    }
    if (as_json_get_bool(b, "no_parent", &no_parent, NULL) != AS_OK ||
        as_json_get_bool(b, "no_default_policy", &p.no_default_policy, NULL) != AS_OK ||
        as_json_get_bool(b, "renewable", &p.renewable, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID,
                    "\"no_parent\", \"no_default_policy\" and \"renewable\" must be booleans");
        goto out;
    }
    if (as_json_get_duration(b, "ttl", &p.ttl, &p.has_ttl) != AS_OK ||
        as_json_get_duration(b, "explicit_max_ttl", &p.explicit_max_ttl, NULL) != AS_OK ||
        as_json_get_duration(b, "period", &p.period, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID,
                    "\"ttl\", \"explicit_max_ttl\" and \"period\" must be durations");
        goto out;
    }
    if (as_json_get_int(b, "num_uses", &p.num_uses, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID, "\"num_uses\" must be an integer");
        goto out;
    }
    if (as_json_get_string(b, "type", &type, &present) != AS_OK ||
        (present && strcmp(type, "service") != 0 && strcmp(type, "default") != 0)) {
        r = as_fail(resp, AS_ERR_INVALID, "only \"service\" tokens are supported");
        goto out;
    }
    if (as_json_get_strlist(b, "spiffe_ids", &sids, NULL) != AS_OK ||
        as_json_get_strlist(b, "allowed_dns_names", &dns, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID,
                    "\"spiffe_ids\" and \"allowed_dns_names\" must be lists of strings");
        goto out;
    }
    /* Identities are checked here, where the trust domain is known (SPEC §4, §6). */
    size_t i;
    json_t *it;
    json_array_foreach(sids, i, it)
    {
        char why[160];
        if (as_spiffe_id_check(json_string_value(it), srv->cfg.trust_domain, why, sizeof why) !=
            AS_OK) {
            r = as_fail(resp, AS_ERR_INVALID, "invalid spiffe_ids entry \"%.200s\": %s",
                        json_string_value(it), why);
            goto out;
        }
    }
    json_array_foreach(dns, i, it)
    {
        const char *g = json_string_value(it);
        if (!as_dns_glob_ok(g)) {
            r = as_fail(resp, AS_ERR_INVALID, "invalid allowed_dns_names entry \"%.200s\"", g);
            goto out;
        }
    }
    p.spiffe_ids = sids;
    p.allowed_dns = dns;
    p.caller_sudo = caller_has_sudo(req);
    p.orphan = ends_with(req->path, "create-orphan");
    if (no_parent) {
        /* Vault: only root or sudo may detach a new token from its creator. */
        if (!p.caller_sudo) {
            r = as_fail(resp, AS_ERR_INVALID,
                        "root or sudo privileges required to create orphan token");
            goto out;
        }
        p.orphan = true;
    }
    if (req->auth->num_uses > 0 || req->last_use) {
        r = as_fail(resp, AS_ERR_INVALID,
                    "tokens with a limited number of uses cannot create child tokens");
        goto out;
    }
    resp->warnings = json_array();
    r = as_tokens_create(srv->tokens, req->auth, &p, &secret, &t, resp->warnings, err, sizeof err);
    if (r == AS_ERR_INVALID) {
        r = as_fail(resp, r, "%s", err);
        goto out;
    }
    if (r != AS_OK) {
        goto out;
    }
    resp->auth = as_auth_block(t, secret, t->creation_ttl);
    resp->status = 200;
out:
    json_decref(pols);
    json_decref(sids);
    json_decref(dns);
    as_free_secret_str(secret);
    as_token_rec_free(t);
    return r;
}

/*
 * Finds the token a lookup/renew/revoke is about: the caller's own (-self), the one named by
 * "token", or the one named by "accessor". *secret is the presented secret when known.
 * *owned tells whether *out must be freed.
 */
static enum as_err target(struct as_server *srv, struct as_req *req, struct as_resp *resp,
                          struct as_token_rec **out, const char **secret, bool *owned)
{
    *owned = false;
    *secret = NULL;
    if (ends_with(req->path, "-self") || ends_with(req->path, "lookup-self")) {
        *out = req->auth;
        *secret = req->token;
        return AS_OK;
    }
    if (ends_with(req->path, "-accessor")) {
        const char *acc = NULL;
        if (as_json_get_string(req->body, "accessor", &acc, NULL) != AS_OK || acc == NULL ||
            *acc == '\0') {
            return as_fail(resp, AS_ERR_INVALID, "missing accessor");
        }
        enum as_err r = as_tokens_by_accessor(srv->tokens, acc, out);
        if (r == AS_ERR_NOT_FOUND) {
            return as_fail(resp, AS_ERR_INVALID, "invalid accessor");
        }
        *owned = r == AS_OK;
        return r;
    }
    const char *tok = NULL;
    if (as_json_get_string(req->body, "token", &tok, NULL) != AS_OK || tok == NULL ||
        *tok == '\0') {
        return as_fail(resp, AS_ERR_INVALID, "missing token");
    }
    enum as_err r = as_tokens_resolve(srv->tokens, tok, out);
    if (r == AS_ERR_PERMISSION) {
        return as_fail(resp, AS_ERR_PERMISSION, "bad token");
    }
    *owned = r == AS_OK;
    *secret = tok;
    return r;
}

static json_t *lookup_data(const struct as_token_rec *t, const char *secret)
{
    json_error_t je;
    char created[40];
    char expires[40];
    int64_t now = as_now();
    as_time_rfc3339(t->creation_time, created, sizeof created);
    json_t *d = json_object();
    json_t *pols = as_json_array_from(t->policies_json);
    json_t *sids = as_json_array_from(t->spiffe_ids_json);
    json_t *dns = as_json_array_from(t->allowed_dns_json);
    json_t *meta = t->meta_json ? json_loads(t->meta_json, 0, &je) : NULL;
    json_object_set_new(d, "accessor", json_string(t->accessor));
    json_object_set_new(d, "creation_time", json_integer(t->creation_time));
    json_object_set_new(d, "creation_ttl", json_integer(t->creation_ttl));
    json_object_set_new(d, "display_name", json_string(t->display_name ? t->display_name : ""));
    json_object_set_new(d, "entity_id", json_string(""));
    if (t->expire_time != 0) {
        as_time_rfc3339(t->expire_time, expires, sizeof expires);
        json_object_set_new(d, "expire_time", json_string(expires));
    } else {
        json_object_set_new(d, "expire_time", json_null());
    }
    json_object_set_new(d, "explicit_max_ttl", json_integer(t->explicit_max_ttl));
    json_object_set_new(d, "id", json_string(secret ? secret : ""));
    json_object_set_new(d, "issue_time", json_string(created));
    json_object_set_new(d, "meta", meta ? meta : json_null());
    json_object_set_new(d, "num_uses", json_integer(t->num_uses));
    json_object_set_new(d, "orphan", json_boolean(t->orphan));
    json_object_set_new(d, "path", json_string(t->path ? t->path : ""));
    json_object_set_new(d, "policies", pols ? pols : json_array());
    json_object_set_new(d, "renewable", json_boolean(t->renewable));
    json_object_set_new(d, "ttl", json_integer(as_token_ttl_left(t, now)));
    if (t->period > 0) {
        json_object_set_new(d, "period", json_integer(t->period));
    }
    /* As Vault: present only for a token bound to networks. */
    json_t *cidrs = t->bound_cidrs_json ? as_json_array_from(t->bound_cidrs_json) : NULL;
    if (cidrs != NULL) {
        json_object_set_new(d, "bound_cidrs", cidrs);
    }
    json_object_set_new(d, "type", json_string("service"));
    json_object_set_new(d, "spiffe_ids", sids ? sids : json_array());
    json_object_set_new(d, "allowed_dns_names", dns ? dns : json_array());
    return d;
}

enum as_err h_token_lookup(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_token_rec *t = NULL;
    const char *secret = NULL;
    bool owned = false;
    enum as_err r = target(srv, req, resp, &t, &secret, &owned);
    if (r != AS_OK) {
        return r;
    }
    bool by_accessor = ends_with(req->path, "-accessor");
    resp->data = lookup_data(t, by_accessor ? NULL : secret);
    resp->status = 200;
    if (owned) {
        as_token_rec_free(t);
    }
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

enum as_err h_token_renew(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_token_rec *t = NULL;
    const char *secret = NULL;
    bool owned = false;
    int64_t inc = 0;
    int64_t ttl = 0;
    char err[256] = "";
    if (as_json_get_duration(req->body, "increment", &inc, NULL) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "\"increment\" must be a duration");
    }
    enum as_err r = target(srv, req, resp, &t, &secret, &owned);
    if (r != AS_OK) {
        return r;
    }
    if (req->last_use && t == req->auth) {
        r = as_fail(resp, AS_ERR_PERMISSION, "permission denied");
        goto out;
    }
    resp->warnings = json_array();
    r = as_tokens_renew(srv->tokens, t, inc, &ttl, resp->warnings, err, sizeof err);
    if (r == AS_ERR_INVALID) {
        r = as_fail(resp, r, "%s", err);
        goto out;
    }
    if (r == AS_ERR_PERMISSION) {
        r = as_fail(resp, r, "permission denied");
        goto out;
    }
    if (r != AS_OK) {
        goto out;
    }
    resp->auth = as_auth_block(t, ends_with(req->path, "-accessor") ? NULL : secret, ttl);
    resp->status = 200;
out:
    if (owned) {
        as_token_rec_free(t);
    }
    return r;
}

enum as_err h_token_revoke(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_token_rec *t = NULL;
    const char *secret = NULL;
    bool owned = false;
    enum as_err r = target(srv, req, resp, &t, &secret, &owned);
    if (r == AS_ERR_PERMISSION && !ends_with(req->path, "-self")) {
        /* Revoking a token that does not exist (or no longer does) is a success in Vault. */
        resp->status = 204;
        return AS_OK;
    }
    if (r != AS_OK) {
        return r;
    }
    bool tree = !ends_with(req->path, "revoke-orphan");
    if (!(req->last_use && t == req->auth)) {
        r = as_tokens_revoke(srv->tokens, t->accessor, tree);
        if (r == AS_OK) {
            as_metrics_revocation(AS_METRIC_REVOKE_TOKEN);
        }
        if (r == AS_ERR_NOT_FOUND) {
            r = AS_OK;
        }
    }
    /* The audit line names the revoked token by accessor, whatever the request named it by. */
    resp->audit_data = json_pack("{s:s}", "accessor", t->accessor);
    if (owned) {
        as_token_rec_free(t);
    }
    if (r != AS_OK) {
        return r;
    }
    resp->status = 204;
    return AS_OK;
}

enum as_err h_token_accessors(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    (void)req;
    char **acc = NULL;
    size_t n = 0;
    enum as_err r = as_store_token_list(srv->store, &acc, &n);
    return r != AS_OK ? r : as_resp_keys(resp, acc, n);
}
