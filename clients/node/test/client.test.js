'use strict';

// End-to-end test of the Node client against `tokenbroker demo` (embedded
// etcd, fake Adobe, one broker replica). The binary comes from TOKENBROKER_BIN,
// else the test builds it with `go build` from the repository.

const { after, before, describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');

const { connect, fetchWithToken, TokenBrokerError } = require('..');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const BUILD_TIMEOUT_MS = 5 * 60_000; // a cold module cache builds etcd and gRPC
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 15_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function demoBinary(tmp) {
  if (process.env.TOKENBROKER_BIN) {
    return { bin: path.resolve(process.env.TOKENBROKER_BIN) };
  }
  const bin = path.join(tmp, 'tokenbroker');
  await util.promisify(execFile)('go', ['build', '-o', bin, './cmd/tokenbroker'], {
    cwd: REPO_ROOT,
    timeout: BUILD_TIMEOUT_MS,
    maxBuffer: 16 << 20,
  });
  return { bin };
}

// startDemo starts the demo and resolves once it prints that it is serving,
// with the broker's address and the fake Adobe's URL.
async function startDemo(bin) {
  const addr = `127.0.0.1:${await freePort()}`;
  const fakeAddr = `127.0.0.1:${await freePort()}`;
  // Hour-long tokens: no scheduled refresh can land between two steps of the
  // test and change the generations it checks.
  const args = ['demo', '--listen', addr, '--fake-listen', fakeAddr, '--metrics-listen', '', '--token-lifetime', '1h'];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // The demo's log has fingerprints, never tokens; keep its tail for failures.
  let stdout = '';
  let stderrTail = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderrTail = (stderrTail + d).slice(-8192);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`demo not serving after ${START_TIMEOUT_MS} ms; stderr:\n${stderrTail}`)),
      START_TIMEOUT_MS,
    );
    child.stdout.on('data', (d) => {
      stdout += d;
      const fake = /fake Adobe \(IMS \+ Analytics\):\s+(http:\/\/\S+)/.exec(stdout);
      if (/tokenbroker demo is serving\./.test(stdout) && fake) {
        clearTimeout(timer);
        const company = /"path":"\/api\/([^/]+)\//.exec(stdout);
        resolve({ fakeURL: fake[1], company: company ? company[1] : 'fakecompany' });
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`demo exited (code ${code}, signal ${signal}) before serving; stderr:\n${stderrTail}`));
    });
  });

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    let timer;
    const deadline = new Promise((resolve) => {
      timer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS);
    });
    const how = await Promise.race([exited, deadline]);
    clearTimeout(timer);
    if (how === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
  };

  try {
    return { addr, ...(await ready), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

describe('tokenbroker demo', () => {
  let tmp;
  let demo;
  let broker;
  let suitesPath;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenbroker-node-test-'));
    const { bin } = await demoBinary(tmp);
    demo = await startDemo(bin);
    broker = connect(demo.addr, { insecure: true });
    suitesPath = `/api/${demo.company}/reportsuites/collections/suites`;
  });

  after(async () => {
    if (broker) broker.close();
    if (demo) await demo.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function revokeAccessTokens() {
    const res = await fetch(`${demo.fakeURL}/_fake/revoke?what=access`, { method: 'POST' });
    assert.equal(res.status, 200, await res.text());
  }

  test('getToken returns a token that never shows itself', async () => {
    const tok = await broker.getToken('demo');
    assert.ok(tok.generation >= 1, `generation ${tok.generation}`);
    assert.equal(tok.connection, 'demo');
    assert.equal(tok.tokenType, 'Bearer');
    assert.ok(tok.accessToken.length > 0);
    assert.ok(tok.expiresAt instanceof Date && !Number.isNaN(tok.expiresAt.getTime()));
    assert.match(tok.fingerprint, /^[0-9a-f]{8}$/);
    for (const shown of [util.inspect(tok), String(tok), JSON.stringify(tok), `${tok}`]) {
      assert.ok(!shown.includes(tok.accessToken), 'the access token is shown');
    }
  });

  test('getToken with minValiditySeconds', async () => {
    const tok = await broker.getToken('demo', 60);
    assert.ok(tok.generation >= 1);
  });

  test('invalidate returns the next generation', async () => {
    const tok = await broker.getToken('demo');
    const next = await broker.invalidate('demo', tok.generation, 'node client test');
    assert.equal(next.generation, tok.generation + 1);
    assert.notEqual(next.accessToken, tok.accessToken);
    // Reporting the same generation again is answered with the newer token.
    const again = await broker.invalidate('demo', tok.generation, 'node client test, again');
    assert.equal(again.generation, next.generation);
  });

  test('callAnalytics lists the report suites', async () => {
    const res = await broker.callAnalytics({ connection: 'demo', method: 'GET', path: suitesPath });
    assert.equal(res.statusCode, 200, res.text());
    assert.equal(res.attempts, 1);
    assert.ok(Array.isArray(res.json().content), res.text());
    assert.match(res.headers['content-type'], /json/);
  });

  test('callAnalytics after Adobe revoked the token retries once', async () => {
    const before = await broker.getToken('demo');
    await revokeAccessTokens();
    const res = await broker.callAnalytics({ connection: 'demo', path: suitesPath, query: { limit: '10' } });
    assert.equal(res.statusCode, 200, res.text());
    assert.equal(res.attempts, 2);
    assert.ok(res.generation > before.generation, `generation ${res.generation} after ${before.generation}`);
    assert.ok('content' in res.json());
  });

  test('fetchWithToken calls Adobe directly and renews a revoked token', async () => {
    const seen = [];
    const countingFetch = (req) => {
      seen.push(req.headers.get('authorization') !== null && req.headers.get('x-api-key') !== null);
      return fetch(req);
    };
    const url = `${demo.fakeURL}${suitesPath}`;
    const opts = { broker, connection: 'demo', fetch: countingFetch };

    let res = await fetchWithToken(url, {}, opts);
    assert.equal(res.status, 200, await res.clone().text());
    assert.ok('content' in (await res.json()));
    assert.deepEqual(seen, [true]);

    const before = await broker.getToken('demo');
    await revokeAccessTokens();
    seen.length = 0;
    res = await fetchWithToken(url, { headers: { accept: 'application/json' } }, opts);
    assert.equal(res.status, 200, await res.clone().text());
    assert.ok('content' in (await res.json()));
    assert.deepEqual(seen, [true, true], 'one 401, one retry');
    assert.ok((await broker.getToken('demo')).generation > before.generation);
  });

  test('getToken of an unknown connection is NOT_FOUND', async () => {
    await assert.rejects(broker.getToken('nope'), (err) => {
      assert.ok(err instanceof TokenBrokerError, String(err));
      assert.equal(err.code, 5);
      assert.equal(err.codeName, 'NOT_FOUND');
      assert.equal(err.reason, 'ERROR_REASON_CONNECTION_NOT_FOUND');
      assert.equal(err.domain, 'tokenbroker.v1');
      assert.equal(err.isRetryable, false);
      return true;
    });
  });

  test('errors carry their reason and the field at fault', async () => {
    await assert.rejects(broker.getToken(''), (err) => {
      assert.ok(err instanceof TokenBrokerError);
      assert.equal(err.codeName, 'INVALID_ARGUMENT');
      assert.equal(err.reason, 'ERROR_REASON_INVALID_ARGUMENT');
      assert.equal(err.metadata.field, 'connection');
      assert.deepEqual(
        err.fieldViolations.map((v) => v.field),
        ['connection'],
      );
      return true;
    });
    const tok = await broker.getToken('demo');
    await assert.rejects(broker.invalidate('demo', tok.generation + 100, 'from the future'), {
      name: 'TokenBrokerError',
      codeName: 'INVALID_ARGUMENT',
      reason: 'ERROR_REASON_GENERATION_AHEAD',
    });
    await assert.rejects(broker.callAnalytics({ connection: 'demo', path: '/api/../etc' }), {
      name: 'TokenBrokerError',
      reason: 'ERROR_REASON_REQUEST_NOT_ALLOWED',
    });
  });
});
