//! Client credentials the load runs with: one app per tenant, read from and written to a
//! fixture file of JSON lines (`{"tenant","client_id","client_secret","audience"}`), the same
//! shape as the server's `admin-credentials.json`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The credentials of one app and the API it asks tokens for.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credential {
    /// The tenant that owns the app.
    pub tenant: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The API the tokens are for.
    pub audience: String,
}

/// Reads a single JSON document of this shape, e.g. `admin-credentials.json`.
pub fn read_credential(path: &Path) -> anyhow::Result<Credential> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a credentials document", path.display()))
}

/// Reads at most `limit` credentials (all when `None`) from a fixture file.
pub fn read_fixture(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Credential>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut credentials = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        if limit.is_some_and(|limit| credentials.len() >= limit) {
            break;
        }
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let credential = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a credential", path.display(), number + 1))?;
        credentials.push(credential);
    }
    if let Some(limit) = limit
        && credentials.len() < limit
    {
        bail!(
            "{} holds {} credentials, fewer than the {limit} asked for",
            path.display(),
            credentials.len()
        );
    }
    if credentials.is_empty() {
        bail!("{} holds no credentials", path.display());
    }
    Ok(credentials)
}

/// Writes `credentials` as a new fixture file readable only by its owner (it holds secrets).
/// Fails if the file exists.
pub fn write_fixture(path: &Path, credentials: &[Credential]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    for credential in credentials {
        serde_json::to_writer(&mut writer, credential)?;
        writer.write_all(b"\n")?;
    }
    writer
        .into_inner()
        .map_err(|error| error.into_error())
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
