//! The runtime around the pure parts: owns the terminal, feeds keys and poller messages to
//! [`update`], carries out its [`Command`]s, and draws at a steady frame rate — at most
//! [`FPS`] frames a second however fast data arrives, and at least one a second so clocks
//! move. The terminal is restored on every way out: `q`, Ctrl-C, an error, a panic.

use std::io::{self, Stdout};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use crate::keys::Key;
use crate::model::{Command, Model, Msg};
use crate::worker::{unix_ms, Request, Worker};
use crate::{update, view, ConsoleError};

/// Frames per second, at most.
pub(crate) const FPS: u64 = 20;
/// Poller messages applied between two looks at the keyboard, so a flood cannot starve keys.
const MSG_BATCH: usize = 512;

type PanicHook = Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The terminal in raw mode on the alternate screen; restored when dropped.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    previous_hook: PanicHook,
}

/// Runs the console until the operator quits.
pub(crate) fn run_loop(
    mut model: Model,
    msgs: &Receiver<Msg>,
    worker: &Worker,
) -> Result<(), ConsoleError> {
    let mut screen = Screen::enter().map_err(ConsoleError::Terminal)?;
    let frame = Duration::from_millis(1000 / FPS);
    let mut next_frame = Instant::now();
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    loop {
        for _ in 0..MSG_BATCH {
            match msgs.try_recv() {
                Ok(msg) => {
                    dirty = true;
                    if let Some(command) = update(&mut model, msg) {
                        if !execute_command(command, worker) {
                            return Ok(());
                        }
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(ConsoleError::PollerStopped),
            }
        }

        let timeout = next_frame.saturating_duration_since(Instant::now());
        if event::poll(timeout).map_err(ConsoleError::Terminal)? {
            match event::read().map_err(ConsoleError::Terminal)? {
                Event::Key(key) => {
                    if let Some(key) = convert(key) {
                        dirty = true;
                        if let Some(command) = update(&mut model, Msg::Key(key)) {
                            if !execute_command(command, worker) {
                                return Ok(());
                            }
                        }
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }

        let now = Instant::now();
        if now >= next_frame {
            next_frame = (next_frame + frame).max(now);
            let stale = last_draw.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            if dirty || stale {
                update(&mut model, Msg::Tick { now_ms: unix_ms() });
                screen
                    .terminal
                    .draw(|f| view(&model, f))
                    .map_err(ConsoleError::Terminal)?;
                dirty = false;
                last_draw = Some(now);
            }
        }
    }
}

/// Carries out `command`; false means quit.
fn execute_command(command: Command, worker: &Worker) -> bool {
    match command {
        Command::Quit => false,
        Command::Reload => {
            // A stopped poller surfaces as a disconnected channel on the next loop.
            worker.send(Request::Reload);
            true
        }
    }
}

/// A crossterm key event as a [`Key`]; releases and unknown keys are `None`.
pub(crate) fn convert(event: KeyEvent) -> Option<Key> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    Some(match event.code {
        KeyCode::Char(c) if ctrl => Key::Ctrl(c.to_ascii_lowercase()),
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab if event.modifiers.contains(KeyModifiers::SHIFT) => Key::BackTab,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

// === impl Screen ===

impl Screen {
    fn enter() -> io::Result<Self> {
        // Restore the terminal before any panic message is printed, then let the previous
        // hook print it on the normal screen.
        let previous: PanicHook = Arc::from(std::panic::take_hook());
        let hook = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            restore();
            hook(info);
        }));
        let setup = || -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
            enable_raw_mode()?;
            execute!(io::stdout(), EnterAlternateScreen)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            terminal.hide_cursor()?;
            terminal.clear()?;
            Ok(terminal)
        };
        match setup() {
            Ok(terminal) => Ok(Self {
                terminal,
                previous_hook: previous,
            }),
            Err(e) => {
                restore();
                reinstall(previous);
                Err(e)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
        reinstall(Arc::clone(&self.previous_hook));
    }
}

/// Leaves raw mode and the alternate screen; safe to call more than once.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Puts the panic hook that was there before the console back (the gateway calls the
/// console from a process that goes on afterwards).
fn reinstall(previous: PanicHook) {
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| previous(info)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossterm_keys_convert() {
        let key = |code, modifiers| convert(KeyEvent::new(code, modifiers));
        assert_eq!(
            key(KeyCode::Char('q'), KeyModifiers::NONE),
            Some(Key::Char('q'))
        );
        assert_eq!(
            key(KeyCode::Char('G'), KeyModifiers::SHIFT),
            Some(Key::Char('G'))
        );
        assert_eq!(
            key(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Key::Ctrl('c'))
        );
        assert_eq!(
            key(KeyCode::BackTab, KeyModifiers::SHIFT),
            Some(Key::BackTab)
        );
        assert_eq!(key(KeyCode::Tab, KeyModifiers::SHIFT), Some(Key::BackTab));
        assert_eq!(key(KeyCode::Tab, KeyModifiers::NONE), Some(Key::Tab));
        assert_eq!(key(KeyCode::F(1), KeyModifiers::NONE), None);
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(convert(release), None);
    }
}
