//! The live data path of `weir run`: worker threads pinned one per core, each with its own
//! engine, rings and buffers, handling a bounded batch per wake-up and picking up the newest
//! policy snapshot between batches.
//!
//! Subscriber affinity: the worker that owns a subscriber sees both directions of its traffic —
//! steered by the kernel (AF_PACKET fanout with a program keyed on the UE address) in bridge
//! mode, handed over on a bounded queue in routed mode — so session counters need no locks.
//! Nothing here parses packets or decides policy; that is the engine's.

pub mod config;
pub mod metrics;
pub mod report;

mod bridge;
mod events;
pub mod resolve;
mod routed;
mod worker;
mod xdp_bridge;

pub use config::{Backend, DataplaneConfig, DataplaneConfigError, Idle, Mode, Offloads};
pub use report::{GatewayReport, IoCounters, WorkerReport};
pub use routed::owner as routed_owner;
pub use xdp_bridge::socket_config as xdp_socket_config;

use crate::engine::Engine;
use crate::io::afpacket::{AfPacketError, RxRing, TpacketVersion, Transmitter};
use crate::io::bpf::Leg;
use crate::io::sys::{self, EventFd, Offload};
use crate::io::tun::{TunError, TunQueue};
use crate::policy::PolicySnapshot;
use crate::time::Clock;
use crate::wire::LinkType;
use arc_swap::ArcSwap;
use report::Board;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use worker::Worker;

/// Room a receive slot needs besides the frame: the ring header, the link header and two
/// VLAN tags.
const SLOT_OVERHEAD: u32 = 80 + 14 + 8;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    AfPacket(#[from] AfPacketError),
    #[error(transparent)]
    Tun(#[from] TunError),
    #[error(transparent)]
    Xdp(#[from] crate::io::xdp::XdpError),
    #[error("backend = \"af_xdp\" runs one worker for now ({workers} cores chosen): give cores = [k] in [dataplane]")]
    XdpWorkers { workers: usize },
    #[error("AF_XDP on {interface}: cannot count its receive queues: {source}")]
    XdpQueues {
        interface: String,
        source: std::io::Error,
    },
    #[error("AF_XDP on {interface}: {queues} receive queues; backend = \"af_xdp\" serves one for now (`ethtool -L {interface} combined 1`)")]
    XdpManyQueues { interface: String, queues: u32 },
    #[error("core {core} does not exist or is not available to this process (it may use cores {allowed}); fix cores in [dataplane]")]
    NoSuchCore { core: usize, allowed: String },
    #[error("core {core} is listed twice in cores")]
    DuplicateCore { core: usize },
    #[error("interface {interface}: MTU {mtu} needs frame_size of at least {needed} in [dataplane] (it is {frame_size})")]
    FrameTooSmall {
        interface: String,
        mtu: u32,
        needed: u32,
        frame_size: u32,
    },
    #[error("interface {interface}: cannot read its MTU: {source}")]
    Mtu {
        interface: String,
        source: std::io::Error,
    },
    #[error("interface {interface}: cannot join fanout group {group}: {source}")]
    Fanout {
        interface: String,
        group: u16,
        source: std::io::Error,
    },
    #[error("worker {worker}: cannot pin to core {core}: {source}")]
    Pin {
        worker: usize,
        core: usize,
        source: std::io::Error,
    },
    #[error(transparent)]
    Listen(#[from] report::ListenError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot create a wake-up descriptor: {0}")]
    EventFd(std::io::Error),
    #[error("worker {0} stopped unexpectedly")]
    WorkerDied(usize),
}

/// Checks the configured cores against the ones this process may use: the cores the workers
/// are pinned to, worker by worker (also what `weir run --dry-run` prints).
pub fn choose_cores(wanted: Option<&[usize]>) -> Result<Vec<usize>, RunError> {
    let allowed = sys::allowed_cores().map_err(RunError::Thread)?;
    let Some(wanted) = wanted else {
        return Ok(allowed);
    };
    for (i, c) in wanted.iter().enumerate() {
        if !allowed.contains(c) {
            return Err(RunError::NoSuchCore {
                core: *c,
                allowed: allowed
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
        if wanted[..i].contains(c) {
            return Err(RunError::DuplicateCore { core: *c });
        }
    }
    Ok(wanted.to_vec())
}

/// The offloads `weir run` turned off, turned back on when it ends (a clean stop or a start
/// that failed half-way); a process killed outright leaves them off.
#[derive(Default)]
struct TurnedOff(Vec<(String, Offload)>);

impl Drop for TurnedOff {
    fn drop(&mut self) {
        for (interface, offload) in self.0.drain(..).rev() {
            match sys::enable_offload(&interface, offload) {
                Ok(()) => tracing::info!(
                    interface,
                    offload = offload.as_str(),
                    "turned offload back on"
                ),
                Err(e) => tracing::warn!(
                    interface,
                    offload = offload.as_str(),
                    error = %e,
                    "cannot turn offload back on; ethtool -K turns it on by hand"
                ),
            }
        }
    }
}

fn check_leg(
    interface: &str,
    dp: &DataplaneConfig,
    turned_off: &mut TurnedOff,
) -> Result<(), RunError> {
    if sys::interface_index(interface).is_none() {
        return Err(AfPacketError::NoInterface(interface.to_string()).into());
    }
    let mtu = sys::interface_mtu(interface).map_err(|source| RunError::Mtu {
        interface: interface.to_string(),
        source,
    })?;
    let needed = mtu + SLOT_OVERHEAD;
    if dp.frame_size < needed
        && (dp.tpacket_version == TpacketVersion::V2 || dp.frame_size < mtu + 40)
    {
        return Err(RunError::FrameTooSmall {
            interface: interface.to_string(),
            mtu,
            needed,
            frame_size: dp.frame_size,
        });
    }
    if dp.offloads == Offloads::Off {
        for offload in Offload::ALL {
            match sys::disable_offload(interface, offload) {
                Ok(true) => {
                    tracing::info!(
                        interface,
                        offload = offload.as_str(),
                        "turned offload off: an inline leg must forward frames as they are on the wire"
                    );
                    turned_off.0.push((interface.to_string(), offload));
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    interface,
                    offload = offload.as_str(),
                    error = %e,
                    "cannot turn offload off; merged frames larger than a slot are dropped and counted as oversize"
                ),
            }
        }
    }
    Ok(())
}

/// Builds the policy to reload: given the version to give it and the policy in force, the newest
/// policy, or `None` to keep the current one.
pub type Reload = Box<dyn FnMut(u64, &PolicySnapshot) -> Option<PolicySnapshot>>;

/// What `weir run` is handed.
pub struct RunOptions {
    /// Called on SIGHUP.
    pub reload: Reload,
    /// Called once every worker is up (the gateway is forwarding).
    pub on_ready: Box<dyn FnOnce()>,
    /// Where workers send the events of the data path (recharge successes, subscribers without
    /// a session, usage thresholds). A worker never blocks on it: when it is full, events wait
    /// in the worker (coalesced) or are counted. `None`: events are logged.
    pub events: Option<crossbeam_channel::Sender<crate::packet::Event>>,
    /// Filled with the workers' board once it exists, for the control plane to read usage and
    /// counters from.
    pub board: Option<Arc<std::sync::OnceLock<Arc<Board>>>>,
    /// The control plane's request metrics, for `GET /metrics` beside the data path's.
    pub metrics: Option<crate::metrics::ControlMetrics>,
}

/// Runs the data path until SIGINT or SIGTERM; returns the final report after the rings have
/// been drained.
pub fn run(
    policy: Arc<ArcSwap<PolicySnapshot>>,
    dp: &DataplaneConfig,
    mut options: RunOptions,
) -> Result<GatewayReport, RunError> {
    let cores = choose_cores(dp.cores.as_deref())?;
    let n = cores.len();
    let mode = match dp.mode {
        Mode::Bridge => "bridge",
        Mode::Routed => "routed",
    };
    sys::install_signal_handlers().map_err(RunError::Signals)?;
    let version = policy.load().version;
    let board = Board::new(mode, n, Arc::clone(&policy));
    if let Some(cell) = &options.board {
        let _ = cell.set(Arc::clone(&board));
    }
    if let Some(m) = options.metrics.take() {
        board.set_control_metrics(m);
    }
    let portal: resolve::PortalAddresses = Arc::default();
    let listener = if dp.report_listen.is_empty() {
        None
    } else {
        Some(report::listen(&dp.report_listen)?)
    };

    let shared = worker::Shared {
        policy: Arc::clone(&policy),
        board: Arc::clone(&board),
        portal: Arc::clone(&portal),
        clock: Clock::system(),
        events: options.events.take(),
    };
    let make_worker = |index: usize, link: LinkType| {
        let mut w = Worker::new(
            index,
            cores[index],
            Engine::new(policy.load_full(), link),
            shared.clone(),
        );
        w.spin = dp.idle == Idle::Spin;
        w
    };
    let mut handles: Vec<JoinHandle<Result<WorkerReport, RunError>>> = Vec::with_capacity(n);
    let spawn = |index: usize,
                 handles: &mut Vec<JoinHandle<Result<WorkerReport, RunError>>>,
                 body: Box<dyn FnOnce() -> WorkerReport + Send>|
     -> Result<(), RunError> {
        let core = cores[index];
        let h = std::thread::Builder::new()
            .name(format!("weir-worker-{index}"))
            .spawn(move || {
                sys::pin_current_thread(core).map_err(|source| RunError::Pin {
                    worker: index,
                    core,
                    source,
                })?;
                let span = tracing::info_span!("worker", index, core);
                let _guard = span.enter();
                tracing::debug!("worker running");
                Ok(body())
            })
            .map_err(RunError::Thread)?;
        handles.push(h);
        Ok(())
    };

    // Dropped when this returns, after the workers have been joined.
    let mut turned_off = TurnedOff::default();
    let started = (|| -> Result<(), RunError> {
        match dp.mode {
            Mode::Bridge => {
                let (Some(ue), Some(inet)) =
                    (dp.ue_interface.as_deref(), dp.internet_interface.as_deref())
                else {
                    return Err(AfPacketError::NoInterface("(ue_interface)".into()).into());
                };
                check_leg(ue, dp, &mut turned_off)?;
                check_leg(inet, dp, &mut turned_off)?;
                if dp.backend == Backend::AfXdp {
                    let w = xdp_bridge::open(ue, inet, dp, n, make_worker(0, LinkType::Ethernet))?;
                    let [(_, ue_zc), (_, inet_zc)] = w.interfaces();
                    tracing::info!(
                        ue_interface = ue,
                        internet_interface = inet,
                        workers = n,
                        cores = ?cores,
                        ue_zero_copy = ue_zc,
                        internet_zero_copy = inet_zc,
                        policy_version = version,
                        "bridge mode up on AF_XDP"
                    );
                    spawn(0, &mut handles, Box::new(move || w.run()))?;
                    return Ok(());
                }
                // Fanout group ids are per network namespace; one pair per process.
                let group = (std::process::id() as u16) & 0x7fff;
                let rx = dp.rx_config();
                let mut workers = Vec::with_capacity(n);
                for index in 0..n {
                    // Members are numbered in join order: worker `index` joins `index`-th on
                    // both legs, so the program's `hash % n` names the same worker on both.
                    let ue_rx = RxRing::open(ue, &rx)?;
                    ue_rx
                        .join_fanout(group, Leg::Ue)
                        .map_err(|source| RunError::Fanout {
                            interface: ue.to_string(),
                            group,
                            source,
                        })?;
                    let inet_rx = RxRing::open(inet, &rx)?;
                    inet_rx
                        .join_fanout(group | 0x8000, Leg::Internet)
                        .map_err(|source| RunError::Fanout {
                            interface: inet.to_string(),
                            group: group | 0x8000,
                            source,
                        })?;
                    let vnet = rx.vnet;
                    let open =
                        |leg| Transmitter::open(leg, dp.tx_mode, dp.tx_frames, dp.frame_size, vnet);
                    let (ue_tx, inet_tx) = (open(ue)?, open(inet)?);
                    workers.push(bridge::BridgeWorker {
                        worker: make_worker(index, LinkType::Ethernet),
                        ue_rx,
                        ue_tx,
                        inet_rx,
                        inet_tx,
                        batch: dp.batch,
                    });
                }
                tracing::info!(
                    ue_interface = ue,
                    internet_interface = inet,
                    workers = n,
                    cores = ?cores,
                    tpacket = ?dp.tpacket_version,
                    tx = ?dp.tx_mode,
                    offloads = ?dp.offloads,
                    policy_version = version,
                    "bridge mode up"
                );
                for (index, w) in workers.into_iter().enumerate() {
                    spawn(index, &mut handles, Box::new(move || w.run()))?;
                }
            }
            Mode::Routed => {
                let Some(tun) = dp.tun.as_deref() else {
                    return Err(AfPacketError::NoInterface("(tun)".into()).into());
                };
                let queues = TunQueue::open_all(tun, n)?;
                // The kernel hands a TUN queue nothing longer than the device's MTU.
                let mtu = sys::interface_mtu(tun).map_err(|source| RunError::Mtu {
                    interface: tun.to_string(),
                    source,
                })?;
                let mut wakes = Vec::with_capacity(n);
                let mut inboxes = Vec::with_capacity(n);
                let mut peers = Vec::with_capacity(n);
                let mut pools = Vec::with_capacity(n);
                for _ in 0..n {
                    let wake = Arc::new(EventFd::new().map_err(RunError::EventFd)?);
                    let (tx, rx) = std::sync::mpsc::sync_channel(dp.handoff_queue);
                    let (pool, returns) = routed::BufferPool::new(
                        if n > 1 { dp.handoff_queue } else { 0 },
                        mtu as usize,
                    );
                    peers.push(routed::Peer {
                        queue: tx,
                        wake: Arc::clone(&wake),
                        returns,
                    });
                    wakes.push(wake);
                    inboxes.push(rx);
                    pools.push(pool);
                }
                tracing::info!(
                    tun,
                    workers = n,
                    cores = ?cores,
                    policy_version = version,
                    "routed mode up"
                );
                for (index, (((queue, wake), inbox), pool)) in queues
                    .into_iter()
                    .zip(wakes)
                    .zip(inboxes)
                    .zip(pools)
                    .enumerate()
                {
                    let w = routed::RoutedWorker {
                        worker: make_worker(index, LinkType::RawIp),
                        queue,
                        wake,
                        inbox,
                        peers: peers.clone(),
                        pool,
                        batch: dp.batch,
                    };
                    spawn(index, &mut handles, Box::new(move || w.run()))?;
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = started {
        sys::request_stop();
        for h in handles {
            let _ = h.join();
        }
        return Err(e);
    }

    let server = match listener {
        Some(l) => {
            let b = Arc::clone(&board);
            tracing::info!(address = %dp.report_listen, "usage report at GET /report, metrics at GET /metrics");
            Some(
                std::thread::Builder::new()
                    .name("weir-report".into())
                    .spawn(move || report::serve(l, b, sys::stop_requested))
                    .map_err(RunError::Thread)?,
            )
        }
        None => None,
    };
    // Started whatever the policy says, since a reload may name portal hosts later. Not joined
    // at the end: a query in flight must not hold up a stop, and the thread holds nothing that
    // needs closing.
    if let Err(e) = resolve::spawn(
        Arc::clone(&policy),
        shared.clock.clone(),
        resolve::DNS_PORT,
        Arc::clone(&portal),
        sys::stop_requested,
    ) {
        // The garden still has portal_addresses and the DNS answers it sees.
        tracing::warn!(error = %e, "cannot start the portal name resolver");
    }
    (options.on_ready)();

    let mut next_version = version + 1;
    let mut died = None;
    while !sys::stop_requested() {
        std::thread::sleep(Duration::from_millis(50));
        if sys::take_reload_request() {
            if let Some(snapshot) = (options.reload)(next_version, &policy.load()) {
                tracing::info!(version = snapshot.version, "policy reloaded");
                next_version = snapshot.version + 1;
                policy.store(Arc::new(snapshot));
            }
        }
        if let Some(i) = handles.iter().position(|h| h.is_finished()) {
            died = Some(i);
            sys::request_stop();
        }
    }
    tracing::info!("stopping: draining the rings");
    let mut reports = Vec::with_capacity(n);
    let mut first_error = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(RunError::WorkerDied(i));
            }
        }
    }
    if let Some(s) = server {
        let _ = s.join();
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(i) = died {
        if reports.len() < n {
            return Err(RunError::WorkerDied(i));
        }
    }
    Ok(GatewayReport::from_workers(mode, &reports, &policy.load()))
}
