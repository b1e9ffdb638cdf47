//! YAML to a tree of positioned nodes, within limits.
//!
//! The parser is yaml-rust2's event parser (a maintained YAML 1.2 parser;
//! serde_yaml, named by the design, is archived upstream and its
//! deserializer keeps no position per value and expands aliases without a
//! budget). Events are pulled one at a time, so a limit stops the parse at
//! once. Scalars keep their text and quoting style: the validator decides
//! what a scalar means from the field it is in (YAML 1.1 octal for
//! permissions, booleans `yes`/`no`/`on`/`off` as CoreOS's parser read them).
//!
//! Aliases share the anchored node (no copy); each alias adds the anchored
//! subtree's size to an expansion budget, the number of nodes a reader that
//! expands aliases would see. Over the budget, the parse fails.

use std::collections::HashMap;
use std::rc::Rc;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// Largest document accepted.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Deepest nesting of sequences and mappings.
pub const MAX_DEPTH: usize = 64;
/// Most nodes the document may stand for once aliases are expanded.
pub const MAX_EXPANDED_NODES: u64 = 200_000;

/// Where a node starts (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar {
        text: String,
        style: Style,
    },
    Seq(Vec<Rc<Node>>),
    /// Keys in document order (duplicates are rejected while parsing).
    Map(Vec<(Rc<Node>, Rc<Node>)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub value: Value,
    /// Nodes in this subtree, aliases expanded.
    pub size: u64,
}

impl Node {
    /// The scalar's text, when this is a scalar.
    pub fn scalar(&self) -> Option<(&str, Style)> {
        match &self.value {
            Value::Scalar { text, style } => Some((text, *style)),
            _ => None,
        }
    }

    /// A plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, style: Style::Plain } if text.is_empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    }

    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("the document is {0} bytes, over the {MAX_BYTES}-byte limit")]
    TooBig(usize),
    #[error("line {line}, column {col}: {message}")]
    Syntax {
        line: usize,
        col: usize,
        message: String,
    },
    #[error("line {line}, column {col}: nesting deeper than {MAX_DEPTH} levels")]
    TooDeep { line: usize, col: usize },
    #[error("line {line}, column {col}: aliases expand to more than {MAX_EXPANDED_NODES} nodes (a \"billion laughs\" document?)")]
    Expansion { line: usize, col: usize },
    #[error("line {line}, column {col}: alias to an unknown anchor")]
    UnknownAnchor { line: usize, col: usize },
    #[error("line {line}, column {col}: duplicate key {key:?} (first at line {first})")]
    DuplicateKey {
        line: usize,
        col: usize,
        key: String,
        first: usize,
    },
    #[error("line {line}, column {col}: mapping keys must be scalars")]
    ComplexKey { line: usize, col: usize },
    #[error("more than one YAML document: keel reads one")]
    MultipleDocuments,
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Rc<Node>>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<(Rc<Node>, Rc<Node>)>,
        key: Option<Rc<Node>>,
    },
}

/// Parse one YAML document. An empty document is a null scalar.
pub fn parse(text: &str) -> Result<Rc<Node>, YamlError> {
    if text.len() > MAX_BYTES {
        return Err(YamlError::TooBig(text.len()));
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Rc<Node>> = HashMap::new();
    let mut root: Option<Rc<Node>> = None;
    let mut expanded: u64 = 0;
    let mut documents = 0;
    loop {
        let (ev, m) = parser.next_token().map_err(|e| YamlError::Syntax {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let mark = Mark {
            line: m.line(),
            col: m.col() + 1,
        };
        let node = match ev {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::MultipleDocuments);
                }
                continue;
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => continue,
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError::TooDeep {
                        line: mark.line,
                        col: mark.col,
                    });
                }
                stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        mark,
                        anchor,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        mark,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    }
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Seq {
                        mark,
                        anchor,
                        items,
                    }) => {
                        let size = 1 + items.iter().map(|n| n.size).sum::<u64>();
                        (
                            Node {
                                mark,
                                value: Value::Seq(items),
                                size,
                            },
                            anchor,
                        )
                    }
                    Some(Frame::Map {
                        mark,
                        anchor,
                        entries,
                        ..
                    }) => {
                        let size = 1 + entries.iter().map(|(k, v)| k.size + v.size).sum::<u64>();
                        (
                            Node {
                                mark,
                                value: Value::Map(entries),
                                size,
                            },
                            anchor,
                        )
                    }
                    None => continue,
                };
                let node = Rc::new(node);
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let style = match style {
                    TScalarStyle::Plain => Style::Plain,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => Style::Quoted,
                    _ => Style::Block,
                };
                let node = Rc::new(Node {
                    mark,
                    value: Value::Scalar { text, style },
                    size: 1,
                });
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().ok_or(YamlError::UnknownAnchor {
                    line: mark.line,
                    col: mark.col,
                })?;
                expanded = expanded.saturating_add(node.size);
                if expanded > MAX_EXPANDED_NODES {
                    return Err(YamlError::Expansion {
                        line: mark.line,
                        col: mark.col,
                    });
                }
                node
            }
        };
        // Attach the finished node to its parent.
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let Some((k, _)) = node.scalar() else {
                        return Err(YamlError::ComplexKey {
                            line: node.mark.line,
                            col: node.mark.col,
                        });
                    };
                    if let Some((first, _)) = entries
                        .iter()
                        .find(|(e, _)| e.scalar().map(|s| s.0) == Some(k))
                    {
                        return Err(YamlError::DuplicateKey {
                            line: node.mark.line,
                            col: node.mark.col,
                            key: k.to_string(),
                            first: first.mark.line,
                        });
                    }
                    *key = Some(node);
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(root.unwrap_or_else(|| {
        Rc::new(Node {
            mark: Mark { line: 1, col: 1 },
            value: Value::Scalar {
                text: String::new(),
                style: Style::Plain,
            },
            size: 1,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_styles() {
        let n = parse("a: 1\nb:\n  - x\n  - 'y'\n").unwrap();
        let Value::Map(m) = &n.value else { panic!() };
        assert_eq!(m[0].0.scalar(), Some(("a", Style::Plain)));
        assert_eq!(m[1].0.mark, Mark { line: 2, col: 1 });
        let Value::Seq(s) = &m[1].1.value else {
            panic!()
        };
        assert_eq!(s[1].scalar(), Some(("y", Style::Quoted)));
        assert_eq!(s[1].mark.line, 4);
    }

    #[test]
    fn billion_laughs_fails_fast() {
        let mut doc = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut prev = "a";
        for n in names {
            doc.push_str(&format!("{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
            prev = n;
        }
        let t = std::time::Instant::now();
        let err = parse(&doc).unwrap_err();
        assert!(matches!(err, YamlError::Expansion { .. }), "{err}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn limits() {
        assert!(matches!(
            parse(&"a".repeat(MAX_BYTES + 1)),
            Err(YamlError::TooBig(_))
        ));
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(parse(&deep), Err(YamlError::TooDeep { .. })));
        assert!(matches!(
            parse("a: 1\na: 2\n"),
            Err(YamlError::DuplicateKey {
                line: 2,
                first: 1,
                ..
            })
        ));
        assert!(matches!(
            parse("a: *nope\n"),
            Err(YamlError::Syntax { .. } | YamlError::UnknownAnchor { .. })
        ));
        assert!(matches!(
            parse("a: 1\n---\nb: 2\n"),
            Err(YamlError::MultipleDocuments)
        ));
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(matches!(e, YamlError::Syntax { .. }), "{e}");
        assert!(parse("").unwrap().is_null());
    }
}
