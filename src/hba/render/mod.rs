//! The managed block of pg_hba.conf, rendered as a pure function.
//!
//! The block sits between [`BEGIN`] and [`END`]. It is inserted at the top
//! of the file on the first run (the first matching line wins in
//! pg_hba.conf) and replaced in place afterwards. Every byte outside it is
//! kept: comments, odd whitespace, include directives, CRLF line endings,
//! and a missing final newline.

use std::fmt::Write as _;
use std::net::IpAddr;

/// The line that opens the managed block.
pub const BEGIN: &str = "# BEGIN pgsql-state managed block";
/// The line that closes the managed block.
pub const END: &str = "# END pgsql-state managed block";

/// What the block must say: the check users' access from each HAProxy
/// address, and the roles shut out while this node is fenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRules {
    /// The addresses HAProxy connects from (`haproxy.server`).
    pub servers: Vec<IpAddr>,
    /// `haproxy.users.readWrite`: its database is its own name, as
    /// HAProxy's `pgsql-check` sends it.
    pub read_write_user: String,
    /// `haproxy.users.readOnly`, when `allowRO` is set.
    pub read_only_user: Option<String>,
    /// Whether the read-write check may log in here (only on the
    /// legitimate primary).
    pub read_write_allowed: bool,
    /// Whether the read-only check may log in here.
    pub read_only_allowed: bool,
    /// `authModes.allow`, the method of an allowed line.
    pub auth_allow: String,
    /// `authModes.deny`, the method of a refused line.
    pub auth_deny: String,
    /// Roles rejected from anywhere while fenced (`fenceUsers`); empty
    /// when this node is not fenced.
    pub fenced_users: Vec<String>,
    /// One line about why, written in the block's header.
    pub why: String,
}

/// A pg_hba.conf whose managed block cannot be found unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HbaError {
    /// A BEGIN line with no END after it.
    #[error("line {0}: `{BEGIN}` has no `{END}` after it")]
    Unterminated(usize),
    /// An END line with no BEGIN before it.
    #[error("line {0}: `{END}` has no `{BEGIN}` before it")]
    StrayEnd(usize),
    /// More than one managed block.
    #[error("line {0}: a second managed block (the first ends before it)")]
    SecondBlock(usize),
    /// Nothing but the managed block, comments and blank lines: an empty
    /// file, or one read while an editor had truncated it to write it
    /// again. Written back with the block alone, it would take every rule
    /// the operator had (this reconciler's own login included), so it is
    /// left alone.
    #[error("it has no rule outside the managed block (empty, or caught while an editor was rewriting it); left as it is")]
    NoRules,
}

/// Whether `text` holds a line other than a blank or a comment.
fn has_rules(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#')
    })
}

/// The block's lines, without line endings.
pub fn block_lines(rules: &HbaRules) -> Vec<String> {
    let mut lines = vec![
        BEGIN.to_string(),
        "# Written by `pgsql-state reconcile`; anything edited in here is replaced.".to_string(),
    ];
    if !rules.why.is_empty() {
        lines.push(format!("# {}", rules.why.replace(['\n', '\r'], " ")));
    }
    let method = |allowed: bool| {
        if allowed {
            rules.auth_allow.as_str()
        } else {
            rules.auth_deny.as_str()
        }
    };
    for server in &rules.servers {
        let mask = if server.is_ipv4() { 32 } else { 128 };
        let user = &rules.read_write_user;
        lines.push(format!(
            "host {user} {user} {server}/{mask} {}",
            method(rules.read_write_allowed)
        ));
        if let Some(user) = &rules.read_only_user {
            lines.push(format!(
                "host {user} {user} {server}/{mask} {}",
                method(rules.read_only_allowed)
            ));
        }
    }
    for user in &rules.fenced_users {
        lines.push(format!("host all {user} all reject"));
        lines.push(format!("local all {user} reject"));
    }
    lines.push(END.to_string());
    lines
}

/// Where the managed block is in `current`: the byte range of its lines,
/// BEGIN through END and END's line ending.
fn find_block(current: &str) -> Result<Option<std::ops::Range<usize>>, HbaError> {
    let mut start = None;
    let mut found = None;
    let mut offset = 0;
    for (index, line) in current.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let text = line.trim_end_matches(['\n', '\r']).trim();
        if text == BEGIN {
            if found.is_some() {
                return Err(HbaError::SecondBlock(number));
            }
            if start.is_some() {
                return Err(HbaError::Unterminated(number));
            }
            start = Some((offset, number));
        } else if text == END {
            match start.take() {
                Some((from, _)) => found = Some(from..offset + line.len()),
                None => return Err(HbaError::StrayEnd(number)),
            }
        }
        offset += line.len();
    }
    if let Some((_, number)) = start {
        return Err(HbaError::Unterminated(number));
    }
    Ok(found)
}

/// The file's line ending: CRLF when most of its lines end so, else LF.
fn line_ending(current: &str) -> &'static str {
    let lines = current.matches('\n').count();
    let crlf = current.matches("\r\n").count();
    if lines > 0 && crlf * 2 > lines {
        "\r\n"
    } else {
        "\n"
    }
}

/// The new file: `current` with its managed block replaced by the block
/// for `rules`, or with the block inserted at the top when it has none.
pub fn render_hba(current: &str, rules: &HbaRules) -> Result<String, HbaError> {
    let eol = line_ending(current);
    let mut block = String::new();
    for line in block_lines(rules) {
        let _ = write!(block, "{line}{eol}");
    }
    let found = find_block(current)?;
    let outside = match &found {
        Some(range) => has_rules(&current[..range.start]) || has_rules(&current[range.end..]),
        None => has_rules(current),
    };
    if !outside {
        return Err(HbaError::NoRules);
    }
    Ok(match found {
        Some(range) => {
            let mut out = String::with_capacity(current.len() + block.len());
            out.push_str(&current[..range.start]);
            // An END on the file's last line without a newline keeps the
            // file without one.
            if !current[range.clone()].ends_with('\n') {
                block.truncate(block.len() - eol.len());
            }
            out.push_str(&block);
            out.push_str(&current[range.end..]);
            out
        }
        None => format!("{block}{current}"),
    })
}

#[cfg(test)]
mod tests;
