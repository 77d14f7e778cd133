//! Finds the line of a key path (`harepd.gRPC.bindPort`) in block-style
//! YAML text, so that every config problem can name its line even when the
//! YAML parser only reports the first one.
//!
//! It follows indentation the way block YAML nests mappings. For a path it
//! cannot find exactly (flow style, sequence items), it returns the line of
//! the deepest ancestor it found.

/// Returns the 1-based line where `path` (map keys, outermost first) is
/// written, or of its deepest ancestor that is written, or `None`.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    // `neighbours.2`: the third item of a block sequence.
    if let Some((last, parent)) = path.split_last() {
        if let (Ok(index), false) = (last.parse::<usize>(), parent.is_empty()) {
            let parent_line = line_of(text, parent)?;
            let exact = key_line_matches(text, parent_line, parent);
            return Some(
                exact
                    .then(|| item_line(text, parent_line, index))
                    .flatten()
                    .unwrap_or(parent_line),
            );
        }
    }
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut best: Option<(usize, usize)> = None; // (matched depth, line)
    for (index, raw_line) in text.lines().enumerate() {
        let Some((indent, key)) = key_of_line(raw_line) else {
            continue;
        };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key));
        let depth = matched_depth(&stack, path);
        if depth == stack.len() && depth > best.map_or(0, |(d, _)| d) {
            best = Some((depth, index + 1));
            if depth == path.len() {
                break;
            }
        }
    }
    best.map(|(_, line)| line)
}

/// Whether the key on `line` is `path`'s last key (not an ancestor that
/// `line_of` fell back to).
fn key_line_matches(text: &str, line: usize, path: &[&str]) -> bool {
    let written = text.lines().nth(line - 1).and_then(key_of_line);
    matches!((written, path.last()), (Some((_, key)), Some(want)) if key == *want)
}

/// The line of the `index`-th (from 0) `- item` of the block sequence
/// under the key on `key_line`, when it is written that way.
fn item_line(text: &str, key_line: usize, index: usize) -> Option<usize> {
    let key_indent = {
        let line = text.lines().nth(key_line - 1)?;
        line.len() - line.trim_start().len()
    };
    let mut seen = 0;
    let mut item_indent = None;
    for (i, line) in text.lines().enumerate().skip(key_line) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let item = trimmed == "-" || trimmed.starts_with("- ");
        if indent < key_indent || (indent == key_indent && !item) {
            return None;
        }
        if item && *item_indent.get_or_insert(indent) == indent {
            if seen == index {
                return Some(i + 1);
            }
            seen += 1;
        }
    }
    None
}

/// How many leading elements of `stack` equal `path`.
fn matched_depth(stack: &[(usize, String)], path: &[&str]) -> usize {
    stack
        .iter()
        .zip(path)
        .take_while(|((_, key), want)| key == *want)
        .count()
}

/// The indentation and key of a `key:` line, treating `- key:` as a key
/// indented past the dash. Comments, blanks and scalar items give `None`.
fn key_of_line(line: &str) -> Option<(usize, String)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let mut indent = line.len() - trimmed.len();
    let mut body = trimmed;
    while let Some(rest) = body.strip_prefix("- ") {
        indent += 2;
        body = rest.trim_start();
    }
    let colon = find_key_colon(body)?;
    let key = body[..colon].trim().trim_matches(|c| c == '"' || c == '\'');
    Some((indent, key.to_string()))
}

/// The position of the `:` that ends a mapping key (followed by a space or
/// the end of the line), skipping over a quoted key.
fn find_key_colon(body: &str) -> Option<usize> {
    let start = match body.chars().next() {
        Some(q @ ('"' | '\'')) => body[1..].find(q).map(|end| end + 2)?,
        _ => 0,
    };
    let bytes = body.as_bytes();
    (start..bytes.len()).find(|&i| {
        bytes[i] == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t')
    })
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const TEXT: &str = "\
# comment
harepd:
  nodeName: \"node_1\"
  haproxy:
    server:
    - \"10.0.0.1\"
    users:
      readWrite: harw
  gRPC:
    tls:
    enabled: false
    bindPort: 10000
    neighbours:
      - \"10.0.0.2:10000\"
  \"watchDog\": 15
";

    #[test]
    fn finds_each_path() {
        let cases: &[(&[&str], Option<usize>)] = &[
            (&["harepd"], Some(2)),
            (&["harepd", "nodeName"], Some(3)),
            (&["harepd", "haproxy", "server"], Some(5)),
            (&["harepd", "haproxy", "users", "readWrite"], Some(8)),
            (&["harepd", "gRPC", "tls"], Some(10)),
            // `enabled` sits beside `tls`, not under it (harepd's README layout).
            (&["harepd", "gRPC", "enabled"], Some(11)),
            (&["harepd", "gRPC", "tls", "enabled"], Some(10)),
            (&["harepd", "gRPC", "bindPort"], Some(12)),
            (&["harepd", "watchDog"], Some(15)),
            // Missing keys fall back to their deepest written ancestor.
            (&["harepd", "haproxy", "users", "readOnly"], Some(7)),
            (&["harepd", "nothing"], Some(2)),
            // Items of a block sequence, at the key's indentation or past it.
            (&["harepd", "haproxy", "server", "0"], Some(6)),
            (&["harepd", "gRPC", "neighbours", "0"], Some(14)),
            (&["harepd", "gRPC", "neighbours", "1"], Some(13)),
            (&["harepd", "gRPC", "missing", "0"], Some(9)),
            (&["other"], None),
        ];
        for (path, want) in cases {
            assert_eq!(line_of(TEXT, path), *want, "path {path:?}");
        }
    }
}
