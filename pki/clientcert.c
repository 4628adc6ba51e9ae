/*
 * clientcert.c: TLS client certificates for the cert auth method (SPEC §5): a presented chain
 * (DER, leaf first, as the TLS layer hands it over) is checked against a trust PEM (CA
 * certificates, or pinned leaf certificates) with OpenSSL, at a given time, for client
 * authentication; what a login needs of the leaf comes back as a small summary.
 *
 * The TLS layer has already proven that the peer holds the leaf's private key (the handshake's
 * CertificateVerify); nothing the TLS library concluded about the chain is trusted here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki/pki.h"
#include "pki/pki_internal.h"

/* A trust PEM is one role's CA list or authsvc's bundle: a few certificates. */
#define TRUST_MAX_CERTS 64
#define TRUST_MAX_PEM_BYTES (1024 * 1024)
/* RFC 5280 ub-common-name is 64 characters; room for multi-byte UTF-8. */
#define MAX_CN_BYTES 256
#define MAX_SAN_BYTES 2048
/* RFC 5280 §4.1.2.2 allows 20 octets; clients "SHOULD gracefully handle" more, up to this. */
#define MAX_SERIAL_BYTES 32

struct as_clientchain {
    X509 *leaf;
    STACK_OF(X509) * rest; /* the presented certificates after the leaf, untrusted */
    unsigned char *leaf_der;
    size_t leaf_len;
};

struct as_clientcert {
    char *cn; /* NULL when the subject has no commonName */
    char **dns;
    size_t ndns;
    char **uri;
    size_t nuri;
    char serial[3 * MAX_SERIAL_BYTES + 1];
    int64_t not_before;
    int64_t not_after;
    unsigned char *der;
    size_t der_len;
};

static void set_fail(enum as_clientcert_fail *fail, enum as_clientcert_fail v)
{
    if (fail != NULL) {
        *fail = v;
    }
}

/* ---- presented chains ---- */

void as_clientchain_free(struct as_clientchain *c)
{
    if (c == NULL) {
        return;
    }
    X509_free(c->leaf);
    sk_X509_pop_free(c->rest, X509_free);
    free(c->leaf_der);
    free(c);
}

/* One DER certificate that must use exactly len bytes (no trailing data). */
static X509 *der_to_x509(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    if (der == NULL || len == 0 || len > AS_CLIENTCERT_MAX_DER) {
        return NULL;
    }
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x != NULL && p != der + len) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/*
 * Extensions OpenSSL could not decode (a bad SAN, basicConstraints or key usage encoding) set
 * EXFLAG_INVALID when they are cached; such a certificate is refused rather than half-read.
 */
static bool extensions_ok(X509 *x)
{
    return (X509_get_extension_flags(x) & EXFLAG_INVALID) == 0;
}

enum as_err as_clientchain_parse(const unsigned char *const *der, const size_t *len, size_t n,
                                 struct as_clientchain **out, char *why, size_t whylen)
{
    enum as_err r = AS_ERR_INVALID;
    struct as_clientchain *c = NULL;
    *out = NULL;
    /* The count is checked before der or len is read: callers may pass arrays of
     * AS_CLIENTCERT_MAX_CHAIN entries with a larger n. */
    if (n == 0) {
        as_why(why, whylen, "no client certificate was presented");
        goto out;
    }
    if (n > AS_CLIENTCERT_MAX_CHAIN) {
        as_why(why, whylen, "the client presented %zu certificates; at most %d are accepted", n,
               AS_CLIENTCERT_MAX_CHAIN);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (len[i] > AS_CLIENTCERT_MAX_DER) {
            as_why(why, whylen, "client certificate %zu is larger than %d bytes", i,
                   AS_CLIENTCERT_MAX_DER);
            goto out;
        }
    }
    if ((c = calloc(1, sizeof *c)) == NULL || (c->rest = sk_X509_new_null()) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        X509 *x = der_to_x509(der[i], len[i]);
        if (x == NULL || !extensions_ok(x)) {
            X509_free(x);
            as_why(why, whylen, "client certificate %zu is not a well-formed X.509 certificate", i);
            goto out;
        }
        if (i == 0) {
            c->leaf = x;
        } else if (sk_X509_push(c->rest, x) <= 0) {
            X509_free(x);
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    if ((c->leaf_der = malloc(len[0])) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    memcpy(c->leaf_der, der[0], len[0]);
    c->leaf_len = len[0];
    *out = c;
    c = NULL;
    r = AS_OK;
out:
    ERR_clear_error();
    as_clientchain_free(c);
    return r;
}

/* ---- trust PEMs ---- */

/* Reads every CERTIFICATE block of pem (non-certificate blocks are skipped). */
static enum as_err read_pem_certs(const char *pem, STACK_OF(X509) * *out, char *why, size_t whylen)
{
    enum as_err r = AS_ERR_INVALID;
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *bio = NULL;
    size_t plen = pem ? strlen(pem) : 0;
    *out = NULL;
    if (sk == NULL) {
        return AS_ERR_NOMEM;
    }
    if (plen > TRUST_MAX_PEM_BYTES) {
        as_why(why, whylen, "certificate PEM is larger than %d bytes", TRUST_MAX_PEM_BYTES);
        goto out;
    }
    if (plen == 0) {
        *out = sk;
        return AS_OK;
    }
    if ((bio = BIO_new_mem_buf(pem, (int)plen)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(bio, NULL, as_pki_no_passphrase, NULL);
        if (x == NULL) {
            /* The end of the input shows as "no start line"; anything else is a bad block. */
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                break;
            }
            as_why(why, whylen, "failed to parse certificate");
            goto out;
        }
        if (!extensions_ok(x)) {
            X509_free(x);
            as_why(why, whylen, "failed to parse certificate: an extension does not decode");
            goto out;
        }
        if (sk_X509_num(sk) >= TRUST_MAX_CERTS) {
            X509_free(x);
            as_why(why, whylen, "more than %d certificates in the PEM", TRUST_MAX_CERTS);
            goto out;
        }
        if (sk_X509_push(sk, x) <= 0) {
            X509_free(x);
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    *out = sk;
    sk = NULL;
    r = AS_OK;
out:
    ERR_clear_error();
    BIO_free(bio);
    sk_X509_pop_free(sk, X509_free);
    return r;
}

/* RFC 5280 §4.2.1.12: with an extKeyUsage present, clientAuth must be in it. */
static bool eku_allows_client(X509 *x)
{
    uint32_t flags = X509_get_extension_flags(x);
    return (flags & EXFLAG_XKUSAGE) == 0 || (X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
}

/* A CA certificate (basicConstraints CA:TRUE, or an old v1 self-signed root) is an anchor;
 * anything else in a trust PEM is a pinned leaf. */
static bool is_ca(X509 *x)
{
    return X509_check_ca(x) != 0;
}

enum as_err as_clientcert_trust_check(const char *pem, size_t *ncerts, char *why, size_t whylen)
{
    STACK_OF(X509) *sk = NULL;
    enum as_err r = read_pem_certs(pem, &sk, why, whylen);
    if (r != AS_OK) {
        return r;
    }
    if (sk_X509_num(sk) == 0) {
        as_why(why, whylen, "failed to parse certificate");
        r = AS_ERR_INVALID;
        goto out;
    }
    for (int i = 0; i < sk_X509_num(sk); i++) {
        X509 *x = sk_X509_value(sk, i);
        if (!is_ca(x) && !eku_allows_client(x)) {
            as_why(why, whylen,
                   "nonCA certificates should have TLS client authentication set as "
                   "an extended key usage");
            r = AS_ERR_INVALID;
            goto out;
        }
    }
    if (ncerts != NULL) {
        *ncerts = (size_t)sk_X509_num(sk);
    }
out:
    sk_X509_pop_free(sk, X509_free);
    return r;
}

/* ---- the summary of an accepted leaf ---- */

void as_clientcert_free(struct as_clientcert *c)
{
    if (c == NULL) {
        return;
    }
    free(c->cn);
    for (size_t i = 0; i < c->ndns; i++) {
        free(c->dns[i]);
    }
    for (size_t i = 0; i < c->nuri; i++) {
        free(c->uri[i]);
    }
    free(c->dns);
    free(c->uri);
    free(c->der);
    free(c);
}

const char *as_clientcert_cn(const struct as_clientcert *c)
{
    return c->cn;
}

size_t as_clientcert_dns_count(const struct as_clientcert *c)
{
    return c->ndns;
}

const char *as_clientcert_dns(const struct as_clientcert *c, size_t i)
{
    return i < c->ndns ? c->dns[i] : NULL;
}

size_t as_clientcert_uri_count(const struct as_clientcert *c)
{
    return c->nuri;
}

const char *as_clientcert_uri(const struct as_clientcert *c, size_t i)
{
    return i < c->nuri ? c->uri[i] : NULL;
}

const char *as_clientcert_serial(const struct as_clientcert *c)
{
    return c->serial;
}

int64_t as_clientcert_not_before(const struct as_clientcert *c)
{
    return c->not_before;
}

int64_t as_clientcert_not_after(const struct as_clientcert *c)
{
    return c->not_after;
}

const unsigned char *as_clientcert_der(const struct as_clientcert *c, size_t *len)
{
    *len = c->der_len;
    return c->der;
}

/* Printable ASCII only: SAN names that carry control bytes or NULs are refused outright. */
static bool printable(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

static enum as_err push_name(char ***v, size_t *n, const ASN1_IA5STRING *s)
{
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    if (len <= 0 || len > MAX_SAN_BYTES || !printable(d, (size_t)len)) {
        return AS_ERR_INVALID;
    }
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL) {
        return AS_ERR_NOMEM;
    }
    *v = nv;
    if ((nv[*n] = malloc((size_t)len + 1)) == NULL) {
        return AS_ERR_NOMEM;
    }
    memcpy(nv[*n], d, (size_t)len);
    nv[*n][len] = '\0';
    (*n)++;
    return AS_OK;
}

/* The subject's commonName as UTF-8; more than one CN is ambiguous and refused. */
static enum as_err leaf_cn(X509 *x, char **out, char *why, size_t whylen)
{
    const X509_NAME *name = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    *out = NULL;
    if (idx < 0) {
        return AS_OK;
    }
    if (X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0) {
        as_why(why, whylen, "the client certificate's subject has more than one common name");
        return AS_ERR_INVALID;
    }
    const ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    int n = ASN1_STRING_to_UTF8(&utf8, d);
    if (n < 0 || n > MAX_CN_BYTES || memchr(utf8, '\0', (size_t)n) != NULL) {
        OPENSSL_free(utf8);
        as_why(why, whylen, "the client certificate's common name is not valid text");
        return AS_ERR_INVALID;
    }
    *out = malloc((size_t)n + 1);
    if (*out != NULL) {
        memcpy(*out, utf8, (size_t)n);
        (*out)[n] = '\0';
    }
    OPENSSL_free(utf8);
    return *out ? AS_OK : AS_ERR_NOMEM;
}

/* Lowercase colon hex of the serial's magnitude, as as_serial_normalize prints ours. */
static enum as_err leaf_serial(X509 *x, char *out, size_t outlen, char *why, size_t whylen)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char b[MAX_SERIAL_BYTES];
    enum as_err r = AS_ERR_INVALID;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (bn == NULL) {
        return AS_ERR_NOMEM;
    }
    /* RFC 5280 §4.1.2.2: a positive integer. */
    if (BN_is_negative(bn)) {
        as_why(why, whylen, "the client certificate has a negative serial number");
        goto out;
    }
    int n = BN_num_bytes(bn);
    if (n > MAX_SERIAL_BYTES || outlen < 3 * MAX_SERIAL_BYTES + 1) {
        as_why(why, whylen, "the client certificate's serial number is longer than %d bytes",
               MAX_SERIAL_BYTES);
        goto out;
    }
    if (n == 0) {
        b[0] = 0;
        n = 1;
    } else if (BN_bn2bin(bn, b) != n) {
        r = AS_ERR_CRYPTO;
        goto out;
    }
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0) {
            out[o++] = ':';
        }
        out[o++] = digits[b[i] >> 4];
        out[o++] = digits[b[i] & 15];
    }
    out[o] = '\0';
    r = AS_OK;
out:
    BN_free(bn);
    return r;
}

static enum as_err summarize(const struct as_clientchain *ch, struct as_clientcert **out, char *why,
                             size_t whylen)
{
    enum as_err r = AS_ERR_NOMEM;
    GENERAL_NAMES *gens = NULL;
    struct as_clientcert *c = calloc(1, sizeof *c);
    *out = NULL;
    if (c == NULL) {
        goto out;
    }
    if ((r = leaf_cn(ch->leaf, &c->cn, why, whylen)) != AS_OK ||
        (r = leaf_serial(ch->leaf, c->serial, sizeof c->serial, why, whylen)) != AS_OK) {
        goto out;
    }
    if ((r = as_pki_asn1_time_to_unix(X509_get0_notBefore(ch->leaf), &c->not_before)) != AS_OK ||
        (r = as_pki_asn1_time_to_unix(X509_get0_notAfter(ch->leaf), &c->not_after)) != AS_OK) {
        as_why(why, whylen, "the client certificate's validity cannot be read");
        r = AS_ERR_INVALID;
        goto out;
    }
    int crit = 0;
    gens = X509_get_ext_d2i(ch->leaf, NID_subject_alt_name, &crit, NULL);
    if (gens == NULL && crit != -1) {
        /* -1: no SAN at all; anything else without a result is a SAN that does not decode. */
        as_why(why, whylen, "the client certificate's subjectAltName cannot be decoded");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (sk_GENERAL_NAME_num(gens) > AS_CLIENTCERT_MAX_SANS) {
        as_why(why, whylen, "the client certificate has more than %d subjectAltName entries",
               AS_CLIENTCERT_MAX_SANS);
        r = AS_ERR_INVALID;
        goto out;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            r = push_name(&c->dns, &c->ndns, g->d.dNSName);
        } else if (g->type == GEN_URI) {
            r = push_name(&c->uri, &c->nuri, g->d.uniformResourceIdentifier);
        } else {
            continue;
        }
        if (r != AS_OK) {
            if (r == AS_ERR_INVALID) {
                as_why(why, whylen,
                       "the client certificate has a DNS or URI name that is not "
                       "printable ASCII");
            }
            goto out;
        }
    }
    if ((c->der = malloc(ch->leaf_len)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    memcpy(c->der, ch->leaf_der, ch->leaf_len);
    c->der_len = ch->leaf_len;
    *out = c;
    c = NULL;
    r = AS_OK;
out:
    GENERAL_NAMES_free(gens);
    as_clientcert_free(c);
    ERR_clear_error();
    return r;
}

/* ---- verification ---- */

/* Go's crypto/x509 wording, which Vault's cert method passes on to its users. */
static void say_validity(X509 *x, int64_t now, char *why, size_t whylen)
{
    int64_t nb = 0, na = 0;
    char tnow[40], tb[40];
    if (as_pki_asn1_time_to_unix(X509_get0_notBefore(x), &nb) != AS_OK ||
        as_pki_asn1_time_to_unix(X509_get0_notAfter(x), &na) != AS_OK) {
        as_why(why, whylen, "x509: certificate has expired or is not yet valid");
        return;
    }
    as_time_rfc3339(now, tnow, sizeof tnow);
    if (now < nb) {
        as_time_rfc3339(nb, tb, sizeof tb);
        as_why(why, whylen,
               "x509: certificate has expired or is not yet valid: current time %s "
               "is before %s",
               tnow, tb);
    } else {
        as_time_rfc3339(na, tb, sizeof tb);
        as_why(why, whylen,
               "x509: certificate has expired or is not yet valid: current time %s "
               "is after %s",
               tnow, tb);
    }
}

/* Checks that apply to the leaf whatever the trust: validity and usage (RFC 5280 §4.1.2.5,
 * §4.2.1.3, §4.2.1.12). */
static enum as_err leaf_checks(X509 *leaf, int64_t now, enum as_clientcert_fail *fail, char *why,
                               size_t whylen)
{
    int64_t nb = 0, na = 0;
    if (as_pki_asn1_time_to_unix(X509_get0_notBefore(leaf), &nb) != AS_OK ||
        as_pki_asn1_time_to_unix(X509_get0_notAfter(leaf), &na) != AS_OK || now < nb || now > na) {
        set_fail(fail, AS_CC_EXPIRED);
        say_validity(leaf, now, why, whylen);
        return AS_ERR_INVALID;
    }
    if (!eku_allows_client(leaf)) {
        set_fail(fail, AS_CC_USAGE);
        as_why(why, whylen,
               "x509: certificate specifies an incompatible key usage (no "
               "clientAuth in its extended key usage)");
        return AS_ERR_INVALID;
    }
    /* keyUsage, when present, must allow a handshake signature; also Netscape cert types. */
    if (X509_check_purpose(leaf, X509_PURPOSE_SSL_CLIENT, 0) != 1) {
        set_fail(fail, AS_CC_USAGE);
        as_why(why, whylen, "x509: certificate specifies an incompatible key usage");
        return AS_ERR_INVALID;
    }
    return AS_OK;
}

/* Why OpenSSL's path validation failed, as a kind and a sentence. */
static void explain(X509_STORE_CTX *ctx, int64_t now, enum as_clientcert_fail *fail, char *why,
                    size_t whylen)
{
    int err = X509_STORE_CTX_get_error(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    X509 *cur = X509_STORE_CTX_get_current_cert(ctx);
    switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
        set_fail(fail, AS_CC_UNTRUSTED);
        as_why(why, whylen, "x509: certificate signed by unknown authority");
        return;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        set_fail(fail, AS_CC_EXPIRED);
        if (cur != NULL) {
            say_validity(cur, now, why, whylen);
        } else {
            as_why(why, whylen, "x509: certificate has expired or is not yet valid");
        }
        if (depth > 0) {
            size_t k = strlen(why);
            as_why(why + k, whylen - k, " (chain certificate at depth %d)", depth);
        }
        return;
    case X509_V_ERR_INVALID_PURPOSE:
        set_fail(fail, AS_CC_USAGE);
        as_why(why, whylen, "x509: certificate specifies an incompatible key usage (depth %d)",
               depth);
        return;
    default:
        set_fail(fail, AS_CC_INVALID);
        as_why(why, whylen, "x509: %s (depth %d)", X509_verify_cert_error_string(err), depth);
        return;
    }
}

/* Byte-for-byte equal DER (the comparison runs over public data; CRYPTO_memcmp anyway). */
static bool same_der(X509 *x, const unsigned char *der, size_t len)
{
    unsigned char *enc = NULL;
    int n = i2d_X509(x, &enc);
    bool eq = n > 0 && (size_t)n == len && CRYPTO_memcmp(enc, der, len) == 0;
    OPENSSL_free(enc);
    return eq;
}

/* RFC 5280 §6.1 path validation of ch against the anchors in store, at now, for clientAuth. */
static enum as_err verify_path(const struct as_clientchain *ch, X509_STORE *store,
                               STACK_OF(X509) * untrusted, int64_t now,
                               enum as_clientcert_fail *fail, char *why, size_t whylen)
{
    enum as_err r = AS_ERR_NOMEM;
    X509_STORE_CTX *ctx = NULL;
    for (int i = 0; i < sk_X509_num(ch->rest); i++) {
        if (!X509_add_cert(untrusted, sk_X509_value(ch->rest, i), X509_ADD_FLAG_UP_REF)) {
            goto out;
        }
    }
    if ((ctx = X509_STORE_CTX_new()) == NULL ||
        X509_STORE_CTX_init(ctx, store, ch->leaf, untrusted) != 1) {
        goto out;
    }
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(vp, (time_t)now);
    /* Any trusted CA certificate is an anchor, self-signed or not, as in Vault (Go's roots
     * pool): a role may name an intermediate. */
    X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_PARTIAL_CHAIN);
    X509_VERIFY_PARAM_set_depth(vp, AS_CLIENTCERT_MAX_CHAIN);
    if (X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if (X509_verify_cert(ctx) != 1) {
        explain(ctx, now, fail, why, whylen);
        r = AS_ERR_INVALID;
        goto out;
    }
    r = AS_OK;
out:
    X509_STORE_CTX_free(ctx);
    return r;
}

enum as_err as_clientchain_verify(const struct as_clientchain *ch, const char *trust_pem,
                                  const char *untrusted_pem, int64_t now,
                                  struct as_clientcert **out, enum as_clientcert_fail *fail,
                                  char *why, size_t whylen)
{
    enum as_err r;
    STACK_OF(X509) *trust = NULL;
    STACK_OF(X509) *untrusted = NULL;
    X509_STORE *store = NULL;
    bool pinned = false;
    bool anchors = false;
    *out = NULL;
    set_fail(fail, AS_CC_INVALID);
    if ((r = read_pem_certs(trust_pem, &trust, why, whylen)) != AS_OK ||
        (r = read_pem_certs(untrusted_pem, &untrusted, why, whylen)) != AS_OK) {
        /* A trust PEM that does not parse is the caller's configuration, not the peer's. */
        set_fail(fail, AS_CC_TRUST);
        goto out;
    }
    if ((r = leaf_checks(ch->leaf, now, fail, why, whylen)) != AS_OK) {
        goto out;
    }
    if ((store = X509_STORE_new()) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < sk_X509_num(trust); i++) {
        X509 *t = sk_X509_value(trust, i);
        if (!is_ca(t)) {
            /* A pinned leaf: the presented leaf must be exactly this certificate. */
            pinned = pinned || same_der(t, ch->leaf_der, ch->leaf_len);
        } else if (X509_STORE_add_cert(store, t) == 1) {
            anchors = true;
        } else {
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    /* A pinned leaf needs no path: its validity and usage were checked above, the bytes are
     * the trust. */
    if (!pinned && !anchors) {
        set_fail(fail, sk_X509_num(trust) > 0 ? AS_CC_UNTRUSTED : AS_CC_TRUST);
        as_why(why, whylen,
               sk_X509_num(trust) > 0 ? "x509: certificate signed by unknown authority"
                                      : "no trusted certificate configured");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (!pinned && (r = verify_path(ch, store, untrusted, now, fail, why, whylen)) != AS_OK) {
        goto out;
    }
    if ((r = summarize(ch, out, why, whylen)) != AS_OK) {
        if (r == AS_ERR_INVALID) {
            set_fail(fail, AS_CC_MALFORMED);
        }
        goto out;
    }
    set_fail(fail, AS_CC_OK);
out:
    X509_STORE_free(store);
    sk_X509_pop_free(trust, X509_free);
    sk_X509_pop_free(untrusted, X509_free);
    ERR_clear_error();
    return r;
}

enum as_err as_clientcert_verify(const unsigned char *const *der, const size_t *len, size_t n,
                                 const char *trust_pem, const char *untrusted_pem, int64_t now,
                                 struct as_clientcert **out, enum as_clientcert_fail *fail,
                                 char *why, size_t whylen)
{
    struct as_clientchain *ch = NULL;
    *out = NULL;
    enum as_err r = as_clientchain_parse(der, len, n, &ch, why, whylen);
    if (r != AS_OK) {
        set_fail(fail, r == AS_ERR_INVALID ? AS_CC_MALFORMED : AS_CC_INVALID);
        return r;
    }
    r = as_clientchain_verify(ch, trust_pem, untrusted_pem, now, out, fail, why, whylen);
    as_clientchain_free(ch);
    return r;
}
