//! `questline check`: validate configuration without running anything.

use crate::failure::Failure;
use crate::files;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The catalog directory (or a single catalog file).
    #[arg(long, default_value = "examples/catalog")]
    pub catalog: PathBuf,
    /// The mappings directory.
    #[arg(long)]
    pub mappings: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> Result<(), Failure> {
    let mut problems = Vec::new();
    let catalog = match files::load_catalog(&args.catalog) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.extend(e.0);
            None
        }
    };
    let mut mapping_count = 0;
    if let Some(dir) = &args.mappings {
        match files::load_mappings(dir) {
            Ok(m) => mapping_count = m.len(),
            Err(e) => problems.extend(e.0),
        }
    }
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(Failure::Config(lines.join("\n")));
    }
    if let Some(catalog) = catalog {
        for t in catalog.tenants() {
            println!(
                "tenant '{}': {} challenges, {} triggers, {} reward types, {} inventories, {} categories, {} events",
                t.tenant,
                t.challenges.len(),
                t.triggers.len(),
                t.reward_types.len(),
                t.inventories.len(),
                t.categories.len(),
                t.events.len()
            );
        }
    }
    if args.mappings.is_some() {
        println!("{mapping_count} mappings");
    }
    println!("ok");
    Ok(())
}
