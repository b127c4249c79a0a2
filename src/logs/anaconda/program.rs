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
