/*
 * Unit tests for pki/clientcert.c: TLS client chains judged against a trust PEM (SPEC §5 cert
 * method). Each accepted shape has a refused twin: a valid chain / a foreign CA, a pinned leaf /
 * another leaf of the same CA, within validity / expired and not yet valid, clientAuth /
 * serverAuth only, intermediate presented / missing, well-formed DER / garbage, trailing bytes,
 * oversize and too many certificates. Our own X.509-SVIDs (pki/svid.c) are checked as well.
 */
#include <stdlib.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "common/common.h"
#include "pki/pki.h"

#define HOUR 3600
#define DAY (24 * HOUR)
#define TD "example.org"

struct opts {
    const char *cn;     /* NULL: empty subject */
    bool ca;            /* basicConstraints critical CA:TRUE, keyCertSign */
    const char *eku;    /* extendedKeyUsage value, NULL to omit */
    const char *san;    /* subjectAltName value, NULL to omit */
    int64_t not_before; /* 0: an hour ago */
    int64_t not_after;  /* 0: ten days from now */
    long serial;        /* 0: a counter */
};

static EVP_PKEY *key_p256(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (k == NULL) {
        fprintf(stderr, "keygen failed\n");
        exit(2);
    }
    return k;
}

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (e == NULL || X509_add_ext(x, e, -1) != 1) {
        fprintf(stderr, "cannot add extension %s = %s\n", OBJ_nid2sn(nid), value);
        exit(2);
    }
    X509_EXTENSION_free(e);
}

/* A v3 certificate for key, issued by issuer (NULL: self-signed), SHA-256. */
static X509 *make_cert(const struct opts *o, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key)
{
    static long counter = 5000;
    int64_t now = as_now();
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), o->serial ? o->serial : counter++);
    X509_NAME *name = X509_get_subject_name(x);
    if (o->cn != NULL) {
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)o->cn, -1, -1,
                                   0);
    }
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
    ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(o->not_before ? o->not_before : now - HOUR));
    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(o->not_after ? o->not_after : now + 10 * DAY));
    X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    if (o->ca) {
        add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature");
    }
    add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    if (issuer != NULL) {
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    }
    if (o->eku != NULL) {
        add_ext(x, &ctx, NID_ext_key_usage, o->eku);
    }
    if (o->san != NULL) {
        add_ext(x, &ctx, NID_subject_alt_name, o->san);
    }
    if (X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) <= 0) {
        fprintf(stderr, "cannot sign a test certificate\n");
        exit(2);
    }
    return x;
}

static char *pem_of(X509 *const *certs, size_t n)
{
    BIO *b = BIO_new(BIO_s_mem());
    for (size_t i = 0; i < n; i++) {
        PEM_write_bio_X509(b, certs[i]);
    }
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    char *s = calloc(1, (size_t)len + 1);
    memcpy(s, data, (size_t)len);
    BIO_free(b);
    return s;
}

/* A chain in the shape the TLS layer hands over: DER, leaf first. */
struct chain {
    unsigned char *der[16];
    size_t len[16];
    size_t n;
};

static void chain_add(struct chain *c, X509 *x)
{
    unsigned char *p = NULL;
    int n = i2d_X509(x, &p);
    c->der[c->n] = p;
    c->len[c->n] = (size_t)n;
    c->n++;
}

static void chain_add_raw(struct chain *c, const unsigned char *d, size_t len)
{
    c->der[c->n] = OPENSSL_malloc(len ? len : 1);
    memcpy(c->der[c->n], d, len);
    c->len[c->n] = len;
    c->n++;
}

static void chain_free(struct chain *c)
{
    for (size_t i = 0; i < c->n; i++) {
        OPENSSL_free(c->der[i]);
    }
    c->n = 0;
}

/* Verifies c against trust; returns the result and leaves the fail kind and reason behind. */
static enum as_clientcert_fail g_fail;
static char g_why[256];

static enum as_err verify(const struct chain *c, const char *trust, const char *untrusted,
                          int64_t now, struct as_clientcert **out)
{
    struct as_clientcert *tmp = NULL;
    g_why[0] = '\0';
    g_fail = AS_CC_OK;
    enum as_err r =
        as_clientcert_verify((const unsigned char *const *)c->der, c->len, c->n, trust, untrusted,
                             now, out ? out : &tmp, &g_fail, g_why, sizeof g_why);
    as_clientcert_free(tmp);
    return r;
}

static bool has(const char *s, const char *needle)
{
    bool ok = strstr(s, needle) != NULL;
    if (!ok) {
        fprintf(stderr, "  \"%s\" lacks \"%s\"\n", s, needle);
    }
    return ok;
}

int main(void)
{
    int64_t now = as_now();
    EVP_PKEY *root_key = key_p256();
    EVP_PKEY *int_key = key_p256();
    EVP_PKEY *leaf_key = key_p256();
    EVP_PKEY *foreign_key = key_p256();

    struct opts ca_o = {.cn = "Test Root", .ca = true, .not_before = now - 10 * DAY};
    X509 *root = make_cert(&ca_o, root_key, NULL, NULL);
    struct opts int_o = {.cn = "Test Intermediate", .ca = true, .not_before = now - 10 * DAY};
    X509 *inter = make_cert(&int_o, int_key, root, root_key);
    struct opts foreign_o = {.cn = "Foreign Root", .ca = true};
    X509 *foreign = make_cert(&foreign_o, foreign_key, NULL, NULL);

    struct opts leaf_o = {.cn = "client-a",
                          .eku = "clientAuth",
                          .san = "DNS:a.example.org,DNS:b.example.org,"
                                 "URI:spiffe://example.org/ns/prod/sa/a",
                          .serial = 0x0a0b0c};
    X509 *leaf = make_cert(&leaf_o, leaf_key, inter, int_key);
    X509 *leaf_direct = make_cert(&leaf_o, leaf_key, root, root_key);

    char *root_pem = pem_of(&root, 1);
    char *inter_pem = pem_of(&inter, 1);
    char *foreign_pem = pem_of(&foreign, 1);
    struct chain c = {0};
    struct as_clientcert *cc = NULL;

    /* ---- a valid chain: leaf + presented intermediate to a trusted root ---- */
    chain_add(&c, leaf);
    chain_add(&c, inter);
    CHECK_INT(verify(&c, root_pem, NULL, now, &cc), AS_OK);
    CHECK_INT(g_fail, AS_CC_OK);
    if (cc != NULL) {
        CHECK_STR(as_clientcert_cn(cc), "client-a");
        CHECK_INT(as_clientcert_dns_count(cc), 2);
        CHECK_STR(as_clientcert_dns(cc, 0), "a.example.org");
        CHECK_STR(as_clientcert_dns(cc, 1), "b.example.org");
        CHECK(as_clientcert_dns(cc, 2) == NULL);
        CHECK_INT(as_clientcert_uri_count(cc), 1);
        CHECK_STR(as_clientcert_uri(cc, 0), "spiffe://example.org/ns/prod/sa/a");
        CHECK_STR(as_clientcert_serial(cc), "0a:0b:0c");
        CHECK(as_clientcert_not_after(cc) > now + 9 * DAY);
        CHECK(as_clientcert_not_before(cc) < now);
        size_t dl = 0;
        const unsigned char *d = as_clientcert_der(cc, &dl);
        CHECK(dl == c.len[0] && memcmp(d, c.der[0], dl) == 0);
    }
    as_clientcert_free(cc);
    cc = NULL;
    /* The intermediate may come from the caller's untrusted PEM instead. */
    chain_free(&c);
    chain_add(&c, leaf);
    CHECK_INT(verify(&c, root_pem, inter_pem, now, NULL), AS_OK);
    /* An intermediate CA named as the trust is an anchor itself (partial chains, as Vault). */
    CHECK_INT(verify(&c, inter_pem, NULL, now, NULL), AS_OK);
    /* A leaf signed by the root directly. */
    chain_free(&c);
    chain_add(&c, leaf_direct);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_OK);
    /* Several anchors in one PEM: any of them will do. */
    X509 *both[2] = {foreign, root};
    char *both_pem = pem_of(both, 2);
    CHECK_INT(verify(&c, both_pem, NULL, now, NULL), AS_OK);
    free(both_pem);

    /* ---- missing intermediate: refused as unknown authority ---- */
    chain_free(&c);
    chain_add(&c, leaf);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_UNTRUSTED);
    CHECK(has(g_why, "signed by unknown authority"));

    /* ---- foreign CA ---- */
    chain_add(&c, inter);
    CHECK_INT(verify(&c, foreign_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_UNTRUSTED);
    struct opts fleaf_o = {.cn = "foreign-client", .eku = "clientAuth"};
    X509 *fleaf = make_cert(&fleaf_o, leaf_key, foreign, foreign_key);
    chain_free(&c);
    chain_add(&c, fleaf);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_UNTRUSTED);
    CHECK_INT(verify(&c, foreign_pem, NULL, now, NULL), AS_OK);
    /* A self-signed leaf (not a CA) presented against a CA trust: unknown authority. */
    struct opts self_o = {.cn = "self", .eku = "clientAuth"};
    X509 *self = make_cert(&self_o, leaf_key, NULL, NULL);
    chain_free(&c);
    chain_add(&c, self);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_UNTRUSTED);

    /* ---- pinned leaf: byte-identical only ---- */
    char *self_pem = pem_of(&self, 1);
    CHECK_INT(verify(&c, self_pem, NULL, now, &cc), AS_OK);
    if (cc != NULL) {
        CHECK_STR(as_clientcert_cn(cc), "self");
        CHECK_INT(as_clientcert_uri_count(cc), 0);
    }
    as_clientcert_free(cc);
    cc = NULL;
    char *leaf_pem = pem_of(&leaf, 1);
    chain_free(&c);
    chain_add(&c, leaf);
    CHECK_INT(verify(&c, leaf_pem, NULL, now, NULL), AS_OK);
    /* The same subject, key and issuer, but another certificate: not the pinned one. */
    X509 *leaf_twin = make_cert(&leaf_o, leaf_key, inter, int_key);
    chain_free(&c);
    chain_add(&c, leaf_twin);
    CHECK_INT(verify(&c, leaf_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_UNTRUSTED);
    /* A pinned leaf still has to be within its validity. */
    chain_free(&c);
    chain_add(&c, self);
    CHECK_INT(verify(&c, self_pem, NULL, now + 20 * DAY, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_EXPIRED);

    /* ---- validity ---- */
    struct opts exp_o = {
        .cn = "expired", .eku = "clientAuth", .not_before = now - 2 * DAY, .not_after = now - DAY};
    X509 *expired = make_cert(&exp_o, leaf_key, root, root_key);
    chain_free(&c);
    chain_add(&c, expired);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_EXPIRED);
    CHECK(has(g_why, "has expired or is not yet valid"));
    CHECK(has(g_why, "is after"));
    /* ...and it was fine when it was valid (the time is the caller's). */
    CHECK_INT(verify(&c, root_pem, NULL, now - DAY - HOUR, NULL), AS_OK);
    struct opts fut_o = {
        .cn = "future", .eku = "clientAuth", .not_before = now + DAY, .not_after = now + 2 * DAY};
    X509 *future = make_cert(&fut_o, leaf_key, root, root_key);
    chain_free(&c);
    chain_add(&c, future);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_EXPIRED);
    CHECK(has(g_why, "is before"));
    CHECK_INT(verify(&c, root_pem, NULL, now + DAY + HOUR, NULL), AS_OK);
    /* An expired intermediate (same name and key) fails the chain even with a valid leaf. */
    struct opts oldint_o = {
        .cn = "Test Intermediate", .ca = true, .not_before = now - 3 * DAY, .not_after = now - DAY};
    X509 *oldint = make_cert(&oldint_o, int_key, root, root_key);
    chain_free(&c);
    chain_add(&c, leaf);
    chain_add(&c, oldint);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_EXPIRED);
    CHECK(has(g_why, "depth 1"));

    /* ---- usage ---- */
    struct opts srv_o = {.cn = "server-only", .eku = "serverAuth"};
    X509 *srv = make_cert(&srv_o, leaf_key, root, root_key);
    chain_free(&c);
    chain_add(&c, srv);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_USAGE);
    CHECK(has(g_why, "incompatible key usage"));
    /* No extKeyUsage at all: allowed (RFC 5280 §4.2.1.12 only restricts when present). */
    struct opts noeku_o = {.cn = "no-eku"};
    X509 *noeku = make_cert(&noeku_o, leaf_key, root, root_key);
    chain_free(&c);
    chain_add(&c, noeku);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_OK);
    /* serverAuth+clientAuth (the SVID profile) is fine. */
    struct opts both_o = {.cn = "both", .eku = "serverAuth,clientAuth"};
    X509 *bothk = make_cert(&both_o, leaf_key, root, root_key);
    chain_free(&c);
    chain_add(&c, bothk);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_OK);
    /* A pinned serverAuth-only leaf is refused at role write and at login. */
    char *srv_pem = pem_of(&srv, 1);
    char why[256] = "";
    CHECK_INT(as_clientcert_trust_check(srv_pem, NULL, why, sizeof why), AS_ERR_INVALID);
    CHECK(has(why, "TLS client authentication"));
    chain_free(&c);
    chain_add(&c, srv);
    CHECK_INT(verify(&c, srv_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_USAGE);

    /* ---- trust PEM checks ---- */
    size_t ncerts = 0;
    CHECK_INT(as_clientcert_trust_check(root_pem, &ncerts, why, sizeof why), AS_OK);
    CHECK_INT(ncerts, 1);
    CHECK_INT(as_clientcert_trust_check(self_pem, &ncerts, why, sizeof why), AS_OK);
    CHECK_INT(as_clientcert_trust_check("", NULL, why, sizeof why), AS_ERR_INVALID);
    CHECK(has(why, "failed to parse certificate"));
    CHECK_INT(as_clientcert_trust_check("-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                                        "CERTIFICATE-----\n",
                                        NULL, why, sizeof why),
              AS_ERR_INVALID);
    CHECK_INT(as_clientcert_trust_check("not a pem", NULL, why, sizeof why), AS_ERR_INVALID);
    /* An unusable trust is the configuration's fault, not the client's. */
    chain_free(&c);
    chain_add(&c, leaf_direct);
    CHECK_INT(verify(&c, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", NULL,
                     now, NULL),
              AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_TRUST);
    CHECK_INT(verify(&c, "", NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_TRUST);

    /* ---- garbage, truncation, trailing bytes, size and count bounds ---- */
    static const unsigned char garbage[] = {0x30, 0x82, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef};
    chain_free(&c);
    chain_add_raw(&c, garbage, sizeof garbage);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_MALFORMED);
    CHECK(has(g_why, "not a well-formed X.509 certificate"));
    unsigned char *good = NULL;
    int glen = i2d_X509(leaf_direct, &good);
    chain_free(&c);
    chain_add_raw(&c, good, (size_t)glen - 1);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_MALFORMED);
    unsigned char *trail = malloc((size_t)glen + 1);
    memcpy(trail, good, (size_t)glen);
    trail[glen] = 0;
    chain_free(&c);
    chain_add_raw(&c, trail, (size_t)glen + 1);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_MALFORMED);
    free(trail);
    /* A good leaf followed by garbage in the intermediate slot. */
    chain_free(&c);
    chain_add_raw(&c, good, (size_t)glen);
    chain_add_raw(&c, garbage, sizeof garbage);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_MALFORMED);
    unsigned char *big = calloc(1, AS_CLIENTCERT_MAX_DER + 1);
    chain_free(&c);
    chain_add_raw(&c, big, AS_CLIENTCERT_MAX_DER + 1);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_MALFORMED);
    CHECK(has(g_why, "larger than"));
    free(big);
    /* Too many certificates: refused before any is read. */
    chain_free(&c);
    for (int i = 0; i < AS_CLIENTCERT_MAX_CHAIN; i++) {
        chain_add(&c, i == 0 ? leaf_direct : root);
    }
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_OK);
    chain_add(&c, root);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_MALFORMED);
    CHECK(has(g_why, "at most 8"));
    chain_free(&c);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_MALFORMED);
    OPENSSL_free(good);

    /* ---- odd but valid names; ambiguous ones refused ---- */
    struct opts nocn_o = {.cn = NULL, .eku = "clientAuth", .san = "URI:spiffe://example.org/x"};
    X509 *nocn = make_cert(&nocn_o, leaf_key, root, root_key);
    chain_free(&c);
    chain_add(&c, nocn);
    CHECK_INT(verify(&c, root_pem, NULL, now, &cc), AS_OK);
    if (cc != NULL) {
        CHECK(as_clientcert_cn(cc) == NULL);
        CHECK_INT(as_clientcert_dns_count(cc), 0);
        CHECK_STR(as_clientcert_uri(cc, 0), "spiffe://example.org/x");
    }
    as_clientcert_free(cc);
    cc = NULL;
    X509 *twocn = make_cert(&leaf_o, leaf_key, root, root_key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(twocn), "CN", MBSTRING_ASC,
                               (const unsigned char *)"second", -1, -1, 0);
    X509_sign(twocn, root_key, EVP_sha256());
    chain_free(&c);
    chain_add(&c, twocn);
    CHECK_INT(verify(&c, root_pem, NULL, now, NULL), AS_ERR_INVALID);
    CHECK_INT(g_fail, AS_CC_MALFORMED);
    CHECK(has(g_why, "more than one common name"));

    /* ---- our own X.509-SVIDs ---- */
    struct as_ca *ca = NULL;
    struct as_ca *other = NULL;
    struct as_leaf *svid = NULL;
    CHECK_INT(as_ca_generate(TD, 30 * DAY, &ca), AS_OK);
    CHECK_INT(as_ca_generate(TD, 30 * DAY, &other), AS_OK);
    struct as_leaf_req lr = {.spiffe_id = "spiffe://example.org/ns/prod/sa/web",
                             .not_before = now - 10,
                             .not_after = now + HOUR};
    CHECK_INT(as_ca_issue_svid(ca, NULL, &lr, &svid), AS_OK);
    if (svid != NULL && ca != NULL && other != NULL) {
        chain_free(&c);
        chain_add_raw(&c, svid->der, svid->der_len);
        CHECK_INT(verify(&c, as_ca_cert_pem(ca), NULL, now, &cc), AS_OK);
        if (cc != NULL) {
            CHECK(as_clientcert_cn(cc) == NULL);
            CHECK_INT(as_clientcert_uri_count(cc), 1);
            CHECK_STR(as_clientcert_uri(cc, 0), lr.spiffe_id);
            CHECK_STR(as_clientcert_serial(cc), svid->serial);
            CHECK_INT(as_clientcert_not_after(cc), svid->not_after);
        }
        as_clientcert_free(cc);
        cc = NULL;
        /* Another generation of the same trust domain is another authority. */
        CHECK_INT(verify(&c, as_ca_cert_pem(other), NULL, now, NULL), AS_ERR_INVALID);
        CHECK_INT(g_fail, AS_CC_UNTRUSTED);
        /* Both generations in the bundle: accepted (rotation). */
        size_t l1 = strlen(as_ca_cert_pem(other)), l2 = strlen(as_ca_cert_pem(ca));
        char *bundle = malloc(l1 + l2 + 1);
        memcpy(bundle, as_ca_cert_pem(other), l1);
        memcpy(bundle + l1, as_ca_cert_pem(ca), l2 + 1);
        CHECK_INT(verify(&c, bundle, NULL, now, NULL), AS_OK);
        CHECK_INT(verify(&c, bundle, NULL, now + 2 * HOUR, NULL), AS_ERR_INVALID);
        CHECK_INT(g_fail, AS_CC_EXPIRED);
        free(bundle);
        /* The listener certificate of the same CA is serverAuth only: never a login. */
        char *scert = NULL, *skey = NULL;
        const char *names[] = {"localhost"};
        CHECK_INT(as_ca_issue_server_cert(ca, names, 1, HOUR, &scert, &skey), AS_OK);
        if (scert != NULL) {
            BIO *b = BIO_new_mem_buf(scert, -1);
            X509 *sx = PEM_read_bio_X509(b, NULL, NULL, NULL);
            BIO_free(b);
            chain_free(&c);
            chain_add(&c, sx);
            CHECK_INT(verify(&c, as_ca_cert_pem(ca), NULL, now, NULL), AS_ERR_INVALID);
            CHECK_INT(g_fail, AS_CC_USAGE);
            X509_free(sx);
        }
        free(scert);
        as_free_secret_str(skey);
    }
    as_leaf_free(svid);
    as_ca_free(ca);
    as_ca_free(other);

    /* The two-step API: one parse, several trusts. */
    struct as_clientchain *ch = NULL;
    chain_free(&c);
    chain_add(&c, leaf);
    chain_add(&c, inter);
    CHECK_INT(
        as_clientchain_parse((const unsigned char *const *)c.der, c.len, c.n, &ch, why, sizeof why),
        AS_OK);
    if (ch != NULL) {
        enum as_clientcert_fail f = AS_CC_OK;
        CHECK_INT(as_clientchain_verify(ch, foreign_pem, NULL, now, &cc, &f, why, sizeof why),
                  AS_ERR_INVALID);
        CHECK(cc == NULL);
        CHECK_INT(f, AS_CC_UNTRUSTED);
        CHECK_INT(as_clientchain_verify(ch, root_pem, NULL, now, &cc, &f, why, sizeof why), AS_OK);
        CHECK(cc != NULL);
        as_clientcert_free(cc);
        cc = NULL;
    }
    as_clientchain_free(ch);
    as_clientchain_free(NULL);
    as_clientcert_free(NULL);

    chain_free(&c);
    free(root_pem);
    free(inter_pem);
    free(foreign_pem);
    free(self_pem);
    free(leaf_pem);
    free(srv_pem);
    X509 *all[] = {root,    inter,  foreign, leaf, leaf_direct, fleaf, self, leaf_twin,
                   expired, future, oldint,  srv,  noeku,       bothk, nocn, twocn};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        X509_free(all[i]);
    }
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(int_key);
    EVP_PKEY_free(leaf_key);
    EVP_PKEY_free(foreign_key);
    return check_done();
}
