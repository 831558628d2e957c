//! Text that came from outside (a registry's error body, a token service, a
//! credential helper's stderr, a manifest's fields), made safe to show. Nothing
//! from a server reaches a terminal, a log or a `cargo:warning` line raw: an
//! escape sequence could set the terminal's title, erase lines or forge output,
//! and a newline in a build script's output is a new instruction to cargo.

use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1) and every bidirectional-text
/// control escaped as Rust writes it (`\x1b`, `\u{202e}`), in at most `max`
/// characters, with `…` after a cut.
pub(crate) fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut len = 0;
    let mut escaped = String::new();
    for c in s.chars() {
        escaped.clear();
        if needs_escape(c) {
            let _ = match u32::from(c) {
                n @ 0..=0x7f => write!(escaped, "\\x{n:02x}"),
                n => write!(escaped, "\\u{{{n:x}}}"),
            };
        } else {
            escaped.push(c);
        }
        let n = escaped.chars().count();
        if len + n > max {
            out.push('…');
            break;
        }
        out.push_str(&escaped);
        len += n;
    }
    out
}

/// Whether `s` holds nothing that [`printable`] would escape.
pub(crate) fn is_printable(s: &str) -> bool {
    !s.chars().any(needs_escape)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(printable("plain text: ok", 100), "plain text: ok");
        assert_eq!(printable("a\u{61c}b", 100), "a\\u{61c}b");
        assert_eq!(
            printable("\x1b]0;owned\x07\x1b[2Kline\nnext\r\u{9b}\u{202e}", 100),
            "\\x1b]0;owned\\x07\\x1b[2Kline\\x0anext\\x0d\\u{9b}\\u{202e}"
        );
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("ééé", 3), "ééé");
        assert!(is_printable("ünïcode is fine"));
        assert!(!is_printable("tab\there"));
    }
}
