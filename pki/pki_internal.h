/*
 * pki_internal.h: what the files of pki/ share and nothing outside pki/ may include: the CA
 * object's layout and a few OpenSSL helpers. Every helper is defined in pki/ca.c unless noted.
 *
 * The CA private key lives in struct as_ca; only pki/ touches it (STYLE.md §5).
 */
#ifndef AS_PKI_INTERNAL_H
#define AS_PKI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/common.h"
#include "pki/pki.h"

/* RFC 5280 §4.1.2.2: positive, at most 20 octets. 128 random bits with the top bit clear. */
#define AS_PKI_SERIAL_BYTES 16
/* RFC 5280 §4.1.2.2: conforming serials are at most 20 octets. */
#define AS_PKI_SERIAL_MAX_BYTES 20

struct as_ca {
    X509 *cert;
    EVP_PKEY *key;
    /* Fetched once: implicit fetches per operation cost time and take a global lock
     * (PERF-NOTES trap 1). sha1 computes leaf SKIDs (RFC 5280 §4.2.1.2 method 1). */
    EVP_MD *sha256;
    EVP_MD *sha1;
    /* A DigestSign context initialised once with key and SHA-256. Every signature works on a
     * copy (EVP_MD_CTX_copy_ex), which skips the per-signature fetch of the signature method and
     * the key-context setup; the template itself is never used to sign, so it is only read and
     * may be shared by threads. */
    EVP_MD_CTX *sign_tmpl;
    /* The CA's subject key identifier, copied into each leaf's AKID (RFC 5280 §4.2.1.1). */
    ASN1_OCTET_STRING *skid;
    /* Constant extensions of every X.509-SVID and CRL, built once; X509_add_ext copies them. */
    X509_EXTENSION *ext_leaf_bc;  /* basicConstraints critical CA:FALSE */
    X509_EXTENSION *ext_ku_ec;    /* keyUsage critical digitalSignature */
    X509_EXTENSION *ext_ku_rsa;   /* keyUsage critical digitalSignature, keyEncipherment */
    X509_EXTENSION *ext_eku_svid; /* extKeyUsage serverAuth, clientAuth */
    X509_EXTENSION *ext_akid;     /* AKID keyIdentifier = skid, non-critical */
    char *cert_pem;
    unsigned char *cert_der;
    size_t cert_der_len;
    /* as_ca_chain_pem: this CA, then its upstream chain up to and including the trust anchor
     * (SPEC §3 pki/ca_chain). Just the CA for a root. */
    char *chain_pem;
    /* What a peer needs between a leaf and its trust anchor: this CA, then the upstream chain
     * without the anchor (SPIFFE X509-SVID §3). NULL for a root, which peers already hold; the
     * CA alone for one that is not self-signed but was loaded without its upstream (as_ca_load).
     * Consecutive PEM blocks, each ending in "-----END CERTIFICATE-----\n". */
    char *intermediates_pem;
    char *subject; /* one-line RFC 2253 form, for logs */
    char td[AS_SPIFFE_MAX_TD + 1];
    int64_t not_before;
    int64_t not_after;
    /* The CA is its own trust anchor (self-signed). False under an upstream CA (pki/upstream.c),
     * which then fills chain_pem and intermediates_pem from its chain. */
    bool is_root;
};

/*
 * Who issues a new CA generation when it is not self-signed (pki/upstream.c): the issuer's
 * subject becomes the generation's issuer name, its key signs with SHA-256, its SKID becomes the
 * generation's AKID, and the generation's notAfter is capped at not_after. Borrowed.
 */
struct as_pki_issuer {
    const X509 *cert;
    EVP_PKEY *key;
    const ASN1_OCTET_STRING *skid;
    int64_t not_after;
};

/* Logs what failed with OpenSSL's first queued error and drains the queue. */
void as_pki_log_ssl_errors(const char *what);
/* Cleanses a memory BIO's contents, then frees it. NULL is fine. */
void as_pki_bio_free_wiped(BIO *bio);
/*
 * Copies a memory BIO's contents into a new NUL-terminated malloc'd string and frees the BIO
 * (*bio becomes NULL). With secret, the BIO's buffer is cleansed first; the caller wipes *out.
 */
enum as_err as_pki_bio_take_string(BIO **bio, bool secret, char **out, size_t *outlen) AS_WUR;
/* A pem_password_cb that always fails: an encrypted PEM is refused instead of prompting on the
 * terminal as OpenSSL's default callback would. */
int as_pki_no_passphrase(char *buf, int size, int rwflag, void *u);
/* PEM of x into a malloc'd string. */
enum as_err as_pki_cert_to_pem(X509 *x, char **out) AS_WUR;
/* PKCS#8 PEM of key into a malloc'd string of *outlen bytes; the caller wipes and frees it. */
enum as_err as_pki_key_to_pem(EVP_PKEY *key, char **out, size_t *outlen) AS_WUR;
/* A fresh ECDSA P-256 key. */
enum as_err as_pki_gen_p256(EVP_PKEY **out) AS_WUR;
/* Seconds since the epoch of an ASN1_TIME. */
enum as_err as_pki_asn1_time_to_unix(const ASN1_TIME *t, int64_t *out) AS_WUR;
/* A new X509 with version 3 set. */
enum as_err as_pki_x509_new_v3(X509 **out) AS_WUR;
/* Sets notBefore/notAfter (UTCTime before 2050, GeneralizedTime after: RFC 5280 §4.1.2.5). */
enum as_err as_pki_set_validity(X509 *x, int64_t not_before, int64_t not_after) AS_WUR;
/* Appends one GeneralName of type GEN_URI, GEN_DNS (IA5String) or GEN_IPADD (OCTET STRING). */
enum as_err as_pki_san_push(GENERAL_NAMES *gens, int type, const void *data, size_t len) AS_WUR;
/*
 * Draws a serial (RFC 5280 §4.1.2.2): AS_PKI_SERIAL_BYTES random bytes, top bit cleared, never
 * zero, stored in dst. mag (may be NULL, AS_PKI_SERIAL_BYTES bytes) receives the big-endian
 * magnitude without leading zero bytes and *maglen its length.
 */
enum as_err as_pki_random_serial(ASN1_INTEGER *dst, unsigned char *mag, size_t *maglen) AS_WUR;
/*
 * as_ca_generate, issued by iss instead of self-signed when iss is not NULL (then is_root is
 * false and chain_pem is just the CA: the caller appends the issuer's chain). AS_ERR_CONFIG for a
 * bad trust domain or ttl; AS_ERR_EXPIRED when iss->not_after leaves no validity at all.
 */
enum as_err as_pki_ca_generate(const char *trust_domain, int64_t ttl,
                               const struct as_pki_issuer *iss, struct as_ca **out) AS_WUR;
/*
 * Reads the file at path into a new NUL-terminated buffer of at most 64 KiB, as the CA files are
 * read: a regular file only, and with is_key one that group and others cannot access (checked on
 * the open descriptor). AS_ERR_NOT_FOUND (logged at debug only) when it does not exist; every
 * other refusal is logged with the path. The caller wipes and frees *out.
 */
enum as_err as_pki_read_file(const char *path, bool is_key, char **out, size_t *outlen) AS_WUR;
/* The keyIdentifier for the AKID of what x issues: its SKID, else SHA-1 of its public key
 * (RFC 5280 §4.2.1.2 method 1). *out is new; the caller frees it. */
enum as_err as_pki_skid_of(X509 *x, const EVP_MD *sha1, ASN1_OCTET_STRING **out) AS_WUR;
/* Signs x with the CA key and SHA-256 through a copy of ca->sign_tmpl. */
enum as_err as_pki_sign_x509(const struct as_ca *ca, X509 *x) AS_WUR;
/* Signs crl the same way. */
enum as_err as_pki_sign_crl(const struct as_ca *ca, X509_CRL *crl) AS_WUR;

/*
 * Defined in pki/spiffe.c. NULL when td (len bytes, not NUL-terminated necessarily) is a valid
 * SPIFFE trust domain name (SPIFFE-ID §2.1, §2.3), else a static sentence saying which rule
 * failed.
 */
const char *as_pki_td_problem(const char *td, size_t len);

/* ---- JWS helpers shared by pki/jwtsvid.c and pki/jwt.c (defined in pki/jwtsvid.c) ---- */
/* RFC 7518 §3.4: the largest ECDSA scalar a JWS carries, P-521's 66 octets (ES512). */
#define AS_PKI_ECDSA_SCALAR_MAX 66
/* The DER of any R||S of 2 x 66 octets: SEQUENCE { INTEGER r, INTEGER s }, each up to 67 content
 * octets behind a 2-octet header, behind a 3-octet SEQUENCE header (RFC 3279 §2.2.3). A forged R
 * or S need not lie below the order, so this is 2 more than ECDSA_size() of a P-521 key. */
#define AS_PKI_ECDSA_DER_MAX 141
/*
 * Decodes len base64url characters without padding (RFC 7515 §2, RFC 4648 §5) into out, which
 * holds at least 3 * (len + 3) / 4 bytes; scratch holds at least len + 4. Strict: nothing outside
 * the alphabet, no '=', never a length of 1 mod 4, the unused low bits of the last character zero
 * (RFC 4648 §3.5). false for an empty input or one over 16 KiB.
 */
bool as_pki_b64url_decode(const char *in, size_t len, char *scratch, unsigned char *out,
                          size_t *outlen);
/*
 * Parses untrusted JSON text (a decoded JWS header or payload, a JWKS document) as an object:
 * UTF-8, duplicate member names refused (RFC 7515 §5.2 step 4), no NUL in strings, nothing after
 * the object, nesting at most AS_MAX_JSON_DEPTH. A new reference, or NULL on any failure. The
 * caller bounds len.
 */
json_t *as_pki_json_object_strict(const unsigned char *buf, size_t len);
/*
 * The DER ECDSA-Sig-Value (RFC 3279 §2.2.3) of a raw JWS signature R||S of 2 * scalar_len bytes
 * (RFC 7518 §3.4; scalar_len at most AS_PKI_ECDSA_SCALAR_MAX) into der (dermax bytes, at least
 * AS_PKI_ECDSA_DER_MAX for any scalar_len). AS_ERR_NOMEM, or AS_ERR_INVALID when it does not fit.
 */
enum as_err as_pki_ecdsa_raw_to_der(const unsigned char *rs, size_t scalar_len, unsigned char *der,
                                    size_t dermax, size_t *derlen) AS_WUR;

#endif
