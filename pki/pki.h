/*
 * pki.h: authsvc's certificate authority. Pure: takes and returns values, never touches the
 * store or HTTP. Only this module ever touches a CA private key.
 */
#ifndef AS_PKI_H
#define AS_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* PEM of the active issuing chain: the CA, then its upstream CAs (none yet). Borrowed. */
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

#endif
