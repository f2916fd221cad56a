//! The configuration's layers merged into one: the `--config` files in the order given, then
//! the environment; the defaults fill whatever none of them sets. A later layer replaces a
//! value (a list included) and merges into a table.
//!
//! Each layer is also checked alone, where its errors can still be placed: a file by `toml`,
//! which knows lines; a variable on its own, so an unknown key or a bad number names it. The
//! layers remember where each key came from, so a value refused after merging can be traced
//! back to its file and line, or to its variable.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::env::EnvSetting;
use super::key::KeyPath;
use super::{S3Settings, Settings, SettingsError};

/// The merged layers, and where their keys are.
#[derive(Debug, Default)]
pub struct Layers {
    merged: toml::Table,
    files: Vec<FileLayer>,
    env: Vec<EnvSetting>,
}

#[derive(Debug)]
struct FileLayer {
    path: PathBuf,
    /// The line of each key the file sets, tables included.
    lines: BTreeMap<KeyPath, usize>,
}

/// Where a key was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    File { path: &'a Path, line: usize },
    Env { var: &'a str },
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env { var } => f.write_str(var),
        }
    }
}

impl Layers {
    /// Adds a file on top of the layers so far; a file that is not valid on its own fails
    /// here, with its line.
    pub fn add_file(&mut self, path: &Path) -> Result<(), SettingsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SettingsError(format!("{}: {e}", path.display())))?;
        let at_line = |e: toml::de::Error| {
            let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(0);
            SettingsError(format!("{}:{line}: {}", path.display(), e.message()))
        };
        // Unknown keys and wrong types, while the line is still known.
        toml::from_str::<Settings>(&text).map_err(at_line)?;
        let table: toml::Table = toml::from_str(&text).map_err(at_line)?;
        merge(&mut self.merged, table);
        self.files.push(FileLayer {
            path: path.to_path_buf(),
            lines: key_lines(&text),
        });
        Ok(())
    }

    /// Adds the environment on top of the files. Values are typed by the key they set (a
    /// number where the key wants one, a comma-separated list for a list); anything else,
    /// map entries included, stays the string it was, `007` and `true` alike.
    pub fn add_env(&mut self, settings: Vec<EnvSetting>) -> Result<(), SettingsError> {
        let schema = schema();
        let mut table = toml::Table::new();
        for setting in &settings {
            let fail = |reason: &dyn fmt::Display| {
                // A reason that already names its key (a retired key's) is not prefixed twice.
                let (key, reason) = (setting.key.to_string(), reason.to_string());
                match reason.starts_with(&format!("{key}: ")) {
                    true => SettingsError(format!("{}: {reason}", setting.var)),
                    false => SettingsError(format!("{}: {key}: {reason}", setting.var)),
                }
            };
            let value = typed(&schema, &setting.key, &setting.value).map_err(|r| fail(&r))?;
            let mut alone = toml::Table::new();
            insert(&mut alone, setting.key.segments(), value.clone());
            toml::Value::Table(alone)
                .try_into::<Settings>()
                .map_err(|e| fail(&e.message()))?;
            if !insert(&mut table, setting.key.segments(), value) {
                return Err(fail(
                    &"another variable sets a key inside or around this one: keep one",
                ));
            }
        }
        merge(&mut self.merged, table);
        self.env = settings;
        Ok(())
    }

    /// The settings of all layers, on the defaults.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        toml::Value::Table(self.merged.clone())
            .try_into::<Settings>()
            .map_err(|e| SettingsError(format!("configuration: {e}")))
    }

    /// Where `key` was last set, if a layer sets it.
    pub fn origin(&self, key: &KeyPath) -> Option<Origin<'_>> {
        if let Some(s) = self.env.iter().find(|s| &s.key == key) {
            return Some(Origin::Env { var: &s.var });
        }
        self.files.iter().rev().find_map(|f| {
            f.lines.get(key).map(|&line| Origin::File {
                path: &f.path,
                line,
            })
        })
    }

    /// Where to look for the cause of a problem with `keys` (the first is the key at fault):
    /// where one of them was set or, when all of them are defaults, where their nearest table
    /// was (a required key missing from a table some layer started).
    pub fn origin_near(&self, keys: &[&KeyPath]) -> Option<Origin<'_>> {
        if let Some(origin) = keys.iter().find_map(|k| self.origin(k)) {
            return Some(origin);
        }
        let first = keys.first()?;
        first.parents().find_map(|table| {
            if let Some(s) = self.env.iter().find(|s| s.key.starts_with(&table)) {
                return Some(Origin::Env { var: &s.var });
            }
            self.origin(&table)
        })
    }
}

/// The line (from 1) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Every key of a file (tables included) and the line it is written on.
fn key_lines(text: &str) -> BTreeMap<KeyPath, usize> {
    fn walk(
        table: &dyn toml_edit::TableLike,
        path: &mut Vec<String>,
        text: &str,
        lines: &mut BTreeMap<KeyPath, usize>,
    ) {
        for (name, item) in table.iter() {
            path.push(name.to_string());
            let span = table.get_key_value(name).and_then(|(key, _)| key.span());
            if let Some(span) = span {
                lines.insert(
                    KeyPath::new(path.iter().cloned()),
                    line_of(text, span.start),
                );
            }
            if let Some(sub) = item.as_table_like() {
                walk(sub, path, text, lines);
            }
            path.pop();
        }
    }
    let mut lines = BTreeMap::new();
    if let Ok(doc) = toml_edit::ImDocument::parse(text) {
        walk(doc.as_table(), &mut Vec::new(), text, &mut lines);
    }
    lines
}

/// Merges `top` into `base`: tables merge, any other value replaces.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Puts `value` at `path`, making tables on the way; false if a value is already there or
/// on the way.
fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut table = table;
    for name in parents {
        let next = table
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match next {
            toml::Value::Table(t) => table = t,
            _ => return false,
        }
    }
    if table.contains_key(last) {
        return false;
    }
    table.insert(last.clone(), value);
    true
}

/// The defaults with every optional section present: what tells a variable's value its type.
fn schema() -> toml::Table {
    let mut full = Settings::default();
    full.http.images.s3 = Some(S3Settings::default());
    full.http.images.base_url = Some(String::new());
    match toml::Value::try_from(&full) {
        Ok(toml::Value::Table(table)) => table,
        // Unreachable for these types; every value then stays a string, which the settings'
        // own types still check.
        _ => toml::Table::new(),
    }
}

/// A variable's value as the type the key's default has.
fn typed(schema: &toml::Table, key: &KeyPath, raw: &str) -> Result<toml::Value, String> {
    let mut table = schema;
    let segments = key.segments();
    let mut like = None;
    for (i, name) in segments.iter().enumerate() {
        match table.get(name) {
            Some(toml::Value::Table(t)) if i + 1 < segments.len() => table = t,
            Some(value) if i + 1 == segments.len() => like = Some(value),
            _ => break,
        }
    }
    Ok(match like {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected a whole number, got {raw:?}"))?,
        ),
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(format!("expected true or false, got {raw:?}")),
            })
        }
        Some(toml::Value::Array(_)) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str, key: &[&str], value: &str) -> EnvSetting {
        EnvSetting {
            var: var.into(),
            key: KeyPath::new(key.iter().copied()),
            value: value.into(),
        }
    }

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn later_files_win_and_tables_merge() {
        let dir = tempfile::tempdir().unwrap();
        let mut layers = Layers::default();
        layers
            .add_file(&file(
                dir.path(),
                "base.toml",
                "[kafka]\nbrokers = \"a:9092\"\ngroup_id = \"g\"\n[kafka.properties]\n\"linger.ms\" = \"5\"\n\
                 [store.scylla]\nnodes = [\"n1:9042\", \"n2:9042\"]\n",
            ))
            .unwrap();
        layers
            .add_file(&file(
                dir.path(),
                "site.toml",
                "[kafka]\nbrokers = \"b:9092\"\n[kafka.properties]\n\"client.id\" = \"c\"\n\
                 [store.scylla]\nnodes = [\"n3:9042\"]\n",
            ))
            .unwrap();
        let s = layers.settings().unwrap();
        assert_eq!(s.kafka.brokers, "b:9092");
        assert_eq!(s.kafka.group_id, "g");
        assert_eq!(s.kafka.properties.len(), 2);
        assert_eq!(s.store.scylla.nodes, ["n3:9042"]);
        assert_eq!(s.pipeline.batch_size, 500);
        let brokers = KeyPath::new(["kafka", "brokers"]);
        let group = KeyPath::new(["kafka", "group_id"]);
        assert_eq!(
            layers.origin(&brokers).unwrap().to_string(),
            format!("{}:2", dir.path().join("site.toml").display())
        );
        assert_eq!(
            layers.origin(&group).unwrap().to_string(),
            format!("{}:3", dir.path().join("base.toml").display())
        );
        assert_eq!(
            layers.origin(&KeyPath::new(["pipeline", "batch_size"])),
            None
        );
    }

    #[test]
    fn an_error_in_any_file_names_that_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut layers = Layers::default();
        layers
            .add_file(&file(dir.path(), "a.toml", "[pipeline]\nbatch_size = 10\n"))
            .unwrap();
        let err = layers
            .add_file(&file(
                dir.path(),
                "b.toml",
                "[pipeline]\n\nlinger_ms = -1\n",
            ))
            .unwrap_err()
            .0;
        assert!(err.contains("b.toml:3: "), "{err}");
        assert!(err.contains("-1"), "{err}");
    }

    #[test]
    fn environment_values_take_the_type_of_their_key_and_strings_stay_strings() {
        let mut layers = Layers::default();
        layers
            .add_env(vec![
                env("V1", &["pipeline", "batch_size"], " 2000"),
                env("V2", &["kafka", "create_topics"], "FALSE"),
                env("V3", &["store", "scylla", "nodes"], "a:9042, b:9042"),
                env("V4", &["kafka", "group_id"], "007"),
                env("V5", &["http", "auth", "clients", "App"], "true"),
                env("V6", &["http", "images", "s3", "expires_seconds"], "60"),
                env("V7", &["kafka", "properties", "linger.ms"], "1e3"),
            ])
            .unwrap();
        let s = layers.settings().unwrap();
        assert_eq!(s.pipeline.batch_size, 2000);
        assert!(!s.kafka.create_topics);
        assert_eq!(s.store.scylla.nodes, ["a:9042", "b:9042"]);
        assert_eq!(s.kafka.group_id, "007");
        assert_eq!(s.http.auth.clients["App"], "true");
        assert_eq!(s.http.images.s3.as_ref().unwrap().expires_seconds, 60);
        assert_eq!(s.kafka.properties["linger.ms"], "1e3");
        assert_eq!(
            layers
                .origin(&KeyPath::new(["kafka", "group_id"]))
                .unwrap()
                .to_string(),
            "V4"
        );
    }

    #[test]
    fn a_bad_variable_is_named_with_its_key() {
        let cases = [
            (
                env("QUESTLINE__PIPELINE__BATCH_SIZE", &["pipeline", "batch_size"], "lots"),
                "QUESTLINE__PIPELINE__BATCH_SIZE: pipeline.batch_size: expected a whole number, got \"lots\"",
            ),
            (
                env("QUESTLINE__PIPELINE__BATCH_SIZE", &["pipeline", "batch_size"], "-5"),
                "QUESTLINE__PIPELINE__BATCH_SIZE: pipeline.batch_size: invalid value: integer `-5`, expected usize",
            ),
            (
                env("QUESTLINE__PIPELINE__BATCH_SIZ", &["pipeline", "batch_siz"], "5"),
                "QUESTLINE__PIPELINE__BATCH_SIZ: pipeline.batch_siz: unknown field `batch_siz`",
            ),
            (
                env("QUESTLINE__STORE__KIND", &["store", "kind"], "postgres"),
                "QUESTLINE__STORE__KIND: store.kind: unknown variant `postgres`",
            ),
            (
                env("QUESTLINE__KAFKA__CREATE_TOPICS", &["kafka", "create_topics"], "yes"),
                "QUESTLINE__KAFKA__CREATE_TOPICS: kafka.create_topics: expected true or false, got \"yes\"",
            ),
        ];
        for (setting, want) in cases {
            let err = Layers::default().add_env(vec![setting]).unwrap_err().0;
            assert!(err.starts_with(want), "{err}\nwanted: {want}");
        }
        let err = Layers::default()
            .add_env(vec![
                env("A", &["pipeline"], "5"),
                env("B", &["pipeline", "batch_size"], "5"),
            ])
            .unwrap_err()
            .0;
        assert!(err.starts_with("A: pipeline: "), "{err}");
    }

    #[test]
    fn the_origin_of_a_default_is_the_nearest_table_a_layer_started() {
        let dir = tempfile::tempdir().unwrap();
        let mut layers = Layers::default();
        layers
            .add_file(&file(
                dir.path(),
                "q.toml",
                "[http]\nlisten = \"0.0.0.0:80\"\n\n[http.images.s3]\nendpoint = \"https://s3\"\n",
            ))
            .unwrap();
        let bucket = KeyPath::new(["http", "images", "s3", "bucket"]);
        assert_eq!(layers.origin(&bucket), None);
        assert_eq!(
            layers.origin_near(&[&bucket]).unwrap().to_string(),
            format!("{}:4", dir.path().join("q.toml").display())
        );
        layers
            .add_env(vec![env(
                "QUESTLINE__HTTP__IMAGES__S3__REGION",
                &["http", "images", "s3", "region"],
                "eu",
            )])
            .unwrap();
        assert_eq!(
            layers.origin_near(&[&bucket]).unwrap().to_string(),
            "QUESTLINE__HTTP__IMAGES__S3__REGION"
        );
    }

    #[test]
    fn lines_of_dotted_and_inline_keys() {
        let lines = key_lines(
            "[kafka]\nproperties.\"sasl.password\" = \"x\"\n[http]\nauth = { clients = { MyApp = \"s\" } }\n",
        );
        assert_eq!(
            lines[&KeyPath::new(["kafka", "properties", "sasl.password"])],
            2
        );
        assert_eq!(
            lines[&KeyPath::new(["http", "auth", "clients", "MyApp"])],
            4
        );
    }
}
