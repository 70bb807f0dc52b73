//! Files that hold secrets: created with mode 0600 before any byte is written.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `contents` to a new file at `path` readable only by its owner. Fails if the file
/// exists, so a secret is never silently replaced.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
