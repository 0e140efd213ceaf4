//! Conformance cases (`tests/conformance/README.md` has the format),
//! discovered at run time in two places: the repository's copies under
//! `tests/conformance/`, always there, and `../shared/conformance` beside
//! the repository, when it exists (new cases appear there first).
//!
//! A case is a folder with a `config.toml`; it must then also have
//! `events.jsonl[.gz]` and `expected.json[.gz]` (without them discovery
//! panics, naming the folder), and may have `labels.jsonl[.gz]` and
//! `expected-training.jsonl[.gz]` (SPEC section 10). Other folders are not
//! cases.
//!
//! A shared case with the name and exactly the files (names and bytes) of
//! a repository copy is that copy, and runs once, under its name. Any other
//! shared case, a newer version of a copy or one not copied yet, runs too,
//! as `shared/<name>`: the copies never hide what the shared folder says.

use crate::files::read_maybe_gz;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The workspace: this crate's parent folder.
fn workspace_dir() -> PathBuf {
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit.parent().unwrap_or(testkit).to_path_buf()
}

/// `tests/conformance` in the workspace: the repository's copies of the cases.
pub fn repo_cases_dir() -> PathBuf {
    workspace_dir().join("tests").join("conformance")
}

/// `../shared` beside the workspace (SPEC, conformance cases, real data);
/// it may not exist.
pub fn shared_dir() -> PathBuf {
    let workspace = workspace_dir();
    workspace.parent().unwrap_or(&workspace).join("shared")
}

/// `../shared/conformance`, where [`cases`] also looks when it exists.
pub fn shared_cases_dir() -> PathBuf {
    shared_dir().join("conformance")
}

/// One conformance case: a folder with a config, an input and the expected store.
#[derive(Debug, Clone)]
pub struct Case {
    /// The folder name; `shared/<folder name>` for a shared case that is
    /// not identical to a repository copy.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// `config.toml`.
    pub config: PathBuf,
    /// `events.jsonl` or `events.jsonl.gz`.
    pub events: PathBuf,
    /// `expected.json` or `expected.json.gz`.
    pub expected_path: PathBuf,
    /// `labels.jsonl[.gz]`, for a case with labels (SPEC section 10).
    pub labels: Option<PathBuf>,
    /// `expected-training.jsonl[.gz]`, what a run with those labels must write.
    pub expected_training: Option<PathBuf>,
}

impl Case {
    /// The parsed `expected.json` (gunzipped if needed).
    pub fn expected(&self) -> Value {
        let text = read_maybe_gz(&self.expected_path);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("case {}: {} is not valid JSON: {e}", self.name, self.expected_path.display()))
    }

    /// Size in bytes of the events file as stored (compressed if `.gz`).
    pub fn events_size(&self) -> u64 {
        std::fs::metadata(&self.events).unwrap_or_else(|e| panic!("case {}: cannot stat {}: {e}", self.name, self.events.display())).len()
    }

    /// Whether the expected output has late dead letters (such a case keeps
    /// its lateness only when read as one reader, in file order).
    pub fn has_late_events(&self) -> bool {
        self.expected()["dead_letters"]["late"].as_u64().unwrap_or(0) > 0
    }

    /// The case in `dir`, if it is one.
    fn read(name: String, dir: PathBuf) -> Option<Case> {
        let config = dir.join("config.toml");
        if !config.is_file() {
            return None;
        }
        let one_of = |names: [&str; 2]| names.iter().map(|n| dir.join(n)).find(|p| p.is_file());
        let required = |names: [&str; 2]| {
            one_of(names).unwrap_or_else(|| panic!("conformance case {}: {} has a config.toml but neither {} nor {}", name, dir.display(), names[0], names[1]))
        };
        let events = required(["events.jsonl", "events.jsonl.gz"]);
        let expected_path = required(["expected.json", "expected.json.gz"]);
        let labels = one_of(["labels.jsonl", "labels.jsonl.gz"]);
        let expected_training = one_of(["expected-training.jsonl", "expected-training.jsonl.gz"]);
        Some(Case { name, dir, config, events, expected_path, labels, expected_training })
    }
}

/// The cases directly under `root`, by folder name.
fn cases_in(root: &Path) -> Vec<Case> {
    let entries = std::fs::read_dir(root).unwrap_or_else(|e| panic!("cannot list the conformance cases in {}: {e}", root.display()));
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()));
        let dir = entry.path();
        if dir.is_dir() {
            out.extend(Case::read(entry.file_name().to_string_lossy().into_owned(), dir));
        }
    }
    out
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let here = dir.join(&rel);
        for entry in std::fs::read_dir(&here).unwrap_or_else(|e| panic!("cannot list {}: {e}", here.display())) {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", here.display()));
            let path = rel.join(entry.file_name());
            if entry.path().is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Whether two folders hold the same files with the same bytes.
fn same_files(a: &Path, b: &Path) -> bool {
    let files = files_under(a);
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    files == files_under(b) && files.iter().all(|f| read(a.join(f)) == read(b.join(f)))
}

/// The cases of `repo`, and those of `shared` (when given) that are not
/// identical to one of them, as `shared/<name>`; sorted by name.
pub fn discover(repo: &Path, shared: Option<&Path>) -> Vec<Case> {
    let mut out = cases_in(repo);
    for mut case in shared.map(cases_in).unwrap_or_default() {
        if !out.iter().any(|copy| copy.name == case.name && same_files(&copy.dir, &case.dir)) {
            case.name = format!("shared/{}", case.name);
            out.push(case);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every case: [`discover`] over [`repo_cases_dir`] and, when it exists,
/// [`shared_cases_dir`]. Looked up once per test binary; panics if there is
/// no case at all (a test over no cases would prove nothing).
pub fn cases() -> Vec<Case> {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES
        .get_or_init(|| {
            let (repo, shared) = (repo_cases_dir(), shared_cases_dir());
            let found = discover(&repo, shared.is_dir().then_some(shared.as_path()));
            assert!(!found.is_empty(), "no conformance cases in {}", repo.display());
            found
        })
        .clone()
}

/// The case with the largest input (the one a mid-run interruption can hit).
pub fn largest_case() -> Case {
    cases().into_iter().max_by_key(Case::events_size).expect("cases() is never empty")
}

/// The case called `name`; panics, listing the cases, if there is none.
pub fn case_named(name: &str) -> Case {
    let all = cases();
    let names: Vec<String> = all.iter().map(|c| c.name.clone()).collect();
    all.into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no conformance case named {name:?}; the cases are {names:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!("clickflow-testkit-{label}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// Writes a case `root/name` with these files (name, contents).
        fn case(&self, root: &str, name: &str, files: &[(&str, &str)]) {
            let dir = self.0.join(root).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in files {
                std::fs::write(dir.join(file), text).unwrap();
            }
        }

        fn names(&self) -> Vec<String> {
            let shared = self.0.join("shared");
            discover(&self.0.join("repo"), shared.is_dir().then_some(shared.as_path())).into_iter().map(|c| c.name).collect()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const CASE: [(&str, &str); 3] = [("config.toml", "# a case\n"), ("events.jsonl", "{}\n"), ("expected.json", "{\"as_of\": null}")];

    #[test]
    fn a_shared_case_identical_to_its_copy_runs_once() {
        let s = Scratch::new("identical");
        s.case("repo", "a", &CASE);
        s.case("shared", "a", &CASE);
        assert_eq!(s.names(), ["a"]);
        let found = discover(&s.0.join("repo"), Some(&s.0.join("shared")));
        assert_eq!(found[0].dir, s.0.join("repo").join("a"), "the repository's copy runs");
    }

    #[test]
    fn a_shared_case_that_differs_from_its_copy_runs_as_well_under_its_own_name() {
        let s = Scratch::new("differs");
        for name in ["bytes", "extra_file"] {
            s.case("repo", name, &CASE);
            s.case("shared", name, &CASE);
        }
        s.case("shared", "bytes", &[("events.jsonl", "{}\n{}\n")]);
        s.case("shared", "extra_file", &[("labels.jsonl", "{}\n")]);
        assert_eq!(s.names(), ["bytes", "extra_file", "shared/bytes", "shared/extra_file"]);
    }

    #[test]
    fn a_case_only_in_shared_runs_and_folders_without_a_config_are_not_cases() {
        let s = Scratch::new("only-shared");
        s.case("repo", "a", &CASE);
        s.case("repo", "notes", &[("README.md", "not a case")]);
        s.case("shared", "new", &CASE);
        assert_eq!(s.names(), ["a", "shared/new"]);
        std::fs::remove_dir_all(s.0.join("shared")).unwrap();
        assert_eq!(s.names(), ["a"], "no shared folder: the repository's cases only");
    }

    #[test]
    #[should_panic(expected = "has a config.toml but neither events.jsonl nor events.jsonl.gz")]
    fn a_case_without_events_is_an_error_not_skipped() {
        let s = Scratch::new("broken");
        s.case("repo", "broken", &[("config.toml", ""), ("expected.json", "{}")]);
        s.names();
    }

    #[test]
    fn the_repository_holds_the_cases_with_their_labels_and_expected_training() {
        let found = discover(&repo_cases_dir(), None);
        assert!(found.len() >= 16, "{} cases in {}", found.len(), repo_cases_dir().display());
        for name in ["training_labels", "gen_small"] {
            let case = found.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"));
            assert!(case.labels.is_some() && case.expected_training.is_some(), "{case:?}");
        }
        assert!(found.iter().any(|c| c.events.extension().is_some_and(|e| e == "gz")), "gen_small's events are gzipped");
    }
}
