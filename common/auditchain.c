/* auditchain.c: the audit log's hash chain (SPEC §8; the format is described in auditchain.h). */
#include "common/auditchain.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every line begins with these bytes, then the 64 hex digits, then '"'. */
#define PREFIX AS_CHAIN_PREFIX
#define PREFIX_LEN (sizeof PREFIX - 1)
/* The prefix, the hash and its closing quote: 79 bytes. */
#define HEAD_LEN (PREFIX_LEN + AS_CHAIN_HASH_HEX + 1)

bool as_chain_hash_valid(const char *s, size_t len)
{
    if (s == NULL || len != AS_CHAIN_HASH_HEX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            return false;
        }
    }
    return true;
}

enum as_err as_chain_init(struct as_chain *c, const char *head, uint64_t line_no)
{
    memcpy(c->prev_hash, AS_CHAIN_GENESIS, sizeof c->prev_hash);
    c->line_no = 0;
    if (head == NULL) {
        c->line_no = line_no;
        return AS_OK;
    }
    if (!as_chain_hash_valid(head, strlen(head))) {
        return AS_ERR_INVALID;
    }
    memcpy(c->prev_hash, head, AS_CHAIN_HASH_HEX);
    c->prev_hash[AS_CHAIN_HASH_HEX] = '\0';
    c->line_no = line_no;
    return AS_OK;
}

enum as_err as_chain_line_hash(const char *line, size_t len, char out[AS_CHAIN_HASH_HEX + 1])
{
    unsigned char md[32];
    out[0] = '\0';
    if (as_sha256_3(line, len, "", 0, "", 0, md) != AS_OK) {
        return AS_ERR_CRYPTO;
    }
    as_hex(md, sizeof md, out);
    return AS_OK;
}

enum as_err as_chain_seal_prepared(struct as_chain *c, const char *body, size_t blen, char **line,
                                   size_t *len)
{
    char hash[AS_CHAIN_HASH_HEX + 1];
    *line = NULL;
    if (len != NULL) {
        *len = 0;
    }
    if (blen < 2 || body[0] != '{' || body[blen - 1] != '}') {
        return AS_ERR_INVALID;
    }
    if (c->line_no == UINT64_MAX) {
        return AS_ERR_TOO_LARGE;
    }
    /*
     * prev_hash goes first (auditchain.h): the members of the object were serialized on their
     * own, in insertion order, and are spliced in after it.
     */
    const char *members = body + 1;
    size_t mlen = blen - 2;
    size_t total = HEAD_LEN + (mlen > 0 ? 1 + mlen : 0) + 1;
    if (mlen > AS_AUDIT_MAX_LINE || total > AS_AUDIT_MAX_LINE) {
        return AS_ERR_TOO_LARGE;
    }
    char *out = malloc(total + 1);
    if (out == NULL) {
        return AS_ERR_NOMEM;
    }
    size_t at = 0;
    memcpy(out + at, PREFIX, PREFIX_LEN);
    at += PREFIX_LEN;
    memcpy(out + at, c->prev_hash, AS_CHAIN_HASH_HEX);
    at += AS_CHAIN_HASH_HEX;
    out[at++] = '"';
    if (mlen > 0) {
        out[at++] = ',';
        memcpy(out + at, members, mlen);
        at += mlen;
    }
    out[at++] = '}';
    out[at] = '\0';
    enum as_err r = as_chain_line_hash(out, at, hash);
    if (r != AS_OK) {
        free(out);
        return r;
    }
    memcpy(c->prev_hash, hash, sizeof c->prev_hash);
    c->line_no++;
    *line = out;
    if (len != NULL) {
        *len = at;
    }
    return AS_OK;
}

/* as_chain_seal's first half: checks obj and serializes it into *body (malloc'd), *blen. */
static enum as_err prepare(json_t *obj, char **body, size_t *blen)
{
    struct as_buf b;
    *body = NULL;
    *blen = 0;
    if (!json_is_object(obj) || json_object_get(obj, "prev_hash") != NULL) {
        return AS_ERR_INVALID;
    }
    /* The members get at most AS_AUDIT_MAX_LINE bytes between the braces. as_json_write refuses
     * nesting deeper than AS_MAX_JSON_DEPTH, as the verifier's parser does, so that whatever is
     * sealed reads back. */
    as_buf_init(&b, AS_AUDIT_MAX_LINE + 2);
    enum as_err r = as_json_write(&b, obj);
    if (r != AS_OK) {
        as_buf_free(&b, false);
        return r;
    }
    *body = b.data;
    *blen = b.len;
    return AS_OK;
}

enum as_err as_chain_seal(struct as_chain *c, json_t *obj, char **line, size_t *len)
{
    char *body = NULL;
    size_t blen = 0;
    *line = NULL;
    if (len != NULL) {
        *len = 0;
    }
    enum as_err r = prepare(obj, &body, &blen);
    if (r == AS_OK) {
        r = as_chain_seal_prepared(c, body, blen, line, len);
    }
    free(body);
    return r;
}

enum as_err as_chain_check_line(struct as_chain *c, const char *line, size_t len,
                                enum as_chain_fault *fault, char *why, size_t whylen)
{
    enum as_err r = AS_OK;
    json_t *obj = NULL;
    char err[200];
    char hash[AS_CHAIN_HASH_HEX + 1];
    *fault = AS_CHAIN_FAULT_FORMAT;
    as_why(why, whylen, "invalid line");
    /* as_json_parse_object reads a blank body as {}: a blank line must not get that far. */
    size_t sp = 0;
    while (sp < len && (line[sp] == ' ' || line[sp] == '\t' || line[sp] == '\r')) {
        sp++;
    }
    if (sp == len) {
        as_why(why, whylen, len == 0 ? "empty line" : "empty line (only whitespace)");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (len > AS_AUDIT_MAX_LINE) {
        as_why(why, whylen, "line longer than %zu bytes", AS_AUDIT_MAX_LINE);
        r = AS_ERR_INVALID;
        goto out;
    }
    err[0] = '\0';
    r = as_json_parse_object(line, len, &obj, err, sizeof err);
    if (r == AS_ERR_NOMEM) {
        *fault = AS_CHAIN_FAULT_NONE;
        goto out;
    }
    if (r != AS_OK) {
        as_why(why, whylen, "not a JSON object (%s)", err[0] != '\0' ? err : as_strerror(r));
        r = AS_ERR_INVALID;
        goto out;
    }
    json_t *ph = json_object_get(obj, "prev_hash");
    if (ph == NULL) {
        as_why(why, whylen, "no prev_hash member");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (!json_is_string(ph)) {
        as_why(why, whylen, "prev_hash is not a string");
        r = AS_ERR_INVALID;
        goto out;
    }
    const char *prev = json_string_value(ph);
    if (!as_chain_hash_valid(prev, json_string_length(ph))) {
        as_why(why, whylen, "prev_hash is not 64 lowercase hex digits");
        r = AS_ERR_INVALID;
        goto out;
    }
    /*
     * The first bytes must be exactly as the writer puts them (auditchain.h), so that readers
     * which follow the chain from the prefix alone see the same prev_hash as this parser.
     */
    if (len <= HEAD_LEN || memcmp(line, PREFIX, PREFIX_LEN) != 0 ||
        memcmp(line + PREFIX_LEN, prev, AS_CHAIN_HASH_HEX) != 0 || line[HEAD_LEN - 1] != '"' ||
        (line[HEAD_LEN] != ',' && line[HEAD_LEN] != '}')) {
        as_why(why, whylen,
               "the line does not begin with {\"prev_hash\":\"<hash>\" (prev_hash must be the "
               "first member, in compact JSON)");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (line[len - 1] != '}') {
        as_why(why, whylen, "the line does not end with '}' (whitespace after the object)");
        r = AS_ERR_INVALID;
        goto out;
    }
    if (memcmp(prev, c->prev_hash, AS_CHAIN_HASH_HEX) != 0) {
        *fault = AS_CHAIN_FAULT_MISMATCH;
        if (c->line_no > 0 && memcmp(prev, AS_CHAIN_GENESIS, AS_CHAIN_HASH_HEX) == 0) {
            as_why(why, whylen,
                   "prev_hash is the genesis value (64 zeros) but this is not the first line "
                   "(a new chain starts here, or the files are out of order)");
        } else if (c->line_no == 0 &&
                   memcmp(c->prev_hash, AS_CHAIN_GENESIS, AS_CHAIN_HASH_HEX) == 0) {
            as_why(why, whylen,
                   "the first line must have prev_hash of 64 zeros (the genesis): older lines "
                   "are missing");
        } else {
            as_why(why, whylen,
                   "prev_hash does not match line %" PRIu64 " (a line was edited, dropped, "
                   "inserted or reordered before this point)",
                   c->line_no);
        }
        r = AS_ERR_INVALID;
        goto out;
    }
    if (c->line_no == UINT64_MAX) {
        as_why(why, whylen, "too many lines");
        r = AS_ERR_INVALID;
        goto out;
    }
    if ((r = as_chain_line_hash(line, len, hash)) != AS_OK) {
        *fault = AS_CHAIN_FAULT_NONE;
        goto out;
    }
    memcpy(c->prev_hash, hash, sizeof c->prev_hash);
    c->line_no++;
    *fault = AS_CHAIN_FAULT_NONE;
    as_why(why, whylen, "ok");
out:
    json_decref(obj);
    return r;
}
