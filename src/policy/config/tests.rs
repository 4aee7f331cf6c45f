use super::*;
use crate::policy::flow::{AddressMatch, FilterDirection, FlowDescription, PortRange};
use crate::policy::model::{
    DefaultRule, FlowDirection, FlowStatus, RedirectAddressType, RedirectInformation, SdfFilter,
    SubscriberId,
};
use crate::time::Timestamp;

fn errors(text: &str) -> Vec<(usize, usize, String, String)> {
    match Config::from_toml_str(text, "test.toml") {
        Ok(_) => Vec::new(),
        Err(ConfigErrors(list)) => list
            .into_iter()
            .map(|e| (e.line, e.column, e.path, e.message))
            .collect(),
    }
}

#[test]
fn example_file_is_valid() {
    let config = Config::from_toml_str(include_str!("../../../examples/weir.toml"), "weir.toml")
        .unwrap_or_else(|e| panic!("{:#?}", e.0));
    assert_eq!(config.predefined.len(), 5);
    assert_eq!(config.sessions.len(), 3);
    assert_eq!(config.gateway.ue_pools.len(), 2);
}

#[test]
fn days_and_timestamps() {
    assert_eq!(reader::days_from_civil(1970, 1, 1), 0);
    assert_eq!(reader::days_from_civil(1969, 12, 31), -1);
    assert_eq!(reader::days_from_civil(2000, 2, 29), 11016);
    assert_eq!(reader::days_from_civil(2000, 3, 1), 11017);
    assert_eq!(reader::days_from_civil(2026, 1, 1), 20454);
    let dt: toml::value::Datetime = "2026-01-01T02:00:00.5+02:00".parse().unwrap();
    assert_eq!(
        reader::timestamp_of(&dt).unwrap(),
        Timestamp::from_nanos(20454 * 86_400 * 1_000_000_000 + 500_000_000)
    );
    let local: toml::value::Datetime = "2026-01-01T00:00:00".parse().unwrap();
    assert!(reader::timestamp_of(&local).is_err());
}

#[test]
fn syntax_error_has_a_position() {
    let text = "[gateway]\nmalformed = \"drop\"\nue_pools = [\"10.45.0.0/16\"\n";
    let found = errors(text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].2, "");
    assert!(found[0].3.starts_with("TOML syntax"), "{found:?}");
    assert_eq!((found[0].0, found[0].1), (3, 27), "{found:?}");
    assert_eq!(found[0].3, "TOML syntax: unclosed array, expected `]`");
}
