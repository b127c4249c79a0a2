//! Firmware output: OVMF's debug log and serial console, SeaBIOS's debug output.
//!
//! Owns: recognising firmware output. Its lines are free-form prints without
//! timestamps, so every text line is a record. A serial console goes on with the
//! kernel's `[seconds]` lines after the firmware hands over; those go to the kernel
//! rules, so a panic on the console is found too.
//! Must not: decide which messages are failures (that is `rules`).

use std::io::BufRead;
use std::path::Path;

use super::kernel;
use super::lines::{self, LineReader, Tally};
use super::rules::{Rules, Time};
use super::{Analysis, Analyzer, LogError, LogKind};

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(Firmware)]
}

/// Prints that only firmware makes, early in its output (OVMF PEI/DXE/BDS, SeaBIOS).
const MARKERS: &[&str] = &[
    "SecCoreStartupWithStack",
    "Register PPI Notify",
    "Install PPI:",
    "Loading driver at ",
    "InstallProtocolInterface:",
    "BdsDxe",
    "SeaBIOS (version",
    "Booting from ",
    "Searching bootorder for",
    "UEFI Interactive Shell",
];

/// Text as a console shows it: carriage returns and ANSI escapes are normal there, NUL
/// and other control bytes are not.
fn is_text(line: &[u8]) -> bool {
    !line.iter().any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\r' | 0x1b))
}

struct Firmware;

impl Analyzer for Firmware {
    fn kind(&self) -> LogKind {
        LogKind::Firmware
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        // At the start of a line, as firmware prints them, not quoted in a document.
        let found = MARKERS
            .iter()
            .filter(|m| lines::head_lines(head).any(|l| l.trim_ascii_start().starts_with(m.as_bytes())))
            .count();
        match found {
            0 => 0,
            1 => 50,
            _ => 90,
        }
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let mut reader = LineReader::new(input);
        let mut rules = Rules::new(file);
        let mut tally = Tally::default();
        while let Some(line) = reader.next_line().map_err(|e| lines::io_error(file, e))? {
            if line.oversize || !is_text(line.bytes) {
                tally.unparsed();
                continue;
            }
            tally.record();
            let kernel = kernel::kernel_line(line.bytes);
            match kernel.seconds {
                Some(seconds) => {
                    let time = Time::Text(seconds);
                    rules.kernel(line.number, time, kernel.message, line.bytes);
                }
                None => rules.firmware(line.number, line.bytes),
            }
        }
        Ok(tally.into_analysis(rules.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{FindingKind, fixture};
    use std::io::Cursor;

    /// OVMF's debug output on a serial console (CRLF, terminal escapes) and SeaBIOS's,
    /// written here (see `tests/fixtures/logs/README.md`).
    const OVMF: &[u8] = fixture!("firmware/ovmf-console.log");
    const SEABIOS: &[u8] = fixture!("firmware/seabios-debug.log");

    fn analyze(data: &[u8]) -> Analysis {
        Firmware.analyze(&mut Cursor::new(data), Path::new("console.log")).unwrap()
    }

    #[test]
    fn successful_boots_have_no_finding() {
        for (name, data, lines) in [("ovmf", OVMF, 12), ("seabios", SEABIOS, 9)] {
            assert!(Firmware.sniff(data, name) >= 90, "{name}");
            let analysis = analyze(data);
            assert_eq!(
                (analysis.records, analysis.unparsed_lines, analysis.lines),
                (lines, 0, lines),
                "{name}"
            );
            // OVMF's "Image ... start failed: Unsupported" is a driver declining
            // hardware that is not there: normal, not a finding.
            assert!(analysis.findings.is_empty(), "{name}: {:?}", analysis.findings);
        }
    }

    #[test]
    fn refused_boot_on_a_secure_boot_console() {
        // The messages edk2's BdsDxe prints when Secure Boot rejects every boot option.
        let console = "BdsDxe: loading Boot0001 \"UEFI QEMU DVD-ROM QM00005 \" from PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0)\r\n\
            BdsDxe: failed to load Boot0001 \"UEFI QEMU DVD-ROM QM00005 \" from PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0): Access Denied\r\n\
            BdsDxe: No bootable option or device was found.\r\n\
            BdsDxe: Press any key to enter the Boot Manager Menu.\r\n";
        let analysis = analyze(console.as_bytes());
        let kinds: Vec<(FindingKind, u64)> = analysis.findings.iter().map(|f| (f.kind, f.line)).collect();
        assert_eq!(kinds, vec![(FindingKind::FirmwareRefusal, 2), (FindingKind::BootFailure, 3)]);
        assert_eq!((analysis.records, analysis.unparsed_lines), (4, 0));
        // The `\r` of the console's line ends is not evidence.
        assert!(analysis.findings[0].evidence[0].ends_with("Access Denied"));
    }

    #[test]
    fn seabios_without_a_bootable_disk() {
        // SeaBIOS's messages for a disk without a boot sector, as it prints them.
        let mut console = SEABIOS[..SEABIOS.len() - "Booting from 0000:7c00\n".len()].to_vec();
        console.extend_from_slice(b"Boot failed: not a bootable disk\n\nNo bootable device.\n");
        let analysis = analyze(&console);
        let found: Vec<_> = analysis.findings.iter().map(|f| (f.kind, f.severity, f.line)).collect();
        use crate::logs::Severity::{Error, Warning};
        assert_eq!(found, [(FindingKind::BootFailure, Warning, 9), (FindingKind::BootFailure, Error, 11)]);
        assert_eq!(analysis.findings[1].summary, "firmware: No bootable device.");
        assert_eq!((analysis.records, analysis.lines), (11, 11));
    }

    #[test]
    fn kernel_panic_on_a_serial_console_after_the_firmware() {
        let mut console = OVMF.to_vec();
        let firmware_lines = memchr::memchr_iter(b'\n', &console).count() as u64;
        // A panic as the kernel prints it on the console once the firmware is done.
        console.extend_from_slice(
            b"[    0.000000] Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)\r\n",
        );
        console.extend_from_slice(b"[   12.345678] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n");
        assert!(Firmware.sniff(&console, "console.log") >= 90);
        let analysis = analyze(&console);
        assert_eq!(analysis.findings.len(), 1);
        let panic = &analysis.findings[0];
        assert_eq!(panic.kind, FindingKind::KernelPanic);
        assert_eq!(panic.line, firmware_lines + 2);
        assert_eq!(panic.time.as_deref(), Some("12.345678"));
        assert!(
            panic.summary.ends_with("Unable to mount root fs on unknown-block(0,0)"),
            "{}",
            panic.summary
        );
    }

    #[test]
    fn markers_count_only_at_the_start_of_a_line() {
        assert_eq!(Firmware.sniff(b"notes: SecCoreStartupWithStack and BdsDxe are OVMF's\n", "x"), 0);
        assert_eq!(Firmware.sniff(b"  BdsDxe: loading Boot0001\n", "x"), 50);
        // NUL bytes are no console text.
        let analysis = analyze(b"BdsDxe: loading Boot0001\n\x00\x00\x00\n");
        assert_eq!((analysis.records, analysis.unparsed_lines), (1, 1));
    }
}
