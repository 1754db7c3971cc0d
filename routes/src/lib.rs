//! The compiled route table of Portcullis: which route answers a request, given its host, path
//! and method, and how that route rewrites the path before it goes upstream.
//!
//! The config crate parses each route's `host`, `path` and `allowed_methods` into a
//! [`RouteSpec`] and compiles the list once with [`RouteTable::build`], which reports every pair
//! of routes that could never be told apart. The gateway then calls [`RouteTable::lookup`] once
//! per request and [`Rewrite::apply`] plus [`join_base_path`] to compute the upstream path. The
//! matching order is documented on [`RouteTable`].
//!
//! This crate is pure: no IO, no clocks, no global state, and no heap allocation on the lookup
//! path. It is *not* a path normaliser: `lookup` compares raw path segments, so the caller must
//! resolve dot segments and percent-encoding first, or `/pd/../admin` would match `/pd`. Nor
//! does it know anything about upstreams, tenants or authentication; a [`RouteId`] is only an
//! index into the specs the caller gave to `build`.

mod error;
mod host;
mod method;
mod path;
mod rewrite;
mod table;

pub use self::error::RouteError;
pub use self::host::HostMatch;
pub use self::method::MethodSet;
pub use self::path::PathPrefix;
pub use self::rewrite::{join_base_path, Rewrite};
pub use self::table::{Lookup, RouteId, RouteSpec, RouteTable};
