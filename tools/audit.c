/*
 * audit.c: `authctl audit verify` (SPEC §8; see audit.h).
 *
 * Decisions where SPEC §8 is silent (also in the usage text):
 *   - Line numbers in messages are per file ("audit.log.1:17"), as a compiler counts them; the
 *     chain numbers (from 1 at the genesis line, across files) appear only with -from-hash or
 *     -head given as HASH:LINE.
 *   - An edit of line N is reported at line N+1, whose prev_hash no longer matches it ("does not
 *     match line N"): the hash cannot say whether N or N+1 changed, only where the chain breaks.
 *     An edit of the last line is only visible against the recorded head (-head).
 *   - An empty file is a file with no lines (a log just rotated); the last file may lack its
 *     final newline (a warning: the server was stopped between the line and its newline), any
 *     other file may not (it was cut short, or the files are out of order).
 *   - "-" reads standard input (e.g. a decompressed rotated file).
 */
#include "tools/audit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK ((size_t)64 * 1024)
#define WHY_LEN 320

enum as_err as_audit_point_parse(const char *s, struct as_audit_point *out)
{
    memset(out, 0, sizeof *out);
    const char *colon = strchr(s, ':');
    size_t hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
    if (hlen != AS_CHAIN_HASH_HEX) {
        return AS_ERR_INVALID;
    }
    for (size_t i = 0; i < hlen; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'F') {
            ch = (char)(ch - 'A' + 'a');
        }
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            return AS_ERR_INVALID;
        }
        out->hash[i] = ch;
    }
    out->hash[hlen] = '\0';
    if (colon == NULL) {
        return AS_OK;
    }
    const char *p = colon + 1;
    if (*p == '\0') {
        return AS_ERR_INVALID;
    }
    uint64_t v = 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return AS_ERR_INVALID;
        }
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return AS_ERR_INVALID;
        }
        v = v * 10 + d;
    }
    out->has_line = true;
    out->line = v;
    return AS_OK;
}

/* ---- reading lines, streaming, each at most AS_AUDIT_MAX_LINE bytes ---- */

struct reader {
    FILE *f;
    char *chunk;
    size_t pos;
    size_t end;
    bool eof;
    int errnum;
};

/*
 * The next line (without its newline) into line, which is emptied first. *got is false at the
 * end of the file; *nl tells whether the line ended with a newline. AS_ERR_TOO_LARGE past
 * line->max, AS_ERR_IO when reading fails (rd->errnum keeps errno).
 */
static enum as_err read_line(struct reader *rd, struct as_buf *line, bool *got, bool *nl)
{
    enum as_err r = AS_OK;
    line->len = 0;
    if (line->data != NULL) {
        line->data[0] = '\0';
    }
    *got = false;
    *nl = false;
    for (;;) {
        if (rd->pos == rd->end) {
            if (rd->eof) {
                return AS_OK;
            }
            size_t n = fread(rd->chunk, 1, READ_CHUNK, rd->f);
            if (n == 0) {
                if (ferror(rd->f)) {
                    rd->errnum = errno;
                    return AS_ERR_IO;
                }
                rd->eof = true;
                return AS_OK;
            }
            rd->pos = 0;
            rd->end = n;
        }
        const char *start = rd->chunk + rd->pos;
        size_t avail = rd->end - rd->pos;
        const char *eol = memchr(start, '\n', avail);
        size_t take = eol != NULL ? (size_t)(eol - start) : avail;
        *got = true;
        if ((r = as_buf_append(line, start, take)) != AS_OK) {
            return r;
        }
        rd->pos += take;
        if (eol != NULL) {
            rd->pos++;
            *nl = true;
            return AS_OK;
        }
    }
}

/* ---- verification ---- */

/* Where the last good line was: the file's display name (NULL before the first) and line. */
struct where {
    const char *file;
    uint64_t line;
};

struct verify {
    struct as_chain chain;
    const struct as_audit_point *from;
    const struct as_audit_point *head;
    uint64_t verified;    /* lines checked so far */
    struct where last;    /* the last good line */
    struct where at_head; /* the line whose hash is head->hash (file NULL: not met) */
    uint64_t head_chain_line;
};

static void report(const char *file, uint64_t line, const char *fmt, ...) AS_PRINTF(3, 4);

static void report(const char *file, uint64_t line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (line > 0) {
        fprintf(stderr, "%s:%" PRIu64 ": ", file, line);
    } else {
        fprintf(stderr, "%s: ", file);
    }
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Reports a well-formed line whose prev_hash is not the previous line's hash. */
static void report_mismatch(const struct verify *v, const char *file, uint64_t line,
                            const char *text, const char *why)
{
    const char *prev = text + strlen(AS_CHAIN_PREFIX);
    if (memcmp(prev, AS_CHAIN_GENESIS, AS_CHAIN_HASH_HEX) == 0 || v->last.file == NULL) {
        /* A new chain in the middle, or the first line not the genesis: the library says it. */
        if (v->last.file == NULL && v->from != NULL) {
            report(file, line,
                   "prev_hash does not match -from-hash (the line before this one is not the "
                   "one given)");
        } else if (v->last.file == NULL) {
            report(file, line, "%s (give the older files first, or -from-hash=HASH)", why);
        } else {
            report(file, line, "%s", why);
        }
        return;
    }
    if (v->last.file == file) {
        report(file, line,
               "prev_hash does not match line %" PRIu64 " (a line was edited, dropped, inserted "
               "or reordered before this point)",
               v->last.line);
        return;
    }
    report(file, line,
           "prev_hash does not match the last line of %s (line %" PRIu64 "): the files are out "
           "of order, or a line was edited, dropped, inserted or reordered before this point",
           v->last.file, v->last.line);
}

/* Follows the chain through one file. AS_AUDIT_EXIT_OK or AS_AUDIT_EXIT_BREAK (reported). */
static int verify_file(struct verify *v, const char *path, bool final, struct reader *rd,
                       struct as_buf *line)
{
    int rc = AS_AUDIT_EXIT_BREAK;
    enum as_err r;
    bool is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "<stdin>" : path;
    char why[WHY_LEN];
    uint64_t n = 0;
    bool got = false;
    bool nl = true;
    bool last_nl = true;

    rd->f = is_stdin ? stdin : fopen(path, "rb");
    rd->pos = 0;
    rd->end = 0;
    rd->eof = false;
    rd->errnum = 0;
    if (rd->f == NULL) {
        fprintf(stderr, "Error: cannot open %s: %s\n", name, strerror(errno));
        goto out;
    }
    for (;;) {
        r = read_line(rd, line, &got, &nl);
        if (r == AS_OK && !got) {
            break;
        }
        n++;
        if (r == AS_ERR_TOO_LARGE) {
            report(name, n, "line longer than %zu bytes", AS_AUDIT_MAX_LINE);
            goto out;
        }
        if (r == AS_ERR_IO) {
            fprintf(stderr, "Error: cannot read %s: %s\n", name, strerror(rd->errnum));
            goto out;
        }
        if (r != AS_OK) {
            fprintf(stderr, "Error: %s: %s\n", name, as_strerror(r));
            goto out;
        }
        enum as_chain_fault fault = AS_CHAIN_FAULT_NONE;
        r = as_chain_check_line(&v->chain, line->data, line->len, &fault, why, sizeof why);
        if (r != AS_OK) {
            if (fault == AS_CHAIN_FAULT_MISMATCH) {
                report_mismatch(v, name, n, line->data, why);
            } else if (fault == AS_CHAIN_FAULT_FORMAT) {
                report(name, n, "%s", why);
            } else {
                fprintf(stderr, "Error: %s:%" PRIu64 ": %s\n", name, n, as_strerror(r));
            }
            goto out;
        }
        v->verified++;
        v->last.file = name;
        v->last.line = n;
        last_nl = nl;
        if (v->head != NULL && strcmp(v->chain.prev_hash, v->head->hash) == 0) {
            v->at_head = v->last;
            v->head_chain_line = v->chain.line_no;
        }
    }
    if (!last_nl) {
        if (!final) {
            report(name, n,
                   "no newline at the end of the file, but more files follow (it was cut short, "
                   "or the files are out of order)");
            goto out;
        }
        fprintf(stderr, "warning: %s:%" PRIu64 ": no newline at the end of the log\n", name, n);
    }
    rc = AS_AUDIT_EXIT_OK;
out:
    if (rd->f != NULL && rd->f != stdin) {
        fclose(rd->f);
    }
    rd->f = NULL;
    return rc;
}

/* After the last line: the chain must end on the recorded head. */
static int check_head(const struct verify *v, const char *last_file)
{
    const struct as_audit_point *h = v->head;
    const char *file = v->last.file != NULL ? v->last.file : last_file;
    uint64_t line = v->last.file != NULL ? v->last.line : 0;
    uint64_t count = v->chain.line_no;
    if (strcmp(v->chain.prev_hash, h->hash) == 0) {
        if (h->has_line && h->line != count) {
            report(file, line,
                   "the log ends on the recorded head's hash, but as line %" PRIu64 ", not line "
                   "%" PRIu64,
                   count, h->line);
            return AS_AUDIT_EXIT_BREAK;
        }
        return AS_AUDIT_EXIT_OK;
    }
    if (v->at_head.file != NULL && v->at_head.line == 0) {
        report(file, line,
               "the log continues past the recorded head (where verification starts): %" PRIu64
               " lines were appended after it",
               count - v->head_chain_line);
        return AS_AUDIT_EXIT_BREAK;
    }
    if (v->at_head.file != NULL) {
        report(file, line,
               "the log continues past the recorded head (%s:%" PRIu64 "): %" PRIu64
               " lines were appended after it",
               v->at_head.file, v->at_head.line, count - v->head_chain_line);
        return AS_AUDIT_EXIT_BREAK;
    }
    if (h->has_line && count == h->line) {
        report(file, line,
               "the last line does not match the recorded head (line %" PRIu64 "): it was edited "
               "or replaced",
               h->line);
    } else if (h->has_line && count > h->line) {
        report(file, line,
               "the log has %" PRIu64 " lines, more than the recorded head (line %" PRIu64
               "), and never reaches its hash",
               count, h->line);
    } else if (h->has_line) {
        report(file, line,
               "the log ends before the recorded head: lines were removed from the end (truncated "
               "tail): %" PRIu64 " lines, the head is line %" PRIu64,
               count, h->line);
    } else {
        report(file, line,
               "the log ends before the recorded head: lines were removed from the end (truncated "
               "tail), or its last line was edited");
    }
    return AS_AUDIT_EXIT_BREAK;
}

int as_audit_verify(const char *const *files, size_t nfiles, const struct as_audit_point *from,
                    const struct as_audit_point *head)
{
    int rc = AS_AUDIT_EXIT_BREAK;
    struct reader rd;
    struct as_buf line;
    struct verify v;
    uint64_t first = 0;
    memset(&rd, 0, sizeof rd);
    memset(&v, 0, sizeof v);
    as_buf_init(&line, AS_AUDIT_MAX_LINE);
    v.from = from;
    v.head = head;
    if (as_chain_init(&v.chain, from != NULL ? from->hash : NULL,
                      from != NULL && from->has_line ? from->line : 0) != AS_OK) {
        fprintf(stderr, "Error: invalid -from-hash\n");
        goto out;
    }
    first = v.chain.line_no;
    if (head != NULL && strcmp(v.chain.prev_hash, head->hash) == 0) {
        /* The head is where verification starts: any line at all was appended after it. */
        v.at_head.file = "";
        v.head_chain_line = first;
    }
    rd.chunk = malloc(READ_CHUNK);
    if (rd.chunk == NULL) {
        fprintf(stderr, "Error: %s\n", as_strerror(AS_ERR_NOMEM));
        goto out;
    }
    for (size_t i = 0; i < nfiles; i++) {
        if (verify_file(&v, files[i], i + 1 == nfiles, &rd, &line) != AS_AUDIT_EXIT_OK) {
            goto out;
        }
    }
    if (head != NULL) {
        const char *last =
            nfiles > 0 && strcmp(files[nfiles - 1], "-") != 0 ? files[nfiles - 1] : "<stdin>";
        if (check_head(&v, last) != AS_AUDIT_EXIT_OK) {
            goto out;
        }
    }
    if (from != NULL && from->has_line) {
        printf("OK: %" PRIu64 " lines (lines %" PRIu64 " to %" PRIu64 " of the chain), head %s\n",
               v.verified, first + 1, v.chain.line_no, v.chain.prev_hash);
    } else {
        printf("OK: %" PRIu64 " lines, head %s\n", v.verified, v.chain.prev_hash);
    }
    rc = AS_AUDIT_EXIT_OK;
out:
    free(rd.chunk);
    as_buf_free(&line, false);
    return rc;
}
