//! The commands anaconda ran, as program.log (and storage.log's `program` logger) shows
//! them: each with its output lines and return code.
//!
//! Owns: the typed list of commands for checks and `inspect`. Must not: judge them
//! (which failures matter is in `rules`).

use std::io::BufRead;
use std::path::Path;

use super::entries::{command_finished, command_started, grammar_for};
use crate::logs::lines::{LineReader, io_error};
use crate::logs::{LogError, LogKind};

/// Output lines kept per command; the rest are counted in `output_lines`.
const MAX_KEPT_OUTPUT: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandRun {
    /// Line of `Running...`.
    pub line: u64,
    pub time: Option<String>,
    /// As logged: argv joined by blanks (a Python list in RHEL 6).
    pub command: String,
    pub output: Vec<String>,
    pub output_lines: u64,
    /// `None` when the log ends, or another command starts, before a return code.
    pub return_code: Option<i64>,
}

/// Every command of a program.log or storage.log, in order.
pub fn commands(kind: LogKind, input: &mut dyn BufRead, file: &Path) -> Result<Vec<CommandRun>, LogError> {
    let grammar = grammar_for(kind)
        .filter(|_| matches!(kind, LogKind::ProgramLog | LogKind::StorageLog))
        .ok_or_else(|| LogError::Malformed {
            path: file.to_path_buf(),
            line: 0,
            message: format!("{} does not log commands", kind.as_str()),
        })?;
    let mut runs: Vec<CommandRun> = Vec::new();
    let mut open = false;
    let mut lines = LineReader::new(input);
    while let Some(line) = lines.next_line().map_err(|e| io_error(file, e))? {
        let output = match grammar(line.bytes) {
            Some(entry) if kind == LogKind::ProgramLog || entry.source == b"program" => {
                if let Some(command) = command_started(entry.message) {
                    runs.push(CommandRun {
                        line: line.number,
                        time: entry.time.map(|t| String::from_utf8_lossy(t).into_owned()),
                        command: String::from_utf8_lossy(command).into_owned(),
                        ..CommandRun::default()
                    });
                    open = true;
                    continue;
                }
                if let Some(code) = command_finished(entry.message) {
                    if let Some(run) = runs.last_mut().filter(|_| open) {
                        run.return_code = Some(code);
                    }
                    open = false;
                    continue;
                }
                entry.message
            }
            Some(_) => continue,
            None => line.bytes,
        };
        if let Some(run) = runs.last_mut().filter(|_| open) {
            run.output_lines += 1;
            if run.output.len() < MAX_KEPT_OUTPUT {
                run.output.push(String::from_utf8_lossy(output).into_owned());
            }
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::anaconda::corpus;

    fn runs(relative: &str, kind: LogKind) -> Vec<CommandRun> {
        let data = corpus::read(relative);
        commands(kind, &mut &data[..], Path::new(relative)).unwrap()
    }

    #[test]
    fn rocky_program_log_commands_with_output_and_codes() {
        let all = runs("anaconda/rocky9.1-paperdragon/program.log", LogKind::ProgramLog);
        let count = corpus::read("anaconda/rocky9.1-paperdragon/program.log")
            .split(|b| *b == b'\n')
            .filter(|l| memchr::memmem::find(l, b"program: Running").is_some())
            .count();
        assert_eq!(all.len(), count);
        assert_eq!(all[0].command, "systemctl restart rsyslog");
        assert_eq!((all[0].line, all[0].return_code), (1, Some(0)));
        let mkdosfs = all.iter().find(|r| r.command == "mkdosfs --help").unwrap();
        assert_eq!(mkdosfs.return_code, Some(0));
        assert_eq!(mkdosfs.output[0], "stdout[1]: mkfs.fat 4.2 (2021-01-31)");
        assert!(mkdosfs.output.iter().any(|l| l.starts_with("  --help ")));
        let virt = all.iter().find(|r| r.command == "systemd-detect-virt").unwrap();
        assert_eq!((virt.output.as_slice(), virt.return_code), (&["kvm".to_owned()][..], Some(0)));
        // A %post script run in the chroot, with its error output.
        let script = all.iter().find(|r| r.command == "/bin/sh /tmp/ks-script-6p_ia1t7").unwrap();
        assert!(script.output.iter().any(|l| l.contains("restorecon: command not found")));
    }

    #[test]
    fn storage_log_commands_and_their_failures() {
        let all = runs("anaconda/rocky9.1-paperdragon/storage.log", LogKind::StorageLog);
        let failed: Vec<_> = all
            .iter()
            .filter(|r| r.return_code.is_some_and(|c| c != 0))
            .map(|r| r.command.as_str())
            .collect();
        assert_eq!(failed.len(), 5, "{failed:?}");
        assert!(failed.contains(&"/usr/libexec/fcoe/fcoe_edd.sh -i"));
        assert!(failed.contains(&"findmnt -rn /mnt/sysroot"));
        let edd = all.iter().find(|r| r.command.ends_with("fcoe_edd.sh -i")).unwrap();
        assert_eq!(edd.output, ["stdout:", "No FCoE boot disk information is found in EDD!"]);
    }
}
