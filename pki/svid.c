/*
 * svid.c: X.509-SVIDs (SPIFFE X509-SVID §4, SPEC §6), the CSRs they are issued for, serial
 * numbers and CRLs (RFC 5280 §5) of a CA generation (pki.h).
 *
 * Issuance is on the hot path of svid/x509, so it avoids what PERF-NOTES trap 1 measured as the
 * cost of OpenSSL 3.0: the CSR's public key is never re-decoded or re-encoded (its
 * SubjectPublicKeyInfo parts are copied into the certificate with X509_PUBKEY_set0_param instead
 * of X509_set_pubkey), the constant extensions were encoded once per CA, digests were fetched
 * once per CA, and each signature starts from a copy of a pre-initialised signing context.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki/pki.h"
#include "pki/pki_internal.h"

/* SPEC §6 sets no limit; a hundred names is far past any workload and keeps a leaf small. */
#define SVID_MAX_DNS_NAMES 100
/* SPEC §6: RSA under 2048 bits is refused. Above 8192 bits a CSR signature check costs tens of
 * milliseconds for nothing any client needs, so that is refused too. */
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
/* SEC 1 §2.3.3 uncompressed points: 0x04 || X || Y. */
#define P256_POINT_LEN 65
#define P384_POINT_LEN 97
#define EC_POINT_UNCOMPRESSED 0x04
/* A CRL lists the unexpired revoked serials of one generation; a million is far past that and
 * still bounds the memory of one call. */
#define CRL_MAX_ENTRIES (1024 * 1024)
/* "aa:" per byte; 20 bytes need 60 characters and a NUL. */
#define SERIAL_HEX_MIN_OUT 64
/* The longest serial text we look at: 20 bytes as "aa:" groups, plus slack to report "too long"
 * rather than scan a huge string. */
#define SERIAL_TEXT_MAX 128

/*
 * What issuance needs of a CSR's SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), kept as its parts so
 * that X509_PUBKEY_set0_param can rebuild exactly the same SPKI in the certificate without a key
 * decode: the algorithm, its parameter, and the subjectPublicKey bits.
 */
struct as_csr {
    int alg_nid;    /* NID_rsaEncryption or NID_X9_62_id_ecPublicKey */
    int param_type; /* V_ASN1_NULL or V_ASN1_UNDEF (RSA), V_ASN1_OBJECT (EC named curve) */
    int curve_nid;  /* EC only */
    unsigned char *key;
    size_t key_len;
    bool rsa; /* keyUsage gets keyEncipherment (SPIFFE X509-SVID §4.3) */
};

/* ---- CSRs ----
 *
 * PERF-NOTES trap 1: PEM_read_bio_X509_REQ decodes the request's public key through OpenSSL
 * 3.0's decoder framework, and X509_REQ_verify then sets up a verification from scratch. The two
 * cost about five times the signature check itself and do not scale across threads. So a CSR is
 * taken apart here instead, still only with OpenSSL's own primitives and without hand-decoding
 * any value:
 *
 *   1. PEM_bytes_read_bio, the first half of PEM_read_bio_X509_REQ, turns the PEM into DER with
 *      the same rules (the label, the headers, the base64);
 *   2. ASN1_get_object walks the fixed shape of RFC 2986 §4.1 to find the signed
 *      CertificationRequestInfo, and each field is decoded by the d2i function OpenSSL's own
 *      X509_REQ template uses for it (d2i_X509_NAME, d2i_X509_ALGOR, d2i_ASN1_BIT_STRING, ...);
 *      only the SubjectPublicKeyInfo's key is not turned into an EVP_PKEY by a decoder;
 *   3. the verification key is built from the key bits (RFC 5480 §2.2 point, RFC 8017 §A.1.1
 *      modulus and exponent) after the key policy accepted them, and the signature is checked
 *      over the CertificationRequestInfo bytes exactly as received, as X509_REQ_verify does.
 *
 * The walk mirrors OpenSSL's template decoder (crypto/asn1/tasn_dec.c) rule for rule, BER
 * leniencies included (indefinite lengths, long-form lengths, constructed strings), because the
 * point is to accept and refuse exactly what PEM_read_bio_X509_REQ + X509_REQ_verify do: the
 * differential test tests/unit/test_csr_diff.c and the fuzz target tests/fuzz/fuzz_csr_diff.c
 * hold it to that against the reference kept in tests/csr_reference.h.
 */

void as_csr_free(struct as_csr *csr)
{
    if (csr == NULL) {
        return;
    }
    free(csr->key);
    free(csr);
}

/*
 * What verifying a CSR needs, made once per process: implicit fetches take global locks on every
 * use (PERF-NOTES trap 1), and building an EC group from its name costs a third of a signature
 * check. Only ever read after csr_algs_init, so threads share them; the key templates
 * are copied, never used themselves.
 */
static struct {
    EVP_MD *sha256;
    EVP_MD *sha384;
    EVP_MD *sha512;
    EVP_PKEY_CTX *rsa; /* holds the fetched RSA key manager; each key is made through a dup */
    EVP_PKEY *p256;    /* domain parameters only; each key is a dup with its point */
    EVP_PKEY *p384;
    bool ok;
} g_csr;
static pthread_once_t g_csr_once = PTHREAD_ONCE_INIT;

/* An EVP_PKEY holding only the named curve's domain parameters. */
static EVP_PKEY *ec_params_key(EVP_PKEY_CTX *ctx, const char *group)
{
    EVP_PKEY *k = NULL;
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_KEY_PARAMETERS, params) != 1) {
        return NULL;
    }
    return k;
}

static void csr_algs_init(void)
{
    EVP_PKEY_CTX *ec = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    g_csr.sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    g_csr.sha384 = EVP_MD_fetch(NULL, "SHA2-384", NULL);
    g_csr.sha512 = EVP_MD_fetch(NULL, "SHA2-512", NULL);
    g_csr.rsa = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ec != NULL && EVP_PKEY_fromdata_init(ec) == 1) {
        g_csr.p256 = ec_params_key(ec, "P-256");
        g_csr.p384 = ec_params_key(ec, "P-384");
    }
    g_csr.ok = g_csr.sha256 != NULL && g_csr.sha384 != NULL && g_csr.sha512 != NULL &&
               g_csr.rsa != NULL && g_csr.p256 != NULL && g_csr.p384 != NULL;
    if (!g_csr.ok) {
        as_pki_log_ssl_errors("setting up CSR verification");
    }
    EVP_PKEY_CTX_free(ec);
}

/* ---- the DER walk ---- */

/*
 * A constructed value being walked, in the terms of OpenSSL's template decoder: p is the next
 * byte; left is what the decoder calls len, the bytes this value may still use (its content for
 * a definite length, everything its parent has left for an indefinite one); eoc says an
 * end-of-contents octet pair is still owed; nolen says the value had an indefinite length, whose
 * end is its EOC rather than its length.
 */
struct der_walk {
    const unsigned char *p;
    long left;
    bool eoc;
    bool nolen;
};

/* The header of the value at in (max bytes available) through ASN1_get_object, which refuses a
 * length running past max, an indefinite length on a primitive value and oversized tags or
 * lengths. *content is where its content starts. */
static bool der_header(const unsigned char *in, long max, int tag, int cls, int *ret,
                       const unsigned char **content, long *len)
{
    int t = 0;
    int c = 0;
    if (max <= 0) {
        return false;
    }
    *content = in;
    *ret = ASN1_get_object(content, len, &t, &c, max);
    return (*ret & 0x80) == 0 && t == tag && c == cls;
}

/*
 * Opens the value at in (max bytes) as tag/cls; with need_cst, it must be constructed (a
 * SEQUENCE; the decoder does not ask it of an IMPLICIT SET OF). On success w walks its content.
 */
static bool der_open(const unsigned char *in, long max, int tag, int cls, bool need_cst,
                     struct der_walk *w)
{
    const unsigned char *p = NULL;
    long len = 0;
    int ret = 0;
    if (!der_header(in, max, tag, cls, &ret, &p, &len)) {
        return false;
    }
    if (need_cst && (ret & V_ASN1_CONSTRUCTED) == 0) {
        return false;
    }
    w->p = p;
    w->eoc = (ret & 1) != 0;
    w->nolen = w->eoc;
    w->left = w->eoc ? max - (long)(p - in) : len;
    return true;
}

enum der_next { DER_MORE, DER_END, DER_BAD };

/* Whether another field follows: not when nothing is left, nor at an end-of-contents (consumed),
 * which only an indefinite length may hold. */
static enum der_next der_next(struct der_walk *w)
{
    if (w->left == 0) {
        return DER_END;
    }
    if (w->left >= 2 && w->p[0] == 0 && w->p[1] == 0) {
        if (!w->eoc) {
            return DER_BAD;
        }
        w->p += 2;
        w->left -= 2;
        w->eoc = false;
        return DER_END;
    }
    return DER_MORE;
}

/* Moves past a field that ends at end (returned by a d2i function, so within left). */
static void der_skip_to(struct der_walk *w, const unsigned char *end)
{
    w->left -= (long)(end - w->p);
    w->p = end;
}

/* Closes a SEQUENCE after its last field: an owed EOC must come now, and a definite length must
 * have been used up. *end is where the value ends. */
static bool der_close(struct der_walk *w, const unsigned char **end)
{
    if (w->eoc) {
        if (w->left < 2 || w->p[0] != 0 || w->p[1] != 0) {
            return false;
        }
        w->p += 2;
        w->left -= 2;
        w->eoc = false;
    } else if (!w->nolen && w->left != 0) {
        return false;
    }
    *end = w->p;
    return true;
}

/* The next mandatory field must be there. */
static bool der_more(struct der_walk *w)
{
    return der_next(w) == DER_MORE;
}

/*
 * What the walk finds in a CSR. tbs points into the DER; the rest is owned and freed by
 * csr_der_clear.
 */
struct csr_der {
    const unsigned char *tbs; /* CertificationRequestInfo, as received: what is signed */
    size_t tbs_len;
    long version;
    const unsigned char *spki; /* SubjectPublicKeyInfo, as received */
    long spki_len;
    X509_ALGOR *key_alg;  /* SubjectPublicKeyInfo.algorithm */
    ASN1_BIT_STRING *key; /* SubjectPublicKeyInfo.subjectPublicKey */
    X509_ALGOR *sig_alg;
    ASN1_BIT_STRING *sig;
};

static void csr_der_clear(struct csr_der *c)
{
    X509_ALGOR_free(c->key_alg);
    ASN1_BIT_STRING_free(c->key);
    X509_ALGOR_free(c->sig_alg);
    ASN1_BIT_STRING_free(c->sig);
    memset(c, 0, sizeof *c);
}

/* RFC 5280 §4.1.2.7 SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier,
 * subjectPublicKey BIT STRING }, the X509_PUBKEY_INTERNAL part of X509_PUBKEY, without the key
 * decode. */
static bool walk_spki(struct der_walk *parent, struct csr_der *c)
{
    struct der_walk w;
    const unsigned char *q = NULL;
    c->spki = parent->p;
    if (!der_open(parent->p, parent->left, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, true, &w) ||
        !der_more(&w)) {
        return false;
    }
    q = w.p;
    if ((c->key_alg = d2i_X509_ALGOR(NULL, &q, w.left)) == NULL) {
        return false;
    }
    der_skip_to(&w, q);
    if (!der_more(&w) || (c->key = d2i_ASN1_BIT_STRING(NULL, &q, w.left)) == NULL) {
        return false;
    }
    der_skip_to(&w, q);
    if (!der_close(&w, &q)) {
        return false;
    }
    c->spki_len = (long)(q - c->spki);
    der_skip_to(parent, q);
    return true;
}

/*
 * RFC 2986 §4.1 attributes [0] IMPLICIT SET OF Attribute. OpenSSL reads it as an OPTIONAL field
 * (absent attributes are tolerated) and, being IMPLICIT, does not insist on the constructed bit.
 * Each Attribute is decoded and dropped: requested extensions are ignored (pki.h).
 */
static bool walk_attributes(struct der_walk *parent)
{
    struct der_walk w;
    const unsigned char *q = NULL;
    if (!der_open(parent->p, parent->left, 0, V_ASN1_CONTEXT_SPECIFIC, false, &w)) {
        return false;
    }
    /* The decoder's SET OF loop: items until the length is used up or an owed EOC comes. */
    for (;;) {
        enum der_next n = der_next(&w);
        if (n == DER_BAD) {
            return false;
        }
        if (n == DER_END) {
            break;
        }
        q = w.p;
        X509_ATTRIBUTE *a = d2i_X509_ATTRIBUTE(NULL, &q, w.left);
        if (a == NULL) {
            return false;
        }
        X509_ATTRIBUTE_free(a);
        der_skip_to(&w, q);
    }
    if (w.eoc) {
        return false;
    }
    der_skip_to(parent, w.p);
    return true;
}

/*
 * RFC 2986 §4.1 CertificationRequestInfo ::= SEQUENCE { version INTEGER, subject Name,
 * subjectPKInfo SubjectPublicKeyInfo, attributes [0] Attributes }.
 */
static bool walk_cri(struct der_walk *parent, struct csr_der *c)
{
    struct der_walk w;
    const unsigned char *q = NULL;
    const unsigned char *start = parent->p;
    if (!der_open(parent->p, parent->left, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, true, &w) ||
        !der_more(&w)) {
        return false;
    }
    q = w.p;
    ASN1_INTEGER *version = d2i_ASN1_INTEGER(NULL, &q, w.left);
    if (version == NULL) {
        return false;
    }
    c->version = ASN1_INTEGER_get(version);
    ASN1_INTEGER_free(version);
    der_skip_to(&w, q);
    /* The subject is ignored, but decoded as X509_REQ's template does: a name OpenSSL refuses
     * (a malformed string, say) makes the whole request unreadable there, so here too. */
    if (!der_more(&w)) {
        return false;
    }
    X509_NAME *subject = d2i_X509_NAME(NULL, &q, w.left);
    if (subject == NULL) {
        return false;
    }
    X509_NAME_free(subject);
    der_skip_to(&w, q);
    if (!der_more(&w) || !walk_spki(&w, c)) {
        return false;
    }
    /* The last field is never OPTIONAL while bytes remain (the decoder's rule): either nothing
     * (or the EOC) follows, or the attributes do. */
    enum der_next n = der_next(&w);
    if (n == DER_BAD || (n == DER_MORE && !walk_attributes(&w)) || !der_close(&w, &q)) {
        return false;
    }
    c->tbs = start;
    c->tbs_len = (size_t)(q - start);
    der_skip_to(parent, q);
    return true;
}

/*
 * RFC 2986 §4.1 CertificationRequest ::= SEQUENCE { certificationRequestInfo,
 * signatureAlgorithm AlgorithmIdentifier, signature BIT STRING }. Like d2i_X509_REQ, bytes after
 * the outer SEQUENCE are not looked at.
 */
static bool csr_der_walk(const unsigned char *der, long len, struct csr_der *c)
{
    struct der_walk w;
    const unsigned char *q = NULL;
    if (!der_open(der, len, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, true, &w) || !der_more(&w) ||
        !walk_cri(&w, c) || !der_more(&w)) {
        return false;
    }
    q = w.p;
    if ((c->sig_alg = d2i_X509_ALGOR(NULL, &q, w.left)) == NULL) {
        return false;
    }
    der_skip_to(&w, q);
    if (!der_more(&w) || (c->sig = d2i_ASN1_BIT_STRING(NULL, &q, w.left)) == NULL) {
        return false;
    }
    der_skip_to(&w, q);
    return der_close(&w, &q);
}

/* One INTEGER of RSAPublicKey as OpenSSL's BIGNUM ASN.1 type reads it: primitive, and its
 * content octets taken as an unsigned big-endian magnitude. */
static bool walk_bignum(struct der_walk *w, BIGNUM **out)
{
    const unsigned char *p = NULL;
    long len = 0;
    int ret = 0;
    if (!der_more(w) ||
        !der_header(w->p, w->left, V_ASN1_INTEGER, V_ASN1_UNIVERSAL, &ret, &p, &len) ||
        (ret & V_ASN1_CONSTRUCTED) != 0) {
        return false;
    }
    if ((*out = BN_bin2bn(p, (int)len, NULL)) == NULL) {
        return false;
    }
    der_skip_to(w, p + len);
    return true;
}

/*
 * RFC 8017 §A.1.1 RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } in the
 * subjectPublicKey bits (RFC 3279 §2.3.1), read as d2i_RSAPublicKey reads it (bytes after the
 * SEQUENCE included) but without making an RSA object, which takes global locks.
 */
static bool rsa_pub_parse(const ASN1_BIT_STRING *bits, BIGNUM **n, BIGNUM **e)
{
    struct der_walk w;
    const unsigned char *end = NULL;
    if (!der_open(ASN1_STRING_get0_data(bits), ASN1_STRING_length(bits), V_ASN1_SEQUENCE,
                  V_ASN1_UNIVERSAL, true, &w) ||
        !walk_bignum(&w, n) || !walk_bignum(&w, e) || !der_close(&w, &end)) {
        BN_free(*n);
        BN_free(*e);
        *n = NULL;
        *e = NULL;
        return false;
    }
    return true;
}

/*
 * OpenSSL 3.0 does not decode a request's key from the bytes its template decoder read: the
 * decoder framework reads the SubjectPublicKeyInfo again from a memory BIO with
 * asn1_d2i_read_bio, which the template decoder's BER leniency does not bind (it refuses a
 * length field it cannot see in its first read of a header, e.g. a long-form length with nine
 * octets). The key is then "cannot be decoded" for the reference, so here too: the same reader,
 * through the public ASN1_d2i_bio, must take the SPKI back whole.
 */
struct spki_reread {
    long len;
};

static void *spki_reread_len(void **x, const unsigned char **pp, long length)
{
    struct spki_reread *rr = *x;
    rr->len = length;
    *pp += length;
    return rr;
}

static bool spki_rereadable(const struct csr_der *c)
{
    struct spki_reread rr = {-1};
    void *x = &rr;
    BIO *bio = BIO_new_mem_buf(c->spki, (int)c->spki_len);
    bool ok = bio != NULL && ASN1_d2i_bio(NULL, spki_reread_len, bio, &x) != NULL &&
              rr.len == c->spki_len;
    BIO_free(bio);
    return ok;
}

/* ---- keys and signatures ---- */

/* RFC 2986 §4 signatures with a digest of SHA-256 or stronger: MD5 and SHA-1 prove nothing
 * today, and our clients all sign with SHA-256. The digest, fetched once, goes to *md. */
static bool csr_sig_alg_ok(const X509_ALGOR *sig_alg, bool rsa, const EVP_MD **md)
{
    const ASN1_OBJECT *obj = NULL;
    int md_nid = NID_undef;
    int pk_nid = NID_undef;
    X509_ALGOR_get0(&obj, NULL, NULL, sig_alg);
    if (OBJ_find_sigid_algs(OBJ_obj2nid(obj), &md_nid, &pk_nid) != 1) {
        return false;
    }
    *md = md_nid == NID_sha256   ? g_csr.sha256
          : md_nid == NID_sha384 ? g_csr.sha384
          : md_nid == NID_sha512 ? g_csr.sha512
                                 : NULL;
    bool pk_ok = rsa ? pk_nid == NID_rsaEncryption : pk_nid == NID_X9_62_id_ecPublicKey;
    return *md != NULL && pk_ok;
}

/*
 * An RSA verification key from n and e (RFC 8017 §3.1) with EVP_PKEY_fromdata, which takes them
 * as native-endian unsigned integers. Both were bounded by the key policy.
 */
static enum as_err rsa_key(const BIGNUM *n, const BIGNUM *e, EVP_PKEY **out)
{
    enum as_err r = AS_OK;
    unsigned char nbuf[RSA_MAX_BITS / 8];
    unsigned char ebuf[sizeof(uint32_t)];
    int nlen = BN_num_bytes(n);
    int elen = BN_num_bytes(e);
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = NULL;

    if (nlen <= 0 || (size_t)nlen > sizeof nbuf || elen <= 0 || (size_t)elen > sizeof ebuf ||
        BN_bn2nativepad(n, nbuf, nlen) != nlen || BN_bn2nativepad(e, ebuf, elen) != elen) {
        r = AS_ERR_INVALID;
        goto out;
    }
    params[0] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_N, nbuf, (size_t)nlen);
    params[1] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_E, ebuf, (size_t)elen);
    params[2] = OSSL_PARAM_construct_end();
    /* A copy of the pre-fetched context (no fetch, unlike EVP_PKEY_CTX_new_from_name) so that
     * threads never share one. OpenSSL 3.0 copies no context once an operation is set up on it,
     * hence the fromdata_init on the copy. */
    ctx = EVP_PKEY_CTX_dup(g_csr.rsa);
    if (ctx == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        as_pki_log_ssl_errors("building an RSA key from a CSR");
        r = AS_ERR_CRYPTO;
        goto out;
    }
out:
    EVP_PKEY_CTX_free(ctx);
    return r;
}

/*
 * An EC verification key: a copy of the curve's pre-built parameters with the CSR's point set
 * (EVP_PKEY_set1_encoded_public_key, SEC 1 §2.3.4 via EC_POINT_oct2point, which refuses a point
 * off the curve as the reference's o2i_ECPublicKey does). EVP_PKEY_fromdata with the group name
 * would build the whole group again for each CSR: measured, a third of the signature check on
 * top of it; the copy costs a tenth of that.
 */
static bool ec_key(const EVP_PKEY *params, const unsigned char *point, size_t len, EVP_PKEY **out)
{
    EVP_PKEY *k = EVP_PKEY_dup((EVP_PKEY *)params);
    if (k == NULL || EVP_PKEY_set1_encoded_public_key(k, point, len) != 1) {
        EVP_PKEY_free(k);
        return false;
    }
    *out = k;
    return true;
}

/* RSA public exponent e: e = 1 would make the "signature" the padded message itself, so proof
 * of possession would mean nothing, and a huge e costs ~100x per verification. Accept odd
 * 65537 <= e <= 2^31-1 (what Go's crypto/rsa, hence SPIRE peers, accepts, and the NIST SP
 * 800-56B floor). */
static bool rsa_exponent_ok(const BIGNUM *e)
{
    return BN_is_odd(e) && BN_num_bits(e) <= 31 && BN_get_word(e) >= 65537;
}

/* The RSA half of csr_key_policy. */
static enum as_err rsa_key_policy(const struct csr_der *c, EVP_PKEY **pkey, char *why,
                                  size_t whylen)
{
    enum as_err r = AS_OK;
    BIGNUM *n = NULL;
    BIGNUM *e = NULL;
    if (!spki_rereadable(c) || !rsa_pub_parse(c->key, &n, &e)) {
        as_why(why, whylen, "CSR public key cannot be decoded");
        r = AS_ERR_INVALID;
        goto out;
    }
    int nbits = BN_num_bits(n);
    if (nbits < RSA_MIN_BITS) {
        as_why(why, whylen, "RSA key of %d bits is too small (at least %d)", nbits, RSA_MIN_BITS);
        r = AS_ERR_INVALID;
        goto out;
    }
    if (nbits > RSA_MAX_BITS) {
        as_why(why, whylen, "RSA key of %d bits is too large (at most %d)", nbits, RSA_MAX_BITS);
        r = AS_ERR_INVALID;
        goto out;
    }
    if (!rsa_exponent_ok(e)) {
        as_why(why, whylen, "RSA public exponent must be odd and between 65537 and 2^31-1");
        r = AS_ERR_INVALID;
        goto out;
    }
    r = rsa_key(n, e, pkey);
out:
    BN_free(n);
    BN_free(e);
    return r;
}

/*
 * The key policy of SPEC §6 on the SPKI itself: rsaEncryption with 2048..8192 bits, or
 * id-ecPublicKey on the named curve P-256 or P-384 (RFC 5480 §2.1.1) with an uncompressed point
 * (compressed points are legal but Go's x509 parser, and so go-spiffe and SPIRE, refuse them).
 * Fills k and makes the verification key *pkey on success; refusals come in the order the checks
 * had when OpenSSL decoded the key, so each CSR keeps its reason.
 */
static enum as_err csr_key_policy(const struct csr_der *c, struct as_csr *k, EVP_PKEY **pkey,
                                  char *why, size_t whylen)
{
    enum as_err r = AS_OK;
    const ASN1_OBJECT *alg = NULL;
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    const unsigned char *pk = ASN1_STRING_get0_data(c->key);
    int pklen = ASN1_STRING_length(c->key);

    if (pk == NULL || pklen <= 0) {
        as_why(why, whylen, "CSR has no public key");
        return AS_ERR_INVALID;
    }
    X509_ALGOR_get0(&alg, &ptype, &pval, c->key_alg);
    int nid = OBJ_obj2nid(alg);
    if (nid == NID_rsaEncryption) {
        /* RFC 3279 §2.3.1: parameters NULL (absent is tolerated, as OpenSSL does). */
        if (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF) {
            as_why(why, whylen, "RSA key has unexpected algorithm parameters");
            return AS_ERR_INVALID;
        }
        if ((r = rsa_key_policy(c, pkey, why, whylen)) != AS_OK) {
            return r;
        }
        k->rsa = true;
    } else if (nid == NID_X9_62_id_ecPublicKey) {
        if (ptype != V_ASN1_OBJECT || pval == NULL) {
            as_why(why, whylen, "EC key must name its curve (P-256 or P-384)");
            return AS_ERR_INVALID;
        }
        int curve = OBJ_obj2nid(pval);
        size_t want = curve == NID_X9_62_prime256v1 ? P256_POINT_LEN
                      : curve == NID_secp384r1      ? P384_POINT_LEN
                                                    : 0;
        if (want == 0) {
            const char *sn = curve != NID_undef ? OBJ_nid2sn(curve) : "unknown";
            as_why(why, whylen, "EC curve %s is not allowed (P-256 or P-384 only)", sn);
            return AS_ERR_INVALID;
        }
        if ((size_t)pklen != want || pk[0] != EC_POINT_UNCOMPRESSED) {
            as_why(why, whylen, "EC public key must be an uncompressed point");
            return AS_ERR_INVALID;
        }
        if (!spki_rereadable(c) ||
            !ec_key(curve == NID_X9_62_prime256v1 ? g_csr.p256 : g_csr.p384, pk, want, pkey)) {
            as_why(why, whylen, "CSR public key cannot be decoded");
            return AS_ERR_INVALID;
        }
        k->curve_nid = curve;
        k->rsa = false;
    } else {
        const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : "unknown";
        as_why(why, whylen,
               "key type %s is not allowed (RSA of at least 2048 bits, or EC P-256 or P-384)", sn);
        return AS_ERR_INVALID;
    }
    k->alg_nid = nid;
    k->param_type = ptype;
    k->key = malloc((size_t)pklen);
    if (k->key == NULL) {
        return AS_ERR_NOMEM;
    }
    memcpy(k->key, pk, (size_t)pklen);
    k->key_len = (size_t)pklen;
    return AS_OK;
}

/*
 * Proof of possession (RFC 2986 §3): the CertificationRequestInfo bytes, as received, verify
 * under the key they carry, with the digest md. What X509_REQ_verify (ASN1_item_verify) adds
 * around EVP_DigestVerify is kept: a signature BIT STRING with unused bits is refused.
 */
static bool csr_signature_ok(const struct csr_der *c, EVP_PKEY *pkey, const EVP_MD *md)
{
    EVP_MD_CTX *ctx = NULL;
    /* ASN1_STRING_FLAG_BITS_LEFT | n: the count of unused bits d2i_ASN1_BIT_STRING read. */
    bool ok = (c->sig->flags & 0x07) == 0 && ASN1_STRING_length(c->sig) > 0 &&
              (ctx = EVP_MD_CTX_new()) != NULL &&
              EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 &&
              EVP_DigestVerify(ctx, ASN1_STRING_get0_data(c->sig),
                               (size_t)ASN1_STRING_length(c->sig), c->tbs, c->tbs_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

enum as_err as_csr_parse(const char *pem, size_t len, struct as_csr **out, char *why, size_t whylen)
{
    enum as_err r = AS_OK;
    BIO *bio = NULL;
    unsigned char *der = NULL;
    long der_len = 0;
    struct csr_der c = {0};
    struct as_csr *csr = NULL;
    EVP_PKEY *pkey = NULL;
    const EVP_MD *md = NULL;

    as_why(why, whylen, "%s", "");
    if (out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if (pem == NULL || len == 0) {
        as_why(why, whylen, "CSR is empty");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (len > AS_MAX_CSR_BYTES) {
        as_why(why, whylen, "CSR is larger than %d bytes", AS_MAX_CSR_BYTES);
        r = AS_ERR_TOO_LARGE;
        goto out;
    }
    if (pthread_once(&g_csr_once, csr_algs_init) != 0 || !g_csr.ok) {
        as_why(why, whylen, "CSR verification is unavailable");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    /* What PEM_read_bio_X509_REQ reads: the first "CERTIFICATE REQUEST" (or the older "NEW
     * CERTIFICATE REQUEST") block, other blocks before it skipped, encrypted ones refused. */
    if (PEM_bytes_read_bio(&der, &der_len, NULL, PEM_STRING_X509_REQ, bio, as_pki_no_passphrase,
                           NULL) != 1 ||
        !csr_der_walk(der, der_len, &c)) {
        as_why(why, whylen, "CSR is not a PEM certificate request");
        r = AS_ERR_INVALID;
        goto out;
    }
    /* RFC 2986 §4.1: version 0 is the only one there is. */
    if (c.version != X509_REQ_VERSION_1) {
        as_why(why, whylen, "CSR version is not 1");
        r = AS_ERR_INVALID;
        goto out;
    }
    csr = calloc(1, sizeof *csr);
    if (csr == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    /* Cheap refusals first: a key we would refuse is never used to verify anything. */
    if ((r = csr_key_policy(&c, csr, &pkey, why, whylen)) != AS_OK) {
        goto out;
    }
    if (!csr_sig_alg_ok(c.sig_alg, csr->rsa, &md)) {
        as_why(why, whylen,
               "CSR signature algorithm is not allowed (SHA-256 or stronger with the "
               "CSR's own key type)");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (!csr_signature_ok(&c, pkey, md)) {
        as_why(why, whylen, "CSR signature does not verify");
        r = AS_ERR_INVALID;
        goto out;
    }
    *out = csr;
    csr = NULL;
out:
    /* A refusal is the client's error, not ours: drop OpenSSL's queue so it blames nothing
     * later. */
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    as_csr_free(csr);
    csr_der_clear(&c);
    OPENSSL_free(der);
    BIO_free(bio);
    return r;
}

/* ---- serials ---- */

/* Lowercase colon hex of n bytes (1..20) into out (>= 3n bytes). */
static void serial_hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            out[o++] = ':';
        }
        out[o++] = d[b[i] >> 4];
        out[o++] = d[b[i] & 15];
    }
    out[o] = '\0';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/*
 * Parses "aa:bb:..", "aa-bb-.." (two hex digits per group, one kind of separator) or plain hex (an
 * odd count gets a leading zero nibble) into 1..20 bytes, then drops leading zero bytes (keeping
 * one): the same integer has one spelling, the one issuance prints (RFC 5280 §4.1.2.2 compares
 * serials as integers).
 */
static enum as_err serial_parse(const char *in, unsigned char out[AS_PKI_SERIAL_MAX_BYTES],
                                size_t *n)
{
    if (in == NULL) {
        return AS_ERR_INVALID;
    }
    size_t len = strnlen(in, SERIAL_TEXT_MAX + 1);
    if (len == 0 || len > SERIAL_TEXT_MAX) {
        return AS_ERR_INVALID;
    }
    char sep = strchr(in, ':') != NULL ? ':' : strchr(in, '-') != NULL ? '-' : '\0';
    unsigned char b[AS_PKI_SERIAL_MAX_BYTES];
    size_t nb = 0;
    if (sep != '\0') {
        /* Groups "hh" separated by exactly one sep: length 3k-1. */
        if ((len + 1) % 3 != 0 || (len + 1) / 3 > sizeof b) {
            return AS_ERR_INVALID;
        }
        for (size_t i = 0; i < len; i += 3) {
            int hi = hexval((unsigned char)in[i]);
            int lo = hexval((unsigned char)in[i + 1]);
            if (hi < 0 || lo < 0 || (i + 2 < len && in[i + 2] != sep)) {
                return AS_ERR_INVALID;
            }
            b[nb++] = (unsigned char)(hi << 4 | lo);
        }
    } else {
        if ((len + 1) / 2 > sizeof b) {
            return AS_ERR_INVALID;
        }
        size_t i = 0;
        if (len % 2 == 1) {
            int lo = hexval((unsigned char)in[0]);
            if (lo < 0) {
                return AS_ERR_INVALID;
            }
            b[nb++] = (unsigned char)lo;
            i = 1;
        }
        for (; i < len; i += 2) {
            int hi = hexval((unsigned char)in[i]);
            int lo = hexval((unsigned char)in[i + 1]);
            if (hi < 0 || lo < 0) {
                return AS_ERR_INVALID;
            }
            b[nb++] = (unsigned char)(hi << 4 | lo);
        }
    }
    size_t skip = 0;
    while (skip + 1 < nb && b[skip] == 0) {
        skip++;
    }
    memcpy(out, b + skip, nb - skip);
    *n = nb - skip;
    return AS_OK;
}

enum as_err as_serial_normalize(const char *in, char *out, size_t outlen)
{
    unsigned char b[AS_PKI_SERIAL_MAX_BYTES];
    size_t n = 0;
    if (out == NULL || outlen < SERIAL_HEX_MIN_OUT) {
        return AS_ERR_INVALID;
    }
    out[0] = '\0';
    enum as_err r = serial_parse(in, b, &n);
    if (r != AS_OK) {
        return r;
    }
    serial_hex(b, n, out);
    return AS_OK;
}

/* ---- X.509-SVIDs ---- */

void as_leaf_free(struct as_leaf *leaf)
{
    if (leaf == NULL) {
        return;
    }
    free(leaf->cert_pem);
    free(leaf->der);
    as_free_secret_str(leaf->key_pem);
    free(leaf);
}

/* Rebuilds the SPKI from its parts in x without decoding a key (PERF-NOTES trap 1). The
 * objects from OBJ_nid2obj are static; X509_ALGOR frees them as no-ops. */
static enum as_err set_spki(X509 *x, const struct as_csr *k)
{
    if (k->key_len > INT32_MAX) {
        return AS_ERR_INVALID;
    }
    void *pval = k->param_type == V_ASN1_OBJECT ? OBJ_nid2obj(k->curve_nid) : NULL;
    unsigned char *penc = OPENSSL_memdup(k->key, k->key_len);
    if (penc == NULL) {
        return AS_ERR_NOMEM;
    }
    if (X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_nid2obj(k->alg_nid), k->param_type,
                               pval, penc, (int)k->key_len) != 1) {
        OPENSSL_free(penc);
        as_pki_log_ssl_errors("X509_PUBKEY_set0_param");
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

/* RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's value, from the bits
 * we already hold. */
static enum as_err add_skid(const struct as_ca *ca, X509 *x, const struct as_csr *k)
{
    enum as_err r = AS_OK;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ASN1_OCTET_STRING *skid = ASN1_OCTET_STRING_new();
    if (skid == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (EVP_Digest(k->key, k->key_len, md, &mdlen, ca->sha1, NULL) != 1) {
        as_pki_log_ssl_errors("SHA-1 of the subject key");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if (ASN1_OCTET_STRING_set(skid, md, (int)mdlen) != 1) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (X509_add1_ext_i2d(x, NID_subject_key_identifier, skid, 0, X509V3_ADD_DEFAULT) != 1) {
        as_pki_log_ssl_errors("subjectKeyIdentifier");
        r = AS_ERR_CRYPTO;
        goto out;
    }
out:
    ASN1_OCTET_STRING_free(skid);
    return r;
}

/* SPIFFE X509-SVID §2: exactly one URI SAN, the SPIFFE ID, then the DNS names; critical because
 * the subject is empty (RFC 5280 §4.2.1.6). */
static enum as_err add_san(X509 *x, const struct as_leaf_req *req)
{
    enum as_err r = AS_OK;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (gens == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if ((r = as_pki_san_push(gens, GEN_URI, req->spiffe_id, strlen(req->spiffe_id))) != AS_OK) {
        goto out;
    }
    for (size_t i = 0; i < req->ndns; i++) {
        if ((r = as_pki_san_push(gens, GEN_DNS, req->dns[i], strlen(req->dns[i]))) != AS_OK) {
            goto out;
        }
    }
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 1, X509V3_ADD_DEFAULT) != 1) {
        as_pki_log_ssl_errors("subjectAltName");
        r = AS_ERR_CRYPTO;
        goto out;
    }
out:
    GENERAL_NAMES_free(gens);
    return r;
}

/* Appends a copy of a pre-built extension. */
static enum as_err add_const_ext(X509 *x, X509_EXTENSION *ext)
{
    if (X509_add_ext(x, ext, -1) != 1) {
        as_pki_log_ssl_errors("X509_add_ext");
        return AS_ERR_NOMEM;
    }
    return AS_OK;
}

/*
 * The leaf profile of SPEC §6 (SPIFFE X509-SVID §4): v3, random positive serial, issuer = CA
 * subject, empty subject, the CSR's SPKI, basicConstraints critical CA:FALSE, keyUsage critical
 * digitalSignature (+keyEncipherment for RSA), extKeyUsage serverAuth+clientAuth, SKID, AKID,
 * critical SAN; signed with SHA-256. Writes the serial's text form into leaf->serial.
 */
static enum as_err build_leaf(const struct as_ca *ca, const struct as_csr *k,
                              const struct as_leaf_req *req, int64_t not_after,
                              struct as_leaf *leaf, X509 **out)
{
    enum as_err r = AS_OK;
    X509 *x = NULL;
    unsigned char mag[AS_PKI_SERIAL_BYTES];
    size_t maglen = 0;

    if ((r = as_pki_x509_new_v3(&x)) != AS_OK ||
        (r = as_pki_random_serial(X509_get_serialNumber(x), mag, &maglen)) != AS_OK ||
        (r = as_pki_set_validity(x, req->not_before, not_after)) != AS_OK) {
        goto out;
    }
    serial_hex(mag, maglen, leaf->serial);
    if (X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1) {
        as_pki_log_ssl_errors("X509_set_issuer_name");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if ((r = set_spki(x, k)) != AS_OK || (r = add_const_ext(x, ca->ext_leaf_bc)) != AS_OK ||
        (r = add_const_ext(x, k->rsa ? ca->ext_ku_rsa : ca->ext_ku_ec)) != AS_OK ||
        (r = add_const_ext(x, ca->ext_eku_svid)) != AS_OK || (r = add_skid(ca, x, k)) != AS_OK ||
        (r = add_const_ext(x, ca->ext_akid)) != AS_OK || (r = add_san(x, req)) != AS_OK ||
        (r = as_pki_sign_x509(ca, x)) != AS_OK) {
        goto out;
    }
    *out = x;
    x = NULL;
out:
    X509_free(x);
    return r;
}

/* PEM of DER bytes under label, without a second encode of the structure. */
static enum as_err der_to_pem(const char *label, const unsigned char *der, size_t len, char **out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    if (len > INT32_MAX || PEM_write_bio(bio, label, "", der, (long)len) <= 0) {
        as_pki_log_ssl_errors("PEM_write_bio");
        BIO_free(bio);
        return AS_ERR_CRYPTO;
    }
    return as_pki_bio_take_string(&bio, false, out, NULL);
}

/* The DER of x in a malloc'd buffer (callers free() what they are handed). */
static enum as_err cert_der(X509 *x, unsigned char **out, size_t *len)
{
    int n = i2d_X509(x, NULL);
    if (n <= 0) {
        as_pki_log_ssl_errors("i2d_X509");
        return AS_ERR_CRYPTO;
    }
    *out = malloc((size_t)n);
    if (*out == NULL) {
        return AS_ERR_NOMEM;
    }
    unsigned char *p = *out;
    if (i2d_X509(x, &p) != n) {
        free(*out);
        *out = NULL;
        return AS_ERR_CRYPTO;
    }
    *len = (size_t)n;
    return AS_OK;
}

/* The SPKI parts of a freshly generated P-256 key, read as its encoded point (no encoder). */
static enum as_err generated_spki(EVP_PKEY *key, unsigned char point[P256_POINT_LEN],
                                  struct as_csr *k)
{
    size_t plen = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                        P256_POINT_LEN, &plen) != 1 ||
        plen != P256_POINT_LEN || point[0] != EC_POINT_UNCOMPRESSED) {
        as_pki_log_ssl_errors("reading the generated public key");
        return AS_ERR_CRYPTO;
    }
    k->alg_nid = NID_X9_62_id_ecPublicKey;
    k->param_type = V_ASN1_OBJECT;
    k->curve_nid = NID_X9_62_prime256v1;
    k->key = point;
    k->key_len = plen;
    k->rsa = false;
    return AS_OK;
}

/* Refuses what the caller should never pass: every name was authorized, but a name that is not
 * what it claims to be must not reach a certificate. Logged, since it is our bug or an attack. */
static enum as_err check_leaf_req(const struct as_ca *ca, const struct as_leaf_req *req)
{
    char why[128];
    if (as_spiffe_id_check(req->spiffe_id, ca->td, why, sizeof why) != AS_OK) {
        as_warn("pki: refusing to issue an X.509-SVID: %s", why);
        return AS_ERR_INVALID;
    }
    if (req->ndns > SVID_MAX_DNS_NAMES || (req->ndns > 0 && req->dns == NULL)) {
        as_warn("pki: refusing to issue an X.509-SVID: %zu DNS names (at most %d)", req->ndns,
                SVID_MAX_DNS_NAMES);
        return AS_ERR_INVALID;
    }
    for (size_t i = 0; i < req->ndns; i++) {
        if (!as_dns_name_ok(req->dns[i])) {
            as_warn("pki: refusing to issue an X.509-SVID: DNS name %zu is not a valid name", i);
            return AS_ERR_INVALID;
        }
    }
    if (req->not_before < 0 || req->not_after <= req->not_before) {
        as_warn("pki: refusing to issue an X.509-SVID: notAfter is not after notBefore");
        return AS_ERR_INVALID;
    }
    return AS_OK;
}

enum as_err as_ca_issue_svid(const struct as_ca *ca, const struct as_csr *csr,
                             const struct as_leaf_req *req, struct as_leaf **out)
{
    enum as_err r = AS_OK;
    struct as_leaf *leaf = NULL;
    X509 *x = NULL;
    EVP_PKEY *gen_key = NULL;
    unsigned char point[P256_POINT_LEN];
    struct as_csr gen = {0};
    size_t key_len = 0;

    if (out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if (ca == NULL || req == NULL) {
        r = AS_ERR_INVALID;
        goto out;
    }
    if ((r = check_leaf_req(ca, req)) != AS_OK) {
        goto out;
    }
    /* RFC 5280 §6.1.3 (a)(2): a leaf outliving its issuer fails path validation then. */
    int64_t not_after = req->not_after < ca->not_after ? req->not_after : ca->not_after;
    if (not_after <= req->not_before) {
        as_warn("pki: cannot issue an X.509-SVID: the CA (%s) expires before its notBefore",
                ca->subject);
        r = AS_ERR_EXPIRED;
        goto out;
    }
    leaf = calloc(1, sizeof *leaf);
    if (leaf == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (csr == NULL) {
        if ((r = as_pki_gen_p256(&gen_key)) != AS_OK ||
            (r = generated_spki(gen_key, point, &gen)) != AS_OK) {
            goto out;
        }
        csr = &gen;
    }
    if ((r = build_leaf(ca, csr, req, not_after, leaf, &x)) != AS_OK ||
        (r = cert_der(x, &leaf->der, &leaf->der_len)) != AS_OK ||
        (r = der_to_pem(PEM_STRING_X509, leaf->der, leaf->der_len, &leaf->cert_pem)) != AS_OK) {
        goto out;
    }
    if (gen_key != NULL && (r = as_pki_key_to_pem(gen_key, &leaf->key_pem, &key_len)) != AS_OK) {
        goto out;
    }
    leaf->not_before = req->not_before;
    leaf->not_after = not_after;
    *out = leaf;
    leaf = NULL;
out:
    /* EVP_PKEY_free clears the private scalar; the PEM copy is wiped by as_leaf_free. */
    EVP_PKEY_free(gen_key);
    X509_free(x);
    as_leaf_free(leaf);
    return r;
}

/* ---- CRLs ---- */

/* One revoked entry (RFC 5280 §5.1.2.6): serial and revocation date, no entry extensions. */
static enum as_err crl_add_entry(X509_CRL *crl, const struct as_revoked *rv, ASN1_TIME *t)
{
    enum as_err r = AS_OK;
    unsigned char b[AS_PKI_SERIAL_MAX_BYTES];
    size_t n = 0;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    X509_REVOKED *entry = NULL;

    if (serial_parse(rv->serial, b, &n) != AS_OK || rv->revoked_at < 0) {
        r = AS_ERR_INVALID;
        goto out;
    }
    bn = BN_bin2bn(b, (int)n, NULL);
    if (bn == NULL || (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
        (entry = X509_REVOKED_new()) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (ASN1_TIME_set(t, (time_t)rv->revoked_at) == NULL ||
        X509_REVOKED_set_serialNumber(entry, serial) != 1 ||
        X509_REVOKED_set_revocationDate(entry, t) != 1 || X509_CRL_add0_revoked(crl, entry) != 1) {
        as_pki_log_ssl_errors("building a CRL entry");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    entry = NULL;
out:
    X509_REVOKED_free(entry);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return r;
}

/* After X509_CRL_sort: a serial listed twice is a caller bug, refused rather than published. */
static bool crl_has_duplicates(X509_CRL *crl)
{
    STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
    for (int i = 1; i < sk_X509_REVOKED_num(rev); i++) {
        const ASN1_INTEGER *a = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rev, i - 1));
        const ASN1_INTEGER *b = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rev, i));
        if (ASN1_INTEGER_cmp(a, b) == 0) {
            return true;
        }
    }
    return false;
}

/* RFC 5280 §5.2.3: the CRL number is non-critical; §5.2.1: AKID keyIdentifier, non-critical. */
static enum as_err crl_add_extensions(const struct as_ca *ca, X509_CRL *crl, int64_t crl_number)
{
    enum as_err r = AS_OK;
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    if (num == NULL || ASN1_INTEGER_set_int64(num, crl_number) != 1) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, X509V3_ADD_DEFAULT) != 1 ||
        X509_CRL_add_ext(crl, ca->ext_akid, -1) != 1) {
        as_pki_log_ssl_errors("CRL extensions");
        r = AS_ERR_CRYPTO;
        goto out;
    }
out:
    ASN1_INTEGER_free(num);
    return r;
}

enum as_err as_ca_crl(const struct as_ca *ca, const struct as_revoked *revoked, size_t n,
                      int64_t this_update, int64_t next_update, int64_t crl_number,
                      unsigned char **der, size_t *der_len, char **pem)
{
    enum as_err r = AS_OK;
    X509_CRL *crl = NULL;
    ASN1_TIME *t = NULL;
    unsigned char *d = NULL;
    int dlen = 0;

    if (der == NULL || der_len == NULL || pem == NULL) {
        return AS_ERR_INVALID;
    }
    *der = NULL;
    *der_len = 0;
    *pem = NULL;
    if (ca == NULL || (n > 0 && revoked == NULL) || n > CRL_MAX_ENTRIES || this_update < 0 ||
        next_update <= this_update || crl_number < 0) {
        as_warn("pki: refusing to build a CRL: invalid arguments");
        r = AS_ERR_INVALID;
        goto out;
    }
    crl = X509_CRL_new();
    t = ASN1_TIME_new();
    if (crl == NULL || t == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    /* RFC 5280 §5.1.2.1: v2 because the CRL carries extensions. §5.1.2.4-5: UTCTime through
     * 2049, which ASN1_TIME_set picks. */
    if (X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) != 1 ||
        ASN1_TIME_set(t, (time_t)this_update) == NULL || X509_CRL_set1_lastUpdate(crl, t) != 1 ||
        ASN1_TIME_set(t, (time_t)next_update) == NULL || X509_CRL_set1_nextUpdate(crl, t) != 1) {
        as_pki_log_ssl_errors("building the CRL");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if ((r = crl_add_entry(crl, &revoked[i], t)) != AS_OK) {
            if (r == AS_ERR_INVALID) {
                as_warn("pki: refusing to build a CRL: entry %zu has an invalid serial or date", i);
            }
            goto out;
        }
    }
    if (X509_CRL_sort(crl) != 1) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (crl_has_duplicates(crl)) {
        as_warn("pki: refusing to build a CRL: a serial is listed twice");
        r = AS_ERR_INVALID;
        goto out;
    }
    if ((r = crl_add_extensions(ca, crl, crl_number)) != AS_OK ||
        (r = as_pki_sign_crl(ca, crl)) != AS_OK) {
        goto out;
    }
    dlen = i2d_X509_CRL(crl, NULL);
    if (dlen <= 0) {
        as_pki_log_ssl_errors("i2d_X509_CRL");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    d = malloc((size_t)dlen);
    if (d == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    unsigned char *p = d;
    if (i2d_X509_CRL(crl, &p) != dlen) {
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if ((r = der_to_pem(PEM_STRING_X509_CRL, d, (size_t)dlen, pem)) != AS_OK) {
        goto out;
    }
    *der = d;
    *der_len = (size_t)dlen;
    d = NULL;
out:
    free(d);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return r;
}
