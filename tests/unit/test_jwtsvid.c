/*
 * Unit tests for pki/jwtsvid.c: JWT signing keys (generate, save, load, kid, JWK), minting and
 * validation of JWT-SVIDs (SPIFFE JWT-SVID, RFC 7515/7518/7519).
 *
 * Every bad token is crafted here from raw JSON text (so duplicate members, wrong types and
 * foreign algorithms can be written at all) and, where the case needs a valid signature, signed
 * with OpenSSL directly using the private key read back from the saved PEM. Each positive case has
 * a negative twin. With AS_BENCH=1 the program also prints mints/s and validations/s over 20000
 * iterations; with AS_TEST_VERBOSE set it prints the reason given for every crafted token.
 */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "check.h"
#include "common/common.h"
#include "pki/pki.h"

#define TD "example.org"
#define SUB "spiffe://example.org/ns/prod/sa/web"
#define AUD "reports"
#define TTL 300
#define BIG (20 * 1024)

static int64_t g_now;
static struct as_jwtkey *g_a; /* the key under test */
static struct as_jwtkey *g_b; /* a second trusted key */
static EVP_PKEY *g_pa;        /* g_a's private key, read back from its PEM file */
static EVP_PKEY *g_pb;        /* g_b's */
static char g_dir[64];

/* ---- file system helpers ---- */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_dir(const char *path)
{
    nftw(path, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *dir, const char *name, const char *data, size_t len, mode_t mode)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) != 0) {
        perror("write_file");
        exit(2);
    }
    close(fd);
}

static EVP_PKEY *read_pem_key(const char *dir, const char *base)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s-jwt-key.pem", dir, base);
    FILE *f = fopen(p, "r");
    if (f == NULL) {
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/* ---- base64url, written here independently of the code under test ---- */

static size_t b64u_enc(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = t[(acc >> bits) & 63];
        }
    }
    if (bits > 0) {
        out[o++] = t[(acc << (6 - bits)) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64u_val(char c)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p = c ? strchr(t, c) : NULL;
    return p ? (int)(p - t) : -1;
}

/* Lenient decoder for inspecting what we minted; -1 on a bad character. */
static long b64u_dec(const char *in, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64u_val(in[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

static bool is_b64u(const char *s)
{
    for (; *s; s++) {
        if (b64u_val(*s) < 0) {
            return false;
        }
    }
    return true;
}

/* Decodes part idx (0, 1, 2) of a compact JWS into a NUL-terminated malloc'd string. */
static char *part(const char *tok, int idx, long *outlen)
{
    const char *p = tok;
    for (int i = 0; i < idx; i++) {
        p = strchr(p, '.');
        if (p == NULL) {
            return NULL;
        }
        p++;
    }
    const char *end = strchr(p, '.');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    char *out = calloc(1, n + 4);
    long m = b64u_dec(p, n, (unsigned char *)out);
    if (m < 0) {
        free(out);
        return NULL;
    }
    if (outlen) {
        *outlen = m;
    }
    return out;
}

/* ---- crafting tokens ---- */

/* Substitutes $KIDB, $KID, $NOW, $EXP, $PAST, $FUT, $SOON, $SUB into a malloc'd string. */
static char *subst(const char *tmpl)
{
    struct {
        const char *name;
        char value[64];
    } vars[] = {{"$KIDB", ""}, {"$KID", ""}, {"$NOW", ""},  {"$EXP", ""},
                {"$PAST", ""}, {"$FUT", ""}, {"$SOON", ""}, {"$SUB", SUB}};
    snprintf(vars[0].value, sizeof vars[0].value, "%s", as_jwtkey_kid(g_b));
    snprintf(vars[1].value, sizeof vars[1].value, "%s", as_jwtkey_kid(g_a));
    snprintf(vars[2].value, sizeof vars[2].value, "%lld", (long long)g_now);
    snprintf(vars[3].value, sizeof vars[3].value, "%lld", (long long)(g_now + TTL));
    snprintf(vars[4].value, sizeof vars[4].value, "%lld", (long long)(g_now - 10));
    snprintf(vars[5].value, sizeof vars[5].value, "%lld", (long long)(g_now + 3600));
    snprintf(vars[6].value, sizeof vars[6].value, "%lld", (long long)(g_now + 30));
    size_t cap = strlen(tmpl) * 4 + 256;
    char *out = malloc(cap);
    size_t o = 0;
    for (const char *p = tmpl; *p;) {
        bool done = false;
        for (size_t i = 0; i < sizeof vars / sizeof vars[0] && *p == '$'; i++) {
            size_t n = strlen(vars[i].name);
            if (strncmp(p, vars[i].name, n) == 0) {
                size_t m = strlen(vars[i].value);
                memcpy(out + o, vars[i].value, m);
                o += m;
                p += n;
                done = true;
                break;
            }
        }
        if (!done) {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    return out;
}

enum sig {
    SIG_A,        /* ES256 raw R||S by key A */
    SIG_B,        /* ES256 raw R||S by key B */
    SIG_DER,      /* ES256 by key A, left in DER */
    SIG_HS256,    /* HMAC-SHA256 keyed with A's public key PEM */
    SIG_NONE,     /* empty signature part */
    SIG_ZERO,     /* 64 zero bytes */
    SIG_NONCANON, /* A's signature with the unused bits of the last character set */
    SIG_SHORT,    /* A's signature cut to 63 bytes */
    SIG_LONG,     /* A's signature plus one byte */
};

/* ES256 over msg by pkey; raw R||S (64 bytes) or DER. Returns the length. */
static size_t es256(EVP_PKEY *pkey, const char *msg, size_t len, bool der, unsigned char *out)
{
    unsigned char d[80];
    size_t dlen = sizeof d;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(ctx, d, &dlen, (const unsigned char *)msg, len) != 1) {
        fprintf(stderr, "test signing failed\n");
        exit(2);
    }
    EVP_MD_CTX_free(ctx);
    if (der) {
        memcpy(out, d, dlen);
        return dlen;
    }
    const unsigned char *p = d;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    const BIGNUM *r = NULL;
    const BIGNUM *sv = NULL;
    ECDSA_SIG_get0(s, &r, &sv);
    BN_bn2binpad(r, out, 32);
    BN_bn2binpad(sv, out + 32, 32);
    ECDSA_SIG_free(s);
    return 64;
}

/* Verifies a DER ECDSA signature with a fresh context: OpenSSL 3.0 keeps the first key of a
 * re-initialised EVP_MD_CTX, so reusing one across keys would test the wrong key. */
static bool verify_der(EVP_PKEY *pkey, const unsigned char *der, size_t derlen, const char *msg,
                       size_t len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
              EVP_DigestVerify(ctx, der, derlen, (const unsigned char *)msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

static char *pub_pem(EVP_PKEY *pkey, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pkey);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    BIO_free(bio);
    return out;
}

/* Builds b64(hdr) "." b64(claims) "." b64(signature) from JSON text templates. */
static char *craft(const char *hdr_tmpl, const char *claims_tmpl, enum sig mode)
{
    char *hdr = subst(hdr_tmpl);
    char *cl = subst(claims_tmpl);
    size_t hl = strlen(hdr);
    size_t cll = strlen(cl);
    char *tok = malloc(2 * (hl + cll) + 256);
    size_t o = b64u_enc((const unsigned char *)hdr, hl, tok);
    tok[o++] = '.';
    o += b64u_enc((const unsigned char *)cl, cll, tok + o);
    unsigned char sig[96];
    size_t slen = 0;
    switch (mode) {
    case SIG_A:
    case SIG_NONCANON:
        slen = es256(g_pa, tok, o, false, sig);
        break;
    case SIG_B:
        slen = es256(g_pb, tok, o, false, sig);
        break;
    case SIG_DER:
        slen = es256(g_pa, tok, o, true, sig);
        break;
    case SIG_HS256: {
        size_t klen = 0;
        char *key = pub_pem(g_pa, &klen);
        if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen, (unsigned char *)tok, o, sig,
                      sizeof sig, &slen) == NULL) {
            exit(2);
        }
        free(key);
        break;
    }
    case SIG_NONE:
        slen = 0;
        break;
    case SIG_ZERO:
        memset(sig, 0, 64);
        slen = 64;
        break;
    case SIG_SHORT:
        slen = es256(g_pa, tok, o, false, sig) - 1;
        break;
    case SIG_LONG:
        slen = es256(g_pa, tok, o, false, sig);
        sig[slen++] = 0;
        break;
    }
    tok[o++] = '.';
    o += b64u_enc(sig, slen, tok + o);
    if (mode == SIG_NONCANON) {
        /* 64 bytes leave 4 unused bits in the last of 86 characters; set one. */
        static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        tok[o - 1] = t[b64u_val(tok[o - 1]) | 1];
    }
    tok[o] = '\0';
    free(hdr);
    free(cl);
    return tok;
}

/* ---- validation expectations ---- */

static const struct as_jwtkey *g_keys[2];

static void expect_with(const char *name, const char *tok, const struct as_jwtkey *const *keys,
                        size_t nkeys, const char *aud, bool ok, const char *why_sub)
{
    json_t *claims = (json_t *)1;
    char why[128];
    memset(why, 'x', sizeof why);
    enum as_err r =
        as_jwt_svid_validate(tok, keys, nkeys, aud, TD, g_now, &claims, why, sizeof why);
    bool pass;
    if (ok) {
        pass = r == AS_OK && claims != NULL && json_is_object(claims);
    } else {
        pass = r == AS_ERR_INVALID && claims == NULL && why[0] != '\0' &&
               (why_sub == NULL || strstr(why, why_sub) != NULL);
    }
    CHECK(pass);
    if (getenv("AS_TEST_VERBOSE") != NULL) {
        printf("  %-40s %s\n", name, r == AS_OK ? "accepted" : why);
    }
    if (!pass) {
        fprintf(stderr, "  case \"%s\": rc=%d why=\"%s\"\n", name, r, r == AS_OK ? "" : why);
    }
    if (r == AS_OK) {
        json_decref(claims);
    }
}

static void expect(const char *name, const char *tok, bool ok, const char *why_sub)
{
    expect_with(name, tok, g_keys, 2, AUD, ok, why_sub);
}

/* ---- tests ---- */

#define HDR "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"typ\":\"JWT\"}"
#define CLAIMS "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"iat\":$NOW}"

struct bad_case {
    const char *name;
    const char *hdr;
    const char *claims;
    enum sig sig;
    bool ok;
    const char *why;
};

static const struct bad_case cases[] = {
    /* Positive twins: the crafting itself is sound, and what the spec allows passes. */
    {"baseline", HDR, CLAIMS, SIG_A, true, NULL},
    {"typ JOSE", "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"typ\":\"JOSE\"}", CLAIMS, SIG_A, true,
     NULL},
    {"no typ", "{\"alg\":\"ES256\",\"kid\":\"$KID\"}", CLAIMS, SIG_A, true, NULL},
    {"member order", "{\"kid\":\"$KID\",\"typ\":\"JWT\",\"alg\":\"ES256\"}", CLAIMS, SIG_A, true,
     NULL},
    {"second trusted key", "{\"alg\":\"ES256\",\"kid\":\"$KIDB\",\"typ\":\"JWT\"}", CLAIMS, SIG_B,
     true, NULL},
    {"aud array with ours", HDR,
     "{\"sub\":\"$SUB\",\"aud\":[\"other\",\"" AUD "\"],\"exp\":$EXP,\"iat\":$NOW}", SIG_A, true,
     NULL},
    {"iat within skew", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"iat\":$SOON}",
     SIG_A, true, NULL},
    {"no iat", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP}", SIG_A, true, NULL},
    {"nbf within skew", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"nbf\":$SOON}",
     SIG_A, true, NULL},
    {"exp fractional", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP.5}", SIG_A, true,
     NULL},
    {"jti string", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"jti\":\"abc\"}",
     SIG_A, true, NULL},
    {"private claim", HDR,
     "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"x\":{\"y\":[1,2]}}", SIG_A, true, NULL},

    /* Algorithms (JWT-SVID §2.1): decided before any key is touched. */
    {"alg none, no signature", "{\"alg\":\"none\",\"kid\":\"$KID\",\"typ\":\"JWT\"}", CLAIMS,
     SIG_NONE, false, "empty part"},
    {"alg none, signed", "{\"alg\":\"none\",\"kid\":\"$KID\",\"typ\":\"JWT\"}", CLAIMS, SIG_A,
     false, "alg none"},
    {"alg None", "{\"alg\":\"None\",\"kid\":\"$KID\",\"typ\":\"JWT\"}", CLAIMS, SIG_A, false,
     "alg refused"},
    {"HS256 keyed with the public key PEM", "{\"alg\":\"HS256\",\"kid\":\"$KID\",\"typ\":\"JWT\"}",
     CLAIMS, SIG_HS256, false, "alg refused"},
    {"RS256 header", "{\"alg\":\"RS256\",\"kid\":\"$KID\",\"typ\":\"JWT\"}", CLAIMS, SIG_A, false,
     "alg refused"},
    {"ES384 header", "{\"alg\":\"ES384\",\"kid\":\"$KID\",\"typ\":\"JWT\"}", CLAIMS, SIG_A, false,
     "alg refused"},
    {"missing alg", "{\"kid\":\"$KID\",\"typ\":\"JWT\"}", CLAIMS, SIG_A, false, "no alg"},
    {"alg not a string", "{\"alg\":[\"ES256\"],\"kid\":\"$KID\",\"typ\":\"JWT\"}", CLAIMS, SIG_A,
     false, "alg is not a string"},
    {"alg null", "{\"alg\":null,\"kid\":\"$KID\",\"typ\":\"JWT\"}", CLAIMS, SIG_A, false,
     "alg is not a string"},

    /* Other header members. */
    {"typ JWS", "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"typ\":\"JWS\"}", CLAIMS, SIG_A, false,
     "typ"},
    {"typ lowercase jwt", "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"typ\":\"jwt\"}", CLAIMS, SIG_A,
     false, "typ"},
    {"typ number", "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"typ\":1}", CLAIMS, SIG_A, false, "typ"},
    {"crit header", "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"typ\":\"JWT\",\"crit\":[\"exp\"]}",
     CLAIMS, SIG_A, false, "crit"},
    {"crit empty", "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"crit\":[]}", CLAIMS, SIG_A, false,
     "crit"},
    {"jku header", "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"jku\":\"https://evil/k\"}", CLAIMS, SIG_A,
     false, "header member"},
    {"embedded jwk header", "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"jwk\":{\"kty\":\"EC\"}}", CLAIMS,
     SIG_A, false, "header member"},
    {"unknown kid", "{\"alg\":\"ES256\",\"kid\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}", CLAIMS,
     SIG_A, false, "unknown key id"},
    {"kid prefix", "{\"alg\":\"ES256\",\"kid\":\"$KIDx\"}", CLAIMS, SIG_A, false, "unknown key id"},
    {"missing kid", "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", CLAIMS, SIG_A, false, "kid"},
    {"empty kid", "{\"alg\":\"ES256\",\"kid\":\"\"}", CLAIMS, SIG_A, false, "kid"},
    {"kid number", "{\"alg\":\"ES256\",\"kid\":7}", CLAIMS, SIG_A, false, "kid"},
    {"duplicate alg in header", "{\"alg\":\"ES256\",\"alg\":\"none\",\"kid\":\"$KID\"}", CLAIMS,
     SIG_A, false, "header is not a JSON object"},
    {"duplicate kid in header", "{\"alg\":\"ES256\",\"kid\":\"$KIDB\",\"kid\":\"$KID\"}", CLAIMS,
     SIG_A, false, "header is not a JSON object"},
    {"header is an array", "[\"ES256\"]", CLAIMS, SIG_A, false, "header is not a JSON object"},
    {"header not JSON", "alg=ES256", CLAIMS, SIG_A, false, "header is not a JSON object"},
    {"header trailing data", HDR "{}", CLAIMS, SIG_A, false, "header is not a JSON object"},
    {"header bad UTF-8", "{\"alg\":\"ES256\",\"kid\":\"$KID\",\"typ\":\"JW\xff\"}", CLAIMS, SIG_A,
     false, "header is not a JSON object"},

    /* Signatures (RFC 7518 §3.4). */
    {"other key's signature", HDR, CLAIMS, SIG_B, false, "does not verify"},
    {"kid B, signed by A", "{\"alg\":\"ES256\",\"kid\":\"$KIDB\"}", CLAIMS, SIG_A, false,
     "does not verify"},
    {"stripped signature", HDR, CLAIMS, SIG_NONE, false, "empty part"},
    {"DER signature", HDR, CLAIMS, SIG_DER, false, "raw 64-byte"},
    {"63-byte signature", HDR, CLAIMS, SIG_SHORT, false, "raw 64-byte"},
    {"65-byte signature", HDR, CLAIMS, SIG_LONG, false, "raw 64-byte"},
    {"zero signature", HDR, CLAIMS, SIG_ZERO, false, "does not verify"},
    {"non-canonical base64url signature", HDR, CLAIMS, SIG_NONCANON, false, "canonical"},

    /* Claims (JWT-SVID §3, RFC 7519 §4.1). */
    {"string exp", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":\"$EXP\"}", SIG_A, false,
     "exp is not"},
    {"bool exp", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":true}", SIG_A, false,
     "exp is not"},
    {"expired", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$PAST,\"iat\":$PAST}", SIG_A,
     false, "expired"},
    {"exp equal to now", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$NOW}", SIG_A, false,
     "expired"},
    {"missing exp", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"iat\":$NOW}", SIG_A, false,
     "no exp"},
    {"null exp", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":null}", SIG_A, false,
     "exp is not"},
    {"iat far in the future", HDR,
     "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$FUT,\"iat\":$FUT}", SIG_A, false,
     "iat is in the future"},
    {"string iat", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"iat\":\"$NOW\"}",
     SIG_A, false, "iat is not"},
    {"nbf in the future", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$FUT,\"nbf\":$FUT}",
     SIG_A, false, "nbf"},
    {"wrong aud", HDR, "{\"sub\":\"$SUB\",\"aud\":\"billing\",\"exp\":$EXP}", SIG_A, false,
     "audience not in aud"},
    {"aud prefix of ours", HDR, "{\"sub\":\"$SUB\",\"aud\":\"report\",\"exp\":$EXP}", SIG_A, false,
     "audience not in aud"},
    {"aud array without ours", HDR, "{\"sub\":\"$SUB\",\"aud\":[\"a\",\"b\"],\"exp\":$EXP}", SIG_A,
     false, "audience not in aud"},
    {"missing aud", HDR, "{\"sub\":\"$SUB\",\"exp\":$EXP}", SIG_A, false, "no aud"},
    {"empty aud array", HDR, "{\"sub\":\"$SUB\",\"aud\":[],\"exp\":$EXP}", SIG_A, false, "aud"},
    {"aud array with a number", HDR, "{\"sub\":\"$SUB\",\"aud\":[\"" AUD "\",1],\"exp\":$EXP}",
     SIG_A, false, "aud"},
    {"aud object", HDR, "{\"sub\":\"$SUB\",\"aud\":{\"" AUD "\":1},\"exp\":$EXP}", SIG_A, false,
     "aud"},
    {"sub missing", HDR, "{\"aud\":\"" AUD "\",\"exp\":$EXP}", SIG_A, false, "no sub"},
    {"sub not a string", HDR, "{\"sub\":[\"$SUB\"],\"aud\":\"" AUD "\",\"exp\":$EXP}", SIG_A, false,
     "no sub"},
    {"sub foreign trust domain", HDR,
     "{\"sub\":\"spiffe://evil.org/ns/prod/sa/web\",\"aud\":\"" AUD "\",\"exp\":$EXP}", SIG_A,
     false, "sub is not a SPIFFE ID"},
    {"sub dot-dot segment", HDR,
     "{\"sub\":\"spiffe://example.org/a/../b\",\"aud\":\"" AUD "\",\"exp\":$EXP}", SIG_A, false,
     "sub is not a SPIFFE ID"},
    {"sub https scheme", HDR,
     "{\"sub\":\"https://example.org/web\",\"aud\":\"" AUD "\",\"exp\":$EXP}", SIG_A, false,
     "sub is not a SPIFFE ID"},
    {"sub bare trust domain", HDR,
     "{\"sub\":\"spiffe://example.org\",\"aud\":\"" AUD "\",\"exp\":$EXP}", SIG_A, false,
     "sub is not a SPIFFE ID"},
    {"sub with NUL", HDR, "{\"sub\":\"$SUB\\u0000/x\",\"aud\":\"" AUD "\",\"exp\":$EXP}", SIG_A,
     false, "claims are not a JSON object"},
    {"jti number", HDR, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"jti\":5}", SIG_A,
     false, "jti"},
    {"duplicate sub in claims", HDR,
     "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"sub\":\"spiffe://example.org/admin\"}",
     SIG_A, false, "claims are not a JSON object"},
    {"duplicate exp in claims", HDR,
     "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$PAST,\"exp\":$FUT}", SIG_A, false,
     "claims are not a JSON object"},
    {"claims are an array", HDR, "[\"$SUB\"]", SIG_A, false, "claims are not a JSON object"},
    {"claims are a string", HDR, "\"$SUB\"", SIG_A, false, "claims are not a JSON object"},
};

static void test_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tok = craft(cases[i].hdr, cases[i].claims, cases[i].sig);
        expect(cases[i].name, tok, cases[i].ok, cases[i].why);
        free(tok);
    }
}

/* Cases that need surgery on a validly signed token. */
static void test_structure(void)
{
    char *good = craft(HDR, CLAIMS, SIG_A);
    size_t n = strlen(good);
    char *dot1 = strchr(good, '.');
    char *dot2 = strchr(dot1 + 1, '.');
    char *t = malloc(n + 64);
    expect("structure baseline", good, true, NULL);

    /* Two and four segments. */
    snprintf(t, n + 64, "%.*s", (int)(dot2 - good), good);
    expect("2 segments", t, false, "three parts");
    snprintf(t, n + 64, "%s.%s", good, dot2 + 1);
    expect("4 segments", t, false, "three parts");
    snprintf(t, n + 64, "%s.", good);
    expect("trailing dot", t, false, "three parts");
    /* Empty header and empty payload. */
    snprintf(t, n + 64, "%s", dot1);
    expect("empty header", t, false, "empty part");
    snprintf(t, n + 64, "%.*s.%s", (int)(dot1 - good), good, dot2);
    expect("empty payload", t, false, "empty part");
    /* Padding and characters outside base64url. */
    snprintf(t, n + 64, "%.*s=%s", (int)(dot2 - good), good, dot2);
    expect("padding '=' on payload", t, false, "padding");
    snprintf(t, n + 64, "%s==", good);
    expect("padding '=' on signature", t, false, "padding");
    strcpy(t, good);
    t[dot1 - good + 3] = '+';
    expect("'+' in payload", t, false, "character outside base64url");
    strcpy(t, good);
    t[2] = '/';
    expect("'/' in header", t, false, "character outside base64url");
    snprintf(t, n + 64, "%s ", good);
    expect("trailing space", t, false, "character outside base64url");
    snprintf(t, n + 64, "%s\n", good);
    expect("trailing newline", t, false, "character outside base64url");
    snprintf(t, n + 64, "Bearer %s", good);
    expect("Bearer prefix", t, false, "character outside base64url");
    /* One character of the payload dropped: a length of 1 mod 4 is never base64url, and any other
     * damage breaks the signature. */
    snprintf(t, n + 64, "%.*s%s", (int)(dot2 - good - 1), good, dot2);
    expect("payload one character short", t, false, NULL);
    /* The header's base64url is five characters short of a multiple of 4 plus one. */
    snprintf(t, n + 64, "A%s", good);
    expect("header one character long", t, false, NULL);

    /* The header's base64url made 1 mod 4 long (never valid), or with unused bits set. */
    size_t hl = (size_t)(dot1 - good);
    size_t extra = (5 - hl % 4) % 4;
    snprintf(t, n + 64, "%.*s%.*s%s", (int)hl, good, (int)extra, "AAAA", dot1);
    CHECK_INT((hl + extra) % 4, 1);
    expect("header 1 mod 4 characters", t, false, "header is not canonical base64url");
    /* Blanks after the JSON make its length 1 mod 3, so the last character has 4 unused bits. */
    char *h = subst(HDR);
    char hdr_blank[160];
    snprintf(hdr_blank, sizeof hdr_blank, "%s%.*s", h, (int)((4 - strlen(h) % 3) % 3), "  ");
    free(h);
    char *nc = craft(hdr_blank, CLAIMS, SIG_A);
    char *ncdot = strchr(nc, '.');
    CHECK_INT((ncdot - nc) % 4, 2);
    expect("header with trailing blank", nc, true, NULL);
    {
        static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        ncdot[-1] = tb[b64u_val(ncdot[-1]) | 1];
    }
    expect("header non-canonical last character", nc, false, "header is not canonical base64url");
    free(nc);

    /* Tampered payload: the signature of the original over different claims. */
    char *evil = craft(HDR,
                       "{\"sub\":\"spiffe://example.org/admin\",\"aud\":\"" AUD
                       "\",\"exp\":$EXP,\"iat\":$NOW}",
                       SIG_A);
    char *edot1 = strchr(evil, '.');
    char *edot2 = strchr(edot1 + 1, '.');
    snprintf(t, n + 64, "%.*s%.*s%s", (int)(dot1 - good), good, (int)(edot2 - edot1), edot1, dot2);
    expect("tampered payload", t, false, "does not verify");
    /* Header swapped to B's kid with A's signature. */
    free(evil);
    evil = craft("{\"alg\":\"ES256\",\"kid\":\"$KIDB\",\"typ\":\"JWT\"}", CLAIMS, SIG_B);
    edot1 = strchr(evil, '.');
    snprintf(t, n + 64, "%.*s%s", (int)(edot1 - evil), evil, dot1);
    expect("header swapped", t, false, "does not verify");
    /* A flipped signature bit. */
    strcpy(t, good);
    t[n - 10] = t[n - 10] == 'A' ? 'B' : 'A';
    expect("signature bit flipped", t, false, "does not verify");

    free(evil);
    free(t);
    free(good);
}

/* Size and depth caps, each with its twin just inside the cap. */
static void test_caps(void)
{
    char *pad = malloc(BIG + 1);
    char *claims = malloc(BIG + 256);
    char *tok;

    memset(pad, 'a', 11500);
    pad[11500] = '\0';
    snprintf(claims, BIG + 256, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"p\":\"%s\"}",
             pad);
    tok = craft(HDR, claims, SIG_A);
    CHECK(strlen(tok) < 16 * 1024);
    expect("just under 16 KiB", tok, true, NULL);
    free(tok);

    memset(pad, 'a', 12500);
    pad[12500] = '\0';
    snprintf(claims, BIG + 256, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"p\":\"%s\"}",
             pad);
    tok = craft(HDR, claims, SIG_A);
    CHECK(strlen(tok) > 16 * 1024);
    expect("oversize token", tok, false, "larger than 16384");
    free(tok);

    /* Depth: the claims object is level 1, so 31 nested arrays make 32 and 32 make 33. */
    for (int depth = 31; depth <= 32; depth++) {
        char nest[80];
        memset(nest, '[', (size_t)depth);
        memset(nest + depth, ']', (size_t)depth);
        nest[2 * depth] = '\0';
        snprintf(claims, BIG + 256, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"x\":%s}",
                 nest);
        tok = craft(HDR, claims, SIG_A);
        expect(depth == 31 ? "claims depth 32" : "claims depth 33", tok, depth == 31,
               "claims are not a JSON object");
        free(tok);
    }
    /* Deep nesting in the header is refused before any key is looked at. */
    tok = craft("{\"alg\":\"ES256\",\"kid\":\"$KID\",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
                CLAIMS, SIG_A);
    expect("header depth 37", tok, false, "header is not a JSON object");
    free(tok);
    /* 2000 levels: jansson's own limit is 2048; ours stops far earlier. */
    char *deep = malloc(4100);
    memset(deep, '[', 2000);
    memset(deep + 2000, ']', 2000);
    deep[4000] = '\0';
    snprintf(claims, BIG + 256, "{\"sub\":\"$SUB\",\"aud\":\"" AUD "\",\"exp\":$EXP,\"x\":%s}",
             deep);
    tok = craft(HDR, claims, SIG_A);
    expect("claims depth 2001", tok, false, "claims are not a JSON object");
    free(tok);
    free(deep);
    free(pad);
    free(claims);
}

/* Arguments that are the caller's business fail closed. */
static void test_validate_args(void)
{
    char *tok = craft(HDR, CLAIMS, SIG_A);
    json_t *claims = NULL;
    char why[128];
    expect_with("no keys", tok, NULL, 0, AUD, false, "unknown key id");
    expect_with("only the other key", tok, (const struct as_jwtkey *const[]){g_b}, 1, AUD, false,
                "unknown key id");
    expect_with("only key A", tok, (const struct as_jwtkey *const[]){g_a}, 1, AUD, true, NULL);
    expect_with("a NULL slot, then key A", tok, (const struct as_jwtkey *const[]){NULL, g_a}, 2,
                AUD, true, NULL);
    expect_with("empty audience", tok, g_keys, 2, "", false, NULL);
    expect_with("NULL audience", tok, g_keys, 2, NULL, false, NULL);
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, AUD, NULL, g_now, &claims, why, sizeof why),
              AS_ERR_INVALID);
    CHECK(claims == NULL);
    CHECK_INT(as_jwt_svid_validate(NULL, g_keys, 2, AUD, TD, g_now, &claims, why, sizeof why),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, -1, &claims, why, sizeof why),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, g_now, NULL, why, sizeof why),
              AS_ERR_INVALID);
    /* why may be NULL. */
    CHECK_INT(as_jwt_svid_validate("a.b", g_keys, 2, AUD, TD, g_now, &claims, NULL, 0),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, g_now, &claims, NULL, 0), AS_OK);
    json_decref(claims);
    /* The same token later: exactly at exp it is expired (RFC 7519 §4.1.4: "on or after"). */
    CHECK_INT(
        as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, g_now + TTL - 1, &claims, why, sizeof why),
        AS_OK);
    json_decref(claims);
    claims = NULL;
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, g_now + TTL, &claims, why, sizeof why),
              AS_ERR_INVALID);
    CHECK(strstr(why, "expired") != NULL);
    free(tok);
}

static json_t *audiences(int n)
{
    json_t *a = json_array();
    static const char *names[] = {AUD, "spiffe://example.org/billing", "third"};
    for (int i = 0; i < n; i++) {
        json_array_append_new(a, json_string(names[i]));
    }
    return a;
}

static void test_round_trip(void)
{
    json_t *aud1 = audiences(1);
    json_t *aud2 = audiences(2);
    char jti[32];
    char *tok = NULL;
    json_t *claims = NULL;
    char why[128];
    int64_t iat = g_now;
    int64_t exp = g_now + TTL;

    CHECK_INT(as_jwt_svid_mint(g_a, SUB, aud1, iat, exp, jti, sizeof jti, &tok), AS_OK);
    CHECK(tok != NULL);
    if (tok == NULL) {
        return;
    }
    /* Three parts, base64url without padding, a signature of exactly 86 characters. */
    char *dot1 = strchr(tok, '.');
    char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    CHECK(dot1 != NULL && dot2 != NULL && strchr(dot2 + 1, '.') == NULL);
    CHECK(strchr(tok, '=') == NULL);
    CHECK_INT(strlen(dot2 + 1), 86);

    /* The header, byte for byte. */
    char want[256];
    snprintf(want, sizeof want, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
             as_jwtkey_kid(g_a));
    char *hdr = part(tok, 0, NULL);
    CHECK_STR(hdr, want);
    free(hdr);

    /* The claims, byte for byte: order sub, aud, exp, iat, jti; aud a string for one audience. */
    CHECK_INT(strlen(jti), 22);
    CHECK(is_b64u(jti));
    snprintf(want, sizeof want,
             "{\"sub\":\"" SUB "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"iat\":%lld,\"jti\":\"%s\"}",
             (long long)exp, (long long)iat, jti);
    char *pl = part(tok, 1, NULL);
    CHECK_STR(pl, want);
    free(pl);

    /* The signature verifies with OpenSSL directly over the signing input. */
    long slen = 0;
    unsigned char *rs = (unsigned char *)part(tok, 2, &slen);
    CHECK_INT(slen, 64);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(rs, 32, NULL), BN_bin2bn(rs + 32, 32, NULL));
    unsigned char *der = NULL;
    int derlen = i2d_ECDSA_SIG(sig, &der);
    /* Twins: not over a different input, not with the other key. */
    CHECK(verify_der(g_pa, der, (size_t)derlen, tok, (size_t)(dot2 - tok)));
    CHECK(!verify_der(g_pa, der, (size_t)derlen, tok, (size_t)(dot2 - tok - 1)));
    CHECK(!verify_der(g_pb, der, (size_t)derlen, tok, (size_t)(dot2 - tok)));
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    free(rs);

    /* Validation returns the claims, typed. */
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, g_now, &claims, why, sizeof why),
              AS_OK);
    CHECK(claims != NULL);
    if (claims != NULL) {
        CHECK_STR(json_string_value(json_object_get(claims, "sub")), SUB);
        CHECK_STR(json_string_value(json_object_get(claims, "aud")), AUD);
        CHECK(json_is_integer(json_object_get(claims, "exp")));
        CHECK_INT(json_integer_value(json_object_get(claims, "exp")), exp);
        CHECK(json_is_integer(json_object_get(claims, "iat")));
        CHECK_INT(json_integer_value(json_object_get(claims, "iat")), iat);
        CHECK_STR(json_string_value(json_object_get(claims, "jti")), jti);
        CHECK_INT(json_object_size(claims), 5);
        json_decref(claims);
        claims = NULL;
    }
    /* Twins: another audience, another trust domain, after expiry. */
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, "billing", TD, g_now, &claims, why, sizeof why),
              AS_ERR_INVALID);
    CHECK(claims == NULL);
    CHECK_INT(
        as_jwt_svid_validate(tok, g_keys, 2, AUD, "example.com", g_now, &claims, why, sizeof why),
        AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, exp + 1, &claims, why, sizeof why),
              AS_ERR_INVALID);
    free(tok);
    tok = NULL;

    /* Two audiences: an array, in order; either one validates, a third does not. */
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, aud2, iat, exp, jti, sizeof jti, &tok), AS_OK);
    pl = tok ? part(tok, 1, NULL) : NULL;
    snprintf(want, sizeof want,
             "{\"sub\":\"" SUB "\",\"aud\":[\"" AUD "\",\"spiffe://example.org/billing\"],"
             "\"exp\":%lld,\"iat\":%lld,\"jti\":\"%s\"}",
             (long long)exp, (long long)iat, jti);
    CHECK_STR(pl, want);
    free(pl);
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, "spiffe://example.org/billing", TD, g_now,
                                   &claims, why, sizeof why),
              AS_OK);
    CHECK(json_is_array(json_object_get(claims, "aud")));
    json_decref(claims);
    claims = NULL;
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, "third", TD, g_now, &claims, why, sizeof why),
              AS_ERR_INVALID);
    CHECK(strstr(why, "audience not in aud") != NULL);
    free(tok);
    tok = NULL;

    /* Key B's tokens carry B's kid and validate only where B is trusted. */
    CHECK_INT(as_jwt_svid_mint(g_b, SUB, aud1, iat, exp, jti, sizeof jti, &tok), AS_OK);
    hdr = tok ? part(tok, 0, NULL) : NULL;
    CHECK(hdr != NULL && strstr(hdr, as_jwtkey_kid(g_b)) != NULL);
    free(hdr);
    CHECK_INT(as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, g_now, &claims, why, sizeof why),
              AS_OK);
    json_decref(claims);
    claims = NULL;
    CHECK_INT(as_jwt_svid_validate(tok, (const struct as_jwtkey *const[]){g_a}, 1, AUD, TD, g_now,
                                   &claims, why, sizeof why),
              AS_ERR_INVALID);
    CHECK(strstr(why, "unknown key id") != NULL);
    free(tok);

    json_decref(aud1);
    json_decref(aud2);
}

static void test_jti_distinct(void)
{
    enum { N = 200 };
    static char jtis[N][32];
    json_t *aud = audiences(1);
    bool ok = true;
    for (int i = 0; i < N; i++) {
        char *tok = NULL;
        if (as_jwt_svid_mint(g_a, SUB, aud, g_now, g_now + TTL, jtis[i], sizeof jtis[i], &tok) !=
                AS_OK ||
            strlen(jtis[i]) != 22 || !is_b64u(jtis[i])) {
            ok = false;
        }
        free(tok);
    }
    CHECK(ok);
    int dups = 0;
    for (int i = 0; i < N; i++) {
        for (int j = i + 1; j < N; j++) {
            dups += strcmp(jtis[i], jtis[j]) == 0;
        }
    }
    CHECK_INT(dups, 0);
    /* Twin: the same claims minted twice differ (jti and ECDSA's random k). */
    char j1[32];
    char j2[32];
    char *t1 = NULL;
    char *t2 = NULL;
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, aud, g_now, g_now + TTL, j1, sizeof j1, &t1), AS_OK);
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, aud, g_now, g_now + TTL, j2, sizeof j2, &t2), AS_OK);
    CHECK(t1 != NULL && t2 != NULL && strcmp(t1, t2) != 0 && strcmp(j1, j2) != 0);
    free(t1);
    free(t2);
    json_decref(aud);
}

static void test_mint_refusals(void)
{
    char jti[32];
    char *tok = (char *)1;
    json_t *aud = audiences(1);
    json_t *empty = json_array();
    json_t *notarr = json_string(AUD);
    json_t *withnum = json_pack("[s, i]", AUD, 1);
    json_t *withempty = json_pack("[s, s]", AUD, "");

    CHECK_INT(as_jwt_svid_mint(g_a, SUB, empty, g_now, g_now + TTL, jti, sizeof jti, &tok),
              AS_ERR_INVALID);
    CHECK(tok == NULL);
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, NULL, g_now, g_now + TTL, jti, sizeof jti, &tok),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, notarr, g_now, g_now + TTL, jti, sizeof jti, &tok),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, withnum, g_now, g_now + TTL, jti, sizeof jti, &tok),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, withempty, g_now, g_now + TTL, jti, sizeof jti, &tok),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_mint(g_a, "spiffe://example.org", aud, g_now, g_now + TTL, jti,
                               sizeof jti, &tok),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_mint(g_a, "web", aud, g_now, g_now + TTL, jti, sizeof jti, &tok),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_mint(g_a, NULL, aud, g_now, g_now + TTL, jti, sizeof jti, &tok),
              AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, aud, g_now, g_now, jti, sizeof jti, &tok), AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, aud, g_now, g_now + TTL, jti, 23, &tok), AS_ERR_INVALID);
    CHECK_INT(as_jwt_svid_mint(NULL, SUB, aud, g_now, g_now + TTL, jti, sizeof jti, &tok),
              AS_ERR_INVALID);
    CHECK(tok == NULL);
    /* Twin: the same call with good arguments. */
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, aud, g_now, g_now + TTL, jti, sizeof jti, &tok), AS_OK);
    free(tok);
    /* Claims that would make a token over the cap are refused at minting too. */
    json_t *huge = json_array();
    char name[64];
    for (int i = 0; i < 600; i++) {
        snprintf(name, sizeof name, "spiffe://example.org/audience/%04d", i);
        json_array_append_new(huge, json_string(name));
    }
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, huge, g_now, g_now + TTL, jti, sizeof jti, &tok),
              AS_ERR_TOO_LARGE);
    CHECK(tok == NULL);
    json_decref(huge);
    json_decref(aud);
    json_decref(empty);
    json_decref(notarr);
    json_decref(withnum);
    json_decref(withempty);
}

/* kid = first 32 characters of base64url(SHA-256(SPKI DER)), computed here independently. */
static void kid_of(EVP_PKEY *pkey, char out[33])
{
    unsigned char *spki = NULL;
    int n = i2d_PUBKEY(pkey, &spki);
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(spki, (size_t)n, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(spki);
    char b64[48];
    b64u_enc(md, sizeof md, b64);
    memcpy(out, b64, 32);
    out[32] = '\0';
}

static void test_keys_files(void)
{
    char dir[64];
    char path[256];
    struct stat st;
    struct as_jwtkey *k = NULL;
    snprintf(dir, sizeof dir, "/tmp/test_jwtsvid.XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }

    /* kid: independent computation agrees; the two keys differ. */
    char kid[33];
    kid_of(g_pa, kid);
    CHECK_STR(as_jwtkey_kid(g_a), kid);
    CHECK_INT(strlen(as_jwtkey_kid(g_a)), 32);
    CHECK(is_b64u(as_jwtkey_kid(g_a)));
    CHECK(strcmp(as_jwtkey_kid(g_a), as_jwtkey_kid(g_b)) != 0);

    /* Save: 0600 even under a permissive umask, PKCS#8 PEM, no temp file left. */
    mode_t old = umask(0);
    CHECK_INT(as_jwtkey_save(g_a, dir, "gen1"), AS_OK);
    umask(old);
    snprintf(path, sizeof path, "%s/gen1-jwt-key.pem", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
    char *pem = NULL;
    size_t pemlen = 0;
    CHECK_INT(as_file_read(path, 65536, &pem, &pemlen), AS_OK);
    CHECK(pem != NULL && strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    free(pem);

    /* Load: same kid, and a token from the loaded key validates under the original (and back). */
    CHECK_INT(as_jwtkey_load(dir, "gen1", &k), AS_OK);
    CHECK(k != NULL);
    if (k != NULL) {
        CHECK_STR(as_jwtkey_kid(k), as_jwtkey_kid(g_a));
        json_t *aud = audiences(1);
        char jti[32];
        char *tok = NULL;
        json_t *claims = NULL;
        char why[128];
        CHECK_INT(as_jwt_svid_mint(k, SUB, aud, g_now, g_now + TTL, jti, sizeof jti, &tok), AS_OK);
        CHECK_INT(as_jwt_svid_validate(tok, (const struct as_jwtkey *const[]){g_a}, 1, AUD, TD,
                                       g_now, &claims, why, sizeof why),
                  AS_OK);
        json_decref(claims);
        claims = NULL;
        free(tok);
        tok = NULL;
        CHECK_INT(as_jwt_svid_mint(g_a, SUB, aud, g_now, g_now + TTL, jti, sizeof jti, &tok),
                  AS_OK);
        CHECK_INT(as_jwt_svid_validate(tok, (const struct as_jwtkey *const[]){k}, 1, AUD, TD, g_now,
                                       &claims, why, sizeof why),
                  AS_OK);
        json_decref(claims);
        free(tok);
        json_decref(aud);
        as_jwtkey_free(k);
        k = NULL;
    }
    /* Saving again replaces the file atomically; only the key file is in the directory. */
    CHECK_INT(as_jwtkey_save(g_b, dir, "gen1"), AS_OK);
    CHECK_INT(as_jwtkey_load(dir, "gen1", &k), AS_OK);
    CHECK(k != NULL && strcmp(as_jwtkey_kid(k), as_jwtkey_kid(g_b)) == 0);
    as_jwtkey_free(k);
    k = NULL;

    /* Refusals, each the twin of the load above. */
    CHECK_INT(as_jwtkey_load(dir, "absent", &k), AS_ERR_NOT_FOUND);
    CHECK(k == NULL);
    CHECK_INT(chmod(path, 0640), 0);
    CHECK_INT(as_jwtkey_load(dir, "gen1", &k), AS_ERR_CONFIG);
    CHECK_INT(chmod(path, 0604), 0);
    CHECK_INT(as_jwtkey_load(dir, "gen1", &k), AS_ERR_CONFIG);
    CHECK_INT(chmod(path, 0620), 0);
    CHECK_INT(as_jwtkey_load(dir, "gen1", &k), AS_ERR_CONFIG);
    CHECK_INT(chmod(path, 0400), 0);
    CHECK_INT(as_jwtkey_load(dir, "gen1", &k), AS_OK);
    as_jwtkey_free(k);
    k = NULL;
    CHECK(k == NULL);

    /* A P-384 key, an RSA key, an Ed25519 key: not ES256. */
    static const struct {
        const char *base;
        const char *type;
        const char *param;
    } others[] = {{"p384", "EC", "P-384"}, {"rsa", "RSA", NULL}, {"ed", "ED25519", NULL}};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        EVP_PKEY *o = others[i].param
                          ? EVP_PKEY_Q_keygen(NULL, NULL, others[i].type, others[i].param)
                      : strcmp(others[i].type, "RSA") == 0
                          ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                          : EVP_PKEY_Q_keygen(NULL, NULL, others[i].type);
        BIO *bio = BIO_new(BIO_s_mem());
        PEM_write_bio_PrivateKey(bio, o, NULL, NULL, 0, NULL, NULL);
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        char name[64];
        snprintf(name, sizeof name, "%s-jwt-key.pem", others[i].base);
        write_file(dir, name, data, (size_t)n, 0600);
        CHECK_INT(as_jwtkey_load(dir, others[i].base, &k), AS_ERR_CONFIG);
        CHECK(k == NULL);
        BIO_free(bio);
        EVP_PKEY_free(o);
    }
    /* An encrypted PKCS#8 P-256 key: refused, never a passphrase prompt. */
    {
        BIO *bio = BIO_new(BIO_s_mem());
        PEM_write_bio_PrivateKey(bio, g_pa, EVP_aes_256_cbc(), (unsigned char *)"secret", 6, NULL,
                                 NULL);
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        CHECK(memmem(data, (size_t)n, "ENCRYPTED PRIVATE KEY", 21) != NULL);
        write_file(dir, "enc-jwt-key.pem", data, (size_t)n, 0600);
        CHECK_INT(as_jwtkey_load(dir, "enc", &k), AS_ERR_CONFIG);
        CHECK(k == NULL);
        BIO_free(bio);
    }
    /* Garbage and an empty file. */
    write_file(dir, "junk-jwt-key.pem", "not a key\n", 10, 0600);
    CHECK_INT(as_jwtkey_load(dir, "junk", &k), AS_ERR_CONFIG);
    write_file(dir, "empty-jwt-key.pem", "", 0, 0600);
    CHECK_INT(as_jwtkey_load(dir, "empty", &k), AS_ERR_CONFIG);
    /* A directory where the file should be. */
    snprintf(path, sizeof path, "%s/d-jwt-key.pem", dir);
    CHECK_INT(mkdir(path, 0700), 0);
    CHECK_INT(as_jwtkey_load(dir, "d", &k), AS_ERR_CONFIG);
    /* Base names that would be paths, and bad directories. */
    CHECK_INT(as_jwtkey_load(dir, "../x", &k), AS_ERR_INVALID);
    CHECK_INT(as_jwtkey_load(dir, "", &k), AS_ERR_INVALID);
    CHECK_INT(as_jwtkey_load(dir, ".hidden", &k), AS_ERR_INVALID);
    CHECK_INT(as_jwtkey_save(g_a, dir, "a/b"), AS_ERR_INVALID);
    CHECK_INT(as_jwtkey_save(g_a, "/nonexistent/dir", "gen1"), AS_ERR_IO);
    CHECK(k == NULL);
    rm_dir(dir);
}

/* The JWK is the signing key: its x/y are the key's coordinates, and a verify key built from the
 * JWK alone verifies a minted token. */
static void test_jwk(void)
{
    json_t *jwk = as_jwtkey_jwk(g_a);
    CHECK(jwk != NULL);
    if (jwk == NULL) {
        return;
    }
    CHECK_STR(json_string_value(json_object_get(jwk, "use")), "jwt-svid");
    CHECK_STR(json_string_value(json_object_get(jwk, "kty")), "EC");
    CHECK_STR(json_string_value(json_object_get(jwk, "crv")), "P-256");
    CHECK_STR(json_string_value(json_object_get(jwk, "kid")), as_jwtkey_kid(g_a));
    CHECK(json_object_get(jwk, "d") == NULL);
    CHECK_INT(json_object_size(jwk), 6);

    const char *x = json_string_value(json_object_get(jwk, "x"));
    const char *y = json_string_value(json_object_get(jwk, "y"));
    CHECK(x != NULL && y != NULL && strlen(x) == 43 && strlen(y) == 43);
    if (x == NULL || y == NULL) {
        json_decref(jwk);
        return;
    }
    unsigned char pt[65];
    pt[0] = 0x04;
    CHECK_INT(b64u_dec(x, strlen(x), pt + 1), 32);
    CHECK_INT(b64u_dec(y, strlen(y), pt + 33), 32);
    BIGNUM *bx = NULL;
    BIGNUM *by = NULL;
    unsigned char want[32];
    CHECK(EVP_PKEY_get_bn_param(g_pa, OSSL_PKEY_PARAM_EC_PUB_X, &bx) == 1);
    CHECK(EVP_PKEY_get_bn_param(g_pa, OSSL_PKEY_PARAM_EC_PUB_Y, &by) == 1);
    BN_bn2binpad(bx, want, 32);
    CHECK(memcmp(pt + 1, want, 32) == 0);
    BN_bn2binpad(by, want, 32);
    CHECK(memcmp(pt + 33, want, 32) == 0);
    BN_free(bx);
    BN_free(by);

    /* A public key from the JWK's point alone. */
    EVP_PKEY *pub = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    CHECK(EVP_PKEY_fromdata_init(pctx) == 1 &&
          EVP_PKEY_fromdata(pctx, &pub, EVP_PKEY_PUBLIC_KEY, params) == 1);
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);

    json_t *aud = audiences(1);
    char jti[32];
    char *tok = NULL;
    CHECK_INT(as_jwt_svid_mint(g_a, SUB, aud, g_now, g_now + TTL, jti, sizeof jti, &tok), AS_OK);
    char *dot2 = tok ? strrchr(tok, '.') : NULL;
    long slen = 0;
    unsigned char *rs = tok ? (unsigned char *)part(tok, 2, &slen) : NULL;
    if (pub != NULL && rs != NULL && slen == 64) {
        ECDSA_SIG *sig = ECDSA_SIG_new();
        ECDSA_SIG_set0(sig, BN_bin2bn(rs, 32, NULL), BN_bin2bn(rs + 32, 32, NULL));
        unsigned char *der = NULL;
        int derlen = i2d_ECDSA_SIG(sig, &der);
        CHECK(verify_der(pub, der, (size_t)derlen, tok, (size_t)(dot2 - tok)));
        /* Twin: B's key does not verify A's token. */
        CHECK(!verify_der(g_pb, der, (size_t)derlen, tok, (size_t)(dot2 - tok)));
        OPENSSL_free(der);
        ECDSA_SIG_free(sig);
    } else {
        CHECK(!"JWK public key or token signature unavailable");
    }
    free(rs);
    free(tok);
    EVP_PKEY_free(pub);
    json_decref(aud);

    /* Twin: B's JWK has B's kid and other coordinates. */
    json_t *jb = as_jwtkey_jwk(g_b);
    CHECK_STR(json_string_value(json_object_get(jb, "kid")), as_jwtkey_kid(g_b));
    CHECK(strcmp(json_string_value(json_object_get(jb, "x")), x) != 0);
    json_decref(jb);
    json_decref(jwk);
    CHECK(as_jwtkey_jwk(NULL) == NULL);
    CHECK(as_jwtkey_kid(NULL) == NULL);
}

/* The keys are shared by the server's threads: minting and validating concurrently must work
 * (the signing templates are only ever copied). */
static void *thread_body(void *arg)
{
    int *bad = arg;
    json_t *aud = audiences(1);
    for (int i = 0; i < 300; i++) {
        char jti[32];
        char *tok = NULL;
        json_t *claims = NULL;
        char why[128];
        const struct as_jwtkey *k = i % 2 ? g_a : g_b;
        if (as_jwt_svid_mint(k, SUB, aud, g_now, g_now + TTL, jti, sizeof jti, &tok) != AS_OK ||
            as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, g_now, &claims, why, sizeof why) !=
                AS_OK) {
            (*bad)++;
        }
        json_decref(claims);
        claims = NULL;
        /* Twin: the same token one byte shorter fails, in every thread. */
        if (tok != NULL) {
            tok[strlen(tok) - 1] = '\0';
            if (as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, g_now, &claims, why, sizeof why) !=
                AS_ERR_INVALID) {
                (*bad)++;
            }
        }
        json_decref(claims);
        free(tok);
    }
    json_decref(aud);
    return NULL;
}

static void test_threads(void)
{
    enum { T = 4 };
    pthread_t th[T];
    int bad[T] = {0};
    for (int i = 0; i < T; i++) {
        CHECK_INT(pthread_create(&th[i], NULL, thread_body, &bad[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(bad[i], 0);
    }
}

static double elapsed(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void bench(void)
{
    enum { N = 20000 };
    json_t *aud = audiences(1);
    char jti[32];
    char *tok = NULL;
    struct timespec t0;
    struct timespec t1;
    bool ok = true;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        free(tok);
        tok = NULL;
        ok = ok &&
             as_jwt_svid_mint(g_a, SUB, aud, g_now, g_now + TTL, jti, sizeof jti, &tok) == AS_OK;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double mint = elapsed(&t0, &t1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        json_t *claims = NULL;
        char why[128];
        ok = ok && as_jwt_svid_validate(tok, g_keys, 2, AUD, TD, g_now, &claims, why, sizeof why) ==
                       AS_OK;
        json_decref(claims);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double val = elapsed(&t0, &t1);
    CHECK(ok);
    printf("bench: %d mints in %.3f s = %.0f/s (%.1f us each); %d validations in %.3f s = %.0f/s "
           "(%.1f us each)\n",
           N, mint, N / mint, mint / N * 1e6, N, val, N / val, val / N * 1e6);
    free(tok);
    json_decref(aud);
}

int main(void)
{
    /* The refusals below log on purpose; keep the output to them. */
    as_log_set_level(AS_LOG_WARN);
    g_now = as_now();
    if (as_jwtkey_generate(&g_a) != AS_OK || as_jwtkey_generate(&g_b) != AS_OK) {
        fprintf(stderr, "key generation failed\n");
        return 2;
    }
    g_keys[0] = g_a;
    g_keys[1] = g_b;
    snprintf(g_dir, sizeof g_dir, "/tmp/test_jwtsvid.XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    if (as_jwtkey_save(g_a, g_dir, "a") != AS_OK || as_jwtkey_save(g_b, g_dir, "b") != AS_OK) {
        fprintf(stderr, "key save failed\n");
        return 2;
    }
    g_pa = read_pem_key(g_dir, "a");
    g_pb = read_pem_key(g_dir, "b");
    if (g_pa == NULL || g_pb == NULL) {
        fprintf(stderr, "reading the saved keys back failed\n");
        return 2;
    }

    test_round_trip();
    test_jti_distinct();
    test_mint_refusals();
    test_table();
    test_structure();
    test_caps();
    test_validate_args();
    test_keys_files();
    test_jwk();
    test_threads();
    const char *b = getenv("AS_BENCH");
    if (b != NULL && strcmp(b, "1") == 0) {
        bench();
    }

    EVP_PKEY_free(g_pa);
    EVP_PKEY_free(g_pb);
    as_jwtkey_free(g_a);
    as_jwtkey_free(g_b);
    rm_dir(g_dir);
    return check_done();
}
