//! The access log: one structured line per request, target `portcullis::access`, with the
//! request id, route, method, path *without* its query, status, refusal code, egress address and
//! duration — never a header or query value.

use std::fmt;

use pingora::Error;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::record::RequestRecord;
use crate::outcome::ErrorCode;

/// Writes the access line of a finished request (when `portcullis::access` is enabled at `info`).
pub(crate) fn log(record: &RequestRecord, error: Option<&Error>) {
    tracing::info!(
        target: "portcullis::access",
        request_id = %record.request_id,
        route = record.route.as_deref().unwrap_or("-"),
        method = %record.method,
        path = path_without_query(&record.path),
        status = record.status,
        denial = record.denial,
        egress = ?record.egress,
        duration_ms = record.duration.as_secs_f64() * 1000.0,
        error = error.map(|e| e.etype().as_str()),
        "request"
    );
}

/// The record's path keeps query parameter names; the access line keeps none.
fn path_without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(path, _)| path)
}

/// Writes the access line of a request head refused before it could be routed (`bad_request`,
/// see `conn::GuardedStream`): neither route, method nor path is known, so none is logged.
pub(crate) fn log_malformed(request_id: &str) {
    let code = ErrorCode::BadRequest;
    tracing::info!(
        target: "portcullis::access",
        request_id = %request_id,
        route = "-",
        method = %"-",
        path = "-",
        status = code.status(),
        denial = code.as_str(),
        "request"
    );
}

/// The access line's target.
const TARGET: &str = "portcullis::access";

/// The text log format (`tracing-subscriber`'s `Full`, given as `inner`), with access lines
/// written here instead: the same bytes, without the formatter's per-field `write!` calls and
/// styling (one access line per request at the shipped `info` level cost ~12,000
/// instructions, `load-tests/callgrind.sh`). Anything else, an access line inside a span, or a
/// terminal log with colours goes to `inner`.
pub(crate) struct TextLines<F, T> {
    inner: F,
    timer: T,
}

impl<F, T> TextLines<F, T> {
    /// `inner` formats every other line; `timer` is `inner`'s timer.
    pub(crate) fn new(inner: F, timer: T) -> Self {
        Self { inner, timer }
    }
}

impl<S, N, F, T> FormatEvent<S, N> for TextLines<F, T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != TARGET
            || *meta.level() != Level::INFO
            || writer.has_ansi_escapes()
            || ctx.event_scope().is_some()
        {
            return self.inner.format_event(ctx, writer, event);
        }
        // `Full`: time, level padded to five, target, then the fields.
        self.timer.format_time(&mut writer)?;
        writer.write_str("  INFO portcullis::access: ")?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
            first: true,
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Writes fields as `tracing-subscriber`'s `DefaultVisitor` does: the message bare, then
/// `name=value` with `Debug` values, separated by spaces.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl Fields<'_, '_> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_char(' ')?;
        }
        if field.name() == "message" {
            return Ok(());
        }
        self.out.write_str(field.name())?;
        self.out.write_char('=')
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = self.name(field).and_then(|()| {
            if field.name() == "message" {
                self.out.write_str(value)
            } else if value
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            {
                // `Debug` for such a string is the string in quotes.
                self.out.write_char('"')?;
                self.out.write_str(value)?;
                self.out.write_char('"')
            } else {
                write!(self.out, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_err() {
            return;
        }
        self.result = self
            .name(field)
            .and_then(|()| self.out.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        // A message is written bare, as here: `DefaultVisitor` also escapes terminal controls
        // in it, and the access line's message is the fixed "request".
        self.result = self
            .name(field)
            .and_then(|()| write!(self.out, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::mpsc;
    use std::time::{Duration, UNIX_EPOCH};

    use pingora::ErrorType;
    use tracing_subscriber::fmt::MakeWriter;

    /// One time for both formats, so whole lines compare.
    struct FixedTime;

    impl FormatTime for FixedTime {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-11-25T08:00:00.123456Z")
        }
    }

    /// Collects what the subscriber writes.
    #[derive(Clone)]
    struct Collect(mpsc::Sender<Vec<u8>>);

    impl std::io::Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Collect {
        type Writer = Collect;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// What `emit` logs, with the access lines written by [`TextLines`] or all by `Full`.
    fn written(by_hand: bool, emit: &dyn Fn()) -> String {
        let (tx, rx) = mpsc::channel();
        let builder = tracing_subscriber::fmt()
            .with_writer(Collect(tx))
            .with_ansi(false);
        let full = tracing_subscriber::fmt::format().with_timer(FixedTime);
        if by_hand {
            let subscriber = builder
                .event_format(TextLines::new(full, FixedTime))
                .finish();
            tracing::subscriber::with_default(subscriber, emit);
        } else {
            tracing::subscriber::with_default(builder.event_format(full).finish(), emit);
        }
        rx.try_iter()
            .map(|bytes| String::from_utf8(bytes).unwrap())
            .collect()
    }

    fn record(path: &str, denial: Option<&'static str>, egress: bool) -> RequestRecord {
        RequestRecord {
            time: UNIX_EPOCH,
            request_id: "0123abcd-req".into(),
            tenant: Some("acme".into()),
            route: Some("pagerduty".into()),
            method: http::Method::POST,
            path: path.into(),
            status: 403,
            denial,
            duration: Duration::from_micros(1_532),
            client_ip: None,
            egress: egress.then(|| std::net::IpAddr::from([127, 0, 0, 2])),
            upstream: None,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    #[test]
    fn access_lines_are_the_bytes_tracing_subscriber_writes() {
        let error = pingora::Error::new(ErrorType::ConnectTimedout);
        let paths = [
            "/api/v1/incidents?limit",
            "/with \"quotes\"",
            "/with \\ back",
            "/caf\u{e9}/\u{1b}[31m/\u{2028}",
            "",
        ];
        for path in paths {
            for (denial, egress, error) in [
                (None, true, None),
                (Some("route_not_found"), false, Some(&*error)),
            ] {
                let r = record(path, denial, egress);
                let emit = || log(&r, error);
                let line = written(true, &emit);
                assert_eq!(line, written(false, &emit));
                assert!(
                    line.contains(" INFO portcullis::access: request "),
                    "{line}"
                );
            }
        }
        let malformed = || log_malformed("abc");
        assert_eq!(written(true, &malformed), written(false, &malformed));
        // Other lines are `Full`'s own.
        let other = || tracing::info!(target: "portcullis::other", n = 5, "hello");
        assert_eq!(written(true, &other), written(false, &other));
    }
}
