//! `scsae extract --shard I/N` + `scsae merge`: the merged store equals the unsharded run byte for
//! byte (every file, per-token parts included) for 1, 3 and 7 shards of the bundled data; shards
//! that do not belong together are refused with one line naming the shard, and nothing is written.

use std::path::{Path, PathBuf};

use super::pipeline_cli::scsae;
use crate::common::root;

const DATA: &str = "data/immune1000.h5ad";
const MODEL: &str = "tests/fixtures/scgpt/tiny";

fn extract(out: &Path, data: &str, shard: Option<&str>) {
    let mut args = vec![
        "extract",
        "--model",
        MODEL,
        "--data",
        data,
        "--tokens",
        "--max-tokens",
        "5000",
        "--part-cells",
        "64",
        "--threads",
        "1",
        "--out",
    ];
    let o = out.to_str().unwrap();
    args.push(o);
    if let Some(s) = shard {
        args.extend(["--shard", s]);
    }
    let r = scsae(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

fn merge(shards: &[PathBuf], out: &Path) -> std::process::Output {
    let mut args: Vec<&str> = vec!["merge"];
    args.extend(shards.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    scsae(&args)
}

fn fails_naming(out: std::process::Output, name: &Path, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(name.to_str().unwrap()) && err.contains(want),
        "{err}"
    );
}

#[test]
fn merged_shards_equal_the_unsharded_run_and_foreign_shards_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    extract(&whole, DATA, None);
    let reference = crate::common::tree_bytes(&whole);
    assert!(reference.len() > 30, "expected many parts");
    let mut three = Vec::new();
    for n in [1usize, 3, 7] {
        let shards: Vec<PathBuf> = (0..n)
            .map(|i| {
                let p = dir.path().join(format!("s{n}_{i}"));
                extract(&p, DATA, Some(&format!("{i}/{n}")));
                p
            })
            .collect();
        // given in reverse order: merge sorts by shard index
        let rev: Vec<PathBuf> = shards.iter().rev().cloned().collect();
        let out = dir.path().join(format!("merged{n}"));
        let r = merge(&rev, &out);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_eq!(
            crate::common::tree_bytes(&out),
            reference,
            "{n} shards merged differ from the unsharded run"
        );
        if n == 3 {
            three = shards;
        }
    }
    // a shard store is not a store until merged
    let err = scsae::activations::ActivationStore::open(&three[0]).unwrap_err();
    assert!(err.to_string().contains("scsae merge"), "{err}");
    let before = crate::common::tree_bytes(dir.path());
    let target = dir.path().join("bad");
    // a missing shard
    fails_naming(
        merge(&three[..2], &target),
        &three[0],
        "shard 2 of 3 is missing",
    );
    // the same shard twice
    let twice = vec![three[0].clone(), three[1].clone(), three[1].clone()];
    fails_naming(merge(&twice, &target), &three[1], "again");
    // a shard of another data set (same cells, other file)
    let other = dir.path().join("other.h5ad");
    let mut bytes = std::fs::read(root().join(DATA)).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(&other, bytes).unwrap();
    let foreign = dir.path().join("foreign");
    extract(&foreign, other.to_str().unwrap(), Some("1/3"));
    let before = {
        let mut b = before;
        b.extend(
            crate::common::tree_bytes(&foreign)
                .into_iter()
                .map(|(k, v)| (format!("foreign/{k}"), v)),
        );
        b.insert("other.h5ad".to_string(), std::fs::read(&other).unwrap());
        b
    };
    let mixed = vec![three[0].clone(), foreign.clone(), three[2].clone()];
    fails_naming(merge(&mixed, &target), &foreign, "data differ");
    // not a shard at all
    fails_naming(
        merge(&[dir.path().join("whole")], &target),
        &dir.path().join("whole"),
        "is not a shard",
    );
    // into an existing folder
    fails_naming(merge(&three, &whole), &whole, "already exists");
    assert!(!target.exists());
    assert_eq!(
        crate::common::tree_bytes(dir.path()),
        before,
        "a refused merge wrote something"
    );
}
