//! The register each key is, and what every etcd v2 keys operation does to it.
//!
//! A key holds `Option<V>`: `None` is "absent". [`apply`] is the whole model: it
//! takes the register and an [`Input`] and returns the register after the
//! operation and the [`Output`] etcd answers. A failed operation (an etcd error)
//! returns the register unchanged.
//!
//! The value type is a parameter so that the same model serves histories
//! (`String`, the default) and the search, which interns every value of a key
//! to a `u32` so that states are cheap to copy, compare and hash.

use std::fmt;

/// What a client asked etcd to do to one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input<V = String> {
    /// `GET /v2/keys/k` (a quorum read: a local read may be stale by design).
    Get,
    /// `PUT` without preconditions.
    Set { value: V },
    /// `PUT ?prevExist=false`.
    Create { value: V },
    /// `PUT ?prevExist=true`.
    Update { value: V },
    /// `PUT ?prevValue=prev` (compareAndSwap).
    Cas { prev: V, value: V },
    /// `DELETE` without preconditions.
    Delete,
    /// `DELETE ?prevValue=prev` (compareAndDelete).
    Cad { prev: V },
}

/// What etcd answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output<V = String> {
    /// A get found the key holding this value.
    Value(V),
    /// A write took effect.
    Ok,
    /// Error 100 (key not found): a get of an absent key, or an
    /// update/cas/delete/cad of one.
    NotFound,
    /// Error 105 (key already exists): a create of a present key.
    Exists,
    /// Error 101 (compare failed): a cas/cad whose `prev` is not the value.
    Failed,
}

/// The register after `input` and the answer to it, starting from `state`.
pub fn apply<V: Clone + PartialEq>(state: &Option<V>, input: &Input<V>) -> (Option<V>, Output<V>) {
    let unchanged = |output| (state.clone(), output);
    match (input, state) {
        (Input::Get, Some(value)) => unchanged(Output::Value(value.clone())),
        (Input::Set { value }, _)
        | (Input::Create { value }, None)
        | (Input::Update { value }, Some(_)) => (Some(value.clone()), Output::Ok),
        (Input::Create { .. }, Some(_)) => unchanged(Output::Exists),
        (Input::Cas { prev, value }, Some(current)) if current == prev => {
            (Some(value.clone()), Output::Ok)
        }
        (Input::Delete, Some(_)) => (None, Output::Ok),
        (Input::Cad { prev }, Some(current)) if current == prev => (None, Output::Ok),
        (Input::Cas { .. } | Input::Cad { .. }, Some(_)) => unchanged(Output::Failed),
        (
            Input::Get
            | Input::Update { .. }
            | Input::Cas { .. }
            | Input::Delete
            | Input::Cad { .. },
            None,
        ) => unchanged(Output::NotFound),
    }
}

impl<V> Input<V> {
    /// Whether etcd can answer this input with `output` in some state; a
    /// history that says otherwise was recorded wrongly.
    pub fn can_return<W>(&self, output: &Output<W>) -> bool {
        matches!(
            (self, output),
            (Input::Get, Output::Value(_) | Output::NotFound)
                | (Input::Set { .. }, Output::Ok)
                | (Input::Create { .. }, Output::Ok | Output::Exists)
                | (
                    Input::Update { .. } | Input::Delete,
                    Output::Ok | Output::NotFound
                )
                | (
                    Input::Cas { .. } | Input::Cad { .. },
                    Output::Ok | Output::Failed | Output::NotFound
                )
        )
    }

    /// The same input over another value type.
    pub fn map<'a, W>(&'a self, mut f: impl FnMut(&'a V) -> W) -> Input<W> {
        match self {
            Input::Get => Input::Get,
            Input::Set { value } => Input::Set { value: f(value) },
            Input::Create { value } => Input::Create { value: f(value) },
            Input::Update { value } => Input::Update { value: f(value) },
            Input::Cas { prev, value } => Input::Cas {
                prev: f(prev),
                value: f(value),
            },
            Input::Delete => Input::Delete,
            Input::Cad { prev } => Input::Cad { prev: f(prev) },
        }
    }
}

impl<V> Output<V> {
    /// The same output over another value type.
    pub fn map<'a, W>(&'a self, f: impl FnOnce(&'a V) -> W) -> Output<W> {
        match self {
            Output::Value(value) => Output::Value(f(value)),
            Output::Ok => Output::Ok,
            Output::NotFound => Output::NotFound,
            Output::Exists => Output::Exists,
            Output::Failed => Output::Failed,
        }
    }
}

impl<V: fmt::Debug> fmt::Display for Input<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Get => write!(f, "get"),
            Input::Set { value } => write!(f, "set {value:?}"),
            Input::Create { value } => write!(f, "create {value:?}"),
            Input::Update { value } => write!(f, "update {value:?}"),
            Input::Cas { prev, value } => write!(f, "cas {prev:?} -> {value:?}"),
            Input::Delete => write!(f, "delete"),
            Input::Cad { prev } => write!(f, "cad {prev:?}"),
        }
    }
}

impl<V: fmt::Debug> fmt::Display for Output<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Value(value) => write!(f, "{value:?}"),
            Output::Ok => write!(f, "ok"),
            Output::NotFound => write!(f, "not found"),
            Output::Exists => write!(f, "exists"),
            Output::Failed => write!(f, "failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn every_input_in_both_states() {
        let absent: Option<String> = None;
        let present = Some(s("a"));
        let set = |v: &str| Input::Set { value: s(v) };
        let cases: Vec<(Input, &Option<String>, Option<String>, Output)> = vec![
            (Input::Get, &absent, None, Output::NotFound),
            (Input::Get, &present, Some(s("a")), Output::Value(s("a"))),
            (set("b"), &absent, Some(s("b")), Output::Ok),
            (set("b"), &present, Some(s("b")), Output::Ok),
            (
                Input::Create { value: s("b") },
                &absent,
                Some(s("b")),
                Output::Ok,
            ),
            (
                Input::Create { value: s("b") },
                &present,
                Some(s("a")),
                Output::Exists,
            ),
            (
                Input::Update { value: s("b") },
                &absent,
                None,
                Output::NotFound,
            ),
            (
                Input::Update { value: s("b") },
                &present,
                Some(s("b")),
                Output::Ok,
            ),
            (
                Input::Cas {
                    prev: s("a"),
                    value: s("b"),
                },
                &absent,
                None,
                Output::NotFound,
            ),
            (
                Input::Cas {
                    prev: s("a"),
                    value: s("b"),
                },
                &present,
                Some(s("b")),
                Output::Ok,
            ),
            (
                Input::Cas {
                    prev: s("x"),
                    value: s("b"),
                },
                &present,
                Some(s("a")),
                Output::Failed,
            ),
            (Input::Delete, &absent, None, Output::NotFound),
            (Input::Delete, &present, None, Output::Ok),
            (Input::Cad { prev: s("a") }, &absent, None, Output::NotFound),
            (Input::Cad { prev: s("a") }, &present, None, Output::Ok),
            (
                Input::Cad { prev: s("x") },
                &present,
                Some(s("a")),
                Output::Failed,
            ),
        ];
        for (input, before, after, output) in cases {
            assert_eq!(
                apply(before, &input),
                (after, output.clone()),
                "{input} on {before:?}"
            );
            assert!(input.can_return(&output), "{input} = {output}");
        }
    }

    #[test]
    fn impossible_answers_are_recognised() {
        assert!(!Input::<String>::Get.can_return(&Output::<String>::Ok));
        assert!(!Input::Set { value: s("a") }.can_return(&Output::<String>::NotFound));
        assert!(!Input::Create { value: s("a") }.can_return(&Output::<String>::Failed));
        assert!(!Input::<String>::Delete.can_return(&Output::<String>::Exists));
        assert!(!Input::Cad { prev: s("a") }.can_return(&Output::Value(s("a"))));
    }
}
