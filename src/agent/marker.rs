//! The marker protocol the shell and vsock transports speak to a plain POSIX shell:
//! what to type for one command, and how to find its answer in what comes back.
//!
//! Owns: the script text and the parsing of replies, both pure.
//! Must not: do I/O; the transports own their streams.
//!
//! The command travels base64-encoded (no quoting, no tty special characters) in lines
//! short enough for a tty in canonical mode. The guest runs it with `sh -c`, stdin from
//! `/dev/null` (it must never eat the protocol), stdout and stderr into files, under
//! `timeout`, then prints
//!
//! ```text
//! BPO-<id>\n <stdout, base64> BPE-<id>\n <stderr, base64> BPR-<id> <exit code>\n
//! ```
//!
//! The markers are printed as `printf '%s-%s\n' BPO <id>`, so the echo of the typed
//! line (a tty in cooked mode echoes it) never contains `BPO-<id>`; and base64 has no
//! `-`, so neither can the output. `<id>` is random per command: answers to commands
//! whose caller gave up (timeouts, probes sent before the guest listened) are skipped.

use std::time::Duration;

/// Bytes kept per stream; the guest sends at most one more, which tells us it cut.
pub const OUTPUT_CAP: usize = 16 << 20;

/// Base64 characters per typed line: well below a canonical tty's 4095-byte line.
const CHUNK: usize = 512;

/// The lines to send for `command`, guest-side time limit `guest_timeout`.
pub fn script(id: &str, command: &str, guest_timeout: Duration) -> String {
    let encoded = b64(command.as_bytes());
    let d = format!("\"$bp_{id}\"");
    // Without a /tmp, mktemp fails; a directory of our own name serves as well.
    let mut s = format!("bp_{id}=$(mktemp -d 2>/dev/null || (mkdir -p /tmp/bp-{id} && echo /tmp/bp-{id}))\n");
    for chunk in encoded.as_bytes().chunks(CHUNK) {
        s += &format!("printf %s '{}' >>{d}/c\n", String::from_utf8_lossy(chunk));
    }
    let secs = guest_timeout.as_secs_f64().ceil().max(1.0) as u64;
    let cap = OUTPUT_CAP + 1;
    s += &format!(
        "timeout {secs} sh -c \"$(base64 -d {d}/c)\" </dev/null >{d}/o 2>{d}/e; echo $? >{d}/r; \
         printf '%s-%s\\n' BPO {id}; head -c {cap} {d}/o | base64; \
         printf '%s-%s\\n' BPE {id}; head -c {cap} {d}/e | base64; \
         printf '%s-%s %s\\n' BPR {id} \"$(cat {d}/r)\"; rm -rf {d}\n"
    );
    s
}

/// A probe: answered by the shell's `printf` builtin alone, so a backlog of probes sent
/// before the guest's shell started costs it no processes.
pub fn probe_script(id: &str) -> String {
    format!("printf '%s-%s\\n' BPP {id}\n")
}

/// Looks for the answer to probe `id`: how many bytes it used up, or how many can be
/// dropped while it has not come yet.
pub fn scan_probe(buf: &[u8], id: &str) -> Result<usize, usize> {
    let answer = format!("BPP-{id}\n");
    match find(buf, answer.as_bytes()) {
        Some(at) => Ok(at + answer.len()),
        None => Err(buf.len().saturating_sub(answer.len())),
    }
}

/// One command's answer, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What a buffer holds for command `id`.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Not all of the answer yet; the first `discard` bytes can be dropped (they are
    /// before the answer starts, or stale).
    Incomplete { discard: usize },
    /// The answer, and how many bytes of the buffer it used up.
    Done { reply: Reply, used: usize },
    /// The answer is there but does not parse: the guest's shell lacks a tool.
    Garbled { detail: String, used: usize },
}

/// Looks for the whole answer to command `id` in `buf`.
pub fn scan(buf: &[u8], id: &str) -> Scan {
    let out = format!("BPO-{id}\n");
    let Some(start) = find(buf, out.as_bytes()) else {
        // Keep a tail that may be the start of a marker split across reads.
        return Scan::Incomplete { discard: buf.len().saturating_sub(out.len()) };
    };
    let body = &buf[start + out.len()..];
    let err = format!("BPE-{id}\n");
    let res = format!("BPR-{id} ");
    let (Some(e), Some(r)) = (find(body, err.as_bytes()), find(body, res.as_bytes())) else {
        return Scan::Incomplete { discard: start };
    };
    let Some(nl) = body[r..].iter().position(|&b| b == b'\n') else {
        return Scan::Incomplete { discard: start };
    };
    let used = start + out.len() + r + nl + 1;
    match parse(&body[..e], &body[e + err.len()..r], &body[r + res.len()..r + nl]) {
        Ok(reply) => Scan::Done { reply, used },
        Err(detail) => Scan::Garbled { detail, used },
    }
}

fn parse(stdout: &[u8], stderr: &[u8], code: &[u8]) -> Result<Reply, String> {
    let code = String::from_utf8_lossy(code);
    let exit_code =
        code.trim().parse().map_err(|_| format!("exit status {code:?} is not a number (no `timeout`?)"))?;
    Ok(Reply { exit_code, stdout: unb64(stdout)?, stderr: unb64(stderr)? })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn b64(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Decodes base64, ignoring line breaks (and the `\r` a cooked tty adds).
pub fn unb64(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut n, mut bits) = (0u32, 0);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            other => return Err(format!("byte {other:#04x} in base64 output")),
        };
        n = n << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    Ok(out)
}

/// A random id (hex) for markers and QGA syncs.
pub fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    // Never 0, and below 2^53 so that JSON numbers carry it exactly.
    (h.finish() >> 11) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: &str, out: &[u8], err: &[u8], code: &str) -> Vec<u8> {
        format!("BPO-{id}\n{}\nBPE-{id}\n{}\nBPR-{id} {code}\n", b64(out), b64(err)).into_bytes()
    }

    #[test]
    fn base64_round_trips_every_byte_value_and_length() {
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            assert_eq!(unb64(b64(&all[..len]).as_bytes()).unwrap(), &all[..len]);
        }
        assert_eq!(b64(b"hello\n"), "aGVsbG8K");
        assert_eq!(unb64(b"aGVs\r\nbG8K\n").unwrap(), b"hello\n");
        assert!(unb64(b"aGV-").is_err());
    }

    #[test]
    fn an_answer_after_echo_and_stale_answers_is_found() {
        let id = "00ab";
        let mut buf = script(id, "echo hi", Duration::from_secs(5)).into_bytes();
        buf.extend(answer("ffff", b"stale", b"", "0"));
        buf.extend(answer(id, b"hello\n", b"err\n", "3"));
        buf.extend(b"trailing prompt $ ");
        let Scan::Done { reply, used } = scan(&buf, id) else { panic!("{:?}", scan(&buf, id)) };
        assert_eq!(reply, Reply { exit_code: 3, stdout: b"hello\n".to_vec(), stderr: b"err\n".to_vec() });
        assert_eq!(&buf[used..], b"trailing prompt $ ");
    }

    #[test]
    fn the_echoed_script_never_looks_like_an_answer() {
        let id = "1234";
        let echo = script(id, "printf 'BPO-1234\\n'", Duration::from_secs(5)).into_bytes();
        assert!(matches!(scan(&echo, id), Scan::Incomplete { .. }));
    }

    #[test]
    fn a_partial_answer_waits_and_keeps_what_it_needs() {
        let id = "42";
        let full = answer(id, b"x", b"", "0");
        let mut buf = b"noise noise noise ".to_vec();
        let noise = buf.len();
        buf.extend(&full[..full.len() - 1]);
        assert_eq!(scan(&buf, id), Scan::Incomplete { discard: noise });
        let head = b"noise BPO-4";
        assert_eq!(scan(head, id), Scan::Incomplete { discard: head.len() - "BPO-42\n".len() });
    }

    #[test]
    fn a_non_numeric_status_is_garbled_not_a_hang() {
        let buf = b"BPO-7\n\nBPE-7\n\nBPR-7 \n".to_vec();
        assert!(matches!(scan(&buf, "7"), Scan::Garbled { .. }));
    }

    #[test]
    fn long_commands_are_typed_in_short_lines() {
        let s = script("9", &"x".repeat(10_000), Duration::from_millis(1500));
        assert!(s.lines().all(|l| l.len() < 1024), "a line is too long");
        assert!(s.contains("timeout 2 sh -c"));
    }

    #[test]
    fn a_probe_is_one_builtin_and_its_echo_is_no_answer() {
        let script = probe_script("ab");
        assert_eq!(script, "printf '%s-%s\\n' BPP ab\n");
        assert_eq!(scan_probe(script.as_bytes(), "ab"), Err(script.len() - "BPP-ab\n".len()));
        assert_eq!(scan_probe(b"xBPP-ab\nrest", "ab"), Ok(8));
    }

    #[test]
    fn ids_differ() {
        assert_ne!(random_id(), random_id());
    }
}
