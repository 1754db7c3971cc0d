// Backstage's proxy-backend, reduced to its proxying: express 4 + http-proxy-middleware 2 with
// the options Backstage's `buildMiddleware` sets (plugins/proxy-backend/src/service/router.ts):
// changeOrigin, the default path rewrite, request headers filtered to the safe list plus the
// route's own, response headers filtered to the safe list, an injected header, and a logger that
// receives HPM's per-request debug calls and drops them (as Backstage's winston logger does at
// its default level). Backstage's other middleware (auth, CORS, helmet, compression, request
// logging) is not here, so this is a lower bound on what Backstage's proxy costs.
//
// Like Backstage, it passes no `agent` to http-proxy: every proxied request opens a new upstream
// connection (http-proxy sends `Connection: close` upstream).
//
//   node proxy.js LISTEN_PORT UPSTREAM_PORT
'use strict';

const express = require('express');
const { createProxyMiddleware } = require('http-proxy-middleware');

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
if (!listenPort || !upstreamPort) {
  console.error('usage: node proxy.js LISTEN_PORT UPSTREAM_PORT');
  process.exit(2);
}

const safeForwardHeaders = [
  'cache-control', 'content-language', 'content-length', 'content-type', 'expires',
  'last-modified', 'pragma', 'host', 'accept', 'accept-language', 'user-agent',
];

const route = '/bench';
const pathPrefix = '';
const config = {
  target: `http://127.0.0.1:${upstreamPort}`,
  headers: { Authorization: 'Bearer bench-secret' },
  changeOrigin: true,
  pathRewrite: { [`^${pathPrefix}${route}/?`]: '/' },
  logLevel: 'debug',
  logProvider: () => ({ log() {}, debug() {}, info() {}, warn: console.warn, error: console.error }),
};

const requestHeaderAllowList = new Set(
  [...safeForwardHeaders, ...Object.keys(config.headers)].map(h => h.toLowerCase()),
);
const responseHeaderAllowList = new Set(safeForwardHeaders);

const filter = (_pathname, req) => {
  for (const h of Object.keys(req.headers)) {
    if (!requestHeaderAllowList.has(h.toLowerCase())) delete req.headers[h];
  }
  return true;
};
filter.toString = () => route;

config.onProxyRes = proxyRes => {
  for (const h of Object.keys(proxyRes.headers)) {
    if (!responseHeaderAllowList.has(h.toLowerCase())) delete proxyRes.headers[h];
  }
};

const app = express();
const router = express.Router();
router.use(route, createProxyMiddleware(filter, config));
app.use(router);
app.listen(listenPort, '127.0.0.1', () => {
  console.log(`node proxy listening on 127.0.0.1:${listenPort} -> 127.0.0.1:${upstreamPort}`);
});
