//! The `weir` command line.

use clap::{Parser, Subcommand};
mod ctl;
mod dry_run;
mod logging;
use std::path::PathBuf;
use std::process::ExitCode;
use weir::dataplane::{DataplaneConfig, DataplaneConfigError};
use weir::policy::{Config, ConfigError, ConfigErrors};

#[derive(Parser)]
#[command(
    name = "weir",
    // The git revision the binary was built from (build.rs), so a report names the exact code.
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("WEIR_GIT_REVISION"), ")"),
    about = "Userspace policy and charging enforcement gateway"
)]
struct Cli {
    /// Log lines on stderr: "human", or "json" (one object a line); WEIR_LOG filters them.
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a capture through the engine and report verdicts, usage and throughput.
    Replay {
        /// The configuration (UE pools, PCC rules, sessions).
        #[arg(long)]
        config: PathBuf,
        /// pcap or pcapng: Ethernet, raw IP or BSD loopback.
        #[arg(long)]
        pcap: PathBuf,
        /// Write what the gateway would send here (pcap): forwarded and injected frames.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Forward live traffic through the engine (needs root).
    ///
    /// Bridge mode between two interfaces, or routed mode on a TUN device, as the [dataplane]
    /// table of the configuration says. Runs until SIGINT or SIGTERM, then prints the usage
    /// report; SIGHUP re-reads the policy.
    Run {
        /// The configuration, with its [dataplane] table.
        #[arg(long)]
        config: PathBuf,
        /// Also write the final report here, as JSON.
        #[arg(long)]
        report_out: Option<PathBuf>,
        /// Print the final report as one JSON document.
        #[arg(long)]
        json: bool,
        /// Validate the configuration and print what would be bound, pinned and changed
        /// (interfaces, ports, cores, offloads), opening nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate a configuration file and print every error with its location.
    CheckConfig { file: PathBuf },
    /// Serve the recharge portal.
    ///
    /// The recharge page, the payment form, and the success URL with a token signed with the
    /// [redirect] token_key of the same configuration.
    Portal {
        #[arg(long)]
        config: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "0.0.0.0:80")]
        listen: std::net::SocketAddr,
        /// The policy engine's weir.v1.Admin endpoint (http://host:port): each payment is
        /// credited there (Admin/Recharge) before its success token is issued. Default: the
        /// configuration's [control] policy_engine; with neither, tokens only.
        #[arg(long, value_name = "URL")]
        policy_engine: Option<String>,
        /// The portal's site file: operator name and logo, page text (a translation), how the
        /// subscriber is shown, offers, the captive-portal API. Default: English pages of "Weir".
        #[arg(long, value_name = "FILE")]
        site: Option<PathBuf>,
    },
    /// Serve the reference policy engine (Gx) and its admin API over gRPC.
    ///
    /// Accounts in SQLite, the redirect for balances at zero or less, the billing delay, and
    /// RARs to the gateways; see examples/policy-engine.toml.
    PolicyEngine {
        /// The policy engine's configuration (not the gateway's).
        #[arg(long)]
        config: PathBuf,
    },
    /// Look at and steer a running gateway over its gRPC API (weir.v1.Gateway).
    ///
    /// Exit codes: 0 done, 1 refused by the gateway (or a rule not installed), 2 bad arguments
    /// or configuration, 3 the gateway cannot be reached, 4 no session for the subscriber.
    Ctl(ctl::CtlArgs),
}

fn load_config(path: &PathBuf) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    policy_from_text(&text, path)
}

/// The policy part of a configuration document; the [dataplane] table belongs to `weir run`.
fn policy_from_text(text: &str, path: &std::path::Path) -> Result<Config, String> {
    Config::from_toml_str(text, &path.display().to_string()).map_err(|errors| {
        let mut msg = String::new();
        for e in &errors.0 {
            msg.push_str(&e.to_string());
            msg.push('\n');
        }
        msg.push_str(&format!("{}: {} error(s)", path.display(), errors.0.len()));
        msg
    })
}

/// Reads both parts of a configuration document — the policy, and the `[dataplane]` table
/// `weir run` needs — and lists every error of either, in document order, then their count.
fn read_both(
    text: &str,
    path: &std::path::Path,
) -> Result<(Config, Result<DataplaneConfig, DataplaneConfigError>), String> {
    let origin = path.display().to_string();
    let policy = Config::from_toml_str(text, &origin);
    let dataplane = DataplaneConfig::from_toml_str(text, &origin);
    let mut errors: Vec<ConfigError> = match &policy {
        Err(ConfigErrors(e)) => e.clone(),
        Ok(_) => Vec::new(),
    };
    if let Err(DataplaneConfigError::Invalid(e)) = &dataplane {
        // A TOML syntax error is found by both readers: list it once.
        for e in e {
            if !errors.contains(e) {
                errors.push(e.clone());
            }
        }
    }
    match policy {
        Ok(c) if errors.is_empty() => Ok((c, dataplane)),
        _ => {
            errors.sort_by_key(|e| (e.line, e.column));
            let mut msg = String::new();
            for e in &errors {
                msg.push_str(&e.to_string());
                msg.push('\n');
            }
            msg.push_str(&format!("{}: {} error(s)", path.display(), errors.len()));
            Err(msg)
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match read_both(&text, file) {
        Ok((c, dataplane)) => {
            // The [dataplane] table is optional for a policy file but must be valid when
            // present, since `weir run` reads the same file.
            let dataplane = match dataplane {
                Ok(dp) => format!(", [dataplane] {:?} mode", dp.mode).to_lowercase(),
                Err(_) => String::new(),
            };
            println!(
                "{}: ok ({} UE pool(s), {} predefined rule(s), {} session(s){dataplane})",
                file.display(),
                c.gateway.ue_pools.len(),
                c.predefined.len(),
                c.sessions.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Replay {
            config,
            pcap,
            out,
            json,
        } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            // A bar on stderr only for a person at a terminal: pipes and files stay quiet.
            let mut bar = std::io::IsTerminal::is_terminal(&std::io::stderr())
                .then(weir::replay::ProgressBar::stderr);
            let result =
                weir::replay::replay_with_progress(&config, &pcap, out.as_deref(), &mut |p| {
                    if let Some(bar) = bar.as_mut() {
                        bar.update(p);
                    }
                });
            if let Some(bar) = bar {
                bar.finish();
            }
            match result {
                Ok(report) => {
                    if json {
                        match serde_json::to_string_pretty(&report) {
                            Ok(s) => println!("{s}"),
                            Err(e) => {
                                eprintln!("cannot encode report: {e}");
                                return ExitCode::FAILURE;
                            }
                        }
                    } else {
                        print!("{}", weir::replay::render_text(&report));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("weir replay: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Portal {
            config,
            listen,
            policy_engine,
            site,
        } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            match weir::peers::portal::run(
                &config,
                listen,
                policy_engine.as_deref(),
                site.as_deref(),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir portal: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::PolicyEngine { config } => policy_engine(&config),
        Command::Run {
            config,
            report_out,
            json,
            dry_run,
        } => run(&config, report_out.as_deref(), json, dry_run),
        Command::CheckConfig { file } => check_config(&file),
        Command::Ctl(args) => ctl::run(args),
    }
}

fn policy_engine(path: &std::path::Path) -> ExitCode {
    use weir::peers::policy_engine::{load_config, run, PolicyEngineError};
    let result = load_config(path).and_then(|config| {
        run(config, |addr| {
            // Printed once ready, so scripts and tests can wait for it.
            println!("weir policy-engine: listening on {addr}");
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (PolicyEngineError::Config(_) | PolicyEngineError::Read { .. })) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("weir policy-engine: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    path: &PathBuf,
    report_out: Option<&std::path::Path>,
    json: bool,
    dry_run: bool,
) -> ExitCode {
    use weir::dataplane::{self, RunOptions};
    use weir::policy::PolicySnapshot;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("weir run: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let (config, dp) = match read_both(&text, path) {
        Ok((config, Ok(dp))) => (config, dp),
        Ok((_, Err(e))) => {
            eprintln!("weir run: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if dry_run {
        return match dry_run::render(path, &config, &dp) {
            Ok(plan) => {
                print!("{plan}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("weir run --dry-run: {e}");
                ExitCode::from(2)
            }
        };
    }
    // The session manager publishes the policy; version 0 is never seen by a worker.
    let policy = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(PolicySnapshot::build(
        &config, 0,
    )));
    let tallies = weir::control::Tallies::default();
    let control = match weir::control::start(
        &config,
        std::sync::Arc::clone(&policy),
        std::sync::Arc::clone(&tallies),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir run: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::log_gateway_events(&control);
    let control = std::sync::Arc::new(control);
    let reload_path = path.clone();
    let mut apply = control.reloader();
    let serving = std::sync::Arc::clone(&control);
    let options = RunOptions {
        reload: Box::new(move |_, _| {
            let text = match std::fs::read_to_string(&reload_path) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(path = %reload_path.display(), error = %e, "reload: cannot read the configuration; keeping the current policy");
                    return None;
                }
            };
            match policy_from_text(&text, &reload_path) {
                // Through the session manager, the one writer of policy: it publishes.
                Ok(c) => apply(c),
                Err(e) => {
                    tracing::error!(errors = %e, "reload: configuration has errors; keeping the current policy");
                }
            }
            None
        }),
        // The Gateway server starts once the data path is up, so a data path that cannot start
        // says why before anything else is bound.
        on_ready: Box::new(move || {
            if let Err(e) = serving.listen() {
                tracing::error!(error = %e, "cannot serve weir.v1.Gateway; stopping");
                weir::io::sys::request_stop();
                return;
            }
            tracing::info!("forwarding; SIGINT or SIGTERM stops, SIGHUP reloads the policy")
        }),
        events: Some(control.events()),
        board: Some(tallies),
        metrics: Some(control.metrics()),
    };
    let report = dataplane::run(policy, &dp, options);
    // Workers have stopped; open sessions get their CCR-T, best effort.
    match std::sync::Arc::try_unwrap(control) {
        Ok(c) => c.stop(std::time::Duration::from_secs(2)),
        Err(_) => tracing::warn!("control plane still in use at exit"),
    }
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let encoded = match serde_json::to_string_pretty(&report) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir run: cannot encode report: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(out) = report_out {
        if let Err(e) = std::fs::write(out, format!("{encoded}\n")) {
            eprintln!("weir run: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    if json {
        println!("{encoded}");
    } else {
        print!("{}", dataplane::report::render_text(&report));
    }
    ExitCode::SUCCESS
}
