//! `update`: the only place the [`Model`] changes. Pure — no IO, no clock, no terminal: time
//! arrives as [`Msg::Tick`], data as messages from the poller, and effects leave as a
//! [`Command`] for the runtime to carry out.

use std::cmp::Ordering;

use portcullis_api::{RouteStatus, TrafficPage};

use crate::filter::Filter;
use crate::keys::{action_for, Action, Key};
use crate::model::{
    Command, Connection, Model, Msg, Poll, ReloadState, RouteColumn, Tab, TunnelsData, HISTORY,
};

/// Rows moved by page up / page down.
pub(crate) const PAGE: usize = 10;

/// Applies `msg` to `model`; returns what the runtime must do, if anything.
pub fn update(model: &mut Model, msg: Msg) -> Option<Command> {
    match msg {
        Msg::Key(key) => return on_key(model, key),
        Msg::Tick { now_ms } => model.now_ms = now_ms,
        Msg::Polled(poll) => on_poll(model, *poll),
        Msg::Traffic(page) => on_traffic(model, page),
        Msg::TrafficFailed(error) => model.traffic.error = Some(error),
        Msg::Disconnected {
            reason,
            retry_at_ms,
        } => {
            model.connection = Connection::Disconnected {
                reason,
                retry_at_ms,
            }
        }
        Msg::Unauthorized { code, retry_at_ms } => {
            model.connection = Connection::Unauthorized { code, retry_at_ms }
        }
        Msg::ReloadFinished(result) => {
            model.config.reload = match result {
                Ok(status) => ReloadState::Done { status },
                Err(error) => ReloadState::Failed {
                    error,
                    at_ms: model.now_ms,
                },
            }
        }
    }
    None
}

fn on_key(model: &mut Model, key: Key) -> Option<Command> {
    if key == Key::Ctrl('c') {
        return Some(Command::Quit);
    }
    if model.traffic.editing.is_some() {
        edit_filter(model, key);
        return None;
    }
    if model.config.confirm {
        return confirm_reload(model, key);
    }
    let action = action_for(key, model.tab)?;
    if model.help {
        match action {
            Action::Help | Action::Back => model.help = false,
            Action::Quit => return Some(Command::Quit),
            _ => {}
        }
        return None;
    }
    match action {
        Action::Quit => return Some(Command::Quit),
        Action::Help => model.help = true,
        Action::GoTo(tab) => model.tab = tab,
        Action::NextTab => model.tab = model.tab.next(),
        Action::PrevTab => model.tab = model.tab.prev(),
        Action::Down => move_by(model, 1),
        Action::Up => move_by(model, -1),
        Action::PageDown => move_by(model, PAGE as isize),
        Action::PageUp => move_by(model, -(PAGE as isize)),
        Action::Top => move_by(model, isize::MIN),
        Action::Bottom => move_by(model, isize::MAX),
        Action::Open => open(model),
        Action::Back => back(model),
        Action::SortNext => {
            model.routes.sort = model.routes.sort.next();
            model.routes.descending = model.routes.sort.numeric();
            sort_routes(model);
        }
        Action::SortInvert => {
            model.routes.descending = !model.routes.descending;
            sort_routes(model);
        }
        Action::TogglePause => {
            if model.traffic.paused_at.is_some() {
                follow(model);
            } else {
                pause(model);
            }
        }
        Action::Filter => {
            let text = model.traffic.filter.text().to_owned();
            model.traffic.editing = Some((text, model.traffic.filter.clone()));
        }
        Action::Reload => model.config.confirm = true,
    }
    None
}

fn edit_filter(model: &mut Model, key: Key) {
    let traffic = &mut model.traffic;
    let Some((line, before)) = traffic.editing.as_mut() else {
        return;
    };
    match key {
        Key::Char(c) => line.push(c),
        Key::Backspace => {
            line.pop();
        }
        Key::Enter => {
            traffic.editing = None;
            return;
        }
        Key::Esc => {
            traffic.filter = before.clone();
            traffic.editing = None;
            return;
        }
        _ => return,
    }
    // The filter applies as it is typed.
    traffic.filter = Filter::parse(line);
}

fn confirm_reload(model: &mut Model, key: Key) -> Option<Command> {
    match key {
        Key::Char('y') | Key::Char('Y') | Key::Enter => {
            model.config.confirm = false;
            model.config.reload = ReloadState::Running {
                since_ms: model.now_ms,
            };
            Some(Command::Reload)
        }
        Key::Char('n') | Key::Char('N') | Key::Esc | Key::Char('q') => {
            model.config.confirm = false;
            None
        }
        _ => None,
    }
}

fn open(model: &mut Model) {
    match model.tab {
        Tab::Routes => model.routes.detail = model.routes.selected_route().is_some(),
        Tab::Traffic => {
            if model.traffic.paused_at.is_none() {
                // A detail pane over a moving list would change under the reader.
                pause(model);
            }
            model.traffic.detail = model.traffic.selected.is_some();
        }
        Tab::Secrets => {
            let len = model.secrets.data.as_ref().map_or(0, |s| s.secrets.len());
            model.secrets.detail = model.secrets.selected < len;
        }
        Tab::Overview | Tab::Tunnels | Tab::Config => {}
    }
}

fn back(model: &mut Model) {
    match model.tab {
        Tab::Routes => model.routes.detail = false,
        Tab::Traffic => {
            if model.traffic.detail {
                model.traffic.detail = false;
            } else if !model.traffic.filter.is_empty() {
                model.traffic.filter = Filter::default();
            } else if model.traffic.paused_at.is_some() {
                follow(model);
            }
        }
        Tab::Secrets => model.secrets.detail = false,
        Tab::Overview | Tab::Tunnels | Tab::Config => {}
    }
}

/// Moves the selection of the open tab by `delta` rows (`isize::MIN`/`MAX`: to the ends).
fn move_by(model: &mut Model, delta: isize) {
    match model.tab {
        Tab::Overview => {}
        Tab::Routes => {
            let len = model.routes.order.len();
            model.routes.selected = moved(model.routes.selected, delta, len);
        }
        Tab::Traffic => move_traffic(model, delta),
        Tab::Secrets => {
            let len = model.secrets.data.as_ref().map_or(0, |s| s.secrets.len());
            model.secrets.selected = moved(model.secrets.selected, delta, len);
        }
        Tab::Tunnels => {
            let len = model.tunnels.row_count();
            model.tunnels.selected = moved(model.tunnels.selected, delta, len);
        }
        Tab::Config => {
            let lines = crate::view::config_line_count(model).min(usize::from(u16::MAX));
            let scroll = usize::from(model.config.scroll);
            model.config.scroll = moved(scroll, delta, lines) as u16;
        }
    }
}

fn moved(current: usize, delta: isize, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let target = current.saturating_add_signed(delta);
    target.min(len - 1)
}

fn move_traffic(model: &mut Model, delta: isize) {
    if delta == isize::MAX {
        follow(model);
        return;
    }
    if delta >= 0 && model.traffic.paused_at.is_none() {
        // Following already shows the newest row; down has nowhere to go.
        return;
    }
    if model.traffic.paused_at.is_none() {
        pause(model);
    }
    let traffic = &mut model.traffic;
    let visible = traffic.visible();
    if let Some(index) = traffic.selected_index(&visible) {
        let target = moved(index, delta, visible.len());
        traffic.selected = Some(visible[target].seq);
    }
}

fn pause(model: &mut Model) {
    let traffic = &mut model.traffic;
    traffic.paused_at = Some(traffic.entries.back().map_or(0, |e| e.seq));
    let visible = traffic.visible();
    traffic.selected = visible.last().map(|e| e.seq);
}

fn follow(model: &mut Model) {
    model.traffic.paused_at = None;
    model.traffic.selected = None;
    model.traffic.detail = false;
}

fn on_poll(model: &mut Model, poll: Poll) {
    let identity = (poll.status.pid, poll.status.started_at_ms);
    let requests = poll.status.counts.requests;
    let restarted = model
        .history
        .last
        .is_some_and(|(previous, _, _)| previous != identity);
    if restarted {
        // A new gateway process: its sequence numbers and counters start again.
        model.traffic.entries.clear();
        model.traffic.paused_at = None;
        model.traffic.selected = None;
        model.traffic.detail = false;
        model.history.rps.clear();
        model.history.error_rate.clear();
    }
    if let Some((previous, at, count)) = model.history.last {
        if previous == identity && poll.at_ms > at {
            let seconds = (poll.at_ms - at) as f64 / 1000.0;
            push_bounded(
                &mut model.history.rps,
                requests.saturating_sub(count) as f64 / seconds,
            );
            push_bounded(
                &mut model.history.error_rate,
                error_rate(&poll.routes.routes),
            );
        }
    }
    model.history.last = Some((identity, poll.at_ms, requests));
    model.history.latency_ms = latency(model, poll.at_ms);

    model.connection = Connection::Connected;
    model.last_poll_ms = Some(poll.at_ms);
    model.status = Some(poll.status);

    let selected_name = model.routes.selected_route().map(|r| r.name.clone());
    model.routes.list = poll.routes.routes;
    sort_routes_keeping(model, selected_name.as_deref());

    let secrets = poll.secrets.secrets.len();
    model.secrets.data = Some(poll.secrets);
    model.secrets.selected = model.secrets.selected.min(secrets.saturating_sub(1));
    if secrets == 0 {
        model.secrets.detail = false;
    }

    model.tunnels.data = match poll.tunnels {
        Some(t) => TunnelsData::Served(t),
        None => TunnelsData::NotServed,
    };
    let rows = model.tunnels.row_count();
    model.tunnels.selected = model.tunnels.selected.min(rows.saturating_sub(1));
}

fn push_bounded(points: &mut std::collections::VecDeque<f64>, value: f64) {
    if points.len() == HISTORY {
        points.pop_front();
    }
    points.push_back(value);
}

/// The share of failed requests over every route's one-minute window.
fn error_rate(routes: &[RouteStatus]) -> f64 {
    let (requests, failed) = routes.iter().fold((0.0, 0.0), |(n, f), r| {
        let count = r.stats.requests as f64;
        (n + count, f + count * r.stats.error_rate)
    });
    if requests > 0.0 {
        failed / requests
    } else {
        0.0
    }
}

/// p50 and p99 (ms) of the traffic tail's last minute before `at_ms`.
fn latency(model: &Model, at_ms: u64) -> Option<(f64, f64)> {
    let since = at_ms.saturating_sub(60_000);
    let mut durations: Vec<f64> = model
        .traffic
        .entries
        .iter()
        .filter(|e| e.time_ms >= since)
        .map(|e| e.duration_ms)
        .collect();
    if durations.is_empty() {
        return None;
    }
    durations.sort_by(f64::total_cmp);
    let at = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.99)))
}

fn on_traffic(model: &mut Model, page: TrafficPage) {
    let traffic = &mut model.traffic;
    traffic.error = None;
    if page.gap {
        traffic.gaps += 1;
    }
    let newest = traffic.entries.back().map_or(0, |e| e.seq);
    for entry in page.entries {
        if entry.seq <= newest {
            continue;
        }
        if traffic.entries.len() == traffic.capacity {
            traffic.entries.pop_front();
        }
        traffic.entries.push_back(entry);
    }
}

fn sort_routes(model: &mut Model) {
    let selected_name = model.routes.selected_route().map(|r| r.name.clone());
    sort_routes_keeping(model, selected_name.as_deref());
}

/// Re-sorts the routes and moves the selection to the route called `keep`, if it still exists.
fn sort_routes_keeping(model: &mut Model, keep: Option<&str>) {
    let routes = &mut model.routes;
    let list = &routes.list;
    let column = routes.sort;
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by(|a, b| {
        let ordering = compare(&list[*a], &list[*b], column).then_with(|| a.cmp(b));
        if routes.descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
    routes.order = order;
    if let Some(name) = keep {
        if let Some(position) = routes.order.iter().position(|i| list[*i].name == name) {
            routes.selected = position;
        }
    }
    routes.selected = routes.selected.min(routes.order.len().saturating_sub(1));
    if routes.order.is_empty() {
        routes.detail = false;
    }
}

fn compare(a: &RouteStatus, b: &RouteStatus, column: RouteColumn) -> Ordering {
    let num = |x: f64, y: f64| x.total_cmp(&y);
    let opt = |x: Option<f64>, y: Option<f64>| {
        num(
            x.unwrap_or(f64::NEG_INFINITY),
            y.unwrap_or(f64::NEG_INFINITY),
        )
    };
    match column {
        RouteColumn::Name => a.name.cmp(&b.name),
        RouteColumn::Tenant => a.tenant.cmp(&b.tenant).then_with(|| a.name.cmp(&b.name)),
        RouteColumn::Auth => format!("{:?}", a.auth).cmp(&format!("{:?}", b.auth)),
        RouteColumn::Rps => num(a.stats.requests_per_second, b.stats.requests_per_second),
        RouteColumn::Errors => num(a.stats.error_rate, b.stats.error_rate),
        RouteColumn::P50 => opt(a.stats.p50_seconds, b.stats.p50_seconds),
        RouteColumn::P99 => opt(a.stats.p99_seconds, b.stats.p99_seconds),
        RouteColumn::Health => unhealthy(a).cmp(&unhealthy(b)),
    }
}

/// Unhealthy upstreams plus missing secrets: what makes a route fail.
pub(crate) fn unhealthy(route: &RouteStatus) -> usize {
    route.upstreams.iter().filter(|u| !u.healthy).count() + route.secrets_missing.len()
}

// === impl RouteColumn ===

impl RouteColumn {
    /// Columns in table order.
    pub const ALL: [RouteColumn; 8] = [
        RouteColumn::Name,
        RouteColumn::Tenant,
        RouteColumn::Auth,
        RouteColumn::Rps,
        RouteColumn::Errors,
        RouteColumn::P50,
        RouteColumn::P99,
        RouteColumn::Health,
    ];

    fn next(self) -> Self {
        let i = RouteColumn::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or(0);
        RouteColumn::ALL[(i + 1) % RouteColumn::ALL.len()]
    }

    /// Numbers sort largest first by default (the busiest, slowest, most failing on top).
    fn numeric(self) -> bool {
        !matches!(
            self,
            RouteColumn::Name | RouteColumn::Tenant | RouteColumn::Auth
        )
    }
}

#[cfg(test)]
mod tests;
