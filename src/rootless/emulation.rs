//! Whether this host can run another architecture's programs inside the
//! sandbox, and how: natively (the host's own architecture), through the
//! kernel's compatibility mode (32-bit x86 on x86-64, 32-bit ARM on
//! arm64, when the kernel and CPU provide it), or through a binfmt_misc
//! handler such as qemu-user.
//!
//! The kernel consults binfmt_misc before its native ELF loader, so a
//! matching enabled handler decides even for a compatibility
//! architecture. A handler is only usable in the sandbox with the `F`
//! (fix-binary) flag: the kernel then opened the interpreter when it was
//! registered, while without it the interpreter path is looked up at
//! each exec, inside the step's root file system, where it does not
//! exist. Since Linux 6.7 binfmt_misc is per user namespace, looked up
//! through the namespace's ancestors, so the handlers registered by the
//! host's root serve rootless builds too; what is mounted at
//! [`binfmt::DEFAULT_DIR`] is what this process's execs see.
//!
//! Compatibility modes are probed as BuildKit's `util/archutil` does: by
//! running a tiny program of that architecture that exits 0 (the kernel
//! may be built without `CONFIG_IA32_EMULATION`, booted with
//! `ia32_emulation=0`, or run on an arm64 CPU without AArch32).
//!
//! Imports only [`super::binfmt`].

use std::path::{Path, PathBuf};

use super::binfmt::{BinfmtError, Entry, Handlers};

/// What to install and register when no usable handler exists.
const INSTALL_HINT: &str = "install qemu-user-static and binfmt-support \
     (`apt-get install qemu-user-static binfmt-support` on Debian and Ubuntu), \
     which register the handlers with the F flag";

/// Why programs of an architecture cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error("no way to run {0} programs on this host is known")]
    UnknownArch(String),
    #[error(
        "binfmt_misc is not mounted at {dir}, so no emulator can run {arch} programs; \
         mount it as root (`mount -t binfmt_misc binfmt_misc {dir}`) and {INSTALL_HINT}",
        dir = dir.display()
    )]
    NotMounted { arch: &'static str, dir: PathBuf },
    #[error("failed to read the binfmt_misc handlers")]
    Read(#[source] BinfmtError),
    #[error(
        "binfmt_misc is disabled (`{dir}/status`), so no emulator can run {arch} programs; \
         enable it as root (`echo 1 > {dir}/status`)",
        dir = dir.display()
    )]
    Disabled { arch: &'static str, dir: PathBuf },
    #[error(
        "no binfmt_misc handler for {arch} programs is registered in {dir}; {INSTALL_HINT}",
        dir = dir.display()
    )]
    NoHandler { arch: &'static str, dir: PathBuf },
    #[error(
        "the binfmt_misc handler `{name}` for {arch} programs is disabled; enable it as root \
         (`update-binfmts --enable {name}`, or `echo 1 > {dir}/{name}`)",
        dir = dir.display()
    )]
    HandlerDisabled {
        arch: &'static str,
        name: String,
        dir: PathBuf,
    },
    #[error(
        "the binfmt_misc handler `{name}` for {arch} programs ({interpreter}) lacks the F \
         (fix-binary) flag, so its interpreter cannot be found inside a build step's root file \
         system; re-register it with F as root: remove it (`echo -1 > {dir}/{name}`) and \
         register it again with flag F, as qemu-user-static's definitions do \
         (`update-binfmts --import {name}`)",
        interpreter = interpreter.display(),
        dir = dir.display()
    )]
    NotFixBinary {
        arch: &'static str,
        name: String,
        interpreter: PathBuf,
        dir: PathBuf,
    },
    #[error(
        "this kernel does not run {arch} programs natively (a test program failed: {detail}) \
         and no binfmt_misc handler for them is registered; {INSTALL_HINT}"
    )]
    NoCompat { arch: &'static str, detail: String },
}

type Result<T> = std::result::Result<T, EmulationError>;

/// A CPU architecture, by its Go name (as OCI platforms spell it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    I386,
    Amd64,
    Arm,
    Arm64,
    Ppc64,
    Ppc64le,
    S390x,
    Riscv64,
    Mips,
    Mipsle,
    Mips64,
    Mips64le,
    Loong64,
}

/// ELF `e_ident[EI_CLASS]` and `e_ident[EI_DATA]` values.
const CLASS32: u8 = 1;
const CLASS64: u8 = 2;
const LSB: u8 = 1;
const MSB: u8 = 2;

impl Arch {
    const ALL: [Arch; 13] = [
        Arch::I386,
        Arch::Amd64,
        Arch::Arm,
        Arch::Arm64,
        Arch::Ppc64,
        Arch::Ppc64le,
        Arch::S390x,
        Arch::Riscv64,
        Arch::Mips,
        Arch::Mipsle,
        Arch::Mips64,
        Arch::Mips64le,
        Arch::Loong64,
    ];

    /// The architecture of an OCI platform (`arm64`, `386`, …).
    pub fn from_goarch(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.goarch() == name)
    }

    pub fn goarch(self) -> &'static str {
        match self {
            Arch::I386 => "386",
            Arch::Amd64 => "amd64",
            Arch::Arm => "arm",
            Arch::Arm64 => "arm64",
            Arch::Ppc64 => "ppc64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
            Arch::Mips => "mips",
            Arch::Mipsle => "mipsle",
            Arch::Mips64 => "mips64",
            Arch::Mips64le => "mips64le",
            Arch::Loong64 => "loong64",
        }
    }

    /// The architecture this binary was built for.
    pub fn host() -> Option<Arch> {
        let big = cfg!(target_endian = "big");
        Some(match std::env::consts::ARCH {
            "x86" => Arch::I386,
            "x86_64" => Arch::Amd64,
            "arm" => Arch::Arm,
            "aarch64" => Arch::Arm64,
            "powerpc64" if big => Arch::Ppc64,
            "powerpc64" => Arch::Ppc64le,
            "s390x" => Arch::S390x,
            "riscv64" => Arch::Riscv64,
            "mips" if big => Arch::Mips,
            "mips" => Arch::Mipsle,
            "mips64" if big => Arch::Mips64,
            "mips64" => Arch::Mips64le,
            "loongarch64" => Arch::Loong64,
            _ => return None,
        })
    }

    /// ELF class, byte order and `e_machine`.
    fn elf(self) -> (u8, u8, u16) {
        match self {
            Arch::I386 => (CLASS32, LSB, 3),
            Arch::Amd64 => (CLASS64, LSB, 62),
            Arch::Arm => (CLASS32, LSB, 40),
            Arch::Arm64 => (CLASS64, LSB, 183),
            Arch::Ppc64 => (CLASS64, MSB, 21),
            Arch::Ppc64le => (CLASS64, LSB, 21),
            Arch::S390x => (CLASS64, MSB, 22),
            Arch::Riscv64 => (CLASS64, LSB, 243),
            Arch::Mips => (CLASS32, MSB, 8),
            Arch::Mipsle => (CLASS32, LSB, 8),
            Arch::Mips64 => (CLASS64, MSB, 8),
            Arch::Mips64le => (CLASS64, LSB, 8),
            Arch::Loong64 => (CLASS64, LSB, 258),
        }
    }

    /// The first 64 bytes of a Linux executable of this architecture
    /// with ELF type `e_type` (2: fixed address, 3: position independent),
    /// as binfmt_misc sees them; fields past `e_version` are zero.
    pub fn elf_header(self, e_type: u16) -> [u8; 64] {
        let (class, data, machine) = self.elf();
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        h[6] = 1; // EV_CURRENT
        let (e_type, machine, version) = if data == MSB {
            (
                e_type.to_be_bytes(),
                machine.to_be_bytes(),
                1u32.to_be_bytes(),
            )
        } else {
            (
                e_type.to_le_bytes(),
                machine.to_le_bytes(),
                1u32.to_le_bytes(),
            )
        };
        h[16..18].copy_from_slice(&e_type);
        h[18..20].copy_from_slice(&machine);
        h[20..24].copy_from_slice(&version);
        h
    }

    /// The program that tests the kernel's compatibility mode for this
    /// architecture on this host, if it has one.
    fn compat_probe(self, host: Arch) -> Option<&'static [u8]> {
        match (host, self) {
            (Arch::Amd64, Arch::I386) => Some(&PROBE_I386),
            (Arch::Arm64, Arch::Arm) => Some(&PROBE_ARM),
            _ => None,
        }
    }
}

/// How programs of an architecture run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The host's own architecture.
    Native,
    /// The kernel's compatibility mode (a probe program ran).
    Compat,
    /// Through binfmt_misc handler `name`, whose interpreter is opened.
    Emulated { name: String, interpreter: PathBuf },
}

/// How this host runs `arch` programs in the sandbox, reading the
/// handlers mounted at `dir` ([`super::binfmt::DEFAULT_DIR`]); an error
/// says why it cannot and how to fix that.
pub fn check(dir: &Path, arch: Arch) -> Result<Support> {
    let host = Arch::host();
    if host == Some(arch) {
        return Ok(Support::Native);
    }
    let probe = host.and_then(|h| arch.compat_probe(h));
    let name = arch.goarch();
    let handlers = match Handlers::read(dir) {
        Ok(handlers) => handlers,
        Err(BinfmtError::NotMounted { dir }) => {
            return match probe {
                Some(program) => run_probe(arch, program),
                None => Err(EmulationError::NotMounted { arch: name, dir }),
            }
        }
        Err(e) => return Err(EmulationError::Read(e)),
    };
    let headers = [arch.elf_header(2), arch.elf_header(3)];
    let matching: Vec<&Entry> = handlers
        .entries
        .iter()
        .filter(|e| headers.iter().any(|h| e.matches(h)))
        .collect();
    let enabled: Vec<&Entry> = matching.iter().copied().filter(|e| e.enabled).collect();
    if handlers.enabled && !enabled.is_empty() {
        // Any of them may be the one the kernel picks (the latest
        // registered): all must work in the sandbox.
        if let Some(e) = enabled.iter().find(|e| !e.fix_binary()) {
            return Err(EmulationError::NotFixBinary {
                arch: name,
                name: e.name.clone(),
                interpreter: e.interpreter.clone(),
                dir: dir.to_path_buf(),
            });
        }
        // A handler may take fixed-address programs but not position
        // independent ones (or the reverse): both kinds must be covered.
        if let Some(e) = enabled
            .first()
            .filter(|_| headers.iter().all(|h| enabled.iter().any(|e| e.matches(h))))
        {
            return Ok(Support::Emulated {
                name: e.name.clone(),
                interpreter: e.interpreter.clone(),
            });
        }
    }
    if let Some(program) = probe {
        return run_probe(arch, program);
    }
    if !handlers.enabled {
        return Err(EmulationError::Disabled {
            arch: name,
            dir: dir.to_path_buf(),
        });
    }
    match matching.iter().find(|e| !e.enabled) {
        Some(e) => Err(EmulationError::HandlerDisabled {
            arch: name,
            name: e.name.clone(),
            dir: dir.to_path_buf(),
        }),
        None => Err(EmulationError::NoHandler {
            arch: name,
            dir: dir.to_path_buf(),
        }),
    }
}

/// Runs `program` (from memory) and expects exit code 0.
fn run_probe(arch: Arch, program: &[u8]) -> Result<Support> {
    let fail = |detail: String| EmulationError::NoCompat {
        arch: arch.goarch(),
        detail,
    };
    let fd =
        nix::sys::memfd::memfd_create(c"bk-arch-probe", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| fail(format!("memfd_create: {e}")))?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, program).map_err(|e| fail(e.to_string()))?;
    // Close-on-exec is fine: execve opens the path before it closes the
    // descriptors, and the probe is no script that would reopen it.
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let status = std::process::Command::new(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| fail(e.to_string()))?;
    if status.success() {
        Ok(Support::Compat)
    } else {
        Err(fail(status.to_string()))
    }
}

/// A 32-bit x86 Linux program: `exit(0)` through `int 0x80`.
#[rustfmt::skip]
const PROBE_I386: [u8; 93] = [
    // ELF header: ELFCLASS32, little endian, ET_EXEC, EM_386,
    // entry 0x08048054, program headers at 52.
    0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 0, 3, 0, 1, 0, 0, 0, 0x54, 0x80, 0x04, 0x08, 52, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 52, 0, 32, 0, 1, 0, 0, 0, 0, 0, 0, 0,
    // PT_LOAD of the whole file at 0x08048000, read + execute.
    1, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x80, 0x04, 0x08, 0x00, 0x80, 0x04, 0x08,
    93, 0, 0, 0, 93, 0, 0, 0, 5, 0, 0, 0, 0x00, 0x10, 0, 0,
    // mov eax, 1 (exit); xor ebx, ebx; int 0x80
    0xb8, 1, 0, 0, 0, 0x31, 0xdb, 0xcd, 0x80,
];

/// A 32-bit ARM (EABI5) Linux program: `exit(0)` through `svc 0`.
#[rustfmt::skip]
const PROBE_ARM: [u8; 96] = [
    // ELF header: ELFCLASS32, little endian, ET_EXEC, EM_ARM,
    // entry 0x00010054, program headers at 52, flags EABI5.
    0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 0, 40, 0, 1, 0, 0, 0, 0x54, 0x00, 0x01, 0x00, 52, 0, 0, 0,
    0, 0, 0, 0, 0x00, 0x00, 0x00, 0x05, 52, 0, 32, 0, 1, 0, 0, 0, 0, 0, 0, 0,
    // PT_LOAD of the whole file at 0x00010000, read + execute.
    1, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00,
    96, 0, 0, 0, 96, 0, 0, 0, 5, 0, 0, 0, 0x00, 0x10, 0, 0,
    // mov r0, #0; mov r7, #1 (exit); svc #0
    0x00, 0x00, 0xa0, 0xe3, 0x01, 0x70, 0xa0, 0xe3, 0x00, 0x00, 0x00, 0xef,
];

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64_PF: &str = "enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
";

    const PPC64: &str = "enabled
interpreter /usr/libexec/qemu-binfmt/ppc64-binfmt-P
flags: PF
offset 0
magic 7f454c4602020100000000000000000000020015
mask fffffffffffffffcfffffffffffffffffffeffff
";

    const MIPSN32: &str = "enabled
interpreter /usr/libexec/qemu-binfmt/mipsn32-binfmt-P
flags: PF
offset 0
magic 7f454c46010201000000000000000000000200080000000000000000000000000000000000000020
mask ffffffffffffff00fefffffffffffffffffeffff0000000000000000000000000000000000000020
";

    fn dir(status: &str, entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), status).unwrap();
        std::fs::write(dir.path().join("register"), "").unwrap();
        for (name, text) in entries {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    /// An architecture that is neither the host's nor its compatibility
    /// mode's, so only binfmt_misc can run it.
    fn foreign() -> Arch {
        if Arch::host() == Some(Arch::Arm64) {
            Arch::Riscv64
        } else {
            Arch::Arm64
        }
    }

    fn entry_for(arch: Arch, flags: &str, enabled: bool) -> String {
        let header = arch.elf_header(2);
        let magic = hex::encode(&header[..20]);
        format!(
            "{}\ninterpreter /usr/libexec/qemu-binfmt/x-binfmt-P\nflags: {flags}\noffset 0\n\
             magic {magic}\nmask ffffffffffffff00fffffffffffffffffeffffff\n",
            if enabled { "enabled" } else { "disabled" }
        )
    }

    #[test]
    fn goarch_names_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(Arch::from_goarch(arch.goarch()), Some(arch));
        }
        assert_eq!(Arch::from_goarch("wasm"), None);
    }

    #[test]
    fn elf_headers_match_debians_qemu_entries() {
        let d = dir(
            "enabled\n",
            &[
                ("qemu-aarch64", AARCH64_PF),
                ("qemu-ppc64", PPC64),
                ("qemu-mipsn32", MIPSN32),
            ],
        );
        let handlers = Handlers::read(d.path()).unwrap();
        let names = |arch: Arch, t: u16| -> Vec<String> {
            let h = arch.elf_header(t);
            handlers.matching(&h).map(|e| e.name.clone()).collect()
        };
        assert_eq!(names(Arch::Arm64, 2), ["qemu-aarch64"]);
        assert_eq!(names(Arch::Arm64, 3), ["qemu-aarch64"]);
        // Big endian e_type and e_machine.
        assert_eq!(names(Arch::Ppc64, 2), ["qemu-ppc64"]);
        assert!(names(Arch::Ppc64le, 2).is_empty());
        // n32 needs a flag bit the plain o32 header lacks.
        assert!(names(Arch::Mips, 2).is_empty());
        assert!(names(Arch::Amd64, 2).is_empty());
    }

    #[test]
    fn the_host_architecture_is_native_without_binfmt() {
        let host = Arch::host().expect("a known host architecture");
        let missing = tempfile::tempdir().unwrap();
        assert_eq!(
            check(&missing.path().join("x"), host).unwrap(),
            Support::Native
        );
    }

    #[test]
    fn a_fix_binary_handler_emulates() {
        let arch = foreign();
        let d = dir("enabled\n", &[("qemu-x", &entry_for(arch, "PF", true))]);
        assert_eq!(
            check(d.path(), arch).unwrap(),
            Support::Emulated {
                name: "qemu-x".into(),
                interpreter: "/usr/libexec/qemu-binfmt/x-binfmt-P".into()
            }
        );
    }

    #[test]
    fn each_missing_piece_has_its_own_error() {
        let arch = foreign();
        let d = tempfile::tempdir().unwrap();
        let err = check(&d.path().join("binfmt_misc"), arch).unwrap_err();
        assert!(matches!(err, EmulationError::NotMounted { .. }), "{err}");
        assert!(
            err.to_string().contains("mount -t binfmt_misc binfmt_misc"),
            "{err}"
        );

        let d = dir("enabled\n", &[]);
        let err = check(d.path(), arch).unwrap_err();
        assert!(matches!(err, EmulationError::NoHandler { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("apt-get install qemu-user-static binfmt-support"),
            "{err}"
        );

        let d = dir("enabled\n", &[("qemu-x", &entry_for(arch, "P", true))]);
        let err = check(d.path(), arch).unwrap_err();
        assert!(matches!(err, EmulationError::NotFixBinary { .. }), "{err}");
        assert!(
            err.to_string().contains("lacks the F (fix-binary) flag"),
            "{err}"
        );

        // One usable handler does not help when another, equally likely
        // to be picked, lacks F.
        let d = dir(
            "enabled\n",
            &[
                ("a", &entry_for(arch, "F", true)),
                ("b", &entry_for(arch, "", true)),
            ],
        );
        let err = check(d.path(), arch).unwrap_err();
        assert!(
            matches!(&err, EmulationError::NotFixBinary { name, .. } if name == "b"),
            "{err}"
        );

        let d = dir("enabled\n", &[("qemu-x", &entry_for(arch, "PF", false))]);
        let err = check(d.path(), arch).unwrap_err();
        assert!(
            matches!(err, EmulationError::HandlerDisabled { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("update-binfmts --enable qemu-x"),
            "{err}"
        );

        let d = dir("disabled\n", &[("qemu-x", &entry_for(arch, "PF", true))]);
        let err = check(d.path(), arch).unwrap_err();
        assert!(matches!(err, EmulationError::Disabled { .. }), "{err}");
    }

    #[test]
    fn a_handler_for_fixed_address_programs_only_is_not_enough() {
        let arch = foreign();
        let text = entry_for(arch, "PF", true).replace("feffffff\n", "ffffffff\n");
        let d = dir("enabled\n", &[("qemu-x", &text)]);
        let err = check(d.path(), arch).unwrap_err();
        assert!(matches!(err, EmulationError::NoHandler { .. }), "{err}");
    }

    /// The i386 probe runs natively on an x86-64 kernel with IA32
    /// emulation (Debian's default), which this test requires there.
    #[test]
    fn the_i386_probe_exits_zero_on_x86_64() {
        if Arch::host() != Some(Arch::Amd64) {
            return;
        }
        assert_eq!(run_probe(Arch::I386, &PROBE_I386).unwrap(), Support::Compat);
        // Without binfmt_misc the compatibility mode still answers.
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            check(&d.path().join("none"), Arch::I386).unwrap(),
            Support::Compat
        );
    }
}
