/*
 * upstream.c: an upstream CA above authsvc's CA generations (pki.h, SPEC §6 "an intermediate
 * under an upstream CA given in config").
 *
 * The upstream's certificate file holds its CA certificate first, then the rest of its chain
 * towards a root; the last certificate is the trust anchor peers are given (in the SPIFFE bundle
 * and pki/bundle/pem), whether or not it is self-signed. Its key signs one certificate per CA
 * generation and nothing else; the generation then signs SVIDs, CRLs and the listener's
 * certificate with its own key, exactly as a self-signed generation does (pki/ca.c, pki/svid.c).
 *
 * What a leaf's holder must send (SPIFFE X509-SVID §3) is the generation, then the upstream chain
 * without the anchor: struct as_ca's intermediates_pem. pki/ca_chain (SPEC §3) is the generation,
 * then the whole upstream chain: chain_pem.
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
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

/* A chain deeper than this is a misconfiguration, not a PKI (the 64 KiB file cap is the other
 * bound). */
#define UPSTREAM_MAX_CERTS 16
/* SPEC §6: a generation must be usable for more than a moment; an upstream expiring within a
 * minute could only make a CA that dies before its first SVID is fetched. */
#define UPSTREAM_MIN_LIFE_SECS 60
/* The keys we sign with and publish in the bundle (SPEC §6 kty/crv/x/y or n/e). */
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 16384
/* PEM_write_bio_X509 ends every certificate with this line. */
#define PEM_CERT_END "-----END CERTIFICATE-----\n"

struct as_upstream {
    /* [0] the upstream CA (its key is key), each next one its issuer, the last the trust anchor. */
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
    /* The AKID of every generation it issues (RFC 5280 §4.2.1.1). */
    ASN1_OCTET_STRING *skid;
    /* The anchor is self-signed; otherwise path validation must accept a partial chain. */
    bool anchor_self_signed;
    char *chain_pem;   /* every certificate of chain */
    char *inter_pem;   /* all but the anchor; "" when the upstream CA is the anchor */
    char *roots_pem;   /* the anchor */
    json_t *jwks;      /* the anchor's x509-svid JWK, in an array */
    char *subject;     /* of chain[0], for logs */
    int64_t not_after; /* the earliest notAfter of the chain: no path outlives it */
};

/* ---- small helpers ---- */

/* One-line RFC 2253 subject of x, for logs, into a new string. */
static enum as_err subject_of(const X509 *x, char **out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    if (X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) < 0) {
        as_pki_log_ssl_errors("X509_NAME_print_ex");
        BIO_free(bio);
        return AS_ERR_CRYPTO;
    }
    /* A NUL byte, so that an empty subject is an empty string rather than an empty BIO, which
     * as_pki_bio_take_string refuses. */
    if (BIO_write(bio, "", 1) != 1) {
        BIO_free(bio);
        return AS_ERR_NOMEM;
    }
    return as_pki_bio_take_string(&bio, false, out, NULL);
}

/* a then b in a new string. */
static enum as_err concat(const char *a, const char *b, char **out)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    if (la > SIZE_MAX - lb - 1) {
        return AS_ERR_TOO_LARGE;
    }
    *out = malloc(la + lb + 1);
    if (*out == NULL) {
        return AS_ERR_NOMEM;
    }
    memcpy(*out, a, la);
    memcpy(*out + la, b, lb + 1);
    return AS_OK;
}

/* PEM of chain[from..to) into a new string ("" when the range is empty). */
static enum as_err chain_pem_range(STACK_OF(X509) * chain, int from, int to, char **out)
{
    enum as_err r = AS_OK;
    if (from >= to) {
        *out = strdup("");
        return *out != NULL ? AS_OK : AS_ERR_NOMEM;
    }
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    for (int i = from; i < to; i++) {
        if (PEM_write_bio_X509(bio, sk_X509_value(chain, i)) != 1) {
            as_pki_log_ssl_errors("PEM_write_bio_X509");
            r = AS_ERR_CRYPTO;
            goto out;
        }
    }
    r = as_pki_bio_take_string(&bio, false, out, NULL);
out:
    BIO_free(bio);
    return r;
}

/*
 * The key policy for what we sign with and publish (SPEC §6 bundle keys): RSA of 2048 to 16384
 * bits, or EC on P-256 or P-384 (RFC 7518 §6.2.1.1 names both). NULL when pk passes, else why.
 * *coord receives the EC coordinate length (0 for RSA); coord may be NULL.
 */
static const char *key_problem(EVP_PKEY *pk, size_t *coord)
{
    char group[32] = "";
    if (coord != NULL) {
        *coord = 0;
    }
    if (pk == NULL) {
        return "it has no usable public key";
    }
    if (EVP_PKEY_is_a(pk, "RSA")) {
        int bits = EVP_PKEY_get_bits(pk);
        if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
            return "its RSA key is not 2048 to 16384 bits";
        }
        return NULL;
    }
    if (!EVP_PKEY_is_a(pk, "EC") ||
        EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) !=
            1) {
        ERR_clear_error();
        return "its key is neither RSA nor EC on P-256 or P-384";
    }
    size_t len = strcmp(group, "prime256v1") == 0 ? 32 : strcmp(group, "secp384r1") == 0 ? 48 : 0;
    if (len == 0) {
        return "its EC key is not on P-256 or P-384";
    }
    if (coord != NULL) {
        *coord = len;
    }
    return NULL;
}

/* base64url without padding (RFC 7515 §2) of a BIGNUM, left-padded to pad bytes when pad > 0
 * (EC coordinates, RFC 7518 §6.2.1.2), else in its minimal octets (RSA n and e, §6.3.1). */
static char *bn_b64url(const BIGNUM *bn, size_t pad)
{
    size_t n = pad > 0 ? pad : (size_t)BN_num_bytes(bn);
    unsigned char *bin = malloc(n > 0 ? n : 1);
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    bool ok = bin != NULL && s != NULL && n <= INT32_MAX &&
              (pad > 0 ? BN_bn2binpad(bn, bin, (int)n) == (int)n : BN_bn2bin(bn, bin) == (int)n);
    if (ok) {
        as_b64url(bin, n, s);
    }
    free(bin);
    if (!ok) {
        free(s);
        return NULL;
    }
    return s;
}

/*
 * SPIFFE Trust Domain and Bundle §4.1: {"use":"x509-svid", kty and the public key (RFC 7518 §6.2
 * or §6.3), "x5c":[standard base64 of the DER, RFC 7517 §4.7]}. NULL on failure (logged).
 */
static json_t *anchor_jwk(X509 *x)
{
    json_t *jwk = NULL;
    unsigned char *der = NULL;
    char *x5c = NULL;
    BIGNUM *b1 = NULL;
    BIGNUM *b2 = NULL;
    char *s1 = NULL;
    char *s2 = NULL;
    size_t coord = 0;
    EVP_PKEY *pk = X509_get0_pubkey(x);

    int len = i2d_X509(x, &der);
    if (len <= 0 || key_problem(pk, &coord) != NULL) {
        as_pki_log_ssl_errors("encoding the upstream trust anchor");
        goto out;
    }
    x5c = malloc(4 * (((size_t)len + 2) / 3) + 1);
    if (x5c == NULL) {
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)x5c, der, len);
    bool rsa = coord == 0;
    if (EVP_PKEY_get_bn_param(pk, rsa ? OSSL_PKEY_PARAM_RSA_N : OSSL_PKEY_PARAM_EC_PUB_X, &b1) !=
            1 ||
        EVP_PKEY_get_bn_param(pk, rsa ? OSSL_PKEY_PARAM_RSA_E : OSSL_PKEY_PARAM_EC_PUB_Y, &b2) !=
            1) {
        as_pki_log_ssl_errors("reading the upstream trust anchor's public key");
        goto out;
    }
    s1 = bn_b64url(b1, coord);
    s2 = bn_b64url(b2, coord);
    if (s1 == NULL || s2 == NULL) {
        goto out;
    }
    if (rsa) {
        jwk = json_pack("{s:s, s:s, s:s, s:s, s:[s]}", "use", "x509-svid", "kty", "RSA", "n", s1,
                        "e", s2, "x5c", x5c);
    } else {
        jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s]}", "use", "x509-svid", "kty", "EC", "crv",
                        coord == 32 ? "P-256" : "P-384", "x", s1, "y", s2, "x5c", x5c);
    }
out:
    OPENSSL_free(der);
    free(x5c);
    BN_free(b1);
    BN_free(b2);
    free(s1);
    free(s2);
    return jwk;
}

/* ---- loading ---- */

/*
 * Parses every PEM block of buf as a certificate, in order. Only CERTIFICATE blocks without
 * headers are accepted, each DER exactly one certificate: a private key pasted into the (world
 * readable) certificate file is refused rather than silently skipped. Text between blocks is
 * ignored, as PEM allows (RFC 7468 §2).
 */
static enum as_err parse_chain(const char *path, const char *buf, size_t len, STACK_OF(X509) * *out)
{
    enum as_err r = AS_OK;
    STACK_OF(X509) *chain = sk_X509_new_null();
    BIO *bio = len <= INT32_MAX ? BIO_new_mem_buf(buf, (int)len) : NULL;
    char *name = NULL;
    char *header = NULL;
    unsigned char *data = NULL;
    X509 *x = NULL;

    if (chain == NULL || bio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (;;) {
        long dlen = 0;
        ERR_clear_error();
        if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                /* No further "-----BEGIN": the end of the file. */
                ERR_clear_error();
                break;
            }
            as_pki_log_ssl_errors(path);
            as_error("pki: %s: PEM block %d is malformed or truncated", path,
                     sk_X509_num(chain) + 1);
            r = AS_ERR_CONFIG;
            goto out;
        }
        if (strcmp(name, PEM_STRING_X509) != 0 || header[0] != '\0') {
            as_error("pki: %s: PEM block %d is a \"%.40s\", not a plain CERTIFICATE; the "
                     "certificate file holds certificates only",
                     path, sk_X509_num(chain) + 1, name);
            r = AS_ERR_CONFIG;
            goto out;
        }
        if (sk_X509_num(chain) >= UPSTREAM_MAX_CERTS) {
            as_error("pki: %s holds more than %d certificates", path, UPSTREAM_MAX_CERTS);
            r = AS_ERR_CONFIG;
            goto out;
        }
        const unsigned char *p = data;
        x = d2i_X509(NULL, &p, dlen);
        if (x == NULL || p != data + dlen) {
            as_pki_log_ssl_errors(path);
            as_error("pki: %s: certificate %d is not one DER certificate", path,
                     sk_X509_num(chain) + 1);
            r = AS_ERR_CONFIG;
            goto out;
        }
        if (sk_X509_push(chain, x) <= 0) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        x = NULL;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        name = NULL;
        header = NULL;
        data = NULL;
    }
    if (sk_X509_num(chain) == 0) {
        as_error("pki: %s holds no PEM certificate", path);
        r = AS_ERR_CONFIG;
        goto out;
    }
    *out = chain;
    chain = NULL;
out:
    X509_free(x);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    sk_X509_pop_free(chain, X509_free);
    return r;
}

/* The unencrypted private key in buf; an encrypted one fails instead of prompting. */
static enum as_err parse_key(const char *path, const char *buf, size_t len, EVP_PKEY **out)
{
    BIO *bio = len <= INT32_MAX ? BIO_new_mem_buf(buf, (int)len) : NULL;
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    *out = PEM_read_bio_PrivateKey(bio, NULL, as_pki_no_passphrase, NULL);
    BIO_free(bio);
    if (*out == NULL) {
        as_pki_log_ssl_errors(path);
        as_error("pki: %s is not an unencrypted PEM private key", path);
        return AS_ERR_CONFIG;
    }
    return AS_OK;
}

/*
 * Certificate i of the chain must be a CA able to issue certificates (RFC 5280 §4.2.1.9,
 * §4.2.1.3), and its pathLenConstraint must leave room for the i upstream certificates below it
 * plus our generation (§4.2.1.9: the number of non-self-issued intermediates that may follow).
 */
static enum as_err check_ca_ext(const char *path, int i, X509 *x, const char *subj)
{
    uint32_t fl = X509_get_extension_flags(x);
    if ((fl & EXFLAG_INVALID) != 0) {
        as_error("pki: %s: certificate %d (%s) has malformed extensions", path, i + 1, subj);
        return AS_ERR_CONFIG;
    }
    if ((fl & EXFLAG_BCONS) == 0 || (fl & EXFLAG_CA) == 0) {
        as_error("pki: %s: certificate %d (%s) is not a CA: basicConstraints CA:TRUE is missing "
                 "(RFC 5280 §4.2.1.9)",
                 path, i + 1, subj);
        return AS_ERR_CONFIG;
    }
    if ((fl & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) == 0) {
        as_error("pki: %s: certificate %d (%s) has keyUsage without keyCertSign (RFC 5280 "
                 "§4.2.1.3)",
                 path, i + 1, subj);
        return AS_ERR_CONFIG;
    }
    long pathlen = X509_get_pathlen(x);
    if (pathlen >= 0 && pathlen < (long)i + 1) {
        as_error("pki: %s: certificate %d (%s) has pathLenConstraint %ld, which leaves no room "
                 "for authsvc's CA below it",
                 path, i + 1, subj, pathlen);
        return AS_ERR_CONFIG;
    }
    return AS_OK;
}

/* Certificate i must be valid now; *not_after is lowered to its notAfter. */
static enum as_err check_validity(const char *path, int i, X509 *x, const char *subj, int64_t now,
                                  int64_t *not_after)
{
    int64_t nb = 0;
    int64_t na = 0;
    if (as_pki_asn1_time_to_unix(X509_get0_notBefore(x), &nb) != AS_OK ||
        as_pki_asn1_time_to_unix(X509_get0_notAfter(x), &na) != AS_OK) {
        as_error("pki: %s: certificate %d (%s) has an unreadable validity", path, i + 1, subj);
        return AS_ERR_CONFIG;
    }
    if (nb > now) {
        as_error("pki: %s: certificate %d (%s) is not valid yet (notBefore %lld, now %lld)", path,
                 i + 1, subj, (long long)nb, (long long)now);
        return AS_ERR_CONFIG;
    }
    if (na <= now) {
        as_error("pki: %s: certificate %d (%s) has expired (notAfter %lld, now %lld)", path, i + 1,
                 subj, (long long)na, (long long)now);
        return AS_ERR_CONFIG;
    }
    if (na < *not_after) {
        *not_after = na;
    }
    return AS_OK;
}

/*
 * Each certificate signs the one before it: the signature of i-1 verifies with i's key, and
 * i-1 names i as its issuer (name, and AKID against SKID when both exist: RFC 5280 §4.2.1.1).
 * A self-signed last certificate must verify with its own key.
 */
static enum as_err check_links(const char *path, STACK_OF(X509) * chain, bool *anchor_ss)
{
    int n = sk_X509_num(chain);
    for (int i = 1; i < n; i++) {
        X509 *child = sk_X509_value(chain, i - 1);
        X509 *parent = sk_X509_value(chain, i);
        if (X509_verify(child, X509_get0_pubkey(parent)) != 1) {
            ERR_clear_error();
            as_error("pki: %s: certificate %d is not signed by certificate %d; list the upstream "
                     "CA first, then each issuer in order",
                     path, i, i + 1);
            return AS_ERR_CONFIG;
        }
        int err = X509_check_issued(parent, child);
        if (err != X509_V_OK) {
            as_error("pki: %s: certificate %d does not name certificate %d as its issuer: %s", path,
                     i, i + 1, X509_verify_cert_error_string(err));
            return AS_ERR_CONFIG;
        }
    }
    X509 *last = sk_X509_value(chain, n - 1);
    *anchor_ss = (X509_get_extension_flags(last) & EXFLAG_SS) != 0;
    if (*anchor_ss && X509_verify(last, X509_get0_pubkey(last)) != 1) {
        ERR_clear_error();
        as_error("pki: %s: certificate %d is self-issued but its self-signature does not verify",
                 path, n);
        return AS_ERR_CONFIG;
    }
    return AS_OK;
}

/*
 * RFC 5280 §6 path validation of x up to the anchor, with the rest of the chain as untrusted
 * intermediates: what a peer will do, so a constraint we did not check by hand (name constraints
 * on the SPIFFE URI, critical extensions OpenSSL does not know) shows up here and not at the
 * peer. Without check_time the validity periods are not looked at (a stored, expired
 * generation still loads, as as_ca_load lets it).
 */
static enum as_err verify_path(const struct as_upstream *u, X509 *x, bool check_time,
                               const char *what)
{
    enum as_err r = AS_OK;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    int n = sk_X509_num(u->chain);
    unsigned long flags = 0;

    if (store == NULL || ctx == NULL || untrusted == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < n - 1; i++) {
        /* Borrowed: sk_X509_free below frees the stack, not the certificates. */
        if (sk_X509_push(untrusted, sk_X509_value(u->chain, i)) <= 0) {
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    if (!u->anchor_self_signed) {
        /* The anchor is what peers trust even though it has an issuer of its own. */
        flags |= X509_V_FLAG_PARTIAL_CHAIN;
    }
    if (!check_time) {
        flags |= X509_V_FLAG_NO_CHECK_TIME;
    }
    if (X509_STORE_add_cert(store, sk_X509_value(u->chain, n - 1)) != 1 ||
        X509_STORE_CTX_init(ctx, store, x, untrusted) != 1) {
        as_pki_log_ssl_errors("setting up path validation");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    X509_STORE_CTX_set_flags(ctx, flags);
    if (X509_verify_cert(ctx) != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        ERR_clear_error();
        as_error("pki: %s does not validate up to the upstream trust anchor (%s): %s", what,
                 u->subject, X509_verify_cert_error_string(err));
        r = AS_ERR_CONFIG;
        goto out;
    }
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_free(untrusted);
    return r;
}

void as_upstream_free(struct as_upstream *u)
{
    if (u == NULL) {
        return;
    }
    sk_X509_pop_free(u->chain, X509_free);
    /* EVP_PKEY_free clears the private key material. */
    EVP_PKEY_free(u->key);
    ASN1_OCTET_STRING_free(u->skid);
    free(u->chain_pem);
    free(u->inter_pem);
    free(u->roots_pem);
    json_decref(u->jwks);
    free(u->subject);
    free(u);
}

/* Every check of as_upstream_load on the parsed files; fills what is derived from them. */
static enum as_err upstream_check(const char *cert_file, const char *key_file,
                                  struct as_upstream *u)
{
    enum as_err r = AS_OK;
    int n = sk_X509_num(u->chain);
    X509 *up = sk_X509_value(u->chain, 0);
    X509 *anchor = sk_X509_value(u->chain, n - 1);
    char *subj = NULL;
    int64_t now = as_now();
    const char *why = NULL;

    u->not_after = INT64_MAX;
    for (int i = 0; i < n; i++) {
        X509 *x = sk_X509_value(u->chain, i);
        free(subj);
        subj = NULL;
        if ((r = subject_of(x, &subj)) != AS_OK ||
            (r = check_ca_ext(cert_file, i, x, subj)) != AS_OK ||
            (r = check_validity(cert_file, i, x, subj, now, &u->not_after)) != AS_OK) {
            goto out;
        }
    }
    if (X509_check_private_key(up, u->key) != 1) {
        ERR_clear_error();
        as_error("pki: %s does not match the first certificate of %s (the upstream CA's "
                 "certificate must come first)",
                 key_file, cert_file);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if ((why = key_problem(u->key, NULL)) != NULL) {
        as_error("pki: the upstream CA key %s cannot sign with SHA-256 as authsvc does: %s",
                 key_file, why);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if ((r = check_links(cert_file, u->chain, &u->anchor_self_signed)) != AS_OK) {
        goto out;
    }
    if ((why = key_problem(X509_get0_pubkey(anchor), NULL)) != NULL) {
        as_error("pki: %s: the trust anchor (certificate %d) cannot be published in the SPIFFE "
                 "bundle: %s",
                 cert_file, n, why);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if ((r = subject_of(up, &u->subject)) != AS_OK ||
        (r = as_pki_skid_of(up, EVP_sha1(), &u->skid)) != AS_OK ||
        (r = chain_pem_range(u->chain, 0, n, &u->chain_pem)) != AS_OK ||
        (r = chain_pem_range(u->chain, 0, n - 1, &u->inter_pem)) != AS_OK ||
        (r = chain_pem_range(u->chain, n - 1, n, &u->roots_pem)) != AS_OK) {
        goto out;
    }
    u->jwks = json_array();
    if (u->jwks == NULL || json_array_append_new(u->jwks, anchor_jwk(anchor)) != 0) {
        as_error("pki: %s: cannot build the trust anchor's bundle entry", cert_file);
        r = AS_ERR_CRYPTO;
        goto out;
    }
    /* The upstream chain itself, as a peer will validate it. */
    r = verify_path(u, up, true, cert_file);
out:
    free(subj);
    return r;
}

enum as_err as_upstream_load(const char *cert_file, const char *key_file, struct as_upstream **out)
{
    enum as_err r = AS_OK;
    struct as_upstream *u = NULL;
    char *cert_buf = NULL;
    char *key_buf = NULL;
    size_t cert_len = 0;
    size_t key_len = 0;

    if (out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if (cert_file == NULL || key_file == NULL) {
        as_error("pki: an upstream CA needs both a certificate file and a key file");
        r = AS_ERR_CONFIG;
        goto out;
    }
    u = calloc(1, sizeof *u);
    if (u == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    /* The key first: its mode check must not wait on a certificate that fails to parse. */
    if ((r = as_pki_read_file(key_file, true, &key_buf, &key_len)) != AS_OK ||
        (r = as_pki_read_file(cert_file, false, &cert_buf, &cert_len)) != AS_OK) {
        /* A file that cannot be read is a configuration error here (logged by the reader,
         * except a missing one, which the reader leaves to its caller). */
        if (r == AS_ERR_NOT_FOUND) {
            as_error("pki: cannot open the upstream CA files %s and %s: one does not exist",
                     key_file, cert_file);
        }
        if (r != AS_ERR_NOMEM) {
            r = AS_ERR_CONFIG;
        }
        goto out;
    }
    if ((r = parse_chain(cert_file, cert_buf, cert_len, &u->chain)) != AS_OK ||
        (r = parse_key(key_file, key_buf, key_len, &u->key)) != AS_OK ||
        (r = upstream_check(cert_file, key_file, u)) != AS_OK) {
        goto out;
    }
    as_info("pki: upstream CA %s loaded from %s (%d certificates, trust anchor %s)", u->subject,
            cert_file, sk_X509_num(u->chain),
            u->anchor_self_signed ? "self-signed" : "not self-signed");
    *out = u;
    u = NULL;
out:
    if (key_buf != NULL) {
        as_wipe(key_buf, key_len);
        free(key_buf);
    }
    free(cert_buf);
    as_upstream_free(u);
    return r;
}

const char *as_upstream_roots_pem(const struct as_upstream *u)
{
    return u->roots_pem;
}

json_t *as_upstream_x509_jwks(const struct as_upstream *u)
{
    /* A deep copy: the caller may change its array, and ours is read by other threads. */
    return u != NULL ? json_deep_copy(u->jwks) : NULL;
}

int64_t as_upstream_not_after(const struct as_upstream *u)
{
    return u->not_after;
}

/* ---- CA generations under the upstream ---- */

/* Gives ca the upstream's chain: chain_pem gets all of it, intermediates_pem all but the anchor. */
static enum as_err attach_chain(const struct as_upstream *u, struct as_ca *ca)
{
    enum as_err r = AS_OK;
    char *chain = NULL;
    char *inter = NULL;
    if ((r = concat(ca->cert_pem, u->chain_pem, &chain)) != AS_OK ||
        (r = concat(ca->cert_pem, u->inter_pem, &inter)) != AS_OK) {
        goto out;
    }
    free(ca->chain_pem);
    ca->chain_pem = chain;
    chain = NULL;
    free(ca->intermediates_pem);
    ca->intermediates_pem = inter;
    inter = NULL;
    ca->is_root = false;
out:
    free(chain);
    free(inter);
    return r;
}

enum as_err as_ca_generate_under(const struct as_upstream *u, const char *trust_domain, int64_t ttl,
                                 struct as_ca **out)
{
    enum as_err r = AS_OK;
    struct as_ca *ca = NULL;

    if (out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if (u == NULL) {
        r = AS_ERR_INVALID;
        goto out;
    }
    int64_t now = as_now();
    if (u->not_after - now < UPSTREAM_MIN_LIFE_SECS) {
        as_error("pki: the upstream CA (%s) expires in %lld s; renew it before a CA can be made "
                 "under it",
                 u->subject, (long long)(u->not_after - now));
        r = AS_ERR_CONFIG;
        goto out;
    }
    const struct as_pki_issuer iss = {
        .cert = sk_X509_value(u->chain, 0),
        .key = u->key,
        .skid = u->skid,
        .not_after = u->not_after,
    };
    if ((r = as_pki_ca_generate(trust_domain, ttl, &iss, &ca)) != AS_OK ||
        (r = verify_path(u, ca->cert, true, "the new CA certificate")) != AS_OK ||
        (r = attach_chain(u, ca)) != AS_OK) {
        goto out;
    }
    *out = ca;
    ca = NULL;
out:
    as_ca_free(ca);
    return r;
}

enum as_err as_ca_load_under(const struct as_upstream *u, const char *dir, const char *base,
                             const char *trust_domain, struct as_ca **out)
{
    enum as_err r = AS_OK;
    struct as_ca *ca = NULL;

    if (out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if (u == NULL) {
        r = AS_ERR_INVALID;
        goto out;
    }
    if ((r = as_ca_load(dir, base, trust_domain, &ca)) != AS_OK) {
        goto out;
    }
    X509 *up = sk_X509_value(u->chain, 0);
    if (X509_verify(ca->cert, X509_get0_pubkey(up)) != 1) {
        ERR_clear_error();
        as_error("pki: the CA %s in %s/%s.pem is not signed by the upstream CA (%s)", ca->subject,
                 dir, base, u->subject);
        r = AS_ERR_CONFIG;
        goto out;
    }
    int err = X509_check_issued(up, ca->cert);
    if (err != X509_V_OK) {
        as_error("pki: the CA %s in %s/%s.pem does not name the upstream CA (%s) as its issuer: %s",
                 ca->subject, dir, base, u->subject, X509_verify_cert_error_string(err));
        r = AS_ERR_CONFIG;
        goto out;
    }
    if ((r = verify_path(u, ca->cert, false, ca->subject)) != AS_OK ||
        (r = attach_chain(u, ca)) != AS_OK) {
        goto out;
    }
    *out = ca;
    ca = NULL;
out:
    as_ca_free(ca);
    return r;
}

json_t *as_ca_intermediates_json(const struct as_ca *ca)
{
    if (ca == NULL) {
        return NULL;
    }
    json_t *arr = json_array();
    if (arr == NULL || ca->intermediates_pem == NULL) {
        return arr;
    }
    /* intermediates_pem is PEM_write_bio_X509's output, certificate after certificate. */
    const char *p = ca->intermediates_pem;
    while (*p != '\0') {
        const char *end = strstr(p, PEM_CERT_END);
        if (end == NULL) {
            as_error("pki: the CA's intermediates are not whole PEM certificates");
            json_decref(arr);
            return NULL;
        }
        end += strlen(PEM_CERT_END);
        if (json_array_append_new(arr, json_stringn(p, (size_t)(end - p))) != 0) {
            json_decref(arr);
            return NULL;
        }
        p = end;
    }
    return arr;
}

bool as_ca_is_root(const struct as_ca *ca)
{
    return ca->is_root;
}
