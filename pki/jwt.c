/*
 * jwt.c: JWT signature verification for the jwt auth method (pki.h): key sets from a JWKS
 * document (RFC 7517) or from PEM public keys, and verification of a compact JWS (RFC 7515 §7.1)
 * signed with RS256/384/512 (RSASSA-PKCS1-v1_5, RFC 7518 §3.3) or ES256/384/512 (ECDSA,
 * RFC 7518 §3.4). Claims are not checked here: the caller applies Vault's validation order.
 *
 * libjwt 1.10 is not used for the signature (PERF-NOTES trap 2): it believes the header's alg (an
 * HS256 token keyed with the RSA public key PEM verifies), treats a missing key as "no
 * verification", and decodes the PEM key on every call (~250 µs, behind global decoder locks).
 * Here every key is decoded once, when the set is parsed: RSA keys from n and e, EC keys from x
 * and y with EVP_PKEY_fromdata (PEM only for the configured jwt_validation_pubkeys, once at
 * configuration time), and for every hash the key may be used with a DigestVerify context is
 * initialised once. A verification copies that template (EVP_MD_CTX_copy_ex), which fetches no
 * algorithm and sets up no key context, and never writes to the set: a set is read-only after
 * parsing, so any number of threads may verify against it at once.
 *
 * The alg of a token is judged before anything else in it (RFC 8725 §3.1): only the six
 * asymmetric algorithms above, only those the caller allows, and only on a key of the matching
 * type and curve (RFC 7515 §10.7; RFC 8725 §2.1, §3.1). No key ever comes from the token itself
 * (jwk, jku, x5u, x5c headers are ignored): the only keys are those of the set.
 *
 * The strict base64url decoder, the strict JSON object parser and the R||S to DER conversion are
 * shared with pki/jwtsvid.c (pki_internal.h).
 */
#include "pki/pki.h"
#include "pki/pki_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

/* A JWKS document is fetched from the network: bound the JSON work it can ask of us. */
#define JWKS_MAX_BYTES AS_MAX_BODY_BYTES
/* Issuers publish a handful of keys (current, next, previous). A token without a kid is tried
 * against every key of its type, so the count bounds the work one request can cause. */
#define JWKS_MAX_KEYS 64
/* RFC 7518 §3.3: a key of size 2048 bits or larger MUST be used with these algorithms. */
#define RSA_MIN_BITS 2048
/* OpenSSL's OPENSSL_RSA_MAX_MODULUS_BITS: a larger modulus would fail every verification. */
#define RSA_MAX_BITS 16384
/* The public exponent: odd, above 1 and, as in Go's crypto/rsa, within 31 bits. Larger ones are
 * not in use, and OpenSSL limits e to 64 bits for moduli over 3072 bits anyway. */
#define RSA_E_MAX_BITS 31
/* One configured PEM public key: an RSA-16384 SPKI is under 3 KiB. */
#define PEM_MAX_BYTES (64 * 1024)
/* Uncompressed point: 0x04 || X || Y (SEC 1 §2.3.3), the form EVP_PKEY_fromdata takes. */
#define EC_POINT_MAX (1 + 2 * AS_PKI_ECDSA_SCALAR_MAX)
#define POINT_FORM_UNCOMPRESSED 0x04

enum key_kind { KIND_RSA, KIND_P256, KIND_P384, KIND_P521 };

/* The digests of RS* and ES* (RFC 7518 §3.1), indexes of a key's verify templates. */
enum hash_ix { HASH_SHA256, HASH_SHA384, HASH_SHA512, HASH_COUNT };
static const char *const hash_names[HASH_COUNT] = {"SHA2-256", "SHA2-384", "SHA2-512"};

/* RFC 7518 §3.1: the "alg" values we verify, case-sensitive (RFC 7515 §4.1.1). */
struct alg_info {
    const char *name;
    unsigned bit;
    enum hash_ix hash;
};
static const struct alg_info alg_table[] = {
    {"RS256", AS_JWT_RS256, HASH_SHA256}, {"RS384", AS_JWT_RS384, HASH_SHA384},
    {"RS512", AS_JWT_RS512, HASH_SHA512}, {"ES256", AS_JWT_ES256, HASH_SHA256},
    {"ES384", AS_JWT_ES384, HASH_SHA384}, {"ES512", AS_JWT_ES512, HASH_SHA512},
};
#define ALG_COUNT (sizeof alg_table / sizeof alg_table[0])
#define ALGS_RSA (AS_JWT_RS256 | AS_JWT_RS384 | AS_JWT_RS512)

/* RFC 7518 §6.2.1.1 curve names, OpenSSL's NIDs, the coordinate (and R, S) size in octets, and
 * the one alg each curve is used with (RFC 7518 §3.4). */
struct curve_info {
    enum key_kind kind;
    const char *crv;
    const char *group;
    int nid;
    size_t coord;
    unsigned alg;
};
static const struct curve_info curve_table[] = {
    {KIND_P256, "P-256", "prime256v1", NID_X9_62_prime256v1, 32, AS_JWT_ES256},
    {KIND_P384, "P-384", "secp384r1", NID_secp384r1, 48, AS_JWT_ES384},
    {KIND_P521, "P-521", "secp521r1", NID_secp521r1, 66, AS_JWT_ES512},
};
#define CURVE_COUNT (sizeof curve_table / sizeof curve_table[0])

struct jwk {
    EVP_PKEY *pkey;
    /* A DigestVerify context initialised once with pkey and each hash the key may be used with
     * (NULL for the others). Only ever copied, never used, so threads may share them. */
    EVP_MD_CTX *tmpl[HASH_COUNT];
    enum key_kind kind;
    /* The algs this key verifies: by its type and curve, narrowed by the JWK's "alg". */
    unsigned algs;
    /* The exact signature length: the modulus size (RFC 8017 §8.2.2 step 1) or 2 x the curve
     * size (RFC 7518 §3.4). */
    size_t sig_len;
    /* RFC 7517 §4.5; NULL when the key has none. */
    char *kid;
};

struct as_jwks {
    struct jwk *keys;
    size_t n;
    /* A JWKS (kids are the issuer's: a token's kid selects the key) or PEM keys (no kids: every
     * key of the type is tried, as Vault does with jwt_validation_pubkeys, since Kubernetes and
     * CI tokens carry a kid whichever way the key was configured). */
    bool by_kid;
};

/* ---- small helpers ---- */

static const struct alg_info *alg_lookup(const char *name)
{
    for (size_t i = 0; i < ALG_COUNT; i++) {
        if (strcmp(alg_table[i].name, name) == 0) {
            return &alg_table[i];
        }
    }
    return NULL;
}

static const struct curve_info *curve_of(enum key_kind kind)
{
    for (size_t i = 0; i < CURVE_COUNT; i++) {
        if (curve_table[i].kind == kind) {
            return &curve_table[i];
        }
    }
    return NULL;
}

/* The algs a key of this kind can verify (RFC 7518 §3.1). */
static unsigned kind_algs(enum key_kind kind)
{
    const struct curve_info *c = curve_of(kind);
    return c != NULL ? c->alg : ALGS_RSA;
}

enum as_err as_jwt_alg_parse(const char *name, unsigned *alg)
{
    if (name == NULL || alg == NULL) {
        return AS_ERR_INVALID;
    }
    const struct alg_info *a = alg_lookup(name);
    if (a == NULL) {
        return AS_ERR_INVALID;
    }
    *alg = a->bit;
    return AS_OK;
}

/* ---- keys ---- */

static void jwk_clear(struct jwk *k)
{
    for (size_t h = 0; h < HASH_COUNT; h++) {
        EVP_MD_CTX_free(k->tmpl[h]);
    }
    EVP_PKEY_free(k->pkey);
    free(k->kid);
    memset(k, 0, sizeof *k);
}

void as_jwks_free(struct as_jwks *k)
{
    if (k == NULL) {
        return;
    }
    for (size_t i = 0; i < k->n; i++) {
        jwk_clear(&k->keys[i]);
    }
    free(k->keys);
    free(k);
}

size_t as_jwks_count(const struct as_jwks *k)
{
    return k != NULL ? k->n : 0;
}

/* An empty set with room for cap keys. */
static enum as_err set_new(size_t cap, bool by_kid, struct as_jwks **out)
{
    struct as_jwks *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return AS_ERR_NOMEM;
    }
    s->keys = calloc(cap > 0 ? cap : 1, sizeof *s->keys);
    if (s->keys == NULL) {
        free(s);
        return AS_ERR_NOMEM;
    }
    s->by_kid = by_kid;
    *out = s;
    return AS_OK;
}

/*
 * Checks an RSA public key: RFC 7518 §3.3 asks for at least 2048 bits; OpenSSL verifies up to
 * RSA_MAX_BITS; n odd, e odd and above 1 (RFC 8017 §3.1). NULL when usable, else a static reason,
 * with *size_only when the only fault is the size (a JWKS skips such a key, PEM config refuses it).
 */
static const char *rsa_problem(const EVP_PKEY *pkey, size_t *sig_len, bool *size_only)
{
    const char *reason = NULL;
    BIGNUM *n = NULL;
    BIGNUM *e = NULL;
    int bits = 0;

    *size_only = false;
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
        EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1) {
        ERR_clear_error();
        reason = "RSA key without n and e";
        goto out;
    }
    if (!BN_is_odd(n) || !BN_is_odd(e) || BN_is_one(e) || BN_num_bits(e) > RSA_E_MAX_BITS) {
        reason = "RSA key with an even modulus or a bad public exponent (RFC 8017 §3.1)";
        goto out;
    }
    bits = BN_num_bits(n);
    if (bits < RSA_MIN_BITS) {
        *size_only = true;
        reason = "RSA key under 2048 bits (RFC 7518 §3.3)";
        goto out;
    }
    if (bits > RSA_MAX_BITS) {
        *size_only = true;
        reason = "RSA key over 16384 bits";
        goto out;
    }
    *sig_len = (size_t)BN_num_bytes(n);
out:
    BN_free(n);
    BN_free(e);
    return reason;
}

/*
 * Checks an EC public key: a named curve among P-256, P-384 and P-521 (RFC 7518 §3.4, §6.2.1.1)
 * and a public point that is on it, not the point at infinity and of the group's order (SP
 * 800-56A §5.6.2.3.3, EVP_PKEY_public_check), so that no invalid-curve point is ever used.
 */
static const char *ec_problem(EVP_PKEY *pkey, enum key_kind *kind, size_t *sig_len)
{
    const char *reason = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    const struct curve_info *c = NULL;
    char group[64];
    size_t glen = 0;
    int nid = NID_undef;

    if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1) {
        ERR_clear_error();
        reason = "EC key without a named curve";
        goto out;
    }
    nid = OBJ_sn2nid(group);
    for (size_t i = 0; i < CURVE_COUNT; i++) {
        if (curve_table[i].nid == nid) {
            c = &curve_table[i];
        }
    }
    if (c == NULL) {
        reason = "EC key on a curve other than P-256, P-384 and P-521 (RFC 7518 §3.4)";
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx == NULL) {
        reason = "out of memory";
        goto out;
    }
    if (EVP_PKEY_public_check(ctx) != 1) {
        ERR_clear_error();
        reason = "EC public point not on the curve (RFC 7518 §6.2.1.2-3)";
        goto out;
    }
    *kind = c->kind;
    *sig_len = 2 * c->coord;
out:
    EVP_PKEY_CTX_free(ctx);
    return reason;
}

/*
 * Takes ownership of *pkey into k: checks it (RSA or EC as above), then initialises one
 * DigestVerify template per hash of the algs it may serve (restricted to only_alg when not 0).
 * On a refusal AS_ERR_INVALID with a static reason in *reason and *size_only as rsa_problem.
 */
static enum as_err key_admit(EVP_PKEY **pkey, unsigned only_alg, struct jwk *k, const char **reason,
                             bool *size_only)
{
    enum as_err r = AS_ERR_INVALID;
    EVP_PKEY_CTX *pctx = NULL;

    *size_only = false;
    k->pkey = *pkey;
    *pkey = NULL;
    if (EVP_PKEY_is_a(k->pkey, "RSA")) {
        k->kind = KIND_RSA;
        *reason = rsa_problem(k->pkey, &k->sig_len, size_only);
    } else if (EVP_PKEY_is_a(k->pkey, "EC")) {
        *reason = ec_problem(k->pkey, &k->kind, &k->sig_len);
    } else {
        /* RSA-PSS-only keys, Ed25519, DSA, ...: not for RS* or ES* (RFC 7518 §3.1). */
        *reason = "not an RSA or EC public key";
    }
    if (*reason != NULL) {
        goto out;
    }
    k->algs = kind_algs(k->kind);
    if (only_alg != 0) {
        if ((k->algs & only_alg) == 0) {
            *reason = "the key's alg does not fit its kty or crv (RFC 7517 §4.4)";
            goto out;
        }
        k->algs = only_alg;
    }
    for (size_t i = 0; i < ALG_COUNT; i++) {
        enum hash_ix h = alg_table[i].hash;
        if ((k->algs & alg_table[i].bit) == 0 || k->tmpl[h] != NULL) {
            continue;
        }
        k->tmpl[h] = EVP_MD_CTX_new();
        if (k->tmpl[h] == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        /* The digest is fetched here, once, by name; the copies reuse it (PERF-NOTES trap 1). */
        int ok =
            EVP_DigestVerifyInit_ex(k->tmpl[h], &pctx, hash_names[h], NULL, NULL, k->pkey, NULL);
        if (ok != 1) {
            as_pki_log_ssl_errors("jwt: DigestVerify setup");
            r = AS_ERR_CRYPTO;
            goto out;
        }
        /* RS*: RSASSA-PKCS1-v1_5 (RFC 7518 §3.3), said explicitly though it is the default. */
        if (k->kind == KIND_RSA && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) {
            as_pki_log_ssl_errors("jwt: RSA padding setup");
            r = AS_ERR_CRYPTO;
            goto out;
        }
    }
    r = AS_OK;
out:
    return r;
}

/* An RSA public key from its JWK members (RFC 7518 §6.3.1), big-endian unsigned; AS_ERR_INVALID
 * when OpenSSL will not take them. */
static enum as_err rsa_from_ne(const unsigned char *n, size_t nlen, const unsigned char *e,
                               size_t elen, EVP_PKEY **out)
{
    enum as_err r = AS_ERR_CRYPTO;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    BIGNUM *bn_n = BN_bin2bn(n, (int)nlen, NULL);
    BIGNUM *bn_e = BN_bin2bn(e, (int)elen, NULL);

    bld = OSSL_PARAM_BLD_new();
    if (bn_n == NULL || bn_e == NULL || bld == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) {
        as_pki_log_ssl_errors("jwt: RSA key setup");
        goto out;
    }
    if (EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        ERR_clear_error();
        r = AS_ERR_INVALID;
        goto out;
    }
    r = AS_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return r;
}

/*
 * An EC public key from its JWK coordinates (RFC 7518 §6.2.1.2-3). OpenSSL refuses a point that
 * is not on the curve here already; key_admit checks it again, explicitly. AS_ERR_INVALID for a
 * point OpenSSL will not take.
 */
static enum as_err ec_from_xy(const struct curve_info *c, const unsigned char *x,
                              const unsigned char *y, EVP_PKEY **out)
{
    enum as_err r = AS_ERR_INVALID;
    EVP_PKEY_CTX *ctx = NULL;
    unsigned char point[EC_POINT_MAX];
    OSSL_PARAM params[3];

    point[0] = POINT_FORM_UNCOMPRESSED;
    memcpy(point + 1, x, c->coord);
    memcpy(point + 1 + c->coord, y, c->coord);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)c->group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * c->coord);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) {
        as_pki_log_ssl_errors("jwt: EC key setup");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if (EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        ERR_clear_error();
        goto out;
    }
    r = AS_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    return r;
}

/*
 * Decodes the base64url member name of jwk (RFC 7518 §6.2.1, §6.3.1: Base64urlUInt and
 * coordinates) into a new buffer. AS_ERR_INVALID when it is missing, not a string or not strict
 * base64url (then *reason says so).
 */
static enum as_err b64_member(json_t *jwk, const char *name, unsigned char **out, size_t *outlen,
                              const char **reason)
{
    enum as_err r = AS_ERR_INVALID;
    char *scratch = NULL;
    unsigned char *buf = NULL;
    json_t *v = json_object_get(jwk, name);
    size_t len = json_is_string(v) ? json_string_length(v) : 0;

    if (len == 0) {
        *reason = "a key member (n, e, x or y) is missing or not a non-empty string";
        goto out;
    }
    scratch = malloc(len + 4);
    buf = malloc(len + 4);
    if (scratch == NULL || buf == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (!as_pki_b64url_decode(json_string_value(v), len, scratch, buf, outlen)) {
        *reason = "a key member (n, e, x or y) is not strict base64url (RFC 7515 §2)";
        goto out;
    }
    *out = buf;
    buf = NULL;
    r = AS_OK;
out:
    free(scratch);
    free(buf);
    return r;
}

/* An optional string member: AS_OK with *out NULL when absent, AS_ERR_INVALID when not a string. */
static enum as_err opt_string(json_t *obj, const char *name, const char **out)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (v == NULL) {
        return AS_OK;
    }
    if (!json_is_string(v)) {
        return AS_ERR_INVALID;
    }
    *out = json_string_value(v);
    return AS_OK;
}

/* RFC 7517 §4.3: key_ops, when present, must list "verify" for the key to verify anything. */
static enum as_err key_ops_verify(json_t *jwk, bool *verify)
{
    json_t *ops = json_object_get(jwk, "key_ops");
    size_t i;
    json_t *op;
    *verify = ops == NULL;
    if (ops == NULL) {
        return AS_OK;
    }
    if (!json_is_array(ops)) {
        return AS_ERR_INVALID;
    }
    json_array_foreach(ops, i, op)
    {
        if (!json_is_string(op)) {
            return AS_ERR_INVALID;
        }
        if (strcmp(json_string_value(op), "verify") == 0) {
            *verify = true;
        }
    }
    return AS_OK;
}

/*
 * Builds the key of one JWK (RFC 7517 §4, RFC 7518 §6) into k. AS_OK with *skip when the key is
 * not for us (another kty or curve, use other than "sig", key_ops without "verify", an alg we do
 * not verify, or with *weak an RSA size out of range: *reason says which), AS_OK with k filled
 * when usable, AS_ERR_INVALID with *reason when it is malformed (the whole document is then
 * refused).
 */
static enum as_err jwk_load(json_t *jwk, struct jwk *k, bool *skip, bool *weak, const char **reason)
{
    enum as_err r = AS_ERR_INVALID;
    EVP_PKEY *pkey = NULL;
    unsigned char *a = NULL;
    unsigned char *b = NULL;
    size_t alen = 0;
    size_t blen = 0;
    const char *kty = NULL;
    const char *use = NULL;
    const char *alg = NULL;
    const char *kid = NULL;
    const char *crv = NULL;
    const struct curve_info *c = NULL;
    const struct alg_info *ai = NULL;
    bool verify = false;
    bool size_only = false;

    *skip = false;
    *weak = false;
    *reason = NULL;
    if (!json_is_object(jwk)) {
        *reason = "not a JSON object (RFC 7517 §5.1)";
        goto out;
    }
    if (opt_string(jwk, "kty", &kty) != AS_OK || kty == NULL) {
        *reason = "no kty string (RFC 7517 §4.1)";
        goto out;
    }
    if (opt_string(jwk, "use", &use) != AS_OK || opt_string(jwk, "alg", &alg) != AS_OK ||
        opt_string(jwk, "kid", &kid) != AS_OK || key_ops_verify(jwk, &verify) != AS_OK) {
        *reason = "use, alg or kid not a string, or key_ops not an array of strings (RFC 7517 §4)";
        goto out;
    }
    /* A verification key set holds public keys: private members mean the issuer's signing key
     * has been published, and anyone can mint tokens with it (RFC 7518 §6.2.2, §6.3.2). */
    if (json_object_get(jwk, "d") != NULL) {
        *reason = "holds a private key (\"d\"): the signing key is public (RFC 7518 §6.2.2.1)";
        goto out;
    }
    if (strcmp(kty, "EC") == 0 && (opt_string(jwk, "crv", &crv) != AS_OK || crv == NULL)) {
        *reason = "EC key without a crv string (RFC 7518 §6.2.1.1)";
        goto out;
    }
    /* From here on, a key that is not for us is skipped, not refused (RFC 7517 §5). */
    r = AS_OK;
    *skip = true;
    if (strcmp(kty, "RSA") != 0 && strcmp(kty, "EC") != 0) {
        *reason = "kty is neither RSA nor EC (RFC 7518 §6.1)";
        goto out;
    }
    if (use != NULL && strcmp(use, "sig") != 0) {
        *reason = "use is not \"sig\" (RFC 7517 §4.2)";
        goto out;
    }
    if (!verify) {
        *reason = "key_ops does not include \"verify\" (RFC 7517 §4.3)";
        goto out;
    }
    if (alg != NULL && (ai = alg_lookup(alg)) == NULL) {
        *reason = "alg is not one of RS256/384/512, ES256/384/512 (RFC 7517 §4.4)";
        goto out;
    }
    if (crv != NULL) {
        for (size_t i = 0; i < CURVE_COUNT; i++) {
            if (strcmp(curve_table[i].crv, crv) == 0) {
                c = &curve_table[i];
            }
        }
        if (c == NULL) {
            *reason = "crv is not P-256, P-384 or P-521 (RFC 7518 §6.2.1.1)";
            goto out;
        }
    }
    *skip = false;

    if (c == NULL) {
        if ((r = b64_member(jwk, "n", &a, &alen, reason)) != AS_OK ||
            (r = b64_member(jwk, "e", &b, &blen, reason)) != AS_OK) {
            goto out;
        }
        if ((r = rsa_from_ne(a, alen, b, blen, &pkey)) != AS_OK) {
            if (r == AS_ERR_INVALID) {
                *reason = "n and e do not make an RSA public key (RFC 7518 §6.3.1)";
            }
            goto out;
        }
    } else {
        if ((r = b64_member(jwk, "x", &a, &alen, reason)) != AS_OK ||
            (r = b64_member(jwk, "y", &b, &blen, reason)) != AS_OK) {
            goto out;
        }
        /* RFC 7518 §6.2.1.2-3: each coordinate is the full size of the curve's field. */
        if (alen != c->coord || blen != c->coord) {
            r = AS_ERR_INVALID;
            *reason = "x or y is not the full size of a coordinate of crv (RFC 7518 §6.2.1.2)";
            goto out;
        }
        if ((r = ec_from_xy(c, a, b, &pkey)) != AS_OK) {
            if (r == AS_ERR_INVALID) {
                *reason = "EC public point not on the curve (RFC 7518 §6.2.1.2-3)";
            }
            goto out;
        }
    }
    if ((r = key_admit(&pkey, ai != NULL ? ai->bit : 0, k, reason, &size_only)) != AS_OK) {
        /* RFC 7518 §3.3: a short RSA key is not ours to use, but not a broken document. */
        if (r == AS_ERR_INVALID && size_only) {
            *skip = true;
            *weak = true;
            r = AS_OK;
        }
        goto out;
    }
    if (kid != NULL && (k->kid = strdup(kid)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
out:
    if (r != AS_OK || *skip) {
        jwk_clear(k);
    }
    EVP_PKEY_free(pkey);
    free(a);
    free(b);
    return r;
}

enum as_err as_jwks_parse(const char *json, size_t len, struct as_jwks **out, char *why,
                          size_t whylen)
{
    enum as_err r = AS_ERR_INVALID;
    json_t *doc = NULL;
    json_t *arr = NULL;
    json_t *jwk = NULL;
    struct as_jwks *set = NULL;
    const char *reason = NULL;
    const char *last_skip = NULL;
    size_t i = 0;
    size_t last_skip_ix = 0;
    bool skip = false;
    bool weak = false;

    as_why(why, whylen, "%s", "");
    if (out != NULL) {
        *out = NULL;
    }
    if (json == NULL || out == NULL) {
        as_why(why, whylen, "bad arguments to JWKS parsing");
        goto out;
    }
    if (len > JWKS_MAX_BYTES) {
        as_why(why, whylen, "JWKS document larger than %d bytes", JWKS_MAX_BYTES);
        r = AS_ERR_TOO_LARGE;
        goto out;
    }
    doc = as_pki_json_object_strict((const unsigned char *)json, len);
    if (doc == NULL) {
        as_why(why, whylen, "JWKS is not a JSON object (UTF-8, no duplicate members, depth <= %d)",
               AS_MAX_JSON_DEPTH);
        goto out;
    }
    /* RFC 7517 §5.1: "keys" is REQUIRED, an array of JWKs. */
    arr = json_object_get(doc, "keys");
    if (!json_is_array(arr)) {
        as_why(why, whylen, "JWKS has no \"keys\" array (RFC 7517 §5.1)");
        goto out;
    }
    if (json_array_size(arr) > JWKS_MAX_KEYS) {
        as_why(why, whylen, "JWKS holds more than %d keys", JWKS_MAX_KEYS);
        goto out;
    }
    if ((r = set_new(json_array_size(arr), true, &set)) != AS_OK) {
        goto out;
    }
    json_array_foreach(arr, i, jwk)
    {
        r = jwk_load(jwk, &set->keys[set->n], &skip, &weak, &reason);
        if (r != AS_OK) {
            as_why(why, whylen, "JWKS key %zu: %s", i, reason != NULL ? reason : as_strerror(r));
            goto out;
        }
        if (skip) {
            /* RFC 7517 §5: keys we do not understand are ignored, not an error; a weak key is
             * worth a warning. The index only, never a value from the document, is logged. */
            as_log(weak ? AS_LOG_WARN : AS_LOG_INFO, "jwt: JWKS key %zu skipped: %s", i, reason);
            last_skip = reason;
            last_skip_ix = i;
            continue;
        }
        set->n++;
    }
    if (set->n == 0) {
        if (last_skip != NULL) {
            as_why(why, whylen, "JWKS has no usable key (key %zu: %s)", last_skip_ix, last_skip);
        } else {
            as_why(why, whylen, "JWKS has no usable key");
        }
        r = AS_ERR_INVALID;
        goto out;
    }
    *out = set;
    set = NULL;
    r = AS_OK;
out:
    as_jwks_free(set);
    json_decref(doc);
    return r;
}

/* True when the rest of bio holds another PEM block (one key per string: a second is refused,
 * never silently ignored). */
static bool pem_has_more(BIO *bio)
{
    char *rest = NULL;
    long n = BIO_get_mem_data(bio, &rest);
    return n > 0 && rest != NULL && memmem(rest, (size_t)n, "-----BEGIN", 10) != NULL;
}

/*
 * The one PEM block of bio as a public key: labelled "PUBLIC KEY" (RFC 7468 §13), without
 * encapsulated headers, holding exactly one DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) and
 * nothing after it. OpenSSL's PEM_read_bio_PUBKEY would also take other labels (PKCS#1 "RSA
 * PUBLIC KEY"); the configuration takes SPKI only. NULL on any failure.
 */
static EVP_PKEY *pem_spki(BIO *bio)
{
    EVP_PKEY *pkey = NULL;
    char *name = NULL;
    char *header = NULL;
    unsigned char *der = NULL;
    const unsigned char *p = NULL;
    long derlen = 0;

    if (PEM_read_bio(bio, &name, &header, &der, &derlen) != 1 ||
        strcmp(name, PEM_STRING_PUBLIC) != 0 || header[0] != '\0' || derlen <= 0) {
        goto out;
    }
    p = der;
    pkey = d2i_PUBKEY(NULL, &p, derlen);
    if (pkey != NULL && p != der + derlen) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    ERR_clear_error();
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    return pkey;
}

enum as_err as_jwks_from_pems(json_t *pems, struct as_jwks **out, char *why, size_t whylen)
{
    enum as_err r = AS_ERR_INVALID;
    struct as_jwks *set = NULL;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    json_t *v = NULL;
    const char *reason = NULL;
    size_t i = 0;
    size_t len = 0;
    bool size_only = false;

    as_why(why, whylen, "%s", "");
    if (out != NULL) {
        *out = NULL;
    }
    if (out == NULL || !json_is_array(pems) || json_array_size(pems) == 0) {
        as_why(why, whylen, "public keys must be a non-empty array of PEM strings");
        goto out;
    }
    if (json_array_size(pems) > JWKS_MAX_KEYS) {
        as_why(why, whylen, "more than %d public keys", JWKS_MAX_KEYS);
        goto out;
    }
    if ((r = set_new(json_array_size(pems), false, &set)) != AS_OK) {
        goto out;
    }
    json_array_foreach(pems, i, v)
    {
        r = AS_ERR_INVALID;
        len = json_is_string(v) ? json_string_length(v) : 0;
        if (len == 0 || len > PEM_MAX_BYTES) {
            as_why(why, whylen, "public key %zu is not a PEM string of at most %d bytes", i,
                   PEM_MAX_BYTES);
            goto out;
        }
        bio = BIO_new_mem_buf(json_string_value(v), (int)len);
        if (bio == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        /* Once, at configuration time: the decoders' cost (PERF-NOTES trap 1) is paid here and
         * never per token. */
        pkey = pem_spki(bio);
        if (pkey == NULL) {
            as_why(why, whylen,
                   "public key %zu is not a PEM SubjectPublicKeyInfo (BEGIN PUBLIC KEY)", i);
            goto out;
        }
        if (pem_has_more(bio)) {
            as_why(why, whylen, "public key %zu holds more than one PEM block", i);
            goto out;
        }
        BIO_free(bio);
        bio = NULL;
        r = key_admit(&pkey, 0, &set->keys[set->n], &reason, &size_only);
        if (r != AS_OK) {
            jwk_clear(&set->keys[set->n]);
            as_why(why, whylen, "public key %zu: %s", i,
                   r == AS_ERR_INVALID && reason != NULL ? reason : as_strerror(r));
            goto out;
        }
        set->n++;
    }
    *out = set;
    set = NULL;
    r = AS_OK;
out:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    as_jwks_free(set);
    return r;
}

/* ---- verification ---- */

/*
 * Verifies sig over msg with key k and hash h (RFC 7515 §5.2 step 8): RSASSA-PKCS1-v1_5 on the
 * signature as is, ECDSA on the DER form of the raw R||S. The length must be exactly the key's
 * (RFC 8017 §8.2.2 step 1; RFC 7518 §3.4), so a DER-encoded ECDSA signature never verifies.
 * AS_OK, AS_ERR_INVALID when it does not verify, AS_ERR_NOMEM or AS_ERR_CRYPTO.
 */
static enum as_err verify_one(const struct jwk *k, enum hash_ix h, const char *msg, size_t len,
                              const unsigned char *sig, size_t siglen)
{
    enum as_err r = AS_ERR_INVALID;
    EVP_MD_CTX *ctx = NULL;
    unsigned char der[AS_PKI_ECDSA_DER_MAX];
    const unsigned char *s = sig;
    size_t slen = siglen;

    if (siglen != k->sig_len || k->tmpl[h] == NULL) {
        goto out;
    }
    if (k->kind != KIND_RSA) {
        if ((r = as_pki_ecdsa_raw_to_der(sig, siglen / 2, der, sizeof der, &slen)) != AS_OK) {
            goto out;
        }
        s = der;
        r = AS_ERR_INVALID;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (EVP_MD_CTX_copy_ex(ctx, k->tmpl[h]) != 1) {
        as_pki_log_ssl_errors("jwt: copying a verify context");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    /* The copy is used once: without FINALISE, DigestVerifyFinal would duplicate the key context
     * again to keep this one reusable. */
    EVP_MD_CTX_set_flags(ctx, EVP_MD_CTX_FLAG_FINALISE);
    if (EVP_DigestVerify(ctx, s, slen, (const unsigned char *)msg, len) == 1) {
        r = AS_OK;
    }
out:
    /* A signature that does not verify leaves errors behind; they are not ours to report. */
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    return r;
}

/*
 * Judges the header's alg (RFC 7515 §4.1.1, RFC 7518 §3.1) before anything else in the token:
 * a static reason, or NULL with *ai set.
 */
static const char *alg_problem(json_t *hdr, unsigned allowed, const struct alg_info **ai)
{
    json_t *alg = json_object_get(hdr, "alg");
    if (alg == NULL) {
        return "header has no alg (RFC 7515 §4.1.1)";
    }
    if (!json_is_string(alg)) {
        return "header alg is not a string (RFC 7515 §4.1.1)";
    }
    const char *name = json_string_value(alg);
    if (strcmp(name, "none") == 0) {
        return "alg none refused: an unsecured JWS is never accepted (RFC 7518 §3.6)";
    }
    if (strncmp(name, "HS", 2) == 0) {
        /* The classic confusion: with a public key as the HMAC secret anyone could sign. */
        return "HMAC alg refused: keys here are public, never shared secrets (RFC 7518 §3.2, "
               "RFC 8725 §2.1)";
    }
    *ai = alg_lookup(name);
    if (*ai == NULL) {
        return "alg refused: only RS256/384/512 and ES256/384/512 are verified (RFC 7518 §3.1)";
    }
    if (((*ai)->bit & allowed) == 0) {
        return "alg is not among the allowed algorithms (jwt_supported_algs)";
    }
    return NULL;
}

/* The parts of a compact JWS (RFC 7515 §7.1), as offsets into the token. */
struct jws_parts {
    const char *h64;
    const char *p64;
    const char *s64;
    size_t h64len;
    size_t p64len;
    size_t s64len;
    /* The JWS Signing Input: the token up to the second '.', exactly as received. */
    size_t signed_len;
};

/* Splits token (len bytes) at its two dots; false unless there are exactly two. */
static bool split_parts(const char *token, size_t len, struct jws_parts *p)
{
    const char *d1 = memchr(token, '.', len);
    if (d1 == NULL) {
        return false;
    }
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL) {
        return false;
    }
    p->h64 = token;
    p->h64len = (size_t)(d1 - token);
    p->p64 = d1 + 1;
    p->p64len = (size_t)(d2 - p->p64);
    p->s64 = d2 + 1;
    p->s64len = len - (size_t)(p->s64 - token);
    p->signed_len = (size_t)(d2 - token);
    return true;
}

enum as_err as_jwt_verify(const char *token, const struct as_jwks *keys, unsigned allowed,
                          json_t **header, json_t **claims, enum as_jwt_fail *fail, char *why,
                          size_t whylen)
{
    enum as_err r = AS_ERR_INVALID;
    enum as_jwt_fail f = AS_JWT_MALFORMED;
    const char *reason = NULL;
    const struct alg_info *ai = NULL;
    const char *kid = NULL;
    json_t *hdr = NULL;
    json_t *payload = NULL;
    json_t *kidv = NULL;
    char *work = NULL;
    char *scratch = NULL;
    unsigned char *pdec = NULL;
    unsigned char *sdec = NULL;
    struct jws_parts parts;
    size_t len = 0;
    size_t n = 0;
    size_t plen = 0;
    size_t slen = 0;
    bool named = false;
    bool typed = false;
    bool sized = false;
    bool verified = false;

    as_why(why, whylen, "%s", "");
    if (header != NULL) {
        *header = NULL;
    }
    if (claims != NULL) {
        *claims = NULL;
    }
    if (token == NULL || keys == NULL || claims == NULL) {
        reason = "bad arguments to JWT verification";
        goto out;
    }
    len = strnlen(token, AS_JWT_MAX_BYTES + 1);
    if (len > AS_JWT_MAX_BYTES) {
        reason = "token larger than 16384 bytes";
        goto out;
    }
    /* RFC 7515 §7.1: BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature). */
    if (!split_parts(token, len, &parts)) {
        reason = "token must have exactly three parts (JWS Compact Serialization, RFC 7515 §7.1)";
        goto out;
    }
    if (parts.h64len == 0) {
        reason = "token has an empty header part (RFC 7515 §7.1)";
        goto out;
    }
    /* The translation scratch, then room for the decoded payload and signature: a part decodes
     * to fewer bytes than it has characters, plus at most 3. */
    work = malloc(3 * (len + 4));
    if (work == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    scratch = work;
    pdec = (unsigned char *)work + (len + 4);
    sdec = (unsigned char *)work + 2 * (len + 4);

    /* RFC 7515 §5.2 steps 2-5: the header, before any key or signature is touched. */
    if (!as_pki_b64url_decode(parts.h64, parts.h64len, scratch, pdec, &n)) {
        reason = "header is not strict base64url (RFC 7515 §2)";
        goto out;
    }
    hdr = as_pki_json_object_strict(pdec, n);
    if (hdr == NULL) {
        reason = "header is not a JSON object (UTF-8, no duplicate members, depth <= 32)";
        goto out;
    }
    /* RFC 8725 §3.1: the algorithm first; none, HMAC and anything not allowed end it here. */
    if ((reason = alg_problem(hdr, allowed, &ai)) != NULL) {
        f = AS_JWT_BAD_ALG;
        goto out;
    }
    /* RFC 7515 §4.1.11: crit lists extensions the recipient must understand; we know none. */
    if (json_object_get(hdr, "crit") != NULL) {
        f = AS_JWT_CRIT;
        reason = "crit header refused: no JWS extension is understood (RFC 7515 §4.1.11)";
        goto out;
    }
    kidv = json_object_get(hdr, "kid");
    if (kidv != NULL && !json_is_string(kidv)) {
        reason = "header kid is not a string (RFC 7515 §4.1.4)";
        goto out;
    }
    kid = kidv != NULL ? json_string_value(kidv) : NULL;
    /* An unsecured or stripped JWS has an empty signature part (RFC 7515 §7.1, RFC 7519 §6.1). */
    if (parts.p64len == 0 || parts.s64len == 0) {
        reason = "token has an empty payload or signature part (RFC 7515 §7.1)";
        goto out;
    }
    if (!as_pki_b64url_decode(parts.p64, parts.p64len, scratch, pdec, &plen)) {
        reason = "payload is not strict base64url (RFC 7515 §2)";
        goto out;
    }
    if (!as_pki_b64url_decode(parts.s64, parts.s64len, scratch, sdec, &slen)) {
        reason = "signature is not strict base64url (RFC 7515 §2)";
        goto out;
    }

    /* RFC 7515 §6 and §5.2 step 8: with a kid, only the keys it names; without one, every key
     * of the alg's type. A key of another type never sees the signature (RFC 7515 §10.7). */
    for (size_t i = 0; i < keys->n && !verified; i++) {
        const struct jwk *k = &keys->keys[i];
        if (keys->by_kid && kid != NULL) {
            if (k->kid == NULL || strcmp(k->kid, kid) != 0) {
                continue;
            }
            named = true;
        }
        if ((k->algs & ai->bit) == 0) {
            continue;
        }
        typed = true;
        if (slen != k->sig_len) {
            continue;
        }
        sized = true;
        r = verify_one(k, ai->hash, token, parts.signed_len, sdec, slen);
        if (r == AS_OK) {
            verified = true;
        } else if (r != AS_ERR_INVALID) {
            reason = as_strerror(r);
            goto out;
        }
    }
    r = AS_ERR_INVALID;
    if (!verified) {
        if (keys->by_kid && kid != NULL && !named) {
            f = AS_JWT_UNKNOWN_KID;
            reason = "kid names no key of the key set (RFC 7515 §4.1.4)";
        } else if (!typed) {
            f = AS_JWT_BAD_ALG;
            reason = "alg does not match the type, curve or alg of the key (RFC 7517 §4.4, "
                     "RFC 7518 §3.3-3.4)";
        } else if (!sized) {
            f = AS_JWT_BAD_SIG;
            reason = "signature is not of the key's size: ECDSA takes raw R||S, never DER "
                     "(RFC 7518 §3.4), RSA the modulus size (RFC 8017 §8.2.2)";
        } else {
            f = AS_JWT_BAD_SIG;
            reason = "signature does not verify (RFC 7515 §5.2 step 8)";
        }
        goto out;
    }

    /* RFC 7519 §7.2 steps 9-10: only now, authenticated, is the payload read. */
    payload = as_pki_json_object_strict(pdec, plen);
    if (payload == NULL) {
        reason = "claims are not a JSON object (UTF-8, no duplicate members, depth <= 32)";
        goto out;
    }
    *claims = payload;
    payload = NULL;
    if (header != NULL) {
        *header = hdr;
        hdr = NULL;
    }
    f = AS_JWT_OK;
    r = AS_OK;
out:
    if (r != AS_OK) {
        as_why(why, whylen, "%s", reason != NULL ? reason : as_strerror(r));
        if (f == AS_JWT_OK) {
            f = AS_JWT_MALFORMED;
        }
    }
    if (fail != NULL) {
        *fail = f;
    }
    json_decref(hdr);
    json_decref(payload);
    free(work);
    return r;
}
