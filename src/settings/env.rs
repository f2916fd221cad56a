//! Settings from the environment (docs/configuration.md, "Environment").
//!
//! Three families of variables, each named so that a platform's own conventions fit:
//!
//! - `QUESTLINE__SECTION__KEY`: any key, its path lower-cased with `__` between levels
//!   (`QUESTLINE__PIPELINE__BATCH_SIZE` is `pipeline.batch_size`).
//! - `QUESTLINE_KAFKA_PROPERTY_<NAME>`: the librdkafka property `<name>`, written as
//!   Confluent's images write them: lower-cased, `_` for `.`, `__` for `_`, `___` for `-`
//!   (`QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD` is `sasl.password`). librdkafka's names are
//!   dotted, which the first family would read as levels.
//! - `QUESTLINE_HTTP_AUTH_CLIENT_<id>`: the secret of client `<id>`, the id taken exactly as
//!   written, case included (`QUESTLINE_HTTP_AUTH_CLIENT_MyApp` is client `MyApp`). The first
//!   family lower-cases every level, and client ids are compared as sent.
//!
//! Every variable can instead be given as `<NAME>_FILE`, the path of a file holding the value
//! (Docker and Kubernetes mount secrets as files): the file is read and its trailing newlines
//! dropped. Giving both is an error, as is any key set by two variables: the environment has
//! no order to decide which one wins.
//!
//! Other `QUESTLINE_…` variables (`QUESTLINE_LOG_FORMAT`) are not settings and are left alone,
//! except misspellings of the two families above (`QUESTLINE_KAFKA_PROPERTIES_…`), which would
//! otherwise be ignored without a word.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use super::key::KeyPath;
use super::SettingsError;

/// Any key: `QUESTLINE__SECTION__KEY` (matched in any case, as the `config` crate did).
pub const SETTING_PREFIX: &str = "QUESTLINE__";
/// A librdkafka property: `QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD`.
pub const KAFKA_PROPERTY_PREFIX: &str = "QUESTLINE_KAFKA_PROPERTY_";
/// A client's secret: `QUESTLINE_HTTP_AUTH_CLIENT_MyApp`.
pub const AUTH_CLIENT_PREFIX: &str = "QUESTLINE_HTTP_AUTH_CLIENT_";
/// The value is in the file this variable names.
pub const FILE_SUFFIX: &str = "_FILE";

/// Where misspellings of the two families would land.
const FAMILY_AREAS: [&str; 2] = ["QUESTLINE_KAFKA_", "QUESTLINE_HTTP_"];

/// One key set from the environment, and by which variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSetting {
    /// The variable as the operator wrote it (with `_FILE` when the value came from a file).
    pub var: String,
    pub key: KeyPath,
    pub value: String,
}

/// The settings among `vars` (a process's environment), sorted by variable name.
pub fn settings_from_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<EnvSetting>, SettingsError> {
    let mut ours = BTreeMap::new();
    for (name, value) in vars {
        // A name that is not UTF-8 cannot be one of ours.
        let Ok(name) = name.into_string() else {
            continue;
        };
        if !is_ours(&name) {
            continue;
        }
        let value = value
            .into_string()
            .map_err(|_| SettingsError(format!("{name}: the value is not valid UTF-8")))?;
        ours.insert(name, value);
    }
    let mut settings = Vec::with_capacity(ours.len());
    let mut set_by: BTreeMap<KeyPath, String> = BTreeMap::new();
    for (var, value) in &ours {
        let (name, value) = match var.strip_suffix(FILE_SUFFIX) {
            Some(name) => {
                if ours.contains_key(name) {
                    return Err(SettingsError(format!(
                        "{name} and {var} are both set: give the value or the file, not both"
                    )));
                }
                (name, read_value_file(var, value)?)
            }
            None => (var.as_str(), value.clone()),
        };
        let key = key_of(name).map_err(|reason| SettingsError(format!("{var}: {reason}")))?;
        if let Some(other) = set_by.insert(key.clone(), var.clone()) {
            return Err(SettingsError(format!(
                "{other} and {var} both set {key}: keep one"
            )));
        }
        settings.push(EnvSetting {
            var: var.clone(),
            key,
            value,
        });
    }
    Ok(settings)
}

fn is_ours(name: &str) -> bool {
    starts_with_ignore_case(name, SETTING_PREFIX)
        || FAMILY_AREAS.iter().any(|area| name.starts_with(area))
}

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// The key a variable (without `_FILE`) sets, or why it sets none.
fn key_of(name: &str) -> Result<KeyPath, String> {
    if starts_with_ignore_case(name, SETTING_PREFIX) {
        return setting_key(&name[SETTING_PREFIX.len()..]);
    }
    if let Some(encoded) = name.strip_prefix(KAFKA_PROPERTY_PREFIX) {
        let property = property_name(encoded)?;
        return Ok(KeyPath::new(["kafka", "properties", property.as_str()]));
    }
    if let Some(id) = name.strip_prefix(AUTH_CLIENT_PREFIX) {
        if id.is_empty() {
            return Err(format!("names no client: {AUTH_CLIENT_PREFIX}<client id>"));
        }
        return Ok(KeyPath::new(["http", "auth", "clients", id]));
    }
    Err(format!(
        "not a questline setting: librdkafka properties are {KAFKA_PROPERTY_PREFIX}<NAME>, \
         client secrets {AUTH_CLIENT_PREFIX}<client id>, any other key \
         {SETTING_PREFIX}SECTION__KEY"
    ))
}

/// `KAFKA__BROKERS` → `kafka.brokers`: lower-cased, `__` between levels.
fn setting_key(rest: &str) -> Result<KeyPath, String> {
    let lower = rest.to_lowercase();
    let segments: Vec<&str> = lower.split("__").collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "not a key path: write {SETTING_PREFIX}SECTION__KEY, with `__` between levels"
        ));
    }
    if segments.starts_with(&["kafka", "properties"]) {
        return Err(format!(
            "librdkafka properties are set with {KAFKA_PROPERTY_PREFIX}<NAME> \
             (e.g. {KAFKA_PROPERTY_PREFIX}SASL_PASSWORD for sasl.password): their names are \
             dotted, which this form reads as levels"
        ));
    }
    Ok(KeyPath::new(segments))
}

/// A librdkafka property's name from its environment form, as Confluent's images decode
/// theirs: lower-cased, and each run of underscores is `.` (one), `_` (two) or `-` (three).
pub fn property_name(encoded: &str) -> Result<String, String> {
    if encoded.is_empty() {
        return Err(format!(
            "names no property: {KAFKA_PROPERTY_PREFIX}<NAME>, e.g. {KAFKA_PROPERTY_PREFIX}SASL_PASSWORD"
        ));
    }
    let mut name = String::with_capacity(encoded.len());
    let mut chars = encoded.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            name.extend(c.to_lowercase());
            continue;
        }
        let mut run = 1;
        while chars.next_if_eq(&'_').is_some() {
            run += 1;
        }
        name.push(match run {
            1 => '.',
            2 => '_',
            3 => '-',
            _ => {
                return Err(format!(
                    "{run} underscores in a row: `_` is `.`, `__` is `_`, `___` is `-`"
                ))
            }
        });
    }
    Ok(name)
}

/// The value a `_FILE` variable points at, without its trailing newlines.
fn read_value_file(var: &str, path: &str) -> Result<String, SettingsError> {
    if path.is_empty() {
        return Err(SettingsError(format!("{var}: names no file")));
    }
    let bytes = std::fs::read(Path::new(path))
        .map_err(|e| SettingsError(format!("{var}: cannot read {path}: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| SettingsError(format!("{var}: {path} is not UTF-8 text")))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Vec<EnvSetting>, String> {
        settings_from_env(vars.iter().map(|(k, v)| (k.into(), v.into()))).map_err(|e| e.0)
    }

    fn keys(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        env(vars)
            .unwrap()
            .into_iter()
            .map(|s| (s.key.to_string(), s.value))
            .collect()
    }

    #[test]
    fn setting_variables_are_lower_cased_paths_with_double_underscores() {
        assert_eq!(
            keys(&[
                ("QUESTLINE__PIPELINE__BATCH_SIZE", "2000"),
                ("questline__kafka__brokers", "k:9092"),
            ]),
            [
                ("pipeline.batch_size".to_string(), "2000".to_string()),
                ("kafka.brokers".to_string(), "k:9092".to_string()),
            ]
        );
    }

    #[test]
    fn other_variables_are_left_alone() {
        assert!(keys(&[
            ("QUESTLINE_LOG_FORMAT", "json"),
            ("QUESTLINE_TEST_KAFKA", "127.0.0.1:9092"),
            ("PATH", "/bin"),
            ("KAFKA_SASL_PASSWORD", "x"),
        ])
        .is_empty());
    }

    #[test]
    fn kafka_properties_decode_like_confluents_images() {
        let cases = [
            ("SASL_PASSWORD", "sasl.password"),
            ("GROUP_INSTANCE_ID", "group.instance.id"),
            ("SSL_KEY_PASSWORD", "ssl.key.password"),
            ("PLUGIN_LIBRARY__PATHS", "plugin.library_paths"),
            ("A___B", "a-b"),
            ("fetch_wait_max_ms", "fetch.wait.max.ms"),
        ];
        for (encoded, name) in cases {
            assert_eq!(property_name(encoded).as_deref(), Ok(name), "{encoded}");
        }
        assert!(property_name("A____B")
            .unwrap_err()
            .contains("4 underscores"));
        assert!(property_name("").is_err());
        assert_eq!(
            keys(&[("QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD", "pw")]),
            [(
                "kafka.properties.\"sasl.password\"".to_string(),
                "pw".to_string()
            )]
        );
    }

    #[test]
    fn auth_client_ids_keep_their_case() {
        assert_eq!(
            keys(&[
                ("QUESTLINE_HTTP_AUTH_CLIENT_MyApp", "s1"),
                ("QUESTLINE_HTTP_AUTH_CLIENT_myapp", "s2"),
                ("QUESTLINE_HTTP_AUTH_CLIENT_mobile_app", "s3"),
            ]),
            [
                ("http.auth.clients.MyApp".to_string(), "s1".to_string()),
                ("http.auth.clients.mobile_app".to_string(), "s3".to_string()),
                ("http.auth.clients.myapp".to_string(), "s2".to_string()),
            ]
        );
        // The settings form lower-cases, as it always did.
        assert_eq!(
            keys(&[("QUESTLINE__HTTP__AUTH__CLIENTS__MOBILEAPP", "s")]),
            [("http.auth.clients.mobileapp".to_string(), "s".to_string())]
        );
        assert!(env(&[("QUESTLINE_HTTP_AUTH_CLIENT_", "s")])
            .unwrap_err()
            .contains("names no client"));
    }

    #[test]
    fn file_variables_read_the_file_without_its_trailing_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret  with spaces\n\r\n").unwrap();
        let path = path.to_str().unwrap();
        let settings = env(&[
            ("QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD_FILE", path),
            ("QUESTLINE_HTTP_AUTH_CLIENT_MyApp_FILE", path),
            ("QUESTLINE__HTTP__IMAGES__S3__SECRET_KEY_FILE", path),
        ])
        .unwrap();
        let got: Vec<(&str, String, &str)> = settings
            .iter()
            .map(|s| (s.var.as_str(), s.key.to_string(), s.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "QUESTLINE_HTTP_AUTH_CLIENT_MyApp_FILE",
                    "http.auth.clients.MyApp".to_string(),
                    "s3cret  with spaces"
                ),
                (
                    "QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD_FILE",
                    "kafka.properties.\"sasl.password\"".to_string(),
                    "s3cret  with spaces"
                ),
                (
                    "QUESTLINE__HTTP__IMAGES__S3__SECRET_KEY_FILE",
                    "http.images.s3.secret_key".to_string(),
                    "s3cret  with spaces"
                ),
            ]
        );
    }

    #[test]
    fn a_missing_or_empty_file_name_is_an_error_naming_the_variable() {
        let err = env(&[(
            "QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD_FILE",
            "/nonexistent/questline/pw",
        )])
        .unwrap_err();
        assert!(
            err.starts_with(
                "QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD_FILE: cannot read /nonexistent/questline/pw"
            ),
            "{err}"
        );
        let err = env(&[("QUESTLINE_HTTP_AUTH_CLIENT_app_FILE", "")]).unwrap_err();
        assert_eq!(err, "QUESTLINE_HTTP_AUTH_CLIENT_app_FILE: names no file");
    }

    #[test]
    fn a_value_and_its_file_together_are_an_error() {
        let err = env(&[
            ("QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD", "a"),
            ("QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD_FILE", "/x"),
        ])
        .unwrap_err();
        assert!(err.contains("both set"), "{err}");
        assert!(
            err.contains("QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD_FILE"),
            "{err}"
        );
    }

    #[test]
    fn one_key_from_two_variables_is_an_error() {
        let err = env(&[
            ("QUESTLINE__HTTP__AUTH__CLIENTS__APP", "a"),
            ("QUESTLINE_HTTP_AUTH_CLIENT_app", "b"),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            "QUESTLINE_HTTP_AUTH_CLIENT_app and QUESTLINE__HTTP__AUTH__CLIENTS__APP both set \
             http.auth.clients.app: keep one"
        );
        assert!(env(&[
            ("QUESTLINE__PIPELINE__BATCH_SIZE", "1"),
            ("questline__pipeline__batch_size", "2"),
        ])
        .is_err());
    }

    #[test]
    fn properties_in_the_settings_form_and_misspelt_families_are_refused_with_the_right_form() {
        let err = env(&[("QUESTLINE__KAFKA__PROPERTIES__SASL__PASSWORD", "x")]).unwrap_err();
        assert!(
            err.starts_with("QUESTLINE__KAFKA__PROPERTIES__SASL__PASSWORD: "),
            "{err}"
        );
        assert!(
            err.contains("QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD"),
            "{err}"
        );
        let err = env(&[("QUESTLINE_KAFKA_PROPERTIES_SASL_PASSWORD", "x")]).unwrap_err();
        assert!(err.contains("QUESTLINE_KAFKA_PROPERTY_<NAME>"), "{err}");
        let err = env(&[("QUESTLINE_HTTP_AUTH_CLIENTS_app", "x")]).unwrap_err();
        assert!(
            err.contains("QUESTLINE_HTTP_AUTH_CLIENT_<client id>"),
            "{err}"
        );
        let err = env(&[("QUESTLINE__PIPELINE____BATCH_SIZE", "1")]).unwrap_err();
        assert!(err.contains("not a key path"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_an_error_naming_the_variable() {
        use std::os::unix::ffi::OsStringExt;
        let err = settings_from_env([(
            OsString::from("QUESTLINE__KAFKA__BROKERS"),
            OsString::from_vec(vec![0xff, 0xfe]),
        )])
        .unwrap_err();
        assert_eq!(
            err.0,
            "QUESTLINE__KAFKA__BROKERS: the value is not valid UTF-8"
        );
    }
}
