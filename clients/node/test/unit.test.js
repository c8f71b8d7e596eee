'use strict';

// Tests of the client that need no broker: an in-process gRPC server stands in
// for it, and fetchWithToken gets a stand-in broker and fetch.

const { after, before, describe, test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { Readable } = require('node:stream');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const { connect, fetchWithToken, TokenBrokerError, PROTO_ROOT } = require('..');

function rpcRoot() {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) =>
    target.startsWith('google/protobuf/') ? target : path.join(__dirname, '..', 'proto', target);
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
  return root;
}

// statusError is a gRPC error as the broker sends it: a code, a message and a
// google.rpc.Status with an ErrorInfo in the grpc-status-details-bin trailer.
function statusError(root, code, message, reason, extraDetails = []) {
  const ErrorInfo = root.lookupType('google.rpc.ErrorInfo');
  const Status = root.lookupType('google.rpc.Status');
  const details = [
    {
      type_url: 'type.googleapis.com/google.rpc.ErrorInfo',
      value: ErrorInfo.encode({ reason, domain: 'tokenbroker.v1', metadata: { connection: 'x' } }).finish(),
    },
    ...extraDetails,
  ];
  const md = new grpc.Metadata();
  md.set('grpc-status-details-bin', Buffer.from(Status.encode({ code, message, details }).finish()));
  return { code, details: message, metadata: md };
}

describe('connect against a stand-in broker', () => {
  let server;
  let addr;
  const seen = [];
  const root = rpcRoot();

  before(async () => {
    const def = protoLoader.loadSync('tokenbroker/v1/tokenbroker.proto', { includeDirs: [PROTO_ROOT], keepCase: true });
    const pkg = grpc.loadPackageDefinition(def).tokenbroker.v1;
    server = new grpc.Server();
    server.addService(pkg.TokenBroker.service, {
      GetToken(call, cb) {
        seen.push({ authorization: call.metadata.get('authorization')[0], deadline: call.getDeadline() });
        const { connection, min_validity: minValidity } = call.request;
        if (connection === 'nope') {
          cb(statusError(root, grpc.status.NOT_FOUND, 'no such connection: "nope"', 'ERROR_REASON_CONNECTION_NOT_FOUND'));
          return;
        }
        if (connection === 'bare') {
          cb({ code: grpc.status.UNAVAILABLE, details: 'no details here' });
          return;
        }
        cb(null, {
          connection,
          access_token: 'secret-access-token',
          token_type: 'Bearer',
          expires_at: { seconds: 2000000000, nanos: 500000000 },
          generation: minValidity ? Number(minValidity.seconds) : 7,
          api_key: 'client-id',
        });
      },
      Invalidate(call, cb) {
        const gen = Number(call.request.generation);
        cb(null, { token: { connection: call.request.connection, access_token: `t${gen + 1}`, generation: gen + 1 } });
      },
      CallAnalytics(call, cb) {
        const r = call.request;
        cb(null, {
          status_code: 201,
          headers: { 'content-type': 'application/json' },
          body: Buffer.from(
            JSON.stringify({ method: r.method, path: r.path, query: r.query, headers: r.headers, body: r.body.toString() }),
          ),
          generation: 9,
          attempts: 1,
        });
      },
    });
    const port = await new Promise((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    addr = `127.0.0.1:${port}`;
  });

  after(() => {
    server.forceShutdown();
  });

  test('getToken converts the token and sends the API key and a deadline', async () => {
    const c = connect(addr, { insecure: true, apiKey: 'my-key' });
    try {
      const tok = await c.getToken('demo');
      assert.equal(tok.generation, 7);
      assert.equal(tok.accessToken, 'secret-access-token');
      assert.equal(tok.apiKey, 'client-id');
      assert.equal(tok.expiresAt.toISOString(), '2033-05-18T03:33:20.500Z');
      assert.deepEqual(tok.headers(), { authorization: 'Bearer secret-access-token', 'x-api-key': 'client-id' });
      assert.equal(seen.at(-1).authorization, 'Bearer my-key');
      assert.ok(seen.at(-1).deadline instanceof Date || Number.isFinite(seen.at(-1).deadline));
      assert.equal((await c.getToken('demo', 90)).generation, 90, 'min_validity is sent');
    } finally {
      c.close();
    }
  });

  test('errors decode the ErrorInfo of grpc-status-details-bin', async () => {
    const c = connect(addr, { insecure: true });
    try {
      await assert.rejects(c.getToken('nope'), (err) => {
        assert.ok(err instanceof TokenBrokerError);
        assert.equal(err.code, grpc.status.NOT_FOUND);
        assert.equal(err.reason, 'ERROR_REASON_CONNECTION_NOT_FOUND');
        assert.equal(err.domain, 'tokenbroker.v1');
        assert.deepEqual(err.metadata, { connection: 'x' });
        assert.equal(err.brokerMessage, 'no such connection: "nope"');
        assert.equal(err.message, 'tokenbroker: NOT_FOUND (ERROR_REASON_CONNECTION_NOT_FOUND): no such connection: "nope"');
        return true;
      });
      await assert.rejects(c.getToken('bare'), (err) => {
        assert.ok(err instanceof TokenBrokerError);
        assert.equal(err.codeName, 'UNAVAILABLE');
        assert.equal(err.reason, '');
        assert.equal(err.isRetryable, true);
        return true;
      });
      assert.equal(seen.at(-1).authorization, undefined, 'no API key, no authorization header');
    } finally {
      c.close();
    }
  });

  test('invalidate and callAnalytics', async () => {
    const c = connect(addr, { insecure: true });
    try {
      assert.equal((await c.invalidate('demo', 41, 'test')).generation, 42);
      assert.equal((await c.invalidate('demo', '41', 'test')).generation, 42);
      await assert.rejects(c.invalidate('demo', -1, 'test'), TypeError);
      const res = await c.callAnalytics({
        connection: 'demo',
        method: 'POST',
        path: '/api/x/reports',
        query: { limit: 5 },
        body: { rsid: 'r' },
      });
      assert.equal(res.statusCode, 201);
      assert.equal(res.generation, 9);
      assert.deepEqual(res.json(), {
        method: 'POST',
        path: '/api/x/reports',
        query: { limit: '5' },
        headers: { 'content-type': 'application/json' },
        body: '{"rsid":"r"}',
      });
    } finally {
      c.close();
    }
  });

  test('an aborted call rejects with CANCELLED', async () => {
    const c = connect(addr, { insecure: true });
    try {
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(c.getToken('demo', 0, { signal: ac.signal }), { codeName: 'CANCELLED' });
    } finally {
      c.close();
    }
  });
});

describe('connect options', () => {
  test('refuses an API key in plaintext off loopback', () => {
    assert.throws(() => connect('broker.example.com:443', { insecure: true, apiKey: 'k' }), /plaintext/);
    assert.throws(() => connect('dns:///broker.example.com:443', { insecure: true, apiKey: 'k' }), /plaintext/);
    for (const addr of ['127.0.0.1:7443', 'localhost:7443', '[::1]:7443', 'dns:///127.0.0.1:7443', 'unix:/tmp/tb.sock']) {
      connect(addr, { insecure: true, apiKey: 'k' }).close();
    }
    connect('broker.example.com:443', { apiKey: 'k' }).close(); // TLS
  });

  test('refuses half of mutual TLS and TLS files with insecure', () => {
    assert.throws(() => connect('b:443', { cert: 'x' }), /both cert and key/);
    assert.throws(() => connect('b:443', { insecure: true, ca: 'x' }), /insecure/);
    assert.throws(() => connect(''), TypeError);
  });
});

describe('fetchWithToken', () => {
  // A stand-in broker that counts getToken and invalidate.
  function fakeBroker({ invalidateError } = {}) {
    let gen = 1;
    const calls = [];
    const token = () => ({
      generation: gen,
      headers: () => ({ authorization: `Bearer t${gen}`, 'x-api-key': 'client-id' }),
    });
    return {
      calls,
      async getToken(connection) {
        calls.push(['getToken', connection]);
        return token();
      },
      async invalidate(connection, generation, reason) {
        calls.push(['invalidate', connection, generation, reason]);
        if (invalidateError) throw invalidateError;
        gen = generation + 1;
        return token();
      },
    };
  }

  // fakeFetch answers 401 to a token in `rejected`, else `status`, and records
  // what it was sent.
  function fakeFetch({ rejected = [], status = 200 } = {}) {
    const sent = [];
    const f = async (req) => {
      const body = req.body ? await req.text() : null;
      sent.push({ method: req.method, url: req.url, authorization: req.headers.get('authorization'), apiKey: req.headers.get('x-api-key'), accept: req.headers.get('accept'), body });
      const auth = req.headers.get('authorization');
      return new Response('{}', { status: rejected.includes(auth) ? 401 : status });
    };
    f.sent = sent;
    return f;
  }

  test('on a 401 it reports the generation and retries once with the new token', async () => {
    const broker = fakeBroker();
    const f = fakeFetch({ rejected: ['Bearer t1'] });
    const res = await fetchWithToken(
      'https://api.example/api/c/reports?secret=1',
      { method: 'POST', body: '{"a":1}', headers: { accept: 'application/json' } },
      { broker, connection: 'adobe', fetch: f },
    );
    assert.equal(res.status, 200);
    assert.deepEqual(
      f.sent.map((s) => [s.authorization, s.apiKey, s.accept, s.body]),
      [
        ['Bearer t1', 'client-id', 'application/json', '{"a":1}'],
        ['Bearer t2', 'client-id', 'application/json', '{"a":1}'],
      ],
    );
    assert.deepEqual(broker.calls, [
      ['getToken', 'adobe'],
      ['invalidate', 'adobe', 1, 'HTTP 401 from POST api.example/api/c/reports'],
    ]);
  });

  test('a second 401 is returned, not retried again', async () => {
    const broker = fakeBroker();
    const f = fakeFetch({ rejected: ['Bearer t1', 'Bearer t2'] });
    const res = await fetchWithToken('https://api.example/x', {}, { broker, connection: 'adobe', fetch: f });
    assert.equal(res.status, 401);
    assert.equal(f.sent.length, 2);
  });

  test('a 403 is not about the token', async () => {
    const broker = fakeBroker();
    const f = fakeFetch({ status: 403 });
    const res = await fetchWithToken('https://api.example/x', {}, { broker, connection: 'adobe', fetch: f });
    assert.equal(res.status, 403);
    assert.equal(f.sent.length, 1);
    assert.deepEqual(broker.calls, [['getToken', 'adobe']]);
  });

  test('a streamed body is not sent twice, but its token is reported', async () => {
    const broker = fakeBroker();
    const f = fakeFetch({ rejected: ['Bearer t1'] });
    const body = Readable.toWeb(Readable.from([Buffer.from('chunk')]));
    const res = await fetchWithToken('https://api.example/x', { method: 'PUT', body, duplex: 'half' }, { broker, connection: 'adobe', fetch: f });
    assert.equal(res.status, 401);
    assert.equal(f.sent.length, 1);
    assert.equal(broker.calls.at(-1)[0], 'invalidate');
  });

  test('a failed report rejects with its error', async () => {
    const err = new TokenBrokerError({ code: grpc.status.FAILED_PRECONDITION, message: 'log in again', reason: 'ERROR_REASON_NEEDS_REAUTH' });
    const broker = fakeBroker({ invalidateError: err });
    const f = fakeFetch({ rejected: ['Bearer t1'] });
    await assert.rejects(fetchWithToken('https://api.example/x', {}, { broker, connection: 'adobe', fetch: f }), err);
  });
});
