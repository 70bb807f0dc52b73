//! `cargo xtask tidy`: the rules of the tree that neither rustc nor clippy check, read from the
//! files themselves (and run by `cargo xtask ci` before clippy).
//!
//! - **Module docs.** Every `.rs` file under `crates/`, `xtask/` and `migrations/` (sources,
//!   tests, benches, examples and build scripts; `target/` and hidden directories skipped, so
//!   generated bindings are not read) begins with a `//!` line on its first line: no blank
//!   line, attribute or plain comment before it, which is what every file does.
//! - **Crate dependencies.** The arrows between workspace crates in their `Cargo.toml` files
//!   (read with `cargo metadata`) equal the table in ARCHITECTURE.md's section
//!   [`SECTION`]: one line `crate → a, b` per workspace crate for `[dependencies]` and
//!   `[build-dependencies]` (optional ones included), and one line `crate (dev) → c` for the
//!   crates only its `[dev-dependencies]` add. A new arrow fails until the table has it; an
//!   arrow the table has and no `Cargo.toml` does fails too, so the table stays true. Each
//!   failure prints the line to paste.
//! - **One crypto owner.** No crate but [`RING_OWNER`] depends on `ring` directly (any kind of
//!   dependency), except the crates the same section lists as `` - `crate` uses ring: why ``.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The heading of ARCHITECTURE.md's section that holds the dependency table.
pub const SECTION: &str = "## Crate dependencies (checked by `cargo xtask tidy`)";

/// How messages name [`SECTION`].
const IN_SECTION: &str = "ARCHITECTURE.md's \"Crate dependencies\" section";

/// The one crate meant to use `ring`.
pub const RING_OWNER: &str = "tollgate-keys";

/// The directories whose `.rs` files must open with `//!`.
const SOURCE_ROOTS: [&str; 3] = ["crates", "xtask", "migrations"];

/// The arrow between a crate and its dependencies in the table.
const ARROW: &str = " → ";

/// What the table writes for a crate without arrows.
const NONE: &str = "(none)";

/// The suffix that marks a crate's dev-dependency line.
const DEV: &str = " (dev)";

/// `cargo xtask tidy`: runs every check and lists every problem before failing.
pub fn tidy() -> anyhow::Result<()> {
    let root = workspace_root()?;
    let mut problems = module_doc_problems(&root)?;

    let architecture_path = root.join("ARCHITECTURE.md");
    let architecture = std::fs::read_to_string(&architecture_path)
        .with_context(|| format!("cannot read {}", architecture_path.display()))?;
    let metadata = cargo_metadata(&root)?;
    let workspace = workspace_crates(&metadata, &root)?;
    match parse_table(&architecture) {
        Ok(table) => problems.extend(table_problems(&workspace, &table)),
        Err(error) => problems.push(format!(
            "ARCHITECTURE.md: {error:#}\nthe arrow lines for the tree as it is:\n{}",
            whole_table(&workspace)
        )),
    }

    if problems.is_empty() {
        eprintln!(
            "tidy: ok ({} crates, their dependency table and module docs)",
            workspace.len()
        );
        return Ok(());
    }
    for problem in &problems {
        eprintln!("tidy: {problem}\n");
    }
    bail!("tidy found {} problem(s)", problems.len())
}

/// The workspace root: xtask's own folder's parent.
fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent folder")
}

/// `cargo metadata --no-deps` of the workspace at `root`, parsed.
fn cargo_metadata(root: &Path) -> anyhow::Result<serde_json::Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {cargo} metadata"))?;
    if !output.status.success() {
        bail!("cargo metadata failed with {}", output.status);
    }
    serde_json::from_slice(&output.stdout).context("cargo metadata printed invalid JSON")
}

// ---------------------------------------------------------------------------------------
// Module docs

/// Every `.rs` file under [`SOURCE_ROOTS`] that does not open with `//!`, as a problem.
fn module_doc_problems(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for folder in SOURCE_ROOTS {
        rust_files(&root.join(folder), &mut files)?;
    }
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if !has_module_doc(&text) {
            let shown = file.strip_prefix(root).unwrap_or(&file).display();
            problems.push(format!(
                "{shown} does not open with a `//!` comment: make its first line a `//!` \
                 saying what the file owns (before any attribute or `use`)"
            ));
        }
    }
    Ok(problems)
}

/// Adds the `.rs` files under `folder` to `files`, skipping `target` and hidden folders.
fn rust_files(folder: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(folder).with_context(|| format!("cannot list {}", folder.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", folder.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, files)?;
            }
        } else if kind.is_file() && name.ends_with(".rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// Whether a file's first line is a `//!` comment.
fn has_module_doc(text: &str) -> bool {
    text.starts_with("//!")
}

// ---------------------------------------------------------------------------------------
// Crate dependencies, as Cargo.toml states them

/// One workspace crate's dependencies, as its `Cargo.toml` states them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct CrateDeps {
    /// Its `Cargo.toml`, relative to the workspace root.
    manifest: String,
    /// Workspace crates in `[dependencies]` and `[build-dependencies]` (optional ones too).
    arrows: BTreeSet<String>,
    /// Workspace crates only its `[dev-dependencies]` add (not itself, not in `arrows`).
    dev_arrows: BTreeSet<String>,
    /// Whether it names `ring` in any dependency table.
    uses_ring: bool,
}

/// The workspace's crates by package name, read from `cargo metadata --no-deps` (whose
/// `packages` are exactly the workspace members).
fn workspace_crates(
    metadata: &serde_json::Value,
    root: &Path,
) -> anyhow::Result<BTreeMap<String, CrateDeps>> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    let mut names = BTreeSet::new();
    for package in packages {
        names.insert(
            package["name"]
                .as_str()
                .context("a package without a name")?,
        );
    }
    let mut crates = BTreeMap::new();
    for package in packages {
        let name = package["name"]
            .as_str()
            .context("a package without a name")?;
        let manifest = package["manifest_path"].as_str().unwrap_or_default();
        let manifest = Path::new(manifest)
            .strip_prefix(root)
            .map(|relative| relative.display().to_string())
            .unwrap_or_else(|_| manifest.to_owned());
        let mut deps = CrateDeps {
            manifest,
            ..CrateDeps::default()
        };
        let mut dev = BTreeSet::new();
        let dependencies = package["dependencies"]
            .as_array()
            .with_context(|| format!("{name} has no dependency list"))?;
        for dependency in dependencies {
            // `name` is the package's name even when the dependency is renamed.
            let target = dependency["name"]
                .as_str()
                .with_context(|| format!("a dependency of {name} without a name"))?;
            if target == "ring" {
                deps.uses_ring = true;
            }
            if target == name || !names.contains(target) {
                continue;
            }
            // `kind` is null for `[dependencies]`, "build" or "dev" otherwise.
            if dependency["kind"].as_str() == Some("dev") {
                dev.insert(target.to_owned());
            } else {
                deps.arrows.insert(target.to_owned());
            }
        }
        deps.dev_arrows = dev.difference(&deps.arrows).cloned().collect();
        crates.insert(name.to_owned(), deps);
    }
    Ok(crates)
}

// ---------------------------------------------------------------------------------------
// The table in ARCHITECTURE.md

/// What ARCHITECTURE.md's [`SECTION`] says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// `crate → a, b` lines.
    arrows: BTreeMap<String, BTreeSet<String>>,
    /// `crate (dev) → c` lines.
    dev_arrows: BTreeMap<String, BTreeSet<String>>,
    /// `` - `crate` uses ring: why `` lines: crate → why.
    ring_users: BTreeMap<String, String>,
}

/// Reads [`SECTION`] of ARCHITECTURE.md: its arrow lines (inside fenced code blocks) and its
/// `` - `crate` uses ring: why `` items. Fails on a line in a code block that is not an arrow
/// line, a crate listed twice, or a ring user without a reason.
fn parse_table(architecture: &str) -> anyhow::Result<Table> {
    let mut lines = architecture
        .lines()
        .skip_while(|line| line.trim() != SECTION);
    if lines.next().is_none() {
        bail!("no section `{SECTION}`: add it, with the lines below");
    }
    let mut table = Table::default();
    let mut in_code = false;
    for line in lines.take_while(|line| !line.starts_with("## ")) {
        let line = line.trim();
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            if !line.is_empty() {
                parse_arrow_line(line, &mut table)?;
            }
        } else if let Some(item) = line.strip_prefix("- `")
            && let Some((name, rest)) = item.split_once('`')
            && let Some(reason) = rest.trim_start().strip_prefix("uses ring:")
        {
            let reason = reason.trim();
            if reason.is_empty() {
                bail!("`{name}` uses ring without a reason: say why after `uses ring:`");
            }
            if table
                .ring_users
                .insert(name.to_owned(), reason.to_owned())
                .is_some()
            {
                bail!("`{name}` is listed twice as a ring user");
            }
        }
    }
    if in_code {
        bail!("a code block in section `{SECTION}` is not closed");
    }
    Ok(table)
}

/// Reads one `crate → a, b`, `crate → (none)` or `crate (dev) → c` line into `table`.
fn parse_arrow_line(line: &str, table: &mut Table) -> anyhow::Result<()> {
    let Some((from, to)) = line.split_once(ARROW) else {
        bail!("`{line}` in section `{SECTION}` is not `crate → a, b` (or `crate → {NONE}`)");
    };
    let (from, lines) = match from.trim().strip_suffix(DEV) {
        Some(from) => (from.trim(), &mut table.dev_arrows),
        None => (from.trim(), &mut table.arrows),
    };
    if from.is_empty() || from.contains(char::is_whitespace) {
        bail!("`{line}` does not start with a crate name");
    }
    let to = to.trim();
    let mut targets = BTreeSet::new();
    if to != NONE {
        for target in to.split(',').map(str::trim) {
            if target.is_empty() || target.contains(char::is_whitespace) {
                bail!("`{line}`: `{target}` is not a crate name (separate names with commas)");
            }
            if !targets.insert(target.to_owned()) {
                bail!("`{line}` names {target} twice");
            }
        }
    }
    if lines.insert(from.to_owned(), targets).is_some() {
        bail!("`{from}` has two lines of the same kind; keep one");
    }
    Ok(())
}

/// The table line that states `arrows` of `name` (`dev` for its dev-dependency line).
fn table_line(name: &str, arrows: &BTreeSet<String>, dev: bool) -> String {
    let suffix = if dev { DEV } else { "" };
    let targets = if arrows.is_empty() {
        NONE.to_owned()
    } else {
        arrows.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    format!("{name}{suffix}{ARROW}{targets}")
}

/// Every difference between the workspace and the table, each naming the crate, its
/// `Cargo.toml` and the fix.
fn table_problems(workspace: &BTreeMap<String, CrateDeps>, table: &Table) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, deps) in workspace {
        // Every crate has a plain line, even without arrows: a new crate is a design change.
        arrow_problem(
            name,
            deps,
            &deps.arrows,
            table.arrows.get(name),
            false,
            &mut problems,
        );
        // A dev line only when dev-dependencies add something.
        if !deps.dev_arrows.is_empty() || table.dev_arrows.contains_key(name) {
            arrow_problem(
                name,
                deps,
                &deps.dev_arrows,
                table.dev_arrows.get(name),
                true,
                &mut problems,
            );
        }
    }
    for (kind, lines) in [("", &table.arrows), (DEV, &table.dev_arrows)] {
        for name in lines.keys().filter(|name| !workspace.contains_key(*name)) {
            problems.push(format!(
                "ARCHITECTURE.md lists `{name}{kind} → …`, but no workspace crate is named \
                 {name}: remove the line from {IN_SECTION}"
            ));
        }
    }

    for (name, deps) in workspace {
        let listed = table.ring_users.contains_key(name);
        if name == RING_OWNER {
            if listed {
                problems.push(format!(
                    "ARCHITECTURE.md lists {name} as a ring user: it owns ring, remove the item"
                ));
            }
        } else if deps.uses_ring && !listed {
            problems.push(format!(
                "{} makes {name} depend on ring directly, and only {RING_OWNER} may: use \
                 {RING_OWNER} instead, or, if {name} must have ring itself, add this item to \
                 {IN_SECTION}:\n    - `{name}` uses ring: <why>",
                deps.manifest
            ));
        } else if !deps.uses_ring && listed {
            problems.push(format!(
                "ARCHITECTURE.md lists {name} as a ring user, but {} has no ring dependency: \
                 remove the item `- `{name}` uses ring: …`",
                deps.manifest
            ));
        }
    }
    for name in table
        .ring_users
        .keys()
        .filter(|name| !workspace.contains_key(*name))
    {
        problems.push(format!(
            "ARCHITECTURE.md lists {name} as a ring user, but no workspace crate is named \
             {name}: remove the item"
        ));
    }
    problems
}

/// Compares one line of the table with `actual`, pushing a problem that names the new and
/// the gone arrows and gives the line to paste.
fn arrow_problem(
    name: &str,
    deps: &CrateDeps,
    actual: &BTreeSet<String>,
    listed: Option<&BTreeSet<String>>,
    dev: bool,
    problems: &mut Vec<String>,
) {
    let line = table_line(name, actual, dev);
    let kind = if dev {
        "dev-dependencies"
    } else {
        "dependencies"
    };
    let Some(listed) = listed else {
        problems.push(format!(
            "ARCHITECTURE.md has no line for the {kind} of {name} ({}): a new crate or arrow \
             is a design change; add this line to the table in {IN_SECTION}:\n    {line}",
            deps.manifest
        ));
        return;
    };
    if listed == actual {
        return;
    }
    let mut message = format!(
        "the {kind} of {name} in {} differ from ARCHITECTURE.md's table:",
        deps.manifest
    );
    for new in actual.difference(listed) {
        let _ = write!(message, "\n    new arrow {name} → {new} (not in the table)");
    }
    for gone in listed.difference(actual) {
        let _ = write!(
            message,
            "\n    gone arrow {name} → {gone} (no Cargo.toml has it)"
        );
    }
    if actual.is_empty() && dev {
        let _ = write!(
            message,
            "\nremove its line `{}` from {IN_SECTION}",
            table_line(name, listed, dev)
        );
    } else {
        let _ = write!(
            message,
            "\nif the change is meant (a new arrow is a design change), replace its line in \
             {IN_SECTION} with:\n    {line}"
        );
    }
    problems.push(message);
}

/// The whole table for the workspace as it is, in the order the section lists it (for
/// writing the section; `cargo xtask tidy --print-table`).
fn whole_table(workspace: &BTreeMap<String, CrateDeps>) -> String {
    let mut text = String::new();
    for (name, deps) in workspace {
        text.push_str(&table_line(name, &deps.arrows, false));
        text.push('\n');
        if !deps.dev_arrows.is_empty() {
            text.push_str(&table_line(name, &deps.dev_arrows, true));
            text.push('\n');
        }
    }
    text
}

/// `cargo xtask tidy --print-table`: prints the arrow lines for the tree as it is.
pub fn print_table() -> anyhow::Result<()> {
    let root = workspace_root()?;
    let workspace = workspace_crates(&cargo_metadata(&root)?, &root)?;
    print!("{}", whole_table(&workspace));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_docs() {
        let check = |text: &str, expected: bool| {
            assert_eq!(has_module_doc(text), expected, "{text:?}");
        };
        check("//! What this file owns.\n\nuse std::fmt;\n", true);
        check("//!\n", true);
        check("use std::fmt;\n", false);
        check("", false);
        check("\n//! A blank line first.\n", false);
        check("#![allow(dead_code)]\n//! An attribute first.\n", false);
        check("// A plain comment.\n", false);
        check("/// An item doc.\nfn f() {}\n", false);
        check(" //! Indented.\n", false);
    }

    /// A workspace of `(crate, arrows, dev arrows, uses ring)`.
    fn workspace(crates: &[(&str, &[&str], &[&str], bool)]) -> BTreeMap<String, CrateDeps> {
        crates
            .iter()
            .map(|(name, arrows, dev, ring)| {
                let set = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
                let deps = CrateDeps {
                    manifest: format!("crates/{name}/Cargo.toml"),
                    arrows: set(arrows),
                    dev_arrows: set(dev),
                    uses_ring: *ring,
                };
                ((*name).to_owned(), deps)
            })
            .collect()
    }

    fn section(body: &str) -> String {
        format!(
            "# Architecture\n\nIntro.\n\n{SECTION}\n\nProse.\n\n{body}\n## Invariants\n\n```\nnot → read\n```\n"
        )
    }

    /// The problems of `body` as the section's content against `crates`.
    fn problems(crates: &[(&str, &[&str], &[&str], bool)], body: &str) -> Vec<String> {
        let table = parse_table(&section(body)).unwrap_or_else(|error| panic!("{error:#}"));
        table_problems(&workspace(crates), &table)
    }

    const CRATES: &[(&str, &[&str], &[&str], bool)] = &[
        ("domain", &[], &[], false),
        ("tollgate-keys", &["domain"], &[], true),
        ("issuer", &["domain", "tollgate-keys"], &["testkit"], false),
        ("testkit", &["issuer"], &[], false),
        ("client", &["domain"], &[], true),
    ];

    const TABLE: &str = "```text
domain → (none)
tollgate-keys → domain
issuer → tollgate-keys, domain
issuer (dev) → testkit
testkit → issuer
client → domain
```

Ring users besides tollgate-keys:

- `client` uses ring: jitter only.
";

    #[test]
    fn a_true_table_passes() {
        assert_eq!(problems(CRATES, TABLE), Vec::<String>::new());
    }

    #[test]
    fn a_new_arrow_fails_and_prints_the_line_to_paste() {
        let table = TABLE.replace("issuer → tollgate-keys, domain", "issuer → domain");
        let problems = problems(CRATES, &table);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(
            problems[0],
            format!(
                "the dependencies of issuer in crates/issuer/Cargo.toml differ from \
                 ARCHITECTURE.md's table:\n    new arrow issuer → tollgate-keys (not in the table)\n\
                 if the change is meant (a new arrow is a design change), replace its line in \
                 {IN_SECTION} with:\n    issuer → domain, tollgate-keys"
            )
        );
    }

    #[test]
    fn an_arrow_no_cargo_toml_has_fails() {
        let table = TABLE.replace("client → domain", "client → domain, tollgate-keys");
        let problems = problems(CRATES, &table);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].contains("gone arrow client → tollgate-keys (no Cargo.toml has it)"),
            "{}",
            problems[0]
        );
        assert!(
            problems[0].ends_with("\n    client → domain"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_crate_without_a_line_fails() {
        let table = TABLE.replace("domain → (none)\n", "");
        let problems = problems(CRATES, &table);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with(
                "ARCHITECTURE.md has no line for the dependencies of domain \
                 (crates/domain/Cargo.toml)"
            ),
            "{}",
            problems[0]
        );
        assert!(
            problems[0].ends_with("\n    domain → (none)"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn dev_arrows_are_checked_apart() {
        // A dev arrow missing from the table.
        let missing = problems(CRATES, &TABLE.replace("issuer (dev) → testkit\n", ""));
        assert_eq!(missing.len(), 1, "{missing:#?}");
        assert!(
            missing[0].ends_with("\n    issuer (dev) → testkit"),
            "{}",
            missing[0]
        );
        // A dev arrow written as a plain one.
        let plain = problems(
            CRATES,
            &TABLE.replace(
                "issuer → tollgate-keys, domain\nissuer (dev) → testkit\n",
                "issuer → tollgate-keys, domain, testkit\n",
            ),
        );
        assert_eq!(plain.len(), 2, "{plain:#?}");
        assert!(
            plain[0].contains("gone arrow issuer → testkit") && plain[1].contains("no line"),
            "{plain:#?}"
        );
        // A dev line for a crate whose dev-dependencies add nothing.
        let stale = problems(
            CRATES,
            &TABLE.replace(
                "client → domain\n",
                "client → domain\nclient (dev) → keys\n",
            ),
        );
        assert_eq!(stale.len(), 1, "{stale:#?}");
        assert!(
            stale[0].ends_with(&format!(
                "remove its line `client (dev) → keys` from {IN_SECTION}"
            )),
            "{}",
            stale[0]
        );
    }

    #[test]
    fn a_line_for_no_crate_fails() {
        let table = TABLE.replace("client → domain\n", "client → domain\ngone → domain\n");
        let problems = problems(CRATES, &table);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("no workspace crate is named gone"));
    }

    #[test]
    fn ring_users_must_be_listed_with_a_reason() {
        // Not listed.
        let unlisted = problems(
            CRATES,
            &TABLE.replace("- `client` uses ring: jitter only.", ""),
        );
        assert_eq!(unlisted.len(), 1, "{unlisted:#?}");
        assert!(
            unlisted[0].starts_with(
                "crates/client/Cargo.toml makes client depend on ring directly, and only \
                 tollgate-keys may"
            ),
            "{}",
            unlisted[0]
        );
        assert!(unlisted[0].ends_with("\n    - `client` uses ring: <why>"));
        // Listed but no longer a user.
        let mut crates = CRATES.to_vec();
        crates[4] = ("client", &["domain"], &[], false);
        let stale = problems(&crates, TABLE);
        assert_eq!(stale.len(), 1, "{stale:#?}");
        assert!(stale[0].contains("has no ring dependency"), "{}", stale[0]);
        // Listed without a reason.
        let error = parse_table(&section(&TABLE.replace("jitter only.", "")))
            .err()
            .map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some("`client` uses ring without a reason: say why after `uses ring:`")
        );
    }

    #[test]
    fn the_ring_owner_needs_no_item() {
        let crates = [("tollgate-keys", &[][..], &[][..], true)];
        assert_eq!(
            problems(&crates, "```\ntollgate-keys → (none)\n```\n"),
            Vec::<String>::new()
        );
        let listed = problems(
            &crates,
            "```\ntollgate-keys → (none)\n```\n- `tollgate-keys` uses ring: it owns it\n",
        );
        assert_eq!(listed.len(), 1, "{listed:#?}");
    }

    #[test]
    fn unreadable_tables_are_refused() {
        let check = |body: &str, expected: &str| {
            let error = parse_table(&section(body))
                .err()
                .map(|error| error.to_string());
            assert_eq!(error.as_deref(), Some(expected), "{body:?}");
        };
        check(
            "```\nkeys -> domain\n```\n",
            &format!(
                "`keys -> domain` in section `{SECTION}` is not `crate → a, b` (or `crate → (none)`)"
            ),
        );
        check(
            "```\nkeys → domain\nkeys → domain\n```\n",
            "`keys` has two lines of the same kind; keep one",
        );
        check(
            "```\nkeys → domain domain\n```\n",
            "`keys → domain domain`: `domain domain` is not a crate name (separate names with commas)",
        );
        check(
            "```\nkeys → domain, domain\n```\n",
            "`keys → domain, domain` names domain twice",
        );
        check(
            "```\nkeys → domain\n",
            &format!("a code block in section `{SECTION}` is not closed"),
        );
        assert_eq!(
            parse_table("# Architecture\n")
                .err()
                .map(|error| error.to_string()),
            Some(format!(
                "no section `{SECTION}`: add it, with the lines below"
            ))
        );
    }

    #[test]
    fn the_section_ends_at_the_next_heading() {
        let table = parse_table(&section(TABLE)).unwrap_or_else(|error| panic!("{error:#}"));
        assert!(!table.arrows.contains_key("not"));
        assert_eq!(table.arrows.len(), 5);
        assert_eq!(table.dev_arrows.len(), 1);
        assert_eq!(table.ring_users.len(), 1);
    }

    #[test]
    fn metadata_is_read_into_arrows() {
        let metadata = serde_json::json!({
            "packages": [
                {
                    "name": "app",
                    "manifest_path": "/repo/crates/app/Cargo.toml",
                    "dependencies": [
                        {"name": "lib", "kind": null, "optional": true},
                        {"name": "gen", "kind": "build"},
                        {"name": "lib", "kind": "dev"},
                        {"name": "kit", "kind": "dev"},
                        {"name": "app", "kind": "dev"},
                        {"name": "ring", "kind": "dev", "rename": "crypto"},
                        {"name": "serde", "kind": null}
                    ]
                },
                {"name": "lib", "manifest_path": "/repo/crates/lib/Cargo.toml", "dependencies": []},
                {"name": "gen", "manifest_path": "/repo/crates/gen/Cargo.toml", "dependencies": []},
                {"name": "kit", "manifest_path": "/repo/crates/kit/Cargo.toml", "dependencies": [
                    {"name": "app", "kind": null}
                ]}
            ]
        });
        let crates = workspace_crates(&metadata, Path::new("/repo"))
            .unwrap_or_else(|error| panic!("{error:#}"));
        let app = &crates["app"];
        assert_eq!(app.manifest, "crates/app/Cargo.toml");
        assert_eq!(
            app.arrows,
            BTreeSet::from(["gen".to_owned(), "lib".to_owned()])
        );
        assert_eq!(app.dev_arrows, BTreeSet::from(["kit".to_owned()]));
        assert!(app.uses_ring);
        assert!(!crates["kit"].uses_ring);
        assert_eq!(
            whole_table(&crates),
            "app → gen, lib\napp (dev) → kit\ngen → (none)\nkit → app\nlib → (none)\n"
        );
    }
}
