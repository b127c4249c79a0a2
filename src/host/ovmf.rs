//! OVMF firmware discovery: which CODE/VARS pairs this host has, and which one a
//! profile gets.
//!
//! Resolution order (DESIGN.md): the profile's explicit paths, then
//! `BOOTPROOF_OVMF_CODE`/`BOOTPROOF_OVMF_VARS`, then QEMU's firmware descriptors (the
//! JSON files that say which image does Secure Boot and which needs SMM), then the
//! distributions' known paths. Nothing is downloaded at run time; the `ovmf-prebuilt`
//! cargo feature adds a last resort that fetches firmware once into the cache.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::profile::Firmware;

/// A firmware image and the template of its variable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwarePair {
    pub code: PathBuf,
    pub vars: PathBuf,
    /// Secure Boot is enforced with keys enrolled in the VARS template.
    pub secure_boot: bool,
    /// The CODE image only runs with SMM and secure pflash (all Secure Boot builds).
    pub requires_smm: bool,
    /// Where the pair came from, for `doctor` and error messages.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error(
        "{what} firmware file {} does not exist{origin}\n  fix: point it at an existing \
         OVMF file, or install OVMF (apt-get install ovmf / dnf install edk2-ovmf)",
        path.display()
    )]
    MissingFile { what: &'static str, path: PathBuf, origin: String },
    #[error(
        "no local UEFI firmware, and the ovmf-prebuilt download into {} failed: {detail}\n  fix: \
         install OVMF (apt-get install ovmf / dnf install edk2-ovmf); the download needs network",
        dir.display()
    )]
    Prebuilt { dir: PathBuf, detail: String },
    #[error(
        "no {wanted} firmware found (looked at BOOTPROOF_OVMF_CODE/VARS, {}, and {})\n  fix: \
         apt-get install ovmf (Debian/Ubuntu) or dnf install edk2-ovmf (Fedora), or set \
         BOOTPROOF_OVMF_CODE and BOOTPROOF_OVMF_VARS",
        DESCRIPTOR_DIRS.join(", "), "the distributions' OVMF paths"
    )]
    NotFound { wanted: &'static str },
}

const DESCRIPTOR_DIRS: &[&str] =
    &["/etc/qemu/firmware", "/usr/share/qemu/firmware", "/usr/local/share/qemu/firmware"];

/// Known (code, vars, secure boot) paths of Debian/Ubuntu, Fedora and Arch.
const KNOWN_PAIRS: &[(&str, &str, bool)] = &[
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", false),
    ("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd", true),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd", false),
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd", false),
    ("/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd", "/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd", true),
    ("/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd", false),
    ("/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd", true),
];

/// The firmware a profile boots with: `None` for BIOS.
pub fn resolve(firmware: &Firmware) -> Result<Option<FirmwarePair>, FirmwareError> {
    let secure_boot = match firmware {
        Firmware::Bios => return Ok(None),
        Firmware::Files { code, vars, secure_boot } => {
            let origin = " (set in the profile's `firmware` table)";
            return explicit(code, vars, *secure_boot, origin).map(Some);
        }
        Firmware::Uefi => false,
        Firmware::UefiSecureBoot => true,
    };
    if let Some(pair) = from_env(secure_boot)? {
        return Ok(Some(pair));
    }
    if let Some(pair) = discover().into_iter().find(|p| p.secure_boot == secure_boot) {
        return Ok(Some(pair));
    }
    #[cfg(feature = "ovmf-prebuilt")]
    if !secure_boot {
        return prebuilt().map(Some);
    }
    Err(FirmwareError::NotFound {
        wanted: if secure_boot { "Secure Boot UEFI (keys enrolled)" } else { "UEFI" },
    })
}

/// The `ovmf-prebuilt` crate's firmware, fetched once into the cache.
#[cfg(feature = "ovmf-prebuilt")]
fn prebuilt() -> Result<FirmwarePair, FirmwareError> {
    use ovmf_prebuilt::{Arch, FileType, Prebuilt, Source};
    let dir = crate::cache::cache_dir().join("ovmf-prebuilt");
    let p = Prebuilt::fetch(Source::LATEST, &dir)
        .map_err(|e| FirmwareError::Prebuilt { dir: dir.clone(), detail: e.to_string() })?;
    Ok(FirmwarePair {
        code: p.get_file(Arch::X64, FileType::Code),
        vars: p.get_file(Arch::X64, FileType::Vars),
        secure_boot: false,
        requires_smm: false,
        source: format!("ovmf-prebuilt, cached in {}", dir.display()),
    })
}

fn explicit(
    code: &Path,
    vars: &Path,
    secure_boot: bool,
    origin: &str,
) -> Result<FirmwarePair, FirmwareError> {
    for (what, path) in [("CODE", code), ("VARS", vars)] {
        if !path.is_file() {
            let origin = origin.to_string();
            return Err(FirmwareError::MissingFile { what, path: path.to_path_buf(), origin });
        }
    }
    Ok(FirmwarePair {
        code: code.to_path_buf(),
        vars: vars.to_path_buf(),
        secure_boot,
        requires_smm: secure_boot,
        source: origin.trim().trim_start_matches('(').trim_end_matches(')').to_string(),
    })
}

/// `BOOTPROOF_OVMF_CODE`/`VARS` apply to whichever mode they are set for: they are
/// taken for Secure Boot only when `BOOTPROOF_OVMF_SECURE_BOOT=1`.
fn from_env(secure_boot: bool) -> Result<Option<FirmwarePair>, FirmwareError> {
    let (Some(code), Some(vars)) =
        (std::env::var_os("BOOTPROOF_OVMF_CODE"), std::env::var_os("BOOTPROOF_OVMF_VARS"))
    else {
        return Ok(None);
    };
    let env_sb = std::env::var("BOOTPROOF_OVMF_SECURE_BOOT").is_ok_and(|v| v == "1");
    if env_sb != secure_boot {
        return Ok(None);
    }
    let origin = " (from BOOTPROOF_OVMF_CODE/BOOTPROOF_OVMF_VARS)";
    explicit(Path::new(&code), Path::new(&vars), secure_boot, origin).map(Some)
}

/// Every usable pair on this host: descriptors first (in QEMU's priority order), then
/// known paths not already covered.
pub fn discover() -> Vec<FirmwarePair> {
    let mut pairs = from_descriptors(DESCRIPTOR_DIRS);
    for (code, vars, sb) in KNOWN_PAIRS {
        let (code, vars) = (Path::new(code), Path::new(vars));
        if code.is_file() && vars.is_file() && !pairs.iter().any(|p| p.code == code && p.vars == vars) {
            pairs.push(FirmwarePair {
                code: code.into(),
                vars: vars.into(),
                secure_boot: *sb,
                requires_smm: *sb,
                source: "known distribution path".into(),
            });
        }
    }
    pairs
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Descriptor {
    interface_types: Vec<String>,
    mapping: Mapping,
    targets: Vec<Target>,
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Mapping {
    #[serde(default)]
    device: String,
    executable: Option<FileRef>,
    nvram_template: Option<FileRef>,
}

#[derive(Deserialize)]
struct FileRef {
    filename: PathBuf,
}

#[derive(Deserialize)]
struct Target {
    architecture: String,
}

/// Reads QEMU firmware descriptors. As QEMU specifies, a file name in an earlier
/// directory overrides the same name in a later one, and files apply in name order.
fn from_descriptors(dirs: &[&str]) -> Vec<FirmwarePair> {
    let mut by_name: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for dir in dirs.iter().rev() {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                by_name.insert(name, entry.path());
            }
        }
    }
    by_name
        .into_iter()
        .filter_map(|(name, path)| {
            let text = std::fs::read_to_string(&path).ok()?;
            pair_from_descriptor(&text, &name)
        })
        .collect()
}

fn pair_from_descriptor(text: &str, name: &str) -> Option<FirmwarePair> {
    let d: Descriptor = serde_json::from_str(text).ok()?;
    let usable = d.interface_types.iter().any(|t| t == "uefi")
        && d.mapping.device == "flash"
        && d.targets.iter().any(|t| t.architecture == "x86_64")
        // Confidential-computing builds boot nothing ordinary.
        && !d.features.iter().any(|f| f == "amd-sev-es" || f == "intel-tdx" || f == "amd-sev-snp");
    let has = |f: &str| d.features.iter().any(|x| x == f);
    let code = d.mapping.executable?.filename;
    let vars = d.mapping.nvram_template?.filename;
    let secure_boot = has("secure-boot") && has("enrolled-keys");
    // A Secure Boot build without enrolled keys boots anything: neither mode wants it.
    if !usable || (has("secure-boot") && !secure_boot) || !code.is_file() || !vars.is_file() {
        return None;
    }
    Some(FirmwarePair {
        code,
        vars,
        secure_boot,
        requires_smm: has("requires-smm"),
        source: format!("QEMU firmware descriptor {name}"),
    })
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "ovmf-prebuilt")]
    #[test]
    fn prebuilt_fetch_gives_files_or_says_how_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: this test binary sets the variable before any other thread reads it only
        // under the feature, which no other test touches.
        unsafe { std::env::set_var("BOOTPROOF_CACHE", tmp.path()) };
        match super::prebuilt() {
            Ok(p) => assert!(p.code.is_file() && p.vars.is_file(), "{p:?}"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("ovmf-prebuilt download") && e.contains("apt-get install ovmf"), "{e}");
            }
        }
    }

    use super::*;

    #[test]
    fn descriptor_features_decide_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("CODE.fd");
        let vars = dir.path().join("VARS.fd");
        std::fs::write(&code, b"c").unwrap();
        std::fs::write(&vars, b"v").unwrap();
        let descriptor = |features: &str| {
            format!(
                r#"{{"interface-types":["uefi"],"mapping":{{"device":"flash",
                "executable":{{"filename":{code:?},"format":"raw"}},
                "nvram-template":{{"filename":{vars:?},"format":"raw"}}}},
                "targets":[{{"architecture":"x86_64","machines":["pc-q35-*"]}}],
                "features":[{features}]}}"#
            )
        };
        let sb =
            pair_from_descriptor(&descriptor(r#""enrolled-keys","requires-smm","secure-boot""#), "40.json")
                .unwrap();
        assert!(sb.secure_boot && sb.requires_smm);
        let plain = pair_from_descriptor(&descriptor(r#""acpi-s3""#), "60.json").unwrap();
        assert!(!plain.secure_boot && !plain.requires_smm);
        assert!(pair_from_descriptor(&descriptor(r#""secure-boot""#), "50.json").is_none());
        assert!(pair_from_descriptor(&descriptor(r#""amd-sev-es""#), "x.json").is_none());
    }

    #[test]
    fn explicit_missing_file_names_it_and_the_fix() {
        let fw = Firmware::Files {
            code: "/nonexistent/CODE.fd".into(),
            vars: "/nonexistent/VARS.fd".into(),
            secure_boot: false,
        };
        let e = resolve(&fw).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/CODE.fd") && e.contains("profile"), "{e}");
        assert!(e.contains("apt-get install ovmf"), "{e}");
    }
}
