//! SHA-256 of an input (a file, or every file of a folder such as a 10x directory), recorded by
//! sharded extractions so that shards of different data never merge.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};

/// Hex SHA-256 of the file at `path`, or of a folder's regular files (names and contents, sorted by
/// name, not recursive).
pub fn sha256_path(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    if path.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .at(path)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            h.update(name.to_string_lossy().as_bytes());
            h.update([0u8]);
            hash_file(&path.join(&name), &mut h)?;
        }
    } else {
        hash_file(path, &mut h)?;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn hash_file(path: &Path, h: &mut Sha256) -> Result<()> {
    let mut f = std::fs::File::open(path).at(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = f.read(&mut buf).at(path)?;
        if k == 0 {
            return Ok(());
        }
        h.update(&buf[..k]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_sha256_of_abc() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        // FIPS 180-2 test vector
        assert_eq!(
            super::sha256_path(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
