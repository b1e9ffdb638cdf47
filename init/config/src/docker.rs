//! `docker run` units translated to keel containers.
//!
//! CoreOS ran containers as systemd services whose `ExecStart=` is
//! `/usr/bin/docker run ...`. keel runs them itself:
//!
//! 1. The unit's lines are read as systemd reads them (sections,
//!    `KEY=VALUE`, a `\` at the end of a line continues it).
//! 2. A unit whose one `[Service] ExecStart=` (optionally `-`-prefixed) is
//!    `docker run` (any path ending in `docker`) is a container. Other
//!    `Exec*=` lines may only be docker housekeeping (`docker rm`, `kill`,
//!    `pull`, `stop`): keel does that itself, so they are ignored.
//! 3. The command line is split like systemd and a shell split it: single
//!    and double quotes, backslash escapes. `$VAR`, `${VAR}` and `%i`
//!    specifiers are refused: keel has no systemd environment or templates.
//! 4. The flags keel has an equivalent for become the container's
//!    settings, checked with the same functions as the `containers:`
//!    section; any other flag refuses the unit, by name. After the flags
//!    come the image and the arguments (the container's `args`).
//! 5. `Restart=` of the unit (what restarted a foreground `docker run` on
//!    CoreOS), else `--restart`, else never; `RestartSec=` is the first
//!    restart delay, `TimeoutStopSec=` the stop grace period.

use crate::containers;
use crate::model::{Container, MountSpec, NetMode, Restart, SysctlNs};
use crate::schema;
use keel_types::RunFlag;

/// A unit translated: the container and what was ignored on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub container: Container,
    pub notes: Vec<String>,
    /// The unit's `[Unit] After=` and `Requires=` (unit names): the ones
    /// that are `docker run` units too become `after`/`requires`.
    pub after_units: Vec<String>,
    pub requires_units: Vec<String>,
}

/// Split a command line as systemd does (and a shell would, without
/// expansion): words on whitespace, `'...'` and `"..."` quoting, `\`
/// escaping the next character, `$$` and `%%` for a literal `$` or `%`.
/// Variables and specifiers are refused.
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    #[derive(PartialEq)]
    enum Q {
        No,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut q = Q::No;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if q == Q::Single => q = Q::No,
            '"' if q == Q::Double => q = Q::No,
            '\'' if q == Q::No => (q, in_word) = (Q::Single, true),
            '"' if q == Q::No => (q, in_word) = (Q::Double, true),
            '\\' if q != Q::Single => match chars.next() {
                Some(n) => (cur.push(n), in_word = true).0,
                None => return Err("the command line ends with a lone \\".into()),
            },
            c if c.is_whitespace() && q == Q::No => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '$' | '%' => match chars.peek().copied() {
                Some(n) if n == c => {
                    chars.next();
                    cur.push(c);
                    in_word = true;
                }
                Some(n) if c == '$' && (n == '{' || n.is_ascii_alphabetic() || n == '_') => {
                    let var: String = chars
                        .take_while(|x| x.is_ascii_alphanumeric() || *x == '_' || *x == '{')
                        .filter(|x| *x != '{')
                        .collect();
                    return Err(format!("${var} is a systemd environment variable, and keel has no systemd environment: write the value itself"));
                }
                Some(n) if c == '%' && n.is_ascii_alphabetic() => {
                    return Err(format!("%{n} is a systemd specifier, and keel runs no unit templates: write the value itself"));
                }
                _ => {
                    cur.push(c);
                    in_word = true;
                }
            },
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if q != Q::No {
        return Err("the command line has an unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// One `KEY=VALUE` of a unit, with its section and the 0-based line where
/// it starts.
struct Entry {
    line: usize,
    section: String,
    key: String,
    value: String,
}

fn entries(content: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut lines = content.lines().enumerate();
    while let Some((line, raw)) = lines.next() {
        let mut text = raw.trim().to_string();
        if text.is_empty() || text.starts_with(['#', ';']) {
            continue;
        }
        while text.ends_with('\\') {
            text.pop();
            text.push(' ');
            match lines.next() {
                // Comment lines inside a continuation are skipped, as systemd does.
                Some((_, next)) if next.trim_start().starts_with(['#', ';']) => text.push('\\'),
                Some((_, next)) => text.push_str(next.trim()),
                None => break,
            }
        }
        if let Some(s) = text.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = text.split_once('=') {
            out.push(Entry {
                line,
                section: section.clone(),
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            });
        }
    }
    out
}

/// `(docker-subcommand, rest)` when the command runs docker.
fn docker_command(value: &str) -> Option<(&str, &str)> {
    let v = value.strip_prefix('-').unwrap_or(value).trim_start();
    let (prog, rest) = v.split_once(char::is_whitespace)?;
    if prog != "docker" && !prog.ends_with("/docker") {
        return None;
    }
    let rest = rest.trim_start();
    Some(rest.split_once(char::is_whitespace).unwrap_or((rest, "")))
}

/// A systemd time span (`5`, `5s`, `500ms`, `2min`): ms.
fn timespan(s: &str) -> Option<u64> {
    if let Ok(secs) = s.parse::<u64>() {
        return secs.checked_mul(1000);
    }
    let s = s.replace("min", "m").replace("sec", "s");
    schema::duration_ms(&s.replace(' ', "")).ok()
}

/// The unit as a container: `None` when it is not a `docker run` unit,
/// the refusal (why keel does not run it) as `Err`, with the 0-based line
/// of the content it is about.
pub fn from_unit(unit: &str, content: &str) -> Option<Result<Translation, (usize, String)>> {
    let entries = entries(content);
    let runs: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            e.section == "Service"
                && e.key == "ExecStart"
                && docker_command(&e.value).is_some_and(|(sub, _)| sub == "run")
        })
        .collect();
    let start = *runs.first()?;
    Some(translate(unit, &entries, start, runs.len()))
}

fn translate(
    unit: &str,
    entries: &[Entry],
    start: &Entry,
    runs: usize,
) -> Result<Translation, (usize, String)> {
    let at = |line: usize| move |m: String| (line, m);
    if runs > 1 || entries.iter().filter(|e| e.key == "ExecStart").count() > 1 {
        return Err((
            start.line,
            "more than one ExecStart=: keel runs one container per unit".into(),
        ));
    }
    let mut notes = Vec::new();
    let mut restart = None;
    let mut backoff = None;
    let mut grace = None;
    let mut ignored = Vec::new();
    for e in entries.iter().filter(|e| e.section == "Service") {
        match e.key.as_str() {
            "ExecStart" => {}
            k if k.starts_with("Exec") => match docker_command(&e.value) {
                Some((sub @ ("rm" | "kill" | "pull" | "stop"), _)) => {
                    notes.push(format!("{k} docker {sub}"));
                }
                _ => {
                    return Err((
                        e.line,
                        format!(
                            "{k}={} is not docker rm, kill, pull or stop: keel would not run it",
                            e.value
                        ),
                    ))
                }
            },
            "Restart" => {
                restart = Some(match e.value.as_str() {
                    "no" => Restart::Never,
                    "always" => Restart::Always,
                    "on-failure" | "on-abnormal" | "on-abort" | "on-watchdog" => Restart::OnFailure,
                    other => {
                        return Err((
                            e.line,
                            format!(
                            "Restart={other} has no keel equivalent (always, on-failure or never)"
                        ),
                        ))
                    }
                })
            }
            "RestartSec" => match timespan(&e.value) {
                Some(ms) if ms > 0 => backoff = Some(ms),
                _ => ignored.push(format!("RestartSec={}", e.value)),
            },
            "TimeoutStopSec" => match timespan(&e.value) {
                Some(ms) => grace = Some(ms),
                None => ignored.push(format!("TimeoutStopSec={}", e.value)),
            },
            k => ignored.push(k.to_string()),
        }
    }
    let Some((_, args)) = docker_command(&start.value) else {
        return Err((start.line, "not a docker run command".into()));
    };
    let words = split_command(args).map_err(at(start.line))?;
    let default_name = unit.strip_suffix(".service").unwrap_or(unit);
    let mut t = docker_run(default_name, &words).map_err(at(start.line))?;
    let c = &mut t.container;
    match restart {
        Some(r) => {
            c.restart = r;
            notes.push("restart from the unit's Restart=".into());
        }
        None if !words.iter().any(|w| w.starts_with("--restart")) => {
            c.restart = Restart::Never;
            notes.push("restart never (the unit has no Restart=)".into());
        }
        None => {}
    }
    if let Some(ms) = backoff {
        c.backoff_ms = ms;
        c.backoff_max_ms = c.backoff_max_ms.max(ms);
    }
    if let Some(ms) = grace {
        c.stop_grace_ms = ms;
    }
    if entries.iter().any(|e| e.section == "X-Fleet") {
        notes.push("[X-Fleet] placement ignored".into());
    }
    if !ignored.is_empty() {
        notes.push(format!("ignored: {}", ignored.join(", ")));
    }
    t.notes.extend(notes);
    for e in entries.iter().filter(|e| e.section == "Unit") {
        let names = e.value.split_whitespace().map(str::to_string);
        match e.key.as_str() {
            "After" => t.after_units.extend(names),
            "Requires" | "BindsTo" => t.requires_units.extend(names),
            _ => {}
        }
    }
    Ok(t)
}

/// Translate the words after `docker run`. `default_name` names the
/// container when `--name` does not. The error is the refusal.
pub fn docker_run(default_name: &str, words: &[String]) -> Result<Translation, String> {
    // Flags with their values, as written (`shown` names them in messages).
    let mut flags: Vec<(String, RunFlag, Option<String>)> = Vec::new();
    let mut i = 0;
    let mut image = None;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        if w == "--" {
            image = words.get(i);
            i += 1;
            break;
        }
        if !w.starts_with('-') || w == "-" {
            image = Some(w);
            break;
        }
        if let Some(long) = w.strip_prefix("--") {
            let (n, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let shown = format!("--{n}");
            let f = RunFlag::long(n).ok_or_else(|| RunFlag::refusal(&shown))?;
            let value = match inline {
                Some(v) => Some(v),
                None if f.is_switch() => None,
                None => {
                    i += 1;
                    Some(
                        words
                            .get(i - 1)
                            .cloned()
                            .ok_or_else(|| format!("docker run flag {shown} needs a value"))?,
                    )
                }
            };
            flags.push((shown, f, value));
            continue;
        }
        // Short flags, possibly clustered (`-dp 80:80`, `-p80:80`).
        let cluster: Vec<char> = w[1..].chars().collect();
        for (j, ch) in cluster.iter().enumerate() {
            let shown = format!("-{ch}");
            let f = RunFlag::short(*ch).ok_or_else(|| RunFlag::refusal(&shown))?;
            if f.is_switch() {
                flags.push((shown, f, None));
                continue;
            }
            let rest: String = cluster[j + 1..].iter().collect();
            let value = if rest.is_empty() {
                i += 1;
                words
                    .get(i - 1)
                    .cloned()
                    .ok_or_else(|| format!("docker run flag {shown} needs a value"))?
            } else {
                rest.strip_prefix('=').unwrap_or(&rest).to_string()
            };
            flags.push((shown, f, Some(value)));
            break;
        }
    }
    let image = image.ok_or("docker run without an image")?;
    let mut c = Container::new(default_name, containers::image(image)?);
    c.restart = Restart::Never; // docker's default; --restart may change it
    c.args = words[i.min(words.len())..].to_vec();
    let mut notes = Vec::new();
    for (shown, f, value) in flags {
        let val = value.unwrap_or_default();
        let bad = |e: String| format!("docker run flag {shown} {val}: {e}");
        let yes = || match val.as_str() {
            "" | "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad("is not true or false".into())),
        };
        match f {
            RunFlag::Name => {
                containers::container_name(&val).map_err(bad)?;
                c.name = val.clone();
            }
            RunFlag::Publish => {
                if !val.contains(':') {
                    return Err(bad("publishes to a random host port: keel needs HOST:CONTAINER".into()));
                }
                let p = containers::port(&val).map_err(bad)?;
                if c.ports.iter().any(|o| o.host_port == p.host_port && o.protocol == p.protocol) {
                    return Err(bad(format!("host port {}/{} is published twice", p.host_port, p.protocol)));
                }
                c.ports.push(p);
            }
            RunFlag::Env => {
                let (k, v) = val.split_once('=').ok_or_else(|| {
                    bad("passes the variable from docker's environment, which keel does not have: write -e NAME=value".into())
                })?;
                containers::env_name(k).map_err(bad)?;
                c.env.retain(|(n, _)| n != k);
                c.env.push((k.to_string(), v.to_string()));
            }
            RunFlag::Volume => {
                let parts: Vec<&str> = val.split(':').collect();
                let (src, target, readonly) = match parts[..] {
                    [s, t] => (s, t, false),
                    [s, t, "ro"] => (s, t, true),
                    [s, t, "rw"] => (s, t, false),
                    [_, _, o] => return Err(bad(format!("the option {o:?} is not ro or rw"))),
                    _ => return Err(bad("is not HOST:CONTAINER[:ro|rw] (anonymous volumes are not supported)".into())),
                };
                if !src.starts_with('/') {
                    return Err(bad(format!("{src:?} is a named docker volume: bind a directory under /var/lib/keel/volumes/ instead")));
                }
                containers::bind_source(src).map_err(bad)?;
                schema::abs_path(target).map_err(bad)?;
                c.mounts.push(MountSpec::Bind {
                    source: src.to_string(),
                    target: target.to_string(),
                    readonly,
                });
            }
            RunFlag::Restart => {
                c.restart = match val.split_once(':') {
                    None if val == "no" => Restart::Never,
                    None if val == "always" => Restart::Always,
                    None if val == "unless-stopped" => {
                        notes.push("--restart unless-stopped is always".into());
                        Restart::Always
                    }
                    None if val == "on-failure" => Restart::OnFailure,
                    Some(("on-failure", n)) if n.parse::<u32>().is_ok() => {
                        notes.push(format!("--restart on-failure:{n}: the retry limit is ignored (keel backs off instead)"));
                        Restart::OnFailure
                    }
                    _ => return Err(bad("is not no, always, on-failure[:N] or unless-stopped".into())),
                };
            }
            RunFlag::Rm => notes.push(format!("{shown} ignored")),
            RunFlag::Detach => notes.push(format!("{shown} ignored (keel supervises the container)")),
            RunFlag::Network => {
                c.network = match val.as_str() {
                    "default" => NetMode::Bridge,
                    v => containers::network(v).map_err(|_| {
                        format!("docker run flag {shown} {val} is not supported: keel has host, none and its one bridge network")
                    })?,
                }
            }
            RunFlag::Memory => {
                let s = val.strip_suffix(['b', 'B']).unwrap_or(&val);
                c.resources.memory = Some(containers::memory(s).map_err(bad)?);
            }
            RunFlag::Cpus => c.resources.millicpus = Some(containers::millicpus(&val).map_err(bad)?),
            RunFlag::CapAdd | RunFlag::CapDrop => {
                let cap = containers::capability(&val).map_err(bad)?;
                let list = if f == RunFlag::CapAdd { &mut c.cap_add } else { &mut c.cap_drop };
                if !list.contains(&cap) {
                    list.push(cap);
                }
            }
            RunFlag::User => c.user = Some(containers::user(&val).map_err(bad)?),
            RunFlag::GroupAdd => c.group_add.push(containers::group(&val).map_err(bad)?),
            RunFlag::Sysctl => {
                let (k, v) = val
                    .split_once('=')
                    .ok_or_else(|| bad("is not NAME=VALUE".into()))?;
                let s = containers::sysctl(k, v).map_err(bad)?;
                c.sysctls.retain(|o| o.path != s.path);
                c.sysctls.push(s);
            }
            RunFlag::Workdir => {
                schema::abs_path(&val).map_err(bad)?;
                c.workdir = Some(val.clone());
            }
            RunFlag::Hostname => {
                schema::label(&val).map_err(bad)?;
                c.hostname = Some(val.clone());
            }
            RunFlag::StopSignal => c.stop_signal = Some(schema::stop_signal(&val).map_err(bad)?),
            RunFlag::ReadOnly => c.readonly = yes()?,
            RunFlag::Init => c.init = yes()?,
            RunFlag::Entrypoint => {
                if val.is_empty() {
                    return Err(bad("an empty entrypoint".into()));
                }
                c.command = vec![val.clone()];
            }
        }
    }
    if c.network == NetMode::Host {
        if let Some(s) = c.sysctls.iter().find(|s| s.ns == SysctlNs::Net) {
            return Err(format!("docker run flag --sysctl {}={}: a sysctl of the network namespace, which with --network host is the node's", s.name, s.value));
        }
    }
    if !c.ports.is_empty() && c.network != NetMode::Bridge {
        return Err("docker run publishes ports (-p) without the bridge network: keel publishes ports from its bridge only".into());
    }
    containers::container_name(&c.name)
        .map_err(|e| format!("the unit's name does not make a container name ({e}): add --name"))?;
    Ok(Translation {
        container: c,
        notes,
        after_units: Vec::new(),
        requires_units: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Port;
    use crate::validate::Verdict;

    fn run(line: &str) -> Result<Translation, String> {
        docker_run("unit", &split_command(line).unwrap())
    }

    #[test]
    fn splits_like_systemd_without_expansion() {
        assert_eq!(
            split_command(r#"a 'b c'  "d \"e\" $$HOME" f\ g 100%% x''y "" "#).unwrap(),
            ["a", "b c", "d \"e\" $HOME", "f g", "100%", "xy", ""]
        );
        assert_eq!(split_command("a\t'it''s'").unwrap(), ["a", "its"]);
        assert_eq!(split_command(r"'a\b'").unwrap(), [r"a\b"]);
        let e = split_command("-e X=$HOME").unwrap_err();
        assert!(e.contains("$HOME is a systemd environment variable"), "{e}");
        let e = split_command("-e \"X=${HOST_IP}\"").unwrap_err();
        assert!(e.contains("$HOST_IP"), "{e}");
        assert!(split_command("--name %i")
            .unwrap_err()
            .contains("%i is a systemd specifier"));
        assert!(split_command("'a")
            .unwrap_err()
            .contains("unterminated quote"));
        assert!(split_command("\"a")
            .unwrap_err()
            .contains("unterminated quote"));
        assert!(split_command("a \\").unwrap_err().contains("lone"));
        assert_eq!(split_command("cost $5").unwrap(), ["cost", "$5"]);
    }

    #[test]
    fn each_flag() {
        let t = run("--rm -d --name web -p 8080:80 --publish=10.0.2.15:53:53/udp -e A=1 --env B=x=y \
             -v /var/lib/keel/volumes/web:/data:ro --volume=/run/keel/volumes/sock:/sock:rw --restart=on-failure:5 \
             --net bridge -m 512m --cpus 1.5 --cap-add net_admin --cap-drop=ALL -u 1000:1000 -w /srv \
             -h web1 --read-only --init --entrypoint /bin/web nginx:1.25 --port '8 0'")
        .unwrap();
        let c = &t.container;
        assert_eq!(
            (c.name.as_str(), c.image.to_string().as_str()),
            ("web", "nginx:1.25")
        );
        assert_eq!(c.args, ["--port", "8 0"]);
        assert_eq!(c.command, ["/bin/web"]);
        assert_eq!(c.ports.len(), 2);
        assert_eq!(
            c.ports[1],
            Port {
                host_ip: Some(std::net::Ipv4Addr::new(10, 0, 2, 15)),
                host_port: 53,
                container_port: 53,
                protocol: crate::model::Protocol::Udp
            }
        );
        assert_eq!(
            c.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(
            c.mounts,
            [
                MountSpec::Bind {
                    source: "/var/lib/keel/volumes/web".into(),
                    target: "/data".into(),
                    readonly: true
                },
                MountSpec::Bind {
                    source: "/run/keel/volumes/sock".into(),
                    target: "/sock".into(),
                    readonly: false
                }
            ]
        );
        assert_eq!(c.restart, Restart::OnFailure);
        assert_eq!(c.network, NetMode::Bridge);
        assert_eq!(c.resources.memory, Some(512 << 20));
        assert_eq!(c.resources.millicpus, Some(1500));
        assert_eq!(
            (c.cap_add[..].to_vec(), c.cap_drop[..].to_vec()),
            (
                vec![crate::model::CapEntry::Cap(
                    keel_types::Capability::NetAdmin
                )],
                vec![crate::model::CapEntry::All]
            )
        );
        assert_eq!(
            c.user.as_ref().map(|u| u.to_string()).as_deref(),
            Some("1000:1000")
        );
        assert_eq!(c.workdir.as_deref(), Some("/srv"));
        assert_eq!(c.hostname.as_deref(), Some("web1"));
        assert!(c.readonly);
        assert!(c.init);
        assert_eq!(
            t.notes,
            [
                "--rm ignored",
                "-d ignored (keel supervises the container)",
                "--restart on-failure:5: the retry limit is ignored (keel backs off instead)"
            ]
        );
        // Defaults: the unit's name, docker's "no" restart; clustered short flags.
        let t = run("-dp80:80 -e=K=v busybox").unwrap();
        assert_eq!(t.container.name, "unit");
        assert_eq!(t.container.restart, Restart::Never);
        assert_eq!(t.container.ports[0].host_port, 80);
        assert_eq!(t.container.env, [("K".into(), "v".into())]);
        assert!(t.container.args.is_empty());
        for (flag, want) in [
            ("--restart always", Restart::Always),
            ("--restart=no", Restart::Never),
            ("--restart unless-stopped", Restart::Always),
            ("--restart on-failure", Restart::OnFailure),
        ] {
            assert_eq!(
                run(&format!("{flag} busybox")).unwrap().container.restart,
                want,
                "{flag}"
            );
        }
        for (flag, want) in [
            ("--net=host", NetMode::Host),
            ("--network none", NetMode::None),
            ("--network default", NetMode::Bridge),
        ] {
            assert_eq!(
                run(&format!("{flag} busybox")).unwrap().container.network,
                want,
                "{flag}"
            );
        }
        assert_eq!(
            run("--memory=1g busybox")
                .unwrap()
                .container
                .resources
                .memory,
            Some(1 << 30)
        );
        assert_eq!(
            run("-m 8388608b busybox")
                .unwrap()
                .container
                .resources
                .memory,
            Some(8 << 20)
        );
        assert_eq!(run("-- busybox -x").unwrap().container.args, ["-x"]);
        assert!(!run("--read-only=false busybox").unwrap().container.readonly);
        // --init is a boolean flag: it takes no value from the next word.
        assert!(!run("busybox").unwrap().container.init);
        assert!(!run("--init=false busybox").unwrap().container.init);
        let t = run("--init busybox sh").unwrap();
        assert!(t.container.init);
        assert_eq!(
            (
                t.container.image.to_string().as_str(),
                t.container.args.as_slice()
            ),
            ("busybox", &["sh".to_string()][..])
        );
    }

    #[test]
    fn each_refusal_names_its_flag() {
        for (line, says) in [
            ("--privileged busybox", "docker run flag --privileged is not supported: keel gives a container only the capabilities"),
            ("-it busybox", "docker run flag -i is not supported: a container keel runs has no terminal"),
            ("--init=yes busybox", "docker run flag --init yes: is not true or false"),
            ("--device /dev/kvm busybox", "flag --device is not supported"),
            ("--env-file x busybox", "flag --env-file is not supported"),
            ("--log-driver none busybox", "flag --log-driver is not supported"),
            ("-e FOO busybox", "docker run flag -e FOO: passes the variable from docker's environment"),
            ("-e 1A=x busybox", "not a variable name"),
            ("-v /etc:/etc busybox", "docker run flag -v /etc:/etc: \"/etc\" is not under /var/lib/keel/volumes/"),
            ("-v data:/data busybox", "named docker volume"),
            ("-v /data busybox", "anonymous volumes"),
            ("-v /run/keel/volumes/a:/a:z busybox", "\"z\" is not ro or rw"),
            ("-v /run/keel/volumes/a:rel busybox", "not an absolute path"),
            ("-p 80 busybox", "docker run flag -p 80: publishes to a random host port"),
            ("-p 8000-8010:80 busybox", "not a port"),
            ("-p 80:80 -p 80:81 busybox", "published twice"),
            ("-p 127.0.0.1:80:80 busybox", "not published on loopback addresses"),
            ("--net host -p 80:80 busybox", "without the bridge network"),
            ("--network mynet busybox", "docker run flag --network mynet is not supported"),
            ("--restart sometimes busybox", "is not no, always, on-failure[:N] or unless-stopped"),
            ("--restart on-failure:x busybox", "on-failure[:N]"),
            ("-m 1m busybox", "4M minimum"),
            ("-m lots busybox", "not a size"),
            ("--cpus 0 busybox", "0.01 to 1024"),
            ("--cap-add FLY busybox", "not a Linux capability"),
            ("--name Web busybox", "docker run flag --name Web: \"Web\" is not a container name"),
            ("--name", "docker run flag --name needs a value"),
            ("-p", "docker run flag -p needs a value"),
            ("-d", "without an image"),
            ("Busybox", "path component"),
            ("-u 'a b' busybox", "not USER or USER:GROUP"),
            ("--group-add 'a b' busybox", "not a group name"),
            ("-w rel busybox", "absolute"),
            ("-h a.b busybox", "host name label"),
            ("--read-only=maybe busybox", "not true or false"),
            ("--entrypoint= busybox", "empty entrypoint"),
        ] {
            let e = run(line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
        }
        let e = docker_run("web@1", &["busybox".into()]).unwrap_err();
        assert!(e.contains("add --name"), "{e}");
    }

    const UNIT: &str = "[Unit]
Description=web
After=docker.service
Requires=docker.service

[Service]
TimeoutStartSec=0
Restart=always
RestartSec=5
TimeoutStopSec=30s
ExecStartPre=-/usr/bin/docker kill web
ExecStartPre=-/usr/bin/docker rm web
ExecStartPre=/usr/bin/docker pull nginx:1.25
ExecStart=/usr/bin/docker run --name web \\
  # the public port
  -p 80:80 \\
  nginx:1.25
ExecStop=/usr/bin/docker stop web

[X-Fleet]
Conflicts=web*.service
";

    #[test]
    fn a_unit() {
        let t = from_unit("web.service", UNIT).unwrap().unwrap();
        let c = &t.container;
        assert_eq!(
            (c.name.as_str(), c.image.to_string().as_str()),
            ("web", "nginx:1.25")
        );
        assert_eq!(c.ports[0].host_port, 80);
        assert_eq!(c.restart, Restart::Always);
        assert_eq!(c.backoff_ms, 5000);
        assert_eq!(c.stop_grace_ms, 30_000);
        assert_eq!(
            t.notes,
            [
                "ExecStartPre docker kill",
                "ExecStartPre docker rm",
                "ExecStartPre docker pull",
                "ExecStop docker stop",
                "restart from the unit's Restart=",
                "[X-Fleet] placement ignored",
                "ignored: TimeoutStartSec"
            ]
        );
        // Without Restart= the unit was not restarted.
        let t = from_unit(
            "app.service",
            "[Service]\nExecStart=-docker run busybox sleep 1\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.container.name.as_str(), t.container.restart),
            ("app", Restart::Never)
        );
        assert_eq!(t.container.args, ["sleep", "1"]);
        assert!(t.notes.iter().any(|n| n.contains("no Restart=")));
        // Not docker run: for the caller's other verdicts.
        assert!(from_unit("a.service", "[Service]\nExecStart=/usr/bin/etcdctl ls\n").is_none());
        assert!(from_unit("a.service", "[Service]\nExecStart=/usr/bin/docker ps\n").is_none());
        assert!(from_unit("a.service", "[Unit]\nExecStart=/usr/bin/docker run x\n").is_none());
    }

    #[test]
    fn a_unit_refused_says_where() {
        let refuse = |content: &str| from_unit("web.service", content).unwrap().unwrap_err();
        let (line, e) = refuse(&UNIT.replace(
            "ExecStartPre=/usr/bin/docker pull",
            "ExecStartPre=/usr/bin/etcdctl get",
        ));
        assert_eq!(line, 12);
        assert!(
            e.contains(
                "ExecStartPre=/usr/bin/etcdctl get nginx:1.25 is not docker rm, kill, pull or stop"
            ),
            "{e}"
        );
        let (line, e) = refuse(&UNIT.replace("-p 80:80", "-p 80:80 --privileged"));
        assert_eq!(line, 13, "the line where ExecStart= starts");
        assert!(
            e.starts_with("docker run flag --privileged is not supported"),
            "{e}"
        );
        let (_, e) = refuse(&UNIT.replace("-p 80:80", "-e IP=${COREOS_PUBLIC_IPV4}"));
        assert!(e.contains("$COREOS_PUBLIC_IPV4"), "{e}");
        let (_, e) = refuse(&UNIT.replace("Restart=always", "Restart=on-success"));
        assert!(e.contains("Restart=on-success"), "{e}");
        let (_, e) = refuse("[Service]\nExecStart=docker run a\nExecStart=docker run b\n");
        assert!(e.contains("more than one ExecStart="), "{e}");
    }

    #[test]
    fn unit_dependencies_between_docker_units_become_container_order() {
        let r = crate::validate::validate(
            "#cloud-config
coreos:
  units:
    - name: db.service
      content: |
        [Unit]
        After=docker.service
        Requires=docker.service
        [Service]
        ExecStart=/usr/bin/docker run --name db busybox
    - name: web.service
      content: |
        [Unit]
        After=docker.service db.service etcd2.service
        Requires=db.service
        [Service]
        ExecStart=/usr/bin/docker run --name web busybox
",
        );
        assert!(r.errors.is_empty(), "{:#?}", r.errors);
        let web = r
            .config
            .containers
            .iter()
            .find(|c| c.name == "web")
            .unwrap();
        assert_eq!(web.after, ["db"]);
        assert_eq!(web.requires, ["db"]);
        let db = r.config.containers.iter().find(|c| c.name == "db").unwrap();
        assert!(db.after.is_empty() && db.requires.is_empty());
        // A cycle through units is reported like one in containers:.
        let r = crate::validate::validate(
            "#cloud-config
coreos:
  units:
    - name: a.service
      content: |
        [Unit]
        After=b.service
        [Service]
        ExecStart=/usr/bin/docker run --name a busybox
    - name: b.service
      content: |
        [Unit]
        After=a.service
        [Service]
        ExecStart=/usr/bin/docker run --name b busybox
",
        );
        assert!(
            r.errors.iter().any(|e| e.message.contains("cycle")),
            "{:#?}",
            r.errors
        );
    }

    #[test]
    fn units_join_the_containers_section() {
        let r = crate::validate::validate(
            "#cloud-config
containers:
  - {name: web, image: busybox}
coreos:
  units:
    - name: web.service
      command: start
      content: |
        [Service]
        ExecStart=/usr/bin/docker run nginx
    - name: api.service
      content: |
        [Service]
        ExecStart=/usr/bin/docker run --privileged api
    - name: cache.service
      content: |
        [Service]
        ExecStart=/usr/bin/docker run --name cache redis
    - name: shell.service
      content: |
        [Service]
        ExecStart=/bin/sh -c 'docker run x'
",
        );
        assert_eq!(r.errors.len(), 1, "{:#?}", r.errors);
        let e = &r.errors[0];
        assert_eq!((e.path.as_str(), e.line), ("coreos.units[0]", 6));
        assert_eq!(
            e.message,
            "container name \"web\" is already used by containers[0] (line 3)"
        );
        let item = |p: &str| r.items.iter().find(|i| i.path == p).unwrap();
        let api = item("coreos.units[1]");
        assert_eq!((api.verdict, api.line), (Verdict::Refused, 14));
        assert!(api
            .note
            .starts_with("docker run flag --privileged is not supported"));
        let cache = item("coreos.units[2]");
        assert_eq!(cache.verdict, Verdict::Translated);
        assert_eq!(
            cache.note,
            "container cache (redis) from docker run; restart never (the unit has no Restart=)"
        );
        let shell = item("coreos.units[3]");
        assert_eq!(shell.verdict, Verdict::Refused);
        assert!(shell.note.contains("containers: section"), "{}", shell.note);
        let names: Vec<&str> = r
            .config
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["web", "web", "cache"]);
    }

    #[test]
    fn stop_signal_flag() {
        let t = docker_run("x", &["--stop-signal=SIGQUIT".into(), "nginx".into()]).unwrap();
        assert_eq!(t.container.stop_signal, Some(crate::model::Signal(3)));
        let t = docker_run(
            "x",
            &["--stop-signal".into(), "rtmin+3".into(), "nginx".into()],
        )
        .unwrap();
        assert_eq!(t.container.stop_signal, Some(crate::model::Signal(37)));
        let e = docker_run("x", &["--stop-signal=NOPE".into(), "nginx".into()]).unwrap_err();
        assert!(
            e.contains("--stop-signal") && e.contains("not a signal"),
            "{e}"
        );
    }

    #[test]
    fn sysctl_flag() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let t = docker_run(
            "x",
            &words("--sysctl net.ipv4.ip_unprivileged_port_start=1024 --sysctl=kernel.shmmax=1048576 --sysctl kernel.sem=1 nginx"),
        )
        .unwrap();
        let got: Vec<(&str, &str)> = t
            .container
            .sysctls
            .iter()
            .map(|s| (s.path.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("net/ipv4/ip_unprivileged_port_start", "1024"),
                ("kernel/shmmax", "1048576"),
                ("kernel/sem", "1")
            ]
        );
        // The IPC ones with the node's network: allowed.
        let t = docker_run(
            "x",
            &words("--network host --sysctl kernel.shmmni=10 nginx"),
        )
        .unwrap();
        assert_eq!(t.container.sysctls.len(), 1);
        for (args, want) in [
            (
                "--sysctl kernel.panic=1 nginx",
                "--sysctl kernel.panic=1: not a namespaced sysctl",
            ),
            ("--sysctl net.ipv4.ip_forward nginx", "is not NAME=VALUE"),
            ("--sysctl net..x=1 nginx", "not a sysctl name"),
            (
                "--sysctl net.ipv4.ip_forward=1 --net host nginx",
                "with --network host is the node's",
            ),
        ] {
            let e = docker_run("x", &words(args)).unwrap_err();
            assert!(e.contains(want), "{args}: {e}");
        }
    }
}
