//! What an operator makes of the portal: its name and logo, the page text (English unless a
//! translation is named), how the subscriber is shown, how strictly forms are checked, the
//! amounts offered when no policy engine says, and the captive-portal API (RFC 8908).
//!
//! # The site file (`weir portal --site portal.toml`; every key optional)
//!
//! ```toml
//! operator = "Example Mobile"          # shown on every page; default "Weir"
//! logo = "logo.svg"                    # svg, png, jpeg or webp, at most 256 KiB, relative to this file
//! text = "portal-fr.toml"              # the page text (a translated copy of the English one)
//! subscriber = "masked"                # "id" (default): the subscriber id; "masked": its last 4 characters
//! form_token = "required"              # "browsers" (default): posts from a browser need the page's
//!                                      # form token; "required": every post does
//! offer = { amounts = [500, 1000], currency = "EUR", minor_units = 2 }
//!     # what is offered when the account's plan names no amounts, or without a policy engine
//! captive_api = { user_portal_url = "https://portal.example/recharge", venue_info_url = "https://example.net/",
//!                 tls = { cert = "portal.pem", key = "portal.key", listen = "[::]:443" } }
//!     # RFC 8908: GET /captive-portal/api; over HTTPS on `listen` when a certificate is given
//! ```

use super::PortalError;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The English page text, the default and the reference every translation is checked against.
pub(super) const ENGLISH: &str = include_str!("en.toml");
/// The one style sheet, inlined into every page (no second request in a captive browser).
pub(super) const STYLE: &str = include_str!("style.css");
/// Largest logo accepted, so every page stays small on a slow link.
const MAX_LOGO: usize = 256 * 1024;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    operator: Option<String>,
    logo: Option<PathBuf>,
    text: Option<PathBuf>,
    subscriber: Option<Display>,
    form_token: Option<FormToken>,
    offer: Option<Offer>,
    captive_api: Option<CaptiveFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptiveFile {
    user_portal_url: Option<String>,
    venue_info_url: Option<String>,
    tls: Option<TlsFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: PathBuf,
    key: PathBuf,
    listen: Option<SocketAddr>,
}

/// How the subscriber is named on the page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Display {
    /// The subscriber id as the gateway knows it (`imsi-…`, `msisdn-…`).
    #[default]
    Id,
    /// All but the last four characters hidden.
    Masked,
}

/// When a payment must carry the form token of the page it came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormToken {
    /// When it comes from a browser (it carries `Origin` or `Sec-Fetch-Site`, which every
    /// current browser sends with a form post): a page elsewhere cannot make the subscriber's
    /// browser pay, while a script of the operator's may post without one.
    #[default]
    Browsers,
    /// Always.
    Required,
}

/// Amounts the portal offers, in the balance's unit.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub amounts: Vec<i64>,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub minor_units: u32,
}

impl Default for Offer {
    fn default() -> Offer {
        Offer {
            amounts: vec![5, 10, 20],
            currency: String::new(),
            minor_units: 0,
        }
    }
}

impl Offer {
    /// `amount` written for people: the decimal point where `minor_units` puts it, the currency
    /// as the page text's `money` says.
    pub fn money(&self, text: &Text, amount: i64) -> String {
        let digits = amount.unsigned_abs().to_string();
        let minor = self.minor_units as usize;
        let number = if minor == 0 {
            digits
        } else {
            let padded = format!("{digits:0>width$}", width = minor + 1);
            let (whole, frac) = padded.split_at(padded.len() - minor);
            format!("{whole}.{frac}")
        };
        let sign = if amount < 0 { "-" } else { "" };
        text.plain(
            "money",
            &[
                ("amount", &format!("{sign}{number}")),
                ("currency", &self.currency),
            ],
        )
        .trim()
        .to_string()
    }
}

/// TLS for the captive-portal API.
#[derive(Clone, Debug)]
pub struct CaptiveTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub listen: SocketAddr,
}

/// The RFC 8908 API's settings.
#[derive(Clone, Debug, Default)]
pub struct Captive {
    /// `user-portal-url`; default: the recharge page at the Host the client asked.
    pub user_portal_url: Option<String>,
    pub venue_info_url: Option<String>,
    pub tls: Option<CaptiveTls>,
}

/// The logo, read once at start.
#[derive(Clone, Debug)]
pub struct Logo {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// The site, validated.
#[derive(Clone, Debug)]
pub struct Site {
    pub operator: String,
    pub logo: Option<Logo>,
    pub text: Text,
    pub subscriber: Display,
    pub form_token: FormToken,
    pub offer: Offer,
    pub captive: Captive,
}

impl Default for Site {
    fn default() -> Site {
        Site {
            operator: "Weir".to_string(),
            logo: None,
            // The English text is part of the binary and checked by a test.
            text: Text::english(),
            subscriber: Display::Id,
            form_token: FormToken::Browsers,
            offer: Offer::default(),
            captive: Captive::default(),
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> PortalError {
    PortalError::Site {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Site {
    /// Reads a site file; relative paths in it are taken from its folder.
    pub fn load(path: &Path) -> Result<Site, PortalError> {
        let text = std::fs::read_to_string(path).map_err(|e| bad(path, e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Site::from_toml_str(&text, path, dir)
    }

    pub fn from_toml_str(text: &str, path: &Path, dir: &Path) -> Result<Site, PortalError> {
        let file: SiteFile = toml::from_str(text).map_err(|e| bad(path, e.to_string()))?;
        let mut site = Site::default();
        if let Some(op) = file.operator {
            if op.trim().is_empty() {
                return Err(bad(path, "operator: must not be empty"));
            }
            site.operator = op;
        }
        if let Some(logo) = file.logo {
            let logo = dir.join(logo);
            let content_type = match logo.extension().and_then(|e| e.to_str()) {
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                Some("jpg" | "jpeg") => "image/jpeg",
                Some("webp") => "image/webp",
                _ => {
                    return Err(bad(
                        path,
                        format!(
                            "logo {}: give an .svg, .png, .jpeg or .webp file",
                            logo.display()
                        ),
                    ))
                }
            };
            let bytes = std::fs::read(&logo)
                .map_err(|e| bad(path, format!("logo {}: {e}", logo.display())))?;
            if bytes.len() > MAX_LOGO {
                return Err(bad(
                    path,
                    format!(
                        "logo {}: {} bytes, at most {MAX_LOGO}",
                        logo.display(),
                        bytes.len()
                    ),
                ));
            }
            site.logo = Some(Logo {
                bytes,
                content_type,
            });
        }
        if let Some(t) = file.text {
            let t = dir.join(t);
            let body = std::fs::read_to_string(&t)
                .map_err(|e| bad(path, format!("text {}: {e}", t.display())))?;
            site.text = Text::translated(&body)
                .map_err(|e| bad(path, format!("text {}: {e}", t.display())))?;
        }
        site.subscriber = file.subscriber.unwrap_or_default();
        site.form_token = file.form_token.unwrap_or_default();
        if let Some(offer) = file.offer {
            if offer.amounts.is_empty() || offer.amounts.iter().any(|&a| a <= 0) {
                return Err(bad(
                    path,
                    "offer.amounts: at least one, each greater than zero",
                ));
            }
            if offer.minor_units > 6 {
                return Err(bad(path, "offer.minor_units: 0 to 6"));
            }
            site.offer = offer;
        }
        if let Some(c) = file.captive_api {
            for url in [&c.user_portal_url, &c.venue_info_url]
                .into_iter()
                .flatten()
            {
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    return Err(bad(
                        path,
                        format!("captive_api: '{url}' is not an http(s) URL"),
                    ));
                }
            }
            site.captive = Captive {
                user_portal_url: c.user_portal_url,
                venue_info_url: c.venue_info_url,
                tls: c.tls.map(|t| CaptiveTls {
                    cert: dir.join(t.cert),
                    key: dir.join(t.key),
                    listen: t
                        .listen
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 443))),
                }),
            };
        }
        Ok(site)
    }

    /// The subscriber as the page shows it.
    pub fn show_subscriber(&self, id: &str) -> String {
        match self.subscriber {
            Display::Id => id.to_string(),
            Display::Masked => {
                let chars: Vec<char> = id.chars().collect();
                let keep = chars.len().min(4);
                let tail: String = chars[chars.len() - keep..].iter().collect();
                format!("•••• {tail}")
            }
        }
    }
}

/// The page text: named strings with `{placeholders}`.
#[derive(Clone, Debug)]
pub struct Text {
    strings: HashMap<String, String>,
}

fn parse_strings(body: &str) -> Result<HashMap<String, String>, String> {
    toml::from_str::<HashMap<String, String>>(body).map_err(|e| e.to_string())
}

impl Text {
    fn english() -> Text {
        Text {
            // A test parses ENGLISH; a failure here is a build that no test passed.
            strings: parse_strings(ENGLISH).unwrap_or_default(),
        }
    }

    /// A translation: every name it gives must be one the English text has; the names it
    /// leaves out keep their English text.
    pub fn translated(body: &str) -> Result<Text, String> {
        let mut text = Text::english();
        for (name, value) in parse_strings(body)? {
            if !text.strings.contains_key(&name) {
                return Err(format!("'{name}' is not a name of the page text"));
            }
            text.strings.insert(name, value);
        }
        Ok(text)
    }

    /// The raw string.
    pub fn get(&self, name: &str) -> &str {
        self.strings.get(name).map_or("", String::as_str)
    }

    /// The string with its placeholders filled, as plain text.
    pub fn plain(&self, name: &str, args: &[(&str, &str)]) -> String {
        let mut out = self.get(name).to_string();
        for (k, v) in args {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }

    /// The string escaped for HTML, with its placeholders filled by HTML fragments the caller
    /// escaped.
    pub fn html(&self, name: &str, args: &[(&str, &str)]) -> String {
        let mut out = super::pages::esc(self.get(name));
        for (k, v) in args {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_english_text_parses_and_names_every_string_the_pages_use() {
        let strings = parse_strings(ENGLISH).unwrap();
        for name in [
            "heading",
            "money",
            "pay_button",
            "title_success",
            "reason_replayed",
        ] {
            assert!(strings.contains_key(name), "{name}");
        }
    }

    #[test]
    fn a_translation_replaces_what_it_names_and_refuses_unknown_names() {
        let t = Text::translated("pay_button = \"Recharger\"\n").unwrap();
        assert_eq!(t.get("pay_button"), "Recharger");
        assert_eq!(t.get("heading"), "Top up your balance");
        let err = Text::translated("pay_buton = \"x\"\n").unwrap_err();
        assert!(err.contains("'pay_buton'"), "{err}");
    }

    #[test]
    fn money_is_written_with_its_minor_units_and_currency() {
        let t = Text::english();
        let eur = Offer {
            amounts: vec![1],
            currency: "EUR".into(),
            minor_units: 2,
        };
        assert_eq!(eur.money(&t, 1050), "10.50 EUR");
        assert_eq!(eur.money(&t, 5), "0.05 EUR");
        assert_eq!(eur.money(&t, -120), "-1.20 EUR");
        let whole = Offer {
            amounts: vec![1],
            currency: String::new(),
            minor_units: 0,
        };
        assert_eq!(whole.money(&t, 10), "10");
    }

    #[test]
    fn a_masked_subscriber_shows_its_last_four_characters() {
        let site = Site {
            subscriber: Display::Masked,
            ..Site::default()
        };
        assert_eq!(site.show_subscriber("imsi-001010000000002"), "•••• 0002");
        assert_eq!(site.show_subscriber("ab"), "•••• ab");
    }

    #[test]
    fn site_files_are_checked() {
        let p = Path::new("portal.toml");
        let ok = Site::from_toml_str(
            "operator = \"Example\"\nsubscriber = \"masked\"\n",
            p,
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            (ok.operator.as_str(), ok.subscriber),
            ("Example", Display::Masked)
        );
        for bad in [
            "colour = 1",
            "offer = { amounts = [0] }",
            "logo = \"logo.gif\"",
            "subscriber = \"msisdn\"",
        ] {
            let e = Site::from_toml_str(bad, p, Path::new("."))
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert!(e.to_string().contains("portal.toml"), "{e}");
        }
    }
}
