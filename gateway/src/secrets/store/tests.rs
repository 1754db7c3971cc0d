use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use portcullis_config::SecretSources;
use secrecy::ExposeSecret;
use serde_json::Value;

use super::*;
use crate::secrets::{FingerprintKey, SecretSource, SecretStore};

const VALUE: &str = "pd-value-7f3a9c";
const OTHER: &str = "jira-value-01bd";

/// A change to the file's JSON.
type JsonEdit = fn(&mut Value);
/// A change through the store's API.
type StoreEdit = fn(&mut StoreFile) -> Result<(), StoreError>;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    key: MasterKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.store");
    let key = MasterKey::generate();
    StoreFile::update(&path, &key, true, |s| {
        s.insert(
            "acme",
            "pd",
            VALUE,
            Some(Timestamp(1_900_000_000)),
            Some("PagerDuty".into()),
        )?;
        s.insert("acme", "jira", OTHER, None, None)
    })
    .unwrap();
    Fixture {
        _dir: dir,
        path,
        key,
    }
}

fn open(f: &Fixture) -> Result<StoreFile, StoreError> {
    StoreFile::open(&f.path, &f.key)
}

fn value_of(store: &StoreFile, tenant: &str, name: &str) -> Result<String, RecordError> {
    store
        .open_value(tenant, name)
        .expect("record exists")
        .map(|o| o.value.expose_secret().to_owned())
}

/// Edits the file's JSON in place, as an attacker with write access would.
fn tamper(f: &Fixture, edit: impl FnOnce(&mut Value)) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&f.path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(&f.path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

/// The record of `name` in the file's JSON (tenant acme).
fn record<'a>(doc: &'a mut Value, name: &str) -> &'a mut Value {
    doc["records"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["name"] == name)
        .unwrap()
}

fn flip_base64(v: &mut Value) {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(v.as_str().unwrap()).unwrap();
    bytes[0] ^= 1;
    *v = Value::String(engine.encode(bytes));
}

#[test]
fn values_round_trip_and_metadata_is_listed() {
    let f = fixture();
    let store = open(&f).unwrap();
    assert_eq!(value_of(&store, "acme", "pd").unwrap(), VALUE);
    assert_eq!(value_of(&store, "acme", "jira").unwrap(), OTHER);
    assert!(store.open_value("acme", "nope").is_none());
    let opened = store.open_value("acme", "pd").unwrap().unwrap();
    assert_eq!(opened.expires, Some(Timestamp(1_900_000_000)));
    assert_eq!(opened.fingerprint, store.fingerprint(VALUE));
    let listed = store.list();
    assert_eq!(listed.len(), 2);
    let pd = listed.iter().find(|l| l.name == "pd").unwrap();
    assert_eq!(pd.status, "ok");
    assert_eq!(pd.note.as_deref(), Some("PagerDuty"));
    assert_eq!(pd.expires.as_deref(), Some("2030-03-17T17:46:40Z"));
    assert_eq!(pd.fingerprint.as_deref(), Some(opened.fingerprint.as_str()));
    // Nothing on disk or in a listing reveals a value.
    let text = std::fs::read_to_string(&f.path).unwrap();
    for needle in [VALUE, OTHER] {
        assert!(!text.contains(needle));
        assert!(!format!("{listed:?}{store:?}").contains(needle));
    }
}

#[test]
fn fingerprints_depend_on_the_master_key_only() {
    let f = fixture();
    let store = open(&f).unwrap();
    // Another store (another salt) with the same key fingerprints alike; another key does not.
    let other = StoreFile::create(&f.path.with_extension("other"), &f.key);
    assert_eq!(store.fingerprint(VALUE), other.fingerprint(VALUE));
    let stranger = StoreFile::create(&f.path, &MasterKey::generate());
    assert_ne!(store.fingerprint(VALUE), stranger.fingerprint(VALUE));
    assert_eq!(store.fingerprint(VALUE).len(), 12);
}

#[test]
fn a_sealed_value_is_bound_to_its_tenant_and_name() {
    let f = fixture();
    let mut store = open(&f).unwrap();
    let sealed = store.records[&("acme".to_owned(), "pd".to_owned())].clone();
    // The same ciphertext, presented as another tenant's or another name's record, does not open.
    for (tenant, name) in [("other", "pd"), ("acme", "jira"), ("acme", "pd2")] {
        let mut moved = sealed.clone();
        moved.tenant = tenant.to_owned();
        moved.name = name.to_owned();
        store
            .records
            .insert((tenant.to_owned(), name.to_owned()), moved);
        assert_eq!(
            value_of(&store, tenant, name).unwrap_err(),
            RecordError::Undecryptable,
            "{tenant}/{name}"
        );
    }
    assert_eq!(value_of(&store, "acme", "pd").unwrap(), VALUE);
}

#[test]
fn moving_a_record_in_the_file_is_detected() {
    let f = fixture();
    tamper(&f, |doc| record(doc, "pd")["tenant"] = "other".into());
    assert!(matches!(open(&f), Err(StoreError::Tampered { .. })));
}

#[test]
fn an_altered_value_makes_only_its_record_undecryptable() {
    let f = fixture();
    tamper(&f, |doc| flip_base64(&mut record(doc, "pd")["sealed"]));
    let store = open(&f).unwrap();
    assert_eq!(
        value_of(&store, "acme", "pd").unwrap_err(),
        RecordError::Undecryptable
    );
    assert_eq!(value_of(&store, "acme", "jira").unwrap(), OTHER);
    let listed = store.list();
    let pd = listed.iter().find(|l| l.name == "pd").unwrap();
    assert_eq!(pd.status, "undecryptable");
    assert_eq!(pd.note, None, "unauthenticated metadata is not shown");
}

#[test]
fn altered_metadata_makes_its_record_undecryptable() {
    let edits: [(&str, JsonEdit); 6] = [
        ("note", |r| r["note"] = "owned by mallory".into()),
        ("expires", |r| r["expires"] = "2099-01-01T00:00:00Z".into()),
        ("expires removed", |r| r["expires"] = Value::Null),
        ("created", |r| r["created"] = "2001-01-01T00:00:00Z".into()),
        ("fingerprint", |r| r["fingerprint"] = "000000000000".into()),
        (
            "history",
            |r| r["history"] = serde_json::json!([{"fingerprint": "aaaaaaaaaaaa", "replaced": "2020-01-01T00:00:00Z"}]),
        ),
    ];
    for (what, edit) in edits {
        let f = fixture();
        tamper(&f, |doc| edit(record(doc, "pd")));
        let store = open(&f).unwrap();
        assert_eq!(
            value_of(&store, "acme", "pd").unwrap_err(),
            RecordError::Undecryptable,
            "{what}"
        );
        assert_eq!(value_of(&store, "acme", "jira").unwrap(), OTHER, "{what}");
    }
}

#[test]
fn header_and_table_of_contents_changes_fail_the_whole_store() {
    let f = fixture();
    let before = std::fs::read(&f.path).unwrap();
    let cases: [(&str, JsonEdit); 7] = [
        ("salt", |d| flip_base64(&mut d["salt"])),
        ("key check", |d| flip_base64(&mut d["key_check"])),
        ("mac", |d| flip_base64(&mut d["toc_mac"])),
        ("nonce", |d| flip_base64(&mut record(d, "pd")["nonce"])),
        ("record removed", |d| {
            d["records"].as_array_mut().unwrap().remove(0);
        }),
        ("record renamed", |d| {
            record(d, "jira")["name"] = "jira2".into()
        }),
        ("version", |d| d["portcullis_secret_store"] = 2.into()),
    ];
    for (what, edit) in cases {
        std::fs::write(&f.path, &before).unwrap();
        tamper(&f, edit);
        let err = open(&f).unwrap_err();
        let expected = match what {
            "salt" | "key check" => matches!(err, StoreError::WrongKey { .. }),
            "version" => matches!(err, StoreError::Version { found: 2, .. }),
            _ => matches!(err, StoreError::Tampered { .. }),
        };
        assert!(expected, "{what}: {err}");
        assert!(err.to_string().contains(&f.path.display().to_string()));
    }
    std::fs::write(&f.path, b"{\"portcullis_secret_store\": 1, \"salt\": 3}").unwrap();
    assert!(matches!(open(&f), Err(StoreError::Malformed { .. })));
    std::fs::write(&f.path, b"not json").unwrap();
    assert!(matches!(open(&f), Err(StoreError::Malformed { .. })));
}

#[test]
fn rolling_one_record_back_is_detected() {
    let f = fixture();
    let old: Value = serde_json::from_slice(&std::fs::read(&f.path).unwrap()).unwrap();
    StoreFile::update(&f.path, &f.key, false, |s| {
        s.rotate("acme", "pd", "pd-value-new", None, None)
    })
    .unwrap();
    let old_pd = old["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pd")
        .unwrap()
        .clone();
    tamper(&f, |doc| *record(doc, "pd") = old_pd);
    assert!(matches!(open(&f), Err(StoreError::Tampered { .. })));
}

#[test]
fn a_wrong_master_key_is_named_as_such_and_never_shown() {
    let f = fixture();
    let wrong = MasterKey::generate();
    let err = StoreFile::open(&f.path, &wrong).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }));
    let message = err.to_string();
    assert!(
        message.contains("the master key does not open this store"),
        "{message}"
    );
    assert!(message.contains(&f.path.display().to_string()));
    for key in [&f.key, &wrong] {
        assert!(!message.contains(key.to_base64().as_str()));
        assert!(!message.contains(key.to_hex().as_str()));
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
    }
    // Nor is the store's key material in its Debug.
    let store = open(&f).unwrap();
    let debug = format!("{store:?}");
    assert!(!debug.contains(f.key.to_hex().as_str()) && !debug.contains(VALUE));
}

#[test]
fn master_keys_parse_from_base64_or_hex_and_errors_never_echo_them() {
    let key = MasterKey::generate();
    let b64 = key.to_base64();
    let hex = key.to_hex();
    for text in [
        b64.to_string(),
        b64.trim_end_matches('=').to_owned(),
        format!("  {}\n", hex.as_str()),
        hex.to_uppercase(),
    ] {
        let parsed = MasterKey::parse(&text, || "test".into()).unwrap();
        assert_eq!(parsed.to_hex(), hex);
    }
    for bad in ["", "c2hvcnQ=", &hex[..62], "zz not a key"] {
        let err = MasterKey::parse(bad, || "$PORTCULLIS_MASTER_KEY".into()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("$PORTCULLIS_MASTER_KEY: not a master key"),
            "{message}"
        );
        if !bad.is_empty() {
            assert!(!message.contains(bad));
        }
    }
    let env: HashMap<String, String> = HashMap::new();
    assert_eq!(
        MasterKey::load(None, &env).unwrap_err(),
        MasterKeyError::Absent
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("master.key");
    std::fs::write(&file, format!("{}\n", b64.as_str())).unwrap();
    let env: HashMap<String, String> = [(MASTER_KEY_ENV_NAME.to_owned(), "junk".to_owned())].into();
    // The file wins over the environment.
    assert_eq!(MasterKey::load(Some(&file), &env).unwrap().to_hex(), hex);
    assert!(matches!(
        MasterKey::load(Some(&dir.path().join("absent")), &env),
        Err(MasterKeyError::Unreadable { .. })
    ));
}

const MASTER_KEY_ENV_NAME: &str = key::MASTER_KEY_ENV;

#[test]
fn rotation_keeps_history_and_the_note_and_replaces_the_expiry() {
    let f = fixture();
    let mut fingerprints = vec![open(&f).unwrap().fingerprint(VALUE)];
    for i in 0..(HISTORY_LIMIT + 2) {
        let value = format!("pd-value-{i}");
        let r = StoreFile::update(&f.path, &f.key, false, |s| {
            s.rotate("acme", "pd", &value, None, None)
        })
        .unwrap();
        assert_eq!(&r.previous, fingerprints.last().unwrap());
        assert_eq!(r.expiry_cleared, i == 0);
        fingerprints.push(r.current);
    }
    let store = open(&f).unwrap();
    let pd = store.list().into_iter().find(|l| l.name == "pd").unwrap();
    assert_eq!(pd.note.as_deref(), Some("PagerDuty"));
    assert_eq!(pd.expires, None);
    assert!(pd.rotated.is_some());
    assert_eq!(pd.history.len(), HISTORY_LIMIT);
    let kept: Vec<_> = pd.history.iter().map(|h| h.fingerprint.clone()).collect();
    assert_eq!(
        kept,
        fingerprints[fingerprints.len() - 1 - HISTORY_LIMIT..fingerprints.len() - 1]
    );
    assert_eq!(
        value_of(&store, "acme", "pd").unwrap(),
        format!("pd-value-{}", HISTORY_LIMIT + 1)
    );
}

#[test]
fn edits_that_do_not_apply_write_nothing() {
    let f = fixture();
    let before = std::fs::read(&f.path).unwrap();
    let attempts: [(&str, StoreEdit); 7] = [
        ("exists", |s| s.insert("acme", "pd", "v", None, None)),
        ("absent", |s| {
            s.rotate("acme", "nope", "v", None, None).map(drop)
        }),
        ("delete absent", |s| s.remove("acme", "nope")),
        ("bad tenant", |s| s.insert("Acme", "x", "v", None, None)),
        ("bad name", |s| s.insert("acme", ".hidden", "v", None, None)),
        ("empty", |s| s.insert("acme", "x", "", None, None)),
        ("bad note", |s| {
            s.insert("acme", "x", "v", None, Some("a\nb".into()))
        }),
    ];
    for (what, edit) in attempts {
        let err = StoreFile::update(&f.path, &f.key, false, edit).unwrap_err();
        assert!(matches!(err, StoreError::Edit { .. }), "{what}: {err}");
        assert_eq!(std::fs::read(&f.path).unwrap(), before, "{what}");
    }
    // Without `create`, a missing store is an error, and none is created.
    let absent = f.path.with_file_name("absent.store");
    let err = StoreFile::update(&absent, &f.key, false, |s| s.remove("a", "b")).unwrap_err();
    assert!(matches!(err, StoreError::Read { .. }));
    assert!(!absent.exists());
}

#[test]
fn writes_keep_permissions_and_leave_no_temporary_file() {
    let f = fixture();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.path), 0o600, "a new store is private");
    std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(0o640)).unwrap();
    StoreFile::update(&f.path, &f.key, false, |s| s.remove("acme", "jira")).unwrap();
    assert_eq!(mode(&f.path), 0o640, "an operator's chmod survives a write");
    let names: Vec<String> = std::fs::read_dir(f.path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, [".secrets.store.lock", "secrets.store"]);
}

#[test]
fn concurrent_writers_lose_no_update() {
    let f = Arc::new(fixture());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                for i in 0..5 {
                    StoreFile::update(&f.path, &f.key, false, |s| {
                        s.insert("acme", &format!("t{t}-{i}"), "v", None, None)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = open(&f).unwrap();
    assert_eq!(store.list().len(), 2 + 8 * 5);
}

// --- the store as a source of the runtime's secrets ---

fn sources(f: &Fixture, dir: Option<PathBuf>) -> SecretSources {
    let key_file = f.path.with_file_name("master.key");
    std::fs::write(&key_file, f.key.to_base64().as_str()).unwrap();
    SecretSources {
        env_prefix: Some("PORTCULLIS_SECRET_".into()),
        dir,
        store: Some(f.path.clone()),
        master_key_file: Some(key_file),
    }
}

#[test]
fn the_store_comes_before_files_and_the_environment() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("acme")).unwrap();
    for name in ["pd", "file-only"] {
        std::fs::write(dir.path().join("acme").join(name), "from-file").unwrap();
    }
    let env: HashMap<String, String> = [
        (
            "PORTCULLIS_SECRET_ACME_PD".to_owned(),
            "from-env".to_owned(),
        ),
        (
            "PORTCULLIS_SECRET_ACME_ENV_ONLY".to_owned(),
            "from-env".to_owned(),
        ),
    ]
    .into();
    let loaded = SecretStore::load(
        &sources(&f, Some(dir.path().to_path_buf())),
        &env,
        [
            ("acme", "pd"),
            ("acme", "file-only"),
            ("acme", "env-only"),
            ("acme", "none"),
        ],
        &FingerprintKey::fixed(0),
    )
    .unwrap();
    let pd = loaded.get("acme", "pd").unwrap();
    assert_eq!(pd.expose(), Some(VALUE));
    assert_eq!(
        pd.source,
        SecretSource::Store(format!("{}#acme/pd", f.path.display()))
    );
    assert_eq!(pd.fingerprint, Some(open(&f).unwrap().fingerprint(VALUE)));
    assert_eq!(pd.expires, Some(Timestamp(1_900_000_000).to_system_time()));
    assert_eq!(
        loaded.get("acme", "file-only").unwrap().expose(),
        Some("from-file")
    );
    assert_eq!(
        loaded.get("acme", "env-only").unwrap().expose(),
        Some("from-env")
    );
    let SecretSource::Missing(looked) = &loaded.get("acme", "none").unwrap().source else {
        panic!("missing");
    };
    assert_eq!(looked[0], format!("{}#acme/none", f.path.display()));
    assert_eq!(looked.len(), 3);
}

#[test]
fn an_undecryptable_record_never_falls_back_to_another_source() {
    let f = fixture();
    tamper(&f, |doc| flip_base64(&mut record(doc, "pd")["sealed"]));
    let env: HashMap<String, String> = [(
        "PORTCULLIS_SECRET_ACME_PD".to_owned(),
        "from-env".to_owned(),
    )]
    .into();
    let loaded = SecretStore::load(
        &sources(&f, None),
        &env,
        [("acme", "pd"), ("acme", "jira")],
        &FingerprintKey::fixed(0),
    )
    .unwrap();
    let pd = loaded.get("acme", "pd").unwrap();
    assert!(!pd.is_present() && pd.is_undecryptable());
    assert_eq!(loaded.get("acme", "jira").unwrap().expose(), Some(OTHER));
}

#[test]
fn a_store_that_does_not_open_fails_the_load() {
    let f = fixture();
    let mut s = sources(&f, None);
    s.master_key_file = None;
    let env: HashMap<String, String> = HashMap::new();
    let err = SecretStore::load(&s, &env, [("acme", "pd")], &FingerprintKey::fixed(0)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::MasterKey {
                source: MasterKeyError::Absent,
                ..
            }
        ),
        "{err}"
    );
    let env: HashMap<String, String> = [(
        MASTER_KEY_ENV_NAME.to_owned(),
        MasterKey::generate().to_base64().to_string(),
    )]
    .into();
    let err = SecretStore::load(&s, &env, [("acme", "pd")], &FingerprintKey::fixed(0)).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
}

#[test]
fn timestamps_parse_any_offset_and_print_utc() {
    let t = Timestamp::parse("2026-04-01T02:00:00+02:00").unwrap();
    assert_eq!(t.to_rfc3339(), "2026-04-01T00:00:00Z");
    assert!(Timestamp::parse("2026-04-01")
        .unwrap_err()
        .contains("RFC 3339"));
}
