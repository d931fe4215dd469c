//! Showing text that came from outside (a config, a token document, a CA or DNS answer, a
//! command's output) inside one of our lines.
//!
//! Everything from outside is shown through [`Shown`]: control characters, quotes and
//! backslashes are escaped, anything beyond [`MAX_VALUE`] characters is cut with `...`, so
//! no input can break a one-line message, forge a second line, colour a terminal or flood a
//! log. The escaped text is wrapped in backticks, which also makes an empty value visible.
//!
//! Two bounds, and only these two, apply to outside text in a line: [`MAX_VALUE`] for one
//! value quoted in our sentence, [`MAX_EXCERPT`] for a message someone else wrote that the
//! line carries. Every call passes one of them.

use std::fmt;

/// Characters shown at most of one value from outside quoted in a line (a name, a path, a
/// key, an alias, an identity, a program): enough to recognise it, while a hostile megabyte
/// stays one short line.
pub(crate) const MAX_VALUE: usize = 120;

/// Characters shown at most of an excerpt from outside that a line carries: a message someone
/// else wrote (a parser's error with its line and column, a CA's problem detail, a resolver's
/// or a library's reason, a command's output) or a list of values (names, records). Enough
/// for the sentence that says what went wrong; a line stays a few hundred characters.
pub(crate) const MAX_EXCERPT: usize = 400;

/// Outside text, escaped and bounded when displayed.
#[derive(Debug, Clone, Copy)]
struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`")?;
        write_escaped(f, self.0, MAX_VALUE, Backticks::Escape)?;
        f.write_str("`")
    }
}

/// Outside text without the backticks: for text that is already set apart by the sentence
/// around it (a CA's problem detail after a colon, a command's output).
#[derive(Debug, Clone, Copy)]
struct Bare<'a>(pub(crate) &'a str, pub(crate) usize);

impl fmt::Display for Bare<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, self.1, Backticks::Escape)
    }
}

/// A parser's message (YAML, JSON): escaped and bounded like [`Bare`], except that its
/// backticks stay, since the parser quotes the input's keys with them itself
/// (``unknown field `renew_days` ``); escaping them would only put backslashes in the line.
pub(crate) fn parser_message(text: &str, max: usize) -> String {
    struct Message<'a>(&'a str, usize);
    impl fmt::Display for Message<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_escaped(f, self.0, self.1, Backticks::Keep)
        }
    }
    Message(text, max).to_string()
}

/// `text` escaped and bounded, as a `String` (for error fields built once and shown later).
pub(crate) fn shown(text: &str) -> String {
    Shown(text).to_string()
}

/// `text` escaped and cut at `max` characters, without backticks.
pub(crate) fn bare(text: &str, max: usize) -> String {
    Bare(text, max).to_string()
}

/// A path from a config (paths are chosen by the operator but may hold anything).
pub(crate) fn path(path: &std::path::Path) -> String {
    shown(&path.to_string_lossy())
}

/// Whether a backtick in outside text is escaped: always where ours set the text apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backticks {
    Escape,
    Keep,
}

fn write_escaped(
    f: &mut fmt::Formatter<'_>,
    text: &str,
    max: usize,
    backticks: Backticks,
) -> fmt::Result {
    let mut chars = text.chars();
    for c in chars.by_ref().take(max) {
        match c {
            '\\' => f.write_str("\\\\")?,
            '`' if backticks == Backticks::Escape => f.write_str("\\`")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            // Control characters (ANSI escapes start with ESC), and the Unicode line and
            // paragraph separators and bidirectional overrides that can make a line read as
            // something else.
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}')
                || matches!(c, '\u{2066}'..='\u{2069}') =>
            {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            }
            c => fmt::Write::write_char(f, c)?,
        }
    }
    if chars.next().is_some() {
        f.write_str("...")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_line_breaks_are_escaped() {
        let line = shown("a\nfleetcert: ok\u{1b}[32m\u{2028}`");
        assert_eq!(line, "`a\\nfleetcert: ok\\u{1b}[32m\\u{2028}\\``");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn long_text_is_cut() {
        let line = shown(&"x".repeat(10_000));
        assert_eq!(line.chars().count(), MAX_VALUE + 2 + 3);
        assert!(line.ends_with("...`"));
        assert_eq!(shown(""), "``");
    }

    #[test]
    fn a_parser_message_keeps_its_backticks_and_escapes_the_rest() {
        assert_eq!(
            parser_message("unknown field `a\nb`", 100),
            "unknown field `a\\nb`"
        );
        assert_eq!(parser_message("`abcdef`", 3), "`ab...");
    }

    #[test]
    fn bare_text_has_its_own_bound() {
        assert_eq!(bare("abcdef", 3), "abc...");
        assert_eq!(bare("a\u{7}b", 10), "a\\u{7}b");
    }
}
