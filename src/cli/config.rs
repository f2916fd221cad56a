//! `questline config`: the configuration a command would run with, after the defaults, every
//! `--config` file and the environment, as TOML with its secrets redacted. What an operator
//! compares with what they meant to deploy; it refuses an invalid configuration exactly as
//! `run` and `serve` do, so it is also the check to run before them.

use std::fmt::Write as _;

use super::ConfigArgs;
use crate::failure::Failure;

pub fn run(args: ConfigArgs) -> Result<(), Failure> {
    let settings = crate::app::settings_from(&args.config)?;
    let body = settings
        .redacted()
        .to_toml()
        .map_err(|e| Failure::Runtime(e.into()))?;
    let mut out = String::from("# questline: the effective configuration (defaults");
    for file in &args.config {
        let _ = write!(out, ", {}", file.display());
    }
    out.push_str(", then the environment); secrets are shown as \"");
    out.push_str(crate::settings::REDACTED);
    out.push_str("\"\n\n");
    out.push_str(&body);
    print!("{out}");
    Ok(())
}
