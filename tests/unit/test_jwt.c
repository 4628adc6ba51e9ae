/*
 * Unit tests for pki/jwt.c: JWKS and PEM key sets and JWS verification for the jwt auth method
 * (RFC 7515, RFC 7517, RFC 7518).
 *
 * Every key is made here (RSA-2048 twice, RSA-1024, P-256 twice, P-384, P-521, Ed25519); the JWKS
 * documents are written here from the keys' n/e/x/y, the PEM sets from their SPKIs, and every
 * token, good or bad, is signed here with OpenSSL directly, so that a bad token can carry a valid
 * signature and be refused for what it is, not for its signature. Each refusal names the enum
 * as_jwt_fail it must produce; every one-character change of a valid token is refused too. A
 * 4-thread test verifies against one set at once.
 *
 * With AS_BENCH=1 the program also prints RS256 and ES256 verifications per second over 20000
 * iterations, and libjwt 1.10's jwt_decode on the same RS256 token with the PEM key. With
 * AS_TEST_VERBOSE set it prints the reason given for every refusal.
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "check.h"
#include "common/common.h"
#include "pki/pki.h"

#define B64LEN(n) (4 * (((n) + 2) / 3) + 1)
#define CLAIMS                                                                        \
    "{\"iss\":\"https://issuer.example\",\"sub\":\"system:serviceaccount:prod:web\"," \
    "\"aud\":\"authsvc\",\"exp\":4102444800,\"iat\":1767225600}"
#define SUBJECT "system:serviceaccount:prod:web"
#define THREADS 4
#define THREAD_ROUNDS 150
#define BENCH_ITERS 20000

static EVP_PKEY *g_rsa;     /* RSA-2048, kid "rsa" */
static EVP_PKEY *g_rsa_b;   /* another RSA-2048, in no set */
static EVP_PKEY *g_rsa1024; /* kid "weak" */
static EVP_PKEY *g_p256;    /* kid "p256" */
static EVP_PKEY *g_p256_b;  /* another P-256, in no set */
static EVP_PKEY *g_p384;    /* kid "p384" */
static EVP_PKEY *g_p521;    /* kid "p521" */
static EVP_PKEY *g_ed;      /* Ed25519 */
static char *g_pem_rsa;
static char *g_pem_p256;
static char *g_pem_p384;
static char *g_pem_p521;
static char *g_pem_rsa1024;
static struct as_jwks *g_jwks; /* rsa, weak (skipped), p256, p384, p521 */
static struct as_jwks *g_pems; /* rsa, p256, p384, p521 as PEM */
static struct as_jwks *g_rsa_only;
static bool g_verbose;

/* ---- keys, JWKs and PEM ---- */

/* n bytes that need not end in NUL, as a new string (strndup would read past them). */
static char *dup_n(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL) {
        exit(2);
    }
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static EVP_PKEY *keygen(const char *type, const char *curve, size_t bits)
{
    EVP_PKEY *k = curve != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, type, curve)
                  : bits > 0    ? EVP_PKEY_Q_keygen(NULL, NULL, type, bits)
                                : EVP_PKEY_Q_keygen(NULL, NULL, type);
    if (k == NULL) {
        fprintf(stderr, "keygen %s failed\n", type);
        exit(2);
    }
    return k;
}

static char *b64_bytes(const unsigned char *p, size_t n)
{
    char *s = malloc(B64LEN(n));
    as_b64url(p, n, s);
    return s;
}

static char *b64_str(const char *s)
{
    return b64_bytes((const unsigned char *)s, strlen(s));
}

/* A BIGNUM parameter as base64url, left-padded to pad bytes (0: minimal). */
static char *bn_b64(const EVP_PKEY *k, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    if (EVP_PKEY_get_bn_param(k, param, &bn) != 1) {
        exit(2);
    }
    int n = pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    BN_free(bn);
    return b64_bytes(buf, (size_t)n);
}

static size_t ec_coord(const EVP_PKEY *k)
{
    return (size_t)(EVP_PKEY_get_bits(k) + 7) / 8;
}

/* {"kty":"RSA","kid":kid,"n":..,"e":..} plus the members of extra (a JSON object text or NULL). */
static json_t *jwk_rsa(const EVP_PKEY *k, const char *kid, const char *extra)
{
    char *n = bn_b64(k, OSSL_PKEY_PARAM_RSA_N, 0);
    char *e = bn_b64(k, OSSL_PKEY_PARAM_RSA_E, 0);
    json_t *j = json_pack("{s:s, s:s, s:s}", "kty", "RSA", "n", n, "e", e);
    if (kid != NULL) {
        json_object_set_new(j, "kid", json_string(kid));
    }
    if (extra != NULL) {
        json_t *x = json_loads(extra, 0, NULL);
        json_object_update(j, x);
        json_decref(x);
    }
    free(n);
    free(e);
    return j;
}

static json_t *jwk_ec(const EVP_PKEY *k, const char *crv, const char *kid, const char *extra)
{
    int c = (int)ec_coord(k);
    char *x = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, c);
    char *y = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, c);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", crv, "x", x, "y", y);
    if (kid != NULL) {
        json_object_set_new(j, "kid", json_string(kid));
    }
    if (extra != NULL) {
        json_t *e = json_loads(extra, 0, NULL);
        json_object_update(j, e);
        json_decref(e);
    }
    free(x);
    free(y);
    return j;
}

/* {"keys":[...]} of the given JWKs (references stolen) as a malloc'd string. */
static char *jwks_doc(json_t **jwks, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, jwks[i]);
    }
    json_t *doc = json_pack("{s:o}", "keys", arr);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

static char *pem_pub(const EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    PEM_write_bio_PUBKEY(b, k);
    long n = BIO_get_mem_data(b, &data);
    char *s = dup_n(data, (size_t)n);
    BIO_free(b);
    return s;
}

/* ---- signing ---- */

enum sigform {
    SIG_RAW, /* RSA as is; ECDSA as R||S (RFC 7518 §3.4) */
    SIG_DER, /* ECDSA as OpenSSL's DER */
    SIG_PSS, /* RSASSA-PSS (PS*, refused) */
};

/* Signs input with key and digest md (NULL for Ed25519) into a malloc'd buffer. */
static unsigned char *sign(EVP_PKEY *key, const char *md, const char *input, enum sigform form,
                           size_t *outlen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t len = 0;
    if (EVP_DigestSignInit_ex(ctx, &pctx, md, NULL, NULL, key, NULL) != 1) {
        exit(2);
    }
    if (form == SIG_PSS) {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    }
    EVP_DigestSign(ctx, NULL, &len, (const unsigned char *)input, strlen(input));
    unsigned char *sig = malloc(len);
    if (EVP_DigestSign(ctx, sig, &len, (const unsigned char *)input, strlen(input)) != 1) {
        exit(2);
    }
    EVP_MD_CTX_free(ctx);
    if (form != SIG_RAW || !EVP_PKEY_is_a(key, "EC")) {
        *outlen = len;
        return sig;
    }
    size_t c = ec_coord(key);
    const unsigned char *p = sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    unsigned char *raw = malloc(2 * c);
    BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)c);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + c, (int)c);
    ECDSA_SIG_free(es);
    free(sig);
    *outlen = 2 * c;
    return raw;
}

/* h64 "." p64 "." base64url(sig) as a new string. */
static char *assemble(const char *h64, const char *p64, const unsigned char *sig, size_t siglen)
{
    size_t cap = strlen(h64) + strlen(p64) + B64LEN(siglen) + 3;
    char *t = malloc(cap);
    int n = snprintf(t, cap, "%s.%s.", h64, p64);
    as_b64url(sig, siglen, t + n);
    return t;
}

/* Signs the base64url texts h64 and p64 as they are (whatever they hold). */
static char *sign_b64(const char *h64, const char *p64, EVP_PKEY *key, const char *md,
                      enum sigform form)
{
    size_t cap = strlen(h64) + strlen(p64) + 2;
    char *input = malloc(cap);
    snprintf(input, cap, "%s.%s", h64, p64);
    size_t siglen = 0;
    unsigned char *sig = sign(key, md, input, form, &siglen);
    char *t = assemble(h64, p64, sig, siglen);
    free(sig);
    free(input);
    return t;
}

/* A token of header and payload JSON texts, signed with key and md. */
static char *tok(const char *hdr, const char *payload, EVP_PKEY *key, const char *md,
                 enum sigform form)
{
    char *h = b64_str(hdr);
    char *p = b64_str(payload);
    char *t = sign_b64(h, p, key, md, form);
    free(h);
    free(p);
    return t;
}

/* Like tok, but the raw signature is cut by cut bytes or grown by grow zero bytes. */
static char *tok_siglen(const char *hdr, EVP_PKEY *key, const char *md, size_t cut, size_t grow)
{
    char *h = b64_str(hdr);
    char *p = b64_str(CLAIMS);
    size_t cap = strlen(h) + strlen(p) + 2;
    char *input = malloc(cap);
    snprintf(input, cap, "%s.%s", h, p);
    size_t siglen = 0;
    unsigned char *sig = sign(key, md, input, SIG_RAW, &siglen);
    unsigned char *s2 = calloc(1, siglen + grow);
    memcpy(s2, sig, siglen);
    char *t = assemble(h, p, s2, siglen - cut + grow);
    free(s2);
    free(sig);
    free(input);
    free(h);
    free(p);
    return t;
}

/* An HS* token keyed with key (keylen bytes): the algorithm confusion of PERF-NOTES trap 2. */
static char *tok_hs256(const char *hdr, const void *key, size_t keylen)
{
    char *h = b64_str(hdr);
    char *p = b64_str(CLAIMS);
    size_t cap = strlen(h) + strlen(p) + 2;
    char *input = malloc(cap);
    snprintf(input, cap, "%s.%s", h, p);
    unsigned char mac[32];
    if (as_hmac_sha256(key, keylen, input, strlen(input), mac) != AS_OK) {
        exit(2);
    }
    char *t = assemble(h, p, mac, sizeof mac);
    free(input);
    free(h);
    free(p);
    return t;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL) {
        exit(2);
    }
    return d;
}

/* ---- the checks ---- */

/* Verifies and expects success with sub == SUBJECT and the header's alg == alg. */
static void expect_ok(const char *name, const char *token, const struct as_jwks *set,
                      unsigned allowed, const char *alg)
{
    json_t *hdr = NULL;
    json_t *claims = NULL;
    enum as_jwt_fail fail = AS_JWT_BAD_SIG;
    char why[256] = "";
    enum as_err r = as_jwt_verify(token, set, allowed, &hdr, &claims, &fail, why, sizeof why);
    if (r != AS_OK) {
        fprintf(stderr, "expected %s to verify: %s\n", name, why);
    }
    CHECK_INT(r, AS_OK);
    CHECK_INT(fail, AS_JWT_OK);
    CHECK(claims != NULL && json_is_object(claims));
    CHECK_STR(json_string_value(json_object_get(claims, "sub")), SUBJECT);
    CHECK(hdr != NULL);
    CHECK_STR(json_string_value(json_object_get(hdr, "alg")), alg);
    json_decref(hdr);
    json_decref(claims);
}

static void expect_fail(const char *name, const char *token, const struct as_jwks *set,
                        unsigned allowed, enum as_jwt_fail want)
{
    json_t *hdr = NULL;
    json_t *claims = NULL;
    enum as_jwt_fail fail = AS_JWT_OK;
    char why[256] = "";
    enum as_err r = as_jwt_verify(token, set, allowed, &hdr, &claims, &fail, why, sizeof why);
    if (r != AS_ERR_INVALID || fail != want) {
        fprintf(stderr, "refusal \"%s\": r=%d fail=%d (want %d): %s\n", name, (int)r, (int)fail,
                (int)want, why);
    } else if (g_verbose) {
        printf("  %-48s -> %d: %s\n", name, (int)fail, why);
    }
    CHECK_INT(r, AS_ERR_INVALID);
    CHECK_INT(fail, want);
    CHECK(why[0] != '\0');
    CHECK(hdr == NULL);
    CHECK(claims == NULL);
    json_decref(hdr);
    json_decref(claims);
}

/* ---- alg names ---- */

static void test_alg_parse(void)
{
    static const struct {
        const char *name;
        unsigned bit;
    } ok[] = {{"RS256", AS_JWT_RS256}, {"RS384", AS_JWT_RS384}, {"RS512", AS_JWT_RS512},
              {"ES256", AS_JWT_ES256}, {"ES384", AS_JWT_ES384}, {"ES512", AS_JWT_ES512}};
    static const char *const bad[] = {"none",  "None",  "HS256",  "HS384", "HS512",  "PS256",
                                      "EdDSA", "rs256", "RS256 ", "",      "ES256K", "RS1"};
    unsigned all = 0;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        unsigned a = 0;
        CHECK_INT(as_jwt_alg_parse(ok[i].name, &a), AS_OK);
        CHECK_INT(a, ok[i].bit);
        all |= a;
    }
    CHECK_INT(all, AS_JWT_ALGS_ALL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned a = 0;
        CHECK_INT(as_jwt_alg_parse(bad[i], &a), AS_ERR_INVALID);
        CHECK_INT(a, 0);
    }
    unsigned a = 0;
    CHECK_INT(as_jwt_alg_parse(NULL, &a), AS_ERR_INVALID);
    CHECK_INT(as_jwt_alg_parse("RS256", NULL), AS_ERR_INVALID);
}

/* ---- key sets ---- */

static enum as_err parse_doc(const char *doc, struct as_jwks **out, char *why, size_t whylen)
{
    return as_jwks_parse(doc, strlen(doc), out, why, whylen);
}

/* Parses a JWKS made of the given JWKs; expects r and, on success, count keys. */
static void expect_jwks(const char *name, json_t **jwks, size_t n, enum as_err want, size_t count)
{
    char *doc = jwks_doc(jwks, n);
    struct as_jwks *set = NULL;
    char why[256] = "";
    enum as_err r = parse_doc(doc, &set, why, sizeof why);
    if (r != want || as_jwks_count(set) != count) {
        fprintf(stderr, "JWKS \"%s\": r=%d count=%zu: %s\n", name, (int)r, as_jwks_count(set), why);
    } else if (g_verbose) {
        printf("  JWKS %-43s -> %d: %s\n", name, (int)r, why);
    }
    CHECK_INT(r, want);
    CHECK_INT(as_jwks_count(set), count);
    CHECK(want == AS_OK ? set != NULL : set == NULL && why[0] != '\0');
    as_jwks_free(set);
    free(doc);
}

static void expect_doc(const char *name, const char *doc, enum as_err want)
{
    struct as_jwks *set = NULL;
    char why[256] = "";
    enum as_err r = parse_doc(doc, &set, why, sizeof why);
    if (r != want) {
        fprintf(stderr, "JWKS doc \"%s\": r=%d: %s\n", name, (int)r, why);
    } else if (g_verbose) {
        printf("  JWKS %-43s -> %d: %s\n", name, (int)r, why);
    }
    CHECK_INT(r, want);
    CHECK(want == AS_OK ? set != NULL : set == NULL && why[0] != '\0');
    as_jwks_free(set);
}

static void test_jwks_parse(void)
{
    /* The good set: five keys, the RSA-1024 one skipped with a note. */
    json_t *all[] = {jwk_rsa(g_rsa, "rsa", "{\"use\":\"sig\",\"alg\":\"RS256\"}"),
                     jwk_rsa(g_rsa1024, "weak", NULL), jwk_ec(g_p256, "P-256", "p256", NULL),
                     jwk_ec(g_p384, "P-384", "p384", "{\"use\":\"sig\"}"),
                     jwk_ec(g_p521, "P-521", "p521", "{\"key_ops\":[\"verify\"]}")};
    expect_jwks("good set, RSA-1024 skipped", all, 5, AS_OK, 4);

    json_t *one[] = {jwk_ec(g_p256, "P-256", NULL, NULL)};
    expect_jwks("one EC key without kid", one, 1, AS_OK, 1);
    json_t *weak[] = {jwk_rsa(g_rsa1024, "weak", NULL)};
    expect_jwks("only RSA-1024", weak, 1, AS_ERR_INVALID, 0);
    json_t *okp[] = {json_pack("{s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x",
                               "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
                     jwk_rsa(g_rsa, "rsa", NULL)};
    expect_jwks("unknown kty skipped", okp, 2, AS_OK, 1);
    json_t *okp_only[] = {json_pack("{s:s, s:s}", "kty", "oct", "k", "c2VjcmV0")};
    expect_jwks("only an unknown kty", okp_only, 1, AS_ERR_INVALID, 0);
    json_t *enc[] = {jwk_rsa(g_rsa, "enc", "{\"use\":\"enc\"}"),
                     jwk_ec(g_p256, "P-256", "p256", NULL)};
    expect_jwks("use enc skipped", enc, 2, AS_OK, 1);
    json_t *enc_only[] = {jwk_rsa(g_rsa, "enc", "{\"use\":\"enc\"}")};
    expect_jwks("only use enc", enc_only, 1, AS_ERR_INVALID, 0);
    json_t *ops[] = {jwk_rsa(g_rsa, "rsa", "{\"key_ops\":[\"encrypt\"]}"),
                     jwk_ec(g_p256, "P-256", "p256", NULL)};
    expect_jwks("key_ops without verify skipped", ops, 2, AS_OK, 1);
    json_t *oaep[] = {jwk_rsa(g_rsa, "rsa", "{\"alg\":\"RSA-OAEP\"}"),
                      jwk_ec(g_p256, "P-256", "p256", NULL)};
    expect_jwks("alg RSA-OAEP skipped", oaep, 2, AS_OK, 1);
    json_t *k1[] = {
        json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "secp256k1", "x", "AA", "y", "AA"),
        jwk_ec(g_p384, "P-384", "p384", NULL)};
    expect_jwks("crv secp256k1 skipped", k1, 2, AS_OK, 1);

    /* EC point not on the curve: y + 1. */
    json_t *off = jwk_ec(g_p256, "P-256", "p256", NULL);
    {
        BIGNUM *y = NULL;
        unsigned char buf[32];
        EVP_PKEY_get_bn_param(g_p256, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
        BN_add_word(y, 1);
        BN_bn2binpad(y, buf, sizeof buf);
        BN_free(y);
        char *s = b64_bytes(buf, sizeof buf);
        json_object_set_new(off, "y", json_string(s));
        free(s);
    }
    json_t *offs[] = {off, jwk_rsa(g_rsa, "rsa", NULL)};
    expect_jwks("EC point not on the curve", offs, 2, AS_ERR_INVALID, 0);
    /* A P-256 point labelled P-384: wrong coordinate size. */
    json_t *mislabel[] = {jwk_ec(g_p256, "P-384", "p", NULL)};
    expect_jwks("P-256 point as crv P-384", mislabel, 1, AS_ERR_INVALID, 0);
    /* Coordinates without their leading zero octets are not the full size (RFC 7518 §6.2.1.2). */
    json_t *shortx = jwk_ec(g_p256, "P-256", "p", NULL);
    json_object_set_new(shortx, "x", json_string("AQ"));
    json_t *shorts[] = {shortx};
    expect_jwks("short x", shorts, 1, AS_ERR_INVALID, 0);
    json_t *noe = jwk_rsa(g_rsa, "rsa", NULL);
    json_object_del(noe, "e");
    json_t *noes[] = {noe};
    expect_jwks("RSA without e", noes, 1, AS_ERR_INVALID, 0);
    json_t *pad = jwk_rsa(g_rsa, "rsa", NULL);
    json_object_set_new(pad, "e", json_string("AQAB="));
    json_t *pads[] = {pad};
    expect_jwks("e with '=' padding", pads, 1, AS_ERR_INVALID, 0);
    json_t *even = jwk_rsa(g_rsa, "rsa", NULL);
    json_object_set_new(even, "e", json_string("AQAC"));
    json_t *evens[] = {even};
    expect_jwks("even e", evens, 1, AS_ERR_INVALID, 0);
    json_t *priv[] = {jwk_ec(g_p256, "P-256", "p", "{\"d\":\"AAAA\"}")};
    expect_jwks("private d published", priv, 1, AS_ERR_INVALID, 0);
    json_t *mism[] = {jwk_ec(g_p256, "P-256", "p", "{\"alg\":\"RS256\"}")};
    expect_jwks("alg RS256 on an EC key", mism, 1, AS_ERR_INVALID, 0);
    json_t *kidnum[] = {jwk_ec(g_p256, "P-256", NULL, "{\"kid\":7}")};
    expect_jwks("kid not a string", kidnum, 1, AS_ERR_INVALID, 0);
    json_t *notobj[] = {json_string("key")};
    expect_jwks("key not an object", notobj, 1, AS_ERR_INVALID, 0);
    expect_jwks("empty keys", NULL, 0, AS_ERR_INVALID, 0);

    expect_doc("missing keys", "{\"kty\":\"RSA\"}", AS_ERR_INVALID);
    expect_doc("keys not an array", "{\"keys\":{}}", AS_ERR_INVALID);
    expect_doc("not JSON", "{\"keys\":[", AS_ERR_INVALID);
    expect_doc("not an object", "[]", AS_ERR_INVALID);
    expect_doc("empty document", "", AS_ERR_INVALID);
    expect_doc("NUL in a string", "{\"keys\":[],\"x\":\"a\\u0000b\"}", AS_ERR_INVALID);

    /* Duplicate member names, at the top and inside a key (RFC 7515 §5.2 step 4 spirit). */
    json_t *dupk[] = {jwk_ec(g_p256, "P-256", "p256", NULL)};
    char *doc = jwks_doc(dupk, 1);
    size_t cap = strlen(doc) + 64;
    char *dup = malloc(cap);
    snprintf(dup, cap, "{\"keys\":[],%s", doc + 1);
    expect_doc("duplicate keys member", dup, AS_ERR_INVALID);
    /* Control: the same document without the duplicate parses. */
    expect_doc("control for the duplicate", doc, AS_OK);
    char *inner = strstr(doc, "\"kty\":\"EC\"");
    CHECK(inner != NULL);
    snprintf(dup, cap, "%.*s\"kty\":\"EC\",%s", (int)(inner - doc), doc, inner);
    expect_doc("duplicate kty inside a key", dup, AS_ERR_INVALID);
    free(dup);
    free(doc);

    /* Depth over 32. */
    char deep[256];
    size_t o = (size_t)snprintf(deep, sizeof deep, "{\"keys\":[],\"x\":");
    for (int i = 0; i < 40; i++) {
        deep[o++] = '[';
    }
    for (int i = 0; i < 40; i++) {
        deep[o++] = ']';
    }
    deep[o++] = '}';
    deep[o] = '\0';
    expect_doc("nesting 40 deep", deep, AS_ERR_INVALID);

    /* Over 1 MiB: refused before any parsing. */
    size_t big = 1024 * 1024 + 16;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    memcpy(huge, "{\"keys\":[]", 10);
    huge[big - 1] = '}';
    huge[big] = '\0';
    struct as_jwks *set = NULL;
    char why[256];
    CHECK_INT(as_jwks_parse(huge, big, &set, why, sizeof why), AS_ERR_TOO_LARGE);
    CHECK(set == NULL);
    free(huge);

    /* More than 64 keys. */
    json_t *many[65];
    for (size_t i = 0; i < 65; i++) {
        many[i] = jwk_ec(g_p256, "P-256", NULL, NULL);
    }
    expect_jwks("65 keys", many, 65, AS_ERR_INVALID, 0);

    CHECK_INT(as_jwks_parse(NULL, 0, &set, why, sizeof why), AS_ERR_INVALID);
    CHECK_INT(as_jwks_parse("{}", 2, NULL, why, sizeof why), AS_ERR_INVALID);
    as_jwks_free(NULL);
    CHECK_INT(as_jwks_count(NULL), 0);
}

static void expect_pems(const char *name, json_t *arr, enum as_err want, size_t count,
                        const char *why_has)
{
    struct as_jwks *set = NULL;
    char why[256] = "";
    enum as_err r = as_jwks_from_pems(arr, &set, why, sizeof why);
    if (r != want || as_jwks_count(set) != count) {
        fprintf(stderr, "PEMs \"%s\": r=%d count=%zu: %s\n", name, (int)r, as_jwks_count(set), why);
    } else if (g_verbose) {
        printf("  PEMs %-43s -> %d: %s\n", name, (int)r, why);
    }
    CHECK_INT(r, want);
    CHECK_INT(as_jwks_count(set), count);
    if (why_has != NULL) {
        CHECK(strstr(why, why_has) != NULL);
    }
    as_jwks_free(set);
    json_decref(arr);
}

static void test_pems(void)
{
    expect_pems("four good keys",
                json_pack("[s, s, s, s]", g_pem_rsa, g_pem_p256, g_pem_p384, g_pem_p521), AS_OK, 4,
                NULL);
    /* CRLF line ends and explanatory text before the block (RFC 7468 §2) are fine. */
    size_t cap = 2 * strlen(g_pem_p256) + 64;
    char *crlf = malloc(cap);
    size_t o = (size_t)snprintf(crlf, cap, "issuer key, rotated 2026-11\r\n");
    for (const char *c = g_pem_p256; *c != '\0'; c++) {
        if (*c == '\n') {
            crlf[o++] = '\r';
        }
        crlf[o++] = *c;
    }
    crlf[o] = '\0';
    expect_pems("CRLF and leading text", json_pack("[s]", crlf), AS_OK, 1, NULL);
    free(crlf);
    expect_pems("RSA-1024", json_pack("[s, s]", g_pem_p256, g_pem_rsa1024), AS_ERR_INVALID, 0,
                "public key 1");
    expect_pems("garbage",
                json_pack("[s]", "-----BEGIN PUBLIC KEY-----\nnot base64!\n"
                                 "-----END PUBLIC KEY-----\n"),
                AS_ERR_INVALID, 0, "public key 0");
    expect_pems("not PEM at all", json_pack("[s, s]", g_pem_rsa, "hello"), AS_ERR_INVALID, 0,
                "public key 1");
    expect_pems("not a string", json_pack("[s, i]", g_pem_rsa, 5), AS_ERR_INVALID, 0,
                "public key 1");
    expect_pems("empty array", json_array(), AS_ERR_INVALID, 0, NULL);
    expect_pems("not an array", json_string(g_pem_rsa), AS_ERR_INVALID, 0, NULL);

    /* Ed25519 is no RS* or ES* key. */
    char *ed = pem_pub(g_ed);
    expect_pems("Ed25519", json_pack("[s]", ed), AS_ERR_INVALID, 0, "public key 0");
    free(ed);
    /* A private key is not a public key PEM. */
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    PEM_write_bio_PrivateKey(b, g_p256, NULL, NULL, 0, NULL, NULL);
    long n = BIO_get_mem_data(b, &data);
    char *priv = dup_n(data, (size_t)n);
    BIO_free(b);
    expect_pems("private key PEM", json_pack("[s]", priv), AS_ERR_INVALID, 0, "public key 0");
    as_free_secret_str(priv);
    /* PKCS#1 "BEGIN RSA PUBLIC KEY" is not an SPKI. */
    OSSL_ENCODER_CTX *ectx =
        OSSL_ENCODER_CTX_new_for_pkey(g_rsa, EVP_PKEY_PUBLIC_KEY, "PEM", "type-specific", NULL);
    unsigned char *pkcs1 = NULL;
    size_t pkcs1_len = 0;
    CHECK(ectx != NULL && OSSL_ENCODER_to_data(ectx, &pkcs1, &pkcs1_len) == 1);
    OSSL_ENCODER_CTX_free(ectx);
    char *pk1 = dup_n(pkcs1, pkcs1_len);
    CHECK(strstr(pk1, "BEGIN RSA PUBLIC KEY") != NULL);
    expect_pems("PKCS#1 RSA PUBLIC KEY", json_pack("[s]", pk1), AS_ERR_INVALID, 0, "public key 0");
    free(pk1);
    OPENSSL_free(pkcs1);
    /* Two keys in one string: one of them would be silently ignored. */
    cap = strlen(g_pem_rsa) + strlen(g_pem_p256) + 1;
    char *two = malloc(cap);
    snprintf(two, cap, "%s%s", g_pem_p256, g_pem_rsa);
    expect_pems("two PEM blocks in one string", json_pack("[s]", two), AS_ERR_INVALID, 0,
                "public key 0");
    free(two);
    CHECK_INT(as_jwks_from_pems(NULL, NULL, NULL, 0), AS_ERR_INVALID);
}

/* ---- verification: every alg verifies ---- */

static char *make_hdr(const char *alg, const char *kid)
{
    char *h = malloc(256);
    if (kid != NULL) {
        snprintf(h, 256, "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}", alg, kid);
    } else {
        snprintf(h, 256, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    }
    return h;
}

static void test_good(void)
{
    static const struct {
        const char *alg;
        const char *md;
        const char *kid;
    } cases[] = {{"RS256", "SHA256", "rsa"},  {"RS384", "SHA384", "rsa"},
                 {"RS512", "SHA512", "rsa"},  {"ES256", "SHA256", "p256"},
                 {"ES384", "SHA384", "p384"}, {"ES512", "SHA512", "p521"}};
    EVP_PKEY *keys[] = {g_rsa, g_rsa, g_rsa, g_p256, g_p384, g_p521};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned bit = 0;
        CHECK_INT(as_jwt_alg_parse(cases[i].alg, &bit), AS_OK);
        char *h = make_hdr(cases[i].alg, cases[i].kid);
        char *t = tok(h, CLAIMS, keys[i], cases[i].md, SIG_RAW);
        char name[64];
        snprintf(name, sizeof name, "%s with kid (JWKS)", cases[i].alg);
        expect_ok(name, t, g_jwks, AS_JWT_ALGS_ALL, cases[i].alg);
        snprintf(name, sizeof name, "%s allowed alone", cases[i].alg);
        expect_ok(name, t, g_jwks, bit, cases[i].alg);
        /* Negative twin: the same token when its alg is not allowed. */
        snprintf(name, sizeof name, "%s not allowed", cases[i].alg);
        expect_fail(name, t, g_jwks, AS_JWT_ALGS_ALL & ~bit, AS_JWT_BAD_ALG);
        /* PEM keys have no kids: the token's kid is a hint for nothing, every key of the type is
         * tried (Kubernetes service-account tokens always carry one). */
        snprintf(name, sizeof name, "%s with kid (PEM)", cases[i].alg);
        expect_ok(name, t, g_pems, AS_JWT_ALGS_ALL, cases[i].alg);
        free(t);
        free(h);

        h = make_hdr(cases[i].alg, NULL);
        t = tok(h, CLAIMS, keys[i], cases[i].md, SIG_RAW);
        snprintf(name, sizeof name, "%s without kid (JWKS)", cases[i].alg);
        expect_ok(name, t, g_jwks, AS_JWT_ALGS_ALL, cases[i].alg);
        snprintf(name, sizeof name, "%s without kid (PEM)", cases[i].alg);
        expect_ok(name, t, g_pems, AS_JWT_ALGS_ALL, cases[i].alg);
        free(t);
        free(h);
    }

    /* The header is returned as sent, claims intact. */
    char *t = tok("{\"alg\":\"ES256\",\"kid\":\"p256\",\"x-extra\":[1,2]}",
                  "{\"sub\":\"" SUBJECT "\",\"n\":{\"deep\":[true]}}", g_p256, "SHA256", SIG_RAW);
    json_t *h = NULL;
    json_t *c = NULL;
    enum as_jwt_fail f = AS_JWT_MALFORMED;
    char why[200];
    CHECK_INT(as_jwt_verify(t, g_jwks, AS_JWT_ALGS_ALL, &h, &c, &f, why, sizeof why), AS_OK);
    CHECK_INT(json_array_size(json_object_get(h, "x-extra")), 2);
    CHECK(json_is_true(json_array_get(json_object_get(json_object_get(c, "n"), "deep"), 0)));
    json_decref(h);
    json_decref(c);
    /* header may be NULL; fail and why too. */
    CHECK_INT(as_jwt_verify(t, g_jwks, AS_JWT_ALGS_ALL, NULL, &c, NULL, NULL, 0), AS_OK);
    json_decref(c);
    free(t);

    /* Nesting 20 deep and a 11 KiB payload are fine (twins of the refusals below). */
    char deep[128];
    size_t o = (size_t)snprintf(deep, sizeof deep, "{\"sub\":\"%s\",\"d\":", SUBJECT);
    for (int i = 0; i < 20; i++) {
        deep[o++] = '[';
    }
    for (int i = 0; i < 20; i++) {
        deep[o++] = ']';
    }
    deep[o++] = '}';
    deep[o] = '\0';
    t = tok("{\"alg\":\"RS256\",\"kid\":\"rsa\"}", deep, g_rsa, "SHA256", SIG_RAW);
    expect_ok("payload 20 deep", t, g_jwks, AS_JWT_ALGS_ALL, "RS256");
    free(t);
    char *bigp = malloc(12 * 1024);
    o = (size_t)snprintf(bigp, 12 * 1024, "{\"sub\":\"%s\",\"pad\":\"", SUBJECT);
    memset(bigp + o, 'a', 11 * 1024);
    o += 11 * 1024;
    memcpy(bigp + o, "\"}", 3);
    t = tok("{\"alg\":\"RS256\",\"kid\":\"rsa\"}", bigp, g_rsa, "SHA256", SIG_RAW);
    CHECK(strlen(t) < AS_JWT_MAX_BYTES);
    expect_ok("payload of 11 KiB", t, g_jwks, AS_JWT_ALGS_ALL, "RS256");
    free(t);
    free(bigp);

    /* A JWK's alg narrows what its key verifies (RFC 7517 §4.4). */
    json_t *k1[] = {jwk_rsa(g_rsa, "rsa", "{\"alg\":\"RS256\"}")};
    char *doc = jwks_doc(k1, 1);
    struct as_jwks *set = NULL;
    CHECK_INT(parse_doc(doc, &set, why, sizeof why), AS_OK);
    t = tok("{\"alg\":\"RS256\",\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW);
    expect_ok("RS256 on a key with alg RS256", t, set, AS_JWT_ALGS_ALL, "RS256");
    free(t);
    t = tok("{\"alg\":\"RS512\",\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA512", SIG_RAW);
    expect_fail("RS512 on a key with alg RS256", t, set, AS_JWT_ALGS_ALL, AS_JWT_BAD_ALG);
    free(t);
    as_jwks_free(set);
    free(doc);

    /* Two keys with one kid but different types (RFC 7517 §4.5 allows it). */
    json_t *k2[] = {jwk_rsa(g_rsa, "same", NULL), jwk_ec(g_p256, "P-256", "same", NULL)};
    doc = jwks_doc(k2, 2);
    CHECK_INT(parse_doc(doc, &set, why, sizeof why), AS_OK);
    t = tok("{\"alg\":\"ES256\",\"kid\":\"same\"}", CLAIMS, g_p256, "SHA256", SIG_RAW);
    expect_ok("ES256 on a shared kid", t, set, AS_JWT_ALGS_ALL, "ES256");
    free(t);
    t = tok("{\"alg\":\"RS256\",\"kid\":\"same\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW);
    expect_ok("RS256 on a shared kid", t, set, AS_JWT_ALGS_ALL, "RS256");
    free(t);
    as_jwks_free(set);
    free(doc);
}

/* ---- verification: the refusals ---- */

struct refusal {
    const char *name;
    char *token;
    const struct as_jwks *set;
    unsigned allowed;
    enum as_jwt_fail want;
};

#define MAX_REFUSALS 96
static struct refusal g_ref[MAX_REFUSALS];
static size_t g_nref;

static void add(const char *name, char *token, const struct as_jwks *set, unsigned allowed,
                enum as_jwt_fail want)
{
    if (g_nref == MAX_REFUSALS) {
        fprintf(stderr, "too many refusals\n");
        exit(2);
    }
    g_ref[g_nref++] = (struct refusal){name, token, set, allowed, want};
}

/* Replaces the character at index i of the part idx of t (a copy) with c. */
static char *poke(const char *t, int idx, size_t i, char c)
{
    if (t == NULL) {
        exit(2);
    }
    char *s = xstrdup(t);
    char *p = s;
    for (int k = 0; k < idx; k++) {
        p = strchr(p, '.') + 1;
    }
    p[i] = c;
    return s;
}

/* The last character of a part of len % 4 == 2 or 3 with one unused low bit set. */
static char dirty_last(char c)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(t, c) - t);
    /* The lowest bit is unused both for 2 (4 unused bits) and 3 (2 unused) characters. */
    return t[v | 0x01];
}

static void build_refusals(void)
{
    const unsigned all = AS_JWT_ALGS_ALL;
    const char *rs = "{\"alg\":\"RS256\",\"kid\":\"rsa\"}";
    char *good_rs = tok(rs, CLAIMS, g_rsa, "SHA256", SIG_RAW);
    char *good_es = tok("{\"alg\":\"ES256\",\"kid\":\"p256\"}", CLAIMS, g_p256, "SHA256", SIG_RAW);
    char *h = NULL;
    char *p = NULL;
    char *s = NULL;

    /* alg none, without a signature (RFC 7519 §6.1) and with one. */
    h = b64_str("{\"alg\":\"none\"}");
    p = b64_str(CLAIMS);
    size_t cap = strlen(h) + strlen(p) + 3;
    s = malloc(cap);
    snprintf(s, cap, "%s.%s.", h, p);
    add("alg none, no signature", s, g_jwks, all, AS_JWT_BAD_ALG);
    add("alg none, RS256 signature", sign_b64(h, p, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_ALG);
    free(h);
    add("alg none with kid, PEM set",
        tok("{\"alg\":\"none\",\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_pems, all,
        AS_JWT_BAD_ALG);
    h = b64_str("{\"alg\":\"None\"}");
    cap = strlen(h) + strlen(p) + 3;
    s = malloc(cap);
    snprintf(s, cap, "%s.%s.", h, p);
    add("alg None", s, g_jwks, all, AS_JWT_BAD_ALG);
    free(h);
    free(p);

    /* HS256 keyed with the RSA public key PEM (PERF-NOTES trap 2), with and without a kid. */
    add("HS256 keyed with the RSA PEM",
        tok_hs256("{\"alg\":\"HS256\",\"kid\":\"rsa\"}", g_pem_rsa, strlen(g_pem_rsa)), g_jwks, all,
        AS_JWT_BAD_ALG);
    add("HS256 keyed with the RSA PEM, PEM set",
        tok_hs256("{\"alg\":\"HS256\"}", g_pem_rsa, strlen(g_pem_rsa)), g_pems, all,
        AS_JWT_BAD_ALG);
    {
        BIGNUM *n = NULL;
        unsigned char nb[256];
        EVP_PKEY_get_bn_param(g_rsa, OSSL_PKEY_PARAM_RSA_N, &n);
        int nl = BN_bn2bin(n, nb);
        BN_free(n);
        add("HS256 keyed with the JWKS n bytes",
            tok_hs256("{\"alg\":\"HS256\",\"kid\":\"rsa\"}", nb, (size_t)nl), g_jwks, all,
            AS_JWT_BAD_ALG);
    }
    add("HS384 header", tok_hs256("{\"alg\":\"HS384\",\"kid\":\"rsa\"}", "k", 1), g_jwks, all,
        AS_JWT_BAD_ALG);
    add("HS512 header", tok_hs256("{\"alg\":\"HS512\",\"kid\":\"rsa\"}", "k", 1), g_jwks, all,
        AS_JWT_BAD_ALG);

    /* alg against the key's type and curve (RFC 7515 §10.7). */
    add("RS256 header on the P-256 key's kid",
        tok("{\"alg\":\"RS256\",\"kid\":\"p256\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_ALG);
    add("ES256 header on the P-384 key",
        tok("{\"alg\":\"ES256\",\"kid\":\"p384\"}", CLAIMS, g_p384, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_ALG);
    add("ES384 header on the P-256 key",
        tok("{\"alg\":\"ES384\",\"kid\":\"p256\"}", CLAIMS, g_p256, "SHA384", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_ALG);
    add("ES256 header on the RSA key's kid",
        tok("{\"alg\":\"ES256\",\"kid\":\"rsa\"}", CLAIMS, g_p256, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_ALG);
    {
        /* A set of RSA keys only, a kid-less ES256 token: no key of that type at all. */
        json_t *k[] = {jwk_rsa(g_rsa, "rsa", NULL)};
        char *doc = jwks_doc(k, 1);
        char why[200];
        CHECK_INT(parse_doc(doc, &g_rsa_only, why, sizeof why), AS_OK);
        free(doc);
        add("ES256 without kid, RSA-only set",
            tok("{\"alg\":\"ES256\"}", CLAIMS, g_p256, "SHA256", SIG_RAW), g_rsa_only, all,
            AS_JWT_BAD_ALG);
    }

    /* ECDSA signature encodings (RFC 7518 §3.4). */
    add("ES256 with a DER signature",
        tok("{\"alg\":\"ES256\",\"kid\":\"p256\"}", CLAIMS, g_p256, "SHA256", SIG_DER), g_jwks, all,
        AS_JWT_BAD_SIG);
    add("ES256 signature of 63 bytes",
        tok_siglen("{\"alg\":\"ES256\",\"kid\":\"p256\"}", g_p256, "SHA256", 1, 0), g_jwks, all,
        AS_JWT_BAD_SIG);
    add("ES256 signature of 65 bytes",
        tok_siglen("{\"alg\":\"ES256\",\"kid\":\"p256\"}", g_p256, "SHA256", 0, 1), g_jwks, all,
        AS_JWT_BAD_SIG);
    add("ES512 signature of 131 bytes",
        tok_siglen("{\"alg\":\"ES512\",\"kid\":\"p521\"}", g_p521, "SHA512", 1, 0), g_jwks, all,
        AS_JWT_BAD_SIG);
    add("RS256 signature of 255 bytes",
        tok_siglen("{\"alg\":\"RS256\",\"kid\":\"rsa\"}", g_rsa, "SHA256", 1, 0), g_jwks, all,
        AS_JWT_BAD_SIG);
    {
        /* R || S with S = 0. */
        char *hh = b64_str("{\"alg\":\"ES256\",\"kid\":\"p256\"}");
        char *pp = b64_str(CLAIMS);
        unsigned char zero[64];
        memset(zero, 0, sizeof zero);
        zero[31] = 1;
        add("ES256 with R=1, S=0", assemble(hh, pp, zero, sizeof zero), g_jwks, all,
            AS_JWT_BAD_SIG);
        free(hh);
        free(pp);
    }

    /* Wrong keys. */
    add("RS256 signed by another RSA key", tok(rs, CLAIMS, g_rsa_b, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_SIG);
    add("RS256 signed by another RSA key, PEM set", tok(rs, CLAIMS, g_rsa_b, "SHA256", SIG_RAW),
        g_pems, all, AS_JWT_BAD_SIG);
    add("ES256 without kid by another P-256 key",
        tok("{\"alg\":\"ES256\"}", CLAIMS, g_p256_b, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_SIG);
    add("RS256 by the 1024-bit key (skipped)",
        tok("{\"alg\":\"RS256\",\"kid\":\"weak\"}", CLAIMS, g_rsa1024, "SHA256", SIG_RAW), g_jwks,
        all, AS_JWT_UNKNOWN_KID);
    add("unknown kid",
        tok("{\"alg\":\"RS256\",\"kid\":\"nope\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_UNKNOWN_KID);
    add("empty kid", tok("{\"alg\":\"ES256\",\"kid\":\"\"}", CLAIMS, g_p256, "SHA256", SIG_RAW),
        g_jwks, all, AS_JWT_UNKNOWN_KID);
    {
        /* The token's own key (jwk header, RFC 7515 §4.1.3) is never trusted. */
        char hj[512];
        char *x = bn_b64(g_p256_b, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        char *y = bn_b64(g_p256_b, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        snprintf(hj, sizeof hj,
                 "{\"alg\":\"ES256\",\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\","
                 "\"y\":\"%s\"}}",
                 x, y);
        free(x);
        free(y);
        add("embedded jwk header", tok(hj, CLAIMS, g_p256_b, "SHA256", SIG_RAW), g_jwks, all,
            AS_JWT_BAD_SIG);
    }

    /* Tampering. */
    {
        char *hh = b64_str(rs);
        char *pp = b64_str(CLAIMS);
        char *sig = strrchr(good_rs, '.') + 1;
        char *p2 = b64_str("{\"iss\":\"https://issuer.example\",\"sub\":\"system:serviceaccount:"
                           "kube-system:admin\",\"aud\":\"authsvc\",\"exp\":4102444800}");
        char *h2 = b64_str("{\"alg\":\"RS256\",\"kid\":\"rsa\",\"typ\":\"JWT\"}");
        cap = strlen(good_rs) + 256;
        s = malloc(cap);
        snprintf(s, cap, "%s.%s.%s", hh, p2, sig);
        add("tampered payload", s, g_jwks, all, AS_JWT_BAD_SIG);
        s = malloc(cap);
        snprintf(s, cap, "%s.%s.%s", h2, pp, sig);
        add("tampered header", s, g_jwks, all, AS_JWT_BAD_SIG);
        s = malloc(cap);
        snprintf(s, cap, "%s.%s.", hh, pp);
        add("stripped signature", s, g_jwks, all, AS_JWT_MALFORMED);
        s = malloc(cap);
        snprintf(s, cap, "%s.%s", hh, pp);
        add("2 segments", s, g_jwks, all, AS_JWT_MALFORMED);
        s = malloc(cap);
        snprintf(s, cap, "%s.%s.", good_rs, sig);
        add("4 segments", s, g_jwks, all, AS_JWT_MALFORMED);
        s = malloc(cap);
        snprintf(s, cap, ".%s.%s", pp, sig);
        add("empty header", s, g_jwks, all, AS_JWT_MALFORMED);
        add("empty payload", sign_b64(hh, "", g_rsa, "SHA256", SIG_RAW), g_jwks, all,
            AS_JWT_MALFORMED);
        add("only dots", xstrdup(".."), g_jwks, all, AS_JWT_MALFORMED);
        add("empty token", xstrdup(""), g_jwks, all, AS_JWT_MALFORMED);
        free(hh);
        free(pp);
        free(p2);
        free(h2);
    }

    /* base64url strictness (RFC 7515 §2): each signed over its own text, so only the encoding
     * can be what is refused. */
    {
        /* A header whose encoding needs padding, then padded. */
        const char *hp = "{\"alg\":\"RS256\",\"kid\":\"rsa\"} ";
        char *hh = b64_str(hp);
        CHECK(strlen(hh) % 4 != 0);
        size_t hl = strlen(hh);
        char *padded = calloc(1, hl + 4);
        memcpy(padded, hh, hl);
        for (size_t i = hl; i % 4 != 0; i++) {
            padded[i] = '=';
        }
        char *pp = b64_str(CLAIMS);
        add("'=' padding in the header", sign_b64(padded, pp, g_rsa, "SHA256", SIG_RAW), g_jwks,
            all, AS_JWT_MALFORMED);
        size_t sl = strlen(good_rs);
        s = malloc(sl + 3);
        snprintf(s, sl + 3, "%s==", good_rs);
        add("'=' after the signature", s, g_jwks, all, AS_JWT_MALFORMED);
        free(padded);
        free(hh);

        /* '+' and '/' in place of '-' and '_' in the payload. */
        hh = b64_str(rs);
        char *plus = xstrdup(pp);
        plus[5] = '+';
        add("'+' in the payload", sign_b64(hh, plus, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
            AS_JWT_MALFORMED);
        plus[5] = '/';
        add("'/' in the payload", sign_b64(hh, plus, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
            AS_JWT_MALFORMED);
        plus[5] = ' ';
        add("space in the payload", sign_b64(hh, plus, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
            AS_JWT_MALFORMED);
        free(plus);
        add("'+' in the signature", poke(good_rs, 2, 3, '+'), g_jwks, all, AS_JWT_MALFORMED);
        add("'/' in the header", poke(good_rs, 0, 2, '/'), g_jwks, all, AS_JWT_MALFORMED);

        /* Non-zero unused bits in the last character (RFC 4648 §3.5). */
        size_t pl = strlen(pp);
        CHECK(pl % 4 == 2 || pl % 4 == 3);
        char *dirty = xstrdup(pp);
        dirty[pl - 1] = dirty_last(dirty[pl - 1]);
        add("non-zero trailing bits in the payload", sign_b64(hh, dirty, g_rsa, "SHA256", SIG_RAW),
            g_jwks, all, AS_JWT_MALFORMED);
        free(dirty);
        const char *sig = strrchr(good_rs, '.') + 1;
        size_t sl2 = strlen(sig);
        CHECK(sl2 % 4 == 2); /* 256 bytes: 342 characters, 4 unused bits */
        add("non-zero trailing bits in the signature",
            poke(good_rs, 2, sl2 - 1, dirty_last(sig[sl2 - 1])), g_jwks, all, AS_JWT_MALFORMED);
        /* A part of length 1 mod 4 is no base64 at all. */
        char five[8] = "eyJhb";
        add("header of 5 characters", sign_b64(five, pp, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
            AS_JWT_MALFORMED);
        free(hh);
        free(pp);
    }

    /* The JSON of header and payload. */
    add("bad JSON header",
        tok("{\"alg\":\"RS256\",\"kid\":\"rsa\"", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_MALFORMED);
    add("header not an object", tok("[\"RS256\"]", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_MALFORMED);
    add("header a string", tok("\"RS256\"", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_MALFORMED);
    add("trailing data after the header",
        tok("{\"alg\":\"RS256\",\"kid\":\"rsa\"}{}", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_MALFORMED);
    add("duplicate kid in the header",
        tok("{\"alg\":\"RS256\",\"kid\":\"rsa\",\"kid\":\"p256\"}", CLAIMS, g_rsa, "SHA256",
            SIG_RAW),
        g_jwks, all, AS_JWT_MALFORMED);
    add("duplicate alg in the header",
        tok("{\"alg\":\"none\",\"alg\":\"RS256\",\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256",
            SIG_RAW),
        g_jwks, all, AS_JWT_MALFORMED);
    add("duplicate sub in the payload",
        tok(rs, "{\"sub\":\"" SUBJECT "\",\"sub\":\"admin\"}", g_rsa, "SHA256", SIG_RAW), g_jwks,
        all, AS_JWT_MALFORMED);
    {
        char deep[128];
        size_t o = (size_t)snprintf(deep, sizeof deep, "{\"sub\":\"%s\",\"d\":", SUBJECT);
        for (int i = 0; i < 39; i++) {
            deep[o++] = '[';
        }
        for (int i = 0; i < 39; i++) {
            deep[o++] = ']';
        }
        deep[o++] = '}';
        deep[o] = '\0';
        add("payload nested 40 deep", tok(rs, deep, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
            AS_JWT_MALFORMED);
        char dh[160];
        o = (size_t)snprintf(dh, sizeof dh, "{\"alg\":\"RS256\",\"kid\":\"rsa\",\"x\":");
        for (int i = 0; i < 39; i++) {
            dh[o++] = '[';
        }
        for (int i = 0; i < 39; i++) {
            dh[o++] = ']';
        }
        dh[o++] = '}';
        dh[o] = '\0';
        add("header nested 40 deep", tok(dh, CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
            AS_JWT_MALFORMED);
    }
    add("payload not an object", tok(rs, "[1,2]", g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_MALFORMED);
    add("payload not UTF-8", tok(rs, "{\"sub\":\"\xff\xfe\"}", g_rsa, "SHA256", SIG_RAW), g_jwks,
        all, AS_JWT_MALFORMED);
    add("NUL in a payload string", tok(rs, "{\"sub\":\"a\\u0000b\"}", g_rsa, "SHA256", SIG_RAW),
        g_jwks, all, AS_JWT_MALFORMED);
    add("kid a number", tok("{\"alg\":\"RS256\",\"kid\":7}", CLAIMS, g_rsa, "SHA256", SIG_RAW),
        g_jwks, all, AS_JWT_MALFORMED);

    /* crit (RFC 7515 §4.1.11). */
    add("crit header",
        tok("{\"alg\":\"RS256\",\"kid\":\"rsa\",\"crit\":[\"exp\"],\"exp\":1}", CLAIMS, g_rsa,
            "SHA256", SIG_RAW),
        g_jwks, all, AS_JWT_CRIT);
    add("crit b64 (RFC 7797)",
        tok("{\"alg\":\"ES256\",\"kid\":\"p256\",\"b64\":false,\"crit\":[\"b64\"]}", CLAIMS, g_p256,
            "SHA256", SIG_RAW),
        g_jwks, all, AS_JWT_CRIT);

    /* Algorithms. */
    add("ES256 when only RS256 is allowed", xstrdup(good_es), g_jwks, AS_JWT_RS256, AS_JWT_BAD_ALG);
    add("RS256 when nothing is allowed", xstrdup(good_rs), g_jwks, 0, AS_JWT_BAD_ALG);
    add("PS256", tok("{\"alg\":\"PS256\",\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256", SIG_PSS),
        g_jwks, all, AS_JWT_BAD_ALG);
    add("EdDSA", tok("{\"alg\":\"EdDSA\"}", CLAIMS, g_ed, NULL, SIG_RAW), g_jwks, all,
        AS_JWT_BAD_ALG);
    add("missing alg", tok("{\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_ALG);
    add("alg a number", tok("{\"alg\":256,\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW),
        g_jwks, all, AS_JWT_BAD_ALG);
    add("alg null", tok("{\"alg\":null,\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks,
        all, AS_JWT_BAD_ALG);
    add("alg lowercase rs256",
        tok("{\"alg\":\"rs256\",\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_ALG);
    add("alg ES256K", tok("{\"alg\":\"ES256K\"}", CLAIMS, g_p256, "SHA256", SIG_RAW), g_jwks, all,
        AS_JWT_BAD_ALG);
    /* alg is judged before the signature part is looked at at all. */
    char *none = tok("{\"alg\":\"none\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW);
    add("alg none with a garbage signature part", poke(none, 2, 0, '!'), g_jwks, all,
        AS_JWT_BAD_ALG);
    free(none);

    /* Size (AS_JWT_MAX_BYTES), with a valid signature. */
    {
        size_t n = 17 * 1024;
        char *bigp = malloc(n + 64);
        size_t o = (size_t)snprintf(bigp, n + 64, "{\"sub\":\"%s\",\"pad\":\"", SUBJECT);
        memset(bigp + o, 'a', n - o);
        memcpy(bigp + n, "\"}", 3);
        char *t = tok(rs, bigp, g_rsa, "SHA256", SIG_RAW);
        CHECK(strlen(t) > AS_JWT_MAX_BYTES);
        add("oversize token (> 16 KiB)", t, g_jwks, all, AS_JWT_MALFORMED);
        free(bigp);
    }
    free(good_rs);
    free(good_es);
}

static void test_refusals(void)
{
    build_refusals();
    CHECK(g_nref >= 30);
    for (size_t i = 0; i < g_nref; i++) {
        expect_fail(g_ref[i].name, g_ref[i].token, g_ref[i].set, g_ref[i].allowed, g_ref[i].want);
    }
    printf("%zu refusals checked\n", g_nref);

    /* Bad arguments. */
    json_t *c = NULL;
    enum as_jwt_fail f = AS_JWT_OK;
    char why[160];
    CHECK_INT(as_jwt_verify(NULL, g_jwks, AS_JWT_ALGS_ALL, NULL, &c, &f, why, sizeof why),
              AS_ERR_INVALID);
    CHECK(f != AS_JWT_OK);
    CHECK_INT(as_jwt_verify("a.b.c", NULL, AS_JWT_ALGS_ALL, NULL, &c, &f, why, sizeof why),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_verify("a.b.c", g_jwks, AS_JWT_ALGS_ALL, NULL, NULL, &f, why, sizeof why),
              AS_ERR_INVALID);
    CHECK(c == NULL);
}

/* Every one-character change of a valid token is refused: base64url is decoded strictly, so no
 * two texts carry the same bytes (RFC 4648 §3.5), and any other change breaks the signature. */
static void test_mutations(void)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/";
    char *tokens[] = {
        tok("{\"alg\":\"RS256\",\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW),
        tok("{\"alg\":\"ES384\",\"kid\":\"p384\"}", CLAIMS, g_p384, "SHA384", SIG_RAW),
    };
    int accepted = 0;
    int tried = 0;
    for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++) {
        size_t len = strlen(tokens[t]);
        for (size_t i = 0; i < len; i++) {
            char *m = xstrdup(tokens[t]);
            const char *at = strchr(alphabet, m[i]);
            /* Three different replacements per position, spread over the alphabet. */
            for (size_t k = 1; k <= 3; k++) {
                size_t ix = ((size_t)(at - alphabet) + k * 17) % (sizeof alphabet - 1);
                m[i] = alphabet[ix];
                json_t *c = NULL;
                if (as_jwt_verify(m, g_jwks, AS_JWT_ALGS_ALL, NULL, &c, NULL, NULL, 0) == AS_OK) {
                    fprintf(stderr, "mutation accepted at %zu: %s\n", i, m);
                    accepted++;
                }
                json_decref(c);
                tried++;
            }
            free(m);
        }
        expect_ok("unmutated token", tokens[t], g_jwks, AS_JWT_ALGS_ALL,
                  t == 0 ? "RS256" : "ES384");
        free(tokens[t]);
    }
    CHECK(tried > 1000);
    CHECK_INT(accepted, 0);
}

/* ---- threads ---- */

struct thread_arg {
    char *good[6];
    const char *bad[3];
    enum as_jwt_fail bad_want[3];
    int errors;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    for (int round = 0; round < THREAD_ROUNDS; round++) {
        for (size_t i = 0; i < 6; i++) {
            json_t *c = NULL;
            enum as_jwt_fail f = AS_JWT_MALFORMED;
            enum as_err r =
                as_jwt_verify(a->good[i], g_jwks, AS_JWT_ALGS_ALL, NULL, &c, &f, NULL, 0);
            if (r != AS_OK || f != AS_JWT_OK ||
                json_string_value(json_object_get(c, "sub")) == NULL) {
                a->errors++;
            }
            json_decref(c);
        }
        for (size_t i = 0; i < 3; i++) {
            json_t *c = NULL;
            enum as_jwt_fail f = AS_JWT_OK;
            char why[160];
            enum as_err r =
                as_jwt_verify(a->bad[i], g_jwks, AS_JWT_ALGS_ALL, NULL, &c, &f, why, sizeof why);
            if (r != AS_ERR_INVALID || f != a->bad_want[i] || c != NULL) {
                a->errors++;
            }
        }
    }
    return NULL;
}

static void test_threads(void)
{
    char *good[6] = {
        tok("{\"alg\":\"RS256\",\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA256", SIG_RAW),
        tok("{\"alg\":\"RS512\"}", CLAIMS, g_rsa, "SHA512", SIG_RAW),
        tok("{\"alg\":\"ES256\",\"kid\":\"p256\"}", CLAIMS, g_p256, "SHA256", SIG_RAW),
        tok("{\"alg\":\"ES384\"}", CLAIMS, g_p384, "SHA384", SIG_RAW),
        tok("{\"alg\":\"ES512\",\"kid\":\"p521\"}", CLAIMS, g_p521, "SHA512", SIG_RAW),
        tok("{\"alg\":\"RS384\",\"kid\":\"rsa\"}", CLAIMS, g_rsa, "SHA384", SIG_RAW),
    };
    char *bad[3] = {
        tok("{\"alg\":\"RS256\",\"kid\":\"rsa\"}", CLAIMS, g_rsa_b, "SHA256", SIG_RAW),
        tok("{\"alg\":\"ES256\",\"kid\":\"p256\"}", CLAIMS, g_p256, "SHA256", SIG_DER),
        tok_hs256("{\"alg\":\"HS256\",\"kid\":\"rsa\"}", g_pem_rsa, strlen(g_pem_rsa)),
    };
    struct thread_arg args[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        for (size_t k = 0; k < 6; k++) {
            args[i].good[k] = good[(k + (size_t)i) % 6];
        }
        for (size_t k = 0; k < 3; k++) {
            args[i].bad[k] = bad[k];
        }
        args[i].bad_want[0] = AS_JWT_BAD_SIG;
        args[i].bad_want[1] = AS_JWT_BAD_SIG;
        args[i].bad_want[2] = AS_JWT_BAD_ALG;
        CHECK_INT(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK_INT(pthread_join(th[i], NULL), 0);
        CHECK_INT(args[i].errors, 0);
    }
    for (size_t k = 0; k < 6; k++) {
        free(good[k]);
    }
    for (size_t k = 0; k < 3; k++) {
        free(bad[k]);
    }
}

/* ---- benchmark ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench_one(const char *name, const char *token)
{
    double t0 = now_s();
    int bad = 0;
    for (int i = 0; i < BENCH_ITERS; i++) {
        json_t *c = NULL;
        if (as_jwt_verify(token, g_jwks, AS_JWT_ALGS_ALL, NULL, &c, NULL, NULL, 0) != AS_OK) {
            bad++;
        }
        json_decref(c);
    }
    double dt = now_s() - t0;
    CHECK_INT(bad, 0);
    printf("bench: as_jwt_verify %s: %.0f verifications/s (%.1f us each)\n", name, BENCH_ITERS / dt,
           dt * 1e6 / BENCH_ITERS);
}

static void bench(void)
{
    char *rs = tok("{\"alg\":\"RS256\",\"kid\":\"rsa\",\"typ\":\"JWT\"}", CLAIMS, g_rsa, "SHA256",
                   SIG_RAW);
    char *es = tok("{\"alg\":\"ES256\",\"kid\":\"p256\",\"typ\":\"JWT\"}", CLAIMS, g_p256, "SHA256",
                   SIG_RAW);
    bench_one("RS256", rs);
    bench_one("ES256", es);

    /* libjwt 1.10 on the same RS256 token and the PEM key (PERF-NOTES trap 2). */
    double t0 = now_s();
    int bad = 0;
    for (int i = 0; i < BENCH_ITERS; i++) {
        jwt_t *j = NULL;
        if (jwt_decode(&j, rs, (const unsigned char *)g_pem_rsa, (int)strlen(g_pem_rsa)) != 0) {
            bad++;
        }
        jwt_free(j);
    }
    double dt = now_s() - t0;
    CHECK_INT(bad, 0);
    printf("bench: libjwt jwt_decode RS256 (PEM key): %.0f verifications/s (%.1f us each)\n",
           BENCH_ITERS / dt, dt * 1e6 / BENCH_ITERS);
    free(rs);
    free(es);
}

int main(void)
{
    g_verbose = getenv("AS_TEST_VERBOSE") != NULL;
    as_log_set_level(g_verbose ? AS_LOG_DEBUG : AS_LOG_ERROR);

    g_rsa = keygen("RSA", NULL, 2048);
    g_rsa_b = keygen("RSA", NULL, 2048);
    g_rsa1024 = keygen("RSA", NULL, 1024);
    g_p256 = keygen("EC", "P-256", 0);
    g_p256_b = keygen("EC", "P-256", 0);
    g_p384 = keygen("EC", "P-384", 0);
    g_p521 = keygen("EC", "P-521", 0);
    g_ed = keygen("ED25519", NULL, 0);
    g_pem_rsa = pem_pub(g_rsa);
    g_pem_p256 = pem_pub(g_p256);
    g_pem_p384 = pem_pub(g_p384);
    g_pem_p521 = pem_pub(g_p521);
    g_pem_rsa1024 = pem_pub(g_rsa1024);

    json_t *keys[] = {jwk_rsa(g_rsa, "rsa", NULL), jwk_rsa(g_rsa1024, "weak", NULL),
                      jwk_ec(g_p256, "P-256", "p256", NULL), jwk_ec(g_p384, "P-384", "p384", NULL),
                      jwk_ec(g_p521, "P-521", "p521", NULL)};
    char *doc = jwks_doc(keys, 5);
    char why[256] = "";
    CHECK_INT(parse_doc(doc, &g_jwks, why, sizeof why), AS_OK);
    CHECK_INT(as_jwks_count(g_jwks), 4);
    free(doc);
    json_t *pems = json_pack("[s, s, s, s]", g_pem_rsa, g_pem_p256, g_pem_p384, g_pem_p521);
    CHECK_INT(as_jwks_from_pems(pems, &g_pems, why, sizeof why), AS_OK);
    CHECK_INT(as_jwks_count(g_pems), 4);
    json_decref(pems);
    if (g_jwks == NULL || g_pems == NULL) {
        fprintf(stderr, "key sets failed: %s\n", why);
        return check_done();
    }

    test_alg_parse();
    test_jwks_parse();
    test_pems();
    test_good();
    test_refusals();
    test_mutations();
    test_threads();

    const char *b = getenv("AS_BENCH");
    if (b != NULL && strcmp(b, "1") == 0) {
        bench();
    }

    for (size_t i = 0; i < g_nref; i++) {
        free(g_ref[i].token);
    }
    as_jwks_free(g_jwks);
    as_jwks_free(g_pems);
    as_jwks_free(g_rsa_only);
    free(g_pem_rsa);
    free(g_pem_p256);
    free(g_pem_p384);
    free(g_pem_p521);
    free(g_pem_rsa1024);
    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_rsa_b);
    EVP_PKEY_free(g_rsa1024);
    EVP_PKEY_free(g_p256);
    EVP_PKEY_free(g_p256_b);
    EVP_PKEY_free(g_p384);
    EVP_PKEY_free(g_p521);
    EVP_PKEY_free(g_ed);
    return check_done();
}
