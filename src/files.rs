//! Reading the catalog and mapping directories: the IO edge of configuration.
//!
//! Parsing and validation are pure (in [`crate::core`]); this module only lists and reads
//! files, in name order so every run sees them the same way, and puts the file's path and
//! the line on every error.

use crate::core::catalog::{Catalog, CatalogError, CatalogErrors, CatalogHistory};
use crate::core::mapping::{self, Mapping};
use std::path::{Path, PathBuf};

/// The `.toml` files of a directory, sorted by name.
fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CatalogError {
        file: dir.display().to_string(),
        line: 0,
        message: format!("cannot read directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<String, CatalogError> {
    std::fs::read_to_string(path).map_err(|e| CatalogError {
        file: path.display().to_string(),
        line: 0,
        message: format!("cannot read file: {e}"),
    })
}

/// Loads a catalog from a directory of `.toml` files (or a single file).
pub fn load_catalog(path: &Path) -> Result<Catalog, CatalogErrors> {
    Catalog::from_sources(&load_catalog_sources(path)?)
}

/// Loads a catalog's files as every tenant's version 0.
pub fn load_catalog_history(path: &Path) -> Result<CatalogHistory, CatalogErrors> {
    CatalogHistory::from_sources(&load_catalog_sources(path)?)
}

/// The `(path, text)` of a catalog directory's `.toml` files in name order (or of one file).
pub fn load_catalog_sources(path: &Path) -> Result<Vec<(String, String)>, CatalogErrors> {
    let files = if path.is_dir() {
        toml_files(path).map_err(|e| CatalogErrors(vec![e]))?
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(CatalogErrors(vec![CatalogError {
            file: path.display().to_string(),
            line: 0,
            message: "no .toml catalog files".into(),
        }]));
    }
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match read(&f) {
            Ok(text) => sources.push((f.display().to_string(), text)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(CatalogErrors(errors));
    }
    Ok(sources)
}

/// Parses one mapping file's text; errors carry the file and line.
pub fn parse_mapping(name: &str, text: &str) -> Result<Mapping, CatalogErrors> {
    let mapping: Mapping = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            })
            .unwrap_or(0);
        CatalogErrors(vec![CatalogError {
            file: name.to_string(),
            line,
            message: e.message().to_string(),
        }])
    })?;
    let problems = mapping::validate(&mapping);
    if problems.is_empty() {
        Ok(mapping)
    } else {
        Err(CatalogErrors(
            problems
                .into_iter()
                .map(|message| CatalogError {
                    file: name.to_string(),
                    line: 0,
                    message,
                })
                .collect(),
        ))
    }
}

/// Loads one mapping file.
pub fn load_mapping(path: &Path) -> Result<Mapping, CatalogErrors> {
    let text = read(path).map_err(|e| CatalogErrors(vec![e]))?;
    parse_mapping(&path.display().to_string(), &text)
}

/// Loads every mapping of a directory; two mappings may not claim the same topic.
pub fn load_mappings(dir: &Path) -> Result<Vec<Mapping>, CatalogErrors> {
    let files = toml_files(dir).map_err(|e| CatalogErrors(vec![e]))?;
    let mut mappings: Vec<Mapping> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match load_mapping(&f) {
            Ok(m) => {
                for topic in &m.topics {
                    if let Some(other) = mappings.iter().find(|o| o.topics.contains(topic)) {
                        errors.push(CatalogError {
                            file: f.display().to_string(),
                            line: 0,
                            message: format!(
                                "topic '{topic}' is already mapped by '{}'",
                                other.name
                            ),
                        });
                    }
                }
                mappings.push(m);
            }
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() {
        Ok(mappings)
    } else {
        Err(CatalogErrors(errors))
    }
}
