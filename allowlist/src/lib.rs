//! Portcullis's allowlists: CIDR sets, the destination (SSRF) guard, request path
//! normalisation and per-route accept rules.
//!
//! Everything here is pure: no IO, no clocks, no global state. The config crate compiles raw
//! settings into these types once per reload, and the gateway evaluates them per request and
//! per connection. This crate is not where DNS is resolved, where peers are authenticated or
//! where decisions are logged or counted; it only answers "is this allowed?", with an error
//! that says why not.
//!
//! - [`cidr`]: [`CidrSet`], networks with `!` exceptions, for peer and destination allowlists.
//! - [`destination`]: [`classify`] and [`DestinationGuard`], run on the resolved upstream
//!   address right before connecting.
//! - [`path`]: [`normalize_path`], which rejects traversal and ambiguous encodings and returns
//!   the path the gateway both matches and forwards.
//! - [`accept`]: [`AcceptRules`], method/path-glob/query rules per route.

pub mod accept;
pub mod cidr;
pub mod destination;
pub mod path;

pub use accept::{AcceptDenied, AcceptError, AcceptRule, AcceptRules, RequestHeaders};
pub use cidr::{CidrError, CidrSet};
pub use destination::{classify, DeniedClass, DestinationDenied, DestinationGuard};
pub use path::{normalize_path, PathError};
