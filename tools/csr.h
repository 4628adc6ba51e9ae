/*
 * csr.h: the workload side of an X.509-SVID request (SPEC §6): a fresh ECDSA P-256 key made
 * locally and a PKCS#10 certificate request signed with it, so that only the public key is ever
 * sent to the server.
 */
#ifndef AS_CSR_H
#define AS_CSR_H

#include <stddef.h>

#include "common/common.h"

/*
 * Generates an ECDSA P-256 key pair and a CSR for its public key: empty subject, no extensions
 * (the server takes only the public key from a CSR and sets every other field itself), signed
 * with ECDSA-SHA256 so that the server can check possession of the key.
 *
 *   key_pem  receives the private key as PKCS#8 PEM ("BEGIN PRIVATE KEY"), NUL-terminated,
 *            *key_len bytes without the NUL. A secret: the caller frees it with
 *            as_free_secret_str (which wipes it).
 *   csr_pem  receives the CSR as PEM ("BEGIN CERTIFICATE REQUEST"), NUL-terminated; the caller
 *            frees it with free().
 *
 * Returns AS_OK, AS_ERR_CRYPTO (OpenSSL failed: the reason is logged) or AS_ERR_NOMEM. On failure
 * both outputs are NULL and no key material is left behind.
 */
enum as_err as_csr_new_p256(char **key_pem, size_t *key_len, char **csr_pem) AS_WUR;

/*
 * Checks that the first certificate of cert_pem (PEM) certifies the public key of csr_pem (PEM),
 * so that a certificate is never written next to a key it does not belong to.
 * Returns AS_OK, AS_ERR_INVALID (either does not parse, or the keys differ) or AS_ERR_NOMEM.
 */
enum as_err as_csr_cert_matches(const char *cert_pem, const char *csr_pem) AS_WUR;

#endif
