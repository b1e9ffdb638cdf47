//! VM tests of the cloud-config: delivered through qemu's fw_cfg, applied as
//! a user would see it, and refused whole (maintenance mode) when invalid.

use std::time::Duration;

use keel_vmtests::{Scratch, Vm, VmConfig};

const EXIT: Duration = Duration::from_secs(60);

/// Boot the test image with `config` in fw_cfg under `name`, running the
/// test helper with `helper` once ready.
fn boot_with(s: &Scratch, name: &str, fw_name: &str, config: &str, helper: &str) -> Vm {
    let file = s.path("user-data");
    std::fs::write(&file, config).unwrap();
    let mut cfg = VmConfig::new(name);
    cfg.qemu_args = vec![
        "-fw_cfg".into(),
        format!("name={fw_name},file={}", file.display()),
    ];
    cfg.append = format!("keel.run=/usr/lib/keel/test-helper,{helper}");
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    vm.assert_kernel_alive();
    vm
}

#[test]
fn a_config_from_fw_cfg_is_applied() {
    let s = Scratch::new("config-fwcfg");
    let config = "#cloud-config
hostname: web-7
manage_etc_hosts: localhost
users:
  - name: alice
    groups: [sudo]
    ssh-authorized-keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice@laptop
write_files:
  - path: /etc/app/settings.conf
    permissions: 0640
    encoding: b64
    content: aGVsbG8gZnJvbSBjbG91ZC1jb25maWcK
coreos:
  update:
    reboot-strategy: off
  units:
    - name: fleet.service
      command: start
";
    let mut vm = boot_with(
        &s,
        "config-fwcfg",
        "opt/keel/config",
        config,
        "read,/etc/hostname,/etc/hosts,/etc/app/settings.conf,/etc/group,/home/alice/.ssh/authorized_keys",
    );
    vm.wait_for("/home/alice/.ssh/authorized_keys: ", EXIT);
    vm.wait_for("alice@laptop\"", EXIT);
    let c = vm.console();
    assert!(
        c.contains("/etc/hostname: 6 bytes, first line \"web-7\""),
        "{c}"
    );
    assert!(
        c.contains("/etc/hosts: ") && c.contains("first line \"127.0.0.1 web-7 localhost\""),
        "{c}"
    );
    assert!(
        c.contains("/etc/app/settings.conf: 24 bytes, first line \"hello from cloud-config\""),
        "{c}"
    );
    assert!(c.contains("config: refused coreos.units[0]"), "{c}");
    let st = vm.status();
    assert_eq!(st.hostname, "web-7");
    let cs = &st.config;
    assert_eq!(cs.source.as_deref(), Some("fw_cfg opt/keel/config"));
    assert!(!cs.maintenance, "{:?}", cs.errors);
    assert!(cs.changed.contains(&"/etc/app/settings.conf".to_string()));
    let verdict = |p: &str| {
        cs.items
            .iter()
            .find(|i| i.path == p)
            .map(|i| i.verdict.as_str())
    };
    assert_eq!(verdict("hostname"), Some("applied"));
    assert_eq!(verdict("users[0]"), Some("applied"));
    assert_eq!(verdict("coreos.update"), Some("translated"));
    assert_eq!(verdict("coreos.units[0]"), Some("refused"));
}

#[test]
fn an_invalid_config_boots_into_maintenance_and_writes_nothing() {
    let s = Scratch::new("config-invalid");
    let config = "#cloud-config
hostname: web-8
write_files:
  - path: /etc/app/settings.conf
    content: should never be written
  - path: /etc/app/other
    permissions: 644
users:
  - name: Bad Name
";
    let mut vm = boot_with(
        &s,
        "config-invalid",
        "opt/keel/config",
        config,
        "read,/etc/app/settings.conf,/etc/hostname",
    );
    vm.wait_for("/etc/hostname: ", EXIT);
    vm.wait_for("first line \"keel\"", EXIT);
    let c = vm.console();
    assert!(
        c.contains("/etc/app/settings.conf: No such file or directory"),
        "nothing written: {c}"
    );
    assert!(
        c.contains("config: 2 errors: maintenance mode, nothing applied"),
        "{c}"
    );
    let st = vm.status();
    assert_eq!(st.hostname, "keel", "the host name was not applied either");
    let cs = &st.config;
    assert!(cs.maintenance);
    assert_eq!(cs.errors.len(), 2, "{:?}", cs.errors);
    assert!(
        cs.errors[0].starts_with("7:18: write_files[1].permissions: 644 unquoted"),
        "{:?}",
        cs.errors
    );
    assert!(
        cs.errors[1].starts_with("9:11: users[0].name:"),
        "{:?}",
        cs.errors
    );
    assert!(cs.changed.is_empty());
}

#[test]
fn ignition_json_is_refused_with_what_keel_reads_instead() {
    let s = Scratch::new("config-ignition");
    let vm = boot_with(
        &s,
        "config-ignition",
        "opt/com.coreos/config",
        "{\"ignition\": {\"version\": \"3.3.0\"}, \"storage\": {}}\n",
        "read,/etc/hostname",
    );
    let cs = vm.status().config;
    assert_eq!(cs.source.as_deref(), Some("fw_cfg opt/com.coreos/config"));
    assert!(cs.maintenance);
    assert!(
        cs.errors[0].contains("Ignition JSON, which keel does not support"),
        "{:?}",
        cs.errors
    );
}
