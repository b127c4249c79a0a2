//! The one redactor: every byte bootproof writes to a file of a run, a report, JUnit,
//! the terminal or a log line passes through here, so a secret never leaves in any
//! encoding.
//!
//! Owns: the process-wide list of secrets ([`register`]) and the forms each is
//! removed in (plain, hex in either case, and base64 at each of the three byte
//! alignments, which is how a secret inside a longer base64 payload shows); redacting
//! whole texts ([`text`], [`bytes`]), streams cut anywhere ([`Stream`]), writers
//! ([`Writer`], for tracing and the terminal), and the last sweep over a finished run
//! directory ([`sweep`]) for what others wrote there (QEMU's own log, the guest's files
//! in the share).
//! Must not: decide what is secret (scenarios do, through `[secrets]`).
//!
//! The list is process-wide on purpose: a secret of one scenario is redacted from every
//! other output of the process too, which costs nothing and closes every path that
//! would need a handle passed down to it.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub const MARK: &[u8] = b"[REDACTED]";

/// Encoded forms shorter than this are not redacted: they would match by chance.
const MIN_ENCODED: usize = 6;

static FORMS: RwLock<Option<Arc<Vec<Vec<u8>>>>> = RwLock::new(None);

/// Adds `secret` to what is never written: from now on every writer replaces it.
pub fn register(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut guard = FORMS.write().unwrap_or_else(|p| p.into_inner());
    let mut forms: Vec<Vec<u8>> = guard.as_deref().cloned().unwrap_or_default();
    for form in forms_of(secret.as_bytes()) {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    // Longest first: a secret that contains another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    *guard = Some(Arc::new(forms));
}

/// The byte patterns replaced now (a snapshot).
pub fn forms() -> Arc<Vec<Vec<u8>>> {
    FORMS.read().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
}

/// The forms a secret can take in what bootproof writes: itself, hex, and the base64
/// characters that depend on the secret alone at each alignment.
fn forms_of(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.to_vec()];
    let encoded = [
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        base64_core(secret, 0),
        base64_core(secret, 1),
        base64_core(secret, 2),
    ];
    forms.extend(encoded.into_iter().filter(|f| f.len() >= MIN_ENCODED));
    forms
}

/// The base64 characters of `secret` preceded by `offset` other bytes that depend on
/// no byte but the secret's: what any base64 payload containing it at that alignment
/// contains.
fn base64_core(secret: &[u8], offset: usize) -> Vec<u8> {
    use base64::Engine;
    let mut input = vec![0u8; offset];
    input.extend_from_slice(secret);
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&input).into_bytes();
    // Character i covers bits 6i..6i+6; the secret's bits are 8*offset..8*(offset+len).
    let first = (8 * offset).div_ceil(6);
    let end_bits = 8 * (offset + secret.len());
    let last = end_bits / 6; // exclusive: characters ending at or before end_bits
    if first >= last { Vec::new() } else { encoded[first..last].to_vec() }
}

/// `input` with every registered form replaced by [`MARK`].
pub fn bytes(input: &[u8]) -> Cow<'_, [u8]> {
    let forms = forms();
    if forms.is_empty() || !forms.iter().any(|f| memchr::memmem::find(input, f).is_some()) {
        return Cow::Borrowed(input);
    }
    Cow::Owned(replace_all(input, &forms))
}

/// Text with every registered form replaced. Forms are whole UTF-8 strings or ASCII,
/// so the result stays valid UTF-8.
pub fn text(input: &str) -> Cow<'_, str> {
    match bytes(input.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(input),
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// Redacts a `String` in place.
pub fn in_place(s: &mut String) {
    if let Cow::Owned(clean) = text(s) {
        *s = clean;
    }
}

fn replace_all(input: &[u8], forms: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    'outer: while i < input.len() {
        for f in forms.iter().filter(|f| !f.is_empty()) {
            if input[i..].starts_with(f) {
                out.extend_from_slice(MARK);
                i += f.len();
                continue 'outer;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// Length of the longest suffix of `data` that is a proper prefix of `form`.
fn partial_suffix(data: &[u8], form: &[u8]) -> usize {
    let max = form.len().saturating_sub(1).min(data.len());
    (1..=max).rev().find(|&n| data.ends_with(&form[..n])).unwrap_or(0)
}

/// Redacts a stream cut anywhere: bytes that could be the start of a secret are held
/// back until the next chunk decides; everything else passes at once, so a prompt is
/// never delayed.
#[derive(Debug, Default)]
pub struct Stream {
    pending: Vec<u8>,
}

impl Stream {
    /// Appends `input` with every complete secret replaced to `out`, holding back a
    /// tail that may continue into one.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(input);
        let forms = forms();
        if forms.is_empty() {
            out.append(&mut self.pending);
            return;
        }
        let replaced = replace_all(&self.pending, &forms);
        let hold = forms.iter().map(|f| partial_suffix(&replaced, f)).max().unwrap_or(0);
        let emit = replaced.len() - hold;
        out.extend_from_slice(&replaced[..emit]);
        self.pending = replaced[emit..].to_vec();
    }

    /// Emits what is held back (the stream ended: it can no longer become a secret).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }
}

/// A writer that redacts what passes through it (tracing's output, the terminal).
/// Each `write` is redacted whole: callers write whole messages or lines.
pub struct Writer<W: Write>(pub W);

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&bytes(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Files of a run directory the sweep leaves alone: disks and firmware variables (the
/// guest's own storage, which holds what the guest holds), the TPM's state, pictures.
fn swept(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    !matches!(ext, "qcow2" | "raw" | "img" | "fd" | "png" | "ppm" | "iso")
        && !path.components().any(|c| c.as_os_str() == "tpm")
}

/// Replaces every registered form in the files under `dir` (never following a
/// symlink), writing a changed file through a temporary copy renamed over it. Returns
/// the files that held a secret. What bootproof writes itself is redacted as it is
/// written; this catches what others wrote: QEMU's log, swtpm's, the guest's files.
pub fn sweep(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    if forms().is_empty() {
        return Ok(changed);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                if swept(&path) {
                    stack.push(path);
                }
            } else if kind.is_file() && swept(&path) && sweep_file(&path)? {
                changed.push(path);
            }
        }
    }
    changed.sort();
    Ok(changed)
}

fn sweep_file(path: &Path) -> std::io::Result<bool> {
    if !holds_a_form(path)? {
        return Ok(false);
    }
    let mut file = std::fs::File::open(path)?;
    let mut tmp = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(Path::new(".")))?;
    let (mut stream, mut buf, mut clean) = (Stream::default(), vec![0u8; 1 << 20], Vec::new());
    loop {
        let n = file.read(&mut buf)?;
        clean.clear();
        if n == 0 {
            stream.flush(&mut clean);
            tmp.write_all(&clean)?;
            break;
        }
        stream.feed(&buf[..n], &mut clean);
        tmp.write_all(&clean)?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(true)
}

/// Whether any registered form occurs in the file, read in chunks that overlap by the
/// longest form so a form across a chunk boundary is found.
fn holds_a_form(path: &Path) -> std::io::Result<bool> {
    let forms = forms();
    let overlap = forms.iter().map(Vec::len).max().unwrap_or(0);
    let mut file = std::fs::File::open(path)?;
    let mut window: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        window.extend_from_slice(&buf[..n]);
        if forms.iter().any(|f| memchr::memmem::find(&window, f).is_some()) {
            return Ok(true);
        }
        let keep = overlap.min(window.len());
        window.drain(..window.len() - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry is process-wide: each test uses its own secrets.
    fn with(secret: &str) -> Arc<Vec<Vec<u8>>> {
        register(secret);
        forms()
    }

    #[test]
    fn a_secret_split_anywhere_never_passes() {
        with("hunter2-split");
        let stream = b"Password: hunter2-split\r\nwelcome hunter and hunter2-split!";
        for cut in 1..stream.len() {
            let mut r = Stream::default();
            let mut out = Vec::new();
            r.feed(&stream[..cut], &mut out);
            r.feed(&stream[cut..], &mut out);
            r.flush(&mut out);
            assert_eq!(out, b"Password: [REDACTED]\r\nwelcome hunter and [REDACTED]!", "cut at {cut}");
        }
    }

    #[test]
    fn a_prompt_is_not_held_back() {
        with("s3cret-prompt");
        let mut r = Stream::default();
        let mut out = Vec::new();
        r.feed(b"Please enter passphrase: ", &mut out);
        assert_eq!(out, b"Please enter passphrase: ");
    }

    #[test]
    fn encoded_forms_are_removed_at_every_alignment() {
        use base64::Engine;
        let secret = "correct horse battery";
        with(secret);
        let b64 = base64::engine::general_purpose::STANDARD;
        for prefix in ["", "x", "xy", "xyz", "PASSWORD="] {
            let payload = b64.encode(format!("{prefix}{secret} and more"));
            let clean = text(&payload);
            let core = |off: usize| String::from_utf8(base64_core(secret.as_bytes(), off)).unwrap();
            for off in 0..3 {
                assert!(!clean.contains(&core(off)), "{prefix:?}: {clean}");
            }
            assert!(clean.contains("[REDACTED]"), "{prefix:?}: {clean}");
        }
        let hex = text(&format!("dump {}!", hex::encode(secret))).into_owned();
        assert_eq!(hex, "dump [REDACTED]!");
        let upper = text(&hex::encode_upper(secret)).into_owned();
        assert_eq!(upper, "[REDACTED]");
    }

    #[test]
    fn the_core_is_what_a_base64_payload_always_contains() {
        use base64::Engine;
        let secret = b"0123456789";
        for off in 0..3 {
            let core = base64_core(secret, off);
            for fill in [0u8, 0x55, 0xff] {
                let mut input = vec![fill; off];
                input.extend_from_slice(secret);
                input.extend_from_slice(&[fill; 3]);
                let enc = base64::engine::general_purpose::STANDARD.encode(&input);
                assert!(memchr::memmem::find(enc.as_bytes(), &core).is_some(), "off {off} fill {fill}");
            }
        }
    }

    #[test]
    fn sweep_rewrites_only_files_holding_a_secret_and_skips_disks() {
        with("sweep-me-secret");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("share")).unwrap();
        std::fs::write(dir.path().join("qemu.log"), "clean line\n").unwrap();
        std::fs::write(dir.path().join("share/out.txt"), "a sweep-me-secret b\n").unwrap();
        std::fs::write(dir.path().join("disk0.qcow2"), "sweep-me-secret").unwrap();
        let changed = sweep(dir.path()).unwrap();
        assert_eq!(changed, vec![dir.path().join("share/out.txt")]);
        assert_eq!(std::fs::read_to_string(dir.path().join("share/out.txt")).unwrap(), "a [REDACTED] b\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("disk0.qcow2")).unwrap(), "sweep-me-secret");
    }
}
