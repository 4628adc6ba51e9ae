/*
 * routes.c: the one route table. Every endpoint is a row: pattern, methods, whether it needs a
 * token, whether it needs sudo. Authorization happens here, once, before the handler, from the
 * row and the request path (SPEC §4); handlers never check policy by hand for access.
 */
#include <stdio.h>
#include <string.h>

#include "authsvc/server.h"

#define M_RW (AS_M_GET | AS_M_POST | AS_M_DELETE)

static const struct as_route routes[] = {
    {"sys/health", AS_M_GET | AS_M_HEAD, AS_AUTH_NONE, false, h_sys_health},
    {"sys/bootstrap", AS_M_POST, AS_AUTH_NONE, false, h_sys_bootstrap},
    {"sys/policy", AS_M_GET | AS_M_LIST, AS_AUTH_TOKEN, false, h_sys_policy_list},
    {"sys/policy/:name", M_RW, AS_AUTH_TOKEN, false, h_sys_policy},
    {"sys/policies/acl", AS_M_LIST, AS_AUTH_TOKEN, false, h_sys_policies_acl_list},
    {"sys/policies/acl/:name", M_RW, AS_AUTH_TOKEN, false, h_sys_policies_acl},
    {"sys/auth", AS_M_GET, AS_AUTH_TOKEN, false, h_sys_auth},
    {"sys/auth/:mount", AS_M_POST | AS_M_DELETE, AS_AUTH_TOKEN, true, h_sys_auth_mount},
    {"auth/token/create", AS_M_POST, AS_AUTH_TOKEN, false, h_token_create},
    {"auth/token/create-orphan", AS_M_POST, AS_AUTH_TOKEN, false, h_token_create},
    {"auth/token/lookup", AS_M_POST | AS_M_GET, AS_AUTH_TOKEN, false, h_token_lookup},
    {"auth/token/lookup-self", AS_M_GET | AS_M_POST, AS_AUTH_TOKEN, false, h_token_lookup},
    {"auth/token/lookup-accessor", AS_M_POST, AS_AUTH_TOKEN, false, h_token_lookup},
    {"auth/token/renew", AS_M_POST, AS_AUTH_TOKEN, false, h_token_renew},
    {"auth/token/renew-self", AS_M_POST, AS_AUTH_TOKEN, false, h_token_renew},
    {"auth/token/renew-accessor", AS_M_POST, AS_AUTH_TOKEN, false, h_token_renew},
    {"auth/token/revoke", AS_M_POST, AS_AUTH_TOKEN, false, h_token_revoke},
    {"auth/token/revoke-self", AS_M_POST, AS_AUTH_TOKEN, false, h_token_revoke},
    {"auth/token/revoke-accessor", AS_M_POST, AS_AUTH_TOKEN, false, h_token_revoke},
    {"auth/token/revoke-orphan", AS_M_POST, AS_AUTH_TOKEN, true, h_token_revoke},
    {"auth/token/accessors", AS_M_LIST, AS_AUTH_TOKEN, true, h_token_accessors},
    /* Auth methods: after every auth/token/ row, so "token" is never taken for a mount. */
    {"auth/:mount/config", AS_M_GET | AS_M_POST, AS_AUTH_TOKEN, false, h_auth_config},
    {"auth/:mount/role", AS_M_LIST, AS_AUTH_TOKEN, false, h_auth_roles},
    {"auth/:mount/role/:name", M_RW, AS_AUTH_TOKEN, false, h_auth_role},
    {"auth/:mount/certs", AS_M_LIST, AS_AUTH_TOKEN, false, h_auth_roles},
    {"auth/:mount/certs/:name", M_RW, AS_AUTH_TOKEN, false, h_auth_role},
    {"auth/:mount/login", AS_M_POST, AS_AUTH_NONE, false, h_auth_login},
    {"sys/identities", AS_M_GET | AS_M_LIST, AS_AUTH_TOKEN, true, h_sys_identities},
    {"pki/ca", AS_M_GET, AS_AUTH_NONE, false, h_pki_ca},
    {"pki/ca/pem", AS_M_GET, AS_AUTH_NONE, false, h_pki_ca},
    {"pki/ca_chain", AS_M_GET, AS_AUTH_NONE, false, h_pki_ca},
    {"pki/bundle/pem", AS_M_GET, AS_AUTH_NONE, false, h_pki_bundle_pem},
    {"pki/crl", AS_M_GET, AS_AUTH_NONE, false, h_pki_crl},
    {"pki/crl/pem", AS_M_GET, AS_AUTH_NONE, false, h_pki_crl},
    {"pki/cert/:serial", AS_M_GET, AS_AUTH_NONE, false, h_pki_cert},
    {"pki/certs", AS_M_LIST, AS_AUTH_TOKEN, false, h_pki_certs},
    {"pki/certs/revoked", AS_M_LIST, AS_AUTH_TOKEN, false, h_pki_certs},
    {"pki/revoke", AS_M_POST, AS_AUTH_TOKEN, false, h_pki_revoke},
    {"pki/rotate", AS_M_POST, AS_AUTH_TOKEN, true, h_pki_rotate},
    {"svid/x509", AS_M_POST, AS_AUTH_TOKEN, false, h_svid_x509},
    {"svid/jwt", AS_M_POST, AS_AUTH_TOKEN, false, h_svid_jwt},
    {"svid/jwt/validate", AS_M_POST, AS_AUTH_TOKEN, false, h_svid_jwt_validate},
    {"svid/bundle", AS_M_GET, AS_AUTH_NONE, false, h_svid_bundle},
};

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
        return 0;
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
    if (route->auth == AS_AUTH_TOKEN) {
        if (req->token == NULL) {
            return as_fail(resp, AS_ERR_PERMISSION, "permission denied");
        }
        r = as_tokens_resolve(srv->tokens, req->token, &req->auth);
        if (r != AS_OK) {
            return r == AS_ERR_PERMISSION ? as_fail(resp, r, "permission denied") : r;
        }
        if ((r = as_tokens_acl(srv->tokens, req->auth, &req->acl)) != AS_OK) {
            return r;
        }
        uint32_t caps = request_caps(req);
        if ((caps & as_route_caps(req->method)) == 0 ||
            (route->sudo && (caps & AS_CAP_SUDO) == 0)) {
            return as_fail(resp, AS_ERR_PERMISSION, "permission denied");
        }
        /* A limited-use token spends one use per authorized request (Vault). */
        if ((r = as_tokens_use(srv->tokens, req->auth, &req->last_use)) != AS_OK) {
            return r == AS_ERR_PERMISSION ? as_fail(resp, r, "permission denied") : r;
        }
    }
    return route->handler(srv, req, resp);
}
