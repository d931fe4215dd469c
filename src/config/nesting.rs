//! How deep a config's flow collections (`{...}`, `[...]`) nest, found before the YAML parser
//! sees the text.
//!
//! The parser's time grows with the nesting depth times the input's length (libyaml keeps a
//! stack of possible keys per flow level and walks it on every token): 600 KB of `{a: ` took
//! minutes of CPU. yaml_serde's recursion limit (128) only applies when the parsed events are
//! deserialized, after that time was spent, so the depth is bounded here first. A fleetcert
//! config nests a few levels; [`MAX_DEPTH`] leaves ample room.
//!
//! The scan follows YAML's lexical rules just enough to count right: a quote opens a quoted
//! scalar only where a scalar may start (so the `'` of a plain `it's` opens nothing), quoted
//! scalars and comments are skipped, and inside a flow collection every bracket counts. A
//! bracket in a block scalar or mid-way through a plain scalar may be counted when it is not
//! an indicator; that only matters for text that opens [`MAX_DEPTH`] of them, and then the
//! line says where.

/// The deepest nesting of flow collections a config may have.
pub(super) const MAX_DEPTH: usize = 32;

/// Where the text first nests flow collections deeper than `max`: 1-based line and column.
pub(super) fn too_deep(text: &str, max: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut column = 0;
    // The last character that was not a space on this line, outside a scalar: whether a
    // quote or a bracket here starts something.
    let mut previous: Option<char> = None;
    // Whether the character just before was a space (or the line just began): a `#` starts
    // a comment only then.
    let mut after_space = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        match c {
            '\n' => {
                line += 1;
                column = 0;
                previous = None;
                after_space = true;
                continue;
            }
            ' ' | '\t' | '\r' => {
                after_space = true;
                continue;
            }
            '#' if after_space => {
                // A comment runs to the end of the line.
                for rest in chars.by_ref() {
                    if rest == '\n' {
                        break;
                    }
                }
                line += 1;
                column = 0;
                previous = None;
                continue;
            }
            '\'' | '"' if starts_scalar(previous, depth) => {
                skip_quoted(c, &mut chars, &mut line, &mut column);
            }
            '{' | '[' if depth > 0 || starts_scalar(previous, depth) => {
                depth += 1;
                if depth > max {
                    return Some((line, column));
                }
            }
            '}' | ']' if depth > 0 => depth -= 1,
            _ => {}
        }
        previous = Some(c);
        after_space = false;
    }
    None
}

/// Whether a scalar or a collection may start after `previous` (the last non-space
/// character of the line): at the start of a line, after a key's `:`, a sequence's `-`, a
/// complex key's `?`, and inside a flow collection after `,` or an opening bracket.
fn starts_scalar(previous: Option<char>, depth: usize) -> bool {
    match previous {
        None => true,
        Some(':' | '-' | '?') => true,
        Some(',' | '[' | '{') => depth > 0,
        Some(_) => false,
    }
}

/// Skips a quoted scalar whose opening `quote` was just read, keeping the line count.
fn skip_quoted(
    quote: char,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    line: &mut usize,
    column: &mut usize,
) {
    while let Some(c) = chars.next() {
        *column += 1;
        match c {
            '\n' => {
                *line += 1;
                *column = 0;
            }
            '\\' if quote == '"' => {
                chars.next();
                *column += 1;
            }
            '\'' if quote == '\'' => {
                // `''` is a quote inside a single-quoted scalar.
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    *column += 1;
                } else {
                    return;
                }
            }
            '"' if quote == '"' => return,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_count_where_yaml_reads_them_as_collections() {
        let deep = |n: usize| format!("a: {}1{}\n", "{a: ".repeat(n), "}".repeat(n));
        assert_eq!(too_deep(&deep(3), 3), None);
        assert_eq!(too_deep(&deep(4), 3), Some((1, 16)));
        assert_eq!(too_deep(&"[".repeat(5), 4), Some((1, 5)));
        // Unclosed, as an attacker writes it.
        assert!(too_deep(&"{a: ".repeat(150_000), MAX_DEPTH).is_some());
        // Brackets inside quoted scalars, comments and mid-way through plain scalars are
        // text; a lone quote in a plain scalar opens nothing.
        let text = "a: '{{{{'' {{{{'\nb: \"[[[[\\\" [[[[\"\n# {{{{{{\nc: x{{{{ # [[[[\n\
                    d: it's [[\ne: {f: [1, 2]}\n";
        assert_eq!(too_deep(text, 2), None);
        // A quote in a plain scalar cannot hide a collection on a later line.
        let hidden = format!("a: it's\nb: {}\nc: '\n", "[".repeat(5));
        assert_eq!(too_deep(&hidden, 4), Some((2, 8)));
    }

    #[test]
    fn a_config_nested_deeper_is_refused_in_one_line_before_the_parser_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deep.yaml");
        // 5,000 levels: seconds of the parser's time in a debug build, minutes at 150,000.
        std::fs::write(&path, "{a: ".repeat(5_000)).expect("write");
        let err = super::super::read_yaml::<serde_yaml::Value>(
            &path,
            super::super::ConfigKind::Zone,
            super::super::OthersWrite::Refuse,
        )
        .expect_err("too deep")
        .to_string();
        assert!(
            err.contains("more than 32 deep at line 1 column 129") && !err.contains('\n'),
            "{err}"
        );
        // A config's usual few levels load.
        std::fs::write(&path, "a: {b: [1, {c: [2]}]}\n").expect("write");
        assert!(
            super::super::read_yaml::<serde_yaml::Value>(
                &path,
                super::super::ConfigKind::Zone,
                super::super::OthersWrite::Refuse
            )
            .is_ok()
        );
    }
}
