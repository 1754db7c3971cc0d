//! The Traffic tab: the live tail, newest at the bottom, statuses coloured by class; the
//! filter line; a detail pane for one request.

use portcullis_api::TrafficEntry;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, TableState};
use ratatui::Frame;

use super::{
    col, detail_popup, field, fitted_table, flex, table_rows, window, Cells, BAD, DIM, GOOD,
    HEADER, SELECTED, WARN,
};
use crate::format;
use crate::model::Model;

pub(super) fn draw(model: &Model, frame: &mut Frame, area: Rect) {
    let traffic = &model.traffic;
    let (table_area, input_area) = if traffic.editing.is_some() {
        let [table, input] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
        (table, Some(input))
    } else {
        (area, None)
    };

    let visible = traffic.visible();
    let selected = traffic.selected_index(&visible);
    let height = table_rows(table_area);
    let offset = window(visible.len(), selected.unwrap_or(0), height);
    let rows = visible.iter().skip(offset).take(height).map(|e| row(e));
    let columns = [
        col("TIME (UTC)", 12, 2),
        col("TENANT", 10, 4),
        col("ROUTE", 14, 1),
        col("METHOD", 6, 3),
        flex("PATH", 16, 0),
        col("STATUS", 6, 0),
        col("DURATION", 8, 2),
        col("EGRESS", 15, 5),
        col("DENIAL", 24, 3),
    ];
    let table = fitted_table(&columns, rows, table_area)
        .row_highlight_style(SELECTED)
        .block(Block::bordered().title(title(model, visible.len())));
    // Following highlights nothing: the newest row is simply at the bottom.
    let highlighted = match traffic.paused_at {
        Some(_) => selected.map(|s| s - offset),
        None => None,
    };
    let mut state = TableState::default().with_selected(highlighted);
    frame.render_stateful_widget(table, table_area, &mut state);

    if let (Some(area), Some((line, _))) = (input_area, &traffic.editing) {
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("/", HEADER),
                Span::raw(line.clone()),
                Span::styled("█", DIM),
                Span::styled("   route:NAME tenant:NAME 5xx status:503 !text", DIM),
            ])),
            area,
        );
    }

    if traffic.detail {
        if let Some(entry) = selected.and_then(|i| visible.get(i)) {
            detail_popup(
                frame,
                area,
                &format!("request #{}", entry.seq),
                detail(entry, model.now_ms),
            );
        }
    }
}

fn title(model: &Model, shown: usize) -> Line<'static> {
    let traffic = &model.traffic;
    let mut spans = vec![Span::raw(" Traffic ")];
    match traffic.paused_at {
        None => spans.push(Span::styled("● following", GOOD)),
        Some(_) => spans.push(Span::styled(
            format!("‖ PAUSED (+{} new)", traffic.new_since_pause()),
            WARN,
        )),
    }
    spans.push(Span::raw(format!(
        " · {shown} shown of {} kept",
        traffic.entries.len()
    )));
    if !traffic.filter.is_empty() {
        spans.push(Span::styled(
            format!(" · filter: {}", traffic.filter.text().trim()),
            HEADER,
        ));
    }
    if traffic.gaps > 0 {
        spans.push(Span::styled(
            format!(" · missed bursts: {}", traffic.gaps),
            WARN,
        ));
    }
    if let Some(error) = &traffic.error {
        spans.push(Span::styled(format!(" · {error}"), BAD));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

/// Colour of a status code by class.
fn status_style(status: u16) -> Style {
    match status / 100 {
        2 => GOOD,
        3 => Style::new().fg(Color::Cyan),
        4 => WARN,
        _ => BAD,
    }
}

fn row(e: &TrafficEntry) -> Cells<'static> {
    let cells = vec![
        Cell::from(format::clock_ms(e.time_ms)),
        Cell::from(e.tenant.clone().unwrap_or_else(|| "—".to_owned())),
        Cell::from(e.route.clone().unwrap_or_else(|| "—".to_owned())),
        Cell::from(e.method.clone()),
        Cell::from(e.path.clone()),
        Cell::from(Span::styled(e.status.to_string(), status_style(e.status))),
        Cell::from(format::millis(e.duration_ms)),
        Cell::from(e.egress.map_or_else(|| "—".to_owned(), |ip| ip.to_string())),
        Cell::from(Span::styled(
            e.denial.clone().unwrap_or_default(),
            status_style(e.status),
        )),
    ];
    (cells, Style::new())
}

fn detail(e: &TrafficEntry, now_ms: u64) -> Vec<Line<'static>> {
    let none = || "—".to_owned();
    vec![
        field("request id", e.request_id.clone()),
        field(
            "time",
            format!(
                "{} ({})",
                format::datetime(e.time_ms),
                format::relative(e.time_ms, now_ms)
            ),
        ),
        field("tenant", e.tenant.clone().unwrap_or_else(none)),
        field("route", e.route.clone().unwrap_or_else(none)),
        field("request", format!("{} {}", e.method, e.path)),
        Line::from(vec![
            Span::styled(format!("{:<14}", "status"), DIM),
            Span::styled(e.status.to_string(), status_style(e.status)),
            Span::raw(
                e.denial
                    .as_ref()
                    .map(|d| format!("  {d}"))
                    .unwrap_or_default(),
            ),
        ]),
        field("duration", format::millis(e.duration_ms)),
        field(
            "bytes",
            format!(
                "{} in, {} out",
                format::bytes(e.bytes_in),
                format::bytes(e.bytes_out)
            ),
        ),
        field("egress", e.egress.map_or_else(none, |ip| ip.to_string())),
        field("upstream", e.upstream.clone().unwrap_or_else(none)),
        field("seq", e.seq.to_string()),
    ]
}
