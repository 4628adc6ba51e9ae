// promcheck.js: a strict checker for the Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/), for the shell integration tests.
// Node standard library only.
//
// Usage: node promcheck.js [FILE]      (stdin when FILE is absent or "-")
//
// Exit 0: stdout gets one JSON line
//   {"samples":[{"name":"x","labels":{"k":"v"},"value":1}, ...],
//    "types":{"family":"counter|gauge|histogram|summary|untyped", ...}}
//   Values +Inf, -Inf and NaN are printed as the strings "+Inf", "-Inf", "NaN". Timestamps are
//   checked but not printed. "types" holds every family named by a TYPE line or by a sample
//   (a sample family with no TYPE line is "untyped").
// Exit 1: stderr gets "line N: <what is wrong>" for the first violation found (N is 1-based),
//   stdout stays empty.
// Exit 2: usage or I/O error ("promcheck: ..." on stderr).
//
// The check is a single top-down pass; per-family rules (histogram buckets, _count, _sum) are
// checked when the family's group ends, and reported at the line the problem belongs to.
//
// Deliberately stricter than the spec, so that odd-but-legal output is caught in tests:
// - blank lines are refused, and so is leading or trailing whitespace (except inside a HELP text);
// - no whitespace between a metric name and "{" or anywhere inside the label block;
// - values are decimal floats or exactly +Inf, -Inf, NaN (no hex floats, "_" or "inf"/"Infinity");
// - HELP/TYPE lines belong to their family's group: one for another family ends the current group;
// - "le" is refused on a histogram's _sum/_count, "quantile" on a summary's _sum/_count, and
//   quantiles must be in [0, 1] and increase (the spec asks for increasing order);
// - histogram bucket and _count values must be >= 0 (they are counts).
'use strict';

const fs = require('fs');

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
// Go's ParseFloat syntax for decimal numbers; see parseValue for the rest.
const DECIMAL = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

class Violation extends Error {
    constructor(line, msg) {
        super(msg);
        this.line = line;
    }
}

// A value as Go's ParseFloat would read it, restricted as said at the top; null when invalid.
function parseValue(s) {
    if (s === '+Inf') return Infinity;
    if (s === '-Inf') return -Infinity;
    if (s === 'NaN') return NaN;
    if (!DECIMAL.test(s)) return null;
    const v = Number(s);
    // ParseFloat fails with ErrRange on overflow, so "1e400" is not a way to write +Inf.
    return Number.isFinite(v) ? v : null;
}

function showValue(v) {
    if (Number.isNaN(v)) return 'NaN';
    if (v === Infinity) return '+Inf';
    if (v === -Infinity) return '-Inf';
    return v;
}

// Escapes a label value back for messages, so they show what the input said.
function quote(s) {
    return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') + '"';
}

function showLabels(labels, skip) {
    const parts = [...labels].filter(([k]) => k !== skip).map(([k, v]) => `${k}=${quote(v)}`);
    return '{' + parts.join(',') + '}';
}

// A label set as a key that does not depend on label order; "skip" leaves out le or quantile.
function labelKey(labels, skip) {
    return JSON.stringify([...labels].filter(([k]) => k !== skip).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// Parses one sample line into {name, labels (a Map, in input order), value}.
function parseSample(text, n) {
    const fail = (msg) => {
        throw new Violation(n, msg);
    };
    const m = METRIC_NAME.exec(text);
    if (!m) fail(`invalid metric name at start of sample line: ${JSON.stringify(text)}`);
    const name = m[0];
    let i = name.length;
    const labels = new Map();

    if (text[i] === '{') {
        i++;
        for (;;) {
            if (text[i] === '}') { // "{}" and a trailing comma are allowed
                i++;
                break;
            }
            const lm = LABEL_NAME.exec(text.slice(i));
            if (!lm) {
                fail(i >= text.length ? `unterminated label set in "${name}"`
                    : `expected a label name or "}" in "${name}", got ${JSON.stringify(text[i])}`);
            }
            const lname = lm[0];
            i += lname.length;
            if (text[i] !== '=') {
                fail(i >= text.length ? `unterminated label set in "${name}"`
                    : `invalid character ${JSON.stringify(text[i])} after label name "${lname}" (want "=")`);
            }
            // Names starting with "__" are reserved for Prometheus itself.
            if (lname.startsWith('__')) fail(`label name "${lname}" is reserved (starts with "__")`);
            if (labels.has(lname)) fail(`duplicate label "${lname}" in "${name}"`);
            i++;
            if (text[i] !== '"') fail(`label "${lname}": value must start with a double quote`);
            i++;
            let value = '';
            for (;;) {
                if (i >= text.length) fail(`label "${lname}": unterminated value`);
                const c = text[i++];
                if (c === '"') break;
                if (c !== '\\') {
                    value += c;
                    continue;
                }
                // Only \\, \" and \n are escapes in a label value.
                const e = text[i++];
                if (e === '\\') value += '\\';
                else if (e === '"') value += '"';
                else if (e === 'n') value += '\n';
                else if (e === undefined) fail(`label "${lname}": unterminated value`);
                else fail(`label "${lname}": invalid escape sequence "\\${e}" (only \\\\, \\" and \\n)`);
            }
            labels.set(lname, value);
            if (text[i] === ',') {
                i++;
            } else if (text[i] !== '}') {
                fail(i >= text.length ? `unterminated label set in "${name}"`
                    : `expected "," or "}" after label "${lname}", got ${JSON.stringify(text[i])}`);
            }
        }
    }

    // The rest is: blanks, value, optionally blanks and timestamp; nothing after.
    const rest = text.slice(i);
    if (rest === '') fail(`sample "${name}" has no value`);
    if (rest[0] !== ' ' && rest[0] !== '\t') {
        fail(`invalid character ${JSON.stringify(rest[0])} after metric name "${text.slice(0, i)}"`);
    }
    const tm = /^[ \t]+([^ \t]+)(?:[ \t]+([^ \t]+))?$/.exec(rest);
    if (!tm) {
        if (/[ \t]$/.test(rest)) fail('trailing whitespace');
        fail(`too many fields after sample "${name}" (want value and optional timestamp)`);
    }
    if (tm[1][0] === '{') fail(`whitespace between metric name "${name}" and "{"`);
    const value = parseValue(tm[1]);
    if (value === null) fail(`invalid sample value ${JSON.stringify(tm[1])}`);
    if (tm[2] !== undefined) {
        // Go's ParseInt(s, 10, 64): an optionally signed decimal int64.
        const ok = /^[+-]?[0-9]+$/.test(tm[2]) && BigInt(tm[2]) >= INT64_MIN && BigInt(tm[2]) <= INT64_MAX;
        if (!ok) fail(`invalid timestamp ${JSON.stringify(tm[2])} (want an int64 of milliseconds)`);
    }
    return { name, labels, value };
}

class Checker {
    constructor() {
        this.samples = [];
        this.types = new Map(); // family -> type, in order of first appearance
        this.declared = new Map(); // family -> type from a TYPE line
        this.helped = new Set();
        this.seenNames = new Set(); // sample names seen so far
        this.seenKeys = new Set(); // name + label set, to refuse duplicate samples
        this.closed = new Map(); // family whose group has ended -> line it ended on
        this.cur = null; // the family whose group we are in: {name, type, hadSamples, lastLine, groups}
    }

    // The family a sample name belongs to, given the TYPE lines seen so far.
    familyOf(name) {
        if (this.declared.has(name)) return name;
        const suffix = /^(.*)_(bucket|sum|count|total)$/.exec(name);
        if (suffix) {
            const [, base, sfx] = suffix;
            const t = this.declared.get(base);
            if (sfx === 'bucket' && t === 'histogram') return base;
            if ((sfx === 'sum' || sfx === 'count') && (t === 'histogram' || t === 'summary')) return base;
            // A counter's TYPE may name the base and its samples carry _total.
            if (sfx === 'total' && t === 'counter') return base;
        }
        return name;
    }

    // Moves to the group of family fam, ending the current one; a family's group comes only once.
    enter(fam, n) {
        if (this.cur && this.cur.name === fam) return;
        this.leave();
        if (this.closed.has(fam)) {
            throw new Violation(n, `lines of family "${fam}" are not contiguous (its group ended at line ${this.closed.get(fam)})`);
        }
        this.cur = { name: fam, hadSamples: false, lastLine: n, groups: new Map() };
    }

    // Ends the current family's group, checking what can only be checked on the whole group.
    leave() {
        const f = this.cur;
        if (!f) return;
        this.cur = null;
        this.closed.set(f.name, f.lastLine);
        if (this.declared.get(f.name) !== 'histogram') return;
        for (const g of f.groups.values()) {
            const where = `histogram "${f.name}" ${g.shown}`;
            // Blame the last bucket, where +Inf should have followed (or the set's last line if none).
            if (!g.inf) throw new Violation(g.lastBucketLine || g.lastLine, `${where}: no bucket with le="+Inf"`);
            if (!g.count) throw new Violation(g.lastLine, `${where}: no ${f.name}_count sample`);
            if (!g.sum) throw new Violation(g.lastLine, `${where}: no ${f.name}_sum sample`);
            if (g.count.value !== g.inf.value) {
                throw new Violation(Math.max(g.count.line, g.inf.line),
                    `${where}: ${f.name}_count is ${showValue(g.count.value)} but the le="+Inf" bucket is ${showValue(g.inf.value)}`);
            }
        }
    }

    comment(text, n) {
        // As in the reference parser, "#" then optional blanks then the first token.
        const hm = /^#[ \t]*([^ \t]*)/.exec(text);
        const kw = hm[1];
        if (kw !== 'HELP' && kw !== 'TYPE') return; // a plain comment
        const rest = text.slice(hm[0].length);
        const fm = /^[ \t]+([^ \t]+)/.exec(rest);
        if (!fm) throw new Violation(n, `${kw} line without a metric name`);
        const name = fm[1];
        const nm = METRIC_NAME.exec(name);
        if (!nm || nm[0] !== name) throw new Violation(n, `${kw} line: invalid metric name ${JSON.stringify(name)}`);
        const after = rest.slice(fm[0].length);

        if (kw === 'HELP') {
            if (after !== '' && after[0] !== ' ' && after[0] !== '\t') throw new Violation(n, 'HELP line: bad separator');
            // The docstring may only use the escapes \\ and \n; scan in pairs so "\\\\ " reads right.
            for (let i = 0; i < after.length; i++) {
                if (after[i] !== '\\') continue;
                const e = after[++i];
                if (e === '\\' || e === 'n') continue;
                throw new Violation(n, e === undefined ? 'HELP text ends with a lone backslash'
                    : `HELP text: invalid escape sequence "\\${e}" (only \\\\ and \\n)`);
            }
            if (this.helped.has(name)) throw new Violation(n, `second HELP line for "${name}"`);
            this.beforeSamples(name, [name], 'HELP', n);
            this.helped.add(name);
            this.enter(name, n);
            this.cur.lastLine = n;
            return;
        }

        const tm = /^[ \t]+([^ \t]+)$/.exec(after);
        if (!tm) {
            throw new Violation(n, /[ \t]$/.test(after) ? 'trailing whitespace'
                : `TYPE line for "${name}" must have exactly a name and a type`);
        }
        const type = tm[1];
        if (!TYPES.has(type)) throw new Violation(n, `TYPE line for "${name}": unknown type ${JSON.stringify(type)}`);
        if (this.declared.has(name)) throw new Violation(n, `second TYPE line for "${name}"`);
        // Every sample name this TYPE line would claim must still be unseen.
        const claims = { counter: ['', '_total'], histogram: ['', '_bucket', '_sum', '_count'],
            summary: ['', '_sum', '_count'] }[type] || [''];
        this.beforeSamples(name, claims.map((s) => name + s), 'TYPE', n);
        this.declared.set(name, type);
        this.types.set(name, type);
        this.enter(name, n);
        this.cur.lastLine = n;
    }

    // HELP and TYPE must come before the family's first sample.
    beforeSamples(fam, names, kw, n) {
        const seen = names.find((s) => this.seenNames.has(s));
        if (seen !== undefined) throw new Violation(n, `${kw} line for "${fam}" comes after its sample "${seen}"`);
    }

    sample(text, n) {
        const s = parseSample(text, n);
        const fam = this.familyOf(s.name);
        const type = this.declared.get(fam) || 'untyped';
        const fail = (msg) => {
            throw new Violation(n, msg);
        };

        this.enter(fam, n);
        const key = s.name + labelKey(s.labels, null);
        if (this.seenKeys.has(key)) fail(`duplicate sample ${s.name}${showLabels(s.labels, null)}`);
        this.seenKeys.add(key);
        this.seenNames.add(s.name);
        if (!this.types.has(fam)) this.types.set(fam, type);
        this.cur.hadSamples = true;
        this.cur.lastLine = n;

        if (type === 'counter') {
            if (Number.isNaN(s.value) || s.value < 0) fail(`counter "${s.name}" has value ${showValue(s.value)} (must be >= 0)`);
        } else if (type === 'histogram') {
            this.histogramSample(s, fam, n);
        } else if (type === 'summary') {
            this.summarySample(s, fam, n);
        }
        this.samples.push(s);
    }

    // Per label set (without le): buckets strictly increase in le, counts never decrease.
    histogramSample(s, fam, n) {
        const fail = (msg) => {
            throw new Violation(n, msg);
        };
        const kind = s.name.slice(fam.length); // "_bucket", "_sum", "_count" or "" (not allowed)
        if (kind === '') fail(`histogram "${fam}": sample must be named ${fam}_bucket, ${fam}_sum or ${fam}_count`);
        const k = labelKey(s.labels, 'le');
        let g = this.cur.groups.get(k);
        if (!g) {
            g = { shown: showLabels(s.labels, 'le'), lastLe: null, lastCount: null, inf: null, count: null, sum: null,
                lastLine: n, lastBucketLine: 0 };
            this.cur.groups.set(k, g);
        }
        g.lastLine = n;
        if (kind !== '_bucket') {
            if (s.labels.has('le')) fail(`${s.name} must not have an "le" label`);
            if (kind === '_count') {
                if (Number.isNaN(s.value) || s.value < 0) fail(`${s.name} has value ${showValue(s.value)} (must be >= 0)`);
                g.count = { value: s.value, line: n };
            } else {
                g.sum = { value: s.value, line: n };
            }
            return;
        }
        if (!s.labels.has('le')) fail(`${s.name} has no "le" label`);
        const leText = s.labels.get('le');
        const le = parseValue(leText);
        if (le === null || Number.isNaN(le)) fail(`${s.name}: le=${quote(leText)} is not a number`);
        if (Number.isNaN(s.value) || s.value < 0) fail(`${s.name}{le=${quote(leText)}} has value ${showValue(s.value)} (must be >= 0)`);
        if (g.inf) fail(`${s.name}{le=${quote(leText)}} comes after the le="+Inf" bucket`);
        if (g.lastLe !== null && !(le > g.lastLe)) {
            fail(`${s.name}: le=${quote(leText)} is not greater than the previous bucket's le (${showValue(g.lastLe)})`);
        }
        if (g.lastCount !== null && s.value < g.lastCount) {
            fail(`${s.name}{le=${quote(leText)}} count ${showValue(s.value)} is less than the previous bucket's ${showValue(g.lastCount)}`);
        }
        g.lastLe = le;
        g.lastCount = s.value;
        g.lastBucketLine = n;
        if (le === Infinity) g.inf = { value: s.value, line: n };
    }

    // Summary X: X{quantile=...} in increasing order, X_sum, X_count.
    summarySample(s, fam, n) {
        const fail = (msg) => {
            throw new Violation(n, msg);
        };
        if (s.name !== fam) {
            if (s.labels.has('quantile')) fail(`${s.name} must not have a "quantile" label`);
            return;
        }
        if (!s.labels.has('quantile')) fail(`summary "${fam}": sample has no "quantile" label`);
        const qText = s.labels.get('quantile');
        const q = parseValue(qText);
        if (q === null || !(q >= 0 && q <= 1)) fail(`${s.name}: quantile=${quote(qText)} is not a number in [0, 1]`);
        const k = labelKey(s.labels, 'quantile');
        const last = this.cur.groups.get(k);
        if (last !== undefined && !(q > last)) fail(`${s.name}: quantile=${quote(qText)} is not greater than the previous quantile (${last})`);
        this.cur.groups.set(k, q);
    }

    // Checks the whole input (a Buffer); throws a Violation at the first problem.
    run(buf) {
        const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
        let start = 0;
        for (let n = 1; start < buf.length; n++) {
            const nl = buf.indexOf(0x0a, start);
            if (nl < 0) throw new Violation(n, 'missing newline at end of input');
            let text;
            try {
                text = utf8.decode(buf.subarray(start, nl));
            } catch (e) {
                throw new Violation(n, 'invalid UTF-8');
            }
            start = nl + 1;
            if (text.includes('\r')) throw new Violation(n, 'carriage return ("\\r") not allowed');
            if (/^[ \t]*$/.test(text)) throw new Violation(n, 'blank line');
            if (/^[ \t]/.test(text)) throw new Violation(n, 'leading whitespace');
            if (text[0] === '#') this.comment(text, n);
            else this.sample(text, n);
        }
        this.leave();
    }

    result() {
        // Null-prototype objects, so a family named "__proto__" is an ordinary key.
        const types = Object.create(null);
        for (const [k, v] of this.types) types[k] = v;
        const samples = this.samples.map((s) => {
            const labels = Object.create(null);
            for (const [k, v] of s.labels) labels[k] = v;
            return { name: s.name, labels, value: showValue(s.value) };
        });
        return { samples, types };
    }
}

function readInput(file) {
    if (file === undefined || file === '-') {
        return new Promise((resolve, reject) => {
            const chunks = [];
            process.stdin.on('data', (c) => chunks.push(c));
            process.stdin.on('end', () => resolve(Buffer.concat(chunks)));
            process.stdin.on('error', reject);
        });
    }
    return fs.promises.readFile(file);
}

async function main() {
    const args = process.argv.slice(2);
    if (args.length > 1) {
        process.stderr.write('promcheck: usage: node promcheck.js [FILE]\n');
        process.exitCode = 2;
        return;
    }
    let buf;
    try {
        buf = await readInput(args[0]);
    } catch (e) {
        process.stderr.write(`promcheck: ${e.message}\n`);
        process.exitCode = 2;
        return;
    }
    const c = new Checker();
    try {
        c.run(buf);
    } catch (e) {
        if (!(e instanceof Violation)) throw e;
        process.stderr.write(`line ${e.line}: ${e.message}\n`);
        process.exitCode = 1;
        return;
    }
    process.stdout.write(JSON.stringify(c.result()) + '\n');
}

main().catch((e) => {
    // A bug here, not a violation: keep exit 1 for violations only.
    process.stderr.write(`promcheck: internal error: ${e && e.stack ? e.stack : e}\n`);
    process.exitCode = 2;
});
