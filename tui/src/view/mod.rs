//! `view`: draws a [`Model`] into a ratatui [`Frame`]. Reads the model, changes nothing, knows
//! no clock but `model.now_ms`, so the same model always draws the same screen (which is what
//! the snapshot tests rely on).
//!
//! Screen: a title line, the tab bar, a banner when the admin API is not answering, the open
//! tab, and a footer of key hints taken from the key table. Tables build rows only for what
//! fits on screen, so 10,000 routes cost no more to draw than 30.

mod config;
mod overview;
mod routes;
mod secrets;
mod traffic;
mod tunnels;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Tabs, Wrap};
use ratatui::Frame;

use crate::format;
use crate::keys;
use crate::model::{Connection, Model, Tab};

pub(crate) use config::line_count as config_line_count;

/// Style of the selected row.
const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
/// Style of column headers.
const HEADER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
/// Style of something broken.
const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
/// Style of something to watch.
const WARN: Style = Style::new().fg(Color::Yellow);
/// Style of something fine.
const GOOD: Style = Style::new().fg(Color::Green);
/// Style of labels.
const DIM: Style = Style::new().fg(Color::DarkGray);

/// Draws the whole console.
pub fn view(model: &Model, frame: &mut Frame) {
    let area = frame.area();
    let banner = banner(model);
    let [title, tabs, banner_area, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);

    frame.render_widget(title_line(model), title);
    frame.render_widget(tab_bar(model, tabs.width), tabs);
    if let Some(banner) = banner {
        frame.render_widget(banner, banner_area);
    }
    match model.tab {
        Tab::Overview => overview::draw(model, frame, body),
        Tab::Routes => routes::draw(model, frame, body),
        Tab::Traffic => traffic::draw(model, frame, body),
        Tab::Secrets => secrets::draw(model, frame, body),
        Tab::Tunnels => tunnels::draw(model, frame, body),
        Tab::Config => config::draw(model, frame, body),
    }
    frame.render_widget(footer_line(model), footer);
    if model.help {
        help(frame, body);
    }
}

fn title_line(model: &Model) -> Paragraph<'static> {
    let (mark, style) = match model.connection {
        Connection::Connected => ("● live ", GOOD),
        Connection::Connecting => ("○ connecting ", WARN),
        Connection::Disconnected { .. } | Connection::Unauthorized { .. } => ("✖ offline ", BAD),
    };
    let mut spans = vec![
        Span::styled(" portcullis ", Style::new().add_modifier(Modifier::BOLD)),
        Span::styled(mark, style),
        Span::raw(model.admin.clone()),
    ];
    if let Some(status) = &model.status {
        spans.push(Span::styled(
            format!(
                "  v{} pid {} up {}",
                status.version,
                status.pid,
                format::span((status.uptime_seconds * 1000.0) as u64)
            ),
            DIM,
        ));
    }
    Paragraph::new(Line::from(spans))
}

fn tab_bar(model: &Model, width: u16) -> Tabs<'static> {
    // Narrow terminals name only the open tab, so it is always on screen.
    let wide = width >= 72;
    let titles = Tab::ALL.iter().enumerate().map(|(i, t)| {
        if wide || *t == model.tab {
            format!("{} {}", i + 1, t.title())
        } else {
            format!("{}", i + 1)
        }
    });
    Tabs::new(titles)
        .select(model.tab.index())
        .highlight_style(Style::new().fg(Color::Black).bg(Color::Cyan))
        .divider("│")
}

/// The banner line, when the admin API is not answering as it should.
fn banner(model: &Model) -> Option<Paragraph<'static>> {
    let retry = |at: u64| {
        let seconds = at.saturating_sub(model.now_ms).div_ceil(1000);
        format!("retrying in {seconds}s")
    };
    let (text, style) = match &model.connection {
        Connection::Connected => return None,
        Connection::Connecting => (
            format!(" connecting to {} …", model.admin),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ),
        Connection::Disconnected {
            reason,
            retry_at_ms,
        } => (
            format!(" disconnected — {}: {reason}", retry(*retry_at_ms)),
            Style::new().fg(Color::White).bg(Color::Red),
        ),
        Connection::Unauthorized { code, retry_at_ms } => {
            let hint = if code == "admin_token_not_configured" {
                "the gateway has no admin token configured (admin.token_file)"
            } else {
                "check the admin token"
            };
            (
                format!(" 401: {hint} ({code}) — {}", retry(*retry_at_ms)),
                Style::new().fg(Color::White).bg(Color::Red),
            )
        }
    };
    Some(Paragraph::new(text).style(style))
}

fn footer_line(model: &Model) -> Paragraph<'static> {
    let mut spans = Vec::new();
    if model.traffic.editing.is_some() && model.tab == Tab::Traffic {
        spans.push(Span::raw(" Enter apply  Esc cancel  Backspace delete"));
    } else if model.config.confirm && model.tab == Tab::Config {
        spans.push(Span::raw(" y reload  n cancel"));
    } else {
        for (key, what) in keys::hints(model.tab) {
            spans.push(Span::styled(format!(" {key}"), HEADER));
            spans.push(Span::raw(format!(" {what} ")));
        }
    }
    if let Some(at) = model.last_poll_ms {
        spans.push(Span::styled(
            format!(" · updated {}", format::relative(at, model.now_ms)),
            DIM,
        ));
    }
    Paragraph::new(Line::from(spans))
}

fn help(frame: &mut Frame, body: Rect) {
    let lines: Vec<Line> = keys::help_lines()
        .into_iter()
        .map(|(keys, text)| {
            if keys.is_empty() {
                Line::from(Span::styled(text, HEADER))
            } else {
                Line::from(vec![Span::raw(format!("  {keys:<16}")), Span::raw(text)])
            }
        })
        .collect();
    let area = popup(body, 76, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys — ? or Esc closes ")),
        area,
    );
}

/// A rectangle of at most `width` × `height` centred in `area`.
fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

/// Draws `lines` in a bordered popup over `area`, cleared underneath.
fn detail_popup(frame: &mut Frame, area: Rect, title: &str, lines: Vec<Line<'static>>) {
    let height = lines.len() as u16 + 2;
    let rect = popup(area, area.width.saturating_sub(4).max(20), height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(format!(" {title} — Esc closes "))),
        rect,
    );
}

/// A `label  value` line for detail panes.
fn field(label: &str, value: impl Into<String>) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{label:<14}"), DIM),
        Span::raw(value.into()),
    ])
}

/// A column of a table: it is shown when it fits, the lowest `priority` first.
struct Column {
    title: String,
    width: u16,
    priority: u8,
    /// Takes the room left over (one column per table).
    flex: bool,
}

/// A row as cells of every column, and its style.
type Cells<'a> = (Vec<Cell<'a>>, Style);

/// Indexes of the columns that fit in `width` (inside the borders), in table order: whole
/// columns are dropped, least important first, rather than squeezed. Also keeps the layout
/// solvable, so the same data always draws the same table.
fn fit(columns: &[Column], width: u16) -> Vec<usize> {
    let inner = width.saturating_sub(2);
    let mut by_priority: Vec<usize> = (0..columns.len()).collect();
    by_priority.sort_by_key(|i| (columns[*i].priority, *i));
    let mut keep = Vec::new();
    let mut used = 0u16;
    for i in by_priority {
        let need = columns[i].width + u16::from(!keep.is_empty());
        if used + need <= inner {
            keep.push(i);
            used += need;
        }
    }
    keep.sort_unstable();
    keep
}

/// A table of the columns of `columns` that fit `area`, with a header row.
fn fitted_table<'a>(
    columns: &[Column],
    rows: impl IntoIterator<Item = Cells<'a>>,
    area: Rect,
) -> Table<'a> {
    let keep = fit(columns, area.width);
    let header = Row::new(keep.iter().map(|i| Cell::from(columns[*i].title.clone()))).style(HEADER);
    let widths: Vec<Constraint> = keep
        .iter()
        .map(|i| {
            let c = &columns[*i];
            if c.flex {
                Constraint::Min(c.width)
            } else {
                Constraint::Length(c.width)
            }
        })
        .collect();
    let rows = rows.into_iter().map(|(cells, style)| {
        let mut cells: Vec<Option<Cell>> = cells.into_iter().map(Some).collect();
        Row::new(
            keep.iter()
                .map(|i| cells.get_mut(*i).and_then(Option::take).unwrap_or_default()),
        )
        .style(style)
    });
    Table::new(rows, widths).header(header)
}

/// Shorthand for a [`Column`].
fn col(title: impl Into<String>, width: u16, priority: u8) -> Column {
    Column {
        title: title.into(),
        width,
        priority,
        flex: false,
    }
}

/// Shorthand for the flexible [`Column`].
fn flex(title: impl Into<String>, width: u16, priority: u8) -> Column {
    Column {
        flex: true,
        ..col(title, width, priority)
    }
}

/// The first row to draw so that `selected` is visible in `height` rows: the selection stays
/// near the middle while there is room to scroll, and the window never runs past the end.
fn window(len: usize, selected: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    selected.saturating_sub(height / 2).min(len - height)
}

/// Rows available for a table's body inside a bordered block with a header row.
fn table_rows(area: Rect) -> usize {
    usize::from(area.height.saturating_sub(3))
}

#[cfg(test)]
mod tests;
