/*
 * auth_cert.c: the cert auth method (SPEC §5), in the shape of Vault's TLS certificate method: a
 * role ("certs/:name") names what it trusts (a CA or pinned leaf PEM, or authsvc's own bundle,
 * every CA generation of it, so logins survive CA rotations) and which names it accepts; a
 * login uses the TLS client certificate of the connection, tries the named role or every role
 * of the mount in name order, and issues a token for the first one that accepts.
 *
 * The chain comes from the TLS layer unverified (the handshake only proved the client holds the
 * leaf's key); pki/clientcert.c judges it against the role's trust. A certificate that is one of
 * our own X.509-SVIDs must not be revoked, and the token is linked to it (login_cert): revoking
 * the SVID revokes the token and everything it obtained (storage does that part).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authsvc/server.h"

#define MAX_DISPLAY_NAME 128

/* Vault's texts for refused logins (builtin/credential/cert/path_login.go), the first with our
 * hint added. Vault has no "revoked" of its own (a CRL hit reads as MSG_CONSTRAINTS there); ours
 * says what happened, since the client holds the certificate anyway. */
#define MSG_NO_TLS                                                                        \
    "tls connection required: a client certificate must be supplied over TLS (the HTTPS " \
    "listener)"
#define MSG_NO_CERT "client certificate must be supplied"
#define MSG_UNTRUSTED "invalid certificate or no client certificate supplied"
#define MSG_CONSTRAINTS \
    "no chain matching all constraints could be found for this login certificate"
#define MSG_REVOKED "client certificate has been revoked"

/* ---- roles ---- */

/*
 * Vault cert-role constraints this method does not implement. Ignoring one (SPEC §2 ignores
 * unknown fields) would silently make a role accept more than its author wrote, so a non-empty
 * value is refused instead.
 */
static const char *const UNSUPPORTED_LISTS[] = {
    "allowed_names",
    "allowed_email_sans",
    "allowed_organizational_units",
    "required_extensions",
};

static enum as_err refuse_unsupported(json_t *b, char *why, size_t whylen)
{
    for (size_t i = 0; i < sizeof UNSUPPORTED_LISTS / sizeof UNSUPPORTED_LISTS[0]; i++) {
        json_t *v = NULL;
        bool bad = as_json_get_strlist(b, UNSUPPORTED_LISTS[i], &v, NULL) != AS_OK ||
                   json_array_size(v) > 0;
        json_decref(v);
        if (bad) {
            snprintf(why, whylen,
                     "\"%s\" is not supported by this server; use allowed_common_names, "
                     "allowed_dns_sans or allowed_uri_sans",
                     UNSUPPORTED_LISTS[i]);
            return AS_ERR_INVALID;
        }
    }
    bool ocsp = false;
    if (as_json_get_bool(b, "ocsp_enabled", &ocsp, NULL) != AS_OK || ocsp) {
        snprintf(why, whylen, "\"ocsp_enabled\" is not supported by this server");
        return AS_ERR_INVALID;
    }
    return AS_OK;
}

enum as_err as_cert_role_parse(struct as_server *srv, json_t *b, json_t **out, char *why,
                               size_t whylen)
{
    enum as_err r = AS_ERR_INVALID;
    const char *certificate = NULL;
    const char *display = "";
    const char *tmpl = "";
    bool own = false;
    json_t *cns = NULL, *dns_sans = NULL, *uri_sans = NULL;
    json_t *role = json_object();
    (void)srv;
    *out = NULL;
    if (role == NULL) {
        return AS_ERR_NOMEM;
    }
    if (as_json_get_string(b, "certificate", &certificate, NULL) != AS_OK ||
        as_json_get_string(b, "display_name", &display, NULL) != AS_OK ||
        as_json_get_string(b, "spiffe_id_template", &tmpl, NULL) != AS_OK) {
        snprintf(why, whylen, "certificate, display_name and spiffe_id_template must be strings");
        goto out;
    }
    if (as_json_get_bool(b, "trust_own_bundle", &own, NULL) != AS_OK) {
        snprintf(why, whylen, "trust_own_bundle must be a boolean");
        goto out;
    }
    bool have_cert = certificate != NULL && *certificate != '\0';
    if (have_cert == own) {
        snprintf(why, whylen,
                 "exactly one of \"certificate\" (a PEM CA or leaf certificate) and "
                 "\"trust_own_bundle\": true must be set");
        goto out;
    }
    if (have_cert && (r = as_clientcert_trust_check(certificate, NULL, why, whylen)) != AS_OK) {
        goto out;
    }
    r = AS_ERR_INVALID;
    display = display ? display : "";
    if (strlen(display) > MAX_DISPLAY_NAME) {
        snprintf(why, whylen, "display_name is longer than %d characters", MAX_DISPLAY_NAME);
        goto out;
    }
    if ((r = refuse_unsupported(b, why, whylen)) != AS_OK ||
        (r = as_role_strlist(b, "allowed_common_names", &cns, why, whylen)) != AS_OK ||
        (r = as_role_strlist(b, "allowed_dns_sans", &dns_sans, why, whylen)) != AS_OK ||
        (r = as_role_strlist(b, "allowed_uri_sans", &uri_sans, why, whylen)) != AS_OK ||
        (r = as_role_token_fields(b, role, why, whylen)) != AS_OK) {
        goto out;
    }
    r = AS_ERR_INVALID;
    tmpl = tmpl ? tmpl : "";
    if (*tmpl != '\0') {
        char twhy[256] = "";
        if (as_spiffe_template_check(tmpl, false, twhy, sizeof twhy) != AS_OK) {
            snprintf(why, whylen, "invalid spiffe_id_template: %s", twhy);
            goto out;
        }
        /* SPEC §5: {{cert:uri}} hands the certificate's own ID to the token, so the role must
         * say which IDs it accepts. The check passed, so "cert:uri" can only be that
         * placeholder (':' is in no SPIFFE path segment). */
        if (strstr(tmpl, "cert:uri") != NULL && json_array_size(uri_sans) == 0) {
            snprintf(why, whylen,
                     "a spiffe_id_template with {{cert:uri}} requires a non-empty "
                     "allowed_uri_sans");
            goto out;
        }
    }
    json_t *mine = json_pack("{s:s,s:b,s:s,s:O,s:O,s:O,s:s}", "certificate",
                             have_cert ? certificate : "", "trust_own_bundle", own, "display_name",
                             display, "allowed_common_names", cns, "allowed_dns_sans", dns_sans,
                             "allowed_uri_sans", uri_sans, "spiffe_id_template", tmpl);
    r = mine != NULL && json_object_update(role, mine) == 0 ? AS_OK : AS_ERR_NOMEM;
    json_decref(mine);
    if (r == AS_OK) {
        *out = role;
        role = NULL;
    }
out:
    json_decref(cns);
    json_decref(dns_sans);
    json_decref(uri_sans);
    json_decref(role);
    return r;
}

/* ---- login ---- */

/* At least one glob of the list matches one of the names; an empty list allows all (Vault). */
static bool any_match(json_t *globs, const char *const *names, size_t n)
{
    size_t i;
    json_t *g;
    if (json_array_size(globs) == 0) {
        return true;
    }
    json_array_foreach(globs, i, g)
    {
        for (size_t k = 0; k < n; k++) {
            if (names[k] != NULL && as_glob_match(json_string_value(g), names[k])) {
                return true;
            }
        }
    }
    return false;
}

/* The role's allowed_* constraints on the accepted leaf (Vault's matchesConstraints). */
static bool constraints_ok(json_t *role, const struct as_clientcert *cc, char *why, size_t whylen)
{
    const char *cn = as_clientcert_cn(cc);
    const char *dns[AS_CLIENTCERT_MAX_SANS];
    const char *uri[AS_CLIENTCERT_MAX_SANS];
    size_t nd = as_clientcert_dns_count(cc);
    size_t nu = as_clientcert_uri_count(cc);
    for (size_t i = 0; i < nd; i++) {
        dns[i] = as_clientcert_dns(cc, i);
    }
    for (size_t i = 0; i < nu; i++) {
        uri[i] = as_clientcert_uri(cc, i);
    }
    if (!any_match(json_object_get(role, "allowed_common_names"), &cn, 1)) {
        snprintf(why, whylen, "common name not allowed");
        return false;
    }
    if (!any_match(json_object_get(role, "allowed_dns_sans"), dns, nd)) {
        snprintf(why, whylen, "no DNS SAN allowed");
        return false;
    }
    if (!any_match(json_object_get(role, "allowed_uri_sans"), uri, nu)) {
        snprintf(why, whylen, "no URI SAN allowed");
        return false;
    }
    return true;
}

/* How far a role got with the certificate; the furthest one explains a refused login. */
enum stage { ST_NONE, ST_UNTRUSTED, ST_VERIFY, ST_CONSTRAINTS };

/* The trust of a role: its certificate, or authsvc's own bundle (fetched once per login). */
struct own_trust {
    char *bundle; /* every CA generation, or the upstream root */
    char *chains; /* every generation's issuing chain: the intermediates under an upstream */
};

static enum as_err trust_of(struct as_server *srv, json_t *role, struct own_trust *own,
                            const char **trust, const char **untrusted)
{
    if (!json_is_true(json_object_get(role, "trust_own_bundle"))) {
        *trust = as_json_str_or(role, "certificate", "");
        *untrusted = NULL;
        return AS_OK;
    }
    if (own->bundle == NULL) {
        /* Read now, not at role write: the bundle follows rotations (SPEC §5). */
        own->bundle = as_caset_bundle_pem(srv->caset);
        own->chains = as_caset_chains_pem(srv->caset);
        if (own->bundle == NULL || own->chains == NULL) {
            return AS_ERR_NOMEM;
        }
    }
    *trust = own->bundle;
    *untrusted = own->chains;
    return AS_OK;
}

/*
 * Whether the leaf is one of our X.509-SVIDs and, if so, whether it was revoked. Ours means a
 * record under its serial holds exactly these DER bytes: only our CA could have signed them, so
 * this also proves it chains to one of our generations. Anything else is not ours (a foreign
 * certificate may share a serial by chance).
 */
static enum as_err our_svid(struct as_server *srv, const struct as_clientcert *cc, bool *ours,
                            bool *revoked)
{
    struct as_cert_rec *rec = NULL;
    size_t len = 0;
    const unsigned char *der = as_clientcert_der(cc, &len);
    *ours = false;
    *revoked = false;
    enum as_err r = as_store_cert_get(srv->store, as_clientcert_serial(cc), &rec);
    if (r == AS_ERR_NOT_FOUND) {
        return AS_OK;
    }
    if (r != AS_OK) {
        return r;
    }
    *ours = strcmp(rec->kind, "x509") == 0 && rec->der != NULL && rec->der_len == len &&
            as_secret_eq(rec->der, der, len);
    *revoked = *ours && rec->revoked_at != 0;
    as_cert_rec_free(rec);
    return AS_OK;
}

/* Lowercases a role name into out (>= 130 bytes); false when too long. */
static bool role_key(const char *name, char *out, size_t outlen)
{
    size_t k = 0;
    for (; name[k] && k < outlen - 1; k++) {
        out[k] = (char)tolower((unsigned char)name[k]);
    }
    out[k] = '\0';
    return name[k] == '\0';
}

enum as_err as_cert_login(struct as_server *srv, const struct as_mount_rec *m, struct as_req *req,
                          struct as_resp *resp)
{
    enum as_err r;
    struct as_clientchain *ch = NULL;
    struct as_clientcert *cc = NULL;
    struct own_trust own = {NULL, NULL};
    char **names = NULL;
    size_t nnames = 0;
    json_t *role = NULL;
    json_t *meta = NULL;
    json_t *sids = NULL;
    char *spiffe_id = NULL;
    char *role_text = NULL;
    const char *name = NULL;
    char matched[130] = "";
    char why[512] = "";
    char best_why[512] = "";
    enum stage best = ST_NONE;
    json_error_t je;

    if (!req->tls) {
        return as_fail(resp, AS_ERR_INVALID, MSG_NO_TLS);
    }
    if (req->npeer == 0) {
        return as_fail(resp, AS_ERR_INVALID, MSG_NO_CERT);
    }
    if (as_json_get_string(req->body, "name", &name, NULL) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "\"name\" must be a string");
    }
    r = as_clientchain_parse(req->peer_der, req->peer_len, req->npeer, &ch, why, sizeof why);
    if (r != AS_OK) {
        r = r == AS_ERR_INVALID ? as_fail(resp, r, "failed to verify client's certificate: %s", why)
                                : r;
        goto out;
    }
    if (name != NULL && *name != '\0') {
        char key[130];
        if (!role_key(name, key, sizeof key)) {
            r = as_fail(resp, AS_ERR_INVALID, "role \"%.128s\" could not be found", name);
            goto out;
        }
        if ((names = calloc(1, sizeof *names)) == NULL || (names[0] = strdup(key)) == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        nnames = 1;
    } else if ((r = as_store_role_list(srv->store, m->path, &names, &nnames)) != AS_OK) {
        goto out;
    }
    if (nnames == 0) {
        r = as_fail(resp, AS_ERR_INVALID, "no certificate roles are configured at auth/%s",
                    m->path);
        goto out;
    }
    int64_t now = as_now();
    for (size_t i = 0; i < nnames && *matched == '\0'; i++) {
        const char *trust = NULL;
        const char *untrusted = NULL;
        enum as_clientcert_fail fail = AS_CC_OK;
        free(role_text);
        role_text = NULL;
        json_decref(role);
        role = NULL;
        r = as_role_get_cached(srv, m->path, names[i], &role_text);
        if (r == AS_ERR_NOT_FOUND && nnames == 1 && name != NULL && *name != '\0') {
            r = as_fail(resp, AS_ERR_INVALID, "role \"%.128s\" could not be found", name);
            goto out;
        }
        if (r == AS_ERR_NOT_FOUND) {
            continue; /* deleted since the list was read */
        }
        if (r != AS_OK) {
            goto out;
        }
        if ((role = json_loads(role_text, 0, &je)) == NULL) {
            r = AS_ERR_INTERNAL;
            goto out;
        }
        if ((r = trust_of(srv, role, &own, &trust, &untrusted)) != AS_OK) {
            goto out;
        }
        r = as_clientchain_verify(ch, trust, untrusted, now, &cc, &fail, why, sizeof why);
        if (r != AS_OK && r != AS_ERR_INVALID) {
            goto out;
        }
        enum stage st = ST_CONSTRAINTS;
        if (r == AS_ERR_INVALID) {
            if (fail == AS_CC_TRUST) {
                as_warn("auth/%s: role %s has an unusable certificate: %s", m->path, names[i], why);
            }
            st = fail == AS_CC_UNTRUSTED || fail == AS_CC_TRUST ? ST_UNTRUSTED : ST_VERIFY;
        } else if (constraints_ok(role, cc, why, sizeof why)) {
            snprintf(matched, sizeof matched, "%s", names[i]);
            break;
        }
        as_clientcert_free(cc);
        cc = NULL;
        as_debug("auth/%s: role %s refused the client certificate: %s", m->path, names[i], why);
        if (st > best) {
            best = st;
            snprintf(best_why, sizeof best_why, "%s", why);
        }
    }
    if (*matched == '\0') {
        switch (best) {
        case ST_CONSTRAINTS:
            r = as_fail(resp, AS_ERR_INVALID, MSG_CONSTRAINTS);
            break;
        case ST_VERIFY:
            r = as_fail(resp, AS_ERR_INVALID, "failed to verify client's certificate: %s",
                        best_why);
            break;
        case ST_UNTRUSTED:
        case ST_NONE:
            r = as_fail(resp, AS_ERR_INVALID, MSG_UNTRUSTED);
            break;
        }
        goto out;
    }
    json_t *cidrs = json_object_get(role, "token_bound_cidrs");
    if (json_array_size(cidrs) > 0 && !as_addr_in_cidrs(req->remote, cidrs)) {
        r = as_fail(resp, AS_ERR_PERMISSION, "permission denied");
        goto out;
    }
    bool ours = false, revoked = false;
    if ((r = our_svid(srv, cc, &ours, &revoked)) != AS_OK) {
        goto out;
    }
    if (revoked) {
        as_info("auth/%s: refused revoked certificate %s", m->path, as_clientcert_serial(cc));
        r = as_fail(resp, AS_ERR_INVALID, MSG_REVOKED);
        goto out;
    }
    const char *cn = as_clientcert_cn(cc);
    size_t nuri = as_clientcert_uri_count(cc);
    const char *subject = cn != NULL                        ? cn
                          : nuri > 0                        ? as_clientcert_uri(cc, 0)
                          : as_clientcert_dns_count(cc) > 0 ? as_clientcert_dns(cc, 0)
                                                            : as_clientcert_serial(cc);
    if ((sids = json_array()) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    const char *tmpl = as_json_str_or(role, "spiffe_id_template", "");
    if (*tmpl != '\0') {
        if (strstr(tmpl, "cert:uri") != NULL && nuri != 1) {
            r = as_fail(resp, AS_ERR_INVALID,
                        "error expanding spiffe_id_template: {{cert:uri}} needs a certificate "
                        "with exactly one URI SAN; it has %zu",
                        nuri);
            goto out;
        }
        struct as_template_ctx ctx = {
            .trust_domain = srv->cfg.trust_domain,
            .role = matched,
            .cert_cn = cn,
            .cert_uri = nuri == 1 ? as_clientcert_uri(cc, 0) : NULL,
        };
        if (as_spiffe_template_expand(tmpl, &ctx, &spiffe_id, why, sizeof why) != AS_OK) {
            r = as_fail(resp, AS_ERR_INVALID, "error expanding spiffe_id_template: %s", why);
            goto out;
        }
        if (json_array_append_new(sids, json_string(spiffe_id)) != 0) {
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    meta = json_pack("{s:s,s:s,s:s,s:s}", "role", matched, "subject", subject, "cert_serial",
                     as_clientcert_serial(cc), "cert_name", matched);
    if (meta == NULL ||
        (cn != NULL && json_object_set_new(meta, "common_name", json_string(cn)) != 0)) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    /* Vault names the token after the role's display_name, which defaults to the role name. */
    const char *display = as_json_str_or(role, "display_name", "");
    struct as_login in = {
        .user = *display != '\0' ? display : matched,
        .role = matched,
        .policies = json_object_get(role, "token_policies"),
        .meta = meta,
        .spiffe_ids = sids,
        .allowed_dns = json_object_get(role, "allowed_dns_names"),
        .bound_cidrs = cidrs,
        .ttl = json_integer_value(json_object_get(role, "token_ttl")),
        .max_ttl = json_integer_value(json_object_get(role, "token_max_ttl")),
        .num_uses = json_integer_value(json_object_get(role, "token_num_uses")),
        .no_default_policy = json_is_true(json_object_get(role, "token_no_default_policy")),
        .login_cert = ours ? as_clientcert_serial(cc) : NULL,
    };
    r = as_login_issue(srv, m, &in, resp);
out:
    as_clientchain_free(ch);
    as_clientcert_free(cc);
    as_store_strv_free(names, nnames);
    free(own.bundle);
    free(own.chains);
    free(role_text);
    free(spiffe_id);
    json_decref(role);
    json_decref(meta);
    json_decref(sids);
    return r;
}
