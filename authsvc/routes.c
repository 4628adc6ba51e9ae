/*
 * routes.c: the one route table. Every endpoint is a row: pattern, methods, whether it needs a
 * token, whether it needs sudo. Authorization happens here, once, before the handler, from the
 * row and the request path (SPEC §4); handlers never check policy by hand for access.
 */
#include <stdio.h>
#include <string.h>

#include "authsvc/server.h"

#define M_RW (AS_M_GET | AS_M_POST | AS_M_DELETE)
#define M_ANY (AS_M_GET | AS_M_POST | AS_M_DELETE | AS_M_LIST | AS_M_HEAD | AS_M_OTHER)

/* One route per line, over 100 columns: a table reads by rows, so clang-format leaves it. */
/* clang-format off */
static const struct as_route routes[] = {
    {"sys/health", AS_M_GET | AS_M_HEAD, AS_AUTH_NONE, false, h_sys_health, false, AS_AUDIT_NEVER, false},
    {"sys/bootstrap", AS_M_POST, AS_AUTH_NONE, false, h_sys_bootstrap, false, AS_AUDIT_ALL, false},
    {"sys/policy", AS_M_GET | AS_M_LIST, AS_AUTH_TOKEN, false, h_sys_policy_list, false, AS_AUDIT_READS, false},
    {"sys/policy/:name", M_RW, AS_AUTH_TOKEN, false, h_sys_policy, false, AS_AUDIT_ALL, false},
    {"sys/policies/acl", AS_M_LIST, AS_AUTH_TOKEN, false, h_sys_policies_acl_list, false, AS_AUDIT_READS, false},
    {"sys/policies/acl/:name", M_RW, AS_AUTH_TOKEN, false, h_sys_policies_acl, false, AS_AUDIT_ALL, false},
    {"sys/auth", AS_M_GET, AS_AUTH_TOKEN, false, h_sys_auth, false, AS_AUDIT_READS, false},
    {"sys/auth/:mount", AS_M_POST | AS_M_DELETE, AS_AUTH_TOKEN, true, h_sys_auth_mount, false, AS_AUDIT_ALL, false},
    {"auth/token/create", AS_M_POST, AS_AUTH_TOKEN, false, h_token_create, false, AS_AUDIT_ALL, false},
    {"auth/token/create-orphan", AS_M_POST, AS_AUTH_TOKEN, false, h_token_create, false, AS_AUDIT_ALL, false},
    {"auth/token/lookup", AS_M_POST | AS_M_GET, AS_AUTH_TOKEN, false, h_token_lookup, false, AS_AUDIT_READS, false},
    {"auth/token/lookup-self", AS_M_GET | AS_M_POST, AS_AUTH_TOKEN, false, h_token_lookup, false, AS_AUDIT_READS, false},
    {"auth/token/lookup-accessor", AS_M_POST, AS_AUTH_TOKEN, false, h_token_lookup, false, AS_AUDIT_READS, false},
    {"auth/token/renew", AS_M_POST, AS_AUTH_TOKEN, false, h_token_renew, false, AS_AUDIT_ALL, false},
    {"auth/token/renew-self", AS_M_POST, AS_AUTH_TOKEN, false, h_token_renew, false, AS_AUDIT_ALL, false},
    {"auth/token/renew-accessor", AS_M_POST, AS_AUTH_TOKEN, false, h_token_renew, false, AS_AUDIT_ALL, false},
    {"auth/token/revoke", AS_M_POST, AS_AUTH_TOKEN, false, h_token_revoke, false, AS_AUDIT_ALL, false},
    {"auth/token/revoke-self", AS_M_POST, AS_AUTH_TOKEN, false, h_token_revoke, false, AS_AUDIT_ALL, false},
    {"auth/token/revoke-accessor", AS_M_POST, AS_AUTH_TOKEN, false, h_token_revoke, false, AS_AUDIT_ALL, false},
    {"auth/token/revoke-orphan", AS_M_POST, AS_AUTH_TOKEN, true, h_token_revoke, false, AS_AUDIT_ALL, false},
    {"auth/token/accessors", AS_M_LIST, AS_AUTH_TOKEN, true, h_token_accessors, false, AS_AUDIT_ALL, false},
    /* Auth methods: after every auth/token/ row, so "token" is never taken for a mount. */
    {"auth/:mount/config", AS_M_GET | AS_M_POST, AS_AUTH_TOKEN, false, h_auth_config, false, AS_AUDIT_ALL, false},
    {"auth/:mount/role", AS_M_LIST, AS_AUTH_TOKEN, false, h_auth_roles, false, AS_AUDIT_READS, false},
    {"auth/:mount/role/:name", M_RW, AS_AUTH_TOKEN, false, h_auth_role, false, AS_AUDIT_ALL, false},
    {"auth/:mount/certs", AS_M_LIST, AS_AUTH_TOKEN, false, h_auth_roles, false, AS_AUDIT_READS, false},
    {"auth/:mount/certs/:name", M_RW, AS_AUTH_TOKEN, false, h_auth_role, false, AS_AUDIT_ALL, false},
    {"auth/:mount/login", AS_M_POST, AS_AUTH_NONE, false, h_auth_login, false, AS_AUDIT_ALL, false},
    {"connect/intentions", AS_M_POST | AS_M_LIST, AS_AUTH_TOKEN, false, h_connect_intentions, false, AS_AUDIT_ALL, false},
    {"connect/intentions/:id", M_RW, AS_AUTH_TOKEN, false, h_connect_intention, false, AS_AUDIT_ALL, false},
    {"connect/authorize", AS_M_POST, AS_AUTH_TOKEN, false, h_connect_authorize, false, AS_AUDIT_CHECKS,
     true},
    {"connect/ext-authz", M_ANY, AS_AUTH_TOKEN, false, h_connect_ext_authz, true, AS_AUDIT_CHECKS, false},
    {"connect/ext-authz/*", M_ANY, AS_AUTH_TOKEN, false, h_connect_ext_authz, true, AS_AUDIT_CHECKS, false},
    {"sys/identities", AS_M_GET | AS_M_LIST, AS_AUTH_TOKEN, true, h_sys_identities, false, AS_AUDIT_READS, false},
    {"sys/audit-hash", AS_M_POST, AS_AUTH_TOKEN, true, h_sys_audit_hash, false, AS_AUDIT_ALL, false},
    {"sys/audit/head", AS_M_GET, AS_AUTH_TOKEN, true, h_sys_audit_head, false, AS_AUDIT_FAILURES, false},
    {"sys/metrics", AS_M_GET, AS_AUTH_TOKEN, false, h_sys_metrics, false, AS_AUDIT_ALL, false},
    {"pki/ca", AS_M_GET, AS_AUTH_NONE, false, h_pki_ca, false, AS_AUDIT_READS, false},
    {"pki/ca/pem", AS_M_GET, AS_AUTH_NONE, false, h_pki_ca, false, AS_AUDIT_READS, false},
    {"pki/ca_chain", AS_M_GET, AS_AUTH_NONE, false, h_pki_ca, false, AS_AUDIT_READS, false},
    {"pki/bundle/pem", AS_M_GET, AS_AUTH_NONE, false, h_pki_bundle_pem, false, AS_AUDIT_READS, false},
    {"pki/crl", AS_M_GET, AS_AUTH_NONE, false, h_pki_crl, false, AS_AUDIT_ALL, false},
    {"pki/crl/pem", AS_M_GET, AS_AUTH_NONE, false, h_pki_crl, false, AS_AUDIT_ALL, false},
    {"pki/cert/:serial", AS_M_GET, AS_AUTH_NONE, false, h_pki_cert, false, AS_AUDIT_READS, false},
    {"pki/certs", AS_M_LIST, AS_AUTH_TOKEN, false, h_pki_certs, false, AS_AUDIT_READS, false},
    {"pki/certs/revoked", AS_M_LIST, AS_AUTH_TOKEN, false, h_pki_certs, false, AS_AUDIT_READS, false},
    {"pki/revoke", AS_M_POST, AS_AUTH_TOKEN, false, h_pki_revoke, false, AS_AUDIT_ALL, false},
    {"pki/rotate", AS_M_POST, AS_AUTH_TOKEN, true, h_pki_rotate, false, AS_AUDIT_ALL, false},
    {"svid/x509", AS_M_POST, AS_AUTH_TOKEN, false, h_svid_x509, false, AS_AUDIT_ALL, false},
    {"svid/jwt", AS_M_POST, AS_AUTH_TOKEN, false, h_svid_jwt, false, AS_AUDIT_ALL, false},
    {"svid/jwt/validate", AS_M_POST, AS_AUTH_TOKEN, false, h_svid_jwt_validate, false, AS_AUDIT_READS, false},
    {"svid/bundle", AS_M_GET, AS_AUTH_NONE, false, h_svid_bundle, false, AS_AUDIT_READS, false},
};
/* clang-format on */

size_t as_route_count(void)
{
    return sizeof routes / sizeof routes[0];
}

const struct as_route *as_route_at(size_t i)
{
    return i < as_route_count() ? &routes[i] : NULL;
}

size_t as_route_index(const struct as_route *r)
{
    return (size_t)(r - routes);
}

/* Matches path against pattern, capturing ":x" segments into req->params. */
static bool match(const char *pattern, struct as_req *req)
{
    const char *p = pattern;
    const char *s = req->path;
    size_t np = 0;
    size_t used = 0;
    while (*p && *s) {
        if (*p == ':') {
            const char *pe = strchr(p, '/');
            const char *se = strchr(s, '/');
            size_t sl = se ? (size_t)(se - s) : strlen(s);
            if (np >= AS_MAX_PARAMS || used + sl + 1 > sizeof req->param_buf) {
                return false;
            }
            memcpy(req->param_buf + used, s, sl);
            req->param_buf[used + sl] = '\0';
            req->params[np++] = req->param_buf + used;
            used += sl + 1;
            p = pe ? pe : p + strlen(p);
            s += sl;
            continue;
        }
        if (*p == '*' && p[1] == '\0') {
            return true;
        }
        if (*p != *s) {
            return false;
        }
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

enum as_err as_route_find(struct as_req *req, const struct as_route **out)
{
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        memset(req->params, 0, sizeof req->params);
        if (!match(routes[i].pattern, req)) {
            continue;
        }
        path_known = true;
        if (routes[i].methods & req->method) {
            *out = &routes[i];
            return AS_OK;
        }
    }
    return path_known ? AS_ERR_METHOD : AS_ERR_NOT_FOUND;
}

uint32_t as_route_caps(enum as_method m)
{
    switch (m) {
    case AS_M_GET:
    case AS_M_HEAD:
        return AS_CAP_READ;
    case AS_M_POST:
        return AS_CAP_CREATE | AS_CAP_UPDATE;
    case AS_M_DELETE:
        return AS_CAP_DELETE;
    case AS_M_LIST:
        return AS_CAP_LIST;
    case AS_M_OTHER:
        /* Only connect/ext-authz takes other methods (Envoy forwards the original one). */
        return AS_CAP_READ | AS_CAP_UPDATE;
    }
    return 0;
}

/*
 * Capabilities the caller holds for this request. A LIST is also checked on the path with a
 * trailing slash (Vault lists "secret/" and also honours rules written without the slash), so
 * both a rule on exactly "sys/policies/acl" and a glob on "sys/policies/acl/" grant listing it.
 */
static uint32_t request_caps(const struct as_req *req)
{
    uint32_t caps = as_acl_caps(req->acl, req->path);
    if (req->method == AS_M_LIST && (caps & AS_CAP_LIST) == 0) {
        char pp[sizeof req->path + 2];
        snprintf(pp, sizeof pp, "%s/", req->path);
        caps = as_acl_caps(req->acl, pp);
    }
    return caps;
}

enum as_err as_dispatch(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    const struct as_route *route = NULL;
    enum as_err r = as_route_find(req, &route);
    if (r == AS_ERR_NOT_FOUND) {
        return as_fail(resp, r, "no handler for route \"%s\"", req->path);
    }
    if (r != AS_OK) {
        return r;
    }
    req->route = route;
    /* The body is parsed once the route is known: a proxy's forwarded body is not ours. */
    char perr[160] = "";
    const char *raw = req->raw_body ? req->raw_body : "";
    if (route->opaque_body) {
        r = as_json_parse_object("", 0, &req->body, perr, sizeof perr);
    } else if (route->repeat_body) {
        r = as_json_cache_parse(srv->bodies, raw, req->raw_len, &req->body, perr, sizeof perr);
    } else {
        r = as_json_parse_object(raw, req->raw_len, &req->body, perr, sizeof perr);
    }
    if (r != AS_OK) {
        return r == AS_ERR_INVALID ? as_fail(resp, r, "%s", perr) : r;
    }
    if (route->auth == AS_AUTH_TOKEN) {
        if (req->token == NULL) {
            return as_fail(resp, AS_ERR_PERMISSION, "permission denied");
        }
        r = as_tokens_resolve(srv->tokens, req->token, &req->auth);
        if (r != AS_OK) {
            return r == AS_ERR_PERMISSION ? as_fail(resp, r, "permission denied") : r;
        }
        /* A token bound to networks works only from them (token_bound_cidrs, as Vault). */
        if (!as_token_addr_ok(req->auth, req->remote)) {
            return as_fail(resp, AS_ERR_PERMISSION, "permission denied");
        }
        if ((r = as_tokens_acl(srv->tokens, req->auth, &req->acl)) != AS_OK) {
            return r;
        }
        uint32_t caps = request_caps(req);
        if ((caps & as_route_caps(req->method)) == 0 ||
            (route->sudo && (caps & AS_CAP_SUDO) == 0)) {
            return as_fail(resp, AS_ERR_PERMISSION, "permission denied");
        }
    }
    /* The request line goes to the audit log before anything can change (SPEC §8): when it
     * cannot be written, the request fails with nothing done. Checks, and the routes that change
     * nothing, are audited after their decision (as_audit_mode), unless they spend a token use. */
    bool spends_use = req->auth != NULL && req->auth->num_uses > 0;
    if ((route->audit == AS_AUDIT_ALL || (route->audit == AS_AUDIT_READS && spends_use)) &&
        as_audit_enabled(srv->audit)) {
        if ((r = as_audit_request(srv->audit, req, NULL)) != AS_OK) {
            as_metrics_audit_failure();
            return AS_ERR_IO;
        }
        req->audit_req_done = true;
    }
    if (route->auth == AS_AUTH_TOKEN) {
        /* A limited-use token spends one use per authorized request (Vault). */
        if ((r = as_tokens_use(srv->tokens, req->auth, &req->last_use)) != AS_OK) {
            return r == AS_ERR_PERMISSION ? as_fail(resp, r, "permission denied") : r;
        }
    }
    return route->handler(srv, req, resp);
}
