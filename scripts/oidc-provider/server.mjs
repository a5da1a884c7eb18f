// A real OpenID Connect provider for Rentify's integration tests (and for trying
// "sign in with OIDC" by hand). It is the npm package `oidc-provider` with:
//
// - issuer `http://127.0.0.1:<port>` (plain http on loopback, tests only);
// - one confidential client: client_id `rentify`, client_secret `rentify-secret`,
//   authorization code flow only, PKCE (S256) required, client_secret_basic or
//   client_secret_post at the token endpoint, redirect URIs from REDIRECT_URIS;
// - a fixed set of test users (USERS below), scopes `openid email profile`;
// - a fresh RS256 signing key per run (its JWKS is served as usual).
//
// Interactions: oidc-provider's own dev interactions are switched off. Instead,
// this file serves two tiny routes that a headless test can drive with a plain,
// cookie-carrying HTTP client:
//
//   GET  /interaction/:uid         login prompt: an HTML form (field `login` = a
//                                  user name from USERS); consent prompt: granted
//                                  at once (a first-party test client), 303 back
//                                  to the provider.
//   POST /interaction/:uid/login   `login=<user>` (form-encoded): signs that user in,
//                                  303 back to the provider, which then asks for
//                                  consent (GET /interaction/:uid again) and finally
//                                  redirects to the client's redirect URI with
//                                  `code`, `state` and `iss`.
//   POST /interaction/:uid/abort   ends the request with `error=access_denied`.
//
// Environment (`--port N` on the command line also sets the port):
//   PORT           TCP port on 127.0.0.1; 0 (default) picks a free one.
//   REDIRECT_URIS  comma-separated redirect URIs of client `rentify`
//                  (default http://127.0.0.1:8080/v1/auth/oidc/callback).
//
//   ID_TOKEN_CLAIMS=1  put email/name in the id_token too. By default the provider
//                  conforms to OIDC Core 5.4: with the code flow, scope-requested
//                  claims are served only by the userinfo endpoint.
//   WRONG_JWKS=1   publish an unrelated public key (same kid) at the JWKS URI, so
//                  ID tokens do not verify: tests the relying party's signature check.
//   EXIT_WITH_STDIN=1  also stop when stdin closes (set by the test harness).
//
// Once listening it prints exactly one line `READY http://127.0.0.1:<port>` on
// stdout (logs go to stderr). It stops on SIGTERM/SIGINT.
//
// By hand, against `make run`:
//   scripts/oidc-provider/install.sh
//   PORT=9000 REDIRECT_URIS=http://localhost:8080/v1/auth/oidc/callback node scripts/oidc-provider/server.mjs
//   OIDC_ISSUER_URL=http://127.0.0.1:9000 OIDC_CLIENT_ID=rentify OIDC_CLIENT_SECRET=rentify-secret make run
// then open http://localhost:8080/v1/auth/oidc/authorize in a browser.
//
// oidc-provider 9 warns "Unsupported runtime" on Node.js 20 (it wants 22 LTS) but
// works on 20.19+, which is what CI has.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { once } from 'node:events';

import Provider from 'oidc-provider';

const USERS = {
  alice: { sub: 'alice-0001', email: 'alice@example.test', email_verified: true, name: 'Alice Example' },
  bob: { sub: 'bob-0002', email: 'bob@example.test', email_verified: true, name: 'Bob Example' },
  // An address the provider has not verified: a relying party must not trust it.
  carol: { sub: 'carol-0003', email: 'carol@example.test', email_verified: false, name: 'Carol Unverified' },
};
const ACCOUNTS = new Map(Object.values(USERS).map((u) => [u.sub, u]));

function argPort() {
  const i = process.argv.indexOf('--port');
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const port = Number(argPort() ?? process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`oidc-provider: bad port ${argPort() ?? process.env.PORT}`);
  process.exit(2);
}
const redirectUris = (process.env.REDIRECT_URIS || 'http://127.0.0.1:8080/v1/auth/oidc/callback')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

let provider; // created once the port is known (the issuer contains it)

const server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  if (path.startsWith('/interaction/')) {
    interaction(req, res, path).catch((err) => {
      console.error('oidc-provider: interaction failed:', err);
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain' });
      }
      res.end(`interaction failed: ${err.message}\n`);
    });
    return;
  }
  if (path === '/jwks' && process.env.WRONG_JWKS === '1') {
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' });
    res.end(JSON.stringify({ keys: [wrongPublicKey] }));
    return;
  }
  provider.callback()(req, res);
});

server.listen(port, '127.0.0.1');
await once(server, 'listening');
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
const wrongPublicKey = {
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }),
  kid: signingKey.kid,
  alg: 'RS256',
  use: 'sig',
};

provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'rentify',
      client_secret: 'rentify-secret',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // The token endpoint takes the secret in the Authorization header or the body.
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  pkce: { required: () => true },
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  scopes: ['openid', 'email', 'profile'],
  conformIdTokenClaims: process.env.ID_TOKEN_CLAIMS !== '1',
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, sub) {
    const user = ACCOUNTS.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: user.email, email_verified: user.email_verified, name: user.name };
      },
    };
  },
  renderError(ctx, out) {
    ctx.type = 'text/plain';
    ctx.body = `${out.error}: ${out.error_description ?? ''}\n`;
  },
});

provider.on('server_error', (_ctx, err) => console.error('oidc-provider: server_error', err));

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(res, uid, status, message) {
  const names = Object.keys(USERS).map(escapeHtml).join(', ');
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><title>Test provider sign-in</title>
<p>${escapeHtml(message)}</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
  <label>User (${names}) <input name="login" autofocus></label>
  <button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button type="submit">Cancel</button></form>
`);
}

async function interaction(req, res, path) {
  const [, , uid, action] = path.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end('interaction does not match its cookie\n');
    return;
  }
  const { prompt, params, session } = details;

  if (req.method === 'POST' && action === 'abort') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'the user cancelled the sign-in' },
      { mergeWithLastSubmission: false },
    );
    return;
  }

  if (prompt.name === 'login') {
    if (req.method === 'POST' && action === 'login') {
      const name = (await readForm(req)).get('login') ?? '';
      const user = USERS[name];
      if (!user) {
        loginPage(res, uid, 400, `Unknown user "${name}".`);
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
      return;
    }
    loginPage(res, uid, 200, `Sign in to ${params.client_id}.`);
    return;
  }

  if (prompt.name === 'consent') {
    // A first-party test client: grant whatever it asked for, without a page.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const result = details.grantId ? { consent: {} } : { consent: { grantId } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
    return;
  }

  res.writeHead(400, { 'content-type': 'text/plain' });
  res.end(`unsupported prompt ${prompt.name}\n`);
}

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The test harness sets EXIT_WITH_STDIN=1 and keeps our stdin open: if the harness
// dies without killing us, stdin closes and we stop too.
if (process.env.EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

console.log(`READY ${issuer}`);
