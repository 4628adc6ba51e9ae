/*
 * h_svid.c: X.509-SVIDs, JWT-SVIDs and the SPIFFE bundle (SPEC §6). The route table has already
 * checked the caller's capability on the path; what is checked here is which identity and
 * which DNS names this token may obtain — a property of the token, not of its policies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authsvc/server.h"

#define MAX_DNS_NAMES 32
#define MAX_AUDIENCES 16

static const char *meta_str(json_t *meta, const char *key)
{
    json_t *v = meta ? json_object_get(meta, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool has_sudo(const struct as_req *req)
{
    return (as_acl_caps(req->acl, req->path) & AS_CAP_SUDO) != 0;
}

/*
 * The SPIFFE ID this request is for: the one asked for, or the token's only one. It must be a
 * valid ID of our trust domain and one of the token's spiffe_ids (sudo on the path may name any).
 */
static enum as_err pick_id(struct as_server *srv, struct as_req *req, struct as_resp *resp,
                           json_t *ids, const char **out)
{
    const char *want = NULL;
    char why[160];
    if (as_json_get_string(req->body, "spiffe_id", &want, NULL) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "\"spiffe_id\" must be a string");
    }
    if (want == NULL || *want == '\0') {
        if (json_array_size(ids) != 1) {
            char *list = json_dumps(ids, JSON_COMPACT);
            enum as_err r = as_fail(resp, AS_ERR_INVALID,
                                    "spiffe_id is required: the token holds %zu identities %s",
                                    json_array_size(ids), list ? list : "");
            free(list);
            return r;
        }
        want = json_string_value(json_array_get(ids, 0));
    }
    if (as_spiffe_id_check(want, srv->cfg.trust_domain, why, sizeof why) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "invalid spiffe_id: %s", why);
    }
    bool held = false;
    size_t i;
    json_t *it;
    json_array_foreach(ids, i, it)
    {
        if (strcmp(json_string_value(it), want) == 0) {
            held = true;
        }
    }
    if (!held && !has_sudo(req)) {
        return as_fail(resp, AS_ERR_PERMISSION, "permission denied: the token may not obtain %s",
                       want);
    }
    *out = want;
    return AS_OK;
}

/* Common record fields of an SVID issued to the request's token. */
static void record_origin(const struct as_req *req, struct as_cert_rec *c, json_t *meta)
{
    c->token_accessor = (char *)req->auth->accessor;
    c->mount = req->auth->mount ? req->auth->mount : "token";
    c->role = (char *)meta_str(meta, "role");
    c->subject = (char *)meta_str(meta, "subject");
}

/* TTL from the body: default, capped at max with a warning (as Vault caps TTLs). */
static enum as_err pick_ttl(struct as_req *req, struct as_resp *resp, int64_t def, int64_t max,
                            int64_t *out)
{
    int64_t ttl = 0;
    if (as_json_get_duration(req->body, "ttl", &ttl, NULL) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "\"ttl\" must be a duration");
    }
    if (ttl == 0) {
        ttl = def;
    }
    if (ttl > max) {
        char a[32];
        char b[32];
        char msg[160];
        as_duration_format(ttl, a, sizeof a);
        as_duration_format(max, b, sizeof b);
        snprintf(msg, sizeof msg,
                 "TTL of \"%s\" exceeded the effective max_ttl of \"%s\"; TTL value is capped "
                 "accordingly",
                 a, b);
        json_array_append_new(resp->warnings, json_string(msg));
        ttl = max;
    }
    *out = ttl;
    return AS_OK;
}

enum as_err h_svid_x509(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    enum as_err r;
    json_t *ids = as_json_array_from(req->auth->spiffe_ids_json);
    json_t *allowed = as_json_array_from(req->auth->allowed_dns_json);
    json_t *meta = req->auth->meta_json ? json_loads(req->auth->meta_json, 0, NULL) : NULL;
    json_t *dns = NULL;
    const char *dnsv[MAX_DNS_NAMES];
    const char *id = NULL;
    const char *csr_pem = NULL;
    struct as_csr *csr = NULL;
    struct as_leaf *leaf = NULL;
    struct as_signing s;
    char why[160];
    int64_t ttl = 0;
    size_t ndns = 0;
    resp->warnings = json_array();

    if ((r = pick_id(srv, req, resp, ids, &id)) != AS_OK ||
        (r = pick_ttl(req, resp, srv->cfg.svid_default_ttl, srv->cfg.svid_max_ttl, &ttl)) !=
            AS_OK) {
        goto out;
    }
    if (as_json_get_strlist(req->body, "dns_names", &dns, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID, "\"dns_names\" must be a list of strings");
        goto out;
    }
    ndns = json_array_size(dns);
    if (ndns > MAX_DNS_NAMES) {
        r = as_fail(resp, AS_ERR_INVALID, "at most %d dns_names", MAX_DNS_NAMES);
        goto out;
    }
    for (size_t i = 0; i < ndns; i++) {
        const char *name = json_string_value(json_array_get(dns, i));
        if (!as_dns_name_ok(name)) {
            r = as_fail(resp, AS_ERR_INVALID, "invalid DNS name \"%.100s\"", name);
            goto out;
        }
        bool ok = has_sudo(req);
        size_t k;
        json_t *g;
        json_array_foreach(allowed, k, g)
        {
            ok = ok || as_dns_glob_match(json_string_value(g), name);
        }
        if (!ok) {
            r = as_fail(resp, AS_ERR_PERMISSION,
                        "permission denied: the token may not obtain DNS name %.100s", name);
            goto out;
        }
        dnsv[i] = name;
    }
    if (as_json_get_string(req->body, "csr", &csr_pem, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID, "\"csr\" must be a PEM string");
        goto out;
    }
    if (csr_pem != NULL && *csr_pem == '\0') {
        r = as_fail(resp, AS_ERR_INVALID, "invalid csr: empty (omit it to have a key generated)");
        goto out;
    }
    if (csr_pem != NULL &&
        (r = as_csr_parse(csr_pem, strlen(csr_pem), &csr, why, sizeof why)) != AS_OK) {
        r = r == AS_ERR_TOO_LARGE ? as_fail(resp, AS_ERR_INVALID, "csr is too large")
                                  : as_fail(resp, AS_ERR_INVALID, "invalid csr: %s", why);
        goto out;
    }
    int64_t now = as_now();
    struct as_leaf_req lr = {
        .spiffe_id = id,
        .dns = dnsv,
        .ndns = ndns,
        .not_before = now - 10,
        .not_after = now + ttl,
    };
    /* Never outlive the token that asked (SPEC §6). */
    if (req->auth->expire_time > 0 && req->auth->expire_time < lr.not_after) {
        lr.not_after = req->auth->expire_time;
    }
    if ((r = as_caset_active(srv->caset, &s)) != AS_OK ||
        (r = as_ca_issue_svid(s.ca, csr, &lr, &leaf)) != AS_OK) {
        goto out;
    }
    /* Recorded durably before it is answered. */
    struct as_cert_rec rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.serial, sizeof rec.serial, "%s", leaf->serial);
    snprintf(rec.kind, sizeof rec.kind, "x509");
    rec.spiffe_id = (char *)id;
    char *dns_json = dns ? json_dumps(dns, JSON_COMPACT) : strdup("[]");
    rec.dns_json = dns_json;
    record_origin(req, &rec, meta);
    rec.ca_gen = s.gen_id;
    rec.issued_at = now;
    rec.not_before = leaf->not_before;
    rec.not_after = leaf->not_after;
    rec.der = leaf->der;
    rec.der_len = leaf->der_len;
    r = as_store_cert_insert(srv->store, &rec);
    free(dns_json);
    if (r != AS_OK) {
        goto out;
    }
    char *bundle = as_caset_bundle_pem(srv->caset);
    resp->data =
        json_pack("{s:s,s:o,s:s,s:s,s:s,s:I}", "certificate", leaf->cert_pem, "ca_chain",
                  as_ca_intermediates_json(s.ca), "bundle", bundle ? bundle : "", "serial_number",
                  leaf->serial, "spiffe_id", id, "expiration", (json_int_t)leaf->not_after);
    free(bundle);
    if (resp->data == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (leaf->key_pem != NULL) {
        json_object_set_new(resp->data, "private_key", json_string(leaf->key_pem));
        json_object_set_new(resp->data, "private_key_type", json_string("ec"));
    }
    resp->status = 200;
    as_metrics_svid(AS_METRIC_SVID_X509);
    /* Every issuance is in the audit log; the server log has it at debug, as SPIRE does. */
    as_debug("x509-svid %s issued for %s (token %s)", leaf->serial, id, req->auth->accessor);
out:
    json_decref(ids);
    json_decref(allowed);
    json_decref(meta);
    json_decref(dns);
    as_csr_free(csr);
    as_leaf_free(leaf);
    return r;
}

enum as_err h_svid_jwt(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    enum as_err r;
    json_t *ids = as_json_array_from(req->auth->spiffe_ids_json);
    json_t *meta = req->auth->meta_json ? json_loads(req->auth->meta_json, 0, NULL) : NULL;
    json_t *aud = NULL;
    const char *id = NULL;
    char *token = NULL;
    char jti[64];
    int64_t ttl = 0;
    struct as_signing s;
    resp->warnings = json_array();

    if (as_json_get_strlist(req->body, "audience", &aud, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID, "\"audience\" must be a string or a list of strings");
        goto out;
    }
    if (json_array_size(aud) == 0) {
        r = as_fail(resp, AS_ERR_INVALID, "audience is required");
        goto out;
    }
    if (json_array_size(aud) > MAX_AUDIENCES) {
        r = as_fail(resp, AS_ERR_INVALID, "at most %d audiences", MAX_AUDIENCES);
        goto out;
    }
    if ((r = pick_id(srv, req, resp, ids, &id)) != AS_OK ||
        (r = pick_ttl(req, resp, srv->cfg.jwt_default_ttl, srv->cfg.jwt_max_ttl, &ttl)) != AS_OK) {
        goto out;
    }
    int64_t now = as_now();
    int64_t exp = now + ttl;
    if (req->auth->expire_time > 0 && req->auth->expire_time < exp) {
        exp = req->auth->expire_time;
    }
    if ((r = as_caset_active(srv->caset, &s)) != AS_OK ||
        (r = as_jwt_svid_mint(s.jwt, id, aud, now, exp, jti, sizeof jti, &token)) != AS_OK) {
        goto out;
    }
    struct as_cert_rec rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.serial, sizeof rec.serial, "%s", jti);
    snprintf(rec.kind, sizeof rec.kind, "jwt");
    rec.spiffe_id = (char *)id;
    record_origin(req, &rec, meta);
    rec.ca_gen = s.gen_id;
    rec.issued_at = now;
    rec.not_before = now;
    rec.not_after = exp;
    if ((r = as_store_cert_insert(srv->store, &rec)) != AS_OK) {
        goto out;
    }
    resp->data =
        json_pack("{s:s,s:s,s:I}", "token", token, "spiffe_id", id, "expiration", (json_int_t)exp);
    resp->status = 200;
    r = resp->data ? AS_OK : AS_ERR_NOMEM;
    if (r == AS_OK) {
        as_metrics_svid(AS_METRIC_SVID_JWT);
    }
out:
    json_decref(ids);
    json_decref(meta);
    json_decref(aud);
    as_free_secret_str(token);
    return r;
}

enum as_err h_svid_jwt_validate(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    const char *token = NULL;
    const char *audience = NULL;
    const struct as_jwtkey *keys[64];
    json_t *claims = NULL;
    struct as_cert_rec *rec = NULL;
    char why[160];
    if (as_json_get_string(req->body, "token", &token, NULL) != AS_OK || token == NULL ||
        *token == '\0') {
        return as_fail(resp, AS_ERR_INVALID, "token is required");
    }
    if (as_json_get_string(req->body, "audience", &audience, NULL) != AS_OK || audience == NULL ||
        *audience == '\0') {
        return as_fail(resp, AS_ERR_INVALID, "audience is required");
    }
    size_t n = as_caset_jwt_keys(srv->caset, keys, 64);
    enum as_err r = as_jwt_svid_validate(token, keys, n, audience, srv->cfg.trust_domain, as_now(),
                                         &claims, why, sizeof why);
    if (r == AS_ERR_INVALID || r == AS_ERR_TOO_LARGE) {
        return as_fail(resp, AS_ERR_INVALID, "invalid JWT-SVID: %s", why);
    }
    if (r != AS_OK) {
        return r;
    }
    /* Signed by us, so it was recorded; a revoked one is refused (SPEC §3). */
    json_t *jti = json_object_get(claims, "jti");
    r = json_is_string(jti) ? as_store_cert_get(srv->store, json_string_value(jti), &rec)
                            : AS_ERR_NOT_FOUND;
    if (r == AS_ERR_NOT_FOUND) {
        json_decref(claims);
        return as_fail(resp, AS_ERR_INVALID, "invalid JWT-SVID: not issued by this server");
    }
    if (r != AS_OK) {
        json_decref(claims);
        return r;
    }
    if (rec->revoked_at > 0 || strcmp(rec->kind, "jwt") != 0) {
        as_cert_rec_free(rec);
        json_decref(claims);
        return as_fail(resp, AS_ERR_INVALID, "invalid JWT-SVID: it has been revoked");
    }
    as_cert_rec_free(rec);
    resp->data =
        json_pack("{s:O,s:o}", "spiffe_id", json_object_get(claims, "sub"), "claims", claims);
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

enum as_err h_svid_bundle(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    (void)req;
    resp->raw_json = as_caset_jwks(srv->caset, srv->cfg.bundle_refresh_hint);
    resp->status = 200;
    return resp->raw_json ? AS_OK : AS_ERR_NOMEM;
}
