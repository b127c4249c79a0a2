//! The checks that read the real-log corpus (`../shared/corpus` beside the checkout, or
//! the folder named by `BOOTPROOF_CORPUS`), one libtest-mimic trial each.
//!
//! Owns: turning where the corpus is ([`finder`]) into trials that run, fail or are
//! ignored, and the checks themselves, one module per log family. Must not: copy the
//! corpus into the repository, or test what a fixture can show: each parser's own
//! tests, on small fixtures written in its format, are unit tests in `src/logs/` and
//! run in any clone.
//!
//! - Corpus found: every check runs on it.
//! - `BOOTPROOF_CORPUS` set to a folder that is not there: every check fails, naming it;
//!   a file missing from the corpus fails its check, naming the file.
//! - Neither (a plain clone): every check is reported as ignored, and the binary says
//!   once, on stderr, how to run them. Forced with `--ignored` or `--include-ignored`,
//!   they fail with the same directions. No check ever passes without having read the
//!   corpus.
//!
//! A check is a function of the [`Corpus`] that panics on failure, like a `#[test]`;
//! each module lists its checks with [`checks!`].

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};

/// The checks of a module, named after their functions.
macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        vec![$((stringify!($check), $check as fn(&$crate::Corpus))),*]
    };
}

mod anaconda;
mod finder;
mod inspect;
mod journal;
mod kernel;
mod port;
mod stream;
mod tools;

use finder::Location;

/// The corpus folder, for the checks.
pub struct Corpus {
    dir: PathBuf,
}

impl Corpus {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the corpus, by its path inside the corpus; panics naming the file when
    /// it is not there.
    pub fn file(&self, relative: &str) -> PathBuf {
        self.existing(relative).unwrap_or_else(|why| panic!("{why}"))
    }

    fn existing(&self, relative: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(relative);
        if path.is_file() { Ok(path) } else { Err(format!("corpus file missing: {}", path.display())) }
    }

    pub fn read(&self, relative: &str) -> Vec<u8> {
        let path = self.file(relative);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// One check: its name and what it runs.
pub type Check = (&'static str, fn(&Corpus));

/// What becomes of the corpus checks, given where the corpus is.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Run(PathBuf),
    /// Reported as ignored; run anyway (`--ignored`), they fail with the reason.
    Ignore(String),
    Fail(String),
}

fn plan(location: &Location) -> Plan {
    match (location, location.dir()) {
        (_, Ok(dir)) => Plan::Run(dir),
        (Location::Absent(_), Err(why)) => Plan::Ignore(why),
        (_, Err(why)) => Plan::Fail(why),
    }
}

fn corpus_trial(name: String, check: fn(&Corpus), plan: &Plan) -> Trial {
    match plan {
        Plan::Run(dir) => {
            let corpus = Corpus { dir: dir.clone() };
            Trial::test(name, move || {
                check(&corpus);
                Ok(())
            })
        }
        Plan::Ignore(why) => {
            let why = why.clone();
            Trial::test(name, move || Err(Failed::from(why))).with_ignored_flag(true)
        }
        Plan::Fail(why) => {
            let why = why.clone();
            Trial::test(name, move || Err(Failed::from(why)))
        }
    }
}

fn main() {
    let args = Arguments::from_args();
    let location = finder::locate();
    let plan = plan(&location);
    let groups: [(&str, Vec<Check>); 6] = [
        ("anaconda", anaconda::checks()),
        ("stream", stream::checks()),
        ("journal", journal::checks()),
        ("kernel", kernel::checks()),
        ("tools", tools::checks()),
        ("inspect", inspect::checks()),
    ];
    let mut trials = harness_trials();
    for (group, checks) in groups {
        for (name, check) in checks {
            trials.push(corpus_trial(format!("{group}::{name}"), check, &plan));
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    if let Plan::Ignore(why) = &plan
        && conclusion.num_ignored > 0
    {
        eprintln!("\nnote: {} corpus trials were ignored, not run: {why}\n", conclusion.num_ignored);
    }
    conclusion.exit();
}

/// The harness's own tests: they need no corpus and always run.
fn harness_trials() -> Vec<Trial> {
    let own: [(&str, fn()); 5] = [
        ("unset_and_absent_is_ignored_with_directions", unset_and_absent_is_ignored_with_directions),
        ("unset_finds_the_shared_corpus_beside_the_crate", unset_finds_the_shared_corpus_beside_the_crate),
        ("set_to_a_folder_runs_on_it", set_to_a_folder_runs_on_it),
        ("set_to_nothing_that_exists_fails_naming_it", set_to_nothing_that_exists_fails_naming_it),
        ("a_missing_file_fails_naming_it", a_missing_file_fails_naming_it),
    ];
    own.into_iter()
        .map(|(name, test)| {
            Trial::test(format!("harness::{name}"), move || {
                test();
                Ok(())
            })
        })
        .collect()
}

/// A crate folder inside a temporary folder, with `shared/corpus` beside it or not.
fn layout(with_shared_corpus: bool) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let crate_dir = root.path().join("checkout");
    std::fs::create_dir(&crate_dir).unwrap();
    if with_shared_corpus {
        std::fs::create_dir_all(root.path().join("shared/corpus")).unwrap();
    }
    (root, crate_dir)
}

fn unset_and_absent_is_ignored_with_directions() {
    let (_root, crate_dir) = layout(false);
    let location = finder::locate_from(None, &crate_dir);
    assert_eq!(location, Location::Absent(crate_dir.join("../shared/corpus")));
    let Plan::Ignore(why) = plan(&location) else { panic!("{location:?} is not ignored") };
    assert!(why.contains("BOOTPROOF_CORPUS=/path/to/corpus cargo test --test corpus"), "{why}");
    assert!(why.contains("../shared/corpus"), "{why}");
    let trial = corpus_trial("x".into(), |_| panic!("must not run"), &Plan::Ignore(why));
    assert!(trial.has_ignored_flag());
}

fn unset_finds_the_shared_corpus_beside_the_crate() {
    let (_root, crate_dir) = layout(true);
    let location = finder::locate_from(None, &crate_dir);
    assert_eq!(plan(&location), Plan::Run(crate_dir.join("../shared/corpus")));
}

fn set_to_a_folder_runs_on_it() {
    let (root, crate_dir) = layout(true);
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    // The variable wins over the default place, and a relative one starts at the crate.
    let absolute = finder::locate_from(Some(elsewhere.clone().into()), &crate_dir);
    assert_eq!(plan(&absolute), Plan::Run(elsewhere));
    let relative = finder::locate_from(Some("../elsewhere".into()), &crate_dir);
    assert_eq!(plan(&relative), Plan::Run(crate_dir.join("../elsewhere")));
    let trial = corpus_trial("x".into(), |_| {}, &plan(&relative));
    assert!(!trial.has_ignored_flag());
}

fn set_to_nothing_that_exists_fails_naming_it() {
    let (root, crate_dir) = layout(true);
    let gone = root.path().join("no-corpus-here");
    let location = finder::locate_from(Some(gone.clone().into()), &crate_dir);
    assert_eq!(location, Location::Missing(gone.clone()));
    let Plan::Fail(why) = plan(&location) else { panic!("{location:?} does not fail") };
    assert!(why.contains(&format!("BOOTPROOF_CORPUS={}", gone.display())), "{why}");
    let empty = finder::locate_from(Some("".into()), &crate_dir);
    assert!(matches!(plan(&empty), Plan::Fail(_)), "{empty:?}");
    let trial = corpus_trial("x".into(), |_| panic!("must not run"), &Plan::Fail(why));
    assert!(!trial.has_ignored_flag());
}

fn a_missing_file_fails_naming_it() {
    let (root, _) = layout(true);
    let corpus = Corpus { dir: root.path().join("shared/corpus") };
    std::fs::create_dir(corpus.dir().join("kernel")).unwrap();
    std::fs::write(corpus.dir().join("kernel/dmesg"), "[    0.000000] Linux version 6.1.0\n").unwrap();
    assert_eq!(corpus.existing("kernel/dmesg"), Ok(corpus.dir().join("kernel/dmesg")));
    let why = corpus.existing("kernel/no-such-dmesg").unwrap_err();
    assert_eq!(why, format!("corpus file missing: {}", corpus.dir().join("kernel/no-such-dmesg").display()));
    // A folder of that name is no file either.
    assert!(corpus.existing("kernel").is_err());
}
