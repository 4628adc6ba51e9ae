/*
 * audit.h: `authctl audit verify [-from-hash=HASH[:LINE]] [-head=HASH[:LINE]] FILE...` (SPEC §8).
 *
 * Follows the audit log's hash chain (common/auditchain.h) through FILE... in the order given,
 * oldest first: the chain continues from the last line of one file to the first line of the next
 * (log rotation). Reports the first line where the chain breaks as "FILE:LINE: what" on stderr:
 * an edited, dropped, inserted or reordered line, a line that is not an audit line (empty, not
 * JSON, duplicate keys, prev_hash missing or malformed, longer than AS_AUDIT_MAX_LINE), a file
 * other than the last that does not end with a newline, and, given the recorded head, a truncated
 * tail. Files are read streaming: memory stays bounded by the longest line.
 */
#ifndef AS_TOOLS_AUDIT_H
#define AS_TOOLS_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/auditchain.h"
#include "common/common.h"

/* Process exit statuses of as_audit_verify. */
#define AS_AUDIT_EXIT_OK 0    /* the chain is intact (and ends on the head, when given) */
#define AS_AUDIT_EXIT_BREAK 1 /* the chain breaks, or a file cannot be read */

/* A point of the chain: the hash of a line and, optionally, its number (counted from 1). */
struct as_audit_point {
    char hash[AS_CHAIN_HASH_HEX + 1];
    bool has_line;
    uint64_t line;
};

/*
 * Parses "HASH" or "HASH:LINE": HASH 64 hex digits (either case; stored lowercase), LINE a
 * decimal line number. AS_ERR_INVALID otherwise.
 */
enum as_err as_audit_point_parse(const char *s, struct as_audit_point *out) AS_WUR;

/*
 * Verifies the chain through files[0..nfiles) ("-" is standard input). from (NULL: the first line
 * must carry the genesis hash) is the line just before the first one, for a log whose older files
 * were deleted; its number, when given, numbers the lines of the chain. head (NULL: none) is the
 * recorded head: the last line's hash must equal it, and its number, when given, the number of
 * lines. Prints "OK: N lines, head HASH" on stdout when the chain holds, else the first break on
 * stderr. Returns AS_AUDIT_EXIT_OK or AS_AUDIT_EXIT_BREAK.
 */
int as_audit_verify(const char *const *files, size_t nfiles, const struct as_audit_point *from,
                    const struct as_audit_point *head);

#endif
