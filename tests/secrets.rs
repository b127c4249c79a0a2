//! No secret reaches a file, a report or the terminal, in any encoding.
//!
//! `bootproof run` runs three scenarios that use one secret every way a scenario can:
//! in `run` steps over each agent transport (a shell on the tiny guest's virtio
//! console, vsock on the tiny guest, qemu-guest-agent on the installed system), typed
//! on the serial console and on the keyboard, written by the guest into the share,
//! and echoed (plain, base64, hex) by a step that fails, so it lands in the failure's
//! "seen". Then every file of each run directory (disk images and firmware variables
//! aside; the share included), the JUnit file and the process's stdout and stderr are
//! searched for the secret in plain text, in hex, and in base64 at each of the three
//! alignments. The search is written here, independently of the redactor.

use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRET: &str = "hunter2-Sesame-0pen";

fn ready() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
}

/// Every form of `secret` the search looks for: plain, hex both cases, and for each
/// alignment the base64 characters that depend on the secret alone.
fn forms(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut forms = vec![
        ("plain".to_string(), secret.to_vec()),
        ("hex".to_string(), hex::encode(secret).into_bytes()),
        ("HEX".to_string(), hex::encode_upper(secret).into_bytes()),
    ];
    for offset in 0..3usize {
        let mut input = vec![b'x'; offset];
        input.extend_from_slice(secret);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&input);
        // Skip the first group (it holds the prefix) unless there is none, and the last
        // (it may hold padding or bytes after the secret).
        let start = if offset == 0 { 0 } else { 4 };
        let core = &encoded.as_bytes()[start..encoded.len() - 4];
        forms.push((format!("base64+{offset}"), core.to_vec()));
    }
    forms
}

fn leaks_in(name: &str, bytes: &[u8], forms: &[(String, Vec<u8>)], leaks: &mut Vec<String>) {
    for (form, pattern) in forms {
        if memchr::memmem::find(bytes, pattern).is_some() {
            leaks.push(format!("{name}: {form}"));
        }
    }
}

/// Disk images and firmware variables hold what the guest holds; everything else of
/// the run directory is searched, whatever wrote it.
fn searched(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    !matches!(ext, "qcow2" | "fd")
}

fn search_tree(dir: &Path, forms: &[(String, Vec<u8>)], leaks: &mut Vec<String>, files: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            search_tree(&path, forms, leaks, files);
        } else if meta.is_file() && searched(&path) {
            *files += 1;
            leaks_in(&path.display().to_string(), &std::fs::read(&path).unwrap(), forms, leaks);
        }
    }
}

/// The tiny guest reads one console line through its hook and writes it to the share.
const HOOK: &str = "echo 'ready for the secret'\nread -r line\necho \"got: $line\"\n\
                    echo \"$line\" > /mnt/bootproof/typed.txt\n";

/// A failing step that prints the secret plain, in base64 and in hex.
const ECHO_AND_FAIL: &str = r#"run = "S='${secret:pw}'; echo \"$S\"; printf %s \"$S\" | base64; printf %s \"$S\" | od -An -tx1 | tr -d ' \n'; echo \"$S\" >&2; exit 7""#;

fn tiny_scenario(name: &str, agent: &str) -> String {
    format!(
        r#"
name = "{name}"
profile = "./{agent}.toml"
image = "reference:tiny"
timeout = "2m"

[secrets]
pw = {{ file = "secret.txt" }}

[[step]]
wait_console = "ready for the secret"

[[step]]
type_console = "${{secret:pw}}\n"

[[step]]
wait_console = "got: "

[[step]]
type_keys = "${{secret:pw}}"

[[step]]
run = "test \"$(cat /mnt/bootproof/typed.txt)\" = '${{secret:pw}}'"

[[step]]
{ECHO_AND_FAIL}
"#
    )
}

const INSTALLED: &str = r#"
name = "secret-qga"
profile = "uefi"
image = "reference:installed"
timeout = "4m"

[secrets]
pw = { reference = "installed/luks-passphrase" }

[[step]]
wait_console = "Please unlock disk root:"
timeout = "60s"

[[step]]
type_console = "${secret:pw}\n"

[[step]]
wait_journal = { unit = "multi-user.target" }
timeout = "90s"

[[step]]
run = "PW='${secret:pw}'; test ${#PW} -gt 3"

[[step]]
"#;

#[test]
fn a_secret_used_every_way_reaches_no_file_report_or_terminal_in_any_encoding() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("input")).unwrap();
    std::fs::write(d.join("input/hook.sh"), HOOK).unwrap();
    std::fs::write(d.join("secret.txt"), format!("{SECRET}\n")).unwrap();
    for agent in ["shell", "vsock"] {
        std::fs::write(
            d.join(format!("{agent}.toml")),
            format!(
                "firmware = \"uefi\"\ndisplay = \"std\"\nagent = \"{agent}\"\n\
                 [[share]]\ntag = \"bootproof-input\"\npath = \"input\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join(format!("secret-{agent}.toml")),
            tiny_scenario(&format!("secret-{agent}"), agent),
        )
        .unwrap();
    }
    std::fs::write(d.join("secret-qga.toml"), format!("{INSTALLED}{ECHO_AND_FAIL}\n")).unwrap();
    let junit = d.join("junit.xml");
    let artifacts = d.join("artifacts");
    let out = Command::new(env!("CARGO_BIN_EXE_bootproof"))
        .arg("run")
        .args(["secret-shell.toml", "secret-vsock.toml", "secret-qga.toml"].map(|f| d.join(f)))
        .arg("--artifacts")
        .arg(&artifacts)
        .arg("--junit")
        .arg(&junit)
        .env("BOOTPROOF_LOG", "debug")
        .env_remove("BOOTPROOF_IMAGE")
        .output()
        .expect("bootproof runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The installed system's secret is its LUKS passphrase, read from the image's cache.
    let luks = std::fs::read_to_string(
        bootproof::images::secret_file("installed/luks-passphrase").expect("the installed image's secret"),
    )
    .unwrap();
    let mut leaks = Vec::new();
    let mut files = 0;
    for secret in [SECRET, luks.trim_end()] {
        let forms = forms(secret.as_bytes());
        search_tree(&artifacts, &forms, &mut leaks, &mut files);
        leaks_in("junit.xml", &std::fs::read(&junit).unwrap(), &forms, &mut leaks);
        leaks_in("stdout", &out.stdout, &forms, &mut leaks);
        leaks_in("stderr", &out.stderr, &forms, &mut leaks);
    }
    assert!(leaks.is_empty(), "the secret leaked:\n{}\n\nstderr:\n{stderr}", leaks.join("\n"));

    // Each scenario got as far as its echoing step, and failed there, with the output
    // redacted in its report: the search above looked at real uses, not at nothing.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for name in ["secret-shell", "secret-vsock", "secret-qga"] {
        let summary = summary_of(&artifacts, name);
        let failure = &summary["failure"];
        assert!(failure["what"].as_str().unwrap().contains("run"), "{name}: {summary}");
        assert!(failure["seen"].as_str().unwrap().contains("exit code 7"), "{name}: {summary}");
        assert!(failure["seen"].as_str().unwrap().contains("[REDACTED]"), "{name}: {summary}");
        let want = match name {
            "secret-shell" => "shell",
            "secret-vsock" => "vsock",
            _ => "qemu-guest-agent",
        };
        assert_eq!(summary["agent"], want, "{name}: {summary}");
        let steps = summary["steps"].as_array().unwrap();
        let passed = steps.iter().filter(|s| s["status"] == "passed").count();
        assert_eq!(passed, steps.len() - 1, "{name}: every step but the last passed: {summary}");
    }
    assert!(files > 20, "only {files} files searched");
    // Debug tracing was on, and it showed the QEMU command line and QMP traffic.
    assert!(stderr.contains("starting QEMU") && stderr.contains("QMP command"), "{stderr}");
}

fn summary_of(artifacts: &Path, name: &str) -> serde_json::Value {
    let runs: Vec<PathBuf> =
        std::fs::read_dir(artifacts.join(name)).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(runs.len(), 1, "{name}: {runs:?}");
    serde_json::from_slice(&std::fs::read(runs[0].join("summary.json")).unwrap()).unwrap()
}
