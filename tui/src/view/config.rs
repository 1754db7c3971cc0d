//! The Config tab: the configuration in force, the last reload with every error in full, and
//! reloads asked for from the console (`r`, confirmed with `y`).

use portcullis_api::{ReloadResult, ReloadStatus};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{field, popup, BAD, DIM, GOOD, HEADER, WARN};
use crate::format;
use crate::model::{Model, ReloadState};

pub(super) fn draw(model: &Model, frame: &mut Frame, area: Rect) {
    let lines = lines(model);
    let scroll = model
        .config
        .scroll
        .min(lines.len().saturating_sub(1) as u16);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0))
            .block(Block::bordered().title(" Config — r reloads ")),
        area,
    );
    if model.config.confirm {
        let source = model
            .status
            .as_ref()
            .map_or_else(String::new, |s| s.config.source.clone());
        let text = vec![
            Line::from("Reload the configuration now?"),
            Line::from(Span::styled(source, DIM)),
            Line::from(""),
            Line::from(vec![
                Span::styled("y", HEADER),
                Span::raw(" reload   "),
                Span::styled("n", HEADER),
                Span::raw(" cancel"),
            ]),
        ];
        let rect = popup(area, 50, 6);
        frame.render_widget(Clear, rect);
        frame.render_widget(
            Paragraph::new(text).block(Block::bordered().title(" reload ")),
            rect,
        );
    }
}

/// Unwrapped lines of the tab (what `j`/`k` scroll through).
pub(crate) fn line_count(model: &Model) -> usize {
    lines(model).len()
}

fn lines(model: &Model) -> Vec<Line<'static>> {
    let now = model.now_ms;
    let mut lines = Vec::new();
    let Some(status) = &model.status else {
        lines.push(Line::from("waiting for the gateway…"));
        reload_lines(model, &mut lines);
        return lines;
    };
    let config = &status.config;
    lines.push(field("active hash", config.hash.clone()));
    lines.push(field("source", config.source.clone()));
    lines.push(field(
        "loaded",
        format!(
            "{} ({})",
            format::datetime(config.loaded_at_ms),
            format::relative(config.loaded_at_ms, now)
        ),
    ));
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("last reload", HEADER)));
    outcome_lines(&status.last_reload, now, &mut lines);
    reload_lines(model, &mut lines);
    lines
}

/// Result, trigger, time, and every error and restart-required change in full.
fn outcome_lines(reload: &ReloadStatus, now: u64, lines: &mut Vec<Line<'static>>) {
    let (result, style) = match reload.result {
        ReloadResult::Success => ("success", GOOD),
        ReloadResult::Error => ("FAILED — the previous configuration stays in force", BAD),
    };
    lines.push(Line::from(vec![
        Span::styled(format!("{:<14}", "result"), DIM),
        Span::styled(result, style),
    ]));
    lines.push(field(
        "trigger",
        format!("{:?}", reload.trigger).to_lowercase(),
    ));
    lines.push(field(
        "at",
        format!(
            "{} ({}), took {}",
            format::datetime(reload.at_ms),
            format::relative(reload.at_ms, now),
            format::millis(reload.duration_ms)
        ),
    ));
    lines.push(field("active hash", reload.active_hash.clone()));
    if !reload.errors.is_empty() {
        lines.push(Line::from(Span::styled(
            format!("errors ({})", reload.errors.len()),
            BAD,
        )));
        for error in &reload.errors {
            for part in error.lines() {
                lines.push(Line::from(Span::styled(format!("  {part}"), BAD)));
            }
        }
    }
    if !reload.restart_required.is_empty() {
        lines.push(Line::from(Span::styled(
            "not applied until a restart",
            WARN,
        )));
        for change in &reload.restart_required {
            lines.push(Line::from(Span::styled(format!("  {change}"), WARN)));
        }
    }
}

fn reload_lines(model: &Model, lines: &mut Vec<Line<'static>>) {
    let now = model.now_ms;
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("reload from this console", HEADER)));
    match &model.config.reload {
        ReloadState::Idle => lines.push(Line::from(Span::styled(
            "  none yet — press r to reload",
            DIM,
        ))),
        ReloadState::Running { since_ms } => lines.push(Line::from(Span::styled(
            format!("  reloading… (asked {})", format::relative(*since_ms, now)),
            WARN,
        ))),
        ReloadState::Done { status } => outcome_lines(status, now, lines),
        ReloadState::Failed { error, at_ms } => lines.push(Line::from(Span::styled(
            format!(
                "  the reload request failed {}: {error}",
                format::relative(*at_ms, now)
            ),
            BAD,
        ))),
    }
}
