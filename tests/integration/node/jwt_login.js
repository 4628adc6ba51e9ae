'use strict';
// jwt_login.js: the jwt auth method through a real Vault client (SPEC §5): node-vault's
// write('auth/<mount>/login', {role, jwt}) and the login answer in Vault's shape, then the new
// token used through node-vault, and a refused login seen as Vault clients see it.
//
// Environment:
//   AUTHSVC_ADDR       the server
//   JWT_FILE           a JWT that the role accepts
//   ROLE               the role; MOUNT the jwt mount (default "jwt")
//   EXPECT_POLICIES    the token's policies, comma-separated (e.g. "app-pol,default")
//   EXPECT_LEASE       the expected auth.lease_duration in seconds (default 3600)
//   EXPECT_SPIFFE_ID   the SPIFFE ID the token must hold
// Prints one line per check, then "N passed, N failed"; exits 1 on any failure.

const assert = require('assert');
const fs = require('fs');

delete process.env.VAULT_PREFIX;
delete process.env.VAULT_NAMESPACE;

const nodeVault = require('node-vault');

const ADDR = process.env.AUTHSVC_ADDR;
const MOUNT = process.env.MOUNT || 'jwt';
const ROLE = process.env.ROLE;
const POLICIES = (process.env.EXPECT_POLICIES || '').split(',').filter((p) => p !== '');
const LEASE = Number(process.env.EXPECT_LEASE || 3600);
const SPIFFE_ID = process.env.EXPECT_SPIFFE_ID;

let passed = 0;
let failed = 0;

async function check(desc, fn) {
    try {
        await fn();
        passed++;
        console.log(`ok   ${desc}`);
    } catch (err) {
        failed++;
        const detail = err && err.response
            ? `HTTP ${err.response.statusCode} ${JSON.stringify(err.response.body)}`
            : (err && err.message ? err.message.replace(/\n+/g, ' ') : String(err));
        console.log(`FAIL ${desc}: ${detail}`);
    }
}

async function main() {
    if (!ADDR || !ROLE || !process.env.JWT_FILE) {
        console.error('jwt_login.js: set AUTHSVC_ADDR, ROLE and JWT_FILE');
        process.exit(2);
    }
    const jwt = fs.readFileSync(process.env.JWT_FILE, 'utf8').trim();
    const anon = nodeVault({ endpoint: ADDR, apiVersion: 'v1' });
    let res;
    await check(`write('auth/${MOUNT}/login', {role, jwt}) resolves`, async () => {
        res = await anon.write(`auth/${MOUNT}/login`, { role: ROLE, jwt });
        assert.ok(res && typeof res === 'object', 'an object');
    });
    if (!res) {
        console.log(`${passed} passed, ${failed + 1} failed`);
        process.exit(1);
    }
    const auth = res.auth || {};
    await check('auth.client_token is ast. + 43 base64url characters', () => {
        assert.match(auth.client_token, /^ast\.[A-Za-z0-9_-]{43}$/);
    });
    await check('auth.accessor is a non-empty string, not the token', () => {
        assert.strictEqual(typeof auth.accessor, 'string');
        assert.ok(auth.accessor.length > 0);
        assert.notStrictEqual(auth.accessor, auth.client_token);
    });
    await check(`auth.policies is [${POLICIES}]`, () => {
        assert.deepStrictEqual([...auth.policies].sort(), [...POLICIES].sort());
    });
    await check('auth.token_policies equals auth.policies', () => {
        assert.deepStrictEqual([...auth.token_policies].sort(), [...auth.policies].sort());
    });
    await check(`auth.metadata.role is "${ROLE}"`, () => {
        assert.strictEqual(auth.metadata && auth.metadata.role, ROLE);
    });
    await check(`auth.lease_duration is ${LEASE}`, () => {
        assert.strictEqual(auth.lease_duration, LEASE);
    });
    await check('auth.renewable is true', () => {
        assert.strictEqual(auth.renewable, true);
    });
    await check('auth.orphan is true', () => {
        assert.strictEqual(auth.orphan, true);
    });
    await check('the envelope: lease_id "", renewable false, lease_duration 0, data null', () => {
        assert.strictEqual(res.lease_id, '');
        assert.strictEqual(res.renewable, false);
        assert.strictEqual(res.lease_duration, 0);
        assert.ok(res.data === null || (typeof res.data === 'object' && Object.keys(res.data).length === 0),
            `data ${JSON.stringify(res.data)}`);
    });

    const user = nodeVault({ endpoint: ADDR, apiVersion: 'v1', token: auth.client_token });
    await check('tokenLookupSelf with the login token: same accessor, policies, orphan, path', async () => {
        const self = await user.tokenLookupSelf();
        assert.strictEqual(self.data.accessor, auth.accessor);
        assert.deepStrictEqual([...self.data.policies].sort(), [...POLICIES].sort());
        assert.strictEqual(self.data.orphan, true);
        assert.strictEqual(self.data.path, `auth/${MOUNT}/login`);
        assert.strictEqual(self.data.meta.role, ROLE);
        if (SPIFFE_ID) {
            assert.deepStrictEqual(self.data.spiffe_ids, [SPIFFE_ID]);
        }
    });
    await check('a tampered JWT is refused with HTTP 400 and an errors array', async () => {
        const parts = jwt.split('.');
        const bad = `${parts[0]}.${Buffer.from('{"sub":"root"}').toString('base64url')}.${parts[2]}`;
        let err;
        try {
            await anon.write(`auth/${MOUNT}/login`, { role: ROLE, jwt: bad });
        } catch (e) {
            err = e;
        }
        assert.ok(err && err.response, 'the call must fail with an HTTP answer');
        assert.strictEqual(err.response.statusCode, 400);
        assert.ok(Array.isArray(err.response.body.errors) && err.response.body.errors.length === 1,
            JSON.stringify(err.response.body));
    });
    await check('revoke-self through node-vault, then lookup-self is 403', async () => {
        await user.write('auth/token/revoke-self', {});
        let err;
        try {
            await user.tokenLookupSelf();
        } catch (e) {
            err = e;
        }
        assert.ok(err && err.response, 'the lookup must fail');
        assert.strictEqual(err.response.statusCode, 403);
    });

    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
}

main().catch((err) => {
    console.error(`jwt_login.js: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
});
