//! The portal's HTML: one layout (viewport meta, the inlined style sheet, the operator's name
//! and logo) around each page. Every text comes from the site's page text and every value is
//! escaped here; nothing needs JavaScript.

use super::forms::Issued;
use super::site::{Offer, Site};
use crate::redirect::html_escape;

pub(super) fn esc(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    html_escape(text.as_bytes(), &mut out);
    // Escaping valid UTF-8 byte by byte, ASCII for ASCII, keeps it valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Where the logo is served.
pub(super) const LOGO_PATH: &str = "/recharge/logo";

fn layout(site: &Site, title: &str, main: &str) -> String {
    let t = &site.text;
    let logo = if site.logo.is_some() {
        format!("<img src=\"{LOGO_PATH}\" alt=\"\">")
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title} · {operator}</title>\n<style>\n{css}</style>\n</head>\n<body>\n\
<header>{logo}<span class=\"operator\">{operator}</span></header>\n<main>\n{main}</main>\n</body>\n</html>\n",
        lang = esc(t.get("lang")),
        title = esc(title),
        operator = esc(&site.operator),
        css = super::site::STYLE,
    )
}

/// The recharge page's content.
pub(super) struct RechargeView<'a> {
    /// The subscriber id the form pays for; empty when unknown.
    pub subscriber: &'a str,
    /// How the page names the subscriber (already HTML).
    pub who_html: String,
    pub orig: &'a str,
    /// Balance and pending credits, when the store said.
    pub balance: Option<i64>,
    pub pending: i64,
    /// How money is written, and what is offered (empty: nothing to pay).
    pub offer: Offer,
    /// Which amount is selected.
    pub selected: Option<i64>,
    /// The form's token; `None`: no form (unknown subscriber, store unreachable).
    pub form: Option<Issued>,
    /// Name of the error text to show above the form.
    pub error: Option<&'static str>,
}

pub(super) fn recharge(site: &Site, v: &RechargeView<'_>) -> String {
    let t = &site.text;
    let mut main = format!("<h1>{}</h1>\n", t.html("heading", &[]));
    if let Some(e) = v.error {
        main.push_str(&format!(
            "<p id=\"error\" class=\"alert\" role=\"alert\">{}</p>\n",
            t.html(e, &[])
        ));
    }
    main.push_str("<section class=\"card\"><dl>\n");
    main.push_str(&format!(
        "<div><dt>{}</dt><dd id=\"subscriber\">{}</dd></div>\n",
        t.html("subscriber_label", &[]),
        v.who_html
    ));
    if let Some(b) = v.balance {
        main.push_str(&format!(
            "<div><dt>{}</dt><dd id=\"balance\">{}</dd></div>\n",
            t.html("balance_label", &[]),
            esc(&v.offer.money(t, b))
        ));
        if v.pending != 0 {
            main.push_str(&format!(
                "<div><dt>{}</dt><dd id=\"pending\">{}</dd></div>\n",
                t.html("pending_label", &[]),
                esc(&v.offer.money(t, v.pending))
            ));
        }
    }
    main.push_str("</dl></section>\n");
    if !v.orig.is_empty() {
        let url = format!("<code id=\"orig\">{}</code>", esc(v.orig));
        main.push_str(&format!("<p>{}</p>\n", t.html("wanted", &[("url", &url)])));
    }
    match &v.form {
        Some(form) if !v.offer.amounts.is_empty() => {
            let selected = v
                .selected
                .filter(|s| v.offer.amounts.contains(s))
                .unwrap_or(v.offer.amounts[0]);
            main.push_str("<form method=\"post\" action=\"/recharge/pay\" class=\"card\">\n");
            main.push_str(&format!(
                "<fieldset><legend>{}</legend>\n<div class=\"offers\">\n",
                t.html("choose_amount", &[])
            ));
            for &a in &v.offer.amounts {
                main.push_str(&format!(
                    "<label class=\"offer\"><input type=\"radio\" name=\"amount\" value=\"{a}\"{}><span>{}</span></label>\n",
                    if a == selected { " checked" } else { "" },
                    esc(&v.offer.money(t, a))
                ));
            }
            main.push_str("</div></fieldset>\n");
            for (name, value) in [
                ("sub", v.subscriber),
                ("orig", v.orig),
                ("key", &form.key),
                ("exp", &form.exp.to_string()),
                ("form", &form.sig),
            ] {
                main.push_str(&format!(
                    "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
                    esc(value)
                ));
            }
            main.push_str(&format!(
                "<button id=\"recharge\" type=\"submit\">{}</button>\n</form>\n",
                t.html("pay_button", &[])
            ));
        }
        Some(_) => main.push_str(&format!(
            "<p class=\"alert\">{}</p>\n",
            t.html("no_offers", &[])
        )),
        None => {
            let mut again = String::from("/recharge?");
            if !v.subscriber.is_empty() {
                again.push_str("sub=");
                again.push_str(&super::enc(v.subscriber));
            }
            if !v.orig.is_empty() {
                again.push_str("&orig=");
                again.push_str(&super::enc(v.orig));
            }
            main.push_str(&format!(
                "<p><a class=\"button\" id=\"again\" href=\"{}\">{}</a></p>\n",
                esc(&again),
                t.html("try_again", &[])
            ));
        }
    }
    layout(site, t.get("title_recharge"), &main)
}

/// A link back to the page first asked for: only http and https URLs, never `javascript:`.
fn continue_link(site: &Site, orig: Option<&str>) -> String {
    match orig.filter(|o| o.starts_with("http://") || o.starts_with("https://")) {
        Some(o) => format!(
            "<p><a id=\"continue\" class=\"button\" href=\"{}\">{}</a></p>\n",
            esc(o),
            site.text.html("continue", &[("url", &esc(o))])
        ),
        None => String::new(),
    }
}

/// The success page of a verified token.
pub(super) fn success(site: &Site, r: &super::receipts::Receipt, orig: Option<&str>) -> String {
    let t = &site.text;
    let offer = Offer {
        amounts: Vec::new(),
        currency: r.currency.clone(),
        minor_units: r.minor_units,
    };
    let mut main = format!(
        "<h1 id=\"success\">{}</h1>\n<p>{}</p>\n<section class=\"card ok\"><dl>\n",
        t.html("title_success", &[]),
        t.html("success_thanks", &[])
    );
    main.push_str(&format!(
        "<div><dt>{}</dt><dd id=\"charged\">{}</dd></div>\n",
        t.html("charged_label", &[]),
        esc(&offer.money(t, r.amount))
    ));
    if let Some(b) = r.balance_after {
        main.push_str(&format!(
            "<div><dt>{}</dt><dd id=\"new-balance\">{}</dd></div>\n",
            t.html("new_balance_label", &[]),
            esc(&offer.money(t, b))
        ));
    }
    main.push_str("</dl></section>\n");
    if r.pending {
        main.push_str(&format!(
            "<p class=\"note\" id=\"pending-note\">{}</p>\n",
            t.html("pending_note", &[])
        ));
    }
    main.push_str(&continue_link(site, orig));
    layout(site, t.get("title_success"), &main)
}

/// A success link that does not confirm anything. `reason` names the page text saying why.
pub(super) fn not_confirmed(site: &Site, reason: &'static str, back: &str) -> String {
    let t = &site.text;
    let main = format!(
        "<h1 id=\"not-confirmed\">{}</h1>\n<p class=\"alert\" role=\"alert\" id=\"reason\">{}</p>\n<p>{}</p>\n\
<p><a id=\"back\" class=\"button\" href=\"{}\">{}</a></p>\n",
        t.html("title_not_confirmed", &[]),
        t.html("not_confirmed_lead", &[("reason", &t.html(reason, &[]))]),
        t.html("not_confirmed_help", &[]),
        esc(back),
        t.html("back", &[])
    );
    layout(site, t.get("title_not_confirmed"), &main)
}
