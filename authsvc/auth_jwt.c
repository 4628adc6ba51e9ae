/*
 * auth_jwt.c: the jwt auth method (SPEC §5), in the shape of Vault's JWT plugin: a mount config
 * with static PEM keys or a JWKS URL, roles that bind claims, and a login that checks a platform
 * JWT in Vault's order and with Vault's error texts, then issues a token whose identity comes
 * from the role's spiffe_id_template.
 *
 * Keys are parsed once per configuration and kept per mount; a JWKS is refetched when a token
 * names a kid we do not know, at most once per 10 s, and concurrent logins share that fetch.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "authsvc/server.h"

#define JWKS_REFETCH_SECONDS 10
#define JWKS_MAX_BYTES (1024 * 1024)
#define DEFAULT_CLOCK_SKEW 60
#define DEFAULT_EXP_NBF_LEEWAY 150

/* ---- per-mount key cache ---- */

struct jwks_state {
    char mount[72];
    char *config_text;    /* the config these keys were made from */
    char *failed_config;  /* a config whose keys could not be loaded at last_fetch */
    struct as_jwks *keys; /* swapped under lock; readers verify under the read lock */
    int64_t last_fetch;
    pthread_rwlock_t lock;
    pthread_mutex_t fetch_lock;
    struct jwks_state *next;
};

static pthread_mutex_t states_lock = PTHREAD_MUTEX_INITIALIZER;
static struct jwks_state *states;

void as_auth_mount_forget(const char *path)
{
    pthread_mutex_lock(&states_lock);
    for (struct jwks_state *s = states; s != NULL; s = s->next) {
        if (strcmp(s->mount, path) == 0) {
            /* Kept allocated (a login may hold it); emptied so nothing stale is ever used. */
            pthread_rwlock_wrlock(&s->lock);
            free(s->config_text);
            s->config_text = NULL;
            free(s->failed_config);
            s->failed_config = NULL;
            as_jwks_free(s->keys);
            s->keys = NULL;
            pthread_rwlock_unlock(&s->lock);
        }
    }
    pthread_mutex_unlock(&states_lock);
}

static struct jwks_state *state_for(const char *mount)
{
    pthread_mutex_lock(&states_lock);
    struct jwks_state *s = states;
    while (s != NULL && strcmp(s->mount, mount) != 0) {
        s = s->next;
    }
    if (s == NULL && (s = calloc(1, sizeof *s)) != NULL) {
        snprintf(s->mount, sizeof s->mount, "%s", mount);
        pthread_rwlock_init(&s->lock, NULL);
        pthread_mutex_init(&s->fetch_lock, NULL);
        s->next = states;
        states = s;
    }
    pthread_mutex_unlock(&states_lock);
    return s;
}

/* ---- JWKS over HTTPS ---- */

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
    struct as_buf *b = ud;
    if (n != 0 && size > SIZE_MAX / n) {
        return 0;
    }
    return as_buf_append(b, p, size * n) == AS_OK ? size * n : 0;
}

static bool host_is_loopback(const char *host)
{
    unsigned char a[16];
    if (strcmp(host, "localhost") == 0) {
        return true;
    }
    if (inet_pton(AF_INET, host, a) == 1) {
        return a[0] == 127;
    }
    char h6[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof h6) {
        memcpy(h6, host + 1, n - 2);
        h6[n - 2] = '\0';
        host = h6;
    }
    static const unsigned char lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return inet_pton(AF_INET6, host, a) == 1 && memcmp(a, lo6, 16) == 0;
}

/* The URL must be https, or http to a loopback address (local test issuers). */
static enum as_err check_url(const char *url, char *why, size_t whylen)
{
    CURLU *u = curl_url();
    char *scheme = NULL;
    char *host = NULL;
    enum as_err r = AS_ERR_INVALID;
    if (u == NULL) {
        return AS_ERR_NOMEM;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(why, whylen, "jwks_url is not a valid URL");
    } else if (strcmp(scheme, "https") == 0 ||
               (strcmp(scheme, "http") == 0 && host_is_loopback(host))) {
        r = AS_OK;
    } else {
        snprintf(why, whylen, "jwks_url must use https (http only to a loopback address)");
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return r;
}

static enum as_err fetch_jwks(const char *url, const char *ca_pem, struct as_jwks **out, char *why,
                              size_t whylen)
{
    struct as_buf body;
    long status = 0;
    enum as_err r;
    CURL *c = curl_easy_init();
    if (c == NULL) {
        return AS_ERR_NOMEM;
    }
    as_buf_init(&body, JWKS_MAX_BYTES);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    if (ca_pem != NULL && *ca_pem != '\0') {
        struct curl_blob blob = {(void *)ca_pem, strlen(ca_pem), CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
    }
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (cc != CURLE_OK) {
        snprintf(why, whylen, "fetching keys failed: %s", curl_easy_strerror(cc));
        r = AS_ERR_INVALID;
    } else if (status != 200) {
        snprintf(why, whylen, "fetching keys failed: HTTP %ld", status);
        r = AS_ERR_INVALID;
    } else {
        r = as_jwks_parse(body.data ? body.data : "", body.len, out, why, whylen);
    }
    as_buf_free(&body, false);
    return r;
}

/* ---- config ---- */

static enum as_err keys_from_config(json_t *cfg, struct as_jwks **out, char *why, size_t whylen)
{
    json_t *pems = json_object_get(cfg, "jwt_validation_pubkeys");
    if (json_array_size(pems) > 0) {
        return as_jwks_from_pems(pems, out, why, whylen);
    }
    return fetch_jwks(as_json_str_or(cfg, "jwks_url", ""), as_json_str_or(cfg, "jwks_ca_pem", NULL),
                      out, why, whylen);
}

static unsigned algs_of(json_t *cfg)
{
    unsigned algs = 0;
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(cfg, "jwt_supported_algs"), i, a)
    {
        unsigned bit = 0;
        if (as_jwt_alg_parse(json_string_value(a), &bit) == AS_OK) {
            algs |= bit;
        }
    }
    return algs ? algs : AS_JWT_ALGS_ALL;
}

enum as_err as_jwt_config_write(struct as_server *srv, const struct as_mount_rec *m,
                                struct as_req *req, struct as_resp *resp)
{
    json_t *b = req->body;
    json_t *pems = NULL;
    json_t *algs = NULL;
    const char *url = NULL;
    const char *ca = NULL;
    const char *iss = NULL;
    const char *def_role = NULL;
    struct as_jwks *keys = NULL;
    char why[256] = "";
    enum as_err r;
    (void)srv;
    if (as_json_get_strlist(b, "jwt_validation_pubkeys", &pems, NULL) != AS_OK ||
        as_json_get_strlist(b, "jwt_supported_algs", &algs, NULL) != AS_OK ||
        as_json_get_string(b, "jwks_url", &url, NULL) != AS_OK ||
        as_json_get_string(b, "jwks_ca_pem", &ca, NULL) != AS_OK ||
        as_json_get_string(b, "bound_issuer", &iss, NULL) != AS_OK ||
        as_json_get_string(b, "default_role", &def_role, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID, "invalid config: a field has the wrong type");
        goto out;
    }
    bool have_pems = json_array_size(pems) > 0;
    bool have_url = url != NULL && *url != '\0';
    if (have_pems == have_url) {
        r = as_fail(resp, AS_ERR_INVALID,
                    "exactly one of 'jwt_validation_pubkeys', 'jwks_url' must be set");
        goto out;
    }
    if (json_object_get(b, "oidc_discovery_url") != NULL &&
        !json_is_null(json_object_get(b, "oidc_discovery_url"))) {
        r = as_fail(resp, AS_ERR_INVALID, "oidc_discovery_url is not supported");
        goto out;
    }
    size_t i;
    json_t *a;
    json_array_foreach(algs, i, a)
    {
        unsigned bit;
        if (as_jwt_alg_parse(json_string_value(a), &bit) != AS_OK) {
            r = as_fail(resp, AS_ERR_INVALID,
                        "invalid jwt_supported_algs entry \"%.20s\": use RS256, RS384, RS512, "
                        "ES256, ES384 or ES512",
                        json_string_value(a));
            goto out;
        }
    }
    if (have_url && check_url(url, why, sizeof why) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID, "%s", why);
        goto out;
    }
    json_t *cfg = json_pack(
        "{s:o,s:s,s:s,s:s,s:o,s:s}", "jwt_validation_pubkeys",
        pems ? json_incref(pems) : json_array(), "jwks_url", have_url ? url : "", "jwks_ca_pem",
        ca ? ca : "", "bound_issuer", iss ? iss : "", "jwt_supported_algs",
        algs ? json_incref(algs) : json_array(), "default_role", def_role ? def_role : "");
    if (cfg == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    /* The keys must work now: a bad PEM or an unreachable JWKS is refused at write time. */
    r = keys_from_config(cfg, &keys, why, sizeof why);
    if (r != AS_OK) {
        json_decref(cfg);
        r = r == AS_ERR_INVALID ? as_fail(resp, r, "error checking keys: %s", why) : r;
        goto out;
    }
    char *text = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(cfg);
    if (text == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    r = as_store_mount_set_config(srv->store, m->path, text);
    if (r == AS_OK) {
        struct jwks_state *s = state_for(m->path);
        if (s != NULL) {
            pthread_rwlock_wrlock(&s->lock);
            as_jwks_free(s->keys);
            free(s->config_text);
            s->keys = keys;
            s->config_text = text;
            s->last_fetch = as_now();
            keys = NULL;
            text = NULL;
            pthread_rwlock_unlock(&s->lock);
        }
        resp->status = 204;
    }
    free(text);
out:
    as_jwks_free(keys);
    json_decref(pems);
    json_decref(algs);
    return r;
}

enum as_err as_jwt_config_read(struct as_server *srv, const struct as_mount_rec *m,
                               struct as_resp *resp)
{
    (void)srv;
    json_error_t je;
    if (m->config_json == NULL) {
        return as_fail(resp, AS_ERR_NOT_FOUND, "auth/%s is not configured", m->path);
    }
    resp->data = json_loads(m->config_json, 0, &je);
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_INTERNAL;
}

/* ---- roles ---- */

/* A leeway: integer seconds (-1 disables it, 0 means the default) or a duration string. */
static enum as_err get_leeway(json_t *b, const char *key, int64_t *out)
{
    json_t *v = json_object_get(b, key);
    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return AS_OK;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return *out >= -1 ? AS_OK : AS_ERR_INVALID;
    }
    if (json_is_string(v) && strcmp(json_string_value(v), "-1") == 0) {
        *out = -1;
        return AS_OK;
    }
    return as_json_get_duration(b, key, out, NULL);
}

enum as_err as_jwt_role_parse(struct as_server *srv, json_t *b, json_t **out, char *why,
                              size_t whylen)
{
    enum as_err r = AS_ERR_INVALID;
    const char *role_type = "jwt";
    const char *user_claim = NULL;
    const char *bound_subject = "";
    const char *bct = "string";
    const char *tmpl = "";
    json_t *auds = NULL;
    json_t *role = json_object();
    int64_t skew = 0, expl = 0, nbfl = 0;
    (void)srv;
    if (role == NULL) {
        return AS_ERR_NOMEM;
    }
    if (as_json_get_string(b, "role_type", &role_type, NULL) != AS_OK ||
        strcmp(role_type ? role_type : "jwt", "jwt") != 0) {
        snprintf(why, whylen, "role_type must be \"jwt\" (oidc roles are not supported)");
        goto out;
    }
    if (as_json_get_string(b, "user_claim", &user_claim, NULL) != AS_OK || user_claim == NULL ||
        *user_claim == '\0') {
        snprintf(why, whylen, "a user claim must be defined on the role");
        goto out;
    }
    if (as_json_get_string(b, "bound_subject", &bound_subject, NULL) != AS_OK ||
        as_json_get_string(b, "bound_claims_type", &bct, NULL) != AS_OK ||
        as_json_get_string(b, "spiffe_id_template", &tmpl, NULL) != AS_OK) {
        snprintf(why, whylen,
                 "bound_subject, bound_claims_type and spiffe_id_template must "
                 "be strings");
        goto out;
    }
    bct = bct ? bct : "string";
    if (strcmp(bct, "string") != 0 && strcmp(bct, "glob") != 0) {
        snprintf(why, whylen, "invalid 'bound_claims_type': %.20s", bct);
        goto out;
    }
    if ((r = as_role_strlist(b, "bound_audiences", &auds, why, whylen)) != AS_OK ||
        (r = as_role_token_fields(b, role, why, whylen)) != AS_OK) {
        goto out;
    }
    r = AS_ERR_INVALID;
    if (get_leeway(b, "clock_skew_leeway", &skew) != AS_OK ||
        get_leeway(b, "expiration_leeway", &expl) != AS_OK ||
        get_leeway(b, "not_before_leeway", &nbfl) != AS_OK) {
        snprintf(why, whylen,
                 "leeways must be seconds (-1 disables, 0 is the default) or "
                 "durations");
        goto out;
    }
    json_t *bc = json_object_get(b, "bound_claims");
    if (bc != NULL && !json_is_null(bc)) {
        const char *k;
        json_t *v;
        if (!json_is_object(bc)) {
            snprintf(why, whylen, "bound_claims must be an object");
            goto out;
        }
        json_object_foreach(bc, k, v)
        {
            bool ok = json_is_string(v);
            if (json_is_array(v)) {
                ok = json_array_size(v) > 0;
                size_t j;
                json_t *e;
                json_array_foreach(v, j, e)
                {
                    ok = ok && json_is_string(e);
                }
            }
            if (!ok) {
                snprintf(why, whylen, "bound claim \"%.60s\" must be a string or a list of strings",
                         k);
                goto out;
            }
        }
    } else {
        bc = NULL;
    }
    json_t *cm = json_object_get(b, "claim_mappings");
    if (cm != NULL && !json_is_null(cm)) {
        const char *k;
        json_t *v;
        if (!json_is_object(cm)) {
            snprintf(why, whylen, "claim_mappings must be an object");
            goto out;
        }
        json_object_foreach(cm, k, v)
        {
            const char *to = json_string_value(v);
            if (to == NULL || strcmp(to, "role") == 0 || strcmp(to, "subject") == 0) {
                snprintf(why, whylen,
                         "claim_mappings values must be strings other than the reserved "
                         "metadata keys \"role\" and \"subject\"");
                goto out;
            }
        }
    } else {
        cm = NULL;
    }
    if (json_array_size(auds) == 0 && (bound_subject == NULL || *bound_subject == '\0') &&
        bc == NULL && json_array_size(json_object_get(role, "token_bound_cidrs")) == 0) {
        snprintf(why, whylen,
                 "must have at least one bound constraint when creating/updating "
                 "a role");
        goto out;
    }
    if (tmpl != NULL && *tmpl != '\0' &&
        as_spiffe_template_check(tmpl, true, why, whylen) != AS_OK) {
        goto out;
    }
    json_t *own = json_pack(
        "{s:s,s:s,s:O,s:s,s:O?,s:s,s:O?,s:I,s:I,s:I,s:s}", "role_type", "jwt", "user_claim",
        user_claim, "bound_audiences", auds, "bound_subject", bound_subject ? bound_subject : "",
        "bound_claims", bc, "bound_claims_type", bct, "claim_mappings", cm, "clock_skew_leeway",
        (json_int_t)skew, "expiration_leeway", (json_int_t)expl, "not_before_leeway",
        (json_int_t)nbfl, "spiffe_id_template", tmpl ? tmpl : "");
    if (own == NULL || json_object_update(role, own) != 0) {
        json_decref(own);
        r = AS_ERR_NOMEM;
        goto out;
    }
    json_decref(own);
    *out = role;
    role = NULL;
    r = AS_OK;
out:
    json_decref(auds);
    json_decref(role);
    return r;
}

/* ---- login ---- */

/* A claim by name: a JSON Pointer when it starts with '/', else a top-level key. */
static json_t *claim_at(json_t *claims, const char *name)
{
    return name[0] == '/' ? as_json_pointer(claims, name) : json_object_get(claims, name);
}

/* A scalar claim as text (strings as is, integers and booleans spelled out). */
static bool claim_text(json_t *v, char *out, size_t outlen)
{
    if (json_is_string(v)) {
        snprintf(out, outlen, "%s", json_string_value(v));
        return strlen(json_string_value(v)) < outlen;
    }
    if (json_is_integer(v)) {
        snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    }
    if (json_is_boolean(v)) {
        snprintf(out, outlen, "%s", json_is_true(v) ? "true" : "false");
        return true;
    }
    return false;
}

static bool value_matches(json_t *want, const char *have, bool glob)
{
    size_t i;
    json_t *w;
    if (json_is_string(want)) {
        return glob ? as_glob_match(json_string_value(want), have)
                    : strcmp(json_string_value(want), have) == 0;
    }
    json_array_foreach(want, i, w)
    {
        if (value_matches(w, have, glob)) {
            return true;
        }
    }
    return false;
}

/* Vault's bound_claims: every bound claim must be present and match one of its values. */
static enum as_err check_bound_claims(json_t *role, json_t *claims, char *why, size_t whylen)
{
    json_t *bc = json_object_get(role, "bound_claims");
    bool glob = strcmp(as_json_str_or(role, "bound_claims_type", "string"), "glob") == 0;
    const char *k;
    json_t *want;
    json_object_foreach(bc, k, want)
    {
        json_t *v = claim_at(claims, k);
        char text[1024];
        bool ok = false;
        if (v == NULL) {
            snprintf(why, whylen, "error validating claims: claim \"%.100s\" is missing", k);
            return AS_ERR_INVALID;
        }
        if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                ok = ok || (claim_text(e, text, sizeof text) && value_matches(want, text, glob));
            }
        } else {
            ok = claim_text(v, text, sizeof text) && value_matches(want, text, glob);
        }
        if (!ok) {
            snprintf(why, whylen,
                     "error validating claims: claim \"%.100s\" does not match any associated "
                     "bound claim values",
                     k);
            return AS_ERR_INVALID;
        }
    }
    return AS_OK;
}

static bool num_claim(json_t *claims, const char *k, double *out, bool *bad)
{
    json_t *v = json_object_get(claims, k);
    if (v == NULL || json_is_null(v)) {
        *out = 0;
        return false;
    }
    if (!json_is_number(v)) {
        *bad = true;
        return false;
    }
    *out = json_number_value(v);
    return true;
}

/*
 * Time, issuer, subject and audience checks in the order and with the texts of Vault's JWT
 * plugin (its go-jose validation, without the library prefix).
 */
static enum as_err check_registered(json_t *cfg, json_t *role, json_t *claims, int64_t now,
                                    char *why, size_t whylen)
{
    double iat = 0, exp = 0, nbf = 0;
    bool bad = false;
    bool has_iat = num_claim(claims, "iat", &iat, &bad);
    bool has_exp = num_claim(claims, "exp", &exp, &bad);
    bool has_nbf = num_claim(claims, "nbf", &nbf, &bad);
    if (bad) {
        snprintf(why, whylen, "error parsing token: exp, nbf and iat must be numeric dates");
        return AS_ERR_INVALID;
    }
    if (!has_iat && !has_exp && !has_nbf) {
        snprintf(why, whylen, "no issue time, notbefore, or expiration time encoded in token");
        return AS_ERR_INVALID;
    }
    int64_t expl = json_integer_value(json_object_get(role, "expiration_leeway"));
    int64_t nbfl = json_integer_value(json_object_get(role, "not_before_leeway"));
    int64_t skew = json_integer_value(json_object_get(role, "clock_skew_leeway"));
    expl = expl < 0 ? 0 : expl == 0 ? DEFAULT_EXP_NBF_LEEWAY : expl;
    nbfl = nbfl < 0 ? 0 : nbfl == 0 ? DEFAULT_EXP_NBF_LEEWAY : nbfl;
    skew = skew < 0 ? 0 : skew == 0 ? DEFAULT_CLOCK_SKEW : skew;
    /* Only one of the times given: Vault derives the others with the role's leeways. */
    if (!has_exp) {
        double start = nbf > iat ? nbf : iat;
        exp = start + (double)expl;
    }
    if (!has_nbf) {
        nbf = has_iat ? iat : exp - (double)nbfl;
    }
    json_t *aud = json_object_get(claims, "aud");
    json_t *bound_auds = json_object_get(role, "bound_audiences");
    bool aud_present =
        (json_is_string(aud) && json_string_length(aud) > 0) || json_array_size(aud) > 0;
    if (aud != NULL && !json_is_null(aud) && !json_is_string(aud) && !json_is_array(aud)) {
        snprintf(why, whylen, "error parsing token: aud must be a string or a list");
        return AS_ERR_INVALID;
    }
    if (aud_present && json_array_size(bound_auds) == 0) {
        snprintf(why, whylen, "audience claim found in JWT but no audiences bound to the role");
        return AS_ERR_INVALID;
    }
    const char *bound_iss = as_json_str_or(cfg, "bound_issuer", "");
    const char *iss = as_json_str_or(claims, "iss", NULL);
    if (*bound_iss != '\0' && (iss == NULL || strcmp(iss, bound_iss) != 0)) {
        snprintf(why, whylen,
                 "error validating claims: validation failed, invalid issuer "
                 "claim (iss)");
        return AS_ERR_INVALID;
    }
    const char *bound_sub = as_json_str_or(role, "bound_subject", "");
    const char *sub = as_json_str_or(claims, "sub", NULL);
    if (*bound_sub != '\0' && (sub == NULL || strcmp(sub, bound_sub) != 0)) {
        snprintf(why, whylen,
                 "error validating claims: validation failed, invalid subject "
                 "claim (sub)");
        return AS_ERR_INVALID;
    }
    if ((double)now + (double)skew < nbf) {
        snprintf(why, whylen,
                 "error validating claims: validation failed, token not valid yet "
                 "(nbf)");
        return AS_ERR_INVALID;
    }
    if ((double)now - (double)skew > exp) {
        snprintf(why, whylen,
                 "error validating claims: validation failed, token is expired "
                 "(exp)");
        return AS_ERR_INVALID;
    }
    if (has_iat && (double)now + (double)skew < iat) {
        snprintf(why, whylen,
                 "error validating claims: validation field, token issued in the "
                 "future (iat)");
        return AS_ERR_INVALID;
    }
    if (json_array_size(bound_auds) > 0) {
        bool match = false;
        size_t i;
        json_t *b;
        json_array_foreach(bound_auds, i, b)
        {
            const char *want = json_string_value(b);
            if (json_is_string(aud)) {
                match = match || strcmp(json_string_value(aud), want) == 0;
            } else {
                size_t j;
                json_t *a;
                json_array_foreach(aud, j, a)
                {
                    match = match || (json_is_string(a) && strcmp(json_string_value(a), want) == 0);
                }
            }
        }
        if (!match) {
            snprintf(why, whylen,
                     "error validating claims: aud claim does not match any bound "
                     "audience");
            return AS_ERR_INVALID;
        }
    }
    return AS_OK;
}

/*
 * Makes sure s holds keys for the mount's current config. With refetch, a JWKS is fetched again
 * unless a fetch (successful or not) happened less than JWKS_REFETCH_SECONDS ago, so neither a
 * stream of unknown kids nor an issuer that is down makes us hammer it. One thread fetches and
 * the logins that also need new keys wait for its result.
 */
static enum as_err load_keys(struct jwks_state *s, const struct as_mount_rec *m, json_t *cfg,
                             bool refetch, char *why, size_t whylen)
{
    enum as_err r = AS_OK;
    int64_t now = as_now();
    pthread_rwlock_rdlock(&s->lock);
    bool current =
        s->keys != NULL && s->config_text != NULL && strcmp(s->config_text, m->config_json) == 0;
    bool recent = now - s->last_fetch < JWKS_REFETCH_SECONDS;
    bool failed_recently = !current && s->failed_config != NULL &&
                           strcmp(s->failed_config, m->config_json) == 0 && recent;
    pthread_rwlock_unlock(&s->lock);
    if (current && (!refetch || recent)) {
        as_metrics_cache(AS_CACHE_JWKS, true);
        return AS_OK;
    }
    as_metrics_cache(AS_CACHE_JWKS, false);
    if (failed_recently) {
        snprintf(why, whylen, "fetching keys failed less than %d s ago", JWKS_REFETCH_SECONDS);
        return AS_ERR_INVALID;
    }
    /* Only logins that need new keys (an unknown kid, or none loaded) get here and wait for
     * the one fetch in progress; logins whose kid is known never touch this lock. */
    pthread_mutex_lock(&s->fetch_lock);
    /* Look again: the fetch we waited for may have done the work. */
    pthread_rwlock_rdlock(&s->lock);
    current =
        s->keys != NULL && s->config_text != NULL && strcmp(s->config_text, m->config_json) == 0;
    recent = now - s->last_fetch < JWKS_REFETCH_SECONDS;
    pthread_rwlock_unlock(&s->lock);
    if (current && (!refetch || recent)) {
        goto out;
    }
    struct as_jwks *keys = NULL;
    char *text = NULL;
    r = keys_from_config(cfg, &keys, why, whylen);
    if (r == AS_OK && (text = strdup(m->config_json)) == NULL) {
        r = AS_ERR_NOMEM;
    }
    pthread_rwlock_wrlock(&s->lock);
    s->last_fetch = now;
    if (r == AS_OK) {
        as_jwks_free(s->keys);
        free(s->config_text);
        s->keys = keys;
        s->config_text = text;
        free(s->failed_config);
        s->failed_config = NULL;
    } else if (!current) {
        free(s->failed_config);
        s->failed_config = strdup(m->config_json);
    }
    pthread_rwlock_unlock(&s->lock);
    if (r != AS_OK) {
        as_jwks_free(keys);
        free(text);
        as_warn("auth/%s: cannot load keys: %s", m->path, why);
        /* Keys we already had stay in use: a failed refresh is not a failed login. */
        r = current ? AS_OK : r;
    }
out:
    pthread_mutex_unlock(&s->fetch_lock);
    return r;
}

/* Verifies the signature with the mount's keys, refetching a JWKS once for an unknown kid. */
static enum as_err verify_sig(const struct as_mount_rec *m, json_t *cfg, const char *jwt,
                              json_t **claims, char *why, size_t whylen)
{
    struct jwks_state *s = state_for(m->path);
    bool jwks = *as_json_str_or(cfg, "jwks_url", "") != '\0';
    unsigned algs = algs_of(cfg);
    char detail[256] = "";
    enum as_jwt_fail last = AS_JWT_OK;
    if (s == NULL) {
        return AS_ERR_NOMEM;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        enum as_jwt_fail fail = AS_JWT_OK;
        json_t *header = NULL;
        enum as_err r = load_keys(s, m, cfg, attempt > 0, detail, sizeof detail);
        if (r != AS_OK) {
            snprintf(why, whylen, "error fetching jwks keyset: %s", detail);
            return r;
        }
        pthread_rwlock_rdlock(&s->lock);
        r = s->keys
                ? as_jwt_verify(jwt, s->keys, algs, &header, claims, &fail, detail, sizeof detail)
                : AS_ERR_INVALID;
        pthread_rwlock_unlock(&s->lock);
        json_decref(header);
        if (r == AS_OK) {
            return AS_OK;
        }
        last = fail;
        /* An issuer that rotated its keys: fetch the JWKS again once, then try again. */
        if (!(jwks && fail == AS_JWT_UNKNOWN_KID && attempt == 0)) {
            break;
        }
    }
    if (jwks) {
        snprintf(why, whylen, "error verifying token: %s", detail);
    } else if (last == AS_JWT_MALFORMED || last == AS_JWT_BAD_ALG || last == AS_JWT_CRIT) {
        snprintf(why, whylen, "error parsing token: %s", detail);
    } else {
        snprintf(why, whylen, "no known key successfully validated the token signature");
    }
    return AS_ERR_INVALID;
}

enum as_err as_jwt_login(struct as_server *srv, const struct as_mount_rec *m, struct as_req *req,
                         struct as_resp *resp)
{
    enum as_err r;
    json_t *cfg = NULL;
    json_t *role = NULL;
    json_t *claims = NULL;
    json_t *meta = NULL;
    json_t *sids = NULL;
    char *role_text = NULL;
    char *spiffe_id = NULL;
    char role_name[130];
    char why[512] = "";
    const char *name = NULL;
    const char *jwt = NULL;

    if (m->config_json == NULL || (cfg = as_json_parsed(m->config_json)) == NULL) {
        return as_fail(resp, AS_ERR_INVALID, "could not load configuration");
    }
    if (as_json_get_string(req->body, "role", &name, NULL) != AS_OK ||
        as_json_get_string(req->body, "jwt", &jwt, NULL) != AS_OK) {
        r = as_fail(resp, AS_ERR_INVALID, "\"role\" and \"jwt\" must be strings");
        goto out;
    }
    if (name == NULL || *name == '\0') {
        name = as_json_str_or(cfg, "default_role", "");
    }
    if (*name == '\0') {
        r = as_fail(resp, AS_ERR_INVALID, "missing role");
        goto out;
    }
    size_t k = 0;
    for (; name[k] && k < sizeof role_name - 1; k++) {
        role_name[k] = (char)tolower((unsigned char)name[k]);
    }
    role_name[k] = '\0';
    r = as_role_get_cached(srv, m->path, role_name, &role_text);
    if (r == AS_ERR_NOT_FOUND || name[k] != '\0') {
        r = as_fail(resp, AS_ERR_INVALID, "role \"%.128s\" could not be found", name);
        goto out;
    }
    if (r != AS_OK) {
        goto out;
    }
    if ((role = as_json_parsed(role_text)) == NULL) {
        r = AS_ERR_INTERNAL;
        goto out;
    }
    if (jwt == NULL || *jwt == '\0') {
        r = as_fail(resp, AS_ERR_INVALID, "missing token");
        goto out;
    }
    if (strlen(jwt) > AS_JWT_MAX_BYTES) {
        r = as_fail(resp, AS_ERR_INVALID, "error parsing token: token is larger than %d bytes",
                    AS_JWT_MAX_BYTES);
        goto out;
    }
    json_t *cidrs = json_object_get(role, "token_bound_cidrs");
    if (json_array_size(cidrs) > 0 && !as_addr_in_cidrs(req->remote, cidrs)) {
        r = as_fail(resp, AS_ERR_PERMISSION, "permission denied");
        goto out;
    }
    if ((r = verify_sig(m, cfg, jwt, &claims, why, sizeof why)) != AS_OK ||
        (r = check_registered(cfg, role, claims, as_now(), why, sizeof why)) != AS_OK ||
        (r = check_bound_claims(role, claims, why, sizeof why)) != AS_OK) {
        r = r == AS_ERR_INVALID ? as_fail(resp, r, "%s", why) : r;
        goto out;
    }
    const char *user_claim = as_json_str_or(role, "user_claim", "sub");
    json_t *uv = claim_at(claims, user_claim);
    if (uv == NULL) {
        r = as_fail(resp, AS_ERR_INVALID, "claim \"%.100s\" not found in token", user_claim);
        goto out;
    }
    if (!json_is_string(uv)) {
        r = as_fail(resp, AS_ERR_INVALID, "claim \"%.100s\" could not be converted to string",
                    user_claim);
        goto out;
    }
    const char *user = json_string_value(uv);
    meta = json_pack("{s:s,s:s}", "role", role_name, "subject", user);
    const char *from;
    json_t *to;
    json_object_foreach(json_object_get(role, "claim_mappings"), from, to)
    {
        json_t *v = claim_at(claims, from);
        char text[1024];
        if (v == NULL) {
            continue; /* Vault skips mappings whose claim is absent */
        }
        if (!claim_text(v, text, sizeof text)) {
            r = as_fail(resp, AS_ERR_INVALID, "error converting claim '%.100s' to string", from);
            goto out;
        }
        json_object_set_new(meta, json_string_value(to), json_string(text));
    }
    sids = json_array();
    const char *tmpl = as_json_str_or(role, "spiffe_id_template", "");
    if (*tmpl != '\0') {
        struct as_template_ctx ctx = {
            .trust_domain = srv->cfg.trust_domain,
            .role = role_name,
            .claims = claims,
        };
        if (as_spiffe_template_expand(tmpl, &ctx, &spiffe_id, why, sizeof why) != AS_OK) {
            r = as_fail(resp, AS_ERR_INVALID, "error expanding spiffe_id_template: %s", why);
            goto out;
        }
        json_array_append_new(sids, json_string(spiffe_id));
    }
    struct as_login in = {
        .user = user,
        .role = role_name,
        .policies = json_object_get(role, "token_policies"),
        .meta = meta,
        .spiffe_ids = sids,
        .allowed_dns = json_object_get(role, "allowed_dns_names"),
        .bound_cidrs = cidrs,
        .ttl = json_integer_value(json_object_get(role, "token_ttl")),
        .max_ttl = json_integer_value(json_object_get(role, "token_max_ttl")),
        .num_uses = json_integer_value(json_object_get(role, "token_num_uses")),
        .no_default_policy = json_is_true(json_object_get(role, "token_no_default_policy")),
        .login_cert = NULL,
    };
    r = as_login_issue(srv, m, &in, resp);
out:
    json_decref(cfg);
    json_decref(role);
    json_decref(claims);
    json_decref(meta);
    json_decref(sids);
    free(role_text);
    free(spiffe_id);
    return r;
}
