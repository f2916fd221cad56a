//! A setting's path from the root, as TOML writes it: `pipeline.batch_size`,
//! `kafka.properties."sasl.password"`. Errors name keys this way, so a reader can find the
//! key in a file whether it came from there or from the environment.

use std::fmt;

/// The segments of a key's path, e.g. `["kafka", "properties", "sasl.password"]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyPath(Vec<String>);

impl KeyPath {
    pub fn new<S: Into<String>>(segments: impl IntoIterator<Item = S>) -> Self {
        KeyPath(segments.into_iter().map(Into::into).collect())
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &KeyPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The tables that contain this key, nearest first (the root excluded).
    pub fn parents(&self) -> impl Iterator<Item = KeyPath> + '_ {
        (1..self.0.len())
            .rev()
            .map(|n| KeyPath(self.0[..n].to_vec()))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            let bare = !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if bare {
                f.write_str(segment)?;
            } else {
                // A TOML basic string, so the key can be pasted into a file.
                f.write_str("\"")?;
                for c in segment.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        c if c.is_control() => write!(f, "\\u{:04X}", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_as_toml_dotted_keys() {
        assert_eq!(
            KeyPath::new(["pipeline", "batch_size"]).to_string(),
            "pipeline.batch_size"
        );
        assert_eq!(
            KeyPath::new(["kafka", "properties", "sasl.password"]).to_string(),
            "kafka.properties.\"sasl.password\""
        );
        assert_eq!(
            KeyPath::new(["http", "auth", "clients", "My \"app\""]).to_string(),
            "http.auth.clients.\"My \\\"app\\\"\""
        );
        assert_eq!(KeyPath::new(["a", ""]).to_string(), "a.\"\"");
    }

    #[test]
    fn parents_are_nearest_first_without_the_root() {
        let key = KeyPath::new(["http", "images", "s3", "bucket"]);
        let parents: Vec<String> = key.parents().map(|k| k.to_string()).collect();
        assert_eq!(parents, ["http.images.s3", "http.images", "http"]);
        assert!(key.starts_with(&KeyPath::new(["http", "images"])));
        assert!(!KeyPath::new(["http"]).starts_with(&key));
    }
}
