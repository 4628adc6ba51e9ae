/*
 * fuzz_jwt_svid: as_jwt_svid_validate, the check every JWT-SVID presented to the server goes
 * through, against an ES256 key made once with as_jwtkey_generate.
 *
 * The first input byte picks how the rest becomes a token:
 *   0  the bytes are the token;
 *   1  they are XORed into one of the tokens minted at start-up (byte 1 picks which, byte 2
 *      where), so that the fuzzer works on nearly valid tokens;
 *   2  they are a JOSE header and a claims object (split at the first NUL; no NUL: the key's
 *      own header and the bytes as claims; "$KID" in the header becomes the key's kid), which
 *      are encoded and signed with the key, so that the claim checks after the signature are
 *      reached at all;
 *   3  they are claims spliced between the header and the signature of a minted token.
 *
 * The oracle: a token whose signature the key did not make (modes 0, 1 and 3) is never
 * accepted, except byte for byte one of the valid tokens minted at start-up. A token the key
 * signed (mode 2) is accepted only with alg ES256, the key's kid, no crit, exp after now, iat
 * and nbf not in the future, a sub in the trust domain and the audience in aud; the same token
 * with its signature or its length disturbed is refused. A refusal always says why.
 */
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/common.h"
#include "fuzz.h"
#include "pki/pki.h"

#define TD "example.org"
#define AUD "authsvc"
#define SUB "spiffe://" TD "/ns/fuzz/sa/jwt"
/* 2026-01-01T00:00:00Z. Fixed, so that a replayed input gets the same answer on any day. */
#define NOW 1767225600LL
#define SKEW 60
#define MAX_TOKEN (16 * 1024)
#define B64URL_LEN(n) (4 * (((n) + 2) / 3) + 1)

/* The minted tokens: which the validator must accept, and which it must not. */
enum base {
    BASE_OK_ONE_AUD,  /* aud "authsvc" */
    BASE_OK_AUD_LIST, /* aud ["other", "authsvc"] */
    BASE_WRONG_AUD,   /* aud "other": signed, but not for us */
    BASE_EXPIRED,     /* exp an hour ago */
    BASE_FOREIGN,     /* signed by a key the validator is not given */
    N_BASES,
};

static struct as_jwtkey *g_key;
static struct as_jwtkey *g_other;
static EVP_PKEY *g_priv; /* g_key's private half, to sign what the fuzzer writes (mode 2) */
static char *g_base[N_BASES];
static char g_header_json[256];

static char *mint(const struct as_jwtkey *k, const char *aud1, const char *aud2, int64_t iat,
                  int64_t exp)
{
    char jti[64];
    char *tok = NULL;
    json_t *auds = json_array();
    FUZZ_CHECK(auds != NULL);
    FUZZ_CHECK(json_array_append_new(auds, json_string(aud1)) == 0);
    if (aud2 != NULL) {
        FUZZ_CHECK(json_array_append_new(auds, json_string(aud2)) == 0);
    }
    FUZZ_CHECK(as_jwt_svid_mint(k, SUB, auds, iat, exp, jti, sizeof jti, &tok) == AS_OK);
    json_decref(auds);
    return tok;
}

/*
 * The key's private half, for mode 2: the only way out of the opaque key is its own save
 * function, so it is written to a private temporary directory, read back and removed.
 */
static EVP_PKEY *private_half(const struct as_jwtkey *k)
{
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    char path[600];
    snprintf(dir, sizeof dir, "%s/fuzz_jwt_svid.XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    FUZZ_CHECK(as_jwtkey_save(k, dir, "fuzz") == AS_OK);
    snprintf(path, sizeof path, "%s/fuzz-jwt-key.pem", dir);
    FILE *f = fopen(path, "r");
    FUZZ_CHECK(f != NULL);
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    FUZZ_CHECK(unlink(path) == 0 && rmdir(dir) == 0);
    FUZZ_CHECK(pkey != NULL);
    return pkey;
}

static enum as_err validate(const char *token, json_t **claims, char *why, size_t whylen)
{
    const struct as_jwtkey *keys[] = {g_key};
    return as_jwt_svid_validate(token, keys, 1, AUD, TD, NOW, claims, why, whylen);
}

static void init_once(void)
{
    if (g_key != NULL) {
        return;
    }
    as_log_set_level(AS_LOG_ERROR);
    FUZZ_CHECK(as_jwtkey_generate(&g_key) == AS_OK && g_key != NULL);
    FUZZ_CHECK(as_jwtkey_generate(&g_other) == AS_OK && g_other != NULL);
    g_priv = private_half(g_key);
    g_base[BASE_OK_ONE_AUD] = mint(g_key, AUD, NULL, NOW - 10, NOW + 3600);
    g_base[BASE_OK_AUD_LIST] = mint(g_key, "other", AUD, NOW - 10, NOW + 3600);
    g_base[BASE_WRONG_AUD] = mint(g_key, "other", NULL, NOW - 10, NOW + 3600);
    g_base[BASE_EXPIRED] = mint(g_key, AUD, NULL, NOW - 7200, NOW - 3600);
    g_base[BASE_FOREIGN] = mint(g_other, AUD, NULL, NOW - 10, NOW + 3600);
    snprintf(g_header_json, sizeof g_header_json,
             "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", as_jwtkey_kid(g_key));
    /* Without this the oracle would be vacuous: the valid tokens must be accepted. */
    for (int i = 0; i < N_BASES; i++) {
        json_t *claims = NULL;
        enum as_err r = validate(g_base[i], &claims, NULL, 0);
        FUZZ_CHECK((r == AS_OK) == (i == BASE_OK_ONE_AUD || i == BASE_OK_AUD_LIST));
        json_decref(claims);
    }
}

/* A token the key did not sign is accepted only as one of the valid minted tokens. */
static void check_unsigned(const char *token)
{
    json_t *claims = NULL;
    char why[128];
    why[0] = '\0';
    enum as_err r = validate(token, &claims, why, sizeof why);
    if (r != AS_OK) {
        FUZZ_CHECK(claims == NULL);
        FUZZ_CHECK(why[0] != '\0');
        return;
    }
    json_decref(claims);
    bool minted =
        strcmp(token, g_base[BASE_OK_ONE_AUD]) == 0 || strcmp(token, g_base[BASE_OK_AUD_LIST]) == 0;
    if (!minted) {
        fprintf(stderr, "fuzz_jwt_svid: accepted a token the key did not sign: %s\n", token);
        abort();
    }
}

static char *b64url_dup(const void *in, size_t n)
{
    char *out = fuzz_xmalloc(B64URL_LEN(n));
    as_b64url(in, n, out);
    return out;
}

/* header "." payload "." sig, each part given already encoded. */
static char *join3(const char *h, const char *p, const char *s)
{
    size_t n = strlen(h) + strlen(p) + strlen(s) + 3;
    char *t = fuzz_xmalloc(n);
    snprintf(t, n, "%s.%s.%s", h, p, s);
    return t;
}

/* ES256 over msg as a JWS wants it: raw R || S, 32 bytes each (RFC 7518 §3.4). */
static void es256_sign(const char *msg, size_t len, unsigned char rs[64])
{
    unsigned char der[80];
    size_t derlen = sizeof der;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FUZZ_CHECK(ctx != NULL);
    FUZZ_CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, g_priv) == 1);
    FUZZ_CHECK(EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)msg, len) == 1);
    EVP_MD_CTX_free(ctx);
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    FUZZ_CHECK(sig != NULL);
    const BIGNUM *r = NULL;
    const BIGNUM *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    FUZZ_CHECK(BN_bn2binpad(r, rs, 32) == 32 && BN_bn2binpad(s, rs + 32, 32) == 32);
    ECDSA_SIG_free(sig);
}

/* Replaces each "$KID" of the fuzzer's header with the key's kid (made at run time). */
static char *expand_kid(const char *in, size_t n, size_t *outlen)
{
    const char *kid = as_jwtkey_kid(g_key);
    size_t kl = strlen(kid);
    char *out = fuzz_xmalloc(n * (kl + 1) + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 4 && memcmp(in + i, "$KID", 4) == 0) {
            memcpy(out + o, kid, kl);
            o += kl;
            i += 4;
        } else {
            out[o++] = in[i++];
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

static bool aud_has(json_t *aud)
{
    if (json_is_string(aud)) {
        return strcmp(json_string_value(aud), AUD) == 0;
    }
    size_t i;
    json_t *a;
    bool found = false;
    json_array_foreach(aud, i, a)
    {
        found = found || (json_is_string(a) && strcmp(json_string_value(a), AUD) == 0);
    }
    return found;
}

static double number(json_t *v)
{
    return json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v);
}

/* What an accepted token must hold: the header as decoded by us, the claims as returned. */
static void check_accepted(const char *hdr_json, size_t hdr_len, json_t *claims)
{
    json_t *hdr = json_loadb(hdr_json, hdr_len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(json_is_object(hdr));
    FUZZ_CHECK(json_is_string(json_object_get(hdr, "alg")) &&
               strcmp(json_string_value(json_object_get(hdr, "alg")), "ES256") == 0);
    FUZZ_CHECK(json_is_string(json_object_get(hdr, "kid")) &&
               strcmp(json_string_value(json_object_get(hdr, "kid")), as_jwtkey_kid(g_key)) == 0);
    FUZZ_CHECK(json_object_get(hdr, "crit") == NULL);
    json_t *typ = json_object_get(hdr, "typ");
    FUZZ_CHECK(typ == NULL ||
               (json_is_string(typ) && (strcmp(json_string_value(typ), "JWT") == 0 ||
                                        strcmp(json_string_value(typ), "JOSE") == 0)));
    json_decref(hdr);

    FUZZ_CHECK(json_is_object(claims));
    json_t *exp = json_object_get(claims, "exp");
    FUZZ_CHECK(json_is_number(exp) && number(exp) > (double)NOW);
    json_t *iat = json_object_get(claims, "iat");
    FUZZ_CHECK(iat == NULL || (json_is_number(iat) && number(iat) <= (double)(NOW + SKEW)));
    json_t *nbf = json_object_get(claims, "nbf");
    FUZZ_CHECK(nbf == NULL || (json_is_number(nbf) && number(nbf) <= (double)(NOW + SKEW)));
    json_t *sub = json_object_get(claims, "sub");
    FUZZ_CHECK(json_is_string(sub));
    FUZZ_CHECK(as_spiffe_id_check(json_string_value(sub), TD, NULL, 0) == AS_OK);
    FUZZ_CHECK(aud_has(json_object_get(claims, "aud")));
    json_t *jti = json_object_get(claims, "jti");
    FUZZ_CHECK(jti == NULL || json_is_string(jti));
}

/* Mode 2: the fuzzer writes header and claims, the key signs them. */
static void fuzz_signed(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    const char *hsrc = g_header_json;
    size_t hsrc_len = strlen(g_header_json);
    const uint8_t *claims_src = data;
    size_t claims_len = size;
    if (nul != NULL) {
        hsrc = (const char *)data;
        hsrc_len = (size_t)(nul - data);
        claims_src = nul + 1;
        claims_len = size - hsrc_len - 1;
    }
    size_t hlen = 0;
    char *hdr_json = expand_kid(hsrc, hsrc_len, &hlen);
    char *h64 = b64url_dup(hdr_json, hlen);
    char *p64 = b64url_dup(claims_src, claims_len);
    size_t in_len = strlen(h64) + 1 + strlen(p64);
    if (in_len + 1 + 86 > MAX_TOKEN) {
        goto out;
    }
    char *input = join3(h64, p64, "");
    input[in_len] = '\0'; /* "h.p" without the trailing '.' */
    unsigned char rs[64];
    es256_sign(input, in_len, rs);
    char *s64 = b64url_dup(rs, sizeof rs);
    char *token = join3(h64, p64, s64);
    free(input);

    json_t *claims = NULL;
    char why[128];
    why[0] = '\0';
    enum as_err r = validate(token, &claims, why, sizeof why);
    if (r != AS_OK) {
        FUZZ_CHECK(claims == NULL && why[0] != '\0');
    } else {
        check_accepted(hdr_json, hlen, claims);
        json_decref(claims);
        size_t tl = strlen(token);
        /* Another R||S, or one character fewer: not the signature the key made. The last
         * character carries 4 unused bits (64 bytes = 85 1/3 characters), so the flip is in
         * the one before it. */
        token[tl - 2] = token[tl - 2] == 'A' ? 'B' : 'A';
        check_unsigned(token);
        token[tl - 1] = '\0';
        check_unsigned(token);
    }
    free(token);
    free(s64);
out:
    free(p64);
    free(h64);
    free(hdr_json);
}

/* Mode 3: claims spliced into a minted token keep its header and signature. */
static void fuzz_spliced(const uint8_t *data, size_t size)
{
    const char *base = g_base[BASE_OK_ONE_AUD];
    const char *dot1 = strchr(base, '.');
    const char *dot2 = strrchr(base, '.');
    char *h64 = fuzz_strndup((const uint8_t *)base, (size_t)(dot1 - base));
    char *p64 = b64url_dup(data, size);
    char *token = join3(h64, p64, dot2 + 1);
    if (strlen(token) <= MAX_TOKEN) {
        check_unsigned(token);
    }
    free(token);
    free(p64);
    free(h64);
}

/* Mode 1: the input XORed into a minted token from an offset it chooses. */
static void fuzz_mutated(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return;
    }
    const char *base = g_base[data[0] % N_BASES];
    size_t len = strlen(base);
    size_t off = (size_t)data[1] * len / 256;
    char *token = fuzz_strndup((const uint8_t *)base, len);
    for (size_t i = 2; i < size && off < len; i++, off++) {
        token[off] = (char)(token[off] ^ data[i]);
    }
    check_unsigned(token);
    free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size == 0) {
        check_unsigned("");
        return 0;
    }
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0: {
        char *token = fuzz_strndup(rest, n);
        check_unsigned(token);
        /* No key at all: nothing verifies. */
        json_t *claims = NULL;
        FUZZ_CHECK(as_jwt_svid_validate(token, NULL, 0, AUD, TD, NOW, &claims, NULL, 0) != AS_OK);
        FUZZ_CHECK(claims == NULL);
        free(token);
        break;
    }
    case 1:
        fuzz_mutated(rest, n);
        break;
    case 2:
        fuzz_signed(rest, n);
        break;
    case 3:
        fuzz_spliced(rest, n);
        break;
    }
    ERR_clear_error();
    return 0;
}
