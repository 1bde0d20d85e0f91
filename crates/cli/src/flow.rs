//! `santral flow …`: operator tools for IVR flows. The logic lives in santral-ivr (the server
//! reuses it); this module parses arguments, reads the configuration and prints.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use santral_ivr::customers::CustomerDirectory;
use santral_ivr::flowtest::{self, TestEnvironment};
use santral_ivr::graph::{self, GraphFormat};
use santral_ivr::simulator::{self, Keypad, PromptTexts, QueueStub, Scenario};
use santral_ivr::{FlowSet, ValidationContext};

#[derive(Subcommand)]
pub enum FlowCommand {
    /// Check flows (directories or files; the configured flow directory by default): every
    /// problem as file:line:col, exit 1 if any.
    Check {
        paths: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Run a flow without a network and show each step and what the caller hears.
    /// Interactive (type keys) when --digits is not given.
    Simulate {
        /// Flow name (e.g. main) or file (ivr-flows/main.yaml).
        flow: String,
        /// Keys the caller presses, e.g. 41234#; `_` waits for a timeout.
        #[arg(long)]
        digits: Option<String>,
        /// Starting language (the configured default when omitted).
        #[arg(long)]
        lang: Option<String>,
        /// Wall-clock time of the call, e.g. 2026-11-23T21:00 (read in --tz).
        #[arg(long)]
        time: Option<String>,
        /// Time zone for --time.
        #[arg(long, default_value = simulator::DEFAULT_TIME_ZONE)]
        tz: String,
        #[arg(long, default_value = "+905550000000")]
        caller: String,
        #[arg(long, default_value = "1000")]
        dialled: String,
        /// What the stand-in ACD does with each queue step.
        #[arg(long, value_enum, default_value = "answered")]
        queue: QueueArg,
        /// Customer data for lookup steps (the configured `flows.customers` by default).
        #[arg(long)]
        customers: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Run the flow test cases (ivr-flows/tests/*.yaml) and print `N passed, M failed`.
    Test {
        /// Test files or directories (the flow directory's tests/ by default).
        paths: Vec<PathBuf>,
        /// Customer data for lookup steps (the configured `flows.customers` by default).
        #[arg(long)]
        customers: Option<PathBuf>,
        /// Show every case, not just failures.
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Print a diagram of a flow.
    Graph {
        flow: String,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: FormatArg,
        #[command(flatten)]
        common: Common,
    },
    /// Print the JSON Schema of the flow format (committed as ivr-flows/flow.schema.json).
    Schema,
}

#[derive(Args)]
pub struct Common {
    /// Configuration file laid over the embedded defaults (queues, languages, prompt and flow
    /// directories).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Mermaid,
    Dot,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum QueueArg {
    Answered,
    AgentFinished,
    Timeout,
    Unavailable,
}

pub fn run(cmd: FlowCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FlowCommand::Check { paths, common } => check(paths, &common),
        FlowCommand::Simulate {
            flow,
            digits,
            lang,
            time,
            tz,
            caller,
            dialled,
            queue,
            customers,
            common,
        } => {
            let settings = Settings::load(&common)?;
            let (set, flow) = load_for(&flow, &settings)?;
            let time = match time {
                Some(t) => simulator::parse_time(&t, &tz).map_err(anyhow::Error::msg)?,
                None => jiff::Zoned::now(),
            };
            let scenario = Scenario {
                flow,
                caller,
                dialled,
                language: lang.unwrap_or_else(|| settings.default_language.clone()),
                time,
                digits: digits.clone().unwrap_or_default(),
                queue: vec![match queue {
                    QueueArg::Answered => QueueStub::Answered,
                    QueueArg::AgentFinished => QueueStub::AgentFinished,
                    QueueArg::Timeout => QueueStub::Timeout,
                    QueueArg::Unavailable => QueueStub::Unavailable,
                }],
                http: Vec::new(),
                lookups: None,
                transfer_connects: true,
            };
            let mut directory =
                load_customers(customers.as_deref().unwrap_or(&settings.customers))?;
            let texts =
                PromptTexts::load(&settings.prompts_dir.join("prompts.yaml")).unwrap_or_default();
            let mut print =
                |entry: &simulator::Entry| println!("{}", simulator::describe(entry, &texts));
            let outcome = if digits.is_some() {
                simulator::simulate(
                    set,
                    &scenario,
                    &mut directory,
                    &mut simulator::ScriptedKeys,
                    &mut print,
                )?
            } else {
                println!(
                    "Type keys and Enter (an empty line waits for the timeout; Ctrl-D hangs up)."
                );
                simulator::simulate(set, &scenario, &mut directory, &mut StdinKeys, &mut print)?
            };
            let last = outcome
                .visited
                .last()
                .map(|(f, s)| format!("{f}.{s}"))
                .unwrap_or_default();
            println!("ended at {last}; language {}", outcome.language);
            Ok(ExitCode::SUCCESS)
        }
        FlowCommand::Test {
            paths,
            customers,
            verbose,
            common,
        } => test(paths, customers, verbose, &common),
        FlowCommand::Graph {
            flow,
            format,
            common,
        } => {
            let settings = Settings::load(&common)?;
            let (set, name) = load_for(&flow, &settings)?;
            let flow = set
                .flow(&name)
                .with_context(|| format!("no flow named `{name}`"))?;
            let format = match format {
                FormatArg::Mermaid => GraphFormat::Mermaid,
                FormatArg::Dot => GraphFormat::Dot,
            };
            print!("{}", graph::render(flow, format));
            Ok(ExitCode::SUCCESS)
        }
        FlowCommand::Schema => {
            println!("{:#}", santral_ivr::model::flow_schema());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What the tools take from the configuration.
struct Settings {
    ctx: ValidationContext,
    flows_dir: PathBuf,
    prompts_dir: PathBuf,
    default_language: String,
    hotlines: Vec<crate::config::Hotline>,
    customers: PathBuf,
}

impl Settings {
    fn load(common: &Common) -> anyhow::Result<Settings> {
        let config = crate::config::load(common.config.as_deref())?;
        Ok(Settings {
            ctx: ValidationContext {
                queues: Some(config.queues.iter().map(|q| q.name.clone()).collect()),
                languages: config.prompts.languages.clone(),
                prompts_dir: Some(config.prompts.dir.clone()),
            },
            flows_dir: config.flows.dir.clone(),
            prompts_dir: config.prompts.dir.clone(),
            default_language: config.prompts.default_language.clone(),
            hotlines: config.hotlines.clone(),
            customers: config.flows.customers.clone(),
        })
    }
}

fn check(paths: Vec<PathBuf>, common: &Common) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(common)?;
    let whole_directory = paths.is_empty();
    let paths = if whole_directory {
        vec![settings.flows_dir.clone()]
    } else {
        paths
    };
    let (mut problems, flows) = FlowSet::check_paths(&paths, &settings.ctx);
    if whole_directory {
        // Every hotline must start in a flow that exists.
        for hotline in &settings.hotlines {
            let file = settings.flows_dir.join(format!("{}.yaml", hotline.flow));
            if !file.is_file() {
                problems.push(santral_ivr::Diagnostic::error(
                    &file.display().to_string(),
                    santral_ivr::Position::UNKNOWN,
                    format!(
                        "hotline {} starts in flow `{}`, which does not exist",
                        hotline.number, hotline.flow
                    ),
                ));
            }
        }
    }
    for p in &problems {
        println!("{p}");
    }
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let warnings = problems.len() - errors;
    if errors > 0 {
        eprintln!("{errors} errors, {warnings} warnings in {flows} flows");
        Ok(ExitCode::FAILURE)
    } else {
        println!("ok: {flows} flows checked, {warnings} warnings");
        Ok(ExitCode::SUCCESS)
    }
}

fn test(
    paths: Vec<PathBuf>,
    customers: Option<PathBuf>,
    verbose: bool,
    common: &Common,
) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(common)?;
    let loaded =
        FlowSet::load_dir(&settings.flows_dir, &settings.ctx, 1).map_err(anyhow::Error::msg)?;
    let env = TestEnvironment {
        set: Arc::new(loaded.set),
        customers: load_customers(customers.as_deref().unwrap_or(&settings.customers))?,
        default_language: settings.default_language.clone(),
    };
    let paths = if paths.is_empty() {
        vec![settings.flows_dir.join("tests")]
    } else {
        paths
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(flowtest::test_files(&p).map_err(anyhow::Error::msg)?);
        } else {
            files.push(p);
        }
    }
    let mut results = Vec::new();
    let mut broken_files = 0;
    for file in &files {
        // The cases' own stubbed failures (CRM down, …) would log warnings; the report
        // below says all that matters.
        let outcome =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                flowtest::run_file(file, &env)
            });
        match outcome {
            Ok(r) => results.extend(r),
            Err(errors) => {
                broken_files += 1;
                for e in &errors.0 {
                    println!("{e}");
                }
            }
        }
    }
    let mut passed = 0;
    let mut failed = broken_files;
    for r in &results {
        if r.passed() {
            passed += 1;
            if verbose {
                println!("PASS {}:{}: {}", r.file, r.position, r.name);
            }
        } else {
            failed += 1;
            println!("FAIL {}:{}: {}", r.file, r.position, r.name);
            for f in &r.failures {
                println!("    {f}");
            }
        }
    }
    let coverage = flowtest::coverage(&env.set, &results);
    println!(
        "covered: {}/{} steps, {}/{} transitions",
        coverage.steps.0, coverage.steps.1, coverage.transitions.0, coverage.transitions.1
    );
    for missed in &coverage.missed {
        println!("    not covered: {missed}");
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && !results.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn load_customers(path: &Path) -> anyhow::Result<CustomerDirectory> {
    if !path.exists() {
        return Ok(CustomerDirectory::default());
    }
    CustomerDirectory::load(path).map_err(anyhow::Error::msg)
}

/// Loads the flow set that holds `flow` (a name in the flow directory, or a file path) and
/// returns the flow's name.
fn load_for(flow: &str, settings: &Settings) -> anyhow::Result<(Arc<FlowSet>, String)> {
    let as_path = Path::new(flow);
    let (dir, name) = if as_path.extension().is_some() || as_path.is_file() {
        let dir = as_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (dir.to_path_buf(), santral_ivr::flowset::flow_name(as_path))
    } else {
        (settings.flows_dir.clone(), flow.to_owned())
    };
    let loaded = FlowSet::load_dir(&dir, &settings.ctx, 1).map_err(anyhow::Error::msg)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    if loaded.set.flow(&name).is_none() {
        anyhow::bail!("no flow named `{name}` in {}", dir.display());
    }
    Ok((Arc::new(loaded.set), name))
}

/// Keys typed on the terminal, one line at a time.
struct StdinKeys;

impl Keypad for StdinKeys {
    fn more_keys(&mut self) -> Option<String> {
        print!("keys> ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                let keys: String = line
                    .trim()
                    .chars()
                    .filter(|c| "0123456789*#_".contains(*c))
                    .collect();
                Some(if keys.is_empty() {
                    "_".to_owned()
                } else {
                    keys
                })
            }
        }
    }
}
