//! `[allowlists]` and `[[egress_pools]]`: named CIDR sets and published source addresses.

use std::collections::{BTreeMap, HashSet};

use portcullis_allowlist::CidrSet;
use toml::Spanned;

use super::{is_identifier, Compiler};
use crate::raw::RawConfig;
use crate::snapshot::*;

// === impl Compiler ===

impl Compiler<'_> {
    pub(super) fn allowlists(&mut self, raw: &RawConfig) -> BTreeMap<String, CidrSet> {
        let mut out = BTreeMap::new();
        for (name, entries) in &raw.allowlists {
            if !is_identifier(name) {
                self.r.error(
                    entries.span(),
                    format!(
                        "allowlists: name '{name}' must be lowercase letters, digits, '-' and '_'"
                    ),
                );
                continue;
            }
            let key = format!("allowlists.{name}");
            if let Some(set) = self.cidr_set(&key, entries.get_ref(), &BTreeMap::new()) {
                out.insert(name.clone(), set);
            }
        }
        out
    }

    pub(super) fn egress_pools(&mut self, raw: &RawConfig) -> Vec<EgressPool> {
        let mut pools = Vec::new();
        let mut names = HashSet::new();
        for p in &raw.egress_pools {
            let p_ref = p.get_ref();
            let name = p_ref.name.get_ref();
            if !is_identifier(name) {
                self.r.error(
                    p_ref.name.span(),
                    format!("egress_pools.name: '{name}' must be lowercase letters, digits, '-' and '_'"),
                );
            } else if !names.insert(name.clone()) {
                self.r.error(
                    p_ref.name.span(),
                    format!("egress_pools: duplicate pool name '{name}'"),
                );
            }
            if p_ref.addresses.is_empty() {
                self.r.error(
                    p_ref.name.span(),
                    format!("egress_pools '{name}': addresses is empty; a pool needs at least one source address"),
                );
            }
            let list = |key: &str, items: &[Spanned<String>], this: &mut Self| {
                items
                    .iter()
                    .filter_map(|a| this.ip(&format!("egress_pools.{key}"), a))
                    .collect::<Vec<_>>()
            };
            let addresses = list("addresses", &p_ref.addresses, self);
            let upcoming = list("upcoming", &p_ref.upcoming, self);
            let retiring = list("retiring", &p_ref.retiring, self);
            pools.push(EgressPool {
                name: name.clone(),
                addresses,
                upcoming,
                retiring,
            });
        }
        pools
    }
}
