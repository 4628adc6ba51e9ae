/*
 * fuzz_csr_diff: as_csr_parse (pki/svid.c, the fast path) against the reference it replaced
 * (tests/csr_reference.h: PEM_read_bio_X509_REQ, the same policy, X509_REQ_verify). Issue 7
 * allowed the fast path only if it accepts and refuses exactly what the reference does, with the
 * same key; any difference in the error, the reason, or the SPKI of an SVID issued from an
 * accepted CSR aborts.
 *
 * Each input is tried three ways:
 *   1. as it is, as PEM text;
 *   2. without a PEM header, as the DER of a "CERTIFICATE REQUEST";
 *   3. without a PEM header, as a CertificationRequestInfo that the harness signs with a fixed
 *      P-256 key (ECDSA with SHA-256) and wraps into a CSR. When the input carries that key's
 *      SubjectPublicKeyInfo the signature verifies, so what is compared is the parse itself
 *      (versions, subjects, attributes, BER forms), not a signature that fails either way. The
 *      key's scalar is SHA-256 of FIXED_KEY_LABEL, so seeds for this mode can be made outside
 *      the harness; corpus/fuzz_csr_diff/cri-* are such seeds.
 */
#include <stdbool.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include "common/common.h"
#include "fuzz.h"
#include "pki/pki.h"
#include "tests/csr_reference.h"

#define TD "example.org"
#define CA_TTL (10 * 365 * 86400LL)
#define FIXED_KEY_LABEL "authsvc fuzz_csr_diff signing key"

static struct as_ca *g_ca;
static EVP_PKEY *g_key;
static unsigned char *g_sig_alg; /* DER AlgorithmIdentifier ecdsa-with-SHA256 */
static int g_sig_alg_len;

/* The fixed signing key of mode 3: scalar SHA-256(FIXED_KEY_LABEL) on P-256. */
static EVP_PKEY *fixed_key(void)
{
    unsigned char d[32];
    unsigned char pub[65];
    unsigned int dlen = 0;
    EVP_PKEY *k = NULL;
    FUZZ_CHECK(EVP_Digest(FIXED_KEY_LABEL, strlen(FIXED_KEY_LABEL), d, &dlen, EVP_sha256(), NULL) ==
               1);
    EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    BIGNUM *priv = BN_bin2bn(d, (int)dlen, NULL);
    EC_POINT *pt = g != NULL ? EC_POINT_new(g) : NULL;
    FUZZ_CHECK(g != NULL && priv != NULL && pt != NULL);
    FUZZ_CHECK(EC_POINT_mul(g, pt, priv, NULL, NULL, NULL) == 1);
    FUZZ_CHECK(EC_POINT_point2oct(g, pt, POINT_CONVERSION_UNCOMPRESSED, pub, sizeof pub, NULL) ==
               sizeof pub);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    FUZZ_CHECK(bld != NULL);
    FUZZ_CHECK(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) == 1);
    FUZZ_CHECK(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv) == 1);
    FUZZ_CHECK(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub) ==
               1);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    FUZZ_CHECK(params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1);
    FUZZ_CHECK(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_KEYPAIR, params) == 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EC_POINT_free(pt);
    BN_clear_free(priv);
    EC_GROUP_free(g);
    return k;
}

static void init_once(void)
{
    if (g_ca != NULL) {
        return;
    }
    as_log_set_level(AS_LOG_ERROR);
    if (as_ca_generate(TD, CA_TTL, &g_ca) != AS_OK || g_ca == NULL) {
        fprintf(stderr, "fuzz_csr_diff: cannot generate the CA\n");
        abort();
    }
    g_key = fixed_key();
    X509_ALGOR *alg = X509_ALGOR_new();
    FUZZ_CHECK(alg != NULL);
    FUZZ_CHECK(X509_ALGOR_set0(alg, OBJ_nid2obj(NID_ecdsa_with_SHA256), V_ASN1_UNDEF, NULL) == 1);
    g_sig_alg_len = i2d_X509_ALGOR(alg, &g_sig_alg);
    FUZZ_CHECK(g_sig_alg_len > 0);
    X509_ALGOR_free(alg);
}

static void diff(const char *mode, const char *pem, size_t len)
{
    char report[512];
    if (csr_diff(g_ca, pem, len, NULL, report, sizeof report) != CSR_DIFF_AGREE) {
        fprintf(stderr, "fuzz_csr_diff: disagreement (%s): %s\n%.*s\n", mode, report, (int)len,
                pem);
        abort();
    }
}

static void diff_der(const char *mode, const unsigned char *der, size_t len)
{
    char *pem = as_pem_encode("CERTIFICATE REQUEST", der, len);
    FUZZ_CHECK(pem != NULL);
    diff(mode, pem, strlen(pem));
    free(pem);
}

/* Appends a DER header (tag, definite length) for n content octets at out; returns its size. */
static size_t der_header(unsigned char *out, unsigned char tag, size_t n)
{
    size_t o = 0;
    out[o++] = tag;
    if (n < 0x80) {
        out[o++] = (unsigned char)n;
    } else if (n < 0x100) {
        out[o++] = 0x81;
        out[o++] = (unsigned char)n;
    } else if (n < 0x10000) {
        out[o++] = 0x82;
        out[o++] = (unsigned char)(n >> 8);
        out[o++] = (unsigned char)n;
    } else {
        out[o++] = 0x83;
        out[o++] = (unsigned char)(n >> 16);
        out[o++] = (unsigned char)(n >> 8);
        out[o++] = (unsigned char)n;
    }
    return o;
}

/* Mode 3: the input as a CertificationRequestInfo, signed with the fixed key and wrapped as
 * SEQUENCE { cri, ecdsa-with-SHA256, BIT STRING signature }. */
static void diff_signed(const unsigned char *cri, size_t n)
{
    unsigned char sig[80];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FUZZ_CHECK(ctx != NULL);
    FUZZ_CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, g_key) == 1);
    FUZZ_CHECK(EVP_DigestSign(ctx, sig, &siglen, cri, n) == 1);
    EVP_MD_CTX_free(ctx);

    unsigned char bits_hdr[8];
    size_t bh = der_header(bits_hdr, 0x03, siglen + 1);
    size_t body = n + (size_t)g_sig_alg_len + bh + 1 + siglen;
    unsigned char *der = fuzz_xmalloc(body + 8);
    size_t o = der_header(der, 0x30, body);
    memcpy(der + o, cri, n);
    o += n;
    memcpy(der + o, g_sig_alg, (size_t)g_sig_alg_len);
    o += (size_t)g_sig_alg_len;
    memcpy(der + o, bits_hdr, bh);
    o += bh;
    der[o++] = 0x00;
    memcpy(der + o, sig, siglen);
    o += siglen;
    diff_der("signed CertificationRequestInfo", der, o);
    free(der);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    /* as_csr_parse takes a length; a copy of exactly that many bytes lets ASan see overreads. */
    char *pem = fuzz_xmalloc(size);
    if (size > 0) {
        memcpy(pem, data, size);
    }
    diff("PEM", pem, size);
    if (size > 0 && size <= AS_MAX_CSR_BYTES / 2 && memmem(pem, size, "-----BEGIN", 10) == NULL) {
        diff_der("DER", data, size);
        diff_signed(data, size);
    }
    free(pem);
    ERR_clear_error();
    return 0;
}
