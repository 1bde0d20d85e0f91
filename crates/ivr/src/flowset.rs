//! Loading flows: an immutable, versioned set of flows read from a directory and validated as
//! a whole, and a store that swaps in a new set on reload (calls in progress keep theirs).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use regex::Regex;

use crate::condition::RegexCache;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::located::Position;
use crate::model::FlowFile;
use crate::validator::{self, ValidationContext};

/// Largest flow file read; a flow is a few kilobytes, anything near this is a mistake.
const MAX_FLOW_BYTES: u64 = 1 << 20;

/// One flow: its name (file name without `.yaml`), the file it came from, and its steps.
#[derive(Debug)]
pub struct Flow {
    pub name: String,
    /// The file as the operator named it (for messages).
    pub file: String,
    pub def: FlowFile,
}

/// Every flow of a hotline system at one moment. Immutable: share it with `Arc`.
#[derive(Debug)]
pub struct FlowSet {
    version: u64,
    flows: BTreeMap<String, Arc<Flow>>,
    regexes: HashMap<String, Regex>,
}

/// A flow set that loaded, with the warnings it raised.
#[derive(Debug)]
pub struct Loaded {
    pub set: FlowSet,
    pub warnings: Vec<Diagnostic>,
}

impl RegexCache for FlowSet {
    fn regex(&self, pattern: &str) -> Option<&Regex> {
        self.regexes.get(pattern)
    }
}

impl FlowSet {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn flow(&self, name: &str) -> Option<&Arc<Flow>> {
        self.flows.get(name)
    }

    pub fn flows(&self) -> impl Iterator<Item = &Arc<Flow>> {
        self.flows.values()
    }

    /// The flow files of a directory (`*.yaml` and `*.yml` directly in it, sorted).
    pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, Diagnostics> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Diagnostics(vec![Diagnostic::error(
                &dir.display().to_string(),
                Position::UNKNOWN,
                format!("cannot read directory: {e}"),
            )])
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Loads every flow of a directory.
    pub fn load_dir(
        dir: &Path,
        ctx: &ValidationContext,
        version: u64,
    ) -> Result<Loaded, Diagnostics> {
        let files = Self::files_in(dir)?;
        if files.is_empty() {
            return Err(Diagnostics(vec![Diagnostic::error(
                &dir.display().to_string(),
                Position::UNKNOWN,
                "no flow files (*.yaml) in this directory",
            )]));
        }
        Self::load_files(&files, ctx, version)
    }

    /// Loads the given files (directories are expanded to their flow files) as one set.
    pub fn load_paths(
        paths: &[PathBuf],
        ctx: &ValidationContext,
        version: u64,
    ) -> Result<Loaded, Diagnostics> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                files.extend(Self::files_in(path)?);
            } else {
                files.push(path.clone());
            }
        }
        Self::load_files(&files, ctx, version)
    }

    /// What `santral flow check PATH…` reports: every error and warning in the named files
    /// (directories stand for their flow files). Other flows in the same directories are read
    /// too, so that `goto` between files resolves, but their own problems are not reported.
    /// Returns the problems and the number of flows checked.
    pub fn check_paths(paths: &[PathBuf], ctx: &ValidationContext) -> (Vec<Diagnostic>, usize) {
        let mut requested = Vec::new();
        let mut problems = Vec::new();
        for path in paths {
            if path.is_dir() {
                match Self::files_in(path) {
                    Ok(files) if files.is_empty() => problems.push(Diagnostic::error(
                        &path.display().to_string(),
                        Position::UNKNOWN,
                        "no flow files (*.yaml) in this directory",
                    )),
                    Ok(files) => requested.extend(files),
                    Err(Diagnostics(d)) => problems.extend(d),
                }
            } else {
                requested.push(path.clone());
            }
        }
        let mut context: Vec<PathBuf> = Vec::new();
        for file in &requested {
            let dir = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            for sibling in Self::files_in(dir).unwrap_or_default() {
                let known = requested
                    .iter()
                    .chain(context.iter())
                    .any(|f| same_file(f, &sibling));
                if !known {
                    context.push(sibling);
                }
            }
        }
        let labels: Vec<String> = requested.iter().map(|p| p.display().to_string()).collect();
        let mut sources = Vec::new();
        for path in requested.iter().chain(context.iter()) {
            let label = path.display().to_string();
            match read_limited(path) {
                Ok(text) => sources.push((flow_name(path), label, text)),
                Err(message) => {
                    problems.push(Diagnostic::error(&label, Position::UNKNOWN, message))
                }
            }
        }
        // A sibling that does not parse or clashes in name only matters for its own check.
        let count = requested.len();
        problems.extend(Self::analyse(&sources, ctx).2);
        problems
            .retain(|d| labels.contains(&d.file) || !sources.iter().any(|(_, l, _)| l == &d.file));
        problems.sort_by(|a, b| {
            (&a.file, a.position, a.severity).cmp(&(&b.file, b.position, b.severity))
        });
        problems.dedup();
        (problems, count)
    }

    fn load_files(
        files: &[PathBuf],
        ctx: &ValidationContext,
        version: u64,
    ) -> Result<Loaded, Diagnostics> {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            let label = path.display().to_string();
            match read_limited(path) {
                Ok(text) => sources.push((flow_name(path), label, text)),
                Err(message) => errors.push(Diagnostic::error(&label, Position::UNKNOWN, message)),
            }
        }
        match Self::from_sources(&sources, ctx, version) {
            Ok(loaded) if errors.is_empty() => Ok(loaded),
            Ok(_) => Err(Diagnostics(errors)),
            Err(Diagnostics(more)) => {
                errors.extend(more);
                Err(Diagnostics(errors))
            }
        }
    }

    /// Builds a set from `(flow name, file label, YAML text)` triples; every problem of every
    /// file is reported, not just the first.
    pub fn from_sources(
        sources: &[(String, String, String)],
        ctx: &ValidationContext,
        version: u64,
    ) -> Result<Loaded, Diagnostics> {
        let (flows, regexes, problems) = Self::analyse(sources, ctx);
        let (errors, warnings): (Vec<_>, Vec<_>) =
            problems.into_iter().partition(Diagnostic::is_error);
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok(Loaded {
            set: FlowSet {
                version,
                flows,
                regexes,
            },
            warnings,
        })
    }

    /// Parses and validates; every error and warning, sorted by place.
    #[allow(clippy::type_complexity)]
    fn analyse(
        sources: &[(String, String, String)],
        ctx: &ValidationContext,
    ) -> (
        BTreeMap<String, Arc<Flow>>,
        HashMap<String, Regex>,
        Vec<Diagnostic>,
    ) {
        let mut flows = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, file, text) in sources {
            if !valid_flow_name(name) {
                problems.push(Diagnostic::error(
                    file,
                    Position::UNKNOWN,
                    format!("flow name `{name}` (from the file name) may only use letters, digits, `_` and `-`"),
                ));
                continue;
            }
            match serde_saphyr::from_str::<FlowFile>(text) {
                Ok(def) => {
                    if flows.contains_key(name) {
                        problems.push(Diagnostic::error(
                            file,
                            Position::UNKNOWN,
                            format!("a flow named `{name}` is defined twice"),
                        ));
                        continue;
                    }
                    flows.insert(
                        name.clone(),
                        Arc::new(Flow {
                            name: name.clone(),
                            file: file.clone(),
                            def,
                        }),
                    );
                }
                Err(err) => problems.push(Diagnostic::from_yaml(file, &err)),
            }
        }
        let (regexes, more) = validator::validate(&flows, ctx);
        problems.extend(more);
        problems.sort_by(|a, b| {
            (&a.file, a.position, a.severity).cmp(&(&b.file, b.position, b.severity))
        });
        problems.dedup();
        (flows, regexes, problems)
    }
}

impl FlowSet {
    /// Parses flows without the whole-set checks, for tools and tests that need a flow the
    /// validator would reject (the interpreter still never panics or spins on one).
    pub fn parse_unchecked(
        sources: &[(String, String, String)],
        version: u64,
    ) -> Result<FlowSet, Diagnostics> {
        let mut flows = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, file, text) in sources {
            match serde_saphyr::from_str::<FlowFile>(text) {
                Ok(def) => {
                    flows.insert(
                        name.clone(),
                        Arc::new(Flow {
                            name: name.clone(),
                            file: file.clone(),
                            def,
                        }),
                    );
                }
                Err(err) => problems.push(Diagnostic::from_yaml(file, &err)),
            }
        }
        if problems.is_empty() {
            Ok(FlowSet {
                version,
                flows,
                regexes: HashMap::new(),
            })
        } else {
            Err(Diagnostics(problems))
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn read_limited(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FLOW_BYTES {
        return Err(format!(
            "file is {} bytes; flow files are limited to {MAX_FLOW_BYTES}",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// A flow's name is its file name without the extension.
pub fn flow_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn valid_flow_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The current flow set of a directory, replaced whole on reload.
pub struct FlowStore {
    dir: PathBuf,
    ctx: ValidationContext,
    current: RwLock<Arc<FlowSet>>,
    last_version: AtomicU64,
}

impl FlowStore {
    /// Loads the directory; fails when the flows have errors (there is no older set to keep).
    pub fn open(
        dir: &Path,
        ctx: ValidationContext,
    ) -> Result<(FlowStore, Vec<Diagnostic>), Diagnostics> {
        let loaded = FlowSet::load_dir(dir, &ctx, 1)?;
        let store = FlowStore {
            dir: dir.to_path_buf(),
            ctx,
            current: RwLock::new(Arc::new(loaded.set)),
            last_version: AtomicU64::new(1),
        };
        Ok((store, loaded.warnings))
    }

    /// The set new calls start with. Calls hold on to the `Arc` they got.
    pub fn current(&self) -> Arc<FlowSet> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            // A writer never panics while holding the lock (it only swaps an Arc), but be safe.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads the directory again. On success the new set replaces the old one for new calls;
    /// on failure the old set stays and the errors are returned (and logged).
    pub fn reload(&self) -> Result<(u64, Vec<Diagnostic>), Diagnostics> {
        let version = self.last_version.fetch_add(1, Ordering::SeqCst) + 1;
        match FlowSet::load_dir(&self.dir, &self.ctx, version) {
            Ok(loaded) => {
                let new = Arc::new(loaded.set);
                match self.current.write() {
                    Ok(mut guard) => *guard = new,
                    Err(poisoned) => *poisoned.into_inner() = new,
                }
                tracing::info!(version, dir = %self.dir.display(), "flows reloaded");
                Ok((version, loaded.warnings))
            }
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!("flow reload rejected, keeping the previous flows: {e}");
                }
                Err(errors)
            }
        }
    }

    /// Reloads whenever a flow file in the directory changes, until the watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<FlowWatcher, notify::Error> {
        use notify::Watcher;
        let store = Arc::downgrade(self);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                let touches_flow = event.paths.iter().any(|p| {
                    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                });
                if !touches_flow || event.kind.is_access() {
                    return;
                }
                if let Some(store) = store.upgrade() {
                    // Errors are logged by reload and the previous set stays.
                    let _ = store.reload();
                }
            })?;
        watcher.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
        Ok(FlowWatcher { _watcher: watcher })
    }
}

/// Keeps a flow directory watched while alive.
pub struct FlowWatcher {
    _watcher: notify::RecommendedWatcher,
}
