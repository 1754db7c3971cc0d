//! `portcullis secrets …`: manage the encrypted secret store.
//!
//! Values come from stdin, never from the command line (where `ps` and shell history would see
//! them); output carries names, fingerprints and dates, never a value. The master key comes from
//! `--master-key-file` or `$PORTCULLIS_MASTER_KEY`. Every failure names the store file and exits 1.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secrets::store::{Listed, MasterKey, StoreError, StoreFile, Timestamp};
use crate::secrets::{is_temporary_name, ProcessEnv};

/// `portcullis secrets …`.
#[derive(Debug, Subcommand)]
pub(super) enum SecretsCommand {
    /// Print a new random master key (32 bytes, base64; `--hex` for hex).
    Keygen {
        /// Print 64 hex digits instead of base64.
        #[arg(long)]
        hex: bool,
    },
    /// Add a secret; its value is read from stdin (a trailing newline is dropped).
    Set {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// Replace a secret's value (read from stdin); the previous fingerprint goes to its history.
    /// The expiry is the new value's: `--expires` or none. The note is kept unless `--note`.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// Remove a secret.
    Delete {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        secret: SecretArgs,
    },
    /// Show every secret's metadata (never a value): tenant, name, fingerprint, created,
    /// rotated, expiry, note, earlier fingerprints. Exits 1 if a record does not decrypt.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this tenant's secrets.
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add every file `<DIR>/<tenant>/<name>` (the `secrets.dir` layout) that the store does
    /// not have yet; secrets it has with another value are reported and left alone unless
    /// `--replace`.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// The directory to import.
        #[arg(long, value_name = "DIR")]
        from_dir: PathBuf,
        /// Rotate secrets whose value in the directory differs from the store's.
        #[arg(long)]
        replace: bool,
    },
}

/// Which store, and its key.
#[derive(Debug, clap::Args)]
pub(super) struct StoreArgs {
    /// The store file (created by the first `set` or `import`).
    #[arg(long, value_name = "FILE")]
    store: PathBuf,
    /// File holding the master key (default: `$PORTCULLIS_MASTER_KEY`).
    #[arg(long, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
}

/// Which secret.
#[derive(Debug, clap::Args)]
pub(super) struct SecretArgs {
    /// The owning tenant (a `tenants.id`).
    #[arg(long)]
    tenant: String,
    /// The secret's name, as in `${secret:NAME}`.
    name: String,
}

/// Metadata given with a value.
#[derive(Debug, clap::Args)]
pub(super) struct MetaArgs {
    /// When the value stops being valid (RFC 3339, e.g. 2026-04-01T00:00:00Z): shown in the
    /// admin API and metrics; `portcullis check` warns 7 days before.
    #[arg(long, value_name = "RFC3339")]
    expires: Option<String>,
    /// Free text for operators (who owns it, where it was issued …). Not secret.
    #[arg(long)]
    note: Option<String>,
}

/// Runs a `secrets` subcommand.
pub(super) fn secrets(command: SecretsCommand) -> ExitCode {
    let result = match command {
        SecretsCommand::Keygen { hex } => {
            let key = MasterKey::generate();
            let text = if hex { key.to_hex() } else { key.to_base64() };
            println!("{}", text.as_str());
            Ok(())
        }
        SecretsCommand::Set {
            store,
            secret,
            meta,
        } => set(&store, &secret, meta, false),
        SecretsCommand::Rotate {
            store,
            secret,
            meta,
        } => set(&store, &secret, meta, true),
        SecretsCommand::Delete { store, secret } => delete(&store, &secret),
        SecretsCommand::List {
            store,
            tenant,
            json,
        } => list(&store, tenant.as_deref(), json),
        SecretsCommand::Import {
            store,
            from_dir,
            replace,
        } => import(&store, &from_dir, replace),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn set(store: &StoreArgs, secret: &SecretArgs, meta: MetaArgs, rotate: bool) -> Result<(), String> {
    let expires = meta
        .expires
        .as_deref()
        .map(Timestamp::parse)
        .transpose()
        .map_err(|e| format!("--expires: {e}"))?;
    let key = master_key(store)?;
    let value = read_value(&secret.tenant, &secret.name)?;
    let (tenant, name) = (secret.tenant.as_str(), secret.name.as_str());
    if rotate {
        let rotation = StoreFile::update(&store.store, &key, false, |s| {
            s.rotate(tenant, name, &value, expires, meta.note)
        })
        .map_err(|e| e.to_string())?;
        println!(
            "{tenant}/{name} rotated: fingerprint {} -> {}",
            rotation.previous, rotation.current
        );
        if rotation.expiry_cleared {
            eprintln!("note: the previous value's expiry was cleared; give --expires to set one for the new value");
        }
    } else {
        let fingerprint = StoreFile::update(&store.store, &key, true, |s| {
            s.insert(tenant, name, &value, expires, meta.note)?;
            Ok(s.fingerprint(&value))
        })
        .map_err(|e| e.to_string())?;
        println!("{tenant}/{name} set: fingerprint {fingerprint}");
    }
    Ok(())
}

fn delete(store: &StoreArgs, secret: &SecretArgs) -> Result<(), String> {
    let key = master_key(store)?;
    StoreFile::update(&store.store, &key, false, |s| {
        s.remove(&secret.tenant, &secret.name)
    })
    .map_err(|e| e.to_string())?;
    println!("{}/{} deleted", secret.tenant, secret.name);
    Ok(())
}

fn list(store: &StoreArgs, tenant: Option<&str>, json: bool) -> Result<(), String> {
    let key = master_key(store)?;
    let opened = StoreFile::open(&store.store, &key).map_err(|e| e.to_string())?;
    let records: Vec<Listed> = opened
        .list()
        .into_iter()
        .filter(|r| tenant.is_none_or(|t| r.tenant == t))
        .collect();
    if json {
        #[derive(serde::Serialize)]
        struct Listing<'a> {
            store: &'a Path,
            secrets: &'a [Listed],
        }
        let doc = Listing {
            store: &store.store,
            secrets: &records,
        };
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", table(&records));
    }
    let bad = records.iter().filter(|r| r.status != "ok").count();
    if bad > 0 {
        return Err(format!(
            "secret store '{}': {bad} record(s) cannot be decrypted: altered, or sealed for another tenant or name",
            store.store.display()
        ));
    }
    Ok(())
}

fn import(store: &StoreArgs, dir: &Path, replace: bool) -> Result<(), String> {
    let key = master_key(store)?;
    let found = read_dir_secrets(dir)?;
    if found.is_empty() {
        return Err(format!(
            "'{}': no secrets found (expected files <dir>/<tenant>/<name>)",
            dir.display()
        ));
    }
    let report = StoreFile::update(&store.store, &key, true, |s| {
        let mut report = Vec::new();
        for (tenant, name, value) in &found {
            let line = match s.open_value(tenant, name) {
                None => {
                    s.insert(tenant, name, value, None, None)?;
                    format!(
                        "{tenant}/{name}: added, fingerprint {}",
                        s.fingerprint(value)
                    )
                }
                Some(Ok(current))
                    if bool::from(
                        current
                            .value
                            .expose_secret()
                            .as_bytes()
                            .ct_eq(value.as_bytes()),
                    ) =>
                {
                    format!("{tenant}/{name}: unchanged")
                }
                Some(Ok(_)) if replace => {
                    let r = s.rotate(tenant, name, value, None, None)?;
                    format!(
                        "{tenant}/{name}: rotated, fingerprint {} -> {}",
                        r.previous, r.current
                    )
                }
                Some(Ok(_)) => format!(
                    "{tenant}/{name}: skipped, the store has another value (--replace rotates it)"
                ),
                Some(Err(e)) => format!("{tenant}/{name}: skipped, the store's record {e}"),
            };
            report.push(line);
        }
        Ok(report)
    })
    .map_err(|e| e.to_string())?;
    for line in report {
        println!("{line}");
    }
    Ok(())
}

/// Every `<dir>/<tenant>/<name>` file, values without their trailing newline. Hidden and
/// temporary names are skipped (Kubernetes' `..data` links, editors' files); a name the store
/// cannot hold is an error, so nothing is half-imported.
fn read_dir_secrets(dir: &Path) -> Result<Vec<(String, String, Zeroizing<String>)>, String> {
    let read = |path: &Path| {
        std::fs::read_dir(path).map_err(|e| format!("'{}': cannot read: {e}", path.display()))
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for tenant_entry in read(dir)? {
        let tenant_entry = tenant_entry.map_err(|e| format!("'{}': {e}", dir.display()))?;
        let tenant = tenant_entry.file_name().to_string_lossy().into_owned();
        let tenant_path = tenant_entry.path();
        if is_temporary_name(&tenant) || !tenant_path.is_dir() {
            continue;
        }
        if !crate::secrets::store::is_tenant_id(&tenant) {
            errors.push(format!("'{}': not a tenant id", tenant_path.display()));
            continue;
        }
        for entry in read(&tenant_path)? {
            let entry = entry.map_err(|e| format!("'{}': {e}", tenant_path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if is_temporary_name(&name) || !path.is_file() {
                continue;
            }
            if !crate::secrets::store::is_secret_name(&name) {
                errors.push(format!("'{}': not a secret name", path.display()));
                continue;
            }
            let text = std::fs::read(&path)
                .map(Zeroizing::new)
                .map_err(|e| format!("'{}': cannot read: {e}", path.display()))?;
            match value_of(&text) {
                Some(value) => out.push((tenant.clone(), name, value)),
                None => errors.push(format!("'{}': empty, or not UTF-8 text", path.display())),
            }
        }
    }
    if !errors.is_empty() {
        return Err(format!("nothing imported:\n  {}", errors.join("\n  ")));
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(out)
}

fn master_key(store: &StoreArgs) -> Result<MasterKey, String> {
    MasterKey::load(store.master_key_file.as_deref(), &ProcessEnv).map_err(|source| {
        StoreError::MasterKey {
            path: store.store.clone(),
            source,
        }
        .to_string()
    })
}

/// The value piped to stdin, without its trailing newline.
fn read_value(tenant: &str, name: &str) -> Result<Zeroizing<String>, String> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Type the value of {tenant}/{name}, then Enter and Ctrl-D (it shows on screen: prefer a pipe).");
    }
    let mut bytes = Zeroizing::new(Vec::new());
    stdin
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the value from stdin: {e}"))?;
    value_of(&bytes).ok_or_else(|| "the value on stdin is empty or not UTF-8 text".to_owned())
}

/// UTF-8 text without trailing CR/LF, if any is left.
fn value_of(bytes: &[u8]) -> Option<Zeroizing<String>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let value = text.trim_end_matches(['\r', '\n']);
    (!value.is_empty()).then(|| Zeroizing::new(value.to_owned()))
}

/// The listing as an aligned table.
fn table(records: &[Listed]) -> String {
    let dash = || "-".to_owned();
    let mut rows = vec![[
        "TENANT",
        "NAME",
        "STATUS",
        "FINGERPRINT",
        "CREATED",
        "ROTATED",
        "EXPIRES",
        "PREVIOUS",
        "NOTE",
    ]
    .map(str::to_owned)];
    for r in records {
        rows.push([
            r.tenant.clone(),
            r.name.clone(),
            r.status.to_owned(),
            r.fingerprint.clone().unwrap_or_else(dash),
            r.created.clone().unwrap_or_else(dash),
            r.rotated.clone().unwrap_or_else(dash),
            r.expires.clone().unwrap_or_else(dash),
            r.history
                .last()
                .map(|h| h.fingerprint.clone())
                .unwrap_or_else(dash),
            r.note.clone().unwrap_or_default(),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
