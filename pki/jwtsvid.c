/*
 * jwtsvid.c: JWT-SVIDs (pki.h): ES256 signing keys, minting and validation.
 *
 * A JWT-SVID is a JWS in Compact Serialization (SPIFFE JWT-SVID §5.1, RFC 7515 §7.1) whose
 * claims name a SPIFFE ID (JWT-SVID §3). This server signs with ECDSA P-256 and SHA-256 only
 * (ES256, RFC 7518 §3.4), and accepts nothing else.
 *
 * Everything is done with OpenSSL and jansson directly, not with libjwt: libjwt 1.10 parses the
 * PEM key on every call, believes the header's alg (an HS256 token keyed with the public key PEM
 * verifies) and checks no claim (PERF-NOTES trap 2). Here the EVP_PKEY, the fetched SHA-256, the
 * initialised sign and verify contexts, the kid, the JWK coordinates and the encoded header are
 * made once per key, so that a mint or a validation does a constant amount of work, fetches no
 * algorithm and never touches a decoder.
 *
 * On disk: <dir>/<base>-jwt-key.pem, an unencrypted PKCS#8 PEM with mode 0600.
 */
#include "pki/pki.h"
#include "pki/pki_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* The largest token we mint or look at. A JWT-SVID with one audience is about 450 bytes; the cap
 * bounds the base64 and JSON work an unauthenticated caller can ask of us. */
#define JWT_MAX_BYTES (16 * 1024)
/* Leeway for the issuer's clock running ahead of ours (JWT-SVID Appendix A allows a small one). */
#define JWT_CLOCK_SKEW_SECS 60
/* RFC 7518 §3.4: R and S are 32 octets each for P-256; the signature is their concatenation. */
#define P256_SCALAR_BYTES 32
#define ES256_SIG_BYTES (2 * P256_SCALAR_BYTES)
/* 64 bytes are 86 base64url characters without padding (RFC 7515 §2). */
#define ES256_SIG_B64_CHARS 86
/* ECDSA_size() of a P-256 key: SEQUENCE { INTEGER r, INTEGER s }, each up to 33 content octets. */
#define ES256_DER_MAX 72
/* SHA-256 output. */
#define SHA256_BYTES 32
/* pki.h: the kid is base64url(SHA-256(SPKI DER)) cut to 32 characters (192 bits). */
#define KID_CHARS 32
/* SPEC §6: jti is 128 random bits, 22 base64url characters; pki.h asks callers for >= 32 bytes. */
#define JTI_BYTES 16
#define JTI_BUF_MIN 32
/* Buffer for as_b64url of n bytes (common.h): 4 * ceil(n / 3) + 1. */
#define B64URL_BUF(n) (4 * (((n) + 2) / 3) + 1)
#define JWT_KEY_SUFFIX "-jwt-key.pem"
/* A key file's base name is ours ("ca", "ca-2", ...), never a path. */
#define JWT_KEY_BASE_MAX 64
/* 9999-12-31T23:59:59Z: keeps now + leeway, and any time we write, far from int64 overflow. */
#define JWT_MAX_TIME 253402300799LL
/* JSON's own nesting cap (common.h) applies to both JOSE header and claims. */
#define JWT_MAX_DEPTH AS_MAX_JSON_DEPTH
/* The kid we compare against is ours; a longer header kid cannot match and is not looked at. */
#define JWT_KID_MAX 128

struct as_jwtkey {
    EVP_PKEY *pkey;
    /* Fetched once: an implicit fetch per signature costs time and takes a global lock
     * (PERF-NOTES trap 1). */
    EVP_MD *sha256;
    /* DigestSign and DigestVerify contexts initialised once with the key and SHA-256. Each call
     * works on a copy (EVP_MD_CTX_copy_ex), which skips the per-call fetch of the signature
     * method and the key-context setup. The templates themselves are never used, only copied,
     * so they are only read and threads may share the key (as struct as_ca does). */
    EVP_MD_CTX *sign_tmpl;
    EVP_MD_CTX *verify_tmpl;
    /* The JWS alg this key signs with (RFC 7518 §3.1); a token's alg must equal it. */
    const char *alg;
    char kid[KID_CHARS + 1];
    /* RFC 7518 §6.2.1.2-3: the affine coordinates, each the full 32 octets, base64url. */
    char x[B64URL_BUF(P256_SCALAR_BYTES)];
    char y[B64URL_BUF(P256_SCALAR_BYTES)];
    /* BASE64URL(UTF8(JWS Protected Header)) (RFC 7515 §7.1): the same for every token. */
    char *hdr_b64;
    size_t hdr_b64_len;
};

/* ---- small helpers ---- */

/* Logs what failed and drains OpenSSL's error queue, so a stale error never blames a later call. */
static void log_ssl_errors(const char *what)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        as_error("jwtsvid: %s failed", what);
        return;
    }
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    as_error("jwtsvid: %s failed: %s", what, buf);
    ERR_clear_error();
}

/* Cleanses a memory BIO's contents, then frees it. NULL is fine. */
static void bio_free_wiped(BIO *bio)
{
    char *data = NULL;
    long n = bio != NULL ? BIO_get_mem_data(bio, &data) : 0;
    if (n > 0 && data != NULL) {
        OPENSSL_cleanse(data, (size_t)n);
    }
    BIO_free(bio);
}

/* An encrypted key must fail to load, not prompt on the terminal as OpenSSL's default callback
 * would: a server has no one at the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* RFC 4648 §5: the URL- and filename-safe alphabet; value or -1. */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

/*
 * Strict base64url decoding (pki_internal.h; shared with pki/jwt.c). Only the alphabet, never a
 * length of 1 mod 4, and the unused low bits of the last character must be zero (RFC 4648 §3.5),
 * so that each byte string has exactly one encoding and a token cannot be altered without
 * breaking its signature. OpenSSL does the decoding once the alphabet and padding are standard.
 */
bool as_pki_b64url_decode(const char *in, size_t len, char *scratch, unsigned char *out,
                          size_t *outlen)
{
    static const unsigned char unused_mask[4] = {0, 0, 0x0f, 0x03};
    if (len == 0 || len % 4 == 1 || len > JWT_MAX_BYTES) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0) {
            return false;
        }
        scratch[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
        if (i == len - 1 && (v & unused_mask[len % 4]) != 0) {
            return false;
        }
    }
    size_t pad = (4 - len % 4) % 4;
    for (size_t i = 0; i < pad; i++) {
        scratch[len + i] = '=';
    }
    int n = EVP_DecodeBlock(out, (const unsigned char *)scratch, (int)(len + pad));
    if (n < 0 || (size_t)n < pad || (size_t)n != 3 * ((len + pad) / 4)) {
        return false;
    }
    *outlen = (size_t)n - pad;
    return true;
}

/* True when v nests no deeper than JWT_MAX_DEPTH; the top-level value is depth 1. */
static bool json_depth_ok(json_t *v, int depth)
{
    if (depth > JWT_MAX_DEPTH) {
        return false;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *child;
        json_object_foreach(v, key, child)
        {
            if (!json_depth_ok(child, depth + 1)) {
                return false;
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child)
        {
            if (!json_depth_ok(child, depth + 1)) {
                return false;
            }
        }
    }
    return true;
}

/*
 * Parses one decoded JWS part as a JSON object (RFC 7515 §5.2 steps 3 and 7; RFC 7519 §7.2
 * step 10): UTF-8, no duplicate member names (RFC 7515 §5.2 step 4 says to reject them), no NUL
 * in strings, nothing after the object, at most JWT_MAX_DEPTH deep. NULL on any failure.
 * Shared with pki/jwt.c through pki_internal.h.
 */
json_t *as_pki_json_object_strict(const unsigned char *buf, size_t len)
{
    json_error_t je;
    json_t *v = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
    if (v != NULL && (!json_is_object(v) || !json_depth_ok(v, 1))) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* Compares a JSON number (a NumericDate, RFC 7519 §2: integer or not) with t: <0, 0 or >0. */
static int numeric_cmp(json_t *v, int64_t t)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        return n < t ? -1 : n > t ? 1 : 0;
    }
    double d = json_real_value(v);
    double dt = (double)t;
    return d < dt ? -1 : d > dt ? 1 : 0;
}

/* A base name for dir/<base>-jwt-key.pem: [A-Za-z0-9._-], not starting with '.', never a path. */
static bool base_ok(const char *base)
{
    if (base == NULL || base[0] == '\0' || base[0] == '.') {
        return false;
    }
    size_t len = strnlen(base, JWT_KEY_BASE_MAX + 1);
    if (len > JWT_KEY_BASE_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_')) {
            return false;
        }
    }
    return true;
}

static enum as_err key_path(const char *dir, const char *base, char *out, size_t outlen)
{
    if (dir == NULL || dir[0] == '\0' || !base_ok(base)) {
        as_error("jwtsvid: bad key directory or base name");
        return AS_ERR_INVALID;
    }
    int n = snprintf(out, outlen, "%s/%s%s", dir, base, JWT_KEY_SUFFIX);
    if (n < 0 || (size_t)n >= outlen) {
        as_error("jwtsvid: key path too long");
        return AS_ERR_INVALID;
    }
    return AS_OK;
}

/* ---- signatures ---- */

/*
 * ES256 signature of msg (RFC 7518 §3.4): OpenSSL signs into DER (RFC 3279 §2.2.3); the JWS
 * wants R and S as two 32-octet big-endian integers, left-padded, concatenated.
 */
static enum as_err es256_sign(const struct as_jwtkey *k, const char *msg, size_t len,
                              unsigned char out[ES256_SIG_BYTES])
{
    enum as_err r = AS_ERR_CRYPTO;
    EVP_MD_CTX *ctx = NULL;
    ECDSA_SIG *sig = NULL;
    unsigned char der[ES256_DER_MAX];
    size_t derlen = sizeof der;
    const unsigned char *p = der;
    const BIGNUM *sr = NULL;
    const BIGNUM *ss = NULL;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (EVP_MD_CTX_copy_ex(ctx, k->sign_tmpl) != 1 ||
        EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)msg, len) != 1) {
        log_ssl_errors("ES256 signature");
        goto out;
    }
    sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (sig == NULL || p != der + derlen) {
        log_ssl_errors("decoding the ECDSA signature");
        goto out;
    }
    ECDSA_SIG_get0(sig, &sr, &ss);
    if (BN_bn2binpad(sr, out, P256_SCALAR_BYTES) != P256_SCALAR_BYTES ||
        BN_bn2binpad(ss, out + P256_SCALAR_BYTES, P256_SCALAR_BYTES) != P256_SCALAR_BYTES) {
        as_error("jwtsvid: ECDSA signature does not fit 2 x %d bytes", P256_SCALAR_BYTES);
        goto out;
    }
    r = AS_OK;
out:
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(ctx);
    return r;
}

/*
 * JWS ECDSA signatures are R and S as two big-endian integers of the curve's size, concatenated
 * (RFC 7518 §3.4); OpenSSL verifies the DER SEQUENCE of RFC 3279 §2.2.3. Shared with pki/jwt.c
 * through pki_internal.h.
 */
enum as_err as_pki_ecdsa_raw_to_der(const unsigned char *rs, size_t scalar_len, unsigned char *der,
                                    size_t dermax, size_t *derlen)
{
    enum as_err r = AS_ERR_INVALID;
    ECDSA_SIG *sig = NULL;
    BIGNUM *br = NULL;
    BIGNUM *bs = NULL;
    unsigned char *p = der;
    int n = 0;

    if (scalar_len == 0 || scalar_len > AS_PKI_ECDSA_SCALAR_MAX) {
        goto out;
    }
    sig = ECDSA_SIG_new();
    br = BN_bin2bn(rs, (int)scalar_len, NULL);
    bs = BN_bin2bn(rs + scalar_len, (int)scalar_len, NULL);
    if (sig == NULL || br == NULL || bs == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (ECDSA_SIG_set0(sig, br, bs) != 1) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    /* sig owns them now. */
    br = NULL;
    bs = NULL;
    n = i2d_ECDSA_SIG(sig, NULL);
    if (n <= 0 || (size_t)n > dermax || i2d_ECDSA_SIG(sig, &p) != n) {
        goto out;
    }
    *derlen = (size_t)n;
    r = AS_OK;
out:
    BN_free(br);
    BN_free(bs);
    ECDSA_SIG_free(sig);
    return r;
}

/*
 * Verifies a raw R||S ES256 signature (RFC 7518 §3.4) over msg: R and S become the DER
 * SEQUENCE OpenSSL verifies. AS_OK when it verifies, AS_ERR_INVALID when it does not (a
 * malformed R or S included: fail closed), AS_ERR_NOMEM.
 */
static enum as_err es256_verify(const struct as_jwtkey *k, const char *msg, size_t len,
                                const unsigned char rs[ES256_SIG_BYTES])
{
    enum as_err r = AS_ERR_INVALID;
    EVP_MD_CTX *ctx = NULL;
    unsigned char der[ES256_DER_MAX];
    size_t derlen = 0;

    if ((r = as_pki_ecdsa_raw_to_der(rs, P256_SCALAR_BYTES, der, sizeof der, &derlen)) != AS_OK) {
        goto out;
    }
    r = AS_ERR_INVALID;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (EVP_MD_CTX_copy_ex(ctx, k->verify_tmpl) != 1) {
        log_ssl_errors("ES256 verification setup");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if (EVP_DigestVerify(ctx, der, derlen, (const unsigned char *)msg, len) == 1) {
        r = AS_OK;
    }
out:
    /* A signature that does not verify leaves errors behind; they are not ours to report. */
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    return r;
}

/* ---- keys ---- */

void as_jwtkey_free(struct as_jwtkey *k)
{
    if (k == NULL) {
        return;
    }
    /* EVP_PKEY_free clears the private scalar. */
    EVP_MD_CTX_free(k->sign_tmpl);
    EVP_MD_CTX_free(k->verify_tmpl);
    EVP_PKEY_free(k->pkey);
    EVP_MD_free(k->sha256);
    free(k->hdr_b64);
    free(k);
}

const char *as_jwtkey_kid(const struct as_jwtkey *k)
{
    return k != NULL ? k->kid : NULL;
}

json_t *as_jwtkey_jwk(const struct as_jwtkey *k)
{
    if (k == NULL) {
        return NULL;
    }
    /* SPIFFE Trust Domain and Bundle §4.2: a jwt-svid entry carries its kid; RFC 7518 §6.2.1
     * names the EC public parameters. The private "d" is never part of it. */
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "use", "jwt-svid", "kty", "EC", "crv",
                     "P-256", "x", k->x, "y", k->y, "kid", k->kid);
}

/* True when pkey is an EC key on P-256 (prime256v1, secp256r1). */
static bool is_p256(const EVP_PKEY *pkey)
{
    char group[64];
    size_t glen = 0;
    if (!EVP_PKEY_is_a(pkey, "EC") ||
        EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1) {
        ERR_clear_error();
        return false;
    }
    return OBJ_sn2nid(group) == NID_X9_62_prime256v1 || strcmp(group, "P-256") == 0;
}

/* An affine coordinate of the public point, base64url of all 32 octets (RFC 7518 §6.2.1.2). */
static enum as_err coord_b64(const EVP_PKEY *pkey, const char *param, char *out)
{
    BIGNUM *bn = NULL;
    unsigned char bin[P256_SCALAR_BYTES];
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1 ||
        BN_bn2binpad(bn, bin, sizeof bin) != (int)sizeof bin) {
        log_ssl_errors("reading the EC public point");
        BN_free(bn);
        return AS_ERR_CRYPTO;
    }
    BN_free(bn);
    as_b64url(bin, sizeof bin, out);
    return AS_OK;
}

/* pki.h: kid = base64url(SHA-256(DER SubjectPublicKeyInfo)) cut to KID_CHARS. */
static enum as_err compute_kid(struct as_jwtkey *k)
{
    enum as_err r = AS_ERR_CRYPTO;
    unsigned char *spki = NULL;
    unsigned char digest[SHA256_BYTES];
    unsigned int dlen = 0;
    char b64[B64URL_BUF(SHA256_BYTES)];
    int n = i2d_PUBKEY(k->pkey, &spki);
    if (n <= 0) {
        log_ssl_errors("encoding the public key");
        goto out;
    }
    if (EVP_Digest(spki, (size_t)n, digest, &dlen, k->sha256, NULL) != 1 || dlen != sizeof digest) {
        log_ssl_errors("hashing the public key");
        goto out;
    }
    as_b64url(digest, sizeof digest, b64);
    memcpy(k->kid, b64, KID_CHARS);
    k->kid[KID_CHARS] = '\0';
    r = AS_OK;
out:
    OPENSSL_free(spki);
    return r;
}

/* The JOSE header every token of this key carries (JWT-SVID §2, RFC 7515 §4.1), encoded once. */
static enum as_err build_header(struct as_jwtkey *k)
{
    enum as_err r = AS_OK;
    char *json = NULL;
    size_t len = 0;
    /* json_pack keeps the members in the order given (jansson >= 2.8 keeps insertion order). */
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", k->alg, "kid", k->kid, "typ", "JWT");
    if (hdr == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    json = json_dumps(hdr, JSON_COMPACT);
    if (json == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    len = strlen(json);
    k->hdr_b64 = malloc(B64URL_BUF(len));
    if (k->hdr_b64 == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    k->hdr_b64_len = as_b64url((const unsigned char *)json, len, k->hdr_b64);
out:
    free(json);
    json_decref(hdr);
    return r;
}

/* Takes ownership of pkey: checks it is a P-256 key pair and derives what each call needs. */
static enum as_err key_from_pkey(EVP_PKEY **pkey, struct as_jwtkey **out)
{
    enum as_err r = AS_OK;
    EVP_PKEY_CTX *pctx = NULL;
    struct as_jwtkey *k = calloc(1, sizeof *k);
    if (k == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    k->pkey = *pkey;
    *pkey = NULL;
    k->alg = "ES256";
    if (!is_p256(k->pkey)) {
        as_error("jwtsvid: the JWT signing key is not an EC P-256 key (ES256, RFC 7518 §3.4)");
        r = AS_ERR_CONFIG;
        goto out;
    }
    /* The public point must belong to the private scalar: a damaged file fails here, not as a
     * stream of tokens nobody can verify. */
    pctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    if (pctx == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (EVP_PKEY_pairwise_check(pctx) != 1) {
        log_ssl_errors("EC key pair check");
        r = AS_ERR_CONFIG;
        goto out;
    }
    k->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (k->sha256 == NULL) {
        log_ssl_errors("fetching SHA-256");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    k->sign_tmpl = EVP_MD_CTX_new();
    k->verify_tmpl = EVP_MD_CTX_new();
    if (k->sign_tmpl == NULL || k->verify_tmpl == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (EVP_DigestSignInit(k->sign_tmpl, NULL, k->sha256, NULL, k->pkey) != 1 ||
        EVP_DigestVerifyInit(k->verify_tmpl, NULL, k->sha256, NULL, k->pkey) != 1) {
        log_ssl_errors("ES256 context setup");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if ((r = compute_kid(k)) != AS_OK ||
        (r = coord_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, k->x)) != AS_OK ||
        (r = coord_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, k->y)) != AS_OK ||
        (r = build_header(k)) != AS_OK) {
        goto out;
    }
    *out = k;
    k = NULL;
out:
    EVP_PKEY_CTX_free(pctx);
    as_jwtkey_free(k);
    return r;
}

enum as_err as_jwtkey_generate(struct as_jwtkey **out)
{
    if (out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (pkey == NULL) {
        log_ssl_errors("P-256 key generation");
        return AS_ERR_CRYPTO;
    }
    enum as_err r = key_from_pkey(&pkey, out);
    EVP_PKEY_free(pkey);
    return r;
}

enum as_err as_jwtkey_save(const struct as_jwtkey *k, const char *dir, const char *base)
{
    enum as_err r = AS_OK;
    BIO *bio = NULL;
    char *pem = NULL;
    long n = 0;
    char path[4096];
    if (k == NULL) {
        return AS_ERR_INVALID;
    }
    if ((r = key_path(dir, base, path, sizeof path)) != AS_OK) {
        goto out;
    }
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    /* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") in OpenSSL 3. */
    if (PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        log_ssl_errors("PEM_write_bio_PrivateKey");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    n = BIO_get_mem_data(bio, &pem);
    if (n <= 0 || pem == NULL) {
        r = AS_ERR_CRYPTO;
        goto out;
    }
    r = as_file_write_atomic(path, pem, (size_t)n, 0600);
out:
    /* The memory BIO grows with BUF_MEM_grow_clean, so this wipes the only copy of the PEM. */
    bio_free_wiped(bio);
    return r;
}

enum as_err as_jwtkey_load(const char *dir, const char *base, struct as_jwtkey **out)
{
    enum as_err r = AS_OK;
    char path[4096];
    char *pem = NULL;
    size_t pemlen = 0;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    if (out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if ((r = key_path(dir, base, path, sizeof path)) != AS_OK ||
        (r = as_pki_read_file(path, true, &pem, &pemlen)) != AS_OK) {
        goto out;
    }
    bio = BIO_new_mem_buf(pem, (int)pemlen);
    if (bio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (pkey == NULL) {
        log_ssl_errors("reading the JWT signing key");
        as_error("jwtsvid: %s is not an unencrypted PEM private key", path);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if ((r = key_from_pkey(&pkey, out)) != AS_OK) {
        as_error("jwtsvid: %s is not a usable JWT signing key", path);
        goto out;
    }
out:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    if (pem != NULL) {
        as_wipe(pem, pemlen);
        free(pem);
    }
    return r;
}

/* ---- minting ---- */

/* aud (JWT-SVID §3.2, RFC 7519 §4.1.3): one string when there is one audience, else an array.
 * Every audience is a non-empty string; none at all is AS_ERR_INVALID. */
static enum as_err build_aud(json_t *audiences, json_t **out)
{
    size_t n = json_is_array(audiences) ? json_array_size(audiences) : 0;
    if (n == 0) {
        as_error("jwtsvid: a JWT-SVID needs at least one audience (JWT-SVID §3.2)");
        return AS_ERR_INVALID;
    }
    size_t i;
    json_t *a;
    json_array_foreach(audiences, i, a)
    {
        if (!json_is_string(a) || json_string_length(a) == 0) {
            as_error("jwtsvid: audience %zu is not a non-empty string", i);
            return AS_ERR_INVALID;
        }
    }
    *out = n == 1 ? json_copy(json_array_get(audiences, 0)) : json_deep_copy(audiences);
    return *out != NULL ? AS_OK : AS_ERR_NOMEM;
}

enum as_err as_jwt_svid_mint(const struct as_jwtkey *k, const char *sub, json_t *audiences,
                             int64_t iat, int64_t exp, char *jti, size_t jtilen, char **token)
{
    enum as_err r = AS_OK;
    json_t *claims = NULL;
    json_t *aud = NULL;
    char *payload = NULL;
    char *tok = NULL;
    unsigned char rnd[JTI_BYTES];
    char jti_b64[B64URL_BUF(JTI_BYTES)];
    unsigned char sig[ES256_SIG_BYTES];
    char idwhy[128];
    size_t plen = 0;
    size_t cap = 0;
    size_t off = 0;

    if (token != NULL) {
        *token = NULL;
    }
    if (k == NULL || sub == NULL || token == NULL || jti == NULL || jtilen < JTI_BUF_MIN) {
        r = AS_ERR_INVALID;
        goto out;
    }
    if (iat < 0 || exp <= iat || exp > JWT_MAX_TIME) {
        as_error("jwtsvid: bad validity (iat %lld, exp %lld)", (long long)iat, (long long)exp);
        r = AS_ERR_INVALID;
        goto out;
    }
    /* JWT-SVID §3.1: sub is the workload's SPIFFE ID; never sign something else. */
    if (as_spiffe_id_check(sub, NULL, idwhy, sizeof idwhy) != AS_OK) {
        as_error("jwtsvid: sub is not a SPIFFE ID: %s", idwhy);
        r = AS_ERR_INVALID;
        goto out;
    }
    if ((r = build_aud(audiences, &aud)) != AS_OK) {
        goto out;
    }
    /* RFC 7519 §4.1.7: jti unique per token; 128 random bits make a collision negligible. */
    if ((r = as_rand_bytes(rnd, sizeof rnd)) != AS_OK) {
        goto out;
    }
    as_b64url(rnd, sizeof rnd, jti_b64);

    /* Members in the order sub, aud, exp, iat, jti; jansson keeps insertion order. */
    claims = json_object();
    if (claims == NULL || json_object_set_new(claims, "sub", json_string(sub)) != 0 ||
        json_object_set(claims, "aud", aud) != 0 ||
        json_object_set_new(claims, "exp", json_integer(exp)) != 0 ||
        json_object_set_new(claims, "iat", json_integer(iat)) != 0 ||
        json_object_set_new(claims, "jti", json_string(jti_b64)) != 0) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    payload = json_dumps(claims, JSON_COMPACT);
    if (payload == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    plen = strlen(payload);
    if (plen > JWT_MAX_BYTES) {
        as_error("jwtsvid: claims too large for a JWT-SVID (%zu bytes)", plen);
        r = AS_ERR_TOO_LARGE;
        goto out;
    }
    /* header "." payload "." signature, each base64url (RFC 7515 §7.1). */
    cap = k->hdr_b64_len + 1 + B64URL_BUF(plen) + 1 + B64URL_BUF(ES256_SIG_BYTES);
    tok = malloc(cap);
    if (tok == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    memcpy(tok, k->hdr_b64, k->hdr_b64_len);
    off += k->hdr_b64_len;
    tok[off++] = '.';
    off += as_b64url((const unsigned char *)payload, plen, tok + off);
    /* RFC 7515 §5.1 step 5: the JWS Signing Input is ASCII(header "." payload). */
    if ((r = es256_sign(k, tok, off, sig)) != AS_OK) {
        goto out;
    }
    tok[off++] = '.';
    off += as_b64url(sig, sizeof sig, tok + off);
    if (off > JWT_MAX_BYTES) {
        as_error("jwtsvid: token too large (%zu bytes)", off);
        r = AS_ERR_TOO_LARGE;
        goto out;
    }
    memcpy(jti, jti_b64, strlen(jti_b64) + 1);
    *token = tok;
    tok = NULL;
out:
    free(tok);
    free(payload);
    json_decref(claims);
    json_decref(aud);
    return r;
}

/* ---- validation ---- */

/* The JOSE header members a JWT-SVID may carry (JWT-SVID §2: any other MUST NOT be included). */
static bool header_member_known(const char *name)
{
    return strcmp(name, "alg") == 0 || strcmp(name, "kid") == 0 || strcmp(name, "typ") == 0;
}

/*
 * Checks the JOSE header (before any key is looked at) and finds the key named by kid.
 * Returns a static reason, or NULL with *key set.
 */
static const char *check_header(json_t *hdr, const struct as_jwtkey *const *keys, size_t nkeys,
                                const struct as_jwtkey **key)
{
    /* JWT-SVID §2.1 and §4: alg must be checked before anything else; ES256 is all we sign. */
    json_t *alg = json_object_get(hdr, "alg");
    if (alg == NULL) {
        return "header has no alg (RFC 7515 §4.1.1)";
    }
    if (!json_is_string(alg)) {
        return "header alg is not a string";
    }
    if (strcmp(json_string_value(alg), "none") == 0) {
        return "alg none refused: an unsecured JWS is never a JWT-SVID (RFC 7518 §3.6)";
    }
    if (strcmp(json_string_value(alg), "ES256") != 0) {
        return "alg refused: only ES256 is accepted (JWT-SVID §2.1, RFC 7518 §3.4)";
    }
    /* JWT-SVID §2.3: typ, when set, is JWT or JOSE. */
    json_t *typ = json_object_get(hdr, "typ");
    if (typ != NULL && (!json_is_string(typ) || (strcmp(json_string_value(typ), "JWT") != 0 &&
                                                 strcmp(json_string_value(typ), "JOSE") != 0))) {
        return "typ must be JWT or JOSE (JWT-SVID §2.3)";
    }
    /* RFC 7515 §4.1.11: crit names extensions the recipient must understand; we know none. */
    if (json_object_get(hdr, "crit") != NULL) {
        return "crit header refused: no JWS extension is understood (RFC 7515 §4.1.11)";
    }
    const char *name;
    json_t *value;
    json_object_foreach(hdr, name, value)
    {
        if (!header_member_known(name)) {
            return "header member other than alg, kid and typ refused (JWT-SVID §2)";
        }
    }
    /* JWT-SVID §2.2 makes kid optional, but every key we publish has one (SPIFFE Bundle §4.2). */
    json_t *kid = json_object_get(hdr, "kid");
    if (kid == NULL || !json_is_string(kid) || json_string_length(kid) == 0) {
        return "header has no kid string (RFC 7515 §4.1.4)";
    }
    const char *want = json_string_value(kid);
    if (json_string_length(kid) <= JWT_KID_MAX) {
        for (size_t i = 0; i < nkeys; i++) {
            if (keys[i] != NULL && strcmp(keys[i]->kid, want) == 0) {
                /* RFC 7515 §10.7: the algorithm must be the one this key is for. */
                if (strcmp(keys[i]->alg, json_string_value(alg)) != 0) {
                    return "alg does not match the key's type";
                }
                *key = keys[i];
                return NULL;
            }
        }
    }
    return "unknown key id";
}

/* Checks the claims (JWT-SVID §3, RFC 7519 §4.1, §7.2); a static reason, or NULL when they pass.
 * A sub refusal is written to detail. */
static const char *check_claims(json_t *claims, const char *audience, const char *trust_domain,
                                int64_t now, char *detail, size_t detaillen)
{
    /* JWT-SVID §3.3 and RFC 7519 §4.1.4: exp is required and must lie in the future. */
    json_t *exp = json_object_get(claims, "exp");
    if (exp == NULL) {
        return "claims have no exp (JWT-SVID §3.3)";
    }
    if (!json_is_number(exp)) {
        return "exp is not a NumericDate number (RFC 7519 §2)";
    }
    if (numeric_cmp(exp, now) <= 0) {
        return "token expired (RFC 7519 §4.1.4)";
    }
    /* RFC 7519 §4.1.6: a token issued in the future, beyond clock skew, is not ours. */
    json_t *iat = json_object_get(claims, "iat");
    if (iat != NULL && !json_is_number(iat)) {
        return "iat is not a NumericDate number (RFC 7519 §2)";
    }
    if (iat != NULL && numeric_cmp(iat, now + JWT_CLOCK_SKEW_SECS) > 0) {
        return "iat is in the future (RFC 7519 §4.1.6)";
    }
    /* RFC 7519 §4.1.5: not to be accepted before nbf. */
    json_t *nbf = json_object_get(claims, "nbf");
    if (nbf != NULL && !json_is_number(nbf)) {
        return "nbf is not a NumericDate number (RFC 7519 §2)";
    }
    if (nbf != NULL && numeric_cmp(nbf, now + JWT_CLOCK_SKEW_SECS) > 0) {
        return "token not yet valid: nbf is in the future (RFC 7519 §4.1.5)";
    }
    /* JWT-SVID §3.1: sub is the SPIFFE ID of the workload, here of our trust domain. */
    json_t *sub = json_object_get(claims, "sub");
    if (sub == NULL || !json_is_string(sub)) {
        return "claims have no sub string (JWT-SVID §3.1)";
    }
    char idwhy[128];
    if (as_spiffe_id_check(json_string_value(sub), trust_domain, idwhy, sizeof idwhy) != AS_OK) {
        snprintf(detail, detaillen, "sub is not a SPIFFE ID of the trust domain: %s", idwhy);
        return detail;
    }
    /* JWT-SVID §3.2 and RFC 7519 §4.1.3: aud is required, and we must be one of its values. */
    json_t *aud = json_object_get(claims, "aud");
    bool found = false;
    if (aud == NULL) {
        return "claims have no aud (JWT-SVID §3.2)";
    }
    if (json_is_string(aud)) {
        found = strcmp(json_string_value(aud), audience) == 0;
    } else if (json_is_array(aud) && json_array_size(aud) > 0) {
        size_t i;
        json_t *a;
        json_array_foreach(aud, i, a)
        {
            if (!json_is_string(a)) {
                return "aud holds a value that is not a string (RFC 7519 §4.1.3)";
            }
            found = found || strcmp(json_string_value(a), audience) == 0;
        }
    } else {
        return "aud is neither a string nor a non-empty array of strings (RFC 7519 §4.1.3)";
    }
    if (!found) {
        return "audience not in aud (JWT-SVID §3.2)";
    }
    /* RFC 7519 §4.1.7: jti is a case-sensitive string. */
    json_t *jti = json_object_get(claims, "jti");
    if (jti != NULL && !json_is_string(jti)) {
        return "jti is not a string (RFC 7519 §4.1.7)";
    }
    return NULL;
}

enum as_err as_jwt_svid_validate(const char *token, const struct as_jwtkey *const *keys,
                                 size_t nkeys, const char *audience, const char *trust_domain,
                                 int64_t now, json_t **claims, char *why, size_t whylen)
{
    enum as_err r = AS_ERR_INVALID;
    const char *reason = NULL;
    char detail[192];
    json_t *hdr = NULL;
    json_t *payload = NULL;
    char *work = NULL;
    const struct as_jwtkey *key = NULL;
    unsigned char sig[ES256_SIG_BYTES + 3];
    unsigned char *dec = NULL;
    const char *h64 = NULL;
    const char *p64 = NULL;
    const char *s64 = NULL;
    size_t h64len = 0;
    size_t p64len = 0;
    size_t s64len = 0;
    size_t len = 0;
    size_t dots[2] = {0, 0};
    size_t ndots = 0;
    size_t n = 0;

    if (why != NULL && whylen > 0) {
        why[0] = '\0';
    }
    if (claims != NULL) {
        *claims = NULL;
    }
    if (token == NULL || claims == NULL || (keys == NULL && nkeys > 0) || audience == NULL ||
        audience[0] == '\0' || trust_domain == NULL || now < 0 || now > JWT_MAX_TIME) {
        reason = "bad arguments to JWT-SVID validation";
        goto out;
    }
    len = strnlen(token, JWT_MAX_BYTES + 1);
    if (len > JWT_MAX_BYTES) {
        reason = "token larger than 16384 bytes";
        goto out;
    }
    /* RFC 7515 §7.1: BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature), without
     * padding (§2), and nothing else. */
    for (size_t i = 0; i < len; i++) {
        if (token[i] == '.') {
            if (ndots < 2) {
                dots[ndots] = i;
            }
            ndots++;
        } else if (token[i] == '=') {
            reason = "base64url padding '=' is not allowed (RFC 7515 §2)";
            goto out;
        } else if (b64url_value((unsigned char)token[i]) < 0) {
            reason = "token has a character outside base64url and '.' (RFC 7515 §7.1)";
            goto out;
        }
    }
    if (ndots != 2) {
        reason = "token must have exactly three parts (JWS Compact Serialization, RFC 7515 §7.1)";
        goto out;
    }
    h64 = token;
    h64len = dots[0];
    p64 = token + dots[0] + 1;
    p64len = dots[1] - dots[0] - 1;
    s64 = token + dots[1] + 1;
    s64len = len - dots[1] - 1;
    if (h64len == 0 || p64len == 0 || s64len == 0) {
        reason = "token has an empty part (JWT-SVID requires a signed JWS)";
        goto out;
    }
    /* Scratch for the translated text, then room for the decoded bytes of any part. */
    work = malloc(2 * (len + 4));
    if (work == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    dec = (unsigned char *)work + len + 4;

    /* RFC 7515 §5.2 steps 2-5: the header, before any key or signature is touched. */
    if (!as_pki_b64url_decode(h64, h64len, work, dec, &n)) {
        reason = "header is not canonical base64url (RFC 7515 §2)";
        goto out;
    }
    hdr = as_pki_json_object_strict(dec, n);
    if (hdr == NULL) {
        reason = "header is not a JSON object (UTF-8, no duplicate members, depth <= 32)";
        goto out;
    }
    if ((reason = check_header(hdr, keys, nkeys, &key)) != NULL) {
        goto out;
    }

    /* RFC 7515 §5.2 steps 6 and 8 with RFC 7518 §3.4: exactly 64 octets R||S, not DER. */
    if (s64len != ES256_SIG_B64_CHARS) {
        reason = "signature is not a raw 64-byte R||S (RFC 7518 §3.4)";
        goto out;
    }
    if (!as_pki_b64url_decode(s64, s64len, work, sig, &n) || n != ES256_SIG_BYTES) {
        reason = "signature is not canonical base64url of 64 bytes (RFC 7515 §2)";
        goto out;
    }
    /* The JWS Signing Input is the token up to the second '.', exactly as received. */
    if ((r = es256_verify(key, token, dots[1], sig)) != AS_OK) {
        if (r == AS_ERR_INVALID) {
            reason = "signature does not verify (RFC 7515 §5.2 step 8)";
        }
        goto out;
    }
    r = AS_ERR_INVALID;

    /* RFC 7519 §7.2 steps 9-10: only now, authenticated, is the payload read. */
    if (!as_pki_b64url_decode(p64, p64len, work, dec, &n)) {
        reason = "payload is not canonical base64url (RFC 7515 §2)";
        goto out;
    }
    payload = as_pki_json_object_strict(dec, n);
    if (payload == NULL) {
        reason = "claims are not a JSON object (UTF-8, no duplicate members, depth <= 32)";
        goto out;
    }
    if ((reason = check_claims(payload, audience, trust_domain, now, detail, sizeof detail)) !=
        NULL) {
        goto out;
    }
    *claims = payload;
    payload = NULL;
    r = AS_OK;
out:
    if (r != AS_OK && reason == NULL) {
        reason = as_strerror(r);
    }
    if (r != AS_OK && why != NULL && whylen > 0) {
        snprintf(why, whylen, "%s", reason);
    }
    json_decref(hdr);
    json_decref(payload);
    free(work);
    return r;
}
