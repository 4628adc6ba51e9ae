/*
 * fuzz_csr: as_csr_parse, and for every CSR it accepts an X.509-SVID issued from it by a CA made
 * once, checked by OpenSSL from its DER. This covers the ASN.1 handling end to end: the CSR's
 * SubjectPublicKeyInfo is copied into the certificate in parts (pki/svid.c set_spki), never
 * re-encoded by OpenSSL, so the round trip is what proves it.
 *
 * The input is tried as it is (PEM text); an input without a PEM header is also wrapped as the
 * DER of a "CERTIFICATE REQUEST", so that the fuzzer mutates ASN.1 rather than base64.
 *
 * Invariants: a refusal says why and leaves *out NULL. What as_csr_parse accepts, OpenSSL's own
 * PEM_read_bio_X509_REQ + X509_REQ_verify accept too (a differential check: our policy may only
 * narrow OpenSSL's answer). The SVID issued from it is one DER certificate with nothing after it,
 * whose PEM is that DER, which the CA's key verifies, whose issuer is the CA, whose public key is
 * the CSR's, whose serial is the one reported, whose SAN URI is the SPIFFE ID requested, and
 * which comes without a private key.
 */
#include <stdbool.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/common.h"
#include "fuzz.h"
#include "pki/pki.h"

#define TD "example.org"
#define SVID_ID "spiffe://" TD "/ns/fuzz/sa/csr"
#define SVID_DNS "fuzz.example.org"
#define CA_TTL (10 * 365 * 86400LL)

static struct as_ca *g_ca;
static X509 *g_ca_cert;
static int64_t g_now;

/* The CA is made once per process: generating a key per input would be all the fuzzer does. */
static void init_once(void)
{
    if (g_ca != NULL) {
        return;
    }
    as_log_set_level(AS_LOG_ERROR);
    if (as_ca_generate(TD, CA_TTL, &g_ca) != AS_OK || g_ca == NULL) {
        fprintf(stderr, "fuzz_csr: cannot generate the CA\n");
        abort();
    }
    size_t len = 0;
    const unsigned char *der = as_ca_cert_der(g_ca, &len);
    FUZZ_CHECK(der != NULL && len > 0);
    g_ca_cert = d2i_X509(NULL, &der, (long)len);
    FUZZ_CHECK(g_ca_cert != NULL);
    g_now = as_now();
}

/* The differential: OpenSSL alone on the same bytes. Returns the request when it verifies. */
static X509_REQ *openssl_accepts(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    FUZZ_CHECK(bio != NULL);
    X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (req == NULL) {
        return NULL;
    }
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    if (pub == NULL || X509_REQ_verify(req, pub) != 1) {
        X509_REQ_free(req);
        return NULL;
    }
    return req;
}

static void check_serial(X509 *x, const char *reported)
{
    char norm[64];
    char hex[2 * 20 + 1];
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    FUZZ_CHECK(bn != NULL && !BN_is_negative(bn) && !BN_is_zero(bn));
    FUZZ_CHECK(BN_num_bytes(bn) <= 20);
    unsigned char b[20];
    int n = BN_bn2bin(bn, b);
    for (int i = 0; i < n; i++) {
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    }
    BN_free(bn);
    FUZZ_CHECK(as_serial_normalize(hex, norm, sizeof norm) == AS_OK);
    FUZZ_CHECK(strcmp(norm, reported) == 0);
}

static void check_san(X509 *x)
{
    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    FUZZ_CHECK(gens != NULL && crit == 1);
    int uris = 0;
    bool dns = false;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_URI) {
            uris++;
            const ASN1_IA5STRING *u = g->d.uniformResourceIdentifier;
            FUZZ_CHECK((size_t)ASN1_STRING_length(u) == strlen(SVID_ID) &&
                       memcmp(ASN1_STRING_get0_data(u), SVID_ID, strlen(SVID_ID)) == 0);
        } else if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *d = g->d.dNSName;
            dns = dns || ((size_t)ASN1_STRING_length(d) == strlen(SVID_DNS) &&
                          memcmp(ASN1_STRING_get0_data(d), SVID_DNS, strlen(SVID_DNS)) == 0);
        }
    }
    FUZZ_CHECK(uris == 1 && dns);
    GENERAL_NAMES_free(gens);
}

/* Issues an X.509-SVID for an accepted CSR and checks it as a relying party would. */
static void issue_and_check(const struct as_csr *csr, X509_REQ *req)
{
    const char *dns[] = {SVID_DNS};
    struct as_leaf_req lr = {
        .spiffe_id = SVID_ID,
        .dns = dns,
        .ndns = 1,
        .not_before = g_now - 10,
        .not_after = g_now + 3600,
    };
    struct as_leaf *leaf = NULL;
    enum as_err r = as_ca_issue_svid(g_ca, csr, &lr, &leaf);
    FUZZ_CHECK(r == AS_OK && leaf != NULL);
    FUZZ_CHECK(leaf->key_pem == NULL);
    FUZZ_CHECK(leaf->der != NULL && leaf->der_len > 0 && leaf->cert_pem != NULL);

    const unsigned char *p = leaf->der;
    X509 *x = d2i_X509(NULL, &p, (long)leaf->der_len);
    FUZZ_CHECK(x != NULL);
    FUZZ_CHECK(p == leaf->der + leaf->der_len);

    /* The PEM is the same DER. */
    BIO *bio = BIO_new_mem_buf(leaf->cert_pem, -1);
    FUZZ_CHECK(bio != NULL);
    X509 *from_pem = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    FUZZ_CHECK(from_pem != NULL && X509_cmp(x, from_pem) == 0);
    X509_free(from_pem);

    FUZZ_CHECK(X509_verify(x, X509_get0_pubkey(g_ca_cert)) == 1);
    FUZZ_CHECK(X509_check_issued(g_ca_cert, x) == X509_V_OK);
    FUZZ_CHECK(X509_get_version(x) == X509_VERSION_3);
    EVP_PKEY *leaf_key = X509_get0_pubkey(x);
    FUZZ_CHECK(leaf_key != NULL);
    FUZZ_CHECK(EVP_PKEY_eq(leaf_key, X509_REQ_get0_pubkey(req)) == 1);
    FUZZ_CHECK(X509_NAME_entry_count(X509_get_subject_name(x)) == 0);
    FUZZ_CHECK(X509_check_ca(x) == 0);
    check_serial(x, leaf->serial);
    check_san(x);

    X509_free(x);
    as_leaf_free(leaf);
}

static void fuzz_pem(const char *pem, size_t len)
{
    struct as_csr *csr = NULL;
    char why[128];
    why[0] = '\0';
    enum as_err r = as_csr_parse(pem, len, &csr, why, sizeof why);
    if (r != AS_OK) {
        FUZZ_CHECK(csr == NULL);
        FUZZ_CHECK(r == AS_ERR_INVALID || r == AS_ERR_TOO_LARGE || r == AS_ERR_NOMEM);
        FUZZ_CHECK(r == AS_ERR_NOMEM || why[0] != '\0');
        ERR_clear_error();
        return;
    }
    FUZZ_CHECK(csr != NULL);
    X509_REQ *req = openssl_accepts(pem, len);
    if (req == NULL) {
        fprintf(stderr, "fuzz_csr: as_csr_parse accepted a CSR that OpenSSL refuses\n");
        abort();
    }
    issue_and_check(csr, req);
    X509_REQ_free(req);
    as_csr_free(csr);
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    /* as_csr_parse takes a length; a copy of exactly that many bytes lets ASan see overreads. */
    char *pem = fuzz_xmalloc(size);
    if (size > 0) {
        memcpy(pem, data, size);
    }
    fuzz_pem(pem, size);
    if (size > 0 && size <= AS_MAX_CSR_BYTES / 2 && memmem(pem, size, "-----BEGIN", 10) == NULL) {
        char *wrapped = as_pem_encode("CERTIFICATE REQUEST", data, size);
        FUZZ_CHECK(wrapped != NULL);
        fuzz_pem(wrapped, strlen(wrapped));
        free(wrapped);
    }
    free(pem);
    return 0;
}
