//! `nexo new connector|mapper NAME --lang rust|python|js`: writes a vendor's
//! starting project — code with one stream, the manifest, a README, the
//! conformance kit's suite and script, a CI workflow — from the templates in
//! `host/cli/templates/`, embedded in the binary. The project depends on the
//! SDK of its language by version (crates.io, PyPI, npm), never on a path.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

/// `nexo new`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// What to write: a connector (reads and writes a system) or a mapper
    /// (turns records into records).
    #[arg(value_enum)]
    kind: Kind,
    /// The plugin's name: lowercase letters, digits and `-`, starting with a
    /// letter (e.g. `acme-crm`).
    name: String,
    /// The language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Where to write the project (default: ./NAME). Must not exist, or be
    /// empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The vendor part of the plugin id `VENDOR/NAME` (default: NAME); the
    /// same rules as NAME.
    #[arg(long)]
    vendor: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Kind {
    Connector,
    Mapper,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
    Js,
}

/// One file of a project: where it goes and its template.
struct Template {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

macro_rules! template {
    ($path:literal, $file:literal) => {
        Template {
            path: $path,
            text: include_str!(concat!("../../templates/", $file)),
            executable: false,
        }
    };
    ($path:literal, $file:literal, exec) => {
        Template {
            path: $path,
            text: include_str!(concat!("../../templates/", $file)),
            executable: true,
        }
    };
}

/// The files every project of `kind` gets, whatever its language.
fn common(kind: Kind) -> Vec<Template> {
    let mut files = vec![
        template!(".gitignore", "common/gitignore"),
        template!(".github/workflows/ci.yml", "common/ci.yml"),
    ];
    files.extend(match kind {
        Kind::Connector => [
            template!("nexo-plugin.toml", "common/connector/nexo-plugin.toml"),
            template!("nexo-test.toml", "common/connector/nexo-test.toml"),
            template!(
                "config.example.json",
                "common/connector/config.example.json"
            ),
            template!("README.md", "common/connector/README.md"),
            template!("scripts/test.sh", "common/connector/test.sh", exec),
        ],
        Kind::Mapper => [
            template!("nexo-plugin.toml", "common/mapper/nexo-plugin.toml"),
            template!("nexo-test.toml", "common/mapper/nexo-test.toml"),
            template!("config.example.json", "common/mapper/config.example.json"),
            template!("README.md", "common/mapper/README.md"),
            template!("scripts/test.sh", "common/mapper/test.sh", exec),
        ],
    });
    files
}

/// The language's own files: code, build script, dependency list.
fn own(lang: Lang, kind: Kind) -> Vec<Template> {
    match (lang, kind) {
        (Lang::Rust, Kind::Connector) => vec![
            template!("Cargo.toml", "rust/connector/Cargo.toml"),
            template!("src/lib.rs", "rust/connector/lib.rs"),
            template!("scripts/build.sh", "rust/build.sh", exec),
        ],
        (Lang::Rust, Kind::Mapper) => vec![
            template!("Cargo.toml", "rust/mapper/Cargo.toml"),
            template!("src/lib.rs", "rust/mapper/lib.rs"),
            template!("scripts/build.sh", "rust/build.sh", exec),
        ],
        (Lang::Python, Kind::Connector) => vec![
            template!("app.py", "python/connector/app.py"),
            template!("contacts.py", "python/connector/contacts.py"),
            template!("requirements.txt", "python/requirements.txt"),
            template!("requirements-build.txt", "python/requirements-build.txt"),
            template!("scripts/build.sh", "python/build.sh", exec),
        ],
        (Lang::Python, Kind::Mapper) => vec![
            template!("app.py", "python/mapper/app.py"),
            template!("rename.py", "python/mapper/rename.py"),
            template!("requirements.txt", "python/requirements.txt"),
            template!("requirements-build.txt", "python/requirements-build.txt"),
            template!("scripts/build.sh", "python/build.sh", exec),
        ],
        (Lang::Js, Kind::Connector) => vec![
            template!("package.json", "js/package.json"),
            template!("src/index.js", "js/connector/index.js"),
            template!("scripts/build.sh", "js/build.sh", exec),
        ],
        (Lang::Js, Kind::Mapper) => vec![
            template!("package.json", "js/package.json"),
            template!("src/index.js", "js/mapper/index.js"),
            template!("scripts/build.sh", "js/build.sh", exec),
        ],
    }
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }

    /// The toolchain paragraph of the README.
    fn setup(self) -> &'static str {
        match self {
            Lang::Rust => include_str!("../../templates/rust/setup.md"),
            Lang::Python => include_str!("../../templates/python/setup.md"),
            Lang::Js => include_str!("../../templates/js/setup.md"),
        }
    }

    /// The CI steps that install the toolchain.
    fn ci_setup(self) -> &'static str {
        match self {
            Lang::Rust => include_str!("../../templates/rust/ci-setup.yml"),
            Lang::Python => include_str!("../../templates/python/ci-setup.yml"),
            Lang::Js => include_str!("../../templates/js/ci-setup.yml"),
        }
    }

    /// What to run in the new project before `scripts/build.sh`.
    fn toolchain_step(self) -> &'static str {
        match self {
            Lang::Rust => "rustup target add wasm32-wasip2",
            Lang::Python => {
                "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt -r requirements-build.txt"
            }
            Lang::Js => "npm install",
        }
    }

    fn code_files(self, kind: Kind) -> &'static str {
        match (self, kind) {
            (Lang::Rust, _) => "`src/lib.rs`",
            (Lang::Python, Kind::Connector) => "`contacts.py` (exported by `app.py`)",
            (Lang::Python, Kind::Mapper) => "`rename.py` (exported by `app.py`)",
            (Lang::Js, _) => "`src/index.js`",
        }
    }
}

/// Why a name cannot be a plugin's name, if it cannot.
fn name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Some("it is empty"),
        Some(c) if !c.is_ascii_lowercase() => {
            return Some("it must start with a lowercase letter (a-z)");
        }
        Some(_) => {}
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("only lowercase letters, digits and `-` are allowed");
    }
    if name.ends_with('-') || name.contains("--") {
        return Some("`-` must separate words: not at the end, not twice in a row");
    }
    if name.len() > 64 {
        return Some("it is longer than 64 characters");
    }
    None
}

fn check_name(what: &str, name: &str) -> Result<()> {
    match name_problem(name) {
        Some(why) => bail!(
            "`{name}` cannot be a plugin {what}: {why} (e.g. `acme-crm`; the pattern is [a-z][a-z0-9-]*)"
        ),
        None => Ok(()),
    }
}

/// The placeholders of the templates and their values.
fn values(args: &NewArgs, vendor: &str) -> Vec<(&'static str, String)> {
    let sdk = nexo_sdk::SDK_VERSION;
    let minor = sdk.split('.').take(2).collect::<Vec<_>>().join(".");
    let replay = match args.kind {
        Kind::Connector => " --replay fixtures/",
        Kind::Mapper => "",
    };
    let substituted = |text: &str| {
        text.replace("{{sdk_minor}}", &minor)
            .replace("{{sdk_version}}", sdk)
    };
    vec![
        ("name", args.name.clone()),
        ("crate", args.name.replace('-', "_")),
        ("id", format!("{vendor}/{}", args.name)),
        ("vendor", vendor.to_string()),
        ("lang", args.lang.name().to_string()),
        ("lang_title", args.lang.title().to_string()),
        ("sdk_version", sdk.to_string()),
        ("sdk_minor", minor.clone()),
        ("sdk_req", minor.clone()),
        ("wit_version", nexo_sdk::WIT_VERSION.to_string()),
        (
            "setup",
            substituted(args.lang.setup()).trim_end().to_string(),
        ),
        ("ci_setup", args.lang.ci_setup().trim_end().to_string()),
        ("code_files", args.lang.code_files(args.kind).to_string()),
        ("replay", replay.to_string()),
    ]
}

/// `text` with every `{{key}}` of `values` replaced; other `{{…}}` (such
/// as the kit's `{{run}}`) are left for their own readers.
fn render(text: &str, values: &[(&'static str, String)]) -> String {
    values.iter().fold(text.to_string(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

/// Writes the project and says what to do next.
pub(crate) fn new(args: &NewArgs) -> Result<()> {
    check_name("name", &args.name)?;
    let vendor = args.vendor.clone().unwrap_or_else(|| args.name.clone());
    check_name("vendor", &vendor)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    refuse_non_empty(&dir)?;
    let values = values(args, &vendor);
    let mut files = own(args.lang, args.kind);
    files.extend(common(args.kind));
    for file in &files {
        write(
            &dir.join(file.path),
            &render(file.text, &values),
            file.executable,
        )?;
    }
    let kind = match args.kind {
        Kind::Connector => "connector",
        Kind::Mapper => "mapper",
    };
    println!(
        "wrote the {} {kind} {vendor}/{} in {} ({} files)",
        args.lang.title(),
        args.name,
        dir.display(),
        files.len()
    );
    println!("next, in {}:", dir.display());
    println!("  {}", args.lang.toolchain_step());
    println!("  sh scripts/build.sh    # → build/{}.wasm", args.name);
    println!("  sh scripts/test.sh     # the conformance kit (README.md has the rest)");
    Ok(())
}

fn refuse_non_empty(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty; nexo new does not overwrite files: pick another --dir or remove it",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} exists and is a file; pick another --dir", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn write(path: &Path, text: &str, executable: bool) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for good in ["acme", "acme-crm", "a1", "x-2-y"] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for bad in [
            "", "Acme", "1acme", "acme_crm", "acme-", "a--b", "-a", "acmé", "a.b", "a/b",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn placeholders_are_replaced_and_the_kits_own_left_alone() {
        let values = vec![("name", "acme".to_string())];
        assert_eq!(
            render("{{name}}: ada+{{run}}@x {{name}}", &values),
            "acme: ada+{{run}}@x acme"
        );
    }

    #[test]
    fn every_template_is_rendered_completely() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for kind in [Kind::Connector, Kind::Mapper] {
                let args = NewArgs {
                    kind,
                    name: "acme".into(),
                    lang,
                    dir: None,
                    vendor: None,
                };
                let values = values(&args, "acme");
                let mut files = own(lang, kind);
                files.extend(common(kind));
                for file in files {
                    let text = render(file.text, &values);
                    let left = text.replace("{{run}}", "");
                    assert!(
                        !left.contains("{{") || left.contains("{{{{"),
                        "{lang:?} {kind:?} {}: a placeholder is left:\n{text}",
                        file.path
                    );
                }
            }
        }
    }
}
