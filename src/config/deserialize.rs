//! Deserialising the YAML with every problem's path and line: serde stops at
//! the first error, so a value that fails is reported, removed from the
//! parsed tree, and the rest is deserialised again.

use super::locate;
use super::raw::RawFile;
use super::Problem;

/// Deserializes the file, collecting every unknown key and every value of
/// the wrong type rather than stopping at the first: a value that fails is
/// reported and removed, and the rest is deserialized again. Returns the
/// file (with failing values left out) unless the YAML itself is broken.
pub(super) fn deserialize_all(text: &str, problems: &mut Vec<Problem>) -> Option<RawFile> {
    let mut value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            problems.push(yaml_problem(&error));
            return None;
        }
    };
    // Each retry removes one value, so this ends; the bound is a backstop.
    for _ in 0..1000 {
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(dotted_path(&path));
        let ignoring = serde_ignored::Deserializer::new(value.clone(), &mut note_unknown);
        match serde_path_to_error::deserialize::<_, RawFile>(ignoring) {
            Ok(raw) => {
                for path in unknown {
                    problems.push(Problem {
                        line: locate_dotted(text, &path),
                        path,
                        message: "unknown key".to_string(),
                    });
                }
                return Some(raw);
            }
            Err(error) => {
                let keys: Vec<String> = error.path().iter().filter_map(segment_key).collect();
                let path = keys.join(".");
                problems.push(Problem {
                    line: locate_dotted(text, &path),
                    path: if path.is_empty() { ".".into() } else { path },
                    message: error.into_inner().to_string(),
                });
                if keys.is_empty() || !remove_path(&mut value, &keys) {
                    return None;
                }
            }
        }
    }
    None
}

fn segment_key(segment: &serde_path_to_error::Segment) -> Option<String> {
    use serde_path_to_error::Segment;
    match segment {
        Segment::Map { key } => Some(key.clone()),
        Segment::Seq { index } => Some(index.to_string()),
        Segment::Enum { variant } => Some(variant.clone()),
        Segment::Unknown => None,
    }
}

/// Removes the value at `keys` (map keys or sequence indexes).
fn remove_path(value: &mut serde_yaml::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut node = value;
    for key in parents {
        let next = match node {
            serde_yaml::Value::Mapping(map) => map.get_mut(key.as_str()),
            serde_yaml::Value::Sequence(seq) => {
                key.parse::<usize>().ok().and_then(|i| seq.get_mut(i))
            }
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match node {
        serde_yaml::Value::Mapping(map) => map.remove(last.as_str()).is_some(),
        serde_yaml::Value::Sequence(seq) => match last.parse::<usize>() {
            Ok(i) if i < seq.len() => {
                seq.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// `harepd.gRPC.x` for an ignored key, leaving out serde's `?` for options.
fn dotted_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => join(dotted_path(parent), &index.to_string()),
        Path::Map { parent, key } => join(dotted_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted_path(parent),
    }
}

fn join(parent: String, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A YAML syntax error, with its line.
fn yaml_problem(error: &serde_yaml::Error) -> Problem {
    Problem {
        path: "(yaml syntax)".to_string(),
        line: error.location().map(|l| l.line()),
        message: error.to_string(),
    }
}

pub(super) fn locate_dotted(text: &str, dotted: &str) -> Option<usize> {
    let parts: Vec<&str> = dotted.split('.').collect();
    locate::line_of(text, &parts)
}
