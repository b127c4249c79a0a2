//! Removes terminal escape sequences and control bytes from a byte stream, keeping
//! state across chunks (the serial port delivers arbitrary pieces, often one byte).
//!
//! Written by hand: the crates that strip ANSI work on whole strings, not on a stream
//! cut anywhere, and OVMF emits private-mode sequences such as `ESC[=3h`.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Text,
    /// After ESC.
    Escape,
    /// After ESC and an intermediate byte (e.g. `ESC(` `B`).
    EscapeIntermediate,
    /// Inside `ESC[` ... until a final byte 0x40..=0x7e.
    Csi,
    /// Inside `ESC]` ... until BEL or `ESC\`.
    Osc,
    OscEscape,
}

#[derive(Debug, Default)]
pub struct AnsiStripper {
    state: State,
}

impl AnsiStripper {
    /// Appends the visible text of `input` to `out`: printable bytes (UTF-8 passes
    /// through), newlines and tabs. Carriage returns and other controls are dropped.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match (self.state, b) {
                (State::Text, 0x1b) => State::Escape,
                (State::Text, b'\n' | b'\t') => {
                    out.push(b);
                    State::Text
                }
                (State::Text, 0x00..=0x1f | 0x7f) => State::Text,
                (State::Text, _) => {
                    out.push(b);
                    State::Text
                }
                (State::Escape, b'[') => State::Csi,
                (State::Escape, b']') => State::Osc,
                (State::Escape, 0x20..=0x2f) => State::EscapeIntermediate,
                (State::Escape, 0x1b) => State::Escape,
                (State::Escape | State::EscapeIntermediate, _) => State::Text,
                (State::Csi, 0x40..=0x7e) => State::Text,
                (State::Csi, 0x1b) => State::Escape,
                (State::Csi, _) => State::Csi,
                (State::Osc, 0x07) => State::Text,
                (State::Osc, 0x1b) => State::OscEscape,
                (State::Osc, _) => State::Osc,
                (State::OscEscape, b'\\') => State::Text,
                (State::OscEscape, _) => State::Osc,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_in_pieces(input: &[u8], piece: usize) -> String {
        let mut s = AnsiStripper::default();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            s.feed(chunk, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ovmf_and_colour_sequences_vanish_whatever_the_chunking() {
        let raw = b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading\r\n\x1b[1;32mOK\x1b[0m caf\xc3\xa9\r\n\x1b]0;title\x07done\x1b(B!";
        for piece in [1, 2, 3, 7, raw.len()] {
            assert_eq!(strip_in_pieces(raw, piece), "BdsDxe: loading\nOK caf\u{e9}\ndone!");
        }
    }
}
