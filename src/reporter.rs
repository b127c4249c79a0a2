//! The one way library code tells the person at the terminal something: host set-up
//! installing packages, an image build's steps, the acceleration fallback, a console
//! line echoed live.
//!
//! Owns: where such lines go (stderr, or a sink the caller installs, such as the live
//! progress display of `bootproof run`, which prints them above its bars), and that
//! each passes the redactor. Must not: format reports (see [`crate::report`]) or print
//! a command's own output (the CLI does that).

use std::sync::{Arc, RwLock};

type Sink = Arc<dyn Fn(&str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Shows one line (or a few) to the user, redacted.
pub fn line(text: impl AsRef<str>) {
    let text = crate::redact::text(text.as_ref()).into_owned();
    let sink = SINK.read().unwrap_or_else(|p| p.into_inner()).clone();
    match sink {
        Some(sink) => sink(&text),
        None => eprintln!("{text}"),
    }
}

/// Sends lines to `sink` until the guard is dropped.
pub fn install(sink: impl Fn(&str) + Send + Sync + 'static) -> SinkGuard {
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(sink));
    SinkGuard
}

/// Restores plain stderr output when dropped.
pub struct SinkGuard;

impl Drop for SinkGuard {
    fn drop(&mut self) {
        *SINK.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A `tracing` subscriber on stderr, filtered by `BOOTPROOF_LOG` (e.g. `debug`), its
/// output passing the redactor. Returns false if one was installed already.
pub fn init_tracing() -> bool {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("BOOTPROOF_LOG"))
        .with_writer(|| crate::redact::Writer(std::io::stderr()))
        .try_init()
        .is_ok()
}
