//! The image cache across builders, in a cache directory of its own (this file is its
//! own test process because it sets `BOOTPROOF_CACHE`): a build left unfinished is
//! rebuilt, never used, and two builders of one image at once make one build.

use std::path::Path;
use std::sync::{Arc, Barrier};

use bootproof::images;

/// Points the cache at a fresh directory, reusing the packages the user's cache
/// already has (hard links) so that the test does not download them again.
fn private_cache() -> tempfile::TempDir {
    let user_debs = bootproof::cache::cache_dir().join("debs");
    let cache = tempfile::tempdir().unwrap();
    let debs = cache.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    for entry in std::fs::read_dir(&user_debs).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "deb") {
            let _ = std::fs::hard_link(&path, debs.join(entry.file_name()));
        }
    }
    // SAFETY: this is the only test in this binary, and no other thread runs yet.
    unsafe { std::env::set_var("BOOTPROOF_CACHE", cache.path()) };
    cache
}

fn build_counting_steps(name: &str) -> (images::BuiltImage, usize) {
    let mut steps = 0;
    let image = images::build(name, false, &mut |_| steps += 1).unwrap_or_else(|e| panic!("{e}"));
    (image, steps)
}

#[test]
fn unfinished_builds_are_rebuilt_and_concurrent_builders_share_one_build() {
    let cache = private_cache();

    // A build whose final rename never happened: same contents, temporary name.
    let (first, steps) = build_counting_steps("tiny");
    assert_eq!(steps, 7);
    let done = first.path.parent().unwrap();
    let hash = done.file_name().unwrap().to_string_lossy().replace("tiny-", "");
    let unfinished = done.with_file_name(format!(".tmp-tiny-{hash}-1"));
    std::fs::rename(done, &unfinished).unwrap();
    let (again, steps) = build_counting_steps("tiny");
    assert_eq!(steps, 7, "the unfinished build was taken as cached");
    assert_eq!(again.path, first.path);
    assert!(!unfinished.exists(), "the leftover was not cleaned up");

    // Two builders at once: one builds, the other waits on the lock and finds it.
    let barrier = Arc::new(Barrier::new(2));
    let builders: Vec<_> = (0..2)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                build_counting_steps("tiny-iso")
            })
        })
        .collect();
    let results: Vec<_> = builders.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results[0].0.path, results[1].0.path);
    let mut steps: Vec<usize> = results.iter().map(|r| r.1).collect();
    steps.sort();
    assert_eq!(steps, [0, 7], "exactly one of them builds");
    assert!(results[0].0.path.is_file());
    assert_only_complete_builds(&cache.path().join("images"));
}

fn assert_only_complete_builds(images: &Path) {
    for entry in std::fs::read_dir(images).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp-"), "leftover {name}");
    }
}
