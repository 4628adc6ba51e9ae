/*
 * pem.c: a PEM certificate chain as the proxies forward it (nginx $ssl_client_escaped_cert,
 * Envoy XFCC Cert=, or connect/authorize's client_cert_pem) into the DER chain that
 * pki/clientcert.c judges. Only CERTIFICATE blocks are taken, bounded in number and size.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "pki/pki.h"

#define MAX_PEM_BYTES (AS_CLIENTCERT_MAX_CHAIN * AS_CLIENTCERT_MAX_DER * 2)

enum as_err as_clientchain_parse_pem(const char *pem, size_t len, struct as_clientchain **out,
                                     char *why, size_t whylen)
{
    enum as_err r = AS_OK;
    unsigned char *der[AS_CLIENTCERT_MAX_CHAIN] = {0};
    size_t lens[AS_CLIENTCERT_MAX_CHAIN] = {0};
    size_t n = 0;
    BIO *bio = NULL;
    *out = NULL;
    if (pem == NULL || len == 0 || len > MAX_PEM_BYTES) {
        snprintf(why, whylen, "client certificate PEM is empty or too large");
        return AS_ERR_INVALID;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    for (;;) {
        char *name = NULL;
        char *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
            ERR_clear_error(); /* end of input, or trailing text after the last block */
            break;
        }
        bool cert = strcmp(name, "CERTIFICATE") == 0 && header[0] == '\0';
        OPENSSL_free(name);
        OPENSSL_free(header);
        if (!cert || n == AS_CLIENTCERT_MAX_CHAIN || dlen <= 0) {
            OPENSSL_free(data);
            snprintf(why, whylen,
                     cert ? "client certificate chain is too long"
                          : "client certificate PEM holds something other than "
                            "certificates");
            r = AS_ERR_INVALID;
            goto out;
        }
        der[n] = data;
        lens[n] = (size_t)dlen;
        n++;
    }
    if (n == 0) {
        snprintf(why, whylen, "no certificate found in the client certificate PEM");
        r = AS_ERR_INVALID;
        goto out;
    }
    r = as_clientchain_parse((const unsigned char *const *)der, lens, n, out, why, whylen);
out:
    for (size_t i = 0; i < n; i++) {
        OPENSSL_free(der[i]);
    }
    BIO_free(bio);
    return r;
}
