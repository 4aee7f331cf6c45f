//! The `weir` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use weir::policy::Config;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Userspace policy and charging enforcement gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a capture through the engine and report verdicts, usage and throughput.
    Replay {
        #[arg(long)]
        config: PathBuf,
        /// pcap or pcapng, Ethernet or raw IP.
        #[arg(long)]
        pcap: PathBuf,
        /// Write the forwarded frames here (pcap).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file and print every error with its location.
    CheckConfig { file: PathBuf },
    /// Serve the recharge portal: the recharge page, the payment form, and the success URL with
    /// a token signed with the [redirect] token_key of the same configuration.
    Portal {
        #[arg(long)]
        config: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "0.0.0.0:80")]
        listen: std::net::SocketAddr,
    },
}

fn load_config(path: &PathBuf) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Config::from_toml_str(&text, &path.display().to_string()).map_err(|errors| {
        let mut msg = String::new();
        for e in &errors.0 {
            msg.push_str(&e.to_string());
            msg.push('\n');
        }
        msg.push_str(&format!("{}: {} error(s)", path.display(), errors.0.len()));
        msg
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
            match weir::replay::replay(&config, &pcap, out.as_deref()) {
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
        Command::Portal { config, listen } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            match weir::peers::portal::run(&config, listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir portal: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match load_config(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} UE pool(s), {} predefined rule(s), {} session(s))",
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
        },
    }
}
