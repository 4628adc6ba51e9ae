'use strict';
// Vault wire compatibility: drives authsvc with the node-vault npm client and checks that each call
// sees what HashiCorp Vault would return (SPEC §2-§4).
//
//   AUTHSVC_ADDR=http://127.0.0.1:8200 ROOT_TOKEN=ast.... node vault_compat.js
//
// Prints one line per check, then "N passed, N failed"; exits 1 on any failure.
// node-vault 0.12 does not validate responses against its schemas, so every field is checked here.

const assert = require('assert');

// node-vault reads these from the environment when its config leaves them unset.
delete process.env.VAULT_PREFIX;
delete process.env.VAULT_NAMESPACE;

const nodeVault = require('node-vault');

const ADDR = process.env.AUTHSVC_ADDR;
const ROOT_TOKEN = process.env.ROOT_TOKEN;

let passed = 0;
let failed = 0;

// check(desc, fn): fn runs assertions (sync or async); a throw is one failure.
async function check(desc, fn) {
    try {
        await fn();
        passed++;
        console.log(`ok   ${desc}`);
    } catch (err) {
        failed++;
        console.log(`FAIL ${desc}: ${describe(err)}`);
    }
}

function describe(err) {
    if (err && err.response && err.response.statusCode !== undefined) {
        return `HTTP ${err.response.statusCode} ${JSON.stringify(err.response.body)}`;
    }
    if (err instanceof assert.AssertionError) {
        return err.message.replace(/\n+/g, ' ');
    }
    return err && err.stack ? err.stack.split('\n')[0] : String(err);
}

// expectReject(promise, status): the call must fail with that HTTP status; returns the error.
async function expectReject(promise, status) {
    let err;
    try {
        const res = await promise;
        assert.fail(`expected HTTP ${status}, call resolved with ${JSON.stringify(res)}`);
    } catch (e) {
        if (e instanceof assert.AssertionError) {
            throw e;
        }
        err = e;
    }
    assert.ok(err.response, `expected HTTP ${status}, got ${describe(err)}`);
    assert.strictEqual(err.response.statusCode, status, `status (body ${JSON.stringify(err.response.body)})`);
    return err;
}

function client(token) {
    return nodeVault({ endpoint: ADDR, token, apiVersion: 'v1' });
}

function sorted(list) {
    return [...list].sort();
}

async function main() {
    if (!ADDR || !ROOT_TOKEN) {
        console.error('vault_compat.js: set AUTHSVC_ADDR and ROOT_TOKEN');
        process.exit(2);
    }
    const root = client(ROOT_TOKEN);
    const name = 'node-vault-app';
    const rules = JSON.stringify({
        path: {
            'svid/x509': { capabilities: ['update'] },
            'connect/intentions/*': { capabilities: ['read', 'list'] },
        },
    });

    // GET /v1/sys/health: a bare object, not the envelope.
    let health;
    await check('health(): initialized, not sealed, not standby', async () => {
        health = await root.health();
        assert.strictEqual(health.initialized, true, 'initialized');
        assert.strictEqual(health.sealed, false, 'sealed');
        assert.strictEqual(health.standby, false, 'standby');
    });
    await check('health(): version is a string, server_time_utc an integer', () => {
        assert.strictEqual(typeof health.version, 'string', 'version');
        assert.ok(Number.isInteger(health.server_time_utc), 'server_time_utc');
        assert.strictEqual(health.data, undefined, 'no envelope');
    });

    // GET /v1/sys/policy: keys and policies at the top level (Vault's legacy API copies data up).
    await check('policies(): root and default in both policies and keys', async () => {
        const res = await root.policies();
        for (const field of ['policies', 'keys']) {
            assert.ok(Array.isArray(res[field]), `${field} is an array`);
            assert.ok(res[field].includes('root'), `${field} has root`);
            assert.ok(res[field].includes('default'), `${field} has default`);
        }
    });

    // PUT /v1/sys/policy/:name with body {name, rules}.
    await check('addPolicy({name, rules}) resolves', async () => {
        await root.addPolicy({ name, rules });
    });

    // GET /v1/sys/policy/:name: {name, rules} at the top level and in data.
    await check('getPolicy({name}): name and rules as written', async () => {
        const res = await root.getPolicy({ name });
        assert.strictEqual(res.name, name, 'name');
        assert.strictEqual(res.rules, rules, 'rules');
        assert.ok(res.data, 'data');
        assert.strictEqual(res.data.name, name, 'data.name');
        assert.strictEqual(res.data.rules, rules, 'data.rules');
    });

    await check('policies() lists the new policy', async () => {
        const res = await root.policies();
        assert.ok(res.policies.includes(name), 'policies');
        assert.ok(res.keys.includes(name), 'keys');
    });

    // POST /v1/auth/token/create {policies, ttl}. node-vault then switches the client to the new
    // token (tokenSource), so the root client's token is put back afterwards.
    let auth;
    await check("tokenCreate({policies:[name], ttl:'1h'}): Vault's auth block", async () => {
        const res = await root.tokenCreate({ policies: [name], ttl: '1h' });
        root.token = ROOT_TOKEN;
        auth = res.auth;
        assert.ok(auth, 'auth');
        assert.strictEqual(typeof auth.client_token, 'string', 'client_token');
        assert.ok(auth.client_token.startsWith('ast.'), `client_token prefix: ${auth.client_token.slice(0, 4)}`);
        assert.strictEqual(auth.client_token.length, 4 + 43, 'client_token length');
        assert.strictEqual(typeof auth.accessor, 'string', 'accessor');
        assert.ok(auth.accessor.length > 0, 'accessor non-empty');
        assert.notStrictEqual(auth.accessor, auth.client_token, 'accessor differs from token');
        assert.deepStrictEqual(auth.policies, sorted(['default', name]), 'policies');
        assert.strictEqual(auth.lease_duration, 3600, 'lease_duration');
        assert.strictEqual(auth.renewable, true, 'renewable');
        assert.strictEqual(auth.token_type, 'service', 'token_type');
        assert.strictEqual(auth.orphan, false, 'orphan');
    });
    const token = auth ? auth.client_token : 'ast.missing';
    const app = client(token);

    // GET /v1/auth/token/lookup-self with the new token.
    await check('tokenLookupSelf(): Vault token fields', async () => {
        const res = await app.tokenLookupSelf();
        const d = res.data;
        assert.ok(d, 'data');
        assert.strictEqual(d.id, token, 'id');
        assert.strictEqual(d.accessor, auth.accessor, 'accessor');
        assert.deepStrictEqual(d.policies, sorted(['default', name]), 'policies');
        assert.ok(Number.isInteger(d.ttl) && d.ttl >= 3590 && d.ttl <= 3600, `ttl ${d.ttl}`);
        assert.strictEqual(d.creation_ttl, 3600, 'creation_ttl');
        assert.strictEqual(d.explicit_max_ttl, 0, 'explicit_max_ttl');
        assert.strictEqual(d.display_name, 'token', 'display_name');
        assert.strictEqual(d.type, 'service', 'type');
        assert.strictEqual(d.renewable, true, 'renewable');
        assert.strictEqual(d.orphan, false, 'orphan');
        assert.strictEqual(d.num_uses, 0, 'num_uses');
        assert.strictEqual(d.path, 'auth/token/create', 'path');
    });

    // POST /v1/auth/token/renew-self {increment}.
    await check("tokenRenewSelf({increment:'2h'}): lease_duration 7200, same token", async () => {
        const res = await app.tokenRenewSelf({ increment: '2h' });
        assert.ok(res.auth, 'auth');
        assert.strictEqual(res.auth.client_token, token, 'client_token');
        assert.strictEqual(res.auth.accessor, auth.accessor, 'accessor');
        assert.strictEqual(res.auth.lease_duration, 7200, 'lease_duration');
        assert.strictEqual(res.auth.renewable, true, 'renewable');
    });

    // Generic write: POST /v1/auth/token/create with integer ttl and meta.
    await check("write('auth/token/create', {...}): a second token", async () => {
        const res = await root.write('auth/token/create', {
            policies: [name],
            ttl: 1800,
            meta: { app: 'node-vault' },
        });
        assert.ok(res.auth, 'auth');
        assert.ok(res.auth.client_token.startsWith('ast.'), 'client_token prefix');
        assert.notStrictEqual(res.auth.client_token, token, 'a new token');
        assert.notStrictEqual(res.auth.accessor, auth.accessor, 'a new accessor');
        assert.deepStrictEqual(res.auth.policies, sorted(['default', name]), 'policies');
        assert.strictEqual(res.auth.lease_duration, 1800, 'lease_duration');
        assert.deepStrictEqual(res.auth.metadata, { app: 'node-vault' }, 'metadata');
        assert.strictEqual(root.token, ROOT_TOKEN, 'write() leaves the client token alone');
    });

    // POST /v1/auth/token/revoke-self: 204, so node-vault resolves with an empty body.
    await check('tokenRevokeSelf() resolves (204)', async () => {
        await app.tokenRevokeSelf();
    });

    await check('tokenLookupSelf() after revocation: 403 permission denied', async () => {
        const err = await expectReject(app.tokenLookupSelf(), 403);
        assert.ok(/permission denied/.test(err.message), `message: ${err.message}`);
    });

    // DELETE /v1/sys/policy/:name, then the read is 404.
    await check('removePolicy({name}) resolves', async () => {
        await root.removePolicy({ name });
    });
    await check('getPolicy({name}) after removal: 404', async () => {
        await expectReject(root.getPolicy({ name }), 404);
    });
    await check('policies() no longer lists it', async () => {
        const res = await root.policies();
        assert.ok(!res.policies.includes(name), 'policies');
    });

    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
}

main().catch((err) => {
    console.log(`FAIL unexpected: ${describe(err)}`);
    console.log(`${passed} passed, ${failed + 1} failed`);
    process.exit(1);
});
