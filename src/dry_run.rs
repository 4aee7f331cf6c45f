//! `weir run --dry-run`: what `weir run` would bind, pin and change on this box, from a
//! configuration it has validated, without opening a socket, a device or a port. Reads only
//! the CPU affinity of this process and the interfaces' MTU under /sys/class/net.
//!
//! Keep it in step with `dataplane::run` and `control::start`: each line names a thing they do.

use weir::dataplane::{Backend, DataplaneConfig, Mode, Offloads};
use weir::io::afpacket::TpacketVersion;
use weir::io::afpacket::TxMode;
use weir::policy::Config;

/// The plan as lines of `key  value`, keys padded to one column.
pub fn render(
    path: &std::path::Path,
    config: &Config,
    dp: &DataplaneConfig,
) -> Result<String, String> {
    let cores = weir::dataplane::choose_cores(dp.cores.as_deref()).map_err(|e| e.to_string())?;
    let mut lines: Vec<(&str, String)> = Vec::new();
    let mtu = |name: &str| match std::fs::read_to_string(format!("/sys/class/net/{name}/mtu")) {
        Ok(m) => format!("MTU {}", m.trim()),
        Err(_) => "not on this box now".to_string(),
    };
    let ring = match dp.tpacket_version {
        TpacketVersion::V2 => format!(
            "TPACKET_V2 receive ring, {} slots of {} bytes",
            dp.rx_frames, dp.frame_size
        ),
        TpacketVersion::V3 => format!(
            "TPACKET_V3 receive ring, {} blocks of {} bytes",
            dp.blocks, dp.block_size
        ),
    };
    let tx = match dp.tx_mode {
        TxMode::Copy => "sendmmsg",
        TxMode::Ring => "PACKET_TX_RING",
    };
    lines.push((
        "mode",
        match dp.mode {
            Mode::Bridge => "bridge".into(),
            Mode::Routed => "routed".into(),
        },
    ));
    let mut legs: Vec<&str> = Vec::new();
    match dp.mode {
        Mode::Bridge => {
            for (key, leg) in [
                ("ue side", dp.ue_interface.as_deref()),
                ("internet side", dp.internet_interface.as_deref()),
            ] {
                let leg = leg.unwrap_or("(none)");
                legs.push(leg);
                let how = match dp.backend {
                    Backend::AfPacket => format!(
                        "AF_PACKET per worker, {ring}, transmit by {tx}, promiscuous while open"
                    ),
                    Backend::AfXdp => {
                        let x = weir::dataplane::xdp_socket_config(dp);
                        format!(
                            "AF_XDP socket on queue 0, rings of {} entries, {} UMEM chunks of {} bytes, \
                             zero-copy where the driver offers it; Weir's XDP program attached by a BPF link while it runs",
                            x.ring_size,
                            2 * x.ring_size,
                            x.frame_size
                        )
                    }
                };
                lines.push((key, format!("{leg} ({}): {how}", mtu(leg))));
            }
            lines.push((
                "offloads",
                match dp.offloads {
                    Offloads::Off => format!(
                        "gro, lro, gso, tso turned off on {} where on; turned back on at exit",
                        legs.join(" and ")
                    ),
                    Offloads::Keep => {
                        "kept as they are (aggregates received whole with their virtio_net_hdr)"
                            .into()
                    }
                },
            ));
        }
        Mode::Routed => {
            let tun = dp.tun.as_deref().unwrap_or("(none)");
            lines.push((
                "tun",
                format!(
                    "{tun} ({}): multi-queue TUN, {} queue{}; created if absent, gone at exit unless persistent",
                    mtu(tun),
                    cores.len(),
                    if cores.len() == 1 { "" } else { "s" }
                ),
            ));
            lines.push(("offloads", "none changed (routed mode)".into()));
        }
    }
    let pins: Vec<String> = cores
        .iter()
        .enumerate()
        .map(|(w, c)| format!("{w}->{c}"))
        .collect();
    lines.push((
        "workers",
        format!("{} pinned (worker->core): {}", cores.len(), pins.join(" ")),
    ));
    lines.push((
        "report",
        if dp.report_listen.is_empty() {
            "off".into()
        } else {
            format!("http://{} (/report, /metrics)", dp.report_listen)
        },
    ));
    let control = &config.control;
    lines.push((
        "gateway api",
        match control.listen {
            None => "off".into(),
            Some(addr) => format!(
                "weir.v1.Gateway on {addr} ({})",
                match &control.tls {
                    None => "plaintext".to_string(),
                    Some(t) if t.client_ca.is_some() => {
                        "TLS, client certificates required".to_string()
                    }
                    Some(_) => "TLS".to_string(),
                }
            ),
        },
    ));
    lines.push((
        "policy engine",
        match &control.policy_engine {
            None => "none (sessions from the file and the operator API)".into(),
            Some(pe) => format!("{pe} (CCR-I on a subscriber's first packet)"),
        },
    ));
    lines.push(("sysctls", "none changed".into()));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!(
        "{}: valid; nothing opened, bound or changed (--dry-run)\n",
        path.display()
    );
    for (k, v) in lines {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    Ok(out)
}
