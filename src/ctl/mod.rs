//! `weir ctl`: the operator's everyday view of a running gateway, over the same gRPC API
//! (`weir.v1.Gateway`) that grpcurl and the policy engine use. Tables for a terminal, `--json`
//! for scripts (the API's messages in the proto3 JSON mapping, as grpcurl prints them).
//!
//! `client` finds and reaches the gateway, `commands` turns each subcommand into calls, and
//! `table` draws what comes back. It never changes the gateway by any other way than the API,
//! so everything it does is also what a policy engine or a script could do.

mod client;
mod commands;
mod table;

use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes of `weir ctl` (also in the README): scripts tell the cases apart by these.
pub mod exit {
    /// The gateway refused the request, or a rule could not be installed.
    pub const REFUSED: u8 = 1;
    /// Bad arguments, or a configuration file that cannot be read.
    pub const USAGE: u8 = 2;
    /// The gateway cannot be reached (down, wrong address, TLS handshake failed).
    pub const UNREACHABLE: u8 = 3;
    /// No session for that subscriber.
    pub const NOT_FOUND: u8 = 4;
}

#[derive(Args)]
pub struct CtlArgs {
    /// The gateway's configuration: the address is its [control] listen. Default
    /// /etc/weir/weir.toml when it exists, else 127.0.0.1:50052.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The gateway's weir.v1.Gateway address (host:port, http:// or https://); overrides
    /// --config.
    #[arg(long, global = true, value_name = "ADDR")]
    pub server: Option<String>,
    /// TLS: the CA certificate that signed the gateway's certificate (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// TLS: this client's certificate (PEM), when the gateway requires client certificates.
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS: this client's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// TLS: the name the gateway's certificate must carry, when not the address's host.
    #[arg(long, global = true, value_name = "NAME")]
    pub domain: Option<String>,
    /// Print the API's messages as JSON (proto3 mapping) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand)]
pub enum CtlCommand {
    /// Every session: subscriber, addresses, rules, redirect state with its cause, usage.
    Sessions,
    /// One session in full: rules, event triggers, redirect state, usage per rating group and
    /// monitoring key.
    Session {
        /// Subscriber id (imsi-…, msisdn-…, nai-…, sip-…, private-…).
        subscriber: String,
    },
    /// Install or remove PCC rules of a session (a RAR from the operator).
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Redirect a subscriber's HTTP requests: installs a redirect rule (predefined, or one to
    /// the URL given).
    Redirect {
        subscriber: String,
        /// A predefined rule of the gateway with Redirect-Information.
        #[arg(
            long,
            value_name = "NAME",
            conflicts_with = "url",
            required_unless_present = "url"
        )]
        rule: Option<String>,
        /// The portal: installs the dynamic rule `operator-redirect` (precedence 1, all of the
        /// subscriber's traffic) redirecting to it.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Lift a subscriber's redirect: removes the rules that redirect it.
    Lift { subscriber: String },
    /// What happens in the gateway as it happens (session up and down, redirects applied and
    /// lifted, recharge successes, rule failures, usage reports).
    Events {
        /// Keep watching until interrupted.
        #[arg(long)]
        follow: bool,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        /// Only this subscriber's events.
        #[arg(long, value_name = "SUBSCRIBER")]
        subscriber: Option<String>,
    },
    /// The gateway's counters: per worker, sessions, redirected sessions, snapshot generation.
    Stats,
}

#[derive(Subcommand)]
pub enum RuleCommand {
    /// Install predefined rules by name, and/or one dynamic rule defined by the flags.
    Install {
        subscriber: String,
        /// Predefined rules of the gateway to activate.
        predefined: Vec<String>,
        /// The dynamic rule's Charging-Rule-Name.
        #[arg(long, value_name = "NAME", requires_all = ["precedence", "flow"])]
        name: Option<String>,
        /// Its precedence (lower wins).
        #[arg(long, value_name = "N", requires = "name")]
        precedence: Option<u32>,
        /// A Flow-Description (`permit out 6 from any 80 to assigned`); repeat for more.
        #[arg(long, value_name = "DESCRIPTION", requires = "name")]
        flow: Vec<String>,
        /// Its Rating-Group.
        #[arg(long, value_name = "RG", requires = "name")]
        rating_group: Option<u32>,
        /// Its Monitoring-Key.
        #[arg(long, value_name = "KEY", requires = "name")]
        monitoring_key: Option<String>,
        /// Its gate (Flow-Status).
        #[arg(long, value_enum, default_value_t = Gate::Enabled, requires = "name")]
        gate: Gate,
    },
    /// Remove a rule (dynamic or predefined) by name.
    Remove { subscriber: String, name: String },
}

/// Flow-Status as the operator types it.
#[derive(Clone, Copy, ValueEnum)]
pub enum Gate {
    Enabled,
    Uplink,
    Downlink,
    Disabled,
}

/// Runs one `weir ctl` command; errors are printed here, with their exit code.
pub fn run(args: CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir ctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir ctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// What went wrong, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the gateway at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("no session for {0}")]
    NoSession(String),
    /// The gateway's refusal, or the rules it did not install, worded by the caller.
    #[error("{0}")]
    Refused(String),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => exit::USAGE,
            CtlError::Unreachable { .. } => exit::UNREACHABLE,
            CtlError::NoSession(_) => exit::NOT_FOUND,
            CtlError::Refused(_) => exit::REFUSED,
        }
    }
}
