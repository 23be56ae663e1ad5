//! The one reporter of human lines on stderr: the CLI's errors, warnings, notes and
//! summaries, and the library's `tracing` events, all written here in one shape.
//!
//! - Plain: `error: …`, `warning: …`, `note: …`, summaries without a prefix, `debug: …`;
//!   control characters escaped (`\xHH`) so a file name cannot forge or hide a line. The
//!   prefix is coloured only when stderr is a terminal and `NO_COLOR` is unset or empty.
//! - `--log-json`: every line is one JSON object `{"level", "id", "message", …fields}`;
//!   `id` is a stable message id (`backup.excluded`, `cli.warning`, …).
//!
//! Verbosity: `-q` errors only; default adds warnings, notes and summaries; `-v`
//! projectclone's info events (what is read, written, skipped and why); `-vv` its debug
//! events; `-vvv` its trace events. Dependencies log only their warnings (errors with
//! `-q`). `PROJECTCLONE_LOG` (an `EnvFilter` directive) replaces the filter of tracing
//! events; the CLI's own lines keep following `-q`.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How lines are written, fixed once at start-up.
struct Mode {
    quiet: bool,
    verbose: u8,
    json: bool,
    colour: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();

fn mode() -> &'static Mode {
    MODE.get_or_init(|| Mode {
        quiet: false,
        verbose: 0,
        json: false,
        colour: false,
    })
}

/// What a line is: its JSON level and its plain prefix.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Error,
    Warning,
    /// Something the user should know once (not a problem): `note: …`.
    Note,
    /// A summary or a `-v` detail: no prefix.
    Info,
    Debug,
    Trace,
}

impl Kind {
    fn level(self) -> &'static str {
        match self {
            Kind::Error => "error",
            Kind::Warning => "warning",
            Kind::Note | Kind::Info => "info",
            Kind::Debug => "debug",
            Kind::Trace => "trace",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Error => "error: ",
            Kind::Warning => "warning: ",
            Kind::Note => "note: ",
            Kind::Info => "",
            Kind::Debug => "debug: ",
            Kind::Trace => "trace: ",
        }
    }

    /// SGR colour of the prefix on a terminal.
    fn colour(self) -> &'static str {
        match self {
            Kind::Error => "1;31",
            Kind::Warning => "1;33",
            Kind::Note => "1;36",
            Kind::Info => "0",
            Kind::Debug | Kind::Trace => "2",
        }
    }
}

/// Is colour allowed on stderr: a terminal, and `NO_COLOR` unset or empty (no-color.org).
fn colour_allowed(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The tracing filter for these flags (unless `PROJECTCLONE_LOG` gives one).
fn filter_directive(quiet: bool, verbose: u8) -> &'static str {
    match (quiet, verbose) {
        // fuser (`mount`) warns of every request it answers "not implemented" (a file
        // manager asking for SELinux labels) and of its own second unmount attempt: noise.
        (true, _) => "error",
        (_, 0) => "warn,fuser=error",
        (_, 1) => "warn,fuser=error,projectclone=info",
        (_, 2) => "warn,projectclone=debug",
        _ => "warn,projectclone=trace",
    }
}

/// Set up the reporter and route `tracing` events to it. Called once, before any line.
pub fn init(quiet: bool, verbose: u8, log_json: bool) {
    let _ = MODE.set(Mode {
        quiet,
        verbose,
        json: log_json,
        colour: !log_json && colour_allowed(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")),
    });
    let filter = EnvFilter::try_from_env("PROJECTCLONE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(filter_directive(quiet, verbose)));
    let _ = tracing_subscriber::registry()
        .with(TracingLayer.with_filter(filter))
        .try_init();
}

/// `-q` was given: only errors are reported (and commands that act print no narration).
pub fn quiet() -> bool {
    mode().quiet
}

/// How many `-v` were given.
pub fn verbose() -> u8 {
    mode().verbose
}

/// Are lines JSON objects (`--log-json`)?
pub fn json() -> bool {
    mode().json
}

/// Report a line of this kind, unless `-q` silences it (everything but errors).
pub fn line(kind: Kind, id: &str, message: &str, fields: &[(&str, Value)]) {
    if mode().quiet && kind != Kind::Error {
        return;
    }
    emit(kind, id, message, fields);
}

pub fn error(id: &str, message: &str, fields: &[(&str, Value)]) {
    line(Kind::Error, id, message, fields);
}

pub fn warning(id: &str, message: &str, fields: &[(&str, Value)]) {
    line(Kind::Warning, id, message, fields);
}

pub fn note(id: &str, message: &str, fields: &[(&str, Value)]) {
    line(Kind::Note, id, message, fields);
}

pub fn info(id: &str, message: &str, fields: &[(&str, Value)]) {
    line(Kind::Info, id, message, fields);
}

/// Write one line, whatever the verbosity.
fn emit(kind: Kind, id: &str, message: &str, fields: &[(&str, Value)]) {
    let m = mode();
    let out = render(kind, id, message, fields, m.json, m.colour);
    // Above the progress bar, if one is drawn.
    let _ = super::progress::suspend(|| std::io::stderr().lock().write_all(out.as_bytes()));
}

/// The bytes of one line, newline included.
fn render(kind: Kind, id: &str, message: &str, fields: &[(&str, Value)], json: bool, colour: bool) -> String {
    if json {
        let mut o = Map::new();
        o.insert("level".into(), kind.level().into());
        o.insert("id".into(), id.into());
        o.insert("message".into(), message.into());
        for (k, v) in fields {
            // The three keys above are the envelope: a field never replaces them.
            if !matches!(*k, "level" | "id" | "message") {
                o.insert((*k).into(), v.clone());
            }
        }
        let mut s = Value::Object(o).to_string();
        s.push('\n');
        return s;
    }
    let body = super::output::text(message, true);
    // A multi-line message (an error with its causes) keeps its lines, each escaped.
    let prefix = if colour && kind != Kind::Info {
        format!("\x1b[{}m{}\x1b[0m", kind.colour(), kind.prefix().trim_end())
            + if kind.prefix().is_empty() { "" } else { " " }
    } else {
        kind.prefix().to_string()
    };
    format!("{prefix}{body}\n")
}

/// Sends `tracing` events (already filtered) to the reporter. An event's `id` field is its
/// message id; without one the id is `<module>.<level>` (`repo.warning`), or `<crate>.log`
/// for a dependency's event.
struct TracingLayer;

impl<S: Subscriber> Layer<S> for TracingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let kind = match *meta.level() {
            Level::ERROR => Kind::Error,
            Level::WARN => Kind::Warning,
            Level::INFO => Kind::Info,
            Level::DEBUG => Kind::Debug,
            Level::TRACE => Kind::Trace,
        };
        let mut v = Fields::default();
        event.record(&mut v);
        let id = v.id.take().unwrap_or_else(|| fallback_id(meta.target(), kind));
        let mut message = v.message;
        if !mode().json && !meta.target().starts_with("projectclone") {
            // Our messages say everything in words; a dependency's may rely on its fields.
            for (k, val) in &v.fields {
                let s = match val {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                message.push_str(&format!(" {k}={s}"));
            }
        }
        let fields: Vec<(&str, Value)> = v.fields.iter().map(|(k, val)| (*k, val.clone())).collect();
        emit(kind, &id, &message, &fields);
    }
}

fn fallback_id(target: &str, kind: Kind) -> String {
    match target.strip_prefix("projectclone") {
        Some(rest) => {
            let module = rest.trim_start_matches("::").replace("::", ".");
            let module = if module.is_empty() {
                "projectclone".to_string()
            } else {
                module
            };
            format!("{module}.{}", kind.level())
        }
        None => format!("{}.log", target.split("::").next().unwrap_or(target)),
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    id: Option<String>,
    fields: Vec<(&'static str, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, v: Value) {
        match field.name() {
            "message" => {
                self.message = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            "id" => self.id = v.as_str().map(String::from),
            // `log` records bridged into tracing carry these; they say nothing to a user.
            n if n.starts_with("log.") => {}
            n => self.fields.push((n, v)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_level_id_message_and_fields() {
        let s = render(
            Kind::Warning,
            "backup.unreadable",
            "a\nb: cannot read",
            &[("path", "a\nb".into()), ("level", "x".into())],
            true,
            true,
        );
        assert!(s.ends_with('\n') && s.matches('\n').count() == 1, "{s:?}");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["level"], "warning");
        assert_eq!(v["id"], "backup.unreadable");
        assert_eq!(v["message"], "a\nb: cannot read");
        assert_eq!(v["path"], "a\nb");
    }

    #[test]
    fn plain_lines_escape_control_characters_and_colour_only_when_allowed() {
        let s = render(Kind::Error, "x", "bad\x1b[2Jname\r", &[], false, false);
        assert_eq!(s, "error: bad\\x1b[2Jname\\x0d\n");
        let c = render(Kind::Warning, "x", "w", &[], false, true);
        assert_eq!(c, "\x1b[1;33mwarning:\x1b[0m w\n");
        assert_eq!(render(Kind::Info, "x", "sum", &[], false, true), "sum\n");
    }

    #[test]
    fn no_color_set_and_non_empty_turns_colour_off() {
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some("".into())));
        assert!(!colour_allowed(true, Some("1".into())));
        assert!(!colour_allowed(false, None));
    }

    #[test]
    fn verbosity_raises_only_projectclone_events() {
        assert_eq!(filter_directive(true, 2), "error");
        assert_eq!(filter_directive(false, 0), "warn,fuser=error");
        assert_eq!(filter_directive(false, 2), "warn,projectclone=debug");
    }

    #[test]
    fn fallback_ids_name_the_module() {
        assert_eq!(fallback_id("projectclone::repo", Kind::Warning), "repo.warning");
        assert_eq!(fallback_id("projectclone", Kind::Debug), "projectclone.debug");
        assert_eq!(fallback_id("rustls::conn", Kind::Warning), "rustls.log");
    }
}
