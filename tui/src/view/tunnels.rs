//! The Tunnels tab: each broker tunnel with its agents beneath it; offline tunnels in red,
//! reconnecting ones in yellow. A gateway without tunnels (or without the endpoint at all, a
//! 404) shows "no tunnels configured" — it is not an error.

use portcullis_api::{AgentStatus, TunnelState, TunnelStatus};
use ratatui::layout::{Alignment, Rect};
use ratatui::style::Style;
use ratatui::widgets::{Block, Cell, Paragraph, TableState};
use ratatui::Frame;

use super::{col, fitted_table, flex, table_rows, window, Cells, BAD, DIM, GOOD, SELECTED, WARN};
use crate::format;
use crate::model::{Model, TunnelsData};

/// What the tab says when there is nothing to list.
pub(super) const NO_TUNNELS: &str = "no tunnels configured";

pub(super) fn draw(model: &Model, frame: &mut Frame, area: Rect) {
    let tunnels = match &model.tunnels.data {
        TunnelsData::Served(t) if !t.tunnels.is_empty() => &t.tunnels,
        TunnelsData::Unknown => {
            message(frame, area, "waiting for the gateway…");
            return;
        }
        _ => {
            message(frame, area, NO_TUNNELS);
            return;
        }
    };
    let now = model.now_ms;
    let mut all: Vec<Cells> = Vec::with_capacity(model.tunnels.row_count());
    let height = table_rows(area);
    let total = model.tunnels.row_count();
    let selected = model.tunnels.selected.min(total.saturating_sub(1));
    let offset = window(total, selected, height);
    // Rows are built only for the visible window.
    let mut index = 0usize;
    for tunnel in tunnels {
        if index >= offset + height {
            break;
        }
        if index >= offset {
            all.push(tunnel_row(tunnel));
        }
        index += 1;
        for agent in &tunnel.agents {
            if index >= offset && index < offset + height {
                all.push(agent_row(agent, now));
            }
            index += 1;
        }
    }
    let columns = [
        flex("TUNNEL / AGENT", 14, 0),
        col("TENANT/VER", 12, 2),
        col("STATE / ADDRESS", 21, 1),
        col("CONNECTED", 10, 4),
        col("STREAMS", 8, 5),
        col("TO AGENT", 9, 6),
        col("FROM", 9, 6),
        col("HEARTBEAT", 10, 3),
        col("ROUTES", 12, 2),
    ];
    let offline = tunnels
        .iter()
        .filter(|t| t.state != TunnelState::Online)
        .count();
    let title = format!(
        " Tunnels ({}) — {} online, {offline} not ",
        tunnels.len(),
        tunnels.len() - offline
    );
    let table = fitted_table(&columns, all, area)
        .row_highlight_style(SELECTED)
        .block(Block::bordered().title(title));
    let mut state = TableState::default().with_selected(Some(selected - offset));
    frame.render_stateful_widget(table, area, &mut state);
}

fn message(frame: &mut Frame, area: Rect, text: &str) {
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .style(DIM)
            .block(Block::bordered().title(" Tunnels ")),
        area,
    );
}

fn tunnel_row(t: &TunnelStatus) -> Cells<'static> {
    let (state, style) = match t.state {
        TunnelState::Online => ("online", GOOD),
        TunnelState::Reconnecting => ("RECONNECTING", WARN),
        TunnelState::Offline => ("OFFLINE", BAD),
    };
    let row_style = if t.state == TunnelState::Online {
        Style::new()
    } else {
        style
    };
    let cells = vec![
        Cell::from(format!("▸ {}", t.name)),
        Cell::from(t.tenant.clone()),
        Cell::from(ratatui::text::Span::styled(
            match t.agents.len() {
                0 => state.to_owned(),
                1 => format!("{state}, 1 agent"),
                n => format!("{state}, {n} agents"),
            },
            style,
        )),
        Cell::from(""),
        Cell::from(""),
        Cell::from(""),
        Cell::from(""),
        Cell::from(""),
        Cell::from(t.routes.join(",")),
    ];
    (cells, row_style)
}

fn agent_row(a: &AgentStatus, now: u64) -> Cells<'static> {
    let heartbeat_style = if now.saturating_sub(a.last_heartbeat_ms) > 30_000 {
        WARN
    } else {
        Style::new()
    };
    let cells = vec![
        Cell::from(format!("  └ {}", a.id)),
        Cell::from(a.version.clone()),
        Cell::from(a.remote_addr.clone()),
        Cell::from(format::relative(a.connected_since_ms, now)),
        Cell::from(a.open_streams.to_string()),
        Cell::from(format::bytes(a.bytes_to_agent)),
        Cell::from(format::bytes(a.bytes_from_agent)),
        Cell::from(ratatui::text::Span::styled(
            format::relative(a.last_heartbeat_ms, now),
            heartbeat_style,
        )),
        Cell::from(""),
    ];
    (cells, Style::new())
}
