//! The Secrets tab: every referenced secret's state — never a value — with missing, expired,
//! undecryptable and upstream-rejected ones highlighted; token exchanges below when any.

use portcullis_api::{ExchangeStatus, SecretLocation, SecretState, SecretStatus};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::{detail_popup, field, table_rows, window, BAD, DIM, HEADER, SELECTED, WARN};
use crate::format;
use crate::model::{Model, SecretHealth};

pub(super) fn draw(model: &Model, frame: &mut Frame, area: Rect) {
    let Some(data) = &model.secrets.data else {
        frame.render_widget(
            Paragraph::new("waiting for the gateway…").block(Block::bordered().title(" Secrets ")),
            area,
        );
        return;
    };
    let (table_area, exchange_area) = if data.exchanges.is_empty() {
        (area, None)
    } else {
        let rows = (data.exchanges.len() as u16 + 3).min(area.height / 3);
        let [top, bottom] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(rows)]).areas(area);
        (top, Some(bottom))
    };

    let secrets = &data.secrets;
    let height = table_rows(table_area);
    let selected = model.secrets.selected.min(secrets.len().saturating_sub(1));
    let offset = window(secrets.len(), selected, height);
    let rows = secrets
        .iter()
        .skip(offset)
        .take(height)
        .map(|s| row(model, s));
    let widths = [
        Constraint::Length(10),
        Constraint::Length(14),
        Constraint::Length(6),
        Constraint::Length(13),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(14),
        Constraint::Min(10),
    ];
    let header = Row::new([
        "TENANT",
        "NAME",
        "SOURCE",
        "STATE",
        "FINGERPRINT",
        "ROTATED",
        "EXPIRES",
        "LAST USED",
        "USES",
        "LAST 401/403",
        "ROUTES",
    ])
    .style(HEADER);
    let trouble = secrets
        .iter()
        .filter(|s| model.secret_health(s) != SecretHealth::Ok)
        .count();
    let title = if trouble == 0 {
        format!(" Secrets ({}) ", secrets.len())
    } else {
        format!(" Secrets ({}) — {trouble} need attention ", secrets.len())
    };
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(SELECTED)
        .block(Block::bordered().title(title));
    let mut state =
        TableState::default().with_selected((!secrets.is_empty()).then(|| selected - offset));
    frame.render_stateful_widget(table, table_area, &mut state);

    if let Some(area) = exchange_area {
        exchanges(model, frame, area, &data.exchanges);
    }

    if model.secrets.detail {
        if let Some(secret) = secrets.get(selected) {
            detail_popup(
                frame,
                area,
                &format!("secret {}/{}", secret.tenant, secret.name),
                detail(model, secret),
            );
        }
    }
}

fn state_text(model: &Model, s: &SecretStatus) -> (String, Style) {
    match (s.status, model.secret_health(s)) {
        (SecretState::Missing, _) => ("MISSING".to_owned(), BAD),
        (SecretState::Undecryptable, _) => ("UNDECRYPTABLE".to_owned(), BAD),
        (SecretState::Expired, _) | (_, SecretHealth::Unusable) => ("EXPIRED".to_owned(), BAD),
        (_, SecretHealth::Rejected) => ("REJECTED".to_owned(), BAD),
        (_, SecretHealth::Expiring) => ("expiring".to_owned(), WARN),
        _ => ("present".to_owned(), Style::new()),
    }
}

fn row(model: &Model, s: &SecretStatus) -> Row<'static> {
    let now = model.now_ms;
    let (state, style) = state_text(model, s);
    let health = model.secret_health(s);
    let row_style = match health {
        SecretHealth::Unusable | SecretHealth::Rejected => BAD,
        SecretHealth::Expiring => WARN,
        SecretHealth::Ok => Style::new(),
    };
    let failure = s.last_upstream_auth_failure.map_or_else(
        || "—".to_owned(),
        |f| format!("{} {}", f.status, format::relative(f.at_ms, now)),
    );
    Row::new(vec![
        Cell::from(s.tenant.clone()),
        Cell::from(s.name.clone()),
        Cell::from(format!("{:?}", s.source).to_lowercase()),
        Cell::from(Span::styled(state, style)),
        Cell::from(s.fingerprint.clone().unwrap_or_else(|| "—".to_owned())),
        Cell::from(format::relative_opt(s.rotated_at_ms, now)),
        Cell::from(format::relative_opt(s.expires_at_ms, now)),
        Cell::from(format::relative_opt(s.last_used_at_ms, now)),
        Cell::from(s.use_count.to_string()),
        Cell::from(failure),
        Cell::from(s.routes.join(",")),
    ])
    .style(row_style)
}

fn exchanges(model: &Model, frame: &mut Frame, area: Rect, list: &[ExchangeStatus]) {
    let now = model.now_ms;
    let rows = list.iter().map(|x| {
        let style = if x.last_error.is_some() {
            BAD
        } else {
            Style::new()
        };
        Row::new(vec![
            Cell::from(x.tenant.clone()),
            Cell::from(x.route.clone()),
            Cell::from(format::relative_opt(x.token_cached_until_ms, now)),
            Cell::from(format::relative_opt(x.last_exchange_at_ms, now)),
            Cell::from(x.exchanges.to_string()),
            Cell::from(x.last_error.clone().unwrap_or_else(|| "—".to_owned())),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(10),
        Constraint::Length(16),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Min(10),
    ];
    let header = Row::new([
        "TENANT",
        "ROUTE",
        "TOKEN UNTIL",
        "EXCHANGED",
        "EXCHANGES",
        "LAST ERROR",
    ])
    .style(HEADER);
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" Token exchanges ")),
        area,
    );
}

fn detail(model: &Model, s: &SecretStatus) -> Vec<Line<'static>> {
    let now = model.now_ms;
    let (state, style) = state_text(model, s);
    let at = |t: Option<u64>| {
        t.map_or_else(
            || "—".to_owned(),
            |t| format!("{} ({})", format::datetime(t), format::relative(t, now)),
        )
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{:<14}", "state"), DIM),
            Span::styled(state, style),
        ]),
        field("source", format!("{:?}", s.source).to_lowercase()),
    ];
    match &s.location {
        SecretLocation::Found(place) => lines.push(field("read from", place.clone())),
        SecretLocation::Searched(places) => {
            for (i, place) in places.iter().enumerate() {
                lines.push(field(if i == 0 { "looked in" } else { "" }, place.clone()));
            }
        }
    }
    lines.extend([
        field(
            "fingerprint",
            s.fingerprint.clone().unwrap_or_else(|| "—".to_owned()),
        ),
        field("loaded", at(Some(s.loaded_at_ms))),
        field("rotated", at(s.rotated_at_ms)),
        field("expires", at(s.expires_at_ms)),
        field("last used", at(s.last_used_at_ms)),
        field("uses", s.use_count.to_string()),
    ]);
    match s.last_upstream_auth_failure {
        Some(f) => lines.push(Line::from(vec![
            Span::styled(format!("{:<14}", "last refused"), DIM),
            Span::styled(
                format!("{} {}", f.status, at(Some(f.at_ms))),
                if model.secret_health(s) == SecretHealth::Rejected {
                    BAD
                } else {
                    Style::new()
                },
            ),
        ])),
        None => lines.push(field("last refused", "never")),
    }
    lines.push(field("routes", s.routes.join(", ")));
    lines
}
