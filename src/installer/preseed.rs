//! The preseed that makes Debian's installer run unattended for `reference:installer`:
//! a template without secrets (`overlay/preseed/debian-installer.cfg`), rendered per
//! run with the scenario's LUKS passphrase and admin password, the log-capture hooks
//! of the caller, and per-run overrides (a fault scenario's broken answer).
//!
//! The template's placeholders are `@@NAME@@`; rendering replaces each in one pass
//! over the template, so a secret that happens to contain `@@LATE_COMMAND@@` stays
//! text. Values must fit debconf's one-line answers: a secret with a line break, a
//! control character or leading/trailing blanks (which debconf trims) is refused
//! rather than silently changed.
//!
//! Must not: write files or hold a secret in anything but the returned text.

/// The template, as shipped.
pub const TEMPLATE: &str = include_str!("../../overlay/preseed/debian-installer.cfg");

/// Where the guest finds the rendered file: [`serve`](super::serve) maps the `/d-i`
/// prefix to the run's directory, and the ISO's command line names this URL.
pub const URL_PATH: &str = "/d-i/preseed.cfg";

/// The file name under the run's `/d-i` root.
pub const FILE_NAME: &str = "preseed.cfg";

/// The answers only a run knows.
#[derive(Clone)]
pub struct Secrets {
    /// The LUKS passphrase partman-crypto formats the root with.
    pub luks_passphrase: String,
    /// The password of the user `admin` (sudo; root has no password).
    pub admin_password: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// What a caller adds to the template.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Shell commands run by `preseed/early_command`, in the installer right after
    /// the preseed is loaded (before anna fetches components): where a log channel is
    /// opened. Joined with `;`, so one failing does not stop the next.
    pub early_commands: Vec<String>,
    /// Shell commands run by `preseed/late_command`, after the system is installed
    /// and before d-i finishes (the target is mounted at `/target`).
    pub late_commands: Vec<String>,
    /// Whole preseed lines appended after the template's answers, which they
    /// override (`d-i pkgsel/include string no-such-package`).
    pub overrides: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreseedError {
    #[error("preseed: the {what} is empty")]
    Empty { what: &'static str },
    #[error(
        "preseed: the {what} has a line break, a control character or blanks at its ends; \
         debconf answers are one line and trimmed, so it would not be what the scenario says"
    )]
    NotOneLine { what: &'static str },
    #[error("preseed: {what} `{value}` must be one line")]
    Multiline { what: &'static str, value: String },
    #[error("preseed: the template has no placeholder @@{0}@@")]
    Placeholder(&'static str),
}

/// The template with the secrets, hooks and overrides filled in.
pub fn render(secrets: &Secrets, extras: &Extras) -> Result<String, PreseedError> {
    let luks = answer("LUKS passphrase", &secrets.luks_passphrase)?;
    let admin = answer("admin password", &secrets.admin_password)?;
    let early = commands("early command", &extras.early_commands)?;
    let late = commands("late command", &extras.late_commands)?;
    for line in &extras.overrides {
        one_line("override", line)?;
    }
    let overrides = extras.overrides.join("\n");
    fill(
        TEMPLATE,
        &[
            ("LUKS_PASSPHRASE", luks),
            ("ADMIN_PASSWORD", admin),
            ("EARLY_COMMAND", &early),
            ("LATE_COMMAND", &late),
            ("OVERRIDES", &overrides),
        ],
    )
}

fn answer<'a>(what: &'static str, value: &'a str) -> Result<&'a str, PreseedError> {
    if value.is_empty() {
        return Err(PreseedError::Empty { what });
    }
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(PreseedError::NotOneLine { what });
    }
    Ok(value)
}

fn one_line(what: &'static str, value: &str) -> Result<(), PreseedError> {
    if value.contains(['\n', '\r']) {
        return Err(PreseedError::Multiline { what, value: value.to_string() });
    }
    Ok(())
}

/// `true` when there is nothing to run: d-i runs the hook's value through `sh -c`
/// and an empty one is a no-op too, but `true` reads as meant.
fn commands(what: &'static str, cmds: &[String]) -> Result<String, PreseedError> {
    for c in cmds {
        one_line(what, c)?;
    }
    Ok(if cmds.is_empty() { "true".to_string() } else { cmds.join("; ") })
}

/// Replaces each `@@NAME@@` of `template` with its value, in one pass; every name
/// must occur.
fn fill(template: &str, values: &[(&'static str, &str)]) -> Result<String, PreseedError> {
    for (name, _) in values {
        if !template.contains(&format!("@@{name}@@")) {
            return Err(PreseedError::Placeholder(name));
        }
    }
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("@@") {
        let after = &rest[start + 2..];
        let known = after.find("@@").and_then(|end| {
            let name = &after[..end];
            values.iter().find(|(n, _)| *n == name).map(|(_, v)| (end, *v))
        });
        match known {
            Some((end, value)) => {
                out.push_str(&rest[..start]);
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets { luks_passphrase: "correct horse".into(), admin_password: "s3cret@@LATE_COMMAND@@".into() }
    }

    fn answer_of<'a>(text: &'a str, question: &str) -> Vec<&'a str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("d-i ")?.strip_prefix(question)?.strip_prefix(' '))
            .collect()
    }

    #[test]
    fn secrets_land_in_their_answers_and_nowhere_else() {
        let text = render(&secrets(), &Extras::default()).unwrap();
        assert_eq!(answer_of(&text, "partman-crypto/passphrase"), ["password correct horse"]);
        assert_eq!(answer_of(&text, "partman-crypto/passphrase-again"), ["password correct horse"]);
        assert_eq!(answer_of(&text, "passwd/user-password"), ["password s3cret@@LATE_COMMAND@@"]);
        assert_eq!(text.matches("correct horse").count(), 2);
        assert_eq!(answer_of(&text, "preseed/late_command"), ["string true"]);
        assert!(!text.contains("@@LUKS"), "every placeholder is filled");
    }

    #[test]
    fn hooks_are_joined_and_overrides_come_last() {
        let extras = Extras {
            early_commands: vec!["modprobe 9p".into(), "echo hi".into()],
            late_commands: vec!["cp /var/log/syslog /target/root/".into()],
            overrides: vec!["d-i pkgsel/include string no-such-package".into()],
        };
        let text = render(&secrets(), &extras).unwrap();
        assert_eq!(answer_of(&text, "preseed/early_command"), ["string modprobe 9p; echo hi"]);
        assert_eq!(answer_of(&text, "preseed/late_command"), ["string cp /var/log/syslog /target/root/"]);
        let include = answer_of(&text, "pkgsel/include");
        assert_eq!(include.last(), Some(&"string no-such-package"), "{include:?}");
    }

    #[test]
    fn answers_that_debconf_would_change_are_refused() {
        for (luks, what) in [("", "empty"), ("a\nb", "newline"), (" lead", "blank"), ("tab\there", "control")]
        {
            let s = Secrets { luks_passphrase: luks.into(), admin_password: "x".into() };
            assert!(render(&s, &Extras::default()).is_err(), "{what}");
        }
        let extras = Extras { late_commands: vec!["a\nb".into()], ..Extras::default() };
        assert!(matches!(render(&secrets(), &extras), Err(PreseedError::Multiline { .. })));
    }

    #[test]
    fn the_template_holds_placeholders_not_secrets() {
        for name in ["LUKS_PASSPHRASE", "ADMIN_PASSWORD", "EARLY_COMMAND", "LATE_COMMAND", "OVERRIDES"] {
            assert!(TEMPLATE.contains(&format!("@@{name}@@")), "{name}");
        }
        for line in TEMPLATE.lines().filter(|l| !l.starts_with('#') && l.contains(" password ")) {
            assert!(line.ends_with("@@"), "a password answer that is not a placeholder: {line}");
        }
    }

    #[test]
    fn fill_leaves_unknown_markers_alone() {
        let out = fill("a @@X@@ b @@Y@@ @@", &[("X", "1")]).unwrap();
        assert_eq!(out, "a 1 b @@Y@@ @@");
        assert_eq!(fill("none", &[("X", "1")]), Err(PreseedError::Placeholder("X")));
    }
}
