//! The `docker run` flags keel translates (a `docker run` line of a
//! CoreOS-era unit becomes a container of the model), and why the others
//! are refused.

use std::fmt;

/// A `docker run` flag keel translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunFlag {
    Name,
    Publish,
    Env,
    Volume,
    Restart,
    Rm,
    Detach,
    Network,
    Memory,
    Cpus,
    CapAdd,
    CapDrop,
    User,
    Workdir,
    Hostname,
    ReadOnly,
    Entrypoint,
    StopSignal,
    GroupAdd,
    Sysctl,
    Init,
}

/// Long name, short letter. `--net` is docker's old spelling of
/// `--network`.
const FLAGS: &[(&str, Option<char>, RunFlag)] = &[
    ("name", None, RunFlag::Name),
    ("publish", Some('p'), RunFlag::Publish),
    ("env", Some('e'), RunFlag::Env),
    ("volume", Some('v'), RunFlag::Volume),
    ("restart", None, RunFlag::Restart),
    ("rm", None, RunFlag::Rm),
    ("detach", Some('d'), RunFlag::Detach),
    ("network", None, RunFlag::Network),
    ("net", None, RunFlag::Network),
    ("memory", Some('m'), RunFlag::Memory),
    ("cpus", None, RunFlag::Cpus),
    ("cap-add", None, RunFlag::CapAdd),
    ("cap-drop", None, RunFlag::CapDrop),
    ("user", Some('u'), RunFlag::User),
    ("workdir", Some('w'), RunFlag::Workdir),
    ("hostname", Some('h'), RunFlag::Hostname),
    ("read-only", None, RunFlag::ReadOnly),
    ("entrypoint", None, RunFlag::Entrypoint),
    ("stop-signal", None, RunFlag::StopSignal),
    ("group-add", None, RunFlag::GroupAdd),
    ("sysctl", None, RunFlag::Sysctl),
    ("init", None, RunFlag::Init),
];

impl RunFlag {
    /// The flag `--NAME` names.
    pub fn long(name: &str) -> Option<RunFlag> {
        FLAGS.iter().find(|(l, _, _)| *l == name).map(|x| x.2)
    }

    /// The flag `-C` names.
    pub fn short(c: char) -> Option<RunFlag> {
        FLAGS.iter().find(|(_, s, _)| *s == Some(c)).map(|x| x.2)
    }

    /// A switch takes no value (`--rm`, `-d`); `--rm=false` may still give
    /// one.
    pub fn is_switch(self) -> bool {
        matches!(
            self,
            RunFlag::Rm | RunFlag::Detach | RunFlag::ReadOnly | RunFlag::Init
        )
    }

    /// Why docker's `flag` (as written, `--privileged` or `-t`) has no
    /// translation.
    pub fn refusal(flag: &str) -> String {
        let why = match flag {
            "--privileged" => "keel gives a container only the capabilities it lists: add what it needs with --cap-add",
            "-i" | "--interactive" | "-t" | "--tty" => "a container keel runs has no terminal",
            "--device" => "keel passes no devices into containers",
            "--link" => "containers reach each other over keel's bridge; order them with after: in the containers: section",
            "--env-file" => "keel reads no files to build the environment: pass each variable with -e NAME=value",
            "--pid" | "--ipc" | "--uts" | "--userns" => "keel shares no namespace of the host but the network",
            "--log-driver" | "--log-opt" => "keel collects the container's output itself",
            "--volumes-from" | "--mount" => "bind directories under /var/lib/keel/volumes/ with -v",
            _ => "keel has no equivalent",
        };
        format!("docker run flag {flag} is not supported: {why}")
    }
}

/// `--NAME`, the long form.
impl fmt::Display for RunFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = FLAGS
            .iter()
            .find(|(_, _, x)| x == self)
            .map(|(l, _, _)| *l)
            .unwrap_or("?");
        write!(f, "--{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short_names() {
        assert_eq!(RunFlag::long("publish"), Some(RunFlag::Publish));
        assert_eq!(RunFlag::short('p'), Some(RunFlag::Publish));
        assert_eq!(RunFlag::long("net"), Some(RunFlag::Network));
        assert_eq!(RunFlag::Network.to_string(), "--network");
        assert_eq!(RunFlag::long("privileged"), None);
        assert_eq!(RunFlag::short('t'), None);
        assert!(RunFlag::Rm.is_switch() && !RunFlag::Env.is_switch());
        assert_eq!(
            RunFlag::refusal("--device"),
            "docker run flag --device is not supported: keel passes no devices into containers"
        );
    }

    #[test]
    fn every_flag_parses_from_what_it_shows() {
        for (_, short, f) in FLAGS {
            let long = f.to_string();
            assert_eq!(RunFlag::long(&long[2..]), Some(*f));
            if let Some(c) = short {
                assert_eq!(RunFlag::short(*c), Some(*f));
            }
        }
    }
}
