//! The kernel command line (`/proc/cmdline`), split as the kernel splits it.
//!
//! Owns: [`parse`] into [`Param`]s and [`Param::parse_expected`] for what a scenario
//! asks for. Must not: judge which parameters a system should have (the
//! `kernel_cmdline` check does).
//!
//! Written by hand after the kernel's own `next_arg()` (lib/cmdline.c, used by
//! `parse_args()` in kernel/params.c): parameters are separated by blanks, a double
//! quote toggles quoting anywhere (so `key="a b"` is one parameter), the quotes around
//! a value (or around the whole parameter) are dropped, and everything after a bare
//! `--` belongs to init, not to the kernel. No kept crate parses this; it is twenty
//! lines.

/// One kernel parameter: `quiet` (bare) or `key=value` (the value may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: Option<String>,
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            None => f.write_str(&self.key),
            Some(v) if v.chars().any(char::is_whitespace) => write!(f, "{}=\"{v}\"", self.key),
            Some(v) => write!(f, "{}={v}", self.key),
        }
    }
}

impl Param {
    /// One parameter as a scenario writes it (`lockdown=integrity`, `slab_nomerge`),
    /// with the same quoting rules as the kernel's. Err says what is wrong with it.
    pub fn parse_expected(text: &str) -> Result<Param, String> {
        let params = parse(text);
        match params.as_slice() {
            [one] if !one.key.is_empty() => Ok(one.clone()),
            [] => Err("an empty parameter".to_string()),
            [one] => Err(format!("`{text}`: no name before `=` in {one}")),
            _ => Err(format!("`{text}` is {} parameters; list each on its own", params.len())),
        }
    }
}

/// The kernel's parameters on `cmdline` in order, up to a bare `--`.
pub fn parse(cmdline: &str) -> Vec<Param> {
    let mut params = Vec::new();
    let mut rest = cmdline.trim_start();
    while !rest.is_empty() {
        let (raw, after) = next_raw(rest);
        rest = after.trim_start();
        if raw == "--" {
            break;
        }
        params.push(split(raw));
    }
    params
}

/// The next blank-separated parameter, with blanks inside double quotes kept.
fn next_raw(s: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&s[..i], &s[i..]),
            _ => {}
        }
    }
    (s, "")
}

/// `key=value` with the kernel's quote handling: a leading quote on the parameter is
/// dropped (`"key=value"`), as is a quote opening the value and a trailing quote.
fn split(raw: &str) -> Param {
    let (raw, opened) = match raw.strip_prefix('"') {
        Some(r) => (r, true),
        None => (raw, false),
    };
    match raw.split_once('=') {
        None => {
            Param { key: raw.strip_suffix('"').filter(|_| opened).unwrap_or(raw).to_string(), value: None }
        }
        Some((key, value)) => {
            let (value, value_opened) = match value.strip_prefix('"') {
                Some(v) => (v, true),
                None => (value, false),
            };
            let value = if opened || value_opened { value.strip_suffix('"').unwrap_or(value) } else { value };
            Param { key: key.to_string(), value: Some(value.to_string()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str, value: Option<&str>) -> Param {
        Param { key: key.into(), value: value.map(Into::into) }
    }

    #[test]
    fn a_real_command_line_splits_like_the_kernel() {
        // A Fedora-style line with a quoted value with a blank, and init's arguments.
        let line = "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.17.1-300.fc43.x86_64 root=UUID=8c3e rd.luks.uuid=luks-1 \
                    rhgb quiet lockdown=integrity init_on_free=1 dyndbg=\"file drivers/usb/* +p\" \
                    vsyscall=none -- single\n";
        let params = parse(line);
        assert_eq!(params[0], p("BOOT_IMAGE", Some("(hd0,gpt2)/vmlinuz-6.17.1-300.fc43.x86_64")));
        assert_eq!(params[1], p("root", Some("UUID=8c3e")));
        assert_eq!(params[3], p("rhgb", None));
        assert_eq!(params[6], p("init_on_free", Some("1")));
        assert_eq!(params[7], p("dyndbg", Some("file drivers/usb/* +p")));
        assert_eq!(params.last(), Some(&p("vsyscall", Some("none"))), "init's `single` is not the kernel's");
        assert_eq!(params.len(), 9);
        assert_eq!(params[7].to_string(), "dyndbg=\"file drivers/usb/* +p\"");
    }

    #[test]
    fn quotes_around_the_whole_parameter_and_empty_values() {
        assert_eq!(
            parse("\"acpi_osi=Linux\" foo= \"bare\""),
            vec![p("acpi_osi", Some("Linux")), p("foo", Some("")), p("bare", None)]
        );
        assert!(parse("  \n").is_empty());
    }

    #[test]
    fn expected_parameters_are_one_each() {
        assert_eq!(Param::parse_expected("slab_nomerge"), Ok(p("slab_nomerge", None)));
        assert_eq!(Param::parse_expected("lockdown=integrity"), Ok(p("lockdown", Some("integrity"))));
        assert!(Param::parse_expected("a b").unwrap_err().contains("2 parameters"));
        assert!(Param::parse_expected(" ").unwrap_err().contains("empty"));
        assert!(Param::parse_expected("=1").unwrap_err().contains("no name"));
    }
}
