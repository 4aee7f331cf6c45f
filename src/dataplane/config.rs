//! The `[dataplane]` table of the configuration file: how `weir run` attaches to the network.
//! Read from the same TOML document as the policy; the policy reader owns every other table.
//!
//! ```toml
//! [dataplane]
//! mode = "bridge"                 # "bridge" (two legs, bump in the wire) or "routed" (TUN)
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
//! disable_offloads = true         # turn GRO/LRO/GSO/TSO off on the legs (and say so)
//! report_listen = "127.0.0.1:9464"  # GET /report serves the usage report; "" turns it off
//! ```

use crate::io::afpacket::{RxConfig, TpacketVersion, TxMode};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Bridge,
    Routed,
}

fn default_batch() -> usize {
    64
}
fn default_version() -> TpacketVersion {
    TpacketVersion::V2
}
fn default_rx_frames() -> u32 {
    4096
}
fn default_frame_size() -> u32 {
    2048
}
fn default_block_size() -> u32 {
    1 << 18
}
fn default_blocks() -> u32 {
    16
}
fn default_block_timeout() -> u32 {
    1
}
fn default_tx_frames() -> u32 {
    1024
}
fn default_handoff() -> usize {
    1024
}
fn default_true() -> bool {
    true
}
fn default_listen() -> String {
    "127.0.0.1:9464".to_string()
}

/// The `[dataplane]` table as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    #[serde(default)]
    pub mode: Mode,
    pub ue_interface: Option<String>,
    pub internet_interface: Option<String>,
    pub tun: Option<String>,
    pub cores: Option<Vec<usize>>,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_version")]
    pub tpacket_version: TpacketVersion,
    #[serde(default = "default_rx_frames")]
    pub rx_frames: u32,
    #[serde(default = "default_frame_size")]
    pub frame_size: u32,
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    #[serde(default = "default_blocks")]
    pub blocks: u32,
    #[serde(default = "default_block_timeout")]
    pub block_timeout_ms: u32,
    #[serde(default = "default_tx_frames")]
    pub tx_frames: u32,
    /// How frames leave: see [`TxMode`]. A ring avoids a copy in user space, but a veth that
    /// takes ring frames into another namespace copies their pages (`skb_copy_ubufs`) instead.
    #[serde(default)]
    pub tx_mode: TxMode,
    #[serde(default = "default_handoff")]
    pub handoff_queue: usize,
    #[serde(default = "default_true")]
    pub disable_offloads: bool,
    #[serde(default = "default_listen")]
    pub report_listen: String,
}

#[derive(Deserialize)]
struct Document {
    dataplane: Option<DataplaneConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneConfigError {
    #[error("{origin}: {message}")]
    Toml { origin: String, message: String },
    #[error("{origin}: no [dataplane] table: `weir run` needs one (see examples/lab.toml)")]
    Missing { origin: String },
    #[error("{origin}: [dataplane] {0}", .message)]
    Invalid { origin: String, message: String },
}

impl DataplaneConfig {
    /// Reads the `[dataplane]` table of a configuration document; `origin` names it in errors.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
    ) -> Result<DataplaneConfig, DataplaneConfigError> {
        let doc: Document = toml::from_str(text).map_err(|e| DataplaneConfigError::Toml {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let dp = doc.dataplane.ok_or_else(|| DataplaneConfigError::Missing {
            origin: origin.to_string(),
        })?;
        let invalid = |message: &str| DataplaneConfigError::Invalid {
            origin: origin.to_string(),
            message: message.to_string(),
        };
        match dp.mode {
            Mode::Bridge => {
                if dp.ue_interface.is_none() || dp.internet_interface.is_none() {
                    return Err(invalid(
                        "mode = \"bridge\" needs ue_interface and internet_interface",
                    ));
                }
                if dp.ue_interface == dp.internet_interface {
                    return Err(invalid("ue_interface and internet_interface must differ"));
                }
            }
            Mode::Routed => {
                if dp.tun.is_none() {
                    return Err(invalid("mode = \"routed\" needs tun (the TUN device name)"));
                }
            }
        }
        if dp.batch == 0 || dp.batch > 4096 {
            return Err(invalid("batch must be between 1 and 4096"));
        }
        if dp.cores.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(invalid("cores is empty; leave it out to use every core"));
        }
        if !(256..=65536).contains(&dp.frame_size) {
            return Err(invalid("frame_size must be between 256 and 65536"));
        }
        if dp.rx_frames < 8 || dp.tx_frames < 8 || dp.blocks < 2 {
            return Err(invalid(
                "rings need at least 8 frames (rx_frames, tx_frames) and 2 blocks",
            ));
        }
        if dp.handoff_queue == 0 {
            return Err(invalid("handoff_queue must be at least 1"));
        }
        Ok(dp)
    }

    pub fn rx_config(&self) -> RxConfig {
        RxConfig {
            version: self.tpacket_version,
            frame_size: self.frame_size,
            frames: self.rx_frames,
            block_size: self.block_size,
            blocks: self.blocks,
            block_timeout_ms: self.block_timeout_ms,
        }
    }
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
        assert!(dp.disable_offloads);
        assert_eq!(dp.tx_mode, TxMode::Copy);
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
    fn mistakes_are_named() {
        let e = DataplaneConfig::from_toml_str("[dataplane]\nue_interfce = \"x\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `ue_interfce`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = DataplaneConfig::from_toml_str("[dataplane]\nmode = \"routed\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs tun"), "{e}");
        let e = DataplaneConfig::from_toml_str("[gateway]\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [dataplane] table"), "{e}");
        let e = DataplaneConfig::from_toml_str(
            "[dataplane]\nue_interface = \"a\"\ninternet_interface = \"b\"\ntpacket_version = \"v4\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("v4"), "{e}");
    }
}
