/*
 * auditchain.h: the hash chain of the audit log (SPEC §8).
 *
 * The audit log is a sequence of lines, each one JSON object terminated by "\n". Every line
 * carries "prev_hash": the lowercase hex SHA-256 of the previous line's bytes without its
 * newline; the first line ever has 64 zeros (the genesis value). The chain continues across
 * restarts and rotated files, so any edited, dropped, inserted or reordered line breaks it at
 * the first line after the change, and a removed tail is caught by comparing the hash of the
 * last line with the head the server keeps in its store.
 *
 * Format decisions (beyond SPEC §8), which writer and verifier share:
 *   - A line is compact JSON (jansson JSON_COMPACT: no whitespace outside strings), the members
 *     in the order the writer inserted them, and "prev_hash" is always the FIRST member. A line
 *     therefore begins with exactly the 79 bytes {"prev_hash":"<64 lowercase hex>" followed by
 *     ',' or '}', so a reader (grep, a shell script, a log shipper) can follow the chain from
 *     the first bytes of each line without parsing JSON. The verifier requires this prefix.
 *   - The hash covers the line's bytes exactly as written, without its terminating "\n"; an
 *     independent writer (jq -c '{prev_hash: $p} + .') produces lines the verifier accepts.
 *   - A line is at most AS_AUDIT_MAX_LINE bytes (without the newline), holds no raw newline
 *     (JSON escapes it), no duplicate keys, and nests at most AS_MAX_JSON_DEPTH levels.
 *   - Lines are numbered from 1 (the genesis line) across the whole chain; a head is the hash
 *     of the last line and its number.
 *
 * struct as_chain is deliberately a small transparent value type, not an opaque handle: it holds
 * no resources, and a writer copies it before sealing a line so it can put it back when writing
 * the line fails (the chain must only advance over lines that reached the file).
 */
#ifndef AS_AUDITCHAIN_H
#define AS_AUDITCHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"

/* Longest audit line in bytes, without its newline: a request body is capped at the same size. */
#define AS_AUDIT_MAX_LINE ((size_t)1024 * 1024)
/* Length of a hash in hex, without the NUL. */
#define AS_CHAIN_HASH_HEX 64
/* Every line begins with this, then prev_hash's 64 hex digits, then '"', then ',' or '}'. */
#define AS_CHAIN_PREFIX "{\"prev_hash\":\""
/* The prev_hash of the first line ever. */
#define AS_CHAIN_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

struct as_chain {
    /* Lowercase hex SHA-256 of the last line accepted or sealed (the genesis value at first). */
    char prev_hash[AS_CHAIN_HASH_HEX + 1];
    /* Number of that line in the chain: 0 before the first line. */
    uint64_t line_no;
};

/* Why as_chain_check_line refused a line. */
enum as_chain_fault {
    AS_CHAIN_FAULT_NONE = 0,
    /* The line is not an audit line: empty, too long, not a JSON object, duplicate keys, too
     * deep, or prev_hash missing, misplaced or not 64 lowercase hex digits. */
    AS_CHAIN_FAULT_FORMAT,
    /* A well-formed line whose prev_hash is not the hash of the line before it. */
    AS_CHAIN_FAULT_MISMATCH,
};

/*
 * Starts a chain state. head NULL: the genesis (64 zeros) and line_no is normally 0. Otherwise
 * head is the hash of line number line_no, e.g. the head kept in the store, to continue after a
 * restart, or the hash of the last line of deleted older files, to verify what remains.
 * AS_ERR_INVALID (and c set to the genesis) when head is not 64 lowercase hex digits.
 */
enum as_err as_chain_init(struct as_chain *c, const char *head, uint64_t line_no) AS_WUR;

/* True when s[0..len) is exactly 64 lowercase hex digits. */
bool as_chain_hash_valid(const char *s, size_t len);

/* Lowercase hex SHA-256 of len bytes at line into out (65 bytes, NUL-terminated). */
enum as_err as_chain_line_hash(const char *line, size_t len,
                               char out[AS_CHAIN_HASH_HEX + 1]) AS_WUR;

/*
 * Seals one record: serializes obj as {"prev_hash":"<c->prev_hash>", <obj's members in order>}
 * in compact JSON, then advances c to this line (its hash, line_no + 1). obj is borrowed and not
 * modified; it must not have a "prev_hash" member of its own.
 * On AS_OK *line is the line without a newline (the caller appends "\n" when writing it), NUL
 * terminated, *len its length (may be NULL); the caller frees *line with free().
 * On failure c is unchanged and *line NULL: AS_ERR_INVALID (obj not an object, has prev_hash,
 * nests deeper than AS_MAX_JSON_DEPTH), AS_ERR_TOO_LARGE (over AS_AUDIT_MAX_LINE, or the line
 * counter would overflow), AS_ERR_NOMEM, AS_ERR_CRYPTO.
 */
enum as_err as_chain_seal(struct as_chain *c, json_t *obj, char **line, size_t *len) AS_WUR;
/*
 * The second half of as_chain_seal, for a writer that serializes outside its lock (the audit
 * device writes its records without a tree): splices prev_hash into body (blen bytes, a record as
 * as_chain_seal would write obj: a compact JSON object written with as_json_write's pieces,
 * without "prev_hash", nesting at most AS_MAX_JSON_DEPTH) and advances c. Errors as
 * as_chain_seal; AS_ERR_INVALID only when body is not an object's braces.
 */
enum as_err as_chain_seal_prepared(struct as_chain *c, const char *body, size_t blen, char **line,
                                   size_t *len) AS_WUR;

/*
 * Verifies one line read back (len bytes at line, without its newline; need not be NUL
 * terminated) against c and, when it is good, advances c to it. Checks, in order: not empty or
 * blank, at most AS_AUDIT_MAX_LINE bytes, a JSON object (as_json_parse_object: duplicate keys and
 * depth over AS_MAX_JSON_DEPTH refused), a prev_hash string of 64 lowercase hex digits, the line
 * beginning with {"prev_hash":"<that hash>" and ending with '}' (no whitespace around), and that
 * prev_hash equals c->prev_hash.
 * AS_OK: *fault is AS_CHAIN_FAULT_NONE. AS_ERR_INVALID: c unchanged, *fault says which kind of
 * break, and why (if not NULL; >= 320 bytes is enough) says what is wrong with this line, without
 * a location (the caller knows the file and line). AS_ERR_NOMEM, AS_ERR_CRYPTO: c unchanged.
 */
enum as_err as_chain_check_line(struct as_chain *c, const char *line, size_t len,
                                enum as_chain_fault *fault, char *why, size_t whylen) AS_WUR;

#endif
