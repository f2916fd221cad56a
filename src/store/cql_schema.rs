//! The CQL schema: numbered migration files from `schemas/cql/`, compiled into the binary.
//!
//! `include_str!` keeps `questline migrate` self-contained (no schema directory to ship next
//! to the binary) while the files stay readable and usable by hand with cqlsh. Each file is
//! a list of statements with two placeholders, `{keyspace}` and `{replication}`.

use super::ConfigError;

/// One numbered schema file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub text: &'static str,
}

/// Every migration, in the order they apply. Append only: a released file never changes.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_keyspace.cql",
        text: include_str!("../../schemas/cql/001_keyspace.cql"),
    },
    Migration {
        version: 2,
        name: "002_state.cql",
        text: include_str!("../../schemas/cql/002_state.cql"),
    },
    Migration {
        version: 3,
        name: "003_outbox.cql",
        text: include_str!("../../schemas/cql/003_outbox.cql"),
    },
];

/// The default replication for a keyspace that `migrate` creates: fine for one node and for
/// development. Production clusters create the keyspace beforehand (NetworkTopologyStrategy,
/// replication factor 3); `migrate` never alters an existing keyspace.
pub const DEFAULT_REPLICATION: &str =
    "{'class': 'NetworkTopologyStrategy', 'replication_factor': 1}";

impl Migration {
    /// The file's statements for `keyspace`, comments removed, in order.
    pub fn statements(&self, keyspace: &str, replication: &str) -> Vec<String> {
        let without_comments: String = self
            .text
            .lines()
            .map(|line| match line.find("--") {
                Some(i) => &line[..i],
                None => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        without_comments
            .split(';')
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.replace("{keyspace}", keyspace)
                    .replace("{replication}", replication)
            })
            .collect()
    }
}

/// Checks a keyspace name before it is spliced into statements (names cannot be bound).
///
/// Unquoted CQL identifiers are case-insensitive, so only lower case is accepted: what the
/// operator writes is exactly what `DESCRIBE KEYSPACES` shows.
pub fn validate_keyspace(name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 48 {
        Ok(())
    } else {
        Err(ConfigError::Keyspace {
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_idempotent() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:03}_", m.version)));
            let statements = m.statements("ks", DEFAULT_REPLICATION);
            assert!(!statements.is_empty());
            for s in statements {
                assert!(s.contains("IF NOT EXISTS"), "not idempotent: {s}");
                assert!(!s.contains('{') || s.contains("replication ="), "{s}");
                // frozen<...> crashes the CQL test server; counters and UDTs are unsupported.
                let lower = s.to_lowercase();
                assert!(
                    !lower.contains("frozen") && !lower.contains("counter"),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn statements_are_qualified_and_comment_free() {
        let statements = MIGRATIONS[1].statements("questline", DEFAULT_REPLICATION);
        assert!(statements.iter().all(|s| s.contains("questline.")));
        assert!(statements.iter().all(|s| !s.contains("--")));
        assert_eq!(statements.len(), 7);
    }

    #[test]
    fn keyspace_names() {
        assert!(validate_keyspace("questline").is_ok());
        assert!(validate_keyspace("q_1").is_ok());
        for bad in [
            "",
            "1q",
            "Questline",
            "a-b",
            "a b",
            "a;drop",
            &"a".repeat(49),
        ] {
            assert!(validate_keyspace(bad).is_err(), "{bad}");
        }
    }
}
