/*
 * csr_reference.h: the reference that as_csr_parse's fast path (pki/svid.c) is held to, and the
 * comparison of the two, shared by tests/unit/test_csr_diff.c and tests/fuzz/fuzz_csr_diff.c.
 * Never linked into the server.
 *
 * The reference is as_csr_parse as it was before the fast path, word for word in what it accepts
 * and why it refuses: PEM_read_bio_X509_REQ (OpenSSL's full parse, key decode included), the
 * key and signature-algorithm policy of SPEC §6 on the decoded request, and X509_REQ_verify. The
 * issue that allowed the fast path (issue 7) asks that it accept and refuse exactly what this
 * does, with the same key: csr_diff checks the error code, the reason given, and for accepted
 * CSRs the SubjectPublicKeyInfo an X.509-SVID issued from each would carry.
 */
#ifndef AS_TESTS_CSR_REFERENCE_H
#define AS_TESTS_CSR_REFERENCE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/common.h"
#include "pki/pki.h"

/* What the reference keeps of an accepted CSR: the SPKI in parts, as struct as_csr does. */
struct ref_csr {
    int alg_nid;
    int param_type;
    int curve_nid;
    unsigned char *key;
    size_t key_len;
    bool rsa;
    EVP_PKEY *pkey; /* the key OpenSSL decoded */
};

static inline void ref_csr_clear(struct ref_csr *k)
{
    free(k->key);
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof *k);
}

static void ref_say(char *why, size_t whylen, const char *fmt, ...) AS_PRINTF(3, 4);

static void ref_say(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static int ref_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static bool ref_sig_alg_ok(const X509_REQ *req, bool rsa)
{
    int md_nid = NID_undef;
    int pk_nid = NID_undef;
    if (OBJ_find_sigid_algs(X509_REQ_get_signature_nid(req), &md_nid, &pk_nid) != 1) {
        return false;
    }
    bool md_ok = md_nid == NID_sha256 || md_nid == NID_sha384 || md_nid == NID_sha512;
    bool pk_ok = rsa ? pk_nid == NID_rsaEncryption : pk_nid == NID_X9_62_id_ecPublicKey;
    return md_ok && pk_ok;
}

static enum as_err ref_key_policy(X509_REQ *req, struct ref_csr *k, char *why, size_t whylen)
{
    ASN1_OBJECT *alg = NULL;
    const unsigned char *pk = NULL;
    int pklen = 0;
    X509_ALGOR *palg = NULL;
    const ASN1_OBJECT *pobj = NULL;
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;

    X509_PUBKEY *spki = X509_REQ_get_X509_PUBKEY(req);
    if (spki == NULL || X509_PUBKEY_get0_param(&alg, &pk, &pklen, &palg, spki) != 1 || pk == NULL ||
        pklen <= 0) {
        ref_say(why, whylen, "CSR has no public key");
        return AS_ERR_INVALID;
    }
    X509_ALGOR_get0(&pobj, &ptype, &pval, palg);
    int nid = OBJ_obj2nid(alg);
    EVP_PKEY *pkey = X509_REQ_get0_pubkey(req);
    if (nid == NID_rsaEncryption) {
        if (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF) {
            ref_say(why, whylen, "RSA key has unexpected algorithm parameters");
            return AS_ERR_INVALID;
        }
        if (pkey == NULL || !EVP_PKEY_is_a(pkey, "RSA")) {
            ref_say(why, whylen, "CSR public key cannot be decoded");
            return AS_ERR_INVALID;
        }
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < 2048) {
            ref_say(why, whylen, "RSA key of %d bits is too small (at least %d)", bits, 2048);
            return AS_ERR_INVALID;
        }
        if (bits > 8192) {
            ref_say(why, whylen, "RSA key of %d bits is too large (at most %d)", bits, 8192);
            return AS_ERR_INVALID;
        }
        BIGNUM *e = NULL;
        bool e_ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) == 1 && BN_is_odd(e) &&
                    BN_num_bits(e) <= 31 && BN_get_word(e) >= 65537;
        BN_free(e);
        if (!e_ok) {
            ref_say(why, whylen, "RSA public exponent must be odd and between 65537 and 2^31-1");
            return AS_ERR_INVALID;
        }
        k->rsa = true;
    } else if (nid == NID_X9_62_id_ecPublicKey) {
        if (ptype != V_ASN1_OBJECT || pval == NULL) {
            ref_say(why, whylen, "EC key must name its curve (P-256 or P-384)");
            return AS_ERR_INVALID;
        }
        int curve = OBJ_obj2nid(pval);
        size_t want = curve == NID_X9_62_prime256v1 ? 65 : curve == NID_secp384r1 ? 97 : 0;
        if (want == 0) {
            const char *sn = curve != NID_undef ? OBJ_nid2sn(curve) : "unknown";
            ref_say(why, whylen, "EC curve %s is not allowed (P-256 or P-384 only)", sn);
            return AS_ERR_INVALID;
        }
        if ((size_t)pklen != want || pk[0] != 0x04) {
            ref_say(why, whylen, "EC public key must be an uncompressed point");
            return AS_ERR_INVALID;
        }
        if (pkey == NULL || !EVP_PKEY_is_a(pkey, "EC")) {
            ref_say(why, whylen, "CSR public key cannot be decoded");
            return AS_ERR_INVALID;
        }
        k->curve_nid = curve;
        k->rsa = false;
    } else {
        const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : "unknown";
        ref_say(why, whylen,
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
    if (!EVP_PKEY_up_ref(pkey)) {
        return AS_ERR_NOMEM;
    }
    k->pkey = pkey;
    return AS_OK;
}

/* The reference: as_csr_parse before the fast path. Fills *out on AS_OK. */
static enum as_err ref_csr_parse(const char *pem, size_t len, struct ref_csr *out, char *why,
                                 size_t whylen)
{
    enum as_err r = AS_OK;
    BIO *bio = NULL;
    X509_REQ *req = NULL;
    struct ref_csr k = {0};

    ref_say(why, whylen, "%s", "");
    if (pem == NULL || len == 0) {
        ref_say(why, whylen, "CSR is empty");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (len > AS_MAX_CSR_BYTES) {
        ref_say(why, whylen, "CSR is larger than %d bytes", AS_MAX_CSR_BYTES);
        r = AS_ERR_TOO_LARGE;
        goto out;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    req = PEM_read_bio_X509_REQ(bio, NULL, ref_no_passphrase, NULL);
    if (req == NULL) {
        ref_say(why, whylen, "CSR is not a PEM certificate request");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (X509_REQ_get_version(req) != X509_REQ_VERSION_1) {
        ref_say(why, whylen, "CSR version is not 1");
        r = AS_ERR_INVALID;
        goto out;
    }
    if ((r = ref_key_policy(req, &k, why, whylen)) != AS_OK) {
        goto out;
    }
    if (!ref_sig_alg_ok(req, k.rsa)) {
        ref_say(why, whylen,
                "CSR signature algorithm is not allowed (SHA-256 or stronger with the "
                "CSR's own key type)");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
        ref_say(why, whylen, "CSR signature does not verify");
        r = AS_ERR_INVALID;
        goto out;
    }
    *out = k;
    memset(&k, 0, sizeof k);
out:
    ERR_clear_error();
    ref_csr_clear(&k);
    X509_REQ_free(req);
    BIO_free(bio);
    return r;
}

/* The DER SubjectPublicKeyInfo the old issuance built from the reference's parts (set_spki in
 * pki/svid.c: X509_PUBKEY_set0_param, never a key encoder). malloc'd, *len bytes. */
static unsigned char *ref_spki_der(const struct ref_csr *k, size_t *len)
{
    X509_PUBKEY *pub = X509_PUBKEY_new();
    unsigned char *penc = OPENSSL_memdup(k->key, k->key_len);
    void *pval = k->param_type == V_ASN1_OBJECT ? OBJ_nid2obj(k->curve_nid) : NULL;
    unsigned char *der = NULL;
    int n = -1;
    if (pub != NULL && penc != NULL &&
        X509_PUBKEY_set0_param(pub, OBJ_nid2obj(k->alg_nid), k->param_type, pval, penc,
                               (int)k->key_len) == 1) {
        penc = NULL;
        n = i2d_X509_PUBKEY(pub, &der);
    }
    OPENSSL_free(penc);
    X509_PUBKEY_free(pub);
    if (n <= 0) {
        fprintf(stderr, "csr_reference: cannot encode the reference SPKI\n");
        abort();
    }
    unsigned char *out = malloc((size_t)n);
    if (out == NULL) {
        abort();
    }
    memcpy(out, der, (size_t)n);
    OPENSSL_free(der);
    *len = (size_t)n;
    return out;
}

/* The DER SPKI of an X.509-SVID that ca issues from csr, which is the fast path's end product,
 * and the certificate's public key (new reference) in *pkey and whether keyUsage has
 * keyEncipherment (the RSA profile) in *rsa. malloc'd, *len bytes. */
static unsigned char *fast_spki_der(const struct as_ca *ca, const struct as_csr *csr, size_t *len,
                                    EVP_PKEY **pkey, bool *rsa)
{
    int64_t now = as_now();
    struct as_leaf_req lr = {
        .spiffe_id = "spiffe://example.org/diff",
        .not_before = now - 10,
        .not_after = now + 3600,
    };
    struct as_leaf *leaf = NULL;
    if (as_ca_issue_svid(ca, csr, &lr, &leaf) != AS_OK) {
        fprintf(stderr, "csr_reference: cannot issue from an accepted CSR\n");
        abort();
    }
    const unsigned char *p = leaf->der;
    X509 *x = d2i_X509(NULL, &p, (long)leaf->der_len);
    unsigned char *der = NULL;
    int n = x != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der) : -1;
    *pkey = x != NULL ? X509_get_pubkey(x) : NULL;
    if (n <= 0 || *pkey == NULL) {
        fprintf(stderr, "csr_reference: cannot read the issued SVID back\n");
        abort();
    }
    *rsa = (X509_get_key_usage(x) & KU_KEY_ENCIPHERMENT) != 0;
    unsigned char *out = malloc((size_t)n);
    if (out == NULL) {
        abort();
    }
    memcpy(out, der, (size_t)n);
    OPENSSL_free(der);
    X509_free(x);
    as_leaf_free(leaf);
    *len = (size_t)n;
    return out;
}

/* Result of one comparison; *accepted (may be NULL) says whether both accepted. */
enum csr_diff_result { CSR_DIFF_AGREE, CSR_DIFF_DISAGREE };

/*
 * Runs the fast path and the reference on the same len bytes at pem and compares: the error,
 * the reason, and for an accepted CSR the SPKI of an SVID issued by ca from the fast path's
 * result against the one the old issuance would have built, byte for byte, plus key equality
 * with the key OpenSSL decoded. On a disagreement, what differs goes to report (reportlen).
 */
static enum csr_diff_result csr_diff(const struct as_ca *ca, const char *pem, size_t len,
                                     bool *accepted, char *report, size_t reportlen)
{
    char why_fast[160] = "";
    char why_ref[160] = "";
    struct as_csr *csr = NULL;
    struct ref_csr ref = {0};
    enum csr_diff_result res = CSR_DIFF_AGREE;

    report[0] = '\0';
    enum as_err rf = as_csr_parse(pem, len, &csr, why_fast, sizeof why_fast);
    bool queue_clean = ERR_peek_error() == 0;
    enum as_err rr = ref_csr_parse(pem, len, &ref, why_ref, sizeof why_ref);
    if (accepted != NULL) {
        *accepted = rf == AS_OK && rr == AS_OK;
    }
    if (rf != rr || strcmp(why_fast, why_ref) != 0 || !queue_clean ||
        (rf == AS_OK) != (csr != NULL)) {
        snprintf(report, reportlen, "fast: %s \"%s\"%s; reference: %s \"%s\"", as_strerror(rf),
                 why_fast, queue_clean ? "" : " (OpenSSL error queue left dirty)", as_strerror(rr),
                 why_ref);
        res = CSR_DIFF_DISAGREE;
        goto out;
    }
    if (rf == AS_OK) {
        size_t flen = 0;
        size_t rlen = 0;
        EVP_PKEY *leaf_key = NULL;
        bool leaf_rsa = false;
        unsigned char *f = fast_spki_der(ca, csr, &flen, &leaf_key, &leaf_rsa);
        unsigned char *r = ref_spki_der(&ref, &rlen);
        if (flen != rlen || memcmp(f, r, flen) != 0) {
            snprintf(report, reportlen,
                     "both accept, but the SVID's SPKI differs (%zu vs %zu "
                     "bytes)",
                     flen, rlen);
            res = CSR_DIFF_DISAGREE;
        } else if (EVP_PKEY_eq(leaf_key, ref.pkey) != 1) {
            snprintf(report, reportlen, "both accept, but the keys are not equal");
            res = CSR_DIFF_DISAGREE;
        } else if (leaf_rsa != ref.rsa) {
            snprintf(report, reportlen, "both accept, but the keyUsage profile differs");
            res = CSR_DIFF_DISAGREE;
        }
        EVP_PKEY_free(leaf_key);
        free(f);
        free(r);
    }
out:
    ERR_clear_error();
    as_csr_free(csr);
    ref_csr_clear(&ref);
    return res;
}

#endif
