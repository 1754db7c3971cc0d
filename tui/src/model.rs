//! The console's state ([`Model`]), what can happen to it ([`Msg`]) and what it can ask the
//! outside world to do ([`Command`]). Plain data: the admin API's types as they arrived, plus
//! the operator's cursor, sort, filter and open panes. [`crate::update`] changes it,
//! [`crate::view`] draws it.

use std::collections::VecDeque;

use portcullis_api::{
    ReloadStatus, RouteStatus, SecretState, SecretStatus, Secrets, Status, TrafficEntry,
    TrafficPage, Tunnels,
};

use crate::filter::Filter;
use crate::keys::Key;
pub use crate::tab::Tab;

/// Traffic entries kept by default (the gateway's ring holds 4096).
pub const DEFAULT_TRAFFIC_KEEP: usize = 5000;

/// Points of sparkline history (one per poll).
pub const HISTORY: usize = 120;

/// A secret expiring sooner than this is shown as a warning.
pub const EXPIRY_WARNING_MS: u64 = 7 * 24 * 3600 * 1000;

/// Everything the console shows.
#[derive(Debug, Clone)]
pub struct Model {
    /// The admin API's base URL (shown in the title).
    pub admin: String,
    /// The open tab.
    pub tab: Tab,
    /// Wall-clock time, Unix ms, as of the last [`Msg::Tick`].
    pub now_ms: u64,
    /// Whether the admin API answers.
    pub connection: Connection,
    /// The help overlay is open.
    pub help: bool,
    /// The last `/api/v1/status`.
    pub status: Option<Status>,
    /// When the last complete poll arrived.
    pub last_poll_ms: Option<u64>,
    /// Sparkline data.
    pub history: History,
    /// The Routes tab.
    pub routes: RoutesView,
    /// The Traffic tab.
    pub traffic: TrafficView,
    /// The Secrets tab.
    pub secrets: SecretsView,
    /// The Tunnels tab.
    pub tunnels: TunnelsView,
    /// The Config tab.
    pub config: ConfigView,
}

/// The state of the connection to the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Nothing heard yet.
    Connecting,
    /// The last poll worked.
    Connected,
    /// The last poll failed; the next try is at `retry_at_ms`.
    Disconnected {
        /// What went wrong, for people.
        reason: String,
        /// When the next attempt starts.
        retry_at_ms: u64,
    },
    /// The gateway refused the token (401).
    Unauthorized {
        /// The API's error code (`unauthorized`, `admin_token_not_configured`).
        code: String,
        /// When the next attempt starts (the token file is re-read then).
        retry_at_ms: u64,
    },
}

/// Something that happened: a key, a clock tick, data or an error from the admin API.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A key press.
    Key(Key),
    /// Time passed; `now_ms` is the wall clock (Unix ms).
    Tick {
        /// Unix ms.
        now_ms: u64,
    },
    /// A complete poll of status, routes, secrets and tunnels.
    Polled(Box<Poll>),
    /// A page of the traffic tail.
    Traffic(TrafficPage),
    /// The traffic tail failed while the rest works (e.g. an older gateway).
    TrafficFailed(String),
    /// The admin API could not be reached or answered nonsense.
    Disconnected {
        /// What went wrong.
        reason: String,
        /// When the next attempt starts (Unix ms).
        retry_at_ms: u64,
    },
    /// The admin API answered 401.
    Unauthorized {
        /// The error code.
        code: String,
        /// When the next attempt starts (Unix ms).
        retry_at_ms: u64,
    },
    /// The answer to [`Command::Reload`]: the outcome (success or rejected config), or why
    /// the request itself failed.
    ReloadFinished(Result<ReloadStatus, String>),
}

/// One poll of the slow-moving endpoints.
#[derive(Debug, Clone)]
pub struct Poll {
    /// When it finished (Unix ms).
    pub at_ms: u64,
    /// `/api/v1/status`.
    pub status: Status,
    /// `/api/v1/routes`.
    pub routes: portcullis_api::Routes,
    /// `/api/v1/secrets`.
    pub secrets: Secrets,
    /// `/api/v1/tunnels`; `None` when the gateway does not serve it (404).
    pub tunnels: Option<Tunnels>,
}

/// What `update` asks the runtime to do (the only way it has effects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Restore the terminal and return.
    Quit,
    /// `POST /api/v1/reload`; the answer comes back as [`Msg::ReloadFinished`].
    Reload,
}

/// Sparkline history, one point per poll.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Requests per second between consecutive polls.
    pub rps: VecDeque<f64>,
    /// Share of failed requests over the routes' one-minute windows.
    pub error_rate: VecDeque<f64>,
    /// p50 and p99 in ms over the last minute of the traffic tail.
    pub latency_ms: Option<(f64, f64)>,
    /// The previous sample: (gateway identity, time, request count).
    pub last: Option<((u32, u64), u64, u64)>,
}

/// A column of the Routes table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteColumn {
    /// Route name.
    Name,
    /// Tenant.
    Tenant,
    /// Auth mode.
    Auth,
    /// Requests per second.
    Rps,
    /// Error share.
    Errors,
    /// Median latency.
    P50,
    /// 99th percentile latency.
    P99,
    /// Upstream health.
    Health,
}

/// The Routes tab.
#[derive(Debug, Clone)]
pub struct RoutesView {
    /// Routes as the API listed them.
    pub list: Vec<RouteStatus>,
    /// Indexes into `list` in display order.
    pub order: Vec<usize>,
    /// The sort column.
    pub sort: RouteColumn,
    /// Descending order.
    pub descending: bool,
    /// Selected row (index into `order`).
    pub selected: usize,
    /// The detail pane is open.
    pub detail: bool,
}

/// The Traffic tab.
#[derive(Debug, Clone)]
pub struct TrafficView {
    /// The newest entries, oldest first, at most `capacity`.
    pub entries: VecDeque<TrafficEntry>,
    /// How many entries to keep.
    pub capacity: usize,
    /// `Some(seq)`: paused, showing entries up to `seq`; `None`: following.
    pub paused_at: Option<u64>,
    /// The selected entry's `seq` while paused.
    pub selected: Option<u64>,
    /// The filter in force.
    pub filter: Filter,
    /// The filter line being edited, and the filter in force before editing started.
    pub editing: Option<(String, Filter)>,
    /// The detail pane is open.
    pub detail: bool,
    /// Times the gateway's ring overflowed before the console read it.
    pub gaps: u64,
    /// The last traffic error, until the next page arrives.
    pub error: Option<String>,
}

/// The Secrets tab.
#[derive(Debug, Clone, Default)]
pub struct SecretsView {
    /// The last `/api/v1/secrets`.
    pub data: Option<Secrets>,
    /// Selected row.
    pub selected: usize,
    /// The detail pane is open.
    pub detail: bool,
}

/// What the console knows about tunnels.
#[derive(Debug, Clone, PartialEq)]
pub enum TunnelsData {
    /// Not polled yet.
    Unknown,
    /// The gateway has no `/api/v1/tunnels` (404): it has no tunnels.
    NotServed,
    /// The tunnels.
    Served(Tunnels),
}

/// The Tunnels tab.
#[derive(Debug, Clone)]
pub struct TunnelsView {
    /// The data.
    pub data: TunnelsData,
    /// Selected row (tunnel and agent rows counted together).
    pub selected: usize,
}

/// The state of an operator-triggered reload.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadState {
    /// None asked for.
    Idle,
    /// Requested, no answer yet.
    Running {
        /// When it was asked for.
        since_ms: u64,
    },
    /// The gateway answered (the config may still have been rejected).
    Done {
        /// The outcome.
        status: ReloadStatus,
    },
    /// The request failed.
    Failed {
        /// Why.
        error: String,
        /// When.
        at_ms: u64,
    },
}

/// The Config tab.
#[derive(Debug, Clone)]
pub struct ConfigView {
    /// The "reload now?" question is open.
    pub confirm: bool,
    /// The last operator-triggered reload.
    pub reload: ReloadState,
    /// Lines scrolled.
    pub scroll: u16,
}

/// How a secret looks to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretHealth {
    /// Usable, nothing to worry about.
    Ok,
    /// Usable, expiring within [`EXPIRY_WARNING_MS`].
    Expiring,
    /// The upstream refused it (401/403) since it was last rotated.
    Rejected,
    /// Missing, undecryptable or expired.
    Unusable,
}

// === impl Model ===

impl Model {
    /// An empty model for the admin API at `admin`, keeping `traffic_keep` traffic entries.
    pub fn new(admin: impl Into<String>, traffic_keep: usize) -> Self {
        Self {
            admin: admin.into(),
            tab: Tab::Overview,
            now_ms: 0,
            connection: Connection::Connecting,
            help: false,
            status: None,
            last_poll_ms: None,
            history: History::default(),
            routes: RoutesView {
                list: Vec::new(),
                order: Vec::new(),
                sort: RouteColumn::Name,
                descending: false,
                selected: 0,
                detail: false,
            },
            traffic: TrafficView {
                entries: VecDeque::new(),
                capacity: traffic_keep.max(1),
                paused_at: None,
                selected: None,
                filter: Filter::default(),
                editing: None,
                detail: false,
                gaps: 0,
                error: None,
            },
            secrets: SecretsView::default(),
            tunnels: TunnelsView {
                data: TunnelsData::Unknown,
                selected: 0,
            },
            config: ConfigView {
                confirm: false,
                reload: ReloadState::Idle,
                scroll: 0,
            },
        }
    }

    /// How `secret` looks now.
    pub fn secret_health(&self, secret: &SecretStatus) -> SecretHealth {
        if secret.status != SecretState::Present {
            return SecretHealth::Unusable;
        }
        if let Some(expires) = secret.expires_at_ms {
            if expires <= self.now_ms {
                return SecretHealth::Unusable;
            }
        }
        if let Some(failure) = secret.last_upstream_auth_failure {
            if failure.at_ms >= secret.rotated_at_ms.unwrap_or(0) {
                return SecretHealth::Rejected;
            }
        }
        match secret.expires_at_ms {
            Some(expires) if expires - self.now_ms < EXPIRY_WARNING_MS => SecretHealth::Expiring,
            _ => SecretHealth::Ok,
        }
    }
}

// === impl RoutesView ===

impl RoutesView {
    /// The selected route.
    pub fn selected_route(&self) -> Option<&RouteStatus> {
        self.order
            .get(self.selected)
            .and_then(|i| self.list.get(*i))
    }
}

// === impl TrafficView ===

impl TrafficView {
    /// The entries the table shows: filtered, and up to the pause point when paused.
    pub fn visible(&self) -> Vec<&TrafficEntry> {
        self.entries
            .iter()
            .filter(|e| self.paused_at.is_none_or(|p| e.seq <= p))
            .filter(|e| self.filter.matches(e))
            .collect()
    }

    /// Index into `visible` of the selected entry: the newest when following; when paused,
    /// the selected one or, if it has scrolled out of the buffer, the first after it.
    pub fn selected_index(&self, visible: &[&TrafficEntry]) -> Option<usize> {
        if visible.is_empty() {
            return None;
        }
        match (self.paused_at, self.selected) {
            (Some(_), Some(seq)) => Some(
                visible
                    .iter()
                    .position(|e| e.seq >= seq)
                    .unwrap_or(visible.len() - 1),
            ),
            _ => Some(visible.len() - 1),
        }
    }

    /// Entries that arrived after the pause point.
    pub fn new_since_pause(&self) -> usize {
        match self.paused_at {
            None => 0,
            Some(p) => self.entries.iter().filter(|e| e.seq > p).count(),
        }
    }
}

// === impl TunnelsView ===

impl TunnelsView {
    /// Rows of the table: each tunnel followed by its agents.
    pub fn row_count(&self) -> usize {
        match &self.data {
            TunnelsData::Served(t) => t.tunnels.iter().map(|t| 1 + t.agents.len()).sum(),
            _ => 0,
        }
    }
}
