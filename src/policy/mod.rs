//! The policy model: Flow-Descriptions (IPFilterRule), SDF filters, PCC rules, subscriber
//! sessions, the TOML configuration, and the immutable [`PolicySnapshot`] the data path reads.
//!
//! Policy is built and validated here, once, off the packet path. Nothing here touches a socket
//! or a clock; times are handed in.

mod config;
mod flow;
mod model;
mod snapshot;
mod template;

pub(crate) use config::{read_rule, reader};
pub use config::{
    split_http_url, ClientTls, Config, ConfigError, ConfigErrors, ControlSettings,
    CreditControlSettings, FailureHandling, GatewaySettings, MalformedAction, PendingAction,
    PendingSettings, QuicAction, RedirectSettings, ServerTls, SubscriberMapping, SuccessAction,
    SuccessUrl,
};
pub use flow::{
    AddressMatch, FilterDirection, FlowDescription, FlowDescriptionError, IpPrefix, PortRange,
};
pub use model::*;
pub use snapshot::*;
pub use template::{Fill, Template, DEFAULT_LOCATION};
