//! `clickflow generate`: the seeded synthetic workload ([`crate::workload`])
//! as JSON Lines, to a file (gzip when it ends in `.gz`) or stdout.
//!
//! Each option overrides the `[generator]` section of `--config`, which
//! overrides [`GeneratorConfig::default`]; `--help` shows those defaults (a
//! test keeps the text and the defaults in step). The config is validated by
//! [`Generator::new`] before the output file is created, so a bad value
//! leaves no empty file behind.

use crate::workload::{Generator, GeneratorConfig};
use anyhow::{anyhow, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The options of `clickflow generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Config file whose `[generator]` section is the base.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output file (`-` for stdout); `.gz` compresses.
    #[arg(long, default_value = "-")]
    output: PathBuf,
    /// Human users [default: 10000, or `generator.users` of --config]
    #[arg(long)]
    users: Option<u64>,
    /// Days of event time [default: 7, or `generator.days` of --config]
    #[arg(long)]
    days: Option<u64>,
    /// Mean events per user per day [default: 8.0, or `generator.events_per_user_day` of --config]
    #[arg(long)]
    rate: Option<f64>,
    /// Share of users that are bots (0..1) [default: 0.01, or `generator.bot_share` of --config]
    #[arg(long)]
    bot_share: Option<f64>,
    /// Random seed [default: 42, or `generator.seed` of --config]
    #[arg(long)]
    seed: Option<u64>,
}

impl GenerateArgs {
    /// `base` (the config's `[generator]` section) with the options given.
    fn overriding(&self, base: GeneratorConfig) -> GeneratorConfig {
        GeneratorConfig {
            users: self.users.unwrap_or(base.users),
            days: self.days.unwrap_or(base.days),
            events_per_user_day: self.rate.unwrap_or(base.events_per_user_day),
            bot_share: self.bot_share.unwrap_or(base.bot_share),
            seed: self.seed.unwrap_or(base.seed),
            ..base
        }
    }
}

/// Writes the workload of `base` with `args`' overrides to `args.output`,
/// then reports the number of lines on stderr.
pub fn generate(args: &GenerateArgs, base: GeneratorConfig) -> Result<()> {
    let mut generator = Generator::new(args.overriding(base)).map_err(|e| anyhow!("generator: {e}"))?;
    let output = &args.output;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, open_output(output)?);
    let mut line = Vec::with_capacity(512);
    let mut n = 0u64;
    while generator.next_line(&mut line) {
        line.push(b'\n');
        out.write_all(&line).with_context(|| format!("cannot write {}", output.display()))?;
        line.clear();
        n += 1;
    }
    out.flush().with_context(|| format!("cannot write {}", output.display()))?;
    // Dropping the writer finishes the gzip stream before the report.
    drop(out);
    eprintln!("clickflow: generated {n} lines");
    Ok(())
}

/// Stdout for `-`, else a new file, gzip-compressed (fast level) for `.gz`.
fn open_output(output: &Path) -> Result<Box<dyn Write>> {
    if output.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout().lock()));
    }
    let file = std::fs::File::create(output).with_context(|| format!("cannot create {}", output.display()))?;
    Ok(if output.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()))
    } else {
        Box::new(file)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command, FromArgMatches};

    fn command() -> Command {
        GenerateArgs::augment_args(Command::new("generate"))
    }

    #[test]
    fn help_shows_the_generator_defaults() {
        let help = command().render_help().to_string();
        let d = GeneratorConfig::default();
        let cases = [
            ("--users", d.users.to_string()),
            ("--days", d.days.to_string()),
            ("--rate", format!("{:?}", d.events_per_user_day)),
            ("--bot-share", d.bot_share.to_string()),
            ("--seed", d.seed.to_string()),
            ("--output", "-".to_string()),
        ];
        for (option, default) in cases {
            let line = help.lines().find(|l| l.trim_start().starts_with(option)).unwrap_or_else(|| panic!("no {option} in\n{help}"));
            assert!(line.contains(&format!("[default: {default}")), "{option} should show its default {default}: {line}");
        }
    }

    #[test]
    fn options_override_the_config_section_and_only_those() {
        let matches = command().try_get_matches_from(["generate", "--users", "5", "--rate", "2.5", "--seed", "9"]).unwrap();
        let args = GenerateArgs::from_arg_matches(&matches).unwrap();
        let base = GeneratorConfig { days: 3, bot_share: 0.5, products: 10, ..GeneratorConfig::default() };
        let g = args.overriding(base);
        assert_eq!((g.users, g.days, g.events_per_user_day, g.bot_share, g.seed, g.products), (5, 3, 2.5, 0.5, 9, 10));
    }
}
