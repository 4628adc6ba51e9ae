// verify_jwt_svid.js: verifies a JWT-SVID the way a SPIFFE relying party does, with the `jose`
// package and nothing from authsvc but its public bundle (SPEC §6, SPIFFE JWT-SVID §3-§4):
// fetch svid/bundle, keep the keys with use "jwt-svid" only, and verify the token against them.
//
// Environment: AUTHSVC_ADDR (server), JWT_SVID (the token), EXPECT_AUD (an audience the token must
// carry), EXPECT_SUB (the SPIFFE ID it must name). Prints "N passed, N failed"; exits 1 on a failure.
'use strict';

const jose = require('jose');

const ADDR = process.env.AUTHSVC_ADDR;
const TOKEN = process.env.JWT_SVID;
const AUD = process.env.EXPECT_AUD;
const SUB = process.env.EXPECT_SUB;

let passed = 0;
let failed = 0;

function check(desc, ok, detail) {
    if (ok) {
        passed++;
    } else {
        failed++;
        console.error(`FAIL: ${desc}${detail !== undefined ? `: ${detail}` : ''}`);
    }
}

// Resolves to the error a promise rejects with, or null when it resolves.
async function rejection(p) {
    try {
        await p;
        return null;
    } catch (e) {
        return e;
    }
}

// A JWKS of the bundle keys with the given SPIFFE use. jose refuses keys whose "use" is not "sig",
// so the SPIFFE-specific "use" is dropped once the key has been selected by it, as SPIFFE
// libraries do when they hand a bundle to a JOSE implementation.
function jwksFor(bundle, use) {
    const keys = bundle.keys.filter((k) => k.use === use).map((k) => {
        const { use: _use, ...rest } = k;
        return rest;
    });
    return { keys };
}

async function main() {
    for (const [name, v] of Object.entries({ AUTHSVC_ADDR: ADDR, JWT_SVID: TOKEN, EXPECT_AUD: AUD, EXPECT_SUB: SUB })) {
        if (!v) {
            throw new Error(`${name} is not set`);
        }
    }
    const res = await fetch(`${ADDR}/v1/svid/bundle`);
    check('svid/bundle answers 200', res.status === 200, res.status);
    const bundle = await res.json();
    check('the bundle has a keys array', Array.isArray(bundle.keys));

    const jwtJwks = jwksFor(bundle, 'jwt-svid');
    check('the bundle has at least one jwt-svid key', jwtJwks.keys.length >= 1, jwtJwks.keys.length);
    const keySet = jose.createLocalJWKSet(jwtJwks);

    // The header as sent, before any verification.
    const header = jose.decodeProtectedHeader(TOKEN);
    check('header alg is ES256', header.alg === 'ES256', header.alg);
    check('header typ is JWT', header.typ === 'JWT', header.typ);
    check('header has a kid', typeof header.kid === 'string' && header.kid.length > 0, header.kid);
    check('the kid names a jwt-svid key of the bundle',
        jwtJwks.keys.some((k) => k.kid === header.kid), header.kid);

    let payload = null;
    try {
        const r = await jose.jwtVerify(TOKEN, keySet, { algorithms: ['ES256'], audience: AUD });
        payload = r.payload;
        check('jwtVerify accepts the JWT-SVID', true);
        check('verified protected header alg is ES256', r.protectedHeader.alg === 'ES256');
    } catch (e) {
        check('jwtVerify accepts the JWT-SVID', false, `${e.code || ''} ${e.message}`);
    }
    if (payload !== null) {
        const now = Math.floor(Date.now() / 1000);
        const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
        check('sub is the expected SPIFFE ID', payload.sub === SUB, payload.sub);
        check('aud contains the expected audience', aud.includes(AUD), JSON.stringify(payload.aud));
        check('exp is an integer in the future', Number.isInteger(payload.exp) && payload.exp > now, payload.exp);
        check('iat is an integer, not in the future', Number.isInteger(payload.iat) && payload.iat <= now + 5, payload.iat);
        check('exp - iat is the default 5m or less', payload.exp - payload.iat <= 300 && payload.exp > payload.iat,
            payload.exp - payload.iat);
        // 128 random bits in base64url: 22 characters without padding.
        check('jti is 128 bits of base64url', /^[A-Za-z0-9_-]{22}$/.test(payload.jti || ''), payload.jti);
    }

    // Negative twins: each must be refused.
    let e = await rejection(jose.jwtVerify(TOKEN, keySet, { algorithms: ['ES256'], audience: 'not-the-audience' }));
    check('a wrong audience is refused', e !== null && e.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED', e && e.code);

    const parts = TOKEN.split('.');
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
    claims.sub = 'spiffe://example.org/ns/prod/sa/attacker';
    const forged = [parts[0], Buffer.from(JSON.stringify(claims)).toString('base64url'), parts[2]].join('.');
    e = await rejection(jose.jwtVerify(forged, keySet, { algorithms: ['ES256'], audience: AUD }));
    check('a token with an edited payload is refused', e !== null && e.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
        e && e.code);

    const sig = Buffer.from(parts[2], 'base64url');
    sig[5] ^= 0x01;
    const badSig = [parts[0], parts[1], sig.toString('base64url')].join('.');
    e = await rejection(jose.jwtVerify(badSig, keySet, { algorithms: ['ES256'], audience: AUD }));
    check('a token with a flipped signature bit is refused', e !== null, e && e.code);

    // The x509-svid keys carry no kid and must not verify JWT-SVIDs.
    const x509Jwks = jwksFor(bundle, 'x509-svid');
    e = await rejection(jose.jwtVerify(TOKEN, jose.createLocalJWKSet(x509Jwks), { algorithms: ['ES256'], audience: AUD }));
    check('the x509-svid keys do not verify the JWT-SVID', e !== null, e && e.code);

    // alg "none" with the same claims is never accepted.
    const none = [Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url'), parts[1], ''].join('.');
    e = await rejection(jose.jwtVerify(none, keySet, { algorithms: ['ES256'], audience: AUD }));
    check('alg none is refused', e !== null, e && e.code);
}

main()
    .catch((err) => {
        failed++;
        console.error(`FAIL: ${err.stack || err}`);
    })
    .finally(() => {
        console.log(`${passed} passed, ${failed} failed`);
        process.exitCode = failed === 0 ? 0 : 1;
    });
