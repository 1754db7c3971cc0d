//! The key table: the one list of what every key does, read both by the key handler
//! ([`action_for`]) and by the help screen and footer ([`help_lines`], [`hints`]), so the help
//! can never describe a key that does something else.

use std::fmt;

use crate::tab::Tab;

/// A key press, independent of the terminal library (crossterm events are converted into this
/// at the edge, so `update` and its tests never see crossterm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// A printable character (`G` and `I` arrive as upper-case characters).
    Char(char),
    /// A character with Ctrl held.
    Ctrl(char),
    /// Enter / Return.
    Enter,
    /// Escape.
    Esc,
    /// Tab.
    Tab,
    /// Shift-Tab.
    BackTab,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Home.
    Home,
    /// End.
    End,
    /// Backspace.
    Backspace,
}

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every view.
    Global,
    /// Only on one tab.
    Tab(Tab),
}

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave the console.
    Quit,
    /// Show or hide the help.
    Help,
    /// Go to a tab.
    GoTo(Tab),
    /// The next tab.
    NextTab,
    /// The previous tab.
    PrevTab,
    /// Select the next row (or scroll down).
    Down,
    /// Select the previous row (or scroll up).
    Up,
    /// One page down.
    PageDown,
    /// One page up.
    PageUp,
    /// The first row.
    Top,
    /// The last row (on Traffic: follow again).
    Bottom,
    /// Open the selected row's details.
    Open,
    /// Close what is open: details, help, the filter.
    Back,
    /// Routes: sort by the next column.
    SortNext,
    /// Routes: invert the sort order.
    SortInvert,
    /// Traffic: pause or follow the live tail.
    TogglePause,
    /// Traffic: edit the filter.
    Filter,
    /// Config: ask to reload the configuration.
    Reload,
}

/// One line of the key table.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys that trigger it.
    pub keys: &'static [Key],
    /// Where.
    pub scope: Scope,
    /// What.
    pub action: Action,
    /// The help text.
    pub help: &'static str,
}

/// The key table. Tab-scoped bindings come first so they win over global ones.
pub const KEYS: &[Binding] = &[
    Binding {
        keys: &[Key::Char('s')],
        scope: Scope::Tab(Tab::Routes),
        action: Action::SortNext,
        help: "sort by the next column",
    },
    Binding {
        keys: &[Key::Char('I')],
        scope: Scope::Tab(Tab::Routes),
        action: Action::SortInvert,
        help: "invert the sort order",
    },
    Binding {
        keys: &[Key::Char('p')],
        scope: Scope::Tab(Tab::Traffic),
        action: Action::TogglePause,
        help: "pause / follow the live tail",
    },
    Binding {
        keys: &[Key::Char('/')],
        scope: Scope::Tab(Tab::Traffic),
        action: Action::Filter,
        help: "filter: route:X tenant:X 5xx status:503 !text, any text",
    },
    Binding {
        keys: &[Key::Char('r')],
        scope: Scope::Tab(Tab::Config),
        action: Action::Reload,
        help: "reload the configuration (asks first)",
    },
    Binding {
        keys: &[Key::Char('1')],
        scope: Scope::Global,
        action: Action::GoTo(Tab::Overview),
        help: "Overview",
    },
    Binding {
        keys: &[Key::Char('2')],
        scope: Scope::Global,
        action: Action::GoTo(Tab::Routes),
        help: "Routes",
    },
    Binding {
        keys: &[Key::Char('3')],
        scope: Scope::Global,
        action: Action::GoTo(Tab::Traffic),
        help: "Traffic",
    },
    Binding {
        keys: &[Key::Char('4')],
        scope: Scope::Global,
        action: Action::GoTo(Tab::Secrets),
        help: "Secrets",
    },
    Binding {
        keys: &[Key::Char('5')],
        scope: Scope::Global,
        action: Action::GoTo(Tab::Tunnels),
        help: "Tunnels",
    },
    Binding {
        keys: &[Key::Char('6')],
        scope: Scope::Global,
        action: Action::GoTo(Tab::Config),
        help: "Config",
    },
    Binding {
        keys: &[Key::Tab],
        scope: Scope::Global,
        action: Action::NextTab,
        help: "next tab",
    },
    Binding {
        keys: &[Key::BackTab],
        scope: Scope::Global,
        action: Action::PrevTab,
        help: "previous tab",
    },
    Binding {
        keys: &[Key::Char('j'), Key::Down],
        scope: Scope::Global,
        action: Action::Down,
        help: "down",
    },
    Binding {
        keys: &[Key::Char('k'), Key::Up],
        scope: Scope::Global,
        action: Action::Up,
        help: "up (on Traffic: pauses)",
    },
    Binding {
        keys: &[Key::PageDown, Key::Ctrl('d')],
        scope: Scope::Global,
        action: Action::PageDown,
        help: "page down",
    },
    Binding {
        keys: &[Key::PageUp, Key::Ctrl('u')],
        scope: Scope::Global,
        action: Action::PageUp,
        help: "page up",
    },
    Binding {
        keys: &[Key::Char('g'), Key::Home],
        scope: Scope::Global,
        action: Action::Top,
        help: "first row",
    },
    Binding {
        keys: &[Key::Char('G'), Key::End],
        scope: Scope::Global,
        action: Action::Bottom,
        help: "last row (on Traffic: follow)",
    },
    Binding {
        keys: &[Key::Enter],
        scope: Scope::Global,
        action: Action::Open,
        help: "details of the selected row",
    },
    Binding {
        keys: &[Key::Esc],
        scope: Scope::Global,
        action: Action::Back,
        help: "back: close details, help, clear the filter",
    },
    Binding {
        keys: &[Key::Char('?')],
        scope: Scope::Global,
        action: Action::Help,
        help: "this help",
    },
    Binding {
        keys: &[Key::Char('q'), Key::Ctrl('c')],
        scope: Scope::Global,
        action: Action::Quit,
        help: "quit",
    },
];

/// What `key` does on `tab`, from [`KEYS`]: the tab's own bindings first, then the global ones.
pub fn action_for(key: Key, tab: Tab) -> Option<Action> {
    KEYS.iter()
        .filter(|b| b.scope == Scope::Tab(tab) || b.scope == Scope::Global)
        .find(|b| b.keys.contains(&key))
        .map(|b| b.action)
}

/// The help screen: one `(keys, description)` line per binding, grouped with a heading per
/// scope (global first, then each tab in order).
pub fn help_lines() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut scopes = vec![Scope::Global];
    scopes.extend(Tab::ALL.iter().map(|t| Scope::Tab(*t)));
    for scope in scopes {
        let bindings: Vec<&Binding> = KEYS.iter().filter(|b| b.scope == scope).collect();
        if bindings.is_empty() {
            continue;
        }
        let heading = match scope {
            Scope::Global => "everywhere".to_owned(),
            Scope::Tab(t) => t.title().to_owned(),
        };
        out.push((String::new(), heading));
        for b in bindings {
            out.push((keys_label(b.keys), b.help.to_owned()));
        }
    }
    out
}

/// Short hints for the footer of `tab`: its own bindings, then a few global ones.
pub fn hints(tab: Tab) -> Vec<(String, &'static str)> {
    let own = KEYS.iter().filter(|b| b.scope == Scope::Tab(tab));
    let has_details = matches!(tab, Tab::Routes | Tab::Traffic | Tab::Secrets);
    let global = KEYS.iter().filter(move |b| match b.action {
        Action::Open | Action::Back => has_details,
        Action::Help | Action::Quit => true,
        _ => false,
    });
    own.chain(global)
        .map(|b| (b.keys[0].to_string(), short(b.action)))
        .collect()
}

fn short(action: Action) -> &'static str {
    match action {
        Action::Quit => "quit",
        Action::Help => "help",
        Action::GoTo(t) => t.title(),
        Action::NextTab => "next",
        Action::PrevTab => "prev",
        Action::Down => "down",
        Action::Up => "up",
        Action::PageDown => "page down",
        Action::PageUp => "page up",
        Action::Top => "top",
        Action::Bottom => "bottom",
        Action::Open => "details",
        Action::Back => "back",
        Action::SortNext => "sort",
        Action::SortInvert => "invert",
        Action::TogglePause => "pause/follow",
        Action::Filter => "filter",
        Action::Reload => "reload",
    }
}

fn keys_label(keys: &[Key]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

// === impl Key ===

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Char(c) => write!(f, "{c}"),
            Key::Ctrl(c) => write!(f, "Ctrl-{c}"),
            Key::Enter => f.write_str("Enter"),
            Key::Esc => f.write_str("Esc"),
            Key::Tab => f.write_str("Tab"),
            Key::BackTab => f.write_str("Shift-Tab"),
            Key::Up => f.write_str("↑"),
            Key::Down => f.write_str("↓"),
            Key::PageUp => f.write_str("PgUp"),
            Key::PageDown => f.write_str("PgDn"),
            Key::Home => f.write_str("Home"),
            Key::End => f.write_str("End"),
            Key::Backspace => f.write_str("Backspace"),
        }
    }
}
