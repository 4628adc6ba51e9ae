/*
 * caset.c: the CA generations authsvc trusts and signs with, and their rotation in SPIRE's
 * shape (SPEC §6): the next generation is prepared and published in the bundle at half the
 * active one's life, activated when a sixth of it remains, and a retired generation leaves the
 * bundle only after the last SVID it signed has expired. Each generation pairs an X.509 CA with
 * a JWT-SVID signing key, so both rotate together.
 *
 * Generations are never freed before shutdown: a handler may keep signing with a generation it
 * borrowed just before a rotation (which is still trusted), so pointers stay valid without
 * reference counting. Rotations are rare; the memory is a few KiB each.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authsvc/server.h"

#define SETTING_SEQUENCE "bundle_sequence"

struct as_gen {
    int64_t id;
    char *base;
    struct as_ca *ca;
    struct as_jwtkey *jwt;
    char state[16];
    int64_t published_at;
    int64_t activate_at;
    int64_t drop_at; /* retired: when it may leave the bundle */
    bool in_bundle;
    /* The CRL, re-signed when a revocation happened since or half its life has passed. */
    pthread_mutex_t crl_lock;
    unsigned char *crl_der;
    size_t crl_der_len;
    char *crl_pem;
    int64_t crl_this_update;
    unsigned char crl_digest[32];
    int64_t crl_number;
};

struct as_caset {
    pthread_rwlock_t lock;
    struct as_upstream *up; /* NULL: every generation is its own root */
    struct as_gen **gens;
    size_t n;
    int64_t sequence;
    struct as_server *srv;
};

static void gen_free(struct as_gen *g)
{
    if (g == NULL) {
        return;
    }
    free(g->base);
    as_ca_free(g->ca);
    as_jwtkey_free(g->jwt);
    free(g->crl_der);
    free(g->crl_pem);
    pthread_mutex_destroy(&g->crl_lock);
    free(g);
}

void as_caset_free(struct as_caset *cs)
{
    if (cs == NULL) {
        return;
    }
    for (size_t i = 0; i < cs->n; i++) {
        gen_free(cs->gens[i]);
    }
    free(cs->gens);
    as_upstream_free(cs->up);
    pthread_rwlock_destroy(&cs->lock);
    free(cs);
}

static enum as_err push_gen(struct as_caset *cs, struct as_gen *g)
{
    struct as_gen **v = realloc(cs->gens, (cs->n + 1) * sizeof *v);
    if (v == NULL) {
        return AS_ERR_NOMEM;
    }
    cs->gens = v;
    cs->gens[cs->n++] = g;
    return AS_OK;
}

static struct as_gen *gen_new(void)
{
    struct as_gen *g = calloc(1, sizeof *g);
    if (g != NULL) {
        pthread_mutex_init(&g->crl_lock, NULL);
    }
    return g;
}

static enum as_err save_sequence(struct as_caset *cs)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%" PRId64, cs->sequence);
    return as_store_setting_put(cs->srv->store, SETTING_SEQUENCE, buf, (size_t)n);
}

static enum as_err load_sequence(struct as_caset *cs)
{
    unsigned char *v = NULL;
    size_t len = 0;
    enum as_err r = as_store_setting_get(cs->srv->store, SETTING_SEQUENCE, &v, &len);
    if (r == AS_ERR_NOT_FOUND) {
        cs->sequence = 1;
        return save_sequence(cs);
    }
    if (r != AS_OK) {
        return r;
    }
    char buf[32];
    size_t k = len < sizeof buf - 1 ? len : sizeof buf - 1;
    memcpy(buf, v, k);
    buf[k] = '\0';
    free(v);
    cs->sequence = strtoll(buf, NULL, 10);
    if (cs->sequence < 1) {
        cs->sequence = 1;
    }
    return AS_OK;
}

/* Bumps the bundle sequence (SPIFFE bundle "spiffe_sequence": increases on every change). */
static enum as_err bump(struct as_caset *cs)
{
    cs->sequence++;
    return save_sequence(cs);
}

/* Loads or creates the JWT key of a generation. */
static enum as_err gen_jwtkey(struct as_server *srv, const char *base, bool may_create,
                              struct as_jwtkey **out)
{
    enum as_err r = as_jwtkey_load(srv->cfg.data_dir, base, out);
    if (r == AS_ERR_NOT_FOUND && may_create) {
        if ((r = as_jwtkey_generate(out)) != AS_OK) {
            return r;
        }
        r = as_jwtkey_save(*out, srv->cfg.data_dir, base);
        if (r != AS_OK) {
            as_jwtkey_free(*out);
            *out = NULL;
        }
    }
    return r;
}

/* When a retired generation may leave the bundle: after its last SVID expires. */
static enum as_err compute_drop_at(struct as_caset *cs, struct as_gen *g)
{
    int64_t last = 0;
    enum as_err r = as_store_cert_max_not_after(cs->srv->store, g->id, &last);
    if (r != AS_OK) {
        return r;
    }
    g->drop_at = last;
    return AS_OK;
}

/* Records g (files already written) in the store and the in-memory list, in the bundle. */
static enum as_err register_gen(struct as_caset *cs, struct as_gen *g, const char *state,
                                int64_t now, int64_t activate_at)
{
    struct as_ca_gen_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.base = g->base;
    rec.jwt_kid = (char *)as_jwtkey_kid(g->jwt);
    rec.state = (char *)state;
    rec.not_before = as_ca_not_before(g->ca);
    rec.not_after = as_ca_not_after(g->ca);
    rec.published_at = now;
    rec.activate_at = activate_at;
    enum as_err r = as_store_ca_gen_insert(cs->srv->store, &rec);
    if (r != AS_OK) {
        return r;
    }
    g->id = rec.id;
    snprintf(g->state, sizeof g->state, "%s", state);
    g->published_at = now;
    g->activate_at = activate_at;
    g->in_bundle = true;
    return push_gen(cs, g);
}

/* First start (or upgrade from a store without generations): generation 1 is ca.pem. */
static enum as_err first_generation(struct as_caset *cs)
{
    struct as_server *srv = cs->srv;
    enum as_err r;
    bool created = false;
    struct as_gen *g = gen_new();
    if (g == NULL) {
        return AS_ERR_NOMEM;
    }
    if (cs->up != NULL) {
        r = as_ca_load_under(cs->up, srv->cfg.data_dir, "ca", srv->cfg.trust_domain, &g->ca);
        if (r == AS_ERR_NOT_FOUND) {
            created = true;
            if ((r = as_ca_generate_under(cs->up, srv->cfg.trust_domain, srv->cfg.ca_ttl,
                                          &g->ca)) == AS_OK) {
                r = as_ca_save(g->ca, srv->cfg.data_dir, "ca");
            }
        }
    } else {
        r = as_ca_load_or_create(srv->cfg.data_dir, srv->cfg.trust_domain, srv->cfg.ca_ttl, &g->ca,
                                 &created);
    }
    if (r != AS_OK || (r = gen_jwtkey(srv, "ca", true, &g->jwt)) != AS_OK) {
        gen_free(g);
        return r;
    }
    g->base = strdup("ca");
    if (g->base == NULL) {
        gen_free(g);
        return AS_ERR_NOMEM;
    }
    if ((r = register_gen(cs, g, "active", as_now(), 0)) != AS_OK) {
        gen_free(g);
        return r;
    }
    as_info("CA generation %" PRId64 " %s: %s", g->id, created ? "created" : "imported",
            as_ca_subject(g->ca));
    return AS_OK;
}

enum as_err as_caset_open(struct as_server *srv, struct as_caset **out)
{
    enum as_err r;
    struct as_ca_gen_rec **recs = NULL;
    size_t n = 0;
    struct as_caset *cs = calloc(1, sizeof *cs);
    if (cs == NULL) {
        return AS_ERR_NOMEM;
    }
    pthread_rwlock_init(&cs->lock, NULL);
    cs->srv = srv;
    if (srv->cfg.upstream_cert_file != NULL &&
        (r = as_upstream_load(srv->cfg.upstream_cert_file, srv->cfg.upstream_key_file, &cs->up)) !=
            AS_OK) {
        goto out;
    }
    if ((r = load_sequence(cs)) != AS_OK ||
        (r = as_store_ca_gen_list(srv->store, &recs, &n)) != AS_OK) {
        goto out;
    }
    int64_t now = as_now();
    for (size_t i = 0; i < n; i++) {
        struct as_gen *g = gen_new();
        if (g == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        g->id = recs[i]->id;
        snprintf(g->state, sizeof g->state, "%s", recs[i]->state);
        g->published_at = recs[i]->published_at;
        g->activate_at = recs[i]->activate_at;
        g->base = strdup(recs[i]->base);
        if (g->base == NULL || (r = push_gen(cs, g)) != AS_OK) {
            gen_free(g);
            r = r != AS_OK ? r : AS_ERR_NOMEM;
            goto out;
        }
        if (strcmp(g->state, "retired") == 0) {
            if ((r = compute_drop_at(cs, g)) != AS_OK) {
                goto out;
            }
            if (g->drop_at <= now) {
                continue; /* out of the bundle for good; its files are not needed */
            }
        }
        r = cs->up ? as_ca_load_under(cs->up, srv->cfg.data_dir, g->base, srv->cfg.trust_domain,
                                      &g->ca)
                   : as_ca_load(srv->cfg.data_dir, g->base, srv->cfg.trust_domain, &g->ca);
        if (r != AS_OK || (r = gen_jwtkey(srv, g->base, false, &g->jwt)) != AS_OK) {
            as_error("cannot load CA generation %" PRId64 " (%s): %s", g->id, g->base,
                     as_strerror(r));
            goto out;
        }
        g->in_bundle = true;
    }
    if (n == 0 && (r = first_generation(cs)) != AS_OK) {
        goto out;
    }
    *out = cs;
    cs = NULL;
out:
    as_ca_gen_recs_free(recs, n);
    as_caset_free(cs);
    return r;
}

static struct as_gen *find_state(struct as_caset *cs, const char *state)
{
    for (size_t i = cs->n; i > 0; i--) {
        struct as_gen *g = cs->gens[i - 1];
        if (g->ca != NULL && strcmp(g->state, state) == 0) {
            return g;
        }
    }
    return NULL;
}

enum as_err as_caset_active(struct as_caset *cs, struct as_signing *out)
{
    pthread_rwlock_rdlock(&cs->lock);
    struct as_gen *g = find_state(cs, "active");
    if (g != NULL) {
        out->gen_id = g->id;
        out->ca = g->ca;
        out->jwt = g->jwt;
    }
    pthread_rwlock_unlock(&cs->lock);
    return g != NULL ? AS_OK : AS_ERR_INTERNAL;
}

size_t as_caset_gens(struct as_caset *cs, struct as_gen_info *out, size_t max)
{
    size_t k = 0;
    pthread_rwlock_rdlock(&cs->lock);
    for (size_t i = 0; i < cs->n && k < max; i++) {
        const struct as_gen *g = cs->gens[i];
        if (g->ca == NULL) {
            continue;
        }
        out[k].id = g->id;
        out[k].not_after = as_ca_not_after(g->ca);
        out[k].in_bundle = g->in_bundle;
        snprintf(out[k].state, sizeof out[k].state, "%s", g->state);
        k++;
    }
    pthread_rwlock_unlock(&cs->lock);
    return k;
}

char *as_caset_bundle_pem(struct as_caset *cs)
{
    struct as_buf b;
    if (cs->up != NULL) {
        /* Under an upstream, peers trust its root; our generations are intermediates. */
        return strdup(as_upstream_roots_pem(cs->up));
    }
    as_buf_init(&b, 1 << 20);
    pthread_rwlock_rdlock(&cs->lock);
    for (size_t i = 0; i < cs->n; i++) {
        if (cs->gens[i]->in_bundle &&
            as_buf_append(&b, as_ca_cert_pem(cs->gens[i]->ca),
                          strlen(as_ca_cert_pem(cs->gens[i]->ca))) != AS_OK) {
            pthread_rwlock_unlock(&cs->lock);
            as_buf_free(&b, false);
            return NULL;
        }
    }
    pthread_rwlock_unlock(&cs->lock);
    if (b.data == NULL && as_buf_append(&b, "", 0) != AS_OK) {
        return NULL;
    }
    return b.data;
}

char *as_caset_chains_pem(struct as_caset *cs)
{
    struct as_buf b;
    as_buf_init(&b, 1 << 20);
    pthread_rwlock_rdlock(&cs->lock);
    for (size_t i = 0; i < cs->n; i++) {
        const char *chain = cs->gens[i]->in_bundle ? as_ca_chain_pem(cs->gens[i]->ca) : NULL;
        if (chain != NULL && as_buf_append(&b, chain, strlen(chain)) != AS_OK) {
            pthread_rwlock_unlock(&cs->lock);
            as_buf_free(&b, false);
            return NULL;
        }
    }
    pthread_rwlock_unlock(&cs->lock);
    if (b.data == NULL && as_buf_append(&b, "", 0) != AS_OK) {
        return NULL;
    }
    return b.data;
}

json_t *as_caset_jwks(struct as_caset *cs, int64_t refresh_hint)
{
    json_t *keys = cs->up ? as_upstream_x509_jwks(cs->up) : json_array();
    pthread_rwlock_rdlock(&cs->lock);
    for (size_t i = 0; i < cs->n; i++) {
        struct as_gen *g = cs->gens[i];
        if (!g->in_bundle) {
            continue;
        }
        if (cs->up == NULL) {
            json_array_append_new(keys, as_ca_x509_jwk(g->ca));
        }
        json_array_append_new(keys, as_jwtkey_jwk(g->jwt));
    }
    json_t *o =
        json_pack("{s:o,s:I,s:I}", "keys", keys, "spiffe_sequence", (json_int_t)cs->sequence,
                  "spiffe_refresh_hint", (json_int_t)refresh_hint);
    pthread_rwlock_unlock(&cs->lock);
    return o;
}

size_t as_caset_jwt_keys(struct as_caset *cs, const struct as_jwtkey **out, size_t max)
{
    size_t k = 0;
    pthread_rwlock_rdlock(&cs->lock);
    for (size_t i = 0; i < cs->n && k < max; i++) {
        if (cs->gens[i]->in_bundle) {
            out[k++] = cs->gens[i]->jwt;
        }
    }
    pthread_rwlock_unlock(&cs->lock);
    return k;
}

int64_t as_caset_sequence(struct as_caset *cs)
{
    pthread_rwlock_rdlock(&cs->lock);
    int64_t s = cs->sequence;
    pthread_rwlock_unlock(&cs->lock);
    return s;
}

/* A digest of the CRL's entries, to know when they changed. */
static void crl_digest(char **serials, const int64_t *times, size_t n, unsigned char out[32])
{
    struct as_buf b;
    as_buf_init(&b, (size_t)1 << 30);
    for (size_t i = 0; i < n; i++) {
        if (as_buf_printf(&b, "%s %" PRId64 "\n", serials[i], times[i]) != AS_OK) {
            break;
        }
    }
    if (as_hmac_sha256("crl", 3, b.data ? b.data : "", b.len, out) != AS_OK) {
        memset(out, 0, 32);
    }
    as_buf_free(&b, false);
}

/*
 * Re-signs g's CRL when its entries changed (a revocation, or an entry that expired) or half of
 * crl.ttl has passed, so what is served lists every revocation so far and its nextUpdate is in
 * the future. The entries come from the store on every call: revocations made anywhere (token
 * trees, pki/revoke) are seen without any cache to invalidate. Caller holds g->crl_lock.
 */
static enum as_err crl_refresh(struct as_caset *cs, struct as_gen *g, int64_t now)
{
    int64_t ttl = cs->srv->cfg.crl_ttl;
    char **serials = NULL;
    int64_t *times = NULL;
    size_t n = 0;
    struct as_revoked *rv = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    char *pem = NULL;
    unsigned char digest[32];
    enum as_err r = as_store_cert_crl_entries(cs->srv->store, g->id, now, &serials, &times, &n);
    if (r != AS_OK) {
        return r;
    }
    crl_digest(serials, times, n, digest);
    if (g->crl_der != NULL && memcmp(digest, g->crl_digest, sizeof digest) == 0 &&
        now < g->crl_this_update + ttl / 2) {
        goto out;
    }
    rv = calloc(n + 1, sizeof *rv);
    if (rv == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rv[i].serial = serials[i];
        rv[i].revoked_at = times[i];
    }
    /* CRL numbers must increase (RFC 5280 §5.2.3); milliseconds since the epoch do across
     * restarts, and +1 covers two CRLs within one millisecond. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t number = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (number <= g->crl_number) {
        number = g->crl_number + 1;
    }
    r = as_ca_crl(g->ca, rv, n, now, now + ttl, number, &der, &der_len, &pem);
    if (r != AS_OK) {
        goto out;
    }
    free(g->crl_der);
    free(g->crl_pem);
    g->crl_der = der;
    g->crl_der_len = der_len;
    g->crl_pem = pem;
    g->crl_this_update = now;
    memcpy(g->crl_digest, digest, sizeof digest);
    g->crl_number = number;
out:
    as_store_strv_free(serials, n);
    free(times);
    free(rv);
    return r;
}

enum as_err as_caset_crl_der(struct as_caset *cs, unsigned char **der, size_t *len)
{
    pthread_rwlock_rdlock(&cs->lock);
    struct as_gen *g = find_state(cs, "active");
    pthread_rwlock_unlock(&cs->lock);
    if (g == NULL) {
        return AS_ERR_INTERNAL;
    }
    pthread_mutex_lock(&g->crl_lock);
    enum as_err r = crl_refresh(cs, g, as_now());
    if (r == AS_OK) {
        *der = malloc(g->crl_der_len);
        if (*der == NULL) {
            r = AS_ERR_NOMEM;
        } else {
            memcpy(*der, g->crl_der, g->crl_der_len);
            *len = g->crl_der_len;
        }
    }
    pthread_mutex_unlock(&g->crl_lock);
    return r;
}

enum as_err as_caset_crl_pem(struct as_caset *cs, char **pem)
{
    struct as_gen *list[64];
    size_t k = 0;
    struct as_buf b;
    enum as_err r = AS_OK;
    pthread_rwlock_rdlock(&cs->lock);
    for (size_t i = 0; i < cs->n && k < 64; i++) {
        if (cs->gens[i]->in_bundle) {
            list[k++] = cs->gens[i];
        }
    }
    pthread_rwlock_unlock(&cs->lock);
    as_buf_init(&b, 16 << 20);
    int64_t now = as_now();
    for (size_t i = 0; i < k && r == AS_OK; i++) {
        pthread_mutex_lock(&list[i]->crl_lock);
        r = crl_refresh(cs, list[i], now);
        if (r == AS_OK) {
            r = as_buf_append(&b, list[i]->crl_pem, strlen(list[i]->crl_pem));
        }
        pthread_mutex_unlock(&list[i]->crl_lock);
    }
    if (r == AS_OK && b.data == NULL) {
        r = as_buf_append(&b, "", 0);
    }
    if (r != AS_OK) {
        as_buf_free(&b, false);
        return r;
    }
    *pem = b.data;
    return AS_OK;
}

/* Makes, saves and publishes the next generation. Caller holds the write lock. */
static enum as_err prepare(struct as_caset *cs, int64_t now, int64_t activate_at)
{
    struct as_server *srv = cs->srv;
    enum as_err r;
    unsigned char rnd[4];
    char hex[9];
    char base[64];
    struct as_gen *g = gen_new();
    if (g == NULL) {
        return AS_ERR_NOMEM;
    }
    if ((r = as_rand_bytes(rnd, sizeof rnd)) != AS_OK) {
        gen_free(g);
        return r;
    }
    as_hex(rnd, sizeof rnd, hex);
    snprintf(base, sizeof base, "ca-%" PRId64 "-%s", now, hex);
    /* Files first, then the row that names them: a crash in between leaves only stray files. */
    r = cs->up ? as_ca_generate_under(cs->up, srv->cfg.trust_domain, srv->cfg.ca_ttl, &g->ca)
               : as_ca_generate(srv->cfg.trust_domain, srv->cfg.ca_ttl, &g->ca);
    if (r != AS_OK || (r = as_ca_save(g->ca, srv->cfg.data_dir, base)) != AS_OK ||
        (r = as_jwtkey_generate(&g->jwt)) != AS_OK ||
        (r = as_jwtkey_save(g->jwt, srv->cfg.data_dir, base)) != AS_OK) {
        gen_free(g);
        return r;
    }
    g->base = strdup(base);
    if (g->base == NULL) {
        gen_free(g);
        return AS_ERR_NOMEM;
    }
    if ((r = register_gen(cs, g, "prepared", now, activate_at)) != AS_OK) {
        gen_free(g);
        return r;
    }
    as_info("CA generation %" PRId64 " prepared and published: %s (activates at %" PRId64 ")",
            g->id, as_ca_subject(g->ca), activate_at);
    return bump(cs);
}

/* Makes the prepared generation active and retires the active one. Caller holds the lock. */
static enum as_err activate(struct as_caset *cs, struct as_gen *next, struct as_gen *cur)
{
    struct as_store *st = cs->srv->store;
    enum as_err r = as_store_begin(st);
    if (r != AS_OK) {
        return r;
    }
    if ((r = as_store_ca_gen_update(st, next->id, "active", next->activate_at)) != AS_OK ||
        (cur != NULL && (r = as_store_ca_gen_update(st, cur->id, "retired", 0)) != AS_OK) ||
        (r = as_store_commit(st)) != AS_OK) {
        as_store_rollback(st);
        return r;
    }
    snprintf(next->state, sizeof next->state, "active");
    if (cur != NULL) {
        snprintf(cur->state, sizeof cur->state, "retired");
        if ((r = compute_drop_at(cs, cur)) != AS_OK) {
            return r;
        }
    }
    as_info("CA generation %" PRId64 " is now active", next->id);
    return bump(cs);
}

enum as_err as_caset_tick(struct as_caset *cs, int64_t now, int64_t *next_event, bool *activated)
{
    enum as_err r = AS_OK;
    int64_t next = now + 3600;
    *activated = false;
    pthread_rwlock_wrlock(&cs->lock);
    struct as_gen *cur = find_state(cs, "active");
    struct as_gen *prep = find_state(cs, "prepared");
    if (cur == NULL) {
        r = AS_ERR_INTERNAL;
        goto out;
    }
    int64_t life = as_ca_not_after(cur->ca) - as_ca_not_before(cur->ca);
    int64_t prepare_at = as_ca_not_before(cur->ca) + life / 2;
    if (prep == NULL) {
        if (now >= prepare_at) {
            if ((r = prepare(cs, now, as_ca_not_after(cur->ca) - life / 6)) != AS_OK) {
                goto out;
            }
            prep = find_state(cs, "prepared");
        } else if (prepare_at < next) {
            next = prepare_at;
        }
    }
    if (prep != NULL) {
        if (now >= prep->activate_at) {
            if ((r = activate(cs, prep, cur)) != AS_OK) {
                goto out;
            }
            *activated = true;
            cur = prep;
            life = as_ca_not_after(cur->ca) - as_ca_not_before(cur->ca);
            prepare_at = as_ca_not_before(cur->ca) + life / 2;
            if (prepare_at < next) {
                next = prepare_at;
            }
        } else if (prep->activate_at < next) {
            next = prep->activate_at;
        }
    }
    for (size_t i = 0; i < cs->n; i++) {
        struct as_gen *g = cs->gens[i];
        if (!g->in_bundle || strcmp(g->state, "retired") != 0) {
            continue;
        }
        if (now >= g->drop_at) {
            /* Look again: a request that borrowed it just before it retired may have issued. */
            if ((r = compute_drop_at(cs, g)) != AS_OK) {
                goto out;
            }
        }
        if (now >= g->drop_at) {
            g->in_bundle = false;
            as_info("CA generation %" PRId64 " left the bundle: its last SVID has expired", g->id);
            if ((r = bump(cs)) != AS_OK) {
                goto out;
            }
        } else if (g->drop_at < next) {
            next = g->drop_at;
        }
    }
out:
    pthread_rwlock_unlock(&cs->lock);
    *next_event = next;
    return r;
}

enum as_err as_caset_rotate_now(struct as_caset *cs, int64_t activate_after, int64_t *activate_at)
{
    enum as_err r = AS_OK;
    int64_t now = as_now();
    pthread_rwlock_wrlock(&cs->lock);
    struct as_gen *prep = find_state(cs, "prepared");
    *activate_at = now + activate_after;
    if (prep == NULL) {
        r = prepare(cs, now, *activate_at);
    } else {
        r = as_store_ca_gen_update(cs->srv->store, prep->id, "prepared", *activate_at);
        if (r == AS_OK) {
            prep->activate_at = *activate_at;
        }
    }
    pthread_rwlock_unlock(&cs->lock);
    return r;
}
