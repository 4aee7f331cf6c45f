//! The `[dataplane]` table of the configuration file: how `weir run` attaches to the network.
//! Read from the same TOML document as the policy; the policy reader owns every other table.
//! Every mistake is reported, each as `file:line:column: dataplane.key: message`, the form the
//! policy tables use, and every size has a range (in the table of the README).
//!
//! ```toml
//! [dataplane]
//! mode = "bridge"                 # "bridge" (two legs, bump in the wire) or "routed" (TUN)
//! backend = "af_packet"           # bridge: "af_packet" (mmap rings) or "af_xdp" (XSK sockets)
//! ue_interface = "gw-ue"          # bridge: the leg facing the UEs
//! internet_interface = "gw-inet"  # bridge: the leg facing the internet
//! tun = "weir0"                   # routed: the multi-queue TUN device to create or attach
//! cores = [0, 1]                  # one worker pinned per core; default: every allowed core
//! batch = 64                      # frames per leg per wake-up
//! tpacket_version = "v2"          # receive ring layout: "v2" or "v3"
//! rx_frames = 4096                # v2 receive slots per worker and leg
//! frame_size = 2048               # slot size: MTU + link header + 64 bytes of ring header
//! block_size = 262144             # v3 block size and count, and its block timeout
//! blocks = 16
//! block_timeout_ms = 1
//! tx_frames = 1024                # transmit slots per worker and leg (copy: at most 1024)
//! tx_mode = "copy"                # "copy" (sendmmsg) or "ring" (zero-copy PACKET_TX_RING)
//! handoff_queue = 1024            # routed: packets queued to another worker at most
//! offloads = "keep"               # "keep": forward GSO/GRO aggregates whole (PACKET_VNET_HDR)
//!                                 # "off": turn GRO/LRO/GSO/TSO off on the legs (and say so)
//! idle = "sleep"                 # an idle worker sleeps in poll(2); "spin": polls its rings
//! report_listen = "127.0.0.1:9464"  # GET /report serves the usage report; "" turns it off
//! ```

use crate::io::afpacket::{RxConfig, TpacketVersion, TxMode};
use crate::policy::ConfigError;
use std::ops::RangeInclusive;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// What a worker with nothing to do does: the `idle` key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Idle {
    /// Sleeps in poll(2) until a ring has frames: its core is free for others, and the first
    /// frame after a pause pays the wake-up (on a virtual machine, up to tens of µs when the
    /// frame's softirq ran on another core; BENCHMARKS.md, Where the added latency goes).
    #[default]
    Sleep,
    /// Polls its rings without sleeping: the core is the worker's alone (100 % busy, always),
    /// and no frame waits for a wake-up. For a worker core nothing else runs on.
    Spin,
}

/// What the legs' segmentation offloads do: the `offloads` key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Offloads {
    /// Left as they are: aggregates (a sender's TSO/GSO, the leg's GRO) are received whole with
    /// their `virtio_net_hdr`, classified once, sent on whole, and metered as the segments they
    /// stand for: one engine pass per aggregate instead of per 1500-byte frame; 2.4–6.5× the TCP
    /// throughput of `Off` on veth (BENCHMARKS.md, Offloads kept). Not the default: a frame held
    /// for a pending session is released without its header (a partial checksum would leave
    /// unfinished), and AF_XDP cannot take aggregates.
    Keep,
    /// GRO, LRO, GSO and TSO turned off on both legs, so every frame is one wire frame. The
    /// default, as measured in BENCHMARKS.md (Inline forwarding).
    #[default]
    Off,
}

/// How a bridge's legs are read and written: the `backend` key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// AF_PACKET rings with fanout steering subscribers to their worker.
    #[default]
    AfPacket,
    /// AF_XDP sockets fed by an XDP program Weir loads on each leg (one worker for now).
    AfXdp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Bridge,
    Routed,
}

/// The ranges of the size keys, as the README documents them.
pub mod limits {
    use std::ops::RangeInclusive;
    pub const BATCH: RangeInclusive<u32> = 1..=4096;
    pub const RX_FRAMES: RangeInclusive<u32> = 8..=262_144;
    pub const FRAME_SIZE: RangeInclusive<u32> = 256..=65_536;
    pub const BLOCK_SIZE: RangeInclusive<u32> = 4096..=(1 << 24);
    pub const BLOCKS: RangeInclusive<u32> = 2..=4096;
    pub const BLOCK_TIMEOUT_MS: RangeInclusive<u32> = 1..=10_000;
    pub const TX_FRAMES: RangeInclusive<u32> = 8..=262_144;
    /// Each routed worker keeps this many handoff buffers of the TUN's MTU.
    pub const HANDOFF_QUEUE: RangeInclusive<u32> = 1..=16_384;
    /// Whether the core exists and this process may use it is checked at start.
    pub const CORE: RangeInclusive<u32> = 0..=65_535;
}

/// The `[dataplane]` table as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    pub mode: Mode,
    pub backend: Backend,
    pub ue_interface: Option<String>,
    pub internet_interface: Option<String>,
    pub tun: Option<String>,
    pub cores: Option<Vec<usize>>,
    pub batch: usize,
    pub tpacket_version: TpacketVersion,
    pub rx_frames: u32,
    pub frame_size: u32,
    pub block_size: u32,
    pub blocks: u32,
    pub block_timeout_ms: u32,
    pub tx_frames: u32,
    /// How frames leave: see [`TxMode`]. A ring avoids a copy in user space, but a veth that
    /// takes ring frames into another namespace copies their pages (`skb_copy_ubufs`) instead.
    pub tx_mode: TxMode,
    pub handoff_queue: usize,
    /// `offloads`, or the older `disable_offloads = true` (off) / `false` (keep).
    pub offloads: Offloads,
    pub idle: Idle,
    pub report_listen: String,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            mode: Mode::Bridge,
            backend: Backend::AfPacket,
            ue_interface: None,
            internet_interface: None,
            tun: None,
            cores: None,
            batch: 64,
            tpacket_version: TpacketVersion::V2,
            rx_frames: 4096,
            frame_size: 2048,
            block_size: 1 << 18,
            blocks: 16,
            block_timeout_ms: 1,
            tx_frames: 1024,
            tx_mode: TxMode::Copy,
            handoff_queue: 1024,
            offloads: Offloads::default(),
            idle: Idle::default(),
            report_listen: "127.0.0.1:9464".to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneConfigError {
    #[error("{origin}: no [dataplane] table: `weir run` needs one (see examples/lab.toml)")]
    Missing { origin: String },
    /// Every mistake found, in document order.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigError>),
}

const KEYS: &[&str] = &[
    "mode",
    "ue_interface",
    "internet_interface",
    "tun",
    "cores",
    "batch",
    "tpacket_version",
    "rx_frames",
    "frame_size",
    "block_size",
    "blocks",
    "block_timeout_ms",
    "tx_frames",
    "tx_mode",
    "handoff_queue",
    "offloads",
    "disable_offloads",
    "report_listen",
    "backend",
    "idle",
];

type Value<'i> = Spanned<DeValue<'i>>;

/// Collects located errors while the table is read.
struct Reader<'t> {
    text: &'t str,
    origin: &'t str,
    errors: Vec<ConfigError>,
}

impl Reader<'_> {
    fn error(&mut self, at: usize, path: &str, message: impl Into<String>) {
        let at = at.min(self.text.len());
        let before = self.text.get(..at).unwrap_or(self.text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        self.errors.push(ConfigError {
            origin: self.origin.to_string(),
            line: before.matches('\n').count() + 1,
            // Characters, as editors count them.
            column: before[line_start..].chars().count() + 1,
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn int(&mut self, value: &Value<'_>, key: &str, range: RangeInclusive<u32>) -> Option<u32> {
        let path = format!("dataplane.{key}");
        let DeValue::Integer(int) = value.get_ref() else {
            let found = value.get_ref().type_str();
            self.error(
                value.span().start,
                &path,
                format!("expected an integer, found {found}"),
            );
            return None;
        };
        match i128::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if (i128::from(*range.start())..=i128::from(*range.end())).contains(&n) => {
                u32::try_from(n).ok()
            }
            _ => {
                self.error(
                    value.span().start,
                    &path,
                    format!(
                        "{int} is out of range; expected {}-{}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    fn str<'v>(&mut self, value: &'v Value<'_>, key: &str) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s),
            other => {
                let found = other.type_str();
                let path = format!("dataplane.{key}");
                self.error(
                    value.span().start,
                    &path,
                    format!("expected a string, found {found}"),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        value: &Value<'_>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let text = self.str(value, key)?;
        let found = choices.iter().find(|(n, _)| *n == text).map(|&(_, v)| v);
        if found.is_none() {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            self.error(
                value.span().start,
                &format!("dataplane.{key}"),
                format!("'{text}' is not one of {}", names.join(", ")),
            );
        }
        found
    }

    /// A network interface name as Linux takes it.
    fn interface(&mut self, value: &Value<'_>, key: &str) -> Option<String> {
        let name = self.str(value, key)?;
        let ok = !name.is_empty()
            && name.len() < 16
            && name != "."
            && name != ".."
            && !name
                .bytes()
                .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
        if !ok {
            self.error(
                value.span().start,
                &format!("dataplane.{key}"),
                format!("'{name}' is not an interface name (1 to 15 bytes, no '/', ':' or spaces)"),
            );
            return None;
        }
        Some(name.to_string())
    }
}

impl DataplaneConfig {
    /// Reads the `[dataplane]` table of a configuration document; `origin` names it in errors.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
    ) -> Result<DataplaneConfig, DataplaneConfigError> {
        let mut r = Reader {
            text,
            origin,
            errors: Vec::new(),
        };
        let root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(e) => {
                let at = e.span().map_or(0, |s| s.start);
                r.error(at, "", format!("TOML syntax: {}", e.message().trim_end()));
                return Err(DataplaneConfigError::Invalid(r.errors));
            }
        };
        let Some(table) = root.get_ref().get("dataplane") else {
            return Err(DataplaneConfigError::Missing {
                origin: origin.to_string(),
            });
        };
        let DeValue::Table(t) = table.get_ref() else {
            let found = table.get_ref().type_str();
            r.error(
                table.span().start,
                "dataplane",
                format!("expected a table, found {found}"),
            );
            return Err(DataplaneConfigError::Invalid(r.errors));
        };
        let mut dp = DataplaneConfig::default();
        for (key, value) in t.iter() {
            let name: &str = key.get_ref();
            let size = |r: &mut Reader<'_>, range| r.int(value, name, range);
            match name {
                "mode" => {
                    let modes = [("bridge", Mode::Bridge), ("routed", Mode::Routed)];
                    if let Some(m) = r.choice(value, name, &modes) {
                        dp.mode = m;
                    }
                }
                "backend" => {
                    let backends = [("af_packet", Backend::AfPacket), ("af_xdp", Backend::AfXdp)];
                    if let Some(b) = r.choice(value, name, &backends) {
                        dp.backend = b;
                    }
                }
                "ue_interface" => dp.ue_interface = r.interface(value, name),
                "internet_interface" => dp.internet_interface = r.interface(value, name),
                "tun" => dp.tun = r.interface(value, name),
                "cores" => dp.cores = read_cores(&mut r, value),
                "batch" => {
                    if let Some(n) = size(&mut r, limits::BATCH) {
                        dp.batch = n as usize;
                    }
                }
                "tpacket_version" => {
                    let versions = [("v2", TpacketVersion::V2), ("v3", TpacketVersion::V3)];
                    if let Some(v) = r.choice(value, name, &versions) {
                        dp.tpacket_version = v;
                    }
                }
                "rx_frames" => {
                    dp.rx_frames = size(&mut r, limits::RX_FRAMES).unwrap_or(dp.rx_frames)
                }
                "frame_size" => {
                    dp.frame_size = size(&mut r, limits::FRAME_SIZE).unwrap_or(dp.frame_size)
                }
                "block_size" => {
                    dp.block_size = size(&mut r, limits::BLOCK_SIZE).unwrap_or(dp.block_size)
                }
                "blocks" => dp.blocks = size(&mut r, limits::BLOCKS).unwrap_or(dp.blocks),
                "block_timeout_ms" => {
                    dp.block_timeout_ms =
                        size(&mut r, limits::BLOCK_TIMEOUT_MS).unwrap_or(dp.block_timeout_ms)
                }
                "tx_frames" => {
                    dp.tx_frames = size(&mut r, limits::TX_FRAMES).unwrap_or(dp.tx_frames)
                }
                "tx_mode" => {
                    let modes = [("copy", TxMode::Copy), ("ring", TxMode::Ring)];
                    if let Some(m) = r.choice(value, name, &modes) {
                        dp.tx_mode = m;
                    }
                }
                "handoff_queue" => {
                    if let Some(n) = size(&mut r, limits::HANDOFF_QUEUE) {
                        dp.handoff_queue = n as usize;
                    }
                }
                "idle" => {
                    let choices = [("sleep", Idle::Sleep), ("spin", Idle::Spin)];
                    if let Some(i) = r.choice(value, name, &choices) {
                        dp.idle = i;
                    }
                }
                "offloads" => {
                    let choices = [("keep", Offloads::Keep), ("off", Offloads::Off)];
                    if let Some(o) = r.choice(value, name, &choices) {
                        dp.offloads = o;
                    }
                }
                "disable_offloads" if t.get("offloads").is_some() => r.error(
                    key.span().start,
                    "dataplane.disable_offloads",
                    "give offloads = \"keep\" or \"off\", not disable_offloads as well",
                ),
                "disable_offloads" => match value.get_ref() {
                    DeValue::Boolean(b) => {
                        dp.offloads = if *b { Offloads::Off } else { Offloads::Keep }
                    }
                    other => {
                        let found = other.type_str();
                        r.error(
                            value.span().start,
                            "dataplane.disable_offloads",
                            format!("expected true or false, found {found}"),
                        );
                    }
                },
                "report_listen" => {
                    if let Some(s) = r.str(value, name) {
                        dp.report_listen = s.to_string();
                    }
                }
                _ => r.error(
                    key.span().start,
                    &format!("dataplane.{name}"),
                    format!("unknown key '{name}'; expected one of {}", KEYS.join(", ")),
                ),
            }
        }
        // What the keys say together: the table's header is where to look.
        let at = table.span().start;
        match dp.mode {
            Mode::Bridge => {
                let written = |k: &str| t.get(k).is_some();
                if !written("ue_interface") || !written("internet_interface") {
                    r.error(
                        at,
                        "dataplane",
                        "mode = \"bridge\" needs ue_interface and internet_interface",
                    );
                } else if dp.ue_interface.is_some() && dp.ue_interface == dp.internet_interface {
                    r.error(
                        t.get("internet_interface").map_or(at, |v| v.span().start),
                        "dataplane.internet_interface",
                        "ue_interface and internet_interface must differ",
                    );
                }
            }
            Mode::Routed if dp.backend == Backend::AfXdp => r.error(
                t.get("backend").map_or(at, |v| v.span().start),
                "dataplane.backend",
                "\"af_xdp\" needs mode = \"bridge\" (routed mode reads and writes its TUN)",
            ),
            Mode::Routed => {
                if t.get("tun").is_none() {
                    r.error(
                        at,
                        "dataplane",
                        "mode = \"routed\" needs tun (the TUN device name)",
                    );
                }
            }
        }
        if dp.backend == Backend::AfXdp && dp.offloads == Offloads::Keep {
            r.error(
                t.get("offloads").map_or(at, |v| v.span().start),
                "dataplane.offloads",
                "\"keep\" needs backend = \"af_packet\" (an XDP program sees no aggregates)",
            );
        }
        // Errors come out in document order, wherever in the table the reading found them.
        r.errors.sort_by_key(|e| (e.line, e.column));
        if r.errors.is_empty() {
            Ok(dp)
        } else {
            Err(DataplaneConfigError::Invalid(r.errors))
        }
    }

    pub fn rx_config(&self) -> RxConfig {
        RxConfig {
            version: self.tpacket_version,
            frame_size: self.frame_size,
            frames: self.rx_frames,
            block_size: self.block_size,
            blocks: self.blocks,
            block_timeout_ms: self.block_timeout_ms,
            vnet: self.offloads == Offloads::Keep,
        }
    }
}

/// `cores`: a non-empty array of distinct core numbers.
fn read_cores(r: &mut Reader<'_>, value: &Value<'_>) -> Option<Vec<usize>> {
    let DeValue::Array(items) = value.get_ref() else {
        let found = value.get_ref().type_str();
        r.error(
            value.span().start,
            "dataplane.cores",
            format!("expected an array, found {found}"),
        );
        return None;
    };
    if items.is_empty() {
        r.error(
            value.span().start,
            "dataplane.cores",
            "cores is empty; leave it out to use every core",
        );
        return None;
    }
    let mut cores = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("cores[{i}]");
        match r.int(item, &key, limits::CORE) {
            Some(c) if cores.contains(&(c as usize)) => {
                r.error(
                    item.span().start,
                    &format!("dataplane.{key}"),
                    format!("core {c} is listed twice"),
                );
                ok = false;
            }
            Some(c) => cores.push(c as usize),
            None => ok = false,
        }
    }
    ok.then_some(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"[gateway]
ue_pools = ["10.45.0.0/16"]

[dataplane]
ue_interface = "gw-ue"
internet_interface = "gw-inet"
cores = [1]
tpacket_version = "v3"

[[session]]
subscriber = "imsi-001010000000001"
"#;

    #[test]
    fn reads_the_table_with_defaults() {
        let dp = DataplaneConfig::from_toml_str(DOC, "t.toml").unwrap();
        assert_eq!(dp.mode, Mode::Bridge);
        assert_eq!(dp.ue_interface.as_deref(), Some("gw-ue"));
        assert_eq!(dp.cores, Some(vec![1]));
        assert_eq!(dp.tpacket_version, TpacketVersion::V3);
        assert_eq!(dp.batch, 64);
        assert_eq!(dp.report_listen, "127.0.0.1:9464");
        assert_eq!(dp.offloads, Offloads::Off);
        assert!(!dp.rx_config().vnet);
        assert_eq!(dp.tx_mode, TxMode::Copy);
    }

    #[test]
    fn reads_the_offloads_and_the_older_switch() {
        let with = |line: &str| DOC.replace("cores = [1]", &format!("cores = [1]\n{line}"));
        let read = |line: &str| DataplaneConfig::from_toml_str(&with(line), "t.toml");
        assert_eq!(read("offloads = \"off\"").unwrap().offloads, Offloads::Off);
        assert!(!read("offloads = \"off\"").unwrap().rx_config().vnet);
        assert_eq!(
            read("offloads = \"keep\"").unwrap().offloads,
            Offloads::Keep
        );
        assert_eq!(
            read("disable_offloads = true").unwrap().offloads,
            Offloads::Off
        );
        assert_eq!(
            read("disable_offloads = false").unwrap().offloads,
            Offloads::Keep
        );
        assert_eq!(
            read("offloads = \"on\"").unwrap_err().to_string(),
            "t.toml:8:12: dataplane.offloads: 'on' is not one of \"keep\", \"off\""
        );
        assert_eq!(
            read("offloads = \"off\"\ndisable_offloads = true")
                .unwrap_err()
                .to_string(),
            "t.toml:9:1: dataplane.disable_offloads: give offloads = \"keep\" or \"off\", not disable_offloads as well"
        );
    }

    #[test]
    fn reads_the_backend_and_keeps_af_xdp_to_bridges() {
        let from = |doc: &str| DataplaneConfig::from_toml_str(doc, "t.toml").unwrap();
        assert_eq!(from(DOC).backend, Backend::AfPacket);
        let doc = DOC.replace("cores = [1]", "cores = [1]\nbackend = \"af_xdp\"");
        assert_eq!(from(&doc).backend, Backend::AfXdp);
        let bad = DOC.replace("cores = [1]", "cores = [1]\nbackend = \"xdp\"");
        let e = DataplaneConfig::from_toml_str(&bad, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dataplane.backend: 'xdp' is not one of \"af_packet\", \"af_xdp\""),
            "{e}"
        );
        let routed = "[dataplane]\nmode = \"routed\"\ntun = \"w0\"\nbackend = \"af_xdp\"\n";
        let e = DataplaneConfig::from_toml_str(routed, "t.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.toml:4:11: dataplane.backend: \"af_xdp\" needs mode = \"bridge\" (routed mode reads and writes its TUN)");
    }

    #[test]
    fn reads_what_an_idle_worker_does() {
        let dp = DataplaneConfig::from_toml_str(DOC, "t.toml").unwrap();
        assert_eq!(dp.idle, Idle::Sleep);
        let doc = DOC.replace("cores = [1]", "cores = [1]\nidle = \"spin\"");
        let dp = DataplaneConfig::from_toml_str(&doc, "t.toml").unwrap();
        assert_eq!(dp.idle, Idle::Spin);
        let doc = DOC.replace("cores = [1]", "cores = [1]\nidle = \"busy\"");
        let e = DataplaneConfig::from_toml_str(&doc, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:"), "{e}");
        assert!(
            e.contains("dataplane.idle") && e.contains("\"sleep\""),
            "{e}"
        );
    }

    #[test]
    fn reads_the_transmit_mode() {
        let doc = DOC.replace("cores = [1]", "cores = [1]\ntx_mode = \"copy\"");
        let dp = DataplaneConfig::from_toml_str(&doc, "t.toml").unwrap();
        assert_eq!(dp.tx_mode, TxMode::Copy);
        let doc = DOC.replace("cores = [1]", "cores = [1]\ntx_mode = \"ring\"");
        let dp = DataplaneConfig::from_toml_str(&doc, "t.toml").unwrap();
        assert_eq!(dp.tx_mode, TxMode::Ring);
        let doc = DOC.replace("cores = [1]", "cores = [1]\ntx_mode = \"zerocopy\"");
        let e = DataplaneConfig::from_toml_str(&doc, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("zerocopy") && e.contains("ring") && e.contains("copy"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_are_named_with_their_place() {
        let errors = |text: &str| match DataplaneConfig::from_toml_str(text, "t.toml") {
            Err(DataplaneConfigError::Invalid(e)) => {
                e.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            errors("[dataplane]\nue_interfce = \"x\"\n"),
            [
                "t.toml:1:1: dataplane: mode = \"bridge\" needs ue_interface and internet_interface",
                "t.toml:2:1: dataplane.ue_interfce: unknown key 'ue_interfce'; expected one of mode, ue_interface, internet_interface, tun, cores, batch, tpacket_version, rx_frames, frame_size, block_size, blocks, block_timeout_ms, tx_frames, tx_mode, handoff_queue, offloads, disable_offloads, report_listen, backend, idle",
            ]
        );
        assert_eq!(
            errors("[dataplane]\nmode = \"routed\"\n"),
            ["t.toml:1:1: dataplane: mode = \"routed\" needs tun (the TUN device name)"]
        );
        assert_eq!(
            errors("[dataplane]\nue_interface = \"a\"\ninternet_interface = \"b\"\ntpacket_version = \"v4\"\n"),
            ["t.toml:4:19: dataplane.tpacket_version: 'v4' is not one of \"v2\", \"v3\""]
        );
        assert_eq!(
            errors("[dataplane]\ntun = \"a/b\"\nmode = \"routed\"\ncores = []\n"),
            [
                "t.toml:2:7: dataplane.tun: 'a/b' is not an interface name (1 to 15 bytes, no '/', ':' or spaces)",
                "t.toml:4:9: dataplane.cores: cores is empty; leave it out to use every core",
            ]
        );
        assert!(matches!(
            DataplaneConfig::from_toml_str("[gateway]\n", "t.toml"),
            Err(DataplaneConfigError::Missing { .. })
        ));
    }

    #[test]
    fn every_size_is_checked_at_both_ends_of_its_range() {
        let keys = [
            ("batch", limits::BATCH),
            ("rx_frames", limits::RX_FRAMES),
            ("frame_size", limits::FRAME_SIZE),
            ("block_size", limits::BLOCK_SIZE),
            ("blocks", limits::BLOCKS),
            ("block_timeout_ms", limits::BLOCK_TIMEOUT_MS),
            ("tx_frames", limits::TX_FRAMES),
            ("handoff_queue", limits::HANDOFF_QUEUE),
        ];
        for (key, range) in keys {
            let doc = |n: i64| {
                format!(
                    "[dataplane]\nue_interface = \"a\"\ninternet_interface = \"b\"\n{key} = {n}\n"
                )
            };
            for n in [i64::from(*range.start()), i64::from(*range.end())] {
                assert!(
                    DataplaneConfig::from_toml_str(&doc(n), "t.toml").is_ok(),
                    "{key} = {n}"
                );
            }
            for n in [i64::from(*range.start()) - 1, i64::from(*range.end()) + 1] {
                let e = DataplaneConfig::from_toml_str(&doc(n), "t.toml").unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!(
                        "t.toml:4:{}: dataplane.{key}: {n} is out of range; expected {}-{}",
                        key.len() + 4,
                        range.start(),
                        range.end()
                    )
                );
            }
        }
    }
}
