//! Admin changes as edits of a tenant's catalog files: an entity created through the API is
//! appended to the tenant's `admin.toml`; one updated is changed where it is written, with
//! the file's comments and layout kept (toml_edit). The result is checked and published as
//! the tenant's next version like any `catalog push`.

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};

use crate::core::catalog::{entity_id, SourceFile};
use crate::core::model::DEFAULT_TENANT;

/// The file admin-created entities go to.
pub const ADMIN_FILE: &str = "admin.toml";

/// The catalog arrays the admin API manages, and how their entries are identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    RewardTypes,
    Inventories,
    Operations,
}

impl Section {
    pub fn array(self) -> &'static str {
        match self {
            Section::RewardTypes => "reward_types",
            Section::Inventories => "inventories",
            Section::Operations => "operations",
        }
    }

    /// What one entry is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Section::RewardTypes => "reward type",
            Section::Inventories => "inventory",
            Section::Operations => "operation",
        }
    }

    /// The entry's id: its `id`, else (types and operations) the one derived from its name.
    pub fn id_of(self, tenant: &str, entry: &Table) -> Option<String> {
        if let Some(id) = entry.get("id").and_then(Item::as_str) {
            return Some(id.to_string());
        }
        let (kind, name_key) = match self {
            Section::RewardTypes => ("reward_type", "reward_type"),
            Section::Operations => ("operation", "code"),
            Section::Inventories => return None,
        };
        let name = entry.get(name_key).and_then(Item::as_str)?;
        Some(entity_id(tenant, kind, name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    NotFound(String),
    #[error("{file}: not a TOML document: {message}")]
    Unreadable { file: String, message: String },
}

fn parse(file: &SourceFile) -> Result<DocumentMut, EditError> {
    file.text
        .parse::<DocumentMut>()
        .map_err(|e| EditError::Unreadable {
            file: file.name.clone(),
            message: e.to_string(),
        })
}

/// `files` with `entry` appended to `section` of the tenant's admin file (created if needed).
pub fn create(
    files: &[SourceFile],
    tenant: &str,
    section: Section,
    entry: Table,
) -> Result<Vec<SourceFile>, EditError> {
    let mut out = files.to_vec();
    let index = match out.iter().position(|f| f.name == ADMIN_FILE) {
        Some(i) => i,
        None => {
            let mut header = String::from(
                "# Written by the admin API (questline); edit it like any catalog file.\n",
            );
            if tenant != DEFAULT_TENANT || files.is_empty() {
                header.push_str(&format!("tenant = {}\n", Value::from(tenant)));
            }
            out.push(SourceFile {
                name: ADMIN_FILE.into(),
                text: header,
            });
            out.len() - 1
        }
    };
    let mut doc = parse(&out[index])?;
    let array = doc
        .entry(section.array())
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
    match array.as_array_of_tables_mut() {
        Some(tables) => tables.push(entry),
        None => {
            let mut tables = ArrayOfTables::new();
            tables.push(entry);
            *array = Item::ArrayOfTables(tables);
        }
    }
    out[index].text = doc.to_string();
    Ok(out)
}

/// `files` with the entry of `section` whose id is `id` changed: each of `fields` set.
pub fn update(
    files: &[SourceFile],
    tenant: &str,
    section: Section,
    id: &str,
    fields: &Table,
) -> Result<Vec<SourceFile>, EditError> {
    let mut out = files.to_vec();
    for file in &mut out {
        let mut doc = parse(file)?;
        let Some(tables) = doc
            .get_mut(section.array())
            .and_then(Item::as_array_of_tables_mut)
        else {
            continue;
        };
        let found = tables
            .iter_mut()
            .find(|t| section.id_of(tenant, t).as_deref() == Some(id));
        if let Some(entry) = found {
            for (key, value) in fields.iter() {
                entry.insert(key, value.clone());
            }
            file.text = doc.to_string();
            return Ok(out);
        }
    }
    Err(EditError::NotFound(format!(
        "no {} with id '{id}' in tenant '{tenant}'",
        section.noun()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml_edit::value;

    fn file(name: &str, text: &str) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    fn entry(pairs: &[(&str, &str)]) -> Table {
        let mut t = Table::new();
        for (k, v) in pairs {
            t.insert(k, value(*v));
        }
        t
    }

    #[test]
    fn created_entities_go_to_the_admin_file_with_its_tenant() {
        let files = [file("rewards.toml", "tenant = \"acme\"\n")];
        let out = create(
            &files,
            "acme",
            Section::RewardTypes,
            entry(&[("reward_type", "tshirt")]),
        )
        .unwrap();
        assert_eq!(out[0], files[0]);
        assert_eq!(out[1].name, ADMIN_FILE);
        assert!(out[1].text.contains("tenant = \"acme\""), "{}", out[1].text);
        assert!(
            out[1]
                .text
                .contains("[[reward_types]]\nreward_type = \"tshirt\""),
            "{}",
            out[1].text
        );
        let again = create(
            &out,
            "acme",
            Section::RewardTypes,
            entry(&[("reward_type", "mug")]),
        )
        .unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again[1].text.matches("[[reward_types]]").count(), 2);
    }

    #[test]
    fn updates_change_the_entry_where_it_is_and_keep_comments() {
        let text = "# Shirts, by hand\n[[inventories]]\nid = \"fall\" # the first batch\nreward_type = \"tshirt\"\namount_total = 2\n";
        let files = [file("rewards.toml", text)];
        let mut fields = Table::new();
        fields.insert("amount_total", value(5));
        let out = update(&files, "default", Section::Inventories, "fall", &fields).unwrap();
        assert!(out[0].text.contains("# Shirts, by hand"), "{}", out[0].text);
        assert!(out[0].text.contains("# the first batch"), "{}", out[0].text);
        assert!(out[0].text.contains("amount_total = 5"), "{}", out[0].text);
        let missing =
            update(&files, "default", Section::Inventories, "spring", &fields).unwrap_err();
        assert!(matches!(missing, EditError::NotFound(_)));
    }

    #[test]
    fn reward_types_written_without_an_id_are_found_by_their_derived_one() {
        let files = [file(
            "rewards.toml",
            "[[reward_types]]\nreward_type = \"points\"\n",
        )];
        let id = entity_id("default", "reward_type", "points");
        let mut fields = Table::new();
        fields.insert("active", value(false));
        let out = update(&files, "default", Section::RewardTypes, &id, &fields).unwrap();
        assert!(out[0].text.contains("active = false"), "{}", out[0].text);
    }
}
