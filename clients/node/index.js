'use strict';

// @tokenbroker/client: the Node.js client of the token broker.
//
// It loads the contract, proto/tokenbroker/v1/tokenbroker.proto at the root of
// the repository, at run time with @grpc/proto-loader. The loader runs with
// keepCase: false, so the raw messages (client.raw) use lowerCamelCase field
// names, the proto3 JSON names that grpcurl prints too: accessToken,
// minValidity, statusCode. 64-bit integers (generation) come as strings from
// the loader; the wrappers below turn them into numbers (a generation grows by
// one per refresh and stays far below 2^53).
//
// Nothing here logs, and a Token never shows its access token when printed,
// inspected or turned into JSON.

const crypto = require('node:crypto');
const path = require('node:path');
const util = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

/** Directory of the repository's protos (tokenbroker/v1/tokenbroker.proto). */
const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
/** Directory of the vendored google/rpc protos that describe error details. */
const RPC_PROTO_ROOT = path.join(__dirname, 'proto');

/** The google.rpc.ErrorInfo domain of every error of the broker. */
const ERROR_DOMAIN = 'tokenbroker.v1';

const DEFAULT_TIMEOUT_MS = 30_000;
const USER_AGENT = 'tokenbroker-node/0.1.0';

// The same policy as the Go client: retry on UNAVAILABLE the calls that are
// safe to repeat. GetToken and the Admin reads have no side effect; Invalidate
// is idempotent by generation. CallAnalytics, SeedToken and RefreshNow are left
// out: each may have acted before the error came back.
const SERVICE_CONFIG = {
  methodConfig: [
    {
      name: [
        { service: 'tokenbroker.v1.TokenBroker', method: 'GetToken' },
        { service: 'tokenbroker.v1.TokenBroker', method: 'Invalidate' },
        { service: 'tokenbroker.v1.Admin', method: 'ListConnections' },
        { service: 'tokenbroker.v1.Admin', method: 'GetConnection' },
        { service: 'tokenbroker.v1.Admin', method: 'ListReplicas' },
      ],
      retryPolicy: {
        maxAttempts: 4,
        initialBackoff: '0.1s',
        maxBackoff: '2s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    },
  ],
  retryThrottling: { maxTokens: 10, tokenRatio: 0.1 },
};

let services; // { TokenBroker, Admin } constructors, loaded once
function loadServices() {
  if (!services) {
    const def = protoLoader.loadSync('tokenbroker/v1/tokenbroker.proto', {
      includeDirs: [PROTO_ROOT],
      keepCase: false,
      longs: String,
      enums: String,
      bytes: Buffer,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def).tokenbroker.v1;
    services = { TokenBroker: pkg.TokenBroker, Admin: pkg.Admin };
  }
  return services;
}

let rpcTypes; // google.rpc.Status and the detail types, loaded once
function loadRpcTypes() {
  if (!rpcTypes) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) =>
      // google/protobuf/any.proto comes from protobufjs' bundled copy.
      target.startsWith('google/protobuf/') ? target : path.join(RPC_PROTO_ROOT, target);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: false });
    rpcTypes = {
      Status: root.lookupType('google.rpc.Status'),
      ErrorInfo: root.lookupType('google.rpc.ErrorInfo'),
      BadRequest: root.lookupType('google.rpc.BadRequest'),
    };
  }
  return rpcTypes;
}

const CODE_NAMES = Object.fromEntries(
  Object.entries(grpc.status)
    .filter(([, code]) => typeof code === 'number')
    .map(([name, code]) => [code, name]),
);

/**
 * TokenBrokerError is the error of every call to the broker.
 *
 *   code        gRPC status code, a number (5 is NOT_FOUND); see grpc.status
 *   codeName    its name, such as "NOT_FOUND"
 *   reason      the ErrorReason name from the google.rpc.ErrorInfo detail, such
 *               as "ERROR_REASON_CONNECTION_NOT_FOUND", or "" if there was none
 *               (an error from a proxy, or from the transport)
 *   domain      the ErrorInfo domain, "tokenbroker.v1"
 *   metadata    the ErrorInfo metadata, such as {field: "connection"}
 *   fieldViolations  [{field, description}] of a google.rpc.BadRequest detail
 *   brokerMessage    the status message
 *   cause       the error of @grpc/grpc-js
 *
 * UNAVAILABLE errors (isRetryable) are worth trying again later.
 */
class TokenBrokerError extends Error {
  constructor({ code, message, reason = '', domain = '', metadata = {}, fieldViolations = [] }, options) {
    const codeName = CODE_NAMES[code] || String(code);
    super(`tokenbroker: ${codeName}${reason ? ` (${reason})` : ''}: ${message}`, options);
    this.name = 'TokenBrokerError';
    this.code = code;
    this.codeName = codeName;
    this.reason = reason;
    this.domain = domain;
    this.metadata = metadata;
    this.fieldViolations = fieldViolations;
    this.brokerMessage = message;
  }

  /** True for UNAVAILABLE: the call may succeed later. */
  get isRetryable() {
    return this.code === grpc.status.UNAVAILABLE;
  }

  /**
   * fromGrpcError turns an error of @grpc/grpc-js into a TokenBrokerError,
   * decoding the google.rpc.Status of its `grpc-status-details-bin` trailer.
   */
  static fromGrpcError(err) {
    if (err instanceof TokenBrokerError) {
      return err;
    }
    const fields = {
      code: typeof err.code === 'number' ? err.code : grpc.status.UNKNOWN,
      message: typeof err.details === 'string' ? err.details : String(err.message),
    };
    const raw = err.metadata && typeof err.metadata.get === 'function' ? err.metadata.get('grpc-status-details-bin') : [];
    if (raw.length > 0 && Buffer.isBuffer(raw[0])) {
      Object.assign(fields, decodeStatusDetails(raw[0]));
    }
    return new TokenBrokerError(fields, { cause: err });
  }
}

// decodeStatusDetails reads the ErrorInfo of the broker's domain and the
// BadRequest field violations out of a serialized google.rpc.Status. A trailer
// that does not decode is ignored: the gRPC code still holds.
function decodeStatusDetails(buf) {
  const out = {};
  let st;
  try {
    const types = loadRpcTypes();
    st = types.Status.decode(buf);
    for (const any of st.details || []) {
      // protobufjs' bundled any.proto keeps the proto field name, type_url.
      const typeUrl = String(any.typeUrl || any.type_url || '');
      const typeName = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
      if (typeName === 'google.rpc.ErrorInfo') {
        const info = types.ErrorInfo.decode(any.value);
        if (!out.reason || info.domain === ERROR_DOMAIN) {
          out.reason = info.reason;
          out.domain = info.domain;
          out.metadata = { ...info.metadata };
        }
      } else if (typeName === 'google.rpc.BadRequest') {
        const br = types.BadRequest.decode(any.value);
        out.fieldViolations = (br.fieldViolations || br.field_violations || []).map((v) => ({
          field: v.field,
          description: v.description,
          ...(v.reason ? { reason: v.reason } : {}),
        }));
      }
    }
  } catch {
    return {};
  }
  return out;
}

/**
 * Token is an access token of a connection. Printing, inspecting or
 * JSON.stringify-ing it shows its fingerprint, never the token.
 */
class Token {
  constructor(p) {
    /** @type {string} */
    this.connection = p.connection;
    /** @type {string} The bearer credential. Never log it. */
    this.accessToken = p.accessToken;
    /** @type {string} Usually "Bearer". */
    this.tokenType = p.tokenType || 'Bearer';
    /** @type {Date|null} When the token expires, by the broker's clock. */
    this.expiresAt = timestampToDate(p.expiresAt);
    /** @type {number} Report a rejected token by this number. */
    this.generation = toGeneration(p.generation);
    /** @type {string} The x-api-key the upstream expects (Adobe: the client id), or "". */
    this.apiKey = p.apiKey || '';
  }

  /** The first 8 hex digits of the SHA-256 of the token, as the broker logs it. */
  get fingerprint() {
    if (!this.accessToken) return '';
    return crypto.createHash('sha256').update(this.accessToken).digest('hex').slice(0, 8);
  }

  /** The headers that authenticate a request upstream: authorization and, if any, x-api-key. */
  headers() {
    const h = { authorization: `${this.tokenType} ${this.accessToken}` };
    if (this.apiKey) h['x-api-key'] = this.apiKey;
    return h;
  }

  toString() {
    const exp = this.expiresAt ? this.expiresAt.toISOString() : 'none';
    return `Token{connection=${this.connection} generation=${this.generation} type=${this.tokenType} fingerprint=${this.fingerprint} expiry=${exp}}`;
  }

  toJSON() {
    return {
      connection: this.connection,
      tokenType: this.tokenType,
      expiresAt: this.expiresAt,
      generation: this.generation,
      apiKey: this.apiKey,
      fingerprint: this.fingerprint,
    };
  }

  [util.inspect.custom]() {
    return this.toString();
  }
}

function timestampToDate(ts) {
  if (!ts) return null;
  return new Date(Number(ts.seconds || 0) * 1000 + Math.floor((ts.nanos || 0) / 1e6));
}

function toGeneration(v) {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`tokenbroker: generation ${v} is not a safe integer`);
  }
  return n;
}

function toDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) {
    throw new TypeError('tokenbroker: minValiditySeconds must be a finite number >= 0');
  }
  const whole = Math.floor(seconds);
  return { seconds: String(whole), nanos: Math.round((seconds - whole) * 1e9) };
}

function toStringMap(obj, what) {
  const out = {};
  if (obj == null) return out;
  const entries = obj instanceof Map || obj instanceof Headers || obj instanceof URLSearchParams ? [...obj.entries()] : Object.entries(obj);
  for (const [k, v] of entries) {
    if (Array.isArray(v) || (typeof v === 'object' && v !== null)) {
      throw new TypeError(`tokenbroker: ${what} ${k}: give one string value`);
    }
    out[k] = String(v);
  }
  return out;
}

function isLoopback(address) {
  let target = String(address);
  if (/^unix(-abstract)?:/.test(target)) return true;
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/]*\/(.*)$/i.exec(target); // scheme://authority/endpoint
  if (m) target = m[1];
  else target = target.replace(/^(dns|ipv4|ipv6):/, '');
  let host = target;
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(target);
  if (bracket) host = bracket[1];
  else if (/^[^:]+:\d+$/.test(target)) host = target.slice(0, target.lastIndexOf(':'));
  host = host.toLowerCase();
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

function toPem(v, what) {
  if (v == null || v === '') return null;
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string' || v instanceof Uint8Array) return Buffer.from(v);
  throw new TypeError(`tokenbroker: ${what} must be PEM contents (a Buffer or a string), not a ${typeof v}`);
}

/**
 * connect creates a client of the broker at address ("broker.internal:8443",
 * "127.0.0.1:7443", "dns:///broker:8443"). Like @grpc/grpc-js, it does not
 * connect at once: the first call does. Close it when done.
 *
 * options:
 *   insecure   plaintext gRPC (the demo, or a broker on loopback). Default: TLS.
 *   apiKey     sent as "authorization: Bearer <key>"; refused in plaintext to
 *              an address that is not loopback.
 *   ca         PEM of the CA that signed the broker's certificate (Buffer or
 *              string; read files with fs.readFileSync). Default: system roots.
 *   cert, key  PEM of the client certificate and key, for mutual TLS.
 *   timeoutMs  deadline of each call, 30000 by default; each method also takes
 *              {timeoutMs, signal} as its last argument.
 *   channelOptions  extra @grpc/grpc-js channel options.
 */
function connect(address, options = {}) {
  if (!address || typeof address !== 'string') {
    throw new TypeError('tokenbroker: connect needs an address such as "127.0.0.1:7443"');
  }
  const { insecure = false, apiKey = '', ca, cert, key, timeoutMs = DEFAULT_TIMEOUT_MS, channelOptions = {} } = options;
  let creds;
  if (insecure) {
    if (ca || cert || key) {
      throw new Error('tokenbroker: insecure cannot be combined with ca, cert or key');
    }
    creds = grpc.credentials.createInsecure();
  } else {
    if (Boolean(cert) !== Boolean(key)) {
      throw new Error('tokenbroker: mutual TLS needs both cert and key');
    }
    creds = grpc.credentials.createSsl(toPem(ca, 'ca'), toPem(key, 'key'), toPem(cert, 'cert'));
  }
  if (apiKey && insecure && !isLoopback(address)) {
    throw new Error(`tokenbroker: refusing to send the API key in plaintext to ${address}, which is not a loopback address: use TLS`);
  }
  const interceptors = [];
  if (apiKey) {
    // An interceptor rather than call credentials: gRPC refuses call
    // credentials on a plaintext channel, and the demo is plaintext.
    interceptors.push(
      (opts, nextCall) =>
        new grpc.InterceptingCall(nextCall(opts), {
          start(metadata, listener, next) {
            metadata.set('authorization', `Bearer ${apiKey}`);
            next(metadata, listener);
          },
        }),
    );
  }
  const { TokenBroker, Admin } = loadServices();
  const tokenBroker = new TokenBroker(address, creds, {
    'grpc.service_config': JSON.stringify(SERVICE_CONFIG),
    'grpc.primary_user_agent': USER_AGENT,
    ...channelOptions,
    interceptors,
  });
  const admin = new Admin(address, creds, { channelOverride: tokenBroker.getChannel(), interceptors });
  return new BrokerClient(tokenBroker, admin, timeoutMs);
}

/** BrokerClient is what connect returns. */
class BrokerClient {
  constructor(tokenBroker, admin, timeoutMs) {
    /** The generated @grpc/grpc-js clients, for what the methods do not cover (such as Admin). */
    this.raw = { tokenBroker, admin };
    this.timeoutMs = timeoutMs;
  }

  /**
   * getToken returns the current Token of connection. With minValiditySeconds
   * > 0, the broker first has the token refreshed if it expires sooner.
   */
  async getToken(connection, minValiditySeconds, callOptions) {
    const req = { connection };
    if (minValiditySeconds) req.minValidity = toDuration(minValiditySeconds);
    const resp = await this.#call(this.raw.tokenBroker, 'getToken', req, callOptions);
    return tokenFrom(resp);
  }

  /**
   * invalidate reports that an upstream rejected the token of generation (an
   * HTTP 401) and returns a Token of a greater generation. reason is free text
   * for the broker's logs, such as "401 from /reports"; never a token.
   */
  async invalidate(connection, generation, reason = '', callOptions) {
    const ok =
      (typeof generation === 'number' && Number.isSafeInteger(generation) && generation >= 0) ||
      (typeof generation === 'bigint' && generation >= 0n) ||
      (typeof generation === 'string' && /^\d+$/.test(generation));
    if (!ok) {
      throw new TypeError('tokenbroker: generation must be a non-negative integer');
    }
    const resp = await this.#call(
      this.raw.tokenBroker,
      'invalidate',
      { connection, generation: String(generation), reason },
      callOptions,
    );
    const tok = tokenFrom(resp.token);
    if (BigInt(tok.generation) <= BigInt(generation)) {
      throw new Error(`tokenbroker: broker answered Invalidate(${generation}) with generation ${tok.generation}, not a newer one`);
    }
    return tok;
  }

  /**
   * callAnalytics has the broker send one HTTP request to the connection's
   * API with the connection's credentials (the caller never sees the token);
   * on a 401 the broker renews the token and retries once.
   *
   * body: a Buffer, a Uint8Array, a string, or any other value, which is sent
   * as JSON (with content-type application/json unless headers has one).
   *
   * Returns {statusCode, headers, body (Buffer), generation, attempts, text(), json()}.
   */
  async callAnalytics({ connection, method = 'GET', path: apiPath, query, headers, body } = {}, callOptions) {
    const hdrs = toStringMap(headers, 'header');
    let bytes = Buffer.alloc(0);
    if (body != null) {
      if (Buffer.isBuffer(body)) bytes = body;
      else if (body instanceof Uint8Array) bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      else if (typeof body === 'string') bytes = Buffer.from(body, 'utf8');
      else {
        bytes = Buffer.from(JSON.stringify(body), 'utf8');
        if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-type')) {
          hdrs['content-type'] = 'application/json';
        }
      }
    }
    const resp = await this.#call(
      this.raw.tokenBroker,
      'callAnalytics',
      { connection, method, path: apiPath, query: toStringMap(query, 'query parameter'), headers: hdrs, body: bytes },
      callOptions,
    );
    const respBody = Buffer.from(resp.body || []);
    return {
      statusCode: resp.statusCode,
      headers: { ...resp.headers },
      body: respBody,
      generation: toGeneration(resp.generation),
      attempts: resp.attempts,
      text: () => respBody.toString('utf8'),
      json: () => JSON.parse(respBody.toString('utf8')),
    };
  }

  /** close closes the connection to the broker. */
  close() {
    this.raw.tokenBroker.close();
  }

  #call(client, method, req, { timeoutMs = this.timeoutMs, signal } = {}) {
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) {
        reject(new TokenBrokerError({ code: grpc.status.CANCELLED, message: 'aborted before the call' }, { cause: signal.reason }));
        return;
      }
      const opts = timeoutMs > 0 ? { deadline: new Date(Date.now() + timeoutMs) } : {};
      const onAbort = () => call.cancel();
      const call = client[method](req, new grpc.Metadata(), opts, (err, resp) => {
        if (signal) signal.removeEventListener('abort', onAbort);
        if (err) reject(TokenBrokerError.fromGrpcError(err));
        else resolve(resp);
      });
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function tokenFrom(p) {
  if (!p || !p.accessToken) {
    throw new Error('tokenbroker: the broker answered without an access token');
  }
  return new Token(p);
}

function isStreamBody(body) {
  return (
    body != null &&
    (body instanceof ReadableStream ||
      typeof body.pipe === 'function' ||
      (typeof body[Symbol.asyncIterator] === 'function' && !(body instanceof Blob)))
  );
}

/**
 * fetchWithToken is fetch with the token of a connection: it sets
 * authorization (and x-api-key, if the connection has one), and when the
 * upstream answers 401 it reports the token's generation with invalidate and
 * sends the request once more with the newer token. A 403 is returned as it
 * is: it is not about the token.
 *
 * A request whose body is a stream cannot be sent twice: it gets the 401, and
 * its token is still reported so that the next request carries a new one. If
 * the report fails, fetchWithToken rejects with its TokenBrokerError (such as
 * ERROR_REASON_NEEDS_REAUTH) instead of returning the 401.
 *
 * It asks the broker for the token on each call; the broker serves it from
 * memory.
 *
 *   const res = await fetchWithToken(url, {method: 'GET'}, {broker, connection: 'adobe-prod'});
 *
 * options.fetch replaces the global fetch.
 */
async function fetchWithToken(input, init = {}, { broker, connection, fetch: doFetch = globalThis.fetch } = {}) {
  if (!broker || typeof broker.getToken !== 'function' || !connection) {
    throw new TypeError('tokenbroker: fetchWithToken needs {broker, connection}');
  }
  const base = new Request(input, init);
  const replayable = base.body === null || !isStreamBody(init && init.body);
  const send = (tok, req) => {
    const headers = new Headers(req.headers);
    for (const [k, v] of Object.entries(tok.headers())) headers.set(k, v);
    return doFetch(new Request(req, { headers }));
  };

  const tok = await broker.getToken(connection);
  const res = await send(tok, replayable ? base.clone() : base);
  if (res.status !== 401) {
    return res;
  }
  const url = new URL(base.url);
  const reason = `HTTP 401 from ${base.method} ${url.host}${url.pathname}`.slice(0, 200);
  if (!replayable) {
    await broker.invalidate(connection, tok.generation, reason).catch(() => {});
    return res;
  }
  // Free the first response (and its connection) before the second attempt.
  if (res.body) await res.body.cancel().catch(() => {});
  const next = await broker.invalidate(connection, tok.generation, reason);
  return send(next, base);
}

module.exports = {
  connect,
  fetchWithToken,
  TokenBrokerError,
  Token,
  BrokerClient,
  ERROR_DOMAIN,
  PROTO_ROOT,
  status: grpc.status,
};
