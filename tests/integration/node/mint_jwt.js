'use strict';
// mint_jwt.js: signs JWTs for the jwt auth method tests with the npm `jose` package, an
// implementation independent of authsvc, and makes the malformed variants a hostile client
// would send (SPEC §5).
//
//   node mint_jwt.js 'SPEC'            one token on stdout (SPEC is a JSON object)
//   node mint_jwt.js < SPECS           a JSON object (one token) or an array (one token a line)
//   node mint_jwt.js jwks FILE:KID[:ALG] ...
//                                      a JWKS of the public keys of the PEM files (private or
//                                      public), each with its kid (and alg when given), use "sig"
//
// SPEC members:
//   alg          RS256/384/512, ES256/384/512 (HS256 with variant hs_pem; default: RS256 for an
//                RSA key, ES256/384/512 by the EC curve)
//   key          a PEM file holding the private signing key (PKCS#8 or traditional)
//   kid          the header kid (none when absent)
//   typ          the header typ (default "JWT"; null leaves it out)
//   header       more protected header members (e.g. {"crit":["x-ext"],"x-ext":1})
//   claims       the claims; a string "$now", "$now+N" or "$now-N" anywhere at the top level
//                becomes the current Unix time plus or minus N seconds
//   payload_raw  the exact payload text (instead of claims): duplicate keys, deep nesting
//   pad          add a claim "pad" of this many characters (oversize tokens)
//   variant      how to spoil the result:
//                  none          alg "none", empty signature (jose's UnsecuredJWT)
//                  hs_pem        HS256 keyed with the bytes of hmac_key_file (an RSA public key
//                                PEM: the classic key-confusion attack)
//                  tamper        sign claims, then swap in tamper_claims (merged over claims)
//                                as the payload, keeping the signature
//                  strip_sig     "header.payload." (signature removed)
//                  two_segments  "header.payload"
//                  four_segments "header.payload.signature.AAAA"
//                  bad_b64       the payload segment in padded standard base64 ('=' and '+/'),
//                                which strict base64url refuses
//                  der_sig       an ES* signature DER-encoded (RFC 7518 §3.4 wants raw R||S)

const crypto = require('crypto');
const fs = require('fs');
const jose = require('jose');

function b64url(buf) {
    return Buffer.from(buf).toString('base64url');
}

function expandTimes(claims) {
    const now = Math.floor(Date.now() / 1000);
    const out = {};
    for (const [k, v] of Object.entries(claims || {})) {
        const m = typeof v === 'string' ? /^\$now(?:([+-])(\d+))?$/.exec(v) : null;
        if (m) {
            const n = m[2] ? Number(m[2]) : 0;
            out[k] = m[1] === '-' ? now - n : now + n;
        } else {
            out[k] = v;
        }
    }
    return out;
}

function defaultAlg(keyObject) {
    if (keyObject.asymmetricKeyType === 'rsa') {
        return 'RS256';
    }
    if (keyObject.asymmetricKeyType === 'ec') {
        const crv = keyObject.asymmetricKeyDetails.namedCurve;
        return { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }[crv];
    }
    throw new Error(`unsupported key type ${keyObject.asymmetricKeyType}`);
}

function payloadText(spec) {
    if (spec.payload_raw !== undefined) {
        return spec.payload_raw;
    }
    const claims = expandTimes(spec.claims);
    if (spec.pad) {
        claims.pad = 'p'.repeat(spec.pad);
    }
    return JSON.stringify(claims);
}

function headerOf(spec, alg) {
    const h = { alg };
    if (spec.typ !== null) {
        h.typ = spec.typ === undefined ? 'JWT' : spec.typ;
    }
    if (spec.kid !== undefined) {
        h.kid = spec.kid;
    }
    return Object.assign(h, spec.header || {});
}

// Signs text with jose's CompactSign; any crit names in the header are declared understood so
// that jose writes them (the receiver is the one that must refuse them).
async function compactSign(text, header, key) {
    const crit = {};
    for (const name of header.crit || []) {
        crit[name] = true;
    }
    return new jose.CompactSign(new TextEncoder().encode(text))
        .setProtectedHeader(header)
        .sign(key, { crit });
}

async function mint(spec) {
    const variant = spec.variant || '';
    const text = payloadText(spec);
    if (variant === 'none') {
        const header = headerOf(spec, 'none');
        return `${b64url(JSON.stringify(header))}.${b64url(text)}.`;
    }
    if (variant === 'hs_pem') {
        const secret = fs.readFileSync(spec.hmac_key_file);
        return compactSign(text, headerOf(spec, spec.alg || 'HS256'), new Uint8Array(secret));
    }
    const keyObject = crypto.createPrivateKey(fs.readFileSync(spec.key));
    const alg = spec.alg || defaultAlg(keyObject);
    const header = headerOf(spec, alg);
    if (variant === 'der_sig') {
        const input = `${b64url(JSON.stringify(header))}.${b64url(text)}`;
        const hash = { ES256: 'sha256', ES384: 'sha384', ES512: 'sha512' }[alg];
        const sig = crypto.sign(hash, Buffer.from(input), { key: keyObject, dsaEncoding: 'der' });
        return `${input}.${b64url(sig)}`;
    }
    const token = await compactSign(text, header, keyObject);
    const [h, p, s] = token.split('.');
    switch (variant) {
    case '':
        return token;
    case 'tamper': {
        const changed = Object.assign(JSON.parse(text), expandTimes(spec.tamper_claims));
        return `${h}.${b64url(JSON.stringify(changed))}.${s}`;
    }
    case 'strip_sig':
        return `${h}.${p}.`;
    case 'two_segments':
        return `${h}.${p}`;
    case 'four_segments':
        return `${h}.${p}.${s}.AAAA`;
    case 'bad_b64': {
        // Standard base64 with padding; a payload whose length forces '=' and holds '+' or '/'.
        let std = Buffer.from(text).toString('base64');
        if (!std.endsWith('=')) {
            std = Buffer.from(`${text} `).toString('base64');
        }
        if (!std.endsWith('=')) {
            std = Buffer.from(`${text}  `).toString('base64');
        }
        return `${h}.${std}.${s}`;
    }
    default:
        throw new Error(`unknown variant ${variant}`);
    }
}

async function jwks(args) {
    const keys = [];
    for (const arg of args) {
        const [file, kid, alg] = arg.split(':');
        const pem = fs.readFileSync(file, 'utf8');
        const pub = pem.includes('PRIVATE KEY')
            ? crypto.createPublicKey(crypto.createPrivateKey(pem))
            : crypto.createPublicKey(pem);
        const jwk = await jose.exportJWK(pub);
        jwk.kid = kid;
        jwk.use = 'sig';
        if (alg) {
            jwk.alg = alg;
        }
        keys.push(jwk);
    }
    return JSON.stringify({ keys });
}

async function main() {
    const argv = process.argv.slice(2);
    if (argv[0] === 'jwks') {
        process.stdout.write(`${await jwks(argv.slice(1))}\n`);
        return;
    }
    const input = argv.length > 0 ? argv[0] : fs.readFileSync(0, 'utf8');
    const spec = JSON.parse(input);
    const specs = Array.isArray(spec) ? spec : [spec];
    const out = [];
    for (const s of specs) {
        out.push(await mint(s));
    }
    process.stdout.write(`${out.join('\n')}\n`);
}

main().catch((err) => {
    console.error(`mint_jwt.js: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
});
