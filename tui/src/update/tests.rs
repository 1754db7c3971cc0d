//! `update` tests: every key of the key table and every message, on the fixture model.

#![allow(clippy::unwrap_used)]

use portcullis_api::{ReloadResult, TrafficPage};

use super::*;
use crate::fixtures::{self, entry, NOW};
use crate::keys::{Scope, KEYS};
use crate::model::{ReloadState, TunnelsData};

fn press(model: &mut Model, keys: &[Key]) -> Option<Command> {
    let mut last = None;
    for key in keys {
        last = update(model, Msg::Key(*key));
    }
    last
}

fn on(tab: Tab) -> Model {
    let mut model = fixtures::model();
    model.tab = tab;
    model
}

fn route_names(model: &Model) -> Vec<&str> {
    model
        .routes
        .order
        .iter()
        .map(|i| model.routes.list[*i].name.as_str())
        .collect()
}

// --- global keys ---

#[test]
fn q_and_ctrl_c_quit_everywhere() {
    for tab in Tab::ALL {
        assert_eq!(press(&mut on(tab), &[Key::Char('q')]), Some(Command::Quit));
        assert_eq!(press(&mut on(tab), &[Key::Ctrl('c')]), Some(Command::Quit));
    }
    // Even while typing a filter, Ctrl-C quits (and q is text).
    let mut model = on(Tab::Traffic);
    assert_eq!(press(&mut model, &[Key::Char('/'), Key::Char('q')]), None);
    assert_eq!(model.traffic.filter.text(), "q");
    assert_eq!(press(&mut model, &[Key::Ctrl('c')]), Some(Command::Quit));
}

#[test]
fn digits_tab_and_backtab_switch_tabs() {
    let mut model = on(Tab::Overview);
    for (i, tab) in Tab::ALL.iter().enumerate() {
        let digit = char::from(b'1' + i as u8);
        press(&mut model, &[Key::Char(digit)]);
        assert_eq!(model.tab, *tab);
    }
    press(&mut model, &[Key::Tab]);
    assert_eq!(model.tab, Tab::Overview, "Tab wraps after the last tab");
    press(&mut model, &[Key::BackTab]);
    assert_eq!(model.tab, Tab::Config, "Shift-Tab wraps before the first");
    press(&mut model, &[Key::BackTab, Key::BackTab]);
    assert_eq!(model.tab, Tab::Secrets);
}

#[test]
fn question_mark_opens_help_and_only_help_keys_act_while_open() {
    let mut model = on(Tab::Routes);
    press(&mut model, &[Key::Char('?')]);
    assert!(model.help);
    press(
        &mut model,
        &[Key::Char('j'), Key::Char('3'), Key::Char('s')],
    );
    assert_eq!(model.tab, Tab::Routes);
    assert_eq!(model.routes.selected, 0);
    assert_eq!(model.routes.sort, RouteColumn::Name);
    press(&mut model, &[Key::Char('?')]);
    assert!(!model.help);
    press(&mut model, &[Key::Char('?'), Key::Esc]);
    assert!(!model.help);
    press(&mut model, &[Key::Char('?')]);
    assert_eq!(press(&mut model, &[Key::Char('q')]), Some(Command::Quit));
}

#[test]
fn every_binding_in_the_key_table_reaches_its_action() {
    // The handler and the help read the same table: each key of each binding resolves to the
    // binding's action on a tab where it applies.
    for binding in KEYS {
        let tab = match binding.scope {
            Scope::Global => Tab::Overview,
            Scope::Tab(t) => t,
        };
        for key in binding.keys {
            assert_eq!(
                action_for(*key, tab),
                Some(binding.action),
                "{key:?} on {tab:?}"
            );
        }
    }
    // Tab-scoped keys do nothing elsewhere.
    assert_eq!(action_for(Key::Char('s'), Tab::Traffic), None);
    assert_eq!(action_for(Key::Char('p'), Tab::Routes), None);
    assert_eq!(action_for(Key::Char('r'), Tab::Overview), None);
    assert_eq!(action_for(Key::Char('/'), Tab::Secrets), None);
    assert_eq!(action_for(Key::Char('x'), Tab::Overview), None);
}

#[test]
fn unbound_keys_change_nothing() {
    let mut model = on(Tab::Routes);
    let before = format!("{model:?}");
    assert_eq!(
        press(
            &mut model,
            &[Key::Char('x'), Key::Backspace, Key::Char('Z')]
        ),
        None
    );
    assert_eq!(format!("{model:?}"), before);
}

// --- movement ---

#[test]
fn j_k_arrows_g_and_shift_g_move_in_lists() {
    let mut model = on(Tab::Routes);
    press(&mut model, &[Key::Char('j'), Key::Down]);
    assert_eq!(model.routes.selected, 2);
    press(&mut model, &[Key::Char('k')]);
    assert_eq!(model.routes.selected, 1);
    press(&mut model, &[Key::Up, Key::Up, Key::Up]);
    assert_eq!(model.routes.selected, 0, "stops at the top");
    press(&mut model, &[Key::Char('G')]);
    assert_eq!(model.routes.selected, 4);
    press(&mut model, &[Key::Char('j')]);
    assert_eq!(model.routes.selected, 4, "stops at the bottom");
    press(&mut model, &[Key::Char('g')]);
    assert_eq!(model.routes.selected, 0);
    press(&mut model, &[Key::End]);
    assert_eq!(model.routes.selected, 4);
    press(&mut model, &[Key::Home]);
    assert_eq!(model.routes.selected, 0);
    press(&mut model, &[Key::PageDown]);
    assert_eq!(model.routes.selected, 4);
    press(&mut model, &[Key::PageUp]);
    assert_eq!(model.routes.selected, 0);
    press(&mut model, &[Key::Ctrl('d')]);
    assert_eq!(model.routes.selected, 4);
    press(&mut model, &[Key::Ctrl('u')]);
    assert_eq!(model.routes.selected, 0);

    let mut model = on(Tab::Secrets);
    press(&mut model, &[Key::Char('G')]);
    assert_eq!(model.secrets.selected, 5);
    press(&mut model, &[Key::Char('k')]);
    assert_eq!(model.secrets.selected, 4);

    let mut model = on(Tab::Tunnels);
    press(&mut model, &[Key::Char('G')]);
    assert_eq!(model.tunnels.selected, 4, "3 tunnels and 2 agents");

    let mut model = on(Tab::Config);
    press(&mut model, &[Key::Char('j'), Key::Char('j')]);
    assert_eq!(model.config.scroll, 2);
    press(&mut model, &[Key::Char('G')]);
    assert_eq!(
        usize::from(model.config.scroll),
        crate::view::config_line_count(&model) - 1
    );
    press(&mut model, &[Key::Char('g')]);
    assert_eq!(model.config.scroll, 0);

    let mut model = on(Tab::Overview);
    let before = format!("{model:?}");
    press(
        &mut model,
        &[Key::Char('j'), Key::Char('G'), Key::Enter, Key::Esc],
    );
    assert_eq!(format!("{model:?}"), before, "Overview has nothing to move");
}

// --- Routes ---

#[test]
fn s_cycles_the_sort_column_and_capital_i_inverts() {
    let mut model = on(Tab::Routes);
    assert_eq!(route_names(&model)[0], "acme-jira");
    let mut seen = vec![model.routes.sort];
    for _ in 0..RouteColumn::ALL.len() {
        press(&mut model, &[Key::Char('s')]);
        seen.push(model.routes.sort);
    }
    assert_eq!(&seen[..RouteColumn::ALL.len()], &RouteColumn::ALL);
    assert_eq!(model.routes.sort, RouteColumn::Name, "wraps around");

    press(
        &mut model,
        &[Key::Char('s'), Key::Char('s'), Key::Char('s')],
    );
    assert_eq!(model.routes.sort, RouteColumn::Rps);
    assert!(model.routes.descending, "numbers sort largest first");
    assert_eq!(
        route_names(&model),
        [
            "acme-jira",
            "acme-pd",
            "umbrella-ci",
            "initech-wiki",
            "globex-datadog"
        ]
    );
    press(&mut model, &[Key::Char('I')]);
    assert!(!model.routes.descending);
    assert_eq!(route_names(&model)[0], "globex-datadog");

    press(&mut model, &[Key::Char('s')]);
    assert_eq!(model.routes.sort, RouteColumn::Errors);
    assert_eq!(route_names(&model)[0], "umbrella-ci");
    press(
        &mut model,
        &[Key::Char('s'), Key::Char('s'), Key::Char('s')],
    );
    assert_eq!(model.routes.sort, RouteColumn::Health);
    assert_eq!(route_names(&model)[..2], ["umbrella-ci", "acme-pd"]);
}

#[test]
fn the_selection_follows_its_route_through_sorts_and_polls() {
    let mut model = on(Tab::Routes);
    press(&mut model, &[Key::Char('j')]);
    assert_eq!(model.routes.selected_route().unwrap().name, "acme-pd");
    press(
        &mut model,
        &[
            Key::Char('s'),
            Key::Char('s'),
            Key::Char('s'),
            Key::Char('I'),
        ],
    );
    assert_eq!(model.routes.selected_route().unwrap().name, "acme-pd");
    update(
        &mut model,
        Msg::Polled(Box::new(fixtures::poll(NOW + 1000, 1300))),
    );
    assert_eq!(model.routes.selected_route().unwrap().name, "acme-pd");
}

#[test]
fn enter_opens_and_esc_closes_details() {
    let mut model = on(Tab::Routes);
    press(&mut model, &[Key::Enter]);
    assert!(model.routes.detail);
    press(&mut model, &[Key::Esc]);
    assert!(!model.routes.detail);

    let mut model = on(Tab::Secrets);
    press(&mut model, &[Key::Enter]);
    assert!(model.secrets.detail);
    press(&mut model, &[Key::Esc]);
    assert!(!model.secrets.detail);

    let mut model = on(Tab::Routes);
    let mut poll = fixtures::poll(NOW, 1200);
    poll.routes.routes.clear();
    update(&mut model, Msg::Polled(Box::new(poll)));
    press(&mut model, &[Key::Enter]);
    assert!(!model.routes.detail, "nothing to open");
}

// --- Traffic ---

#[test]
fn p_pauses_and_follows() {
    let mut model = on(Tab::Traffic);
    assert_eq!(model.traffic.paused_at, None);
    press(&mut model, &[Key::Char('p')]);
    assert_eq!(model.traffic.paused_at, Some(8));
    assert_eq!(model.traffic.selected, Some(8));
    update(&mut model, Msg::Traffic(page(9..=12)));
    assert_eq!(model.traffic.visible().len(), 8, "paused: new entries wait");
    assert_eq!(model.traffic.new_since_pause(), 4);
    press(&mut model, &[Key::Char('p')]);
    assert_eq!(model.traffic.paused_at, None);
    assert_eq!(model.traffic.visible().len(), 12);
}

#[test]
fn moving_up_pauses_and_shift_g_follows_again() {
    let mut model = on(Tab::Traffic);
    press(&mut model, &[Key::Char('j')]);
    assert_eq!(
        model.traffic.paused_at, None,
        "down while following does nothing"
    );
    press(&mut model, &[Key::Char('k')]);
    assert_eq!(model.traffic.paused_at, Some(8));
    assert_eq!(model.traffic.selected, Some(7));
    press(&mut model, &[Key::Char('g')]);
    assert_eq!(model.traffic.selected, Some(1));
    press(&mut model, &[Key::Char('j'), Key::PageDown]);
    assert_eq!(model.traffic.selected, Some(8));
    press(&mut model, &[Key::Char('G')]);
    assert_eq!(model.traffic.paused_at, None);
    assert_eq!(model.traffic.selected, None);
}

#[test]
fn slash_edits_a_live_filter_enter_keeps_it_esc_restores() {
    let mut model = on(Tab::Traffic);
    press(&mut model, &[Key::Char('/')]);
    assert!(model.traffic.editing.is_some());
    for c in "5xx".chars() {
        press(&mut model, &[Key::Char(c)]);
    }
    let statuses: Vec<u16> = model.traffic.visible().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [502, 503], "applies while typing");
    // Keys of the key table are text while editing.
    press(
        &mut model,
        &[
            Key::Char(' '),
            Key::Char('p'),
            Key::Backspace,
            Key::Backspace,
        ],
    );
    assert_eq!(model.traffic.filter.text(), "5xx");
    assert_eq!(model.traffic.paused_at, None);
    press(&mut model, &[Key::Enter]);
    assert!(model.traffic.editing.is_none());
    assert_eq!(model.traffic.filter.text(), "5xx");

    // Esc while editing puts back the filter in force before.
    press(
        &mut model,
        &[Key::Char('/'), Key::Char(' '), Key::Char('r'), Key::Esc],
    );
    assert_eq!(model.traffic.filter.text(), "5xx");
    // Esc afterwards clears it.
    press(&mut model, &[Key::Esc]);
    assert!(model.traffic.filter.is_empty());

    press(&mut model, &[Key::Char('/')]);
    for c in "route:jira tenant:acme".chars() {
        press(&mut model, &[Key::Char(c)]);
    }
    press(&mut model, &[Key::Enter]);
    let seqs: Vec<u64> = model.traffic.visible().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 5]);
}

#[test]
fn enter_on_traffic_pauses_and_shows_the_selected_request() {
    let mut model = on(Tab::Traffic);
    press(&mut model, &[Key::Char('k'), Key::Enter]);
    assert!(model.traffic.detail);
    assert_eq!(model.traffic.selected, Some(7));
    press(&mut model, &[Key::Esc]);
    assert!(!model.traffic.detail);
    assert_eq!(
        model.traffic.paused_at,
        Some(8),
        "Esc closes the detail first"
    );
    press(&mut model, &[Key::Esc]);
    assert_eq!(model.traffic.paused_at, None, "then follows again");

    let mut model = on(Tab::Traffic);
    press(&mut model, &[Key::Enter]);
    assert_eq!(model.traffic.paused_at, Some(8));
    assert_eq!(model.traffic.selected, Some(8));
}

#[test]
fn a_filter_hiding_the_selection_selects_the_nearest() {
    let mut model = on(Tab::Traffic);
    press(&mut model, &[Key::Char('g')]);
    assert_eq!(model.traffic.selected, Some(1));
    press(
        &mut model,
        &[
            Key::Char('/'),
            Key::Char('5'),
            Key::Char('x'),
            Key::Char('x'),
            Key::Enter,
        ],
    );
    let visible = model.traffic.visible();
    assert_eq!(
        visible[model.traffic.selected_index(&visible).unwrap()].seq,
        3
    );
}

// --- Config ---

#[test]
fn r_asks_first_then_y_reloads() {
    let mut model = on(Tab::Config);
    assert_eq!(press(&mut model, &[Key::Char('r')]), None);
    assert!(model.config.confirm);
    assert_eq!(press(&mut model, &[Key::Char('x'), Key::Char('j')]), None);
    assert!(model.config.confirm, "other keys leave the question open");
    assert_eq!(press(&mut model, &[Key::Char('y')]), Some(Command::Reload));
    assert!(!model.config.confirm);
    assert_eq!(model.config.reload, ReloadState::Running { since_ms: NOW });

    for no in [Key::Char('n'), Key::Esc, Key::Char('q')] {
        let mut model = on(Tab::Config);
        press(&mut model, &[Key::Char('r')]);
        assert_eq!(press(&mut model, &[no]), None, "{no:?}");
        assert!(!model.config.confirm);
        assert_eq!(model.config.reload, ReloadState::Idle);
    }
    let mut model = on(Tab::Config);
    assert_eq!(
        press(&mut model, &[Key::Char('r'), Key::Enter]),
        Some(Command::Reload)
    );
}

#[test]
fn the_reload_outcome_is_kept() {
    let mut model = on(Tab::Config);
    let mut status = fixtures::status(1).last_reload;
    status.result = ReloadResult::Error;
    update(&mut model, Msg::ReloadFinished(Ok(status.clone())));
    assert_eq!(model.config.reload, ReloadState::Done { status });
    update(
        &mut model,
        Msg::ReloadFinished(Err("io: Connection refused".into())),
    );
    assert_eq!(
        model.config.reload,
        ReloadState::Failed {
            error: "io: Connection refused".into(),
            at_ms: NOW
        }
    );
}

// --- messages ---

#[test]
fn tick_sets_the_clock() {
    let mut model = on(Tab::Overview);
    update(&mut model, Msg::Tick { now_ms: 42 });
    assert_eq!(model.now_ms, 42);
}

#[test]
fn polls_feed_status_routes_secrets_tunnels_and_history() {
    let model = fixtures::model();
    assert_eq!(model.connection, Connection::Connected);
    assert_eq!(model.status.as_ref().unwrap().pid, 4242);
    assert_eq!(model.routes.list.len(), 5);
    assert_eq!(model.secrets.data.as_ref().unwrap().secrets.len(), 6);
    assert!(matches!(model.tunnels.data, TunnelsData::Served(ref t) if t.tunnels.len() == 3));
    // Six polls a second apart: five request-rate points from the request counter.
    let rps: Vec<f64> = model.history.rps.iter().copied().collect();
    assert_eq!(rps, [10.0, 30.0, 40.0, 70.0, 40.0]);
    // Error rate weighted by each route's requests.
    let expected = (3.2 * 60.0 * 0.12 + 54.0) / (12.5 * 60.0 + 3.2 * 60.0 + 24.0 + 54.0);
    let got = *model.history.error_rate.back().unwrap();
    assert!((got - expected).abs() < 1e-3, "{got} vs {expected}");
    let (p50, p99) = model.history.latency_ms.unwrap();
    assert_eq!((p50, p99), (53.0, 83.0));
    assert_eq!(model.last_poll_ms, Some(NOW - 1000));
}

#[test]
fn a_404_for_tunnels_means_none_configured() {
    let mut model = on(Tab::Tunnels);
    press(&mut model, &[Key::Char('G')]);
    let mut poll = fixtures::poll(NOW, 1200);
    poll.tunnels = None;
    update(&mut model, Msg::Polled(Box::new(poll)));
    assert_eq!(model.tunnels.data, TunnelsData::NotServed);
    assert_eq!(model.tunnels.selected, 0);
    assert_eq!(model.connection, Connection::Connected);
}

#[test]
fn history_is_bounded() {
    let mut model = on(Tab::Overview);
    for i in 0..(HISTORY as u64 * 2) {
        update(
            &mut model,
            Msg::Polled(Box::new(fixtures::poll(NOW + i * 1000, 2000 + i))),
        );
    }
    assert_eq!(model.history.rps.len(), HISTORY);
    assert_eq!(model.history.error_rate.len(), HISTORY);
}

#[test]
fn a_restarted_gateway_clears_traffic_and_history() {
    let mut model = on(Tab::Traffic);
    press(&mut model, &[Key::Char('p')]);
    let mut poll = fixtures::poll(NOW + 1000, 3);
    poll.status.pid = 5151;
    update(&mut model, Msg::Polled(Box::new(poll)));
    assert!(model.traffic.entries.is_empty());
    assert!(model.history.rps.is_empty());
    assert_eq!(model.traffic.paused_at, None);
    update(&mut model, Msg::Traffic(page(1..=2)));
    assert_eq!(
        model.traffic.entries.len(),
        2,
        "sequence numbers start again"
    );
}

fn page(seqs: std::ops::RangeInclusive<u64>) -> TrafficPage {
    let next = *seqs.end();
    TrafficPage {
        entries: seqs.map(|s| entry(s, "acme-jira", 200, None)).collect(),
        next,
        gap: false,
    }
}

#[test]
fn traffic_is_appended_once_bounded_and_gaps_counted() {
    let mut model = Model::new("http://x", 100);
    update(&mut model, Msg::Traffic(page(1..=60)));
    update(&mut model, Msg::Traffic(page(50..=150)));
    assert_eq!(model.traffic.entries.len(), 100);
    assert_eq!(model.traffic.entries.front().unwrap().seq, 51);
    assert_eq!(model.traffic.entries.back().unwrap().seq, 150);
    let mut gap = page(400..=401);
    gap.gap = true;
    update(&mut model, Msg::Traffic(gap));
    assert_eq!(model.traffic.gaps, 1);
    assert_eq!(model.traffic.entries.back().unwrap().seq, 401);
}

#[test]
fn a_flood_of_traffic_stays_bounded() {
    let mut model = on(Tab::Traffic);
    press(&mut model, &[Key::Char('p')]);
    for start in (9..200_000u64).step_by(1000) {
        update(&mut model, Msg::Traffic(page(start..=start + 999)));
    }
    assert_eq!(model.traffic.entries.len(), model.traffic.capacity);
    // The paused selection scrolled out of the buffer: the first kept entry is selected.
    let visible = model.traffic.visible();
    assert!(visible.is_empty() || model.traffic.selected_index(&visible).is_some());
}

#[test]
fn traffic_errors_show_until_the_next_page() {
    let mut model = on(Tab::Traffic);
    update(
        &mut model,
        Msg::TrafficFailed("/api/v1/traffic: HTTP 400 bad_request".into()),
    );
    assert_eq!(
        model.traffic.error.as_deref(),
        Some("/api/v1/traffic: HTTP 400 bad_request")
    );
    update(&mut model, Msg::Traffic(page(9..=9)));
    assert_eq!(model.traffic.error, None);
}

#[test]
fn disconnects_and_401s_set_the_banner_and_a_poll_clears_it() {
    let mut model = on(Tab::Overview);
    update(
        &mut model,
        Msg::Disconnected {
            reason: "io: Connection refused".into(),
            retry_at_ms: NOW + 2000,
        },
    );
    assert!(matches!(model.connection, Connection::Disconnected { .. }));
    assert!(model.status.is_some(), "the last data stays on screen");
    update(
        &mut model,
        Msg::Unauthorized {
            code: "unauthorized".into(),
            retry_at_ms: NOW + 1000,
        },
    );
    assert_eq!(
        model.connection,
        Connection::Unauthorized {
            code: "unauthorized".into(),
            retry_at_ms: NOW + 1000
        }
    );
    update(
        &mut model,
        Msg::Polled(Box::new(fixtures::poll(NOW + 3000, 1300))),
    );
    assert_eq!(model.connection, Connection::Connected);
}

#[test]
fn secret_health_classifies() {
    use crate::model::SecretHealth;
    let model = fixtures::model();
    let secrets = &model.secrets.data.as_ref().unwrap().secrets;
    let health: Vec<SecretHealth> = secrets.iter().map(|s| model.secret_health(s)).collect();
    assert_eq!(
        health,
        [
            SecretHealth::Ok,
            SecretHealth::Expiring,
            SecretHealth::Rejected,
            SecretHealth::Unusable,
            SecretHealth::Unusable,
            SecretHealth::Unusable,
        ]
    );
    // A rotation after the refusal clears "rejected".
    let mut rotated = secrets[2].clone();
    rotated.rotated_at_ms = Some(NOW - 1000);
    assert_eq!(model.secret_health(&rotated), SecretHealth::Ok);
}
