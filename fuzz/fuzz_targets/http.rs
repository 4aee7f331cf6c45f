//! The HTTP sniffers of the redirect path: any bytes as a request head and as a response head.
//! What they return lies inside the input; and the 302 the responder would write for a sniffed
//! request reads back, through the response sniffer, as that same 302 with that Location.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use weir::policy::{Fill, Template};
use weir::redirect::{sniff_request, sniff_response, write_302, ResponseSniff, Sniff};

const UE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3));

fn inside(buf: &[u8], part: Option<&str>) -> bool {
    part.is_none_or(|p| buf.as_ptr_range().contains(&p.as_ptr()) || p.is_empty())
}

/// The 302 for a request to `orig`, sniffed back: its Location must be the one rendered.
fn answer_reads_back(orig: &str) {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        Template::parse("{url}{q}orig={orig}&sub={sub}&ue={ue}").expect("a valid template")
    });
    let mut location = Vec::new();
    template.render(
        &Fill {
            url: "http://portal.example/recharge",
            orig,
            sub: "imsi-001010000000003",
            ue: UE,
        },
        &mut location,
    );
    let (mut response, mut body) = (Vec::new(), Vec::new());
    write_302(&location, &mut response, &mut body);
    let ResponseSniff::Complete(head) = sniff_response(&response) else {
        panic!("our own 302 does not read back: {response:02x?}");
    };
    assert_eq!(head.status, 302);
    assert_eq!(head.location.map(str::as_bytes), Some(&location[..]));
    assert_eq!(
        head.content_length.map(|n| n + head.head_len),
        Some(response.len())
    );
}

fuzz_target!(|data: &[u8]| {
    match sniff_request(data) {
        Sniff::Complete(head) => {
            assert!(head.head_len <= data.len());
            assert!(inside(data, Some(head.path)) && inside(data, head.host));
            answer_reads_back(head.path);
            if let Some(host) = head.host {
                answer_reads_back(host);
            }
        }
        Sniff::Partial { path, host } => assert!(inside(data, path) && inside(data, host)),
        Sniff::Invalid => {}
    }
    if let ResponseSniff::Complete(head) = sniff_response(data) {
        assert!(head.head_len <= data.len());
        assert!(inside(data, head.location));
    }
});
