//! Keys as people write them (`ctrl-alt-delete`, `Return`, "hello") → QEMU qcodes
//! (QKeyCode in QEMU's `ui.json`) for a US keyboard layout.

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "unknown key `{key}` in `{chord}`; use QEMU qcode names (e.g. ctrl, alt, shift, ret, esc, tab, f1, a, 1, delete)"
    )]
    UnknownKey { key: String, chord: String },
    #[error("cannot type {0:?}: no key on a US keyboard produces it")]
    Untypeable(char),
}

/// Every QKeyCode QEMU 7.2 knows that a test would press.
const QCODES: &[&str] = &[
    "shift",
    "shift_r",
    "alt",
    "alt_r",
    "ctrl",
    "ctrl_r",
    "menu",
    "esc",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "0",
    "minus",
    "equal",
    "backspace",
    "tab",
    "q",
    "w",
    "e",
    "r",
    "t",
    "y",
    "u",
    "i",
    "o",
    "p",
    "bracket_left",
    "bracket_right",
    "ret",
    "a",
    "s",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "semicolon",
    "apostrophe",
    "grave_accent",
    "backslash",
    "z",
    "x",
    "c",
    "v",
    "b",
    "n",
    "m",
    "comma",
    "dot",
    "slash",
    "asterisk",
    "spc",
    "caps_lock",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "f6",
    "f7",
    "f8",
    "f9",
    "f10",
    "num_lock",
    "scroll_lock",
    "kp_divide",
    "kp_multiply",
    "kp_subtract",
    "kp_add",
    "kp_enter",
    "kp_decimal",
    "sysrq",
    "kp_0",
    "kp_1",
    "kp_2",
    "kp_3",
    "kp_4",
    "kp_5",
    "kp_6",
    "kp_7",
    "kp_8",
    "kp_9",
    "less",
    "f11",
    "f12",
    "print",
    "home",
    "pgup",
    "pgdn",
    "end",
    "left",
    "up",
    "down",
    "right",
    "insert",
    "delete",
    "meta_l",
    "meta_r",
    "power",
    "sleep",
    "wake",
    "pause",
];

/// Friendly names people use for keys, mapped to qcodes.
const ALIASES: &[(&str, &str)] = &[
    ("control", "ctrl"),
    ("enter", "ret"),
    ("return", "ret"),
    ("escape", "esc"),
    ("del", "delete"),
    ("space", "spc"),
    ("super", "meta_l"),
    ("win", "meta_l"),
    ("pageup", "pgup"),
    ("pagedown", "pgdn"),
    ("ins", "insert"),
    ("bs", "backspace"),
    ("altgr", "alt_r"),
];

/// A chord such as `ctrl-alt-delete` or `shift+tab` → qcodes, pressed together.
pub fn chord_qcodes(chord: &str) -> Result<Vec<String>, KeyError> {
    let parts: Vec<&str> =
        if chord == "-" || chord == "+" { vec![chord] } else { chord.split(['-', '+']).collect() };
    parts
        .into_iter()
        .map(|p| {
            let lower = p.trim().to_ascii_lowercase();
            let name = ALIASES.iter().find(|(a, _)| *a == lower).map_or(lower.as_str(), |(_, q)| q);
            let name = match name {
                "-" => "minus",
                "+" => "kp_add",
                other => other,
            };
            if QCODES.contains(&name) {
                Ok(name.to_string())
            } else {
                Err(KeyError::UnknownKey { key: p.to_string(), chord: chord.to_string() })
            }
        })
        .collect()
}

/// Text → one chord per character (with shift where a US layout needs it).
pub fn text_keystrokes(text: &str) -> Result<Vec<Vec<String>>, KeyError> {
    text.chars().map(char_chord).collect()
}

fn char_chord(c: char) -> Result<Vec<String>, KeyError> {
    const UNSHIFTED: &[(char, &str)] = &[
        (' ', "spc"),
        ('\n', "ret"),
        ('\t', "tab"),
        ('-', "minus"),
        ('=', "equal"),
        ('[', "bracket_left"),
        (']', "bracket_right"),
        (';', "semicolon"),
        ('\'', "apostrophe"),
        ('`', "grave_accent"),
        ('\\', "backslash"),
        (',', "comma"),
        ('.', "dot"),
        ('/', "slash"),
    ];
    const SHIFTED: &[(char, &str)] = &[
        ('!', "1"),
        ('@', "2"),
        ('#', "3"),
        ('$', "4"),
        ('%', "5"),
        ('^', "6"),
        ('&', "7"),
        ('*', "8"),
        ('(', "9"),
        (')', "0"),
        ('_', "minus"),
        ('+', "equal"),
        ('{', "bracket_left"),
        ('}', "bracket_right"),
        (':', "semicolon"),
        ('"', "apostrophe"),
        ('~', "grave_accent"),
        ('|', "backslash"),
        ('<', "comma"),
        ('>', "dot"),
        ('?', "slash"),
    ];
    let one = |k: &str| vec![k.to_string()];
    let shifted = |k: &str| vec!["shift".to_string(), k.to_string()];
    match c {
        'a'..='z' | '0'..='9' => Ok(one(&c.to_string())),
        'A'..='Z' => Ok(shifted(&c.to_ascii_lowercase().to_string())),
        _ => {
            if let Some((_, k)) = UNSHIFTED.iter().find(|(ch, _)| *ch == c) {
                Ok(one(k))
            } else if let Some((_, k)) = SHIFTED.iter().find(|(ch, _)| *ch == c) {
                Ok(shifted(k))
            } else {
                Err(KeyError::Untypeable(c))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chords() {
        assert_eq!(chord_qcodes("ctrl-alt-delete").unwrap(), ["ctrl", "alt", "delete"]);
        assert_eq!(chord_qcodes("Shift+Tab").unwrap(), ["shift", "tab"]);
        assert_eq!(chord_qcodes("Return").unwrap(), ["ret"]);
        assert_eq!(chord_qcodes("alt-f2").unwrap(), ["alt", "f2"]);
        let e = chord_qcodes("ctrl-banana").unwrap_err().to_string();
        assert!(e.contains("`banana`"), "{e}");
    }

    #[test]
    fn typing_uses_shift_where_a_us_layout_needs_it() {
        let keys = text_keystrokes("aB1!\n").unwrap();
        let flat: Vec<String> = keys.iter().map(|k| k.join("+")).collect();
        assert_eq!(flat, ["a", "shift+b", "1", "shift+1", "ret"]);
        assert!(matches!(text_keystrokes("é"), Err(KeyError::Untypeable('é'))));
    }
}
