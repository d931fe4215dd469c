//! The Prometheus text exposition format, as node_exporter's textfile collector reads it:
//! rendering our samples, and reading back the samples of a file we wrote.
//!
//! Rendering groups every sample of a family under one `# HELP` and `# TYPE` (the collector
//! refuses a family split across a file), escapes label values (`\\`, `\"`, `\n`, as the
//! format defines) and writes no timestamps (the collector refuses them). Reading is strict
//! and small: only the families of [`FAMILIES`], only their label names, values of bounded
//! length; anything else in the file is dropped, so whatever someone wrote into it can at
//! worst become one of our own series, escaped again when rendered.

use std::fmt::Write as _;

use super::{FAMILIES, Family};

/// The longest label value read back from an old file (a DNS name is at most 253).
const MAX_LABEL_VALUE: usize = 1024;

/// One sample: a family, its labels in the family's order, a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) family: &'static Family,
    pub(crate) labels: Vec<(&'static str, String)>,
    pub(crate) value: f64,
    /// The family's place in [`FAMILIES`]: the order of the file, found once.
    order: usize,
}

impl Sample {
    /// A sample of `family`; `labels` are put in the family's order, unknown names dropped.
    pub(crate) fn new(family: &'static Family, labels: &[(&str, &str)], value: f64) -> Self {
        let labels = family
            .labels
            .iter()
            .filter_map(|name| {
                labels
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| (*name, (*value).to_owned()))
            })
            .collect();
        let order = FAMILIES
            .iter()
            .position(|known| known.name == family.name)
            .unwrap_or(usize::MAX);
        Self {
            family,
            labels,
            value,
            order,
        }
    }

    /// The value of label `name`, if the sample has it.
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The order samples are written in: family table order, then labels.
    fn sort_key(&self) -> (usize, &[(&'static str, String)]) {
        (self.order, &self.labels)
    }
}

/// The text of a file holding `samples`, families in table order, each family once and each
/// series once: of two samples of one series, the first given is written. (A series twice
/// makes node_exporter drop every textfile, so an old file edited by hand must not do it.)
pub(crate) fn render(samples: &mut Vec<Sample>) -> String {
    // Stable: equal series keep the order they came in, and `dedup_by` keeps the first.
    samples.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    samples.dedup_by(|later, first| later.sort_key() == first.sort_key());
    let mut text = String::new();
    let mut current: Option<&str> = None;
    for sample in samples.iter() {
        let family = sample.family;
        if current != Some(family.name) {
            current = Some(family.name);
            let _ = writeln!(text, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(text, "# TYPE {} gauge", family.name);
        }
        text.push_str(family.name);
        if !sample.labels.is_empty() {
            text.push('{');
            for (index, (name, value)) in sample.labels.iter().enumerate() {
                if index > 0 {
                    text.push(',');
                }
                let _ = write!(text, "{name}=\"{}\"", escape(value));
            }
            text.push('}');
        }
        let _ = writeln!(text, " {}", number(sample.value));
    }
    text
}

/// The samples of our families in `text`; lines that are not one are skipped.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let family = FAMILIES
        .iter()
        .find(|family| family.name == &line[..name_end])?;
    let mut rest = &line[name_end..];
    let mut labels: Vec<(&str, String)> = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        for (key, value) in parsed {
            let name = family.labels.iter().find(|name| **name == key)?;
            if labels.iter().any(|(seen, _)| seen == name) {
                return None;
            }
            labels.push((name, value));
        }
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_number(fields.next()?)?;
    // A timestamp, or anything else after the value: not a line we wrote.
    if fields.next().is_some() {
        return None;
    }
    let borrowed: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Some(Sample::new(family, &borrowed, value))
}

/// `key="value",...}` → the pairs and what follows the `}`.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.strip_prefix(',').unwrap_or(text);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = text.split_once("=\"")?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next()? {
                (index, '"') => break index,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    _ => return None,
                },
                (_, c) => value.push(c),
            }
            if value.len() > MAX_LABEL_VALUE {
                return None;
            }
        };
        labels.push((key.to_owned(), value));
        text = &after_key[end + 1..];
    }
}

/// A label value as the format wants it.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A value as the format spells it (`+Inf`, `NaN`; Rust's `inf` is not one).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

fn parse_number(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        // Only what `number` writes: no `inf`, `nan`, hex or `infinity` spellings.
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::family;
    use super::*;

    #[test]
    fn rendered_samples_read_back_equal_whatever_their_labels_hold() {
        let expiry = family("fleetcert_certificate_expiry_timestamp_seconds");
        let due = family("fleetcert_certificate_due");
        let mut samples = vec![
            Sample::new(
                due,
                &[("host", "h"), ("cert", "b"), ("reason", "none")],
                0.0,
            ),
            Sample::new(expiry, &[("cert", "a\"\\\nb"), ("host", "h")], 1.7e9),
            Sample::new(expiry, &[("host", "h"), ("cert", "a")], 1_767_225_600.5),
        ];
        let text = render(&mut samples);
        assert_eq!(
            text.matches("# TYPE fleetcert_certificate_expiry_timestamp_seconds gauge")
                .count(),
            1,
            "{text}"
        );
        assert!(
            text.contains(
                "fleetcert_certificate_expiry_timestamp_seconds{host=\"h\",cert=\"a\\\"\\\\\\nb\"} 1700000000\n"
            ),
            "{text}"
        );
        // The expiry family comes first (table order), then the labels sort.
        assert!(
            text.starts_with("# HELP fleetcert_certificate_expiry"),
            "{text}"
        );
        assert_eq!(parse(&text), samples);
    }

    #[test]
    fn a_series_given_twice_is_written_once_the_first_one() {
        let pending = family("fleetcert_certificate_pending");
        let labels = [("host", "h"), ("cert", "a")];
        let mut samples = vec![
            Sample::new(pending, &labels, 1.0),
            Sample::new(pending, &[("host", "h"), ("cert", "b")], 0.0),
            Sample::new(pending, &labels, 0.0),
        ];
        let text = render(&mut samples);
        assert_eq!(
            parse(&text),
            [
                Sample::new(pending, &labels, 1.0),
                Sample::new(pending, &[("host", "h"), ("cert", "b")], 0.0),
            ]
        );
    }

    #[test]
    fn reading_back_drops_what_we_would_not_have_written() {
        let text = "\
            fleetcert_certificate_pending{host=\"h\",cert=\"a\"} 1\n\
            fleetcert_certificate_pending{host=\"h\",cert=\"a\"} 1 1700000000000\n\
            fleetcert_certificate_pending{host=\"h\",evil=\"x\"} 1\n\
            fleetcert_certificate_pending{host=\"h\",host=\"i\"} 1\n\
            fleetcert_certificate_pending{host=\"h\\x\"} 1\n\
            fleetcert_certificate_pending{host=\"h\"} inf\n\
            fleetcert_certificate_pending{host=\"h\" 1\n\
            other_metric{host=\"h\"} 1\n\
            fleetcert_certificate_pendingx 1\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert_eq!(samples[0].label("cert"), Some("a"));
        let long = format!(
            "fleetcert_certificate_pending{{host=\"{}\"}} 1\n",
            "x".repeat(2000)
        );
        assert!(parse(&long).is_empty());
    }

    #[test]
    fn special_values_are_spelled_as_the_format_wants() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1_767_225_600.0), "1767225600");
        assert_eq!(parse_number("1.5e3"), Some(1500.0));
        assert_eq!(parse_number("infinity"), None);
    }
}
