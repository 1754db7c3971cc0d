//! The Secrets tab: every referenced secret's state — never a value — with missing, expired,
//! undecryptable and upstream-rejected ones highlighted; token exchanges below when any.

use portcullis_api::{ExchangeStatus, SecretLocation, SecretState, SecretStatus};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, TableState};
use ratatui::Frame;

use super::{
    col, detail_popup, field, fitted_table, flex, table_rows, window, Cells, BAD, DIM, SELECTED,
    WARN,
};
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
    let rows = (data.exchanges.len() as u16 + 3).min(area.height / 3);
    // Exchanges only when at least one of them fits under the secrets.
    let (table_area, exchange_area) = if data.exchanges.is_empty() || rows < 4 {
        (area, None)
    } else {
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
    let columns = [
        col("TENANT", 10, 1),
        col("NAME", 14, 0),
        col("SOURCE", 6, 5),
        col("STATE", 13, 0),
        col("FINGERPRINT", 12, 6),
        col("ROTATED", 9, 5),
        col("EXPIRES", 9, 2),
        col("LAST USED", 9, 4),
        col("USES", 6, 6),
        col("LAST 401/403", 14, 3),
        flex("ROUTES", 10, 7),
    ];
    let trouble = secrets
        .iter()
        .filter(|s| model.secret_health(s) != SecretHealth::Ok)
        .count();
    let title = if trouble == 0 {
        format!(" Secrets ({}) ", secrets.len())
    } else {
        format!(" Secrets ({}) — {trouble} need attention ", secrets.len())
    };
    let table = fitted_table(&columns, rows, table_area)
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

fn row(model: &Model, s: &SecretStatus) -> Cells<'static> {
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
    let cells = vec![
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
    ];
    (cells, row_style)
}

fn exchanges(model: &Model, frame: &mut Frame, area: Rect, list: &[ExchangeStatus]) {
    let now = model.now_ms;
    let rows = list.iter().map(|x| {
        let style = if x.last_error.is_some() {
            BAD
        } else {
            Style::new()
        };
        let cells = vec![
            Cell::from(x.tenant.clone()),
            Cell::from(x.route.clone()),
            Cell::from(format::relative_opt(x.token_cached_until_ms, now)),
            Cell::from(format::relative_opt(x.last_exchange_at_ms, now)),
            Cell::from(x.exchanges.to_string()),
            Cell::from(x.last_error.clone().unwrap_or_else(|| "—".to_owned())),
        ];
        (cells, style)
    });
    let columns = [
        col("TENANT", 10, 1),
        col("ROUTE", 16, 0),
        col("TOKEN UNTIL", 12, 3),
        col("EXCHANGED", 12, 4),
        col("EXCHANGES", 9, 5),
        flex("LAST ERROR", 10, 2),
    ];
    frame.render_widget(
        fitted_table(&columns, rows, area).block(Block::bordered().title(" Token exchanges ")),
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
