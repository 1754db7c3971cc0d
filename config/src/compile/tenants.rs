//! `[[tenants]]`: who owns routes, and how their callers authenticate.

use std::collections::{BTreeMap, HashMap, HashSet};

use portcullis_allowlist::CidrSet;
use toml::Spanned;

use super::{is_identifier, Compiler};
use crate::raw::RawTenant;
use crate::snapshot::*;

// === impl Compiler ===

impl Compiler<'_> {
    pub(super) fn tenants(
        &mut self,
        raw: &[Spanned<RawTenant>],
        pools: &HashMap<&str, usize>,
        allowlists: &BTreeMap<String, CidrSet>,
    ) -> Vec<Tenant> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for t in raw {
            let t = t.get_ref();
            let id = t.id.get_ref();
            if !is_identifier(id) {
                self.r.error(
                    t.id.span(),
                    format!("tenants.id: '{id}' must be lowercase letters, digits, '-' and '_'"),
                );
            } else if !ids.insert(id.clone()) {
                self.r
                    .error(t.id.span(), format!("tenants: duplicate tenant id '{id}'"));
            }
            let egress_pool = t.egress_pool.as_ref().and_then(|p| {
                let found = pools.get(p.get_ref().as_str()).copied();
                if found.is_none() {
                    self.r.error(
                        p.span(),
                        format!("tenants '{id}': unknown egress_pool '{}'", p.get_ref()),
                    );
                }
                found
            });
            let mut digests = Vec::new();
            for k in &t.key_sha256 {
                let mut digest = [0u8; 32];
                match hex::decode_to_slice(k.get_ref(), &mut digest) {
                    Ok(()) => digests.push(digest),
                    Err(_) => self.r.error(
                        k.span(),
                        format!(
                            // Never echo the value: a raw key pasted here by mistake is a secret.
                            "tenants '{id}': key_sha256 must be 64 hex digits, the sha256 of the key (`portcullis hash-key`); this value has {} characters",
                            k.get_ref().chars().count()
                        ),
                    ),
                }
            }
            let caller_cidrs = t.caller_cidrs.as_ref().and_then(|c| {
                self.cidr_set(
                    &format!("tenants '{id}': caller_cidrs"),
                    c.get_ref(),
                    allowlists,
                )
            });
            out.push(Tenant {
                id: id.clone(),
                egress_pool,
                keys: KeyDigests::new(digests),
                caller_cidrs,
            });
        }
        out
    }
}
