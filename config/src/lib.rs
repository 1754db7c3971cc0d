//! Portcullis configuration: the TOML an operator writes, turned into the one immutable
//! [`Snapshot`] the gateway runs on.
//!
//! Three stages, as in ripgrep's `LowArgs` → `HiArgs`: a strict serde schema (unknown keys are
//! errors), a validation pass that reports *every* problem with file, line and column, and
//! compilation into runtime types (route table, CIDR sets, accept rules, header templates) that
//! the proxy uses without checking anything again.
//!
//! This crate does no networking and holds no secret values: `${secret:NAME}` stays a name
//! until the gateway's secret store resolves it.

mod auth;
mod compile;
mod error;
mod raw;
mod snapshot;
mod template;

pub use auth::*;
pub use compile::{compile, config_hash, load, parse_target};
pub use error::{ConfigErrors, Diagnostic, LoadError};
pub use snapshot::*;
pub use template::{Template, TemplateError, TemplatePart};
