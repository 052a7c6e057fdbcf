//! Tests of the parent module.

use super::*;

#[test]
fn recognises_static_executables() {
    // A minimal x86-64 ELF header with two program headers: LOAD, then
    // either another LOAD (static) or INTERP (dynamic).
    let elf = |second: u32| {
        let mut e = vec![0u8; 0x40 + 2 * 56];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        e[0x40..0x44].copy_from_slice(&1u32.to_le_bytes());
        e[0x40 + 56..0x40 + 60].copy_from_slice(&second.to_le_bytes());
        e
    };
    assert!(is_static_elf(&elf(1)));
    assert!(!is_static_elf(&elf(3)));
    let mut arm = elf(1);
    arm[0x12] = 183; // EM_AARCH64: would not run in an x86-64 guest
    assert!(!is_static_elf(&arm));
    assert!(!is_static_elf(&elf(1)[..0x50]), "truncated program headers");
    let sh = std::fs::read("/bin/sh").unwrap();
    assert!(!is_static_elf(&sh), "/bin/sh is dynamically linked on every supported host");
    assert!(!is_static_elf(b"#!/bin/sh\n"));
    assert!(!is_static_elf(&[]));
}

#[test]
fn command_line_has_no_defaults_and_four_ports() {
    let d = tempfile::tempdir().unwrap();
    let ports = Ports::create(d.path()).unwrap();
    let boot =
        BootImage { path: "/boot/vmlinuz".into(), source: "/boot/vmlinuz".into(), uncompressed: false, release: None };
    let cmd = qemu_command(Path::new("qemu"), Accel::Tcg, 256, 1, &boot, Path::new("i.cpio"), "", &ports, false);
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let joined = args.join(" ");
    for want in
        ["-accel tcg", "-m 256", "-smp 1", "-nodefaults", "-nic none", "-no-reboot", "panic=-1", "console=ttyS0"]
    {
        assert!(joined.contains(want), "{want} missing: {joined}");
    }
    assert_eq!(args.iter().filter(|a| *a == "-serial").count(), 4);
    // The VM dies with agentplane: QEMU runs under `setpriv --pdeathsig KILL`.
    assert!(cmd.get_program().to_string_lossy().ends_with("setpriv"), "{:?}", cmd.get_program());
    assert_eq!(args[..3], ["--pdeathsig", "KILL", "qemu"]);
    // The port files are private.
    for f in [&ports.console, &ports.stdout, &ports.stderr, &ports.control, &ports.qemu_log] {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o7777, 0o600, "{}", f.display());
    }
    let net = qemu_command(Path::new("qemu"), Accel::Kvm, 512, 2, &boot, Path::new("i.cpio"), "x=1", &ports, true);
    let joined: Vec<String> = net.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    assert!(joined.join(" ").contains("-accel kvm -m 512 -smp 2"));
    assert!(joined.iter().any(|a| a == "user,model=e1000"));
}
