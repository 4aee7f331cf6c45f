//! Typed, located reads from a parsed TOML tree. Every read that fails records a
//! [`ConfigError`] and returns `None`, so the caller keeps going and the user sees every mistake
//! in one run.

use super::ConfigError;
use crate::time::Timestamp;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::value::{Datetime, Offset};
use toml::Spanned;

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;
pub(crate) type Span = Range<usize>;

/// Collects errors and turns byte spans into line and column.
pub(crate) struct Ctx<'t> {
    text: &'t str,
    origin: &'t str,
    line_starts: Vec<usize>,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'t> Ctx<'t> {
    pub(crate) fn new(text: &'t str, origin: &'t str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ctx {
            text,
            origin,
            line_starts,
            errors: Vec::new(),
        }
    }

    pub(crate) fn text(&self) -> &'t str {
        self.text
    }

    /// 1-based line and column; the column counts characters, as editors do.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        // line_starts begins with 0, so partition_point is at least 1 and the index is valid.
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line.max(1), column + 1)
    }

    pub(crate) fn error(&mut self, at: usize, path: &str, message: impl Into<String>) {
        let (line, column) = self.position(at);
        self.errors.push(ConfigError {
            origin: self.origin.to_string(),
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A table being read, with its location for errors about missing keys.
pub(crate) struct Fields<'a, 'i> {
    table: &'a DeTable<'i>,
    pub(crate) span: Span,
    pub(crate) path: String,
}

impl<'a, 'i> Fields<'a, 'i> {
    /// Checks that `value` is a table whose keys are all in `allowed`.
    pub(crate) fn new(
        ctx: &mut Ctx<'_>,
        value: &'a Value<'i>,
        path: String,
        allowed: &[&str],
    ) -> Option<Self> {
        let DeValue::Table(table) = value.get_ref() else {
            ctx.error(
                value.span().start,
                &path,
                format!("expected a table, found {}", value.get_ref().type_str()),
            );
            return None;
        };
        Some(Self::from_table(ctx, table, value.span(), path, allowed))
    }

    pub(crate) fn from_table(
        ctx: &mut Ctx<'_>,
        table: &'a DeTable<'i>,
        span: Span,
        path: String,
        allowed: &[&str],
    ) -> Self {
        for key in table.keys() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                ctx.error(
                    key.span().start,
                    &join(&path, name),
                    format!(
                        "unknown key '{name}'; expected one of {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        Fields { table, span, path }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table.get(key)
    }

    pub(crate) fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub(crate) fn missing(&self, ctx: &mut Ctx<'_>, key: &str) {
        ctx.error(
            self.span.start,
            &self.path,
            format!("missing required key '{key}'"),
        );
    }

    pub(crate) fn str(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<(&'a str, Span)> {
        let value = self.get(key)?;
        as_str(ctx, value, &self.path(key)).map(|s| (s, value.span()))
    }

    pub(crate) fn required_str(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<(&'a str, Span)> {
        if self.get(key).is_none() {
            self.missing(ctx, key);
        }
        self.str(ctx, key)
    }

    pub(crate) fn bool(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                ctx.error(
                    value.span().start,
                    &self.path(key),
                    format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`; `what` names the range in the message.
    pub(crate) fn int(&self, ctx: &mut Ctx<'_>, key: &str, min: i128, max: i128) -> Option<i128> {
        let value = self.get(key)?;
        let path = self.path(key);
        let DeValue::Integer(int) = value.get_ref() else {
            ctx.error(
                value.span().start,
                &path,
                format!("expected an integer, found {}", value.get_ref().type_str()),
            );
            return None;
        };
        match i128::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                ctx.error(
                    value.span().start,
                    &path,
                    format!("{int} is out of range; expected {min}-{max}"),
                );
                None
            }
        }
    }

    pub(crate) fn u32(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<u32> {
        self.int(ctx, key, 0, i128::from(u32::MAX))
            .and_then(|n| u32::try_from(n).ok())
    }

    pub(crate) fn array(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<&'a [Value<'i>]> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Array(items) => Some(items),
            other => {
                ctx.error(
                    value.span().start,
                    &self.path(key),
                    format!("expected an array, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// One of `choices`, matched without regard to case; the error lists them all.
    pub(crate) fn choice<T: Copy>(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let (text, span) = self.str(ctx, key)?;
        let found = choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|&(_, v)| v);
        if found.is_none() {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            ctx.error(
                span.start,
                &self.path(key),
                format!("'{text}' is not one of {}", names.join(", ")),
            );
        }
        found
    }

    pub(crate) fn timestamp(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<(Timestamp, Span)> {
        let value = self.get(key)?;
        let path = self.path(key);
        let DeValue::Datetime(dt) = value.get_ref() else {
            ctx.error(
                value.span().start,
                &path,
                format!(
                    "expected a date-time such as 2026-01-01T00:00:00Z, found {}",
                    value.get_ref().type_str()
                ),
            );
            return None;
        };
        match timestamp_of(dt) {
            Ok(t) => Some((t, value.span())),
            Err(message) => {
                ctx.error(value.span().start, &path, message);
                None
            }
        }
    }
}

pub(crate) fn as_str<'a>(ctx: &mut Ctx<'_>, value: &'a Value<'_>, path: &str) -> Option<&'a str> {
    match value.get_ref() {
        DeValue::String(s) => Some(s),
        other => {
            ctx.error(
                value.span().start,
                path,
                format!("expected a string, found {}", other.type_str()),
            );
            None
        }
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date. Counting from a March-based year
/// puts the leap day last, so each 400-year era has a fixed shape.
pub(crate) fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Rule times must name an instant, so a local date-time without an offset is refused rather
/// than guessed in some time zone.
pub(crate) fn timestamp_of(dt: &Datetime) -> Result<Timestamp, String> {
    let (Some(date), Some(time), Some(offset)) = (dt.date, dt.time, dt.offset) else {
        return Err(format!(
            "'{dt}' needs a date, a time and an offset, e.g. 2026-01-01T00:00:00Z"
        ));
    };
    let offset_minutes = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    let seconds = days_from_civil(i64::from(date.year), date.month, date.day) * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    u64::try_from(seconds)
        .ok()
        .and_then(|s| s.checked_mul(1_000_000_000))
        .and_then(|ns| ns.checked_add(u64::from(time.nanosecond)))
        .map(Timestamp::from_nanos)
        .ok_or_else(|| format!("'{dt}' is outside 1970-01-01 to 2554-07-21"))
}
