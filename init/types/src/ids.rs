//! Users and groups of a container: a number, or a name looked up in the
//! image's /etc/passwd or /etc/group when the container starts.

use std::fmt;

use crate::Invalid;

/// A user or group: a number, or a name of the image.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    Num(u32),
    Name(String),
}

impl Id {
    /// A number (at most 10 digits, within u32), or a name as Debian's
    /// adduser takes one (and Alpine's, with upper case and dots allowed
    /// for imported accounts): a letter or `_` first, at most 32 of
    /// letters, digits, `_`, `-` and `.`, not ending in `.`.
    pub fn parse(s: &str) -> Option<Id> {
        if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().ok().map(Id::Num);
        }
        let name = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && s.len() <= 32
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !s.ends_with('.');
        name.then(|| Id::Name(s.to_string()))
    }

    /// A group of `group_add`: a name of the image's /etc/group or a number.
    pub fn group(s: &str) -> Result<Id, Invalid> {
        Id::parse(s).ok_or_else(|| Invalid(format!("{s:?} is not a group name or number")))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Name(s) => f.write_str(s),
        }
    }
}

/// Who a container's processes run as, as Docker takes it: `user` or
/// `user:group`, each a name or a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserSpec {
    pub user: Id,
    pub group: Option<Id>,
}

impl TryFrom<&str> for UserSpec {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<UserSpec, Invalid> {
        let bad = || {
            Invalid(format!(
                "{s:?} is not USER or USER:GROUP (names of the image, or numbers)"
            ))
        };
        let (u, g) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let user = Id::parse(u).ok_or_else(bad)?;
        let group = match g {
            Some(g) => Some(Id::parse(g).ok_or_else(bad)?),
            None => None,
        };
        Ok(UserSpec { user, group })
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{g}", self.user),
            None => write!(f, "{}", self.user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn users_and_groups() {
        assert_eq!(Id::parse("1000"), Some(Id::Num(1000)));
        assert_eq!(Id::parse("www-data"), Some(Id::Name("www-data".into())));
        assert_eq!(Id::parse("99999999999"), None);
        assert_eq!(Id::parse("a."), None);
        let u = UserSpec::try_from("redis:0").unwrap();
        assert_eq!(u.user, Id::Name("redis".into()));
        assert_eq!(u.group, Some(Id::Num(0)));
        assert!(UserSpec::try_from("a:b:c").is_err());
    }

    fn any_id() -> impl Strategy<Value = Id> {
        prop_oneof![
            any::<u32>().prop_map(Id::Num),
            "[a-z_][a-zA-Z0-9_.-]{0,30}[a-z0-9]".prop_map(Id::Name),
        ]
    }

    proptest! {
        #[test]
        fn users_parse_from_what_they_show(user in any_id(), group in proptest::option::of(any_id())) {
            let u = UserSpec { user, group };
            prop_assert_eq!(UserSpec::try_from(u.to_string().as_str()), Ok(u));
        }
    }
}
