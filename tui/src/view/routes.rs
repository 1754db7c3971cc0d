//! The Routes tab: one row per route with its last minute of traffic, sortable, and a detail
//! pane for the selected route.

use portcullis_api::{RouteStatus, UpstreamKind};
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, TableState};
use ratatui::Frame;

use super::{
    col, detail_popup, field, fitted_table, flex, table_rows, window, Cells, Column, BAD, DIM,
    GOOD, SELECTED, WARN,
};
use crate::format;
use crate::model::{Model, RouteColumn};

pub(super) fn draw(model: &Model, frame: &mut Frame, area: Rect) {
    let routes = &model.routes;
    let arrow = if routes.descending { "▼" } else { "▲" };
    let columns: Vec<Column> = RouteColumn::ALL
        .iter()
        .map(|c| {
            let mut name = c.title().to_owned();
            if *c == routes.sort {
                name.push_str(arrow);
            }
            let (width, priority) = c.layout();
            if *c == RouteColumn::Name {
                flex(name, width, priority)
            } else {
                col(name, width, priority)
            }
        })
        .collect();

    let height = table_rows(area);
    let offset = window(routes.order.len(), routes.selected, height);
    let rows = routes
        .order
        .iter()
        .skip(offset)
        .take(height)
        .filter_map(|i| routes.list.get(*i))
        .map(row);
    let title = format!(
        " Routes ({}) — sorted by {} {} ",
        routes.order.len(),
        routes.sort.title().to_lowercase(),
        arrow
    );
    let table = fitted_table(&columns, rows, area)
        .row_highlight_style(SELECTED)
        .block(Block::bordered().title(title));
    let mut state = TableState::default()
        .with_selected((!routes.order.is_empty()).then(|| routes.selected - offset));
    frame.render_stateful_widget(table, area, &mut state);

    if routes.detail {
        if let Some(route) = routes.selected_route() {
            detail_popup(frame, area, &format!("route {}", route.name), detail(route));
        }
    }
}

fn row(route: &RouteStatus) -> Cells<'static> {
    let stats = &route.stats;
    let err_style = if stats.error_rate > 0.05 {
        BAD
    } else if stats.error_rate > 0.0 {
        WARN
    } else {
        Style::new()
    };
    let cells = vec![
        Cell::from(route.name.clone()),
        Cell::from(route.tenant.clone()),
        Cell::from(format!("{:?}", route.auth).to_lowercase()),
        Cell::from(format::rate(stats.requests_per_second)),
        Cell::from(Span::styled(format::percent(stats.error_rate), err_style)),
        Cell::from(format::seconds(stats.p50_seconds)),
        Cell::from(format::seconds(stats.p99_seconds)),
        health(route),
    ];
    (cells, Style::new())
}

fn health(route: &RouteStatus) -> Cell<'static> {
    if !route.secrets_missing.is_empty() {
        return Cell::from(Span::styled("secret missing", BAD));
    }
    if route.upstream == UpstreamKind::Tunnel {
        let name = route.tunnel.clone().unwrap_or_default();
        return Cell::from(Span::styled(format!("tunnel {name}"), DIM));
    }
    let total = route.upstreams.len();
    let up = route.upstreams.iter().filter(|u| u.healthy).count();
    let (text, style) = if total == 0 {
        ("unresolved".to_owned(), BAD)
    } else if up == total {
        (format!("{up}/{total} up"), GOOD)
    } else if up == 0 {
        (format!("{up}/{total} DOWN"), BAD)
    } else {
        (format!("{up}/{total} up"), WARN)
    };
    Cell::from(Span::styled(text, style))
}

fn detail(route: &RouteStatus) -> Vec<Line<'static>> {
    let stats = &route.stats;
    let mut lines = vec![
        field("tenant", route.tenant.clone()),
        field("host", route.host.clone().unwrap_or_else(|| "*".to_owned())),
        field("path", route.path.clone()),
        field("methods", route.methods.clone()),
        field(
            "caller auth",
            if route.public {
                "public (no gateway key)"
            } else {
                "gateway key"
            },
        ),
        field("upstream auth", format!("{:?}", route.auth).to_lowercase()),
        field(
            "upstream",
            match (&route.upstream, &route.tunnel) {
                (UpstreamKind::Tunnel, Some(t)) => format!("tunnel {t}"),
                _ => "saas".to_owned(),
            },
        ),
        field("targets", route.targets.join(", ")),
        field(
            "egress pool",
            route.egress_pool.clone().unwrap_or_else(|| "—".to_owned()),
        ),
        field(
            "last minute",
            format!(
                "{} requests, {}/s, {} errors, p50 {}, p99 {}",
                stats.requests,
                format::rate(stats.requests_per_second),
                format::percent(stats.error_rate),
                format::seconds(stats.p50_seconds),
                format::seconds(stats.p99_seconds)
            ),
        ),
    ];
    if !route.secrets_missing.is_empty() {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<14}", "missing"), DIM),
            Span::styled(
                format!(
                    "{} (the route answers 503 secret_missing)",
                    route.secrets_missing.join(", ")
                ),
                BAD,
            ),
        ]));
    }
    if route.upstreams.is_empty() && route.upstream == UpstreamKind::Saas {
        lines.push(field("upstreams", "none resolved"));
    }
    for (i, upstream) in route.upstreams.iter().enumerate() {
        let label = if i == 0 { "upstreams" } else { "" };
        let (state, style) = if upstream.healthy {
            ("healthy", GOOD)
        } else {
            ("UNHEALTHY", BAD)
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{label:<14}"), DIM),
            Span::raw(format!("{} ", upstream.address)),
            Span::styled(state, style),
        ]));
    }
    lines
}

// === impl RouteColumn ===

impl RouteColumn {
    /// Width and priority (lower stays longer on narrow screens).
    fn layout(self) -> (u16, u8) {
        match self {
            RouteColumn::Name => (14, 0),
            RouteColumn::Tenant => (10, 3),
            RouteColumn::Auth => (11, 5),
            RouteColumn::Rps => (7, 1),
            RouteColumn::Errors => (6, 1),
            RouteColumn::P50 => (7, 4),
            RouteColumn::P99 => (7, 2),
            RouteColumn::Health => (16, 2),
        }
    }

    fn title(self) -> &'static str {
        match self {
            RouteColumn::Name => "NAME",
            RouteColumn::Tenant => "TENANT",
            RouteColumn::Auth => "AUTH",
            RouteColumn::Rps => "RPS",
            RouteColumn::Errors => "ERR%",
            RouteColumn::P50 => "P50",
            RouteColumn::P99 => "P99",
            RouteColumn::Health => "UPSTREAM",
        }
    }
}
