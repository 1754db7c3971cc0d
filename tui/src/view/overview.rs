//! The Overview tab: request rate and error rate sparklines, latency, active requests, the
//! configuration and its last reload, egress pools, and counts of what is in trouble.

use portcullis_api::{ReloadResult, TunnelState};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};
use ratatui::Frame;

use super::{BAD, DIM, GOOD, WARN};
use crate::format;
use crate::model::{Model, SecretHealth, TunnelsData};

pub(super) fn draw(model: &Model, frame: &mut Frame, area: Rect) {
    let (charts, facts) = if area.width >= 90 {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
                .areas(area);
        (left, right)
    } else {
        let charts = (area.height / 2).min(8);
        let [top, bottom] =
            Layout::vertical([Constraint::Length(charts), Constraint::Min(0)]).areas(area);
        (top, bottom)
    };
    let [rps_area, err_area] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);

    let rps = &model.history.rps;
    let rps_title = format!(
        " requests/s  now {}  max {} ",
        rps.back()
            .map_or_else(|| "—".to_owned(), |v| format::rate(*v)),
        format::rate(rps.iter().copied().fold(0.0, f64::max)),
    );
    sparkline(frame, rps_area, &rps_title, rps, 100.0, GOOD);

    let errors = &model.history.error_rate;
    let err_title = format!(
        " error rate (1m)  now {} ",
        errors
            .back()
            .map_or_else(|| "—".to_owned(), |v| format::percent(*v)),
    );
    let err_style = if errors.back().is_some_and(|v| *v > 0.0) {
        BAD
    } else {
        GOOD
    };
    sparkline(frame, err_area, &err_title, errors, 10_000.0, err_style);

    frame.render_widget(
        Paragraph::new(fact_lines(model)).block(Block::bordered().title(" gateway ")),
        facts,
    );
}

/// A sparkline of the newest points that fit, scaled by `scale` into integers.
fn sparkline(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    points: &std::collections::VecDeque<f64>,
    scale: f64,
    style: Style,
) {
    let block = Block::bordered().title(title.to_owned());
    let width = usize::from(block.inner(area).width);
    let skip = points.len().saturating_sub(width);
    let data: Vec<u64> = points
        .iter()
        .skip(skip)
        .map(|v| (v * scale).round().max(0.0) as u64)
        .collect();
    let max = data.iter().copied().max().unwrap_or(0).max(1);
    frame.render_widget(
        Sparkline::default()
            .block(block)
            .data(data)
            .max(max)
            .style(style),
        area,
    );
}

fn fact_lines(model: &Model) -> Vec<Line<'static>> {
    let label = |text: &str| Span::styled(format!("{text:<14}"), DIM);
    let Some(status) = &model.status else {
        return vec![Line::from("waiting for the gateway…")];
    };
    let now = model.now_ms;
    let mut lines = Vec::new();

    let latency = match model.history.latency_ms {
        Some((p50, p99)) => format!("p50 {}  p99 {}", format::millis(p50), format::millis(p99)),
        None => "p50 —  p99 —  (no requests in the last minute)".to_owned(),
    };
    lines.push(Line::from(vec![label("latency (1m)"), Span::raw(latency)]));
    lines.push(Line::from(vec![
        label("requests"),
        Span::raw(format!(
            "{} active, {} since start",
            status.counts.active_requests, status.counts.requests
        )),
    ]));
    lines.push(Line::from(vec![
        label("config"),
        Span::raw(format!(
            "{} loaded {}",
            format::truncate(&status.config.hash, 12),
            format::relative(status.config.loaded_at_ms, now)
        )),
    ]));
    let reload = &status.last_reload;
    let (result, style) = match reload.result {
        ReloadResult::Success => ("success", GOOD),
        ReloadResult::Error => ("FAILED", BAD),
    };
    let mut spans = vec![
        label("last reload"),
        Span::styled(result, style),
        Span::raw(format!(
            " ({}) {}",
            format!("{:?}", reload.trigger).to_lowercase(),
            format::relative(reload.at_ms, now)
        )),
    ];
    if !reload.errors.is_empty() {
        spans.push(Span::styled(
            format!(" — {} error(s), see Config", reload.errors.len()),
            BAD,
        ));
    }
    lines.push(Line::from(spans));
    lines.push(Line::from(vec![
        label("routes"),
        Span::raw(format!(
            "{} routes, {} tenants",
            status.counts.routes, status.counts.tenants
        )),
    ]));

    if status.egress_pools.is_empty() {
        lines.push(Line::from(vec![
            label("egress pools"),
            Span::raw("none (default source address)"),
        ]));
    }
    for (i, pool) in status.egress_pools.iter().enumerate() {
        let addresses: Vec<String> = pool.addresses.iter().map(ToString::to_string).collect();
        let mut text = format!("{}: {}", pool.name, addresses.join(", "));
        if !pool.upcoming.is_empty() {
            text.push_str(&format!(" (+{} upcoming)", pool.upcoming.len()));
        }
        if !pool.retiring.is_empty() {
            text.push_str(&format!(" ({} retiring)", pool.retiring.len()));
        }
        let heading = if i == 0 { "egress pools" } else { "" };
        lines.push(Line::from(vec![label(heading), Span::raw(text)]));
    }

    lines.push(tunnel_line(model, label("tunnels")));
    lines.push(secret_line(model, label("secrets")));

    let audit = &status.audit;
    let audit_text = if !audit.enabled {
        Span::styled("disabled", DIM)
    } else if audit.healthy && audit.dropped == 0 {
        Span::styled(format!("healthy, {} lines", audit.written), GOOD)
    } else {
        Span::styled(
            format!(
                "{}: {} written, {} dropped, {} refused",
                if audit.healthy { "lossy" } else { "UNHEALTHY" },
                audit.written,
                audit.dropped,
                audit.refused
            ),
            BAD,
        )
    };
    lines.push(Line::from(vec![label("audit"), audit_text]));
    lines
}

fn tunnel_line(model: &Model, label: Span<'static>) -> Line<'static> {
    let (up, down) = match &model.tunnels.data {
        TunnelsData::Served(t) => {
            let up = t
                .tunnels
                .iter()
                .filter(|t| t.state == TunnelState::Online)
                .count();
            (up, t.tunnels.len() - up)
        }
        _ => model.status.as_ref().map_or((0, 0), |s| {
            (
                s.counts.tunnels_online,
                s.counts.tunnels.saturating_sub(s.counts.tunnels_online),
            )
        }),
    };
    if up + down == 0 {
        return Line::from(vec![label, Span::styled("none configured", DIM)]);
    }
    let down_style = if down > 0 { BAD } else { DIM };
    Line::from(vec![
        label,
        Span::styled(format!("{up} up"), GOOD),
        Span::raw(", "),
        Span::styled(format!("{down} down"), down_style),
    ])
}

fn secret_line(model: &Model, label: Span<'static>) -> Line<'static> {
    let Some(secrets) = &model.secrets.data else {
        return Line::from(vec![label, Span::raw("—")]);
    };
    let count = |health: SecretHealth| {
        secrets
            .secrets
            .iter()
            .filter(|s| model.secret_health(s) == health)
            .count()
    };
    let (unusable, expiring, rejected) = (
        count(SecretHealth::Unusable),
        count(SecretHealth::Expiring),
        count(SecretHealth::Rejected),
    );
    let style = |n: usize, bad: Style| if n > 0 { bad } else { DIM };
    Line::from(vec![
        label,
        Span::raw(format!("{}: ", secrets.secrets.len())),
        Span::styled(format!("{unusable} unusable"), style(unusable, BAD)),
        Span::raw(", "),
        Span::styled(format!("{expiring} expiring"), style(expiring, WARN)),
        Span::raw(", "),
        Span::styled(format!("{rejected} rejected"), style(rejected, BAD)),
    ])
}
