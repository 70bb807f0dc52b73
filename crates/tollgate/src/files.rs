//! Files that hold secrets: created with mode 0600 before any byte is written, in a data dir
//! only its owner can enter (0700, tightened at every start).

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

/// The mode of the data dir: owner only.
#[cfg(unix)]
const DATA_DIR_MODE: u32 = 0o700;

/// The mode of the secret files Tollgate writes into the data dir.
#[cfg(unix)]
const PRIVATE_FILE_MODE: u32 = 0o600;

/// The files `serve` writes into the data dir that hold secrets (the SQLite files are the
/// store's to protect, wherever they are).
const SECRET_FILES: [&str; 2] = ["master.key", crate::server::ADMIN_CREDENTIALS_FILE];

/// Creates the data dir with mode 0700 (and any missing parents), or tightens an existing
/// one to 0700, and the secret files in it to 0600. Every change to an existing mode is
/// logged.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;

        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DATA_DIR_MODE)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        tighten(dir, DATA_DIR_MODE)?;
        for name in SECRET_FILES {
            let path = dir.join(name);
            if path.exists() {
                tighten(&path, PRIVATE_FILE_MODE)?;
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
    }
}

/// Removes every permission bit of `path` outside `mode`, logging a change.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;

    let current = std::fs::metadata(path)
        .with_context(|| format!("cannot read the mode of {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if current & !mode != 0 {
        let tightened = current & mode;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(tightened))
            .with_context(|| format!("cannot restrict the mode of {}", path.display()))?;
        tracing::warn!(
            path = %path.display(),
            from = format!("{current:o}"),
            to = format!("{tightened:o}"),
            "tightened the permissions of a data-dir entry that others could reach"
        );
    }
    Ok(())
}
