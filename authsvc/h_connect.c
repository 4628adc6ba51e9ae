/*
 * h_connect.c: intentions and the checks proxies make (SPEC §7): connect/intentions CRUD,
 * connect/authorize, and connect/ext-authz for nginx auth_request and Envoy ext_authz (HTTP).
 *
 * Every check is answered from an in-memory rule set that is rebuilt whenever the store's
 * intentions version moves, and from the store's SVID records for revocation, so a changed
 * intention or a revoked certificate is reflected by the very next check.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authsvc/server.h"

/* What fits in libmicrohttpd's per-connection pool with the other headers (http.c). */
#define MAX_CERT_HEADER (12 * 1024)

/* ---- the in-memory rule set ---- */

struct as_intent_cache {
    pthread_rwlock_t lock;
    int64_t version; /* -1: never loaded */
    struct as_intentions *set;
    uint64_t epoch; /* the store epoch (as_store_epoch) when version was last confirmed */
};

static struct as_intent_cache cache = {PTHREAD_RWLOCK_INITIALIZER, -1, NULL, 0};

void as_connect_shutdown(void)
{
    pthread_rwlock_wrlock(&cache.lock);
    as_intentions_free(cache.set);
    cache.set = NULL;
    cache.version = -1;
    pthread_rwlock_unlock(&cache.lock);
}

/*
 * Rebuilds the rule set when the stored version differs from the cached one. While the store's
 * epoch has not moved since the version was last confirmed, no intention can have changed (every
 * intention write moves it), and the check is answered without reading the store.
 */
static enum as_err refresh(struct as_server *srv)
{
    int64_t v = 0;
    uint64_t epoch = as_store_epoch(srv->store);
    pthread_rwlock_rdlock(&cache.lock);
    bool current = cache.set != NULL && cache.epoch == epoch;
    pthread_rwlock_unlock(&cache.lock);
    if (current) {
        as_metrics_cache(AS_CACHE_INTENTIONS, true);
        return AS_OK;
    }
    enum as_err r = as_store_intention_version(srv->store, &v);
    if (r != AS_OK) {
        return r;
    }
    pthread_rwlock_wrlock(&cache.lock);
    bool fresh = cache.version >= v && cache.set != NULL;
    if (fresh && cache.epoch < epoch) {
        cache.epoch = epoch;
    }
    pthread_rwlock_unlock(&cache.lock);
    as_metrics_cache(AS_CACHE_INTENTIONS, fresh);
    if (fresh) {
        return AS_OK;
    }
    struct as_intention_rec **recs = NULL;
    size_t n = 0;
    struct as_intentions *set = NULL;
    if ((r = as_store_intention_list(srv->store, &recs, &n)) != AS_OK) {
        return r;
    }
    struct as_intention *rules = calloc(n + 1, sizeof *rules);
    if (rules == NULL) {
        as_intention_recs_free(recs, n);
        return AS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        rules[i].id = recs[i]->id;
        rules[i].source = recs[i]->source;
        rules[i].destination = recs[i]->destination;
        rules[i].allow = strcmp(recs[i]->action, "allow") == 0;
    }
    r = as_intentions_build(rules, n, &set);
    free(rules);
    as_intention_recs_free(recs, n);
    if (r != AS_OK) {
        return r;
    }
    /* Install only a newer set: a slower check that read an older version must never replace
     * what a later one installed. Afterwards the cache holds version v or newer. */
    pthread_rwlock_wrlock(&cache.lock);
    if (cache.set == NULL || cache.version < v) {
        as_intentions_free(cache.set);
        cache.set = set;
        cache.version = v;
        cache.epoch = epoch;
        set = NULL;
    }
    pthread_rwlock_unlock(&cache.lock);
    as_intentions_free(set);
    return AS_OK;
}

/* Decides src → dst; *id (copied into idbuf) names the deciding intention, "" for none. */
static enum as_err decide(struct as_server *srv, const char *src, const char *dst, bool *allow,
                          char *idbuf, size_t idlen)
{
    enum as_err r = refresh(srv);
    if (r != AS_OK) {
        return r;
    }
    const char *id = "";
    pthread_rwlock_rdlock(&cache.lock);
    *allow = as_intentions_decide(cache.set, src, dst,
                                  strcmp(srv->cfg.default_action, "allow") == 0, &id);
    snprintf(idbuf, idlen, "%s", id);
    pthread_rwlock_unlock(&cache.lock);
    return AS_OK;
}

/* ---- intentions CRUD ---- */

/* A source or destination: "*", a SPIFFE ID of our trust domain, or such an ID followed by
 * "/" "*" (or the whole trust domain: "spiffe://td/" "*"). */
static bool pattern_valid(struct as_server *srv, const char *p, char *why, size_t whylen)
{
    char base[AS_SPIFFE_MAX_ID + 1];
    char whole[300];
    size_t n = strlen(p);
    if (strcmp(p, "*") == 0) {
        return true;
    }
    if (!as_intention_pattern_ok(p)) {
        snprintf(why, whylen, "must be a SPIFFE ID, a prefix ending in \"/*\", or \"*\"");
        return false;
    }
    snprintf(whole, sizeof whole, "spiffe://%s/*", srv->cfg.trust_domain);
    if (strcmp(p, whole) == 0) {
        return true;
    }
    if (n >= 2 && strcmp(p + n - 2, "/*") == 0) {
        if (n - 2 > AS_SPIFFE_MAX_ID) {
            snprintf(why, whylen, "SPIFFE ID is too long");
            return false;
        }
        memcpy(base, p, n - 2);
        base[n - 2] = '\0';
        p = base;
    }
    return as_spiffe_id_check(p, srv->cfg.trust_domain, why, whylen) == AS_OK;
}

static json_t *intention_json(const struct as_intention_rec *i)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "id", i->id, "source", i->source,
                     "destination", i->destination, "action", i->action, "description",
                     i->description ? i->description : "", "created", (json_int_t)i->created,
                     "updated", (json_int_t)i->updated);
}

static void new_uuid(char out[40])
{
    unsigned char b[16];
    char h[33];
    if (as_rand_bytes(b, sizeof b) != AS_OK) {
        memset(b, 0, sizeof b);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    as_hex(b, sizeof b, h);
    snprintf(out, 40, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

/* Writes an intention from the body over `base` (NULL: a new one, every field required). */
static enum as_err intention_write(struct as_server *srv, struct as_req *req, struct as_resp *resp,
                                   const struct as_intention_rec *base, const char *id)
{
    const char *src = base ? base->source : NULL;
    const char *dst = base ? base->destination : NULL;
    const char *action = base ? base->action : NULL;
    const char *desc = base ? base->description : "";
    char why[160];
    if (as_json_get_string(req->body, "source", &src, NULL) != AS_OK ||
        as_json_get_string(req->body, "destination", &dst, NULL) != AS_OK ||
        as_json_get_string(req->body, "action", &action, NULL) != AS_OK ||
        as_json_get_string(req->body, "description", &desc, NULL) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID,
                       "source, destination, action and description must be strings");
    }
    if (src == NULL || dst == NULL || action == NULL) {
        return as_fail(resp, AS_ERR_INVALID, "source, destination and action are required");
    }
    if (!pattern_valid(srv, src, why, sizeof why)) {
        return as_fail(resp, AS_ERR_INVALID, "invalid source \"%.200s\": %s", src, why);
    }
    if (!pattern_valid(srv, dst, why, sizeof why)) {
        return as_fail(resp, AS_ERR_INVALID, "invalid destination \"%.200s\": %s", dst, why);
    }
    if (strcmp(action, "allow") != 0 && strcmp(action, "deny") != 0) {
        return as_fail(resp, AS_ERR_INVALID, "action must be \"allow\" or \"deny\"");
    }
    if (desc != NULL && strlen(desc) > 4096) {
        return as_fail(resp, AS_ERR_INVALID, "description is longer than 4096 bytes");
    }
    struct as_intention_rec rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.id, sizeof rec.id, "%s", id);
    rec.source = (char *)src;
    rec.destination = (char *)dst;
    rec.action = (char *)action;
    rec.description = (char *)(desc ? desc : "");
    rec.created = base ? base->created : as_now();
    rec.updated = as_now();
    enum as_err r = as_store_intention_put(srv->store, &rec);
    if (r != AS_OK) {
        return r;
    }
    as_info("intention %s: %s -> %s %s", id, src, dst, action);
    resp->data = json_pack("{s:s}", "id", id);
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

enum as_err h_connect_intentions(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    if (req->method == AS_M_POST) {
        char id[40];
        new_uuid(id);
        return intention_write(srv, req, resp, NULL, id);
    }
    struct as_intention_rec **recs = NULL;
    size_t n = 0;
    enum as_err r = as_store_intention_list(srv->store, &recs, &n);
    if (r != AS_OK) {
        return r;
    }
    if (n == 0) {
        return AS_ERR_NOT_FOUND;
    }
    json_t *keys = json_array();
    json_t *info = json_object();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(keys, json_string(recs[i]->id));
        json_object_set_new(info, recs[i]->id, intention_json(recs[i]));
    }
    as_intention_recs_free(recs, n);
    resp->data = json_pack("{s:o,s:o}", "keys", keys, "key_info", info);
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

enum as_err h_connect_intention(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_intention_rec *rec = NULL;
    const char *id = req->params[0];
    enum as_err r = as_store_intention_get(srv->store, id, &rec);
    if (r == AS_ERR_NOT_FOUND) {
        return as_fail(resp, r, "no intention with id %.40s", id);
    }
    if (r != AS_OK) {
        return r;
    }
    if (req->method == AS_M_DELETE) {
        r = as_store_intention_delete(srv->store, id);
        if (r == AS_OK) {
            as_info("intention %s deleted", id);
            resp->status = 204;
        }
    } else if (req->method == AS_M_POST) {
        r = intention_write(srv, req, resp, rec, rec->id);
    } else {
        resp->data = intention_json(rec);
        resp->status = 200;
        r = resp->data ? AS_OK : AS_ERR_NOMEM;
    }
    as_intention_rec_free(rec);
    return r;
}

/* ---- identities presented by a client ---- */

/* The outcome of judging a client identity; reason is public. */
struct identity {
    bool ok;
    char spiffe_id[AS_SPIFFE_MAX_ID + 1];
    char reason[256];
};

static void deny_id(struct identity *who, const char *fmt, ...) AS_PRINTF(2, 3);
static void deny_id(struct identity *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    who->ok = false;
    vsnprintf(who->reason, sizeof who->reason, fmt, ap);
    va_end(ap);
}

/*
 * Judgements cached (DESIGN: checks are answered from memory). Only a certificate found good is
 * kept, keyed by a hash of exactly what was presented (the PEM chain, or the URI and serial),
 * tagged with the store epoch (any revocation or CA generation change moves it) and used only
 * within the certificate's validity: a cached "yes" never outlives a revocation or an expiry.
 * A refusal is judged again every time.
 */
#define JUDGED_SLOTS 1024
struct judged {
    bool used;
    unsigned char key[32];
    uint64_t epoch;
    int64_t not_before, not_after;
    char spiffe_id[AS_SPIFFE_MAX_ID + 1];
};
static struct judged judged[JUDGED_SLOTS];
static pthread_rwlock_t judged_lock = PTHREAD_RWLOCK_INITIALIZER;

static void judged_key(char kind, const void *a, size_t alen, const void *b, size_t blen,
                       unsigned char key[32])
{
    /* A length prefix keeps (a, b) pairs apart. */
    unsigned char hdr[1 + sizeof(size_t)];
    hdr[0] = (unsigned char)kind;
    memcpy(hdr + 1, &alen, sizeof alen);
    if (as_sha256_3(hdr, sizeof hdr, a, alen, b, blen, key) != AS_OK) {
        memset(key, 0, 32);
    }
}

static bool judged_get(const unsigned char key[32], uint64_t epoch, struct identity *who)
{
    int64_t now = as_now();
    size_t i;
    memcpy(&i, key, sizeof i);
    struct judged *j = &judged[i % JUDGED_SLOTS];
    bool hit = false;
    pthread_rwlock_rdlock(&judged_lock);
    if (j->used && j->epoch == epoch && memcmp(j->key, key, 32) == 0 && j->not_before <= now &&
        now < j->not_after) {
        who->ok = true;
        snprintf(who->spiffe_id, sizeof who->spiffe_id, "%s", j->spiffe_id);
        hit = true;
    }
    pthread_rwlock_unlock(&judged_lock);
    as_metrics_cache(AS_CACHE_CERTS, hit);
    return hit;
}

static void judged_put(const unsigned char key[32], uint64_t epoch, int64_t nb, int64_t na,
                       const char *spiffe_id)
{
    size_t i;
    memcpy(&i, key, sizeof i);
    struct judged *j = &judged[i % JUDGED_SLOTS];
    pthread_rwlock_wrlock(&judged_lock);
    j->used = true;
    memcpy(j->key, key, 32);
    j->epoch = epoch;
    j->not_before = nb;
    j->not_after = na;
    snprintf(j->spiffe_id, sizeof j->spiffe_id, "%s", spiffe_id);
    pthread_rwlock_unlock(&judged_lock);
}

/* One of our X.509-SVIDs, live: recorded, x509, for uri, not revoked, within validity (then
 * *nb and *na are its validity). */
static enum as_err judge_serial_full(struct as_server *srv, const char *serial, const char *uri,
                                     const unsigned char *der, size_t der_len, struct identity *who,
                                     int64_t *nb, int64_t *na)
{
    struct as_cert_rec *c = NULL;
    int64_t now = as_now();
    enum as_err r = as_store_cert_get(srv->store, serial, &c);
    if (r == AS_ERR_NOT_FOUND) {
        deny_id(who, "certificate %s was not issued by this server", serial);
        return AS_OK;
    }
    if (r != AS_OK) {
        return r;
    }
    if (strcmp(c->kind, "x509") != 0 || (uri != NULL && strcmp(c->spiffe_id, uri) != 0) ||
        (der != NULL && (c->der_len != der_len || memcmp(c->der, der, der_len) != 0))) {
        deny_id(who, "certificate %s was not issued by this server for that identity", serial);
    } else if (c->revoked_at > 0) {
        deny_id(who, "certificate %s has been revoked", serial);
    } else if (c->not_after <= now || c->not_before > now) {
        deny_id(who, "certificate %s is not valid at this time", serial);
    } else {
        who->ok = true;
        snprintf(who->spiffe_id, sizeof who->spiffe_id, "%s", c->spiffe_id);
        *nb = c->not_before;
        *na = c->not_after;
    }
    as_cert_rec_free(c);
    return AS_OK;
}

static enum as_err judge_serial(struct as_server *srv, const char *serial, const char *uri,
                                struct identity *who)
{
    unsigned char key[32];
    uint64_t epoch = as_store_epoch(srv->store);
    judged_key('s', serial, strlen(serial), uri, strlen(uri), key);
    if (judged_get(key, epoch, who)) {
        return AS_OK;
    }
    int64_t nb = 0;
    int64_t na = 0;
    enum as_err r = judge_serial_full(srv, serial, uri, NULL, 0, who, &nb, &na);
    if (r == AS_OK && who->ok) {
        judged_put(key, epoch, nb, na, who->spiffe_id);
    }
    return r;
}

/* A PEM chain: must verify against our bundle and be one of our live SVIDs. */
static enum as_err judge_pem_full(struct as_server *srv, const char *pem, size_t len,
                                  struct identity *who, int64_t *nb, int64_t *na)
{
    struct as_clientchain *ch = NULL;
    struct as_clientcert *cc = NULL;
    char why[256] = "";
    enum as_clientcert_fail fail = AS_CC_OK;
    char *trust = NULL;
    char *inter = NULL;
    enum as_err r = as_clientchain_parse_pem(pem, len, &ch, why, sizeof why);
    if (r == AS_ERR_INVALID) {
        deny_id(who, "client certificate: %s", why);
        return AS_OK;
    }
    if (r != AS_OK) {
        return r;
    }
    trust = as_caset_bundle_pem(srv->caset);
    inter = as_caset_chains_pem(srv->caset);
    if (trust == NULL || inter == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    r = as_clientchain_verify(ch, trust, inter, as_now(), &cc, &fail, why, sizeof why);
    if (r == AS_ERR_INVALID) {
        deny_id(who, "client certificate: %s", why);
        r = AS_OK;
        goto out;
    }
    if (r != AS_OK) {
        goto out;
    }
    if (as_clientcert_uri_count(cc) != 1) {
        deny_id(who, "client certificate must carry exactly one URI SAN");
        goto out;
    }
    size_t der_len = 0;
    const unsigned char *der = as_clientcert_der(cc, &der_len);
    r = judge_serial_full(srv, as_clientcert_serial(cc), as_clientcert_uri(cc, 0), der, der_len,
                          who, nb, na);
out:
    as_clientcert_free(cc);
    as_clientchain_free(ch);
    free(trust);
    free(inter);
    return r;
}

/*
 * The cached judgement of a PEM, kept under (kind, bytes): true with *who filled on a hit; on a
 * miss, key and *epoch are what judge_pem_keep keeps the judgement under.
 */
static bool pem_judged_get(struct as_server *srv, char kind, const char *bytes, size_t len,
                           struct identity *who, unsigned char key[32], uint64_t *epoch)
{
    /* The CA set is part of the judgement: a rotation moves the epoch (ST_CA_GEN_*), and the
     * bundle's sequence is in the key for the generations that leave it without a store write. */
    int64_t seq = as_caset_sequence(srv->caset);
    *epoch = as_store_epoch(srv->store);
    judged_key(kind, &seq, sizeof seq, bytes, len, key);
    return judged_get(key, *epoch, who);
}

/* Judges pem in full and keeps a good judgement under key, as of epoch (pem_judged_get). */
static enum as_err judge_pem_keep(struct as_server *srv, const char *pem, size_t len,
                                  struct identity *who, const unsigned char key[32], uint64_t epoch)
{
    int64_t nb = 0;
    int64_t na = 0;
    enum as_err r = judge_pem_full(srv, pem, len, who, &nb, &na);
    if (r == AS_OK && who->ok) {
        judged_put(key, epoch, nb, na, who->spiffe_id);
    }
    return r;
}

static enum as_err judge_pem(struct as_server *srv, const char *pem, size_t len,
                             struct identity *who)
{
    unsigned char key[32];
    uint64_t epoch = 0;
    if (pem_judged_get(srv, 'p', pem, len, who, key, &epoch)) {
        return AS_OK;
    }
    return judge_pem_keep(srv, pem, len, who, key, epoch);
}

/* The caller may ask about target only when it holds it, or with sudo on the path. */
static bool may_ask_for(const struct as_req *req, const char *target)
{
    if ((as_acl_caps(req->acl, req->path) & AS_CAP_SUDO) != 0) {
        return true;
    }
    json_t *ids = as_json_array_from(req->auth->spiffe_ids_json);
    bool held = false;
    size_t i;
    json_t *it;
    json_array_foreach(ids, i, it)
    {
        held = held || strcmp(json_string_value(it), target) == 0;
    }
    json_decref(ids);
    return held;
}

static enum as_err answer(struct as_server *srv, const struct identity *who, const char *target,
                          bool *allow, char *reason, size_t rlen, char *id, size_t idlen)
{
    *allow = false;
    id[0] = '\0';
    if (!who->ok) {
        snprintf(reason, rlen, "%s", who->reason);
        return AS_OK;
    }
    enum as_err r = decide(srv, who->spiffe_id, target, allow, id, idlen);
    if (r != AS_OK) {
        return r;
    }
    if (id[0] != '\0') {
        snprintf(reason, rlen, "matched intention %s: %s", id, *allow ? "allow" : "deny");
    } else {
        snprintf(reason, rlen, "no intention matched; the default action is %s",
                 srv->cfg.default_action);
    }
    return AS_OK;
}

/* A check's answer or audit data: "authorized", then the string members kv names (key, value,
 * ..., NULL). Built member by member: json_pack parses its format on every call, and checks are
 * the hot path. */
static json_t *check_data(bool allow, const char *const *kv)
{
    json_t *o = json_object();
    if (o == NULL || json_object_set_new(o, "authorized", json_boolean(allow)) != 0) {
        json_decref(o);
        return NULL;
    }
    for (; kv[0] != NULL; kv += 2) {
        if (json_object_set_new(o, kv[0], json_string(kv[1])) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* Whether a check with this outcome gets audit lines (http.c's rule for AS_AUDIT_CHECKS routes):
 * its audit data is only built then. */
static bool check_audited(const struct as_server *srv, bool allow)
{
    return as_audit_enabled(srv->audit) && (!allow || as_audit_log_allowed_checks(srv->audit));
}

enum as_err h_connect_authorize(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    const char *target = NULL;
    const char *pem = NULL;
    const char *uri = NULL;
    const char *serial_in = NULL;
    char why[160];
    struct identity who;
    memset(&who, 0, sizeof who);
    if (as_json_get_string(req->body, "target", &target, NULL) != AS_OK ||
        as_json_get_string(req->body, "client_cert_pem", &pem, NULL) != AS_OK ||
        as_json_get_string(req->body, "client_cert_uri", &uri, NULL) != AS_OK ||
        as_json_get_string(req->body, "client_cert_serial", &serial_in, NULL) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "target and client_cert_* must be strings");
    }
    if (target == NULL ||
        as_spiffe_id_check(target, srv->cfg.trust_domain, why, sizeof why) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "invalid or missing target: %s",
                       target ? why : "target is required");
    }
    if (!may_ask_for(req, target)) {
        return as_fail(resp, AS_ERR_PERMISSION, "permission denied: the token does not hold %s",
                       target);
    }
    enum as_err r;
    if (pem != NULL && *pem != '\0') {
        if (uri != NULL || serial_in != NULL) {
            return as_fail(resp, AS_ERR_INVALID,
                           "give either client_cert_pem or client_cert_uri with "
                           "client_cert_serial, not both");
        }
        r = judge_pem(srv, pem, strlen(pem), &who);
    } else if (uri != NULL && *uri != '\0') {
        char serial[64];
        if (serial_in == NULL || *serial_in == '\0') {
            return as_fail(resp, AS_ERR_INVALID,
                           "client_cert_serial is required with "
                           "client_cert_uri");
        }
        if (as_serial_normalize(serial_in, serial, sizeof serial) != AS_OK) {
            return as_fail(resp, AS_ERR_INVALID, "invalid client_cert_serial");
        }
        if (as_spiffe_id_check(uri, NULL, why, sizeof why) != AS_OK) {
            return as_fail(resp, AS_ERR_INVALID, "invalid client_cert_uri: %s", why);
        }
        r = judge_serial(srv, serial, uri, &who);
    } else {
        return as_fail(resp, AS_ERR_INVALID,
                       "client_cert_pem, or client_cert_uri with client_cert_serial, is required");
    }
    if (r != AS_OK) {
        return r;
    }
    bool allow = false;
    char reason[300];
    char id[40];
    if ((r = answer(srv, &who, target, &allow, reason, sizeof reason, id, sizeof id)) != AS_OK) {
        return r;
    }
    resp->data = check_data(allow, (const char *[]){"reason", reason, "intention_id", id, NULL});
    if (check_audited(srv, allow) &&
        (resp->audit_data = check_data(
             allow, (const char *[]){"source", who.spiffe_id, "target", target, NULL})) == NULL) {
        return AS_ERR_NOMEM;
    }
    resp->check_allowed = allow;
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

/* The Cert="..." of the last element of an Envoy x-forwarded-client-cert header (the element
 * Envoy added for the peer it talked to). Returns a malloc'd, still URL-encoded value or NULL. */
static char *xfcc_cert(const char *h)
{
    const char *elem = h;
    bool q = false;
    for (const char *p = h; *p; p++) {
        if (*p == '"' && (p == h || p[-1] != '\\')) {
            q = !q;
        } else if (*p == ',' && !q) {
            elem = p + 1;
        }
    }
    const char *p = elem;
    while (*p) {
        while (*p == ' ' || *p == ';') {
            p++;
        }
        const char *eq = strchr(p, '=');
        if (eq == NULL) {
            return NULL;
        }
        bool is_cert = (size_t)(eq - p) == 4 && strncasecmp(p, "cert", 4) == 0;
        const char *v = eq + 1;
        const char *end;
        if (*v == '"') {
            v++;
            end = v;
            while (*end && !(*end == '"' && end[-1] != '\\')) {
                end++;
            }
            if (*end != '"') {
                return NULL;
            }
        } else {
            end = v;
            while (*end && *end != ';' && *end != ',') {
                end++;
            }
        }
        if (is_cert) {
            return strndup(v, (size_t)(end - v));
        }
        p = *end == '"' ? end + 1 : end;
        if (*p == ',') {
            return NULL;
        }
    }
    return NULL;
}

/*
 * Judges the identity in one URL-encoded PEM header value. A proxy sends the same header bytes
 * for every request of a connection, so the judgement is cached under those bytes ('e', apart
 * from judge_pem's 'p' keys of decoded PEM): a hit skips decoding the ~1.5 KB header (3.2% of an
 * ext-authz check's CPU, perf). The judgement is the decoded PEM's, made and guarded (the CA
 * set's sequence, the store's epoch, the certificate's validity) as in judge_pem.
 */
static enum as_err judge_encoded_pem(struct as_server *srv, const char *enc, struct identity *who)
{
    size_t len = strlen(enc);
    size_t n = 0;
    if (len > MAX_CERT_HEADER) {
        deny_id(who, "client certificate header is too large");
        return AS_OK;
    }
    unsigned char key[32];
    uint64_t epoch = 0;
    if (pem_judged_get(srv, 'e', enc, len, who, key, &epoch)) {
        return AS_OK;
    }
    char *pem = malloc(len + 1);
    if (pem == NULL) {
        return AS_ERR_NOMEM;
    }
    enum as_err r = AS_OK;
    if (!as_pct_decode(enc, len, pem, len + 1, &n)) {
        deny_id(who, "client certificate header is not URL-encoded PEM");
    } else {
        r = judge_pem_keep(srv, pem, n, who, key, epoch);
    }
    free(pem);
    return r;
}

/* A workload token: live, holding exactly one SPIFFE ID. */
static enum as_err judge_token(struct as_server *srv, const char *secret, struct identity *who)
{
    struct as_token_rec *t = NULL;
    enum as_err r = as_tokens_resolve(srv->tokens, secret, &t);
    if (r == AS_ERR_PERMISSION) {
        deny_id(who, "subject token is not valid");
        return AS_OK;
    }
    if (r != AS_OK) {
        return r;
    }
    json_t *ids = as_json_array_from(t->spiffe_ids_json);
    if (t->bound_cidrs_json != NULL) {
        /* The address that presents it here is the proxy's, not its holder's: a token bound
         * to networks cannot be checked, so it is refused (fail closed). */
        deny_id(who, "subject token is bound to networks, which a proxied check cannot confirm");
    } else if (json_array_size(ids) != 1) {
        deny_id(who, "subject token must hold exactly one SPIFFE ID");
    } else {
        who->ok = true;
        snprintf(who->spiffe_id, sizeof who->spiffe_id, "%s",
                 json_string_value(json_array_get(ids, 0)));
    }
    json_decref(ids);
    as_token_rec_free(t);
    return AS_OK;
}

enum as_err h_connect_ext_authz(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    char target[AS_SPIFFE_MAX_ID + 1];
    char why[160];
    struct identity who;
    memset(&who, 0, sizeof who);
    /* Everything a proxy sends that is wrong is a 403: the proxy then refuses the request. */
    if (!as_req_query(req, "target", target, sizeof target)) {
        const char *h = as_req_header(req, "X-Authsvc-Target");
        if (h == NULL || strlen(h) > AS_SPIFFE_MAX_ID) {
            return as_fail(resp, AS_ERR_PERMISSION, "no target: give ?target= or X-Authsvc-Target");
        }
        snprintf(target, sizeof target, "%s", h);
    }
    if (as_spiffe_id_check(target, srv->cfg.trust_domain, why, sizeof why) != AS_OK) {
        return as_fail(resp, AS_ERR_PERMISSION, "invalid target: %s", why);
    }
    if (!may_ask_for(req, target)) {
        return as_fail(resp, AS_ERR_PERMISSION, "permission denied: the token does not hold %s",
                       target);
    }
    const char *cert = as_req_header(req, "X-Client-Cert");
    const char *xfcc = as_req_header(req, "X-Forwarded-Client-Cert");
    const char *subject = as_req_header(req, "X-Authsvc-Subject-Token");
    int given = (cert != NULL && *cert) + (xfcc != NULL && *xfcc) + (subject != NULL && *subject);
    if (given != 1) {
        return as_fail(resp, AS_ERR_PERMISSION,
                       "exactly one of X-Client-Cert, X-Forwarded-Client-Cert and "
                       "X-Authsvc-Subject-Token is required");
    }
    enum as_err r;
    if (cert != NULL && *cert) {
        r = judge_encoded_pem(srv, cert, &who);
    } else if (xfcc != NULL && *xfcc) {
        char *enc = xfcc_cert(xfcc);
        if (enc == NULL) {
            return as_fail(resp, AS_ERR_PERMISSION, "X-Forwarded-Client-Cert has no Cert=");
        }
        r = judge_encoded_pem(srv, enc, &who);
        free(enc);
    } else {
        r = judge_token(srv, subject, &who);
    }
    if (r != AS_OK) {
        return r;
    }
    bool allow = false;
    char reason[300];
    char id[40];
    if ((r = answer(srv, &who, target, &allow, reason, sizeof reason, id, sizeof id)) != AS_OK) {
        return r;
    }
    if (check_audited(srv, allow) &&
        (resp->audit_data =
             check_data(allow, (const char *[]){"reason", reason, "intention_id", id, "source",
                                                who.spiffe_id, "target", target, NULL})) == NULL) {
        return AS_ERR_NOMEM;
    }
    if (!allow) {
        return as_fail(resp, AS_ERR_PERMISSION, "%s", reason);
    }
    resp->check_allowed = true;
    snprintf(resp->hdr_value, sizeof resp->hdr_value, "%s", who.spiffe_id);
    resp->hdr_name = "X-Authsvc-Spiffe-Id";
    resp->data = check_data(true, (const char *[]){"reason", reason, "intention_id", id,
                                                   "spiffe_id", who.spiffe_id, NULL});
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}
