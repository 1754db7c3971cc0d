//! Snapshot tests: every tab and overlay drawn into ratatui's `TestBackend` from fixed data,
//! at a roomy size and at 40×10. The `.snap` files under `snapshots/` are the reviewed
//! screens; a change to a view shows up as a diff there.

#![allow(clippy::unwrap_used)]

use portcullis_api::{ReloadResult, TunnelState};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;

use crate::fixtures::{self, NOW};
use crate::keys::Key;
use crate::model::{Connection, Model, Msg, Tab};
use crate::{update, view};

fn draw(model: &Model, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view(model, f)).unwrap();
    terminal
}

fn keys(model: &mut Model, keys: &[Key]) {
    for key in keys {
        update(model, Msg::Key(*key));
    }
}

fn on(tab: Tab) -> Model {
    let mut model = fixtures::model();
    model.tab = tab;
    model
}

/// The text of the row of `buffer` that contains `needle`.
fn row_with(buffer: &Buffer, needle: &str) -> (u16, String) {
    let area = buffer.area;
    for y in 0..area.height {
        let line: String = (0..area.width)
            .map(|x| buffer[(x, y)].symbol().to_owned())
            .collect();
        if line.contains(needle) {
            return (y, line);
        }
    }
    panic!("no row contains {needle:?}");
}

/// The foreground colour of the first cell of `needle` on screen.
fn fg_of(buffer: &Buffer, needle: &str) -> Color {
    let (y, line) = row_with(buffer, needle);
    let byte = line.find(needle).unwrap();
    let x = line[..byte].chars().count() as u16;
    buffer[(x, y)].fg
}

#[test]
fn overview() {
    insta::assert_snapshot!(draw(&on(Tab::Overview), 120, 30).backend());
}

#[test]
fn overview_narrow_stacks_the_charts() {
    insta::assert_snapshot!(draw(&on(Tab::Overview), 80, 30).backend());
}

#[test]
fn routes() {
    insta::assert_snapshot!(draw(&on(Tab::Routes), 120, 16).backend());
}

#[test]
fn routes_sorted_by_rps_with_detail() {
    let mut model = on(Tab::Routes);
    keys(
        &mut model,
        &[
            Key::Char('s'),
            Key::Char('s'),
            Key::Char('s'),
            Key::Char('j'),
            Key::Enter,
        ],
    );
    insta::assert_snapshot!(draw(&model, 120, 24).backend());
}

#[test]
fn traffic_following() {
    insta::assert_snapshot!(draw(&on(Tab::Traffic), 140, 16).backend());
}

#[test]
fn traffic_paused_filtered_while_editing() {
    let mut model = on(Tab::Traffic);
    keys(
        &mut model,
        &[
            Key::Char('p'),
            Key::Char('/'),
            Key::Char('5'),
            Key::Char('x'),
            Key::Char('x'),
        ],
    );
    let terminal = draw(&model, 140, 16);
    insta::assert_snapshot!(terminal.backend());
    assert_eq!(fg_of(terminal.backend().buffer(), "502"), Color::Red);
}

#[test]
fn traffic_detail() {
    let mut model = on(Tab::Traffic);
    keys(&mut model, &[Key::Char('k'), Key::Char('k'), Key::Enter]);
    insta::assert_snapshot!(draw(&model, 120, 24).backend());
}

#[test]
fn secrets_highlight_trouble() {
    let terminal = draw(&on(Tab::Secrets), 150, 20);
    insta::assert_snapshot!(terminal.backend());
    let buffer = terminal.backend().buffer();
    assert_eq!(fg_of(buffer, "MISSING"), Color::Red);
    assert_eq!(fg_of(buffer, "UNDECRYPTABLE"), Color::Red);
    assert_eq!(fg_of(buffer, "EXPIRED"), Color::Red);
    assert_eq!(fg_of(buffer, "REJECTED"), Color::Red);
    assert_eq!(fg_of(buffer, "expiring"), Color::Yellow);
    assert_eq!(fg_of(buffer, "jira-token"), Color::Reset);
}

#[test]
fn secret_detail_shows_where_it_was_looked_for() {
    let mut model = on(Tab::Secrets);
    keys(
        &mut model,
        &[
            Key::Char('j'),
            Key::Char('j'),
            Key::Char('j'),
            Key::Char('j'),
            Key::Enter,
        ],
    );
    insta::assert_snapshot!(draw(&model, 120, 24).backend());
}

#[test]
fn tunnels_with_agents_offline_highlighted() {
    let terminal = draw(&on(Tab::Tunnels), 140, 14);
    insta::assert_snapshot!(terminal.backend());
    assert_eq!(fg_of(terminal.backend().buffer(), "OFFLINE"), Color::Red);
    assert_eq!(
        fg_of(terminal.backend().buffer(), "RECONNECTING"),
        Color::Yellow
    );
}

#[test]
fn tunnels_not_served_is_not_an_error() {
    let mut model = on(Tab::Tunnels);
    let mut poll = fixtures::poll(NOW, 1200);
    poll.tunnels = None;
    update(&mut model, Msg::Polled(Box::new(poll)));
    let terminal = draw(&model, 80, 10);
    insta::assert_snapshot!(terminal.backend());
    let text = format!("{}", terminal.backend());
    assert!(text.contains("no tunnels configured"));
    assert!(!text.contains("disconnected") && !text.contains("404"));
}

#[test]
fn config_with_reload_errors_in_full() {
    insta::assert_snapshot!(draw(&on(Tab::Config), 120, 24).backend());
}

#[test]
fn config_confirm_then_outcome() {
    let mut model = on(Tab::Config);
    keys(&mut model, &[Key::Char('r')]);
    insta::assert_snapshot!("config_confirm", draw(&model, 100, 20).backend());
    keys(&mut model, &[Key::Char('y')]);
    let mut outcome = fixtures::status(1).last_reload;
    outcome.result = ReloadResult::Success;
    outcome.errors.clear();
    outcome.trigger = portcullis_api::ReloadTrigger::Api;
    outcome.at_ms = NOW;
    update(&mut model, Msg::ReloadFinished(Ok(outcome)));
    insta::assert_snapshot!("config_reloaded", draw(&model, 100, 30).backend());
}

#[test]
fn help_lists_the_key_table() {
    let mut model = on(Tab::Routes);
    keys(&mut model, &[Key::Char('?')]);
    let terminal = draw(&model, 100, 40);
    insta::assert_snapshot!(terminal.backend());
    let text = format!("{}", terminal.backend());
    for binding in crate::keys::KEYS {
        assert!(text.contains(binding.help), "help lacks {:?}", binding.help);
    }
}

#[test]
fn disconnected_banner_counts_down() {
    let mut model = on(Tab::Overview);
    update(
        &mut model,
        Msg::Disconnected {
            reason: "io: Connection refused".into(),
            retry_at_ms: NOW + 2_400,
        },
    );
    let terminal = draw(&model, 100, 8);
    insta::assert_snapshot!(terminal.backend());
    assert!(format!("{}", terminal.backend()).contains("disconnected — retrying in 3s"));
}

#[test]
fn unauthorized_banner() {
    let mut model = fixtures::model();
    model.connection = Connection::Unauthorized {
        code: "unauthorized".into(),
        retry_at_ms: NOW + 1_000,
    };
    let terminal = draw(&model, 100, 6);
    insta::assert_snapshot!(terminal.backend());
    assert!(format!("{}", terminal.backend()).contains("401: check the admin token"));
}

#[test]
fn before_the_first_poll() {
    let model = Model::new("http://127.0.0.1:9901", 10);
    for tab in Tab::ALL {
        let mut model = model.clone();
        model.tab = tab;
        let text = format!("{}", draw(&model, 80, 12).backend());
        assert!(
            text.contains("connecting to http://127.0.0.1:9901"),
            "{tab:?}:\n{text}"
        );
    }
}

#[test]
fn every_view_at_40x10() {
    let mut screens = String::new();
    for tab in Tab::ALL {
        let model = on(tab);
        screens.push_str(&format!("{:?}\n{}\n", tab, draw(&model, 40, 10).backend()));
    }
    insta::assert_snapshot!(screens);
}

#[test]
fn details_at_40x10() {
    let mut screens = String::new();
    for tab in [Tab::Routes, Tab::Traffic, Tab::Secrets] {
        let mut model = on(tab);
        keys(&mut model, &[Key::Enter]);
        screens.push_str(&format!("{:?}\n{}\n", tab, draw(&model, 40, 10).backend()));
    }
    insta::assert_snapshot!(screens);
}

#[test]
fn columns_that_do_not_fit_are_dropped_least_important_first() {
    use super::{col, fit, flex};
    let columns = [
        flex("NAME", 10, 0),
        col("A", 5, 2),
        col("B", 5, 1),
        col("C", 30, 3),
    ];
    assert_eq!(fit(&columns, 100), [0, 1, 2, 3]);
    assert_eq!(fit(&columns, 2 + 10 + 1 + 5), [0, 2]);
    assert_eq!(fit(&columns, 2 + 10 + 1 + 5 + 1 + 5), [0, 1, 2]);
    assert_eq!(fit(&columns, 5), Vec::<usize>::new());
}

#[test]
fn tiny_and_degenerate_sizes_do_not_panic() {
    let mut model = on(Tab::Routes);
    keys(&mut model, &[Key::Char('?')]);
    for tab in Tab::ALL {
        for (w, h) in [(1, 1), (10, 3), (40, 10), (20, 40), (300, 5)] {
            let mut model = on(tab);
            draw(&model, w, h);
            keys(&mut model, &[Key::Enter, Key::Char('?')]);
            draw(&model, w, h);
        }
    }
}

#[test]
fn ten_thousand_routes_draw_only_the_visible_rows() {
    let mut model = on(Tab::Routes);
    let mut poll = fixtures::poll(NOW, 1200);
    let template = poll.routes.routes[0].clone();
    poll.routes.routes = (0..10_000)
        .map(|i| {
            let mut r = template.clone();
            r.name = format!("route-{i:05}");
            r.stats.requests_per_second = f64::from(i % 97);
            r
        })
        .collect();
    update(&mut model, Msg::Polled(Box::new(poll)));
    keys(&mut model, &[Key::Char('G')]);
    let terminal = draw(&model, 100, 12);
    let text = format!("{}", terminal.backend());
    assert!(text.contains("Routes (10000)"), "{text}");
    assert!(text.contains("route-09999"), "{text}");
    assert!(!text.contains("route-09990"), "{text}");
}

#[test]
fn offline_tunnel_counts_reach_the_overview() {
    let model = on(Tab::Overview);
    let text = format!("{}", draw(&model, 120, 30).backend());
    let offline = fixtures::tunnels()
        .tunnels
        .iter()
        .filter(|t| t.state != TunnelState::Online)
        .count();
    assert!(text.contains(&format!("1 up, {offline} down")), "{text}");
}
