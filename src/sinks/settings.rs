//! The settings fingerprint a store records (SPEC section 11): the section
//! 9 settings of the run that wrote it, as a JSON object of canonical texts
//! ([`Settings`]) in the store's `meta` (SQLite row `settings`, Redis field
//! `settings` of `<prefix>meta`). A run over a store written with other
//! settings stops before writing anything, naming the keys that differ; a
//! store without a fingerprint (new, or written before fingerprints) takes
//! this run's.

use anyhow::{bail, Context, Result};
use clickflow_dataflows::params::{settings_differ, Settings};

/// Checks the fingerprint a store holds (`stored`, its JSON) against this
/// run's; returns the JSON to record when the store has none yet.
pub fn check(stored: Option<&str>, now: &Settings, store: &str) -> Result<Option<String>> {
    let Some(stored) = stored else {
        return Ok(Some(serde_json::to_string(now).context("cannot render the settings")?));
    };
    let stored: Settings = serde_json::from_str(stored).with_context(|| format!("the store {store} is damaged: its recorded settings are not a JSON object of texts"))?;
    let differ = settings_differ(&stored, now);
    if !differ.is_empty() {
        bail!(
            "the store {store} was written with other settings, and would mix old and new records:\n  {}\n(use another store, or remove this one to rebuild it)",
            differ.join("\n  ")
        );
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickflow_dataflows::Params;

    #[test]
    fn a_new_store_takes_the_settings_and_other_settings_are_refused_by_name() {
        let now = Params::default().settings();
        let json = check(None, &now, "s").unwrap().expect("a new store records them");
        assert_eq!(check(Some(&json), &now, "s").unwrap(), None);
        let other = Params { session_gap_ms: 60_000, ..Params::default() }.settings();
        let err = check(Some(&json), &other, "features.db").unwrap_err().to_string();
        assert!(err.contains("the store features.db was written with other settings") && err.contains("sessions.gap: 1800000 there, 60000 here"), "{err}");
        assert!(check(Some("[1]"), &now, "s").unwrap_err().to_string().contains("damaged"));
    }
}
