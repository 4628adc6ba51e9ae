/*
 * csr.c: a local ECDSA P-256 key and a PKCS#10 request for it (see csr.h).
 */
#include "tools/csr.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* Logs OpenSSL's queued reason (one line) and clears the queue. */
static void log_ssl(const char *what)
{
    char buf[256];
    unsigned long e = ERR_peek_last_error();
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        as_error("%s: %s", what, buf);
    } else {
        as_error("%s", what);
    }
    ERR_clear_error();
}

/*
 * Copies the contents of a memory BIO into a fresh NUL-terminated malloc'd string. The BIO's own
 * storage is wiped by BIO_free (BUF_MEM_free uses OPENSSL_clear_free), so only the copy remains.
 */
static enum as_err bio_to_str(BIO *bio, char **out, size_t *outlen)
{
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    if (n <= 0 || p == NULL) {
        return AS_ERR_CRYPTO;
    }
    char *s = malloc((size_t)n + 1);
    if (s == NULL) {
        return AS_ERR_NOMEM;
    }
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    *out = s;
    if (outlen != NULL) {
        *outlen = (size_t)n;
    }
    return AS_OK;
}

enum as_err as_csr_new_p256(char **key_pem, size_t *key_len, char **csr_pem)
{
    enum as_err r = AS_ERR_CRYPTO;
    EVP_PKEY *pkey = NULL;
    X509_REQ *req = NULL;
    BIO *kbio = NULL;
    BIO *cbio = NULL;
    char *key = NULL;
    char *csr = NULL;
    size_t klen = 0;
    *key_pem = NULL;
    *key_len = 0;
    *csr_pem = NULL;

    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (pkey == NULL) {
        log_ssl("cannot generate a P-256 key");
        goto out;
    }
    /*
     * RFC 2986: version 0 (v1). The subject stays empty and no extension is requested: the
     * server builds the SPIFFE leaf profile itself and ignores everything but the public key.
     */
    req = X509_REQ_new();
    if (req == NULL || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
        X509_REQ_set_pubkey(req, pkey) != 1 || X509_REQ_sign(req, pkey, EVP_sha256()) <= 0) {
        log_ssl("cannot build the certificate request");
        goto out;
    }
    /* A secure-heap BIO when the secure heap is set up; a plain wiped one otherwise. */
    kbio = BIO_new(BIO_s_secmem());
    cbio = BIO_new(BIO_s_mem());
    if (kbio == NULL || cbio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (PEM_write_bio_PKCS8PrivateKey(kbio, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509_REQ(cbio, req) != 1) {
        log_ssl("cannot encode the key or the request");
        goto out;
    }
    if ((r = bio_to_str(kbio, &key, &klen)) != AS_OK ||
        (r = bio_to_str(cbio, &csr, NULL)) != AS_OK) {
        goto out;
    }
    *key_pem = key;
    *key_len = klen;
    *csr_pem = csr;
    key = NULL;
    csr = NULL;
    r = AS_OK;
out:
    as_free_secret_str(key);
    free(csr);
    BIO_free(kbio);
    BIO_free(cbio);
    X509_REQ_free(req);
    /* EVP_PKEY_free clears the private scalar (EC keys are freed with BN_clear_free). */
    EVP_PKEY_free(pkey);
    return r;
}

enum as_err as_csr_cert_matches(const char *cert_pem, const char *csr_pem)
{
    enum as_err r = AS_ERR_INVALID;
    BIO *cbio = NULL;
    BIO *rbio = NULL;
    X509 *cert = NULL;
    X509_REQ *req = NULL;
    cbio = BIO_new_mem_buf(cert_pem, -1);
    rbio = BIO_new_mem_buf(csr_pem, -1);
    if (cbio == NULL || rbio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    cert = PEM_read_bio_X509(cbio, NULL, NULL, NULL);
    req = PEM_read_bio_X509_REQ(rbio, NULL, NULL, NULL);
    if (cert == NULL || req == NULL) {
        goto out;
    }
    /* Both getters return borrowed keys; EVP_PKEY_eq compares the public parts only. */
    EVP_PKEY *ck = X509_get0_pubkey(cert);
    EVP_PKEY *rk = X509_REQ_get0_pubkey(req);
    if (ck != NULL && rk != NULL && EVP_PKEY_eq(ck, rk) == 1) {
        r = AS_OK;
    }
out:
    ERR_clear_error();
    X509_free(cert);
    X509_REQ_free(req);
    BIO_free(cbio);
    BIO_free(rbio);
    return r;
}
