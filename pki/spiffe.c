/*
 * spiffe.c: SPIFFE IDs (SPIFFE-ID standard §2) and DNS names for SANs (pki.h).
 *
 * The rules follow the standard as go-spiffe's spiffeid package applies them, so that an ID we
 * accept is one every SPIFFE library accepts. The reasons use go-spiffe's wording where it has
 * one. Every check is a single bounded pass: nothing is decoded, nothing is allocated.
 */
#include <stdio.h>
#include <string.h>

#include "pki/pki.h"
#include "pki/pki_internal.h"

/* RFC 1035 §2.3.4, RFC 1123 §2.1: 63 octets per label, 253 characters in text form. */
#define DNS_LABEL_MAX 63
#define DNS_NAME_MAX 253

static const char scheme[] = "spiffe://";
#define SCHEME_LEN (sizeof scheme - 1)

static const char why_scheme[] = "scheme is missing or invalid";
static const char why_td_missing[] = "trust domain is missing";
static const char why_td_char[] =
    "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and "
    "underscores";
static const char why_td_label[] = "trust domain cannot contain empty labels";
static const char why_td_long[] = "trust domain is too long (more than 255 bytes)";
static const char why_seg_char[] =
    "path segment characters are limited to letters, numbers, dots, dashes, and underscores";
static const char why_empty_seg[] = "path cannot contain empty segments";
static const char why_dot_seg[] = "path cannot contain dot segments";
static const char why_trailing[] = "path cannot have a trailing slash";
static const char why_percent[] = "percent-encoding is not allowed";
static const char why_port[] = "port is not allowed";
static const char why_userinfo[] = "userinfo is not allowed";
static const char why_query[] = "query is not allowed";
static const char why_fragment[] = "fragment is not allowed";

static void say(char *why, size_t whylen, const char *reason)
{
    if (why != NULL && whylen > 0) {
        snprintf(why, whylen, "%s", reason);
    }
}

static bool td_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool seg_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

static bool is_dot_segment(const char *seg, size_t len)
{
    return (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.');
}

/*
 * SPIFFE-ID §2.1: [a-z0-9._-]; §2.3: at most 255 bytes. Empty labels (".a", "a..b", "a.") are
 * refused as pki.h promises: no DNS-like name has them, and "a." and "a" would otherwise be two
 * spellings of one trust domain.
 */
const char *as_pki_td_problem(const char *td, size_t len)
{
    if (td == NULL || len == 0) {
        return why_td_missing;
    }
    if (len > AS_SPIFFE_MAX_TD) {
        return why_td_long;
    }
    char prev = '.';
    for (size_t i = 0; i < len; i++) {
        if (!td_char_ok((unsigned char)td[i])) {
            return why_td_char;
        }
        if (td[i] == '.' && prev == '.') {
            return why_td_label;
        }
        prev = td[i];
    }
    return prev == '.' ? why_td_label : NULL;
}

/*
 * The authority of a SPIFFE ID is the trust domain alone (SPIFFE-ID §2.1): a URI authority's
 * userinfo and port, and percent-encoding anywhere, are named as such so that the caller learns
 * which URI feature is refused. The scan stops at the first character that breaks a rule, so a
 * ':' inside "[::1]" reports the '[' rather than a port.
 */
static const char *authority_problem(const char *a, size_t len)
{
    if (len == 0) {
        return why_td_missing;
    }
    if (memchr(a, '@', len) != NULL) {
        return why_userinfo;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c == '%') {
            return why_percent;
        }
        if (c == ':') {
            return why_port;
        }
        if (!td_char_ok(c)) {
            return why_td_char;
        }
    }
    return as_pki_td_problem(a, len);
}

/* SPIFFE-ID §2.2: "/seg(/seg)*"; p starts at the first '/', len > 0. */
static const char *path_problem(const char *p, size_t len)
{
    size_t seg_start = 1;
    for (size_t i = 1; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)p[i] : '/';
        if (c == '/') {
            size_t seg_len = i - seg_start;
            if (seg_len == 0) {
                return i == len ? why_trailing : why_empty_seg;
            }
            if (is_dot_segment(p + seg_start, seg_len)) {
                return why_dot_seg;
            }
            seg_start = i + 1;
            continue;
        }
        if (c == '%') {
            return why_percent;
        }
        if (c == '?') {
            return why_query;
        }
        if (c == '#') {
            return why_fragment;
        }
        if (!seg_char_ok(c)) {
            return why_seg_char;
        }
    }
    return NULL;
}

enum as_err as_spiffe_id_check(const char *id, const char *trust_domain, char *why, size_t whylen)
{
    if (id == NULL || id[0] == '\0') {
        say(why, whylen, "SPIFFE ID cannot be empty");
        return AS_ERR_INVALID;
    }
    /* Bounded before anything else looks at it: a caller's string may be huge. */
    size_t len = strnlen(id, AS_SPIFFE_MAX_ID + 1);
    if (len > AS_SPIFFE_MAX_ID) {
        say(why, whylen, "SPIFFE ID is too long (more than 2048 bytes)");
        return AS_ERR_INVALID;
    }
    /* SPIFFE-ID §2: the scheme is exactly "spiffe", lowercase, with an authority. */
    if (len < SCHEME_LEN || memcmp(id, scheme, SCHEME_LEN) != 0) {
        say(why, whylen, why_scheme);
        return AS_ERR_INVALID;
    }
    const char *a = id + SCHEME_LEN;
    size_t rest = len - SCHEME_LEN;
    size_t alen = strcspn(a, "/?#");
    const char *problem = authority_problem(a, alen);
    if (problem != NULL) {
        say(why, whylen, problem);
        return AS_ERR_INVALID;
    }
    const char *p = a + alen;
    size_t plen = rest - alen;
    if (plen > 0 && p[0] == '?') {
        problem = why_query;
    } else if (plen > 0 && p[0] == '#') {
        problem = why_fragment;
    } else if (plen == 0) {
        /* The bare trust domain names the trust domain itself, never a workload. */
        problem = "SPIFFE ID is the bare trust domain (a workload ID needs a path)";
    } else {
        problem = path_problem(p, plen);
    }
    if (problem != NULL) {
        say(why, whylen, problem);
        return AS_ERR_INVALID;
    }
    if (trust_domain != NULL) {
        size_t tdlen = strnlen(trust_domain, AS_SPIFFE_MAX_TD + 1);
        /* Compared with lengths: "example.org" is not a member of "example.or". */
        if (tdlen != alen || memcmp(a, trust_domain, alen) != 0) {
            if (why != NULL && whylen > 0) {
                snprintf(why, whylen, "not a member of trust domain %.64s", trust_domain);
            }
            return AS_ERR_INVALID;
        }
    }
    return AS_OK;
}

bool as_spiffe_segment_ok(const char *seg, size_t len)
{
    if (seg == NULL || len == 0 || len > AS_SPIFFE_MAX_ID || is_dot_segment(seg, len)) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!seg_char_ok((unsigned char)seg[i])) {
            return false;
        }
    }
    return true;
}

static bool ldh_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* RFC 1123 §2.1 preferred name syntax: letters, digits, hyphens; labels of 1..63 that neither
 * start nor end with a hyphen; at most 253 characters; no trailing dot (an absolute name is not
 * a SAN dNSName, RFC 5280 §4.2.1.6). */
bool as_dns_name_ok(const char *name)
{
    if (name == NULL) {
        return false;
    }
    size_t len = strnlen(name, DNS_NAME_MAX + 1);
    if (len == 0 || len > DNS_NAME_MAX) {
        return false;
    }
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && name[i] != '.') {
            if (!ldh_char((unsigned char)name[i])) {
                return false;
            }
            continue;
        }
        size_t llen = i - start;
        if (llen == 0 || llen > DNS_LABEL_MAX || name[start] == '-' || name[i - 1] == '-') {
            return false;
        }
        start = i + 1;
    }
    return true;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/*
 * One label against one glob label, '*' matching any run (possibly empty) of characters. The
 * classic two-pointer scan with one backtrack point: O(g * n) at worst, no recursion.
 */
static bool label_match(const char *g, size_t glen, const char *n, size_t nlen)
{
    size_t gi = 0;
    size_t ni = 0;
    size_t star = SIZE_MAX;
    size_t mark = 0;
    while (ni < nlen) {
        if (gi < glen && g[gi] == '*') {
            star = gi++;
            mark = ni;
        } else if (gi < glen && lower((unsigned char)g[gi]) == lower((unsigned char)n[ni])) {
            gi++;
            ni++;
        } else if (star != SIZE_MAX) {
            gi = star + 1;
            ni = ++mark;
        } else {
            return false;
        }
    }
    while (gi < glen && g[gi] == '*') {
        gi++;
    }
    return gi == glen;
}

/* Length of the label starting at s (up to '.' or end), bounded by len. */
static size_t label_len(const char *s, size_t len)
{
    const char *dot = memchr(s, '.', len);
    return dot != NULL ? (size_t)(dot - s) : len;
}

/*
 * '*' never crosses a dot, so glob and name must have the same number of labels and match label
 * by label. A name with an empty label (leading, trailing or double dot) never matches, nor does
 * anything longer than a DNS name can be: a glob is a grant, and a grant fails closed.
 */
bool as_dns_glob_match(const char *glob, const char *name)
{
    if (glob == NULL || name == NULL) {
        return false;
    }
    size_t glen = strnlen(glob, DNS_NAME_MAX + 1);
    size_t nlen = strnlen(name, DNS_NAME_MAX + 1);
    if (glen == 0 || nlen == 0 || glen > DNS_NAME_MAX || nlen > DNS_NAME_MAX) {
        return false;
    }
    size_t gi = 0;
    size_t ni = 0;
    for (;;) {
        size_t gl = label_len(glob + gi, glen - gi);
        size_t nl = label_len(name + ni, nlen - ni);
        if (nl == 0 || !label_match(glob + gi, gl, name + ni, nl)) {
            return false;
        }
        gi += gl;
        ni += nl;
        bool gend = gi == glen;
        bool nend = ni == nlen;
        if (gend || nend) {
            return gend && nend;
        }
        /* Both stopped at a dot: step over it. */
        gi++;
        ni++;
        if (gi == glen || ni == nlen) {
            /* A trailing dot: an empty last label. */
            return false;
        }
    }
}

bool as_dns_glob_ok(const char *glob)
{
    char probe[256];
    size_t k = 0;
    if (glob == NULL) {
        return false;
    }
    for (; glob[k] && k < sizeof probe - 1; k++) {
        probe[k] = glob[k] == '*' ? 'a' : glob[k];
    }
    probe[k] = '\0';
    return glob[k] == '\0' && as_dns_name_ok(probe);
}
