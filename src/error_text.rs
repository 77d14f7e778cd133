//! Text for a log line or a terminal: an error as one line with each of
//! its sources, and any text made printable (control characters escaped),
//! since much of what is logged or shown came from the network.

/// "cannot connect: error connecting to server: Connection refused (os error 111)".
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// `text` with every control character (newlines, escapes) and every
/// bidirectional-override character escaped as `\n`, `\u{1b}` and the
/// like, so that text from the network can neither forge a log line nor
/// hide or repaint a terminal's line. Anything else is kept as it is.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let cases = [
            ("node_1", "node_1"),
            ("nœud ü 节点", "nœud ü 节点"),
            (
                "x\npgsql-state: info: node_2: production",
                "x\\npgsql-state: info: node_2: production",
            ),
            ("\u{1b}[2K\u{1b}[1A", "\\u{1b}[2K\\u{1b}[1A"),
            ("a\rb\tc", "a\\rb\\tc"),
            ("\u{202e}gnp.exe", "\\u{202e}gnp.exe"),
        ];
        for (text, want) in cases {
            assert_eq!(printable(text), want, "{text:?}");
        }
    }
}
