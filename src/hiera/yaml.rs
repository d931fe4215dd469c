//! Writing the hiera file by hand, for exact control over how each value is written.
//!
//! A YAML library decides on its own whether a string becomes a block scalar, a quoted
//! string or a folded one; Puppet's operators want PEM blocks they can read, and everyone
//! needs the value to come back byte for byte. So every PEM that can be a literal block
//! scalar becomes one, with the chomping indicator its trailing newlines need, and anything
//! else becomes a double-quoted string with every unusual character escaped. The caller
//! parses the result back and compares (see `super::verify`), so a mistake here can never
//! reach a file.

use std::fmt::Write as _;

/// Indentation of one level; two spaces, as Hiera's own examples use.
const INDENT: &str = "  ";

/// Appends `key: value` at `depth` levels of indentation, `value` as a literal block scalar
/// when that round-trips, as a double-quoted string otherwise.
pub(super) fn text_entry(out: &mut String, depth: usize, key: &str, value: &str) {
    let pad = INDENT.repeat(depth);
    match literal_header(value) {
        Some(header) => {
            let _ = writeln!(out, "{pad}{key}: {header}");
            let content_pad = INDENT.repeat(depth + 1);
            let body = value.trim_end_matches('\n');
            for line in body.split('\n') {
                if line.is_empty() {
                    // An empty line stays empty: trailing spaces would be content under `|+`.
                    out.push('\n');
                } else {
                    let _ = writeln!(out, "{content_pad}{line}");
                }
            }
            // `|+` keeps the line breaks after the last line; the first is already written.
            let trailing = value.len() - body.len();
            for _ in 1..trailing {
                out.push('\n');
            }
        }
        None => {
            let _ = writeln!(out, "{pad}{key}: {}", quoted(value));
        }
    }
}

/// Appends `key: "value"` at `depth`, for short strings (names, dates).
pub(super) fn string_entry(out: &mut String, depth: usize, key: &str, value: &str) {
    let _ = writeln!(out, "{}{key}: {}", INDENT.repeat(depth), quoted(value));
}

/// Appends `key:` and a block sequence of quoted strings (`[]` when empty).
pub(super) fn list_entry(out: &mut String, depth: usize, key: &str, values: &[String]) {
    let pad = INDENT.repeat(depth);
    if values.is_empty() {
        let _ = writeln!(out, "{pad}{key}: []");
        return;
    }
    let _ = writeln!(out, "{pad}{key}:");
    for value in values {
        let _ = writeln!(out, "{pad}{INDENT}- {}", quoted(value));
    }
}

/// The block scalar header (`|`, `|-` or `|+`) for `value`, or `None` when a literal block
/// would not give back exactly `value`.
///
/// Refused: empty values; characters other than printable ASCII and `\n` (a `\r` would be
/// read as a line break, control characters are not allowed at all); a first line starting
/// with a space (the parser would take it as deeper indentation); lines of nothing but
/// spaces (they blur into indentation). None of these occur in a PEM file that fleetcert or
/// openssl writes, so in practice every PEM is a block.
fn literal_header(value: &str) -> Option<&'static str> {
    let body = value.trim_end_matches('\n');
    if body.is_empty() || body.starts_with(' ') {
        return None;
    }
    if !value
        .bytes()
        .all(|b| b == b'\n' || (0x20..=0x7e).contains(&b))
    {
        return None;
    }
    if body
        .split('\n')
        .any(|line| !line.is_empty() && line.bytes().all(|b| b == b' '))
    {
        return None;
    }
    Some(match value.len() - body.len() {
        0 => "|-",
        1 => "|",
        _ => "|+",
    })
}

/// `value` as a YAML double-quoted scalar. Everything outside printable ASCII is escaped,
/// so the file is pure ASCII and no character can be mistaken for a line break (YAML 1.1,
/// which Puppet's parser speaks, also breaks lines at U+0085, U+2028 and U+2029).
pub(super) fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if u32::from(c) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `value` under one key and parses it back with a real YAML parser.
    fn round_trip(value: &str) -> (String, String) {
        let mut out = String::new();
        text_entry(&mut out, 1, "v", value);
        out.push_str("  after: \"x\"\n");
        let text = format!("top:\n{out}");
        let parsed: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
            serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("{err}:\n{text}"));
        assert_eq!(parsed["top"]["after"], "x", "{text}");
        (parsed["top"]["v"].clone(), text)
    }

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\nAbc=\n-----END CERTIFICATE-----\n";

    #[test]
    fn pem_with_one_trailing_newline_is_a_plain_literal_block() {
        let (back, text) = round_trip(PEM);
        assert_eq!(back, PEM);
        assert!(
            text.contains("  v: |\n    -----BEGIN CERTIFICATE-----\n"),
            "{text}"
        );
    }

    #[test]
    fn trailing_newlines_survive_with_the_right_chomping() {
        let none = PEM.trim_end_matches('\n');
        let (back, text) = round_trip(none);
        assert_eq!(back, none);
        assert!(text.contains("v: |-\n"), "{text}");
        for extra in ["\n", "\n\n", "\n\n\n"] {
            let value = format!("{PEM}{extra}");
            let (back, text) = round_trip(&value);
            assert_eq!(back, value, "{text}");
            assert!(text.contains("v: |+\n"), "{text}");
        }
    }

    #[test]
    fn blank_lines_inside_and_between_blocks_survive() {
        let two = format!("{PEM}\n{PEM}");
        assert_eq!(round_trip(&two).0, two);
        let chain = format!("{PEM}{PEM}");
        assert_eq!(round_trip(&chain).0, chain);
    }

    #[test]
    fn what_a_block_cannot_hold_is_quoted_and_still_round_trips() {
        for value in [
            "",
            "\n",
            "\n\n",
            " leading space\n",
            "crlf\r\nline\r\n",
            "tab\tinside\n",
            "a\n   \nb\n",
            "quote \" and \\ backslash",
            "bell \u{7} del \u{7f} nel \u{85} ls \u{2028} emoji \u{1f512}",
            "#not a comment: {x} [y] &z *w !t\n",
        ] {
            let (back, text) = round_trip(value);
            assert_eq!(back, value, "{text}");
            assert!(text.is_ascii(), "{text}");
        }
    }

    #[test]
    fn yaml_syntax_inside_a_block_is_just_text() {
        let value = "key: value\n- item\n--- \n...\n# comment\n";
        assert_eq!(round_trip(value).0, value);
    }
}
