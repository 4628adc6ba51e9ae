/*
 * pki.h: authsvc's certificate authority. Pure: takes and returns values, never touches the
 * store or HTTP. Only this module ever touches a CA private key.
 */
#ifndef AS_PKI_H
#define AS_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"

struct as_ca;

/*
 * Loads the CA kept in dir (ca.pem, ca-key.pem) or, when neither exists, creates a new
 * self-signed ECDSA P-256 CA for trust_domain valid for ttl seconds and writes both files (key
 * 0600, written atomically: temp file + fsync + rename). Profile: URI SAN spiffe://<td>,
 * basicConstraints critical CA:TRUE, keyUsage critical keyCertSign+cRLSign, SKID, random
 * positive serial, SHA-256, a subject distinct for each generation
 * (O=<td>, CN="authsvc CA <td> <UTC timestamp> <random hex>").
 * A half-present pair, a key that does not match the certificate or a CA for another trust
 * domain is AS_ERR_CONFIG. *created says whether a new CA was made.
 */
enum as_err as_ca_load_or_create(const char *dir, const char *trust_domain, int64_t ttl,
                                 struct as_ca **out, bool *created) AS_WUR;
void as_ca_free(struct as_ca *ca);

/* PEM of the CA certificate; borrowed until as_ca_free. */
const char *as_ca_cert_pem(const struct as_ca *ca);
/* DER of the CA certificate; borrowed until as_ca_free. */
const unsigned char *as_ca_cert_der(const struct as_ca *ca, size_t *len);
/* PEM of the issuing chain: the CA, then its upstream CAs up to and including the upstream
 * trust anchor (just the CA when it is self-signed). Borrowed. */
const char *as_ca_chain_pem(const struct as_ca *ca);
int64_t as_ca_not_after(const struct as_ca *ca);

/*
 * Issues a TLS server certificate and a fresh P-256 key for the HTTPS listener. names are DNS
 * names or IP literals (v4 or v6), each put in the SAN as DNS or IP. ttl is capped at the CA's
 * notAfter. extKeyUsage serverAuth. *cert_pem (the leaf, then any intermediates; just the
 * leaf for a self-signed root) and *key_pem (PKCS#8) are
 * malloc'd; the caller wipes the key with as_free_secret_str.
 */
enum as_err as_ca_issue_server_cert(const struct as_ca *ca, const char *const *names, size_t n,
                                    int64_t ttl, char **cert_pem, char **key_pem) AS_WUR;

/* ---- CA generations (pki/ca.c) ----
 * Each CA generation lives in two files in a directory: <base>.pem and <base>-key.pem (0600).
 * as_ca_load_or_create above is the first generation with base "ca".
 */
/* Creates a new self-signed CA generation in memory (profile as above); nothing is written. */
enum as_err as_ca_generate(const char *trust_domain, int64_t ttl, struct as_ca **out) AS_WUR;
/* Writes ca to dir/<base>.pem and dir/<base>-key.pem atomically (key first, 0600). */
enum as_err as_ca_save(const struct as_ca *ca, const char *dir, const char *base) AS_WUR;
/* Loads dir/<base>.pem and dir/<base>-key.pem with the checks of as_ca_load_or_create. */
enum as_err as_ca_load(const char *dir, const char *base, const char *trust_domain,
                       struct as_ca **out) AS_WUR;
int64_t as_ca_not_before(const struct as_ca *ca);
/* The CA certificate's subject as a one-line string, for logs; borrowed. */
const char *as_ca_subject(const struct as_ca *ca);
/*
 * The SPIFFE bundle entry of this CA (SPIFFE Trust Domain and Bundle §4.1):
 * {"use":"x509-svid","kty":"EC","crv":"P-256","x":..,"y":..,"x5c":["<base64 DER>"]}.
 * New reference; NULL on failure.
 */
json_t *as_ca_x509_jwk(const struct as_ca *ca);

/* ---- SPIFFE IDs and names (pki/spiffe.c) ---- */
#define AS_SPIFFE_MAX_ID 2048
#define AS_SPIFFE_MAX_TD 255
/*
 * Validates id as a SPIFFE ID (SPIFFE-ID standard §2, as go-spiffe parses it): lowercase
 * "spiffe://" scheme; trust domain of [a-z0-9._-], no empty labels, at most 255 bytes, no port,
 * userinfo, query, fragment or percent-encoding; path segments of [A-Za-z0-9._-], never empty,
 * "." or ".."; no trailing slash; at most 2048 bytes; not the bare trust domain. When
 * trust_domain is not NULL the ID must belong to it. AS_ERR_INVALID with the rule that failed in
 * why (>= 128 bytes, may be NULL).
 */
enum as_err as_spiffe_id_check(const char *id, const char *trust_domain, char *why,
                               size_t whylen) AS_WUR;
/* A single SPIFFE path segment: non-empty [A-Za-z0-9._-], not "." or "..". */
bool as_spiffe_segment_ok(const char *seg, size_t len);
/* A DNS name fit for a SAN: LDH labels of 1..63, total <= 253, no trailing dot, any case. */
bool as_dns_name_ok(const char *name);
/* Glob match for allowed_dns_names: "*" matches any run of characters within one label
 * ("*.example.org" matches "a.example.org", not "a.b.example.org" nor "example.org");
 * comparison is case-insensitive. */
bool as_dns_glob_match(const char *glob, const char *name);
/* Whether glob is a valid allowed_dns_names entry: a DNS name with any '*' standing for letters. */
bool as_dns_glob_ok(const char *glob);

/* ---- X.509-SVIDs (pki/svid.c) ---- */
#define AS_MAX_CSR_BYTES (64 * 1024)
struct as_csr;
/*
 * Parses a PEM CSR (at most AS_MAX_CSR_BYTES), verifies its signature and its key: RSA of at
 * least 2048 bits, or EC on P-256 or P-384; anything else is AS_ERR_INVALID with a reason in why
 * (>= 128 bytes). Subject and requested extensions are ignored: only the public key is used.
 */
enum as_err as_csr_parse(const char *pem, size_t len, struct as_csr **out, char *why,
                         size_t whylen) AS_WUR;
void as_csr_free(struct as_csr *csr);

/* What goes into an X.509-SVID; the caller has authorized every name. */
struct as_leaf_req {
    const char *spiffe_id;
    const char *const *dns; /* DNS SANs, may be NULL when ndns is 0 */
    size_t ndns;
    int64_t not_before; /* the caller backdates by 10 s */
    int64_t not_after;  /* the caller caps it (CA notAfter, token expiry); > not_before */
};

/* An issued X.509-SVID. Free with as_leaf_free (wipes the key). */
struct as_leaf {
    char *cert_pem;
    unsigned char *der;
    size_t der_len;
    char serial[64]; /* lowercase colon hex, e.g. "3a:0f:..." */
    int64_t not_before;
    int64_t not_after;
    char *key_pem; /* PKCS#8 PEM when the server generated the key, else NULL */
};
void as_leaf_free(struct as_leaf *leaf);

/*
 * Issues an X.509-SVID (SPIFFE X509-SVID §4, SPEC §6 leaf profile) signed by ca: empty
 * subject; one critical SAN with exactly one URI (the ID) plus the DNS names; basicConstraints
 * critical CA:FALSE; keyUsage critical digitalSignature (+keyEncipherment for RSA keys);
 * extKeyUsage serverAuth+clientAuth; SKID; non-critical AKID; random positive 128-bit serial;
 * SHA-256. With csr NULL a fresh P-256 key is generated and returned in key_pem.
 * not_after past the CA's notAfter is capped at it.
 */
enum as_err as_ca_issue_svid(const struct as_ca *ca, const struct as_csr *csr,
                             const struct as_leaf_req *req, struct as_leaf **out) AS_WUR;

/* Normalizes a serial given as "AA:bb:..", "aa-bb-.." or plain hex to lowercase colon hex in
 * out (>= 64 bytes). AS_ERR_INVALID if it is not 1..20 bytes of hex. */
enum as_err as_serial_normalize(const char *in, char *out, size_t outlen) AS_WUR;

/* One revoked certificate for a CRL. */
struct as_revoked {
    const char *serial; /* lowercase colon hex */
    int64_t revoked_at;
};
/*
 * Builds and signs the CRL of ca (RFC 5280 §5: v2, AKID, CRL number, thisUpdate, nextUpdate)
 * listing the given serials. *der and *pem are malloc'd.
 */
enum as_err as_ca_crl(const struct as_ca *ca, const struct as_revoked *revoked, size_t n,
                      int64_t this_update, int64_t next_update, int64_t crl_number,
                      unsigned char **der, size_t *der_len, char **pem) AS_WUR;

/* ---- JWT-SVIDs (pki/jwtsvid.c) ---- */
struct as_jwtkey;
/* A fresh ECDSA P-256 JWT signing key; its kid is base64url(SHA-256(SPKI DER)) cut to 32 chars. */
enum as_err as_jwtkey_generate(struct as_jwtkey **out) AS_WUR;
/* dir/<base>-jwt-key.pem (PKCS#8, 0600, atomic). */
enum as_err as_jwtkey_save(const struct as_jwtkey *k, const char *dir, const char *base) AS_WUR;
enum as_err as_jwtkey_load(const char *dir, const char *base, struct as_jwtkey **out) AS_WUR;
void as_jwtkey_free(struct as_jwtkey *k);
const char *as_jwtkey_kid(const struct as_jwtkey *k);
/* {"use":"jwt-svid","kty":"EC","crv":"P-256","x":..,"y":..,"kid":..}; new reference. */
json_t *as_jwtkey_jwk(const struct as_jwtkey *k);

/*
 * Mints a JWT-SVID (SPIFFE JWT-SVID §2-3): header {"alg":"ES256","kid","typ":"JWT"}, claims
 * sub, aud (a string when one audience, else an array), exp, iat, jti (128 random bits,
 * base64url, also returned in jti, >= 32 bytes); raw R||S signature (RFC 7518 §3.4).
 * *token is malloc'd.
 */
enum as_err as_jwt_svid_mint(const struct as_jwtkey *k, const char *sub, json_t *audiences,
                             int64_t iat, int64_t exp, char *jti, size_t jtilen,
                             char **token) AS_WUR;
/*
 * Validates a JWT-SVID against keys (matched by kid): at most 16 KiB; three base64url parts;
 * alg ES256 only (also checked against the key type before any signature check); typ absent,
 * "JWT" or "JOSE"; no crit; raw 64-byte R||S signature that verifies; exp present and > now;
 * iat, if present, not in the future beyond 60 s; sub a valid SPIFFE ID of trust_domain; aud
 * contains audience. On success *claims is a new reference to the claims object.
 * AS_ERR_INVALID with a reason in why (>= 128 bytes).
 */
enum as_err as_jwt_svid_validate(const char *token, const struct as_jwtkey *const *keys,
                                 size_t nkeys, const char *audience, const char *trust_domain,
                                 int64_t now, json_t **claims, char *why, size_t whylen) AS_WUR;

/* ---- upstream CA (pki/upstream.c) ----
 * With an upstream CA, every authsvc CA generation is an intermediate signed by it; peers
 * trust the upstream's root, and SVIDs carry the intermediates (SPEC §6, SPIFFE X509-SVID §3).
 */
struct as_upstream;
/*
 * Loads the upstream CA: cert_file holds the upstream CA certificate first, then the rest of
 * its chain towards the root (the root itself may be included); key_file holds its private key
 * (PEM, unencrypted, mode 0600). The first certificate must be a CA (basicConstraints CA:TRUE,
 * keyUsage keyCertSign when present), match the key, be within its validity, and every
 * certificate must sign the one before it. AS_ERR_CONFIG (logged) otherwise.
 */
enum as_err as_upstream_load(const char *cert_file, const char *key_file,
                             struct as_upstream **out) AS_WUR;
void as_upstream_free(struct as_upstream *u);
/* PEM of the trust anchor(s): the last certificate of the chain (the one peers must trust). */
const char *as_upstream_roots_pem(const struct as_upstream *u);
/* SPIFFE bundle entries ("use":"x509-svid", one x5c each) of the trust anchor(s); new array. */
json_t *as_upstream_x509_jwks(const struct as_upstream *u);
int64_t as_upstream_not_after(const struct as_upstream *u);
/*
 * A new CA generation signed by the upstream: the profile of as_ca_generate (SPIFFE URI SAN,
 * keyCertSign+cRLSign, distinct subject), issuer = upstream subject, AKID = upstream SKID,
 * notAfter capped at the upstream's. Its chain (as_ca_chain_pem) is itself, then the upstream
 * chain; as_ca_intermediates_json leaves the trust anchor out.
 */
enum as_err as_ca_generate_under(const struct as_upstream *u, const char *trust_domain, int64_t ttl,
                                 struct as_ca **out) AS_WUR;
/* as_ca_load for a generation made by as_ca_generate_under; also checks that u signed it. */
enum as_err as_ca_load_under(const struct as_upstream *u, const char *dir, const char *base,
                             const char *trust_domain, struct as_ca **out) AS_WUR;
/* The intermediates between a leaf of ca and a trust anchor, as a new JSON array of PEM strings:
 * [] for a self-signed CA, [ca, upstream intermediates...] under an upstream. */
json_t *as_ca_intermediates_json(const struct as_ca *ca);
/* true when ca is its own trust anchor (self-signed). */
bool as_ca_is_root(const struct as_ca *ca);

/* ---- JWT verification for the jwt auth method (pki/jwt.c) ----
 * Platform JWTs (Kubernetes service-account tokens, CI OIDC tokens, ...) signed with RS256/384/512
 * or ES256/384/512 by keys given as PEM or fetched as a JWKS. libjwt 1.10 is not used for the
 * signature: it trusts the header's alg and re-parses PEM keys per call (PERF-NOTES trap 2).
 */
enum as_jwt_alg {
    AS_JWT_RS256 = 1u << 0,
    AS_JWT_RS384 = 1u << 1,
    AS_JWT_RS512 = 1u << 2,
    AS_JWT_ES256 = 1u << 3,
    AS_JWT_ES384 = 1u << 4,
    AS_JWT_ES512 = 1u << 5,
};
#define AS_JWT_ALGS_ALL 0x3fu
#define AS_JWT_MAX_BYTES (16 * 1024)
/* "RS256" → AS_JWT_RS256 etc.; AS_ERR_INVALID for anything else (including none and HS*). */
enum as_err as_jwt_alg_parse(const char *name, unsigned *alg) AS_WUR;

struct as_jwks;
/*
 * A key set from a JWKS document (RFC 7517): RSA keys (n, e; at least 2048 bits) and EC keys
 * (crv P-256, P-384, P-521; x, y). Keys whose "use" is present and not "sig", or of another kty,
 * are skipped; a document with no usable key is AS_ERR_INVALID. Keys are decoded once here.
 */
enum as_err as_jwks_parse(const char *json, size_t len, struct as_jwks **out, char *why,
                          size_t whylen) AS_WUR;
/* A key set from PEM public keys (a JSON array of PEM SPKI strings, RSA >= 2048 or EC); no kids. */
enum as_err as_jwks_from_pems(json_t *pems, struct as_jwks **out, char *why, size_t whylen) AS_WUR;
void as_jwks_free(struct as_jwks *k);
size_t as_jwks_count(const struct as_jwks *k);

/* Why a JWT was refused, so the caller can answer with Vault's texts and refetch keys. */
enum as_jwt_fail {
    AS_JWT_OK,
    AS_JWT_MALFORMED,   /* size, segments, base64url, JSON, duplicate keys, depth */
    AS_JWT_BAD_ALG,     /* none, HS*, unknown, not allowed, or not matching the key type */
    AS_JWT_CRIT,        /* a crit header */
    AS_JWT_UNKNOWN_KID, /* kid names no key in the set (the caller may refetch the JWKS) */
    AS_JWT_BAD_SIG,     /* no key of the set verifies the signature (incl. DER-encoded ECDSA) */
};
/*
 * Verifies a compact JWS: at most AS_JWT_MAX_BYTES; exactly three base64url (no padding)
 * segments; header and payload JSON objects (duplicate keys refused, depth <= 32); header alg in
 * allowed and matching the key's type and curve (RS* on RSA; ES256 on P-256, ES384 on P-384,
 * ES512 on P-521), checked before any signature; a "crit" header refused; for a JWKS set, a
 * token's kid selects that key only (AS_JWT_UNKNOWN_KID when absent), without a kid every key of
 * the matching type is tried; PEM sets have no kids, so the token's kid is ignored there and
 * every key of the matching type is tried (Vault's behaviour for jwt_validation_pubkeys);
 * ECDSA signatures must be raw R||S of the curve's size. No claim is checked: *claims (and *header)
 * are new references on success. AS_ERR_INVALID with *fail and a reason in why (>= 160 bytes)
 * otherwise.
 */
enum as_err as_jwt_verify(const char *token, const struct as_jwks *keys, unsigned allowed,
                          json_t **header, json_t **claims, enum as_jwt_fail *fail, char *why,
                          size_t whylen) AS_WUR;

/* ---- spiffe_id_template (pki/template.c) ---- */
/* What a template may draw on; any member may be NULL. */
struct as_template_ctx {
    const char *trust_domain;
    const char *role;
    json_t *claims;       /* JWT claims object: {{claim:NAME}}, {{claim:/json/pointer}} */
    const char *cert_cn;  /* {{cert:cn}} */
    const char *cert_uri; /* {{cert:uri}}: the certificate's URI SAN */
};
/*
 * Checks a template when a role is written (SPEC §5): only {{trust_domain}}, {{role}},
 * {{claim:NAME}}, {{claim:/a/b}}, {{cert:cn}} and {{cert:uri}}; {{cert:uri}} must stand alone;
 * claim placeholders only when jwt is true, cert ones only when it is false; the literal parts
 * must make "spiffe://{{trust_domain}}/..." (or {{cert:uri}}) shape. AS_ERR_INVALID with why.
 */
enum as_err as_spiffe_template_check(const char *tmpl, bool jwt, char *why, size_t whylen) AS_WUR;
/*
 * Expands a checked template into a SPIFFE ID (*out malloc'd). Every expanded value must be a
 * valid SPIFFE path segment ([A-Za-z0-9._-], not "." or ".."): a claim holding '/', '.', '..',
 * '%', '?', spaces, non-ASCII or nothing, a missing claim, or a non-string claim (numbers are
 * written in decimal; booleans, objects and arrays refused) fails. {{cert:uri}} must be a valid
 * SPIFFE ID of the trust domain. The result must pass as_spiffe_id_check for the trust domain.
 * AS_ERR_INVALID with why.
 */
enum as_err as_spiffe_template_expand(const char *tmpl, const struct as_template_ctx *ctx,
                                      char **out, char *why, size_t whylen) AS_WUR;

/* ---- TLS client certificates for the cert auth method (pki/clientcert.c) ----
 * A client chain as the TLS layer hands it over (DER, leaf first) is checked with OpenSSL against
 * a trust PEM, never trusting the TLS library's own verification. The handshake has already
 * proven that the peer holds the leaf's key; these functions judge the certificates.
 */
#define AS_CLIENTCERT_MAX_CHAIN 8         /* certificates a client may present */
#define AS_CLIENTCERT_MAX_DER (16 * 1024) /* bytes per presented certificate */
#define AS_CLIENTCERT_MAX_SANS 128        /* subjectAltName entries of an accepted leaf */

/* Why a chain was refused, so the caller can pick Vault's text and rank failures. */
enum as_clientcert_fail {
    AS_CC_OK,
    AS_CC_MALFORMED, /* too many or too large certificates, bad DER, undecodable extensions or
                        names, more than one CN, a negative or over-long serial */
    AS_CC_TRUST,     /* the trust PEM itself is unusable (the caller's configuration) */
    AS_CC_UNTRUSTED, /* no path to a trusted CA, and not a pinned leaf */
    AS_CC_EXPIRED,   /* the leaf or a chain certificate is outside its validity at `now` */
    AS_CC_USAGE,     /* extKeyUsage without clientAuth, or keyUsage without a signature use */
    AS_CC_INVALID,   /* any other path validation failure (signature, CA constraints, ...) */
};

/* A presented chain, parsed but not judged. Opaque; free with as_clientchain_free. */
struct as_clientchain;
/*
 * Parses n DER certificates (der[i] of len[i] bytes, leaf first). n must be 1..
 * AS_CLIENTCERT_MAX_CHAIN (checked before der or len is read, so arrays of that size may come
 * with a larger n); each at most AS_CLIENTCERT_MAX_DER bytes, one whole certificate with no
 * trailing bytes, extensions decodable. The DER is copied. AS_ERR_INVALID with why (>= 128 bytes).
 */
enum as_err as_clientchain_parse(const unsigned char *const *der, const size_t *len, size_t n,
                                 struct as_clientchain **out, char *why, size_t whylen) AS_WUR;
void as_clientchain_free(struct as_clientchain *c); /* NULL ok */

/* An accepted leaf's summary. Opaque; free with as_clientcert_free. */
struct as_clientcert;
/*
 * Judges ch at time now (unix seconds) against trust_pem: CERTIFICATE blocks, at most 64, 1 MiB.
 * A CA certificate in it (basicConstraints CA:TRUE) is a trust anchor (self-signed or not,
 * RFC 5280 §6.1 with partial chains allowed, as Vault's Go pool does); any other certificate is
 * pinned: a presented leaf byte-identical to it is trusted as is. untrusted_pem (may be NULL or
 * "") adds intermediates to the ones the client presented. The leaf must be within its validity
 * (every chain certificate too), carry clientAuth when it has an extKeyUsage, and have a keyUsage
 * (when present) that allows signing (RFC 5280 §4.2.1.3, §4.2.1.12); chain CAs must not exclude
 * clientAuth either. On success *out is the leaf's summary and *fail AS_CC_OK. AS_ERR_INVALID
 * with *fail (may be NULL) and a reason in Go's crypto/x509 wording, which Vault users see, in
 * why (>= 160 bytes); AS_ERR_NOMEM / AS_ERR_CRYPTO on internal failures.
 */
enum as_err as_clientchain_verify(const struct as_clientchain *ch, const char *trust_pem,
                                  const char *untrusted_pem, int64_t now,
                                  struct as_clientcert **out, enum as_clientcert_fail *fail,
                                  char *why, size_t whylen) AS_WUR;
/* as_clientchain_parse then as_clientchain_verify, in one call. */
enum as_err as_clientcert_verify(const unsigned char *const *der, const size_t *len, size_t n,
                                 const char *trust_pem, const char *untrusted_pem, int64_t now,
                                 struct as_clientcert **out, enum as_clientcert_fail *fail,
                                 char *why, size_t whylen) AS_WUR;
void as_clientcert_free(struct as_clientcert *c); /* NULL ok */
/* Getters; strings are borrowed until as_clientcert_free. */
const char *as_clientcert_cn(const struct as_clientcert *c); /* UTF-8 subject CN, or NULL */
size_t as_clientcert_dns_count(const struct as_clientcert *c);
const char *as_clientcert_dns(const struct as_clientcert *c, size_t i); /* NULL past the end */
size_t as_clientcert_uri_count(const struct as_clientcert *c);
const char *as_clientcert_uri(const struct as_clientcert *c, size_t i); /* NULL past the end */
/* The serial in lowercase colon hex (as as_serial_normalize spells ours), e.g. "3a:0f:..". */
const char *as_clientcert_serial(const struct as_clientcert *c);
int64_t as_clientcert_not_before(const struct as_clientcert *c);
int64_t as_clientcert_not_after(const struct as_clientcert *c);
const unsigned char *as_clientcert_der(const struct as_clientcert *c, size_t *len);
/* Parses a PEM chain (CERTIFICATE blocks only, leaf first, as proxies forward it) like
 * as_clientchain_parse. (pki/pem.c) */
enum as_err as_clientchain_parse_pem(const char *pem, size_t len, struct as_clientchain **out,
                                     char *why, size_t whylen) AS_WUR;
/*
 * Checks a trust PEM when a cert role is written: at least one certificate, each parses, and a
 * pinned (non-CA) one carries clientAuth when it has an extKeyUsage (Vault's rule).
 * *ncerts (may be NULL) = certificates found. AS_ERR_INVALID with Vault's text in why.
 */
enum as_err as_clientcert_trust_check(const char *pem, size_t *ncerts, char *why,
                                      size_t whylen) AS_WUR;

#endif
