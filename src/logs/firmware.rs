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
    use crate::logs::FindingKind;
    use crate::logs::lines::testing::{analyze_file, corpus_file, count_lines};
    use std::io::Cursor;

    #[test]
    fn successful_boots_have_no_finding() {
        for name in
            ["firmware/ovmf-debug-TobleMiner-KVMGT.log", "firmware/seabios-debug-gaberger-qemu-test.log"]
        {
            let path = corpus_file(name);
            let head = std::fs::read(&path).unwrap();
            assert!(Firmware.sniff(&head[..head.len().min(65536)], name) >= 90, "{name}");
            let analysis = analyze_file(&Firmware, &path);
            assert_eq!(analysis.lines, count_lines(&path), "{name}");
            assert_eq!(analysis.records + analysis.unparsed_lines, analysis.lines);
            // OVMF's "Image ... start failed: Unsupported" lines are drivers declining
            // hardware that is not there: normal, not findings.
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
        let mut input = Cursor::new(console.as_bytes());
        let analysis = Firmware.analyze(&mut input, Path::new("console.log")).unwrap();
        let kinds: Vec<(FindingKind, u64)> = analysis.findings.iter().map(|f| (f.kind, f.line)).collect();
        assert_eq!(kinds, vec![(FindingKind::FirmwareRefusal, 2), (FindingKind::BootFailure, 3)]);
        assert_eq!((analysis.records, analysis.unparsed_lines), (4, 0));
    }

    #[test]
    fn kernel_panic_on_a_serial_console_after_the_firmware() {
        let ovmf = std::fs::read(corpus_file("firmware/ovmf-debug-TobleMiner-KVMGT.log")).unwrap();
        let mut console = ovmf[..ovmf.len().min(4096)].to_vec();
        console.truncate(memchr::memrchr(b'\n', &console).unwrap() + 1);
        let firmware_lines = memchr::memchr_iter(b'\n', &console).count() as u64;
        // The panic line the corpus README quotes from a vmcore-dmesg, as a console
        // prints it.
        console.extend_from_slice(b"[   12.345678] Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled\n");
        assert!(Firmware.sniff(&console, "console.log") >= 90);
        let analysis = Firmware.analyze(&mut Cursor::new(console), Path::new("console.log")).unwrap();
        assert_eq!(analysis.findings.len(), 1);
        let panic = &analysis.findings[0];
        assert_eq!(panic.kind, FindingKind::KernelPanic);
        assert_eq!(panic.line, firmware_lines + 1);
        assert_eq!(panic.time.as_deref(), Some("12.345678"));
    }
}
