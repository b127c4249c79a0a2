//! Removes secrets from a byte stream cut anywhere, before it reaches any file.
//!
//! A secret typed on the console comes back as the tty's echo, possibly split across
//! reads. Bytes that could be the start of a secret are held back until the next read
//! decides; everything else passes at once, so a prompt is never delayed.

pub const MARK: &[u8] = b"[REDACTED]";

#[derive(Debug, Default)]
pub struct Redactor {
    pending: Vec<u8>,
}

impl Redactor {
    /// Appends `input` with every complete secret replaced to `out`, holding back a
    /// tail that may continue into a secret.
    pub fn feed(&mut self, input: &[u8], secrets: &[Vec<u8>], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(input);
        if secrets.is_empty() {
            out.append(&mut self.pending);
            return;
        }
        let replaced = replace_all(&self.pending, secrets);
        let hold = secrets.iter().map(|s| partial_suffix(&replaced, s)).max().unwrap_or(0);
        let emit = replaced.len() - hold;
        out.extend_from_slice(&replaced[..emit]);
        self.pending = replaced[emit..].to_vec();
    }

    /// Emits what is held back (the stream ended: it can no longer become a secret).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }
}

fn replace_all(input: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    'outer: while i < input.len() {
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            if input[i..].starts_with(s) {
                out.extend_from_slice(MARK);
                i += s.len();
                continue 'outer;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// Length of the longest suffix of `data` that is a proper prefix of `secret`.
fn partial_suffix(data: &[u8], secret: &[u8]) -> usize {
    let max = secret.len().saturating_sub(1).min(data.len());
    (1..=max).rev().find(|&n| data.ends_with(&secret[..n])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_split_anywhere_never_passes() {
        let secret = b"hunter2".to_vec();
        let stream = b"Password: hunter2\r\nwelcome hunter and hunter2!";
        for cut in 1..stream.len() {
            let mut r = Redactor::default();
            let mut out = Vec::new();
            r.feed(&stream[..cut], std::slice::from_ref(&secret), &mut out);
            r.feed(&stream[cut..], std::slice::from_ref(&secret), &mut out);
            r.flush(&mut out);
            assert_eq!(out, b"Password: [REDACTED]\r\nwelcome hunter and [REDACTED]!", "cut at {cut}");
        }
    }

    #[test]
    fn a_prompt_is_not_held_back() {
        let mut r = Redactor::default();
        let mut out = Vec::new();
        r.feed(b"Please enter passphrase: ", &[b"s3cret".to_vec()], &mut out);
        assert_eq!(out, b"Please enter passphrase: ");
    }
}
