//! Tokens the gateway fetches and keeps for routes: the public keys that passthrough routes
//! verify callers' JWTs with ([`jwks`], [`jwt`]), and the tokens that exchange routes obtain
//! from a token endpoint ([`exchange`]).
//!
//! Both are fetched through the route's own egress address and destination guard
//! (`upstream::fetch`), at most one fetch at a time per route ([`flight`]), and kept across
//! reloads while the route's settings and secrets stay the same: a runtime build hands the
//! previous runtime's state on, as it does with upstream groups. The request path only reads
//! them (one arc-swap load); the request-time decisions are `proxy::auth` and
//! `proxy::credentials`.

pub(crate) mod exchange;
pub(crate) mod flight;
pub(crate) mod jwks;
pub(crate) mod jwt;
