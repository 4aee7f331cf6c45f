//! The `Location` template of the 302: parsed once, where the configuration is read, and
//! rendered by the redirect stage for each answer without parsing again.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use std::io::Write as _;
use std::net::IpAddr;

/// Characters left as they are in an encoded URL component: RFC 3986 unreserved.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One piece of a `Location` template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The redirect address, as the policy gave it.
    Url,
    /// `?` when the redirect address has no query yet, else `&`.
    QuerySep,
    /// The original URL, percent-encoded.
    Orig,
    /// The subscriber id, percent-encoded.
    Sub,
    /// The UE address, percent-encoded.
    Ue,
}

/// A parsed `Location` template: `{url}`, `{q}`, `{orig}`, `{sub}`, `{ue}` and literal text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// As written, for messages and for comparing two configurations.
    text: String,
    parts: Vec<Part>,
}

/// What one rendered `Location` names.
#[derive(Clone, Copy, Debug)]
pub struct Fill<'a> {
    /// The redirect address, as the policy gave it.
    pub url: &'a str,
    /// The URL the subscriber asked for.
    pub orig: &'a str,
    /// The subscriber id.
    pub sub: &'a str,
    pub ue: IpAddr,
}

/// The template used when the configuration names none.
pub const DEFAULT_LOCATION: &str = "{url}{q}orig={orig}&sub={sub}";

impl Default for Template {
    /// [`DEFAULT_LOCATION`], built from its parts.
    fn default() -> Template {
        Template {
            text: DEFAULT_LOCATION.to_string(),
            parts: vec![
                Part::Url,
                Part::QuerySep,
                Part::Literal("orig=".into()),
                Part::Orig,
                Part::Literal("&sub=".into()),
                Part::Sub,
            ],
        }
    }
}

impl PartialEq<&str> for Template {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in location template '{text}'"))?;
            parts.push(match &after[..close] {
                "url" => Part::Url,
                "q" => Part::QuerySep,
                "orig" => Part::Orig,
                "sub" => Part::Sub,
                "ue" => Part::Ue,
                other => {
                    return Err(format!(
                        "unknown placeholder '{{{other}}}' in location template; use {{url}}, {{q}}, {{orig}}, {{sub}} or {{ue}}"
                    ))
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        if !parts.contains(&Part::Url) {
            return Err(format!(
                "location template '{text}' must contain {{url}}, the redirect address"
            ));
        }
        if text.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err("a location template must not contain spaces or control characters".into());
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Appends the Location for one request to `out`.
    pub fn render(&self, fill: &Fill<'_>, out: &mut Vec<u8>) {
        let Fill { url, orig, sub, ue } = *fill;
        for part in &self.parts {
            // Writes into a Vec cannot fail.
            let _ = match part {
                Part::Literal(s) => out.write_all(s.as_bytes()),
                Part::Url => out.write_all(url.as_bytes()),
                Part::QuerySep => out.write_all(if url.contains('?') { b"&" } else { b"?" }),
                Part::Orig => write!(
                    out,
                    "{}",
                    percent_encoding::utf8_percent_encode(orig, COMPONENT)
                ),
                Part::Sub => write!(
                    out,
                    "{}",
                    percent_encoding::utf8_percent_encode(sub, COMPONENT)
                ),
                Part::Ue => write!(out, "{ue}"),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn template_renders_every_placeholder() {
        let t = Template::parse("{url}{q}orig={orig}&sub={sub}&ue={ue}").unwrap();
        let mut out = Vec::new();
        let ue = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3));
        let fill = Fill {
            url: "http://portal.example/recharge",
            orig: "http://site.example/a?b=c d",
            sub: "imsi-001",
            ue,
        };
        t.render(&fill, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "http://portal.example/recharge?orig=http%3A%2F%2Fsite.example%2Fa%3Fb%3Dc%20d&sub=imsi-001&ue=10.45.0.3"
        );
        let mut out = Vec::new();
        let fill = Fill {
            url: "http://p/r?x=1",
            orig: "o",
            sub: "s",
            ue,
        };
        t.render(&fill, &mut out);
        assert!(out.starts_with(b"http://p/r?x=1&orig=o"));
    }

    #[test]
    fn the_default_is_the_default_text_parsed() {
        assert_eq!(Template::parse(DEFAULT_LOCATION), Ok(Template::default()));
    }

    #[test]
    fn bad_templates_are_explained() {
        assert!(Template::parse("{orig}").unwrap_err().contains("{url}"));
        assert!(Template::parse("{url}{nope}").unwrap_err().contains("nope"));
        assert!(Template::parse("{url").unwrap_err().contains("unclosed"));
    }
}
