/*
 * Differential test of as_csr_parse's fast path (pki/svid.c) against the reference it replaced
 * (tests/csr_reference.h: PEM_read_bio_X509_REQ, the same policy, X509_REQ_verify). Issue 7
 * allowed the fast path on one condition: it accepts and refuses exactly what the reference does,
 * with the same key. Every case below runs through both; any difference in the error, the reason
 * or (when both accept) the SubjectPublicKeyInfo of an SVID issued from it fails the test and is
 * printed with the CSR.
 *
 * The cases:
 *   - CSRs made by OpenSSL: EC P-256/P-384 and RSA 2048/3072/4096 with SHA-256/384/512, and what
 *     the policy refuses (RSA-PSS, Ed25519, Ed448, P-521, P-192, secp256k1, small RSA, odd
 *     exponents, SHA-1, SHA-224, compressed points, explicit curve parameters), with subjects and
 *     attributes;
 *   - CSRs built here byte by byte and signed properly, so that what is tested is the parse, not
 *     a signature that fails anyway: BER forms OpenSSL tolerates or not (indefinite lengths,
 *     long-form lengths with leading zeros, high-tag-number forms, constructed BIT STRINGs), odd
 *     versions, subjects, attributes, algorithm parameters, key encodings, unused bits, trailing
 *     bytes, swapped algorithms, a signature by another key;
 *   - every single-byte change and every truncation of a few CSRs, and every single-byte change of
 *     their CertificationRequestInfo re-signed with the right key;
 *   - PEM-level variants: labels, headers, other blocks, line endings, every truncation of the
 *     text.
 *
 * Prints the case count at the end; AS_CSR_DIFF_VERBOSE=1 also lists every case and outcome.
 */
#include <stdlib.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "common/common.h"
#include "pki/pki.h"
#include "tests/csr_reference.h"

#define TD "example.org"
#define MAX_REPORTED 25

static struct as_ca *g_ca;
static unsigned long g_cases;
static unsigned long g_accepted;
static unsigned long g_disagree;
static bool g_verbose;

/* ---- running a case ---- */

static void hexdump(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fprintf(stderr, "%02x%s", p[i], (i % 32 == 31 || i + 1 == n) ? "\n" : "");
    }
}

/* One case: the PEM text as a client would send it. Returns whether both accepted. */
static bool diff_pem(const char *name, const char *pem, size_t len)
{
    char report[512];
    bool accepted = false;
    g_cases++;
    enum csr_diff_result r = csr_diff(g_ca, pem, len, &accepted, report, sizeof report);
    if (r != CSR_DIFF_AGREE) {
        g_disagree++;
        if (g_disagree <= MAX_REPORTED) {
            fprintf(stderr, "DISAGREEMENT in case %s: %s\n%.*s\n", name, report, (int)len, pem);
        }
        return false;
    }
    if (accepted) {
        g_accepted++;
    }
    if (g_verbose) {
        char why[160] = "";
        struct as_csr *c = NULL;
        enum as_err e = as_csr_parse(pem, len, &c, why, sizeof why);
        as_csr_free(c);
        printf("case %-40s %s %s\n", name, e == AS_OK ? "accepted" : "refused:", why);
    }
    return accepted;
}

/* One case given as DER, wrapped as a "CERTIFICATE REQUEST" PEM block. */
static bool diff_der(const char *name, const unsigned char *der, size_t n)
{
    char *pem = as_pem_encode("CERTIFICATE REQUEST", der, n);
    if (pem == NULL) {
        fprintf(stderr, "cannot PEM-encode a case\n");
        exit(2);
    }
    size_t before = g_disagree;
    bool accepted = diff_pem(name, pem, strlen(pem));
    if (g_disagree != before && g_disagree <= MAX_REPORTED) {
        fprintf(stderr, "DER of %s:\n", name);
        hexdump(der, n);
    }
    free(pem);
    return accepted;
}

/* ---- a small DER builder (test data only: the code under test builds nothing by hand) ---- */

struct buf {
    unsigned char *p;
    size_t n;
    size_t cap;
};

static void put(struct buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 64;
        unsigned char *p = realloc(b->p, cap);
        if (p == NULL) {
            exit(2);
        }
        b->p = p;
        b->cap = cap;
    }
    if (n > 0) {
        memcpy(b->p + b->n, src, n);
    }
    b->n += n;
}

static void put1(struct buf *b, unsigned char c)
{
    put(b, &c, 1);
}

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static struct buf buf_of(const unsigned char *p, size_t n)
{
    struct buf b = {0};
    put(&b, p, n);
    return b;
}

/* How a TLV is written: DER, or one of the BER liberties (and a few plain errors). */
enum form {
    F_DER,
    F_LONG0,    /* long-form length with a leading zero octet */
    F_LONG4,    /* 0x84 and four octets */
    F_LONG5,    /* 0x85 and five octets: a 7-octet header */
    F_LONG6,    /* 0x86 and six octets: an 8-octet header */
    F_LONG9,    /* 0x89 and nine octets, leading zeros */
    F_INDEF,    /* 0x80 ... 00 00 */
    F_HIGHTAG,  /* the tag number in the high-tag-number form */
    F_HIGHTAG0, /* the same with a leading 0x80 (non-minimal) */
    F_LONGER,   /* the length says one octet more than there is */
    F_SHORTER,  /* the length says one octet less */
    F_NFORMS
};
static const char *const form_names[F_NFORMS] = {
    "der",   "long0",   "long4",    "long5",  "long6",   "long9",
    "indef", "hightag", "hightag0", "longer", "shorter",
};

static void put_len(struct buf *b, size_t n)
{
    if (n < 0x80) {
        put1(b, (unsigned char)n);
        return;
    }
    unsigned char tmp[8];
    size_t k = 0;
    for (size_t v = n; v > 0; v >>= 8) {
        tmp[k++] = (unsigned char)(v & 0xff);
    }
    put1(b, (unsigned char)(0x80 | k));
    while (k > 0) {
        put1(b, tmp[--k]);
    }
}

/* A TLV with identifier octet id (low-tag form) around content, written in form f. */
static void tlv(struct buf *out, unsigned char id, enum form f, const unsigned char *c, size_t n)
{
    if (f == F_HIGHTAG || f == F_HIGHTAG0) {
        put1(out, (unsigned char)((id & 0xe0) | 0x1f));
        if (f == F_HIGHTAG0) {
            put1(out, 0x80);
        }
        put1(out, (unsigned char)(id & 0x1f));
    } else {
        put1(out, id);
    }
    switch (f) {
    case F_DER:
    case F_HIGHTAG:
    case F_HIGHTAG0:
        put_len(out, n);
        break;
    case F_LONG0: {
        size_t k = 0;
        for (size_t v = n; v > 0; v >>= 8) {
            k++;
        }
        k = k == 0 ? 1 : k;
        put1(out, (unsigned char)(0x80 | (k + 1)));
        put1(out, 0);
        for (size_t i = k; i > 0; i--) {
            put1(out, (unsigned char)(n >> (8 * (i - 1))));
        }
        break;
    }
    case F_LONG4:
    case F_LONG5:
    case F_LONG6: {
        int k = f == F_LONG4 ? 4 : f == F_LONG5 ? 5 : 6;
        put1(out, (unsigned char)(0x80 | k));
        for (int i = k - 1; i >= 0; i--) {
            put1(out, i >= 4 ? 0 : (unsigned char)(n >> (8 * i)));
        }
        break;
    }
    case F_LONG9:
        put1(out, 0x89);
        for (int i = 8; i >= 0; i--) {
            put1(out, i >= 4 ? 0 : (unsigned char)(n >> (8 * i)));
        }
        break;
    case F_INDEF:
        put1(out, 0x80);
        break;
    case F_LONGER:
        put_len(out, n + 1);
        break;
    case F_SHORTER:
        put_len(out, n > 0 ? n - 1 : 0);
        break;
    case F_NFORMS:
        break;
    }
    put(out, c, n);
    if (f == F_INDEF) {
        put1(out, 0);
        put1(out, 0);
    }
}

static void tlv_buf(struct buf *out, unsigned char id, enum form f, const struct buf *c)
{
    tlv(out, id, f, c->p, c->n);
}

/* ---- keys and their pieces ---- */

static EVP_PKEY *key_ec(const char *curve)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    if (k == NULL) {
        fprintf(stderr, "cannot make an EC %s key\n", curve);
        exit(2);
    }
    return k;
}

static EVP_PKEY *key_rsa_type(const char *type, unsigned bits, unsigned long e)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    BIGNUM *bn = BN_new();
    if (c == NULL || bn == NULL || BN_set_word(bn, e) != 1 || EVP_PKEY_keygen_init(c) != 1 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(c, (int)bits) != 1 ||
        EVP_PKEY_CTX_set1_rsa_keygen_pubexp(c, bn) != 1 || EVP_PKEY_keygen(c, &k) != 1) {
        fprintf(stderr, "cannot make an RSA-%u key with e = %lu\n", bits, e);
        exit(2);
    }
    BN_free(bn);
    EVP_PKEY_CTX_free(c);
    return k;
}

static EVP_PKEY *key_rsa_e(unsigned bits, unsigned long e)
{
    return key_rsa_type("RSA", bits, e);
}

static EVP_PKEY *key_rsa(unsigned bits)
{
    return key_rsa_e(bits, 65537);
}

/* The SPKI of key split into the AlgorithmIdentifier TLV and the subjectPublicKey contents. */
static void spki_parts(EVP_PKEY *key, struct buf *alg, struct buf *bits)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);
    const unsigned char *p = der;
    X509_PUBKEY *pub = d2i_X509_PUBKEY(NULL, &p, n);
    const unsigned char *pk = NULL;
    int pklen = 0;
    X509_ALGOR *palg = NULL;
    unsigned char *a = NULL;
    if (pub == NULL || X509_PUBKEY_get0_param(NULL, &pk, &pklen, &palg, pub) != 1) {
        fprintf(stderr, "cannot split an SPKI\n");
        exit(2);
    }
    int an = i2d_X509_ALGOR(palg, &a);
    *alg = buf_of(a, (size_t)an);
    *bits = buf_of(pk, (size_t)pklen);
    OPENSSL_free(a);
    X509_PUBKEY_free(pub);
    OPENSSL_free(der);
}

/* An AlgorithmIdentifier TLV for nid with parameters absent (V_ASN1_UNDEF) or NULL. */
static struct buf alg_tlv(int nid, int ptype)
{
    X509_ALGOR *a = X509_ALGOR_new();
    unsigned char *d = NULL;
    X509_ALGOR_set0(a, OBJ_nid2obj(nid), ptype, NULL);
    int n = i2d_X509_ALGOR(a, &d);
    struct buf b = buf_of(d, (size_t)n);
    OPENSSL_free(d);
    X509_ALGOR_free(a);
    return b;
}

static int sig_nid_for(int md_nid, int pk_nid)
{
    int sig = NID_undef;
    if (OBJ_find_sigid_by_algs(&sig, md_nid, pk_nid) != 1) {
        fprintf(stderr, "no signature OID for %d/%d\n", md_nid, pk_nid);
        exit(2);
    }
    return sig;
}

static int pk_nid_of(EVP_PKEY *k)
{
    return EVP_PKEY_is_a(k, "RSA") ? NID_rsaEncryption : NID_X9_62_id_ecPublicKey;
}

/* A signature over tbs with key and the named digest. */
static struct buf sign(EVP_PKEY *key, const char *md, const unsigned char *tbs, size_t n)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t len = 0;
    if (ctx == NULL || EVP_DigestSignInit_ex(ctx, NULL, md, NULL, NULL, key, NULL) != 1 ||
        EVP_DigestSign(ctx, NULL, &len, tbs, n) != 1) {
        fprintf(stderr, "cannot sign\n");
        exit(2);
    }
    unsigned char *sig = malloc(len);
    if (sig == NULL || EVP_DigestSign(ctx, sig, &len, tbs, n) != 1) {
        fprintf(stderr, "cannot sign\n");
        exit(2);
    }
    struct buf b = buf_of(sig, len);
    free(sig);
    EVP_MD_CTX_free(ctx);
    return b;
}

/* ---- a CSR as parts, so that each can be written oddly and the whole still signed ---- */

struct model {
    struct buf version;  /* TLV */
    struct buf subject;  /* TLV */
    struct buf key_alg;  /* TLV */
    struct buf key_bits; /* TLV of the subjectPublicKey BIT STRING */
    struct buf attrs;    /* TLV, or nothing when n == 0 */
    enum form cri_form;
    enum form spki_form;
    enum form outer_form;
    struct buf sig_alg; /* TLV */
    EVP_PKEY *signer;   /* signs the CRI with md */
    const char *md;
    enum form sig_form;
    bool sig_constructed;     /* the signature BIT STRING in the constructed form, one segment */
    unsigned char sig_unused; /* its unused-bits octet */
    bool sig_flip;            /* one bit of the signature flipped */
    struct buf trailing;      /* after the outer SEQUENCE */
    struct buf extra;         /* a fourth element inside the outer SEQUENCE */
};

static void model_free(struct model *m)
{
    buf_free(&m->version);
    buf_free(&m->subject);
    buf_free(&m->key_alg);
    buf_free(&m->key_bits);
    buf_free(&m->attrs);
    buf_free(&m->sig_alg);
    buf_free(&m->trailing);
    buf_free(&m->extra);
}

static void bitstring(struct buf *out, enum form f, unsigned char unused, const struct buf *bits)
{
    struct buf c = {0};
    put1(&c, unused);
    put(&c, bits->p, bits->n);
    tlv_buf(out, 0x03, f, &c);
    buf_free(&c);
}

static struct buf name_der(X509_NAME *nm)
{
    unsigned char *d = NULL;
    int n = i2d_X509_NAME(nm, &d);
    struct buf b = buf_of(d, (size_t)n);
    OPENSSL_free(d);
    return b;
}

static struct buf subject_cn(const char *cn)
{
    X509_NAME *nm = X509_NAME_new();
    if (cn != NULL) {
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    }
    struct buf b = name_der(nm);
    X509_NAME_free(nm);
    return b;
}

/* A DER model of a valid CSR for key: version 0, CN=workload, no attributes ([0] empty). */
static void model_init(struct model *m, EVP_PKEY *key, const char *md)
{
    memset(m, 0, sizeof *m);
    static const unsigned char v0[] = {0x02, 0x01, 0x00};
    static const unsigned char empty_attrs[] = {0xa0, 0x00};
    struct buf bits = {0};
    m->version = buf_of(v0, sizeof v0);
    m->subject = subject_cn("workload");
    spki_parts(key, &m->key_alg, &bits);
    bitstring(&m->key_bits, F_DER, 0, &bits);
    buf_free(&bits);
    m->attrs = buf_of(empty_attrs, sizeof empty_attrs);
    int md_nid = OBJ_sn2nid(md);
    if (md_nid == NID_undef) {
        md_nid = OBJ_ln2nid(md);
    }
    int pk = pk_nid_of(key);
    m->sig_alg =
        alg_tlv(sig_nid_for(md_nid, pk), pk == NID_rsaEncryption ? V_ASN1_NULL : V_ASN1_UNDEF);
    m->signer = key;
    m->md = md;
}

static void model_cri(const struct model *m, struct buf *cri)
{
    struct buf spki = {0};
    struct buf c = {0};
    struct buf sk = {0};
    put(&sk, m->key_alg.p, m->key_alg.n);
    put(&sk, m->key_bits.p, m->key_bits.n);
    tlv_buf(&spki, 0x30, m->spki_form, &sk);
    put(&c, m->version.p, m->version.n);
    put(&c, m->subject.p, m->subject.n);
    put(&c, spki.p, spki.n);
    put(&c, m->attrs.p, m->attrs.n);
    tlv_buf(cri, 0x30, m->cri_form, &c);
    buf_free(&spki);
    buf_free(&c);
    buf_free(&sk);
}

/* The CSR around an already encoded CRI, signed over exactly those bytes. */
static void model_wrap(const struct model *m, const struct buf *cri, struct buf *out)
{
    struct buf sig = sign(m->signer, m->md, cri->p, cri->n);
    struct buf sigbits = {0};
    struct buf c = {0};
    if (m->sig_flip) {
        sig.p[sig.n / 2] ^= 0x01;
    }
    if (m->sig_constructed) {
        struct buf seg = {0};
        bitstring(&seg, F_DER, m->sig_unused, &sig);
        tlv_buf(&sigbits, 0x23, m->sig_form, &seg);
        buf_free(&seg);
    } else {
        bitstring(&sigbits, m->sig_form, m->sig_unused, &sig);
    }
    put(&c, cri->p, cri->n);
    put(&c, m->sig_alg.p, m->sig_alg.n);
    put(&c, sigbits.p, sigbits.n);
    put(&c, m->extra.p, m->extra.n);
    tlv_buf(out, 0x30, m->outer_form, &c);
    put(out, m->trailing.p, m->trailing.n);
    buf_free(&sig);
    buf_free(&sigbits);
    buf_free(&c);
}

static void model_der(const struct model *m, struct buf *out)
{
    struct buf cri = {0};
    model_cri(m, &cri);
    model_wrap(m, &cri, out);
    buf_free(&cri);
}

static bool diff_model(const char *name, const struct model *m)
{
    struct buf der = {0};
    model_der(m, &der);
    bool accepted = diff_der(name, der.p, der.n);
    buf_free(&der);
    return accepted;
}

/* ---- CSRs made by OpenSSL, as clients make them ---- */

struct make_opts {
    const char *md;       /* digest name; NULL for SHA256; "" for none (EdDSA) */
    bool compressed;      /* EC point in compressed form */
    bool explicit_params; /* EC curve given by its parameters */
    bool pss;             /* RSASSA-PSS signature */
    bool subject;         /* a multi-RDN subject */
    bool extensions;      /* an extensionRequest and a challengePassword */
};

static void add_subject(X509_NAME *nm)
{
    X509_NAME_add_entry_by_txt(nm, "C", MBSTRING_ASC, (const unsigned char *)"DE", -1, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8,
                               (const unsigned char *)"Gr\xc3\xbc"
                                                      "ne Wiese",
                               -1, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "OU", MBSTRING_BMP, (const unsigned char *)"\0a\0b", 4, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"workload", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(nm, "emailAddress", MBSTRING_ASC,
                               (const unsigned char *)"w@example.org", -1, -1, 0);
}

static void add_extensions(X509_REQ *req)
{
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, NULL, NULL, req, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name,
                                              "URI:spiffe://example.org/x,DNS:a.example.org");
    X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    sk_X509_EXTENSION_push(exts, san);
    sk_X509_EXTENSION_push(exts, bc);
    X509_REQ_add_extensions(req, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, MBSTRING_ASC,
                              (const unsigned char *)"secret", -1);
}

/* The DER of a CSR for key made by OpenSSL (X509_REQ_sign); malloc'd in *out. */
static void make_csr(EVP_PKEY *key, const struct make_opts *o, struct buf *out)
{
    static const struct make_opts none = {0};
    if (o == NULL) {
        o = &none;
    }
    if (o->compressed) {
        EVP_PKEY_set_utf8_string_param(key, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                       "compressed");
    }
    if (o->explicit_params) {
        EVP_PKEY_set_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING, "explicit");
    }
    X509_REQ *req = X509_REQ_new();
    X509_REQ_set_version(req, X509_REQ_VERSION_1);
    X509_NAME *nm = X509_REQ_get_subject_name(req);
    if (o->subject) {
        add_subject(nm);
    } else {
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"workload", -1,
                                   -1, 0);
    }
    X509_REQ_set_pubkey(req, key);
    if (o->extensions) {
        add_extensions(req);
    }
    const char *md = o->md != NULL ? o->md : "SHA256";
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (EVP_DigestSignInit_ex(mctx, &pctx, md[0] != '\0' ? md : NULL, NULL, NULL, key, NULL) != 1 ||
        (o->pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1)) ||
        X509_REQ_sign_ctx(req, mctx) <= 0) {
        fprintf(stderr, "cannot sign a test CSR (%s)\n", md);
        ERR_print_errors_fp(stderr);
        exit(2);
    }
    EVP_MD_CTX_free(mctx);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    *out = buf_of(der, (size_t)n);
    OPENSSL_free(der);
    X509_REQ_free(req);
    if (o->compressed) {
        EVP_PKEY_set_utf8_string_param(key, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                       "uncompressed");
    }
    if (o->explicit_params) {
        EVP_PKEY_set_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING, "named_curve");
    }
}

static bool diff_made(const char *name, EVP_PKEY *key, const struct make_opts *o)
{
    struct buf der = {0};
    make_csr(key, o, &der);
    bool accepted = diff_der(name, der.p, der.n);
    buf_free(&der);
    return accepted;
}

/* ---- the keys of the whole run ---- */

static EVP_PKEY *p256, *p256b, *p384, *rsa2048, *rsa2048b, *rsa3072, *rsa4096;

static void make_keys(void)
{
    p256 = key_ec("P-256");
    p256b = key_ec("P-256");
    p384 = key_ec("P-384");
    rsa2048 = key_rsa(2048);
    rsa2048b = key_rsa(2048);
    rsa3072 = key_rsa(3072);
    rsa4096 = key_rsa(4096);
}

static void free_keys(void)
{
    EVP_PKEY *all[] = {p256, p256b, p384, rsa2048, rsa2048b, rsa3072, rsa4096};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        EVP_PKEY_free(all[i]);
    }
}

/* ---- family 1: CSRs OpenSSL makes ---- */

static void test_made(void)
{
    static const char *mds[] = {"SHA256", "SHA384", "SHA512"};
    struct {
        const char *name;
        EVP_PKEY *key;
    } good[] = {{"P-256", p256},
                {"P-384", p384},
                {"RSA-2048", rsa2048},
                {"RSA-3072", rsa3072},
                {"RSA-4096", rsa4096}};
    char name[96];
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        for (size_t i = 0; i < 3; i++) {
            struct make_opts o = {.md = mds[i]};
            snprintf(name, sizeof name, "made %s %s", good[k].name, mds[i]);
            CHECK(diff_made(name, good[k].key, &o));
            o.subject = true;
            o.extensions = true;
            snprintf(name, sizeof name, "made %s %s subject+attributes", good[k].name, mds[i]);
            CHECK(diff_made(name, good[k].key, &o));
        }
    }

    /* What the policy refuses, each must be refused by both, for the same reason. */
    EVP_PKEY *ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    EVP_PKEY *p521 = key_ec("P-521");
    EVP_PKEY *p192 = key_ec("prime192v1");
    EVP_PKEY *k1 = key_ec("secp256k1");
    EVP_PKEY *bp = key_ec("brainpoolP256r1");
    EVP_PKEY *rsa1024 = key_rsa(1024);
    EVP_PKEY *rsa2047 = key_rsa(2047);
    EVP_PKEY *rsa_e3 = key_rsa_e(2048, 3);
    EVP_PKEY *rsa_e65539 = key_rsa_e(2048, 65539);
    EVP_PKEY *rsa_e31 = key_rsa_e(2048, 2147483647UL);
    EVP_PKEY *rsa_e33 = key_rsa_e(2048, 4294967297UL);
    EVP_PKEY *pss_key = key_rsa_type("RSA-PSS", 2048, 65537);
    CHECK(ed25519 != NULL && ed448 != NULL && pss_key != NULL);
    struct make_opts none = {.md = ""};
    struct make_opts sha1 = {.md = "SHA1"};
    struct make_opts sha224 = {.md = "SHA224"};
    struct make_opts md5 = {.md = "MD5"};
    struct make_opts sha3 = {.md = "SHA3-256"};
    struct make_opts comp = {.compressed = true};
    struct make_opts expl = {.explicit_params = true};
    struct make_opts pss = {.pss = true};
    CHECK(!diff_made("Ed25519", ed25519, &none));
    CHECK(!diff_made("Ed448", ed448, &none));
    CHECK(!diff_made("P-521", p521, NULL));
    CHECK(!diff_made("P-192", p192, NULL));
    CHECK(!diff_made("secp256k1", k1, NULL));
    CHECK(!diff_made("brainpoolP256r1", bp, NULL));
    CHECK(!diff_made("RSA-1024", rsa1024, NULL));
    CHECK(!diff_made("RSA-2047", rsa2047, NULL));
    CHECK(!diff_made("RSA-2048 e=3", rsa_e3, NULL));
    CHECK(diff_made("RSA-2048 e=65539", rsa_e65539, NULL));
    CHECK(diff_made("RSA-2048 e=2^31-1", rsa_e31, NULL));
    CHECK(!diff_made("RSA-2048 e=2^32+1", rsa_e33, NULL));
    CHECK(!diff_made("RSA-PSS key", pss_key, NULL));
    CHECK(!diff_made("RSA key, PSS signature", rsa2048, &pss));
    CHECK(!diff_made("P-256 SHA-1", p256, &sha1));
    CHECK(!diff_made("P-256 SHA-224", p256, &sha224));
    CHECK(!diff_made("RSA SHA-1", rsa2048, &sha1));
    CHECK(!diff_made("RSA MD5", rsa2048, &md5));
    CHECK(!diff_made("P-256 SHA3-256", p256, &sha3));
    CHECK(!diff_made("RSA SHA3-256", rsa2048, &sha3));
    CHECK(!diff_made("P-256 compressed", p256, &comp));
    CHECK(!diff_made("P-384 compressed", p384, &comp));
    CHECK(!diff_made("P-256 explicit parameters", p256, &expl));
    EVP_PKEY *all[] = {ed25519, ed448,  p521,       p192,    k1,      bp,     rsa1024,
                       rsa2047, rsa_e3, rsa_e65539, rsa_e31, rsa_e33, pss_key};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        EVP_PKEY_free(all[i]);
    }
}

/* ---- family 2: CSRs built here, signed properly ---- */

/* Every form for the outer SEQUENCE, the CRI, the SPKI and the signature BIT STRING. */
static void test_forms(EVP_PKEY *key, const char *kname)
{
    char name[96];
    for (int f = 0; f < F_NFORMS; f++) {
        enum form fm = (enum form)f;
        struct model m;
        model_init(&m, key, "SHA256");
        m.outer_form = fm;
        snprintf(name, sizeof name, "%s outer %s", kname, form_names[f]);
        diff_model(name, &m);
        m.outer_form = F_DER;
        m.cri_form = fm;
        snprintf(name, sizeof name, "%s cri %s", kname, form_names[f]);
        diff_model(name, &m);
        m.cri_form = F_DER;
        m.spki_form = fm;
        snprintf(name, sizeof name, "%s spki %s", kname, form_names[f]);
        diff_model(name, &m);
        m.spki_form = F_DER;
        m.sig_form = fm;
        snprintf(name, sizeof name, "%s signature %s", kname, form_names[f]);
        diff_model(name, &m);
        m.sig_constructed = true;
        snprintf(name, sizeof name, "%s constructed signature %s", kname, form_names[f]);
        diff_model(name, &m);
        m.sig_constructed = false;
        m.sig_form = F_DER;
        /* All of them at once, in each form. */
        m.outer_form = m.cri_form = m.spki_form = fm;
        snprintf(name, sizeof name, "%s all %s", kname, form_names[f]);
        diff_model(name, &m);
        m.outer_form = m.cri_form = m.spki_form = F_DER;
        /* The key BIT STRING and the subject in the form. */
        struct buf bits = {0};
        struct buf alg = {0};
        spki_parts(key, &alg, &bits);
        buf_free(&m.key_bits);
        bitstring(&m.key_bits, fm, 0, &bits);
        snprintf(name, sizeof name, "%s key bits %s", kname, form_names[f]);
        diff_model(name, &m);
        buf_free(&m.key_bits);
        struct buf seg = {0};
        bitstring(&seg, F_DER, 0, &bits);
        tlv_buf(&m.key_bits, 0x23, fm, &seg);
        snprintf(name, sizeof name, "%s constructed key bits %s", kname, form_names[f]);
        diff_model(name, &m);
        buf_free(&seg);
        buf_free(&bits);
        buf_free(&alg);
        /* Inside an indefinite SPKI, the algorithm and the key bits in the form. */
        {
            struct buf a2 = {0};
            struct buf b2 = {0};
            spki_parts(key, &a2, &b2);
            struct model m2;
            model_init(&m2, key, "SHA256");
            m2.spki_form = F_INDEF;
            buf_free(&m2.key_alg);
            tlv(&m2.key_alg, 0x30, fm, a2.p + 2, a2.n - 2);
            snprintf(name, sizeof name, "%s indefinite spki, algorithm %s", kname, form_names[f]);
            diff_model(name, &m2);
            buf_free(&m2.key_alg);
            m2.key_alg = buf_of(a2.p, a2.n);
            buf_free(&m2.key_bits);
            bitstring(&m2.key_bits, fm, 0, &b2);
            snprintf(name, sizeof name, "%s indefinite spki, key bits %s", kname, form_names[f]);
            diff_model(name, &m2);
            m2.spki_form = fm;
            snprintf(name, sizeof name, "%s spki and key bits %s", kname, form_names[f]);
            diff_model(name, &m2);
            model_free(&m2);
            buf_free(&a2);
            buf_free(&b2);
        }
        struct buf subj = subject_cn("workload");
        buf_free(&m.subject);
        tlv(&m.subject, 0x30, fm, subj.p + 2, subj.n - 2);
        snprintf(name, sizeof name, "%s subject %s", kname, form_names[f]);
        diff_model(name, &m);
        buf_free(&subj);
        model_free(&m);
    }
    struct model m;
    model_init(&m, key, "SHA256");
    CHECK(diff_model("model DER baseline", &m));
    model_free(&m);
}

/* A model with one part replaced by raw bytes. */
enum part { P_VERSION, P_SUBJECT, P_KEY_ALG, P_KEY_BITS, P_ATTRS, P_SIG_ALG, P_TRAILING, P_EXTRA };

static void diff_part(const char *name, EVP_PKEY *key, const char *md, enum part part,
                      const unsigned char *bytes, size_t n)
{
    struct model m;
    model_init(&m, key, md);
    struct buf *b = part == P_VERSION    ? &m.version
                    : part == P_SUBJECT  ? &m.subject
                    : part == P_KEY_ALG  ? &m.key_alg
                    : part == P_KEY_BITS ? &m.key_bits
                    : part == P_ATTRS    ? &m.attrs
                    : part == P_SIG_ALG  ? &m.sig_alg
                    : part == P_TRAILING ? &m.trailing
                                         : &m.extra;
    buf_free(b);
    *b = buf_of(bytes, n);
    diff_model(name, &m);
    model_free(&m);
}

#define PART(name, key, part, ...)                           \
    do {                                                     \
        static const unsigned char b_[] = {__VA_ARGS__};     \
        diff_part(name, key, "SHA256", part, b_, sizeof b_); \
    } while (0)
#define PART_EMPTY(name, key, part) diff_part(name, key, "SHA256", part, NULL, 0)

static void test_versions(EVP_PKEY *k)
{
    PART("version 1", k, P_VERSION, 0x02, 0x01, 0x01);
    PART("version 2", k, P_VERSION, 0x02, 0x01, 0x02);
    PART("version -1", k, P_VERSION, 0x02, 0x01, 0xff);
    PART("version -128", k, P_VERSION, 0x02, 0x01, 0x80);
    PART("version padded 0", k, P_VERSION, 0x02, 0x02, 0x00, 0x00);
    PART("version padded 1", k, P_VERSION, 0x02, 0x02, 0x00, 0x01);
    PART("version 0x0100", k, P_VERSION, 0x02, 0x02, 0x01, 0x00);
    PART("version empty", k, P_VERSION, 0x02, 0x00);
    PART("version long form", k, P_VERSION, 0x02, 0x81, 0x01, 0x00);
    PART("version long form 0", k, P_VERSION, 0x02, 0x82, 0x00, 0x01, 0x00);
    PART("version constructed", k, P_VERSION, 0x22, 0x03, 0x02, 0x01, 0x00);
    PART("version ENUMERATED", k, P_VERSION, 0x0a, 0x01, 0x00);
    PART("version high tag", k, P_VERSION, 0x1f, 0x02, 0x01, 0x00);
    PART("version huge", k, P_VERSION, 0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0);
    PART("version 2^63", k, P_VERSION, 0x02, 0x09, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0);
    PART("version [0] explicit", k, P_VERSION, 0xa0, 0x03, 0x02, 0x01, 0x00);
    PART("version indefinite", k, P_VERSION, 0x02, 0x80, 0x00, 0x00, 0x00);
    PART_EMPTY("version missing", k, P_VERSION);
}

static void test_subjects(EVP_PKEY *k)
{
    PART("subject empty", k, P_SUBJECT, 0x30, 0x00);
    PART("subject empty RDN", k, P_SUBJECT, 0x30, 0x02, 0x31, 0x00);
    /* CN as each string type, with good and bad contents. */
    PART("subject CN PrintableString", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x13, 0x02, 'h', 'i');
    PART("subject CN PrintableString 8-bit", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06,
         0x03, 0x55, 0x04, 0x03, 0x13, 0x02, 0xff, 0xfe);
    PART("subject CN UTF8String", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x0c, 0x02, 0xc3, 0xbc);
    PART("subject CN UTF8String invalid", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06,
         0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, 0xc3, 0x28);
    PART("subject CN UTF8String overlong NUL", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09,
         0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, 0xc0, 0x80);
    PART("subject CN UTF8String surrogate", k, P_SUBJECT, 0x30, 0x0e, 0x31, 0x0c, 0x30, 0x0a, 0x06,
         0x03, 0x55, 0x04, 0x03, 0x0c, 0x03, 0xed, 0xa0, 0x80);
    PART("subject CN BMPString", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55,
         0x04, 0x03, 0x1e, 0x02, 0x00, 'a');
    PART("subject CN BMPString odd", k, P_SUBJECT, 0x30, 0x0e, 0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x1e, 0x03, 0x00, 'a', 0x00);
    PART("subject CN UniversalString", k, P_SUBJECT, 0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x1c, 0x04, 0x00, 0x00, 0x00, 'a');
    PART("subject CN UniversalString short", k, P_SUBJECT, 0x30, 0x0e, 0x31, 0x0c, 0x30, 0x0a, 0x06,
         0x03, 0x55, 0x04, 0x03, 0x1c, 0x03, 0x00, 0x00, 'a');
    PART("subject CN UniversalString huge", k, P_SUBJECT, 0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06,
         0x03, 0x55, 0x04, 0x03, 0x1c, 0x04, 0x7f, 0x00, 0x00, 'a');
    PART("subject CN T61String", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55,
         0x04, 0x03, 0x14, 0x02, 0xe9, 'a');
    PART("subject CN IA5String", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55,
         0x04, 0x03, 0x16, 0x02, 'h', 'i');
    PART("subject CN VisibleString", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x1a, 0x02, 'h', 'i');
    PART("subject CN NumericString", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x12, 0x02, '1', '2');
    PART("subject CN OCTET STRING", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x04, 0x02, 'h', 'i');
    PART("subject CN BIT STRING", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x03, 0x02, 0x00, 'i');
    PART("subject CN INTEGER", k, P_SUBJECT, 0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55,
         0x04, 0x03, 0x02, 0x01, 0x05);
    PART("subject CN NULL", k, P_SUBJECT, 0x30, 0x0b, 0x31, 0x09, 0x30, 0x07, 0x06, 0x03, 0x55,
         0x04, 0x03, 0x05, 0x00);
    PART("subject CN BOOLEAN", k, P_SUBJECT, 0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55,
         0x04, 0x03, 0x01, 0x01, 0xff);
    PART("subject CN SEQUENCE", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55,
         0x04, 0x03, 0x30, 0x02, 0x05, 0x00);
    PART("subject CN context tag", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x80, 0x02, 'h', 'i');
    PART("subject CN constructed UTF8String", k, P_SUBJECT, 0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b,
         0x06, 0x03, 0x55, 0x04, 0x03, 0x2c, 0x04, 0x04, 0x02, 'h', 'i');
    PART("subject AVA without value", k, P_SUBJECT, 0x30, 0x09, 0x31, 0x07, 0x30, 0x05, 0x06, 0x03,
         0x55, 0x04, 0x03);
    PART("subject AVA with two values", k, P_SUBJECT, 0x30, 0x11, 0x31, 0x0f, 0x30, 0x0d, 0x06,
         0x03, 0x55, 0x04, 0x03, 0x13, 0x02, 'h', 'i', 0x13, 0x02, 'h', 'o');
    PART("subject bad OID", k, P_SUBJECT, 0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55,
         0x84, 0x80, 0x13, 0x02, 'h', 'i');
    PART("subject OID leading 0x80", k, P_SUBJECT, 0x30, 0x0e, 0x31, 0x0c, 0x30, 0x0a, 0x06, 0x04,
         0x55, 0x80, 0x04, 0x03, 0x13, 0x02, 'h', 'i');
    PART("subject empty OID", k, P_SUBJECT, 0x30, 0x0a, 0x31, 0x08, 0x30, 0x06, 0x06, 0x00, 0x13,
         0x02, 'h', 'i');
    PART("subject RDN as SEQUENCE", k, P_SUBJECT, 0x30, 0x0d, 0x30, 0x0b, 0x30, 0x09, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x13, 0x02, 'h', 'i');
    PART("subject as SET", k, P_SUBJECT, 0x31, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04,
         0x03, 0x13, 0x02, 'h', 'i');
    PART("subject indefinite RDN", k, P_SUBJECT, 0x30, 0x0f, 0x31, 0x80, 0x30, 0x09, 0x06, 0x03,
         0x55, 0x04, 0x03, 0x13, 0x02, 'h', 'i', 0x00, 0x00);
    PART("subject EOC in RDN", k, P_SUBJECT, 0x30, 0x0f, 0x31, 0x0d, 0x30, 0x09, 0x06, 0x03, 0x55,
         0x04, 0x03, 0x13, 0x02, 'h', 'i', 0x00, 0x00);
    PART("subject primitive SEQUENCE", k, P_SUBJECT, 0x10, 0x00);
    PART("subject NULL", k, P_SUBJECT, 0x05, 0x00);
    PART_EMPTY("subject missing", k, P_SUBJECT);
    /* A long subject (many RDNs). */
    X509_NAME *nm = X509_NAME_new();
    for (int i = 0; i < 200; i++) {
        X509_NAME_add_entry_by_txt(nm, "OU", MBSTRING_ASC, (const unsigned char *)"unit", -1, -1,
                                   0);
    }
    struct buf b = name_der(nm);
    diff_part("subject 200 RDNs", k, "SHA256", P_SUBJECT, b.p, b.n);
    buf_free(&b);
    X509_NAME_free(nm);
}

static void test_attributes(EVP_PKEY *k)
{
    PART_EMPTY("attributes absent", k, P_ATTRS);
    PART("attributes empty", k, P_ATTRS, 0xa0, 0x00);
    PART("attributes primitive [0]", k, P_ATTRS, 0x80, 0x00);
    PART("attributes indefinite", k, P_ATTRS, 0xa0, 0x80, 0x00, 0x00);
    PART("attributes indefinite no EOC", k, P_ATTRS, 0xa0, 0x80);
    PART("attributes long form", k, P_ATTRS, 0xa0, 0x81, 0x00);
    PART("attributes [1]", k, P_ATTRS, 0xa1, 0x00);
    PART("attributes SET", k, P_ATTRS, 0x31, 0x00);
    PART("attributes NULL", k, P_ATTRS, 0x05, 0x00);
    PART("attributes twice", k, P_ATTRS, 0xa0, 0x00, 0xa0, 0x00);
    PART("attributes high tag", k, P_ATTRS, 0xbf, 0x00, 0x00);
    /* challengePassword (1.2.840.113549.1.9.7) "pw". */
    PART("attributes challengePassword", k, P_ATTRS, 0xa0, 0x17, 0x30, 0x15, 0x06, 0x09, 0x2a, 0x86,
         0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x08, 0x0c, 0x02, 'p', 'w', 0x13, 0x02,
         'p', 'w');
    PART("attributes primitive [0] with one", k, P_ATTRS, 0x80, 0x13, 0x30, 0x11, 0x06, 0x09, 0x2a,
         0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x04, 0x0c, 0x02, 'p', 'w');
    PART("attributes indefinite with one", k, P_ATTRS, 0xa0, 0x80, 0x30, 0x11, 0x06, 0x09, 0x2a,
         0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x04, 0x0c, 0x02, 'p', 'w', 0x00,
         0x00);
    PART("attribute empty value set", k, P_ATTRS, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86,
         0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x00);
    PART("attribute without values", k, P_ATTRS, 0xa0, 0x0d, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86,
         0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07);
    PART("attribute BMPString odd", k, P_ATTRS, 0xa0, 0x14, 0x30, 0x12, 0x06, 0x09, 0x2a, 0x86,
         0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x05, 0x1e, 0x03, 0x00, 'a', 0x00);
    PART("attribute bad BOOLEAN", k, P_ATTRS, 0xa0, 0x14, 0x30, 0x12, 0x06, 0x09, 0x2a, 0x86, 0x48,
         0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x05, 0x01, 0x03, 0x00, 0x00, 0x00);
    PART("attribute bad INTEGER", k, P_ATTRS, 0xa0, 0x13, 0x30, 0x11, 0x06, 0x09, 0x2a, 0x86, 0x48,
         0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x04, 0x02, 0x02, 0x00, 0x01);
    PART("attribute indefinite SEQUENCE value", k, P_ATTRS, 0xa0, 0x15, 0x30, 0x13, 0x06, 0x09,
         0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x06, 0x30, 0x80, 0x05, 0x00,
         0x00, 0x00);
    PART("attribute SEQUENCE value with garbage", k, P_ATTRS, 0xa0, 0x13, 0x30, 0x11, 0x06, 0x09,
         0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x04, 0x30, 0x02, 0xff, 0xff);
    PART("attribute UTCTime short", k, P_ATTRS, 0xa0, 0x13, 0x30, 0x11, 0x06, 0x09, 0x2a, 0x86,
         0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x04, 0x17, 0x02, '9', '9');
    PART("attribute private tag value", k, P_ATTRS, 0xa0, 0x13, 0x30, 0x11, 0x06, 0x09, 0x2a, 0x86,
         0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07, 0x31, 0x04, 0xc1, 0x02, 0xff, 0xff);
    PART("attributes EOC inside definite", k, P_ATTRS, 0xa0, 0x02, 0x00, 0x00);
    PART("attributes garbage element", k, P_ATTRS, 0xa0, 0x02, 0x05, 0x00);
    PART("attributes then more", k, P_ATTRS, 0xa0, 0x00, 0x05, 0x00);
}

static void test_key_encodings(void)
{
    char name[96];
    struct buf alg = {0};
    struct buf bits = {0};
    /* EC: algorithm parameters. */
    PART("EC params NULL", p256, P_KEY_ALG, 0x30, 0x0b, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
         0x02, 0x01, 0x05, 0x00);
    PART("EC params absent", p256, P_KEY_ALG, 0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
         0x02, 0x01);
    PART("EC params P-384 OID on a P-256 key", p256, P_KEY_ALG, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86,
         0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22);
    PART("EC params unknown OID", p256, P_KEY_ALG, 0x30, 0x0e, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce,
         0x3d, 0x02, 0x01, 0x06, 0x03, 0x2a, 0x03, 0x04);
    PART("EC params INTEGER", p256, P_KEY_ALG, 0x30, 0x0c, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
         0x02, 0x01, 0x02, 0x01, 0x01);
    PART("EC params OID long form", p256, P_KEY_ALG, 0x30, 0x14, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce,
         0x3d, 0x02, 0x01, 0x06, 0x81, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07);
    PART("EC alg OID long form", p256, P_KEY_ALG, 0x30, 0x14, 0x06, 0x81, 0x07, 0x2a, 0x86, 0x48,
         0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07);
    PART("EC alg indefinite", p256, P_KEY_ALG, 0x30, 0x80, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
         0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x00, 0x00);
    PART("EC alg extra element", p256, P_KEY_ALG, 0x30, 0x15, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce,
         0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x05, 0x00);
    /* RSA: algorithm parameters. */
    PART("RSA params absent", rsa2048, P_KEY_ALG, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
         0xf7, 0x0d, 0x01, 0x01, 0x01);
    PART("RSA params INTEGER", rsa2048, P_KEY_ALG, 0x30, 0x0e, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
         0xf7, 0x0d, 0x01, 0x01, 0x01, 0x02, 0x01, 0x00);
    PART("RSA params NULL with content", rsa2048, P_KEY_ALG, 0x30, 0x0e, 0x06, 0x09, 0x2a, 0x86,
         0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x01, 0x00);
    PART("RSA params NULL long form", rsa2048, P_KEY_ALG, 0x30, 0x0e, 0x06, 0x09, 0x2a, 0x86, 0x48,
         0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x81, 0x00);
    PART("PSS OID on an RSA key", rsa2048, P_KEY_ALG, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48,
         0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a);
    PART("RSA OID on an EC key", p256, P_KEY_ALG, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
         0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00);

    /* EC points: unused bits, other forms, off the curve, coordinates past p. */
    spki_parts(p256, &alg, &bits);
    for (unsigned u = 0; u <= 8; u++) {
        struct model m;
        model_init(&m, p256, "SHA256");
        buf_free(&m.key_bits);
        bitstring(&m.key_bits, F_DER, (unsigned char)u, &bits);
        snprintf(name, sizeof name, "EC point with %u unused bits", u);
        diff_model(name, &m);
        /* The same with the low bits clear, which d2i would have cleared anyway. */
        struct buf z = buf_of(bits.p, bits.n);
        z.p[z.n - 1] &= (unsigned char)(0xff << (u > 7 ? 7 : u));
        buf_free(&m.key_bits);
        bitstring(&m.key_bits, F_DER, (unsigned char)u, &z);
        snprintf(name, sizeof name, "EC point with %u unused zero bits", u);
        diff_model(name, &m);
        buf_free(&z);
        model_free(&m);
    }
    static const unsigned char forms[] = {0x00, 0x02, 0x03, 0x05, 0x06, 0x07, 0x44, 0x84};
    for (size_t i = 0; i < sizeof forms; i++) {
        struct buf z = buf_of(bits.p, bits.n);
        struct model m;
        model_init(&m, p256, "SHA256");
        z.p[0] = forms[i];
        buf_free(&m.key_bits);
        bitstring(&m.key_bits, F_DER, 0, &z);
        snprintf(name, sizeof name, "EC point form 0x%02x", forms[i]);
        diff_model(name, &m);
        model_free(&m);
        buf_free(&z);
    }
    {
        struct model m;
        model_init(&m, p256, "SHA256");
        struct buf z = buf_of(bits.p, bits.n);
        z.p[z.n - 1] ^= 0x01;
        buf_free(&m.key_bits);
        bitstring(&m.key_bits, F_DER, 0, &z);
        diff_model("EC point off the curve", &m);
        memset(z.p + 1, 0xff, 32);
        buf_free(&m.key_bits);
        bitstring(&m.key_bits, F_DER, 0, &z);
        diff_model("EC point x = 2^256-1", &m);
        memset(z.p + 1, 0, 64);
        buf_free(&m.key_bits);
        bitstring(&m.key_bits, F_DER, 0, &z);
        diff_model("EC point (0, 0)", &m);
        buf_free(&m.key_bits);
        struct buf one = buf_of((const unsigned char *)"\x00", 1);
        bitstring(&m.key_bits, F_DER, 0, &one);
        diff_model("EC point at infinity", &m);
        buf_free(&one);
        buf_free(&m.key_bits);
        struct buf longer = buf_of(bits.p, bits.n);
        put1(&longer, 0x00);
        bitstring(&m.key_bits, F_DER, 0, &longer);
        diff_model("EC point with a byte more", &m);
        buf_free(&longer);
        buf_free(&m.key_bits);
        struct buf shorter = buf_of(bits.p, bits.n - 1);
        bitstring(&m.key_bits, F_DER, 0, &shorter);
        diff_model("EC point with a byte less", &m);
        buf_free(&shorter);
        PART("EC key bits empty", p256, P_KEY_BITS, 0x03, 0x01, 0x00);
        PART("EC key bits no octet", p256, P_KEY_BITS, 0x03, 0x00);
        PART("EC key bits unused 8", p256, P_KEY_BITS, 0x03, 0x01, 0x08);
        PART("EC key as OCTET STRING", p256, P_KEY_BITS, 0x04, 0x01, 0x00);
        buf_free(&z);
        model_free(&m);
    }
    buf_free(&alg);
    buf_free(&bits);
    /* A P-384 key described as P-256 and the other way round. */
    {
        struct buf a384 = {0};
        struct buf b384 = {0};
        spki_parts(p384, &a384, &b384);
        struct model m;
        model_init(&m, p256, "SHA256");
        buf_free(&m.key_alg);
        m.key_alg = buf_of(a384.p, a384.n);
        diff_model("P-384 OID with a P-256 point", &m);
        model_free(&m);
        buf_free(&a384);
        buf_free(&b384);
    }

    /* RSA: the RSAPublicKey inside the BIT STRING, written oddly (RFC 8017 §A.1.1). */
    BIGNUM *n = NULL;
    BIGNUM *e = NULL;
    EVP_PKEY_get_bn_param(rsa2048, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(rsa2048, OSSL_PKEY_PARAM_RSA_E, &e);
    unsigned char nb[1100];
    unsigned char eb[16];
    int nlen = BN_bn2bin(n, nb);
    int elen = BN_bn2bin(e, eb);
    struct {
        const char *name;
        enum form seq, nf, ef;
        int npad;   /* zero octets before n's magnitude (DER has 1, as n's top bit is set) */
        int epad;   /* zero octets before e */
        bool trail; /* bytes after RSAPublicKey inside the BIT STRING */
        bool n_cst; /* n constructed */
        bool extra; /* a third INTEGER */
    } rk[] = {
        {"RSAPublicKey DER", F_DER, F_DER, F_DER, 1, 0, false, false, false},
        {"RSAPublicKey n without its zero", F_DER, F_DER, F_DER, 0, 0, false, false, false},
        {"RSAPublicKey n with two zeros", F_DER, F_DER, F_DER, 2, 0, false, false, false},
        {"RSAPublicKey n with many zeros", F_DER, F_DER, F_DER, 40, 0, false, false, false},
        {"RSAPublicKey e with a zero", F_DER, F_DER, F_DER, 1, 1, false, false, false},
        {"RSAPublicKey trailing bytes", F_DER, F_DER, F_DER, 1, 0, true, false, false},
        {"RSAPublicKey n constructed", F_DER, F_DER, F_DER, 1, 0, false, true, false},
        {"RSAPublicKey third INTEGER", F_DER, F_DER, F_DER, 1, 0, false, false, true},
    };
    for (size_t i = 0; i < sizeof rk / sizeof rk[0] + 3 * F_NFORMS; i++) {
        size_t base = sizeof rk / sizeof rk[0];
        enum form seq = F_DER, nf = F_DER, ef = F_DER;
        int npad = 1, epad = 0;
        bool trail = false, n_cst = false, extra = false;
        if (i < base) {
            seq = rk[i].seq;
            nf = rk[i].nf;
            ef = rk[i].ef;
            npad = rk[i].npad;
            epad = rk[i].epad;
            trail = rk[i].trail;
            n_cst = rk[i].n_cst;
            extra = rk[i].extra;
            snprintf(name, sizeof name, "%s", rk[i].name);
        } else {
            size_t j = i - base;
            enum form f = (enum form)(j % F_NFORMS);
            const char *where = j / F_NFORMS == 0 ? "SEQUENCE" : j / F_NFORMS == 1 ? "n" : "e";
            if (j / F_NFORMS == 0) {
                seq = f;
            } else if (j / F_NFORMS == 1) {
                nf = f;
            } else {
                ef = f;
            }
            snprintf(name, sizeof name, "RSAPublicKey %s %s", where, form_names[f]);
        }
        struct buf c = {0};
        struct buf ni = {0};
        struct buf ei = {0};
        struct buf body = {0};
        for (int z = 0; z < npad; z++) {
            put1(&ni, 0);
        }
        put(&ni, nb, (size_t)nlen);
        for (int z = 0; z < epad; z++) {
            put1(&ei, 0);
        }
        put(&ei, eb, (size_t)elen);
        if (n_cst) {
            struct buf inner = {0};
            tlv_buf(&inner, 0x02, F_DER, &ni);
            tlv_buf(&body, 0x22, nf, &inner);
            buf_free(&inner);
        } else {
            tlv_buf(&body, 0x02, nf, &ni);
        }
        tlv_buf(&body, 0x02, ef, &ei);
        if (extra) {
            put(&body, "\x02\x01\x00", 3);
        }
        tlv_buf(&c, 0x30, seq, &body);
        if (trail) {
            put(&c, "\x05\x00\xff", 3);
        }
        struct model m;
        model_init(&m, rsa2048, "SHA256");
        buf_free(&m.key_bits);
        bitstring(&m.key_bits, F_DER, 0, &c);
        diff_model(name, &m);
        model_free(&m);
        buf_free(&c);
        buf_free(&ni);
        buf_free(&ei);
        buf_free(&body);
    }

    /* RSA keys the policy judges by n and e alone (no private key needed: refused before or at
     * the signature). */
    struct {
        const char *name;
        int nbits;       /* a random odd modulus of this many bits; 0: the real one */
        unsigned long e; /* 0: e = 2^40+1 */
        bool negative_e; /* e's top bit set without a zero octet */
        /* clang-format off */
    } pk[] = {
        {"n 2047 bits", 2047, 65537, false}, {"n 2048 bits random", 2048, 65537, false},
        {"n 8192 bits", 8192, 65537, false}, {"n 8193 bits", 8193, 65537, false},
        {"n 16 bits", 16, 65537, false},     {"e = 1", 0, 1, false},
        {"e = 3", 0, 3, false},              {"e = 65535", 0, 65535, false},
        {"e = 65536", 0, 65536, false},      {"e = 65537", 0, 65537, false},
        {"e = 2^31-1", 0, 2147483647UL, false}, {"e = 2^31+1", 0, 2147483649UL, false},
        {"e = 2^40+1", 0, 0, false},         {"e = 0", 0, 0x100, false},
        {"e negative", 0, 0x81, true},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof pk / sizeof pk[0]; i++) {
        BIGNUM *mod = BN_new();
        BIGNUM *ex = BN_new();
        if (pk[i].nbits > 0) {
            BN_rand(mod, pk[i].nbits, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD);
        } else {
            BN_copy(mod, n);
        }
        if (pk[i].e == 0) {
            BN_set_word(ex, 1);
            BN_lshift(ex, ex, 40);
            BN_add_word(ex, 1);
        } else if (pk[i].e == 0x100) {
            BN_zero(ex);
        } else {
            BN_set_word(ex, pk[i].e);
        }
        struct buf body = {0};
        struct buf ni = {0};
        struct buf ei = {0};
        struct buf c = {0};
        unsigned char tmp[1100];
        int tl = BN_bn2bin(mod, tmp);
        put1(&ni, 0);
        put(&ni, tmp, (size_t)tl);
        tl = BN_bn2bin(ex, tmp);
        if (!pk[i].negative_e && (tl == 0 || (tmp[0] & 0x80) != 0)) {
            put1(&ei, 0);
        }
        put(&ei, tmp, (size_t)tl);
        tlv_buf(&body, 0x02, F_DER, &ni);
        tlv_buf(&body, 0x02, F_DER, &ei);
        tlv_buf(&c, 0x30, F_DER, &body);
        struct model m;
        model_init(&m, rsa2048, "SHA256");
        buf_free(&m.key_bits);
        bitstring(&m.key_bits, F_DER, 0, &c);
        snprintf(name, sizeof name, "RSA %s", pk[i].name);
        diff_model(name, &m);
        model_free(&m);
        buf_free(&body);
        buf_free(&ni);
        buf_free(&ei);
        buf_free(&c);
        BN_free(mod);
        BN_free(ex);
    }
    BN_free(n);
    BN_free(e);
}

static void test_signatures(void)
{
    struct model m;
    char name[96];
    /* Unused bits in the signature BIT STRING, which ASN1_item_verify refuses. */
    for (unsigned u = 0; u <= 8; u++) {
        model_init(&m, p256, "SHA256");
        m.sig_unused = (unsigned char)u;
        snprintf(name, sizeof name, "P-256 signature with %u unused bits", u);
        diff_model(name, &m);
        m.sig_constructed = true;
        snprintf(name, sizeof name, "P-256 constructed signature with %u unused bits", u);
        diff_model(name, &m);
        model_free(&m);
    }
    model_init(&m, p256, "SHA256");
    m.sig_flip = true;
    CHECK(!diff_model("P-256 wrong signature", &m));
    model_free(&m);
    model_init(&m, rsa2048, "SHA256");
    m.sig_flip = true;
    CHECK(!diff_model("RSA wrong signature", &m));
    model_free(&m);
    /* Signed by another key of the same kind. */
    model_init(&m, p256, "SHA256");
    m.signer = p256b;
    CHECK(!diff_model("P-256 signed by another key", &m));
    model_free(&m);
    model_init(&m, rsa2048, "SHA256");
    m.signer = rsa2048b;
    CHECK(!diff_model("RSA signed by another key", &m));
    model_free(&m);
    /* Signed with another digest than the algorithm says. */
    model_init(&m, p256, "SHA256");
    m.md = "SHA384";
    CHECK(!diff_model("P-256 says SHA-256, signed SHA-384", &m));
    model_free(&m);
    model_init(&m, rsa2048, "SHA384");
    m.md = "SHA256";
    CHECK(!diff_model("RSA says SHA-384, signed SHA-256", &m));
    model_free(&m);
    /* Swapped algorithms. */
    model_init(&m, p256, "SHA256");
    buf_free(&m.sig_alg);
    m.sig_alg = alg_tlv(NID_sha256WithRSAEncryption, V_ASN1_NULL);
    CHECK(!diff_model("P-256 with sha256WithRSAEncryption", &m));
    model_free(&m);
    model_init(&m, rsa2048, "SHA256");
    buf_free(&m.sig_alg);
    m.sig_alg = alg_tlv(NID_ecdsa_with_SHA256, V_ASN1_UNDEF);
    CHECK(!diff_model("RSA with ecdsa-with-SHA256", &m));
    model_free(&m);
    model_init(&m, rsa2048, "SHA256");
    buf_free(&m.sig_alg);
    m.sig_alg = alg_tlv(NID_rsassaPss, V_ASN1_UNDEF);
    CHECK(!diff_model("RSA with rsassaPss, no parameters", &m));
    model_free(&m);
    model_init(&m, p256, "SHA256");
    buf_free(&m.sig_alg);
    m.sig_alg = alg_tlv(NID_ED25519, V_ASN1_UNDEF);
    CHECK(!diff_model("P-256 with Ed25519", &m));
    model_free(&m);
    /* Signature algorithm parameters, which OpenSSL ignores for these algorithms. */
    PART("ecdsa-with-SHA256 NULL params", p256, P_SIG_ALG, 0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48,
         0xce, 0x3d, 0x04, 0x03, 0x02, 0x05, 0x00);
    PART("ecdsa-with-SHA256 INTEGER params", p256, P_SIG_ALG, 0x30, 0x0d, 0x06, 0x08, 0x2a, 0x86,
         0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x02, 0x01, 0x07);
    PART("ecdsa-with-SHA256 bad INTEGER params", p256, P_SIG_ALG, 0x30, 0x0e, 0x06, 0x08, 0x2a,
         0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x02, 0x02, 0x00, 0x07);
    PART("ecdsa-with-SHA256 indefinite", p256, P_SIG_ALG, 0x30, 0x80, 0x06, 0x08, 0x2a, 0x86, 0x48,
         0xce, 0x3d, 0x04, 0x03, 0x02, 0x00, 0x00);
    PART("ecdsa-with-SHA256 OID long form", p256, P_SIG_ALG, 0x30, 0x0b, 0x06, 0x81, 0x08, 0x2a,
         0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02);
    PART("ecdsa-with-SHA256 OID padded", p256, P_SIG_ALG, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x80, 0x86,
         0x48, 0xce, 0x3d, 0x04, 0x03, 0x02);
    PART("ecdsa-with-SHA256 two params", p256, P_SIG_ALG, 0x30, 0x0e, 0x06, 0x08, 0x2a, 0x86, 0x48,
         0xce, 0x3d, 0x04, 0x03, 0x02, 0x05, 0x00, 0x05, 0x00);
    PART("signature algorithm empty", p256, P_SIG_ALG, 0x30, 0x00);
    PART("signature algorithm unknown OID", p256, P_SIG_ALG, 0x30, 0x05, 0x06, 0x03, 0x2a, 0x03,
         0x04);
    PART_EMPTY("signature algorithm missing", p256, P_SIG_ALG);
    PART("sha256WithRSAEncryption no params", rsa2048, P_SIG_ALG, 0x30, 0x0b, 0x06, 0x09, 0x2a,
         0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b);
    PART("sha256WithRSAEncryption OID params", rsa2048, P_SIG_ALG, 0x30, 0x10, 0x06, 0x09, 0x2a,
         0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x06, 0x03, 0x2a, 0x03, 0x04);
    /* After the outer SEQUENCE, and a fourth element inside it. */
    PART("trailing NULL", p256, P_TRAILING, 0x05, 0x00);
    PART("trailing zeros", p256, P_TRAILING, 0x00, 0x00, 0x00);
    PART("trailing garbage", p256, P_TRAILING, 0xff, 0xff, 0xff, 0xff);
    PART("trailing second CSR header", p256, P_TRAILING, 0x30, 0x82, 0x01, 0x00);
    PART("extra NULL element", p256, P_EXTRA, 0x05, 0x00);
    PART("extra EOC element", p256, P_EXTRA, 0x00, 0x00);
    PART("extra zero octet", p256, P_EXTRA, 0x00);
    /* An outer SEQUENCE of indefinite length with a trailing element after the EOC. */
    model_init(&m, p256, "SHA256");
    m.outer_form = F_INDEF;
    put(&m.trailing, "\x05\x00", 2);
    diff_model("indefinite outer then trailing", &m);
    model_free(&m);
    model_init(&m, p256, "SHA256");
    m.outer_form = F_INDEF;
    put(&m.extra, "\x05\x00", 2);
    diff_model("indefinite outer with a fourth element", &m);
    model_free(&m);
    model_init(&m, p256, "SHA256");
    m.cri_form = F_INDEF;
    buf_free(&m.attrs);
    diff_model("indefinite CRI without attributes", &m);
    put(&m.attrs, "\xa0\x80\x00\x00", 4);
    diff_model("indefinite CRI with indefinite attributes", &m);
    model_free(&m);
    model_init(&m, p256, "SHA256");
    buf_free(&m.attrs);
    put(&m.attrs, "\x00\x00", 2);
    diff_model("EOC where the attributes are", &m);
    m.cri_form = F_INDEF;
    diff_model("EOC where the attributes are, indefinite CRI", &m);
    put(&m.attrs, "\x00\x00", 2);
    diff_model("two EOCs, indefinite CRI", &m);
    model_free(&m);
}

/* ---- family 3: every single-byte change, truncation and re-signed change ---- */

static const unsigned char change_ops[][2] = {
    /* {xor mask, set value}: one of them is used (xor when non-zero). */
    {0x01, 0}, {0x80, 0}, {0xff, 0}, {0x20, 0}, {0x00, 0x00}, {0x00, 0x80},
};

static unsigned char apply_op(unsigned char b, size_t op)
{
    return change_ops[op][0] != 0 ? (unsigned char)(b ^ change_ops[op][0]) : change_ops[op][1];
}

static void test_mutations(const char *base, const struct buf *der)
{
    char name[128];
    unsigned char *d = malloc(der->n + 8);
    size_t nops = sizeof change_ops / sizeof change_ops[0];
    for (size_t i = 0; i < der->n; i++) {
        for (size_t op = 0; op < nops; op++) {
            memcpy(d, der->p, der->n);
            d[i] = apply_op(d[i], op);
            if (d[i] == der->p[i]) {
                continue;
            }
            snprintf(name, sizeof name, "%s byte %zu op %zu", base, i, op);
            diff_der(name, d, der->n);
        }
    }
    for (size_t n = 0; n < der->n; n++) {
        snprintf(name, sizeof name, "%s truncated to %zu", base, n);
        diff_der(name, der->p, n);
    }
    /* Bytes appended (d2i ignores what follows the outer SEQUENCE). */
    static const unsigned char tails[][3] = {
        {0x00, 0, 0}, {0x00, 0x00, 0}, {0x30, 0x00, 0}, {0x05, 0x00, 0xff}};
    for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
        memcpy(d, der->p, der->n);
        memcpy(d + der->n, tails[t], 3);
        snprintf(name, sizeof name, "%s with tail %zu", base, t);
        diff_der(name, d, der->n + 3);
    }
    free(d);
}

/* Every single-byte change of the model's CRI (and a zero octet inserted at every place), each
 * signed again with the model's key: what is left to tell the two apart is the parse alone. */
static void test_resigned(const char *base, const struct model *m, size_t nops)
{
    char name[128];
    struct buf cri = {0};
    model_cri(m, &cri);
    struct buf mut = {0};
    for (size_t i = 0; i < cri.n; i++) {
        for (size_t op = 0; op < nops; op++) {
            buf_free(&mut);
            mut = buf_of(cri.p, cri.n);
            mut.p[i] = apply_op(mut.p[i], op);
            if (mut.p[i] == cri.p[i]) {
                continue;
            }
            struct buf der = {0};
            model_wrap(m, &mut, &der);
            snprintf(name, sizeof name, "%s re-signed byte %zu op %zu", base, i, op);
            diff_der(name, der.p, der.n);
            buf_free(&der);
        }
    }
    for (size_t i = 0; i <= cri.n; i += (nops > 2 ? 1 : 4)) {
        buf_free(&mut);
        put(&mut, cri.p, i);
        put1(&mut, 0x00);
        put(&mut, cri.p + i, cri.n - i);
        struct buf der = {0};
        model_wrap(m, &mut, &der);
        snprintf(name, sizeof name, "%s re-signed zero inserted at %zu", base, i);
        diff_der(name, der.p, der.n);
        buf_free(&der);
    }
    buf_free(&mut);
    buf_free(&cri);
}

static void test_all_mutations(void)
{
    struct buf der = {0};
    struct make_opts rich = {.subject = true, .extensions = true};
    make_csr(p256, NULL, &der);
    test_mutations("P-256", &der);
    buf_free(&der);
    make_csr(rsa2048, NULL, &der);
    test_mutations("RSA-2048", &der);
    buf_free(&der);
    make_csr(p384, &rich, &der);
    test_mutations("P-384 rich", &der);
    buf_free(&der);

    struct model m;
    model_init(&m, p256, "SHA256");
    test_resigned("P-256", &m, sizeof change_ops / sizeof change_ops[0]);
    model_free(&m);
    model_init(&m, p384, "SHA384");
    buf_free(&m.subject);
    {
        X509_NAME *nm = X509_NAME_new();
        add_subject(nm);
        m.subject = name_der(nm);
        X509_NAME_free(nm);
    }
    buf_free(&m.attrs);
    put(&m.attrs,
        "\xa0\x17\x30\x15\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x07\x31\x08\x0c\x02"
        "pw\x13\x02pw",
        25);
    test_resigned("P-384 rich", &m, sizeof change_ops / sizeof change_ops[0]);
    model_free(&m);
    /* RSA signatures cost a millisecond: two kinds of change. */
    model_init(&m, rsa2048, "SHA256");
    test_resigned("RSA-2048", &m, 2);
    model_free(&m);
}

/* ---- family 4: PEM ---- */

static void test_pem(void)
{
    struct buf der = {0};
    char name[96];
    make_csr(p256, NULL, &der);
    char *pem = as_pem_encode("CERTIFICATE REQUEST", der.p, der.n);
    size_t plen = strlen(pem);
    CHECK(diff_pem("PEM as made", pem, plen));
    for (size_t n = 0; n < plen; n++) {
        snprintf(name, sizeof name, "PEM truncated to %zu", n);
        diff_pem(name, pem, n);
    }
    const char *labels[] = {"NEW CERTIFICATE REQUEST", "CERTIFICATE",          "X509 REQUEST",
                            "certificate request",     "CERTIFICATE REQUEST ", "PKCS10"};
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        char *p = as_pem_encode(labels[i], der.p, der.n);
        snprintf(name, sizeof name, "PEM label \"%s\"", labels[i]);
        diff_pem(name, p, strlen(p));
        free(p);
    }
    /* Headers: only an encryption header means anything; OpenSSL refuses the others too. */
    const char *headers[] = {"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
                             "00112233445566778899AABBCCDDEEFF\n\n",
                             "Proc-Type: 4,MIC-ONLY\n\n", "Foo: bar\n\n", "\n"};
    const char *body = strchr(pem, '\n') + 1;
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        struct buf t = {0};
        put(&t, "-----BEGIN CERTIFICATE REQUEST-----\n", 36);
        put(&t, headers[i], strlen(headers[i]));
        put(&t, body, strlen(body));
        snprintf(name, sizeof name, "PEM header %zu", i);
        diff_pem(name, (const char *)t.p, t.n);
        buf_free(&t);
    }
    /* Around the block. */
    struct {
        const char *name;
        const char *before;
        const char *after;
    } around[] = {
        {"text before", "hello\n", ""},
        {"text after", "", "bye\n"},
        {"certificate block before",
         "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ""},
        {"broken block before", "-----BEGIN FOO-----\n!!!!\n-----END FOO-----\n", ""},
        {"second CSR after", "",
         "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
         "-----END CERTIFICATE REQUEST-----\n"},
        {"BEGIN without END before", "-----BEGIN CERTIFICATE REQUEST-----\n", ""},
        {"NUL before", "\0", ""},
    };
    for (size_t i = 0; i < sizeof around / sizeof around[0]; i++) {
        struct buf t = {0};
        put(&t, around[i].before, i == 6 ? 1 : strlen(around[i].before));
        put(&t, pem, plen);
        put(&t, around[i].after, strlen(around[i].after));
        snprintf(name, sizeof name, "PEM %s", around[i].name);
        diff_pem(name, (const char *)t.p, t.n);
        buf_free(&t);
    }
    /* Line endings and whitespace. */
    struct buf crlf = {0};
    struct buf longline = {0};
    struct buf spaces = {0};
    for (size_t i = 0; i < plen; i++) {
        if (pem[i] == '\n') {
            put1(&crlf, '\r');
        }
        put1(&crlf, (unsigned char)pem[i]);
        bool in_body = i > 36 && i + 35 < plen;
        if (!(pem[i] == '\n' && in_body)) {
            put1(&longline, (unsigned char)pem[i]);
        }
        put1(&spaces, (unsigned char)pem[i]);
        if (pem[i] == '\n' && in_body) {
            put1(&spaces, ' ');
        }
    }
    diff_pem("PEM CRLF", (const char *)crlf.p, crlf.n);
    diff_pem("PEM one long line", (const char *)longline.p, longline.n);
    diff_pem("PEM leading spaces", (const char *)spaces.p, spaces.n);
    diff_pem("PEM without the last newline", pem, plen - 1);
    buf_free(&crlf);
    buf_free(&longline);
    buf_free(&spaces);
    /* Every single character of the text changed to a few others. */
    char *m = malloc(plen);
    const char subst[] = {'A', '=', '-', ' ', '\n', '\0', '*'};
    for (size_t i = 0; i < plen; i += 3) {
        for (size_t s = 0; s < sizeof subst; s++) {
            memcpy(m, pem, plen);
            if (m[i] == subst[s]) {
                continue;
            }
            m[i] = subst[s];
            snprintf(name, sizeof name, "PEM char %zu -> 0x%02x", i, (unsigned char)subst[s]);
            diff_pem(name, m, plen);
        }
    }
    free(m);
    /* Empty and oversize. */
    diff_pem("PEM empty", "", 0);
    char *big = malloc(AS_MAX_CSR_BYTES + 1);
    memset(big, '\n', AS_MAX_CSR_BYTES + 1);
    memcpy(big, pem, plen);
    diff_pem("PEM at the cap", big, AS_MAX_CSR_BYTES);
    diff_pem("PEM over the cap", big, AS_MAX_CSR_BYTES + 1);
    free(big);
    char *empty_der = as_pem_encode("CERTIFICATE REQUEST", (const unsigned char *)"", 0);
    diff_pem("PEM of no DER", empty_der, strlen(empty_der));
    free(empty_der);
    free(pem);
    buf_free(&der);
}

int main(void)
{
    as_log_set_level(AS_LOG_ERROR);
    const char *v = getenv("AS_CSR_DIFF_VERBOSE");
    g_verbose = v != NULL && strcmp(v, "1") == 0;
    if (as_ca_generate(TD, 86400, &g_ca) != AS_OK) {
        fprintf(stderr, "cannot generate a CA\n");
        return 2;
    }
    make_keys();
    test_made();
    test_forms(p256, "P-256");
    test_forms(rsa2048, "RSA-2048");
    test_versions(p256);
    test_subjects(p256);
    test_attributes(p256);
    test_key_encodings();
    test_signatures();
    test_pem();
    test_all_mutations();
    printf("csr diff: %lu cases, %lu accepted by both, %lu disagreements\n", g_cases, g_accepted,
           g_disagree);
    CHECK(g_disagree == 0);
    CHECK(g_cases > 10000);
    free_keys();
    as_ca_free(g_ca);
    return check_done();
}
