//! The console's tabs, in the order the keys `1`–`6` open them. A leaf module: the key table
//! and the model both name tabs.

/// The tabs, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tab {
    /// Rates, latency, reload result, egress pools, trouble counts.
    Overview,
    /// One row per route.
    Routes,
    /// The live tail.
    Traffic,
    /// Secret status.
    Secrets,
    /// Broker tunnels and their agents.
    Tunnels,
    /// The configuration in force and reloads.
    Config,
}

// === impl Tab ===

impl Tab {
    /// Every tab, in order.
    pub const ALL: [Tab; 6] = [
        Tab::Overview,
        Tab::Routes,
        Tab::Traffic,
        Tab::Secrets,
        Tab::Tunnels,
        Tab::Config,
    ];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Routes => "Routes",
            Tab::Traffic => "Traffic",
            Tab::Secrets => "Secrets",
            Tab::Tunnels => "Tunnels",
            Tab::Config => "Config",
        }
    }

    /// Position in [`Tab::ALL`].
    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    /// The next tab, wrapping.
    pub fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }

    /// The previous tab, wrapping.
    pub fn prev(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
    }
}
