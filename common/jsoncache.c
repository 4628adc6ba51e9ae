/*
 * jsoncache.c: parsed JSON bodies, kept by their exact bytes (common.h, as_json_cache_parse).
 *
 * A proxy asks connect/authorize the same few questions over and over: the same target, the
 * same client SPIFFE ID and serial, byte for byte the same body. jansson's parse of such a
 * 160-byte body was 14.5% of the server's CPU per check (perf), more than the decision itself.
 * This keeps the parsed object of each recent body and hands the same object (one more
 * reference) to every later request with the same bytes. Only the parse is remembered, never a
 * decision: the object is what json_loadb makes of those bytes, whatever happened meanwhile.
 *
 * A slot is picked by an unkeyed FNV-1a of the bytes (as_hash_bytes) and holds a copy of them;
 * a hit needs the whole body equal (memcmp), so a hash collision is a miss, never a wrong
 * object. Bodies that differ at every request (an attacker's, or a client's with a nonce) just
 * miss and replace each other: the cost is one parse, as without the cache, plus a copy of at
 * most max_len bytes.
 *
 * The objects are shared between threads, read-only: jansson 2.14 counts references with
 * atomic builtins (JSON_HAVE_ATOMIC_BUILTINS), and reading an object (json_object_get,
 * iteration, serializing) changes nothing in it. Callers must never modify what they get.
 */
#include "common.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    uint64_t hash;
    size_t len;
    char *bytes;   /* malloc'd copy of the body, len bytes */
    json_t *value; /* one reference, the slot's */
};

struct as_json_cache {
    pthread_rwlock_t lock;
    size_t nslots;
    size_t max_len;
    struct slot *slots;
};

struct as_json_cache *as_json_cache_new(size_t nslots, size_t max_len)
{
    if (nslots == 0 || max_len == 0 || max_len > AS_MAX_BODY_BYTES) {
        return NULL;
    }
    struct as_json_cache *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->slots = calloc(nslots, sizeof *c->slots);
    if (c->slots == NULL || pthread_rwlock_init(&c->lock, NULL) != 0) {
        free(c->slots);
        free(c);
        return NULL;
    }
    c->nslots = nslots;
    c->max_len = max_len;
    return c;
}

void as_json_cache_free(struct as_json_cache *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->nslots; i++) {
        free(c->slots[i].bytes);
        json_decref(c->slots[i].value);
    }
    free(c->slots);
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

/* The object kept for exactly these bytes (a new reference), or NULL. */
static json_t *lookup(struct as_json_cache *c, uint64_t h, const char *body, size_t len)
{
    json_t *v = NULL;
    const struct slot *s = &c->slots[h % c->nslots];
    pthread_rwlock_rdlock(&c->lock);
    if (s->value != NULL && s->hash == h && s->len == len && memcmp(s->bytes, body, len) == 0) {
        v = json_incref(s->value);
    }
    pthread_rwlock_unlock(&c->lock);
    return v;
}

/* Keeps v (its own reference) for these bytes, in place of the slot's body. */
static void keep(struct as_json_cache *c, uint64_t h, const char *body, size_t len, json_t *v)
{
    char *copy = malloc(len);
    if (copy == NULL) {
        return; /* not kept: the next request parses again */
    }
    memcpy(copy, body, len);
    struct slot *s = &c->slots[h % c->nslots];
    pthread_rwlock_wrlock(&c->lock);
    char *old_bytes = s->bytes;
    json_t *old_value = s->value;
    s->hash = h;
    s->len = len;
    s->bytes = copy;
    s->value = json_incref(v);
    pthread_rwlock_unlock(&c->lock);
    free(old_bytes);
    json_decref(old_value); /* readers that took it hold their own references */
}

enum as_err as_json_cache_parse(struct as_json_cache *c, const char *body, size_t len, json_t **out,
                                char *err, size_t errlen)
{
    *out = NULL;
    if (c == NULL || len == 0 || len > c->max_len) {
        return as_json_parse_object(body, len, out, err, errlen);
    }
    uint64_t h = as_hash_bytes(body, len);
    json_t *v = lookup(c, h, body, len);
    if (v != NULL) {
        *out = v;
        return AS_OK;
    }
    enum as_err r = as_json_parse_object(body, len, &v, err, errlen);
    if (r != AS_OK) {
        return r; /* failures are not kept: each one is parsed and explained again */
    }
    keep(c, h, body, len, v);
    *out = v;
    return AS_OK;
}
