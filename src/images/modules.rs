//! Kernel module load order from `depmod`'s `modules.dep`: the wanted modules and
//! everything they need, each after its dependencies, as busybox `insmod` (which does
//! not resolve dependencies) requires.
//!
//! Must not: read files or run depmod; the caller hands in the text.

use std::collections::{BTreeMap, HashSet};

/// `modules.dep` as a map from module name to its file and its dependencies' files.
#[derive(Debug, Default)]
pub struct ModulesDep {
    by_name: BTreeMap<String, String>,
    deps: BTreeMap<String, Vec<String>>,
}

/// A module's name as the kernel knows it: file stem with `-` as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModulesDep {
    /// Parses lines of `kernel/path/mod.ko: kernel/dep1.ko kernel/dep2.ko`.
    pub fn parse(text: &str) -> ModulesDep {
        let mut dep = ModulesDep::default();
        for line in text.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            dep.by_name.insert(module_name(path), path.to_string());
            let deps = deps.split_whitespace().map(str::to_string).collect();
            dep.deps.insert(path.to_string(), deps);
        }
        dep
    }

    /// Files to load, dependencies first, each once. `builtin` names modules compiled
    /// into the kernel (from `modules.builtin`), which need no file; a wanted module
    /// that is neither is an error naming it.
    pub fn load_order(&self, wanted: &[&str], builtin: &[String]) -> Result<Vec<String>, String> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for name in wanted {
            let name = name.replace('-', "_");
            match self.by_name.get(&name) {
                Some(path) => self.visit(path, &mut seen, &mut order),
                None if builtin.contains(&name) => {}
                None => return Err(format!("module `{name}` is not in modules.dep")),
            }
        }
        Ok(order)
    }

    fn visit(&self, path: &str, seen: &mut HashSet<String>, order: &mut Vec<String>) {
        if !seen.insert(path.to_string()) {
            return;
        }
        for dep in self.deps.get(path).into_iter().flatten() {
            self.visit(dep, seen, order);
        }
        order.push(path.to_string());
    }
}

/// Names in `modules.builtin` (one `kernel/path/mod.ko` a line).
pub fn builtin_names(text: &str) -> Vec<String> {
    text.lines().filter(|l| !l.is_empty()).map(module_name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/char/virtio-console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
";

    fn position(order: &[String], name: &str) -> usize {
        order
            .iter()
            .position(|p| module_name(p) == name)
            .unwrap_or_else(|| panic!("{name} missing from {order:?}"))
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let dep = ModulesDep::parse(DEP);
        let order = dep.load_order(&["9pnet_virtio", "9p"], &[]).unwrap();
        assert_eq!(order.len(), 7);
        assert!(position(&order, "virtio_ring") < position(&order, "virtio"));
        assert!(position(&order, "virtio") < position(&order, "9pnet_virtio"));
        assert!(position(&order, "netfs") < position(&order, "fscache"));
        assert!(position(&order, "fscache") < position(&order, "9p"));
        assert!(position(&order, "9pnet") < position(&order, "9p"));
    }

    #[test]
    fn dashes_and_underscores_name_the_same_module() {
        let dep = ModulesDep::parse(DEP);
        let order = dep.load_order(&["virtio_console"], &[]).unwrap();
        assert_eq!(order.last().unwrap(), "kernel/drivers/char/virtio-console.ko");
    }

    #[test]
    fn builtin_modules_need_no_file_and_unknown_ones_fail() {
        let dep = ModulesDep::parse(DEP);
        let builtin = builtin_names("kernel/drivers/char/tpm/tpm_crb.ko\n");
        assert_eq!(dep.load_order(&["tpm_crb"], &builtin).unwrap(), Vec::<String>::new());
        let err = dep.load_order(&["nosuch"], &builtin).unwrap_err();
        assert!(err.contains("nosuch"));
    }
}
